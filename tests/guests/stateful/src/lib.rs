//! Keeps state across calls, as config `keep` says:
//!
//! - `counter`: numbers the events it has seen in column `n`, so a second pass over the same
//!   events writes other numbers;
//! - `cache`: remembers the label it made for each table, so a second pass takes it from the
//!   cache and writes the same rows.

use std::collections::HashMap;

use wrt_sdk::{ChangeEvent, Config, OutputRecord, RowExt, Transform, TransformError, Value};

struct Stateful {
    counting: bool,
    seen: i64,
    labels: HashMap<String, String>,
}

impl Transform for Stateful {
    fn init(config: &Config) -> Result<Self, String> {
        let counting = match config.get("keep").as_deref() {
            Some("counter") => true,
            Some("cache") => false,
            _ => return Err("config `keep` must be `counter` or `cache`".into()),
        };
        Ok(Stateful {
            counting,
            seen: 0,
            labels: HashMap::new(),
        })
    }

    fn process(&mut self, event: ChangeEvent) -> Result<Vec<OutputRecord>, TransformError> {
        let table = event.source.table.clone();
        let mut row = event.into_row().unwrap_or_default();
        if self.counting {
            self.seen += 1;
            row.set("n", Value::Int(self.seen));
        } else {
            let label = self
                .labels
                .entry(table.clone())
                .or_insert_with(|| table.to_uppercase());
            row.set("label", Value::Text(label.clone()));
        }
        Ok(vec![OutputRecord::new(table, row)])
    }
}

wrt_sdk::export_transform!(Stateful);
