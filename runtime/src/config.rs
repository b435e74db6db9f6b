//! `pipeline.toml`: what `wrt run --config` runs.
//!
//! Values come from the defaults, then the file, then `WRT_<SECTION>__<KEY>` environment
//! variables (`WRT_SINK__BUCKET=lake`, `WRT_SOURCE__GROUP_ID=g`). [`PipelineConfig::validate`]
//! checks everything that can be checked without I/O (`wrt run --check`), before anything
//! starts; each error names the field, the bad value and the fix.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format as _, Toml};
use serde::{Deserialize, Serialize};

use crate::model::Format;
use crate::pipeline::batch::PartitionTemplate;

/// A whole pipeline: source → transform → batch → sink.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PipelineConfig {
    /// The pipeline's name; the Kafka consumer group is `wrt-<name>` unless set.
    pub name: String,
    /// Where change events come from.
    pub source: SourceConfig,
    /// The transform and its sandbox limits.
    pub transform: TransformSection,
    /// How outputs are batched into objects.
    #[serde(default)]
    pub batch: BatchConfig,
    /// How the work is spread over threads and concurrent writes.
    #[serde(default)]
    pub pipeline: PipelineSection,
    /// Where objects go.
    pub sink: SinkConfig,
    /// How long writes are retried while the store fails.
    #[serde(default)]
    pub retry: RetrySection,
    /// Run the version deployed with `wrt deploy`, and switch as new ones are deployed.
    #[serde(default)]
    pub registry: Option<RegistryConfig>,
    /// The admin HTTP server: health, readiness, metrics, status.
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// A data catalog describing the Parquet destinations as tables.
    #[serde(default)]
    pub catalog: Option<CatalogConfig>,
}

/// Where the Parquet destinations are described as tables, so query engines find them.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum CatalogConfig {
    /// The AWS Glue Data Catalog (what Athena queries).
    Glue(GlueCatalog),
}

/// A Glue database, one table per Parquet destination.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GlueCatalog {
    /// The Glue database; created if missing.
    pub database: String,
    /// Glue's region; the sink's when absent.
    #[serde(default)]
    pub region: Option<String>,
    /// A Glue-compatible server instead of AWS (moto's, in the tests).
    #[serde(default)]
    pub endpoint_url: Option<String>,
}

/// The transform registry, kept beside the lake in the sink under `_wrt/transforms/<name>/`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct RegistryConfig {
    /// How often hosts check for a newly deployed version, in milliseconds.
    pub poll_interval_ms: u64,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            poll_interval_ms: 2_000,
        }
    }
}

/// The admin HTTP server.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct AdminConfig {
    /// Address and port to listen on; loopback unless the port is firewalled.
    pub listen: String,
    /// The environment variable holding the bearer token that calls changing state must
    /// carry (a token never goes in a file that may be committed).
    pub token_env: String,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: "127.0.0.1:9464".into(),
            token_env: "WRT_ADMIN_TOKEN".into(),
        }
    }
}

/// Where change events come from.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum SourceConfig {
    /// Kafka topics that Debezium writes.
    Kafka(KafkaSource),
    /// The bundled sample stream (`wrt sample`).
    Sample,
    /// A JSON Lines file of records, as `wrt sample` writes.
    File(FileSource),
}

/// A JSON Lines file of records.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileSource {
    /// The file.
    pub path: PathBuf,
}

/// A Kafka consumer in a consumer group.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KafkaSource {
    /// Bootstrap brokers, `host:port[,host:port…]`.
    pub brokers: String,
    /// Topics to read: exact names, or regular expressions starting with `^`
    /// (`^shop\.shop\..*`).
    pub topics: Vec<String>,
    /// The consumer group; defaults to `wrt-<name>`. Hosts of one pipeline share it.
    #[serde(default)]
    pub group_id: Option<String>,
    /// Where a group with no committed offset starts: `earliest` or `latest`.
    #[serde(default)]
    pub start_from: StartFrom,
    /// How to authenticate to the brokers.
    #[serde(default)]
    pub auth: KafkaAuth,
    /// Extra librdkafka properties, passed through as they are.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// Where a new consumer group starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StartFrom {
    /// The oldest retained record: nothing Debezium wrote is missed.
    #[default]
    Earliest,
    /// Only records written after the group first joins.
    Latest,
}

/// Broker authentication.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(tag = "mechanism", rename_all = "kebab-case", deny_unknown_fields)]
pub enum KafkaAuth {
    /// Plaintext, no authentication (a local broker).
    #[default]
    None,
    /// Amazon MSK with IAM: TLS and SASL/OAUTHBEARER carrying a SigV4-signed token made
    /// from the default AWS credential chain.
    MskIam {
        /// The cluster's AWS region.
        region: String,
    },
    /// TLS and SASL/SCRAM-SHA-512 (Amazon MSK's SCRAM option).
    #[serde(rename = "scram-sha-512")]
    ScramSha512(Scram),
    /// TLS and SASL/SCRAM-SHA-256.
    #[serde(rename = "scram-sha-256")]
    ScramSha256(Scram),
}

/// SCRAM credentials: the user is in the file, the password only in the environment.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Scram {
    /// The SCRAM user name.
    pub username: String,
    /// The environment variable that holds the password (never the password itself).
    pub password_env: String,
    /// PEM file of the CA that signed the brokers' certificates; the system's trust store
    /// when absent.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// The transform and its sandbox.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TransformSection {
    /// The component (`.wasm`), built against sdk/wit/.
    pub path: PathBuf,
    /// Most linear memory one instance may use, in MiB.
    #[serde(default = "default_memory_mb")]
    pub memory_mb: usize,
    /// Longest one call may run, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Configuration the transform reads through its `config` import.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

fn default_memory_mb() -> usize {
    128
}

fn default_timeout_ms() -> u64 {
    5_000
}

/// How outputs are batched into objects.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct BatchConfig {
    /// Records per poll, and so events per transform call.
    pub batch_size: usize,
    /// Source records per object window (per Kafka partition).
    pub max_records: u64,
    /// Source bytes per object window.
    pub max_bytes: u64,
    /// A window is written once it is this old, in milliseconds, even if not full: the
    /// bound on how stale the lake can be.
    pub max_age_ms: u64,
    /// Hive-style path under each destination, from the commit time:
    /// `{yyyy}`, `{MM}`, `{dd}`, `{HH}`, `{mm}`.
    pub partition_template: String,
    /// How objects are written: `jsonl` (gzip JSON Lines) or `parquet`.
    pub format: Format,
    /// Destinations written in another format than `format`, e.g. `{ audit = "jsonl" }`.
    pub formats: BTreeMap<String, Format>,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            batch_size: 256,
            max_records: 5_000,
            max_bytes: 64 << 20,
            max_age_ms: 10_000,
            partition_template: "dt={yyyy}-{MM}-{dd}".into(),
            format: Format::default(),
            formats: BTreeMap::new(),
        }
    }
}

/// How the work is spread over threads and concurrent writes.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct PipelineSection {
    /// Threads that decode and transform, each with its own transform instance; the
    /// partitions this host owns are spread over them. Unset: one per core.
    pub lanes: Option<usize>,
    /// Closed windows being written at once, in the background, while the lanes go on;
    /// when all are busy the lanes wait, which bounds memory when the store is slow.
    pub writers: usize,
}

impl Default for PipelineSection {
    fn default() -> Self {
        PipelineSection {
            lanes: None,
            writers: 4,
        }
    }
}

impl PipelineSection {
    /// The lanes to run: as set, or one per core.
    pub fn lanes(&self) -> usize {
        self.lanes.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        })
    }
}

/// Where objects go.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum SinkConfig {
    /// An S3 bucket (or an S3-compatible server).
    S3(S3Sink),
    /// A local folder laid out like the bucket.
    Local(LocalSink),
}

/// A local folder laid out like the bucket.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LocalSink {
    /// The folder.
    pub path: PathBuf,
}

/// An S3 bucket.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct S3Sink {
    /// The bucket; it must exist.
    pub bucket: String,
    /// A key prefix for everything this pipeline writes (`lake/`), or empty.
    #[serde(default)]
    pub prefix: String,
    /// The bucket's region.
    #[serde(default = "default_region")]
    pub region: String,
    /// An S3-compatible server instead of AWS (`http://127.0.0.1:9000`).
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Path-style addressing (`host/bucket/key`), which local servers need.
    #[serde(default)]
    pub force_path_style: bool,
    /// Objects larger than this, in MiB, are sent as multipart uploads.
    #[serde(default = "default_multipart_mb")]
    pub multipart_threshold_mb: u64,
    /// How long to wait for a connection to the store.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// How long to wait for the store's answer to start.
    #[serde(default = "default_read_timeout_ms")]
    pub read_timeout_ms: u64,
    /// How long one attempt at a request may take in all (a 16 MiB part included).
    #[serde(default = "default_attempt_timeout_ms")]
    pub attempt_timeout_ms: u64,
}

impl S3Sink {
    /// `bucket` in `region`, with the defaults for everything else.
    pub fn new(bucket: String, region: String) -> S3Sink {
        S3Sink {
            bucket,
            region,
            prefix: String::new(),
            endpoint_url: None,
            force_path_style: false,
            multipart_threshold_mb: default_multipart_mb(),
            connect_timeout_ms: default_connect_timeout_ms(),
            read_timeout_ms: default_read_timeout_ms(),
            attempt_timeout_ms: default_attempt_timeout_ms(),
        }
    }
}

fn default_connect_timeout_ms() -> u64 {
    3_000
}

fn default_read_timeout_ms() -> u64 {
    10_000
}

fn default_attempt_timeout_ms() -> u64 {
    60_000
}

/// How long writes to the store are retried while it fails, for either sink.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct RetrySection {
    /// The longest wait between two attempts at a window; waits double from 200 ms up to
    /// this, with jitter.
    pub max_backoff_ms: u64,
    /// Stop the host when one window has failed for this long; unset: retry for as long
    /// as the outage lasts (refusals such as bad credentials stop it at once).
    pub give_up_after_s: Option<u64>,
}

impl Default for RetrySection {
    fn default() -> Self {
        RetrySection {
            max_backoff_ms: 30_000,
            give_up_after_s: None,
        }
    }
}

fn default_region() -> String {
    "us-west-2".into()
}

fn default_multipart_mb() -> u64 {
    16
}

/// A configuration problem, naming the field, what is wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}; {fix}")]
pub struct ConfigError {
    pub field: String,
    pub problem: String,
    pub fix: String,
}

/// Every problem found, so one `--check` shows them all.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    // Not a `source`: the binary prints the cause chain, and this message already holds it.
    #[error("{path}: {error}")]
    Parse {
        path: PathBuf,
        error: Box<figment::Error>,
    },
    #[error("{} problem(s) in the configuration:\n  {}", .0.len(),
            .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    Invalid(Vec<ConfigError>),
}

/// The top-level sections an environment variable may override.
const SECTIONS: [&str; 8] = [
    "name",
    "source",
    "transform",
    "batch",
    "pipeline",
    "sink",
    "registry",
    "admin",
];

impl PipelineConfig {
    /// Reads `path`, applies `WRT_*` overrides, and validates.
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        let env = Env::prefixed("WRT_")
            .filter(|key| {
                let key = key.as_str().to_lowercase();
                SECTIONS.contains(&key.split("__").next().unwrap_or_default())
            })
            .map(|key| {
                let key = key.as_str().to_lowercase();
                key.replace("__", ".").replace('_', "-").into()
            });
        let config: PipelineConfig = Figment::new()
            .merge(Toml::file_exact(path))
            .merge(env)
            .extract()
            .map_err(|e| LoadError::Parse {
                path: path.to_path_buf(),
                error: Box::new(e),
            })?;
        config.validate().map_err(LoadError::Invalid)?;
        Ok(config)
    }

    /// Checks what can be checked without I/O.
    pub fn validate(&self) -> Result<(), Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut check = |ok: bool, field: &str, problem: String, fix: &str| {
            if !ok {
                errors.push(ConfigError {
                    field: field.into(),
                    problem,
                    fix: fix.into(),
                });
            }
        };
        check(
            !self.name.trim().is_empty(),
            "name",
            "is empty".into(),
            "name the pipeline, e.g. `name = \"shop-lake\"`",
        );
        if let SourceConfig::Kafka(kafka) = &self.source {
            check(
                !kafka.brokers.trim().is_empty(),
                "source.brokers",
                "is empty".into(),
                "set `brokers = \"host:9092\"`",
            );
            check(
                !kafka.topics.is_empty(),
                "source.topics",
                "names no topic".into(),
                "list Debezium topics, e.g. `topics = [\"shop.shop.orders\"]` or `[\"^shop\\\\..*\"]`",
            );
            for topic in &kafka.topics {
                check(
                    !topic.trim().is_empty() && !topic.contains(char::is_whitespace),
                    "source.topics",
                    format!("{topic:?} is not a topic name"),
                    "use the topic as Debezium names it: `<prefix>.<database>.<table>`",
                );
            }
            match &kafka.auth {
                KafkaAuth::None => {}
                KafkaAuth::MskIam { region } => check(
                    !region.trim().is_empty(),
                    "source.auth.region",
                    "is empty".into(),
                    "set the MSK cluster's region, e.g. `region = \"us-west-2\"`",
                ),
                KafkaAuth::ScramSha512(scram) | KafkaAuth::ScramSha256(scram) => {
                    check(
                        !scram.username.trim().is_empty(),
                        "source.auth.username",
                        "is empty".into(),
                        "set the SCRAM user, e.g. `username = \"wrt\"`",
                    );
                    check(
                        !scram.password_env.trim().is_empty(),
                        "source.auth.password-env",
                        "is empty".into(),
                        "name the environment variable holding the password, e.g. \
                         `password-env = \"WRT_KAFKA_PASSWORD\"`",
                    );
                }
            }
        }
        check(
            self.transform.memory_mb >= 1,
            "transform.memory-mb",
            format!("{} is too small", self.transform.memory_mb),
            "give the transform at least 1 MiB (the default is 128)",
        );
        check(
            self.transform.timeout_ms >= 1,
            "transform.timeout-ms",
            "is 0".into(),
            "set a deadline in milliseconds (the default is 5000)",
        );
        let batch = &self.batch;
        for (field, value) in [
            ("batch.batch-size", batch.batch_size as u64),
            ("batch.max-records", batch.max_records),
            ("batch.max-bytes", batch.max_bytes),
            ("batch.max-age-ms", batch.max_age_ms),
        ] {
            check(value > 0, field, "is 0".into(), "use a positive number");
        }
        if let Err(problem) = PartitionTemplate::parse(&batch.partition_template) {
            check(
                false,
                "batch.partition-template",
                problem,
                "e.g. `partition-template = \"dt={yyyy}-{MM}-{dd}/hr={HH}\"`",
            );
        }
        check(
            self.pipeline.lanes != Some(0),
            "pipeline.lanes",
            "is 0".into(),
            "use 1 or more, or leave it unset for one lane per core",
        );
        check(
            self.pipeline.writers > 0,
            "pipeline.writers",
            "is 0".into(),
            "use 1 or more (the default is 4)",
        );
        if let SinkConfig::S3(s3) = &self.sink {
            check(
                valid_bucket_name(&s3.bucket),
                "sink.bucket",
                format!("{:?} is not a valid bucket name", s3.bucket),
                "use 3-63 lower-case letters, digits, `-` and `.`, starting and ending with a letter or digit",
            );
            if let Some(url) = &s3.endpoint_url {
                check(
                    url.starts_with("http://") || url.starts_with("https://"),
                    "sink.endpoint-url",
                    format!("{url:?} is not an http(s) URL"),
                    "e.g. `endpoint-url = \"http://127.0.0.1:9000\"`, or remove it to use AWS",
                );
            }
            for (field, value) in [
                ("sink.connect-timeout-ms", s3.connect_timeout_ms),
                ("sink.read-timeout-ms", s3.read_timeout_ms),
                ("sink.attempt-timeout-ms", s3.attempt_timeout_ms),
            ] {
                check(
                    value > 0,
                    field,
                    "is 0".into(),
                    "use a positive number of milliseconds",
                );
            }
            check(
                s3.multipart_threshold_mb >= 5,
                "sink.multipart-threshold-mb",
                format!(
                    "{} is below S3's 5 MiB minimum part",
                    s3.multipart_threshold_mb
                ),
                "use 5 or more (the default is 16)",
            );
        }
        check(
            self.retry.max_backoff_ms >= 200,
            "retry.max-backoff-ms",
            format!(
                "{} is below the first wait, 200 ms",
                self.retry.max_backoff_ms
            ),
            "use 200 or more (the default is 30000)",
        );
        check(
            self.retry.give_up_after_s != Some(0),
            "retry.give-up-after-s",
            "is 0".into(),
            "use a number of seconds, or remove it to retry while the store is down",
        );
        if let Some(registry) = &self.registry {
            check(
                registry.poll_interval_ms > 0,
                "registry.poll-interval-ms",
                "is 0".into(),
                "check every few seconds, e.g. `poll-interval-ms = 2000`",
            );
        }
        if let Some(admin) = &self.admin {
            check(
                admin.listen.parse::<std::net::SocketAddr>().is_ok(),
                "admin.listen",
                format!("{:?} is not an address and port", admin.listen),
                "e.g. `listen = \"127.0.0.1:9464\"`",
            );
        }
        if let Some(CatalogConfig::Glue(glue)) = &self.catalog {
            check(
                valid_glue_name(&glue.database),
                "catalog.database",
                format!("{:?} is not a Glue database name", glue.database),
                "use 1-255 lower-case letters, digits and `_`, e.g. `database = \"shop_lake\"`",
            );
            check(
                matches!(self.sink, SinkConfig::S3(_)),
                "catalog",
                "describes tables in S3, but the sink is a local folder".into(),
                "use `[sink] kind = \"s3\"`, or remove the `[catalog]` section",
            );
            let hive = (batch.partition_template.split('/')).all(|segment| {
                segment
                    .split_once('=')
                    .is_some_and(|(key, _)| !key.is_empty())
            });
            check(
                hive,
                "batch.partition-template",
                format!(
                    "{:?} has a segment that is not `key=value`, which a catalog cannot \
                     register as a partition",
                    batch.partition_template
                ),
                "name every segment, e.g. `partition-template = \"dt={yyyy}-{MM}-{dd}/hr={HH}\"`",
            );
            let parquet = batch.format == Format::Parquet
                || batch.formats.values().any(|f| *f == Format::Parquet);
            check(
                parquet,
                "catalog",
                "describes Parquet tables, but no destination is written as Parquet".into(),
                "set `format = \"parquet\"` in `[batch]`, or remove the `[catalog]` section",
            );
            if let Some(url) = &glue.endpoint_url {
                check(
                    url.starts_with("http://") || url.starts_with("https://"),
                    "catalog.endpoint-url",
                    format!("{url:?} is not an http(s) URL"),
                    "e.g. `endpoint-url = \"http://127.0.0.1:5000\"`, or remove it to use AWS",
                );
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// The Kafka consumer group.
    pub fn group_id(&self, kafka: &KafkaSource) -> String {
        kafka
            .group_id
            .clone()
            .unwrap_or_else(|| format!("wrt-{}", self.name))
    }
}

/// Glue (and Athena) names: lower-case letters, digits and `_`.
fn valid_glue_name(name: &str) -> bool {
    (1..=255).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn valid_bucket_name(name: &str) -> bool {
    let ends_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    (3..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && ends_ok(name.chars().next())
        && ends_ok(name.chars().last())
        && !name.contains("..")
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
name = "shop-lake"

[source]
kind = "kafka"
brokers = "127.0.0.1:9092"
topics = ["^shop\\..*", "shop"]
group-id = "g"
start-from = "latest"
auth = { mechanism = "msk-iam", region = "us-west-2" }
properties = { "fetch.min.bytes" = "1" }

[transform]
path = "t.wasm"
memory-mb = 64
timeout-ms = 100
config = { salt = "s" }

[batch]
batch-size = 10
max-records = 100
max-bytes = 1000
max-age-ms = 500
partition-template = "dt={yyyy}-{MM}-{dd}/hr={HH}"
format = "parquet"
formats = { audit = "jsonl" }

[sink]
kind = "s3"
bucket = "lake"
prefix = "p/"
region = "eu-west-1"
endpoint-url = "http://127.0.0.1:9000"
force-path-style = true
multipart-threshold-mb = 8

[registry]
poll-interval-ms = 500

[admin]
listen = "127.0.0.1:9464"
token-env = "SHOP_ADMIN_TOKEN"

[catalog]
kind = "glue"
database = "shop_lake"
region = "us-west-2"
endpoint-url = "http://127.0.0.1:5000"
"#;

    fn load(text: &str) -> Result<PipelineConfig, LoadError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pipeline.toml");
        std::fs::write(&path, text).unwrap();
        PipelineConfig::load(&path)
    }

    #[test]
    fn a_complete_file_loads() {
        let config = load(FULL).unwrap();
        assert_eq!(config.name, "shop-lake");
        let SourceConfig::Kafka(kafka) = &config.source else {
            panic!("{:?}", config.source)
        };
        assert_eq!(
            kafka.auth,
            KafkaAuth::MskIam {
                region: "us-west-2".into()
            }
        );
        assert_eq!(config.group_id(kafka), "g");
        assert_eq!(config.batch.max_age_ms, 500);
    }

    #[test]
    fn dropping_any_required_key_is_an_error_naming_it() {
        for key in [
            "name = ",
            "brokers = ",
            "topics = ",
            "path = ",
            "bucket = ",
            "kind = \"s3\"",
        ] {
            let text: String = FULL
                .lines()
                .filter(|l| !l.starts_with(key))
                .map(|l| format!("{l}\n"))
                .collect();
            let error = load(&text).unwrap_err().to_string();
            let field = key.split([' ', '=']).next().unwrap();
            assert!(
                error.contains(field) || error.contains("kind"),
                "without `{field}`: {error}"
            );
        }
    }

    const SCRAM: &str = r#"auth = { mechanism = "scram-sha-512", username = "wrt", password-env = "WRT_KAFKA_PASSWORD", ca-file = "ca.pem" }"#;

    #[test]
    fn scram_takes_the_password_from_a_named_variable() {
        let text = FULL.replace(
            r#"auth = { mechanism = "msk-iam", region = "us-west-2" }"#,
            SCRAM,
        );
        let config = load(&text).unwrap();
        let SourceConfig::Kafka(kafka) = &config.source else {
            panic!("{:?}", config.source)
        };
        assert_eq!(
            kafka.auth,
            KafkaAuth::ScramSha512(Scram {
                username: "wrt".into(),
                password_env: "WRT_KAFKA_PASSWORD".into(),
                ca_file: Some("ca.pem".into()),
            })
        );
        let sha256 = text.replace("scram-sha-512", "scram-sha-256");
        let SourceConfig::Kafka(kafka) = load(&sha256).unwrap().source else {
            panic!()
        };
        assert!(matches!(kafka.auth, KafkaAuth::ScramSha256(_)));
    }

    #[test]
    fn scram_rejects_a_password_in_the_file_and_empty_fields() {
        let with_password = FULL.replace(
            r#"auth = { mechanism = "msk-iam", region = "us-west-2" }"#,
            &SCRAM.replace("username", "password = \"hunter2\", username"),
        );
        let error = load(&with_password).unwrap_err().to_string();
        assert!(error.contains("unknown field: found `password`"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
        let empty = FULL.replace(
            r#"auth = { mechanism = "msk-iam", region = "us-west-2" }"#,
            &SCRAM
                .replace("\"wrt\"", "\"\"")
                .replace("\"WRT_KAFKA_PASSWORD\"", "\" \""),
        );
        let LoadError::Invalid(errors) = load(&empty).unwrap_err() else {
            panic!("expected validation errors")
        };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["source.auth.username", "source.auth.password-env"]);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let error = load(&FULL.replace("max-records", "max-recrods"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("max-recrods"), "{error}");
        let error = load(&format!("{FULL}\n[extra]\nx = 1\n"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("extra"), "{error}");
    }

    #[test]
    fn bad_values_are_all_reported_with_their_fix() {
        let text = FULL
            .replace("bucket = \"lake\"", "bucket = \"Bad_Bucket\"")
            .replace("max-records = 100", "max-records = 0")
            .replace("dt={yyyy}-{MM}-{dd}/hr={HH}", "dt={date}")
            .replace("topics = [\"^shop\\\\..*\", \"shop\"]", "topics = []")
            .replace("127.0.0.1:9464", "localhost")
            .replace("database = \"shop_lake\"", "database = \"Shop-Lake\"");
        let LoadError::Invalid(errors) = load(&text).unwrap_err() else {
            panic!("expected validation errors")
        };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "source.topics",
                "batch.max-records",
                "batch.partition-template",
                "sink.bucket",
                "admin.listen",
                "catalog.database"
            ]
        );
        assert!(errors.iter().all(|e| !e.fix.is_empty()));
        assert!(
            errors[3]
                .to_string()
                .contains("\"Bad_Bucket\" is not a valid bucket name")
        );
    }

    #[test]
    fn a_catalog_needs_parquet_in_s3() {
        let local = FULL
            .replace("format = \"parquet\"\n", "")
            .replace("formats = { audit = \"jsonl\" }\n", "");
        let LoadError::Invalid(errors) = load(&local).unwrap_err() else {
            panic!("expected validation errors")
        };
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0]
                .to_string()
                .contains("no destination is written as Parquet")
        );
        assert!(errors[0].fix.contains("format = \"parquet\""));
    }

    #[test]
    fn environment_overrides_the_file() {
        // SAFETY: this test is the only one in the crate that reads or writes this variable.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var("WRT_SINK__MULTIPART_THRESHOLD_MB", "32")
        };
        let config = load(FULL).unwrap();
        #[allow(unsafe_code)]
        unsafe {
            std::env::remove_var("WRT_SINK__MULTIPART_THRESHOLD_MB")
        };
        let SinkConfig::S3(s3) = config.sink else {
            panic!()
        };
        assert_eq!(s3.multipart_threshold_mb, 32);
    }

    #[test]
    fn every_key_is_documented() {
        let docs = include_str!("../../docs/configuration.md");
        let value = serde_json::to_value(load(FULL).unwrap()).unwrap();
        let mut keys = Vec::new();
        collect_keys(&value, "", &mut keys);
        let local =
            serde_json::to_value(SinkConfig::Local(LocalSink { path: "x".into() })).unwrap();
        collect_keys(&local, "sink", &mut keys);
        let file =
            serde_json::to_value(SourceConfig::File(FileSource { path: "x".into() })).unwrap();
        collect_keys(&file, "source", &mut keys);
        let scram = serde_json::to_value(KafkaAuth::ScramSha512(Scram {
            username: "u".into(),
            password_env: "P".into(),
            ca_file: Some("c".into()),
        }))
        .unwrap();
        collect_keys(&scram, "source.auth", &mut keys);
        for key in keys {
            assert!(
                docs.contains(&format!("`{key}`")),
                "docs/configuration.md lacks `{key}`"
            );
        }
    }

    /// Dotted paths of every key, stopping at free-form maps.
    fn collect_keys(value: &serde_json::Value, at: &str, out: &mut Vec<String>) {
        let Some(map) = value.as_object() else { return };
        for (key, child) in map {
            let path = if at.is_empty() {
                key.clone()
            } else {
                format!("{at}.{key}")
            };
            let free_form = matches!(
                path.as_str(),
                "transform.config" | "source.properties" | "batch.formats"
            );
            if child.is_object() && !free_form {
                collect_keys(child, &path, out);
            } else {
                out.push(path);
            }
        }
    }
}
