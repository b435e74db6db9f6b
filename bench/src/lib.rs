//! Measurements of wrt. The PII transform compiled into the host is shared by `pii-baseline`
//! (sample stream, in memory) and `cdc-bench` (row 2 of the Kafka → S3 benchmark).

pub mod native_pii;

/// The salt every PII row of every benchmark uses, so all of them hash the same bytes.
pub const SALT: &str = "bench-salt";
