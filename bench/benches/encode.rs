//! Encoding a window, per row: the benchmark's row images (`wrt::sample::workload`, decoded)
//! rendered as JSON Lines into the gzip stream (`encode::Lines`), 5,000 rows per object as in
//! the benchmark's windows. Run it twice to compare flate2's backends, miniz_oxide (the
//! runtime's) and zlib-rs (figures and the decision in `docs/performance.md`):
//!
//!     cargo bench -p wrt-bench --bench encode -- --save-baseline miniz
//!     cargo bench -p wrt-bench --bench encode --features zlib-rs -- --baseline miniz

mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use wrt::event::Row;
use wrt::model::WindowSpan;
use wrt::pipeline::decode::{Decoded, Decoder};
use wrt::pipeline::encode::{Lines, ObjectName};

/// Rows per object, as in the benchmark's windows of 5,000 source records.
const WINDOW: usize = 5_000;

fn workload_rows() -> Vec<Row> {
    let mut decoder = Decoder::default();
    wrt::sample::workload(1, 6_000)
        .iter()
        .filter_map(|r| match decoder.decode(r) {
            Ok(Decoded::Change(event)) => event.after,
            _ => None,
        })
        .take(WINDOW)
        .collect()
}

fn encode(c: &mut Criterion) {
    let rows = workload_rows();
    assert_eq!(
        rows.len(),
        WINDOW,
        "the workload has a window of row images"
    );
    let name = ObjectName {
        topic: "wrtbench",
        partition: 0,
        digest: "0123456789ab",
        window: WindowSpan {
            from: 0,
            first_offset: 0,
            next_offset: WINDOW as i64,
            objects: 1,
        },
    };
    let mut group = c.benchmark_group("encode");
    // One iteration is a whole object; criterion reports it, divide by WINDOW for a row.
    group.bench_function(format!("window_of_{WINDOW}_rows_gzip"), |b| {
        b.iter(|| {
            let mut buffer = Lines::default();
            for (offset, row) in rows.iter().enumerate() {
                buffer.push_row(offset as i64, row);
            }
            black_box(buffer.finish(String::new(), &name).expect("in memory"))
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::short_runs(Duration::from_secs(6));
    targets = encode
}
criterion_main!(benches);
