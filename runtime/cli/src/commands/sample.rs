use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

/// Write the bundled sample CDC stream (Debezium events of a small shop) as JSON Lines.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  wrt sample --out events.jsonl\n  wrt test pii_mask.wasm --events events.jsonl"
)]
pub struct Sample {
    /// Write here instead of standard output.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,

    /// Only the first N records.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
}

impl Sample {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let records = wrt::sample::sample_records();
        let mut text = String::new();
        for record in records.iter().take(self.limit.unwrap_or(usize::MAX)) {
            text.push_str(&wrt::pipeline::source::record_to_jsonl(record));
            text.push('\n');
        }
        match &self.out {
            Some(path) => {
                std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?
            }
            None => std::io::stdout().lock().write_all(text.as_bytes())?,
        }
        Ok(ExitCode::SUCCESS)
    }
}
