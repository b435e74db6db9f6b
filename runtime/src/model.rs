//! The words every stage shares: a Kafka record and its partition, a dead-letter reason, an
//! object for the store and what it holds. The change event itself is [`crate::event`],
//! generated from the WIT so that host and guest share one definition. Stages import this
//! module, never each other's types.

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

/// What an object holds, recorded beside it (S3 user metadata).
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
}

impl ObjectMeta {
    /// As `x-amz-meta-*` pairs.
    pub fn pairs(&self) -> [(&'static str, String); 6] {
        [
            ("wrt-records", self.records.to_string()),
            ("wrt-topic", self.topic.clone()),
            ("wrt-partition", self.partition.to_string()),
            ("wrt-first-offset", self.first_offset.to_string()),
            ("wrt-last-offset", self.last_offset.to_string()),
            ("wrt-transform", self.transform.clone()),
        ]
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
}
