//! The processes of rows 1 and 2, started by the harness as `cdc-bench raw|native`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use indicatif::ProgressBar;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use tokio::sync::watch;
use wrt::admin::Admin;
use wrt::config::{PipelineConfig, SinkConfig, SourceConfig};
use wrt::pipeline::{self, Options};
use wrt::sink::s3::S3;
use wrt::source::kafka::Kafka;
use wrt::telemetry::Telemetry;
use wrt::transform::{Current, Transform};
use wrt_bench::SALT;
use wrt_bench::native_pii::NativePiiMask;

use crate::load::client_config;

/// Row 1, the limit: consume every record of the topics with rdkafka as a group member, touch
/// each payload's length and nothing else; commit once all `count` are in, then idle until
/// stopped (the harness reads this process's `/proc` first).
#[derive(Debug, clap::Args)]
pub struct Raw {
    #[arg(long)]
    brokers: String,
    /// Topic regular expression.
    #[arg(long)]
    topics: String,
    #[arg(long)]
    group: String,
    /// Records to read.
    #[arg(long)]
    count: u64,
}

impl Raw {
    pub fn run(self) -> anyhow::Result<()> {
        let consumer: BaseConsumer = client_config(&self.brokers)
            .set("group.id", &self.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .create()?;
        consumer.subscribe(&[self.topics.as_str()])?;
        let (mut records, mut bytes) = (0u64, 0u64);
        while records < self.count {
            match consumer.poll(Duration::from_millis(250)) {
                Some(Ok(m)) => {
                    records += 1;
                    bytes += (m.payload_len() + m.key().map_or(0, <[u8]>::len)) as u64;
                    consumer.store_offset_from_message(&m)?;
                }
                Some(Err(e)) => eprintln!("kafka: {e}"),
                None => {}
            }
        }
        consumer.commit_consumer_state(CommitMode::Sync)?;
        println!("raw: {records} records, {bytes} bytes");
        loop {
            // Keep the group membership alive until the harness stops this process.
            consumer.poll(Duration::from_millis(250));
        }
    }
}

/// Row 2: `wrt run --config` with the PII transform compiled into the host instead of loaded
/// from a component; every other stage (Kafka source, decode, windows, S3 sink, commits) is
/// the same code.
#[derive(Debug, clap::Args)]
pub struct Native {
    /// The same `pipeline.toml` the WASM rows run; `transform.path` is ignored.
    #[arg(long)]
    config: PathBuf,
}

impl Native {
    pub fn run(self) -> anyhow::Result<()> {
        let config = PipelineConfig::load(&self.config)?;
        let (SourceConfig::Kafka(kafka), SinkConfig::S3(s3)) = (&config.source, &config.sink)
        else {
            anyhow::bail!("the native row needs a Kafka source and an S3 sink");
        };
        let options = Options::from_config(&config.batch).map_err(anyhow::Error::msg)?;
        let salt = config
            .transform
            .config
            .get("salt")
            .map_or(SALT, String::as_str);
        let transform = NativePiiMask::new(salt);
        let telemetry = Arc::new(Telemetry::new(&config.name, transform.digest()));
        let mut current = Current::fixed(Box::new(transform));
        let runtime = tokio::runtime::Runtime::new()?;
        let summary = runtime.block_on(async {
            let (stop, stopped) = watch::channel(false);
            tokio::spawn(async move {
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                        .expect("a SIGTERM handler");
                term.recv().await;
                let _ = stop.send(true);
            });
            // The same metrics as `wrt run`: the harness reads where the time went.
            if let Some(admin) = &config.admin {
                Admin::start(
                    admin,
                    Arc::clone(&telemetry),
                    Arc::default(),
                    stopped.clone(),
                )
                .await
                .with_context(|| format!("admin.listen {}", admin.listen))?;
            }
            let sink = S3::new(s3).await;
            sink.check().await.context("the bench bucket")?;
            let mut source = Kafka::connect(kafka, &config.group_id(kafka), stopped)?;
            anyhow::Ok(
                pipeline::run(
                    &mut source,
                    &mut current,
                    &sink,
                    &options,
                    &telemetry,
                    &ProgressBar::hidden(),
                )
                .await?,
            )
        })?;
        println!("{}", serde_json::to_string(&summary)?);
        Ok(())
    }
}
