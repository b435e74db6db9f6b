//! The catalog stage: once a window's objects are durable, and before its offset commits,
//! the Parquet destinations they belong to are described as tables in a catalog ([`glue`]):
//! each table is created with the first file's columns, gains the columns a later schema
//! version adds, widens a column a version widens (INT → BIGINT, a larger DECIMAL), and has
//! every Hive partition (`dt=…/…`) registered as its files appear, so a query engine sees
//! new data without a crawler. A change a reader cannot follow (a column narrowed, or its
//! type changed to another kind) leaves the table's type as it was and is logged: the file
//! keeps its own schema, readable on its own.
//!
//! A failure here fails the window's write like a store failure: it is retried, and the
//! offset is not committed until the catalog knows where the window's rows are.

pub mod glue;

use std::collections::{BTreeMap, HashMap, HashSet};

use glue::Glue;

use arrow_schema::DataType;
use parquet::arrow::parquet_to_arrow_schema;
use parquet::file::metadata::ParquetMetaDataReader;

use crate::model::Object;
use crate::pipeline::sink::SinkError;

/// What one Parquet object says about its table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    /// The table: the destination, as a catalog names it.
    pub table: String,
    /// The destination's key prefix (`customers/`).
    pub prefix: String,
    /// The Hive partition (`dt=2024-05-01/country=DE`): keys and unescaped values.
    pub partition: Vec<(String, String)>,
    /// The partition's key prefix (`customers/dt=2024-05-01/`).
    pub partition_prefix: String,
    /// Columns and their Hive types, in file order, without the partition keys.
    pub columns: Vec<Column>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub hive_type: String,
}

impl Described {
    /// What `object` says, if it is a data object in Parquet; an error if its footer cannot
    /// be read (it was written by this host a moment ago, so that is a bug).
    pub fn of(object: &Object) -> Result<Option<Described>, String> {
        // Dead letters and markers are never Parquet.
        if !object.key.ends_with(".parquet") {
            return Ok(None);
        }
        let mut segments: Vec<&str> = object.key.split('/').collect();
        segments.pop();
        let Some((destination, path)) = segments.split_first() else {
            return Ok(None);
        };
        let partition: Vec<(String, String)> = (path.iter())
            .filter_map(|segment| segment.split_once('='))
            .map(|(key, value)| (key.to_lowercase(), unescape(value)))
            .collect();
        let schema = footer_schema(&object.body).map_err(|e| format!("{}: {e}", object.key))?;
        let columns = (schema.fields().iter())
            .map(|field| (field.name().to_lowercase(), hive_type(field.data_type())))
            // An all-null column says nothing of its type; a partition key is not a column.
            .filter_map(|(name, hive_type)| Some((name, hive_type?)))
            .filter(|(name, _)| !partition.iter().any(|(key, _)| key == name))
            .map(|(name, hive_type)| Column { name, hive_type })
            .collect();
        Ok(Some(Described {
            table: table_name(destination),
            prefix: format!("{destination}/"),
            partition_prefix: segments.iter().map(|s| format!("{s}/")).collect(),
            partition,
            columns,
        }))
    }
}

/// The Arrow schema in a Parquet file's footer.
fn footer_schema(body: &[u8]) -> Result<arrow_schema::Schema, parquet::errors::ParquetError> {
    let short = || parquet::errors::ParquetError::General("not a Parquet file".into());
    let tail = body.len().checked_sub(8).ok_or_else(short)?;
    let length = u32::from_le_bytes(body[tail..tail + 4].try_into().expect("4 bytes")) as usize;
    let start = tail.checked_sub(length).ok_or_else(short)?;
    let metadata = ParquetMetaDataReader::decode_metadata(&body[start..tail])?;
    let file = metadata.file_metadata();
    parquet_to_arrow_schema(file.schema_descr(), file.key_value_metadata())
}

/// A destination as a Glue/Athena table name: lower case, anything but letters, digits and
/// `_` as `_`.
pub fn table_name(destination: &str) -> String {
    (destination.chars())
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '_') => c,
            _ => '_',
        })
        .collect()
}

/// `%XX` escapes (the keys' Hive-style escaping, `model::path_segment`) undone.
fn unescape(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .into_owned()
}

/// The Hive type Athena reads a Parquet column of `data_type` as; `None` for Arrow's null
/// type (a column null in every row of a file).
fn hive_type(data_type: &DataType) -> Option<String> {
    Some(match data_type {
        DataType::Null => return None,
        DataType::Boolean => "boolean".into(),
        DataType::Int8 => "tinyint".into(),
        DataType::Int16 => "smallint".into(),
        DataType::Int32 => "int".into(),
        DataType::Int64 => "bigint".into(),
        DataType::Float32 => "float".into(),
        DataType::Float64 => "double".into(),
        DataType::Decimal128(precision, scale) => format!("decimal({precision},{scale})"),
        DataType::Date32 => "date".into(),
        DataType::Timestamp(..) => "timestamp".into(),
        // Hive has no time of day: the column's integer count since midnight.
        DataType::Time64(_) => "bigint".into(),
        DataType::Binary => "binary".into(),
        _ => "string".into(),
    })
}

/// The type a table's column takes when a file has it as `found`: the wider of the two, or
/// `None` when neither holds the other (the table keeps its type).
fn widen(table: &str, found: &str) -> Option<String> {
    if table == found {
        return Some(table.into());
    }
    const INTEGERS: [&str; 4] = ["tinyint", "smallint", "int", "bigint"];
    const FLOATS: [&str; 2] = ["float", "double"];
    for ladder in [&INTEGERS[..], &FLOATS[..]] {
        if let (Some(a), Some(b)) = (
            ladder.iter().position(|t| *t == table),
            ladder.iter().position(|t| *t == found),
        ) {
            return Some(ladder[a.max(b)].into());
        }
    }
    let decimal = |t: &str| -> Option<(u32, u32)> {
        let (p, s) = t
            .strip_prefix("decimal(")?
            .strip_suffix(')')?
            .split_once(',')?;
        Some((p.parse().ok()?, s.parse().ok()?))
    };
    let ((p1, s1), (p2, s2)) = (decimal(table)?, decimal(found)?);
    let scale = s1.max(s2);
    let precision = (p1 - s1).max(p2 - s2) + scale;
    (precision <= 38).then(|| format!("decimal({precision},{scale})"))
}

/// A table's columns with a file's merged in: new columns appended, widened types widened.
/// Also returns the columns whose type the table could not follow, as `name: table → file`.
fn merge(table: &[Column], file: &[Column]) -> (Vec<Column>, Vec<String>) {
    let mut merged = table.to_vec();
    let mut conflicts = Vec::new();
    for column in file {
        match merged.iter_mut().find(|c| c.name == column.name) {
            None => merged.push(column.clone()),
            Some(have) => match widen(&have.hive_type, &column.hive_type) {
                Some(wider) => have.hive_type = wider,
                None => conflicts.push(format!(
                    "{}: {} → {}",
                    column.name, have.hive_type, column.hive_type
                )),
            },
        }
    }
    (merged, conflicts)
}

/// A table as the catalog has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub columns: Vec<Column>,
    pub partition_keys: Vec<String>,
    /// The table's parameters (a user's projection settings, comments): kept by updates.
    pub parameters: BTreeMap<String, String>,
}

/// The tables this host has described, so a window of known columns and partitions makes
/// no catalog call.
#[derive(Debug)]
pub struct Catalog {
    tables: Glue,
    known: tokio::sync::Mutex<HashMap<String, Known>>,
}

#[derive(Debug)]
struct Known {
    table: Table,
    /// The destination's key prefix: two destinations whose names make one table name are
    /// not mixed in it.
    prefix: String,
    partitions: HashSet<Vec<String>>,
}

/// How many times an update of a table's columns is read back and made again when another
/// host's update replaced it meanwhile.
const UPDATE_ATTEMPTS: usize = 5;

impl Catalog {
    pub fn new(tables: Glue) -> Self {
        Catalog {
            tables,
            known: Default::default(),
        }
    }

    /// Describes the tables `objects` belong to: creates, extends and partitions them.
    pub async fn register(&self, objects: &[Object]) -> Result<(), SinkError> {
        for object in objects {
            let described = Described::of(object).map_err(|message| SinkError::Store {
                location: object.key.clone(),
                message,
            })?;
            if let Some(described) = described {
                self.describe(&described).await?;
            }
        }
        Ok(())
    }

    async fn describe(&self, described: &Described) -> Result<(), SinkError> {
        let mut known = self.known.lock().await;
        let described_now = self.describe_with(&mut known, described).await;
        if described_now.is_err() {
            // The catalog may have changed under this host (a table dropped, another host's
            // update): it is read afresh when the window is written again.
            known.remove(&described.table);
        }
        described_now
    }

    async fn describe_with(
        &self,
        known: &mut HashMap<String, Known>,
        described: &Described,
    ) -> Result<(), SinkError> {
        let name = &described.table;
        let keys: Vec<String> = described.partition.iter().map(|(k, _)| k.clone()).collect();
        if !known.contains_key(name) {
            let table = match self.tables.get(name).await? {
                Some(table) => table,
                None => {
                    self.tables.create(name, described).await?;
                    // Another host may have made it first: read what is there.
                    self.tables.get(name).await?.unwrap_or(Table {
                        columns: described.columns.clone(),
                        partition_keys: keys.clone(),
                        parameters: BTreeMap::new(),
                    })
                }
            };
            let known_table = Known {
                table,
                prefix: described.prefix.clone(),
                partitions: HashSet::new(),
            };
            known.insert(name.clone(), known_table);
        }
        let entry = known.get_mut(name).expect("inserted above");
        if entry.prefix != described.prefix {
            tracing::warn!(table = %name, "destinations {} and {} make the same table name: \
                only the first is described", entry.prefix, described.prefix);
            return Ok(());
        }
        if entry.table.partition_keys != keys {
            tracing::warn!(table = %name, file = %described.partition_prefix,
                "the file's partition keys ({}) are not the table's ({}): not registered",
                keys.join(", "), entry.table.partition_keys.join(", "));
            return Ok(());
        }
        let (columns, conflicts) = merge(&entry.table.columns, &described.columns);
        if !conflicts.is_empty() {
            tracing::warn!(table = %name, file = %described.partition_prefix,
                "a schema version changes a column in a way the table cannot follow ({}): \
                 the table keeps its type, the file its own", conflicts.join(", "));
        }
        if columns != entry.table.columns {
            let table = self
                .update_columns(name, &described.prefix, &columns)
                .await?;
            // Engines read a partition through its own column list: every partition
            // registered with older columns follows the table.
            self.tables.update_partitions(name, &table).await?;
            tracing::info!(table = %name, columns = table.columns.len(), "catalog table updated");
            entry.table = table;
        }
        let values: Vec<String> = described.partition.iter().map(|(_, v)| v.clone()).collect();
        if !values.is_empty() && !entry.partitions.contains(&values) {
            self.tables
                .add_partition(name, described, &entry.table)
                .await?;
            entry.partitions.insert(values);
        }
        Ok(())
    }

    /// Merges `columns` into the table as the catalog has it now, and reads it back until
    /// the merge holds: another host's update between the read and the write would
    /// otherwise be lost.
    async fn update_columns(
        &self,
        name: &str,
        prefix: &str,
        columns: &[Column],
    ) -> Result<Table, SinkError> {
        for _ in 0..UPDATE_ATTEMPTS {
            let Some(current) = self.tables.get(name).await? else {
                return Err(SinkError::Store {
                    location: name.into(),
                    message: "the table disappeared while its columns were updated".into(),
                });
            };
            let (merged, _) = merge(&current.columns, columns);
            if merged == current.columns {
                return Ok(current);
            }
            let table = Table {
                columns: merged,
                ..current
            };
            self.tables.update(name, prefix, &table).await?;
        }
        Err(SinkError::Store {
            location: name.into(),
            message: format!(
                "its columns changed under every one of {UPDATE_ATTEMPTS} updates (other hosts?)"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns(pairs: &[(&str, &str)]) -> Vec<Column> {
        (pairs.iter())
            .map(|(name, hive_type)| Column {
                name: name.to_string(),
                hive_type: hive_type.to_string(),
            })
            .collect()
    }

    #[test]
    fn widening_follows_the_wider_type_and_refuses_the_rest() {
        assert_eq!(widen("int", "bigint").as_deref(), Some("bigint"));
        assert_eq!(widen("bigint", "smallint").as_deref(), Some("bigint"));
        assert_eq!(widen("float", "double").as_deref(), Some("double"));
        assert_eq!(
            widen("decimal(12,2)", "decimal(14,2)").as_deref(),
            Some("decimal(14,2)")
        );
        // 10 integer digits and 4 fraction digits need 14.
        assert_eq!(
            widen("decimal(12,2)", "decimal(8,4)").as_deref(),
            Some("decimal(14,4)")
        );
        assert_eq!(widen("decimal(38,0)", "decimal(38,2)"), None);
        assert_eq!(widen("int", "string"), None);
        assert_eq!(widen("int", "double"), None);
    }

    #[test]
    fn a_version_adds_and_widens_columns_and_a_narrowing_is_reported() {
        let table = columns(&[
            ("id", "int"),
            ("balance", "decimal(12,2)"),
            ("name", "string"),
        ]);
        let file = columns(&[("id", "bigint"), ("name", "int"), ("tier", "string")]);
        let (merged, conflicts) = merge(&table, &file);
        assert_eq!(
            merged,
            columns(&[
                ("id", "bigint"),
                ("balance", "decimal(12,2)"),
                ("name", "string"),
                ("tier", "string"),
            ])
        );
        assert_eq!(conflicts, ["name: string → int"]);
    }

    #[test]
    fn names_and_partitions_come_from_the_key() {
        assert_eq!(table_name("Order-Lines.v2"), "order_lines_v2");
        assert_eq!(unescape("S%C3%A3o%20Paulo"), "São Paulo");
        assert_eq!(unescape("100%"), "100%");
    }
}
