//! The sandbox against purpose-built hostile guests (`tests/guests/hostile`).
//!
//! Each guest attacks on events of table `attack` and passes other events through. For each
//! attack: the attack is refused or its call stopped, the reason reaches the attacking event
//! alone as a dead letter, and the next batch is processed correctly by the same transform.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use wrt::event::{ChangeEvent, Column, Operation, Source, Timestamp, Value};
use wrt::pipeline::decode::Decoder;
use wrt::pipeline::transform::sandbox::{Compiler, Limits, LoadError, Sandbox, WasmTransform};
use wrt::pipeline::transform::{FailureKind, Transform};
use wrt::pipeline::{Emit, transform_records};
use wrt_tests::guest;

fn event(table: &str, id: i64) -> ChangeEvent {
    ChangeEvent {
        op: Operation::Create,
        key: None,
        before: None,
        after: Some(vec![Column {
            name: "id".into(),
            value: Value::Int(id),
        }]),
        source: Source {
            connector: "mysql".into(),
            server: "shop".into(),
            database: "shop".into(),
            table: table.into(),
            binlog_file: None,
            binlog_pos: None,
            gtid: None,
            snapshot: false,
            topic: format!("shop.shop.{table}"),
            partition: 0,
            offset: id,
        },
        commit_time: Timestamp {
            seconds: 1_714_521_600 + id,
            nanos: 0,
        },
    }
}

fn hostile(attack: &str, extra: &[(&str, &str)], limits: Limits) -> WasmTransform {
    hostile_on(Compiler::Optimizing, attack, extra, limits)
}

fn hostile_on(
    compiler: Compiler,
    attack: &str,
    extra: &[(&str, &str)],
    limits: Limits,
) -> WasmTransform {
    let wasm = std::fs::read(guest("hostile")).unwrap();
    let mut config: BTreeMap<String, String> = [("attack".to_string(), attack.to_string())].into();
    config.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Sandbox::with_compiler(None, compiler)
        .unwrap()
        .load(&wasm, config, limits)
        .unwrap()
}

/// The batch after an attack: both events come back as themselves.
fn assert_next_batch_is_fine(transform: &mut WasmTransform) {
    let outcomes = transform
        .process(&[event("orders", 10), event("orders", 11)])
        .expect("the batch after the attack runs");
    let ids: Vec<_> = outcomes
        .into_iter()
        .map(|o| {
            let records = o.expect("a passed-through event");
            assert_eq!(records.len(), 1);
            assert_eq!(records[0].destination, "orders");
            records[0].row[0].value.clone()
        })
        .collect();
    assert_eq!(ids, [Value::Int(10), Value::Int(11)]);
}

/// Capability attacks fail inside the guest, which reports the denial as the event's error;
/// the events around it are unaffected.
fn assert_denied(attack: &str, extra: &[(&str, &str)], expect_in_reason: &[&str]) {
    let mut transform = hostile(attack, extra, Limits::default());
    let batch = [event("orders", 1), event("attack", 2), event("orders", 3)];
    let outcomes = transform.process(&batch).unwrap();
    assert_eq!(outcomes.len(), 3);
    assert!(outcomes[0].is_ok() && outcomes[2].is_ok());
    let error = outcomes[1].as_ref().expect_err("the attack must fail");
    assert_eq!(error.code, "denied");
    assert!(
        expect_in_reason
            .iter()
            .any(|s| error.message.to_lowercase().contains(s)),
        "{attack}: unexpected reason {:?}",
        error.message
    );
    assert_next_batch_is_fine(&mut transform);
}

#[test]
fn opening_a_file_is_refused() {
    assert_denied(
        "file",
        &[],
        &["no such file", "not permitted", "denied", "preopen"],
    );
}

#[test]
fn the_environment_is_empty() {
    // SAFETY: no other test in this binary reads or writes the environment.
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var("WRT_SANDBOX_SECRET", "hunter2")
    };
    assert_denied("env", &[], &["the environment is empty"]);
}

#[test]
fn opening_a_socket_is_refused() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap().to_string();
    assert_denied(
        "socket",
        &[("target", &target)],
        &["denied", "not permitted", "access"],
    );
    listener.set_nonblocking(true).unwrap();
    assert_eq!(
        listener.accept().unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock,
        "the guest reached the listener"
    );
}

/// Limit attacks stop the whole call; the host splits the batch until the attacking event
/// fails alone, dead-letters it with the reason, passes the others through, and the
/// transform recovers for the next batch.
fn assert_stopped(attack: &str, limits: Limits, kind: FailureKind, reason: &str) -> Duration {
    assert_stopped_on(Compiler::Optimizing, attack, limits, kind, reason)
}

fn assert_stopped_on(
    compiler: Compiler,
    attack: &str,
    limits: Limits,
    kind: FailureKind,
    reason: &str,
) -> Duration {
    let mut transform = hostile_on(compiler, attack, &[], limits);
    let records: Vec<_> = [("orders", 1), ("attack", 2), ("orders", 3)]
        .into_iter()
        .map(|(table, id)| record_for(&event(table, id)))
        .collect();
    let started = Instant::now();
    let transformed = transform_records(&records, &mut Decoder::default(), &mut transform);
    let took = started.elapsed();
    // [1, 2, 3], then [1] passes, [2, 3] fails, [2] fails, [3] passes.
    assert_eq!(transformed.failed_calls, 3);
    assert_eq!(transformed.failed_alone, 1);
    assert_eq!(transformed.emitted.len(), 3);
    for (at, emits) in transformed.emitted.iter().enumerate() {
        match emits.as_slice() {
            [Emit::DeadLetter(r)] if at == 1 => {
                assert_eq!(r.kind, kind.as_str());
                assert!(r.message.contains(reason), "{attack}: {:?}", r.message);
            }
            [Emit::Output(o, _)] if at != 1 => assert_eq!(o.destination, "orders"),
            other => panic!("{attack}: event {at} became {other:?}"),
        }
    }
    assert_next_batch_is_fine(&mut transform);
    took
}

#[test]
fn an_endless_loop_is_stopped_at_the_deadline() {
    let limits = Limits {
        call_timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let took = assert_stopped("loop", limits, FailureKind::Timeout, "CPU deadline");
    assert!(took < Duration::from_secs(3), "stopped only after {took:?}");
}

/// `wrt deploy` checks under Winch: the deadline, the memory cap and traps hold as under
/// Cranelift.
#[test]
fn under_the_baseline_compiler_the_limits_hold() {
    let limits = Limits {
        call_timeout: Duration::from_millis(200),
        memory: 32 << 20,
    };
    let baseline =
        |attack, kind, reason| assert_stopped_on(Compiler::Baseline, attack, limits, kind, reason);
    let took = baseline("loop", FailureKind::Timeout, "CPU deadline");
    assert!(took < Duration::from_secs(3), "stopped only after {took:?}");
    baseline("alloc", FailureKind::MemoryLimit, "memory cap of 32 MiB");
    baseline("trap", FailureKind::Trap, "unreachable");
}

#[test]
fn allocating_past_the_cap_is_stopped() {
    let limits = Limits {
        memory: 32 << 20,
        ..Limits::default()
    };
    assert_stopped(
        "alloc",
        limits,
        FailureKind::MemoryLimit,
        "memory cap of 32 MiB",
    );
}

#[test]
fn a_trap_is_contained() {
    assert_stopped("trap", Limits::default(), FailureKind::Trap, "unreachable");
}

/// A guest that traps on one marked row in a batch of 256: only that event is dead-lettered,
/// the other 255 come out in order.
#[test]
fn a_poison_row_costs_one_event() {
    let mut transform = hostile("trap-marked", &[("mark", "77")], Limits::default());
    let records: Vec<_> = (0..256)
        .map(|id| record_for(&event("orders", id)))
        .collect();
    let transformed = transform_records(&records, &mut Decoder::default(), &mut transform);
    let mut outputs = Vec::new();
    let mut dead_letters = Vec::new();
    for (id, emits) in (0..).zip(&transformed.emitted) {
        match emits.as_slice() {
            [Emit::Output(o, _)] => outputs.push(o.row[0].value.clone()),
            [Emit::DeadLetter(r)] => dead_letters.push((id, r.clone())),
            other => panic!("event {id} became {other:?}"),
        }
    }
    let expected: Vec<_> = (0..256).filter(|&id| id != 77).map(Value::Int).collect();
    assert_eq!(outputs, expected);
    let [(77, reason)] = dead_letters.as_slice() else {
        panic!("expected one dead letter, for id 77: {dead_letters:?}");
    };
    assert_eq!(reason.kind, FailureKind::Trap.as_str());
    // A Rust panic reaches the host as `unreachable`, its message through stderr; the reason
    // holds both, and no wasm backtrace.
    assert!(
        reason
            .message
            .contains("hostile guest traps on the row marked \"77\"")
            && reason
                .message
                .ends_with("(wasm trap: wasm `unreachable` instruction executed)")
            && !reason.message.contains("backtrace"),
        "{:?}",
        reason.message
    );
    assert_eq!(transformed.failed_calls, 9);
    assert!(!transformed.budget_spent);
    assert_next_batch_is_fine(&mut transform);
}

#[test]
fn a_transform_that_refuses_its_config_is_not_loaded() {
    let wasm = std::fs::read(guest("hostile")).unwrap();
    let error = Sandbox::new(None)
        .unwrap()
        .load(&wasm, BTreeMap::new(), Limits::default())
        .err()
        .expect("init must fail without `attack`");
    assert!(matches!(error, LoadError::Init(ref m) if m.contains("`attack` is required")));
}

#[test]
fn bytes_that_are_not_a_component_are_refused() {
    let error = Sandbox::new(None)
        .unwrap()
        .compile(b"\0asm\x01\0\0\0")
        .err()
        .expect("a core module is not a component");
    assert!(matches!(error, LoadError::Compile(_)), "{error}");
}

/// A Kafka record whose schemaless Debezium envelope decodes back to `event`.
fn record_for(event: &ChangeEvent) -> wrt::model::KafkaRecord {
    let value = serde_json::json!({
        "before": null,
        "after": { "id": event.source.offset },
        "source": { "connector": "mysql", "name": "shop", "db": "shop",
                    "table": event.source.table, "ts_ms": event.commit_time.seconds * 1000 },
        "op": "c",
    });
    wrt::model::KafkaRecord {
        topic: event.source.topic.clone(),
        partition: 0,
        offset: event.source.offset,
        timestamp_ms: None,
        key: None,
        value: Some(value.to_string().into_bytes()),
    }
}
