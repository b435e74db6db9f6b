//! Every event becomes its row plus columns showing what the guest drew from the source of
//! non-determinism named by config `source`, so tests can compare two runs:
//!
//! - `hash`: std's randomly keyed hashing, as `HashMap` uses it: a fresh `RandomState`
//!   hashing a constant, and the iteration order of a `HashSet` of words;
//! - `random`: WASI `random`, `insecure` and `insecure-seed`, called directly;
//! - `clock`: `std::time::Instant` around a busy loop and around a sleep of config
//!   `sleep-ms` (5 by default).

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::hint::black_box;
use std::time::{Duration, Instant};

use wasip2::random::{insecure, insecure_seed, random};
use wrt_sdk::{ChangeEvent, Config, OutputRecord, RowExt, Transform, TransformError, Value};

const SOURCES: [&str; 3] = ["hash", "random", "clock"];

struct Entropy {
    source: String,
    sleep: Duration,
}

impl Transform for Entropy {
    fn init(config: &Config) -> Result<Self, String> {
        let source = config.get("source").ok_or("config `source` is required")?;
        if !SOURCES.contains(&source.as_str()) {
            return Err(format!("config `source` must be one of {SOURCES:?}"));
        }
        let sleep_ms = config.parse::<u64>("sleep-ms")?.unwrap_or(5);
        Ok(Entropy {
            source,
            sleep: Duration::from_millis(sleep_ms),
        })
    }

    fn process(&mut self, event: ChangeEvent) -> Result<Vec<OutputRecord>, TransformError> {
        let table = event.source.table.clone();
        let mut row = event.into_row().unwrap_or_default();
        match self.source.as_str() {
            "hash" => {
                let keyed = RandomState::new().hash_one("wrt");
                let words: HashSet<&str> = ["ant", "bee", "cat", "dog", "eel", "fox", "gnu"]
                    .into_iter()
                    .collect();
                row.set("keyed_hash", Value::Text(format!("{keyed:016x}")));
                let order: Vec<&str> = words.into_iter().collect();
                row.set("set_order", Value::Text(order.join(",")));
            }
            "random" => {
                row.set("random", Value::Text(hex(&random::get_random_bytes(16))));
                let word = insecure::get_insecure_random_u64();
                row.set("insecure", Value::Text(format!("{word:016x}")));
                let (a, b) = insecure_seed::insecure_seed();
                row.set("seed", Value::Text(format!("{a:016x}{b:016x}")));
            }
            _ => {
                let started = Instant::now();
                let mut sum = 0u64;
                for i in 0..10_000u64 {
                    sum = black_box(sum.wrapping_add(i));
                }
                row.set("spun_ns", Value::Int(started.elapsed().as_nanos() as i64));
                let before = Instant::now();
                std::thread::sleep(self.sleep);
                row.set("slept_ns", Value::Int(before.elapsed().as_nanos() as i64));
            }
        }
        Ok(vec![OutputRecord::new(table, row)])
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

wrt_sdk::export_transform!(Entropy);
