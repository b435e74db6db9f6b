//! `wrt replay`: a range of a pipeline's history again, with a chosen version, into a
//! prefix of its own, while the live pipeline goes on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use wrt::config::{PipelineConfig, SinkConfig, SourceConfig};
use wrt::host::{Host, Transforms, load_file};
use wrt::model::TopicPartition;
use wrt::pipeline::Options;
use wrt::pipeline::sink::{ConditionalError, Expect, LocalDir, Sink};
use wrt::pipeline::source::kafka::{self, Bound, Span};
use wrt::pipeline::transform::Transform;
use wrt::pipeline::transform::sandbox::{Compiler, Loader, WasmTransform};
use wrt::registry::Registry;

use super::{s3_sink, section_loader};

/// Where a replay records what it is, so a second run resumes it or refuses to mix.
const PLAN_KEY: &str = "_wrt/replay.json";

/// Reprocess a range of history with a given transform version into a separate prefix.
///
/// Reads the pipeline's topics from --from to --to as a consumer group of its own (its
/// partitions are assigned, so the live hosts' group never rebalances), runs the version
/// --transform names, and writes under --prefix with the same exactly-once object keys and
/// window markers as a host; it ends once every partition is read to its end. Run again
/// with the same arguments, it resumes where it stopped. Windows close by count and size
/// only, so a rerun writes the same objects. Replays need the records still in Kafka:
/// offsets older than the topic's retention (retention.ms, retention.bytes) are gone, and a
/// --from before them is refused.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    wrt replay --config pipeline.toml --from 2026-11-28T09:00:00Z --prefix replay/fix-42/\n  \
    wrt replay --config pipeline.toml --transform pii_mask_v2.wasm --prefix replay/v2/ \\\n    \
    --from shop.shop.orders/0/1200,shop.shop.orders/1/900 --to 2026-11-28T10:00:00Z")]
pub struct Replay {
    /// The live pipeline's configuration: its source, transform settings, limits and sink.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,

    /// Where to start: `earliest`; a time (RFC 3339, compared with the records' Kafka
    /// timestamps); or offsets `TOPIC/PARTITION/OFFSET[,…]`, which replay only the
    /// partitions named.
    #[arg(long, value_name = "WHEN")]
    from: String,

    /// Where to end, exclusive: `now` (each partition's end as the replay starts); a time;
    /// or offsets `TOPIC/PARTITION/OFFSET[,…]` (partitions not named end now).
    #[arg(long, value_name = "WHEN", default_value = "now")]
    to: String,

    /// The version: `current` (the deployed one; transform.path without a registry), a
    /// digest in the registry (or its first characters), or a component file.
    #[arg(long, value_name = "VERSION", default_value = "current")]
    transform: String,

    /// The key prefix to write under (for a local folder sink, the folder). It must not
    /// lie inside the pipeline's own prefix, nor contain it.
    #[arg(long)]
    prefix: String,

    /// Write to this bucket instead of the pipeline's (S3 sinks).
    #[arg(long)]
    bucket: Option<String>,

    /// The consumer group that keeps the replay's progress; default
    /// `<the pipeline's group>-replay-<prefix>`.
    #[arg(long, value_name = "GROUP")]
    group: Option<String>,

    /// Where compiled components are cached.
    #[arg(long, env = "WRT_CACHE_DIR", value_name = "DIR")]
    cache_dir: Option<PathBuf>,

    /// Print the spans and the summary as JSON on standard output.
    #[arg(long)]
    json: bool,
}

/// What a replay is: stored under its prefix at the first run.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Plan {
    pipeline: String,
    transform: String,
    from: String,
    to: String,
    group: String,
}

impl Replay {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let live = PipelineConfig::load(&self.config)?;
        let SourceConfig::Kafka(source) = &live.source else {
            bail!(
                "wrt replay reads history from Kafka, and {} has no Kafka source; to run a \
                 version over a file of events, use wrt run TRANSFORM --events FILE",
                self.config.display()
            );
        };
        let from = parse_bound(&self.from).context("--from")?;
        let to = parse_bound(&self.to).context("--to")?;
        let group = self.group.clone().unwrap_or_else(|| {
            format!(
                "{}-replay-{}",
                live.group_id(source),
                self.prefix.trim_matches('/')
            )
        });
        if group == live.group_id(source) {
            bail!(
                "--group {group} is the live pipeline's consumer group: the replay would \
                 commit over its offsets; give the replay a group of its own"
            );
        }
        let mut config = self.replay_config(&live)?;
        if let SourceConfig::Kafka(source) = &mut config.source {
            source.group_id = Some(group.clone());
        }

        let runtime = tokio::runtime::Runtime::new()?;
        let loader = section_loader(
            &live.transform,
            self.cache_dir.clone(),
            Compiler::Optimizing,
        )?;
        let transform = runtime.block_on(self.version(&live, &loader))?;
        let plan = Plan {
            pipeline: live.name.clone(),
            transform: transform.digest().to_string(),
            from: self.from.clone(),
            to: self.to.clone(),
            group: group.clone(),
        };
        let mut spans = {
            let (source, group) = (source.clone(), group.clone());
            let bounds = (from, to);
            runtime.block_on(runtime.spawn_blocking(move || {
                kafka::replay_spans(
                    &source,
                    &group,
                    (&bounds.0, &bounds.1),
                    Duration::from_secs(30),
                )
            }))??
        };
        // A new replay starts at --from whatever its group committed before: another
        // replay with this group may have written somewhere else.
        if runtime.block_on(claim(&config.sink, &plan))? == Claim::New {
            for span in &mut spans {
                span.start = span.from;
            }
        }
        if !self.json {
            print_spans(&spans);
        }
        let host = Host {
            config: &config,
            transforms: Transforms::Fixed(Box::new(transform)),
            options: Options::from_config(&config.batch, &config.pipeline, &config.retry)
                .map_err(anyhow::Error::msg)?,
            progress: !self.json,
            replay: Some(spans.clone()),
        };
        let summary = runtime.block_on(host.run())?;
        runtime.shutdown_timeout(Duration::from_secs(1));
        if self.json {
            let out = serde_json::json!({ "spans": spans, "summary": summary });
            println!("{}", serde_json::to_string_pretty(&out)?);
        } else {
            super::run::print_summary(&summary, &config.sink);
        }
        Ok(ExitCode::SUCCESS)
    }

    /// The live configuration, writing under the replay's prefix, with nothing that a live
    /// host shares: no registry to follow, no admin port.
    fn replay_config(&self, live: &PipelineConfig) -> anyhow::Result<PipelineConfig> {
        let mut config = live.clone();
        config.registry = None;
        config.admin = None;
        // Windows closed by the clock would close at other records on a rerun.
        config.batch.max_age_ms = u64::MAX;
        let clash = |theirs: &str| {
            anyhow::anyhow!(
                "--prefix {:?} and the pipeline's own {theirs} nest, so the pipeline's \
                 listings (wrt verify, its hosts) would count the replay's objects as its \
                 own; give a prefix beside it, or another --bucket",
                self.prefix
            )
        };
        match &mut config.sink {
            SinkConfig::S3(s3) => {
                let same_bucket = self.bucket.as_ref().is_none_or(|b| *b == s3.bucket);
                let (ours, theirs) = (&self.prefix, &s3.prefix);
                if same_bucket && (ours.starts_with(theirs.as_str()) || theirs.starts_with(ours)) {
                    return Err(clash(&format!("prefix {theirs:?} (sink.prefix)")));
                }
                s3.prefix = self.prefix.clone();
                if let Some(bucket) = &self.bucket {
                    s3.bucket = bucket.clone();
                }
            }
            SinkConfig::Local(local) => {
                if self.bucket.is_some() {
                    bail!("--bucket is for S3 sinks; this pipeline writes to a local folder");
                }
                let ours = std::path::absolute(&self.prefix)?;
                let theirs = std::path::absolute(&local.path)?;
                if ours.starts_with(&theirs) || theirs.starts_with(&ours) {
                    return Err(clash(&format!("folder {} (sink.path)", theirs.display())));
                }
                local.path = ours;
            }
        }
        Ok(config)
    }

    /// The version --transform names, loaded with the pipeline's settings and limits.
    async fn version(
        &self,
        live: &PipelineConfig,
        loader: &Loader,
    ) -> anyhow::Result<WasmTransform> {
        let name = self.transform.as_str();
        if name != "current" && Path::new(name).exists() {
            return Ok(load_file(loader, Path::new(name))?);
        }
        let wasm = match &live.sink {
            SinkConfig::Local(local) => {
                deployed(Registry::new(LocalDir::new(&local.path), &live.name), name).await?
            }
            SinkConfig::S3(s3) => {
                deployed(Registry::new(s3_sink(s3).await?, &live.name), name).await?
            }
        };
        match wasm {
            Some(wasm) => {
                let loader = loader.clone();
                Ok(tokio::task::spawn_blocking(move || loader.load(&wasm)).await??)
            }
            None => Ok(load_file(loader, &live.transform.path)?),
        }
    }
}

/// The component `name` picks in the registry: `current` is the deployed version (`None`
/// when nothing was deployed), anything else a digest or its first characters.
async fn deployed<K: Sink>(registry: Registry<K>, name: &str) -> anyhow::Result<Option<Vec<u8>>> {
    let digest = if name == "current" {
        match registry.pointer().await? {
            Some(seen) => seen.pointer.current,
            None => return Ok(None),
        }
    } else {
        let known = registry.components().await?;
        let matching: Vec<&String> = known.iter().filter(|d| d.starts_with(name)).collect();
        match matching[..] {
            [digest] => digest.clone(),
            [] => bail!(
                "--transform {name:?} is not a file, `current`, nor a version in the registry \
                 of pipeline `{}` (wrt transforms list --config … shows them)",
                registry.pipeline()
            ),
            _ => bail!(
                "--transform {name:?} starts {} versions' digests; give more characters",
                matching.len()
            ),
        }
    };
    Ok(Some(registry.download(&digest).await?))
}

/// Whether the prefix was free or holds this replay already.
#[derive(Debug, PartialEq, Eq)]
enum Claim {
    New,
    Resumed,
}

/// Records `plan` under the replay's prefix, or checks that the replay there is this one:
/// two replays in one prefix would mix their objects.
async fn claim(sink: &SinkConfig, plan: &Plan) -> anyhow::Result<Claim> {
    match sink {
        SinkConfig::Local(local) => claim_in(&LocalDir::new(&local.path), plan).await,
        SinkConfig::S3(s3) => claim_in(&s3_sink(s3).await?, plan).await,
    }
}

async fn claim_in<K: Sink>(sink: &K, plan: &Plan) -> anyhow::Result<Claim> {
    let body = serde_json::to_vec_pretty(plan)?;
    match sink.put_if(PLAN_KEY, body, Expect::Absent).await {
        Ok(()) => Ok(Claim::New),
        Err(ConditionalError::Sink(e)) => Err(e.into()),
        Err(ConditionalError::Changed) => {
            let earlier: Option<Plan> = sink
                .get(PLAN_KEY)
                .await?
                .and_then(|bytes| serde_json::from_slice(&bytes).ok());
            match earlier {
                Some(earlier) if earlier == *plan => Ok(Claim::Resumed),
                Some(earlier) => bail!(
                    "this prefix holds another replay (version {}, --from {}, --to {}, group \
                     {}); rerun with those arguments to resume it, or choose another --prefix",
                    &earlier.transform[..12.min(earlier.transform.len())],
                    earlier.from,
                    earlier.to,
                    earlier.group
                ),
                None => bail!(
                    "{PLAN_KEY} under this prefix is not a replay's record; choose another \
                     --prefix"
                ),
            }
        }
    }
}

/// `earliest`, `now`, an RFC 3339 time, or `TOPIC/PARTITION/OFFSET[,…]`.
fn parse_bound(raw: &str) -> anyhow::Result<Bound> {
    match raw {
        "earliest" => return Ok(Bound::Earliest),
        "now" => return Ok(Bound::Now),
        _ => {}
    }
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(raw) {
        return Ok(Bound::Time(time.timestamp_millis()));
    }
    let mut offsets = BTreeMap::new();
    for item in raw.split(',').map(str::trim) {
        let mut parts = item.rsplitn(3, '/');
        let (Some(offset), Some(partition), Some(topic)) =
            (parts.next(), parts.next(), parts.next())
        else {
            bail!(
                "{raw:?} is not `earliest`, `now`, an RFC 3339 time \
                 (2026-11-28T09:00:00Z) or offsets TOPIC/PARTITION/OFFSET[,…]"
            );
        };
        let number = |what: &str, text: &str| {
            text.parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .with_context(|| format!("{item:?}: the {what} {text:?} is not a number"))
        };
        let partition = TopicPartition {
            topic: topic.to_string(),
            partition: number("partition", partition)? as i32,
        };
        offsets.insert(partition, number("offset", offset)?);
    }
    Ok(Bound::Offsets(offsets))
}

fn print_spans(spans: &[Span]) {
    let offsets: i64 = spans.iter().map(|s| s.to - s.start).sum();
    eprintln!(
        "wrt replay: {} partition(s), {offsets} offsets to read",
        spans.len()
    );
    for s in spans {
        let resumed = if s.start > s.from {
            format!(", resuming at {}", s.start)
        } else {
            String::new()
        };
        eprintln!(
            "  {}/{}  [{}, {}){resumed}",
            s.partition.topic, s.partition.partition, s.from, s.to
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_parse_and_bad_ones_say_what_is_accepted() {
        assert_eq!(parse_bound("earliest").unwrap(), Bound::Earliest);
        assert_eq!(parse_bound("now").unwrap(), Bound::Now);
        assert_eq!(
            parse_bound("2026-11-28T09:00:00Z").unwrap(),
            Bound::Time(1_795_856_400_000)
        );
        let tp = |topic: &str, partition| TopicPartition {
            topic: topic.into(),
            partition,
        };
        assert_eq!(
            parse_bound("shop.shop.orders/0/1200, shop.shop.orders/2/7").unwrap(),
            Bound::Offsets(BTreeMap::from([
                (tp("shop.shop.orders", 0), 1200),
                (tp("shop.shop.orders", 2), 7)
            ]))
        );
        let said = format!("{:#}", parse_bound("yesterday").unwrap_err());
        assert!(said.contains("RFC 3339"), "{said}");
        let said = format!("{:#}", parse_bound("t/x/5").unwrap_err());
        assert!(
            said.contains("the partition \"x\" is not a number"),
            "{said}"
        );
    }

    #[tokio::test]
    async fn versions_are_found_in_the_registry_by_pointer_or_digest() {
        use wrt::registry::Action;
        let dir = tempfile::tempdir().unwrap();
        let registry = || Registry::new(LocalDir::new(dir.path()), "shop");
        assert_eq!(deployed(registry(), "current").await.unwrap(), None);
        let one = registry().upload(b"one").await.unwrap();
        let two = registry().upload(b"two").await.unwrap();
        registry()
            .move_to(None, &one, Action::Deploy, "t")
            .await
            .unwrap();
        let current = deployed(registry(), "current").await.unwrap();
        assert_eq!(current.as_deref(), Some(&b"one"[..]));
        let by_digest = deployed(registry(), &two[..10]).await.unwrap();
        assert_eq!(by_digest.as_deref(), Some(&b"two"[..]));
        let said = deployed(registry(), "zz").await.unwrap_err().to_string();
        assert!(
            said.contains("not a file, `current`, nor a version"),
            "{said}"
        );
    }

    #[test]
    fn a_prefix_that_nests_with_the_pipelines_is_refused() {
        let toml = r#"
            name = "shop"
            [source]
            kind = "kafka"
            brokers = "127.0.0.1:9092"
            topics = ["t"]
            [transform]
            path = "t.wasm"
            [sink]
            kind = "s3"
            bucket = "lake"
            prefix = "live/"
        "#;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pipeline.toml");
        std::fs::write(dir.path().join("t.wasm"), b"").unwrap();
        std::fs::write(&file, toml).unwrap();
        let live = PipelineConfig::load(&file).unwrap();
        let replay = |prefix: &str, bucket: Option<&str>| Replay {
            config: "pipeline.toml".into(),
            from: "earliest".into(),
            to: "now".into(),
            transform: "current".into(),
            prefix: prefix.into(),
            bucket: bucket.map(String::from),
            group: None,
            cache_dir: None,
            json: false,
        };
        for nested in ["live/replay/", "", "li"] {
            let said = replay(nested, None).replay_config(&live).unwrap_err();
            assert!(said.to_string().contains("nest"), "{said}");
        }
        let config = replay("replay/", None).replay_config(&live).unwrap();
        let SinkConfig::S3(s3) = &config.sink else {
            panic!()
        };
        assert_eq!(
            (s3.bucket.as_str(), s3.prefix.as_str()),
            ("lake", "replay/")
        );
        assert!(config.registry.is_none() && config.admin.is_none());
        assert_eq!(config.batch.max_age_ms, u64::MAX);
        let config = replay("live/", Some("other")).replay_config(&live).unwrap();
        let SinkConfig::S3(s3) = &config.sink else {
            panic!()
        };
        assert_eq!((s3.bucket.as_str(), s3.prefix.as_str()), ("other", "live/"));
    }
}
