//! The processes of rows 1 and 2, started by the harness as `cdc-bench raw|native`.

use std::path::PathBuf;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use wrt::config::{PipelineConfig, SinkConfig, SourceConfig};
use wrt::host::{Host, Transforms};
use wrt::pipeline::Options;
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
        anyhow::ensure!(
            matches!(
                (&config.source, &config.sink),
                (SourceConfig::Kafka(_), SinkConfig::S3(_))
            ),
            "the native row needs a Kafka source and an S3 sink"
        );
        let salt = config
            .transform
            .config
            .get("salt")
            .map_or(SALT, String::as_str);
        let host = Host {
            config: &config,
            transforms: Transforms::Fixed(Box::new(NativePiiMask::new(salt))),
            options: Options::from_config(&config.batch, &config.pipeline, &config.retry)
                .map_err(anyhow::Error::msg)?,
            progress: false,
            replay: None,
        };
        let summary = tokio::runtime::Runtime::new()?.block_on(host.run())?;
        println!("{}", serde_json::to_string(&summary)?);
        Ok(())
    }
}
