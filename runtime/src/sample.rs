//! Placeholder while the sample stream is being written.

use crate::decode::KafkaRecord;

pub fn sample_records() -> Vec<KafkaRecord> {
    Vec::new()
}
