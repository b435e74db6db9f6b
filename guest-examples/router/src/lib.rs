//! Routing and filtering.
//!
//! Config (all optional):
//! - `route.<table>` = `<column>`: rows of `<table>` go to `<table>_<value of column>`
//!   (e.g. `route.orders=status` sends paid orders to `orders_paid`); other tables keep their name.
//! - `partition-column` (default `country`): when a row has it, its value becomes a
//!   `<column>=<value>` partition of the object path.
//! - `drop-snapshot` (default `false`): drop rows read by the connector's initial snapshot.
//!
//! Deletes become soft deletes: the last row image with `_deleted = true` and `_deleted_at`.

use wrt_sdk::{
    ChangeEvent, Config, Operation, OutputRecord, RowExt, Transform, TransformError, Value,
};

struct Router {
    routes: Vec<(String, String)>,
    partition_column: String,
    drop_snapshot: bool,
}

impl Transform for Router {
    fn init(config: &Config) -> Result<Self, String> {
        let routes = config
            .entries()
            .into_iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("route.")?.to_string(), v)))
            .collect();
        Ok(Router {
            routes,
            partition_column: config.get_or("partition-column", "country"),
            drop_snapshot: config.parse("drop-snapshot")?.unwrap_or(false),
        })
    }

    fn process(&mut self, event: ChangeEvent) -> Result<Vec<OutputRecord>, TransformError> {
        if self.drop_snapshot && event.op == Operation::Read {
            return Ok(Vec::new());
        }
        let (op, table, commit_time) = (event.op, event.source.table.clone(), event.commit_time);
        if op == Operation::Truncate {
            // A truncate has no row to route; it is kept as a marker so the lake can replay it.
            let marker = vec![wrt_sdk::Column {
                name: "_truncated_at".into(),
                value: Value::Text(commit_time.to_rfc3339()),
            }];
            return Ok(vec![OutputRecord::new(table, marker)]);
        }
        let Some(mut row) = event.into_row() else {
            return Err(TransformError::new(
                "missing-row",
                format!("a `{}` event without its row", op.code()),
            ));
        };
        let destination = match self.routes.iter().find(|(t, _)| *t == table) {
            Some((_, column)) => format!("{table}_{}", route_value(&row, column)?),
            None => table,
        };
        let deleted = op == Operation::Delete;
        row.set("_deleted", Value::Boolean(deleted));
        if deleted {
            row.set("_deleted_at", Value::Text(commit_time.to_rfc3339()));
        }
        let partition = match row.get(&self.partition_column) {
            Some(Value::Text(v)) => Some(v.clone()),
            _ => None,
        };
        let record = OutputRecord::new(destination, row);
        Ok(vec![match partition {
            Some(v) => record.with_partition(self.partition_column.clone(), v),
            None => record,
        }])
    }
}

/// The routing column's value as a destination suffix: lower-case letters, digits and `_`.
fn route_value(row: &wrt_sdk::Row, column: &str) -> Result<String, TransformError> {
    let value = match row.get(column) {
        Some(Value::Text(t)) => t.clone(),
        Some(Value::Int(i)) => i.to_string(),
        Some(Value::Boolean(b)) => b.to_string(),
        Some(Value::Null) => "null".to_string(),
        Some(other) => {
            return Err(TransformError::new(
                "unroutable",
                format!("route column `{column}` holds a {}", other.type_name()),
            ));
        }
        None => {
            return Err(TransformError::new(
                "missing-column",
                format!("route column `{column}` is not in the row"),
            ));
        }
    };
    Ok(value
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect())
}

wrt_sdk::export_transform!(Router);
