//! The PII-masking transform of `guest-examples/pii-mask`, written as plain Rust inside the
//! host: the baseline that shows what the sandbox costs. It must give byte-identical output
//! (the test in `main.rs` checks), so keep the two in step.

use sha2::{Digest, Sha256};
use wrt::event::{ChangeEvent, Column, Operation, Outcome, OutputRecord, TransformError, Value};
use wrt::pipeline::transform::{BatchFailure, InstanceError, Transform};

#[derive(Clone)]
pub struct NativePiiMask {
    salt: String,
    hash: Vec<String>,
    mask: Vec<String>,
    drop: Vec<String>,
}

impl NativePiiMask {
    /// The guest's defaults, with `salt`.
    pub fn new(salt: &str) -> Self {
        NativePiiMask {
            salt: salt.into(),
            hash: vec!["email".into()],
            mask: vec!["phone".into()],
            drop: vec!["password_hash".into()],
        }
    }

    fn one(&self, event: &ChangeEvent) -> Outcome {
        let image = match event.op {
            Operation::Delete => &event.before,
            _ => &event.after,
        };
        let row = match (event.op, image) {
            (Operation::Truncate, _) => Vec::new(),
            (_, Some(row)) => row.clone(),
            (_, None) => {
                return Err(TransformError {
                    code: "missing-row".into(),
                    message: format!("a `{}` event without its row", event.op.code()),
                });
            }
        };
        let mut out = Vec::with_capacity(row.len() + 2);
        for column in row {
            if self.drop.contains(&column.name) {
                continue;
            }
            let value = if self.hash.contains(&column.name) {
                match text_or_null(&column)? {
                    None => Value::Null,
                    Some(t) => Value::Text(hex::encode(
                        Sha256::new()
                            .chain_update(self.salt.as_bytes())
                            .chain_update(t.trim().to_lowercase().as_bytes())
                            .finalize(),
                    )),
                }
            } else if self.mask.contains(&column.name) {
                match text_or_null(&column)? {
                    None => Value::Null,
                    Some(t) => {
                        let digits: Vec<char> = t.chars().filter(char::is_ascii_digit).collect();
                        let last4: String =
                            digits[digits.len().saturating_sub(4)..].iter().collect();
                        Value::Text(format!("***{last4}"))
                    }
                }
            } else if let Value::Timestamp(ts) = column.value {
                Value::Text(ts.to_rfc3339())
            } else {
                column.value
            };
            out.push(Column {
                name: column.name,
                value,
            });
        }
        for (name, value) in [
            ("_op", event.op.code().to_string()),
            ("_commit_time", event.commit_time.to_rfc3339()),
        ] {
            match out.iter_mut().find(|c| c.name == name) {
                Some(c) => c.value = Value::Text(value),
                None => out.push(Column {
                    name: name.into(),
                    value: Value::Text(value),
                }),
            }
        }
        Ok(vec![OutputRecord {
            destination: event.source.table.clone(),
            row: out,
            partition: Vec::new(),
        }])
    }
}

fn text_or_null(column: &Column) -> Result<Option<&str>, TransformError> {
    match &column.value {
        Value::Null => Ok(None),
        Value::Text(t) => Ok(Some(t)),
        other => Err(TransformError {
            code: "type-mismatch".into(),
            message: format!(
                "column `{}` should be text, found {}",
                column.name,
                other.type_name()
            ),
        }),
    }
}

impl Transform for NativePiiMask {
    fn digest(&self) -> &str {
        "native-pii-mask"
    }

    fn process(&mut self, events: &[ChangeEvent]) -> Result<Vec<Outcome>, BatchFailure> {
        Ok(events.iter().map(|e| self.one(e)).collect())
    }

    fn another(&self) -> Result<Box<dyn Transform>, InstanceError> {
        Ok(Box::new(self.clone()))
    }
}
