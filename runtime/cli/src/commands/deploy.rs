//! `wrt deploy`, `wrt rollback` and `wrt transforms`: the registry from the command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use wrt::config::{PipelineConfig, SinkConfig};
use wrt::pipeline::Emit;
use wrt::pipeline::sink::{LocalDir, Sink};
use wrt::pipeline::source;
use wrt::pipeline::transform::Transform;
use wrt::pipeline::transform::sandbox::{Compiler, Loader, WasmTransform};
use wrt::registry::{Action, Registry, RegistryError, Seen, rollback_target};
use wrt::telemetry::ShadowStatus;

use super::{read_component, replay_check, s3_sink, section_loader};

/// Which pipeline's registry, found through its configuration.
#[derive(Debug, Clone, clap::Args)]
struct Target {
    /// The pipeline's configuration: where its lake (and so its registry) is, and the
    /// transform configuration and limits a new version is checked with.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,

    /// The pipeline, if not the `name` in --config.
    #[arg(long, value_name = "NAME")]
    pipeline: Option<String>,

    /// Where compiled components are cached.
    #[arg(long, env = "WRT_CACHE_DIR", value_name = "DIR")]
    cache_dir: Option<PathBuf>,
}

/// A command that works on one pipeline's registry, whatever store holds it.
trait RegistryCommand {
    async fn run_on<K: Sink>(
        self,
        registry: Registry<K>,
        config: &PipelineConfig,
        cache_dir: Option<PathBuf>,
    ) -> anyhow::Result<ExitCode>;
}

impl Target {
    fn run(self, command: impl RegistryCommand) -> anyhow::Result<ExitCode> {
        let config = PipelineConfig::load(&self.config)?;
        let pipeline = self.pipeline.clone().unwrap_or_else(|| config.name.clone());
        let runtime = tokio::runtime::Runtime::new()?;
        runtime.block_on(async {
            match &config.sink {
                SinkConfig::Local(local) => {
                    let registry = Registry::new(LocalDir::new(&local.path), &pipeline);
                    command.run_on(registry, &config, self.cache_dir).await
                }
                SinkConfig::S3(s3) => {
                    let registry = Registry::new(s3_sink(s3).await?, &pipeline);
                    command.run_on(registry, &config, self.cache_dir).await
                }
            }
        })
    }
}

/// Check a transform and ship it: hosts of the pipeline switch to it at a batch boundary.
///
/// The component must implement the WIT world and initialise with the pipeline's transform
/// configuration; with --events it must also process them without a trap or a rejected
/// event, and give the same output again on the same instance and on a fresh one that takes
/// the batches in reverse order (hosts replay from a fresh instance). The checks compile
/// with Winch, a baseline compiler, unless --check-with says otherwise. Only then is it
/// uploaded (by content digest) and the pipeline's pointer moved, by
/// a conditional write on the version read when the deploy began: if another deploy moved
/// it meanwhile, this one fails with a conflict and changes nothing.
///
/// With --shadow the version becomes the pipeline's shadow instead: hosts run it beside the
/// current version on the same batches, on their own instances, compare the outputs event
/// by event and write nothing of it (`wrt transforms diff` shows the comparison).
/// --promote makes the shadow current (a normal switch); --discard drops it.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    wrt deploy pii_mask.wasm --config pipeline.toml \\\n    \
    --events guest-examples/pii-mask/tests/events.jsonl --allow-rejected\n  \
    wrt deploy pii_mask_v2.wasm --config pipeline.toml --shadow\n  \
    wrt transforms diff --config pipeline.toml\n  \
    wrt deploy --config pipeline.toml --promote")]
pub struct Deploy {
    /// The component to ship, built against sdk/wit/.
    #[arg(required_unless_present_any = ["promote", "discard"])]
    transform: Option<PathBuf>,

    /// Ship it as the shadow: run beside the current version, compared, never written.
    #[arg(long, conflicts_with_all = ["promote", "discard"])]
    shadow: bool,

    /// Make the shadow current: hosts switch to it at their next check.
    #[arg(long, conflicts_with_all = ["transform", "discard", "events"])]
    promote: bool,

    /// Drop the shadow: hosts stop running it.
    #[arg(long, conflicts_with_all = ["transform", "events"])]
    discard: bool,

    #[command(flatten)]
    target: Target,

    /// Run the component on these events first (JSON Lines, as `wrt sample` writes) and
    /// refuse to ship it if any call traps, any event is rejected, or a second pass gives
    /// other output.
    #[arg(long, value_name = "FILE")]
    events: Option<PathBuf>,

    /// With --events, ship even if the transform rejects some events (they would be
    /// dead-lettered); a call that traps still refuses the deploy.
    #[arg(long, requires = "events")]
    allow_rejected: bool,

    /// Who deploys, for the history; `$USER@<host>` by default.
    #[arg(long, value_name = "NAME")]
    by: Option<String>,

    #[command(flatten)]
    check: Check,
}

/// Which compiler the checks of a version run under.
#[derive(Debug, Clone, clap::Args)]
struct Check {
    /// The compiler the checks run under: winch compiles many times faster; cranelift (the
    /// hosts' compiler) also takes components using what Winch lacks (tail calls,
    /// exceptions, GC).
    #[arg(long, value_enum, default_value = "winch", value_name = "COMPILER")]
    check_with: CheckCompiler,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum CheckCompiler {
    Winch,
    Cranelift,
}

impl Check {
    fn compiler(&self) -> Compiler {
        match self.check_with {
            CheckCompiler::Winch => Compiler::Baseline,
            CheckCompiler::Cranelift => Compiler::Optimizing,
        }
    }
}

impl Deploy {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let target = self.target.clone();
        target.run(self)
    }
}

impl RegistryCommand for Deploy {
    async fn run_on<K: Sink>(
        self,
        registry: Registry<K>,
        config: &PipelineConfig,
        cache_dir: Option<PathBuf>,
    ) -> anyhow::Result<ExitCode> {
        let by = self.by.clone().unwrap_or_else(default_author);
        let Some(path) = &self.transform else {
            let action = if self.promote {
                Action::Promote
            } else {
                Action::Discard
            };
            println!("{}", end_shadow(&registry, action, &by).await?);
            return Ok(ExitCode::SUCCESS);
        };
        let loader = section_loader(&config.transform, cache_dir, self.check.compiler())?;
        let batch_size = config.batch.batch_size;
        let action = if self.shadow {
            Action::Shadow
        } else {
            Action::Deploy
        };
        let message = ship(
            &registry,
            (path, action),
            &loader,
            &by,
            |transform| match &self.events {
                Some(events) => try_events(transform, events, batch_size, self.allow_rejected),
                None => Ok(()),
            },
        )
        .await?;
        println!("{message}");
        Ok(ExitCode::SUCCESS)
    }
}

/// Checks the component at `path` (it loads and initialises with `loader`, then `check`
/// passes), uploads it and moves the pipeline's pointer to it; returns what happened, in a
/// sentence. What `wrt deploy` and `wrt infra up --transform` share.
pub(super) async fn ship<K: Sink>(
    registry: &Registry<K>,
    (path, action): (&Path, Action),
    loader: &Loader,
    by: &str,
    check: impl FnOnce(&mut WasmTransform) -> anyhow::Result<()>,
) -> anyhow::Result<String> {
    // The version this deploy replaces is the one current when it began.
    let seen = registry.pointer().await?;
    let wasm = read_component(path)?;
    // Off the async context: `init` and `process` may block in WASI calls.
    let transform = tokio::task::block_in_place(|| -> anyhow::Result<WasmTransform> {
        let mut transform = loader.load(&wasm)?;
        check(&mut transform)?;
        Ok(transform)
    })
    .with_context(|| format!("refused {}; nothing was shipped", path.display()))?;
    let digest = transform.digest().to_string();
    let pipeline = registry.pipeline();
    if seen.as_ref().is_some_and(|s| s.pointer.current == digest) {
        return Ok(format!("pipeline `{pipeline}` already runs {digest}"));
    }
    if action == Action::Shadow
        && seen.as_ref().and_then(|s| s.pointer.shadow.as_ref()) == Some(&digest)
    {
        return Ok(format!(
            "{digest} is already the shadow of pipeline `{pipeline}`"
        ));
    }
    registry.upload(&wasm).await?;
    if action == Action::Shadow {
        // Reports of an earlier run of the same digest would add to this one's.
        registry.clear_shadow_reports().await?;
    }
    let pointer = registry.move_to(seen.as_ref(), &digest, action, by).await?;
    if action == Action::Shadow {
        return Ok(format!(
            "deployed {digest} as the shadow of pipeline `{pipeline}` (current stays {}); \
             hosts run it beside the current version from their next check, writing nothing \
             of it: see `wrt transforms diff`, then `wrt deploy --promote` or `--discard`",
            short(&pointer.current)
        ));
    }
    let previous = seen.map_or("nothing".into(), |s| short(&s.pointer.current));
    Ok(format!(
        "deployed {} to pipeline `{pipeline}` (was {previous}); hosts switch at their next check",
        pointer.current,
    ))
}

/// Promotes or discards the pipeline's shadow; says what happened.
async fn end_shadow<K: Sink>(
    registry: &Registry<K>,
    action: Action,
    by: &str,
) -> anyhow::Result<String> {
    let seen = current(registry).await?;
    let pipeline = registry.pipeline();
    let Some(shadow) = seen.pointer.shadow.clone() else {
        bail!(
            "pipeline `{pipeline}` has no shadow; deploy one with `wrt deploy <transform.wasm> \
             --shadow`"
        );
    };
    registry.move_to(Some(&seen), &shadow, action, by).await?;
    Ok(if action == Action::Promote {
        format!(
            "promoted {shadow} to current in pipeline `{pipeline}` (was {}); hosts switch at \
             their next check",
            short(&seen.pointer.current)
        )
    } else {
        format!("discarded the shadow {shadow} of pipeline `{pipeline}`")
    })
}

/// Runs `events` through the transform, then checks that a replay gives the same output
/// ([`replay_check::check`]); an error names the first failures or the first difference.
fn try_events(
    transform: &mut WasmTransform,
    path: &Path,
    batch_size: usize,
    allow_rejected: bool,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading events from {}", path.display()))?;
    let records = source::records_from_jsonl(&text);
    let batch_size = batch_size.max(1);
    let emitted = replay_check::run_batches(&records, batch_size, transform);
    let mut failures = Vec::new();
    for (record, emits) in records.iter().zip(&emitted) {
        for emit in emits {
            if let Emit::DeadLetter(reason) = emit
                && reason.stage == "transform"
                && !(allow_rejected && reason.kind == "rejected")
            {
                failures.push(format!(
                    "{}/{}/{}: {}: {}",
                    record.topic, record.partition, record.offset, reason.kind, reason.message
                ));
            }
        }
    }
    if !failures.is_empty() {
        let shown: Vec<&String> = failures.iter().take(3).collect();
        bail!(
            "{} of the events failed in the transform, e.g.:\n  {}",
            failures.len(),
            shown
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n  ")
        )
    }
    replay_check::check(&records, batch_size, &emitted, transform)?;
    println!(
        "ok: {} events from {} ran without an error, and the same again on a used and on a \
         fresh instance",
        records.len(),
        path.display()
    );
    Ok(())
}

/// Point a pipeline back at an earlier version: the one before the current, or --to.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    wrt rollback --config pipeline.toml\n  \
    wrt rollback --config pipeline.toml --to 3f2a9c")]
pub struct Rollback {
    #[command(flatten)]
    target: Target,

    /// The version to go back to: its digest, or enough of its start to be unique.
    #[arg(long, value_name = "DIGEST")]
    to: Option<String>,

    /// Who rolls back, for the history; `$USER@<host>` by default.
    #[arg(long, value_name = "NAME")]
    by: Option<String>,

    #[command(flatten)]
    check: Check,
}

impl Rollback {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let target = self.target.clone();
        target.run(self)
    }
}

impl RegistryCommand for Rollback {
    async fn run_on<K: Sink>(
        self,
        registry: Registry<K>,
        config: &PipelineConfig,
        cache_dir: Option<PathBuf>,
    ) -> anyhow::Result<ExitCode> {
        let seen = current(&registry).await?;
        let components = registry.components().await?;
        let to = rollback_target(&seen.pointer, self.to.as_deref(), &components)?;
        if to == seen.pointer.current {
            println!("pipeline `{}` already runs {to}", registry.pipeline());
            return Ok(ExitCode::SUCCESS);
        }
        // It loaded when it was deployed; check again, in case it was put there by hand.
        let wasm = registry.download(&to).await?;
        let loader = section_loader(&config.transform, cache_dir, self.check.compiler())?;
        tokio::task::block_in_place(|| loader.load(&wasm))
            .with_context(|| format!("refused to roll back to {to}; nothing was changed"))?;
        let by = self.by.unwrap_or_else(default_author);
        registry
            .move_to(Some(&seen), &to, Action::Rollback, &by)
            .await?;
        println!(
            "rolled pipeline `{}` back to {to} (was {})",
            registry.pipeline(),
            short(&seen.pointer.current)
        );
        Ok(ExitCode::SUCCESS)
    }
}

/// The versions stored for a pipeline, and how its pointer moved.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    wrt transforms list --config pipeline.toml\n  \
    wrt transforms history --config pipeline.toml")]
pub struct Transforms {
    #[command(subcommand)]
    command: TransformsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum TransformsCommand {
    /// Every stored version; the current one is marked.
    #[command(after_help = "Example:\n  wrt transforms list --config pipeline.toml")]
    List(Target),
    /// Every move of the pointer, oldest first: when, what, who, from which version.
    #[command(after_help = "Example:\n  wrt transforms history --config pipeline.toml")]
    History(Target),
    /// How the shadow's outputs compare with the current version's, per host and in all:
    /// events compared, identical, different, dead letters of one side only, and sample
    /// differences as unified diffs with their source position.
    #[command(after_help = "Example:\n  wrt transforms diff --config pipeline.toml --samples 3")]
    Diff(Diff),
}

#[derive(Debug, clap::Args)]
struct Diff {
    #[command(flatten)]
    target: Target,

    /// How many differences to show.
    #[arg(long, default_value_t = 5, value_name = "N")]
    samples: usize,

    /// Print the hosts' reports and the total as JSON.
    #[arg(long)]
    json: bool,
}

impl Transforms {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self.command {
            TransformsCommand::List(target) => target.run(List),
            TransformsCommand::History(target) => target.run(History),
            TransformsCommand::Diff(diff) => {
                let target = diff.target.clone();
                target.run(diff)
            }
        }
    }
}

impl RegistryCommand for Diff {
    async fn run_on<K: Sink>(
        self,
        registry: Registry<K>,
        _: &PipelineConfig,
        _: Option<PathBuf>,
    ) -> anyhow::Result<ExitCode> {
        let seen = current(&registry).await?;
        let pipeline = registry.pipeline();
        let Some(shadow) = seen.pointer.shadow.clone() else {
            bail!(
                "pipeline `{pipeline}` has no shadow; deploy one with `wrt deploy \
                 <transform.wasm> --shadow`"
            );
        };
        let mut hosts = Vec::new();
        for (host, body) in registry.shadow_reports().await? {
            let report: ShadowStatus = serde_json::from_slice(&body)
                .with_context(|| format!("the shadow report of host {host} is damaged"))?;
            // Reports of earlier shadows stay until their host runs another.
            if report.digest == shadow {
                hosts.push((host, report));
            }
        }
        let mut total = ShadowStatus {
            digest: shadow.clone(),
            ..ShadowStatus::default()
        };
        for (_, report) in &hosts {
            total.add(report);
        }
        if self.json {
            let hosts: serde_json::Map<String, serde_json::Value> = hosts
                .iter()
                .map(|(host, r)| (host.clone(), serde_json::to_value(r).expect("serializes")))
                .collect();
            let out = serde_json::json!({ "shadow": shadow, "current": seen.pointer.current,
                                          "hosts": hosts, "total": total });
            println!("{}", serde_json::to_string_pretty(&out)?);
            return Ok(ExitCode::SUCCESS);
        }
        println!(
            "shadow {} beside current {} in pipeline `{pipeline}`, {} host(s) reporting",
            short(&shadow),
            short(&seen.pointer.current),
            hosts.len()
        );
        println!(
            "{:<28}{:>10}{:>11}{:>11}{:>14}{:>15}{:>8}",
            "host", "compared", "identical", "different", "shadow-only", "current-only", "cost"
        );
        let line = |name: &str, report: &ShadowStatus| {
            let r = &report.compared;
            let total_s = report.shadow_seconds + report.current_seconds;
            let cost = if total_s > 0.0 {
                format!("{:.0}%", 100.0 * report.shadow_seconds / total_s)
            } else {
                "-".into()
            };
            println!(
                "{name:<28}{:>10}{:>11}{:>11}{:>14}{:>15}{cost:>8}",
                r.compared,
                r.identical,
                r.different,
                r.shadow_only_dead_letters,
                r.current_only_dead_letters
            );
        };
        for (host, report) in &hosts {
            line(host, report);
        }
        line("total", &total);
        println!(
            "(shadow-only and current-only count dead letters; cost is the shadow's share of the transform time)"
        );
        for sample in total.compared.samples.iter().take(self.samples) {
            println!("\nat {}:\n{}", sample.position, sample.diff.trim_end());
        }
        Ok(ExitCode::SUCCESS)
    }
}

struct List;

impl RegistryCommand for List {
    async fn run_on<K: Sink>(
        self,
        registry: Registry<K>,
        _: &PipelineConfig,
        _: Option<PathBuf>,
    ) -> anyhow::Result<ExitCode> {
        let seen = registry.pointer().await?;
        for digest in registry.components().await? {
            let last_move = seen
                .as_ref()
                .and_then(|s| s.pointer.history.iter().rev().find(|m| m.digest == digest));
            let current = seen.as_ref().is_some_and(|s| s.pointer.current == digest);
            println!(
                "{digest}  {:<8} {}",
                if current { "current" } else { "" },
                last_move.map_or("never deployed".into(), |m| format!(
                    "last pointed at {} by {}",
                    m.at, m.by
                ))
            );
        }
        Ok(ExitCode::SUCCESS)
    }
}

struct History;

impl RegistryCommand for History {
    async fn run_on<K: Sink>(
        self,
        registry: Registry<K>,
        _: &PipelineConfig,
        _: Option<PathBuf>,
    ) -> anyhow::Result<ExitCode> {
        let seen = current(&registry).await?;
        for m in &seen.pointer.history {
            let action = m.action.as_str();
            println!(
                "{}  {action:<8}  {}  by {}  (was {})",
                m.at,
                m.digest,
                m.by,
                m.previous.as_deref().map_or("nothing".into(), short)
            );
        }
        Ok(ExitCode::SUCCESS)
    }
}

async fn current<K: Sink>(registry: &Registry<K>) -> Result<Seen, RegistryError> {
    registry
        .pointer()
        .await?
        .ok_or_else(|| RegistryError::NothingDeployed(registry.pipeline().to_string()))
}

fn short(digest: &str) -> String {
    digest.chars().take(12).collect()
}

pub(super) fn default_author() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".into());
    format!("{user}@{host}")
}
