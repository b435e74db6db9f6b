use wrt_sdk::{ChangeEvent, Config, OutputRecord, RowExt, Transform, TransformError, Value};

struct Tagger;

impl Transform for Tagger {
    fn init(_config: &Config) -> Result<Self, String> {
        Ok(Tagger)
    }

    fn process(&mut self, event: ChangeEvent) -> Result<Vec<OutputRecord>, TransformError> {
        let (op, table) = (event.op, event.source.table.clone());
        let mut row = event.into_row().ok_or_else(|| {
            TransformError::new("missing-row", format!("a `{}` event without its row", op.code()))
        })?;
        row.set("_op", Value::Text(op.code().into()));
        Ok(vec![OutputRecord::new(table, row)])
    }
}

wrt_sdk::export_transform!(Tagger);
