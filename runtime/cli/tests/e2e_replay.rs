//! `wrt replay` on the real local stack (`tests/stack/up`): MariaDB → Debezium → Kafka →
//! a live `wrt run` with `tagger_v1` under `live/`, and a replay of part of the history with
//! `tagger_v2` under `replay/` while the workload goes on.
//!
//! The tagger guests turn every change into `{id, rev, _op, _version}`, so the rows show
//! each change once and the version that wrote it.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use wrt::model::KafkaRecord;
use wrt::pipeline::source::kafka::record_of;
use wrt_tests::guest;

const LIVE: &str = "live/";
const REPLAY: &str = "replay/";

/// `wrt` with MinIO's credentials and the tests' compile cache.
fn wrt(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wrt"));
    command
        .args(args)
        .env("AWS_ACCESS_KEY_ID", MINIO_USER)
        .env("AWS_SECRET_ACCESS_KEY", MINIO_PASSWORD)
        .env(
            "WRT_CACHE_DIR",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("components"),
        );
    command
}

fn assert_ok(out: &Output, what: &str) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

/// The data lines under `prefix` (dead letters and `_wrt/` left out), sorted.
async fn lines(setup: &Setup, prefix: &str) -> Vec<String> {
    let mut all: Vec<String> = objects(&setup.s3, &setup.names.bucket, prefix)
        .await
        .into_iter()
        .filter(|(key, _)| !key[prefix.len()..].starts_with('_'))
        .flat_map(|(_, lines)| lines)
        .collect();
    all.sort();
    all
}

/// Waits until the live lake holds `want` rows.
async fn wait_for_live(setup: &Setup, want: usize, live: &mut Wrt) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while lines(setup, &format!("{LIVE}customers/")).await.len() < want {
        live.assert_running();
        assert!(
            Instant::now() < deadline,
            "the live lake did not fill; see live.log"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The offsets `group` committed on `topic`'s partitions, summed.
fn committed_sum(consumer: &BaseConsumer, topic: &str, partitions: i32) -> i64 {
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .unwrap();
    committed
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            _ => 0,
        })
        .sum()
}

/// The records of `[from, to)` per partition, read straight from the broker.
fn read_range(brokers: &str, topic: &str, spans: &BTreeMap<i32, (i64, i64)>) -> Vec<KafkaRecord> {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "e2e-replay-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    for (p, (from, _)) in spans {
        list.add_partition_offset(topic, *p, Offset::Offset(*from))
            .unwrap();
    }
    consumer.assign(&list).unwrap();
    let mut records = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let done = |consumer: &BaseConsumer| {
        let positions = consumer.position().unwrap();
        spans.iter().all(|(p, (from, to))| {
            from == to
                || matches!(positions.find_partition(topic, *p).map(|e| e.offset()),
                            Some(Offset::Offset(at)) if at >= *to)
        })
    };
    while !done(&consumer) {
        assert!(Instant::now() < deadline, "the range was not read in 60 s");
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.unwrap();
            let (_, to) = spans[&message.partition()];
            if message.offset() < to {
                records.push(record_of(&message));
            }
        }
    }
    records
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replay_equals_a_fresh_run_exactly_once_while_the_live_pipeline_commits() {
    let load = workload(100, 3_000, 31);
    let setup = setup("replay", &load, |names, stack| {
        Pipeline {
            guest: "tagger_v1",
            config: String::new(),
            // Short windows: the live pipeline commits several times a second.
            batch: "batch-size = 128\nmax-records = 400\nmax-age-ms = 200".into(),
            sink: "prefix = \"live/\"",
            ..Pipeline::default()
        }
        .toml(names, stack)
    })
    .await;
    let topic = setup.names.topic();
    let group = format!("wrt-{}", setup.names.connector);
    let mut live = Wrt::start(&setup.config, &setup.dir.path().join("live.log"));

    // History: the snapshot and two thirds of the changes, all in the live lake.
    let (first, second) = load
        .streaming_sql
        .split_at(load.streaming_sql.len() * 2 / 3);
    let use_db = format!("USE {};\n", setup.names.database);
    setup.stack.sql(&format!("{use_db}{}", first.concat()));
    let want = 100 + first.len();
    wait_for_live(&setup, want, &mut live).await;

    // The window of history: from a quarter of the way in to its end, per partition.
    let reader: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &setup.stack.kafka)
        .set("group.id", &group)
        .create()
        .unwrap();
    let mut spans = BTreeMap::new();
    for p in 0..3 {
        let (low, high) = reader
            .fetch_watermarks(&topic, p, Duration::from_secs(10))
            .unwrap();
        spans.insert(p, (low + (high - low) / 4, high));
    }
    let bound = |pick: fn(&(i64, i64)) -> i64| {
        spans
            .iter()
            .map(|(p, span)| format!("{topic}/{p}/{}", pick(span)))
            .collect::<Vec<_>>()
            .join(",")
    };
    let (from, to) = (bound(|s| s.0), bound(|s| s.1));
    let v2 = guest("tagger_v2");
    let replay_args = |prefix: &'static str| {
        vec![
            "replay".to_string(),
            "--config".into(),
            setup.config.display().to_string(),
            "--from".into(),
            from.clone(),
            "--to".into(),
            to.clone(),
            "--transform".into(),
            v2.display().to_string(),
            "--prefix".into(),
            prefix.into(),
            "--json".into(),
        ]
    };

    // The rest of the workload flows while the replay runs.
    let flowing = Arc::new(AtomicBool::new(true));
    let feeder = {
        let flowing = Arc::clone(&flowing);
        let stack = Stack {
            mariadb_port: setup.stack.mariadb_port.clone(),
            kafka: String::new(),
            minio: String::new(),
        };
        let chunks: Vec<String> = second.chunks(20).map(|c| c.concat()).collect();
        let use_db = use_db.clone();
        std::thread::spawn(move || {
            let mut chunks = chunks.into_iter();
            for chunk in chunks.by_ref() {
                stack.sql(&format!("{use_db}{chunk}"));
                if !flowing.load(Ordering::Acquire) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(150));
            }
            let rest: String = chunks.collect();
            if !rest.is_empty() {
                stack.sql(&format!("{use_db}{rest}"));
            }
        })
    };
    // The replay starts once the flowing changes reach the live pipeline's commits (the
    // connector takes a moment to pass them on): a replay shorter than that lag would
    // otherwise see no live commit whatever the host does, as a CI run at 43f2340 did.
    let history_end: i64 = spans.values().map(|(_, high)| high).sum();
    let deadline = Instant::now() + Duration::from_secs(60);
    while committed_sum(&reader, &topic, 3) <= history_end {
        live.assert_running();
        assert!(
            Instant::now() < deadline,
            "the live pipeline committed none of the flowing changes in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let before = committed_sum(&reader, &topic, 3);
    let started = Instant::now();
    let args = replay_args(REPLAY);
    let mut replay = wrt(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut live_committed_during = false;
    while replay.try_wait().unwrap().is_none() {
        live_committed_during |= committed_sum(&reader, &topic, 3) > before;
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = replay.wait_with_output().unwrap();
    let took = started.elapsed();
    let live_after = committed_sum(&reader, &topic, 3);
    flowing.store(false, Ordering::Release);
    let summary = assert_ok(&out, "wrt replay");
    assert!(
        live_committed_during,
        "the live pipeline committed nothing while the replay ran"
    );

    // The replay holds v2's rows of exactly that range, each change once.
    let replayed = lines(&setup, &format!("{REPLAY}customers/")).await;
    let spans_said: BTreeMap<i32, (i64, i64)> = summary["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let n = |k: &str| s[k].as_i64().unwrap();
            (n("partition") as i32, (n("from"), n("to")))
        })
        .collect();
    assert_eq!(
        spans_said, spans,
        "the replay read other offsets than asked"
    );
    let unique: BTreeSet<&String> = replayed.iter().collect();
    assert_eq!(unique.len(), replayed.len(), "a change was replayed twice");
    assert!(
        replayed.len() > 200,
        "only {} rows replayed",
        replayed.len()
    );
    assert!(replayed.iter().all(|l| l.contains(r#""_version":"v2""#)));

    // ... the same rows as a fresh run of v2 over those records, read from the broker.
    let records = read_range(&setup.stack.kafka, &topic, &spans);
    let events = setup.dir.path().join("range.jsonl");
    let text: String = records
        .iter()
        .map(|r| wrt::pipeline::source::record_to_jsonl(r) + "\n")
        .collect();
    std::fs::write(&events, text).unwrap();
    let fresh_dir = setup.dir.path().join("fresh");
    let fresh = wrt(&["run", v2.to_str().unwrap(), "--json", "--events"])
        .arg(&events)
        .arg("--out")
        .arg(&fresh_dir)
        .output()
        .unwrap();
    let fresh_summary = assert_ok(&fresh, "the fresh run");
    let mut fresh_lines = Vec::new();
    for entry in walk(&fresh_dir.join("customers")) {
        if entry.extension().is_some_and(|e| e == "gz") {
            let file = std::fs::File::open(&entry).unwrap();
            let mut text = String::new();
            std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(file), &mut text)
                .unwrap();
            fresh_lines.extend(text.lines().map(String::from));
        }
    }
    fresh_lines.sort();
    assert_eq!(
        replayed, fresh_lines,
        "the replay and a fresh run of v2 differ"
    );
    assert_eq!(
        summary["summary"]["change_events"],
        fresh_summary["change_events"]
    );
    println!(
        "replayed {} rows of {} records in {:.1} s; the live group's committed offsets \
         went from {before} to {live_after} meanwhile",
        replayed.len(),
        records.len(),
        took.as_secs_f64()
    );

    // Run again, it resumes: nothing left to read, nothing written twice.
    let keys_before = keys(&setup.s3, &setup.names.bucket, REPLAY).await;
    let again = wrt(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .output()
        .unwrap();
    let again = assert_ok(&again, "the second wrt replay");
    assert_eq!(again["summary"]["records_in"], 0);
    assert_eq!(
        keys(&setup.s3, &setup.names.bucket, REPLAY).await,
        keys_before
    );
    // Another version into the same prefix would mix two replays: refused.
    let mut other = replay_args(REPLAY);
    other[8] = guest("tagger_v1").display().to_string();
    let refused = wrt(&other.iter().map(String::as_str).collect::<Vec<_>>())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && said.contains("holds another replay"),
        "{said}"
    );

    // An end the partition has not reached is refused, naming it.
    let mut beyond = replay_args("replay-beyond/");
    beyond[6] = format!("{topic}/0/{}", spans[&0].1 + 1_000_000);
    let refused = wrt(&beyond.iter().map(String::as_str).collect::<Vec<_>>())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && said.contains(&format!("{topic}/0: it ends at offset")),
        "{said}"
    );

    // The live pipeline: every change once, all v1, its group never rebalanced.
    feeder.join().unwrap();
    let want: usize = load.expected.values().map(Vec::len).sum();
    wait_for_live(&setup, want, &mut live).await;
    // Read before the stop: leaving the group at the end revokes its partitions.
    let log = std::fs::read_to_string(&live.log).unwrap();
    assert!(!log.contains("partition revoked"), "{log}");
    live.stop();
    let live_objects: BTreeMap<String, Vec<String>> = objects(&setup.s3, &setup.names.bucket, LIVE)
        .await
        .into_iter()
        .map(|(k, v)| (k[LIVE.len()..].to_string(), v))
        .collect();
    let rows = assert_changes_once(&live_objects, &load.expected);
    assert!(rows.values().flatten().all(|r| r["_version"] == "v1"));
    assert_verified(&setup.config);
}

/// Every file under `dir`, recursively.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
