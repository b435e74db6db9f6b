//! The batch stage: routes what the transform made into per-partition windows.
//!
//! A window collects everything made from one contiguous offset range of one source
//! partition: an encoder per (destination, partition path) plus the dead letters. It closes
//! after a fixed number of source records or bytes — counted on the input, so a replay of
//! the same offsets closes windows at the same places — and is then written whole and the
//! offset after it committed. Object keys name the window's first offset, so a replay after
//! a crash rewrites the same keys with the same bytes (DESIGN §3).
//!
//! A window may also close by age, which depends on timing. So before its objects are
//! written, a marker records where the window ends (`pipeline::commit`); a replay that finds
//! a marker where a window starts closes that window at exactly the same place, and looks
//! for the next window's marker in turn.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::event::{OutputRecord, Timestamp};
use crate::model::{
    Formats, KafkaRecord, Object, Reason, SourceSchema, TopicPartition, VersionUse, WindowSpan,
    path_segment,
};
use crate::pipeline::encode;

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

/// The open windows of the partitions one lane owns, one window per partition. A lane owns
/// a few partitions, so they are kept in small vectors and found by a scan that allocates
/// nothing.
pub struct Batcher {
    rotation: Rotation,
    template: PartitionTemplate,
    formats: Formats,
    digest: String,
    open: Vec<Window>,
    owned: Vec<(TopicPartition, Ownership)>,
    /// Rendered partition paths by commit minute (the template's finest unit): most rows of
    /// a window share a handful.
    paths: HashMap<i64, String>,
}

/// What the batcher knows of a partition it owns.
#[derive(Debug, Clone, Copy)]
struct Ownership {
    generation: u64,
    /// Windows opened so far in this generation.
    windows: u64,
    /// Whether the next window may be a replay, so its marker must be looked up: true for
    /// the first window after assignment and after every replayed window.
    may_replay: bool,
    /// Where the next window's objects start accounting for the partition
    /// ([`WindowSpan::from`]): the end of the last window that wrote objects, or the start of
    /// the first window when none has yet.
    accounted: Option<i64>,
}

impl Ownership {
    fn new(generation: u64) -> Self {
        Ownership {
            generation,
            windows: 0,
            may_replay: true,
            accounted: None,
        }
    }
}

/// Everything made from one offset range of one source partition.
#[derive(Debug)]
pub struct Window {
    pub source: TopicPartition,
    /// The partition's ownership it was made under (see [`Batcher::assign`]).
    pub generation: u64,
    /// Its place among the partition's windows of that ownership, from 0.
    pub seq: u64,
    pub first_offset: i64,
    /// The offset after the last record seen: what to commit once the window is durable.
    pub next_offset: i64,
    records: u64,
    bytes: u64,
    opened_at: Instant,
    /// Where a replayed window must end: the offset its marker recorded.
    replay_end: Option<i64>,
    outputs: Vec<Output>,
    dead_letters: encode::Lines,
}

/// The rows of one object: a destination (as the transform named it, and escaped for the
/// key), a partition path and, for Parquet, a source schema version.
#[derive(Debug)]
struct Output {
    destination: String,
    escaped: String,
    path: String,
    encoder: encode::Encoder,
}

/// Why an output row is a dead letter: its object's format cannot hold it.
fn unrepresentable(output: &OutputRecord, message: String) -> Reason {
    Reason {
        stage: "encode",
        kind: "unrepresentable".into(),
        message: format!("destination {:?}: {message}", output.destination),
    }
}

fn is(source: &TopicPartition, record: &KafkaRecord) -> bool {
    source.partition == record.partition && source.topic == record.topic
}

impl Batcher {
    pub fn new(
        rotation: Rotation,
        template: PartitionTemplate,
        formats: Formats,
        digest: &str,
    ) -> Self {
        Batcher {
            rotation,
            template,
            formats,
            digest: digest.to_string(),
            open: Vec::new(),
            owned: Vec::new(),
            paths: HashMap::new(),
        }
    }

    pub fn digest(&self) -> &str {
        &self.digest
    }

    fn open_at(&self, record: &KafkaRecord) -> Option<usize> {
        self.open.iter().position(|w| is(&w.source, record))
    }

    fn take_open(&mut self, source: &TopicPartition) -> Option<Window> {
        let at = self.open.iter().position(|w| w.source == *source)?;
        Some(self.open.swap_remove(at))
    }

    /// `source` is owned from now on, under `generation`: its windows count from 0, and
    /// the first one may replay a window its previous owner was writing.
    pub fn assign(&mut self, source: TopicPartition, generation: u64) {
        self.abandon(&source);
        self.owned.push((source, Ownership::new(generation)));
    }

    /// Drops the open window of a revoked partition: its next owner re-reads the range.
    pub fn abandon(&mut self, source: &TopicPartition) {
        self.take_open(source);
        self.owned.retain(|(owned, _)| owned != source);
    }

    /// Whether `record` opens a window that may replay one a previous owner began, whose
    /// marker must then be looked up and its end passed to [`Batcher::open`].
    pub fn needs_marker(&self, record: &KafkaRecord) -> bool {
        self.open_at(record).is_none()
            && self
                .owned
                .iter()
                .find(|(source, _)| is(source, record))
                .is_none_or(|(_, o)| o.may_replay)
    }

    /// Opens the window `record` starts; a replay passes its marker's end.
    pub fn open(&mut self, record: &KafkaRecord, replay_end: Option<i64>) {
        let source = TopicPartition {
            topic: record.topic.clone(),
            partition: record.partition,
        };
        let at = match self.owned.iter().position(|(s, _)| *s == source) {
            Some(at) => at,
            None => {
                self.owned.push((source.clone(), Ownership::new(0)));
                self.owned.len() - 1
            }
        };
        let ownership = &mut self.owned[at].1;
        let seq = ownership.windows;
        ownership.windows += 1;
        ownership.may_replay = replay_end.is_some();
        let generation = ownership.generation;
        self.take_open(&source);
        self.open.push(Window {
            source,
            generation,
            seq,
            first_offset: record.offset,
            next_offset: record.offset,
            records: 0,
            bytes: 0,
            opened_at: Instant::now(),
            replay_end,
            outputs: Vec::new(),
            dead_letters: encode::Lines::default(),
        });
    }

    /// The window `record` belongs to, opened at its offset if none is.
    fn window(&mut self, record: &KafkaRecord) -> &mut Window {
        let at = self.window_at(record);
        &mut self.open[at]
    }

    /// Where in `open` [`Batcher::window`] is.
    fn window_at(&mut self, record: &KafkaRecord) -> usize {
        match self.open_at(record) {
            Some(at) => at,
            None => {
                self.open(record, None);
                self.open.len() - 1
            }
        }
    }

    /// Closes the open window of `record`'s partition if `record` lies past its replay end
    /// (offsets may skip, so the end is not always reached exactly).
    pub fn close_before(&mut self, record: &KafkaRecord) -> Option<Window> {
        let at = self.open_at(record)?;
        let past = self.open[at]
            .replay_end
            .is_some_and(|end| record.offset >= end);
        past.then(|| self.open.swap_remove(at))
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
        let at = self.open_at(record).expect("the window is open");
        full.then(|| self.open.swap_remove(at))
    }

    /// Closes the windows that reached their age (a replayed window ends only at its marker).
    pub fn close_expired(&mut self) -> Vec<Window> {
        let max_age = self.rotation.max_age;
        let expired = |w: &Window| w.replay_end.is_none() && w.opened_at.elapsed() >= max_age;
        let mut closed = Vec::new();
        let mut at = 0;
        while at < self.open.len() {
            if expired(&self.open[at]) {
                closed.push(self.open.swap_remove(at));
            } else {
                at += 1;
            }
        }
        closed.sort_by(|a, b| a.source.cmp(&b.source));
        closed
    }

    /// How many windows are open.
    pub fn open_windows(&self) -> usize {
        self.open.len()
    }

    /// Whether an open window replays one a previous owner began.
    pub fn replaying(&self) -> bool {
        self.open.iter().any(|w| w.replay_end.is_some())
    }

    /// Names the transform that makes the windows opened from now on. Every window must be
    /// closed: an object holds one version's output.
    pub fn switch(&mut self, digest: &str) {
        assert!(
            self.open.is_empty(),
            "switching transform with open windows"
        );
        self.digest = digest.to_string();
    }

    /// Adds a transform output made from `record`, whose source declared `schema`, encoded
    /// straight into its object; the reason when the object's format cannot hold the row.
    pub fn add_output(
        &mut self,
        record: &KafkaRecord,
        output: &OutputRecord,
        time: Timestamp,
        schema: Option<&Arc<SourceSchema>>,
    ) -> Result<(), Reason> {
        let at = self.window_at(record);
        if self.paths.len() > 1024 {
            self.paths.clear();
        }
        let template = &self.template;
        let base = self
            .paths
            .entry(time.seconds.div_euclid(60))
            .or_insert_with(|| template.render(time));
        let mut extended = None;
        if !output.partition.is_empty() {
            let mut path = base.clone();
            for (name, value) in &output.partition {
                path.push('/');
                path.push_str(&path_segment(name));
                path.push('=');
                path.push_str(&path_segment(value));
            }
            extended = Some(path);
        }
        let path = extended.as_deref().unwrap_or(base);
        let window = &mut self.open[at];
        let found = window.outputs.iter().position(|o| {
            o.destination == output.destination && o.path == path && o.encoder.takes(schema)
        });
        let at = match found {
            Some(at) => at,
            None => {
                // Two names that escape alike share one object, as they share its key.
                let escaped = path_segment(&output.destination);
                let alike = |o: &Output| o.escaped == escaped && o.path == path;
                match (window.outputs.iter()).position(|o| alike(o) && o.encoder.takes(schema)) {
                    Some(at) => at,
                    None => {
                        // The first name's format decides, as its key does.
                        let format = match window.outputs.iter().find(|o| alike(o)) {
                            Some(o) => self.formats.of(&o.destination),
                            None => self.formats.of(&output.destination),
                        };
                        let mut encoder = encode::Encoder::new(format, schema.cloned());
                        // An object is made only once a row fits in it: none is empty.
                        encoder
                            .push_row(record.offset, &output.row)
                            .map_err(|message| unrepresentable(output, message))?;
                        window.outputs.push(Output {
                            destination: output.destination.clone(),
                            escaped,
                            path: path.to_string(),
                            encoder,
                        });
                        return Ok(());
                    }
                }
            }
        };
        window.outputs[at]
            .encoder
            .push_row(record.offset, &output.row)
            .map_err(|message| unrepresentable(output, message))
    }

    /// Adds a dead letter for `record`.
    pub fn add_dead_letter(&mut self, record: &KafkaRecord, reason: &Reason) {
        let line = encode::dead_letter_line(record, reason, &self.digest);
        self.window(record).dead_letters.push(record.offset, &line);
    }

    /// Closes every open window (end of input, shutdown, a switch), in partition order.
    pub fn close_all(&mut self) -> Vec<Window> {
        let mut closed = std::mem::take(&mut self.open);
        closed.sort_by(|a, b| a.source.cmp(&b.source));
        closed
    }

    /// The objects a closed window becomes, in a fixed order: outputs by destination and
    /// path, then the dead letters; and the source schema versions its Parquet objects
    /// hold, once per destination. Windows of a partition must come here in order: each
    /// records where the last one that wrote objects ended ([`WindowSpan::from`]).
    pub fn objects(
        &mut self,
        window: Window,
    ) -> Result<(Vec<Object>, Vec<VersionUse>), std::io::Error> {
        let Window {
            source,
            generation,
            first_offset,
            next_offset,
            outputs,
            dead_letters,
            ..
        } = window;
        let count = outputs.len() + usize::from(!dead_letters.is_empty());
        let accounted = self
            .owned
            .iter_mut()
            .find(|(owned, o)| *owned == source && o.generation == generation)
            .map(|(_, o)| &mut o.accounted);
        let from = accounted.as_ref().and_then(|a| **a).unwrap_or(first_offset);
        if let Some(accounted) = accounted {
            *accounted = Some(if count == 0 { from } else { next_offset });
        }
        let name = encode::ObjectName {
            topic: &source.topic,
            partition: source.partition,
            digest: &self.digest,
            window: WindowSpan {
                from,
                first_offset,
                next_offset,
                objects: count as u64,
            },
        };
        let mut keyed: Vec<(String, Output)> = (outputs.into_iter())
            .map(|o| (name.output_key(&o.escaped, &o.path, &o.encoder), o))
            .collect();
        keyed.sort_by(|(a, x), (b, y)| (&x.escaped, &x.path, a).cmp(&(&y.escaped, &y.path, b)));
        let mut objects = Vec::with_capacity(count);
        let mut versions: Vec<VersionUse> = Vec::new();
        for (key, output) in keyed {
            if let Some(schema) = output.encoder.version()
                && !(versions.iter())
                    .any(|v| v.destination == output.escaped && v.schema.id == schema.id)
            {
                versions.push(VersionUse {
                    destination: output.escaped.clone(),
                    schema: Arc::clone(schema),
                    first_file: key.clone(),
                    topic: source.topic.clone(),
                });
            }
            objects.push(output.encoder.finish(key, &name)?);
        }
        if !dead_letters.is_empty() {
            objects.push(dead_letters.finish(name.dead_letter_key(), &name)?);
        }
        Ok((objects, versions))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Column, Value};
    use crate::model::{Declared, Format, SourceColumn};

    fn record(offset: i64) -> KafkaRecord {
        KafkaRecord {
            topic: "shop.shop.customers".into(),
            partition: 0,
            offset,
            timestamp_ms: None,
            key: None,
            value: Some(b"{}".to_vec()),
        }
    }

    fn version(columns: &[&str]) -> Arc<SourceSchema> {
        let columns = columns.iter().map(|name| SourceColumn {
            name: name.to_string(),
            declared: Declared::Int(64),
        });
        Arc::new(SourceSchema::new(columns.collect()))
    }

    /// The keys of the one window made of 100 records whose schema alternates between two
    /// versions at every record, as during a connector rollout.
    fn alternating(format: Format) -> Vec<String> {
        let formats = Formats {
            default: format,
            by_destination: Default::default(),
        };
        let mut batcher = Batcher::new(
            Rotation::default(),
            PartitionTemplate::default(),
            formats,
            "0123456789abcdef",
        );
        let (old, new) = (version(&["id"]), version(&["id", "tier"]));
        for offset in 0..100 {
            let record = record(offset);
            let schema = if offset % 2 == 0 { &old } else { &new };
            let row = (schema.columns.iter())
                .map(|c| Column {
                    name: c.name.clone(),
                    value: Value::Int(offset),
                })
                .collect();
            let output = OutputRecord {
                destination: "customers".into(),
                row,
                partition: Vec::new(),
            };
            batcher
                .add_output(
                    &record,
                    &output,
                    Timestamp {
                        seconds: 0,
                        nanos: 0,
                    },
                    Some(schema),
                )
                .unwrap();
            assert!(batcher.consumed(&record).is_none());
        }
        let mut windows = batcher.close_all();
        assert_eq!(windows.len(), 1);
        let (objects, _) = batcher.objects(windows.remove(0)).unwrap();
        assert!(
            objects
                .iter()
                .all(|o| o.meta.window.objects == objects.len() as u64)
        );
        objects.into_iter().map(|o| o.key).collect()
    }

    #[test]
    fn a_window_of_interleaved_schema_versions_makes_one_parquet_file_per_version() {
        let keys = alternating(Format::Parquet);
        let (old, new) = (version(&["id"]), version(&["id", "tier"]));
        assert_eq!(keys.len(), 2, "{keys:?}");
        for id in [&old.id, &new.id] {
            assert!(
                keys.iter().any(|k| k.ends_with(&format!(".{id}.parquet"))),
                "{keys:?}"
            );
        }
        // JSON Lines objects do not split by version.
        assert_eq!(alternating(Format::Jsonl).len(), 1);
    }
}
