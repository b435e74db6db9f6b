//! The encode stage: JSON Lines, gzip-compressed, under deterministic keys.

use std::io::Write;

use base64::Engine as _;
use flate2::{Compression, write::GzEncoder};
use serde::Serialize;
use serde_json::json;

use crate::decode::KafkaRecord;
use crate::event::{Row, row_to_json};

/// Where dead letters go, apart from every destination.
pub const DEAD_LETTER_PREFIX: &str = "_dead_letter";

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

/// The parts of an object key that come from its window.
pub struct ObjectName<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub first_offset: i64,
    pub digest: &'a str,
}

impl ObjectName<'_> {
    /// `<destination>/<partition path>/<topic>+<partition>+<first offset>+<digest>.jsonl.gz`
    pub fn output_key(&self, destination: &str, path: &str) -> String {
        let file = self.file_name();
        if path.is_empty() {
            format!("{destination}/{file}")
        } else {
            format!("{destination}/{path}/{file}")
        }
    }

    /// `_dead_letter/<topic>/<topic>+<partition>+<first offset>+<digest>.jsonl.gz`
    pub fn dead_letter_key(&self) -> String {
        format!(
            "{DEAD_LETTER_PREFIX}/{}/{}",
            path_segment(self.topic),
            self.file_name()
        )
    }

    fn file_name(&self) -> String {
        // Zero-padded so keys sort by offset; 12 hex digits of the digest tell versions apart.
        format!(
            "{}+{}+{:020}+{}.jsonl.gz",
            path_segment(self.topic),
            self.partition,
            self.first_offset,
            &self.digest[..self.digest.len().min(12)]
        )
    }
}

/// Lines for one object, with the offsets they came from.
#[derive(Debug, Default)]
pub struct Buffer {
    lines: Vec<u8>,
    records: u64,
    first_offset: Option<i64>,
    last_offset: i64,
}

impl Buffer {
    pub fn push(&mut self, offset: i64, line: &[u8]) {
        self.lines.extend_from_slice(line);
        self.lines.push(b'\n');
        self.records += 1;
        self.first_offset.get_or_insert(offset);
        self.last_offset = offset;
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Gzips the lines. The gzip header carries no time, so equal lines give equal bytes.
    pub fn finish(self, key: String, name: &ObjectName<'_>) -> Result<Object, std::io::Error> {
        let mut gz = GzEncoder::new(
            Vec::with_capacity(self.lines.len() / 4),
            Compression::fast(),
        );
        gz.write_all(&self.lines)?;
        Ok(Object {
            key,
            body: gz.finish()?,
            meta: ObjectMeta {
                records: self.records,
                topic: name.topic.to_string(),
                partition: name.partition,
                first_offset: self.first_offset.unwrap_or(name.first_offset),
                last_offset: self.last_offset,
                transform: name.digest.to_string(),
            },
        })
    }
}

/// One output row as a JSON line.
pub fn output_line(row: &Row) -> Vec<u8> {
    serde_json::to_vec(&row_to_json(row)).expect("a JSON map always serializes")
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

/// A dead letter: the reason, where the record came from, and the record itself so it can
/// be replayed once the cause is fixed.
pub fn dead_letter_line(record: &KafkaRecord, reason: &Reason, digest: &str) -> Vec<u8> {
    let line = json!({
        "reason": reason,
        "source": {
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "timestamp_ms": record.timestamp_ms,
        },
        "transform": digest,
        "key": record.key.as_deref().map(payload_json),
        "value": record.value.as_deref().map(payload_json),
    });
    serde_json::to_vec(&line).expect("a JSON value always serializes")
}

/// Text stays text; anything else is base64, marked so.
fn payload_json(bytes: &[u8]) -> serde_json::Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => json!(text),
        Err(_) => json!({ "base64": base64::engine::general_purpose::STANDARD.encode(bytes) }),
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
    fn keys_are_deterministic_and_sort_by_offset() {
        let name = |first_offset| ObjectName {
            topic: "shop.shop.orders",
            partition: 2,
            first_offset,
            digest: "0123456789abcdef",
        };
        assert_eq!(
            name(42).output_key("orders", "dt=2024-05-01"),
            "orders/dt=2024-05-01/shop.shop.orders+2+00000000000000000042+0123456789ab.jsonl.gz"
        );
        assert_eq!(
            name(7).dead_letter_key(),
            "_dead_letter/shop.shop.orders/shop.shop.orders+2+00000000000000000007+0123456789ab.jsonl.gz"
        );
        assert!(name(9).output_key("o", "") < name(10).output_key("o", ""));
    }

    #[test]
    fn equal_lines_give_equal_bytes() {
        let name = ObjectName {
            topic: "t",
            partition: 0,
            first_offset: 5,
            digest: "d",
        };
        let object = || {
            let mut buffer = Buffer::default();
            buffer.push(5, br#"{"a":1}"#);
            buffer.push(9, br#"{"a":2}"#);
            buffer.finish("k".into(), &name).unwrap()
        };
        let (a, b) = (object(), object());
        assert_eq!(a, b);
        assert_eq!(
            (a.meta.first_offset, a.meta.last_offset, a.meta.records),
            (5, 9, 2)
        );
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&a.body[..]), &mut text)
            .unwrap();
        assert_eq!(text, "{\"a\":1}\n{\"a\":2}\n");
    }
}
