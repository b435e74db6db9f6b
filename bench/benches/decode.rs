//! Decoding Debezium envelopes, per event: the reference `decode::decode` (a `serde_json::Value`
//! tree of each whole message, schema included) against `decode::Decoder` (each schema compiled
//! once, payloads parsed typed and borrowed), over the CDC benchmark's records and over the
//! narrow `pii-mask` fixture. Each iteration decodes the next record of the set, round and round,
//! so the reported time is per event.
//!
//! `payload_parse_*` (with `--features parsers`) prices the parser alone, to choose one: each
//! record's `payload` text (schema already skipped, as the decoder does) validated and skipped
//! (`serde::de::IgnoredAny`) by serde_json, sonic-rs and simd-json. That is the floor of what
//! parsing costs inside the decoder, so the gap between parsers bounds what switching saves:
//!
//!     cargo bench -p wrt-bench --bench decode --features parsers

mod common;

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
        #[cfg(feature = "parsers")]
        payload_parse(c, name, &records);
    }
}

#[cfg(feature = "parsers")]
fn payload_parse(c: &mut Criterion, name: &str, records: &[KafkaRecord]) {
    use serde::de::IgnoredAny;
    use serde_json::value::RawValue;

    #[derive(serde::Deserialize)]
    struct Message<'a> {
        #[serde(borrow)]
        payload: &'a RawValue,
    }
    let payloads: Vec<Vec<u8>> = records
        .iter()
        .filter_map(|r| serde_json::from_slice::<Message>(r.value.as_deref()?).ok())
        .map(|m| m.payload.get().as_bytes().to_vec())
        .collect();
    let mut group = c.benchmark_group(format!("payload_parse_{name}"));
    let mut next = payloads.iter().cycle();
    group.bench_function("serde_json", |b| {
        b.iter(|| serde_json::from_slice::<IgnoredAny>(black_box(next.next().unwrap())).unwrap())
    });
    let mut next = payloads.iter().cycle();
    group.bench_function("sonic_rs", |b| {
        b.iter(|| sonic_rs::from_slice::<IgnoredAny>(black_box(next.next().unwrap())).unwrap())
    });
    // simd-json parses in place: the copy into a scratch buffer is part of its cost.
    let mut next = payloads.iter().cycle();
    let mut scratch = Vec::new();
    group.bench_function("simd_json", |b| {
        b.iter(|| {
            scratch.clear();
            scratch.extend_from_slice(black_box(next.next().unwrap()));
            simd_json::serde::from_slice::<IgnoredAny>(&mut scratch).unwrap()
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::short_runs(Duration::from_secs(4));
    targets = decode
}
criterion_main!(benches);
