//! `cdc-bench`: wrt against its limit and a peer, one row after another in one run, on the
//! local stack (Kafka → transform → S3). `bash bench/run` builds everything and runs it.
//!
//! Rows: 1 raw rdkafka consumption; 2 wrt with the PII transform compiled into the host;
//! 3 wrt with the Rust guest; 4 wrt with the JavaScript guest; 5 the peer (Benthos with
//! Kafka/S3 plugins and the PII logic in Bloblang, `bench/peer/`). Every row is its own
//! process, joins a fresh consumer group, writes under a fresh prefix, and counts as done
//! when the group's committed offsets cover every record. Then the switch pauses of one more
//! `wrt` process whose transform is replaced while it reads (`switches`).

mod children;
mod fresh;
mod load;
mod measure;
mod report;
mod switches;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use clap::{Parser, Subcommand};
use sha2::{Digest, Sha256};
use wrt::config::BatchConfig;
use wrt::model::KafkaRecord;
use wrt_bench::SALT;

use load::Topics;
use report::{Freshness, Report, RowResult, Throughput};

/// Benchmark wrt against its limit and a peer on the local stack.
#[derive(Debug, Parser)]
#[command(
    after_help = "Example:\n  bash bench/run --events 1000000 --repeats 3",
    args_override_self = true
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Load the workload if needed, measure every row, write the results.
    Run(Box<RunArgs>),
    /// Row 1's process (started by `run`).
    #[command(hide = true)]
    Raw(children::Raw),
    /// Row 2's process (started by `run`).
    #[command(hide = true)]
    Native(children::Native),
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Change events in the workload (snapshot reads, inserts, updates, deletes).
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Seed of the shop simulation.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The `wrt` binary (rows 3 and 4); by default the one beside this binary.
    #[arg(long)]
    wrt: Option<PathBuf>,
    /// The Rust PII guest component; by default the one the test build made.
    #[arg(long, default_value_os_t = wrt_tests::guest("pii_mask"))]
    rust_guest: PathBuf,
    /// Another `wrt` binary (say, the previous main's) run with the Rust guest as its own
    /// row beside this one, so the two are compared in one run; not run without it.
    #[arg(long)]
    baseline_wrt: Option<PathBuf>,
    /// The JavaScript PII guest component; row 4 is reported as not run without it.
    #[arg(long)]
    js_guest: Option<PathBuf>,
    /// The peer binary (`bench/peer`); row 5 is reported as not run without it.
    #[arg(long)]
    peer: Option<PathBuf>,
    /// Run only these rows (raw, native, rust-guest, baseline, js-guest, peer) and the switch
    /// pauses (switches); all by default.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Transform switches in the switch-pause run (the host's `/status` keeps the last 50).
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u32).range(2..=50))]
    switches: u32,
    /// Skip the freshness runs.
    #[arg(long)]
    no_freshness: bool,
    /// Throughput runs per row; the table shows their medians.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    repeats: u32,
    /// A row is not repeated once its throughput runs have taken this many seconds, so a
    /// slow row (the JavaScript guest) is measured once instead of holding the run for hours.
    #[arg(long, default_value_t = 900)]
    row_budget_seconds: u64,
    /// Events per transform call.
    #[arg(long, default_value_t = BatchConfig::default().batch_size)]
    batch_size: usize,
    /// Events per second in the freshness runs.
    #[arg(long, default_value_t = 1_000)]
    fresh_rate: u32,
    /// Seconds of pacing in the freshness runs.
    #[arg(long, default_value_t = 20)]
    fresh_seconds: u32,
    /// Where cdc.json, cdc.md and cdc.png go.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    /// Where row logs go.
    #[arg(long, default_value = "bench/results/logs")]
    logs: PathBuf,
    #[arg(long, env = "WRT_BENCH_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
    #[arg(
        long,
        env = "WRT_BENCH_S3_ENDPOINT",
        default_value = "http://127.0.0.1:9000"
    )]
    s3_endpoint: String,
    #[arg(long, env = "WRT_BENCH_BUCKET", default_value = "wrt-bench")]
    bucket: String,
}

/// Windows close at the same points in every row and both runs: these counts, bytes and ages.
/// The age is short so that the last, partial windows of a throughput run do not add a long
/// wait to every row's time, and so that freshness is not bounded by it alone.
const MAX_RECORDS: u64 = 5_000;
const MAX_BYTES: u64 = 64 << 20;
const MAX_AGE_MS: u64 = 1_000;
/// Where rows 2–4 serve their metrics, read for the split of their time.
const ADMIN: &str = "127.0.0.1:19464";
const MINIO_USER: &str = "wrtminio";
const MINIO_PASSWORD: &str = "wrtminio-secret";
const REGION: &str = "us-east-1";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Run(args) => run(*args),
        Cmd::Raw(raw) => raw.run(),
        Cmd::Native(native) => native.run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cdc-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// One row of the table: how to start it.
#[derive(Debug, Clone)]
enum Engine {
    Raw,
    Native,
    /// `wrt run --config` of this `wrt` binary with this guest.
    Wasm {
        wrt: PathBuf,
        guest: PathBuf,
    },
    Peer(PathBuf),
}

struct Row {
    id: &'static str,
    name: &'static str,
    engine: Result<Engine, String>,
}

fn rows(args: &RunArgs) -> Vec<Row> {
    let wasm = |guest| Engine::Wasm {
        wrt: args.wrt.clone().expect("set in run"),
        guest,
    };
    let given = |path: &Option<PathBuf>, what: &str| match path {
        Some(p) if p.is_file() => Ok(p.clone()),
        Some(p) => Err(format!("not run: {} does not exist", p.display())),
        None => Err(format!("not run: no {what} given")),
    };
    vec![
        Row {
            id: "raw",
            name: "raw rdkafka consumption (the limit)",
            engine: Ok(Engine::Raw),
        },
        Row {
            id: "native",
            name: "wrt, PII compiled into the host (no WASM)",
            engine: Ok(Engine::Native),
        },
        Row {
            id: "rust-guest",
            name: "wrt, Rust guest",
            engine: Ok(wasm(args.rust_guest.clone())),
        },
        Row {
            id: "baseline",
            name: "wrt baseline (--baseline-wrt), Rust guest",
            engine: given(&args.baseline_wrt, "baseline wrt binary").map(|wrt| Engine::Wasm {
                wrt,
                guest: args.rust_guest.clone(),
            }),
        },
        Row {
            id: "js-guest",
            name: "wrt, JavaScript guest",
            engine: given(&args.js_guest, "JS guest").map(wasm),
        },
        Row {
            id: "peer",
            name: "peer: Benthos v4.60.0 + Bloblang (Redpanda Connect engine)",
            engine: given(&args.peer, "peer binary").map(Engine::Peer),
        },
    ]
}

fn run(mut args: RunArgs) -> anyhow::Result<()> {
    if args.wrt.is_none() {
        args.wrt = Some(std::env::current_exe()?.with_file_name("wrt"));
    }
    std::fs::create_dir_all(&args.out)?;
    std::fs::create_dir_all(&args.logs)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let started = chrono::Utc::now();
    let run_id = started.format("%Y%m%dT%H%M%S").to_string();
    let ticks = measure::clock_ticks()?;
    let s3 = runtime.block_on(s3_client(&args.s3_endpoint));
    runtime.block_on(ensure_bucket(&s3, &args.bucket))?;

    // The workload, loaded once per seed and size.
    eprintln!(
        "generating {} change events (seed {})",
        args.events, args.seed
    );
    let records = wrt::sample::workload(args.seed, args.events);
    let topics = Topics::of(&format!("wrtbench-{}-{}", args.seed, args.events), &records);
    let bytes = load::payload_bytes(&records);
    let loaded_now = if load::already_loaded(&args.brokers, &topics, &records)? {
        eprintln!("workload already in {}", topics.pattern());
        false
    } else {
        eprintln!(
            "loading {} records into {}",
            records.len(),
            topics.pattern()
        );
        runtime.block_on(load::create_topics(&args.brokers, &topics, true))?;
        load::produce(&args.brokers, &topics.prefix, &records)?;
        anyhow::ensure!(
            load::already_loaded(&args.brokers, &topics, &records)?,
            "the workload did not read back as written"
        );
        true
    };
    // Freshness replays the start of the same stream, table records only, at the wall clock.
    let fresh_records: Vec<KafkaRecord> = records
        .iter()
        .filter(|r| is_table(r))
        .take((args.fresh_rate * args.fresh_seconds) as usize)
        .cloned()
        .collect();
    let change_events = records
        .iter()
        .filter(|r| is_table(r) && r.value.is_some())
        .count() as u64;
    drop(records);

    let load_before = loadavg();
    let mut results = Vec::new();
    for row in rows(&args) {
        if !args.only.is_empty() && !args.only.iter().any(|o| o == row.id) {
            continue;
        }
        let engine = match row.engine {
            Ok(engine) => engine,
            Err(reason) => {
                eprintln!("row {}: {reason}", row.id);
                results.push(RowResult::new(row.id, row.name, reason));
                continue;
            }
        };
        let bench = Bench {
            args: &args,
            run_id: &run_id,
            row: row.id,
            engine: &engine,
            ticks,
        };
        let mut result = RowResult::new(row.id, row.name, "ok".into());
        let budget = Duration::from_secs(args.row_budget_seconds);
        let began = Instant::now();
        for run in 1..=args.repeats {
            eprintln!(
                "row {}: throughput run {run} of {} over {} records",
                row.id,
                args.repeats,
                topics.total()
            );
            match bench.throughput(&topics, bytes, run) {
                Ok(t) => {
                    eprintln!(
                        "row {}: {:.0} events/s, {:.1} CPU-s/M, {:.0} MiB peak",
                        row.id, t.events_per_s, t.cpu_s_per_million, t.peak_rss_mib
                    );
                    result.runs.push(t);
                }
                Err(e) => {
                    eprintln!("row {}: {e:#}", row.id);
                    result.status = format!("failed: {e:#}");
                    break;
                }
            }
            if run < args.repeats && began.elapsed() >= budget {
                eprintln!(
                    "row {}: not repeated: {run} run(s) took {:.0} s, over the row budget",
                    row.id,
                    began.elapsed().as_secs_f64()
                );
                break;
            }
        }
        result.throughput = report::median(&result.runs);
        if matches!(engine, Engine::Raw) {
            result.freshness_note = Some("writes no objects".into());
        } else if args.no_freshness {
            result.freshness_note = Some("skipped (--no-freshness)".into());
        } else {
            match runtime.block_on(bench.freshness(&s3, &fresh_records)) {
                Ok(f) => {
                    eprintln!(
                        "row {}: freshness p50 {:.0} ms, p99 {:.0} ms",
                        row.id, f.p50_ms, f.p99_ms
                    );
                    result.freshness = Some(f);
                }
                Err(e) => {
                    eprintln!("row {}: freshness: {e:#}", row.id);
                    result.freshness_note = Some(format!("failed: {e:#}"));
                }
            }
        }
        results.push(result);
    }

    let switches = if args.only.is_empty() || args.only.iter().any(|o| o == "switches") {
        let bench = Bench {
            args: &args,
            run_id: &run_id,
            row: "switches",
            engine: &Engine::Raw,
            ticks,
        };
        eprintln!("switches: {} while wrt reads the workload", args.switches);
        let wrt = args.wrt.as_deref().expect("set above");
        Some(
            switches::measure(
                &bench,
                wrt,
                &s3,
                &runtime,
                &topics,
                change_events,
                args.switches as usize,
            )
            .map_err(|e| format!("failed: {e:#}")),
        )
    } else {
        None
    };
    if let Some(Ok(s)) = &switches {
        eprintln!(
            "switches: pause p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            s.p50_ms, s.p99_ms, s.max_ms
        );
    }

    let report = Report {
        started: started.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        machine: report::Machine {
            cpus: std::thread::available_parallelism().map_or(1, usize::from),
            load_before,
            load_after: loadavg(),
        },
        workload: report::Workload {
            seed: args.seed,
            change_events,
            records: topics.total() as u64,
            bytes,
            partitions: topics.counts.len(),
            topic_pattern: topics.pattern(),
            loaded_now,
        },
        settings: report::Settings {
            batch_size: args.batch_size,
            max_records: MAX_RECORDS,
            max_bytes: MAX_BYTES,
            max_age_ms: MAX_AGE_MS,
            freshness_rate_per_s: args.fresh_rate,
            freshness_seconds: args.fresh_seconds,
            repeats: args.repeats,
            row_budget_seconds: args.row_budget_seconds,
        },
        ratios: report::ratios(&results),
        rows: results,
        switches,
    };
    std::fs::write(
        args.out.join("cdc.json"),
        serde_json::to_string_pretty(&report)? + "\n",
    )?;
    let markdown = report::markdown(&report);
    std::fs::write(args.out.join("cdc.md"), &markdown)?;
    report::chart(&report, &args.out.join("cdc.png"))?;
    println!("{markdown}");
    eprintln!("wrote {}/cdc.{{json,md,png}}", args.out.display());
    Ok(())
}

/// Whether a simulation record is on a table's topic (not a heartbeat or schema change).
fn is_table(record: &KafkaRecord) -> bool {
    let prefix = format!("{}.{}.", wrt::sample::SERVER, wrt::sample::DATABASE);
    record.topic.starts_with(&prefix)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

async fn s3_client(endpoint: &str) -> Client {
    let credentials =
        aws_sdk_s3::config::Credentials::new(MINIO_USER, MINIO_PASSWORD, None, None, "wrt-bench");
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new(REGION))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(credentials)
        .build();
    Client::from_conf(config)
}

/// Creates the bucket; one that exists already is fine.
async fn ensure_bucket(s3: &Client, bucket: &str) -> anyhow::Result<()> {
    match s3.create_bucket().bucket(bucket).send().await {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error().is_some_and(|s| {
                s.is_bucket_already_owned_by_you() || s.is_bucket_already_exists()
            }) =>
        {
            Ok(())
        }
        Err(e) => Err(anyhow::Error::new(e).context(format!("creating bucket {bucket}"))),
    }
}

/// One row's measurements.
struct Bench<'a> {
    args: &'a RunArgs,
    run_id: &'a str,
    row: &'a str,
    engine: &'a Engine,
    ticks: f64,
}

impl Bench<'_> {
    fn log(&self, mode: &str) -> PathBuf {
        self.args
            .logs
            .join(format!("{}-{}-{mode}.log", self.run_id, self.row))
    }

    /// The row's process for `topics`, under consumer group `group`, writing under `prefix`.
    fn command(
        &self,
        topics: &Topics,
        group: &str,
        prefix: &str,
        dir: &Path,
    ) -> anyhow::Result<Command> {
        let me = std::env::current_exe()?;
        let mut command = match self.engine {
            Engine::Raw => {
                let mut c = Command::new(me);
                c.arg("raw")
                    .args(["--brokers", &self.args.brokers])
                    .args(["--topics", &topics.pattern()])
                    .args(["--group", group])
                    .args(["--count", &topics.total().to_string()]);
                c
            }
            Engine::Native => {
                let config = dir.join("pipeline.toml");
                std::fs::write(
                    &config,
                    self.pipeline_toml(topics, group, prefix, &self.args.rust_guest),
                )?;
                let mut c = Command::new(me);
                c.arg("native").arg("--config").arg(config);
                c
            }
            Engine::Wasm { wrt, guest } => {
                let config = dir.join("pipeline.toml");
                std::fs::write(&config, self.pipeline_toml(topics, group, prefix, guest))?;
                let mut c = Command::new(wrt);
                c.args(["run", "--config"]).arg(config);
                c
            }
            Engine::Peer(binary) => {
                let config = dir.join("peer.yaml");
                std::fs::write(&config, self.peer_yaml(topics, group, prefix))?;
                let mut c = Command::new(binary);
                c.arg("run").arg(config);
                c
            }
        };
        command
            .env("AWS_ACCESS_KEY_ID", MINIO_USER)
            .env("AWS_SECRET_ACCESS_KEY", MINIO_PASSWORD)
            .env("AWS_REGION", REGION)
            .env("PII_SALT", SALT)
            .env("RUST_LOG", "warn");
        Ok(command)
    }

    fn pipeline_toml(&self, topics: &Topics, group: &str, prefix: &str, guest: &Path) -> String {
        format!(
            r#"name = "bench-{row}"

[source]
kind = "kafka"
brokers = "{brokers}"
topics = ["{pattern}"]
group-id = "{group}"

[transform]
path = "{guest}"
config = {{ salt = "{SALT}" }}

[batch]
batch-size = {batch_size}
max-records = {MAX_RECORDS}
max-bytes = {MAX_BYTES}
max-age-ms = {MAX_AGE_MS}

[sink]
kind = "s3"
bucket = "{bucket}"
prefix = "{prefix}"
region = "{REGION}"
endpoint-url = "{endpoint}"
force-path-style = true

[admin]
listen = "{ADMIN}"
"#,
            row = self.row,
            brokers = self.args.brokers,
            pattern = topics.pattern().replace('\\', "\\\\"),
            guest = guest.display(),
            batch_size = self.args.batch_size,
            bucket = self.args.bucket,
            endpoint = self.args.s3_endpoint,
        )
    }

    fn peer_yaml(&self, topics: &Topics, group: &str, prefix: &str) -> String {
        format!(
            r#"http:
  enabled: false
logger:
  level: WARN
input:
  wrt_kafka:
    brokers: ["{brokers}"]
    topics_regex: '{pattern}'
    group: "{group}"
    max_records: {MAX_RECORDS}
    max_bytes: {MAX_BYTES}
    max_age: "{MAX_AGE_MS}ms"
    poll_records: {batch_size}
pipeline:
  threads: 1
  processors:
    - bloblang: |
{mapping}
output:
  wrt_s3:
    bucket: "{bucket}"
    prefix: "{prefix}"
    endpoint: "{endpoint}"
    region: "{REGION}"
    digest: "{digest}"
"#,
            brokers = self.args.brokers,
            pattern = topics.pattern(),
            batch_size = self.args.batch_size,
            mapping = PII_BLOBLANG
                .lines()
                .map(|l| format!("        {l}"))
                .collect::<Vec<_>>()
                .join("\n"),
            bucket = self.args.bucket,
            endpoint = self.args.s3_endpoint,
            digest = hex::encode(Sha256::digest(PII_BLOBLANG)),
        )
    }

    /// Run `run` of the row over the whole workload, under its own group and prefix.
    fn throughput(&self, topics: &Topics, bytes: u64, run: u32) -> anyhow::Result<Throughput> {
        let group = format!("wrtbench-{}-{}-throughput-{run}", self.run_id, self.row);
        let prefix = format!("{}/{}/throughput-{run}/", self.run_id, self.row);
        let dir = tempfile::tempdir()?;
        let command = self.command(topics, &group, &prefix, dir.path())?;
        let commits = measure::Commits::new(&self.args.brokers, &group, topics)?;
        let log = self.log(&format!("throughput-{run}"));
        let mut running = measure::spawn(command, &log)?;
        commits.wait_for_all(topics.total(), &mut running, &log)?;
        let seconds = running.started.elapsed().as_secs_f64();
        let stats = measure::proc_stats(running.child.id(), self.ticks)?;
        let split = match self.engine {
            Engine::Native | Engine::Wasm { .. } => Some(measure::time_split(ADMIN)?),
            Engine::Raw | Engine::Peer(_) => None,
        };
        running.stop()?;
        let events = topics.total() as f64;
        Ok(Throughput {
            seconds,
            events_per_s: events / seconds,
            mb_per_s: bytes as f64 / 1e6 / seconds,
            cpu_seconds: stats.cpu_seconds,
            cpu_s_per_million: stats.cpu_seconds / events * 1e6,
            peak_rss_mib: stats.peak_rss_bytes as f64 / f64::from(1 << 20),
            lanes_in_calls: split.map(|s| s.transform_seconds / seconds),
            writers_busy: split.map(|s| s.write_seconds / seconds),
        })
    }

    async fn freshness(&self, s3: &Client, records: &[KafkaRecord]) -> anyhow::Result<Freshness> {
        let prefix_topics = format!("wrtbench-fresh-{}-{}", self.run_id, self.row);
        let topics = Topics::of(&prefix_topics, records);
        load::create_topics(&self.args.brokers, &topics, false).await?;
        let group = format!("wrtbench-{}-{}-freshness", self.run_id, self.row);
        let prefix = format!("{}/{}/freshness/", self.run_id, self.row);
        let dir = tempfile::tempdir()?;
        let command = self.command(&topics, &group, &prefix, dir.path())?;
        let commits = measure::Commits::new(&self.args.brokers, &group, &topics)?;
        let log = self.log("freshness");
        let mut running = measure::spawn(command, &log)?;
        let joined_by = Instant::now() + Duration::from_secs(60);
        while !commits.joined(&group)? {
            running.check_alive(&log)?;
            anyhow::ensure!(
                Instant::now() < joined_by,
                "the row did not join its group in 60 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let rows = records.iter().filter(|r| r.value.is_some()).count() as u64;
        let mut watcher = fresh::Watcher::new(s3.clone(), &self.args.bucket, &prefix);
        let timeout = Duration::from_secs(u64::from(self.args.fresh_seconds) + 60);
        let (produced, seen) = tokio::join!(
            fresh::produce_paced(
                &self.args.brokers,
                &prefix_topics,
                records,
                self.args.fresh_rate
            ),
            watcher.watch(rows, timeout),
        );
        produced?;
        let seen = seen?;
        running.check_alive(&log)?;
        running.stop()?;
        load::delete_topics(&self.args.brokers, &topics).await?;
        anyhow::ensure!(
            seen == rows,
            "{seen} of {rows} rows showed up in {timeout:?}"
        );
        let q = |q| fresh::quantile(&watcher.latencies_ms, q).unwrap_or(f64::NAN);
        Ok(Freshness {
            rows: seen,
            objects: watcher.objects(),
            p50_ms: q(0.5),
            p99_ms: q(0.99),
        })
    }
}

/// The PII transform of `guest-examples/pii-mask` for the peer, in Bloblang, over the row the
/// peer's `debezium_row()` method decodes (the counterpart of wrt's host-side decoder).
const PII_BLOBLANG: &str = include_str!("../../peer/pii.blobl");
