use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use wrt::batch::{PartitionTemplate, Rotation};
use wrt::pipeline::{self, Options, Summary};
use wrt::sink::LocalDir;
use wrt::source::{self, MemorySource, Source};
use wrt::transform::Transform;

use super::{TransformArgs, key_value};

/// Run a transform over change events and write the results as objects.
///
/// With no input named, it reads the bundled sample stream (an e-commerce database's
/// Debezium events: snapshot reads, inserts, updates, deletes) and writes into a local
/// folder laid out exactly as the S3 bucket will be.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  \
    wrt run guest-examples/target/wasm32-wasip2/release/pii_mask.wasm --set salt=s3cret --out lake")]
pub struct Run {
    #[command(flatten)]
    transform: TransformArgs,

    /// Read these events (JSON Lines, as `wrt sample` writes) instead of the bundled sample.
    #[arg(long, value_name = "FILE")]
    events: Option<PathBuf>,

    /// The folder standing in for the S3 bucket.
    #[arg(long, default_value = "lake", value_name = "DIR")]
    out: PathBuf,

    /// Transform configuration, repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = key_value)]
    config: Vec<(String, String)>,

    /// Source records per transform call.
    #[arg(long, default_value_t = Options::default().batch_size, value_name = "N")]
    batch_size: usize,

    /// Source records per object window (per Kafka partition).
    #[arg(long, default_value_t = Rotation::default().max_records, value_name = "N")]
    max_records: u64,

    /// Hive-style path under each destination, from the commit time.
    #[arg(long, default_value = "dt={yyyy}-{MM}-{dd}", value_name = "TEMPLATE")]
    partition_template: String,

    /// Print the summary as JSON on standard output.
    #[arg(long)]
    json: bool,
}

impl Run {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let template = PartitionTemplate::parse(&self.partition_template)
            .map_err(anyhow::Error::msg)
            .context("--partition-template")?;
        anyhow::ensure!(self.batch_size > 0, "--batch-size must be at least 1");
        anyhow::ensure!(self.max_records > 0, "--max-records must be at least 1");
        let options = Options {
            batch_size: self.batch_size,
            rotation: Rotation {
                max_records: self.max_records,
                ..Rotation::default()
            },
            template,
        };
        let records = match &self.events {
            Some(path) => source::records_from_jsonl(
                &std::fs::read_to_string(path)
                    .with_context(|| format!("reading events from {}", path.display()))?,
            ),
            None => wrt::sample::sample_records(),
        };
        let mut transform = self.transform.load(&self.config)?;
        let mut source = MemorySource::new(records);
        let sink = LocalDir::new(&self.out);

        let progress = ProgressBar::new(source.len_hint().unwrap_or(0)).with_style(
            ProgressStyle::with_template(
                "{spinner} {bar:40} {pos}/{len} records  {per_sec}  eta {eta}",
            )
            .expect("a valid template"),
        );
        let runtime = tokio::runtime::Runtime::new()?;
        let summary = runtime.block_on(pipeline::run(
            &mut source,
            &mut transform,
            &sink,
            &options,
            &progress,
        ))?;
        progress.finish_and_clear();

        if self.json {
            println!("{}", serde_json::to_string_pretty(&summary)?);
        } else {
            print_summary(&summary, &transform, &self.out);
        }
        Ok(ExitCode::SUCCESS)
    }
}

fn print_summary(s: &Summary, transform: &dyn Transform, out: &std::path::Path) {
    println!(
        "wrt run: {} records in {:.2} s ({:.0} records/s), transform {}",
        s.records_in,
        s.elapsed.as_secs_f64(),
        s.throughput(),
        &transform.digest()[..12],
    );
    let rows = [
        ("change events", s.change_events),
        ("records out", s.records_out),
        ("dead letters", s.dead_letters),
        ("failed calls", s.failed_calls),
        ("tombstones", s.tombstones),
        ("heartbeats", s.heartbeats),
        ("schema changes", s.schema_changes),
    ];
    for (name, n) in rows {
        println!("  {name:<16}{n:>10}");
    }
    println!(
        "  {:<16}{:>10}  ({:.1} MiB under {})",
        "objects",
        s.objects,
        s.bytes_written as f64 / (1 << 20) as f64,
        out.display()
    );
}
