//! The stack's Kafka broker SIGKILLed mid-run and restarted, on the real stack
//! (`tests/stack/up`): the host stays up, reports itself unready while no broker answers,
//! and every one of 10,000 changes lands exactly once, as `wrt verify` agrees. Its own test
//! binary, because it stops the broker every other test uses.
//!
//! Debezium's Kafka Connect runs with exactly-once source support (`tests/stack/up`): without
//! it, the connector resends what it wrote since its last offset flush when the broker dies,
//! and those duplicates are in the topic, before wrt. Its one worker also needs
//! `scheduled.rebalance.max.delay.ms=0`, or it leaves the connector unassigned for 5 min after
//! rejoining its group, and the changes stop reaching Kafka.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use wrt_tests::repo_root;

#[tokio::test(flavor = "multi_thread")]
async fn the_broker_killed_mid_run_loses_and_doubles_nothing() {
    let admin_port = free_port();
    let admin = AdminApi::new(admin_port);
    let load = workload(300, 10_000, 37);
    let setup = setup("e2e_broker", &load, |names, stack| {
        Pipeline {
            admin: Some(admin_port),
            ..Pipeline::default()
        }
        .toml(names, stack)
    })
    .await;
    let mut wrt = Wrt::start(&setup.config, &setup.dir.path().join("wrt.log"));
    let pid = wrt.child.id();
    let writer = apply_in_background(&setup, &load);
    setup
        .wait_for_key("customers/", Duration::from_secs(120), &mut wrt)
        .await;

    let broker_pid = stack_sh("svc_pid kafka").concat();
    assert!(
        Command::new("kill")
            .args(["-KILL", &broker_pid])
            .status()
            .unwrap()
            .success(),
        "killing the broker (pid {broker_pid:?})"
    );
    let killed = Instant::now();
    let noticed = loop {
        let unready = admin
            .get("/readyz")
            .is_some_and(|(code, why)| code == 503 && why.contains("no Kafka broker answers"));
        if unready {
            break killed.elapsed();
        }
        wrt.assert_running();
        assert!(
            killed.elapsed() < Duration::from_secs(60),
            "/readyz never said that no broker answers ({:?}); the host's log:\n{}",
            admin.get("/readyz"),
            std::fs::read_to_string(&wrt.log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    wrt.assert_running();
    let up = Command::new(repo_root().join("tests/stack/up"))
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(up.success(), "tests/stack/up did not bring the broker back");
    let restarted = killed.elapsed();
    let recovered = Instant::now();
    while admin.get("/readyz").is_none_or(|(code, _)| code != 200) {
        wrt.assert_running();
        assert!(
            recovered.elapsed() < Duration::from_secs(120),
            "the host did not become ready again; see {}",
            wrt.log.display()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let recovered = recovered.elapsed();
    writer.join().unwrap();
    let want = setup
        .wait_for(&load.expected, &mut wrt, Duration::from_secs(300))
        .await;
    let rss = peak_rss_mib(pid);
    wrt.stop();
    let lake = setup.lake().await;
    let rows: usize = rows_by_id(&lake).values().map(Vec::len).sum();
    println!(
        "e2e broker SIGKILL: not ready after {:.1} s, broker back {:.1} s after the kill, host ready {:.1} s later; {want} changes written, {rows} rows in the lake (lost and doubled: 0, asserted next), peak RSS {rss:.0} MiB",
        noticed.as_secs_f64(),
        restarted.as_secs_f64(),
        recovered.as_secs_f64()
    );
    assert_exactly_once(&lake, &load.expected);
    assert_verified(&setup.config);
    setup.stack.drop_connector(&setup.names.connector);
}
