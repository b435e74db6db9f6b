//! A decoder that compiles each envelope schema once.
//!
//! With `schemas.enable=true` every record repeats its table's Connect schema, about 80% of its
//! bytes. [`Decoder`] keeps, per topic, the last value schema and the last key schema as bytes,
//! each with a plan compiled from it (column names, a converter per column). A record whose schema
//! bytes equal the cached ones skips its schema: only the payload is parsed, typed and borrowed,
//! driven by the plan, without a `serde_json::Value` tree.
//!
//! The reference [`decode`](super::decode) stays the definition. Whatever the plan does not cover
//! (schemaless messages, schema changes, heartbeats, unusual shapes), and every record in which
//! the fast path meets anything unexpected, is decoded by the reference, so results and
//! dead-letter reasons are the reference's. The fast path only has to accept nothing the
//! reference rejects and to build exactly what the reference builds.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Number, Value as Json};

// Everything through the parent module, so this file follows it wherever the shared types live.
use super::{
    ChangeEvent, Column, DecodeError, Decoded, HEARTBEAT_SCHEMA, HEARTBEAT_TOPIC_PREFIX,
    KafkaRecord, MICROS, MILLIS, NANOS, Operation, Row, Schema, Source, SourceSchema, Timestamp,
    Value, decimal_value, non_finite, source_schema, timestamp, zoned_timestamp,
};

/// Decodes records exactly as [`decode`](super::decode) does, compiling each distinct schema of a
/// topic once. Keep one per consuming thread: it remembers the last schemas of every topic.
#[derive(Default)]
pub struct Decoder {
    topics: HashMap<String, Topic>,
    /// The declared columns of the last change event the plans decoded.
    last: Option<Arc<SourceSchema>>,
}

/// The last value and key schemas seen on a topic.
#[derive(Default)]
struct Topic {
    value: Option<Compiled<EnvelopePlan>>,
    key: Option<Compiled<RowPlan>>,
}

/// A schema's JSON text as it appears in messages, and its plan. A schema left to the reference
/// (a heartbeat's, one the reference rejects, …) keeps no plan, so it is not parsed again for
/// every record.
struct Compiled<P> {
    schema: Box<[u8]>,
    plan: Option<P>,
}

impl Decoder {
    /// Decodes one record: the reference's result, or its error with the same message.
    pub fn decode(&mut self, record: &KafkaRecord) -> Result<Decoded, DecodeError> {
        self.last = None;
        match self.fast(record) {
            Some(event) => Ok(Decoded::Change(event)),
            None => super::decode(record),
        }
    }

    /// The columns the value schema of the record [`Decoder::decode`] last decoded declares:
    /// `None` for schemaless records and the rare shapes the plans do not split (those are
    /// typed by their values alone).
    pub fn schema(&self) -> Option<Arc<SourceSchema>> {
        self.last.clone()
    }

    /// The change event the cached plans yield, or `None` to leave the record to the reference.
    fn fast(&mut self, record: &KafkaRecord) -> Option<ChangeEvent> {
        if record.topic.starts_with(HEARTBEAT_TOPIC_PREFIX) {
            return None;
        }
        let value = record.value.as_deref()?;
        if !self.topics.contains_key(&record.topic) {
            self.topics.insert(record.topic.clone(), Topic::default());
        }
        let topic = self.topics.get_mut(&record.topic)?;
        let (plan, payload) = split(&mut topic.value, value, EnvelopePlan::compile)?;
        // The value's schema declares the columns even if the rest is left to the reference
        // (a key without a schema, say): same value schema, same declaration.
        self.last = plan.columns.clone();
        let key = match record.key.as_deref() {
            None => None,
            Some(key) => {
                let (plan, payload) = split(&mut topic.key, key, RowPlan::compile_key)?;
                parse(payload, Image(Some(plan)))?
            }
        };
        parse(payload, plan)?.into_event(record, key)
    }
}

const SCHEMA_KEY: &[u8] = br#"{"schema":"#;
const PAYLOAD_KEY: &[u8] = br#","payload":"#;

/// Splits a message as the JSON converter writes it, `{"schema":…,"payload":…}` (compact, schema
/// first), into the plan of its schema and the text of its payload, compiling the schema unless it
/// is the cached one. The schema's text is valid JSON (it was parsed when cached); the rest is
/// checked by parsing the payload.
fn split<'p, 'm, P>(
    cached: &'p mut Option<Compiled<P>>,
    message: &'m [u8],
    compile: fn(&str) -> Option<P>,
) -> Option<(&'p P, &'m [u8])> {
    let rest = message.strip_prefix(SCHEMA_KEY)?;
    let hit = cached.as_ref().is_some_and(|c| {
        rest.starts_with(&c.schema) && rest[c.schema.len()..].starts_with(PAYLOAD_KEY)
    });
    if !hit {
        let schema = raw_schema(rest)?;
        if !rest[schema.len()..].starts_with(PAYLOAD_KEY) {
            return None;
        }
        *cached = Some(Compiled {
            schema: schema.as_bytes().into(),
            plan: compile(schema),
        });
    }
    let cached: &'p Option<Compiled<P>> = cached;
    let Compiled { schema, plan } = cached.as_ref()?;
    let payload = without_closing_brace(&rest[schema.len() + PAYLOAD_KEY.len()..])?;
    Some((plan.as_ref()?, payload))
}

/// `text` up to the message's closing brace, which only JSON whitespace may follow.
fn without_closing_brace(text: &[u8]) -> Option<&[u8]> {
    let end = text
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))?;
    (text[end] == b'}').then(|| &text[..end])
}

/// The text of the JSON value that starts `rest`, if there is one right at its start.
fn raw_schema(rest: &[u8]) -> Option<&str> {
    let raw = <&RawValue>::deserialize(&mut serde_json::Deserializer::from_slice(rest)).ok()?;
    let raw = raw.get();
    rest.starts_with(raw.as_bytes()).then_some(raw)
}

/// Parses all of `text` as one JSON value with `seed`; `None` for anything either rejects.
fn parse<'de, S: DeserializeSeed<'de>>(text: &'de [u8], seed: S) -> Option<S::Value> {
    let mut de = serde_json::Deserializer::from_slice(text);
    let value = seed.deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(value)
}

/// Parses a schema as the reference does, as the value of `schema` in a message, so that
/// serde_json's nesting limit falls where it falls for the reference.
fn with_schema<P>(schema: &str, compile: impl FnOnce(&Schema) -> Option<P>) -> Option<P> {
    #[derive(Deserialize)]
    struct Message<'a> {
        #[serde(borrow)]
        schema: Schema<'a>,
    }
    let text = format!(r#"{{"schema":{schema}}}"#);
    let message: Message = serde_json::from_str(&text).ok()?;
    compile(&message.schema)
}

/// What a change event's payload needs from its envelope schema: the row images' plans.
/// `None` where the reference would fail on a non-null image (no such field in the schema, or a
/// row plan it could not compile).
struct EnvelopePlan {
    before: Option<RowPlan>,
    after: Option<RowPlan>,
    /// What the row images declare (`after`'s fields, else `before`'s).
    columns: Option<Arc<SourceSchema>>,
}

impl EnvelopePlan {
    fn compile(schema: &str) -> Option<Self> {
        with_schema(schema, |schema| {
            // Not a change event: the reference says what it is.
            if schema.name.as_deref() == Some(HEARTBEAT_SCHEMA) {
                return None;
            }
            let image = schema.field("after").or_else(|| schema.field("before"));
            Some(EnvelopePlan {
                before: schema.field("before").and_then(RowPlan::compile),
                after: schema.field("after").and_then(RowPlan::compile),
                columns: image.and_then(source_schema).map(Arc::new),
            })
        })
    }
}

/// A row's columns in schema order, the order the reference gives them.
struct RowPlan {
    columns: Vec<ColumnPlan>,
}

struct ColumnPlan {
    name: String,
    convert: Convert,
}

impl RowPlan {
    fn compile_key(schema: &str) -> Option<Self> {
        with_schema(schema, RowPlan::compile)
    }

    /// `None` where the reference does what a plan does not: fail on a field without a name,
    /// or give two fields of one name the same value.
    fn compile(schema: &Schema) -> Option<Self> {
        let mut columns: Vec<ColumnPlan> = Vec::with_capacity(schema.fields.len());
        for field in &schema.fields {
            let name = field.field.as_deref()?;
            if columns.iter().any(|c| c.name == name) {
                return None;
            }
            columns.push(ColumnPlan {
                name: name.into(),
                convert: Convert::of(field),
            });
        }
        Some(RowPlan { columns })
    }
}

/// How a column's JSON becomes a [`Value`]: the reference's `typed`, decided once per schema.
#[derive(Clone, Copy)]
enum Convert {
    /// Connect's `Decimal` at its scale; `None` if the schema has no usable scale, an error for
    /// any non-null value.
    Decimal(Option<i64>),
    VariableScaleDecimal,
    Date,
    /// A time of day counted in 1/n seconds.
    Time(i64),
    /// A point in time counted in 1/n seconds since the epoch.
    Timestamp(i64),
    ZonedTimestamp,
    JsonText,
    Bytes,
    Int,
    Float,
    Boolean,
    Text,
    /// A nested Connect value (struct, array, map), kept as JSON text.
    Nested,
    /// A schema type Kafka Connect does not have: an error for any non-null value.
    Unknown,
}

impl Convert {
    /// Mirrors the reference's `typed`: the logical name first, then the plain type.
    fn of(field: &Schema) -> Self {
        match field.name.as_deref() {
            Some("org.apache.kafka.connect.data.Decimal") => Convert::Decimal(
                (field.parameters.as_ref())
                    .and_then(|p| p.scale.as_deref())
                    .and_then(|s| s.parse().ok()),
            ),
            Some("io.debezium.data.VariableScaleDecimal") => Convert::VariableScaleDecimal,
            Some("io.debezium.time.Date" | "org.apache.kafka.connect.data.Date") => Convert::Date,
            Some("io.debezium.time.Time" | "org.apache.kafka.connect.data.Time") => {
                Convert::Time(MILLIS)
            }
            Some("io.debezium.time.MicroTime") => Convert::Time(MICROS),
            Some("io.debezium.time.NanoTime") => Convert::Time(NANOS),
            Some("io.debezium.time.Timestamp" | "org.apache.kafka.connect.data.Timestamp") => {
                Convert::Timestamp(MILLIS)
            }
            Some("io.debezium.time.MicroTimestamp") => Convert::Timestamp(MICROS),
            Some("io.debezium.time.NanoTimestamp") => Convert::Timestamp(NANOS),
            Some("io.debezium.time.ZonedTimestamp") => Convert::ZonedTimestamp,
            Some("io.debezium.data.Json") => Convert::JsonText,
            Some("io.debezium.data.Bits") => Convert::Bytes,
            _ => match &*field.type_name {
                "int8" | "int16" | "int32" | "int64" => Convert::Int,
                "float32" | "float64" => Convert::Float,
                "boolean" => Convert::Boolean,
                "string" => Convert::Text,
                "bytes" => Convert::Bytes,
                "struct" | "array" | "map" => Convert::Nested,
                _ => Convert::Unknown,
            },
        }
    }

    fn scalar(self, value: Scalar) -> Option<Value> {
        if let Scalar::Null = value {
            return Some(Value::Null);
        }
        Some(match self {
            Convert::Decimal(scale) => return decimal_value(&value.base64()?, scale?),
            Convert::Date => Value::Date(i32::try_from(value.int()?).ok()?),
            Convert::Time(per_second) => Value::Time(value.int()?.checked_mul(NANOS / per_second)?),
            Convert::Timestamp(per_second) => Value::Timestamp(timestamp(value.int()?, per_second)),
            Convert::ZonedTimestamp => Value::Timestamp(zoned_timestamp(value.str()?).ok()?),
            Convert::JsonText => Value::Json(value.text()?),
            Convert::Bytes => Value::Bytes(value.base64()?),
            Convert::Int => Value::Int(value.int()?),
            Convert::Float => Value::Float(match &value {
                Scalar::Number(n) => n.as_f64()?,
                Scalar::Str(s) => non_finite(s)?,
                _ => return None,
            }),
            Convert::Boolean => match value {
                Scalar::Bool(b) => Value::Boolean(b),
                _ => return None,
            },
            Convert::Text => Value::Text(value.text()?),
            // Unknown: the reference's error. The other two take the whole JSON value (`json`).
            Convert::Unknown | Convert::Nested | Convert::VariableScaleDecimal => return None,
        })
    }

    fn json(self, value: &Json) -> Option<Value> {
        if value.is_null() {
            return Some(Value::Null);
        }
        if nesting(value) > MAX_NESTING.into() {
            return None;
        }
        match self {
            Convert::Nested => Some(Value::Json(value.to_string())),
            Convert::VariableScaleDecimal => {
                let object = value.as_object()?;
                let unscaled = BASE64.decode(object.get("value")?.as_str()?).ok()?;
                decimal_value(&unscaled, object.get("scale")?.as_i64()?)
            }
            _ => None,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Convert {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        let value = match self {
            // Rare shapes that need the whole JSON value, as the reference sees it.
            Convert::Nested | Convert::VariableScaleDecimal => {
                self.json(&Json::deserialize(deserializer)?)
            }
            _ => self.scalar(Scalar::deserialize(deserializer)?),
        };
        value.ok_or_else(unusual)
    }
}

/// The fast path parses a payload one level less deep than the reference, which parses the whole
/// message, so serde_json's nesting limit would stop the reference one level earlier. Values
/// nested deeper than this (far beyond any Debezium payload) are left to the reference.
const MAX_NESTING: u8 = 32;

fn nesting(value: &Json) -> usize {
    match value {
        Json::Array(items) => 1 + items.iter().map(nesting).max().unwrap_or(0),
        Json::Object(map) => 1 + map.values().map(nesting).max().unwrap_or(0),
        _ => 0,
    }
}

/// What the fast path reports when it leaves a record to the reference; never shown to anyone.
fn unusual<E: serde::de::Error>() -> E {
    E::custom("left to the reference decoder")
}

/// What a change event's payload holds, as the reference reads it; checked in `into_event`.
/// A repeated key overwrites, as in the reference's `serde_json::Map`.
#[derive(Default)]
struct Payload<'de> {
    op: Scalar<'de>,
    source: Option<SourceFields<'de>>,
    before: Option<Row>,
    after: Option<Row>,
    ts_ms: Scalar<'de>,
}

impl<'de> DeserializeSeed<'de> for &EnvelopePlan {
    type Value = Payload<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Payload<'de>, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for &EnvelopePlan {
    type Value = Payload<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a change event payload")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Payload<'de>, A::Error> {
        let mut payload = Payload::default();
        while let Some(Key(key)) = map.next_key()? {
            match &*key {
                "op" => payload.op = map.next_value()?,
                "source" => payload.source = map.next_value()?,
                "before" => payload.before = map.next_value_seed(Image(self.before.as_ref()))?,
                "after" => payload.after = map.next_value_seed(Image(self.after.as_ref()))?,
                "ts_ms" => payload.ts_ms = map.next_value()?,
                // A schema-change message: the reference knows that shape.
                "ddl" | "databaseName" => return Err(unusual()),
                _ => map.next_value_seed(Skip(MAX_NESTING))?,
            }
        }
        Ok(payload)
    }
}

impl Payload<'_> {
    /// The change event, if the reference would build it from these fields without an error.
    fn into_event(self, record: &KafkaRecord, key: Option<Row>) -> Option<ChangeEvent> {
        let op = match self.op.str()? {
            "c" => Operation::Create,
            "u" => Operation::Update,
            "d" => Operation::Delete,
            "r" => Operation::Read,
            "t" => Operation::Truncate,
            _ => return None,
        };
        let source = self.source?;
        let commit_time = source.commit_time(&self.ts_ms)?;
        Some(ChangeEvent {
            op,
            key,
            before: self.before,
            after: self.after,
            source: Source {
                connector: source.connector.text()?,
                server: source.name.text()?,
                database: source.db.text()?,
                table: source.table.text()?,
                binlog_file: source.file.optional_text()?,
                binlog_pos: match source.pos {
                    Scalar::Null => None,
                    Scalar::Number(n) => Some(n.as_u64()?),
                    _ => return None,
                },
                gtid: source.gtid.optional_text()?,
                snapshot: match source.snapshot {
                    Scalar::Null => false,
                    Scalar::Str(marker) => marker != "false",
                    Scalar::Bool(flag) => flag,
                    Scalar::Number(_) => return None,
                },
                topic: record.topic.clone(),
                partition: record.partition,
                offset: record.offset,
            },
            commit_time,
        })
    }
}

/// The `source` fields the reference reads; the others are checked as JSON and dropped.
#[derive(Default)]
struct SourceFields<'de> {
    connector: Scalar<'de>,
    name: Scalar<'de>,
    db: Scalar<'de>,
    table: Scalar<'de>,
    file: Scalar<'de>,
    pos: Scalar<'de>,
    gtid: Scalar<'de>,
    snapshot: Scalar<'de>,
    ts_ns: Scalar<'de>,
    ts_us: Scalar<'de>,
    ts_ms: Scalar<'de>,
}

impl<'de> Deserialize<'de> for SourceFields<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(SourceVisitor)
    }
}

struct SourceVisitor;

impl<'de> Visitor<'de> for SourceVisitor {
    type Value = SourceFields<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a source block")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SourceFields<'de>, A::Error> {
        let mut source = SourceFields::default();
        while let Some(Key(key)) = map.next_key()? {
            let field = match &*key {
                "connector" => &mut source.connector,
                "name" => &mut source.name,
                "db" => &mut source.db,
                "table" => &mut source.table,
                "file" => &mut source.file,
                "pos" => &mut source.pos,
                "gtid" => &mut source.gtid,
                "snapshot" => &mut source.snapshot,
                "ts_ns" => &mut source.ts_ns,
                "ts_us" => &mut source.ts_us,
                "ts_ms" => &mut source.ts_ms,
                _ => {
                    map.next_value_seed(Skip(MAX_NESTING))?;
                    continue;
                }
            };
            *field = map.next_value()?;
        }
        Ok(source)
    }
}

impl SourceFields<'_> {
    /// As the reference: the first of `ts_ns`, `ts_us`, `ts_ms` present, else the payload's
    /// `ts_ms`; the ones after it are not looked at.
    fn commit_time(&self, payload_ts_ms: &Scalar) -> Option<Timestamp> {
        let (ts, per_second) = [
            (&self.ts_ns, NANOS),
            (&self.ts_us, MICROS),
            (&self.ts_ms, MILLIS),
            (payload_ts_ms, MILLIS),
        ]
        .into_iter()
        .find(|(ts, _)| !matches!(ts, Scalar::Null))?;
        Some(timestamp(ts.int()?, per_second))
    }
}

/// A row image (`before`, `after`) or a key's payload: `null`, or an object decoded by the plan.
/// Without a plan a non-null row is left to the reference.
struct Image<'p>(Option<&'p RowPlan>);

impl<'de> DeserializeSeed<'de> for Image<'_> {
    type Value = Option<Row>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<Row>, D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for Image<'_> {
    type Value = Option<Row>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a row or null")
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Option<Row>, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<Row>, D::Error> {
        let plan = self.0.ok_or_else(unusual)?;
        deserializer.deserialize_map(plan).map(Some)
    }
}

impl<'de> Visitor<'de> for &RowPlan {
    type Value = Row;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a row")
    }

    /// Columns come in schema order from Kafka Connect, so each key is looked for from the column
    /// after the previous one. A repeated key overwrites, as in the reference's `serde_json::Map`;
    /// keys the schema lacks are checked as JSON and dropped.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Row, A::Error> {
        let columns = &self.columns;
        let mut row: Row = columns
            .iter()
            .map(|c| Column {
                name: c.name.clone(),
                value: Value::Null,
            })
            .collect();
        let mut next = 0;
        while let Some(Key(key)) = map.next_key()? {
            let found = (columns[next..].iter().position(|c| c.name == *key))
                .map(|i| next + i)
                .or_else(|| columns[..next].iter().position(|c| c.name == *key));
            match found {
                Some(i) => {
                    row[i].value = map.next_value_seed(columns[i].convert)?;
                    next = i + 1;
                }
                None => map.next_value_seed(Skip(MAX_NESTING))?,
            }
        }
        Ok(row)
    }
}

/// A JSON scalar as the reference's `serde_json::Value` holds it, a string borrowed from the
/// input unless it has escapes. Arrays and objects are refused: where the fast path reads a
/// value, the reference refuses them too, or ignores the value (a later commit-time field), and
/// refusing only costs a trip to the reference.
#[derive(Default)]
enum Scalar<'de> {
    #[default]
    Null,
    Bool(bool),
    Number(Number),
    Str(Cow<'de, str>),
}

impl Scalar<'_> {
    fn int(&self) -> Option<i64> {
        match self {
            Scalar::Number(n) => n.as_i64(),
            _ => None,
        }
    }

    fn str(&self) -> Option<&str> {
        match self {
            Scalar::Str(s) => Some(s),
            _ => None,
        }
    }

    fn text(self) -> Option<String> {
        match self {
            Scalar::Str(s) => Some(s.into_owned()),
            _ => None,
        }
    }

    fn optional_text(self) -> Option<Option<String>> {
        match self {
            Scalar::Null => Some(None),
            other => other.text().map(Some),
        }
    }

    fn base64(&self) -> Option<Vec<u8>> {
        BASE64.decode(self.str()?).ok()
    }
}

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON scalar")
    }

    fn visit_unit<E>(self) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Null)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Number(n.into()))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Scalar<'de>, E> {
        // As `serde_json::Value` does (a parsed number is always finite).
        Ok(Number::from_f64(n).map_or(Scalar::Null, Scalar::Number))
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Str(Cow::Borrowed(s)))
    }

    fn visit_str<E>(self, s: &str) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Str(Cow::Owned(s.into())))
    }
}

/// An object key, borrowed from the input unless it has escapes (serde's own `Cow<str>` always
/// copies).
struct Key<'de>(Cow<'de, str>);

/// With serde_json's `raw_value` feature (on in this build), a `serde_json::Value` parse reads
/// an object whose first key is this token as embedded JSON text. The reference parses payloads
/// into `Value`s, so any object with this key is left to it.
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, s: &'de str) -> Result<Key<'de>, E> {
        if s == RAW_VALUE_TOKEN {
            return Err(unusual());
        }
        Ok(Key(Cow::Borrowed(s)))
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Key<'de>, E> {
        if s == RAW_VALUE_TOKEN {
            return Err(unusual());
        }
        Ok(Key(Cow::Owned(s.into())))
    }
}

/// Any JSON value, checked as the reference's `serde_json::Value` parse checks it, then dropped.
/// `IgnoredAny` would not do: serde_json skips it without checking its strings' UTF-8 and
/// escapes, or its nesting. The field is how many more levels it may nest (see `MAX_NESTING`).
#[derive(Clone, Copy)]
struct Skip(u8);

impl Skip {
    fn inner<E: serde::de::Error>(self) -> Result<Skip, E> {
        self.0.checked_sub(1).map(Skip).ok_or_else(unusual)
    }
}

impl<'de> DeserializeSeed<'de> for Skip {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Skip {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = self.inner()?;
        while seq.next_element_seed(inner)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = self.inner()?;
        while map.next_key::<Key>()?.is_some() {
            map.next_value_seed(inner)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    //! The equivalence test: the reference and one `Decoder` decode the same records in order
    //! and must give identical events or identical error messages, record by record.

    use std::fmt::Write as _;

    use fastrand::Rng;
    use serde_json::json;

    use super::*;

    /// Debug text rather than `PartialEq`: NaN must equal NaN, and -0.0 must differ from 0.0.
    fn outcome(result: &Result<Decoded, DecodeError>) -> String {
        match result {
            Ok(decoded) => format!("{decoded:?}"),
            Err(error) => format!("error: {error}"),
        }
    }

    fn lossy(bytes: &Option<Vec<u8>>) -> Option<Cow<'_, str>> {
        bytes.as_deref().map(String::from_utf8_lossy)
    }

    #[derive(Debug, Default)]
    pub(super) struct Tally {
        records: usize,
        changes: usize,
        errors: usize,
        /// Decoded by the plan rather than handed to the reference.
        fast: usize,
    }

    /// Decodes `records` in order with the reference and with `decoder`, requiring the same
    /// outcome for each.
    pub(super) fn check(decoder: &mut Decoder, records: &[KafkaRecord]) -> Tally {
        let mut tally = Tally::default();
        for (i, record) in records.iter().enumerate() {
            let reference = outcome(&super::super::decode(record));
            let context = || {
                format!(
                    "record {i} on {}\nkey: {:?}\nvalue: {:?}",
                    record.topic,
                    lossy(&record.key),
                    lossy(&record.value)
                )
            };
            if let Some(event) = decoder.fast(record) {
                tally.fast += 1;
                let fast = outcome(&Ok(Decoded::Change(event)));
                assert_eq!(fast, reference, "fast path, {}", context());
            }
            assert_eq!(outcome(&decoder.decode(record)), reference, "{}", context());
            tally.records += 1;
            if reference.starts_with("error: ") {
                tally.errors += 1;
            } else if reference.starts_with("Change(") {
                tally.changes += 1;
            }
        }
        tally
    }

    pub(super) fn record(topic: &str, key: Option<&str>, value: Option<&str>) -> KafkaRecord {
        KafkaRecord {
            topic: topic.into(),
            partition: 1,
            offset: 7,
            timestamp_ms: Some(1_714_521_600_000),
            key: key.map(|k| k.as_bytes().to_vec()),
            value: value.map(|v| v.as_bytes().to_vec()),
        }
    }

    fn message(schema: &str, payload: &str) -> String {
        format!(r#"{{"schema":{schema},"payload":{payload}}}"#)
    }

    #[test]
    fn benchmark_workload_takes_the_fast_path() {
        // Snapshot, streaming, the mid-stream ALTER TABLE, heartbeats, DDL, tombstones.
        let records = crate::sample::workload(1, 5_000);
        let tally = check(&mut Decoder::default(), &records);
        assert_eq!(tally.errors, 0, "{tally:?}");
        assert_eq!(tally.fast, tally.changes, "{tally:?}");
        assert!(tally.records > tally.changes, "{tally:?}");
    }

    #[test]
    fn fixtures_agree() {
        let dir = env!("CARGO_MANIFEST_DIR");
        let jsonl = std::fs::read_to_string(format!(
            "{dir}/../guest-examples/pii-mask/tests/events.jsonl"
        ))
        .unwrap();
        let embedded = |v: &Json| (!v.is_null()).then(|| v.to_string());
        // Kafka records with embedded key and value, then a bare envelope and a broken line.
        let mut records: Vec<KafkaRecord> = jsonl
            .lines()
            .map(|line| match serde_json::from_str::<Json>(line) {
                Ok(fields) if fields.get("topic").is_some() => {
                    let key = embedded(&fields["key"]);
                    let value = embedded(&fields["value"]);
                    record(
                        fields["topic"].as_str().unwrap(),
                        key.as_deref(),
                        value.as_deref(),
                    )
                }
                _ => record("fixture", None, Some(line)),
            })
            .collect();
        for (topic, name) in [
            (
                "mysql-server-1.inventory.customers",
                "customers-create.json",
            ),
            ("mysql-server-1", "schema-change.json"),
        ] {
            let pretty =
                std::fs::read_to_string(format!("{dir}/tests/fixtures/debezium/{name}")).unwrap();
            let compact = serde_json::from_str::<Json>(&pretty).unwrap().to_string();
            records.push(record(topic, None, Some(&pretty)));
            records.push(record(topic, None, Some(&compact)));
        }
        let tally = check(&mut Decoder::default(), &records);
        // All but the pretty-printed and the schemaless envelope.
        assert_eq!(tally.fast, tally.changes - 2, "{tally:?}");
    }

    // ---------------------------------------------------------------------------------------
    // Hand-picked cases at the edges of the fast path.

    fn envelope_schema(fields: &str) -> String {
        let row = |image: &str| {
            format!(
                r#"{{"type":"struct","fields":[{fields}],"optional":true,"name":"e.t.Value","field":"{image}"}}"#
            )
        };
        format!(
            r#"{{"type":"struct","fields":[{},{},{{"type":"struct","fields":[],"optional":false,"name":"io.debezium.connector.mysql.Source","field":"source"}},{{"type":"string","optional":false,"field":"op"}},{{"type":"int64","optional":true,"field":"ts_ms"}}],"optional":false,"name":"e.t.Envelope","version":1}}"#,
            row("before"),
            row("after")
        )
    }

    const FIELDS: &str = r#"{"type":"int32","optional":false,"field":"id"},{"type":"string","optional":true,"field":"name"},{"type":"struct","optional":true,"field":"geo"}"#;
    const SOURCE: &str = r#"{"connector":"mysql","name":"shop","ts_ms":1714521601000,"db":"shop","table":"t","file":"f","pos":4,"gtid":null,"snapshot":"false"}"#;
    const AFTER: &str = r#"{"id":1,"name":"x","geo":{"a":[1]}}"#;
    const KEY_SCHEMA: &str = r#"{"type":"struct","fields":[{"type":"int32","optional":false,"field":"id"}],"optional":false,"name":"e.t.Key"}"#;

    fn payload_with(after: &str, source: &str) -> String {
        format!(
            r#"{{"before":null,"after":{after},"source":{source},"op":"c","ts_ms":1714521601234}}"#
        )
    }

    fn payload(after: &str) -> String {
        payload_with(after, SOURCE)
    }

    fn deep(depth: usize) -> String {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    }

    /// A struct column schema nested `depth` structs deep.
    fn deep_schema(depth: usize) -> String {
        let mut schema = r#"{"type":"int32","optional":true,"field":"leaf"}"#.to_string();
        for _ in 0..depth {
            schema =
                format!(r#"{{"type":"struct","optional":true,"field":"n","fields":[{schema}]}}"#);
        }
        schema
    }

    #[test]
    fn edge_cases_agree() {
        let schema = envelope_schema(FIELDS);
        let base = message(&schema, &payload(AFTER));
        let with_after = |after: &str| message(&schema, &payload(after));
        let with_source = |from: &str, to: &str| {
            message(&schema, &payload_with(AFTER, &SOURCE.replace(from, to)))
        };
        let with_payload = |payload: &str| message(&schema, payload);
        let with_schema = |fields: &str| message(&envelope_schema(fields), &payload(AFTER));
        let ts = r#""ts_ms":1714521601000"#;
        let mut values = vec![
            // Framing: whitespace, order, extra and repeated keys, other shapes.
            format!("{base}\n"),
            format!("{base} \t\r\n"),
            format!("{base}\x0c"),
            format!("{} }}", &base[..base.len() - 1]),
            format!(r#"{{"schema": {schema},"payload":{}}}"#, payload(AFTER)),
            format!(r#"{{"schema":{schema} ,"payload":{}}}"#, payload(AFTER)),
            format!(
                r#"{{"schema":{schema},"payload":{},"x":1}}"#,
                payload(AFTER)
            ),
            format!(
                r#"{{"schema":{schema},"payload":{},"payload":null}}"#,
                payload(AFTER)
            ),
            format!(
                r#"{{"schema":{schema},"payload":{},"schema":null}}"#,
                payload(AFTER)
            ),
            format!(r#"{{"payload":{},"schema":{schema}}}"#, payload(AFTER)),
            format!("{base}}}"),
            base[..base.len() - 1].to_string(),
            base[..base.len() - 2].to_string(),
            with_payload("null"),
            with_payload("5"),
            with_payload("[]"),
            with_payload(r#""x""#),
            "null".into(),
            message("null", &payload(AFTER)),
            message("{}", &payload(AFTER)),
            message(r#"{"type":"struct"}"#, &payload(AFTER)),
            payload(AFTER),
            // Repeated keys: the last wins, as in the reference's map.
            with_payload(&format!(
                r#"{{"op":"x","before":null,"after":{AFTER},"source":{SOURCE},"op":"c","ts_ms":1}}"#
            )),
            with_payload(&format!(
                r#"{{"op":"c","before":null,"after":{AFTER},"source":{SOURCE},"op":"x","ts_ms":1}}"#
            )),
            with_payload(&format!(
                r#"{{"op":"c","after":"x","after":{AFTER},"source":{SOURCE},"source":5}}"#
            )),
            with_payload(&format!(
                r#"{{"\u006fp":"\u0063","after":{AFTER},"source":{SOURCE}}}"#
            )),
            with_payload(&format!(
                r#"{{"op":"c","after":{AFTER},"source":{SOURCE},"ddl":"x"}}"#
            )),
            with_payload(&format!(
                r#"{{"op":"c","after":{AFTER},"source":{SOURCE},"ddl":"x","databaseName":"d"}}"#
            )),
            with_payload(&format!(r#"{{"op":"c","after":{AFTER}}}"#)),
            with_payload(&format!(r#"{{"after":{AFTER},"source":{SOURCE}}}"#)),
            with_payload(&format!(
                r#"{{"op":null,"after":{AFTER},"source":{SOURCE}}}"#
            )),
            with_payload(&format!(r#"{{"op":1,"after":{AFTER},"source":{SOURCE}}}"#)),
            with_payload(&format!(
                r#"{{"op":"m","after":{AFTER},"source":{SOURCE}}}"#
            )),
            with_payload(&format!(r#"{{"op":"c","before":[],"source":{SOURCE}}}"#)),
            with_payload(&format!(r#"{{"op":"c","after":{AFTER},"source":[]}}"#)),
            with_after(r#"{"id":1,"name":"x","id":2}"#),
            with_after(r#"{"id":"1","name":"x","id":2}"#),
            with_after(r#"{"id":1,"name":"x","id":"2"}"#),
            with_after(r#"{"name":"x","id":2}"#),
            with_after(r#"{"geo":null,"name":"\u0078","\u0069d":3}"#),
            with_after(r#"{"id":1,"other":{"deep":[1,{"a":null}]},"name":"\ud83d\ude00"}"#),
            with_after(r#"{"id":1,"other":"\ud800"}"#),
            with_after(r#"{"id":1,"name":"\ud800"}"#),
            with_after(r#"{"id":1,"geo":{"k":"\udc00"}}"#),
            with_after(r#"{"id":-0}"#),
            with_after(r#"{"id":1e400}"#),
            with_after(r#"{"id":1,"other":1e400}"#),
            with_after(r#"{"id":9223372036854775808}"#),
            with_after(r#"{"id":1,"geo":1.0e2}"#),
            with_after(r#"{"id":1,"geo":{"a":1,"a":2,"b":-0}}"#),
            with_after("{}"),
            with_after("[]"),
            // The raw-value token serde_json's `Value` parse treats specially.
            with_after(r#"{"id":1,"geo":{"$serde_json::private::RawValue":"[1, 2]"}}"#),
            with_after(r#"{"id":1,"geo":{"$serde_json::private::RawValue":5}}"#),
            with_after(r#"{"$serde_json::private::RawValue":"{}"}"#),
            with_after(r#"{"id":1,"$serde_json::private::RawValue":"{}"}"#),
            with_after(r#"{"id":1,"x":{"$serde_json::private::RawValue":"{}"}}"#),
            with_payload(&format!(
                r#"{{"$serde_json::private::RawValue":"{{}}","op":"c","after":{AFTER},"source":{SOURCE}}}"#
            )),
            with_source(
                r#"{"connector""#,
                r#"{"$serde_json::private::RawValue":"{}","connector""#,
            ),
            // Source fields and the commit time.
            with_source(ts, r#""ts_ns":"x","ts_ms":1"#),
            with_source(ts, r#""ts_ns":null,"ts_us":5,"ts_ms":"x""#),
            with_source(ts, r#""ts_ns":7,"ts_us":"x""#),
            with_source(ts, r#""ts_ns":-7,"ts_us":{},"ts_ms":[]"#),
            with_source(ts, r#""ts_us":18446744073709551615"#),
            with_source(ts, r#""ts_ms":null"#),
            with_source(ts, r#""ts_ms":1.5"#),
            with_source(r#""pos":4"#, r#""pos":-4"#),
            with_source(r#""pos":4"#, r#""pos":4.0"#),
            with_source(r#""pos":4"#, r#""pos":18446744073709551615"#),
            with_source(r#""pos":4"#, r#""pos":null"#),
            with_source(r#""snapshot":"false""#, r#""snapshot":true"#),
            with_source(r#""snapshot":"false""#, r#""snapshot":"last""#),
            with_source(r#""snapshot":"false""#, r#""snapshot":1"#),
            with_source(r#""snapshot":"false""#, r#""snapshot":"fal\u0073e""#),
            with_source(r#""gtid":null"#, r#""gtid":"0-1-42""#),
            with_source(r#""gtid":null"#, r#""gtid":42"#),
            with_source(r#""db":"shop""#, r#""db":null"#),
            with_source(r#""db":"shop""#, r#""db":"sh\"op""#),
            with_source(r#""db":"shop""#, r#""db":"shop","db":"second""#),
            with_source(r#""table":"t""#, r#""table":["t"]"#),
            with_source(r#""file":"f""#, r#""file":{}"#),
            with_source(r#""name":"shop""#, r#""name":"Zoë 😀""#),
            // Schemas the plan refuses or handles specially.
            with_schema(r#"{"type":"int32","field":"id"},{"type":"int64","field":"id"}"#),
            with_schema(r#"{"type":"int32","field":"id"},{"type":"string"}"#),
            with_schema(r#"{"type":"int32","field":"\u0069d"},{"type":"string","field":"na\"me"}"#),
            with_schema(
                r#"{"type":"int32","field":"id","name":"io.debezium.time.Date"},{"type":"int128","field":"name"}"#,
            ),
            with_schema(
                r#"{"type":"int32","field":"id"},{"type":"string","field":"name","doc":"\ud800"}"#,
            ),
            with_schema(
                r#"{"type":"int32","field":"id"},{"type":"string","field":"name","doc":"\xff"}"#,
            ),
            message(
                r#"{"type":"struct","fields":[{"type":"int64","optional":false,"field":"ts_ms"}],"optional":false,"name":"io.debezium.connector.common.Heartbeat"}"#,
                r#"{"ts_ms":1714521600000}"#,
            ),
            message(
                r#"{"type":"struct","fields":[{"type":"int64","optional":false,"field":"ts_ms"}],"optional":false,"name":"io.debezium.connector.common.Heartbeat"}"#,
                "[]",
            ),
        ];
        // Nesting around serde_json's limit, which the fast path meets one level later.
        for depth in (24..=40).chain(118..=130) {
            let d = deep(depth);
            values.push(with_after(&format!(r#"{{"id":1,"other":{d}}}"#)));
            values.push(with_after(&format!(r#"{{"id":1,"geo":{d}}}"#)));
            values.push(with_payload(&format!(
                r#"{{"op":"c","after":{AFTER},"source":{SOURCE},"x":{d}}}"#
            )));
            values.push(with_source(ts, &format!(r#""x":{d},{ts}"#)));
        }
        for depth in 55..=66 {
            let fields = format!("{FIELDS},{}", deep_schema(depth));
            values.push(with_schema(&fields));
        }
        let key = message(KEY_SCHEMA, r#"{"id":1}"#);
        let mut records = Vec::new();
        for value in &values {
            // After a record that caches the usual schema, so the variant meets a warm cache.
            records.push(record("e.t", Some(&key), Some(&base)));
            records.push(record("e.t", Some(&key), Some(value)));
        }
        let keys = [
            "null".to_string(),
            r#"{"id":1}"#.into(),
            "not json".into(),
            message(KEY_SCHEMA, "null"),
            message(KEY_SCHEMA, "5"),
            message(KEY_SCHEMA, r#"{"id":"x"}"#),
            message(KEY_SCHEMA, r#"{"id":1,"id":2}"#),
            message(KEY_SCHEMA, r#"{"id":1}"#)[..20].to_string(),
            message(r#"{"type":"int32"}"#, "{}"),
            message(r#"{"type":"int32"}"#, "1"),
            message(
                r#"{"type":"struct","fields":[{"type":"int32","field":"id"},{"type":"int32","field":"id"}]}"#,
                r#"{"id":1}"#,
            ),
            message(
                r#"{"type":"struct","fields":[{"type":"int32"}]}"#,
                r#"{"id":1}"#,
            ),
        ];
        for key in &keys {
            records.push(record("e.t", Some(&key.clone()), Some(&base)));
            records.push(record("e.t", None, Some(&base)));
        }
        let mut decoder = Decoder::default();
        let tally = check(&mut decoder, &records);
        assert!(
            decoder
                .fast(&record("e.t", Some(&key), Some(&base)))
                .is_some()
        );
        assert!(tally.fast > records.len() / 2, "{tally:?}");
    }

    // ---------------------------------------------------------------------------------------
    // Generated streams: random tables of every column type, evolving schemas, interleaved
    // topics, the other message kinds, and byte mutations.

    /// A column type: its Connect schema (without the field name) and how to write a value.
    struct Kind {
        schema: Json,
        value: fn(&mut Rng) -> String,
    }

    fn kind(schema: Json, value: fn(&mut Rng) -> String) -> Kind {
        Kind { schema, value }
    }

    fn kinds() -> Vec<Kind> {
        let logical = |type_name: &str, name: &str| json!({"type": type_name, "optional": true, "name": name, "version": 1});
        let decimal = |scale: &str| {
            json!({
                "type": "bytes", "optional": true, "name": "org.apache.kafka.connect.data.Decimal",
                "version": 1, "parameters": {"scale": scale, "connect.decimal.precision": "65"}
            })
        };
        let plain = |type_name: &str| json!({"type": type_name, "optional": true});
        vec![
            kind(decimal("2"), base64_text),
            kind(decimal("0"), base64_text),
            kind(decimal("-3"), base64_text),
            kind(decimal("30"), base64_text),
            kind(decimal("two"), base64_text),
            kind(decimal("2147483647"), base64_text),
            kind(
                logical("bytes", "org.apache.kafka.connect.data.Decimal"),
                base64_text,
            ),
            kind(
                logical("struct", "io.debezium.data.VariableScaleDecimal"),
                variable_scale_text,
            ),
            kind(logical("int32", "io.debezium.time.Date"), int_text),
            kind(
                logical("int32", "org.apache.kafka.connect.data.Date"),
                int_text,
            ),
            kind(logical("int32", "io.debezium.time.Time"), int_text),
            kind(
                logical("int32", "org.apache.kafka.connect.data.Time"),
                int_text,
            ),
            kind(logical("int64", "io.debezium.time.MicroTime"), int_text),
            kind(logical("int64", "io.debezium.time.NanoTime"), int_text),
            kind(logical("int64", "io.debezium.time.Timestamp"), int_text),
            kind(
                logical("int64", "org.apache.kafka.connect.data.Timestamp"),
                int_text,
            ),
            kind(
                logical("int64", "io.debezium.time.MicroTimestamp"),
                int_text,
            ),
            kind(logical("int64", "io.debezium.time.NanoTimestamp"), int_text),
            kind(
                logical("string", "io.debezium.time.ZonedTimestamp"),
                zoned_text,
            ),
            kind(logical("string", "io.debezium.data.Json"), json_doc_text),
            kind(logical("bytes", "io.debezium.data.Bits"), base64_text),
            kind(logical("string", "io.debezium.data.Enum"), string_text),
            kind(logical("string", "io.debezium.data.EnumSet"), string_text),
            kind(logical("int32", "io.debezium.time.Year"), int_text),
            kind(logical("int64", "com.example.Unknown"), int_text),
            kind(plain("int8"), int_text),
            kind(plain("int16"), int_text),
            kind(plain("int32"), int_text),
            kind(plain("int64"), int_text),
            kind(plain("float32"), float_text),
            kind(plain("float64"), float_text),
            kind(plain("boolean"), bool_text),
            kind(plain("string"), string_text),
            kind(plain("bytes"), base64_text),
            kind(plain("struct"), nested_text),
            kind(plain("array"), nested_text),
            kind(plain("map"), nested_text),
            kind(plain("int128"), int_text),
        ]
    }

    fn pick<'a>(rng: &mut Rng, items: &[&'a str]) -> &'a str {
        items[rng.usize(..items.len())]
    }

    fn json_string(text: &str) -> String {
        serde_json::to_string(text).unwrap()
    }

    fn int_text(rng: &mut Rng) -> String {
        match rng.u8(..12) {
            0 => i64::MAX.to_string(),
            1 => i64::MIN.to_string(),
            // Overflows when scaled to nanoseconds.
            2 => (i64::MAX / 1_000 + 1).to_string(),
            3 => (i64::from(i32::MAX) + 1).to_string(),
            4 => pick(
                rng,
                &[
                    "18446744073709551615",
                    "18446744073709551616",
                    "-9223372036854775809",
                    "-0",
                    "1.0",
                    "1e3",
                    "\"42\"",
                ],
            )
            .into(),
            5..=7 => rng.i32(..).to_string(),
            _ => rng
                .i64(-5_000_000_000_000_000..5_000_000_000_000_000)
                .to_string(),
        }
    }

    fn float_text(rng: &mut Rng) -> String {
        match rng.u8(..8) {
            0 => pick(
                rng,
                &[
                    r#""NaN""#,
                    r#""Infinity""#,
                    r#""-Infinity""#,
                    r#""nan""#,
                    r#""1.5""#,
                ],
            )
            .into(),
            1 => pick(
                rng,
                &[
                    "-0.0",
                    "-0",
                    "1e308",
                    "4.9e-324",
                    "1e-400",
                    "123456789012345678901234567890",
                    "1e400",
                    "3",
                    "0.1e1",
                ],
            )
            .into(),
            _ => {
                let magnitude = 10f64.powi(rng.i32(-10..20));
                serde_json::to_string(&((rng.f64() - 0.5) * magnitude)).unwrap()
            }
        }
    }

    fn bool_text(rng: &mut Rng) -> String {
        pick(rng, &["true", "false", "true", "false", "1", r#""true""#]).into()
    }

    fn base64_text(rng: &mut Rng) -> String {
        let bytes = |rng: &mut Rng, n: usize| -> Vec<u8> { (0..n).map(|_| rng.u8(..)).collect() };
        match rng.u8(..12) {
            0 => pick(
                rng,
                &[
                    r#""12.50""#,
                    r#""QQ""#,
                    r#""""#,
                    r#""A===""#,
                    r#""QQ==\n""#,
                    r#""\u0041Q==""#,
                ],
            )
            .into(),
            // Longer than any database's decimal: refused.
            1 => {
                let n = rng.usize(1_020..1_030);
                json_string(&BASE64.encode(bytes(rng, n)))
            }
            _ => {
                let n = rng.usize(0..20);
                json_string(&BASE64.encode(bytes(rng, n)))
            }
        }
    }

    fn variable_scale_text(rng: &mut Rng) -> String {
        match rng.u8(..8) {
            0 => pick(
                rng,
                &[
                    r#"{"scale":"3","value":"AQ=="}"#,
                    r#"{"scale":2}"#,
                    r#"{"scale":2,"value":"@@"}"#,
                    r#"{"scale":2000,"value":"AQ=="}"#,
                    r#"{"scale":1.5,"value":"AQ=="}"#,
                    r#"{"scale":1,"value":"AQ==","scale":2}"#,
                    "[1]",
                    r#""AQ==""#,
                ],
            )
            .into(),
            _ => {
                let extra = if rng.u8(..5) == 0 {
                    r#","extra":[1,{"a":2}]"#
                } else {
                    ""
                };
                let scale = rng.i32(-5..40);
                format!(r#"{{"scale":{scale},"value":{}{extra}}}"#, base64_text(rng))
            }
        }
    }

    fn zoned_text(rng: &mut Rng) -> String {
        if rng.u8(..4) == 0 {
            return pick(
                rng,
                &[
                    r#""2024-03-01T10:15:30Z""#,
                    r#""2024-03-01T12:15:30.5+02:00""#,
                    r#""1969-12-31T23:59:59.999999999Z""#,
                    r#""2016-12-31T23:59:60Z""#,
                    r#""2016-12-31T23:59:60.5+00:00""#,
                    r#""2024-03-01 10:15:30""#,
                    r#""2024-03-01T10:15:30\u005A""#,
                    r#""2024-02-30T10:15:30Z""#,
                ],
            )
            .into();
        }
        let seconds = rng.i64(-2_000_000_000..4_000_000_000);
        let offset = chrono::FixedOffset::east_opt(rng.i32(-50_000..50_000)).unwrap();
        let time = chrono::DateTime::from_timestamp(seconds, rng.u32(..1_000_000_000))
            .unwrap()
            .with_timezone(&offset);
        json_string(&time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, rng.bool()))
    }

    fn words(rng: &mut Rng) -> String {
        const PIECES: &[&str] = &[
            "Zoë", "李雷", "😀", "\"", "\\", "\n", "\t", "\u{7f}", "\u{0}", "a", " ", "é",
            "Łukasz", "\u{2028}", "/",
        ];
        (0..rng.usize(0..6)).map(|_| pick(rng, PIECES)).collect()
    }

    fn string_text(rng: &mut Rng) -> String {
        match rng.u8(..10) {
            0 => pick(
                rng,
                &[
                    r#""\ud83d\ude00 \u00e9""#,
                    r#""\ud800""#,
                    r#""\udc00x""#,
                    r#""\x""#,
                    "\"a\u{1}b\"",
                    r#""\/""#,
                ],
            )
            .into(),
            _ => json_string(&words(rng)),
        }
    }

    fn json_doc_text(rng: &mut Rng) -> String {
        let doc = json!({"lang": words(rng), "n": rng.i32(..), "tags": [words(rng)]});
        json_string(&doc.to_string())
    }

    fn nested_text(rng: &mut Rng) -> String {
        pick(
            rng,
            &[
                r#"{"wkb":"AQID","srid":4326}"#,
                r#"[1,2,[3,{"a":null}]]"#,
                r#"{"a":1.0e2,"b":-0,"c":1E-2}"#,
                r#""just text""#,
                "5",
                "true",
                r#"{"a":1,"a":2}"#,
                r#"{"$serde_json::private::RawValue":"[1, 2]"}"#,
                r#"{"$serde_json::private::RawValue":5}"#,
                r#"{"x":{"$serde_json::private::RawValue":"{}"}}"#,
                "[]",
                "{}",
                r#"{"k":"\u00e9\ud83d\ude00"}"#,
            ],
        )
        .into()
    }

    fn odd_text(rng: &mut Rng) -> String {
        pick(
            rng,
            &[
                "null",
                "true",
                "false",
                "0",
                "-1",
                "1.5",
                "-0",
                r#""x""#,
                r#""""#,
                "[]",
                "{}",
                r#""AA==""#,
                r#""NaN""#,
                r#"[1,{"a":[]}]"#,
                r#"{"k":"v"}"#,
                "18446744073709551615",
                "1e400",
                r#""\ud800""#,
            ],
        )
        .into()
    }

    const NAMES: &[&str] = &[
        "id",
        "name",
        "naïve",
        "名前",
        "quote\"d",
        "back\\slash",
        "tab\tname",
        "emoji😀",
        "line\nbreak",
        "a b",
        "",
        "before",
        "op",
        "$serde_json::private::RawValue",
    ];

    fn column_name(rng: &mut Rng) -> String {
        if rng.u8(..3) == 0 {
            pick(rng, NAMES).into()
        } else {
            format!("c{}", rng.u8(..60))
        }
    }

    /// `name` as a JSON string, sometimes with a letter as a `\u` escape: the same key to a
    /// JSON reader, different bytes.
    fn key_text(rng: &mut Rng, name: &str) -> String {
        if rng.u8(..10) != 0 {
            return json_string(name);
        }
        let mut out = String::from("\"");
        let mut escaped = false;
        for c in name.chars() {
            if !escaped && c.is_ascii_alphanumeric() {
                write!(out, "\\u{:04x}", u32::from(c)).unwrap();
                escaped = true;
            } else {
                let text = json_string(&c.to_string());
                out.push_str(&text[1..text.len() - 1]);
            }
        }
        out.push('"');
        out
    }

    /// An object's entries as JSON texts: key, value.
    type Entries = Vec<(String, String)>;

    fn object(entries: &Entries) -> String {
        let entries: Vec<String> = entries.iter().map(|(k, v)| format!("{k}:{v}")).collect();
        format!("{{{}}}", entries.join(","))
    }

    /// Now and then: an entry dropped, a value of another type, a repeated key, an unknown
    /// key, another order.
    fn quirks(rng: &mut Rng, entries: &mut Entries, odds: u32) {
        let roll = |rng: &mut Rng| rng.u32(..odds) == 0;
        if !entries.is_empty() && roll(rng) {
            entries.remove(rng.usize(..entries.len()));
        }
        if !entries.is_empty() && roll(rng) {
            let i = rng.usize(..entries.len());
            entries[i].1 = odd_text(rng);
        }
        if !entries.is_empty() && roll(rng) {
            let mut entry = entries[rng.usize(..entries.len())].clone();
            if rng.bool() {
                entry.1 = odd_text(rng);
            }
            entries.insert(rng.usize(..=entries.len()), entry);
        }
        if roll(rng) {
            let at = rng.usize(..=entries.len());
            entries.insert(at, (r#""extra""#.into(), nested_text(rng)));
        }
        if roll(rng) {
            rng.shuffle(entries);
        }
    }

    fn entries(rng: &mut Rng, fields: &[(&str, String)]) -> Entries {
        fields
            .iter()
            .map(|(k, v)| (key_text(rng, k), v.clone()))
            .collect()
    }

    fn source_text(rng: &mut Rng, table: &str) -> String {
        let ts_ms = 1_714_521_600_000 + rng.i64(0..1_000_000_000);
        let optional = |rng: &mut Rng, text: String| {
            if rng.u8(..3) == 0 {
                "null".to_string()
            } else {
                text
            }
        };
        let snapshot = pick(
            rng,
            &[
                r#""false""#,
                r#""false""#,
                r#""true""#,
                r#""first""#,
                r#""last""#,
                r#""incremental""#,
                "null",
                "true",
                "false",
            ],
        );
        let db = if rng.u8(..10) == 0 {
            string_text(rng)
        } else {
            r#""shop""#.into()
        };
        let ts_us = optional(rng, (ts_ms * 1_000).to_string());
        let ts_ns = optional(rng, (ts_ms * 1_000_000).to_string());
        let gtid = optional(rng, r#""0-1-42""#.into());
        let pos = rng.u32(..).to_string();
        let mut fields = entries(
            rng,
            &[
                ("version", r#""3.2.4.Final""#.into()),
                ("connector", r#""mysql""#.into()),
                ("name", r#""shop""#.into()),
                ("ts_ms", ts_ms.to_string()),
                ("snapshot", snapshot.into()),
                ("db", db),
                ("sequence", "null".into()),
                ("ts_us", ts_us),
                ("ts_ns", ts_ns),
                ("table", json_string(table)),
                ("server_id", "1".into()),
                ("gtid", gtid),
                ("file", r#""mysql-bin.000003""#.into()),
                ("pos", pos),
                ("row", "0".into()),
                ("thread", "null".into()),
                ("query", "null".into()),
            ],
        );
        quirks(rng, &mut fields, 25);
        object(&fields)
    }

    #[derive(Clone)]
    struct Table {
        topic: String,
        /// Name and index into `kinds()`.
        columns: Vec<(String, usize)>,
        key_len: usize,
    }

    impl Table {
        fn new(rng: &mut Rng, topic: String, kinds: &[Kind]) -> Self {
            let columns: Vec<_> = (0..rng.usize(1..10))
                .map(|_| (column_name(rng), rng.usize(..kinds.len())))
                .collect();
            let key_len = rng.usize(1..=2).min(columns.len());
            Table {
                topic,
                columns,
                key_len,
            }
        }

        /// A column added, removed, retyped or renamed.
        fn evolve(&mut self, rng: &mut Rng, kinds: &[Kind]) {
            let i = rng.usize(..self.columns.len());
            match rng.u8(..4) {
                0 => self
                    .columns
                    .push((column_name(rng), rng.usize(..kinds.len()))),
                1 if self.columns.len() > 1 => {
                    self.columns.remove(i);
                }
                2 => self.columns[i].1 = rng.usize(..kinds.len()),
                _ => self.columns[i].0 = column_name(rng),
            }
            self.key_len = self.key_len.min(self.columns.len());
        }

        fn fields(&self, kinds: &[Kind], columns: &[(String, usize)]) -> Vec<Json> {
            columns
                .iter()
                .map(|(name, kind)| {
                    let mut field = kinds[*kind].schema.clone();
                    field["field"] = json!(name);
                    field
                })
                .collect()
        }

        fn value_schema(&self, kinds: &[Kind]) -> String {
            let fields = self.fields(kinds, &self.columns);
            let row = |image: &str| {
                json!({"type": "struct", "fields": fields, "optional": true,
                       "name": format!("{}.Value", self.topic), "field": image})
            };
            let plain = |type_name: &str, name: &str| json!({"type": type_name, "optional": true, "field": name});
            json!({
                "type": "struct",
                "fields": [
                    row("before"),
                    row("after"),
                    {"type": "struct", "fields": [], "optional": false,
                     "name": "io.debezium.connector.mysql.Source", "field": "source"},
                    {"type": "string", "optional": false, "field": "op"},
                    plain("int64", "ts_ms"),
                ],
                "optional": false,
                "name": format!("{}.Envelope", self.topic),
                "version": 2,
            })
            .to_string()
        }

        fn key_schema(&self, kinds: &[Kind]) -> String {
            let fields = self.fields(kinds, &self.columns[..self.key_len]);
            json!({"type": "struct", "fields": fields, "optional": false,
                   "name": format!("{}.Key", self.topic)})
            .to_string()
        }

        fn row_text(&self, rng: &mut Rng, kinds: &[Kind], columns: &[(String, usize)]) -> String {
            let mut fields: Entries = columns
                .iter()
                .map(|(name, kind)| {
                    let value = match rng.u8(..20) {
                        0 | 1 => "null".into(),
                        2 => odd_text(rng),
                        _ => (kinds[*kind].value)(rng),
                    };
                    (key_text(rng, name), value)
                })
                .collect();
            quirks(rng, &mut fields, 30);
            object(&fields)
        }

        fn payload_text(&self, rng: &mut Rng, kinds: &[Kind]) -> String {
            let op = pick(rng, &["c", "u", "d", "r", "t", "c", "u"]);
            let (before, after) = match op {
                "c" | "r" => (false, true),
                "u" => (true, true),
                "d" => (true, false),
                _ => (false, false),
            };
            let image = |rng: &mut Rng, present: bool| match (present, rng.u8(..40)) {
                (_, 0) => odd_text(rng),
                (true, _) => self.row_text(rng, kinds, &self.columns),
                (false, _) => "null".into(),
            };
            let before = image(rng, before);
            let after = image(rng, after);
            let op = if rng.u8(..30) == 0 {
                pick(
                    rng,
                    &[r#""m""#, r#""C""#, "1", "null", r#""\u0063""#, r#""""#],
                )
                .into()
            } else {
                json_string(op)
            };
            let ts_ms = rng.i64(1_714_521_600_000..1_814_521_600_000).to_string();
            let source = source_text(rng, &self.topic);
            let mut fields = entries(
                rng,
                &[
                    ("before", before),
                    ("after", after),
                    ("source", source),
                    ("transaction", "null".into()),
                    ("op", op),
                    ("ts_ms", ts_ms),
                ],
            );
            quirks(rng, &mut fields, 40);
            object(&fields)
        }

        fn key(&self, rng: &mut Rng, kinds: &[Kind]) -> Option<String> {
            let columns = &self.columns[..self.key_len];
            Some(match rng.u8(..40) {
                0 | 1 => return None,
                2 => "null".into(),
                3 | 4 => self.row_text(rng, kinds, columns),
                5 => message(&self.key_schema(kinds), "null"),
                _ => message(&self.key_schema(kinds), &self.row_text(rng, kinds, columns)),
            })
        }
    }

    const HEARTBEAT: &str = r#"{"schema":{"type":"struct","fields":[{"type":"int64","optional":false,"field":"ts_ms"}],"optional":false,"name":"io.debezium.connector.common.Heartbeat"},"payload":{"ts_ms":1714521600000}}"#;

    fn ddl_text(rng: &mut Rng) -> String {
        let schema = r#"{"type":"struct","fields":[{"type":"string","optional":true,"field":"databaseName"},{"type":"string","optional":true,"field":"ddl"}],"optional":false,"name":"io.debezium.connector.mysql.SchemaChangeValue","version":1}"#;
        let payload = format!(
            r#"{{"source":{},"ts_ms":1714521601000,"databaseName":"shop","schemaName":null,"ddl":{},"tableChanges":[{{"type":"ALTER","id":"\"shop\".\"t0\""}}]}}"#,
            source_text(rng, "t0"),
            json_string(&words(rng)),
        );
        message(schema, &payload)
    }

    /// One byte-level change, more often in the payload than in the schema before it.
    pub(super) fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>) {
        const SPECIAL: &[u8] = b"{}[],:\"\\0123456789-+.eEntrufals \t\n\x0c\xc3\xff";
        if bytes.is_empty() {
            bytes.push(b'{');
            return;
        }
        let payload_at = (bytes.windows(PAYLOAD_KEY.len()))
            .rposition(|w| w == PAYLOAD_KEY)
            .unwrap_or(0);
        let at = |rng: &mut Rng, len: usize| {
            if rng.u8(..10) < 6 && payload_at < len {
                rng.usize(payload_at..len)
            } else {
                rng.usize(..len)
            }
        };
        let i = at(rng, bytes.len());
        match rng.u8(..6) {
            0 => bytes[i] = rng.u8(..),
            1 => bytes[i] = SPECIAL[rng.usize(..SPECIAL.len())],
            2 => {
                bytes.remove(i);
            }
            3 => bytes.insert(i, SPECIAL[rng.usize(..SPECIAL.len())]),
            4 => bytes.truncate(i),
            _ => {
                let len = rng.usize(1..=16.min(bytes.len() - i));
                let copy = bytes[i..i + len].to_vec();
                let j = at(rng, bytes.len());
                bytes.splice(j..j, copy);
            }
        }
    }

    fn generated_stream(seed: u64, len: usize) -> Vec<KafkaRecord> {
        let mut rng = Rng::with_seed(seed);
        let kinds = kinds();
        let mut tables: Vec<Table> = (0..3)
            .map(|i| Table::new(&mut rng, format!("gen.db.t{i}"), &kinds))
            .collect();
        let mut previous = tables.clone();
        let mut records = Vec::with_capacity(len);
        while records.len() < len {
            let t = rng.usize(..tables.len());
            if rng.u8(..40) == 0 {
                previous[t] = tables[t].clone();
                tables[t].evolve(&mut rng, &kinds);
            }
            // Now and then a record still written with the schema before the last change.
            let table = if rng.u8(..15) == 0 {
                &previous[t]
            } else {
                &tables[t]
            };
            let mut topic = table.topic.as_str();
            let key = table.key(&mut rng, &kinds);
            let value = match rng.u8(..100) {
                0..=3 => None,
                4..=6 => {
                    topic = "__debezium-heartbeat.gen";
                    Some(HEARTBEAT.to_string())
                }
                7..=8 => Some(HEARTBEAT.to_string()),
                9..=11 => {
                    topic = "gen";
                    Some(ddl_text(&mut rng))
                }
                12..=15 => Some(table.payload_text(&mut rng, &kinds)),
                16..=17 => Some(message("null", &table.payload_text(&mut rng, &kinds))),
                18 => Some("null".into()),
                19 => Some(message(&table.value_schema(&kinds), "null")),
                20..=21 => Some(format!(
                    "{{\"schema\": {}, \"payload\": {}}}\n",
                    table.value_schema(&kinds),
                    table.payload_text(&mut rng, &kinds)
                )),
                _ => Some(message(
                    &table.value_schema(&kinds),
                    &table.payload_text(&mut rng, &kinds),
                )),
            };
            let mut record = record(topic, key.as_deref(), value.as_deref());
            record.offset = records.len() as i64;
            if rng.u8(..7) == 0 {
                let mut mutated = record.clone();
                let target = match (&mut mutated.key, &mut mutated.value) {
                    (Some(key), _) if rng.u8(..4) == 0 => key,
                    (_, Some(value)) => value,
                    (Some(key), None) => key,
                    (None, None) => continue,
                };
                mutate(&mut rng, target);
                records.push(record);
                records.push(mutated);
            } else {
                records.push(record);
            }
        }
        records
    }

    #[test]
    fn generated_streams_agree() {
        let mut total = Tally::default();
        for seed in 1..=4 {
            let tally = check(&mut Decoder::default(), &generated_stream(seed, 2_500));
            assert!(tally.fast * 4 > tally.changes, "seed {seed}: {tally:?}");
            total.records += tally.records;
            total.changes += tally.changes;
            total.errors += tally.errors;
            total.fast += tally.fast;
        }
        eprintln!("generated streams: {total:?}");
        assert!(total.errors > total.records / 10, "{total:?}");
    }

    #[test]
    fn byte_mutations_of_benchmark_envelopes_agree() {
        let mut rng = Rng::with_seed(20_240_501);
        let records = crate::sample::workload(2, 4_500);
        let mut stream = Vec::new();
        for record in records.iter().step_by(3).take(2_000) {
            stream.push(record.clone());
            let mut mutated = record.clone();
            for _ in 0..rng.usize(1..=3) {
                let target = match (&mut mutated.key, &mut mutated.value) {
                    (Some(key), _) if rng.u8(..5) == 0 => key,
                    (_, Some(value)) => value,
                    (Some(key), None) => key,
                    (None, None) => break,
                };
                mutate(&mut rng, target);
            }
            stream.push(mutated);
        }
        let tally = check(&mut Decoder::default(), &stream);
        eprintln!("mutated benchmark envelopes: {tally:?}");
        assert!(tally.errors > stream.len() / 5, "{tally:?}");
        assert!(tally.fast > stream.len() / 3, "{tally:?}");
    }
}
