//! Decoding Debezium MySQL/MariaDB messages (Kafka Connect JSON converter) into change events.
//!
//! Both converter shapes are accepted: `schemas.enable=true` (`{"schema": …, "payload": …}`),
//! where each column is decoded by its Connect type and logical name, and schemaless, where
//! column values are typed from the JSON alone.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value as Json};

use crate::event::{ChangeEvent, Column, Operation, Row, Source, Timestamp, Value};

/// Topic prefix of the connector's heartbeat messages (`topic.heartbeat.prefix` default).
pub const HEARTBEAT_TOPIC_PREFIX: &str = "__debezium-heartbeat";

/// A Kafka record as a source hands it over.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

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
    let json = parse("value", bytes)?;
    let Some(Message { schema, payload }) = unwrap_envelope("value", &json)? else {
        return Ok(Decoded::Tombstone);
    };
    // A heartbeat under a custom topic prefix still carries its schema name.
    if schema.and_then(|s| s.get("name")).and_then(Json::as_str) == Some(HEARTBEAT_SCHEMA) {
        return Ok(Decoded::Heartbeat);
    }
    if payload.contains_key("ddl") && payload.contains_key("databaseName") {
        return schema_change(payload).map(Decoded::SchemaChange);
    }
    change_event(record, schema, payload).map(Decoded::Change)
}

const HEARTBEAT_SCHEMA: &str = "io.debezium.connector.common.Heartbeat";

fn parse(part: &'static str, bytes: &[u8]) -> Result<Json, DecodeError> {
    serde_json::from_slice(bytes).map_err(|error| DecodeError::NotJson { part, error })
}

/// A converter message taken apart: the Connect schema, when the converter sent one.
struct Message<'a> {
    schema: Option<&'a Json>,
    payload: &'a Map<String, Json>,
}

/// Splits a converter message into schema and payload object. `None` means a null payload.
fn unwrap_envelope<'a>(
    part: &'static str,
    json: &'a Json,
) -> Result<Option<Message<'a>>, DecodeError> {
    let not_object = |found: &Json| DecodeError::NotEnvelope {
        part,
        reason: format!("expected a JSON object, found {}", describe(found)),
    };
    let object = json.as_object().ok_or_else(|| not_object(json))?;
    let (schema, payload) = match (object.get("schema"), object.get("payload")) {
        (Some(schema), Some(payload)) if object.len() == 2 => {
            (Some(schema).filter(|s| !s.is_null()), payload)
        }
        _ => (None, json),
    };
    match payload {
        Json::Null => Ok(None),
        Json::Object(payload) => Ok(Some(Message { schema, payload })),
        other => Err(not_object(other)),
    }
}

fn change_event(
    record: &KafkaRecord,
    schema: Option<&Json>,
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
        let row_schema = match schema {
            Some(schema) => Some(field_schema(schema, name).ok_or_else(|| {
                DecodeError::MissingField {
                    field: format!("schema of `{name}`"),
                }
            })?),
            None => None,
        };
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
    let Some(bytes) = bytes else { return Ok(None) };
    let json = parse("key", bytes)?;
    match unwrap_envelope("key", &json)? {
        Some(Message { schema, payload }) => decode_struct("key", payload, schema).map(Some),
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
                let change = change.as_object().ok_or_else(|| {
                    mismatch("tableChanges[]", "", "struct", describe(change))
                })?;
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

/// The schema of field `name` inside a Connect struct schema.
fn field_schema<'a>(schema: &'a Json, name: &str) -> Option<&'a Json> {
    schema
        .get("fields")?
        .as_array()?
        .iter()
        .find(|field| field.get("field").and_then(Json::as_str) == Some(name))
}

/// Decodes a row (`before`, `after` or the key). With a schema the columns follow the schema's
/// field order, as Kafka Connect's own JSON converter does.
fn decode_struct(
    row: &str,
    object: &Map<String, Json>,
    schema: Option<&Json>,
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
    let fields = schema
        .get("fields")
        .and_then(Json::as_array)
        .ok_or_else(|| DecodeError::MissingField {
            field: format!("schema of `{row}`: fields"),
        })?;
    fields
        .iter()
        .map(|field| {
            let name = field.get("field").and_then(Json::as_str).ok_or_else(|| {
                DecodeError::MissingField {
                    field: format!("schema of `{row}`: field name"),
                }
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

/// Decodes one column by its Connect schema: the logical `name` first, then the plain `type`.
fn typed(row: &str, column: &str, schema: &Json, value: &Json) -> Result<Value, DecodeError> {
    if value.is_null() {
        return Ok(Value::Null);
    }
    let type_name = schema.get("type").and_then(Json::as_str).ok_or_else(|| {
        DecodeError::MissingField {
            field: format!("schema of `{row}.{column}`: type"),
        }
    })?;
    let logical = schema.get("name").and_then(Json::as_str);
    let col = Col {
        row,
        column,
        declared: logical.unwrap_or(type_name),
        value,
    };
    Ok(match logical {
        Some("org.apache.kafka.connect.data.Decimal") => {
            let scale = schema
                .get("parameters")
                .and_then(|p| p.get("scale"))
                .and_then(Json::as_str)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| DecodeError::MissingField {
                    field: format!("schema of `{row}.{column}`: parameters.scale"),
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
        _ => match type_name {
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
        // Jackson writes non-finite doubles as quoted strings.
        match self.value {
            Json::Number(n) => n.as_f64().ok_or_else(|| self.wrong()),
            Json::String(s) => match s.as_str() {
                "NaN" => Ok(f64::NAN),
                "Infinity" => Ok(f64::INFINITY),
                "-Infinity" => Ok(f64::NEG_INFINITY),
                _ => Err(self.wrong()),
            },
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
        BASE64
            .decode(text)
            .map_err(|e| self.mismatch(format!("{}, which is not base64 ({e})", describe(self.value))))
    }

    /// Decimal text, refusing sizes no database produces: they would only cost time and memory.
    fn decimal(&self, unscaled: Vec<u8>, scale: i64) -> Result<Value, DecodeError> {
        const MAX_BYTES: usize = 1024;
        const MAX_SCALE: i64 = 1024;
        match i32::try_from(scale) {
            Ok(scale) if unscaled.len() <= MAX_BYTES && i64::from(scale).abs() <= MAX_SCALE => {
                Ok(Value::Decimal(decimal_text(&unscaled, scale)))
            }
            _ => Err(self.out_of_range()),
        }
    }

    fn zoned(&self) -> Result<Timestamp, DecodeError> {
        let text = self.value.as_str().ok_or_else(|| self.wrong())?;
        let parsed = chrono::DateTime::parse_from_rfc3339(text).map_err(|e| {
            self.mismatch(format!(
                "{}, which is not an ISO-8601 timestamp with offset ({e})",
                describe(self.value)
            ))
        })?;
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
    let point = if scale > 0 { digits.len() - scale_digits } else { usize::MAX };
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
