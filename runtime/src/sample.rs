//! The bundled sample CDC stream: the Kafka records Debezium's MySQL connector would write for a
//! small shop database, from the initial snapshot through a stretch of binlog streaming with a
//! mid-stream `ALTER TABLE`.
//!
//! It mirrors Debezium 3.2 with the JSON converter (`schemas.enable=true`),
//! `decimal.handling.mode=precise`, `time.precision.mode=adaptive_time_microseconds`, schema
//! changes and heartbeats on. A fixed seed and a simulated clock (never the wall clock) make every
//! run produce the same records.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use serde_json::{Map, Value as Json, json};
use sha2::{Digest, Sha256};

use crate::model::KafkaRecord;

/// Debezium's logical server name: the topic prefix, and the schema-change topic itself.
pub const SERVER: &str = "shop";
/// The captured MySQL database.
pub const DATABASE: &str = "shop";
/// Partitions of each table topic. The schema-change and heartbeat topics have one.
pub const PARTITIONS: i32 = 3;
/// Where the connector's heartbeats go.
pub const HEARTBEAT_TOPIC: &str = "__debezium-heartbeat.shop";
/// The DDL executed mid-stream.
pub const ALTER_DDL: &str = "ALTER TABLE customers ADD COLUMN loyalty_tier VARCHAR(16) NULL";

const SEED: u64 = 20_240_501;
/// 2024-05-01T00:00:00Z in microseconds: the snapshot starts here.
const START_US: i64 = 1_714_521_600_000_000;
const DAY_US: i64 = 86_400_000_000;
const SNAPSHOT_CUSTOMERS: usize = 500;
const SNAPSHOT_ORDERS: usize = 1_000;
/// Streaming stops once this many change events (snapshot reads included) are written.
const TOTAL_CHANGES: usize = 12_000;
/// `heartbeat.interval.ms`.
const HEARTBEAT_INTERVAL_US: i64 = 10 * 60 * 1_000_000;
const FIRST_ORDER_ID: i64 = 100_001;
const DEBEZIUM_VERSION: &str = "3.2.4.Final";
const BINLOG_FILE: &str = "mysql-bin.000003";
const SERVER_ID: i64 = 1;
const SERVER_UUID: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";

/// The bundled sample stream, in the order the connector would produce it.
pub fn sample_records() -> Vec<KafkaRecord> {
    workload(SEED, TOTAL_CHANGES)
}

/// The same shop simulation from another seed, streaming until at least `changes` change
/// events (snapshot reads included) are written: a deterministic workload of any size for
/// benchmarks. `workload(20_240_501, 12_000)` is the bundled sample.
pub fn workload(seed: u64, changes: usize) -> Vec<KafkaRecord> {
    Shop::new(seed).run(changes)
}

// ---------------------------------------------------------------------------------------------
// Table definitions: MySQL column types, and Debezium's mapping of them to Connect schemas.

/// A MySQL column type, as declared in `CREATE TABLE`.
#[derive(Clone, Copy)]
enum MySql {
    Int,
    SmallInt,
    BigInt,
    /// What MySQL makes of `BOOLEAN`; Debezium maps it to INT16 (DBZ-6225).
    TinyInt1,
    Bit1,
    Double,
    VarChar(i32),
    Char(i32),
    Text,
    Decimal(i32, i32),
    Enum(&'static [&'static str]),
    Json,
    Date,
    Timestamp(i32),
    DateTime(i32),
    Time(i32),
}

/// A Connect field type: primitive type, logical name, parameters.
type ConnectType = (&'static str, Option<&'static str>, Option<Json>);

impl MySql {
    /// Debezium's mapping under `decimal.handling.mode=precise` and
    /// `time.precision.mode=adaptive_time_microseconds`.
    fn connect(self) -> ConnectType {
        match self {
            MySql::Int => ("int32", None, None),
            MySql::SmallInt | MySql::TinyInt1 => ("int16", None, None),
            MySql::BigInt => ("int64", None, None),
            MySql::Bit1 => ("boolean", None, None),
            MySql::Double => ("float64", None, None),
            MySql::VarChar(_) | MySql::Char(_) | MySql::Text => ("string", None, None),
            MySql::Decimal(precision, scale) => (
                "bytes",
                Some("org.apache.kafka.connect.data.Decimal"),
                Some(json!({
                    "scale": scale.to_string(),
                    "connect.decimal.precision": precision.to_string(),
                })),
            ),
            MySql::Enum(values) => (
                "string",
                Some("io.debezium.data.Enum"),
                Some(json!({ "allowed": values.join(",") })),
            ),
            MySql::Json => ("string", Some("io.debezium.data.Json"), None),
            MySql::Date => ("int32", Some("io.debezium.time.Date"), None),
            MySql::Timestamp(_) => ("string", Some("io.debezium.time.ZonedTimestamp"), None),
            MySql::DateTime(fsp) if fsp <= 3 => ("int64", Some("io.debezium.time.Timestamp"), None),
            MySql::DateTime(_) => ("int64", Some("io.debezium.time.MicroTimestamp"), None),
            MySql::Time(_) => ("int64", Some("io.debezium.time.MicroTime"), None),
        }
    }

    /// Type name, `java.sql.Types` code, length and scale, as Debezium's DDL parser records them.
    fn ddl(self) -> (&'static str, i32, Option<i32>, Option<i32>) {
        match self {
            MySql::Int => ("INT", 4, None, None),
            MySql::SmallInt => ("SMALLINT", 5, None, None),
            MySql::BigInt => ("BIGINT", -5, None, None),
            MySql::TinyInt1 => ("TINYINT", 5, Some(1), None),
            MySql::Bit1 => ("BIT", -7, Some(1), None),
            MySql::Double => ("DOUBLE", 8, None, None),
            MySql::VarChar(n) => ("VARCHAR", 12, Some(n), None),
            MySql::Char(n) => ("CHAR", 1, Some(n), None),
            MySql::Text => ("TEXT", 12, None, None),
            MySql::Decimal(precision, scale) => ("DECIMAL", 3, Some(precision), Some(scale)),
            MySql::Enum(_) => ("ENUM", 1, None, None),
            MySql::Json => ("JSON", 1111, None, None),
            MySql::Date => ("DATE", 91, None, None),
            MySql::Timestamp(fsp) => ("TIMESTAMP", 2014, Some(fsp), None),
            MySql::DateTime(fsp) => ("DATETIME", 93, Some(fsp), None),
            MySql::Time(fsp) => ("TIME", 92, Some(fsp), None),
        }
    }

    fn is_character(self) -> bool {
        matches!(
            self,
            MySql::VarChar(_) | MySql::Char(_) | MySql::Text | MySql::Enum(_)
        )
    }
}

/// One column of a table whose rows are `T`s.
struct Column<T> {
    name: &'static str,
    sql: MySql,
    nullable: bool,
    /// The column's value in the converter's JSON encoding.
    get: fn(&T) -> Json,
}

fn column<T>(name: &'static str, sql: MySql, nullable: bool, get: fn(&T) -> Json) -> Column<T> {
    Column {
        name,
        sql,
        nullable,
        get,
    }
}

impl<T> Column<T> {
    fn connect_field(&self) -> Json {
        let (type_name, logical, parameters) = self.sql.connect();
        let mut field = Map::new();
        field.insert("type".into(), type_name.into());
        field.insert("optional".into(), self.nullable.into());
        if let Some(logical) = logical {
            field.insert("name".into(), logical.into());
            field.insert("version".into(), 1.into());
        }
        if let Some(parameters) = parameters {
            field.insert("parameters".into(), parameters);
        }
        field.insert("field".into(), self.name.into());
        Json::Object(field)
    }

    /// The column as a schema-change message's `tableChanges[].table.columns[]` describes it.
    fn table_change(&self, position: usize, auto_increment: bool) -> Json {
        let (type_name, jdbc_type, length, scale) = self.sql.ddl();
        let enum_values = match self.sql {
            MySql::Enum(values) => values.iter().map(|v| format!("'{v}'")).collect(),
            _ => Json::Null,
        };
        json!({
            "name": self.name,
            "jdbcType": jdbc_type,
            "nativeType": null,
            "typeName": type_name,
            "typeExpression": type_name,
            "charsetName": self.sql.is_character().then_some("utf8mb4"),
            "length": length,
            "scale": scale,
            "position": position,
            "optional": self.nullable,
            "autoIncremented": auto_increment,
            "generated": auto_increment,
            "comment": null,
            "defaultValueExpression": null,
            "enumValues": enum_values,
        })
    }
}

/// A captured table: its columns and the Connect schemas of its topic, serialized once.
struct Table<T> {
    name: &'static str,
    topic: String,
    /// Primary-key columns, which lead the column list.
    key_len: usize,
    columns: Vec<Column<T>>,
    key_schema: String,
    value_schema: String,
}

impl<T> Table<T> {
    fn new(name: &'static str, key_len: usize, columns: Vec<Column<T>>) -> Self {
        let mut table = Table {
            name,
            topic: format!("{SERVER}.{DATABASE}.{name}"),
            key_len,
            columns,
            key_schema: String::new(),
            value_schema: String::new(),
        };
        table.build_schemas();
        table
    }

    fn add_column(&mut self, column: Column<T>) {
        self.columns.push(column);
        self.build_schemas();
    }

    fn build_schemas(&mut self) {
        let fields: Vec<Json> = self.columns.iter().map(Column::connect_field).collect();
        let value_struct = |image: &str| {
            json!({
                "type": "struct",
                "fields": fields,
                "optional": true,
                "name": format!("{}.Value", self.topic),
                "field": image,
            })
        };
        self.key_schema = json!({
            "type": "struct",
            "fields": fields[..self.key_len],
            "optional": false,
            "name": format!("{}.Key", self.topic),
        })
        .to_string();
        let plain = |type_name: &str, name: &str| json!({"type": type_name, "optional": true, "field": name});
        self.value_schema = json!({
            "type": "struct",
            "fields": [
                value_struct("before"),
                value_struct("after"),
                source_schema(),
                transaction_schema(),
                {"type": "string", "optional": false, "field": "op"},
                plain("int64", "ts_ms"),
                plain("int64", "ts_us"),
                plain("int64", "ts_ns"),
            ],
            "optional": false,
            "name": format!("{}.Envelope", self.topic),
            "version": 2,
        })
        .to_string();
    }

    fn row<'a>(&'a self, row: &'a T) -> RowJson<'a, T> {
        RowJson {
            columns: &self.columns,
            row,
        }
    }

    fn key(&self, row: &T) -> Vec<u8> {
        let key = RowJson {
            columns: &self.columns[..self.key_len],
            row,
        };
        connect_message(&self.key_schema, &key)
    }
}

/// A row as the converter's JSON payload, serialized straight from the columns.
struct RowJson<'a, T> {
    columns: &'a [Column<T>],
    row: &'a T,
}

impl<T> Serialize for RowJson<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.columns.len()))?;
        for column in self.columns {
            map.serialize_entry(column.name, &(column.get)(self.row))?;
        }
        map.end()
    }
}

/// A change event's payload (`shop.shop.<table>.Envelope`).
#[derive(Serialize)]
#[serde(bound = "")]
struct Envelope<'a, T> {
    before: Option<RowJson<'a, T>>,
    after: Option<RowJson<'a, T>>,
    source: SourceInfo<'a>,
    transaction: Option<()>,
    op: &'static str,
    ts_ms: i64,
    ts_us: i64,
    ts_ns: i64,
}

/// `io.debezium.connector.mysql.Source`.
#[derive(Serialize)]
struct SourceInfo<'a> {
    version: &'static str,
    connector: &'static str,
    name: &'static str,
    ts_ms: i64,
    snapshot: &'a str,
    db: &'static str,
    sequence: Option<&'a str>,
    ts_us: i64,
    ts_ns: i64,
    table: &'a str,
    server_id: i64,
    gtid: Option<&'a str>,
    file: &'static str,
    pos: u64,
    row: usize,
    thread: Option<i64>,
    query: Option<&'a str>,
}

fn field(type_name: &str, optional: bool, name: &str) -> Json {
    json!({"type": type_name, "optional": optional, "field": name})
}

/// `io.debezium.connector.mysql.Source`, as Debezium 3.2 declares it.
fn source_schema() -> Json {
    json!({
        "type": "struct",
        "fields": [
            field("string", false, "version"),
            field("string", false, "connector"),
            field("string", false, "name"),
            field("int64", false, "ts_ms"),
            {
                "type": "string",
                "optional": true,
                "name": "io.debezium.data.Enum",
                "version": 1,
                "parameters": {
                    "allowed": "true,first,first_in_data_collection,last_in_data_collection,last,false,incremental",
                },
                "default": "false",
                "field": "snapshot",
            },
            field("string", false, "db"),
            field("string", true, "sequence"),
            field("int64", true, "ts_us"),
            field("int64", true, "ts_ns"),
            field("string", true, "table"),
            field("int64", false, "server_id"),
            field("string", true, "gtid"),
            field("string", false, "file"),
            field("int64", false, "pos"),
            field("int32", false, "row"),
            field("int64", true, "thread"),
            field("string", true, "query"),
        ],
        "optional": false,
        "name": "io.debezium.connector.mysql.Source",
        "version": 1,
        "field": "source",
    })
}

fn transaction_schema() -> Json {
    json!({
        "type": "struct",
        "fields": [
            field("string", false, "id"),
            field("int64", false, "total_order"),
            field("int64", false, "data_collection_order"),
        ],
        "optional": true,
        "name": "event.block",
        "version": 1,
        "field": "transaction",
    })
}

/// `io.debezium.connector.mysql.SchemaChangeValue`, with its `tableChanges` structure.
fn schema_change_schema() -> Json {
    let strings = |optional: bool, name: &str| json!({"type": "array", "items": {"type": "string", "optional": false}, "optional": optional, "field": name});
    let column = json!({
        "type": "struct",
        "fields": [
            field("string", false, "name"),
            field("int32", false, "jdbcType"),
            field("int32", true, "nativeType"),
            field("string", false, "typeName"),
            field("string", true, "typeExpression"),
            field("string", true, "charsetName"),
            field("int32", true, "length"),
            field("int32", true, "scale"),
            field("int32", false, "position"),
            field("boolean", true, "optional"),
            field("boolean", true, "autoIncremented"),
            field("boolean", true, "generated"),
            field("string", true, "comment"),
            field("string", true, "defaultValueExpression"),
            strings(true, "enumValues"),
        ],
        "optional": false,
        "name": "io.debezium.connector.schema.Column",
        "version": 1,
    });
    let table = json!({
        "type": "struct",
        "fields": [
            field("string", true, "defaultCharsetName"),
            strings(true, "primaryKeyColumnNames"),
            {"type": "array", "items": column, "optional": false, "field": "columns"},
            field("string", true, "comment"),
        ],
        "optional": true,
        "name": "io.debezium.connector.schema.Table",
        "version": 1,
        "field": "table",
    });
    json!({
        "type": "struct",
        "fields": [
            source_schema(),
            field("int64", false, "ts_ms"),
            field("string", true, "databaseName"),
            field("string", true, "schemaName"),
            field("string", true, "ddl"),
            {
                "type": "array",
                "items": {
                    "type": "struct",
                    "fields": [field("string", false, "type"), field("string", false, "id"), table],
                    "optional": false,
                    "name": "io.debezium.connector.schema.Change",
                    "version": 1,
                },
                "optional": false,
                "field": "tableChanges",
            },
        ],
        "optional": false,
        "name": "io.debezium.connector.mysql.SchemaChangeValue",
        "version": 1,
    })
}

/// A single-field key struct (schema-change and heartbeat topics).
fn single_key(schema_name: &str, field_name: &str, value: &str) -> Vec<u8> {
    let schema = json!({
        "type": "struct",
        "fields": [field("string", false, field_name)],
        "optional": false,
        "name": schema_name,
    });
    connect_message(&schema.to_string(), &json!({ field_name: value }))
}

/// The JSON converter's `schemas.enable=true` framing, around a pre-serialized schema.
fn connect_message(schema: &str, payload: &impl Serialize) -> Vec<u8> {
    let mut out = Vec::with_capacity(schema.len() + 1_024);
    out.extend_from_slice(br#"{"schema":"#);
    out.extend_from_slice(schema.as_bytes());
    out.extend_from_slice(br#","payload":"#);
    serde_json::to_writer(&mut out, payload).expect("plain data always serializes to JSON");
    out.push(b'}');
    out
}

// ---------------------------------------------------------------------------------------------
// The shop's rows, and how each column is encoded.

#[derive(Clone)]
struct Customer {
    id: i32,
    email: String,
    full_name: String,
    phone: Option<String>,
    country: &'static str,
    /// Days since 1970-01-01.
    birth_date: Option<i32>,
    vip: bool,
    balance_cents: i64,
    status: &'static str,
    prefs: Option<String>,
    password_hash: String,
    /// Microseconds since the epoch.
    created_at: i64,
    loyalty_tier: Option<&'static str>,
}

#[derive(Clone)]
struct Order {
    id: i64,
    customer_id: i32,
    status: &'static str,
    total_cents: i64,
    /// DATETIME: wall-clock microseconds, encoded as if UTC.
    placed_at: i64,
    /// Microseconds since midnight.
    pickup_time: Option<i64>,
    note: Option<&'static str>,
}

#[derive(Clone)]
struct OrderLine {
    order_id: i64,
    line_no: i16,
    sku: String,
    qty: i32,
    unit_price_cents: i64,
    discount: f64,
    gift_wrap: bool,
    /// DATETIME(3): wall-clock milliseconds, encoded as if UTC.
    updated_at: i64,
}

const CUSTOMER_STATUS: &[&str] = &["active", "suspended", "closed"];
const ORDER_STATUS: &[&str] = &["new", "paid", "shipped", "cancelled"];

fn customer_columns() -> Vec<Column<Customer>> {
    vec![
        column("id", MySql::Int, false, |c| c.id.into()),
        column("email", MySql::VarChar(255), false, |c| {
            c.email.as_str().into()
        }),
        column("full_name", MySql::VarChar(255), false, |c| {
            c.full_name.as_str().into()
        }),
        column("phone", MySql::VarChar(32), true, |c| {
            c.phone.as_deref().into()
        }),
        column("country", MySql::Char(2), false, |c| c.country.into()),
        column("birth_date", MySql::Date, true, |c| c.birth_date.into()),
        column("vip", MySql::TinyInt1, false, |c| i16::from(c.vip).into()),
        column("balance", MySql::Decimal(10, 2), false, |c| {
            decimal(c.balance_cents)
        }),
        column("status", MySql::Enum(CUSTOMER_STATUS), false, |c| {
            c.status.into()
        }),
        column("prefs", MySql::Json, true, |c| c.prefs.as_deref().into()),
        column("password_hash", MySql::Char(64), false, |c| {
            c.password_hash.as_str().into()
        }),
        column("created_at", MySql::Timestamp(6), false, |c| {
            zoned_timestamp(c.created_at)
        }),
    ]
}

fn loyalty_tier_column() -> Column<Customer> {
    column("loyalty_tier", MySql::VarChar(16), true, |c| {
        c.loyalty_tier.into()
    })
}

fn order_columns() -> Vec<Column<Order>> {
    vec![
        column("id", MySql::BigInt, false, |o| o.id.into()),
        column("customer_id", MySql::Int, false, |o| o.customer_id.into()),
        column("status", MySql::Enum(ORDER_STATUS), false, |o| {
            o.status.into()
        }),
        column("total", MySql::Decimal(12, 2), false, |o| {
            decimal(o.total_cents)
        }),
        column("placed_at", MySql::DateTime(6), false, |o| {
            o.placed_at.into()
        }),
        column("pickup_time", MySql::Time(6), true, |o| {
            o.pickup_time.into()
        }),
        column("note", MySql::Text, true, |o| o.note.into()),
    ]
}

fn order_line_columns() -> Vec<Column<OrderLine>> {
    vec![
        column("order_id", MySql::BigInt, false, |l| l.order_id.into()),
        column("line_no", MySql::SmallInt, false, |l| l.line_no.into()),
        column("sku", MySql::VarChar(32), false, |l| l.sku.as_str().into()),
        column("qty", MySql::Int, false, |l| l.qty.into()),
        column("unit_price", MySql::Decimal(10, 2), false, |l| {
            decimal(l.unit_price_cents)
        }),
        column("discount", MySql::Double, false, |l| l.discount.into()),
        column("gift_wrap", MySql::Bit1, false, |l| l.gift_wrap.into()),
        column("updated_at", MySql::DateTime(3), false, |l| {
            l.updated_at.into()
        }),
    ]
}

/// Connect's `Decimal` encoding: the unscaled value as minimal big-endian two's complement,
/// base64 (as Java's `BigInteger.toByteArray`).
fn decimal(unscaled: i64) -> Json {
    let bytes = unscaled.to_be_bytes();
    let redundant = bytes
        .windows(2)
        .take_while(|w| (w[0] == 0x00 && w[1] & 0x80 == 0) || (w[0] == 0xFF && w[1] & 0x80 != 0))
        .count();
    BASE64.encode(&bytes[redundant..]).into()
}

/// `io.debezium.time.ZonedTimestamp` of a TIMESTAMP(6): UTC, exactly six fraction digits.
fn zoned_timestamp(micros: i64) -> Json {
    chrono::DateTime::from_timestamp_micros(micros).map_or(Json::Null, |t| {
        t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string().into()
    })
}

// ---------------------------------------------------------------------------------------------
// Writing records: Kafka placement, binlog positions, the clock.

/// Kafka's default partitioner: murmur2 of the key bytes, made non-negative, modulo partitions.
fn partition_for(key: &[u8]) -> i32 {
    (murmur2(key) & 0x7fff_ffff) as i32 % PARTITIONS
}

/// Kafka's `Utils.murmur2`.
fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    let mut h = 0x9747_b28c ^ data.len() as u32;
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for chunk in chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    if !tail.is_empty() {
        for (i, &b) in tail.iter().enumerate() {
            h ^= u32::from(b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^ (h >> 15)
}

/// What happened to a row.
enum Change<'a, T> {
    /// A snapshot read, with its `source.snapshot` marker.
    Read(&'a T, &'static str),
    Insert(&'a T),
    Update(&'a T, &'a T),
    Delete(&'a T),
}

/// The binlog coordinates of the transaction being written.
struct Transaction {
    gtid: String,
    thread: i64,
}

/// Appends records, keeping offsets, the binlog position and the clock.
struct Writer {
    records: Vec<KafkaRecord>,
    offsets: HashMap<(String, i32), i64>,
    /// The simulated time, in microseconds.
    now: i64,
    /// Next binlog position.
    pos: u64,
    gtid_seq: u64,
    transaction: Option<Transaction>,
    changes: usize,
}

impl Writer {
    fn new() -> Self {
        Writer {
            records: Vec::new(),
            offsets: HashMap::new(),
            now: START_US,
            pos: 1_573,
            gtid_seq: 4_120,
            transaction: None,
            changes: 0,
        }
    }

    fn push(&mut self, topic: &str, partition: i32, key: Vec<u8>, value: Option<Vec<u8>>) {
        let timestamp_ms = Some(self.binlog_ms());
        let next = self
            .offsets
            .entry((topic.to_string(), partition))
            .or_insert(0);
        self.records.push(KafkaRecord {
            topic: topic.into(),
            partition,
            offset: *next,
            timestamp_ms,
            key: Some(key),
            value,
        });
        *next += 1;
    }

    /// The binlog's event time: MySQL records whole seconds.
    fn binlog_ms(&self) -> i64 {
        self.now.div_euclid(1_000_000) * 1_000
    }

    /// Starts a binlog transaction `elapsed_us` after the previous one.
    fn begin(&mut self, elapsed_us: i64, thread: i64) {
        self.now += elapsed_us;
        self.gtid_seq += 1;
        self.transaction = Some(Transaction {
            gtid: format!("{SERVER_UUID}:{}", self.gtid_seq),
            thread,
        });
    }

    /// The position of the next rows event (one statement), given its size in bytes.
    fn statement(&mut self, size: u64) -> u64 {
        let pos = self.pos;
        self.pos += size;
        pos
    }

    /// `source`, for an event at `pos`/`row` (snapshot reads carry the snapshot's position).
    fn source<'a>(
        &'a self,
        table: &'a str,
        snapshot: &'a str,
        pos: u64,
        row: usize,
    ) -> SourceInfo<'a> {
        let ts_ms = self.binlog_ms();
        // Snapshot reads come before any binlog transaction.
        let streaming = self.transaction.as_ref();
        SourceInfo {
            version: DEBEZIUM_VERSION,
            connector: "mysql",
            name: SERVER,
            ts_ms,
            snapshot,
            db: DATABASE,
            sequence: None,
            ts_us: ts_ms * 1_000,
            ts_ns: ts_ms * 1_000_000,
            table,
            server_id: if streaming.is_some() { SERVER_ID } else { 0 },
            gtid: streaming.map(|t| t.gtid.as_str()),
            file: BINLOG_FILE,
            pos,
            row,
            thread: streaming.map(|t| t.thread),
            query: None,
        }
    }

    /// Writes one change event (and, for a delete, its tombstone). `lag_us` is how long after
    /// the change Debezium processed it.
    fn change<T>(
        &mut self,
        table: &Table<T>,
        change: Change<T>,
        pos: u64,
        row: usize,
        lag_us: i64,
    ) {
        let (op, snapshot, before, after, keyed) = match change {
            Change::Read(row, marker) => ("r", marker, None, Some(row), row),
            Change::Insert(row) => ("c", "false", None, Some(row), row),
            Change::Update(before, after) => ("u", "false", Some(before), Some(after), after),
            Change::Delete(row) => ("d", "false", Some(row), None, row),
        };
        let processed = self.now + lag_us;
        let payload = Envelope {
            before: before.map(|r| table.row(r)),
            after: after.map(|r| table.row(r)),
            source: self.source(table.name, snapshot, pos, row),
            transaction: None,
            op,
            ts_ms: processed.div_euclid(1_000),
            ts_us: processed,
            ts_ns: processed * 1_000,
        };
        let key = table.key(keyed);
        let partition = partition_for(&key);
        let value = connect_message(&table.value_schema, &payload);
        self.changes += 1;
        if op == "d" {
            self.push(&table.topic, partition, key.clone(), Some(value));
            self.push(&table.topic, partition, key, None);
        } else {
            self.push(&table.topic, partition, key, Some(value));
        }
    }

    fn heartbeat(&mut self) {
        let schema = json!({
            "type": "struct",
            "fields": [field("int64", false, "ts_ms")],
            "optional": false,
            "name": "io.debezium.connector.common.Heartbeat",
        });
        let value = connect_message(&schema.to_string(), &json!({ "ts_ms": self.now / 1_000 }));
        let key = single_key(
            "io.debezium.connector.common.ServerNameKey",
            "serverName",
            SERVER,
        );
        self.push(HEARTBEAT_TOPIC, 0, key, Some(value));
    }

    fn schema_change(&mut self, table: &Table<Customer>, ddl: &str, pos: u64) {
        let columns: Vec<Json> = table
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| c.table_change(i + 1, i < table.key_len))
            .collect();
        let primary_key: Vec<&str> = table.columns[..table.key_len]
            .iter()
            .map(|c| c.name)
            .collect();
        let payload = json!({
            "source": self.source(table.name, "false", pos, 0),
            "ts_ms": self.now / 1_000,
            "databaseName": DATABASE,
            "schemaName": null,
            "ddl": ddl,
            "tableChanges": [{
                "type": "ALTER",
                "id": format!(r#""{DATABASE}"."{}""#, table.name),
                "table": {
                    "defaultCharsetName": "utf8mb4",
                    "primaryKeyColumnNames": primary_key,
                    "columns": columns,
                    "comment": null,
                },
            }],
        });
        let value = connect_message(&schema_change_schema().to_string(), &payload);
        let key = single_key(
            "io.debezium.connector.mysql.SchemaChangeKey",
            "databaseName",
            DATABASE,
        );
        self.push(SERVER, 0, key, Some(value));
    }
}

// ---------------------------------------------------------------------------------------------
// The simulation: a snapshot of the initial rows, then a stream of transactions.

/// An order and its lines (`None` where a line was deleted).
struct OrderEntry {
    order: Order,
    lines: Vec<Option<OrderLine>>,
}

/// The simulated database, its tables' topics, and the records written so far.
struct Shop {
    rng: fastrand::Rng,
    out: Writer,
    customers_table: Table<Customer>,
    orders_table: Table<Order>,
    lines_table: Table<OrderLine>,
    /// Customer `id` is at index `id - 1`; `None` once deleted.
    customers: Vec<Option<Customer>>,
    /// Order `id` is at index `id - FIRST_ORDER_ID`.
    orders: Vec<Option<OrderEntry>>,
    altered: bool,
}

/// Display name, e-mail local part, country, phone prefix.
const PEOPLE: &[(&str, &str, &str, &str)] = &[
    ("Zoë Müller", "zoe.mueller", "DE", "+49"),
    ("李雷", "li.lei", "CN", "+86"),
    ("Łukasz Kowalski", "lukasz.kowalski", "PL", "+48"),
    ("Ana García", "ana.garcia", "ES", "+34"),
    ("Søren Ødegaard", "soren.odegaard", "DK", "+45"),
    ("Chloé Dubois", "chloe.dubois", "FR", "+33"),
    ("Nguyễn Thị Mai", "mai.nguyen", "VN", "+84"),
    ("韩梅梅", "han.meimei", "CN", "+86"),
    ("Björn Andersson", "bjorn.andersson", "SE", "+46"),
    ("João Silva", "joao.silva", "BR", "+55"),
    ("Aylin Yılmaz", "aylin.yilmaz", "TR", "+90"),
    ("Priya Sharma", "priya.sharma", "IN", "+91"),
    ("Olivia Smith", "olivia.smith", "US", "+1"),
    ("Mateo Rossi", "mateo.rossi", "IT", "+39"),
    ("田中太郎", "taro.tanaka", "JP", "+81"),
    ("Ólafur Jónsson", "olafur.jonsson", "IS", "+354"),
    ("Zoltán Kovács", "zoltan.kovacs", "HU", "+36"),
    ("Liam O'Brien", "liam.obrien", "IE", "+353"),
    ("Дмитрий Иванов", "dmitry.ivanov", "RU", "+7"),
    ("Fatima Al-Sayed", "fatima.alsayed", "EG", "+20"),
];

const LANGUAGES: &[&str] = &["de", "en", "fr", "pl", "zh", "ja"];
const CATEGORIES: &[&str] = &["books", "garden", "kitchen", "toys", "outdoor"];
const NOTES: &[&str] = &[
    "Leave at the door",
    "Bitte bei Müller klingeln",
    "请放在门口",
    "Entregar después de las 18h",
    "Zadzwoń przed dostawą",
    "Gift — no invoice in the box",
];
const DISCOUNTS: &[f64] = &[0.0, 0.0, 0.0, 0.05, 0.1, 0.15, 0.25];
const LOYALTY_TIERS: &[&str] = &["bronze", "silver", "gold", "platinum"];

impl Shop {
    fn new(seed: u64) -> Self {
        Shop {
            rng: fastrand::Rng::with_seed(seed),
            out: Writer::new(),
            customers_table: Table::new("customers", 1, customer_columns()),
            orders_table: Table::new("orders", 1, order_columns()),
            lines_table: Table::new("order_lines", 2, order_line_columns()),
            customers: Vec::new(),
            orders: Vec::new(),
            altered: false,
        }
    }

    fn run(mut self, total_changes: usize) -> Vec<KafkaRecord> {
        self.seed_rows();
        self.snapshot();
        let alter_at = (self.out.changes + total_changes) / 2;
        let mut next_heartbeat = self.out.now + HEARTBEAT_INTERVAL_US;
        while self.out.changes < total_changes {
            if !self.altered && self.out.changes >= alter_at {
                self.alter_customers();
            }
            self.step();
            if self.out.now >= next_heartbeat {
                self.out.heartbeat();
                next_heartbeat += HEARTBEAT_INTERVAL_US;
            }
        }
        self.out.records
    }

    // -- Row generation --------------------------------------------------------------------

    fn seed_rows(&mut self) {
        for _ in 0..SNAPSHOT_CUSTOMERS {
            let created_at = START_US - self.rng.i64(DAY_US..3 * 365 * DAY_US);
            let customer = self.new_customer(created_at);
            self.customers.push(Some(customer));
        }
        self.showcase_customers();
        for _ in 0..SNAPSHOT_ORDERS {
            let placed_at = START_US - self.rng.i64(0..365 * DAY_US);
            let status = ORDER_STATUS[self.weighted(&[15, 15, 55, 15])];
            let entry = self.new_order(placed_at, status);
            self.orders.push(Some(entry));
        }
    }

    /// The first three customers have fixed values, so tests and docs can point at them.
    fn showcase_customers(&mut self) {
        let showcase = [
            Customer {
                phone: Some("+49 151 2345678".into()),
                birth_date: Some(5_523), // 1985-02-14
                vip: true,
                balance_cents: -1_250,
                prefs: Some(r#"{"newsletter":true,"language":"de"}"#.into()),
                created_at: 1_699_171_964_123_456, // 2023-11-05T08:12:44.123456Z
                ..identity(1, 0, "")
            },
            Customer {
                balance_cents: 5,
                created_at: 1_705_716_184_000_001, // 2024-01-20T02:03:04.000001Z
                ..identity(2, 1, "")
            },
            Customer {
                phone: Some("+48 601 234567".into()),
                birth_date: Some(-2_712), // 1962-07-30
                balance_cents: 100_000,
                status: "suspended",
                prefs: Some(r#"{"newsletter":false,"categories":["books","garden"]}"#.into()),
                created_at: 1_654_041_600_000_000, // 2022-06-01T00:00:00Z
                ..identity(3, 2, "")
            },
        ];
        for (slot, customer) in self.customers.iter_mut().zip(showcase) {
            *slot = Some(customer);
        }
    }

    fn new_customer(&mut self, created_at: i64) -> Customer {
        let id = self.customers.len() as i32 + 1;
        let person = self.rng.usize(..PEOPLE.len());
        let dial = PEOPLE[person].3;
        Customer {
            phone: self.rng.bool().then(|| self.phone(dial)),
            // 1950 to 2005: some before the epoch.
            birth_date: (self.rng.u8(..10) < 8).then(|| self.rng.i32(-7_305..12_784)),
            vip: self.rng.u8(..10) == 0,
            balance_cents: if self.rng.u8(..10) == 0 {
                -self.rng.i64(1..50_000)
            } else {
                self.rng.i64(0..500_000)
            },
            status: CUSTOMER_STATUS[self.weighted(&[90, 7, 3])],
            prefs: self.rng.bool().then(|| self.prefs()),
            created_at,
            ..identity(id, person, &id.to_string())
        }
    }

    fn phone(&mut self, dial: &str) -> String {
        format!(
            "{dial} {} {}",
            self.rng.u32(100..1_000),
            self.rng.u32(100_000..10_000_000)
        )
    }

    fn prefs(&mut self) -> String {
        let categories: Vec<&str> = CATEGORIES
            .iter()
            .copied()
            .filter(|_| self.rng.u8(..3) == 0)
            .collect();
        json!({
            "newsletter": self.rng.bool(),
            "language": LANGUAGES[self.rng.usize(..LANGUAGES.len())],
            "categories": categories,
        })
        .to_string()
    }

    fn new_order(&mut self, placed_at: i64, status: &'static str) -> OrderEntry {
        let id = FIRST_ORDER_ID + self.orders.len() as i64;
        let lines: Vec<_> = (1..=self.rng.i16(1..=4))
            .map(|line_no| Some(self.new_line(id, line_no, placed_at / 1_000)))
            .collect();
        let total_cents = lines.iter().flatten().map(line_total).sum();
        OrderEntry {
            order: Order {
                id,
                customer_id: self.live_customer_id(),
                status,
                total_cents,
                placed_at,
                pickup_time: (self.rng.u8(..4) == 0).then(|| self.pickup_time()),
                note: (self.rng.u8(..5) == 0).then(|| NOTES[self.rng.usize(..NOTES.len())]),
            },
            lines,
        }
    }

    fn new_line(&mut self, order_id: i64, line_no: i16, updated_at: i64) -> OrderLine {
        OrderLine {
            order_id,
            line_no,
            sku: format!("SKU-{:05}", self.rng.u32(1..2_000)),
            qty: self.rng.i32(1..=5),
            unit_price_cents: self.rng.i64(99..20_000),
            discount: DISCOUNTS[self.rng.usize(..DISCOUNTS.len())],
            gift_wrap: self.rng.u8(..10) == 0,
            updated_at,
        }
    }

    /// Between 08:00 and 20:00, to the microsecond.
    fn pickup_time(&mut self) -> i64 {
        self.rng.i64(8 * 3_600_000_000..20 * 3_600_000_000)
    }

    /// An index drawn with the given relative weights.
    fn weighted(&mut self, weights: &[u32]) -> usize {
        let mut draw = self.rng.u32(..weights.iter().sum::<u32>());
        for (i, &w) in weights.iter().enumerate() {
            if draw < w {
                return i;
            }
            draw -= w;
        }
        weights.len() - 1
    }

    /// A random index of a `Some` slot: rows are rarely deleted, so a few draws find one.
    fn pick<T>(rng: &mut fastrand::Rng, slots: &[Option<T>]) -> Option<usize> {
        if slots.is_empty() {
            return None;
        }
        (0..64)
            .map(|_| rng.usize(..slots.len()))
            .find(|&i| slots[i].is_some())
    }

    fn live_customer_id(&mut self) -> i32 {
        Self::pick(&mut self.rng, &self.customers).map_or(1, |i| i as i32 + 1)
    }

    // -- The snapshot ----------------------------------------------------------------------

    /// Reads every table in name order, as Debezium's initial snapshot does.
    fn snapshot(&mut self) {
        let customers: Vec<&Customer> = self.customers.iter().flatten().collect();
        let lines: Vec<&OrderLine> = (self.orders.iter().flatten())
            .flat_map(|e| e.lines.iter().flatten())
            .collect();
        let orders: Vec<&Order> = self.orders.iter().flatten().map(|e| &e.order).collect();
        let out = &mut self.out;
        let rng = &mut self.rng;
        snapshot_table(out, rng, &self.customers_table, &customers, true, false);
        snapshot_table(out, rng, &self.lines_table, &lines, false, false);
        snapshot_table(out, rng, &self.orders_table, &orders, false, true);
    }

    // -- Streaming -------------------------------------------------------------------------

    fn begin(&mut self) {
        let elapsed = self.rng.i64(100_000..600_000);
        let thread = self.rng.i64(11..=18);
        self.out.begin(elapsed, thread);
    }

    fn lag(&mut self) -> i64 {
        self.rng.i64(2_000..40_000)
    }

    /// One statement's worth of binlog bytes for `rows` rows.
    fn statement(&mut self, rows: usize) -> u64 {
        let size = 60 + rows as u64 * self.rng.u64(80..400);
        self.out.statement(size)
    }

    /// One application transaction, chosen at random.
    fn step(&mut self) {
        match self.weighted(&[6, 14, 14, 28, 22, 6, 2, 1]) {
            0 => self.insert_customer(),
            1 => self.update_customer(),
            2 => self.insert_order(),
            3 => self.advance_order(),
            4 => self.update_line(),
            5 => self.delete_line(),
            6 => self.delete_order(),
            _ => self.delete_customer(),
        }
    }

    fn insert_customer(&mut self) {
        self.begin();
        let mut customer = self.new_customer(self.out.now);
        if self.altered && self.rng.bool() {
            customer.loyalty_tier = Some(LOYALTY_TIERS[0]);
        }
        self.write_customer(Change::Insert(&customer));
        self.customers.push(Some(customer));
    }

    /// Sometimes the same row twice in a row, as an application's read-modify-write would.
    fn update_customer(&mut self) {
        let Some(i) = Self::pick(&mut self.rng, &self.customers) else {
            return;
        };
        let times = 1 + usize::from(self.rng.u8(..4) == 0);
        for _ in 0..times {
            let Some(before) = self.customers[i].clone() else {
                return;
            };
            let mut after = before.clone();
            self.mutate_customer(&mut after);
            self.begin();
            self.write_customer(Change::Update(&before, &after));
            self.customers[i] = Some(after);
        }
    }

    fn mutate_customer(&mut self, c: &mut Customer) {
        match self.rng.u8(..if self.altered { 7 } else { 6 }) {
            0 => c.balance_cents += self.rng.i64(-20_000..20_000),
            // Set and clear NULLs.
            1 => {
                c.phone = if c.phone.is_some() {
                    None
                } else {
                    Some(self.phone("+49"))
                }
            }
            2 => {
                c.prefs = if c.prefs.is_some() {
                    None
                } else {
                    Some(self.prefs())
                }
            }
            3 => c.vip = !c.vip,
            4 => {
                c.status = if c.status == "active" {
                    "suspended"
                } else {
                    "active"
                }
            }
            5 => {
                c.email = match c.email.strip_suffix("@example.com") {
                    Some(local) => format!("{local}@example.org"),
                    None => c.email.replace("@example.org", "@example.com"),
                };
                c.password_hash = password_hash(&c.email);
            }
            _ => c.loyalty_tier = Some(LOYALTY_TIERS[self.rng.usize(..LOYALTY_TIERS.len())]),
        }
    }

    fn delete_customer(&mut self) {
        let Some(i) = Self::pick(&mut self.rng, &self.customers) else {
            return;
        };
        let Some(customer) = self.customers[i].take() else {
            return;
        };
        self.begin();
        self.write_customer(Change::Delete(&customer));
        // A customer who closes the account and is restored under the same id.
        if self.rng.bool() {
            self.begin();
            self.write_customer(Change::Insert(&customer));
            self.customers[i] = Some(customer);
        }
    }

    fn write_customer(&mut self, change: Change<Customer>) {
        let pos = self.statement(1);
        let lag = self.lag();
        self.out.change(&self.customers_table, change, pos, 0, lag);
    }

    fn insert_order(&mut self) {
        self.begin();
        let entry = self.new_order(self.out.now, "new");
        let pos = self.statement(1);
        let lag = self.lag();
        self.out.change(
            &self.orders_table,
            Change::Insert(&entry.order),
            pos,
            0,
            lag,
        );
        // All lines in one multi-row INSERT: one binlog event, a row index per line.
        let pos = self.statement(entry.lines.len());
        for (row, line) in entry.lines.iter().flatten().enumerate() {
            let lag = self.lag();
            self.out
                .change(&self.lines_table, Change::Insert(line), pos, row, lag);
        }
        self.orders.push(Some(entry));
    }

    /// Moves an order along `new → paid → shipped` (or cancels it); settled orders get their
    /// pickup time or note edited, setting or clearing NULLs.
    fn advance_order(&mut self) {
        let Some(i) = Self::pick(&mut self.rng, &self.orders) else {
            return;
        };
        let Some(before) = self.orders[i].as_ref().map(|e| e.order.clone()) else {
            return;
        };
        let mut after = before.clone();
        let cancel = self.rng.u8(..10) == 0;
        match before.status {
            "new" | "paid" if cancel => after.status = "cancelled",
            "new" => after.status = "paid",
            "paid" => {
                after.status = "shipped";
                after.pickup_time = Some(self.pickup_time());
            }
            _ if self.rng.bool() => after.note = after.note.xor(Some(NOTES[0])),
            _ => after.pickup_time = after.pickup_time.xor(Some(self.pickup_time())),
        }
        self.begin();
        let pos = self.statement(1);
        let lag = self.lag();
        self.out.change(
            &self.orders_table,
            Change::Update(&before, &after),
            pos,
            0,
            lag,
        );
        if let Some(entry) = self.orders[i].as_mut() {
            entry.order = after;
        }
    }

    /// A live line, as (order index, line index).
    fn pick_line(&mut self) -> Option<(usize, usize)> {
        let i = Self::pick(&mut self.rng, &self.orders)?;
        let lines = &self.orders[i].as_ref()?.lines;
        Some((i, Self::pick(&mut self.rng, lines)?))
    }

    fn update_line(&mut self) {
        let Some((i, j)) = self.pick_line() else {
            return;
        };
        let Some(before) = self.orders[i].as_ref().and_then(|e| e.lines[j].clone()) else {
            return;
        };
        let mut after = before.clone();
        match self.rng.u8(..3) {
            0 => after.qty = self.rng.i32(1..=9),
            1 => after.discount = DISCOUNTS[self.rng.usize(..DISCOUNTS.len())],
            _ => after.gift_wrap = !after.gift_wrap,
        }
        self.begin();
        after.updated_at = self.out.now / 1_000;
        let pos = self.statement(1);
        let lag = self.lag();
        self.out.change(
            &self.lines_table,
            Change::Update(&before, &after),
            pos,
            0,
            lag,
        );
        if let Some(entry) = self.orders[i].as_mut() {
            entry.lines[j] = Some(after);
        }
    }

    /// Deletes a line; sometimes the application re-adds it under the same key right after.
    fn delete_line(&mut self) {
        let Some((i, j)) = self.pick_line() else {
            return;
        };
        let Some(line) = self.orders[i].as_mut().and_then(|e| e.lines[j].take()) else {
            return;
        };
        self.begin();
        let pos = self.statement(1);
        let lag = self.lag();
        self.out
            .change(&self.lines_table, Change::Delete(&line), pos, 0, lag);
        if self.rng.u8(..3) == 0 {
            self.begin();
            let mut again = line;
            again.qty = self.rng.i32(1..=5);
            again.updated_at = self.out.now / 1_000;
            let pos = self.statement(1);
            let lag = self.lag();
            self.out
                .change(&self.lines_table, Change::Insert(&again), pos, 0, lag);
            if let Some(entry) = self.orders[i].as_mut() {
                entry.lines[j] = Some(again);
            }
        }
    }

    /// Deletes an order and its lines in one transaction, lines first.
    fn delete_order(&mut self) {
        let Some(i) = Self::pick(&mut self.rng, &self.orders) else {
            return;
        };
        let Some(entry) = self.orders[i].take() else {
            return;
        };
        self.begin();
        let pos = self.statement(entry.lines.len());
        for (row, line) in entry.lines.iter().flatten().enumerate() {
            let lag = self.lag();
            self.out
                .change(&self.lines_table, Change::Delete(line), pos, row, lag);
        }
        let pos = self.statement(1);
        let lag = self.lag();
        self.out.change(
            &self.orders_table,
            Change::Delete(&entry.order),
            pos,
            0,
            lag,
        );
    }

    fn alter_customers(&mut self) {
        self.begin();
        self.customers_table.add_column(loyalty_tier_column());
        let pos = self.statement(1);
        self.out
            .schema_change(&self.customers_table, ALTER_DDL, pos);
        self.altered = true;
    }
}

/// Emits a snapshot's reads of one table with Debezium's `source.snapshot` markers.
fn snapshot_table<T>(
    out: &mut Writer,
    rng: &mut fastrand::Rng,
    table: &Table<T>,
    rows: &[&T],
    first_table: bool,
    last_table: bool,
) {
    let snapshot_pos = out.pos;
    for (i, row) in rows.iter().enumerate() {
        let (first, last) = (i == 0, i + 1 == rows.len());
        let marker = if first && first_table {
            "first"
        } else if last && last_table {
            "last"
        } else if first {
            "first_in_data_collection"
        } else if last {
            "last_in_data_collection"
        } else {
            "true"
        };
        out.now += rng.i64(200..1_500);
        let lag = rng.i64(1_000..5_000);
        out.change(table, Change::Read(row, marker), snapshot_pos, 0, lag);
    }
}

/// Customer `id`, named after `PEOPLE[person]`, with empty details.
fn identity(id: i32, person: usize, email_suffix: &str) -> Customer {
    let (full_name, local, country, _) = PEOPLE[person];
    let email = format!("{local}{email_suffix}@example.com");
    Customer {
        id,
        password_hash: password_hash(&email),
        email,
        full_name: full_name.into(),
        phone: None,
        country,
        birth_date: None,
        vip: false,
        balance_cents: 0,
        status: "active",
        prefs: None,
        created_at: 0,
        loyalty_tier: None,
    }
}

fn password_hash(email: &str) -> String {
    hex::encode(Sha256::digest(email.as_bytes()))
}

fn line_total(line: &OrderLine) -> i64 {
    (line.unit_price_cents as f64 * f64::from(line.qty) * (1.0 - line.discount)).round() as i64
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap, HashSet};
    use std::sync::OnceLock;

    use super::*;
    use crate::event::{ChangeEvent, Operation, Row, Timestamp, Value};
    use crate::pipeline::decode::{Decoded, SchemaChange, decode};

    /// The stream and each record decoded, generated once for all tests.
    fn stream() -> &'static [(KafkaRecord, Decoded)] {
        static STREAM: OnceLock<Vec<(KafkaRecord, Decoded)>> = OnceLock::new();
        STREAM.get_or_init(|| {
            sample_records()
                .into_iter()
                .map(|record| {
                    let decoded = decode(&record).unwrap_or_else(|e| {
                        panic!(
                            "{}/{}/{}: {e}",
                            record.topic, record.partition, record.offset
                        )
                    });
                    (record, decoded)
                })
                .collect()
        })
    }

    fn changes() -> impl Iterator<Item = &'static ChangeEvent> {
        stream().iter().filter_map(|(_, decoded)| match decoded {
            Decoded::Change(event) => Some(event),
            _ => None,
        })
    }

    fn column<'a>(row: &'a Row, name: &str) -> &'a Value {
        &row.iter().find(|c| c.name == name).unwrap().value
    }

    /// Benchmarks rely on a seed and a size naming exactly one stream.
    #[test]
    fn workloads_are_deterministic_per_seed_and_size() {
        let a = workload(7, 20_000);
        assert_eq!(a, workload(7, 20_000));
        assert_ne!(a, workload(8, 20_000));
        let changes = a
            .iter()
            .filter(|r| r.topic.starts_with("shop.shop.") && r.value.is_some())
            .count();
        // The last simulated transaction may carry a few changes past the target.
        assert!((20_000..20_010).contains(&changes), "{changes}");
    }

    #[test]
    fn is_deterministic() {
        let records = sample_records();
        assert_eq!(records, sample_records());
        assert_eq!(records.len(), stream().len());
    }

    #[test]
    fn murmur2_matches_kafka() {
        // Values of Kafka's `Utils.murmur2` for these strings.
        for (input, hash) in [
            ("1", -1_993_445_489),
            ("12", 126_087_238),
            ("123", -267_702_483),
            ("1234", -1_614_185_708),
            ("12345", -1_188_365_604),
        ] {
            assert_eq!(murmur2(input.as_bytes()) as i32, hash, "{input}");
        }
    }

    #[test]
    fn decimals_are_minimal_twos_complement() {
        for (unscaled, bytes) in [
            (0, vec![0x00]),
            (5, vec![0x05]),
            (128, vec![0x00, 0x80]),
            (-128, vec![0x80]),
            (-1_250, vec![0xFB, 0x1E]),
            (100_000, vec![0x01, 0x86, 0xA0]),
        ] {
            assert_eq!(
                decimal(unscaled),
                Json::from(BASE64.encode(bytes)),
                "{unscaled}"
            );
        }
    }

    #[test]
    fn has_every_kind_of_record() {
        let count = |pred: fn(&Decoded) -> bool| stream().iter().filter(|(_, d)| pred(d)).count();
        let ops = changes().fold(BTreeMap::new(), |mut ops, e| {
            let code = match e.op {
                Operation::Create => "c",
                Operation::Update => "u",
                Operation::Delete => "d",
                Operation::Read => "r",
                Operation::Truncate => "t",
            };
            *ops.entry(code).or_insert(0) += 1;
            ops
        });
        let total: usize = ops.values().sum();
        assert!(
            (10_000..15_000).contains(&total),
            "{total} change events: {ops:?}"
        );
        for op in ["c", "u", "d", "r"] {
            assert!(ops.get(op).is_some_and(|&n| n > 0), "no {op}: {ops:?}");
        }
        assert_eq!(ops["r"], changes().filter(|e| e.source.snapshot).count());
        assert_eq!(count(|d| matches!(d, Decoded::Tombstone)), ops["d"]);
        assert!(count(|d| matches!(d, Decoded::Heartbeat)) >= 2);
        let schema_changes: Vec<_> = stream()
            .iter()
            .filter_map(|(_, d)| match d {
                Decoded::SchemaChange(change) => Some(change),
                _ => None,
            })
            .collect();
        let [
            SchemaChange {
                server,
                database,
                ddl,
                tables,
                ..
            },
        ] = schema_changes.as_slice()
        else {
            panic!("expected one schema change, got {schema_changes:?}");
        };
        assert_eq!((server.as_str(), database.as_str()), (SERVER, DATABASE));
        assert_eq!(ddl, ALTER_DDL);
        assert_eq!(tables, &["shop.customers"]);
    }

    #[test]
    fn snapshot_comes_first() {
        let reads = changes().take_while(|e| e.op == Operation::Read).count();
        assert!(reads >= 3_500, "{reads}");
        assert!(
            changes()
                .skip(reads)
                .all(|e| e.op != Operation::Read && !e.source.snapshot)
        );
        let markers: Vec<String> = stream()
            .iter()
            .filter(|(_, d)| matches!(d, Decoded::Change(e) if e.op == Operation::Read))
            .map(|(record, _)| {
                let value: Json = serde_json::from_slice(record.value.as_deref().unwrap()).unwrap();
                value["payload"]["source"]["snapshot"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(markers.first().map(String::as_str), Some("first"));
        assert_eq!(markers.last().map(String::as_str), Some("last"));
    }

    #[test]
    fn offsets_are_dense_per_partition() {
        let mut next: HashMap<(&str, i32), i64> = HashMap::new();
        for (record, _) in stream() {
            let partitions = if record.topic.starts_with("shop.shop.") {
                PARTITIONS
            } else {
                1
            };
            assert!((0..partitions).contains(&record.partition), "{record:?}");
            let expected = next.entry((&record.topic, record.partition)).or_insert(0);
            assert_eq!(
                record.offset, *expected,
                "{}/{}",
                record.topic, record.partition
            );
            *expected += 1;
        }
        for table in ["customers", "orders", "order_lines"] {
            let used = (0..PARTITIONS)
                .filter(|&p| next.contains_key(&(format!("shop.shop.{table}").as_str(), p)))
                .count();
            assert_eq!(used as i32, PARTITIONS, "{table}");
        }
    }

    /// Replays the stream as a consumer would: every update and delete must find the row it
    /// changes, with `before` equal to the last `after`, keys must match their rows, and the
    /// cases that break naive pipelines must all occur.
    #[test]
    fn stream_is_self_consistent() {
        let mut tables: HashMap<String, BTreeMap<String, Row>> = HashMap::new();
        let mut deleted = HashSet::new();
        let mut last_update = None;
        let mut last_delete = None;
        let mut last_commit = (0, 0);
        let (mut reinserts, mut updated_twice, mut nulls_set, mut nulls_cleared) = (0, 0, 0, 0);
        for (record, decoded) in stream() {
            let event = match decoded {
                Decoded::Change(event) => event,
                Decoded::Tombstone => {
                    let delete = last_delete.take().expect("tombstone without a delete");
                    assert_eq!((&record.topic, &record.key), delete);
                    continue;
                }
                Decoded::SchemaChange(_) => {
                    // Rows read after the ALTER carry the new column, NULL until set.
                    for row in tables.get_mut("customers").unwrap().values_mut() {
                        row.push(crate::event::Column {
                            name: "loyalty_tier".into(),
                            value: Value::Null,
                        });
                    }
                    continue;
                }
                Decoded::Heartbeat => continue,
            };
            let key = event.key.as_ref().unwrap();
            let image = event.after.as_ref().or(event.before.as_ref()).unwrap();
            assert_eq!(
                &image[..key.len()],
                &key[..],
                "the key does not lead the row"
            );
            let id = (event.source.table.clone(), format!("{key:?}"));
            let rows = tables.entry(id.0.clone()).or_default();
            let stored = match &event.after {
                Some(after) => rows.insert(id.1.clone(), after.clone()),
                None => rows.remove(&id.1),
            };
            match event.op {
                Operation::Read | Operation::Create => assert_eq!(stored, None, "{id:?} exists"),
                _ => assert_eq!(stored.as_ref(), event.before.as_ref(), "{id:?}"),
            }
            let commit = (event.commit_time.seconds, event.commit_time.nanos);
            assert!(commit >= last_commit, "time went back at {id:?}");
            last_commit = commit;
            last_delete = (event.op == Operation::Delete).then_some((&record.topic, &record.key));
            match (&event.op, &event.before, &event.after) {
                (Operation::Create, ..) if deleted.contains(&id) => reinserts += 1,
                (Operation::Delete, ..) => {
                    deleted.insert(id.clone());
                }
                (Operation::Update, Some(before), Some(after)) => {
                    updated_twice += usize::from(last_update.as_ref() == Some(&id));
                    for (b, a) in before.iter().zip(after) {
                        nulls_set += usize::from(b.value != Value::Null && a.value == Value::Null);
                        nulls_cleared +=
                            usize::from(b.value == Value::Null && a.value != Value::Null);
                    }
                }
                _ => {}
            }
            last_update = (event.op == Operation::Update).then_some(id);
        }
        for (case, count) in [
            ("delete then re-insert", reinserts),
            ("same row updated twice in a row", updated_twice),
            ("NULL set", nulls_set),
            ("NULL cleared", nulls_cleared),
        ] {
            assert!(count > 0, "no {case}");
        }
    }

    #[test]
    fn showcase_customers_decode_to_typed_values() {
        let read = |id: i64| {
            changes()
                .find(|e| {
                    e.source.table == "customers"
                        && column(e.key.as_ref().unwrap(), "id") == &Value::Int(id)
                })
                .and_then(|e| e.after.clone())
                .unwrap()
        };
        let zoe = read(1);
        let names: Vec<&str> = zoe.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "id",
                "email",
                "full_name",
                "phone",
                "country",
                "birth_date",
                "vip",
                "balance",
                "status",
                "prefs",
                "password_hash",
                "created_at"
            ]
        );
        let text = |s: &str| Value::Text(s.into());
        assert_eq!(column(&zoe, "full_name"), &text("Zoë Müller"));
        assert_eq!(column(&zoe, "email"), &text("zoe.mueller@example.com"));
        assert_eq!(column(&zoe, "phone"), &text("+49 151 2345678"));
        assert_eq!(column(&zoe, "country"), &text("DE"));
        assert_eq!(column(&zoe, "birth_date"), &Value::Date(5_523));
        assert_eq!(column(&zoe, "vip"), &Value::Int(1));
        assert_eq!(column(&zoe, "balance"), &Value::Decimal("-12.50".into()));
        assert_eq!(column(&zoe, "status"), &text("active"));
        assert_eq!(
            column(&zoe, "prefs"),
            &Value::Json(r#"{"newsletter":true,"language":"de"}"#.into())
        );
        assert_eq!(
            column(&zoe, "password_hash"),
            &text(&password_hash("zoe.mueller@example.com"))
        );
        assert_eq!(
            column(&zoe, "created_at"),
            &Value::Timestamp(Timestamp {
                seconds: 1_699_171_964,
                nanos: 123_456_000
            })
        );
        let li = read(2);
        assert_eq!(column(&li, "full_name"), &text("李雷"));
        assert_eq!(column(&li, "balance"), &Value::Decimal("0.05".into()));
        assert_eq!(column(&li, "phone"), &Value::Null);
        let lukasz = read(3);
        assert_eq!(column(&lukasz, "full_name"), &text("Łukasz Kowalski"));
        assert_eq!(column(&lukasz, "birth_date"), &Value::Date(-2_712));
        assert_eq!(
            column(&lukasz, "balance"),
            &Value::Decimal("1000.00".into())
        );
    }

    #[test]
    fn other_tables_decode_to_their_logical_types() {
        let after = |table: &str| {
            changes()
                .find(|e| e.source.table == table)
                .and_then(|e| e.after.clone())
                .unwrap()
        };
        let order = after("orders");
        assert!(matches!(column(&order, "total"), Value::Decimal(d) if d.contains('.')));
        assert!(matches!(column(&order, "placed_at"), Value::Timestamp(_)));
        let line = after("order_lines");
        assert!(matches!(column(&line, "line_no"), Value::Int(1..)));
        assert!(matches!(column(&line, "discount"), Value::Float(_)));
        assert!(matches!(column(&line, "gift_wrap"), Value::Boolean(_)));
        assert!(matches!(column(&line, "updated_at"), Value::Timestamp(_)));
        let pickup = changes()
            .filter(|e| e.source.table == "orders")
            .find_map(|e| match column(e.after.as_ref()?, "pickup_time") {
                Value::Time(t) => Some(*t),
                _ => None,
            });
        assert!(
            pickup.is_some_and(|t| (8 * 3_600_000_000_000..20 * 3_600_000_000_000).contains(&t))
        );
    }
}
