//! The data path, top to bottom:
//!
//! 1. **source** ([`crate::source`]): poll a batch of Kafka records;
//! 2. **decode** ([`crate::decode`]): Debezium envelope → typed change event, or a dead letter;
//! 3. **transform** ([`crate::transform`]): one guest call for the whole batch;
//! 4. **batch** ([`crate::batch`]): route outputs into per-partition windows;
//! 5. **encode** ([`crate::encode`]): a closed window → gzipped JSON Lines objects;
//! 6. **sink** ([`crate::sink`]): each object durable;
//! 7. **ack**: only then commit the window's offsets.
//!
//! Between batches, a newer transform version (from [`crate::transform::watch`]) replaces the
//! running one once the open windows are written, so no object mixes versions.

use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use serde::Serialize;

use crate::batch::{Batcher, Marker, PartitionTemplate, Rotation, TopicPartition, Window};
use crate::config::BatchConfig;
use crate::decode::{self, Decoded, KafkaRecord, SchemaChange};
use crate::encode::{Object, Reason};
use crate::event::{Column, OutputRecord, Timestamp, Value};
use crate::sink::{Sink, SinkError};
use crate::source::{Source, SourceError};
use crate::telemetry::Telemetry;
use crate::transform::{Current, Transform};

/// Where schema-change events land, as rows, beside the tables.
pub const SCHEMA_CHANGES: &str = "_schema_changes";

/// How the pipeline batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Records per poll, and so events per transform call.
    pub batch_size: usize,
    pub rotation: Rotation,
    pub template: PartitionTemplate,
    /// Stop once no record has arrived for this long and every window is written.
    pub stop_when_idle: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            batch_size: 256,
            rotation: Rotation::default(),
            template: PartitionTemplate::default(),
            stop_when_idle: None,
        }
    }
}

impl Options {
    /// The options a `pipeline.toml` `[batch]` section describes.
    pub fn from_config(batch: &BatchConfig) -> Result<Options, String> {
        Ok(Options {
            batch_size: batch.batch_size,
            rotation: Rotation {
                max_records: batch.max_records,
                max_bytes: batch.max_bytes,
                max_age: Duration::from_millis(batch.max_age_ms),
            },
            template: PartitionTemplate::parse(&batch.partition_template)?,
            stop_when_idle: None,
        })
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Kafka records read.
    pub records_in: u64,
    /// Row changes handed to the transform.
    pub change_events: u64,
    /// Rows written to destinations (schema changes included).
    pub records_out: u64,
    /// Records written to the dead-letter prefix.
    pub dead_letters: u64,
    /// Kafka tombstones (they follow deletes; the delete event carried the row).
    pub tombstones: u64,
    /// Connector heartbeats (they only move offsets).
    pub heartbeats: u64,
    /// DDL events, written to `_schema_changes`.
    pub schema_changes: u64,
    /// Transform calls that failed as a whole (trap, timeout, memory cap).
    pub failed_calls: u64,
    /// Switches to another transform version.
    pub swaps: u64,
    pub objects: u64,
    pub bytes_written: u64,
    #[serde(serialize_with = "seconds")]
    pub elapsed: Duration,
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl Summary {
    /// Source records per second.
    pub fn throughput(&self) -> f64 {
        self.records_in as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("source: {0}")]
    Source(#[from] SourceError),
    #[error("sink: {0}")]
    Sink(#[from] SinkError),
    #[error("encoding an object: {0}")]
    Encode(#[from] std::io::Error),
}

/// What the decode and transform stages made of one source record.
#[derive(Debug, Clone, PartialEq)]
pub enum Emit {
    /// A row for the lake, and the commit time that places it in the partition path.
    Output(OutputRecord, Timestamp),
    /// A DDL event, as a row for [`SCHEMA_CHANGES`].
    SchemaChange(OutputRecord, Timestamp),
    DeadLetter(Reason),
    Tombstone,
    Heartbeat,
}

/// Runs the pipeline until the source ends (or, with `stop_when_idle`, goes quiet).
pub async fn run<S: Source, K: Sink>(
    source: &mut S,
    current: &mut Current,
    sink: &K,
    options: &Options,
    telemetry: &Telemetry,
    progress: &ProgressBar,
) -> Result<Summary, PipelineError> {
    let started = Instant::now();
    let mut batcher = Batcher::new(
        options.rotation,
        options.template.clone(),
        current.transform.digest(),
    );
    let mut summary = Summary::default();
    let mut last_record = Instant::now();
    let mut newer: Option<Box<dyn Transform>> = None;

    loop {
        // A batch boundary: switch to a newer version if one is ready, unless a replayed
        // window is open (it must end where its marker says, under the version that began it).
        newer = newer.or_else(|| current.newer());
        if newer.is_some() && !batcher.replaying() {
            let next = newer.take().expect("checked above");
            switch(
                current,
                next,
                &mut batcher,
                sink,
                source,
                telemetry,
                &mut summary,
            )
            .await?;
        }
        let Some(records) = source.poll(options.batch_size).await? else {
            break;
        };
        for revoked in source.revoked() {
            batcher.abandon(&revoked);
        }
        telemetry.owned(source.owned());
        telemetry.records_in(records.len());

        // Decode and transform: CPU-bound and this task's only work, so it runs in place,
        // outside the async context: a guest's blocking WASI calls (a Go runtime's `poll`)
        // drive their own futures, which must not run inside this runtime's.
        let transform = current.transform.as_mut();
        let transformed = tokio::task::block_in_place(|| transform_records(&records, transform));
        summary.change_events += transformed.change_events;
        summary.failed_calls += u64::from(transformed.failed_call);
        if let Some(took) = transformed.call_time {
            telemetry.transform_call(transformed.change_events as usize, took);
        }

        // Batch, in offset order, so windows close at the same records on every replay.
        let mut closed = Vec::new();
        for (record, emits) in records.iter().zip(transformed.emitted) {
            summary.records_in += 1;
            closed.extend(batcher.close_before(record));
            if batcher.needs_marker(record) {
                let end = replay_end(sink, &batcher, record).await?;
                batcher.open(record, end);
            }
            for emit in emits {
                match emit {
                    Emit::Output(output, time) => {
                        summary.records_out += 1;
                        telemetry.output(&output.destination);
                        batcher.add_output(record, &output, time);
                    }
                    Emit::SchemaChange(output, time) => {
                        summary.schema_changes += 1;
                        summary.records_out += 1;
                        telemetry.output(&output.destination);
                        batcher.add_output(record, &output, time);
                    }
                    Emit::DeadLetter(reason) => {
                        summary.dead_letters += 1;
                        telemetry.dead_letter();
                        batcher.add_dead_letter(record, &reason);
                    }
                    Emit::Tombstone => summary.tombstones += 1,
                    Emit::Heartbeat => summary.heartbeats += 1,
                }
            }
            closed.extend(batcher.consumed(record));
        }
        closed.extend(batcher.close_expired());

        // Encode, write, and commit what is durable.
        for window in closed {
            write_window(&batcher, window, sink, source, telemetry, &mut summary).await?;
        }
        progress.inc(records.len() as u64);

        if !records.is_empty() {
            last_record = Instant::now();
        } else if options
            .stop_when_idle
            .is_some_and(|idle| batcher.is_idle() && last_record.elapsed() >= idle)
        {
            break;
        }
    }

    for window in batcher.close_all() {
        write_window(&batcher, window, sink, source, telemetry, &mut summary).await?;
    }
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// Writes every open window under the running version, then runs `next`: the pause the
/// switch costs is those writes.
async fn switch<S: Source, K: Sink>(
    current: &mut Current,
    next: Box<dyn Transform>,
    batcher: &mut Batcher,
    sink: &K,
    source: &mut S,
    telemetry: &Telemetry,
    summary: &mut Summary,
) -> Result<(), PipelineError> {
    let paused = Instant::now();
    for window in batcher.close_all() {
        write_window(batcher, window, sink, source, telemetry, summary).await?;
    }
    let previous = std::mem::replace(&mut current.transform, next);
    batcher.switch(current.transform.digest());
    let pause = paused.elapsed();
    summary.swaps += 1;
    telemetry.swapped(previous.digest(), current.transform.digest(), pause);
    tracing::info!(from = %previous.digest(), to = %current.transform.digest(),
        pause_ms = pause.as_secs_f64() * 1000.0, "switched transform version");
    Ok(())
}

/// The end recorded by a marker at `record`'s offset: a window that was being written when
/// the last owner stopped. A marker left by another transform version belongs to objects
/// this version would not overwrite, so they are deleted and the range written afresh.
async fn replay_end<K: Sink>(
    sink: &K,
    batcher: &Batcher,
    record: &KafkaRecord,
) -> Result<Option<i64>, PipelineError> {
    let source = TopicPartition {
        topic: record.topic.clone(),
        partition: record.partition,
    };
    let Some(bytes) = sink.get(&Marker::key(&source, record.offset)).await? else {
        return Ok(None);
    };
    match serde_json::from_slice::<Marker>(&bytes) {
        Ok(marker) if marker.transform == batcher.digest() => Ok(Some(marker.next_offset)),
        Ok(marker) => {
            tracing::info!(topic = %source.topic, partition = source.partition,
                offset = record.offset, "replacing a partial window of another transform version");
            for key in &marker.objects {
                sink.delete(key).await?;
            }
            Ok(None)
        }
        Err(e) => {
            tracing::warn!(topic = %source.topic, partition = source.partition,
                "ignoring an unreadable window marker: {e}");
            Ok(None)
        }
    }
}

/// Writes a closed window: its marker, every object, then the offset commit, then the
/// marker's removal. A crash anywhere before the commit replays the same window.
async fn write_window<S: Source, K: Sink>(
    batcher: &Batcher,
    window: Window,
    sink: &K,
    source: &mut S,
    telemetry: &Telemetry,
    summary: &mut Summary,
) -> Result<(), PipelineError> {
    let started = Instant::now();
    let (partition, first_offset, next_offset) = (
        window.source.clone(),
        window.first_offset,
        window.next_offset,
    );
    let objects = batcher.objects(window)?;
    let marker_key = Marker::key(&partition, first_offset);
    if !objects.is_empty() {
        let marker = Marker {
            next_offset,
            transform: batcher.digest().to_string(),
            objects: objects.iter().map(|o| o.key.clone()).collect(),
        };
        let meta = objects[0].meta.clone();
        sink.put(&Object {
            key: marker_key.clone(),
            body: serde_json::to_vec(&marker).expect("a marker serializes"),
            meta,
        })
        .await?;
    }
    for object in &objects {
        let upload = Instant::now();
        let put = sink.put(object).await;
        telemetry.upload(upload.elapsed(), put.is_ok());
        put?;
        summary.objects += 1;
        summary.bytes_written += object.body.len() as u64;
    }
    source.commit(&partition, next_offset).await?;
    telemetry.flushed(&partition, next_offset, started.elapsed());
    if !objects.is_empty() {
        sink.delete(&marker_key).await?;
    }
    Ok(())
}

/// What [`transform_records`] made of a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Transformed {
    /// Per source record, in order.
    pub emitted: Vec<Vec<Emit>>,
    /// How many records were row changes (and went to the transform).
    pub change_events: u64,
    /// Whether the transform call failed as a whole.
    pub failed_call: bool,
    /// How long the transform call took, if there was one.
    pub call_time: Option<Duration>,
}

/// Decodes `records` and runs the change events through `transform` in one call.
/// `wrt test` prints what each record became; `run` batches it.
pub fn transform_records(records: &[KafkaRecord], transform: &mut dyn Transform) -> Transformed {
    let mut emitted: Vec<Vec<Emit>> = Vec::with_capacity(records.len());
    let mut events = Vec::with_capacity(records.len());
    let mut event_slots = Vec::with_capacity(records.len());
    for record in records {
        let emit = match decode::decode(record) {
            Ok(Decoded::Change(event)) => {
                event_slots.push(emitted.len());
                events.push(event);
                Vec::new()
            }
            Ok(Decoded::Tombstone) => vec![Emit::Tombstone],
            Ok(Decoded::Heartbeat) => vec![Emit::Heartbeat],
            Ok(Decoded::SchemaChange(change)) => {
                let time = change.commit_time;
                vec![Emit::SchemaChange(schema_change_record(change), time)]
            }
            Err(e) => vec![Emit::DeadLetter(Reason {
                stage: "decode",
                kind: "malformed".into(),
                message: e.to_string(),
            })],
        };
        emitted.push(emit);
    }
    let mut transformed = Transformed {
        emitted,
        change_events: events.len() as u64,
        failed_call: false,
        call_time: None,
    };
    if events.is_empty() {
        return transformed;
    }
    let emitted = &mut transformed.emitted;

    let called = Instant::now();
    let result = transform.process(&events);
    transformed.call_time = Some(called.elapsed());
    match result {
        Ok(outcomes) => {
            for ((slot, event), outcome) in event_slots.into_iter().zip(&events).zip(outcomes) {
                emitted[slot] = match outcome {
                    Ok(outputs) => outputs
                        .into_iter()
                        .map(|o| Emit::Output(o, event.commit_time))
                        .collect(),
                    Err(e) => vec![Emit::DeadLetter(Reason {
                        stage: "transform",
                        kind: "rejected".into(),
                        message: format!("[{}] {}", e.code, e.message),
                    })],
                };
            }
        }
        Err(failure) => {
            tracing::warn!(
                events = events.len(),
                "{failure}; the batch goes to the dead-letter prefix"
            );
            transformed.failed_call = true;
            let reason = Reason {
                stage: "transform",
                kind: failure.kind.as_str().into(),
                message: failure.message,
            };
            for slot in event_slots {
                emitted[slot] = vec![Emit::DeadLetter(reason.clone())];
            }
        }
    }
    transformed
}

fn schema_change_record(change: SchemaChange) -> OutputRecord {
    let text = |name: &str, value: String| Column {
        name: name.into(),
        value: Value::Text(value),
    };
    OutputRecord {
        destination: SCHEMA_CHANGES.into(),
        row: vec![
            text("server", change.server),
            text("database", change.database),
            Column {
                name: "tables".into(),
                value: Value::Json(serde_json::to_string(&change.tables).unwrap_or_default()),
            },
            text("ddl", change.ddl),
            Column {
                name: "commit_time".into(),
                value: Value::Timestamp(change.commit_time),
            },
        ],
        partition: Vec::new(),
    }
}
