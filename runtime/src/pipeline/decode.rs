//! Decoding Debezium MySQL/MariaDB messages (Kafka Connect JSON converter) into change events.
//!
//! Both converter shapes are accepted: `schemas.enable=true` (`{"schema": …, "payload": …}`),
//! where each column is decoded by its Connect type and logical name, and schemaless, where
//! column values are typed from the JSON alone.
//!
//! [`decode`] is the reference; [`Decoder`] gives the same results with each distinct schema
//! compiled once, for the data path.

use std::borrow::Cow;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde::de::{Deserializer, Error as _, MapAccess, Visitor};
use serde_json::{Map, Value as Json};

use crate::event::{ChangeEvent, Column, Operation, Row, Source, Timestamp, Value};
use crate::model::{BinlogPosition, Declared, KafkaRecord, SourceColumn, SourceSchema};

mod plan;
pub use plan::Decoder;

/// Topic prefix of the connector's heartbeat messages (`topic.heartbeat.prefix` default).
pub const HEARTBEAT_TOPIC_PREFIX: &str = "__debezium-heartbeat";

/// What one Kafka record turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// A row change (or a snapshot read, or a truncate).
    Change(ChangeEvent),
    /// A record with no value: Kafka's signal to compact away earlier records with the same key.
    Tombstone,
    /// A DDL statement from the connector's schema-change topic.
    SchemaChange(SchemaChange),
    /// A connector heartbeat: proof of liveness, no data.
    Heartbeat,
}

/// A DDL statement from the connector's schema-change topic.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaChange {
    pub server: String,
    pub database: String,
    pub ddl: String,
    /// The tables the statement changed, as unquoted `db.table`.
    pub tables: Vec<String>,
    pub commit_time: Timestamp,
    /// Where the statement is in the binlog, when the connector says.
    pub position: Option<BinlogPosition>,
}

/// Why a record could not be decoded. Each names what was wrong and where.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The bytes are not JSON (or not UTF-8).
    #[error("record {part} is not valid JSON: {error}")]
    NotJson {
        part: &'static str,
        error: serde_json::Error,
    },
    /// Valid JSON, but not shaped like a Debezium message.
    #[error("record {part} is not a Debezium message: {reason}")]
    NotEnvelope { part: &'static str, reason: String },
    /// A field the message must have is absent or null.
    #[error("the Debezium message has no `{field}`")]
    MissingField { field: String },
    /// `op` is not one of Debezium's codes.
    #[error("unknown Debezium op code {code:?}: expected one of c, u, d, r, t")]
    BadOp { code: String },
    /// A value that does not match its declared type.
    #[error("`{column}` is declared as {logical} but holds {found}")]
    TypeMismatch {
        column: String,
        logical: String,
        found: String,
    },
    /// A Connect schema whose `type` is none of Kafka Connect's types.
    #[error("`{column}` has schema type {type_name:?}, which is not a Kafka Connect type")]
    UnknownSchemaType { column: String, type_name: String },
}

/// Decodes one Kafka record from a Debezium MySQL or MariaDB connector.
pub fn decode(record: &KafkaRecord) -> Result<Decoded, DecodeError> {
    if record.topic.starts_with(HEARTBEAT_TOPIC_PREFIX) {
        return Ok(Decoded::Heartbeat);
    }
    let Some(bytes) = &record.value else {
        return Ok(Decoded::Tombstone);
    };
    let Some(Message { schema, payload }) = parse("value", bytes)? else {
        return Ok(Decoded::Tombstone);
    };
    let Some(payload) = payload_object("value", &payload)? else {
        return Ok(Decoded::Tombstone);
    };
    let schema = schema.as_ref();
    // A heartbeat under a custom topic prefix still carries its schema name.
    if schema.and_then(|s| s.name.as_deref()) == Some(HEARTBEAT_SCHEMA) {
        return Ok(Decoded::Heartbeat);
    }
    if payload.contains_key("ddl") && payload.contains_key("databaseName") {
        return schema_change(payload).map(Decoded::SchemaChange);
    }
    change_event(record, schema, payload).map(Decoded::Change)
}

const HEARTBEAT_SCHEMA: &str = "io.debezium.connector.common.Heartbeat";

/// A Kafka Connect schema as the JSON converter writes it, reduced to what decoding reads.
/// Parsed into a struct rather than a `serde_json::Value` because schemas make up most of each
/// message's bytes.
#[derive(Debug, Deserialize)]
struct Schema<'a> {
    #[serde(rename = "type", borrow)]
    type_name: Str<'a>,
    #[serde(default, borrow)]
    name: Option<Str<'a>>,
    #[serde(default, borrow)]
    field: Option<Str<'a>>,
    #[serde(default, borrow)]
    fields: Vec<Schema<'a>>,
    #[serde(default, borrow)]
    parameters: Option<Parameters<'a>>,
}

#[derive(Debug, Deserialize)]
struct Parameters<'a> {
    #[serde(default, borrow)]
    scale: Option<Str<'a>>,
    #[serde(default, borrow, rename = "connect.decimal.precision")]
    precision: Option<Str<'a>>,
}

/// A string borrowed from the input unless it holds escapes. (serde borrows a `Cow` only as a
/// field's own type, not inside an `Option`.)
#[derive(Debug, Deserialize)]
struct Str<'a>(#[serde(borrow)] Cow<'a, str>);

impl std::ops::Deref for Str<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl Schema<'_> {
    /// The schema of struct field `name`.
    fn field(&self, name: &str) -> Option<&Self> {
        self.fields
            .iter()
            .find(|f| f.field.as_deref() == Some(name))
    }
}

/// A converter message: `{"schema": …, "payload": …}` with `schemas.enable=true`, otherwise the
/// payload alone.
struct Message<'a> {
    schema: Option<Schema<'a>>,
    payload: Json,
}

impl<'de> Deserialize<'de> for Message<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(MessageVisitor)
    }
}

struct MessageVisitor;

impl<'de> Visitor<'de> for MessageVisitor {
    type Value = Message<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Message<'de>, A::Error> {
        let (mut schema, mut payload, mut rest) = (None, None, Map::new());
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match key.as_ref() {
                "schema" => schema = Some(map.next_value::<Option<Schema<'de>>>()?),
                "payload" => payload = Some(map.next_value::<Json>()?),
                _ => {
                    rest.insert(key.into_owned(), map.next_value()?);
                }
            }
        }
        match (schema, payload) {
            (Some(schema), Some(payload)) if rest.is_empty() => Ok(Message { schema, payload }),
            (Some(_), _) => Err(A::Error::custom(
                "`schema` must come with `payload` and nothing else",
            )),
            (None, payload) => {
                rest.extend(payload.map(|p| ("payload".to_string(), p)));
                Ok(Message {
                    schema: None,
                    payload: Json::Object(rest),
                })
            }
        }
    }
}

/// Parses a key or value; `None` for JSON `null`. Well-formed JSON of the wrong shape is
/// reported as such, not as bad JSON.
fn parse<'a>(part: &'static str, bytes: &'a [u8]) -> Result<Option<Message<'a>>, DecodeError> {
    serde_json::from_slice(bytes).map_err(|error| {
        if error.is_data() {
            DecodeError::NotEnvelope {
                part,
                reason: error.to_string(),
            }
        } else {
            DecodeError::NotJson { part, error }
        }
    })
}

/// The payload as an object; `None` for a null payload.
fn payload_object<'a>(
    part: &'static str,
    payload: &'a Json,
) -> Result<Option<&'a Map<String, Json>>, DecodeError> {
    match payload {
        Json::Null => Ok(None),
        Json::Object(object) => Ok(Some(object)),
        other => Err(DecodeError::NotEnvelope {
            part,
            reason: format!("expected a JSON object, found {}", describe(other)),
        }),
    }
}

fn change_event(
    record: &KafkaRecord,
    schema: Option<&Schema>,
    payload: &Map<String, Json>,
) -> Result<ChangeEvent, DecodeError> {
    let op = match required_str(payload, "", "op")? {
        "c" => Operation::Create,
        "u" => Operation::Update,
        "d" => Operation::Delete,
        "r" => Operation::Read,
        "t" => Operation::Truncate,
        code => return Err(DecodeError::BadOp { code: code.into() }),
    };
    let source = required_object(payload, "", "source")?;
    let image = |name: &str| -> Result<Option<Row>, DecodeError> {
        let Some(row) = optional(payload, "", name, "struct", Json::as_object)? else {
            return Ok(None);
        };
        let row_schema = schema
            .map(|schema| {
                schema.field(name).ok_or_else(|| DecodeError::MissingField {
                    field: format!("schema.{name}"),
                })
            })
            .transpose()?;
        decode_struct(name, row, row_schema).map(Some)
    };
    Ok(ChangeEvent {
        op,
        key: decode_key(record.key.as_deref())?,
        before: image("before")?,
        after: image("after")?,
        source: Source {
            connector: required_str(source, "source", "connector")?.into(),
            server: required_str(source, "source", "name")?.into(),
            database: required_str(source, "source", "db")?.into(),
            table: required_str(source, "source", "table")?.into(),
            binlog_file: optional_str(source, "source", "file")?.map(Into::into),
            binlog_pos: optional(source, "source", "pos", "int64", Json::as_u64)?,
            gtid: optional_str(source, "source", "gtid")?.map(Into::into),
            snapshot: snapshot_flag(source)?,
            topic: record.topic.clone(),
            partition: record.partition,
            offset: record.offset,
        },
        commit_time: commit_time(source, payload)?,
    })
}

fn decode_key(bytes: Option<&[u8]>) -> Result<Option<Row>, DecodeError> {
    let Some(Message { schema, payload }) = bytes.map(|b| parse("key", b)).transpose()?.flatten()
    else {
        return Ok(None);
    };
    match payload_object("key", &payload)? {
        Some(payload) => decode_struct("key", payload, schema.as_ref()).map(Some),
        None => Ok(None),
    }
}

fn schema_change(payload: &Map<String, Json>) -> Result<SchemaChange, DecodeError> {
    let source = required_object(payload, "", "source")?;
    let tables = match payload.get("tableChanges") {
        None | Some(Json::Null) => Vec::new(),
        Some(Json::Array(changes)) => changes
            .iter()
            .map(|change| {
                let change = change
                    .as_object()
                    .ok_or_else(|| mismatch("tableChanges[]", "", "struct", describe(change)))?;
                required_str(change, "tableChanges[]", "id").map(unquote_table_id)
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(mismatch("", "tableChanges", "array", describe(other))),
    };
    Ok(SchemaChange {
        server: required_str(source, "source", "name")?.into(),
        database: required_str(payload, "", "databaseName")?.into(),
        ddl: required_str(payload, "", "ddl")?.into(),
        tables,
        commit_time: commit_time(source, payload)?,
        position: binlog_position(source),
    })
}

/// Only the schema history uses it: a position of another shape leaves the statement out of
/// the history, not out of the lake.
fn binlog_position(source: &Map<String, Json>) -> Option<BinlogPosition> {
    let file = source.get("file").and_then(Json::as_str);
    let pos = source.get("pos").and_then(Json::as_u64);
    file.zip(pos).map(|(file, pos)| BinlogPosition {
        file: file.into(),
        pos,
    })
}

/// `"shop"."customers"` (Debezium's `TableId.toDoubleQuotedString`) → `shop.customers`.
fn unquote_table_id(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    let mut chars = id.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                out.push('"');
            }
            '"' => quoted = !quoted,
            c => out.push(c),
        }
    }
    out
}

/// Debezium's snapshot marker: `"true"`, `"first"`, `"last"`, `"incremental"`, … all mean the
/// row came from a snapshot; only `"false"` (or no marker) means the binlog.
fn snapshot_flag(source: &Map<String, Json>) -> Result<bool, DecodeError> {
    match source.get("snapshot") {
        None | Some(Json::Null) => Ok(false),
        Some(Json::String(marker)) => Ok(marker != "false"),
        // Debezium before 1.0 used a boolean.
        Some(Json::Bool(flag)) => Ok(*flag),
        Some(other) => Err(mismatch("source", "snapshot", "string", describe(other))),
    }
}

/// The commit time at the best precision the source offers, else the envelope's `ts_ms`.
fn commit_time(
    source: &Map<String, Json>,
    payload: &Map<String, Json>,
) -> Result<Timestamp, DecodeError> {
    for (key, per_second) in [("ts_ns", NANOS), ("ts_us", MICROS), ("ts_ms", MILLIS)] {
        if let Some(ts) = optional(source, "source", key, "int64", Json::as_i64)? {
            return Ok(timestamp(ts, per_second));
        }
    }
    optional(payload, "", "ts_ms", "int64", Json::as_i64)?
        .map(|ts| timestamp(ts, MILLIS))
        .ok_or_else(|| DecodeError::MissingField {
            field: "source.ts_ms".into(),
        })
}

/// Decodes a row (`before`, `after` or the key). With a schema the columns follow the schema's
/// field order, as Kafka Connect's own JSON converter does.
fn decode_struct(
    row: &str,
    object: &Map<String, Json>,
    schema: Option<&Schema>,
) -> Result<Row, DecodeError> {
    let Some(schema) = schema else {
        return Ok(object
            .iter()
            .map(|(name, value)| Column {
                name: name.clone(),
                value: schemaless(value),
            })
            .collect());
    };
    schema
        .fields
        .iter()
        .map(|field| {
            let name = field
                .field
                .as_deref()
                .ok_or_else(|| DecodeError::MissingField {
                    field: format!("schema.{row}.fields[].field"),
                })?;
            let value = object.get(name).unwrap_or(&Json::Null);
            Ok(Column {
                name: name.into(),
                value: typed(row, name, field, value)?,
            })
        })
        .collect()
}

fn schemaless(value: &Json) -> Value {
    match value {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Boolean(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::Text(s.clone()),
        Json::Array(_) | Json::Object(_) => Value::Json(value.to_string()),
    }
}

const NANOS: i64 = 1_000_000_000;
const MICROS: i64 = 1_000_000;
const MILLIS: i64 = 1_000;

/// The columns a row schema declares, in order; `None` for a field without a name.
fn source_schema(row: &Schema) -> Option<SourceSchema> {
    let columns = row.fields.iter().map(|field| {
        Some(SourceColumn {
            name: field.field.as_deref()?.to_string(),
            declared: declared(field),
        })
    });
    Some(SourceSchema::new(columns.collect::<Option<_>>()?))
}

/// A column's declared type, read as [`typed`] reads it: the logical name first.
fn declared(schema: &Schema) -> Declared {
    let parameters = schema.parameters.as_ref();
    match schema.name.as_deref() {
        Some("org.apache.kafka.connect.data.Decimal") => {
            let scale = parameters.and_then(|p| p.scale.as_deref()?.parse().ok());
            match scale {
                Some(scale) => Declared::Decimal {
                    precision: parameters.and_then(|p| p.precision.as_deref()?.parse().ok()),
                    scale,
                },
                None => Declared::Unknown,
            }
        }
        Some("io.debezium.data.VariableScaleDecimal") => Declared::VariableDecimal,
        Some("io.debezium.time.Date" | "org.apache.kafka.connect.data.Date") => Declared::Date,
        Some("io.debezium.time.NanoTime") => Declared::Time { nanos: true },
        Some(
            "io.debezium.time.Time"
            | "org.apache.kafka.connect.data.Time"
            | "io.debezium.time.MicroTime",
        ) => Declared::Time { nanos: false },
        Some("io.debezium.time.NanoTimestamp") => Declared::Timestamp { nanos: true },
        Some(
            "io.debezium.time.Timestamp"
            | "org.apache.kafka.connect.data.Timestamp"
            | "io.debezium.time.MicroTimestamp"
            | "io.debezium.time.ZonedTimestamp",
        ) => Declared::Timestamp { nanos: false },
        Some("io.debezium.data.Json") => Declared::Json,
        Some("io.debezium.data.Bits") => Declared::Bytes,
        _ => match &*schema.type_name {
            "int8" => Declared::Int(8),
            "int16" => Declared::Int(16),
            "int32" => Declared::Int(32),
            "int64" => Declared::Int(64),
            "float32" => Declared::Float(32),
            "float64" => Declared::Float(64),
            "boolean" => Declared::Boolean,
            "string" => Declared::Text,
            "bytes" => Declared::Bytes,
            "struct" | "array" | "map" => Declared::Json,
            _ => Declared::Unknown,
        },
    }
}

/// Decodes one column by its Connect schema: the logical `name` first, then the plain `type`.
fn typed(row: &str, column: &str, schema: &Schema, value: &Json) -> Result<Value, DecodeError> {
    if value.is_null() {
        return Ok(Value::Null);
    }
    let logical = schema.name.as_deref();
    let col = Col {
        row,
        column,
        declared: logical.unwrap_or(&schema.type_name),
        value,
    };
    Ok(match logical {
        Some("org.apache.kafka.connect.data.Decimal") => {
            let scale = (schema.parameters.as_ref())
                .and_then(|p| p.scale.as_deref())
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| DecodeError::MissingField {
                    field: format!("schema.{row}.{column}.parameters.scale"),
                })?;
            col.decimal(col.base64()?, scale)?
        }
        Some("io.debezium.data.VariableScaleDecimal") => {
            let object = col.object()?;
            let part = |name| Col {
                value: object.get(name).unwrap_or(&Json::Null),
                ..col
            };
            col.decimal(part("value").base64()?, part("scale").int()?)?
        }
        Some("io.debezium.time.Date" | "org.apache.kafka.connect.data.Date") => {
            Value::Date(i32::try_from(col.int()?).map_err(|_| col.out_of_range())?)
        }
        Some("io.debezium.time.Time" | "org.apache.kafka.connect.data.Time") => {
            Value::Time(col.scaled(MILLIS)?)
        }
        Some("io.debezium.time.MicroTime") => Value::Time(col.scaled(MICROS)?),
        Some("io.debezium.time.NanoTime") => Value::Time(col.int()?),
        Some("io.debezium.time.Timestamp" | "org.apache.kafka.connect.data.Timestamp") => {
            Value::Timestamp(timestamp(col.int()?, MILLIS))
        }
        Some("io.debezium.time.MicroTimestamp") => Value::Timestamp(timestamp(col.int()?, MICROS)),
        Some("io.debezium.time.NanoTimestamp") => Value::Timestamp(timestamp(col.int()?, NANOS)),
        Some("io.debezium.time.ZonedTimestamp") => Value::Timestamp(col.zoned()?),
        Some("io.debezium.data.Json") => Value::Json(col.text()?),
        Some("io.debezium.data.Bits") => Value::Bytes(col.base64()?),
        // Year, Enum, EnumSet and any logical type we do not know: the plain type says it all.
        _ => match &*schema.type_name {
            "int8" | "int16" | "int32" | "int64" => Value::Int(col.int()?),
            "float32" | "float64" => Value::Float(col.float()?),
            "boolean" => Value::Boolean(value.as_bool().ok_or_else(|| col.wrong())?),
            "string" => Value::Text(col.text()?),
            "bytes" => Value::Bytes(col.base64()?),
            // Nested Connect values (geometry structs, arrays) travel as JSON text.
            "struct" | "array" | "map" => Value::Json(value.to_string()),
            other => {
                return Err(DecodeError::UnknownSchemaType {
                    column: col.path(),
                    type_name: other.into(),
                });
            }
        },
    })
}

/// One column value being decoded, for typed access and precise errors.
#[derive(Clone, Copy)]
struct Col<'a> {
    row: &'a str,
    column: &'a str,
    declared: &'a str,
    value: &'a Json,
}

impl Col<'_> {
    fn path(&self) -> String {
        join(self.row, self.column)
    }

    fn mismatch(&self, found: String) -> DecodeError {
        mismatch(self.row, self.column, self.declared, found)
    }

    fn wrong(&self) -> DecodeError {
        self.mismatch(describe(self.value))
    }

    fn out_of_range(&self) -> DecodeError {
        self.mismatch(format!("{}, which is out of range", describe(self.value)))
    }

    fn int(&self) -> Result<i64, DecodeError> {
        self.value.as_i64().ok_or_else(|| self.wrong())
    }

    /// An integer count of `per_second` units, as nanoseconds.
    fn scaled(&self, per_second: i64) -> Result<i64, DecodeError> {
        self.int()?
            .checked_mul(NANOS / per_second)
            .ok_or_else(|| self.out_of_range())
    }

    fn float(&self) -> Result<f64, DecodeError> {
        match self.value {
            Json::Number(n) => n.as_f64().ok_or_else(|| self.wrong()),
            Json::String(s) => non_finite(s).ok_or_else(|| self.wrong()),
            _ => Err(self.wrong()),
        }
    }

    fn text(&self) -> Result<String, DecodeError> {
        self.value
            .as_str()
            .map(Into::into)
            .ok_or_else(|| self.wrong())
    }

    fn object(&self) -> Result<&Map<String, Json>, DecodeError> {
        self.value.as_object().ok_or_else(|| self.wrong())
    }

    fn base64(&self) -> Result<Vec<u8>, DecodeError> {
        let text = self.value.as_str().ok_or_else(|| self.wrong())?;
        BASE64.decode(text).map_err(|e| {
            self.mismatch(format!(
                "{}, which is not base64 ({e})",
                describe(self.value)
            ))
        })
    }

    fn decimal(&self, unscaled: Vec<u8>, scale: i64) -> Result<Value, DecodeError> {
        decimal_value(&unscaled, scale).ok_or_else(|| self.out_of_range())
    }

    fn zoned(&self) -> Result<Timestamp, DecodeError> {
        let text = self.value.as_str().ok_or_else(|| self.wrong())?;
        zoned_timestamp(text).map_err(|e| {
            self.mismatch(format!(
                "{}, which is not an ISO-8601 timestamp with offset ({e})",
                describe(self.value)
            ))
        })
    }
}

/// Jackson writes non-finite doubles as quoted strings.
fn non_finite(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        _ => None,
    }
}

/// Decimal text, refusing sizes no database produces: they would only cost time and memory.
fn decimal_value(unscaled: &[u8], scale: i64) -> Option<Value> {
    const MAX_BYTES: usize = 1024;
    const MAX_SCALE: i64 = 1024;
    match i32::try_from(scale) {
        Ok(scale) if unscaled.len() <= MAX_BYTES && i64::from(scale).abs() <= MAX_SCALE => {
            Some(Value::Decimal(decimal_text(unscaled, scale)))
        }
        _ => None,
    }
}

fn zoned_timestamp(text: &str) -> Result<Timestamp, chrono::ParseError> {
    let parsed = chrono::DateTime::parse_from_rfc3339(text)?;
    // chrono reports a leap second as nanos >= 1e9; the WIT keeps nanos below that.
    let (seconds, nanos) = (parsed.timestamp(), parsed.timestamp_subsec_nanos());
    Ok(if nanos >= NANOS as u32 {
        Timestamp {
            seconds: seconds + 1,
            nanos: nanos - NANOS as u32,
        }
    } else {
        Timestamp { seconds, nanos }
    })
}

/// `count` units of `1/per_second` s since the epoch. Euclidean division keeps `nanos`
/// non-negative before 1970.
fn timestamp(count: i64, per_second: i64) -> Timestamp {
    Timestamp {
        seconds: count.div_euclid(per_second),
        nanos: (count.rem_euclid(per_second) * (NANOS / per_second)) as u32,
    }
}

/// Exact decimal text of a big-endian two's-complement unscaled integer (Connect's `Decimal`
/// encoding, any length) at `scale`.
fn decimal_text(bytes: &[u8], scale: i32) -> String {
    let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
    let mut magnitude = bytes.to_vec();
    if negative {
        // Two's-complement negation: invert, then add one.
        for b in &mut magnitude {
            *b = !*b;
        }
        for b in magnitude.iter_mut().rev() {
            let (sum, carry) = b.overflowing_add(1);
            *b = sum;
            if !carry {
                break;
            }
        }
    }
    // Repeated division by ten of the base-256 number yields the digits, least significant first.
    let mut digits = Vec::new();
    while magnitude.iter().any(|&b| b != 0) {
        let mut rem = 0u32;
        for b in &mut magnitude {
            let cur = (rem << 8) | u32::from(*b);
            *b = (cur / 10) as u8;
            rem = cur % 10;
        }
        digits.push(b'0' + rem as u8);
    }
    let zero = digits.is_empty();
    let scale_digits = scale.unsigned_abs() as usize;
    if scale > 0 {
        // Leading zeros so that at least one digit precedes the point.
        digits.resize(digits.len().max(scale_digits + 1), b'0');
    } else if !zero {
        // A negative scale multiplies by a power of ten.
        digits.splice(0..0, std::iter::repeat_n(b'0', scale_digits));
    } else {
        digits.push(b'0');
    }
    let point = if scale > 0 {
        digits.len() - scale_digits
    } else {
        usize::MAX
    };
    let mut text = String::with_capacity(digits.len() + 2);
    if negative {
        text.push('-');
    }
    for (i, d) in digits.iter().rev().enumerate() {
        if i == point {
            text.push('.');
        }
        text.push(char::from(*d));
    }
    text
}

fn required_str<'a>(
    map: &'a Map<String, Json>,
    row: &str,
    key: &str,
) -> Result<&'a str, DecodeError> {
    optional_str(map, row, key)?.ok_or_else(|| DecodeError::MissingField {
        field: join(row, key),
    })
}

fn optional_str<'a>(
    map: &'a Map<String, Json>,
    row: &str,
    key: &str,
) -> Result<Option<&'a str>, DecodeError> {
    optional(map, row, key, "string", Json::as_str)
}

/// `map[key]` through `get`; absent or null is `None`, any other mismatch an error.
fn optional<'a, T>(
    map: &'a Map<String, Json>,
    row: &str,
    key: &str,
    declared: &str,
    get: impl Fn(&'a Json) -> Option<T>,
) -> Result<Option<T>, DecodeError> {
    match map.get(key) {
        None | Some(Json::Null) => Ok(None),
        Some(value) => get(value)
            .map(Some)
            .ok_or_else(|| mismatch(row, key, declared, describe(value))),
    }
}

fn required_object<'a>(
    map: &'a Map<String, Json>,
    row: &str,
    key: &str,
) -> Result<&'a Map<String, Json>, DecodeError> {
    optional(map, row, key, "struct", Json::as_object)?.ok_or_else(|| DecodeError::MissingField {
        field: join(row, key),
    })
}

fn join(row: &str, column: &str) -> String {
    if row.is_empty() {
        column.into()
    } else if column.is_empty() {
        row.into()
    } else {
        format!("{row}.{column}")
    }
}

fn mismatch(row: &str, column: &str, declared: &str, found: String) -> DecodeError {
    DecodeError::TypeMismatch {
        column: join(row, column),
        logical: declared.into(),
        found,
    }
}

/// A short description of a JSON value for error messages.
fn describe(value: &Json) -> String {
    const MAX_CHARS: usize = 40;
    match value {
        Json::Null => "null".into(),
        Json::Bool(b) => format!("boolean {b}"),
        Json::Number(n) => format!("number {n}"),
        Json::String(s) if s.chars().count() > MAX_CHARS => {
            let head: String = s.chars().take(MAX_CHARS).collect();
            format!("string {head:?}…")
        }
        Json::String(s) => format!("string {s:?}"),
        Json::Array(_) => "an array".into(),
        Json::Object(_) => "an object".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/debezium");

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{FIXTURES}/{name}")).unwrap()
    }

    fn record(topic: &str, key: Option<Vec<u8>>, value: Option<Vec<u8>>) -> KafkaRecord {
        KafkaRecord {
            topic: topic.into(),
            partition: 2,
            offset: 41,
            timestamp_ms: Some(1_714_521_600_000),
            key,
            value,
        }
    }

    fn decode_value(value: &Json) -> Result<Decoded, DecodeError> {
        decode(&record(
            "shop.shop.t",
            None,
            Some(value.to_string().into_bytes()),
        ))
    }

    fn change(decoded: Result<Decoded, DecodeError>) -> ChangeEvent {
        match decoded.unwrap() {
            Decoded::Change(event) => event,
            other => panic!("expected a change event, got {other:?}"),
        }
    }

    fn source() -> Json {
        json!({
            "version": "3.2.4.Final", "connector": "mysql", "name": "shop", "ts_ms": 1_714_521_601_000_i64,
            "snapshot": "false", "db": "shop", "sequence": null, "table": "t", "server_id": 1,
            "gtid": null, "file": "mysql-bin.000003", "pos": 157, "row": 0, "thread": null, "query": null
        })
    }

    /// A with-schema envelope whose rows have the given field schemas.
    fn envelope(fields: Json, op: &str, before: Json, after: Json) -> Json {
        let row = |image: &str| json!({"type": "struct", "fields": fields, "optional": true, "name": "shop.shop.t.Value", "field": image});
        json!({
            "schema": {
                "type": "struct",
                "fields": [
                    row("before"),
                    row("after"),
                    {"type": "struct", "fields": [], "optional": false, "name": "io.debezium.connector.mysql.Source", "field": "source"},
                    {"type": "string", "optional": false, "field": "op"},
                    {"type": "int64", "optional": true, "field": "ts_ms"}
                ],
                "optional": false,
                "name": "shop.shop.t.Envelope",
                "version": 2
            },
            "payload": {"before": before, "after": after, "source": source(), "op": op, "ts_ms": 1_714_521_601_234_i64}
        })
    }

    /// Decodes `value` as the single column `c` declared by `schema`.
    fn column(mut schema: Json, value: Json) -> Result<Value, DecodeError> {
        schema["field"] = json!("c");
        let message = envelope(json!([schema]), "c", Json::Null, json!({ "c": value }));
        let mut after = decode_value(&message).map(|d| change(Ok(d)).after.unwrap())?;
        Ok(after.remove(0).value)
    }

    fn logical(type_name: &str, name: &str) -> Json {
        json!({"type": type_name, "optional": true, "name": name, "version": 1})
    }

    fn decimal_schema(scale: &str) -> Json {
        json!({
            "type": "bytes", "optional": false, "name": "org.apache.kafka.connect.data.Decimal",
            "version": 1, "parameters": {"scale": scale, "connect.decimal.precision": "65"}
        })
    }

    fn b64(bytes: &[u8]) -> Json {
        json!(BASE64.encode(bytes))
    }

    fn ts(seconds: i64, nanos: u32) -> Value {
        Value::Timestamp(Timestamp { seconds, nanos })
    }

    #[track_caller]
    fn assert_fails<T: fmt::Debug>(
        result: Result<T, DecodeError>,
        is_variant: fn(&DecodeError) -> bool,
        needle: &str,
    ) {
        let err = result.unwrap_err();
        assert!(is_variant(&err), "unexpected variant: {err:?}");
        assert!(
            err.to_string().contains(needle),
            "{err:?} lacks {needle:?}: {err}"
        );
    }

    #[test]
    fn decimal_is_exact_text() {
        let cases: &[(&[u8], &str, &str)] = &[
            (&[0xFB, 0x1E], "2", "-12.50"),
            (&[0x05], "2", "0.05"),
            (&[0xFB], "2", "-0.05"),
            (&[0x00], "2", "0.00"),
            (&[0x0C], "0", "12"),
            (&[0x80], "0", "-128"),
            (&[0x00, 0x80], "1", "12.8"),
            (&[0x0C], "-2", "1200"),
        ];
        for &(bytes, scale, text) in cases {
            assert_eq!(
                column(decimal_schema(scale), b64(bytes)).unwrap(),
                Value::Decimal(text.into())
            );
        }
    }

    #[test]
    fn decimal_wider_than_128_bits() {
        // ±2^128 needs 17 bytes; DECIMAL(65, 30) needs up to 28.
        let mut positive = vec![0x01];
        positive.extend([0x00; 16]);
        let mut negative = vec![0xFF];
        negative.extend([0x00; 16]);
        let text = "34028236692093846346337460743.1768211456";
        assert_eq!(
            column(decimal_schema("10"), b64(&positive)).unwrap(),
            Value::Decimal(text.into())
        );
        assert_eq!(
            column(decimal_schema("10"), b64(&negative)).unwrap(),
            Value::Decimal(format!("-{text}"))
        );
    }

    #[test]
    fn variable_scale_decimal() {
        let schema = logical("struct", "io.debezium.data.VariableScaleDecimal");
        // -12345 = 0xCFC7.
        let value = json!({"scale": 3, "value": BASE64.encode([0xCF, 0xC7])});
        assert_eq!(
            column(schema, value).unwrap(),
            Value::Decimal("-12.345".into())
        );
    }

    #[test]
    fn date_is_days_since_epoch() {
        let schema = logical("int32", "io.debezium.time.Date");
        assert_eq!(
            column(schema.clone(), json!(19_844)).unwrap(),
            Value::Date(19_844)
        );
        // 1950-01-01.
        assert_eq!(column(schema, json!(-7_305)).unwrap(), Value::Date(-7_305));
    }

    #[test]
    fn time_in_millis() {
        let schema = logical("int32", "io.debezium.time.Time");
        assert_eq!(
            column(schema, json!(37_800_123)).unwrap(),
            Value::Time(37_800_123_000_000)
        );
    }

    #[test]
    fn micro_time() {
        let schema = logical("int64", "io.debezium.time.MicroTime");
        assert_eq!(
            column(schema.clone(), json!(37_800_123_456_i64)).unwrap(),
            Value::Time(37_800_123_456_000)
        );
        // MySQL TIME reaches -838:59:59.
        assert_eq!(
            column(schema, json!(-3_020_399_000_000_i64)).unwrap(),
            Value::Time(-3_020_399_000_000_000)
        );
    }

    #[test]
    fn nano_time() {
        let schema = logical("int64", "io.debezium.time.NanoTime");
        assert_eq!(
            column(schema, json!(37_800_123_456_789_i64)).unwrap(),
            Value::Time(37_800_123_456_789)
        );
    }

    #[test]
    fn timestamp_in_millis() {
        let schema = logical("int64", "io.debezium.time.Timestamp");
        assert_eq!(
            column(schema.clone(), json!(1_712_917_800_123_i64)).unwrap(),
            ts(1_712_917_800, 123_000_000)
        );
        assert_eq!(
            column(schema.clone(), json!(-1)).unwrap(),
            ts(-1, 999_000_000)
        );
        // 1900-01-01T00:00:00.001Z.
        assert_eq!(
            column(schema, json!(-2_208_988_799_999_i64)).unwrap(),
            ts(-2_208_988_800, 1_000_000)
        );
    }

    #[test]
    fn micro_timestamp() {
        let schema = logical("int64", "io.debezium.time.MicroTimestamp");
        assert_eq!(
            column(schema.clone(), json!(1_712_917_800_123_456_i64)).unwrap(),
            ts(1_712_917_800, 123_456_000)
        );
        // 1969-12-31T23:59:58.5Z.
        assert_eq!(
            column(schema, json!(-1_500_000)).unwrap(),
            ts(-2, 500_000_000)
        );
    }

    #[test]
    fn nano_timestamp() {
        let schema = logical("int64", "io.debezium.time.NanoTimestamp");
        assert_eq!(
            column(schema.clone(), json!(1_712_917_800_123_456_789_i64)).unwrap(),
            ts(1_712_917_800, 123_456_789)
        );
        assert_eq!(column(schema, json!(-1)).unwrap(), ts(-1, 999_999_999));
    }

    #[test]
    fn zoned_timestamp_is_converted_to_utc() {
        let schema = logical("string", "io.debezium.time.ZonedTimestamp");
        // 2024-03-01T10:15:30Z is 1_709_288_130.
        assert_eq!(
            column(schema.clone(), json!("2024-03-01T10:15:30.123456Z")).unwrap(),
            ts(1_709_288_130, 123_456_000)
        );
        assert_eq!(
            column(schema.clone(), json!("2024-03-01T12:15:30.5+02:00")).unwrap(),
            ts(1_709_288_130, 500_000_000)
        );
        assert_eq!(
            column(schema, json!("1969-12-31T23:59:59Z")).unwrap(),
            ts(-1, 0)
        );
    }

    #[test]
    fn year_is_int() {
        assert_eq!(
            column(logical("int32", "io.debezium.time.Year"), json!(2024)).unwrap(),
            Value::Int(2024)
        );
    }

    #[test]
    fn json_column_keeps_its_text() {
        let doc = r#"{"lang":"de","tags":["a"]}"#;
        assert_eq!(
            column(logical("string", "io.debezium.data.Json"), json!(doc)).unwrap(),
            Value::Json(doc.into())
        );
    }

    #[test]
    fn enum_and_set_are_text() {
        let mut schema = logical("string", "io.debezium.data.Enum");
        schema["parameters"] = json!({"allowed": "active,closed"});
        assert_eq!(
            column(schema, json!("active")).unwrap(),
            Value::Text("active".into())
        );
        let schema = logical("string", "io.debezium.data.EnumSet");
        assert_eq!(
            column(schema, json!("red,blue")).unwrap(),
            Value::Text("red,blue".into())
        );
    }

    #[test]
    fn bits_and_bytes_are_bytes() {
        let bits = logical("bytes", "io.debezium.data.Bits");
        assert_eq!(
            column(bits, b64(&[0x05, 0x01])).unwrap(),
            Value::Bytes(vec![0x05, 0x01])
        );
        let bytes = json!({"type": "bytes", "optional": true});
        assert_eq!(
            column(bytes, b64(&[0xDE, 0xAD, 0x00])).unwrap(),
            Value::Bytes(vec![0xDE, 0xAD, 0x00])
        );
    }

    #[test]
    fn integers() {
        for (type_name, value) in [
            ("int8", -128),
            ("int16", 32_767),
            ("int32", -2_147_483_648),
            ("int64", i64::MAX),
        ] {
            assert_eq!(
                column(json!({"type": type_name}), json!(value)).unwrap(),
                Value::Int(value)
            );
        }
    }

    #[test]
    fn floats_including_non_finite() {
        assert_eq!(
            column(json!({"type": "float64"}), json!(0.25)).unwrap(),
            Value::Float(0.25)
        );
        assert_eq!(
            column(json!({"type": "float32"}), json!(3)).unwrap(),
            Value::Float(3.0)
        );
        let infinite = column(json!({"type": "float64"}), json!("-Infinity")).unwrap();
        assert_eq!(infinite, Value::Float(f64::NEG_INFINITY));
        let Value::Float(nan) = column(json!({"type": "float64"}), json!("NaN")).unwrap() else {
            panic!("not a float");
        };
        assert!(nan.is_nan());
    }

    #[test]
    fn boolean_string_and_null() {
        assert_eq!(
            column(json!({"type": "boolean"}), json!(true)).unwrap(),
            Value::Boolean(true)
        );
        assert_eq!(
            column(json!({"type": "string"}), json!("Zoë")).unwrap(),
            Value::Text("Zoë".into())
        );
        assert_eq!(
            column(decimal_schema("2"), Json::Null).unwrap(),
            Value::Null
        );
    }

    #[test]
    fn full_envelope_with_schema() {
        let key = br#"{"schema":{"type":"struct","fields":[{"type":"int32","optional":false,"field":"id"}],"optional":false,"name":"mysql-server-1.inventory.customers.Key"},"payload":{"id":1004}}"#;
        let event = change(decode(&record(
            "mysql-server-1.inventory.customers",
            Some(key.to_vec()),
            Some(fixture("customers-create.json")),
        )));
        let text = |s: &str| Value::Text(s.into());
        let after: Vec<_> = event
            .after
            .unwrap()
            .into_iter()
            .map(|c| (c.name, c.value))
            .collect();
        assert_eq!(
            after,
            [
                ("id".into(), Value::Int(1004)),
                ("first_name".into(), text("Anne")),
                ("last_name".into(), text("Kretchmar")),
                ("email".into(), text("annek@noanswer.org")),
                ("credit".into(), Value::Decimal("-2.00".into())),
                ("created_at".into(), ts(1_709_288_130, 123_456_000)),
            ]
        );
        assert_eq!(event.op, Operation::Create);
        assert_eq!(event.before, None);
        assert_eq!(
            event.key,
            Some(vec![Column {
                name: "id".into(),
                value: Value::Int(1004)
            }])
        );
        assert_eq!(
            event.source,
            Source {
                connector: "mysql".into(),
                server: "mysql-server-1".into(),
                database: "inventory".into(),
                table: "customers".into(),
                binlog_file: Some("mysql-bin.000003".into()),
                binlog_pos: Some(154),
                gtid: Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:23".into()),
                snapshot: false,
                topic: "mysql-server-1.inventory.customers".into(),
                partition: 2,
                offset: 41,
            }
        );
        // source.ts_ns wins over the envelope's processing time.
        assert_eq!(
            event.commit_time,
            Timestamp {
                seconds: 1_709_288_131,
                nanos: 0
            }
        );
    }

    #[test]
    fn schemaless_envelope() {
        let value = json!({
            "before": {"id": 7, "name": "Łukasz", "score": 1.5, "tags": ["a"], "meta": {"k": null}, "gone": null, "ok": false},
            "after": {"id": 7, "name": "Łukasz", "score": 2.5, "tags": [], "meta": {}, "gone": null, "ok": true},
            "source": {"connector": "mariadb", "name": "shop", "ts_ms": 1_714_521_601_250_i64, "snapshot": "false",
                       "db": "shop", "table": "t", "file": "mysql-bin.000004", "pos": 9, "gtid": "0-1-42"},
            "op": "u",
            "ts_ms": 1_714_521_601_999_i64
        });
        let event = change(decode_value(&value));
        let before: Vec<_> = event
            .before
            .unwrap()
            .into_iter()
            .map(|c| (c.name, c.value))
            .collect();
        assert_eq!(
            before,
            [
                ("id".into(), Value::Int(7)),
                ("name".into(), Value::Text("Łukasz".into())),
                ("score".into(), Value::Float(1.5)),
                ("tags".into(), Value::Json(r#"["a"]"#.into())),
                ("meta".into(), Value::Json(r#"{"k":null}"#.into())),
                ("gone".into(), Value::Null),
                ("ok".into(), Value::Boolean(false)),
            ]
        );
        assert_eq!(event.source.connector, "mariadb");
        assert_eq!(event.source.gtid.as_deref(), Some("0-1-42"));
        assert_eq!(
            event.commit_time,
            Timestamp {
                seconds: 1_714_521_601,
                nanos: 250_000_000
            }
        );
    }

    #[test]
    fn commit_time_falls_back_to_envelope_ts_ms() {
        let mut value = envelope(json!([]), "c", Json::Null, json!({}));
        value["payload"]["source"]
            .as_object_mut()
            .unwrap()
            .remove("ts_ms");
        let event = change(decode_value(&value));
        assert_eq!(
            event.commit_time,
            Timestamp {
                seconds: 1_714_521_601,
                nanos: 234_000_000
            }
        );
    }

    #[test]
    fn every_op_code() {
        let fields = json!([{"type": "int32", "optional": false, "field": "id"}]);
        let row = json!({"id": 1});
        for (code, op, before, after) in [
            ("c", Operation::Create, Json::Null, row.clone()),
            ("u", Operation::Update, row.clone(), row.clone()),
            ("d", Operation::Delete, row.clone(), Json::Null),
            ("r", Operation::Read, Json::Null, row.clone()),
            ("t", Operation::Truncate, Json::Null, Json::Null),
        ] {
            let event = change(decode_value(&envelope(
                fields.clone(),
                code,
                before.clone(),
                after.clone(),
            )));
            assert_eq!(event.op, op);
            assert_eq!(event.before.is_some(), !before.is_null(), "{code}");
            assert_eq!(event.after.is_some(), !after.is_null(), "{code}");
        }
    }

    #[test]
    fn snapshot_markers() {
        for (marker, snapshot) in [
            (json!("true"), true),
            (json!("first"), true),
            (json!("last_in_data_collection"), true),
            (json!("last"), true),
            (json!("incremental"), true),
            (json!("false"), false),
            (Json::Null, false),
        ] {
            let mut value = envelope(json!([]), "r", Json::Null, json!({}));
            value["payload"]["source"]["snapshot"] = marker;
            assert_eq!(change(decode_value(&value)).source.snapshot, snapshot);
        }
    }

    #[test]
    fn tombstone() {
        let key = br#"{"id":1}"#.to_vec();
        assert_eq!(
            decode(&record("shop.shop.t", Some(key), None)).unwrap(),
            Decoded::Tombstone
        );
    }

    #[test]
    fn schema_change_message() {
        let key = br#"{"schema":{"type":"struct","fields":[{"type":"string","optional":false,"field":"databaseName"}],"optional":false,"name":"io.debezium.connector.mysql.SchemaChangeKey","version":1},"payload":{"databaseName":"inventory"}}"#;
        let decoded = decode(&record(
            "mysql-server-1",
            Some(key.to_vec()),
            Some(fixture("schema-change.json")),
        ));
        assert_eq!(
            decoded.unwrap(),
            Decoded::SchemaChange(SchemaChange {
                server: "mysql-server-1".into(),
                database: "inventory".into(),
                ddl: "ALTER TABLE customers ADD COLUMN middle_name VARCHAR(255) NULL".into(),
                tables: vec!["inventory.customers".into()],
                commit_time: Timestamp {
                    seconds: 1_709_288_200,
                    nanos: 0
                },
                position: Some(BinlogPosition {
                    file: "mysql-bin.000003".into(),
                    pos: 5226
                }),
            })
        );
    }

    #[test]
    fn heartbeat_by_topic_and_by_schema() {
        let value = br#"{"schema":{"type":"struct","fields":[{"type":"int64","optional":false,"field":"ts_ms"}],"optional":false,"name":"io.debezium.connector.common.Heartbeat"},"payload":{"ts_ms":1714521600000}}"#;
        let by_topic = record("__debezium-heartbeat.shop", None, Some(value.to_vec()));
        assert_eq!(decode(&by_topic).unwrap(), Decoded::Heartbeat);
        let custom_prefix = record("hb.shop", None, Some(value.to_vec()));
        assert_eq!(decode(&custom_prefix).unwrap(), Decoded::Heartbeat);
    }

    #[test]
    fn keys_with_and_without_schema() {
        let value = envelope(json!([]), "c", Json::Null, json!({}))
            .to_string()
            .into_bytes();
        let key_of = |key: &[u8]| {
            decode(&record(
                "shop.shop.t",
                Some(key.to_vec()),
                Some(value.clone()),
            ))
        };
        let expected = Some(vec![
            Column {
                name: "order_id".into(),
                value: Value::Int(100_001),
            },
            Column {
                name: "line_no".into(),
                value: Value::Int(2),
            },
        ]);
        let with_schema = br#"{"schema":{"type":"struct","fields":[{"type":"int64","optional":false,"field":"order_id"},{"type":"int16","optional":false,"field":"line_no"}],"optional":false,"name":"shop.shop.order_lines.Key"},"payload":{"order_id":100001,"line_no":2}}"#;
        assert_eq!(change(key_of(with_schema)).key, expected);
        assert_eq!(
            change(key_of(br#"{"order_id":100001,"line_no":2}"#)).key,
            expected
        );
        assert_eq!(change(key_of(b"null")).key, None);
        assert_fails(
            key_of(b"order-1"),
            |e| matches!(e, DecodeError::NotJson { part: "key", .. }),
            "record key is not valid JSON",
        );
    }

    #[test]
    fn value_that_is_not_json() {
        let result = decode(&record(
            "shop.shop.t",
            None,
            Some(b"{\"op\": \"c\"".to_vec()),
        ));
        assert_fails(
            result,
            |e| matches!(e, DecodeError::NotJson { part: "value", .. }),
            "record value is not valid JSON",
        );
    }

    #[test]
    fn value_that_is_an_array() {
        assert_fails(
            decode_value(&json!([1, 2])),
            |e| matches!(e, DecodeError::NotEnvelope { .. }),
            "invalid type: sequence, expected a JSON object",
        );
    }

    #[test]
    fn schema_that_is_not_a_connect_schema() {
        let value = json!({"schema": {"fields": []}, "payload": {"op": "c"}});
        assert_fails(
            decode_value(&value),
            |e| matches!(e, DecodeError::NotEnvelope { .. }),
            "missing field `type`",
        );
        let extra = json!({"schema": null, "payload": {}, "op": "c"});
        assert_fails(
            decode_value(&extra),
            |e| matches!(e, DecodeError::NotEnvelope { .. }),
            "`schema` must come with `payload` and nothing else",
        );
    }

    #[test]
    fn missing_op() {
        let mut value = envelope(json!([]), "c", Json::Null, json!({}));
        value["payload"].as_object_mut().unwrap().remove("op");
        assert_fails(
            decode_value(&value),
            |e| matches!(e, DecodeError::MissingField { .. }),
            "no `op`",
        );
    }

    #[test]
    fn missing_source_field() {
        let mut value = envelope(json!([]), "c", Json::Null, json!({}));
        value["payload"]["source"]
            .as_object_mut()
            .unwrap()
            .remove("db");
        assert_fails(
            decode_value(&value),
            |e| matches!(e, DecodeError::MissingField { .. }),
            "no `source.db`",
        );
    }

    #[test]
    fn unknown_op() {
        let value = envelope(json!([]), "m", Json::Null, json!({}));
        assert_fails(
            decode_value(&value),
            |e| matches!(e, DecodeError::BadOp { .. }),
            "unknown Debezium op code \"m\"",
        );
    }

    #[test]
    fn decimal_that_is_not_base64() {
        assert_fails(
            column(decimal_schema("2"), json!("12.50")),
            |e| matches!(e, DecodeError::TypeMismatch { .. }),
            "`after.c` is declared as org.apache.kafka.connect.data.Decimal but holds string \"12.50\", which is not base64",
        );
    }

    #[test]
    fn int_given_a_string() {
        assert_fails(
            column(json!({"type": "int32"}), json!("42")),
            |e| matches!(e, DecodeError::TypeMismatch { .. }),
            "`after.c` is declared as int32 but holds string \"42\"",
        );
    }

    #[test]
    fn zoned_timestamp_without_offset() {
        assert_fails(
            column(
                logical("string", "io.debezium.time.ZonedTimestamp"),
                json!("2024-03-01 10:15:30"),
            ),
            |e| matches!(e, DecodeError::TypeMismatch { .. }),
            "not an ISO-8601 timestamp with offset",
        );
    }

    #[test]
    fn unknown_schema_type() {
        assert_fails(
            column(json!({"type": "int128"}), json!(1)),
            |e| matches!(e, DecodeError::UnknownSchemaType { .. }),
            "`after.c` has schema type \"int128\", which is not a Kafka Connect type",
        );
    }

    #[test]
    fn absurd_decimal_scale() {
        assert_fails(
            column(decimal_schema("2147483647"), b64(&[1])),
            |e| matches!(e, DecodeError::TypeMismatch { .. }),
            "out of range",
        );
    }

    #[test]
    fn truncated_utf8() {
        // "Zoë" cut inside the two bytes of "ë".
        let mut bytes = br#"{"op":"c","after":{"name":"Zo"#.to_vec();
        bytes.push(0xC3);
        bytes.extend_from_slice(br#""}}"#);
        let result = decode(&record("shop.shop.t", None, Some(bytes)));
        assert_fails(
            result,
            |e| matches!(e, DecodeError::NotJson { .. }),
            "invalid unicode",
        );
    }

    #[test]
    fn table_ids_are_unquoted() {
        assert_eq!(unquote_table_id(r#""shop"."customers""#), "shop.customers");
        assert_eq!(unquote_table_id(r#""we""ird"."t""#), r#"we"ird.t"#);
        assert_eq!(unquote_table_id("shop.t"), "shop.t");
    }
}
