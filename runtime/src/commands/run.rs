use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::{Notify, mpsc, watch};
use wrt::admin::Admin;
use wrt::config::{
    BatchConfig, FileSource, LocalSink, PipelineConfig, SinkConfig, SourceConfig, TransformSection,
};
use wrt::pipeline::{self, Options, Summary};
use wrt::registry::Registry;
use wrt::sink::{LocalDir, Sink};
use wrt::source::{self, MemorySource, Source, kafka::Kafka};
use wrt::telemetry::Telemetry;
use wrt::transform::sandbox::{Loader, WasmTransform};
use wrt::transform::watch::{Origin, Watcher};
use wrt::transform::{Current, Transform};

use super::{key_value, load_file, s3_sink, section_loader};

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
        let loader = section_loader(section, self.cache_dir.clone())?;
        if self.check {
            let transform = load_file(&loader, &section.path)?;
            println!(
                "ok: the configuration is valid and {} loads ({})",
                section.path.display(),
                &transform.digest()[..12]
            );
            return Ok(ExitCode::SUCCESS);
        }
        let options = Options {
            stop_when_idle: self.stop_when_idle.map(Duration::from_secs_f64),
            ..Options::from_config(&config.batch).map_err(anyhow::Error::msg)?
        };

        let runtime = tokio::runtime::Runtime::new()?;
        let host = Host {
            config: &config,
            loader,
            options,
            watch: self.watch,
        };
        let (summary, digest) = runtime.block_on(async {
            match &config.sink {
                SinkConfig::Local(local) => host.run(LocalDir::new(&local.path)).await,
                SinkConfig::S3(s3) => host.run(s3_sink(s3).await?).await,
            }
        })?;
        // A version still loading on a blocking thread must not hold the exit up.
        runtime.shutdown_timeout(Duration::from_secs(1));

        if self.json {
            println!("{}", serde_json::to_string_pretty(&summary)?);
        } else {
            print_summary(&summary, &digest, &config.sink);
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
                ..BatchConfig::default()
            },
            sink: SinkConfig::Local(LocalSink {
                path: self.out.clone(),
            }),
            registry: None,
            admin: None,
        }
    }
}

/// One pipeline on this host: its versions, its admin server, its data path.
struct Host<'a> {
    config: &'a PipelineConfig,
    loader: Loader,
    options: Options,
    watch: bool,
}

impl Host<'_> {
    /// Runs until the source ends or a signal stops it; returns the summary and the digest
    /// of the version running at the end.
    async fn run<K: Sink + Clone + Send + Sync + 'static>(
        self,
        sink: K,
    ) -> anyhow::Result<(Summary, String)> {
        let config = self.config;
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("stopping: writing what is buffered, then committing");
            let _ = stop.send(true);
        });

        let registry = config.registry.as_ref().map(|r| {
            (
                Registry::new(sink.clone(), &config.name),
                r.poll_interval_ms,
            )
        });
        let (transform, refused) = match &registry {
            Some((registry, _)) => self.deployed_or_file(registry).await?,
            None => (self.load_file(&config.transform.path)?, None),
        };
        let telemetry = Arc::new(Telemetry::new(&config.name, transform.digest()));
        if let Some((digest, reason)) = refused {
            telemetry.refused(&digest, &reason);
        }
        let check_now = Arc::new(Notify::new());
        let origin = match registry {
            Some((registry, interval)) => Some((Origin::Registry(registry), interval)),
            None if self.watch => Some((Origin::File(config.transform.path.clone()), 500)),
            None => None,
        };
        let mut current = match origin {
            Some((origin, interval_ms)) => {
                let (versions, newer) = mpsc::channel(1);
                let watcher = Watcher {
                    origin,
                    loader: self.loader.clone(),
                    interval: Duration::from_millis(interval_ms),
                    check_now: Arc::clone(&check_now),
                    telemetry: Arc::clone(&telemetry),
                };
                tokio::spawn(watcher.run(
                    transform.digest().to_string(),
                    versions,
                    stopped.clone(),
                ));
                Current::watched(Box::new(transform), newer)
            }
            None => Current::fixed(Box::new(transform)),
        };
        if let Some(admin) = &config.admin {
            Admin::start(admin, Arc::clone(&telemetry), check_now, stopped.clone())
                .await
                .with_context(|| {
                    format!(
                        "admin.listen: cannot listen on {}; pick a free port",
                        admin.listen
                    )
                })?;
        }

        let summary = match &config.source {
            SourceConfig::Kafka(kafka) => {
                let mut source = Kafka::connect(kafka, &config.group_id(kafka), stopped)
                    .context("connecting to Kafka; check source.brokers and source.properties")?;
                drive(&mut source, &mut current, &sink, &self.options, &telemetry).await
            }
            SourceConfig::Sample => {
                let mut source = MemorySource::new(wrt::sample::sample_records());
                drive(&mut source, &mut current, &sink, &self.options, &telemetry).await
            }
            SourceConfig::File(file) => {
                let text = std::fs::read_to_string(&file.path)
                    .with_context(|| format!("reading events from {}", file.path.display()))?;
                let mut source = MemorySource::new(source::records_from_jsonl(&text));
                drive(&mut source, &mut current, &sink, &self.options, &telemetry).await
            }
        }?;
        Ok((summary, current.transform.digest().to_string()))
    }

    /// Loads `path` off the async context: `init` may make blocking WASI calls.
    fn load_file(&self, path: &std::path::Path) -> anyhow::Result<WasmTransform> {
        tokio::task::block_in_place(|| load_file(&self.loader, path))
    }

    /// The version the registry names; if it does not load (or none was deployed yet),
    /// `transform.path`, and the refusal to report.
    async fn deployed_or_file<K: Sink>(
        &self,
        registry: &Registry<K>,
    ) -> anyhow::Result<(WasmTransform, Option<(String, String)>)> {
        let path = &self.config.transform.path;
        let Some(seen) = registry
            .pointer()
            .await
            .context("reading the registry's pointer")?
        else {
            tracing::info!(
                pipeline = registry.pipeline(),
                "nothing deployed yet; running {} until a version is",
                path.display()
            );
            return Ok((self.load_file(path)?, None));
        };
        let digest = seen.pointer.current;
        let deployed = match registry.download(&digest).await {
            Ok(wasm) => {
                let loader = self.loader.clone();
                tokio::task::spawn_blocking(move || loader.load(&wasm))
                    .await?
                    .map_err(anyhow::Error::from)
            }
            Err(e) => Err(e.into()),
        };
        match deployed {
            Ok(transform) => Ok((transform, None)),
            Err(e) => {
                tracing::error!(version = %digest,
                    "refusing the deployed version ({e:#}); running {} instead", path.display());
                let reason = format!("{e:#}");
                Ok((self.load_file(path)?, Some((digest, reason))))
            }
        }
    }
}

async fn drive<S: Source, K: Sink>(
    source: &mut S,
    current: &mut Current,
    sink: &K,
    options: &Options,
    telemetry: &Telemetry,
) -> anyhow::Result<Summary> {
    let progress = match source.len_hint() {
        Some(len) => ProgressBar::new(len).with_style(
            ProgressStyle::with_template(
                "{spinner} {bar:40} {pos}/{len} records  {per_sec}  eta {eta}",
            )
            .expect("a valid template"),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {pos} records  {per_sec}")
                .expect("a valid template"),
        ),
    };
    let summary = pipeline::run(source, current, sink, options, telemetry, &progress).await?;
    progress.finish_and_clear();
    Ok(summary)
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}

fn print_summary(s: &Summary, digest: &str, sink: &SinkConfig) {
    println!(
        "wrt run: {} records in {:.2} s ({:.0} records/s), transform {}",
        s.records_in,
        s.elapsed.as_secs_f64(),
        s.throughput(),
        &digest[..12],
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
