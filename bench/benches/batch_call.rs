//! One `process` call of the Rust PII guest over batches of 1, 16, 256 and 4096 change events,
//! reported per event: what a guest call costs beyond the work on each event, which sets the
//! default batch size (`pipeline::Options`).

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wrt::event::ChangeEvent;
use wrt::pipeline::decode::{self, Decoded};
use wrt::pipeline::transform::Transform;
use wrt::pipeline::transform::sandbox::{Limits, Sandbox, TransformConfig};

fn change_events(n: usize) -> Vec<ChangeEvent> {
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

fn batch_call(c: &mut Criterion) {
    let sandbox = Sandbox::new(None).expect("a sandbox");
    let wasm = std::fs::read(wrt_tests::guest("pii_mask")).expect("the pii_mask guest");
    let compiled = sandbox.compile(&wasm).expect("the guest compiles");
    let config: TransformConfig = [("salt".to_string(), wrt_bench::SALT.to_string())].into();
    let mut guest = sandbox
        .instantiate(&compiled, config, Limits::default())
        .expect("an instance");
    let mut group = c.benchmark_group("pii_mask_batch_call");
    for size in [1, 16, 256, 4096] {
        let events = change_events(size);
        group.throughput(Throughput::Elements(size as u64));
        group.bench_function(size.to_string(), |b| {
            b.iter(|| guest.process(&events).expect("the call succeeds"));
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    // Short runs: the differences that matter here are large, and the machine is shared.
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = batch_call
}
criterion_main!(benches);
