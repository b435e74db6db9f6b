//! Scale-out on the real stack (`tests/stack/up`): several `wrt run` hosts with one pipeline
//! file share a six-partition topic through the consumer group while 10,000 changes stream
//! in; a fourth host joins, one leaves (SIGTERM) and one is SIGKILLed while writing. The lake
//! must hold every change exactly once, `wrt verify` must agree, and each rebalance's pause
//! (a moved partition's revocation on its old owner to its assignment on the new one) is
//! reported from the hosts' JSON logs.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use common::*;

const PARTITIONS: i32 = 6;

fn pipeline_toml(names: &Names, stack: &Stack) -> String {
    Pipeline {
        // The table's topic only: the connector's schema-change topic has partitions of its
        // own, which the group would spread too.
        topics: Some(format!("[\"{}\"]", names.topic())),
        // A killed host's partitions move once the group stops hearing from it: 6 s, not 45.
        source:
            r#"properties = { "session.timeout.ms" = "6000", "heartbeat.interval.ms" = "1000" }"#
                .into(),
        batch: "batch-size = 256\nmax-records = 300\nmax-age-ms = 1000".into(),
        sections: "[pipeline]\nlanes = 1",
        ..Pipeline::default()
    }
    .toml(names, stack)
}

/// One host's ownership changes, from its JSON log: (wall-clock time, assigned?, partition).
fn ownership_log(log: &Path) -> Vec<(SystemTime, bool, i32)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|v| {
            let assigned = match v["fields"]["message"].as_str()? {
                "partition assigned" => true,
                "partition revoked" => false,
                _ => return None,
            };
            // The table's topic only, not the connector's schema-change topic.
            if !v["fields"]["topic"].as_str()?.ends_with(".customers") {
                return None;
            }
            let partition = v["fields"]["partition"].as_i64()? as i32;
            let at = chrono::DateTime::parse_from_rfc3339(v["timestamp"].as_str()?).ok()?;
            Some((SystemTime::from(at), assigned, partition))
        })
        .collect()
}

/// The partitions a host owns now, by its log.
fn owned(log: &Path) -> Vec<i32> {
    let mut now = BTreeMap::new();
    for (_, assigned, partition) in ownership_log(log) {
        now.insert(partition, assigned);
    }
    now.into_iter()
        .filter(|(_, a)| *a)
        .map(|(p, _)| p)
        .collect()
}

/// For each partition assigned to some host after `since`: how long after `gone` (its last
/// owner's revocation, or `lost_at` for a host that died) it was assigned again. Returns the
/// pauses in ms.
fn pauses(logs: &[&Path], since: SystemTime, lost_at: Option<SystemTime>) -> Vec<(i32, f64)> {
    let events: Vec<Vec<(SystemTime, bool, i32)>> =
        logs.iter().map(|log| ownership_log(log)).collect();
    let mut out = Vec::new();
    for (host, log) in events.iter().enumerate() {
        for &(at, assigned, partition) in log {
            if !assigned || at < since {
                continue;
            }
            // The latest revocation of the partition by another host, before `at`.
            let revoked = events
                .iter()
                .enumerate()
                .filter(|(other, _)| *other != host)
                .flat_map(|(_, log)| log.iter())
                .filter(|(t, a, p)| !a && *p == partition && *t <= at && *t >= since)
                .map(|(t, _, _)| *t)
                .max()
                .or(lost_at);
            if let Some(from) = revoked {
                let ms = at.duration_since(from).unwrap_or_default().as_secs_f64() * 1000.0;
                out.push((partition, ms));
            }
        }
    }
    out
}

fn start(setup: &Setup, name: &str) -> Wrt {
    Wrt::start_with_env(
        &setup.config,
        &setup.dir.path().join(format!("{name}.log")),
        &[("WRT_LOG_FORMAT", "json")],
    )
}

/// Waits until the hosts own every partition between them, each at least one.
async fn wait_for_balance(hosts: &mut [&mut Wrt], limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let owned: Vec<Vec<i32>> = hosts.iter().map(|h| owned(&h.log)).collect();
        let mut all: Vec<i32> = owned.iter().flatten().copied().collect();
        all.sort();
        if all == (0..PARTITIONS).collect::<Vec<_>>() && owned.iter().all(|o| !o.is_empty()) {
            return;
        }
        for host in hosts.iter_mut() {
            host.assert_running();
        }
        if Instant::now() >= deadline {
            let tails: Vec<String> = hosts
                .iter()
                .map(|h| {
                    let log = std::fs::read_to_string(&h.log).unwrap_or_default();
                    let lines: Vec<&str> = log.lines().collect();
                    lines[lines.len().saturating_sub(15)..].join("\n")
                })
                .collect();
            panic!(
                "the group did not settle: {owned:?}; the hosts' last log lines:\n{}",
                tails.join("\n---\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn report(what: &str, pauses: &[(i32, f64)]) -> f64 {
    let longest = pauses.iter().map(|(_, ms)| *ms).fold(0.0, f64::max);
    println!(
        "e2e scale, {what}: {} partition(s) moved, longest pause {longest:.0} ms ({pauses:?})",
        pauses.len()
    );
    longest
}

#[tokio::test(flavor = "multi_thread")]
async fn hosts_join_leave_and_die_and_the_lake_stays_exact() {
    let load = workload(300, 10_000, 31);
    let setup = setup_partitioned("e2e_scale", &load, Some(PARTITIONS), pipeline_toml).await;
    let (mut a, mut b, mut c) = (start(&setup, "a"), start(&setup, "b"), start(&setup, "c"));
    wait_for_balance(&mut [&mut a, &mut b, &mut c], Duration::from_secs(90)).await;

    // The workload in ten parts, 1.5 s apart, so the changes keep streaming in while hosts
    // come and go.
    let parts: Vec<String> = load
        .streaming_sql
        .chunks(load.streaming_sql.len().div_ceil(10))
        .map(|part| format!("USE {};\n{}", setup.names.database, part.concat()))
        .collect();
    let port = setup.stack.mariadb_port.clone();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let writer = std::thread::spawn(move || {
        let stack = Stack {
            mariadb_port: port,
            kafka: String::new(),
            minio: String::new(),
        };
        for (n, part) in parts.iter().enumerate() {
            stack.sql(part);
            let _ = done_tx.send(n + 1);
            std::thread::sleep(Duration::from_millis(1500));
        }
    });
    let wait_parts = |n: usize| {
        while let Ok(done) = done_rx.recv() {
            if done >= n {
                break;
            }
        }
    };

    // A fourth host joins.
    wait_parts(3);
    let joined = SystemTime::now();
    let mut d = start(&setup, "d");
    wait_for_balance(
        &mut [&mut a, &mut b, &mut c, &mut d],
        Duration::from_secs(60),
    )
    .await;
    let join = pauses(&[&a.log, &b.log, &c.log, &d.log], joined, None);

    // One leaves: SIGTERM writes what it holds, commits and leaves the group.
    wait_parts(5);
    let left = SystemTime::now();
    let b_log = b.log.clone();
    b.stop();
    wait_for_balance(&mut [&mut a, &mut c, &mut d], Duration::from_secs(60)).await;
    let leave = pauses(&[&a.log, &b_log, &c.log, &d.log], left, None);

    // One is killed while writing: as soon as one of its windows' markers is in the store.
    wait_parts(7);
    let c_partitions = owned(&c.log);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut mid_window = false;
    while Instant::now() < deadline && !mid_window {
        let markers = keys(&setup.s3, &setup.names.bucket, "_wrt/windows/").await;
        mid_window = markers.iter().any(|k| {
            c_partitions
                .iter()
                .any(|p| k.contains(&format!("customers+{p}+")))
        });
    }
    let killed = SystemTime::now();
    let c_log = c.log.clone();
    c.kill();
    wait_for_balance(&mut [&mut a, &mut d], Duration::from_secs(60)).await;
    let kill = pauses(&[&a.log, &b_log, &c_log, &d.log], killed, Some(killed));

    writer.join().unwrap();
    let want = setup
        .wait_for(&load.expected, &mut a, Duration::from_secs(240))
        .await;
    let settled = SystemTime::now();
    // Of the two hosts that ran to the end, the larger.
    let rss = peak_rss_mib(a.child.id()).max(peak_rss_mib(d.child.id()));
    d.stop();
    a.stop();
    let lake = setup.lake().await;
    let rows: usize = rows_by_id(&lake).values().map(Vec::len).sum();
    println!(
        "e2e scale: {want} changes written, {rows} rows in the lake (lost and doubled: 0, asserted next); host c killed {} a window was being written; all landed {:.1} s after the kill; peak RSS {rss:.0} MiB",
        if mid_window {
            "while"
        } else {
            "(no marker seen in 20 s) before"
        },
        settled.duration_since(killed).unwrap().as_secs_f64()
    );
    let markers: Vec<&String> = lake
        .keys()
        .filter(|k| k.starts_with("_wrt/windows/"))
        .collect();
    println!("e2e scale: window markers left: {markers:?}");
    assert_exactly_once(&lake, &load.expected);
    assert_verified(&setup.config);

    // Cooperative rebalancing moves few partitions, and only for as long as the old owner
    // takes to hand them over; a killed host's partitions wait for the session timeout (6 s).
    let join = report("host d joined", &join);
    let leave = report("host b left", &leave);
    let kill = report("host c killed", &kill);
    assert!(
        join < 15_000.0 && leave < 15_000.0,
        "a rebalance paused too long"
    );
    assert!(
        kill < 30_000.0,
        "the killed host's partitions waited too long"
    );
    setup.stack.drop_connector(&setup.names.connector);
}
