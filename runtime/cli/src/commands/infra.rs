use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use sha2::{Digest, Sha256};
use wrt::config::{PipelineConfig, S3Sink};
use wrt::pipeline::transform::sandbox::Compiler;
use wrt::registry::{Action, Registry};
use wrt_infra::{HostBinary, Stack, Topology, TransformDeploy};

use super::deploy::{default_author, ship};
use super::{s3_sink, section_loader};

/// Provision the AWS topology wrt runs in: network, RDS MySQL, MSK, Debezium on MSK Connect,
/// S3 buckets and wrt hosts, with the connector plugin, the hosts' wrt binary and the first
/// transform shipped by `up` itself.
///
/// Resources are found by their `wrt:stack` tag, so there is no state file: `plan` and
/// `status` read the account, `up` converges it (rerunning is safe), `down` removes only
/// what carries this stack's tag. The topology file is --config, else `infra.toml` in the
/// working directory, else $WRT_INFRA_CONFIG, else the recipe's defaults.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  \
    wrt infra plan\n  \
    wrt infra up --transform pii_mask.wasm\n  \
    WRT_AWS_ENDPOINT_URL=http://127.0.0.1:5000 wrt infra status --config infra.toml")]
pub struct Infra {
    #[command(subcommand)]
    action: InfraAction,

    /// The topology file; a missing file section or key takes the recipe's value.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Send every AWS call here (moto, LocalStack) instead of AWS; overrides `endpoint-url`.
    #[arg(long, global = true, env = "WRT_AWS_ENDPOINT_URL", value_name = "URL")]
    endpoint_url: Option<String>,

    /// On a failed AWS call, also print the SDK's full account of it.
    #[arg(short, long, global = true)]
    verbose: bool,
}

/// What `up` ships, for `plan` and `status` to compare with what is there.
#[derive(Debug, Clone, clap::Args)]
struct Ship {
    /// The wrt executable the hosts install: a Linux build for their architecture. Default:
    /// the running wrt.
    #[arg(long, value_name = "PATH")]
    wrt_binary: Option<PathBuf>,

    /// The transform to deploy to the hosts' pipeline, checked as `wrt deploy` checks it.
    /// Without one, the hosts wait for a deploy.
    #[arg(long, value_name = "FILE")]
    transform: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
enum InfraAction {
    /// Check the topology file without calling AWS.
    #[command(after_help = "Example:\n  wrt infra check --config infra.toml")]
    Check,
    /// Show what `up` would create, change or refuse to replace, in dependency order.
    #[command(after_help = "Example:\n  wrt infra plan --transform pii_mask.wasm")]
    Plan(Ship),
    /// Create what is missing and fix what differs, waiting for each resource.
    #[command(after_help = "Example:\n  wrt infra up --transform pii_mask.wasm")]
    Up(Ship),
    /// Show every resource of the stack, its id, whether it matches the topology, and whether
    /// the hosts' wrt and the connector are running: `ok` first on every line means yes.
    #[command(after_help = "Example:\n  wrt infra status --config infra.toml")]
    Status(Ship),
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
        let verbose = self.verbose;
        self.run_quietly().inspect_err(|error| {
            // The one-line error is printed by main; the SDK's account only when asked.
            let details = (error.chain())
                .find_map(|cause| cause.downcast_ref::<wrt_infra::Error>())
                .and_then(wrt_infra::Error::details);
            if let (true, Some(details)) = (verbose, details) {
                eprintln!("details: {details}");
            }
        })
    }

    /// The topology file to read, and how it was chosen.
    fn topology_file(&self) -> Option<(PathBuf, &'static str)> {
        if let Some(path) = &self.config {
            return Some((path.clone(), "--config"));
        }
        let local = Path::new("infra.toml");
        if local.is_file() {
            return Some((local.to_path_buf(), "the working directory"));
        }
        std::env::var_os("WRT_INFRA_CONFIG").map(|p| (PathBuf::from(p), "WRT_INFRA_CONFIG"))
    }

    fn run_quietly(self) -> anyhow::Result<ExitCode> {
        let mut topology = match self.topology_file() {
            Some((path, from)) => {
                eprintln!("topology: {} (from {from})", path.display());
                Topology::load(&path)?
            }
            None => {
                eprintln!(
                    "topology: the recipe's defaults (no infra.toml here; --config FILE reads one)"
                );
                Topology::default()
            }
        };
        if self.endpoint_url.is_some() {
            topology.endpoint_url = self.endpoint_url.clone();
        }
        topology.validate()?;
        let ship = match &self.action {
            InfraAction::Check => {
                println!(
                    "topology ok: {} resources for stack {} in {}",
                    topology.resources().len(),
                    topology.stack,
                    topology.region
                );
                return Ok(ExitCode::SUCCESS);
            }
            InfraAction::Plan(ship) | InfraAction::Up(ship) | InfraAction::Status(ship) => {
                Some(ship.clone())
            }
            InfraAction::Down { .. } => None,
        };

        let runtime = tokio::runtime::Runtime::new()?;
        runtime.block_on(async {
            let config =
                wrt_infra::load_config(&topology.region, topology.endpoint_url.as_deref()).await;
            let mut stack = Stack::new(topology.clone(), &config)?;
            if let Some(ship) = &ship {
                stack = with_artifacts(stack, &topology, ship)?;
            }
            let print = |line: &str| println!("{line}");
            match self.action {
                InfraAction::Check => unreachable!("handled before connecting"),
                InfraAction::Plan(_) => print!("{}", stack.plan().await?),
                InfraAction::Up(_) => {
                    let plan = stack.up(&print).await.context("wrt infra up")?;
                    println!(
                        "up: {} created or changed, {} already as wanted",
                        plan.changes(),
                        plan.steps.len() - plan.changes()
                    );
                }
                InfraAction::Status(_) => print!("{}", stack.plan().await?.status()),
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

/// Binds what `up` ships: the hosts' wrt (checked against their architecture) and the
/// first transform, deployed through the registry exactly as `wrt deploy` does.
fn with_artifacts(stack: Stack, topology: &Topology, ship: &Ship) -> anyhow::Result<Stack> {
    let mut stack = stack;
    if topology.hosts.count > 0 {
        let path = match &ship.wrt_binary {
            Some(path) => path.clone(),
            None => std::env::current_exe().context("finding the running wrt")?,
        };
        let binary = HostBinary::check(
            &path,
            topology.host_architecture(),
            &topology.hosts.instance_type,
        )?;
        stack = stack.with_host_binary(binary);
    }
    if let Some(path) = &ship.transform {
        let wasm = std::fs::read(path)
            .with_context(|| format!("--transform: reading {}", path.display()))?;
        let deploy = transform_deploy(topology, path.clone())?;
        stack = stack.with_transform(TransformDeploy {
            digest: hex::encode(Sha256::digest(&wasm)),
            deploy,
        });
    }
    Ok(stack)
}

/// The deploy `up` runs once the lake exists: the hosts' own pipeline file says how the
/// transform is loaded (limits, configuration), so the check is the one the hosts make.
fn transform_deploy(
    topology: &Topology,
    path: PathBuf,
) -> anyhow::Result<Arc<dyn Fn() -> wrt_infra::DeployFuture + Send + Sync>> {
    let file = std::env::temp_dir().join(format!("wrt-infra-hosts-{}.toml", std::process::id()));
    std::fs::write(&file, wrt_infra::host_pipeline(topology))
        .with_context(|| format!("writing {}", file.display()))?;
    let hosts = PipelineConfig::load(&file);
    let _ = std::fs::remove_file(&file);
    let hosts = hosts.context("the hosts' pipeline file does not load in this wrt")?;
    let loader = section_loader(&hosts.transform, None, Compiler::Baseline)?;
    let sink = S3Sink {
        endpoint_url: topology.endpoint_url.clone(),
        force_path_style: topology.endpoint_url.is_some(),
        ..S3Sink::new(topology.lake_bucket(), topology.region.clone())
    };
    let pipeline = hosts.name;
    Ok(Arc::new(move || {
        let (path, loader, sink, pipeline) =
            (path.clone(), loader.clone(), sink.clone(), pipeline.clone());
        Box::pin(async move {
            let lake = s3_sink(&sink).await.map_err(|e| format!("{e:#}"))?;
            let registry = Registry::new(lake, &pipeline);
            let message = ship(
                &registry,
                (&path, Action::Deploy),
                &loader,
                &default_author(),
                |_| Ok(()),
            )
            .await
            .map_err(|e| format!("{e:#}"))?;
            println!("{message}");
            Ok(())
        })
    }))
}

#[cfg(test)]
mod tests {
    use wrt::config::CatalogConfig;
    use wrt::model::Format;

    use super::*;

    /// wrt-infra writes the hosts' file without depending on wrt: this wrt must load it.
    #[test]
    fn the_hosts_pipeline_file_loads_with_parquet_and_the_glue_database() {
        let topology = Topology::parse(
            "stack = \"shop\"\n[storage]\nformat = \"parquet\"\nglue-database = \"shop_lake\"",
        )
        .unwrap();
        topology.validate().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("wrt.toml");
        std::fs::write(&file, wrt_infra::host_pipeline(&topology)).unwrap();
        let hosts = PipelineConfig::load(&file).unwrap();
        assert_eq!(hosts.batch.format, Format::Parquet);
        let Some(CatalogConfig::Glue(glue)) = &hosts.catalog else {
            panic!("no Glue catalog in {:?}", hosts.catalog)
        };
        assert_eq!(glue.database, "shop_lake");
        assert_eq!(glue.region.as_deref(), Some("us-west-2"));
    }
}
