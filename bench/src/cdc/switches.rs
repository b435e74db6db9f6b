//! Switch pauses under load: `wrt run --watch` reads the whole workload while its transform
//! file is replaced, back and forth between two versions of the `tagger` guest, as fast as
//! the host takes them. Each switch's pause is what the host itself reports (`/status`):
//! how long its lanes stood still at the batch boundary, closing their open windows and
//! handing them to the writers. Then every object is read back: its rows must all carry the
//! version its key names, no window may have been written by both versions, and the rows
//! must add up to the workload's change events.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use aws_sdk_s3::Client;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::load::Topics;
use crate::measure::{self, Commits};
use crate::{ADMIN, Bench, Engine, fresh};

#[derive(Debug, Clone, Serialize)]
pub struct Switches {
    pub switches: usize,
    /// Switches made while records were still left to commit.
    pub under_load: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Objects read back, and the rows in them.
    pub objects: usize,
    pub rows: u64,
    pub pauses_ms: Vec<f64>,
}

/// The two versions, as (name in the rows, bytes, digest).
fn versions() -> anyhow::Result<[(&'static str, Vec<u8>, String); 2]> {
    let version = |name: &'static str, guest: &str| -> anyhow::Result<_> {
        let path = wrt_tests::guest(guest);
        let wasm = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let digest = hex::encode(Sha256::digest(&wasm));
        Ok((name, wasm, digest))
    };
    Ok([version("v1", "tagger_v1")?, version("v2", "tagger_v2")?])
}

/// Replaces `path` in one step, so the host never reads half a component.
fn install(path: &Path, wasm: &[u8]) -> anyhow::Result<()> {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, wasm)?;
    std::fs::rename(&partial, path)?;
    Ok(())
}

fn status(admin: &str) -> anyhow::Result<serde_json::Value> {
    let text = ureq::get(format!("http://{admin}/status"))
        .call()
        .and_then(|mut r| r.body_mut().read_to_string())
        .with_context(|| format!("reading the host's status from {admin}"))?;
    Ok(serde_json::from_str(&text)?)
}

fn pauses(status: &serde_json::Value) -> Vec<f64> {
    status["swaps"]
        .as_array()
        .map(|swaps| {
            swaps
                .iter()
                .filter_map(|s| s["pause_ms"].as_f64())
                .collect()
        })
        .unwrap_or_default()
}

pub fn measure(
    bench: &Bench,
    wrt: &Path,
    s3: &Client,
    runtime: &tokio::runtime::Runtime,
    topics: &Topics,
    change_events: u64,
    switches: usize,
) -> anyhow::Result<Switches> {
    let versions = versions()?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("transform.wasm");
    install(&path, &versions[0].1)?;
    let engine = Engine::Wasm {
        wrt: wrt.to_path_buf(),
        guest: path.clone(),
    };
    let bench = Bench {
        engine: &engine,
        ..*bench
    };
    let group = format!("wrtbench-{}-switches", bench.run_id);
    let prefix = format!("{}/switches/", bench.run_id);
    let mut command = bench.command(topics, &group, &prefix, dir.path())?;
    command.arg("--watch");
    let commits = Commits::new(&bench.args.brokers, &group, topics)?;
    let log = bench.log("switches");
    let mut running = measure::spawn(command, &log)?;

    let began = Instant::now();
    while commits.committed()? == 0 {
        running.check_alive(&log)?;
        ensure!(
            began.elapsed() < Duration::from_secs(120),
            "nothing committed in 120 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut under_load = 0;
    for n in 1..=switches {
        if commits.committed()? < topics.total() {
            under_load += 1;
        }
        install(&path, &versions[n % 2].1)?;
        // One switch at a time: the host checks the file every 500 ms.
        let asked = Instant::now();
        while pauses(&status(ADMIN)?).len() < n {
            running.check_alive(&log)?;
            ensure!(
                asked.elapsed() < Duration::from_secs(30),
                "switch {n} did not happen in 30 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    eprintln!("switches: {switches} made ({under_load} under load); waiting for the last commits");
    commits.wait_for_all(topics.total(), &mut running, &log)?;
    let pauses_ms = pauses(&status(ADMIN)?);
    running.stop()?;
    ensure!(
        pauses_ms.len() == switches,
        "the host reports {} switches, {switches} were made",
        pauses_ms.len()
    );

    let (objects, rows) =
        runtime.block_on(read_back(s3, &bench.args.bucket, &prefix, &versions))?;
    ensure!(
        rows == change_events,
        "{rows} rows in the lake for {change_events} change events"
    );
    let q = |q| fresh::quantile(&pauses_ms, q).unwrap_or(f64::NAN);
    Ok(Switches {
        switches,
        under_load,
        p50_ms: q(0.5),
        p99_ms: q(0.99),
        max_ms: q(1.0),
        objects,
        rows,
        pauses_ms,
    })
}

/// Reads every row object under `prefix`: each must hold rows of the one version its key
/// names. Returns the objects and rows read.
async fn read_back(
    s3: &Client,
    bucket: &str,
    prefix: &str,
    versions: &[(&'static str, Vec<u8>, String); 2],
) -> anyhow::Result<(usize, u64)> {
    let (mut objects, mut rows) = (0, 0);
    let mut windows = BTreeSet::new();
    for key in fresh::row_objects(s3, bucket, prefix).await? {
        let within = &key[prefix.len()..];
        let Some((name, _, _)) = versions
            .iter()
            .find(|(_, _, digest)| within.ends_with(&format!("+{}.jsonl.gz", &digest[..12])))
        else {
            bail!("{key} names neither version");
        };
        // A window written twice (once by each version) would show as one start twice.
        let window = &within[..within.len() - ".jsonl.gz".len() - 13];
        ensure!(
            windows.insert(window.to_string()),
            "{window} was written by both versions"
        );
        let body = s3.get_object().bucket(bucket).key(&key).send().await?;
        let bytes = body.body.collect().await?.into_bytes();
        let mut text = String::new();
        flate2::read::GzDecoder::new(&bytes[..]).read_to_string(&mut text)?;
        let mut seen = BTreeSet::new();
        for line in text.lines() {
            let row: serde_json::Value = serde_json::from_str(line)?;
            seen.insert(row["_version"].as_str().unwrap_or("none").to_string());
            rows += 1;
        }
        ensure!(
            seen.len() == 1 && seen.contains(*name),
            "{key} is {name}'s but holds rows of {seen:?}"
        );
        objects += 1;
    }
    Ok((objects, rows))
}
