//! The words every stage shares: a Kafka record and its partition, a dead-letter reason, an
//! object for the store and what it holds. The change event itself is [`crate::event`],
//! generated from the WIT so that host and guest share one definition. Stages import this
//! module, never each other's types.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;

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

/// A source partition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

/// Why a record was dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reason {
    /// `decode` or `transform`.
    pub stage: &'static str,
    /// A class: `malformed`, `rejected` (the transform's own error), `trap`, `timeout`, ...
    pub kind: String,
    pub message: String,
}

/// An object ready for the sink.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    pub key: String,
    pub body: Vec<u8>,
    pub meta: ObjectMeta,
}

/// What an object holds, recorded beside it (S3 user metadata; a local folder keeps it in
/// a file beside the object, see [`crate::pipeline::sink::LocalDir`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectMeta {
    pub records: u64,
    pub topic: String,
    pub partition: i32,
    /// The offsets of the first and last source records that contributed lines.
    pub first_offset: i64,
    pub last_offset: i64,
    /// SHA-256 of the transform that produced the lines.
    pub transform: String,
    /// The window the object belongs to, so `wrt verify` can check coverage per window.
    pub window: WindowSpan,
}

/// The offsets a window accounts for, and how many objects it wrote. Rows name the offsets
/// of the records that made them; a window also accounts for records that made nothing
/// (tombstones, heartbeats, filtered events) and for offsets Kafka skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WindowSpan {
    /// Where the partition's records stop being accounted for by earlier windows: the end of
    /// the previous window of the same ownership that wrote objects, so a run of windows
    /// that wrote none is covered by the next one that does; the window's own first offset
    /// when no earlier window of this ownership wrote objects.
    pub from: i64,
    /// The window's first offset (the one its keys name).
    pub first_offset: i64,
    /// The offset after the window: the one committed once it is durable.
    pub next_offset: i64,
    /// How many objects the window wrote (one per destination and path, and dead letters).
    pub objects: u64,
}

impl ObjectMeta {
    /// As `x-amz-meta-*` pairs.
    pub fn pairs(&self) -> [(&'static str, String); 10] {
        [
            ("wrt-records", self.records.to_string()),
            ("wrt-topic", self.topic.clone()),
            ("wrt-partition", self.partition.to_string()),
            ("wrt-first-offset", self.first_offset.to_string()),
            ("wrt-last-offset", self.last_offset.to_string()),
            ("wrt-transform", self.transform.clone()),
            ("wrt-window-from", self.window.from.to_string()),
            (
                "wrt-window-first-offset",
                self.window.first_offset.to_string(),
            ),
            (
                "wrt-window-next-offset",
                self.window.next_offset.to_string(),
            ),
            ("wrt-window-objects", self.window.objects.to_string()),
        ]
    }

    /// Reads [`ObjectMeta::pairs`] back; `None` when a pair is missing or malformed (an
    /// object written before windows were recorded, or not by wrt).
    pub fn from_pairs(pairs: &BTreeMap<String, String>) -> Option<Self> {
        let text = |name: &str| pairs.get(name).cloned();
        fn number<T: std::str::FromStr>(pairs: &BTreeMap<String, String>, name: &str) -> Option<T> {
            pairs.get(name)?.parse().ok()
        }
        Some(ObjectMeta {
            records: number(pairs, "wrt-records")?,
            topic: text("wrt-topic")?,
            partition: number(pairs, "wrt-partition")?,
            first_offset: number(pairs, "wrt-first-offset")?,
            last_offset: number(pairs, "wrt-last-offset")?,
            transform: text("wrt-transform")?,
            window: WindowSpan {
                from: number(pairs, "wrt-window-from")?,
                first_offset: number(pairs, "wrt-window-first-offset")?,
                next_offset: number(pairs, "wrt-window-next-offset")?,
                objects: number(pairs, "wrt-window-objects")?,
            },
        })
    }
}

/// How a destination's objects are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// gzip JSON Lines, one object per destination and path in a window.
    #[default]
    Jsonl,
    /// Parquet with typed columns, one object per destination, path and source schema
    /// version in a window.
    Parquet,
}

impl Format {
    /// The object key's extension.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl.gz",
            Format::Parquet => "parquet",
        }
    }
}

/// The format of every destination: one for all, and exceptions by destination name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Formats {
    pub default: Format,
    pub by_destination: BTreeMap<String, Format>,
}

impl Formats {
    pub fn of(&self, destination: &str) -> Format {
        self.by_destination
            .get(destination)
            .copied()
            .unwrap_or(self.default)
    }
}

/// A source schema version that a window's Parquet files of one destination use: what the
/// schema history documents.
#[derive(Debug, Clone)]
pub struct VersionUse {
    /// As escaped for keys.
    pub destination: String,
    pub schema: Arc<SourceSchema>,
    /// The window's first file of the destination with it.
    pub first_file: String,
    /// The source table's topic.
    pub topic: String,
}

/// Where a change is in the source's binlog.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct BinlogPosition {
    pub file: String,
    pub pos: u64,
}

impl BinlogPosition {
    /// `mysql-bin.000003` → (`mysql-bin`, 3): the number counts up past its zero padding.
    fn file_order(&self) -> (&str, u64) {
        match self.file.rsplit_once('.') {
            Some((base, number)) => (base, number.parse().unwrap_or(u64::MAX)),
            None => (&self.file, 0),
        }
    }
}

/// Binlog order: file by number, then position.
impl Ord for BinlogPosition {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.file_order(), self.pos, &self.file).cmp(&(other.file_order(), other.pos, &other.file))
    }
}

impl PartialOrd for BinlogPosition {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// The columns a table's change events declare in their Debezium schema: what a typed
/// encoder (Parquet) needs beyond the values, such as a decimal's precision and scale.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SourceSchema {
    /// 16 hex digits of SHA-256 over the columns, so every host names a version alike.
    pub id: String,
    pub columns: Vec<SourceColumn>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SourceColumn {
    pub name: String,
    pub declared: Declared,
}

/// A column's type as the Debezium schema declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Declared {
    /// Connect's int8..int64, by bits.
    Int(u8),
    /// float32 or float64, by bits.
    Float(u8),
    Boolean,
    /// Connect's `Decimal`: the scale, and the precision when the connector sent it
    /// (`connect.decimal.precision`).
    Decimal {
        precision: Option<u8>,
        scale: i8,
    },
    /// `VariableScaleDecimal`: each value has its own scale.
    VariableDecimal,
    Text,
    Bytes,
    /// A JSON document, or a nested Connect value carried as JSON.
    Json,
    Date,
    /// A time of day; `nanos` when the schema counts nanoseconds, else at most microseconds.
    Time {
        nanos: bool,
    },
    /// An instant; `nanos` as for [`Declared::Time`].
    Timestamp {
        nanos: bool,
    },
    /// A type Kafka Connect does not have.
    Unknown,
}

impl Declared {
    /// A fixed text for the type, e.g. `decimal(10,2)`: what a version's id is made of.
    pub fn code(self) -> String {
        match self {
            Declared::Int(bits) => format!("int{bits}"),
            Declared::Float(bits) => format!("float{bits}"),
            Declared::Boolean => "boolean".into(),
            Declared::Decimal { precision, scale } => match precision {
                Some(precision) => format!("decimal({precision},{scale})"),
                None => format!("decimal(?,{scale})"),
            },
            Declared::VariableDecimal => "decimal".into(),
            Declared::Text => "text".into(),
            Declared::Bytes => "bytes".into(),
            Declared::Json => "json".into(),
            Declared::Date => "date".into(),
            Declared::Time { nanos } => format!("time({})", if nanos { "ns" } else { "us" }),
            Declared::Timestamp { nanos } => {
                format!("timestamp({})", if nanos { "ns" } else { "us" })
            }
            Declared::Unknown => "unknown".into(),
        }
    }
}

impl SourceSchema {
    pub fn new(columns: Vec<SourceColumn>) -> Self {
        use sha2::Digest;
        let mut hash = sha2::Sha256::new();
        for column in &columns {
            hash.update(format!("{}\0{}\n", column.name, column.declared.code()));
        }
        let id = hex::encode(&hash.finalize()[..8]);
        SourceSchema { id, columns }
    }

    pub fn column(&self, name: &str) -> Option<Declared> {
        self.columns
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.declared)
    }

    /// What `next` changes in a way a reader of this version's files cannot follow: a
    /// column narrowed (`rev: int64 → int32`) or changed to another kind. Columns added,
    /// dropped or widened are safe evolutions and not listed.
    pub fn unsafe_changes(&self, next: &SourceSchema) -> Vec<String> {
        let mut changes = Vec::new();
        for column in &next.columns {
            let Some(before) = self.column(&column.name) else {
                continue;
            };
            if !before.widens_to(column.declared) {
                changes.push(format!(
                    "{}: {} → {}",
                    column.name,
                    before.code(),
                    column.declared.code()
                ));
            }
        }
        changes
    }
}

impl Declared {
    /// Whether every value of this type is a value of `next`: the same type, or a wider one
    /// of the same kind.
    fn widens_to(self, next: Declared) -> bool {
        use Declared::*;
        match (self, next) {
            (a, b) if a == b => true,
            (Int(a), Int(b)) | (Float(a), Float(b)) => a <= b,
            (
                Decimal {
                    precision: p1,
                    scale: s1,
                },
                Decimal {
                    precision: p2,
                    scale: s2,
                },
            ) => {
                // No integer digit and no fraction digit lost; an undeclared precision is
                // as wide as a decimal goes.
                let integer =
                    |p: Option<u8>, s: i8| p.map_or(i32::MAX, |p| i32::from(p) - i32::from(s));
                s2 >= s1 && integer(p2, s2) >= integer(p1, s1)
            }
            (Decimal { .. }, VariableDecimal) => true,
            // A timestamp is one type in any unit; a time of day's count of µs or ns is not
            // (a catalog holds it as an integer).
            (Timestamp { nanos: false }, Timestamp { nanos: true }) => true,
            _ => false,
        }
    }
}

/// Escapes a key segment Hive-style: anything but `[A-Za-z0-9._-]` becomes `%XX`, and a
/// segment that would be `.` or `..` is escaped too, so no name can climb out of its prefix.
pub fn path_segment(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for byte in raw.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' => out.push(byte as char),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    if out.is_empty() || out.bytes().all(|b| b == b'.') {
        return out.replace('.', "%2E") + "_";
    }
    out
}

#[cfg(test)]
mod tests {

    fn tp(partition: i32) -> TopicPartition {
        TopicPartition {
            topic: "t".into(),
            partition,
        }
    }

    #[test]
    fn a_revocation_waits_for_writes_under_way_and_no_write_starts_after_it() {
        let owners = Arc::new(Owners::default());
        owners.assigned(tp(0));
        let epoch = owners.epoch(&tp(0)).unwrap();
        let guard = owners.begin_write(&tp(0), epoch).unwrap();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            drop(guard);
        });
        let started = Instant::now();
        assert_eq!(owners.revoked(&tp(0), Duration::from_secs(5)), 0);
        assert!(started.elapsed() >= Duration::from_millis(150));
        writer.join().unwrap();
        assert!(owners.begin_write(&tp(0), epoch).is_none());
        assert_eq!(owners.epoch(&tp(0)), None);
        // Given back later, it is a new ownership: windows of the old one stay fenced.
        owners.assigned(tp(0));
        assert_ne!(owners.epoch(&tp(0)), Some(epoch));
        assert!(owners.begin_write(&tp(0), epoch).is_none());
    }

    #[test]
    fn a_write_that_outlasts_the_wait_is_reported() {
        let owners = Owners::default();
        owners.assigned(tp(1));
        let _stuck = owners.begin_write(&tp(1), owners.epoch(&tp(1)).unwrap());
        assert_eq!(owners.revoked(&tp(1), Duration::from_millis(20)), 1);
    }
    use super::*;

    #[test]
    fn binlog_positions_order_by_file_number_then_position() {
        let at = |file: &str, pos| BinlogPosition {
            file: file.into(),
            pos,
        };
        assert!(at("mysql-bin.000003", 9000) < at("mysql-bin.000004", 4));
        assert!(at("mysql-bin.999999", 4) < at("mysql-bin.1000000", 4));
        assert!(at("mysql-bin.000003", 4) < at("mysql-bin.000003", 5));
    }

    #[test]
    fn path_segments_cannot_escape() {
        assert_eq!(path_segment("orders"), "orders");
        assert_eq!(path_segment("a/b"), "a%2Fb");
        assert_eq!(path_segment("x=y z"), "x%3Dy%20z");
        assert_eq!(path_segment(".."), "%2E%2E_");
        assert_eq!(path_segment(""), "_");
        assert_eq!(path_segment("Zoë"), "Zo%C3%AB");
    }

    #[test]
    fn widenings_are_safe_and_narrowings_are_named() {
        let schema = |rev: Declared, balance: Declared| {
            SourceSchema::new(vec![
                SourceColumn {
                    name: "rev".into(),
                    declared: rev,
                },
                SourceColumn {
                    name: "balance".into(),
                    declared: balance,
                },
            ])
        };
        let decimal = |precision, scale| Declared::Decimal {
            precision: Some(precision),
            scale,
        };
        let v1 = schema(Declared::Int(32), decimal(12, 2));
        let wider = schema(Declared::Int(64), decimal(14, 2));
        assert!(v1.unsafe_changes(&wider).is_empty());
        assert_eq!(
            wider.unsafe_changes(&v1),
            [
                "rev: int64 → int32",
                "balance: decimal(14,2) → decimal(12,2)"
            ]
        );
        // Fewer integer digits, a type of another kind.
        let other = schema(Declared::Text, decimal(12, 4));
        assert_eq!(
            v1.unsafe_changes(&other),
            [
                "rev: int32 → text",
                "balance: decimal(12,2) → decimal(12,4)"
            ]
        );
        // Added and dropped columns are not listed.
        let fewer = SourceSchema::new(v1.columns[..1].to_vec());
        assert!(v1.unsafe_changes(&fewer).is_empty() && fewer.unsafe_changes(&v1).is_empty());
    }

    #[test]
    fn metadata_reads_back_as_written() {
        let meta = ObjectMeta {
            records: 3,
            topic: "shop.shop.orders".into(),
            partition: 2,
            first_offset: 11,
            last_offset: 19,
            transform: "ab".repeat(32),
            window: WindowSpan {
                from: 5,
                first_offset: 10,
                next_offset: 20,
                objects: 2,
            },
        };
        let pairs = meta.pairs().map(|(k, v)| (k.to_string(), v)).into();
        assert_eq!(ObjectMeta::from_pairs(&pairs), Some(meta));
        let mut older = pairs.clone();
        older.remove("wrt-window-from");
        assert_eq!(ObjectMeta::from_pairs(&older), None);
    }
}

/// Which partitions this host owns now, each under an epoch, and which windows are being
/// written for them: the fence between a host that loses a partition and its next owner.
/// The source records assignments and revocations (in Kafka, from inside the rebalance, so
/// the group waits for it); a writer starts writing a window only while its partition is
/// still owned under the window's epoch, and a revocation waits for writes under way to end.
/// So no window of a revoked partition is written after the rebalance hands it on.
#[derive(Debug, Default)]
pub struct Owners {
    owned: Mutex<HashMap<TopicPartition, Arc<Writing>>>,
    epochs: AtomicU64,
}

/// A partition's ownership: its epoch and how many of its windows are being written.
#[derive(Debug)]
struct Writing {
    epoch: u64,
    under_way: AtomicUsize,
}

/// A write of one window under way; dropping it ends the write.
#[derive(Debug)]
pub struct WriteGuard(Arc<Writing>);

impl Drop for WriteGuard {
    fn drop(&mut self) {
        self.0.under_way.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Owners {
    /// `source` is owned from now on, under a new epoch.
    pub fn assigned(&self, source: TopicPartition) {
        let epoch = self.epochs.fetch_add(1, Ordering::AcqRel) + 1;
        let writing = Arc::new(Writing {
            epoch,
            under_way: Default::default(),
        });
        self.lock().insert(source, writing);
    }

    /// `source` is no longer owned: no write of it starts from now on. Waits up to `limit`
    /// for the writes under way to end; returns how many had not by then.
    pub fn revoked(&self, source: &TopicPartition, limit: Duration) -> usize {
        let Some(writing) = self.lock().remove(source) else {
            return 0;
        };
        let started = Instant::now();
        loop {
            let left = writing.under_way.load(Ordering::Acquire);
            if left == 0 || started.elapsed() >= limit {
                return left;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The epoch `source` is owned under, if it is owned.
    pub fn epoch(&self, source: &TopicPartition) -> Option<u64> {
        self.lock().get(source).map(|w| w.epoch)
    }

    /// Starts writing a window of `source` made under `epoch`, if the partition is still
    /// owned under it.
    pub fn begin_write(&self, source: &TopicPartition, epoch: u64) -> Option<WriteGuard> {
        let owned = self.lock();
        let writing = owned.get(source).filter(|w| w.epoch == epoch)?;
        writing.under_way.fetch_add(1, Ordering::AcqRel);
        Some(WriteGuard(Arc::clone(writing)))
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<TopicPartition, Arc<Writing>>> {
        self.owned.lock().expect("not poisoned")
    }
}
