//! Every change becomes one row `{id, rev, _op, _version}`: enough to check that each change
//! landed exactly once, and which version of the transform wrote it. `versioned!("v1")` makes
//! a component of one version, so two builds differ only in that name.

use wrt_sdk::{ChangeEvent, OutputRecord, Row, RowExt, TransformError, Value};

/// The row for `event`, tagged with `version`.
pub fn tag(event: ChangeEvent, version: &str) -> Result<Vec<OutputRecord>, TransformError> {
    let table = event.source.table.clone();
    let op = event.op.code();
    let id = event
        .key
        .as_ref()
        .and_then(|k| k.get("id"))
        .cloned()
        .unwrap_or(Value::Null);
    let image = event.into_row().unwrap_or_default();
    let rev = image.get("rev").cloned().unwrap_or(Value::Null);
    let mut row = Row::new();
    row.set("id", id);
    row.set("rev", rev);
    row.set("_op", Value::Text(op.into()));
    row.set("_version", Value::Text(version.into()));
    Ok(vec![OutputRecord::new(table, row)])
}

/// Defines and exports the transform of one version.
#[macro_export]
macro_rules! versioned {
    ($version:literal) => {
        struct Tagger;

        impl wrt_sdk::Transform for Tagger {
            fn init(_: &wrt_sdk::Config) -> Result<Self, String> {
                Ok(Tagger)
            }

            fn process(
                &mut self,
                event: wrt_sdk::ChangeEvent,
            ) -> Result<Vec<wrt_sdk::OutputRecord>, wrt_sdk::TransformError> {
                $crate::tag(event, $version)
            }
        }

        wrt_sdk::export_transform!(Tagger);
    };
}
