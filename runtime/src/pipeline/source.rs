//! The source stage: Kafka records in, offsets committed back.

pub mod kafka;

use std::collections::BTreeMap;

use std::sync::Arc;

use crate::model::{KafkaRecord, Owners, TopicPartition};
use crate::telemetry::Owned;

/// Why the source failed: the broker's side, so the supervisor may retry.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct SourceError(pub Box<dyn std::error::Error + Send + Sync>);

/// Where records come from.
pub trait Source {
    /// Up to `max` records, or `None` at the end of a finite input.
    fn poll(
        &mut self,
        max: usize,
    ) -> impl Future<Output = Result<Option<Vec<KafkaRecord>>, SourceError>> + Send;

    /// Asks the broker to record, per partition, that everything before the offset is
    /// durable, without waiting for its answer, which [`Source::confirmed`] hands back later:
    /// a commit must not stall the host while the broker is away.
    fn commit(&mut self, offsets: &[(TopicPartition, i64)]) -> Result<(), SourceError>;

    /// The commits the broker accepted since the last call. A refused one (the partition
    /// moved to another owner) or a failed one never shows up, which is not fatal: the
    /// range is re-read and rewritten identically.
    fn confirmed(&mut self) -> Vec<(TopicPartition, i64)>;

    /// Commits and waits for the broker's answer, at the end of a run: `false` when it
    /// refused.
    fn commit_and_wait(
        &mut self,
        offsets: &[(TopicPartition, i64)],
    ) -> impl Future<Output = Result<bool, SourceError>> + Send;

    /// Partitions taken away since the last call (a consumer-group rebalance): their open
    /// windows are abandoned, not written, because the next owner re-reads them. A poll
    /// returns early after a revocation, so its records all precede it.
    fn revoked(&mut self) -> Vec<TopicPartition> {
        Vec::new()
    }

    /// The partitions this source owns and under which epoch, kept up to date by the source
    /// when ownership can move between hosts; `None` when it cannot (every record is owned).
    fn owners(&self) -> Option<Arc<Owners>> {
        None
    }

    /// How many records there are in all, when known (for a progress bar).
    fn len_hint(&self) -> Option<u64>;

    /// The partitions this source reads now, for `/status` and the lag metric.
    fn owned(&self) -> Vec<Owned>;

    /// Why records cannot arrive now (every broker unreachable), while that lasts: the
    /// source keeps trying, and the host reports itself not ready meanwhile.
    fn trouble(&self) -> Option<String> {
        None
    }
}

/// A finite list of records: the bundled sample stream, or a file of fixture events.
#[derive(Debug, Default)]
pub struct MemorySource {
    records: std::vec::IntoIter<KafkaRecord>,
    total: u64,
    partitions: Vec<TopicPartition>,
    /// The offsets committed so far.
    pub committed: BTreeMap<TopicPartition, i64>,
    /// Commits not yet handed back by [`Source::confirmed`].
    unconfirmed: Vec<(TopicPartition, i64)>,
}

impl MemorySource {
    pub fn new(records: Vec<KafkaRecord>) -> Self {
        let partitions: std::collections::BTreeSet<TopicPartition> = records
            .iter()
            .map(|r| TopicPartition {
                topic: r.topic.clone(),
                partition: r.partition,
            })
            .collect();
        MemorySource {
            total: records.len() as u64,
            partitions: partitions.into_iter().collect(),
            records: records.into_iter(),
            committed: BTreeMap::new(),
            unconfirmed: Vec::new(),
        }
    }
}

impl Source for MemorySource {
    async fn poll(&mut self, max: usize) -> Result<Option<Vec<KafkaRecord>>, SourceError> {
        let batch: Vec<_> = self.records.by_ref().take(max).collect();
        Ok((!batch.is_empty()).then_some(batch))
    }

    fn commit(&mut self, offsets: &[(TopicPartition, i64)]) -> Result<(), SourceError> {
        self.committed.extend(offsets.iter().cloned());
        self.unconfirmed.extend(offsets.iter().cloned());
        Ok(())
    }

    fn confirmed(&mut self) -> Vec<(TopicPartition, i64)> {
        std::mem::take(&mut self.unconfirmed)
    }

    async fn commit_and_wait(
        &mut self,
        offsets: &[(TopicPartition, i64)],
    ) -> Result<bool, SourceError> {
        self.commit(offsets)?;
        Ok(true)
    }

    fn len_hint(&self) -> Option<u64> {
        Some(self.total)
    }

    fn owned(&self) -> Vec<Owned> {
        let owned = |partition: &TopicPartition| Owned {
            partition: partition.clone(),
            lag: None,
        };
        self.partitions.iter().map(owned).collect()
    }
}

/// Reads fixture records, one JSON object a line. A line is either a Kafka record
/// `{"topic", "partition", "offset", "timestamp_ms", "key", "value"}` (what `wrt sample`
/// writes; `value: null` is a tombstone, a string value is taken as raw bytes) or a bare
/// Debezium envelope, which gets its topic from its `source` block and its line number as
/// offset. A line that is not JSON becomes a record of its raw bytes, so malformed input
/// can be tested: it is dead-lettered, not fatal.
pub fn records_from_jsonl(text: &str) -> Vec<KafkaRecord> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| fixture_record(n as i64, line))
        .collect()
}

fn fixture_record(line_no: i64, line: &str) -> KafkaRecord {
    let parsed: Option<serde_json::Value> = serde_json::from_str(line).ok();
    match parsed {
        Some(v) if v.get("topic").is_some() && v.get("value").is_some() => KafkaRecord {
            topic: v["topic"].as_str().unwrap_or_default().to_string(),
            partition: v["partition"].as_i64().unwrap_or(0) as i32,
            offset: v["offset"].as_i64().unwrap_or(line_no),
            timestamp_ms: v["timestamp_ms"].as_i64(),
            key: payload_bytes(&v["key"]),
            value: payload_bytes(&v["value"]),
        },
        Some(envelope) => {
            let payload = envelope.get("payload").unwrap_or(&envelope);
            let source = &payload["source"];
            let topic = [&source["name"], &source["db"], &source["table"]]
                .iter()
                .filter_map(|part| part.as_str())
                .collect::<Vec<_>>()
                .join(".");
            KafkaRecord {
                topic: if topic.is_empty() {
                    "fixture".into()
                } else {
                    topic
                },
                partition: 0,
                offset: line_no,
                timestamp_ms: source["ts_ms"].as_i64(),
                key: None,
                value: Some(line.as_bytes().to_vec()),
            }
        }
        None => KafkaRecord {
            topic: "fixture".into(),
            partition: 0,
            offset: line_no,
            timestamp_ms: None,
            key: None,
            value: Some(line.as_bytes().to_vec()),
        },
    }
}

fn payload_bytes(v: &serde_json::Value) -> Option<Vec<u8>> {
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(raw) => Some(raw.as_bytes().to_vec()),
        other => Some(other.to_string().into_bytes()),
    }
}

/// A record as one `records_from_jsonl` line, with JSON payloads embedded as JSON.
pub fn record_to_jsonl(record: &KafkaRecord) -> String {
    let embed = |bytes: &Option<Vec<u8>>| match bytes {
        None => serde_json::Value::Null,
        Some(b) => serde_json::from_slice(b)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(b).into_owned())),
    };
    serde_json::json!({
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp_ms": record.timestamp_ms,
        "key": embed(&record.key),
        "value": embed(&record.value),
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_lines_round_trip_and_tolerate_junk() {
        let record = KafkaRecord {
            topic: "shop.shop.orders".into(),
            partition: 2,
            offset: 17,
            timestamp_ms: Some(5),
            key: Some(br#"{"id":1}"#.to_vec()),
            value: None,
        };
        let text = format!("{}\n\nnot json\n", record_to_jsonl(&record));
        let read = records_from_jsonl(&text);
        assert_eq!(read[0], record);
        assert_eq!(read[1].value.as_deref(), Some(&b"not json"[..]));
        assert_eq!((read[1].topic.as_str(), read[1].offset), ("fixture", 2));
    }

    #[test]
    fn bare_envelopes_get_their_topic_from_the_source_block() {
        let line = r#"{"op":"c","after":{"id":1},"source":{"name":"shop","db":"inv","table":"items","ts_ms":9}}"#;
        let read = records_from_jsonl(line);
        assert_eq!(read[0].topic, "shop.inv.items");
        assert_eq!(read[0].timestamp_ms, Some(9));
        assert_eq!(read[0].value.as_deref(), Some(line.as_bytes()));
    }
}
