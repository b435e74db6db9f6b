//! The words every stage shares: a Kafka record and its partition, a dead-letter reason, an
//! object for the store and what it holds. The change event itself is [`crate::event`],
//! generated from the WIT so that host and guest share one definition. Stages import this
//! module, never each other's types.

use std::collections::BTreeMap;

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
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
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
    use super::*;

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
