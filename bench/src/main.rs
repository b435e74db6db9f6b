//! `pii-baseline`: events/s of `wrt run` on the bundled sample stream with the PII-masking
//! transform as a sandboxed Rust guest and as plain Rust in the host, side by side in one
//! run, alternating, reporting medians and the ratio (the cost of the sandbox).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use indicatif::ProgressBar;
use wrt::model::KafkaRecord;
use wrt::pipeline::batch::Rotation;
use wrt::pipeline::sink::LocalDir;
use wrt::pipeline::source::MemorySource;
use wrt::pipeline::transform::sandbox::{Limits, Sandbox, TransformConfig};
use wrt::pipeline::transform::{Current, Transform};
use wrt::pipeline::{self, Options, Summary};
use wrt::telemetry::Telemetry;

use wrt_bench::SALT;
use wrt_bench::native_pii::NativePiiMask;

/// Measure the sandbox's cost on the bundled sample stream.
#[derive(Debug, Parser)]
#[command(
    after_help = "Example:\n  cargo run --release -p wrt-bench --bin pii-baseline -- --runs 7"
)]
struct Args {
    /// Runs of each variant (alternating); medians are reported.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Events per transform call.
    #[arg(long, default_value_t = Options::default().batch_size)]
    batch_size: usize,
    /// Write the result as JSON here too.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let records = wrt::sample::sample_records();
    let options = options(args.batch_size);
    let sandbox = Sandbox::new(None)?;
    let wasm = std::fs::read(wrt_tests::guest("pii_mask")).context("the pii_mask guest")?;
    let compiled = sandbox.compile(&wasm)?;
    let config: TransformConfig = [("salt".to_string(), SALT.to_string())].into();

    let (mut wasm_times, mut native_times) = (Vec::new(), Vec::new());
    for run in 0..args.runs {
        let guest: Box<dyn Transform> =
            Box::new(sandbox.instantiate(&compiled, config.clone(), Limits::default())?);
        let native: Box<dyn Transform> = Box::new(NativePiiMask::new(SALT));
        // Alternate the order so drift on a noisy machine hits both sides alike.
        let pair = if run % 2 == 0 {
            [guest, native]
        } else {
            [native, guest]
        };
        for transform in pair {
            let is_native = transform.digest() == "native-pii-mask";
            let elapsed = run_once(&records, transform, &options)?;
            let times = if is_native {
                &mut native_times
            } else {
                &mut wasm_times
            };
            times.push(elapsed);
        }
    }
    let (wasm, native) = (median(&wasm_times), median(&native_times));
    let rate = |d: Duration| records.len() as f64 / d.as_secs_f64();
    let result = serde_json::json!({
        "records": records.len(),
        "runs": args.runs,
        "batch_size": args.batch_size,
        "wasm_guest_records_per_s": rate(wasm).round(),
        "native_records_per_s": rate(native).round(),
        "wasm_over_native_time": (wasm.as_secs_f64() / native.as_secs_f64() * 1000.0).round() / 1000.0,
    });
    println!("records          {}", records.len());
    println!("runs             {} each, alternating; medians", args.runs);
    println!(
        "rust guest       {:>10.0} records/s  ({:.3} s)",
        rate(wasm),
        wasm.as_secs_f64()
    );
    println!(
        "native in host   {:>10.0} records/s  ({:.3} s)",
        rate(native),
        native.as_secs_f64()
    );
    println!(
        "guest / native   {:>10.3}x time",
        result["wasm_over_native_time"]
    );
    if let Some(path) = args.json {
        std::fs::write(&path, serde_json::to_string_pretty(&result)?)?;
    }
    Ok(())
}

/// Windows close by count only, so every run writes the same objects however slow.
fn options(batch_size: usize) -> Options {
    Options {
        batch_size,
        rotation: Rotation {
            max_age: Duration::MAX,
            ..Rotation::default()
        },
        ..Options::default()
    }
}

fn run_once(
    records: &[KafkaRecord],
    transform: Box<dyn Transform>,
    options: &Options,
) -> anyhow::Result<Duration> {
    let (summary, _dir) = run_into_tempdir(records, transform, options)?;
    Ok(summary.elapsed)
}

/// Runs the pipeline over `records` into a fresh folder, which is returned to inspect.
fn run_into_tempdir(
    records: &[KafkaRecord],
    transform: Box<dyn Transform>,
    options: &Options,
) -> anyhow::Result<(Summary, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let mut source = MemorySource::new(records.to_vec());
    let sink = LocalDir::new(dir.path());
    let telemetry = Arc::new(Telemetry::new("bench", transform.digest()));
    let current = Current::fixed(transform);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let summary = runtime.block_on(pipeline::run(
        &mut source,
        current,
        &sink,
        options,
        &telemetry,
        &ProgressBar::hidden(),
    ))?;
    Ok((summary, dir))
}

fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Every object's bytes, keyed by its path with the transform digest taken out. The
    /// local store's metadata files beside the objects are left out: they name the version
    /// that wrote them, which differs here by design.
    fn contents(dir: &std::path::Path, digest: &str) -> BTreeMap<String, Vec<u8>> {
        wrt_tests::files(dir)
            .into_iter()
            .filter(|(key, _)| !key.ends_with(".wrt-meta.json"))
            .map(|(key, body)| (key.replace(&digest[..12], "DIGEST"), body))
            .collect()
    }

    /// The baseline is only a baseline if it computes the same thing as the guest.
    #[test]
    fn native_and_guest_write_identical_objects() {
        let records = wrt::sample::sample_records();
        let options = options(Options::default().batch_size);
        let sandbox = Sandbox::new(None).unwrap();
        let wasm = std::fs::read(wrt_tests::guest("pii_mask")).unwrap();
        let config: TransformConfig = [("salt".to_string(), SALT.to_string())].into();
        let guest = sandbox.load(&wasm, config, Limits::default()).unwrap();
        let guest_digest = guest.digest().to_string();
        let native = NativePiiMask::new(SALT);
        let (gs, gdir) = run_into_tempdir(&records, Box::new(guest), &options).unwrap();
        let (ns, ndir) = run_into_tempdir(&records, Box::new(native), &options).unwrap();
        assert_eq!(
            (gs.records_out, gs.dead_letters),
            (ns.records_out, ns.dead_letters)
        );
        assert!(gs.records_out >= 10_000);
        let guest_objects = contents(gdir.path(), &guest_digest);
        let native_objects = contents(ndir.path(), "native-pii-mask");
        assert_eq!(guest_objects.len(), native_objects.len());
        assert!(
            guest_objects == native_objects,
            "the native baseline drifted from the guest"
        );
    }
}
