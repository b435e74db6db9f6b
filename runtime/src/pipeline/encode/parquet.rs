//! Parquet objects: a table per (destination, path, source schema version) of a window, its
//! columns typed from the transform's values and, where a column keeps its source name and
//! kind, from what the Debezium schema declares (a `DECIMAL(10,2)` is `Decimal128(10, 2)`).
//!
//! A column's type is fixed by its first non-null value (or, if it has none, by its
//! declaration); a later row that the column's type cannot hold exactly (another kind, an
//! integer out of range, a decimal with more digits) is refused with the reason, and the
//! caller dead-letters it: nothing is coerced. Rows are held as typed columns and written
//! when the window closes, zstd-compressed, with statistics, in row groups sized by bytes;
//! the writer has no clock or randomness, so the same rows give the same bytes.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{
    ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array, Float64Array, Int8Array,
    Int16Array, Int32Array, Int64Array, NullArray, RecordBatch, RecordBatchOptions, StringArray,
    Time64MicrosecondArray, Time64NanosecondArray, TimestampMicrosecondArray,
    TimestampNanosecondArray,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use crate::event::{Row, Timestamp, Value};
use crate::model::{Declared, SourceSchema};

/// Row groups are closed at about this many encoded bytes.
const ROW_GROUP_BYTES: usize = 128 << 20;
/// Arrow field metadata naming a column's meaning where its type alone does not: JSON
/// documents (the canonical `arrow.json` extension) and decimals kept as text.
const EXTENSION: &str = "ARROW:extension:name";
const DECIMAL_TEXT: &str = "wrt.decimal-text";
const TIMESTAMP_TEXT: &str = "wrt.timestamp-text";
/// Nanoseconds in a day: a time of day is below it.
const DAY_NANOS: i64 = 86_400_000_000_000;
/// Most bytes of text or binary one column of one file may hold (Arrow's 32-bit offsets
/// stop at 2 GiB).
const COLUMN_BYTES: usize = 1 << 30;
/// Parquet key-value metadata: the source schema version the rows were declared by.
pub const SOURCE_SCHEMA_KEY: &str = "wrt.source-schema";

/// A column's type in one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Boolean,
    Int(u8),
    /// Every float is a double: a FLOAT column's values arrive as the decimal text of a
    /// 32-bit float, which a 32-bit column would round.
    Float,
    Decimal {
        precision: u8,
        scale: i8,
    },
    /// A decimal no Decimal128 holds (variable scale, precision above 38): exact text.
    DecimalText,
    Text,
    Bytes,
    Json,
    Date,
    Time {
        nanos: bool,
    },
    Timestamp {
        nanos: bool,
    },
    /// A timestamp column nothing declares: microseconds if every value of the file is
    /// whole microseconds, else nanoseconds if every value fits them, else RFC 3339 text
    /// (marked `wrt.timestamp-text`), so no value is refused or rounded.
    Instant,
}

/// How a file holds an [`Ty::Instant`] column, decided by all its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InstantAs {
    Micros,
    Nanos,
    Text,
}

impl InstantAs {
    fn of(cells: &[Cell]) -> InstantAs {
        let instants = || {
            cells.iter().filter_map(|c| match c {
                Cell::Instant(t) => Some(*t),
                _ => None,
            })
        };
        if instants().all(|t| t.nanos % 1000 == 0 && count(t, 1_000_000).is_some()) {
            InstantAs::Micros
        } else if instants().all(|t| count(t, 1_000_000_000).is_some()) {
            InstantAs::Nanos
        } else {
            InstantAs::Text
        }
    }
}

/// `t` in units of `1/per_second` s since the epoch (sub-unit digits dropped), if it fits.
fn count(t: Timestamp, per_second: i64) -> Option<i64> {
    let units = i64::from(t.nanos) / (1_000_000_000 / per_second);
    t.seconds.checked_mul(per_second)?.checked_add(units)
}

impl Ty {
    /// The type a value gives a column nothing declares.
    fn of_value(value: &Value) -> Option<Ty> {
        Some(match value {
            Value::Null => return None,
            Value::Boolean(_) => Ty::Boolean,
            Value::Int(_) => Ty::Int(64),
            Value::Float(_) => Ty::Float,
            Value::Decimal(_) => Ty::DecimalText,
            Value::Text(_) => Ty::Text,
            Value::Bytes(_) => Ty::Bytes,
            Value::Json(_) => Ty::Json,
            Value::Date(_) => Ty::Date,
            // Microseconds unless declared otherwise, whatever the first value holds, so a
            // column's unit does not depend on where a window starts.
            Value::Time(_) => Ty::Time { nanos: false },
            Value::Timestamp(_) => Ty::Instant,
        })
    }

    /// The type a declaration gives a column.
    fn declared(declared: Declared) -> Option<Ty> {
        Some(match declared {
            Declared::Int(bits) => Ty::Int(bits),
            Declared::Float(_) => Ty::Float,
            Declared::Boolean => Ty::Boolean,
            Declared::Decimal { precision, scale } => {
                let precision = precision.unwrap_or(38);
                if (1..=38).contains(&precision) && (0..=precision as i8).contains(&scale) {
                    Ty::Decimal { precision, scale }
                } else {
                    Ty::DecimalText
                }
            }
            Declared::VariableDecimal => Ty::DecimalText,
            Declared::Text => Ty::Text,
            Declared::Bytes => Ty::Bytes,
            Declared::Json => Ty::Json,
            Declared::Date => Ty::Date,
            Declared::Time { nanos } => Ty::Time { nanos },
            Declared::Timestamp { nanos } => Ty::Timestamp { nanos },
            Declared::Unknown => return None,
        })
    }

    /// The declared type when the value is of the kind declared (the transform passed the
    /// column through), else the value's own.
    fn of(declared: Option<Declared>, value: &Value) -> Option<Ty> {
        let own = Ty::of_value(value)?;
        match declared.and_then(Ty::declared) {
            Some(ty) if ty.kind() == own.kind() => Some(ty),
            _ => Some(own),
        }
    }

    fn kind(self) -> &'static str {
        match self {
            Ty::Boolean => "boolean",
            Ty::Int(_) => "int",
            Ty::Float => "float",
            Ty::Decimal { .. } | Ty::DecimalText => "decimal",
            Ty::Text => "text",
            Ty::Bytes => "bytes",
            Ty::Json => "json",
            Ty::Date => "date",
            Ty::Time { .. } => "time",
            Ty::Timestamp { .. } | Ty::Instant => "timestamp",
        }
    }

    /// The column's field; an [`Ty::Instant`]'s type depends on the file's `cells`.
    fn field(self, name: &str, cells: &[Cell]) -> Field {
        let micros_or_nanos = |nanos| {
            if nanos {
                TimeUnit::Nanosecond
            } else {
                TimeUnit::Microsecond
            }
        };
        let utc = |nanos| DataType::Timestamp(micros_or_nanos(nanos), Some("UTC".into()));
        let data_type = match self {
            Ty::Boolean => DataType::Boolean,
            Ty::Int(8) => DataType::Int8,
            Ty::Int(16) => DataType::Int16,
            Ty::Int(32) => DataType::Int32,
            Ty::Int(_) => DataType::Int64,
            Ty::Float => DataType::Float64,
            Ty::Decimal { precision, scale } => DataType::Decimal128(precision, scale),
            Ty::DecimalText | Ty::Text | Ty::Json => DataType::Utf8,
            Ty::Bytes => DataType::Binary,
            Ty::Date => DataType::Date32,
            Ty::Time { nanos } => DataType::Time64(micros_or_nanos(nanos)),
            Ty::Timestamp { nanos } => utc(nanos),
            Ty::Instant => match InstantAs::of(cells) {
                InstantAs::Micros => utc(false),
                InstantAs::Nanos => utc(true),
                InstantAs::Text => DataType::Utf8,
            },
        };
        let field = Field::new(name, data_type, true);
        let marked = |key: &str, value: &str| HashMap::from([(key.into(), value.into())]);
        match self {
            Ty::Json => field.with_metadata(marked(EXTENSION, "arrow.json")),
            Ty::DecimalText => field.with_metadata(marked(DECIMAL_TEXT, "true")),
            Ty::Instant if field.data_type() == &DataType::Utf8 => {
                field.with_metadata(marked(TIMESTAMP_TEXT, "true"))
            }
            _ => field,
        }
    }

    /// `value` as this type holds it, or why it cannot be.
    fn cell(self, value: &Value) -> Result<Cell, String> {
        let wrong = || {
            format!(
                "holds {} where the file's column is {}",
                value.type_name(),
                self.describe()
            )
        };
        Ok(match (self, value) {
            (_, Value::Null) => Cell::Null,
            (Ty::Boolean, Value::Boolean(b)) => Cell::Bool(*b),
            (Ty::Int(bits), Value::Int(v)) => {
                let limit = 1i128 << (bits - 1);
                if !(-limit..limit).contains(&i128::from(*v)) {
                    return Err(format!("holds {v}, out of range for int{bits}"));
                }
                Cell::Int(*v)
            }
            (Ty::Float, Value::Float(f)) => Cell::Float(*f),
            (Ty::Decimal { precision, scale }, Value::Decimal(text)) => {
                Cell::Decimal(unscaled(text, precision, scale)?)
            }
            (Ty::DecimalText, Value::Decimal(text))
            | (Ty::Text, Value::Text(text))
            | (Ty::Json, Value::Json(text)) => Cell::Text(text.clone()),
            (Ty::Bytes, Value::Bytes(bytes)) => Cell::Bytes(bytes.clone()),
            (Ty::Date, Value::Date(days)) => Cell::Int(i64::from(*days)),
            // A time64 is a time of day; MySQL's TIME may be negative or past 24 h.
            (Ty::Time { .. }, Value::Time(ns)) if !(0..DAY_NANOS).contains(ns) => {
                return Err(format!(
                    "holds a TIME outside 00:00..24:00, which {} cannot hold",
                    self.describe()
                ));
            }
            (Ty::Time { nanos: true }, Value::Time(ns)) => Cell::Int(*ns),
            (Ty::Time { nanos: false }, Value::Time(ns)) if ns % 1000 == 0 => Cell::Int(ns / 1000),
            (Ty::Timestamp { nanos }, Value::Timestamp(t)) => {
                if !nanos && t.nanos % 1000 != 0 {
                    return Err(format!(
                        "holds a timestamp with nanoseconds, which {} cannot hold",
                        self.describe()
                    ));
                }
                let per_second = if nanos { 1_000_000_000 } else { 1_000_000 };
                Cell::Int(
                    count(*t, per_second)
                        .ok_or_else(|| format!("holds a timestamp outside {}", self.describe()))?,
                )
            }
            (Ty::Instant, Value::Timestamp(t)) => Cell::Instant(*t),
            _ => return Err(wrong()),
        })
    }

    fn describe(self) -> String {
        match self {
            Ty::Int(bits) => format!("int{bits}"),
            Ty::Float => "float64".into(),
            Ty::Decimal { precision, scale } => format!("decimal({precision},{scale})"),
            Ty::Time { nanos } | Ty::Timestamp { nanos } => {
                format!("{}({})", self.kind(), if nanos { "ns" } else { "µs" })
            }
            other => other.kind().into(),
        }
    }
}

/// A decimal's text (`-12.5`) as the unscaled integer of `decimal(precision, scale)`,
/// refusing what would need rounding or more digits.
fn unscaled(text: &str, precision: u8, scale: i8) -> Result<i128, String> {
    let refuse =
        |why: &str| format!("holds decimal {text:?}, {why} for decimal({precision},{scale})");
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let ok = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !ok(whole) || !ok(fraction) {
        return Err(refuse("not a plain decimal"));
    }
    let scale = scale as usize;
    let (kept, dropped) = fraction.split_at(fraction.len().min(scale));
    if dropped.bytes().any(|b| b != b'0') {
        return Err(refuse("too many fraction digits"));
    }
    let all = format!("{}{kept:0<scale$}", whole.trim_start_matches('0'));
    if all.trim_start_matches('0').len() > precision as usize {
        return Err(refuse("too many digits"));
    }
    let magnitude: i128 = if all.is_empty() {
        0
    } else {
        all.parse().map_err(|_| refuse("too many digits"))?
    };
    Ok(if negative { -magnitude } else { magnitude })
}

/// One value as its column stores it.
enum Cell {
    Null,
    Bool(bool),
    /// Integers, and dates, times and timestamps in their column's unit.
    Int(i64),
    Float(f64),
    Decimal(i128),
    Text(String),
    Bytes(Vec<u8>),
    /// A timestamp of an [`Ty::Instant`] column, as it came.
    Instant(Timestamp),
}

impl Cell {
    /// Bytes of text or binary.
    fn bytes(&self) -> usize {
        match self {
            Cell::Text(text) => text.len(),
            Cell::Bytes(bytes) => bytes.len(),
            _ => 0,
        }
    }
}

struct Column {
    name: String,
    ty: Option<Ty>,
    cells: Vec<Cell>,
    /// Bytes of text or binary held.
    bytes: usize,
}

/// The rows of one Parquet object.
pub struct Table {
    declared: Option<Arc<SourceSchema>>,
    columns: Vec<Column>,
    rows: usize,
}

impl Table {
    pub fn new(declared: Option<Arc<SourceSchema>>) -> Self {
        Table {
            declared,
            columns: Vec::new(),
            rows: 0,
        }
    }

    /// Adds `row`, or says why this file cannot hold it (and adds nothing).
    pub fn push_row(&mut self, row: &Row) -> Result<(), String> {
        let mut cells: Vec<(usize, Option<Ty>, Cell)> = Vec::with_capacity(row.len());
        for (at, column) in row.iter().enumerate() {
            if row[..at].iter().any(|c| c.name == column.name) {
                return Err(format!("the row has two columns named `{}`", column.name));
            }
            let existing = self.columns.iter().position(|c| c.name == column.name);
            let ty = match existing.and_then(|at| self.columns[at].ty) {
                Some(ty) => Some(ty),
                None => Ty::of(self.declared_as(&column.name), &column.value),
            };
            let cell = match ty {
                Some(ty) => ty.cell(&column.value),
                None => Ok(Cell::Null),
            }
            .map_err(|why| format!("`{}` {why}", column.name))?;
            let held = existing.map_or(0, |at| self.columns[at].bytes);
            if held + cell.bytes() > COLUMN_BYTES {
                return Err(format!(
                    "`{}` would hold more than {} MiB of data in one file",
                    column.name,
                    COLUMN_BYTES >> 20
                ));
            }
            cells.push((existing.unwrap_or(usize::MAX), ty, cell));
        }
        for (column, (at, ty, cell)) in row.iter().zip(cells) {
            let at = if at == usize::MAX {
                self.columns.push(Column {
                    name: column.name.clone(),
                    ty: None,
                    cells: (0..self.rows).map(|_| Cell::Null).collect(),
                    bytes: 0,
                });
                self.columns.len() - 1
            } else {
                at
            };
            let column = &mut self.columns[at];
            column.ty = column.ty.or(ty.filter(|_| !matches!(cell, Cell::Null)));
            column.bytes += cell.bytes();
            column.cells.push(cell);
        }
        self.rows += 1;
        for column in &mut self.columns {
            if column.cells.len() < self.rows {
                column.cells.push(Cell::Null);
            }
        }
        Ok(())
    }

    /// The source schema version whose rows this table holds.
    pub fn declared(&self) -> Option<&Arc<SourceSchema>> {
        self.declared.as_ref()
    }

    fn declared_as(&self, name: &str) -> Option<Declared> {
        self.declared.as_ref()?.column(name)
    }

    /// The Parquet file.
    pub fn finish(self) -> Result<Vec<u8>, ParquetError> {
        let mut fields = Vec::with_capacity(self.columns.len());
        let mut arrays = Vec::with_capacity(self.columns.len());
        for column in self.columns {
            // A column null throughout takes its declared type, or Arrow's null type.
            let ty = column.ty.or_else(|| {
                let declared = self.declared.as_ref()?.column(&column.name)?;
                Ty::declared(declared)
            });
            let (field, array) = match ty {
                Some(ty) => (
                    ty.field(&column.name, &column.cells),
                    array(ty, column.cells)?,
                ),
                None => (
                    Field::new(&column.name, DataType::Null, true),
                    Arc::new(NullArray::new(column.cells.len())) as ArrayRef,
                ),
            };
            fields.push(field);
            arrays.push(array);
        }
        let schema = Arc::new(Schema::new(fields));
        let options = RecordBatchOptions::new().with_row_count(Some(self.rows));
        let batch = RecordBatch::try_new_with_options(schema.clone(), arrays, &options)?;
        let metadata = self
            .declared
            .as_ref()
            .map(|declared| vec![KeyValue::new(SOURCE_SCHEMA_KEY.into(), declared.id.clone())]);
        let properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_max_row_group_bytes(Some(ROW_GROUP_BYTES))
            .set_key_value_metadata(metadata)
            .build();
        let mut writer = ArrowWriter::try_new(Vec::new(), schema, Some(properties))?;
        writer.write(&batch)?;
        writer.into_inner()
    }
}

/// A column's cells as an Arrow array of its type.
fn array(ty: Ty, cells: Vec<Cell>) -> Result<ArrayRef, ParquetError> {
    fn ints(cells: &[Cell]) -> impl Iterator<Item = Option<i64>> + '_ {
        cells.iter().map(|c| match c {
            Cell::Int(v) => Some(*v),
            _ => None,
        })
    }
    // Ranges were checked as the cells were made.
    let narrow = |v: i64| v as i32;
    let utc = || Arc::<str>::from("UTC");
    Ok(match ty {
        Ty::Boolean => Arc::new(
            cells
                .iter()
                .map(|c| match c {
                    Cell::Bool(b) => Some(*b),
                    _ => None,
                })
                .collect::<BooleanArray>(),
        ),
        Ty::Int(8) => Arc::new(
            ints(&cells)
                .map(|v| v.map(|v| v as i8))
                .collect::<Int8Array>(),
        ),
        Ty::Int(16) => Arc::new(
            ints(&cells)
                .map(|v| v.map(|v| v as i16))
                .collect::<Int16Array>(),
        ),
        Ty::Int(32) => Arc::new(ints(&cells).map(|v| v.map(narrow)).collect::<Int32Array>()),
        Ty::Int(_) => Arc::new(ints(&cells).collect::<Int64Array>()),
        Ty::Date => Arc::new(ints(&cells).map(|v| v.map(narrow)).collect::<Date32Array>()),
        Ty::Time { nanos: false } => Arc::new(ints(&cells).collect::<Time64MicrosecondArray>()),
        Ty::Time { nanos: true } => Arc::new(ints(&cells).collect::<Time64NanosecondArray>()),
        Ty::Timestamp { nanos: false } => Arc::new(
            ints(&cells)
                .collect::<TimestampMicrosecondArray>()
                .with_timezone(utc()),
        ),
        Ty::Timestamp { nanos: true } => Arc::new(
            ints(&cells)
                .collect::<TimestampNanosecondArray>()
                .with_timezone(utc()),
        ),
        Ty::Instant => {
            let unit = InstantAs::of(&cells);
            let instants = cells.iter().map(|c| match c {
                Cell::Instant(t) => Some(*t),
                _ => None,
            });
            match unit {
                InstantAs::Micros => Arc::new(
                    instants
                        .map(|t| t.and_then(|t| count(t, 1_000_000)))
                        .collect::<TimestampMicrosecondArray>()
                        .with_timezone(utc()),
                ),
                InstantAs::Nanos => Arc::new(
                    instants
                        .map(|t| t.and_then(|t| count(t, 1_000_000_000)))
                        .collect::<TimestampNanosecondArray>()
                        .with_timezone(utc()),
                ),
                InstantAs::Text => Arc::new(
                    instants
                        .map(|t| t.map(|t| t.to_rfc3339()))
                        .collect::<StringArray>(),
                ),
            }
        }
        Ty::Float => Arc::new(
            cells
                .iter()
                .map(|c| match c {
                    Cell::Float(f) => Some(*f),
                    _ => None,
                })
                .collect::<Float64Array>(),
        ),
        Ty::Decimal { precision, scale } => Arc::new(
            cells
                .iter()
                .map(|c| match c {
                    Cell::Decimal(v) => Some(*v),
                    _ => None,
                })
                .collect::<Decimal128Array>()
                .with_precision_and_scale(precision, scale)?,
        ),
        Ty::DecimalText | Ty::Text | Ty::Json => Arc::new(
            cells
                .iter()
                .map(|c| match c {
                    Cell::Text(s) => Some(s.as_str()),
                    _ => None,
                })
                .collect::<StringArray>(),
        ),
        Ty::Bytes => Arc::new(
            cells
                .iter()
                .map(|c| match c {
                    Cell::Bytes(b) => Some(b.as_slice()),
                    _ => None,
                })
                .collect::<BinaryArray>(),
        ),
    })
}

#[cfg(test)]
mod tests {
    use arrow_array::{Array, cast::AsArray, types};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;
    use crate::event::Column as Col;
    use crate::model::SourceColumn;

    fn row(columns: &[(&str, Value)]) -> Row {
        columns
            .iter()
            .map(|(name, value)| Col {
                name: name.to_string(),
                value: value.clone(),
            })
            .collect()
    }

    fn declared(columns: &[(&str, Declared)]) -> Option<Arc<SourceSchema>> {
        let columns = columns.iter().map(|(name, declared)| SourceColumn {
            name: name.to_string(),
            declared: *declared,
        });
        Some(Arc::new(SourceSchema::new(columns.collect())))
    }

    fn read(bytes: Vec<u8>) -> (Arc<Schema>, RecordBatch, Vec<KeyValue>) {
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes)).unwrap();
        let metadata = builder
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .cloned();
        let schema = builder.schema().clone();
        let mut batches: Vec<RecordBatch> = builder.build().unwrap().map(Result::unwrap).collect();
        // A small file is one row group, read as one batch.
        assert_eq!(batches.len(), 1);
        (schema, batches.remove(0), metadata.unwrap_or_default())
    }

    fn shop() -> Option<Arc<SourceSchema>> {
        declared(&[
            ("id", Declared::Int(32)),
            (
                "price",
                Declared::Decimal {
                    precision: Some(10),
                    scale: 2,
                },
            ),
            ("placed_at", Declared::Timestamp { nanos: false }),
            ("doc", Declared::Json),
            ("note", Declared::Text),
        ])
    }

    #[test]
    fn columns_take_the_declared_types_and_read_back_exactly() {
        let mut table = Table::new(shop());
        let at = |seconds, nanos| Value::Timestamp(Timestamp { seconds, nanos });
        table
            .push_row(&row(&[
                ("id", Value::Int(7)),
                ("price", Value::Decimal("-12.5".into())),
                ("placed_at", at(-1, 999_999_000)),
                ("doc", Value::Json(r#"{"a":1}"#.into())),
                ("note", Value::Null),
                ("email_hash", Value::Text("ab12".into())),
                ("day", Value::Date(-3)),
                ("span", Value::Time(86_399_999_999_000)),
            ]))
            .unwrap();
        table
            .push_row(&row(&[
                ("id", Value::Int(i64::from(i32::MAX))),
                ("price", Value::Decimal("99999999.99".into())),
                ("placed_at", Value::Null),
                ("extra", Value::Bytes(vec![0, 255])),
            ]))
            .unwrap();
        let (schema, batch, metadata) = read(table.finish().unwrap());
        let types: Vec<(String, DataType)> = schema
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect();
        let utc = Some(Arc::<str>::from("UTC"));
        assert_eq!(
            types,
            [
                ("id".into(), DataType::Int32),
                ("price".into(), DataType::Decimal128(10, 2)),
                (
                    "placed_at".into(),
                    DataType::Timestamp(TimeUnit::Microsecond, utc)
                ),
                ("doc".into(), DataType::Utf8),
                // Null in every row: its declared type.
                ("note".into(), DataType::Utf8),
                ("email_hash".into(), DataType::Utf8),
                ("day".into(), DataType::Date32),
                ("span".into(), DataType::Time64(TimeUnit::Microsecond)),
                ("extra".into(), DataType::Binary),
            ]
        );
        assert_eq!(
            schema
                .field(3)
                .metadata()
                .get(EXTENSION)
                .map(String::as_str),
            Some("arrow.json")
        );
        let price = batch.column(1).as_primitive::<types::Decimal128Type>();
        assert_eq!((price.value(0), price.value(1)), (-1250, 9_999_999_999));
        let placed = batch
            .column(2)
            .as_primitive::<types::TimestampMicrosecondType>();
        assert_eq!(placed.value(0), -1);
        assert!(placed.is_null(1));
        let id = batch.column(0).as_primitive::<types::Int32Type>();
        assert_eq!(id.value(1), i32::MAX);
        // A column first seen in the second row is null in the first, and the reverse.
        assert!(batch.column(8).is_null(0) && !batch.column(8).is_null(1));
        assert!(batch.column(5).is_null(1));
        let span = batch
            .column(7)
            .as_primitive::<types::Time64MicrosecondType>();
        assert_eq!(span.value(0), 86_399_999_999);
        assert_eq!(
            metadata
                .iter()
                .find(|kv| kv.key == SOURCE_SCHEMA_KEY)
                .and_then(|kv| kv.value.clone()),
            shop().map(|s| s.id.clone())
        );
    }

    #[test]
    fn a_row_the_file_cannot_hold_is_refused_whole() {
        let mut table = Table::new(shop());
        table
            .push_row(&row(&[
                ("id", Value::Int(1)),
                ("tag", Value::Text("a".into())),
            ]))
            .unwrap();
        let refused = [
            (
                row(&[("id", Value::Int(1 << 40))]),
                "`id` holds 1099511627776, out of range for int32",
            ),
            (
                row(&[("price", Value::Decimal("123456789.5".into()))]),
                "`price` holds decimal \"123456789.5\", too many digits for decimal(10,2)",
            ),
            (
                row(&[("price", Value::Decimal("1.005".into()))]),
                "`price` holds decimal \"1.005\", too many fraction digits for decimal(10,2)",
            ),
            (
                row(&[("id", Value::Int(2)), ("tag", Value::Int(5))]),
                "`tag` holds int where the file's column is text",
            ),
            (
                row(&[("id", Value::Int(2)), ("id", Value::Int(3))]),
                "the row has two columns named `id`",
            ),
        ];
        for (row, why) in refused {
            assert_eq!(table.push_row(&row).unwrap_err(), why);
        }
        // Trailing zeros past the scale lose nothing.
        table
            .push_row(&row(&[("price", Value::Decimal("1.500".into()))]))
            .unwrap();
        let (_, batch, _) = read(table.finish().unwrap());
        assert_eq!(batch.num_rows(), 2);
        let id = batch.column(0).as_primitive::<types::Int32Type>();
        assert_eq!((id.value(0), id.is_null(1)), (1, true));
    }

    #[test]
    fn undeclared_columns_are_typed_by_their_values() {
        let mut table = Table::new(None);
        let at = |nanos| Value::Timestamp(Timestamp { seconds: 1, nanos });
        table
            .push_row(&row(&[
                ("n", Value::Int(-1)),
                ("amount", Value::Decimal("1.25".into())),
                ("at", at(5_000)),
                ("nothing", Value::Null),
                ("ratio", Value::Float(0.1)),
            ]))
            .unwrap();
        // A nanosecond later in the file makes the whole column nanoseconds.
        table.push_row(&row(&[("at", at(5))])).unwrap();
        assert_eq!(
            table
                .push_row(&row(&[("span", Value::Time(-1_000))]))
                .unwrap_err(),
            "`span` holds a TIME outside 00:00..24:00, which time(µs) cannot hold"
        );
        let (schema, batch, metadata) = read(table.finish().unwrap());
        let types: Vec<&DataType> = schema.fields().iter().map(|f| f.data_type()).collect();
        assert_eq!(
            types,
            [
                &DataType::Int64,
                &DataType::Utf8,
                &DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
                &DataType::Null,
                &DataType::Float64,
            ]
        );
        assert_eq!(
            schema
                .field(1)
                .metadata()
                .get(DECIMAL_TEXT)
                .map(String::as_str),
            Some("true")
        );
        let at = batch
            .column(2)
            .as_primitive::<types::TimestampNanosecondType>();
        assert_eq!((at.value(0), at.value(1)), (1_000_005_000, 1_000_000_005));
        assert!(metadata.iter().all(|kv| kv.key != SOURCE_SCHEMA_KEY));
        // Nanoseconds past 2262 fit no Arrow timestamp: exact text, marked.
        let mut far = Table::new(None);
        let year_3000 = Timestamp {
            seconds: 32_503_680_000,
            nanos: 1,
        };
        far.push_row(&row(&[("at", Value::Timestamp(year_3000))]))
            .unwrap();
        let (schema, batch, _) = read(far.finish().unwrap());
        assert_eq!(schema.field(0).data_type(), &DataType::Utf8);
        assert!(schema.field(0).metadata().contains_key(TIMESTAMP_TEXT));
        assert_eq!(
            batch.column(0).as_string::<i32>().value(0),
            "3000-01-01T00:00:00.000000001Z"
        );
    }

    #[test]
    fn declared_nanoseconds_and_floats_keep_every_digit() {
        let declared = declared(&[
            ("at", Declared::Timestamp { nanos: true }),
            ("ratio", Declared::Float(32)),
        ]);
        let mut table = Table::new(declared);
        let at = Value::Timestamp(Timestamp {
            seconds: -1,
            nanos: 999_999_999,
        });
        table
            .push_row(&row(&[("at", at), ("ratio", Value::Float(0.1))]))
            .unwrap();
        let (schema, batch, _) = read(table.finish().unwrap());
        assert_eq!(
            schema.field(0).data_type(),
            &DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
        );
        let at = batch
            .column(0)
            .as_primitive::<types::TimestampNanosecondType>();
        assert_eq!(at.value(0), -1);
        // A FLOAT column is a double: 0.1 stays 0.1, not 0.10000000149.
        let ratio = batch.column(1).as_primitive::<types::Float64Type>();
        assert_eq!(ratio.value(0), 0.1);
    }

    #[test]
    fn the_same_rows_give_the_same_bytes() {
        let file = || {
            let mut table = Table::new(shop());
            for id in 0..1000 {
                table
                    .push_row(&row(&[
                        ("id", Value::Int(id)),
                        ("price", Value::Decimal(format!("{id}.25"))),
                        ("note", Value::Text(format!("note {}", id % 7))),
                    ]))
                    .unwrap();
            }
            table.finish().unwrap()
        };
        let bytes = file();
        assert_eq!(bytes, file());
        assert_eq!(&bytes[..4], b"PAR1");
    }

    #[test]
    fn decimals_scale_exactly_or_not_at_all() {
        assert_eq!(unscaled("0", 10, 2), Ok(0));
        assert_eq!(unscaled("-0.01", 10, 2), Ok(-1));
        assert_eq!(unscaled("00012.3", 5, 2), Ok(1230));
        assert_eq!(unscaled("123.45", 5, 2), Ok(12345));
        assert!(unscaled("1234.5", 5, 2).is_err());
        assert!(unscaled("1e5", 10, 2).is_err());
        assert!(unscaled(".5", 10, 2).is_err());
        assert!(unscaled("", 10, 2).is_err());
        let max = "9".repeat(38);
        assert_eq!(unscaled(&max, 38, 0), Ok(max.parse().unwrap()));
        assert!(unscaled(&format!("1{max}"), 38, 0).is_err());
    }
}
