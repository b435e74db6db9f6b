//! A host: what one pipeline file describes, assembled and run — its sink, the transform
//! version it runs and the ones deployed after it, its admin server, its source, then the
//! data path ([`crate::pipeline`]). `wrt run` and the benchmark's rows run this same code.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::{Notify, mpsc, watch};
use tracing::Instrument;

use crate::admin::Admin;
use crate::config::{CatalogConfig, PipelineConfig, S3Sink, SinkConfig, SourceConfig};
use crate::pipeline::catalog::Catalog;
use crate::pipeline::catalog::glue::Glue;
use crate::pipeline::sink::s3::S3;
use crate::pipeline::sink::{LocalDir, Sink, SinkError};
use crate::pipeline::source::kafka::{Kafka, Span};
use crate::pipeline::source::{self, MemorySource, Source, SourceError};
use crate::pipeline::transform::sandbox::{LoadError, Loader, WasmTransform};
use crate::pipeline::transform::{Current, Transform};
use crate::pipeline::{self, Options, PipelineError, Summary};
use crate::registry::watch::{Origin, Watcher};
use crate::registry::{Registry, RegistryError};
use crate::telemetry::Telemetry;

/// Why a host could not start or stopped early. Each says what to check.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(
        "reading the transform {path}: {source}; build a guest with \
         `cargo build --release --target wasm32-wasip2` (see guest-examples/)"
    )]
    ReadTransform {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("loading {path}: {source}")]
    Load { path: PathBuf, source: LoadError },
    #[error("reading the registry's pointer: {0}")]
    Registry(#[from] RegistryError),
    #[error("reading events from {path}: {source}")]
    Events {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the bucket cannot be used: {0}{hint}", hint = bucket_hint(.0))]
    Bucket(SinkError),
    #[error("the catalog cannot be used: {0}")]
    Catalog(SinkError),
    #[error("admin.listen: cannot listen on {listen} ({source}); pick a free port")]
    Admin {
        listen: String,
        source: std::io::Error,
    },
    #[error("connecting to Kafka: {0}; check source.brokers and source.properties")]
    Kafka(SourceError),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
}

/// A refusal names its own fix; an unreachable store has these suspects.
fn bucket_hint(error: &SinkError) -> &'static str {
    if error.is_transient() {
        "; check sink.endpoint-url, sink.region and the network"
    } else {
        ""
    }
}

/// Which transform a host runs.
pub enum Transforms {
    /// Components: the version deployed to the registry if the file has a `[registry]`,
    /// else `transform.path`, reloaded when it changes if `watch`.
    Components { loader: Loader, watch: bool },
    /// A transform loaded already, never replaced: the version `wrt replay` was given, or
    /// code compiled into the process (the benchmark's native row).
    Fixed(Box<dyn Transform>),
}

/// One pipeline on this host.
pub struct Host<'a> {
    pub config: &'a PipelineConfig,
    pub transforms: Transforms,
    pub options: Options,
    /// Show progress on standard error (a bar for a finite input, a spinner otherwise).
    pub progress: bool,
    /// Read only these offsets of the Kafka source, then stop: `wrt replay`.
    pub replay: Option<Vec<Span>>,
}

impl Host<'_> {
    /// Runs until the source ends or SIGTERM / Ctrl-C stops it: what is buffered is
    /// written and committed first.
    pub async fn run(self) -> Result<Summary, HostError> {
        // Every line the pipeline logs, its guest's included, names it: a host may run several.
        // At error level, so that no log filter that lets a line through drops its span.
        let span = tracing::error_span!("pipeline", name = %self.config.name);
        match &self.config.sink {
            SinkConfig::Local(local) => {
                self.run_with(LocalDir::new(&local.path))
                    .instrument(span)
                    .await
            }
            SinkConfig::S3(s3) => {
                let sink = s3_sink(s3).await?;
                let mut host = self;
                if let Some(CatalogConfig::Glue(glue)) = &host.config.catalog {
                    let glue = Glue::new(glue, s3).await;
                    glue.check().await.map_err(HostError::Catalog)?;
                    host.options.catalog = Some(Arc::new(Catalog::new(glue)));
                }
                host.run_with(sink).instrument(span).await
            }
        }
    }

    async fn run_with<K: Sink + Clone + Send + Sync + 'static>(
        self,
        sink: K,
    ) -> Result<Summary, HostError> {
        let config = self.config;
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(
            async move {
                shutdown_signal().await;
                tracing::info!("stopping: writing what is buffered, then committing");
                let _ = stop.send(true);
            }
            .in_current_span(),
        );

        let check_now = Arc::new(Notify::new());
        let (current, telemetry) = match self.transforms {
            Transforms::Fixed(transform) => {
                let telemetry = Arc::new(Telemetry::new(&config.name, transform.digest()));
                (Current::fixed(transform), telemetry)
            }
            Transforms::Components { loader, watch } => {
                let registry = config.registry.as_ref().map(|r| {
                    (
                        Registry::new(sink.clone(), &config.name),
                        r.poll_interval_ms,
                    )
                });
                let path = &config.transform.path;
                let (transform, refused) = match &registry {
                    Some((registry, _)) => deployed_or_file(&loader, registry, path).await?,
                    None => (load_in_place(&loader, path)?, None),
                };
                let telemetry = Arc::new(Telemetry::new(&config.name, transform.digest()));
                if let Some((digest, reason)) = refused {
                    telemetry.refused(&digest, &reason);
                }
                if let Some((registry, _)) = &registry {
                    let report =
                        report_shadow(registry.clone(), Arc::clone(&telemetry), stopped.clone());
                    tokio::spawn(report.in_current_span());
                }
                let origin = match registry {
                    Some((registry, interval)) => Some((Origin::Registry(registry), interval)),
                    None if watch => Some((Origin::File(path.clone()), 500)),
                    None => None,
                };
                let current = match origin {
                    Some((origin, interval_ms)) => {
                        let (versions, newer) = mpsc::channel(1);
                        let watcher = Watcher {
                            origin,
                            loader,
                            interval: Duration::from_millis(interval_ms),
                            check_now: Arc::clone(&check_now),
                            telemetry: Arc::clone(&telemetry),
                        };
                        tokio::spawn(
                            watcher
                                .run(transform.digest().to_string(), versions, stopped.clone())
                                .in_current_span(),
                        );
                        Current::watched(Box::new(transform), newer)
                    }
                    None => Current::fixed(Box::new(transform)),
                };
                (current, telemetry)
            }
        };
        if let Some(admin) = &config.admin {
            Admin::start(admin, Arc::clone(&telemetry), check_now, stopped.clone())
                .await
                .map_err(|source| HostError::Admin {
                    listen: admin.listen.clone(),
                    source,
                })?;
        }

        let drive = Drive {
            current,
            sink: &sink,
            options: &self.options,
            telemetry: &telemetry,
            progress: self.progress,
        };
        match &config.source {
            SourceConfig::Kafka(kafka) => {
                let group = config.group_id(kafka);
                let source = match &self.replay {
                    Some(spans) => Kafka::replay(kafka, &group, spans, stopped),
                    None => Kafka::connect(kafka, &group, stopped),
                }
                .map_err(HostError::Kafka)?;
                drive.run(source).await
            }
            SourceConfig::Sample => {
                drive
                    .run(MemorySource::new(crate::sample::sample_records()))
                    .await
            }
            SourceConfig::File(file) => {
                let text =
                    std::fs::read_to_string(&file.path).map_err(|source| HostError::Events {
                        path: file.path.clone(),
                        source,
                    })?;
                drive
                    .run(MemorySource::new(source::records_from_jsonl(&text)))
                    .await
            }
        }
    }
}

/// The data path with its progress display.
struct Drive<'a, K> {
    current: Current,
    sink: &'a K,
    options: &'a Options,
    telemetry: &'a Arc<Telemetry>,
    progress: bool,
}

impl<K: Sink + Clone + Send + Sync + 'static> Drive<'_, K> {
    async fn run<S: Source>(self, mut source: S) -> Result<Summary, HostError> {
        let progress = match (self.progress, source.len_hint()) {
            (false, _) => ProgressBar::hidden(),
            (true, Some(len)) => ProgressBar::new(len).with_style(
                ProgressStyle::with_template(
                    "{spinner} {bar:40} {pos}/{len} records  {per_sec}  eta {eta}",
                )
                .expect("a valid template"),
            ),
            (true, None) => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{spinner} {pos} records  {per_sec}")
                    .expect("a valid template"),
            ),
        };
        let summary = pipeline::run(
            &mut source,
            self.current,
            self.sink,
            self.options,
            self.telemetry,
            &progress,
        )
        .await?;
        progress.finish_and_clear();
        Ok(summary)
    }
}

/// Reads a component file.
pub fn read_component(path: &Path) -> Result<Vec<u8>, HostError> {
    std::fs::read(path).map_err(|source| HostError::ReadTransform {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads, compiles (or takes from the cache) and initialises the component at `path`.
pub fn load_file(loader: &Loader, path: &Path) -> Result<WasmTransform, HostError> {
    let wasm = read_component(path)?;
    loader.load(&wasm).map_err(|source| HostError::Load {
        path: path.to_path_buf(),
        source,
    })
}

/// [`load_file`] from inside the runtime: `init` may make blocking WASI calls.
fn load_in_place(loader: &Loader, path: &Path) -> Result<WasmTransform, HostError> {
    tokio::task::block_in_place(|| load_file(loader, path))
}

/// The version the registry names; if it does not load (or none was deployed yet), `path`,
/// and the refusal to report.
async fn deployed_or_file<K: Sink>(
    loader: &Loader,
    registry: &Registry<K>,
    path: &Path,
) -> Result<(WasmTransform, Option<(String, String)>), HostError> {
    let Some(seen) = registry.pointer().await? else {
        tracing::info!(
            pipeline = registry.pipeline(),
            "nothing deployed yet; running {} until a version is",
            path.display()
        );
        return Ok((load_in_place(loader, path)?, None));
    };
    let digest = seen.pointer.current;
    let deployed = match registry.download(&digest).await {
        Ok(wasm) => {
            let loader = loader.clone();
            let span = tracing::Span::current();
            match tokio::task::spawn_blocking(move || span.in_scope(|| loader.load(&wasm))).await {
                Ok(loaded) => loaded.map_err(|e| e.to_string()),
                Err(e) => Err(format!("the loading thread failed: {e}")),
            }
        }
        Err(e) => Err(e.to_string()),
    };
    match deployed {
        Ok(transform) => Ok((transform, None)),
        Err(reason) => {
            tracing::error!(version = %digest,
                "refusing the deployed version ({reason}); running {} instead", path.display());
            Ok((load_in_place(loader, path)?, Some((digest, reason))))
        }
    }
}

/// How often a host running a shadow reports it to the registry.
const SHADOW_REPORT_INTERVAL: Duration = Duration::from_secs(2);

/// While a shadow runs, writes this host's comparison to the registry every
/// [`SHADOW_REPORT_INTERVAL`] and once more at the end, where `wrt transforms diff` adds up
/// every host's.
async fn report_shadow<K: Sink>(
    registry: Registry<K>,
    telemetry: Arc<Telemetry>,
    mut stop: watch::Receiver<bool>,
) {
    let host = format!(
        "{}-{}",
        std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
            .map_or_else(|| "host".into(), |h| h.trim().to_string()),
        std::process::id()
    );
    let mut reported = None;
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep(SHADOW_REPORT_INTERVAL) => false,
            _ = stop.changed() => true,
        };
        if let Some(shadow) = telemetry.status().shadow
            && reported.as_ref() != Some(&shadow)
        {
            let body = serde_json::to_vec_pretty(&shadow).expect("a report serializes");
            match registry.report_shadow(&host, body).await {
                Ok(()) => reported = Some(shadow),
                Err(e) => tracing::warn!("writing this host's shadow report: {e}"),
            }
        }
        if stopping {
            return;
        }
    }
}

/// The S3 sink of a pipeline, checked reachable.
pub async fn s3_sink(config: &S3Sink) -> Result<S3, HostError> {
    let sink = S3::new(config).await;
    sink.check().await.map_err(HostError::Bucket)?;
    Ok(sink)
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
