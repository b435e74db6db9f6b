//! PII masking and normalisation.
//!
//! Config (all optional):
//! - `salt`: mixed into every e-mail hash, so hashes cannot be looked up in a rainbow table.
//! - `hash-columns` (default `email`): text columns replaced by `sha256(salt + lower(trim(value)))`.
//! - `mask-columns` (default `phone`): text columns reduced to their last four digits.
//! - `drop-columns` (default `password_hash`): columns removed.
//!
//! Every timestamp becomes UTC ISO-8601 text, and each row gains `_op` and `_commit_time`.
//! Rows go to a destination named after their table; deletes keep the row as it was.

use wrt_sdk::primitives::{hex, lower, sha256, trim};
use wrt_sdk::{
    ChangeEvent, Config, Level, Operation, OutputRecord, Row, RowExt, Transform, TransformError,
    Value,
};

struct PiiMask {
    salt: String,
    hash: Vec<String>,
    mask: Vec<String>,
    drop: Vec<String>,
}

impl Transform for PiiMask {
    fn init(config: &Config) -> Result<Self, String> {
        let salt = config.get_or("salt", "");
        if salt.is_empty() {
            wrt_sdk::log(
                Level::Warn,
                "no `salt` configured: e-mail hashes are unsalted",
            );
        }
        let list = |key, default: &str| config.list(key).unwrap_or_else(|| vec![default.into()]);
        Ok(PiiMask {
            salt,
            hash: list("hash-columns", "email"),
            mask: list("mask-columns", "phone"),
            drop: list("drop-columns", "password_hash"),
        })
    }

    fn process(&mut self, event: ChangeEvent) -> Result<Vec<OutputRecord>, TransformError> {
        let (op, table, commit_time) = (event.op, event.source.table.clone(), event.commit_time);
        let mut row = match (op, event.into_row()) {
            (Operation::Truncate, _) => Row::new(),
            (_, Some(row)) => row,
            (_, None) => {
                return Err(TransformError::new(
                    "missing-row",
                    format!("a `{}` event without its row", op.code()),
                ));
            }
        };
        row.retain(|c| !self.drop.contains(&c.name));
        for column in &mut row {
            column.value = if self.hash.contains(&column.name) {
                self.hash_value(&column.name, &column.value)?
            } else if self.mask.contains(&column.name) {
                mask_value(&column.name, &column.value)?
            } else if let Value::Timestamp(ts) = &column.value {
                Value::Text(ts.to_rfc3339())
            } else {
                continue;
            };
        }
        row.set("_op", Value::Text(op.code().into()));
        row.set("_commit_time", Value::Text(commit_time.to_rfc3339()));
        Ok(vec![OutputRecord::new(table, row)])
    }
}

impl PiiMask {
    fn hash_value(&self, column: &str, value: &Value) -> Result<Value, TransformError> {
        let text = text_or_null(column, value)?;
        Ok(text.map_or(Value::Null, |t| {
            // The host's SHA-256 and Unicode case mapping: the other languages' examples
            // call the same code, so they agree byte for byte.
            let normalised = lower(&trim(t));
            Value::Text(hex(&sha256(
                format!("{}{normalised}", self.salt).as_bytes(),
            )))
        }))
    }
}

/// `+44 20 7946 0958` → `***0958`: enough to recognise a number, not to call it.
fn mask_value(column: &str, value: &Value) -> Result<Value, TransformError> {
    let text = text_or_null(column, value)?;
    Ok(text.map_or(Value::Null, |t| {
        let digits: Vec<char> = t.chars().filter(char::is_ascii_digit).collect();
        let last4: String = digits[digits.len().saturating_sub(4)..].iter().collect();
        Value::Text(format!("***{last4}"))
    }))
}

/// PII columns must hold text; anything else is a schema surprise worth a dead letter.
fn text_or_null<'v>(column: &str, value: &'v Value) -> Result<Option<&'v str>, TransformError> {
    match value {
        Value::Null => Ok(None),
        Value::Text(t) => Ok(Some(t)),
        other => Err(TransformError::new(
            "type-mismatch",
            format!(
                "column `{column}` should be text, found {}",
                other.type_name()
            ),
        )),
    }
}

wrt_sdk::export_transform!(PiiMask);
