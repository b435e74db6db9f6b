//! Version 1 of the tagger with one column changed for a known subset of rows: `_version`
//! reads `fixed` where the id is a multiple of 10. A shadow of `tagger_v1` that differs on
//! exactly those rows.

use wrt_sdk::{ChangeEvent, Config, OutputRecord, RowExt, Transform, TransformError, Value};

struct Fix;

impl Transform for Fix {
    fn init(_: &Config) -> Result<Self, String> {
        Ok(Fix)
    }

    fn process(&mut self, event: ChangeEvent) -> Result<Vec<OutputRecord>, TransformError> {
        let mut rows = tagger::tag(event, "v1")?;
        for out in &mut rows {
            if out
                .row
                .get("id")
                .and_then(Value::as_int)
                .is_some_and(|id| id % 10 == 0)
            {
                out.row.set("_version", Value::Text("fixed".into()));
            }
        }
        Ok(rows)
    }
}

wrt_sdk::export_transform!(Fix);
