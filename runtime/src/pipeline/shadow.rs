//! The shadow comparison: what a candidate version made of a batch, event by event,
//! against what the current version made of it. Nothing of the shadow's is written.

use serde::Serialize;

use super::Emit;
use crate::event::{OutputRecord, value_to_json};
use crate::model::KafkaRecord;

/// How one batch, or many, compared.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Comparison {
    /// Change events both versions were given.
    pub compared: u64,
    /// Same destinations and rows, or the same dead letters.
    pub identical: u64,
    /// The outcomes differ: not the same rows, or dead letters for other reasons.
    pub different: u64,
    /// Dead-lettered by the shadow only.
    pub shadow_only_dead_letters: u64,
    /// Dead-lettered by the current version only.
    pub current_only_dead_letters: u64,
    /// The first differences, at most `samples` of them.
    pub samples: Vec<Sample>,
}

impl Comparison {
    /// Adds `other`'s counts, and its samples while fewer than `samples` are kept.
    pub fn add(&mut self, other: &Comparison, samples: usize) {
        self.compared += other.compared;
        self.identical += other.identical;
        self.different += other.different;
        self.shadow_only_dead_letters += other.shadow_only_dead_letters;
        self.current_only_dead_letters += other.current_only_dead_letters;
        let room = samples.saturating_sub(self.samples.len());
        self.samples
            .extend(other.samples.iter().take(room).cloned());
    }
}

/// One event the versions disagree on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Sample {
    /// `topic/partition/offset`.
    pub position: String,
    /// A unified diff of the current version's outputs (`-`) and the shadow's (`+`).
    pub diff: String,
}

/// Compares, per record, the current version's outcome with the shadow's; keeps at most
/// `samples` differences. Records that never reach a transform (tombstones, heartbeats,
/// schema changes, undecodable ones) are left out: both versions agree on them by
/// construction.
pub fn compare(
    records: &[KafkaRecord],
    current: &[Vec<Emit>],
    shadow: &[Vec<Emit>],
    samples: usize,
) -> Comparison {
    let mut comparison = Comparison::default();
    for ((record, ours), theirs) in records.iter().zip(current).zip(shadow) {
        if !is_change(ours) {
            continue;
        }
        comparison.compared += 1;
        let dead = |emits: &[Emit]| emits.iter().any(|e| matches!(e, Emit::DeadLetter(_)));
        match (dead(ours), dead(theirs)) {
            (false, true) => comparison.shadow_only_dead_letters += 1,
            (true, false) => comparison.current_only_dead_letters += 1,
            _ if ours == theirs => comparison.identical += 1,
            _ => {
                comparison.different += 1;
                if comparison.samples.len() < samples {
                    comparison.samples.push(Sample {
                        position: format!(
                            "{}/{}/{}",
                            record.topic, record.partition, record.offset
                        ),
                        diff: similar::TextDiff::from_lines(&render(ours), &render(theirs))
                            .unified_diff()
                            .header("current", "shadow")
                            .to_string(),
                    });
                }
            }
        }
    }
    comparison
}

/// Whether a record's outcome came from a transform call.
fn is_change(emits: &[Emit]) -> bool {
    !emits.iter().any(|e| match e {
        Emit::Tombstone | Emit::Heartbeat | Emit::SchemaChange(..) => true,
        Emit::DeadLetter(reason) => reason.stage != "transform",
        Emit::Output(..) => false,
    })
}

/// One line per column, under its destination, so a diff shows the columns that differ.
fn render(emits: &[Emit]) -> String {
    let mut text = String::new();
    for emit in emits {
        match emit {
            Emit::Output(
                OutputRecord {
                    destination, row, ..
                },
                _,
            ) => {
                text.push_str(destination);
                text.push('\n');
                for column in row {
                    let value = value_to_json(&column.value);
                    text.push_str(&format!("  {}: {value}\n", column.name));
                }
            }
            Emit::DeadLetter(reason) => {
                text.push_str(&format!(
                    "dead letter ({}): {}\n",
                    reason.kind, reason.message
                ));
            }
            _ => {}
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Column, Timestamp, Value};
    use crate::model::Reason;

    fn record(offset: i64) -> KafkaRecord {
        KafkaRecord {
            topic: "shop.shop.orders".into(),
            partition: 1,
            offset,
            timestamp_ms: None,
            key: None,
            value: None,
        }
    }

    fn row(version: &str) -> Vec<Emit> {
        let columns = vec![
            Column {
                name: "id".into(),
                value: Value::Int(7),
            },
            Column {
                name: "_version".into(),
                value: Value::Text(version.into()),
            },
        ];
        let output = OutputRecord {
            destination: "orders".into(),
            row: columns,
            partition: Vec::new(),
        };
        let time = Timestamp {
            seconds: 0,
            nanos: 0,
        };
        vec![Emit::Output(output, time)]
    }

    fn dead(stage: &'static str) -> Vec<Emit> {
        vec![Emit::DeadLetter(Reason {
            stage,
            kind: "trap".into(),
            message: "boom".into(),
        })]
    }

    #[test]
    fn each_event_is_counted_once_and_differences_are_shown_as_a_diff() {
        let records: Vec<KafkaRecord> = (0..6).map(record).collect();
        let current = [
            row("v1"),
            row("v1"),
            row("v1"),
            dead("transform"),
            vec![Emit::Tombstone],
            dead("decode"),
        ];
        let shadow = [
            row("v1"),
            row("fixed"),
            dead("transform"),
            row("v1"),
            vec![Emit::Tombstone],
            dead("decode"),
        ];
        let comparison = compare(&records, &current, &shadow, 5);
        assert_eq!(
            (
                comparison.compared,
                comparison.identical,
                comparison.different,
                comparison.shadow_only_dead_letters,
                comparison.current_only_dead_letters
            ),
            (4, 1, 1, 1, 1)
        );
        let sample = &comparison.samples[0];
        assert_eq!(sample.position, "shop.shop.orders/1/1");
        assert_eq!(
            sample.diff,
            "--- current\n+++ shadow\n@@ -1,3 +1,3 @@\n orders\n   id: 7\n-  _version: \"v1\"\n+  _version: \"fixed\"\n"
        );
        assert!(compare(&records, &current, &shadow, 0).samples.is_empty());
    }
}
