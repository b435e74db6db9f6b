//! The workload: the sample shop simulation at benchmark scale, loaded into its own Kafka
//! topics once. A later run with the same seed and size finds it in place and skips the load.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use sha2::{Digest, Sha256};
use wrt::model::KafkaRecord;

const TIMEOUT: Duration = Duration::from_secs(30);

/// A set of topics holding one workload: `<prefix>.<topic of the simulation>`.
#[derive(Debug, Clone)]
pub struct Topics {
    pub prefix: String,
    /// Records expected per (topic, partition); offsets start at 0.
    pub counts: BTreeMap<(String, i32), i64>,
}

impl Topics {
    /// The topics `records` (named as the simulation names them) occupy under `prefix`.
    pub fn of(prefix: &str, records: &[KafkaRecord]) -> Self {
        let mut counts = BTreeMap::new();
        for r in records {
            *counts
                .entry((topic(prefix, &r.topic), r.partition))
                .or_insert(0) += 1;
        }
        Topics {
            prefix: prefix.into(),
            counts,
        }
    }

    /// The regular expression that subscribes to exactly these topics.
    pub fn pattern(&self) -> String {
        format!("^{}\\..*", self.prefix.replace('.', "\\."))
    }

    pub fn total(&self) -> i64 {
        self.counts.values().sum()
    }

    fn partitions(&self) -> BTreeMap<&str, i32> {
        let mut partitions = BTreeMap::new();
        for (topic, partition) in self.counts.keys() {
            let n = partitions.entry(topic.as_str()).or_insert(0);
            *n = (*n).max(partition + 1);
        }
        partitions
    }

    pub fn partition_list(&self) -> TopicPartitionList {
        let mut list = TopicPartitionList::new();
        for (topic, partition) in self.counts.keys() {
            list.add_partition(topic, *partition);
        }
        list
    }
}

/// The bench name of a simulation topic.
pub fn topic(prefix: &str, simulated: &str) -> String {
    format!("{prefix}.{simulated}")
}

/// Key and value bytes of the records: what every row reads.
pub fn payload_bytes(records: &[KafkaRecord]) -> u64 {
    records
        .iter()
        .map(|r| (r.key.as_ref().map_or(0, Vec::len) + r.value.as_ref().map_or(0, Vec::len)) as u64)
        .sum()
}

/// One record's identity for the "is it already loaded" check.
pub fn record_digest(key: Option<&[u8]>, value: Option<&[u8]>) -> String {
    let mut hash = Sha256::new();
    for part in [key, value] {
        // Present-or-absent and length first, so (key, value) pairs cannot collide.
        match part {
            Some(bytes) => {
                hash.update([1u8]);
                hash.update((bytes.len() as u64).to_be_bytes());
                hash.update(bytes);
            }
            None => hash.update([0u8]),
        }
    }
    hex::encode(hash.finalize())
}

pub fn client_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    config
}

/// Creates `topics` (deleting them first if `recreate`).
pub async fn create_topics(brokers: &str, topics: &Topics, recreate: bool) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = client_config(brokers).create()?;
    let options = AdminOptions::new().operation_timeout(Some(TIMEOUT));
    let partitions = topics.partitions();
    if recreate {
        let names: Vec<&str> = partitions.keys().copied().collect();
        // Absent topics answer "unknown topic", which is what we want anyway.
        admin.delete_topics(&names, &options).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let new: Vec<NewTopic> = partitions
        .iter()
        // The records carry the simulation's 2024 timestamps: without this, time-based
        // retention deletes them as soon as a segment rolls.
        .map(|(name, n)| {
            NewTopic::new(name, *n, TopicReplication::Fixed(1)).set("retention.ms", "-1")
        })
        .collect();
    for result in admin.create_topics(&new, &options).await? {
        match result {
            Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => bail!("creating topic {name}: {code}"),
        }
    }
    Ok(())
}

pub async fn delete_topics(brokers: &str, topics: &Topics) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = client_config(brokers).create()?;
    let names: Vec<&str> = topics.partitions().keys().copied().collect();
    admin
        .delete_topics(
            &names,
            &AdminOptions::new().operation_timeout(Some(TIMEOUT)),
        )
        .await?;
    Ok(())
}

/// Whether the topics already hold exactly `records`: every partition has the expected
/// offsets, and its last record has the expected bytes (a different seed or size changes it).
pub fn already_loaded(
    brokers: &str,
    topics: &Topics,
    records: &[KafkaRecord],
) -> anyhow::Result<bool> {
    let consumer: BaseConsumer = client_config(brokers)
        .set("group.id", "wrt-bench-check")
        .set("enable.auto.commit", "false")
        .create()?;
    let mut last: BTreeMap<(String, i32), &KafkaRecord> = BTreeMap::new();
    for r in records {
        last.insert((topic(&topics.prefix, &r.topic), r.partition), r);
    }
    for ((name, partition), expected) in &topics.counts {
        match consumer.fetch_watermarks(name, *partition, TIMEOUT) {
            Ok((0, high)) if high == *expected => {}
            other => {
                eprintln!("{name}/{partition}: offsets {other:?}, expected 0..{expected}");
                return Ok(false);
            }
        }
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(name, *partition, Offset::Offset(expected - 1))?;
        consumer.assign(&assignment)?;
        // Skip anything still queued from the previous partition's assignment.
        let message = loop {
            match consumer.poll(TIMEOUT) {
                Some(Ok(m)) if m.topic() == name && m.partition() == *partition => break m,
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e).context("reading back the last record"),
                None => {
                    eprintln!("{name}/{partition}: the last record did not arrive");
                    return Ok(false);
                }
            }
        };
        let want = last[&(name.clone(), *partition)];
        if record_digest(message.key(), message.payload())
            != record_digest(want.key.as_deref(), want.value.as_deref())
        {
            eprintln!("{name}/{partition}: the last record differs");
            return Ok(false);
        }
    }
    Ok(true)
}

/// Produces `records` into their bench topics, in order, and waits until all are acknowledged.
pub fn produce(brokers: &str, prefix: &str, records: &[KafkaRecord]) -> anyhow::Result<()> {
    let producer: ThreadedProducer<DefaultProducerContext> = client_config(brokers)
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("enable.idempotence", "true")
        .create()?;
    for r in records {
        let topic = topic(prefix, &r.topic);
        let mut record = BaseRecord::<[u8], [u8]>::to(&topic).partition(r.partition);
        if let Some(key) = &r.key {
            record = record.key(key.as_slice());
        }
        if let Some(value) = &r.value {
            record = record.payload(value.as_slice());
        }
        if let Some(ts) = r.timestamp_ms {
            record = record.timestamp(ts);
        }
        let mut pending = record;
        loop {
            match producer.send(pending) {
                Ok(()) => break,
                Err((e, back))
                    if e.rdkafka_error_code()
                        == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) =>
                {
                    std::thread::sleep(Duration::from_millis(5));
                    pending = back;
                }
                Err((e, _)) => return Err(e).context("producing the workload"),
            }
        }
    }
    producer.flush(Duration::from_secs(300))?;
    Ok(())
}
