//! The data path, top to bottom:
//!
//! 1. **source** ([`source`]): the main task polls a batch of Kafka records and hands each
//!    partition's records, in order, to the lane that owns the partition;
//! 2. **decode** ([`decode`]): in the lane, Debezium envelope → typed change event, or a
//!    dead letter;
//! 3. **transform** ([`transform`]): one guest call per batch, on the lane's own instance;
//! 4. **encode** ([`encode`]): each output row straight into its object's gzip stream;
//! 5. **batch** ([`batch`]): rows routed into per-partition windows, closed by count, size
//!    or age;
//! 6. **sink** ([`sink`]): a closed window goes to a bounded pool of background writers
//!    that make its marker and objects durable while the lanes go on consuming;
//!    **catalog** ([`catalog`]): then, if the pipeline has one, its Parquet tables are
//!    described (columns, partitions) before the window counts as written;
//! 7. **commit** ([`commit`]): back in the main task, a partition's offset is committed once
//!    its windows are durable in order, then their markers are removed.
//!
//! Lanes are threads, one per core by default, each with its own transform instance, so
//! decoding and transforming use every core; a partition stays on one lane while this host
//! owns it, which keeps its order. When the writers fall behind, the lanes wait for a free
//! writer and the main task for a free lane: memory stays bounded.
//!
//! A newer transform version (from [`crate::registry::watch`]) reaches every lane, which
//! switches at its next batch boundary once its open windows are handed to the writers, so
//! no object mixes versions. A shadow version runs in each lane beside the current one, on
//! the same batches and its own instance; its outcomes are compared ([`shadow`]), never
//! written.

pub mod batch;
pub mod catalog;
pub mod commit;
pub mod decode;
pub mod encode;
pub mod history;
pub mod shadow;
pub mod sink;
pub mod source;
pub mod transform;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use serde::Serialize;
use tokio::runtime::Handle;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::config::{BatchConfig, PipelineSection, RetrySection};
use crate::event::{ChangeEvent, Column, Outcome, OutputRecord, Timestamp, Value};
use crate::model::{
    BinlogPosition, Formats, KafkaRecord, Owners, Reason, SourceSchema, TopicPartition, VersionUse,
};
use crate::telemetry::Telemetry;
use batch::{Batcher, PartitionTemplate, Rotation, Window};
use catalog::Catalog;
use commit::{Committer, Document, Sealed, Written};
use decode::{Decoded, Decoder, SchemaChange};
use history::SchemaHistory;
use sink::{Sink, SinkError};
use source::{Source, SourceError};
use transform::{BatchFailure, Current, InstanceError, Newer, Transform};

/// Where schema-change events land, as rows, beside the tables.
pub const SCHEMA_CHANGES: &str = "_schema_changes";

/// How the pipeline batches and spreads its work.
#[derive(Debug, Clone)]
pub struct Options {
    /// Records per poll, and so at most that many events per transform call.
    pub batch_size: usize,
    pub rotation: Rotation,
    pub template: PartitionTemplate,
    /// The format of each destination's objects.
    pub formats: Formats,
    /// Stop once no record has arrived for this long and every window is written.
    pub stop_when_idle: Option<Duration>,
    /// Threads that decode and transform, each with its own transform instance.
    pub lanes: usize,
    /// Windows being written at once.
    pub writers: usize,
    /// How long a window is retried while the store fails.
    pub retry: RetrySection,
    /// Where written Parquet tables are described, if anywhere.
    pub catalog: Option<Arc<Catalog>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            batch_size: 256,
            rotation: Rotation::default(),
            template: PartitionTemplate::default(),
            formats: Formats::default(),
            stop_when_idle: None,
            lanes: PipelineSection::default().lanes(),
            writers: PipelineSection::default().writers,
            retry: RetrySection::default(),
            catalog: None,
        }
    }
}

impl Options {
    /// The options a `pipeline.toml`'s `[batch]`, `[pipeline]` and `[retry]` sections
    /// describe.
    pub fn from_config(
        batch: &BatchConfig,
        pipeline: &PipelineSection,
        retry: &RetrySection,
    ) -> Result<Options, String> {
        Ok(Options {
            batch_size: batch.batch_size,
            rotation: Rotation {
                max_records: batch.max_records,
                max_bytes: batch.max_bytes,
                max_age: Duration::from_millis(batch.max_age_ms),
            },
            template: PartitionTemplate::parse(&batch.partition_template)?,
            formats: Formats {
                default: batch.format,
                by_destination: batch.formats.clone(),
            },
            stop_when_idle: None,
            lanes: pipeline.lanes(),
            writers: pipeline.writers,
            retry: retry.clone(),
            catalog: None,
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
    /// Transform calls that failed as a whole (trap, timeout, memory cap, contract), the
    /// calls on a failed batch's parts included: one poison event in 256 counts 9.
    pub failed_calls: u64,
    /// Switches to another transform version.
    pub swaps: u64,
    pub objects: u64,
    pub bytes_written: u64,
    /// The transform version running at the end.
    pub transform: String,
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

    /// Adds what a lane counted.
    fn add_lane(&mut self, lane: &Summary) {
        self.records_in += lane.records_in;
        self.change_events += lane.change_events;
        self.records_out += lane.records_out;
        self.dead_letters += lane.dead_letters;
        self.tombstones += lane.tombstones;
        self.heartbeats += lane.heartbeats;
        self.schema_changes += lane.schema_changes;
        self.failed_calls += lane.failed_calls;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    // No `#[from]` on these three: it would make the inner error the source too, and the
    // binary, which prints the cause chain, would say it twice.
    #[error("source: {0}")]
    Source(SourceError),
    #[error("sink: {0}")]
    Sink(SinkError),
    #[error(
        "sink: the store has failed for {seconds} s (retry.give-up-after-s), last with: {error}; \
         everything before the last durable window is committed: restart once the store is back, \
         or remove retry.give-up-after-s to wait for it"
    )]
    GaveUp { seconds: u64, error: SinkError },
    #[error("encoding an object: {0}")]
    Encode(std::io::Error),
    #[error(transparent)]
    Instance(#[from] InstanceError),
    #[error("lane {0} stopped unexpectedly")]
    LaneGone(usize),
}

impl From<SourceError> for PipelineError {
    fn from(error: SourceError) -> Self {
        PipelineError::Source(error)
    }
}

impl From<SinkError> for PipelineError {
    fn from(error: SinkError) -> Self {
        PipelineError::Sink(error)
    }
}

impl From<std::io::Error> for PipelineError {
    fn from(error: std::io::Error) -> Self {
        PipelineError::Encode(error)
    }
}

/// What the decode and transform stages made of one source record.
#[derive(Debug, Clone, PartialEq)]
pub enum Emit {
    /// A row for the lake, and the commit time that places it in the partition path.
    Output(OutputRecord, Timestamp),
    /// A DDL event, which becomes a row for [`SCHEMA_CHANGES`].
    SchemaChange(SchemaChange),
    DeadLetter(Reason),
    Tombstone,
    Heartbeat,
}

impl Emit {
    /// The row this puts in the lake, if any.
    pub fn row(&self) -> Option<std::borrow::Cow<'_, OutputRecord>> {
        match self {
            Emit::Output(output, _) => Some(std::borrow::Cow::Borrowed(output)),
            Emit::SchemaChange(change) => Some(std::borrow::Cow::Owned(schema_change_record(
                change.clone(),
            ))),
            Emit::DeadLetter(_) | Emit::Tombstone | Emit::Heartbeat => None,
        }
    }
}

/// Runs the pipeline until the source ends (or, with `stop_when_idle`, goes quiet).
pub async fn run<S: Source, K: Sink + Clone + Send + Sync + 'static>(
    source: &mut S,
    current: Current,
    sink: &K,
    options: &Options,
    telemetry: &Arc<Telemetry>,
    progress: &ProgressBar,
) -> Result<Summary, PipelineError> {
    let started = Instant::now();
    let Current {
        transform,
        mut versions,
    } = current;
    let mut digest = transform.digest().to_string();
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let shared = Shared {
        sink: sink.clone(),
        events: events_tx,
        writers: Arc::new(Semaphore::new(options.writers.max(1))),
        retry: options.retry.clone(),
        dispatched: Arc::new(AtomicU64::new(0)),
        telemetry: Arc::clone(telemetry),
        handle: Handle::current(),
        owners: source.owners(),
        catalog: options.catalog.clone(),
        history: Arc::default(),
    };
    let mut lanes = start_lanes(transform, options, &shared)?;
    let mut router = Router::new(lanes.len(), source.owners());
    let mut state = MainState {
        committer: Committer::default(),
        sent: HashMap::new(),
        deletes: JoinSet::new(),
        summary: Summary::default(),
        switching: None,
        written: 0,
    };
    let mut last_record = Instant::now();

    loop {
        // A newer version goes to every lane, one instance each; each switches at its own
        // next batch boundary. One switch at a time.
        match versions.ready_unless(state.switching.is_some()) {
            Some(Newer::Current(next)) => {
                let to = next.digest().to_string();
                let instances = tokio::task::block_in_place(|| instances(next, lanes.len()))?;
                for (lane, instance) in lanes.iter().zip(instances) {
                    lane.send(LaneInput::Switch(instance)).await?;
                }
                state.switching = Some(Switching {
                    from: std::mem::replace(&mut digest, to.clone()),
                    to,
                    lanes: lanes.len(),
                    pause: Duration::ZERO,
                });
            }
            // A shadow runs beside the current version in every lane, on its own instances:
            // one that cannot start is refused, and the pipeline goes on without it.
            Some(Newer::Shadow(shadow)) => {
                let shadows = match shadow {
                    None => Ok(Vec::new()),
                    Some(shadow) => {
                        let digest = shadow.digest().to_string();
                        tokio::task::block_in_place(|| instances(shadow, lanes.len()))
                            .map_err(|e| (digest, e))
                    }
                };
                let mut shadows = match shadows {
                    Ok(shadows) => {
                        match shadows.first() {
                            Some(first) => telemetry.shadow_started(first.digest()),
                            None => telemetry.shadow_ended(),
                        }
                        shadows.into_iter().map(Some).collect()
                    }
                    Err((digest, e)) => {
                        tracing::error!(version = %digest, "refusing the shadow version: {e}");
                        telemetry.refused(&digest, &e.to_string());
                        telemetry.shadow_ended();
                        Vec::new()
                    }
                };
                shadows.resize_with(lanes.len(), || None);
                for (lane, shadow) in lanes.iter().zip(shadows) {
                    lane.send(LaneInput::Shadow(shadow)).await?;
                }
            }
            None => {}
        }

        let Some(records) = source.poll(options.batch_size).await? else {
            break;
        };

        // Each partition's records, in order, to the lane that owns it. They all precede
        // any revocation the poll saw, which is handled after them.
        let count = records.len();
        let mut batches: Vec<LaneBatch> = (0..lanes.len()).map(|_| LaneBatch::default()).collect();
        for record in records {
            let Some((lane, assigned)) = router.lane(&record) else {
                continue;
            };
            if let Some((source, generation)) = assigned {
                state.committer.assigned(source.clone(), generation);
                batches[lane].assigned.push((source, generation));
            }
            batches[lane].records.push(record);
        }
        for (lane, batch) in lanes.iter().zip(batches) {
            if batch.records.is_empty() {
                lane.tick();
            } else {
                lane.send(LaneInput::Records(batch)).await?;
            }
        }
        progress.inc(count as u64);
        for revoked in source.revoked() {
            if let Some(lane) = router.revoke(&revoked) {
                state.revoked(&revoked);
                lanes[lane].send(LaneInput::Revoke(revoked)).await?;
            }
        }
        telemetry.owned(source.owned(), source.trouble());

        // What the writers finished, then the commits it allows.
        while let Ok(event) = events.try_recv() {
            state.handle(event, telemetry, &mut digest)?;
        }
        state.commit(source, sink, telemetry).await?;

        if count > 0 {
            last_record = Instant::now();
        } else if options.stop_when_idle.is_some_and(|idle| {
            last_record.elapsed() >= idle
                && lanes.iter().all(Lane::is_idle)
                && state.written == shared.dispatched.load(Ordering::Acquire)
        }) {
            break;
        }
    }

    // Every lane writes what it holds; then wait for the writers and commit the rest.
    let mut lane_summaries = Vec::with_capacity(lanes.len());
    for lane in lanes.drain(..) {
        lane_summaries.push(tokio::task::block_in_place(|| lane.finish()));
    }
    let dispatched = shared.dispatched.load(Ordering::Acquire);
    while state.written < dispatched {
        let event = events
            .recv()
            .await
            .expect("the writers report every window");
        state.handle(event, telemetry, &mut digest)?;
    }
    state.commit_last(source, sink, telemetry).await?;
    while let Some(deleted) = state.deletes.join_next().await {
        if let Ok(Err(e)) = deleted {
            // The offset is committed, so no replay reads this marker again.
            tracing::warn!("a window marker was not removed: {e}");
        }
    }

    let mut summary = state.summary;
    for lane in &lane_summaries {
        summary.add_lane(lane);
    }
    summary.transform = digest;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// What every lane and writer shares.
#[derive(Clone)]
struct Shared<K> {
    sink: K,
    /// Written windows (from the writers) and lane events, to the main task.
    events: mpsc::UnboundedSender<Event>,
    writers: Arc<Semaphore>,
    retry: RetrySection,
    /// Windows handed to the writers so far.
    dispatched: Arc<AtomicU64>,
    telemetry: Arc<Telemetry>,
    handle: Handle,
    /// Who owns which partition, when ownership can move: a window is written only while
    /// its partition is owned under the epoch it was made in.
    owners: Option<Arc<Owners>>,
    catalog: Option<Arc<Catalog>>,
    history: Arc<SchemaHistory>,
}

/// What the main task hears about.
enum Event {
    Written(Written),
    /// A lane switched to the version it was sent, after standing still this long.
    Switched(Duration),
    Failed(PipelineError),
}

/// The main task's side of the run: commits in order, marker removals, what it counted.
struct MainState {
    committer: Committer,
    /// Per partition, the last offset sent to the broker and the markers of the windows it
    /// covers, removed once the broker confirms.
    sent: HashMap<TopicPartition, (i64, Vec<(i64, String)>)>,
    deletes: JoinSet<Result<(), SinkError>>,
    summary: Summary,
    switching: Option<Switching>,
    /// Windows the writers reported back.
    written: u64,
}

/// A switch under way: lanes that have not switched yet, and the longest pause so far.
struct Switching {
    from: String,
    to: String,
    lanes: usize,
    pause: Duration,
}

impl MainState {
    fn handle(
        &mut self,
        event: Event,
        telemetry: &Telemetry,
        digest: &mut String,
    ) -> Result<(), PipelineError> {
        match event {
            Event::Written(written) => {
                self.written += 1;
                self.summary.objects += written.objects;
                self.summary.bytes_written += written.bytes;
                if let Some(stale) = self.committer.written(written) {
                    tracing::debug!(topic = %stale.source.topic, partition = stale.source.partition,
                        abandoned = stale.abandoned,
                        "a window of a revoked partition ends here; the next owner re-reads its range");
                }
            }
            Event::Switched(pause) => {
                let switching = self.switching.as_mut().expect("lanes switch when told");
                switching.lanes -= 1;
                switching.pause = switching.pause.max(pause);
                if switching.lanes == 0 {
                    let done = self.switching.take().expect("checked above");
                    self.summary.swaps += 1;
                    telemetry.swapped(&done.from, &done.to, done.pause);
                    tracing::info!(from = %done.from, to = %done.to,
                        pause_ms = done.pause.as_secs_f64() * 1000.0, "switched transform version");
                    debug_assert_eq!(*digest, done.to);
                }
            }
            Event::Failed(e) => return Err(e),
        }
        Ok(())
    }

    /// A partition this host no longer owns: nothing more is committed for it, and the
    /// markers of its unconfirmed windows stay for the next owner.
    fn revoked(&mut self, source: &TopicPartition) {
        self.committer.revoked(source);
        self.sent.remove(source);
    }

    /// Sends the commit of every partition whose windows are durable in order, in one
    /// request, and removes the markers of the windows the broker has confirmed since.
    async fn commit<S: Source, K: Sink + Clone + Send + Sync + 'static>(
        &mut self,
        source: &mut S,
        sink: &K,
        telemetry: &Telemetry,
    ) -> Result<(), PipelineError> {
        let offsets = self.ready();
        if !offsets.is_empty() {
            source.commit(&offsets)?;
        }
        for (partition, next_offset) in source.confirmed() {
            self.confirmed(&partition, next_offset, sink, telemetry);
        }
        while let Some(deleted) = self.deletes.try_join_next() {
            if let Ok(Err(e)) = deleted {
                tracing::warn!("a window marker was not removed: {e}");
            }
        }
        Ok(())
    }

    /// At the end of the run: commits every partition not yet confirmed and waits for the
    /// answer. One the broker refused (the partition moved) keeps its markers: the next
    /// owner replays those windows exactly.
    async fn commit_last<S: Source, K: Sink + Clone + Send + Sync + 'static>(
        &mut self,
        source: &mut S,
        sink: &K,
        telemetry: &Telemetry,
    ) -> Result<(), PipelineError> {
        self.ready();
        let offsets: Vec<(TopicPartition, i64)> = self
            .sent
            .iter()
            .map(|(partition, (next_offset, _))| (partition.clone(), *next_offset))
            .collect();
        if !offsets.is_empty() && source.commit_and_wait(&offsets).await? {
            for (partition, next_offset) in offsets {
                self.confirmed(&partition, next_offset, sink, telemetry);
            }
        }
        Ok(())
    }

    /// The offsets the committer allows now, noted as sent with their windows' markers.
    fn ready(&mut self) -> Vec<(TopicPartition, i64)> {
        let ready = self.committer.ready();
        for commit in &ready {
            let (sent, markers) = self.sent.entry(commit.source.clone()).or_default();
            *sent = commit.next_offset;
            markers.extend(commit.markers().map(|(end, key)| (end, key.to_string())));
        }
        ready
            .into_iter()
            .map(|c| (c.source, c.next_offset))
            .collect()
    }

    /// The broker accepted `next_offset` for `partition`: the markers of the windows before
    /// it go, in the background.
    fn confirmed<K: Sink + Clone + Send + Sync + 'static>(
        &mut self,
        partition: &TopicPartition,
        next_offset: i64,
        sink: &K,
        telemetry: &Telemetry,
    ) {
        telemetry.committed(partition, next_offset);
        let Some((sent, markers)) = self.sent.get_mut(partition) else {
            return;
        };
        let covered = markers.partition_point(|(end, _)| *end <= next_offset);
        for (_, marker) in markers.drain(..covered) {
            let sink = sink.clone();
            self.deletes
                .spawn(async move { sink.delete(&marker).await });
        }
        if *sent <= next_offset {
            self.sent.remove(partition);
        }
    }
}

/// Which lane owns each partition this host reads, and under which generation: a partition
/// goes to the least loaded lane when first seen, and stays there until revoked. The
/// generation is the source's ownership epoch when ownership can move, and a record of a
/// partition the source does not own (read before a revocation) is dropped.
struct Router {
    owners: HashMap<TopicPartition, usize>,
    epochs: Option<Arc<Owners>>,
    load: Vec<usize>,
    generations: u64,
    /// The last record's partition and lane: a poll returns runs of one partition.
    last: Option<(TopicPartition, usize)>,
}

impl Router {
    fn new(lanes: usize, epochs: Option<Arc<Owners>>) -> Self {
        Router {
            owners: HashMap::new(),
            epochs,
            load: vec![0; lanes],
            generations: 0,
            last: None,
        }
    }

    /// The lane of `record`'s partition, and the partition with its new generation if it
    /// was not owned until now; `None` if the source no longer owns it.
    fn lane(&mut self, record: &KafkaRecord) -> Option<(usize, Option<(TopicPartition, u64)>)> {
        if let Some((last, lane)) = &self.last
            && last.partition == record.partition
            && last.topic == record.topic
        {
            return Some((*lane, None));
        }
        let source = TopicPartition {
            topic: record.topic.clone(),
            partition: record.partition,
        };
        if let Some(&lane) = self.owners.get(&source) {
            self.last = Some((source, lane));
            return Some((lane, None));
        }
        let generation = match &self.epochs {
            Some(epochs) => epochs.epoch(&source)?,
            None => self.generations + 1,
        };
        let lane = (0..self.load.len())
            .min_by_key(|&lane| self.load[lane])
            .expect("at least one lane");
        self.load[lane] += 1;
        self.generations = generation;
        self.owners.insert(source.clone(), lane);
        self.last = Some((source.clone(), lane));
        Some((lane, Some((source, generation))))
    }

    /// Forgets a revoked partition; returns the lane that had it.
    fn revoke(&mut self, source: &TopicPartition) -> Option<usize> {
        self.last = None;
        let lane = self.owners.remove(source)?;
        self.load[lane] -= 1;
        Some(lane)
    }
}

/// What the main task sends a lane.
enum LaneInput {
    Records(LaneBatch),
    Revoke(TopicPartition),
    /// Nothing arrived for this lane: close the windows that are old enough.
    Tick,
    Switch(Box<dyn Transform>),
    /// Run this candidate beside the current version from the next batch on (`None`: stop).
    Shadow(Option<Box<dyn Transform>>),
}

/// Records for one lane, with the partitions it owns from now on.
#[derive(Default)]
struct LaneBatch {
    assigned: Vec<(TopicPartition, u64)>,
    records: Vec<KafkaRecord>,
}

/// A lane as the main task sees it.
struct Lane {
    index: usize,
    input: mpsc::Sender<LaneInput>,
    status: Arc<LaneStatus>,
    thread: std::thread::JoinHandle<Summary>,
}

/// What the main task can see of a lane without asking it.
#[derive(Default)]
struct LaneStatus {
    /// Inputs sent and not yet processed.
    queued: AtomicUsize,
    open_windows: AtomicUsize,
}

/// Inputs a lane may hold before the main task waits: enough to keep it busy while the
/// next batch is polled.
const LANE_QUEUE: usize = 2;

fn start_lanes<K: Sink + Clone + Send + Sync + 'static>(
    transform: Box<dyn Transform>,
    options: &Options,
    shared: &Shared<K>,
) -> Result<Vec<Lane>, PipelineError> {
    let instances = tokio::task::block_in_place(|| instances(transform, options.lanes.max(1)))?;
    Ok(instances
        .into_iter()
        .enumerate()
        .map(|(index, transform)| {
            let (input, inputs) = mpsc::channel(LANE_QUEUE);
            let status = Arc::new(LaneStatus::default());
            let worker = LaneWorker {
                batcher: Batcher::new(
                    options.rotation,
                    options.template.clone(),
                    options.formats.clone(),
                    transform.digest(),
                ),
                decoder: Decoder::default(),
                versions: HashMap::new(),
                transform,
                next: None,
                shadow: None,
                shared: shared.clone(),
                summary: Summary::default(),
                status: Arc::clone(&status),
            };
            let thread = std::thread::Builder::new()
                .name(format!("wrt-lane-{index}"))
                .spawn({
                    let span = tracing::Span::current();
                    move || span.in_scope(|| worker.run(inputs))
                })
                .expect("starting a lane thread");
            Lane {
                index,
                input,
                status,
                thread,
            }
        })
        .collect())
}

/// `transform` and `n - 1` more instances of it. Starting one runs the guest's `init`, which
/// may make blocking WASI calls: callers keep it off the async context.
fn instances(
    transform: Box<dyn Transform>,
    n: usize,
) -> Result<Vec<Box<dyn Transform>>, InstanceError> {
    let mut instances = Vec::with_capacity(n);
    for _ in 1..n {
        instances.push(transform.another()?);
    }
    instances.insert(0, transform);
    Ok(instances)
}

impl Lane {
    async fn send(&self, input: LaneInput) -> Result<(), PipelineError> {
        self.status.queued.fetch_add(1, Ordering::AcqRel);
        self.input
            .send(input)
            .await
            .map_err(|_| PipelineError::LaneGone(self.index))
    }

    /// Lets an idle lane age its windows out; a busy one does so anyway.
    fn tick(&self) {
        if self.input.try_send(LaneInput::Tick).is_ok() {
            self.status.queued.fetch_add(1, Ordering::AcqRel);
        }
    }

    fn is_idle(&self) -> bool {
        self.status.queued.load(Ordering::Acquire) == 0
            && self.status.open_windows.load(Ordering::Acquire) == 0
    }

    /// Closes the lane's input; it writes what it holds and ends. Returns what it counted.
    fn finish(self) -> Summary {
        drop(self.input);
        self.thread
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

/// A shadow version in a lane: its instance, and its decoder, so it sees what the current
/// version sees.
struct Shadow {
    transform: Box<dyn Transform>,
    decoder: Decoder,
}

/// A lane's own thread: decode, transform, encode and batch for the partitions it owns.
struct LaneWorker<K> {
    decoder: Decoder,
    transform: Box<dyn Transform>,
    /// A version to switch to at the next batch boundary that replays no window.
    next: Option<Box<dyn Transform>>,
    /// A candidate run on the same batches, whose outputs are compared, never written.
    shadow: Option<Shadow>,
    batcher: Batcher,
    /// The source schema versions met per partition, in the order they first came in it
    /// (offset order), to flag a new one that narrows a column.
    versions: HashMap<TopicPartition, Vec<Arc<SourceSchema>>>,
    shared: Shared<K>,
    summary: Summary,
    status: Arc<LaneStatus>,
}

impl<K: Sink + Clone + Send + Sync + 'static> LaneWorker<K> {
    fn run(mut self, mut inputs: mpsc::Receiver<LaneInput>) -> Summary {
        while let Some(input) = inputs.blocking_recv() {
            let result = self.step(input);
            self.status
                .open_windows
                .store(self.batcher.open_windows(), Ordering::Release);
            // Counted only now, so an idle lane has nothing in flight unseen.
            self.status.queued.fetch_sub(1, Ordering::AcqRel);
            if let Err(e) = result {
                let _ = self.shared.events.send(Event::Failed(e));
                return self.summary;
            }
        }
        for window in self.batcher.close_all() {
            if let Err(e) = self.dispatch(window) {
                let _ = self.shared.events.send(Event::Failed(e));
                break;
            }
        }
        self.summary
    }

    fn step(&mut self, input: LaneInput) -> Result<(), PipelineError> {
        match input {
            LaneInput::Records(batch) => {
                for (source, generation) in batch.assigned {
                    self.batcher.assign(source, generation);
                }
                self.records(&batch.records)?;
            }
            LaneInput::Revoke(source) => self.batcher.abandon(&source),
            LaneInput::Tick => {}
            LaneInput::Switch(next) => self.next = Some(next),
            LaneInput::Shadow(shadow) => {
                self.shadow = shadow.map(|transform| Shadow {
                    transform,
                    decoder: Decoder::default(),
                });
            }
        }
        for window in self.batcher.close_expired() {
            self.dispatch(window)?;
        }
        self.switch_if_due()
    }

    /// Decode, transform and window one batch, in offset order, so windows close at the
    /// same records on every replay.
    fn records(&mut self, records: &[KafkaRecord]) -> Result<(), PipelineError> {
        let transformed = transform_records(records, &mut self.decoder, self.transform.as_mut());
        let telemetry = Arc::clone(&self.shared.telemetry);
        if let Some(shadow) = &mut self.shadow {
            let started = Instant::now();
            let theirs = transform_within(
                records,
                &mut shadow.decoder,
                shadow.transform.as_mut(),
                Budget::OneCall,
            );
            let comparison = shadow::compare(
                records,
                &transformed.emitted,
                &theirs.emitted,
                telemetry.samples_wanted(),
            );
            let ours = transformed.call_time.unwrap_or_default();
            let digest = shadow.transform.digest();
            telemetry.shadow_compared(digest, comparison, started.elapsed(), ours);
        }
        if let Some(took) = transformed.call_time {
            telemetry.transform_call(transformed.change_events as usize, took);
        }
        if transformed.failed_calls > 0 {
            telemetry.bisected(transformed.failed_alone, transformed.budget_spent);
        }
        let mut counted = Summary {
            records_in: records.len() as u64,
            change_events: transformed.change_events,
            failed_calls: transformed.failed_calls,
            ..Summary::default()
        };
        let mut outputs: Vec<(String, u64)> = Vec::new();
        // Each version's first and last change in the batch, for the schema history.
        let mut spans: HashMap<(&str, &str), (&BinlogPosition, &BinlogPosition)> = HashMap::new();
        for ((record, schema), position) in records
            .iter()
            .zip(&transformed.schemas)
            .zip(&transformed.positions)
        {
            if let (Some(schema), Some(at)) = (schema, position) {
                let span = spans.entry((&record.topic, &schema.id)).or_insert((at, at));
                *span = (span.0.min(at), span.1.max(at));
            }
        }
        for ((topic, version), (first, last)) in spans {
            self.shared.history.changes(topic, version, first, last);
        }
        let declared = transformed.schemas.iter();
        let mut previous: Option<(&KafkaRecord, &Arc<SourceSchema>)> = None;
        for ((record, emits), schema) in records.iter().zip(transformed.emitted).zip(declared) {
            if let Some(schema) = schema
                && !previous.is_some_and(|(r, s)| {
                    Arc::ptr_eq(s, schema)
                        && r.partition == record.partition
                        && r.topic == record.topic
                })
            {
                self.note_version(record, schema);
                previous = Some((record, schema));
            }
            if let Some(window) = self.batcher.close_before(record) {
                self.dispatch(window)?;
            }
            if self.batcher.needs_marker(record) {
                let source = TopicPartition {
                    topic: record.topic.clone(),
                    partition: record.partition,
                };
                let end = self.shared.handle.block_on(commit::replay_end(
                    &self.shared.sink,
                    &source,
                    record.offset,
                    self.batcher.digest(),
                ))?;
                self.batcher.open(record, end);
            }
            for emit in emits {
                let (output, time) = match emit {
                    Emit::Output(output, time) => (output, time),
                    Emit::SchemaChange(change) => {
                        counted.schema_changes += 1;
                        if let Some(position) = &change.position {
                            let history = &self.shared.history;
                            history.ddl(&change.server, &change.tables, position, &change.ddl);
                        }
                        let time = change.commit_time;
                        (schema_change_record(change), time)
                    }
                    Emit::DeadLetter(reason) => {
                        counted.dead_letters += 1;
                        self.batcher.add_dead_letter(record, &reason);
                        continue;
                    }
                    Emit::Tombstone => {
                        counted.tombstones += 1;
                        continue;
                    }
                    Emit::Heartbeat => {
                        counted.heartbeats += 1;
                        continue;
                    }
                };
                if let Err(reason) = self
                    .batcher
                    .add_output(record, &output, time, schema.as_ref())
                {
                    counted.dead_letters += 1;
                    self.batcher.add_dead_letter(record, &reason);
                    continue;
                }
                counted.records_out += 1;
                match outputs.iter_mut().find(|(d, _)| *d == output.destination) {
                    Some((_, n)) => *n += 1,
                    None => outputs.push((output.destination.clone(), 1)),
                }
            }
            if let Some(window) = self.batcher.consumed(record) {
                self.dispatch(window)?;
            }
        }
        telemetry.counted(counted.records_in, &outputs, counted.dead_letters);
        self.summary.add_lane(&counted);
        Ok(())
    }

    /// Hands a closed window to a writer, waiting for one to be free: a lane that gets
    /// ahead of the writers stops consuming.
    /// Flags a source schema version not met before in `record`'s partition if it narrows
    /// or retypes a column of the version met before it there.
    fn note_version(&mut self, record: &KafkaRecord, schema: &Arc<SourceSchema>) {
        let source = TopicPartition {
            topic: record.topic.clone(),
            partition: record.partition,
        };
        let topic = &record.topic;
        let seen = self.versions.entry(source).or_default();
        if seen.iter().any(|v| v.id == schema.id) {
            return;
        }
        if let Some(last) = seen.last() {
            let changes = last.unsafe_changes(schema);
            if !changes.is_empty() {
                let telemetry = &self.shared.telemetry;
                telemetry.unsafe_schema_change(topic, &last.id, &schema.id, changes);
            }
        }
        seen.push(Arc::clone(schema));
    }

    fn dispatch(&mut self, window: Window) -> Result<(), PipelineError> {
        let shared = &self.shared;
        let permit = shared
            .handle
            .block_on(Arc::clone(&shared.writers).acquire_owned())
            .expect("the writer pool is never closed");
        self.hand_over(window, Some(permit))
    }

    /// Seals `window` under the running version and writes it in the background, with
    /// `permit`, or once a writer is free.
    fn hand_over(
        &mut self,
        window: Window,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Result<(), PipelineError> {
        let shared = &self.shared;
        let (source, generation, seq) = (window.source.clone(), window.generation, window.seq);
        let (first_offset, next_offset) = (window.first_offset, window.next_offset);
        let (objects, versions) = self.batcher.objects(window)?;
        let sealed = Sealed {
            documents: documents(shared, versions),
            source,
            generation,
            seq,
            first_offset,
            next_offset,
            transform: self.batcher.digest().to_string(),
            objects,
        };
        shared.dispatched.fetch_add(1, Ordering::AcqRel);
        let handle = shared.handle.clone();
        let shared = shared.clone();
        let write = async move {
            let permit = match permit {
                Some(permit) => permit,
                None => Arc::clone(&shared.writers)
                    .acquire_owned()
                    .await
                    .expect("the writer pool is never closed"),
            };
            let written = write_durably(&shared, &sealed).await;
            drop(permit);
            if written.as_ref().is_ok_and(|w| w.abandoned) {
                let keys: Vec<String> = sealed.documents.iter().map(|d| d.key.clone()).collect();
                shared.history.forget(&keys);
            }
            let _ = shared.events.send(match written {
                Ok(written) => Event::Written(written),
                Err(e) => Event::Failed(e),
            });
        };
        handle.spawn(write.in_current_span());
        Ok(())
    }

    /// Switches to the version sent last, unless a replayed window is open (it must end
    /// where its marker says, under the version that began it). The pause is sealing the
    /// open windows under the old version; they queue for the writers without holding the
    /// lane, which waits for a writer again at its next window: each switch adds at most the
    /// lane's open windows to what is held.
    fn switch_if_due(&mut self) -> Result<(), PipelineError> {
        if self.next.is_none() || self.batcher.replaying() {
            return Ok(());
        }
        let paused = Instant::now();
        for window in self.batcher.close_all() {
            self.hand_over(window, None)?;
        }
        let next = self.next.take().expect("checked above");
        self.batcher.switch(next.digest());
        self.transform = next;
        let _ = self.shared.events.send(Event::Switched(paused.elapsed()));
        Ok(())
    }
}

/// The schema history documents to write with a window whose Parquet files use
/// `versions` (see [`SchemaHistory::documents`]).
fn documents<K>(shared: &Shared<K>, versions: Vec<VersionUse>) -> Vec<Document> {
    (shared.history.documents(versions).into_iter())
        .map(|made| Document {
            key: made.key,
            body: made.body,
            replaces: history::knows_more,
        })
        .collect()
}

/// The first wait before a failed window is written again; it doubles up to
/// `retry.max-backoff-ms`.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// How many refusals of one window end the run. A refusal can be momentary: MinIO answers
/// 403 AccessDenied to a put that races the delete of the last object in its folder, which
/// removing window markers does. A real one repeats.
const REFUSALS_TO_END: u32 = 3;

/// Writes `window` until it is durable. While the store fails, its writer holds on to it
/// and tries again after a capped, jittered, doubling wait, and the host reports itself not
/// ready; the lanes, finding no free writer, stop consuming, so memory stays bounded. Only
/// a refusal (credentials, permissions, no bucket) met [`REFUSALS_TO_END`] times or an
/// outage longer than `retry.give-up-after-s` ends the run, and nothing past the last
/// durable window is committed.
async fn write_durably<K: Sink>(
    shared: &Shared<K>,
    window: &Sealed,
) -> Result<Written, PipelineError> {
    let telemetry = &shared.telemetry;
    let mut wait = FIRST_BACKOFF;
    let mut failing_since = None;
    let mut refusals = 0;
    loop {
        // Each attempt only while the partition is still ours; a revocation waits for it.
        let writing = match &shared.owners {
            Some(owners) => match owners.begin_write(&window.source, window.generation) {
                Some(guard) => Some(guard),
                None => return Ok(Written::abandoned(window)),
            },
            None => None,
        };
        let written = commit::write(&shared.sink, shared.catalog.as_deref(), window).await;
        drop(writing);
        for &(took, ok) in &written.uploads {
            telemetry.upload(took, ok);
        }
        let error = match written.result {
            Ok(()) => {
                telemetry.window_written(written.took);
                if failing_since.is_some() {
                    telemetry.store_recovered();
                    tracing::info!(topic = %window.source.topic, partition = window.source.partition,
                        first_offset = window.first_offset, "the store is back: window written");
                }
                return Ok(written);
            }
            Err(e) => e,
        };
        let first = failing_since.is_none();
        let since: Instant = *failing_since.get_or_insert_with(Instant::now);
        if !error.is_transient() {
            refusals += 1;
            if refusals == REFUSALS_TO_END {
                return Err(error.into());
            }
        }
        if let Some(limit) = shared.retry.give_up_after_s
            && since.elapsed() >= Duration::from_secs(limit)
        {
            return Err(PipelineError::GaveUp {
                seconds: limit,
                error,
            });
        }
        telemetry.store_failing(&error.to_string(), first);
        // Equal jitter: writers that failed together do not all come back at once.
        let pause = wait / 2 + wait.mul_f64(fastrand::f64() / 2.0);
        tracing::warn!(topic = %window.source.topic, partition = window.source.partition,
            first_offset = window.first_offset, retry_in_ms = pause.as_millis() as u64,
            "{error}; the window is written again after a pause");
        tokio::time::sleep(pause).await;
        wait = (wait * 2).min(Duration::from_millis(shared.retry.max_backoff_ms));
    }
}

/// What [`transform_records`] made of a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Transformed {
    /// Per source record, in order.
    pub emitted: Vec<Vec<Emit>>,
    /// Per source record, the columns its schema declares (see [`Decoder::schema`]).
    pub schemas: Vec<Option<Arc<SourceSchema>>>,
    /// Per source record, where its change is in the binlog, when it is a change.
    pub positions: Vec<Option<BinlogPosition>>,
    /// How many records were row changes (and went to the transform).
    pub change_events: u64,
    /// Transform calls that failed as a whole, the calls on the batch's parts included.
    pub failed_calls: u64,
    /// Events dead-lettered because their call failed with them alone.
    pub failed_alone: u64,
    /// Whether the batch spent its [`poison_budget`] and its untried events were
    /// dead-lettered.
    pub budget_spent: bool,
    /// How long the transform took on the batch, every call on its parts included, if it
    /// was called.
    pub call_time: Option<Duration>,
}

/// Poison events a batch may hold and still have each one found alone; see
/// [`poison_budget`].
pub const POISON_EVENTS: u64 = 2;

/// Failed calls a batch of `events` may spend; once they are spent, no further part of the
/// batch is called and its events not yet tried alone are dead-lettered. Bisection finds
/// one poison event in `n` with `1 + ⌈log₂ n⌉` failed calls (the whole batch, then the
/// failing half at each level down to the event alone), and each further one costs at most
/// `⌈log₂ n⌉` more: 17 for two in 256. One more, 18, so the parts after the last of them are
/// still called. A guest that fails on every event is stopped after those 18 calls rather
/// than `2n - 1`; with timeouts that is 18 times the call deadline.
pub fn poison_budget(events: usize) -> u64 {
    let depth = u64::from(events.max(1).next_power_of_two().trailing_zeros());
    2 + POISON_EVENTS * depth
}

/// Decodes `records` and runs the change events through `transform` in one call. When that
/// call fails as a whole (trap, timeout, memory cap), each half is called again, recursively,
/// so only the events that fail alone are dead-lettered, each with its own reason, until
/// [`poison_budget`] failed calls are spent. The split is always the same, so a replay of
/// the batch makes the same calls. `wrt test` prints what each record became; `run` batches
/// it. Keep one `decoder` per stream: it compiles each schema once.
pub fn transform_records(
    records: &[KafkaRecord],
    decoder: &mut Decoder,
    transform: &mut dyn Transform,
) -> Transformed {
    transform_within(records, decoder, transform, Budget::Bisect)
}

/// How many failed calls one batch may spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Budget {
    /// [`poison_budget`]: a failed batch is split to find the events that fail alone.
    Bisect,
    /// One: a failed call dead-letters the whole batch, unlogged. A shadow's, so that a
    /// shadow that traps or times out holds a lane up for one call a batch at most.
    OneCall,
}

/// [`transform_records`], spending at most `budget` failed calls.
fn transform_within(
    records: &[KafkaRecord],
    decoder: &mut Decoder,
    transform: &mut dyn Transform,
    budget: Budget,
) -> Transformed {
    let mut emitted: Vec<Vec<Emit>> = Vec::with_capacity(records.len());
    let mut schemas = Vec::with_capacity(records.len());
    let mut positions = Vec::with_capacity(records.len());
    let mut events = Vec::with_capacity(records.len());
    let mut event_slots = Vec::with_capacity(records.len());
    for record in records {
        let mut position = None;
        let emit = match decoder.decode(record) {
            Ok(Decoded::Change(event)) => {
                let source = &event.source;
                position = (source.binlog_file.clone())
                    .zip(source.binlog_pos)
                    .map(|(file, pos)| BinlogPosition { file, pos });
                event_slots.push(emitted.len());
                events.push(event);
                Vec::new()
            }
            Ok(Decoded::Tombstone) => vec![Emit::Tombstone],
            Ok(Decoded::Heartbeat) => vec![Emit::Heartbeat],
            Ok(Decoded::SchemaChange(change)) => vec![Emit::SchemaChange(change)],
            Err(e) => vec![Emit::DeadLetter(Reason {
                stage: "decode",
                kind: "malformed".into(),
                message: e.to_string(),
            })],
        };
        emitted.push(emit);
        schemas.push(decoder.schema());
        positions.push(position);
    }
    let mut transformed = Transformed {
        emitted,
        schemas,
        positions,
        change_events: events.len() as u64,
        failed_calls: 0,
        failed_alone: 0,
        budget_spent: false,
        call_time: None,
    };
    if events.is_empty() {
        return transformed;
    }

    let mut calls = Bisection {
        transform,
        budget: match budget {
            Budget::Bisect => poison_budget(events.len()),
            Budget::OneCall => 1,
        },
        failed: 0,
        last_failure: None,
        took: Duration::ZERO,
        results: Vec::with_capacity(events.len()),
    };
    calls.run(&events);
    let Bisection {
        failed,
        last_failure,
        took,
        results,
        ..
    } = calls;
    transformed.failed_calls = failed;
    transformed.call_time = Some(took);
    for ((slot, event), result) in event_slots.into_iter().zip(&events).zip(results) {
        transformed.emitted[slot] = match result {
            EventResult::Outcome(Ok(outputs)) => outputs
                .into_iter()
                .map(|o| Emit::Output(o, event.commit_time))
                .collect(),
            EventResult::Outcome(Err(e)) => vec![Emit::DeadLetter(Reason {
                stage: "transform",
                kind: "rejected".into(),
                message: format!("[{}] {}", e.code, e.message),
            })],
            EventResult::FailedAlone(failure) => {
                transformed.failed_alone += 1;
                vec![Emit::DeadLetter(failure_reason(failure))]
            }
            EventResult::Untried => {
                transformed.budget_spent = true;
                let last = last_failure
                    .as_ref()
                    .expect("only failures spend the budget");
                vec![Emit::DeadLetter(Reason {
                    message: format!(
                        "{} (not tried alone: the batch's budget of {failed} failed calls ran out)",
                        last.message
                    ),
                    ..failure_reason(last.clone())
                })]
            }
        };
    }
    if let Some(last) = &last_failure
        && budget == Budget::Bisect
    {
        tracing::warn!(
            events = events.len(),
            failed_calls = failed,
            failed_alone = transformed.failed_alone,
            budget_spent = transformed.budget_spent,
            "{last} (the last failed call); the batch was split to dead-letter only the events \
             that fail alone"
        );
    }
    transformed
}

/// The calls on one batch and its parts, in a fixed order: each failed part's left half,
/// then its right half.
struct Bisection<'a> {
    transform: &'a mut dyn Transform,
    budget: u64,
    failed: u64,
    last_failure: Option<BatchFailure>,
    took: Duration,
    /// Per event so far, in order.
    results: Vec<EventResult>,
}

/// What became of one event in a [`Bisection`].
enum EventResult {
    Outcome(Outcome),
    /// The call with this event alone failed.
    FailedAlone(BatchFailure),
    /// The budget ran out before this event was tried alone.
    Untried,
}

impl Bisection<'_> {
    fn run(&mut self, events: &[ChangeEvent]) {
        if self.failed >= self.budget {
            self.results
                .extend(events.iter().map(|_| EventResult::Untried));
            return;
        }
        let called = Instant::now();
        // After a failed call the transform has recovered (a fresh instance), so the parts
        // run as the first call of a batch would.
        let result = self.transform.process(events);
        self.took += called.elapsed();
        match result {
            Ok(outcomes) => self
                .results
                .extend(outcomes.into_iter().map(EventResult::Outcome)),
            Err(failure) => {
                self.failed += 1;
                self.last_failure = Some(failure.clone());
                if let [_] = events {
                    self.results.push(EventResult::FailedAlone(failure));
                } else {
                    let (left, right) = events.split_at(events.len() / 2);
                    self.run(left);
                    self.run(right);
                }
            }
        }
    }
}

fn failure_reason(failure: BatchFailure) -> Reason {
    Reason {
        stage: "transform",
        kind: failure.kind.as_str().into(),
        message: failure.message,
    }
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use super::*;
    use crate::model::{Format, Object, ObjectMeta, WindowSpan, path_segment};
    use crate::pipeline::sink::LocalDir;
    use crate::pipeline::source::MemorySource;

    /// Each event's row image (after, else before) to its table.
    #[derive(Clone)]
    struct Passthrough;

    impl Transform for Passthrough {
        fn digest(&self) -> &str {
            "passthrough"
        }

        fn process(&mut self, events: &[ChangeEvent]) -> Result<Vec<Outcome>, BatchFailure> {
            Ok(events
                .iter()
                .map(|e| {
                    let row = e.after.clone().or_else(|| e.before.clone());
                    Ok(row
                        .map(|row| OutputRecord {
                            destination: e.source.table.clone(),
                            row,
                            partition: Vec::new(),
                        })
                        .into_iter()
                        .collect())
                })
                .collect())
        }

        fn another(&self) -> Result<Box<dyn Transform>, InstanceError> {
            Ok(Box::new(self.clone()))
        }
    }

    /// Passes events through like [`Passthrough`], but traps on any call that holds an event
    /// at a poisoned offset, naming the first; remembers each call's first offset and length.
    struct Poisoned {
        poisoned: fn(i64) -> bool,
        calls: Vec<(i64, usize)>,
    }

    impl Poisoned {
        fn new(poisoned: fn(i64) -> bool) -> Self {
            Poisoned {
                poisoned,
                calls: Vec::new(),
            }
        }
    }

    impl Transform for Poisoned {
        fn digest(&self) -> &str {
            "poisoned"
        }

        fn process(&mut self, events: &[ChangeEvent]) -> Result<Vec<Outcome>, BatchFailure> {
            self.calls.push((events[0].source.offset, events.len()));
            match events.iter().find(|e| (self.poisoned)(e.source.offset)) {
                Some(poison) => Err(BatchFailure {
                    kind: transform::FailureKind::Trap,
                    message: format!("trapped on offset {}", poison.source.offset),
                }),
                None => Passthrough.process(events),
            }
        }

        fn another(&self) -> Result<Box<dyn Transform>, InstanceError> {
            Ok(Box::new(Poisoned::new(self.poisoned)))
        }
    }

    /// `n` inserts into `shop.t`, row `id` = offset, as schemaless envelopes.
    fn inserts(n: i64) -> Vec<KafkaRecord> {
        (0..n)
            .map(|offset| {
                let value = serde_json::json!({
                    "op": "c",
                    "after": {"id": offset},
                    "source": {"connector": "mysql", "name": "shop", "db": "shop",
                               "table": "t", "ts_ms": 1_714_521_600_000_i64},
                });
                KafkaRecord {
                    topic: "shop.shop.t".into(),
                    partition: 0,
                    offset,
                    timestamp_ms: None,
                    key: None,
                    value: Some(value.to_string().into_bytes()),
                }
            })
            .collect()
    }

    /// Each record's single emit: `Ok(id)` for an output row, `Err(reason)` for a dead letter.
    fn fates(transformed: &Transformed) -> Vec<Result<i64, Reason>> {
        transformed
            .emitted
            .iter()
            .map(|emits| match emits.as_slice() {
                [Emit::Output(output, _)] => match output.row[..] {
                    [
                        Column {
                            value: Value::Int(id),
                            ..
                        },
                    ] => Ok(id),
                    _ => panic!("not a passed-through row: {output:?}"),
                },
                [Emit::DeadLetter(reason)] => Err(reason.clone()),
                other => panic!("expected one output or dead letter, got {other:?}"),
            })
            .collect()
    }

    /// Runs 256 inserts through a [`Poisoned`] twice, on fresh fakes, requiring the same
    /// calls and results both times; returns the results and the calls.
    fn bisect(poisoned: fn(i64) -> bool) -> (Transformed, Vec<(i64, usize)>) {
        let records = inserts(256);
        let mut runs = [0, 1].map(|_| {
            let mut transform = Poisoned::new(poisoned);
            let transformed = transform_records(&records, &mut Decoder::default(), &mut transform);
            (transformed, transform.calls)
        });
        let [first, second] = &mut runs;
        first.0.call_time = None;
        second.0.call_time = None;
        assert_eq!(first, second, "a replay makes other calls or results");
        let [first, _] = runs;
        first
    }

    fn poison_reason(offset: i64) -> Reason {
        Reason {
            stage: "transform",
            kind: "trap".into(),
            message: format!("trapped on offset {offset}"),
        }
    }

    /// A folder whose writes each take a while (longer for some keys than others, so
    /// windows finish out of order), counting how many are under way at once.
    #[derive(Clone)]
    struct SlowStore {
        dir: LocalDir,
        delay: Duration,
        in_flight: Arc<AtomicUsize>,
        most_in_flight: Arc<AtomicUsize>,
        /// Each write's key and when it ended.
        ended: Arc<Mutex<Vec<(String, Instant)>>>,
        /// How many more puts to refuse, as S3 refuses bad credentials.
        refusing: Arc<AtomicUsize>,
    }

    impl SlowStore {
        fn new(root: &std::path::Path, delay: Duration) -> Self {
            SlowStore {
                dir: LocalDir::new(root),
                delay,
                in_flight: Arc::default(),
                most_in_flight: Arc::default(),
                ended: Arc::default(),
                refusing: Arc::default(),
            }
        }
    }

    impl Sink for SlowStore {
        async fn put(&self, object: &Object) -> Result<(), SinkError> {
            let refuse = |n: usize| n.checked_sub(1);
            if self
                .refusing
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, refuse)
                .is_ok()
            {
                return Err(SinkError::Refused {
                    location: object.key.clone(),
                    message: "HTTP 403 AccessDenied".into(),
                });
            }
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_in_flight.fetch_max(now, Ordering::SeqCst);
            let spread = object.key.bytes().map(u32::from).sum::<u32>() % 4;
            tokio::time::sleep(self.delay * (1 + spread)).await;
            let put = self.dir.put(object).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            let ended = (object.key.clone(), Instant::now());
            self.ended.lock().unwrap().push(ended);
            put
        }

        async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, SinkError> {
            self.dir.get(key).await
        }

        async fn delete(&self, key: &str) -> Result<(), SinkError> {
            self.dir.delete(key).await
        }

        async fn get_versioned(&self, key: &str) -> Result<Option<(Vec<u8>, String)>, SinkError> {
            self.dir.get_versioned(key).await
        }

        async fn put_if(
            &self,
            key: &str,
            body: Vec<u8>,
            expect: sink::Expect<'_>,
        ) -> Result<(), sink::ConditionalError> {
            self.dir.put_if(key, body, expect).await
        }

        async fn list(&self, prefix: &str) -> Result<Vec<String>, SinkError> {
            self.dir.list(prefix).await
        }

        async fn metadata(&self, key: &str) -> Result<Option<BTreeMap<String, String>>, SinkError> {
            self.dir.metadata(key).await
        }
    }

    /// A source that remembers every commit in order.
    struct Recording {
        inner: MemorySource,
        commits: Arc<Mutex<Vec<(TopicPartition, i64)>>>,
    }

    impl Source for Recording {
        async fn poll(&mut self, max: usize) -> Result<Option<Vec<KafkaRecord>>, SourceError> {
            self.inner.poll(max).await
        }

        fn commit(&mut self, offsets: &[(TopicPartition, i64)]) -> Result<(), SourceError> {
            self.commits.lock().unwrap().extend(offsets.iter().cloned());
            self.inner.commit(offsets)
        }

        fn confirmed(&mut self) -> Vec<(TopicPartition, i64)> {
            self.inner.confirmed()
        }

        async fn commit_and_wait(
            &mut self,
            offsets: &[(TopicPartition, i64)],
        ) -> Result<bool, SourceError> {
            self.commit(offsets)?;
            Ok(true)
        }

        fn len_hint(&self) -> Option<u64> {
            self.inner.len_hint()
        }

        fn owned(&self) -> Vec<crate::telemetry::Owned> {
            self.inner.owned()
        }
    }

    /// A source whose second poll begins with a rebalance that takes `lost` away, as
    /// Kafka's does: the first poll's records of `lost` are with the lanes and writers by
    /// then, and none follow.
    struct Handover {
        inner: Recording,
        owners: Arc<Owners>,
        lost: TopicPartition,
        revoked: Vec<TopicPartition>,
        revoked_at: Option<Instant>,
        polls: usize,
    }

    impl Source for Handover {
        async fn poll(&mut self, max: usize) -> Result<Option<Vec<KafkaRecord>>, SourceError> {
            let Some(mut batch) = self.inner.poll(max).await? else {
                return Ok(None);
            };
            self.polls += 1;
            if self.polls == 2 {
                // Long enough for the lanes to hand some windows to the writers.
                tokio::time::sleep(Duration::from_millis(150)).await;
                assert_eq!(self.owners.revoked(&self.lost, Duration::from_secs(5)), 0);
                self.revoked_at = Some(Instant::now());
                self.revoked.push(self.lost.clone());
            }
            if self.polls >= 2 {
                let lost = &self.lost;
                batch.retain(|r| r.topic != lost.topic || r.partition != lost.partition);
            }
            Ok(Some(batch))
        }

        fn commit(&mut self, offsets: &[(TopicPartition, i64)]) -> Result<(), SourceError> {
            self.inner.commit(offsets)
        }

        fn confirmed(&mut self) -> Vec<(TopicPartition, i64)> {
            self.inner.confirmed()
        }

        async fn commit_and_wait(
            &mut self,
            offsets: &[(TopicPartition, i64)],
        ) -> Result<bool, SourceError> {
            self.inner.commit_and_wait(offsets).await
        }

        fn revoked(&mut self) -> Vec<TopicPartition> {
            std::mem::take(&mut self.revoked)
        }

        fn owners(&self) -> Option<Arc<Owners>> {
            Some(Arc::clone(&self.owners))
        }

        fn len_hint(&self) -> Option<u64> {
            None
        }

        fn owned(&self) -> Vec<crate::telemetry::Owned> {
            self.inner.owned()
        }
    }

    fn options(lanes: usize, writers: usize) -> Options {
        Options {
            batch_size: 64,
            rotation: Rotation {
                max_records: 40,
                max_age: Duration::MAX,
                ..Rotation::default()
            },
            lanes,
            writers,
            ..Options::default()
        }
    }

    struct Ran {
        summary: Summary,
        commits: Vec<(TopicPartition, i64)>,
        objects: BTreeMap<String, Vec<u8>>,
        most_in_flight: usize,
    }

    fn run_sample(options: &Options, delay: Duration) -> Ran {
        let dir = tempfile::tempdir().unwrap();
        run_sample_on(&SlowStore::new(dir.path(), delay), options).unwrap()
    }

    fn run_sample_on(store: &SlowStore, options: &Options) -> Result<Ran, PipelineError> {
        let records = crate::sample::sample_records();
        let commits = Arc::new(Mutex::new(Vec::new()));
        let mut source = Recording {
            inner: MemorySource::new(records),
            commits: Arc::clone(&commits),
        };
        let telemetry = Arc::new(Telemetry::new("test", "passthrough"));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let summary = runtime.block_on(run(
            &mut source,
            Current::fixed(Box::new(Passthrough)),
            store,
            options,
            &telemetry,
            &ProgressBar::hidden(),
        ))?;
        let objects = runtime.block_on(async {
            let mut objects = BTreeMap::new();
            for key in store.list("").await.unwrap() {
                objects.insert(key.clone(), store.get(&key).await.unwrap().unwrap());
            }
            objects
        });
        let commits = commits.lock().unwrap().clone();
        Ok(Ran {
            summary,
            commits,
            objects,
            most_in_flight: store.most_in_flight.load(Ordering::SeqCst),
        })
    }

    /// The offset after each partition's last record.
    fn ends() -> BTreeMap<TopicPartition, i64> {
        let mut ends = BTreeMap::new();
        for r in crate::sample::sample_records() {
            let source = TopicPartition {
                topic: r.topic.clone(),
                partition: r.partition,
            };
            let end = ends.entry(source).or_insert(0);
            *end = (*end).max(r.offset + 1);
        }
        ends
    }

    /// Each stage's files, in the order a record goes through them.
    const STAGES: [(&str, &[&str]); 8] = [
        (
            "source",
            &[
                include_str!("pipeline/source.rs"),
                include_str!("pipeline/source/kafka.rs"),
            ],
        ),
        ("decode", &[include_str!("pipeline/decode.rs")]),
        (
            "transform",
            &[
                include_str!("pipeline/transform.rs"),
                include_str!("pipeline/transform/sandbox.rs"),
            ],
        ),
        (
            "encode",
            &[
                include_str!("pipeline/encode.rs"),
                include_str!("pipeline/encode/parquet.rs"),
            ],
        ),
        ("batch", &[include_str!("pipeline/batch.rs")]),
        (
            "sink",
            &[
                include_str!("pipeline/sink.rs"),
                include_str!("pipeline/sink/s3.rs"),
            ],
        ),
        (
            "catalog",
            &[
                include_str!("pipeline/catalog.rs"),
                include_str!("pipeline/catalog/glue.rs"),
            ],
        ),
        ("commit", &[include_str!("pipeline/commit.rs")]),
    ];

    /// The words of every `use … ;` declaration in `source`.
    fn imports(source: &str) -> Vec<Vec<&str>> {
        let mut found = Vec::new();
        let mut rest = source;
        while let Some(at) = rest.find("use ") {
            let line = rest[..at].rfind('\n').map_or(0, |n| n + 1);
            let starts_line = rest[line..at].trim().is_empty();
            let end = rest[at..].find(';').map_or(rest.len(), |e| at + e);
            if starts_line {
                let words = rest[at..end]
                    .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .filter(|w| !w.is_empty())
                    .collect();
                found.push(words);
            }
            rest = &rest[end.min(rest.len() - 1) + 1..];
        }
        found
    }

    #[test]
    fn the_poison_budget_covers_two_poison_events() {
        assert_eq!(poison_budget(256), 18);
        assert_eq!(poison_budget(200), 18);
        assert_eq!(poison_budget(1), 2);
    }

    #[test]
    fn one_poison_event_in_256_costs_one_dead_letter() {
        let (transformed, calls) = bisect(|offset| offset == 77);
        let expected: Vec<_> = (0..256)
            .map(|id| {
                if id == 77 {
                    Err(poison_reason(77))
                } else {
                    Ok(id)
                }
            })
            .collect();
        assert_eq!(fates(&transformed), expected);
        // The batch, then the failing half on each of 8 levels down to offset 77 alone.
        assert_eq!(transformed.failed_calls, 9);
        assert_eq!(transformed.failed_alone, 1);
        assert!(!transformed.budget_spent);
        assert_eq!(calls.first(), Some(&(0, 256)));
        assert_eq!(
            calls.len(),
            9 + 8,
            "each failed part's other half passes once"
        );
    }

    #[test]
    fn two_poison_events_in_opposite_halves_fit_the_budget() {
        let (transformed, _) = bisect(|offset| offset == 3 || offset == 200);
        let expected: Vec<_> = (0..256)
            .map(|id| match id {
                3 | 200 => Err(poison_reason(id)),
                _ => Ok(id),
            })
            .collect();
        assert_eq!(fates(&transformed), expected);
        assert_eq!(transformed.failed_calls, 1 + 8 + 8);
        assert_eq!(transformed.failed_alone, 2);
        assert!(!transformed.budget_spent);
    }

    #[test]
    fn a_transform_that_fails_on_every_event_is_stopped_by_the_budget() {
        let (transformed, calls) = bisect(|_| true);
        assert_eq!(calls.len(), 18, "{calls:?}");
        assert_eq!(transformed.failed_calls, 18);
        assert!(transformed.budget_spent);
        // Depth first, left first: offsets 0 to 5 failed alone before the budget ran out,
        // on the call that failed on 6 and 7; the rest were never tried alone.
        let alone = 6;
        assert_eq!(transformed.failed_alone, alone);
        for (id, fate) in (0..).zip(fates(&transformed)) {
            let reason = fate.expect_err("every event is dead-lettered");
            if id < alone {
                assert_eq!(reason, poison_reason(id as i64));
            } else {
                assert_eq!(reason.kind, "trap");
                assert_eq!(
                    reason.message,
                    "trapped on offset 6 (not tried alone: the batch's budget of 18 failed \
                     calls ran out)"
                );
            }
        }
    }

    #[test]
    fn a_revoked_partition_is_never_written_nor_committed_after_its_revocation() {
        let records = crate::sample::sample_records();
        let owners = Arc::new(Owners::default());
        for source in ends().keys() {
            owners.assigned(source.clone());
        }
        let lost = TopicPartition {
            topic: records[0].topic.clone(),
            partition: records[0].partition,
        };
        let commits = Arc::new(Mutex::new(Vec::new()));
        let mut source = Handover {
            inner: Recording {
                inner: MemorySource::new(records),
                commits: Arc::clone(&commits),
            },
            owners,
            lost: lost.clone(),
            revoked: Vec::new(),
            revoked_at: None,
            polls: 0,
        };
        let dir = tempfile::tempdir().unwrap();
        let store = SlowStore::new(dir.path(), Duration::from_millis(20));
        let telemetry = Arc::new(Telemetry::new("test", "passthrough"));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        // The first poll's records of `lost` fill windows of 40 records, more than the two
        // writers take at once: the revocation finds some being written (it waits for them)
        // and others still to come, which must never be written.
        let mut options = options(2, 2);
        options.batch_size = 512;
        runtime
            .block_on(run(
                &mut source,
                Current::fixed(Box::new(Passthrough)),
                &store,
                &options,
                &telemetry,
                &ProgressBar::hidden(),
            ))
            .unwrap();
        let revoked_at = source.revoked_at.expect("the second poll revoked");
        let lost_name = format!("{}+{}+", path_segment(&lost.topic), lost.partition);
        let ended = store.ended.lock().unwrap().clone();
        let (before, after): (Vec<_>, Vec<_>) = ended
            .iter()
            .filter(|(key, _)| key.contains(&lost_name))
            .partition(|(_, at)| *at <= revoked_at);
        assert!(after.is_empty(), "written after the revocation: {after:?}");
        println!(
            "writes of the lost partition ended before its revocation: {}",
            before.len()
        );
        let lost_end = ends()[&lost];
        let commits = commits.lock().unwrap().clone();
        assert!(
            commits
                .iter()
                .all(|(s, next)| *s != lost || *next < lost_end),
            "the lost partition is not committed to its end by this host: {commits:?}"
        );
        let mut committed: BTreeMap<_, _> = commits.into_iter().collect();
        committed.remove(&lost);
        let mut others = ends();
        others.remove(&lost);
        assert_eq!(
            committed, others,
            "every other partition commits to its end"
        );
    }

    #[test]
    fn no_stage_imports_a_later_stage() {
        for (at, (stage, files)) in STAGES.iter().enumerate() {
            for file in *files {
                for words in imports(file) {
                    if !words.contains(&"pipeline") && !words.contains(&"super") {
                        continue;
                    }
                    for (later, _) in &STAGES[at + 1..] {
                        assert!(
                            !words.contains(later),
                            "the {stage} stage imports the later {later} stage: {}",
                            words.join(" ")
                        );
                    }
                }
            }
        }
        // The check sees imports at all.
        let batch = imports(STAGES[4].1[0]);
        assert!(batch.iter().any(|w| w.contains(&"encode")), "{batch:?}");
    }

    #[test]
    fn lanes_write_windows_concurrently_and_commit_each_partition_in_order() {
        let ran = run_sample(&options(2, 4), Duration::from_millis(2));
        assert!(
            ran.most_in_flight >= 2,
            "windows were written one at a time ({})",
            ran.most_in_flight
        );
        // Per partition: strictly increasing commits, ending after the last record.
        let mut last: BTreeMap<TopicPartition, i64> = BTreeMap::new();
        for (source, offset) in &ran.commits {
            let before = last.insert(source.clone(), *offset);
            assert!(
                before.is_none_or(|b| b < *offset),
                "{source:?}: {before:?} then {offset}"
            );
        }
        assert_eq!(last, ends());
        assert!(
            !ran.objects.keys().any(|k| k.starts_with("_wrt/")),
            "every marker is removed after its commit"
        );
        // Exactly the objects one lane and one writer make, byte for byte.
        let serial = run_sample(&options(1, 1), Duration::ZERO);
        assert_eq!(
            ran.objects.keys().collect::<Vec<_>>(),
            serial.objects.keys().collect::<Vec<_>>()
        );
        assert!(
            ran.objects == serial.objects,
            "the same keys with other bytes"
        );
        assert_eq!(ran.summary.records_out, serial.summary.records_out);
        assert_eq!(ran.summary.objects, serial.summary.objects);
    }

    #[test]
    fn a_window_replayed_in_another_format_replaces_the_partial_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = SlowStore::new(dir.path(), Duration::ZERO);
        let lines = run_sample_on(&store, &options(1, 1)).unwrap();
        // As if a host writing JSON Lines died after the first window of a partition was
        // written but before its commit, and the next ran with Parquet.
        let source = TopicPartition {
            topic: "shop.shop.customers".into(),
            partition: 0,
        };
        let partial: Vec<String> = (lines.objects.keys())
            .filter(|k| k.contains("shop.shop.customers+0+00000000000000000000+"))
            .cloned()
            .collect();
        assert!(!partial.is_empty());
        let marker = commit::Marker {
            next_offset: 40,
            transform: lines.summary.transform.clone(),
            objects: partial.clone(),
        };
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime
            .block_on(store.put(&Object {
                key: commit::Marker::key(&source, 0),
                body: serde_json::to_vec(&marker).unwrap(),
                meta: ObjectMeta {
                    records: 0,
                    topic: source.topic.clone(),
                    partition: 0,
                    first_offset: 0,
                    last_offset: 0,
                    transform: marker.transform.clone(),
                    window: WindowSpan {
                        from: 0,
                        first_offset: 0,
                        next_offset: 40,
                        objects: 1,
                    },
                },
            }))
            .unwrap();
        let parquet = Options {
            formats: Formats {
                default: Format::Parquet,
                by_destination: Default::default(),
            },
            ..options(1, 1)
        };
        let replayed = run_sample_on(&store, &parquet).unwrap();
        for key in &partial {
            assert!(
                !replayed.objects.contains_key(key),
                "{key} was left beside its replay"
            );
        }
        assert!(replayed.objects.keys().any(|k| {
            k.contains("shop.shop.customers+0+00000000000000000000+") && k.ends_with(".parquet")
        }));
    }

    #[test]
    fn a_slow_store_holds_the_lanes_back_and_loses_nothing() {
        let writers = 2;
        let ran = run_sample(&options(2, writers), Duration::from_millis(15));
        // A window's marker and objects go up one after another, so puts under way at once
        // are windows being written at once: never more than the writers.
        assert!(
            ran.most_in_flight <= writers,
            "{} writes at once with {writers} writers",
            ran.most_in_flight
        );
        let rows: usize = ran
            .objects
            .iter()
            .filter(|(k, _)| !k.starts_with('_'))
            .map(|(_, body)| {
                let mut text = String::new();
                std::io::Read::read_to_string(
                    &mut flate2::read::GzDecoder::new(&body[..]),
                    &mut text,
                )
                .unwrap();
                text.lines().count()
            })
            .sum();
        let schema_rows = ran.summary.schema_changes as usize;
        assert_eq!(rows + schema_rows, ran.summary.records_out as usize);
        assert_eq!(
            ran.summary.records_in as usize,
            crate::sample::sample_records().len()
        );
        assert_eq!(
            ran.commits
                .iter()
                .map(|(s, _)| s)
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
            ends().len()
        );
    }

    /// A refusal that does not repeat is a moment of the store's, not a verdict: the run
    /// goes on and loses nothing. One that repeats ends it.
    #[test]
    fn a_refusal_ends_the_run_only_when_it_repeats() {
        let dir = tempfile::tempdir().unwrap();
        let store = SlowStore::new(dir.path(), Duration::ZERO);
        store
            .refusing
            .store(REFUSALS_TO_END as usize - 1, Ordering::SeqCst);
        let ran = run_sample_on(&store, &options(1, 1)).unwrap();
        let unrefused = run_sample(&options(1, 1), Duration::ZERO);
        assert_eq!(ran.objects, unrefused.objects);
        let last = |ran: &Ran| ran.commits.iter().cloned().collect::<BTreeMap<_, _>>();
        assert_eq!(last(&ran), last(&unrefused));
        assert_eq!(last(&ran), ends());

        let dir = tempfile::tempdir().unwrap();
        let store = SlowStore::new(dir.path(), Duration::ZERO);
        store.refusing.store(usize::MAX, Ordering::SeqCst);
        let error = run_sample_on(&store, &options(1, 1)).err().unwrap();
        assert!(error.to_string().contains("AccessDenied"), "{error}");
    }
}
