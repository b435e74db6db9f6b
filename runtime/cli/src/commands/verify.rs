//! `wrt verify`: does the lake hold every committed offset exactly once?

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use sha2::{Digest, Sha256};
use wrt::config::{PipelineConfig, SinkConfig, SourceConfig};
use wrt::model::TopicPartition;
use wrt::pipeline::sink::{LocalDir, Sink};
use wrt::pipeline::source::kafka;
use wrt::registry::Registry;
use wrt::verify::{self, Problem, Progress, Report};

use super::s3_sink;

/// Check that the lake covers every committed offset exactly once. Reads only.
///
/// Lists the lake, reads each data object's metadata (the window it belongs to and the
/// transform that wrote it) and the offsets the pipeline's consumer group committed (without
/// joining the group), and reports per topic-partition any gap, overlap, or object of a
/// transform version the pipeline does not know, plus the dead letters by reason. Known
/// versions: every component in the pipeline's registry and every version its pointer ever
/// named, and the component at transform.path. Without a Kafka source there are no committed
/// offsets: the windows are checked against each other only.
///
/// Exit status: 0 when the lake covers every committed offset exactly once, 1 when it does
/// not (the offending keys are listed), 2 when the configuration or a store is wrong.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    wrt verify --config pipeline.toml\n  \
    wrt verify --config pipeline.toml --json | jq '.problems'")]
pub struct Verify {
    /// The pipeline's configuration: its lake, its Kafka group and topics, its transform.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,

    /// Print one JSON document on standard output.
    #[arg(long)]
    json: bool,

    /// How long to wait for Kafka's answers, in seconds.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    kafka_timeout: u64,
}

impl Verify {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let config = PipelineConfig::load(&self.config)?;
        let committed = match &config.source {
            SourceConfig::Kafka(source) => {
                let timeout = Duration::from_secs(self.kafka_timeout);
                kafka::committed_offsets(source, &config.group_id(source), timeout).with_context(
                    || {
                        format!(
                            "reading the offsets group `{}` committed from {}",
                            config.group_id(source),
                            source.brokers
                        )
                    },
                )?
            }
            SourceConfig::Sample | SourceConfig::File(_) => BTreeMap::new(),
        };
        let runtime = tokio::runtime::Runtime::new()?;
        let mut report = runtime.block_on(async {
            match &config.sink {
                SinkConfig::Local(local) => {
                    anyhow::ensure!(
                        local.path.is_dir(),
                        "sink.path: {} is not a folder; point it at the lake `wrt run` wrote",
                        local.path.display()
                    );
                    check(LocalDir::new(&local.path), &config, &committed).await
                }
                SinkConfig::S3(s3) => check(s3_sink(s3).await?, &config, &committed).await,
            }
        })?;
        // A gap may be offsets no consumer ever reads: ask Kafka before calling it one.
        if let SourceConfig::Kafka(source) = &config.source {
            let timeout = Duration::from_secs(self.kafka_timeout);
            let group = config.group_id(source);
            verify::excuse_unreadable_gaps(&mut report, |partition, span| {
                kafka::readable_between(source, &group, partition, span, timeout)
                    .inspect_err(|e| {
                        eprintln!(
                            "wrt verify: could not read {}/{} at offset {}: {e}; the gap stays",
                            partition.topic, partition.partition, span.0
                        )
                    })
                    .ok()
                    .flatten()
            });
        }
        if self.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print_report(&report, committed.is_empty());
        }
        Ok(if report.ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    }
}

async fn check<K>(
    sink: K,
    config: &PipelineConfig,
    committed: &BTreeMap<TopicPartition, i64>,
) -> anyhow::Result<Report>
where
    K: Sink + Clone + Send + Sync + 'static,
{
    let known = known_versions(sink.clone(), config).await?;
    let bar = indicatif::ProgressBar::new(0).with_message("reading object metadata");
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} {pos}/{len} [{elapsed}]")
            .expect("a valid template"),
    );
    let progress = |p: Progress| match p {
        Progress::Total(n) => bar.set_length(n),
        Progress::Read => bar.inc(1),
    };
    let lake = verify::read(&sink, &progress).await?;
    bar.finish_and_clear();
    Ok(verify::check(&lake, &known, committed))
}

/// The versions the pipeline may have run: what its registry stores and what its pointer
/// ever named, and the component at `transform.path`.
async fn known_versions<K: Sink>(
    sink: K,
    config: &PipelineConfig,
) -> anyhow::Result<BTreeSet<String>> {
    let registry = Registry::new(sink, &config.name);
    let mut known: BTreeSet<String> = registry.components().await?.into_iter().collect();
    if let Some(seen) = registry.pointer().await? {
        known.extend(seen.pointer.history.into_iter().map(|m| m.digest));
        known.insert(seen.pointer.current);
    }
    match std::fs::read(&config.transform.path) {
        Ok(wasm) => {
            known.insert(hex::encode(Sha256::digest(&wasm)));
        }
        Err(e) if known.is_empty() => anyhow::bail!(
            "transform.path: cannot read {} ({e}), and the registry holds no version; verify \
             needs one of them to tell which transform versions are the pipeline's",
            config.transform.path.display()
        ),
        Err(_) => {}
    }
    Ok(known)
}

fn print_report(report: &Report, without_group: bool) {
    println!(
        "wrt verify: {} objects over {} partitions",
        report.objects,
        report.partitions.len()
    );
    for p in &report.partitions {
        let covered = p.covered.map_or("no window".to_string(), |(from, to)| {
            format!("{from}..{to}")
        });
        let committed = p.committed.map_or("-".to_string(), |c| c.to_string());
        println!(
            "  {}/{}: {} windows, {} objects, offsets {covered}, committed {committed}",
            p.topic, p.partition, p.windows, p.objects
        );
    }
    if without_group {
        println!("  (no consumer group: the windows were checked against each other only)");
    }
    if !report.in_flight.is_empty() {
        println!(
            "  {} windows being written (markers under _wrt/windows/)",
            report.in_flight.len()
        );
    }
    if report.unreadable_offsets > 0 {
        println!(
            "  {} offsets between windows hold no record a consumer reads (transaction markers): not gaps",
            report.unreadable_offsets
        );
    }
    for (reason, n) in &report.dead_letters {
        println!("  dead letters {reason}: {n}");
    }
    for problem in &report.problems {
        let (head, keys) = match problem {
            Problem::Gap {
                topic,
                partition,
                from,
                to,
                why,
                keys,
            } => (
                format!("gap {topic}/{partition} offsets {from}..{to}: {why}"),
                keys,
            ),
            Problem::Overlap {
                topic,
                partition,
                from,
                to,
                why,
                keys,
            } => (
                format!("overlap {topic}/{partition} offsets {from}..{to}: {why}"),
                keys,
            ),
            Problem::UnknownVersion { transform, keys } => (
                format!("unknown version {transform}: not in the registry nor transform.path"),
                keys,
            ),
            Problem::NoMetadata { key } => (
                "no wrt metadata: not written by this wrt".to_string(),
                &vec![key.clone()],
            ),
        };
        println!("{head}");
        for key in keys {
            println!("    {key}");
        }
    }
    if report.ok && without_group {
        println!("ok: the windows follow each other without gap or overlap");
    } else if report.ok {
        println!("ok: every committed offset is in the lake exactly once");
    } else {
        println!("FAILED: {} problems", report.problems.len());
    }
}
