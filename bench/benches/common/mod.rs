//! What the criterion benchmarks share.

use std::time::Duration;

use criterion::Criterion;

/// Short runs: the differences these benchmarks look for are large, and the machine is shared.
pub fn short_runs(measurement: Duration) -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(measurement)
}
