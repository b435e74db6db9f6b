//! The batch stage: routes what the transform made into per-partition windows.
//!
//! A window collects everything made from one contiguous offset range of one source
//! partition: a buffer per (destination, partition path) plus the dead letters. It closes
//! after a fixed number of source records or bytes — counted on the input, so a replay of
//! the same offsets closes windows at the same places — and is then written whole and the
//! offset after it committed. Object keys name the window's first offset, so a replay after
//! a crash rewrites the same keys with the same bytes (DESIGN §3).
//!
//! A window may also close by age, which depends on timing. So before its objects are
//! written, a *marker* records where the window ends; a replay that finds the marker at its
//! start offset closes its first window at exactly the same place.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::decode::KafkaRecord;
use crate::encode::{self, Object};
use crate::event::{OutputRecord, Timestamp};

/// When a window closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// Source records per window.
    pub max_records: u64,
    /// Source bytes (Kafka key + value) per window.
    pub max_bytes: u64,
    /// Age at which a window is written even if not full.
    pub max_age: Duration,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation {
            max_records: 5_000,
            max_bytes: 64 << 20,
            max_age: Duration::from_secs(10),
        }
    }
}

/// A source partition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

/// A Hive-style path template over the commit time, e.g. `dt={yyyy}-{MM}-{dd}/hr={HH}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionTemplate(String);

impl PartitionTemplate {
    pub const PLACEHOLDERS: [&'static str; 5] = ["{yyyy}", "{MM}", "{dd}", "{HH}", "{mm}"];

    /// Checks that every `{...}` is a known placeholder.
    pub fn parse(template: &str) -> Result<Self, String> {
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("unclosed `{{` in partition template {template:?}"))?;
            let placeholder = &rest[open..open + close + 1];
            if !Self::PLACEHOLDERS.contains(&placeholder) {
                return Err(format!(
                    "unknown placeholder {placeholder} in partition template {template:?}; \
                     use {}",
                    Self::PLACEHOLDERS.join(", ")
                ));
            }
            rest = &rest[open + close + 1..];
        }
        Ok(PartitionTemplate(template.trim_matches('/').to_string()))
    }

    fn render(&self, time: Timestamp) -> String {
        let Some(t) = time.to_datetime() else {
            return "invalid-time".into();
        };
        self.0
            .replace("{yyyy}", &t.format("%Y").to_string())
            .replace("{MM}", &t.format("%m").to_string())
            .replace("{dd}", &t.format("%d").to_string())
            .replace("{HH}", &t.format("%H").to_string())
            .replace("{mm}", &t.format("%M").to_string())
    }
}

impl Default for PartitionTemplate {
    fn default() -> Self {
        PartitionTemplate("dt={yyyy}-{MM}-{dd}".into())
    }
}

/// The open windows, one per source partition.
pub struct Batcher {
    rotation: Rotation,
    template: PartitionTemplate,
    digest: String,
    open: BTreeMap<TopicPartition, Window>,
    /// Partitions that have had a window since they were assigned; the first window of any
    /// other partition may be a replay, so its marker is looked up.
    started: BTreeSet<TopicPartition>,
}

/// Everything made from one offset range of one source partition.
#[derive(Debug)]
pub struct Window {
    pub source: TopicPartition,
    pub first_offset: i64,
    /// The offset after the last record seen: what to commit once the window is durable.
    pub next_offset: i64,
    records: u64,
    bytes: u64,
    opened_at: Instant,
    /// Where a replayed window must end: the offset its marker recorded.
    replay_end: Option<i64>,
    outputs: BTreeMap<(String, String), encode::Buffer>,
    dead_letters: encode::Buffer,
}

/// Where a window ends and what it writes, stored before its objects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    pub next_offset: i64,
    pub transform: String,
    pub objects: Vec<String>,
}

impl Marker {
    /// `_wrt/windows/<topic>/<topic>+<partition>+<first offset>.json`
    pub fn key(source: &TopicPartition, first_offset: i64) -> String {
        format!(
            "_wrt/windows/{topic}/{topic}+{}+{first_offset:020}.json",
            source.partition,
            topic = encode::path_segment(&source.topic)
        )
    }
}

impl Batcher {
    pub fn new(rotation: Rotation, template: PartitionTemplate, digest: &str) -> Self {
        Batcher {
            rotation,
            template,
            digest: digest.to_string(),
            open: BTreeMap::new(),
            started: BTreeSet::new(),
        }
    }

    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Whether `record` would open the first window of its partition since assignment,
    /// whose marker must then be looked up with [`Marker::key`] and passed to [`Batcher::open`].
    pub fn needs_marker(&self, record: &KafkaRecord) -> bool {
        !self.started.contains(&partition_of(record))
    }

    /// Opens the window `record` starts; a replay passes its marker's end.
    pub fn open(&mut self, record: &KafkaRecord, replay_end: Option<i64>) {
        let source = partition_of(record);
        self.started.insert(source.clone());
        self.open.insert(
            source.clone(),
            Window {
                source,
                first_offset: record.offset,
                next_offset: record.offset,
                records: 0,
                bytes: 0,
                opened_at: Instant::now(),
                replay_end,
                outputs: BTreeMap::new(),
                dead_letters: encode::Buffer::default(),
            },
        );
    }

    /// The window `record` belongs to, opened at its offset if none is.
    fn window(&mut self, record: &KafkaRecord) -> &mut Window {
        if !self.open.contains_key(&partition_of(record)) {
            self.open(record, None);
        }
        self.open
            .get_mut(&partition_of(record))
            .expect("opened above")
    }

    /// Closes the open window of `record`'s partition if `record` lies past its replay end
    /// (offsets may skip, so the end is not always reached exactly).
    pub fn close_before(&mut self, record: &KafkaRecord) -> Option<Window> {
        let source = partition_of(record);
        let window = self.open.get(&source)?;
        let past = window.replay_end.is_some_and(|end| record.offset >= end);
        past.then(|| self.open.remove(&source))?
    }

    /// Counts `record` as consumed; returns its window if that closes it.
    pub fn consumed(&mut self, record: &KafkaRecord) -> Option<Window> {
        let rotation = self.rotation;
        let window = self.window(record);
        window.next_offset = record.offset + 1;
        window.records += 1;
        window.bytes += (record.key.as_ref().map_or(0, Vec::len)
            + record.value.as_ref().map_or(0, Vec::len)) as u64;
        let full = match window.replay_end {
            Some(end) => window.next_offset >= end,
            None => window.records >= rotation.max_records || window.bytes >= rotation.max_bytes,
        };
        full.then(|| self.open.remove(&partition_of(record)))?
    }

    /// Closes the windows that reached their age (a replayed window ends only at its marker).
    pub fn close_expired(&mut self) -> Vec<Window> {
        let max_age = self.rotation.max_age;
        let expired: Vec<TopicPartition> = self
            .open
            .values()
            .filter(|w| w.replay_end.is_none() && w.opened_at.elapsed() >= max_age)
            .map(|w| w.source.clone())
            .collect();
        expired
            .iter()
            .filter_map(|source| self.open.remove(source))
            .collect()
    }

    /// Drops the open window of a revoked partition: its next owner re-reads the range.
    pub fn abandon(&mut self, source: &TopicPartition) {
        self.open.remove(source);
        self.started.remove(source);
    }

    pub fn is_idle(&self) -> bool {
        self.open.is_empty()
    }

    /// Whether an open window replays one a previous owner began.
    pub fn replaying(&self) -> bool {
        self.open.values().any(|w| w.replay_end.is_some())
    }

    /// Names the transform that makes the windows opened from now on. Every window must be
    /// closed: an object holds one version's output.
    pub fn switch(&mut self, digest: &str) {
        assert!(self.is_idle(), "switching transform with open windows");
        self.digest = digest.to_string();
    }

    /// Adds a transform output made from `record`.
    pub fn add_output(&mut self, record: &KafkaRecord, output: &OutputRecord, time: Timestamp) {
        let mut path = self.template.render(time);
        for (name, value) in &output.partition {
            path.push('/');
            path.push_str(&encode::path_segment(name));
            path.push('=');
            path.push_str(&encode::path_segment(value));
        }
        let line = encode::output_line(&output.row);
        let destination = encode::path_segment(&output.destination);
        self.window(record)
            .outputs
            .entry((destination, path))
            .or_default()
            .push(record.offset, &line);
    }

    /// Adds a dead letter for `record`.
    pub fn add_dead_letter(&mut self, record: &KafkaRecord, reason: &encode::Reason) {
        let line = encode::dead_letter_line(record, reason, &self.digest);
        self.window(record).dead_letters.push(record.offset, &line);
    }

    /// Closes every open window (end of input, shutdown).
    pub fn close_all(&mut self) -> Vec<Window> {
        std::mem::take(&mut self.open).into_values().collect()
    }

    /// The objects a closed window becomes, in a fixed order.
    pub fn objects(&self, window: Window) -> Result<Vec<Object>, std::io::Error> {
        let Window {
            source,
            first_offset,
            outputs,
            dead_letters,
            ..
        } = window;
        let name = encode::ObjectName {
            topic: &source.topic,
            partition: source.partition,
            first_offset,
            digest: &self.digest,
        };
        let mut objects = Vec::with_capacity(outputs.len() + 1);
        for ((destination, path), buffer) in outputs {
            objects.push(buffer.finish(name.output_key(&destination, &path), &name)?);
        }
        if !dead_letters.is_empty() {
            objects.push(dead_letters.finish(name.dead_letter_key(), &name)?);
        }
        Ok(objects)
    }
}

fn partition_of(record: &KafkaRecord) -> TopicPartition {
    TopicPartition {
        topic: record.topic.clone(),
        partition: record.partition,
    }
}
