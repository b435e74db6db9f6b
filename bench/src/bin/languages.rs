//! `languages`: the PII-masking transform in each guest language, side by side in one run:
//! component size, cold start (compile + instantiate + `init`, no compile cache) and the
//! guest's cost per event over the bundled sample stream, relative to the Rust guest.
//!
//! The Rust guest comes from the test build; the others are built here with
//! `sdk/<lang>/build` (each script installs its toolchain on first use).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use wrt::event::ChangeEvent;
use wrt::pipeline::decode::{Decoded, decode};
use wrt::pipeline::transform::Transform;
use wrt::pipeline::transform::sandbox::{Limits, Sandbox, TransformConfig};
use wrt::sample::sample_records;
use wrt_tests::{guest, repo_root};

/// Compare the guest languages on the PII transform.
#[derive(Debug, Parser)]
#[command(after_help = "Example:\n  cargo run --release -p wrt-bench --bin languages")]
struct Args {
    /// Events per transform call.
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
}

struct Figures {
    lang: &'static str,
    size: u64,
    cold: Duration,
    per_event: Duration,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let events: Vec<ChangeEvent> = sample_records()
        .iter()
        .filter_map(|record| match decode(record) {
            Ok(Decoded::Change(event)) => Some(event),
            _ => None,
        })
        .collect();
    let built = tempfile::tempdir()?;
    let mut rows = Vec::new();
    for lang in ["rust", "js", "python", "go", "c"] {
        let wasm = if lang == "rust" {
            guest("pii_mask")
        } else {
            let out = built.path().join(format!("{lang}.wasm"));
            let project = repo_root()
                .join("guest-examples")
                .join(lang)
                .join("pii-mask");
            let status = Command::new(repo_root().join("sdk").join(lang).join("build"))
                .arg(&project)
                .arg(&out)
                .status()
                .with_context(|| format!("building the {lang} guest"))?;
            anyhow::ensure!(status.success(), "building the {lang} guest failed");
            out
        };
        rows.push(measure(lang, wasm, &events, args.batch_size)?);
    }

    let rust = rows[0].per_event.as_secs_f64();
    println!(
        "{} change events from the bundled sample stream, batches of {}",
        events.len(),
        args.batch_size
    );
    println!("| language | component | cold start | per event | vs Rust |");
    println!("|---|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {:.2} MiB | {:.0} ms | {:.2} µs | {:.1}× |",
            r.lang,
            r.size as f64 / f64::from(1 << 20),
            r.cold.as_secs_f64() * 1e3,
            r.per_event.as_secs_f64() * 1e6,
            r.per_event.as_secs_f64() / rust
        );
    }
    Ok(())
}

fn measure(
    lang: &'static str,
    wasm: PathBuf,
    events: &[ChangeEvent],
    batch_size: usize,
) -> anyhow::Result<Figures> {
    let bytes = std::fs::read(&wasm).with_context(|| format!("reading {}", wasm.display()))?;
    let config = TransformConfig::from([("salt".to_string(), "bench-salt".to_string())]);
    // The interpreted guests' first batch can outlast the default 5 s on a busy machine.
    let limits = Limits {
        call_timeout: Duration::from_secs(60),
        ..Limits::default()
    };
    let started = Instant::now();
    let mut transform = Sandbox::new(None)?.load(&bytes, config, limits)?;
    let cold = started.elapsed();

    let started = Instant::now();
    for batch in events.chunks(batch_size) {
        let outcomes = transform
            .process(batch)
            .map_err(|e| anyhow::anyhow!("{lang}: {e}"))?;
        anyhow::ensure!(
            outcomes.len() == batch.len(),
            "{lang}: one outcome per event"
        );
    }
    let per_event = started.elapsed() / u32::try_from(events.len())?;
    Ok(Figures {
        lang,
        size: bytes.len() as u64,
        cold,
        per_event,
    })
}
