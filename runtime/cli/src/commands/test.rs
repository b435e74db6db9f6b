use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::json;
use wrt::event::row_to_json;
use wrt::model::KafkaRecord;
use wrt::pipeline::source;
use wrt::pipeline::{self, Emit};

use super::{TransformArgs, key_value, replay_check};

/// Run a transform on fixture events, with no infrastructure, and check what it makes.
///
/// Prints one JSON line per output row, dead letter, tombstone or heartbeat, in input
/// order. With --expect, compares against that file and prints a diff; the exit code is 0
/// only on a match.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  \
    wrt test pii_mask.wasm --events guest-examples/pii-mask/tests/events.jsonl \\\n    \
    --expect guest-examples/pii-mask/tests/expected.jsonl --config salt=s3cret")]
pub struct Test {
    #[command(flatten)]
    transform: TransformArgs,

    /// Fixture events: JSON Lines of Kafka records (as `wrt sample` writes) or bare
    /// Debezium envelopes.
    #[arg(long, value_name = "FILE")]
    events: PathBuf,

    /// The expected output; without it the output is only printed.
    #[arg(long, value_name = "FILE")]
    expect: Option<PathBuf>,

    /// Transform configuration, repeatable.
    #[arg(long = "config", short = 'c', value_name = "KEY=VALUE", value_parser = key_value)]
    config: Vec<(String, String)>,

    /// Events per transform call.
    #[arg(long, default_value_t = pipeline::Options::default().batch_size, value_name = "N")]
    batch_size: usize,

    /// Run the events again on the same instance, and on a fresh one with the batches in
    /// reverse order, and fail if the output differs, as `wrt deploy --events` does: hosts
    /// replay from a fresh instance.
    #[arg(long)]
    check_replay: bool,
}

impl Test {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        anyhow::ensure!(self.batch_size > 0, "--batch-size must be at least 1");
        let text = std::fs::read_to_string(&self.events)
            .with_context(|| format!("reading events from {}", self.events.display()))?;
        let records = source::records_from_jsonl(&text);
        let mut transform = self.transform.load(&self.config)?;

        let emitted = replay_check::run_batches(&records, self.batch_size, &mut transform);
        if self.check_replay {
            replay_check::check(&records, self.batch_size, &emitted, &mut transform)?;
        }
        let mut actual = String::new();
        for (record, emits) in records.iter().zip(&emitted) {
            for emit in emits {
                actual.push_str(&emit_line(record, emit));
                actual.push('\n');
            }
        }

        let Some(expect) = &self.expect else {
            print!("{actual}");
            return Ok(ExitCode::SUCCESS);
        };
        let expected = std::fs::read_to_string(expect)
            .with_context(|| format!("reading the expectation {}", expect.display()))?;
        let expected = normalise(&expected)
            .with_context(|| format!("{} is not JSON Lines", expect.display()))?;
        if expected == actual {
            println!(
                "ok: {} records, {} output lines match {}",
                records.len(),
                actual.lines().count(),
                expect.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
        let diff = similar::TextDiff::from_lines(&expected, &actual);
        print!(
            "{}",
            diff.unified_diff()
                .context_radius(2)
                .header(&expect.display().to_string(), "actual")
        );
        println!("FAILED: the output differs from {}", expect.display());
        Ok(ExitCode::FAILURE)
    }
}

/// One line of `wrt test` output.
fn emit_line(record: &KafkaRecord, emit: &Emit) -> String {
    let at = format!("{}/{}/{}", record.topic, record.partition, record.offset);
    let line = match emit {
        Emit::Output(..) | Emit::SchemaChange(_) => {
            let output = emit.row().expect("a row");
            let partition: serde_json::Map<_, _> = output
                .partition
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            json!({ "at": at, "destination": output.destination, "partition": partition,
                    "row": row_to_json(&output.row) })
        }
        Emit::DeadLetter(reason) => json!({ "at": at, "dead_letter": reason }),
        Emit::Tombstone => json!({ "at": at, "tombstone": true }),
        Emit::Heartbeat => json!({ "at": at, "heartbeat": true }),
    };
    line.to_string()
}

/// Re-serialises each line so spacing in a hand-written expectation does not matter.
fn normalise(text: &str) -> anyhow::Result<String> {
    let mut out = String::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let value: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("line {}", n + 1))?;
        out.push_str(&value.to_string());
        out.push('\n');
    }
    Ok(out)
}
