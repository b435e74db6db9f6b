//! The encode stage: gzip JSON Lines or Parquet ([`parquet`]), under deterministic keys.

mod parquet;

use std::io::Write;
use std::sync::Arc;

use base64::Engine as _;
use flate2::{Compression, write::GzEncoder};
use serde_json::json;

use crate::event::{LakeRow, Row};
use crate::model::{
    Format, KafkaRecord, Object, ObjectMeta, Reason, SourceSchema, WindowSpan, path_segment,
};

/// Where dead letters go, apart from every destination.
pub const DEAD_LETTER_PREFIX: &str = "_dead_letter";

/// The parts of an object key that come from its window.
pub struct ObjectName<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub digest: &'a str,
    pub window: WindowSpan,
}

impl ObjectName<'_> {
    /// `<destination>/<partition path>/<topic>+<partition>+<first offset>+<digest>.jsonl.gz`,
    /// or `….<schema>.parquet` where `schema` is the source schema version's id
    /// (`undeclared` for rows with no declared schema).
    pub fn output_key(&self, destination: &str, path: &str, encoder: &Encoder) -> String {
        let file = match encoder {
            Encoder::Lines(_) => self.file_name(),
            Encoder::Parquet(table, _) => format!(
                "{}.{}.parquet",
                self.stem(),
                table.declared().map_or("undeclared", |d| &d.id)
            ),
        };
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
        format!("{}.jsonl.gz", self.stem())
    }

    fn stem(&self) -> String {
        // Zero-padded so keys sort by offset; 12 hex digits of the digest tell versions apart.
        format!(
            "{}+{}+{:020}+{}",
            path_segment(self.topic),
            self.partition,
            self.window.first_offset,
            &self.digest[..self.digest.len().min(12)]
        )
    }
}

/// The source offsets an object's rows came from.
#[derive(Debug, Default)]
pub struct Offsets {
    records: u64,
    first: Option<i64>,
    last: i64,
}

impl Offsets {
    fn add(&mut self, offset: i64) {
        self.records += 1;
        self.first.get_or_insert(offset);
        self.last = offset;
    }

    fn object(self, key: String, body: Vec<u8>, name: &ObjectName<'_>) -> Object {
        Object {
            key,
            body,
            meta: ObjectMeta {
                records: self.records,
                topic: name.topic.to_string(),
                partition: name.partition,
                first_offset: self.first.unwrap_or(name.window.first_offset),
                last_offset: self.last,
                transform: name.digest.to_string(),
                window: name.window,
            },
        }
    }
}

/// One object's lines, gzipped as they arrive, with the offsets they came from. Rows are
/// written straight into the compressed stream: a window holds its output compressed.
#[derive(Default)]
pub struct Lines {
    gz: Option<GzEncoder<Vec<u8>>>,
    /// One line at a time, so the compressor sees whole lines rather than many tiny writes.
    line: Vec<u8>,
    offsets: Offsets,
}

impl std::fmt::Debug for Lines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lines")
            .field("offsets", &self.offsets)
            .finish_non_exhaustive()
    }
}

impl Lines {
    /// Adds a line (without its newline).
    pub fn push(&mut self, offset: i64, line: &[u8]) {
        let gz = self
            .gz
            .get_or_insert_with(|| GzEncoder::new(Vec::new(), Compression::fast()));
        // Writing into a Vec cannot fail.
        gz.write_all(line).expect("compressing into memory");
        gz.write_all(b"\n").expect("compressing into memory");
        self.offsets.add(offset);
    }

    /// Adds an output row as a JSON line, rendered without a JSON tree.
    pub fn push_row(&mut self, offset: i64, row: &Row) {
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        serde_json::to_writer(&mut line, &LakeRow(row)).expect("a row always serializes");
        self.push(offset, &line);
        self.line = line;
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.records == 0
    }

    /// Ends the gzip stream. The gzip header carries no time, so equal lines give equal
    /// bytes.
    pub fn finish(self, key: String, name: &ObjectName<'_>) -> Result<Object, std::io::Error> {
        let gz = self
            .gz
            .unwrap_or_else(|| GzEncoder::new(Vec::new(), Compression::fast()));
        Ok(self.offsets.object(key, gz.finish()?, name))
    }
}

/// An output object being made, in its destination's format.
pub enum Encoder {
    Lines(Lines),
    Parquet(parquet::Table, Offsets),
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Encoder::Lines(lines) => lines.fmt(f),
            Encoder::Parquet(_, offsets) => f.debug_tuple("Parquet").field(offsets).finish(),
        }
    }
}

impl Encoder {
    /// An encoder for rows of `format` whose source declares `schema`.
    pub fn new(format: Format, schema: Option<Arc<SourceSchema>>) -> Self {
        match format {
            Format::Jsonl => Encoder::Lines(Lines::default()),
            Format::Parquet => Encoder::Parquet(parquet::Table::new(schema), Offsets::default()),
        }
    }

    /// Whether rows declared by `schema` belong in this object: a Parquet object holds one
    /// source schema version.
    pub fn takes(&self, schema: Option<&Arc<SourceSchema>>) -> bool {
        match self {
            Encoder::Lines(_) => true,
            Encoder::Parquet(table, _) => table.declared().map(|d| &d.id) == schema.map(|s| &s.id),
        }
    }

    /// The source schema version a Parquet object holds; none for JSON Lines, whose keys
    /// name no version.
    pub fn version(&self) -> Option<&Arc<SourceSchema>> {
        match self {
            Encoder::Lines(_) => None,
            Encoder::Parquet(table, _) => table.declared(),
        }
    }

    /// Adds an output row, or says why the object's format cannot hold it.
    pub fn push_row(&mut self, offset: i64, row: &Row) -> Result<(), String> {
        match self {
            Encoder::Lines(lines) => lines.push_row(offset, row),
            Encoder::Parquet(table, offsets) => {
                table.push_row(row)?;
                offsets.add(offset);
            }
        }
        Ok(())
    }

    pub fn finish(self, key: String, name: &ObjectName<'_>) -> Result<Object, std::io::Error> {
        match self {
            Encoder::Lines(lines) => lines.finish(key, name),
            Encoder::Parquet(table, offsets) => {
                let body = table.finish().map_err(std::io::Error::other)?;
                Ok(offsets.object(key, body, name))
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn window(first_offset: i64) -> WindowSpan {
        WindowSpan {
            from: first_offset,
            first_offset,
            next_offset: first_offset + 10,
            objects: 1,
        }
    }

    #[test]
    fn keys_are_deterministic_and_sort_by_offset() {
        let name = |first_offset| ObjectName {
            topic: "shop.shop.orders",
            partition: 2,
            digest: "0123456789abcdef",
            window: window(first_offset),
        };
        let lines = Encoder::new(Format::Jsonl, None);
        assert_eq!(
            name(42).output_key("orders", "dt=2024-05-01", &lines),
            "orders/dt=2024-05-01/shop.shop.orders+2+00000000000000000042+0123456789ab.jsonl.gz"
        );
        let declared = SourceSchema::new(Vec::new());
        let parquet = Encoder::new(Format::Parquet, Some(Arc::new(declared.clone())));
        assert_eq!(
            name(42).output_key("orders", "", &parquet),
            format!(
                "orders/shop.shop.orders+2+00000000000000000042+0123456789ab.{}.parquet",
                declared.id
            )
        );
        assert!(
            name(42)
                .output_key("o", "", &Encoder::new(Format::Parquet, None))
                .ends_with("+0123456789ab.undeclared.parquet")
        );
        assert_eq!(
            name(7).dead_letter_key(),
            "_dead_letter/shop.shop.orders/shop.shop.orders+2+00000000000000000007+0123456789ab.jsonl.gz"
        );
        assert!(name(9).output_key("o", "", &lines) < name(10).output_key("o", "", &lines));
    }

    #[test]
    fn equal_lines_give_equal_bytes() {
        let name = ObjectName {
            topic: "t",
            partition: 0,
            digest: "d",
            window: window(5),
        };
        let object = || {
            let mut buffer = Lines::default();
            buffer.push(5, br#"{"a":1}"#);
            buffer.push(9, br#"{"a":2}"#);
            buffer.finish("k".into(), &name).unwrap()
        };
        let (a, b) = (object(), object());
        assert_eq!(a, b);
        // Line by line into the stream gives the bytes of one write of all the lines.
        let mut whole = GzEncoder::new(Vec::new(), Compression::fast());
        whole.write_all(b"{\"a\":1}\n{\"a\":2}\n").unwrap();
        assert_eq!(a.body, whole.finish().unwrap());
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
