//! `languages`: the PII-masking transform in each guest language, side by side in one run:
//! component size, cold start (compile + instantiate + `init`, no compile cache) with the
//! hosts' compiler (Cranelift) and with the one `wrt deploy` checks with (Winch), the whole
//! `wrt deploy` command against a local registry, and the guest's cost per event over the
//! bundled sample stream with each compiler, relative to the Rust guest.
//!
//! The Rust guest comes from the test build; the others are built here with
//! `sdk/<lang>/build` (each script installs its toolchain on first use).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use wrt::event::ChangeEvent;
use wrt::pipeline::decode::{Decoded, decode};
use wrt::pipeline::transform::Transform;
use wrt::pipeline::transform::sandbox::{Compiler, Limits, Sandbox, TransformConfig};
use wrt::sample::sample_records;
use wrt_tests::{guest, repo_root};

/// Compare the guest languages on the PII transform.
#[derive(Debug, Parser)]
#[command(
    after_help = "Example (the wrt binary is timed from beside this one):\n  \
                  cargo build --release -p wrt-cli --bin wrt && cargo run --release -p wrt-bench --bin languages"
)]
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
    /// The same under Winch.
    cold_baseline: Duration,
    per_event_baseline: Duration,
    /// `wrt deploy`, start to exit.
    deploy: Duration,
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
    println!(
        "| language | component | cold start, Cranelift | cold start, Winch | `wrt deploy` | \
         per event, Cranelift | per event, Winch | vs Rust (Cranelift) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1e3);
    let us = |d: Duration| format!("{:.2} µs", d.as_secs_f64() * 1e6);
    for r in &rows {
        println!(
            "| {} | {:.2} MiB | {} | {} | {} | {} | {} | {:.1}× |",
            r.lang,
            r.size as f64 / f64::from(1 << 20),
            ms(r.cold),
            ms(r.cold_baseline),
            ms(r.deploy),
            us(r.per_event),
            us(r.per_event_baseline),
            r.per_event.as_secs_f64() / rust
        );
    }
    Ok(())
}

/// `wrt deploy` of `wasm` to a fresh local registry with an empty compile cache.
fn deploy(wasm: &Path) -> anyhow::Result<Duration> {
    let wrt = std::env::current_exe()?.with_file_name("wrt");
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("pipeline.toml");
    std::fs::write(
        &config,
        "name = \"languages\"\n[source]\nkind = \"sample\"\n[transform]\n\
         path = \"unused.wasm\"\ntimeout-ms = 60000\n[transform.config]\nsalt = \"bench-salt\"\n\
         [sink]\nkind = \"local\"\npath = \"lake\"\n[registry]\n",
    )?;
    let started = Instant::now();
    let out = Command::new(&wrt)
        .arg("deploy")
        .arg(wasm)
        .arg("--config")
        .arg(&config)
        .args(["--by", "languages"])
        .env("WRT_CACHE_DIR", dir.path().join("cache"))
        .current_dir(dir.path())
        .output()
        .with_context(|| format!("running {}", wrt.display()))?;
    let took = started.elapsed();
    anyhow::ensure!(
        out.status.success(),
        "wrt deploy {}: {}",
        wasm.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(took)
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
    let run = |compiler| -> anyhow::Result<(Duration, Duration)> {
        let started = Instant::now();
        let mut transform =
            Sandbox::with_compiler(None, compiler)?.load(&bytes, config.clone(), limits)?;
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
        Ok((cold, started.elapsed() / u32::try_from(events.len())?))
    };
    let (cold, per_event) = run(Compiler::Optimizing)?;
    let (cold_baseline, per_event_baseline) = run(Compiler::Baseline)?;
    Ok(Figures {
        lang,
        size: bytes.len() as u64,
        cold,
        per_event,
        cold_baseline,
        per_event_baseline,
        deploy: deploy(&wasm)?,
    })
}
