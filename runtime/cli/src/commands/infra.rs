use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use wrt_infra::{Action, Stack, Topology};

/// Provision the AWS topology wrt runs in: network, RDS MySQL, MSK, Debezium on MSK Connect,
/// S3 buckets and wrt hosts.
///
/// Resources are found by their `wrt:stack` tag, so there is no state file: `plan` and
/// `status` read the account, `up` converges it (rerunning is safe), `down` removes only
/// what carries this stack's tag.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  \
    wrt infra plan --config infra.toml\n  \
    wrt infra up --config infra.toml\n  \
    WRT_AWS_ENDPOINT_URL=http://127.0.0.1:5000 wrt infra status")]
pub struct Infra {
    #[command(subcommand)]
    action: InfraAction,

    /// The topology file; a missing file section or key takes the recipe's value.
    #[arg(long, global = true, env = "WRT_INFRA_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Send every AWS call here (moto, LocalStack) instead of AWS; overrides `endpoint-url`.
    #[arg(long, global = true, env = "WRT_AWS_ENDPOINT_URL", value_name = "URL")]
    endpoint_url: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
enum InfraAction {
    /// Check the topology file without calling AWS.
    #[command(after_help = "Example:\n  wrt infra check --config infra.toml")]
    Check,
    /// Show what `up` would create, change or refuse to replace, in dependency order.
    #[command(after_help = "Example:\n  wrt infra plan --config infra.toml")]
    Plan,
    /// Create what is missing and fix what differs, waiting for each resource.
    #[command(after_help = "Example:\n  wrt infra up --config infra.toml")]
    Up,
    /// Show every resource of the stack, its id, and whether it matches the topology.
    #[command(after_help = "Example:\n  wrt infra status --config infra.toml")]
    Status,
    /// Delete every resource tagged as this stack's, dependents first; reports every failure.
    #[command(after_help = "Example:\n  wrt infra down --config infra.toml --purge-buckets")]
    Down {
        /// Also delete the objects in the stack's buckets (the lake's data included).
        #[arg(long)]
        purge_buckets: bool,
    },
}

impl Infra {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let mut topology = match &self.config {
            Some(path) => Topology::load(path)?,
            None => Topology::default(),
        };
        if self.endpoint_url.is_some() {
            topology.endpoint_url = self.endpoint_url.clone();
        }
        topology.validate()?;
        if let InfraAction::Check = self.action {
            println!(
                "topology ok: {} resources for stack {} in {}",
                topology.resources().len(),
                topology.stack,
                topology.region
            );
            return Ok(ExitCode::SUCCESS);
        }

        let runtime = tokio::runtime::Runtime::new()?;
        runtime.block_on(async {
            let config =
                wrt_infra::load_config(&topology.region, topology.endpoint_url.as_deref()).await;
            let stack = Stack::new(topology, &config)?;
            let print = |line: &str| println!("{line}");
            match self.action {
                InfraAction::Check => unreachable!("handled before connecting"),
                InfraAction::Plan => print!("{}", stack.plan().await?),
                InfraAction::Up => {
                    let plan = stack.up(&print).await.context("wrt infra up")?;
                    println!(
                        "up: {} created or changed, {} already as wanted",
                        plan.changes(),
                        plan.steps.len() - plan.changes()
                    );
                }
                InfraAction::Status => {
                    let plan = stack.plan().await?;
                    for step in &plan.steps {
                        let state = match &step.action {
                            Action::Create => "missing",
                            Action::Unchanged => "ok",
                            Action::Change(_) | Action::Replace(_) => "differs",
                            Action::Deferred => "deferred",
                        };
                        let id = step.id.as_deref().unwrap_or("-");
                        println!(
                            "{state:<9}{:<21}{:<22}{id}",
                            step.resource.kind(),
                            step.name
                        );
                    }
                }
                InfraAction::Down { purge_buckets } => {
                    let stack = stack.with_purge_buckets(purge_buckets);
                    let teardown = stack.down(&print).await.context("wrt infra down")?;
                    // Found by tag again, so the count is what the account says, not what
                    // `down` believes it deleted.
                    let remaining = (stack.plan().await?.steps.iter())
                        .filter(|step| step.id.is_some())
                        .count();
                    println!(
                        "down: {} resources deleted, {remaining} remaining",
                        teardown.deleted
                    );
                    if remaining > 0 {
                        return Ok(ExitCode::FAILURE);
                    }
                }
            }
            anyhow::Ok(ExitCode::SUCCESS)
        })
    }
}
