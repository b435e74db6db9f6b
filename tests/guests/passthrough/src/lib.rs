//! A transform that does no work of its own: with `mode = "row"` (the default) each change
//! becomes its row image unchanged, with `mode = "drop"` nothing. The batch-call benchmark
//! (`bench/benches/batch_call.rs`) puts it beside the PII guest to split a call's cost into
//! moving events in, moving rows out, and the guest's own work.

use wrt_sdk::{ChangeEvent, Config, OutputRecord, Transform, TransformError};

struct Passthrough {
    rows: bool,
}

impl Transform for Passthrough {
    fn init(config: &Config) -> Result<Self, String> {
        match config.get("mode").as_deref() {
            None | Some("row") => Ok(Passthrough { rows: true }),
            Some("drop") => Ok(Passthrough { rows: false }),
            Some(other) => Err(format!("mode = {other:?}: use \"row\" or \"drop\"")),
        }
    }

    fn process(&mut self, event: ChangeEvent) -> Result<Vec<OutputRecord>, TransformError> {
        if !self.rows {
            return Ok(Vec::new());
        }
        let table = event.source.table.clone();
        Ok(event
            .into_row()
            .map(|row| OutputRecord::new(table, row))
            .into_iter()
            .collect())
    }
}

wrt_sdk::export_transform!(Passthrough);
