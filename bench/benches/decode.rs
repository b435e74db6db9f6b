//! Decoding Debezium envelopes, per event: the reference `decode::decode` (a `serde_json::Value`
//! tree of each whole message, schema included) against `decode::Decoder` (each schema compiled
//! once, payloads parsed typed and borrowed), over the CDC benchmark's records and over the
//! narrow `pii-mask` fixture. Each iteration decodes the next record of the set, round and round,
//! so the reported time is per event.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use wrt::model::KafkaRecord;
use wrt::pipeline::decode::{self, Decoder};

/// The records `bench/run` loads (its default seed), cut to a size that keeps a run short: the
/// snapshot, streaming, the mid-stream ALTER TABLE, heartbeats, DDL and tombstones.
fn benchmark_records() -> Vec<KafkaRecord> {
    wrt::sample::workload(1, 6_000)
}

fn fixture_records() -> Vec<KafkaRecord> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../guest-examples/pii-mask/tests/events.jsonl"
    );
    wrt::pipeline::source::records_from_jsonl(&std::fs::read_to_string(path).expect("the fixture"))
}

fn decode(c: &mut Criterion) {
    for (name, records) in [
        ("benchmark_envelopes", benchmark_records()),
        ("pii_mask_fixture", fixture_records()),
    ] {
        let mut decoder = Decoder::default();
        // Speed means nothing unless both give the same.
        for record in &records {
            let text =
                |r: Result<_, decode::DecodeError>| format!("{:?}", r.map_err(|e| e.to_string()));
            assert_eq!(text(decoder.decode(record)), text(decode::decode(record)));
        }
        let mut group = c.benchmark_group(format!("decode_{name}"));
        let mut next = records.iter().cycle();
        group.bench_function("reference", |b| {
            b.iter(|| decode::decode(black_box(next.next().unwrap())))
        });
        let mut next = records.iter().cycle();
        group.bench_function("decoder", |b| {
            b.iter(|| decoder.decode(black_box(next.next().unwrap())))
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    // Short runs: the difference is large, and the machine is shared.
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = decode
}
criterion_main!(benches);
