//! The sandbox against a guest that draws on every source of non-determinism it has besides
//! its input (`tests/guests/entropy`): std's keyed hashing, WASI `random` and the monotonic
//! clock give the same bytes on two fresh instances, a batch draws the same numbers whatever
//! the instance ran before, and time passes only as the guest waits, never with real time.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use wrt::event::{ChangeEvent, Column, Operation, Outcome, Source, Timestamp, Value};
use wrt::pipeline::transform::Transform;
use wrt::pipeline::transform::sandbox::{Limits, Sandbox, WasmTransform};
use wrt_tests::guest;

fn event(offset: i64) -> ChangeEvent {
    ChangeEvent {
        op: Operation::Create,
        key: None,
        before: None,
        after: Some(vec![Column {
            name: "id".into(),
            value: Value::Int(offset),
        }]),
        source: Source {
            connector: "mysql".into(),
            server: "shop".into(),
            database: "shop".into(),
            table: "orders".into(),
            binlog_file: None,
            binlog_pos: None,
            gtid: None,
            snapshot: false,
            topic: "shop.shop.orders".into(),
            partition: 0,
            offset,
        },
        commit_time: Timestamp {
            seconds: 1_714_521_600 + offset,
            nanos: 0,
        },
    }
}

/// A fresh instance in a sandbox of its own, so two instances share nothing.
fn entropy(source: &str, extra: &[(&str, &str)]) -> WasmTransform {
    let wasm = std::fs::read(guest("entropy")).unwrap();
    let mut config: BTreeMap<String, String> = [("source".to_string(), source.to_string())].into();
    config.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Sandbox::new(None)
        .unwrap()
        .load(&wasm, config, Limits::default())
        .unwrap()
}

/// Column `name` of each event's one output row.
fn column(outcomes: &[Outcome], name: &str) -> Vec<Value> {
    outcomes
        .iter()
        .map(|outcome| {
            let records = outcome.as_ref().expect("an output");
            assert_eq!(records.len(), 1);
            let column = records[0].row.iter().find(|c| c.name == name);
            column
                .unwrap_or_else(|| panic!("no column `{name}`"))
                .value
                .clone()
        })
        .collect()
}

fn distinct(values: &[Value]) -> usize {
    let mut seen: Vec<&Value> = Vec::new();
    for value in values {
        if !seen.contains(&value) {
            seen.push(value);
        }
    }
    seen.len()
}

#[test]
fn every_source_gives_the_same_bytes_on_two_fresh_instances() {
    let batches = [vec![event(1), event(2), event(3)], vec![event(4), event(5)]];
    let run = |source: &str| {
        let mut transform = entropy(source, &[]);
        batches
            .iter()
            .flat_map(|batch| transform.process(batch).unwrap())
            .collect::<Vec<_>>()
    };
    for source in ["hash", "random", "clock"] {
        let first = run(source);
        assert_eq!(first.len(), 5);
        assert_eq!(first, run(source), "{source}: two fresh instances differ");
    }

    // What they agree on is not a constant: std keys each new `RandomState` differently,
    // and every draw from WASI `random` is a new number.
    let hash = run("hash");
    assert_eq!(distinct(&column(&hash, "keyed_hash")), 5);
    let random = run("random");
    assert_eq!(distinct(&column(&random, "random")), 5);
    assert_eq!(distinct(&column(&random, "insecure")), 5);
    // `insecure-seed` is one value per component, whichever batch reads it.
    assert_eq!(distinct(&column(&random, "seed")), 1);
}

#[test]
fn a_batch_draws_the_same_numbers_whatever_the_instance_ran_before() {
    let (x, y) = ([event(1), event(2)], [event(3), event(4)]);
    let mut used = entropy("random", &[]);
    used.process(&x).unwrap();
    let after_x = used.process(&y).unwrap();
    let fresh = entropy("random", &[]).process(&y).unwrap();
    assert_eq!(
        after_x, fresh,
        "a replay of batch y would draw other numbers"
    );

    // The numbers follow the batch's first source position: a batch that starts elsewhere
    // draws others, even for the same events.
    let reordered = entropy("random", &[])
        .process(&[event(4), event(3)])
        .unwrap();
    let random = |outcomes: &[Outcome]| column(outcomes, "random");
    assert_ne!(random(&reordered)[1], random(&fresh)[0]);
    assert_ne!(random(&reordered)[0], random(&fresh)[0]);
}

#[test]
fn time_passes_only_as_the_guest_waits() {
    let mut transform = entropy("clock", &[("sleep-ms", "60000")]);
    let started = Instant::now();
    let outcomes = transform.process(&[event(1), event(2)]).unwrap();
    let took = started.elapsed();
    // A minute's sleep per event, yet the call returns at once: the sleep jumps the
    // virtual clock to its deadline.
    assert!(took < Duration::from_secs(10), "the call took {took:?}");
    for slept in column(&outcomes, "slept_ns") {
        let Value::Int(ns) = slept else {
            panic!("slept_ns is {slept:?}")
        };
        assert!(
            (60_000_000_000..60_000_100_000).contains(&ns),
            "slept {ns} ns"
        );
    }
    // A busy loop between two readings lasts one clock step, however long it ran.
    assert_eq!(
        column(&outcomes, "spun_ns"),
        [Value::Int(1_000), Value::Int(1_000)]
    );
}
