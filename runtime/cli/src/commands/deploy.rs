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
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  \
    wrt deploy pii_mask.wasm --config pipeline.toml \\\n    \
    --events guest-examples/pii-mask/tests/events.jsonl --allow-rejected")]
pub struct Deploy {
    /// The component to ship, built against sdk/wit/.
    transform: PathBuf,

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
        let loader = section_loader(&config.transform, cache_dir, self.check.compiler())?;
        let by = self.by.clone().unwrap_or_else(default_author);
        let batch_size = config.batch.batch_size;
        let message = ship(
            &registry,
            &self.transform,
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
    path: &Path,
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
    if seen.as_ref().is_some_and(|s| s.pointer.current == digest) {
        return Ok(format!(
            "pipeline `{}` already runs {digest}",
            registry.pipeline()
        ));
    }
    registry.upload(&wasm).await?;
    let pointer = registry
        .move_to(seen.as_ref(), &digest, Action::Deploy, by)
        .await?;
    let previous = seen.map_or("nothing".into(), |s| short(&s.pointer.current));
    Ok(format!(
        "deployed {} to pipeline `{}` (was {previous}); hosts switch at their next check",
        pointer.current,
        registry.pipeline(),
    ))
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
}

impl Transforms {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self.command {
            TransformsCommand::List(target) => target.run(List),
            TransformsCommand::History(target) => target.run(History),
        }
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
            let action = match m.action {
                Action::Deploy => "deploy",
                Action::Rollback => "rollback",
            };
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
