//! What a `process` call costs, per event.
//!
//! `pii_mask_batch_call`: the Rust PII guest over batches of 1, 16, 256 and 4096 change events,
//! what a call costs beyond the work on each event, which sets the default batch size
//! (`pipeline::Options`).
//!
//! `boundary`: the benchmark's own change events (`wrt::sample::workload`, decoded) in calls of
//! 256, through guests that do less and less: the PII guest; `passthrough` returning each row
//! image unchanged (moving events in and rows out, no work of its own); `passthrough` dropping
//! every event (moving events in only); and the last two again on events whose column names
//! are empty, which prices the names the contract passes with every value. The differences
//! split a call into the guest's own work, lifting rows out, lowering events in, and names.

mod common;

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wrt::event::{ChangeEvent, Row};
use wrt::pipeline::decode::{self, Decoded, Decoder};
use wrt::pipeline::transform::Transform;
use wrt::pipeline::transform::sandbox::{Limits, Sandbox, TransformConfig, WasmTransform};

fn sample_events(n: usize) -> Vec<ChangeEvent> {
    wrt::sample::sample_records()
        .iter()
        .filter_map(|r| match decode::decode(r) {
            Ok(Decoded::Change(event)) => Some(event),
            _ => None,
        })
        .cycle()
        .take(n)
        .collect()
}

/// The change events of the records `bench/run` loads (its default seed), cut short.
fn workload_events() -> Vec<ChangeEvent> {
    let mut decoder = Decoder::default();
    wrt::sample::workload(1, 6_000)
        .iter()
        .filter_map(|r| match decoder.decode(r) {
            Ok(Decoded::Change(event)) => Some(event),
            _ => None,
        })
        .collect()
}

fn without_names(mut event: ChangeEvent) -> ChangeEvent {
    let blank = |row: &mut Option<Row>| {
        for column in row.iter_mut().flatten() {
            column.name.clear();
        }
    };
    blank(&mut event.key);
    blank(&mut event.before);
    blank(&mut event.after);
    event
}

fn instance(sandbox: &Sandbox, guest: &str, config: &[(&str, &str)]) -> WasmTransform {
    let wasm = std::fs::read(wrt_tests::guest(guest)).expect("the guest is built");
    let compiled = sandbox.compile(&wasm).expect("the guest compiles");
    let config: TransformConfig = config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    sandbox
        .instantiate(&compiled, config, Limits::default())
        .expect("an instance")
}

fn batch_call(c: &mut Criterion) {
    let sandbox = Sandbox::new(None).expect("a sandbox");
    let salt = [("salt", wrt_bench::SALT)];
    let mut guest = instance(&sandbox, "pii_mask", &salt);
    let mut group = c.benchmark_group("pii_mask_batch_call");
    for size in [1, 16, 256, 4096] {
        let events = sample_events(size);
        group.throughput(Throughput::Elements(size as u64));
        group.bench_function(size.to_string(), |b| {
            b.iter(|| guest.process(&events).expect("the call succeeds"));
        });
    }
    group.finish();

    let events = workload_events();
    let nameless: Vec<ChangeEvent> = events.iter().cloned().map(without_names).collect();
    let mut group = c.benchmark_group("boundary");
    group.throughput(Throughput::Elements(256));
    let rows = [("mode", "row")];
    let drop = [("mode", "drop")];
    for (name, guest, config, events) in [
        ("pii_mask", "pii_mask", &salt[..], &events),
        ("passthrough_rows", "passthrough", &rows[..], &events),
        ("passthrough_drop", "passthrough", &drop[..], &events),
        (
            "passthrough_rows_nameless",
            "passthrough",
            &rows[..],
            &nameless,
        ),
        (
            "passthrough_drop_nameless",
            "passthrough",
            &drop[..],
            &nameless,
        ),
    ] {
        let mut guest = instance(&sandbox, guest, config);
        let mut calls = events.chunks(256).filter(|c| c.len() == 256).cycle();
        group.bench_function(name, |b| {
            b.iter(|| {
                let outcomes = guest
                    .process(calls.next().unwrap())
                    .expect("the call succeeds");
                assert_eq!(outcomes.len(), 256);
                outcomes
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::short_runs(Duration::from_secs(4));
    targets = batch_call
}
criterion_main!(benches);
