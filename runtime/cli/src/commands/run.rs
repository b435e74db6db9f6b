use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use wrt::config::{
    BatchConfig, FileSource, LocalSink, PipelineConfig, PipelineSection, RetrySection, SinkConfig,
    SourceConfig, TransformSection,
};
use wrt::host::{Host, Transforms, load_file};
use wrt::model::Format;
use wrt::pipeline::transform::sandbox::Compiler;
use wrt::pipeline::{Options, Summary};

use super::{key_value, section_loader};

/// Run a transform over change events and write the results as objects.
///
/// With a transform and nothing else, it reads the bundled sample stream (an e-commerce
/// database's Debezium events: snapshot reads, inserts, updates, deletes) and writes into a
/// local folder laid out exactly as the S3 bucket will be. With --config, it runs the
/// pipeline a `pipeline.toml` describes (Kafka → transform → S3) until stopped; SIGTERM or
/// Ctrl-C writes what is buffered, commits, and exits.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    wrt run guest-examples/target/wasm32-wasip2/release/pii_mask.wasm --set salt=s3cret --out lake\n  \
    wrt run pii_mask.wasm --set salt=s3cret --format parquet --out lake\n  \
    wrt run --config pipeline.toml --check\n  \
    wrt run --config pipeline.toml\n  \
    wrt run --config pipeline.toml --watch   # reload transform.path when rebuilt")]
pub struct Run {
    /// The transform, a WebAssembly component built against sdk/wit/ (without --config).
    #[arg(required_unless_present = "config", conflicts_with = "config")]
    transform: Option<PathBuf>,

    /// Run the pipeline described in this file (see docs/configuration.md).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Validate the configuration and the transform, then exit without connecting.
    #[arg(long)]
    check: bool,

    /// Read these events (JSON Lines, as `wrt sample` writes) instead of the bundled sample.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    events: Option<PathBuf>,

    /// The folder standing in for the S3 bucket.
    #[arg(
        long,
        default_value = "lake",
        value_name = "DIR",
        conflicts_with = "config"
    )]
    out: PathBuf,

    /// Transform configuration, repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = key_value, conflicts_with = "config")]
    settings: Vec<(String, String)>,

    /// Source records per transform call.
    #[arg(long, default_value_t = BatchConfig::default().batch_size, value_name = "N", conflicts_with = "config")]
    batch_size: usize,

    /// Source records per object window (per Kafka partition).
    #[arg(long, default_value_t = BatchConfig::default().max_records, value_name = "N", conflicts_with = "config")]
    max_records: u64,

    /// Hive-style path under each destination, from the commit time.
    #[arg(long, default_value_t = BatchConfig::default().partition_template, value_name = "TEMPLATE",
          conflicts_with = "config")]
    partition_template: String,

    /// How objects are written: gzip JSON Lines, or Parquet with typed columns.
    #[arg(long, default_value = "jsonl", value_parser = ["jsonl", "parquet"], conflicts_with = "config")]
    format: String,

    /// Most linear memory one transform instance may use, in MiB.
    #[arg(
        long,
        default_value_t = 128,
        value_name = "MIB",
        conflicts_with = "config"
    )]
    memory_mb: usize,

    /// Longest one transform call may run, in milliseconds.
    #[arg(
        long,
        default_value_t = 5_000,
        value_name = "MS",
        conflicts_with = "config"
    )]
    timeout_ms: u64,

    /// Where compiled components are cached.
    #[arg(long, env = "WRT_CACHE_DIR", value_name = "DIR")]
    cache_dir: Option<PathBuf>,

    /// Stop once no record has arrived for this many seconds and all is written.
    #[arg(long, value_name = "SECS")]
    stop_when_idle: Option<f64>,

    /// Reload transform.path whenever it changes (for development): the new version is
    /// loaded beside the running one and switched in at a batch boundary, as a deploy is.
    #[arg(long)]
    watch: bool,

    /// Threads that decode and transform (default: one per core).
    #[arg(long, value_name = "N", conflicts_with = "config")]
    lanes: Option<usize>,

    /// Print the summary as JSON on standard output.
    #[arg(long)]
    json: bool,
}

impl Run {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let config = match &self.config {
            Some(path) => PipelineConfig::load(path)?,
            None => {
                let config = self.local_config();
                config.validate().map_err(|errors| {
                    anyhow::anyhow!(wrt::config::LoadError::Invalid(errors).to_string())
                })?;
                config
            }
        };
        anyhow::ensure!(
            !(self.watch && config.registry.is_some()),
            "--watch reloads transform.path, but this pipeline takes its versions from the \
             registry; remove --watch, or the [registry] section"
        );
        let section = &config.transform;
        let loader = section_loader(section, self.cache_dir.clone(), Compiler::Optimizing)?;
        if self.check {
            let transform = load_file(&loader, &section.path)?;
            println!(
                "ok: the configuration is valid and {} loads ({})",
                section.path.display(),
                &wrt::pipeline::transform::Transform::digest(&transform)[..12]
            );
            return Ok(ExitCode::SUCCESS);
        }
        let options = Options {
            stop_when_idle: self.stop_when_idle.map(Duration::from_secs_f64),
            ..Options::from_config(&config.batch, &config.pipeline, &config.retry)
                .map_err(anyhow::Error::msg)?
        };

        let runtime = tokio::runtime::Runtime::new()?;
        let host = Host {
            config: &config,
            transforms: Transforms::Components {
                loader,
                watch: self.watch,
            },
            options,
            progress: true,
            replay: None,
        };
        let summary = runtime.block_on(host.run())?;
        // A version still loading on a blocking thread must not hold the exit up.
        runtime.shutdown_timeout(Duration::from_secs(1));

        if self.json {
            println!("{}", serde_json::to_string_pretty(&summary)?);
        } else {
            print_summary(&summary, &config.sink);
        }
        Ok(ExitCode::SUCCESS)
    }

    /// The pipeline that the flags describe: a local input into a local folder.
    fn local_config(&self) -> PipelineConfig {
        PipelineConfig {
            name: "local".into(),
            source: match &self.events {
                Some(path) => SourceConfig::File(FileSource { path: path.clone() }),
                None => SourceConfig::Sample,
            },
            transform: TransformSection {
                path: self.transform.clone().unwrap_or_default(),
                memory_mb: self.memory_mb,
                timeout_ms: self.timeout_ms,
                config: self.settings.iter().cloned().collect(),
            },
            batch: BatchConfig {
                batch_size: self.batch_size,
                max_records: self.max_records,
                partition_template: self.partition_template.clone(),
                // A finite local input closes windows by count only, so two runs write the
                // same bytes however fast the machine is.
                max_age_ms: u64::MAX,
                format: match self.format.as_str() {
                    "parquet" => Format::Parquet,
                    _ => Format::Jsonl,
                },
                ..BatchConfig::default()
            },
            pipeline: PipelineSection {
                lanes: self.lanes,
                ..PipelineSection::default()
            },
            sink: SinkConfig::Local(LocalSink {
                path: self.out.clone(),
            }),
            retry: RetrySection::default(),
            registry: None,
            admin: None,
            catalog: None,
        }
    }
}

pub(super) fn print_summary(s: &Summary, sink: &SinkConfig) {
    println!(
        "wrt run: {} records in {:.2} s ({:.0} records/s), transform {}",
        s.records_in,
        s.elapsed.as_secs_f64(),
        s.throughput(),
        &s.transform[..s.transform.len().min(12)],
    );
    let rows = [
        ("change events", s.change_events),
        ("records out", s.records_out),
        ("dead letters", s.dead_letters),
        ("failed calls", s.failed_calls),
        ("version swaps", s.swaps),
        ("tombstones", s.tombstones),
        ("heartbeats", s.heartbeats),
        ("schema changes", s.schema_changes),
    ];
    for (name, n) in rows {
        println!("  {name:<16}{n:>10}");
    }
    let target = match sink {
        SinkConfig::Local(local) => local.path.display().to_string(),
        SinkConfig::S3(s3) => format!("s3://{}/{}", s3.bucket, s3.prefix),
    };
    println!(
        "  {:<16}{:>10}  ({:.1} MiB under {target})",
        "objects",
        s.objects,
        s.bytes_written as f64 / (1 << 20) as f64,
    );
}
