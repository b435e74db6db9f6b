//! One file per subcommand, each a `clap::Args` with a `run` method.

mod deploy;
mod infra;
mod new;
mod replay;
mod replay_check;
mod run;
mod sample;
mod test;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use wrt::config::TransformSection;
use wrt::host::{load_file, read_component, s3_sink};
use wrt::pipeline::transform::sandbox::{
    Compiler, Limits, Loader, Sandbox, TransformConfig, WasmTransform,
};

/// wrt: run WebAssembly transforms over Debezium change events and land them in a data lake.
#[derive(Debug, clap::Parser)]
#[command(version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,

    /// How log lines on standard error look: `text`, or `json` (one object a line, for
    /// journald, CloudWatch and other collectors). Levels come from WRT_LOG (default warn).
    #[arg(long, global = true, value_enum, env = "WRT_LOG_FORMAT", default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    Run(run::Run),
    Test(test::Test),
    Sample(sample::Sample),
    Deploy(deploy::Deploy),
    Rollback(deploy::Rollback),
    Transforms(deploy::Transforms),
    Infra(infra::Infra),
    New(new::New),
    Verify(verify::Verify),
    Replay(replay::Replay),
}

impl Cli {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self.command {
            Command::Run(cmd) => cmd.run(),
            Command::Test(cmd) => cmd.run(),
            Command::Sample(cmd) => cmd.run(),
            Command::Deploy(cmd) => cmd.run(),
            Command::Rollback(cmd) => cmd.run(),
            Command::Transforms(cmd) => cmd.run(),
            Command::Infra(cmd) => cmd.run(),
            Command::New(cmd) => cmd.run(),
            Command::Verify(cmd) => cmd.run(),
            Command::Replay(cmd) => cmd.run(),
        }
    }
}

/// How to load and sandbox a transform component.
#[derive(Debug, Clone, clap::Args)]
struct TransformArgs {
    /// The transform: a WebAssembly component built against sdk/wit/.
    transform: PathBuf,

    /// Most linear memory one instance may use, in MiB.
    #[arg(long, default_value_t = 128, value_name = "MIB")]
    memory_mb: usize,

    /// Longest one transform call may run, in milliseconds.
    #[arg(long, default_value_t = 5_000, value_name = "MS")]
    timeout_ms: u64,

    /// Where compiled components are cached.
    #[arg(long, env = "WRT_CACHE_DIR", value_name = "DIR")]
    cache_dir: Option<PathBuf>,
}

impl TransformArgs {
    fn load(&self, config: &[(String, String)]) -> anyhow::Result<WasmTransform> {
        let loader = loader(
            self.memory_mb,
            self.timeout_ms,
            self.cache_dir.clone(),
            config.iter().cloned().collect(),
            Compiler::Optimizing,
        )?;
        Ok(load_file(&loader, &self.transform)?)
    }
}

/// A sandbox with these limits, transform configuration and compiler.
fn loader(
    memory_mb: usize,
    timeout_ms: u64,
    cache_dir: Option<PathBuf>,
    config: TransformConfig,
    compiler: Compiler,
) -> anyhow::Result<Loader> {
    let sandbox = Sandbox::with_compiler(cache_dir.or_else(default_cache_dir), compiler)?;
    let limits = Limits {
        memory: memory_mb << 20,
        call_timeout: Duration::from_millis(timeout_ms),
    };
    Ok(Loader::new(sandbox, config, limits))
}

/// A sandbox with a pipeline's transform configuration and limits.
fn section_loader(
    section: &TransformSection,
    cache_dir: Option<PathBuf>,
    compiler: Compiler,
) -> anyhow::Result<Loader> {
    loader(
        section.memory_mb,
        section.timeout_ms,
        cache_dir,
        section.config.clone(),
        compiler,
    )
}

fn default_cache_dir() -> Option<PathBuf> {
    let home = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(home.join("wrt").join("components"))
}

/// Parses `key=value` for transform configuration flags.
fn key_value(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {raw:?}")),
    }
}
