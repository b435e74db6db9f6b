//! What a running pipeline reports: Prometheus metrics and the `/status` document, both
//! served by [`crate::admin`]. The pipeline and the version watcher write here; nothing on
//! the data path reads it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde::Serialize;

use crate::model::TopicPartition;
use crate::pipeline::shadow::Comparison;

/// How many switches and refusals `/status` remembers.
const KEEP: usize = 50;

/// How many of a shadow's differences `/status` shows.
pub const SHADOW_SAMPLES: usize = 10;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    pipeline: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PipelineLabels {
    pipeline: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DestinationLabels {
    pipeline: String,
    destination: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    pipeline: String,
    topic: String,
    partition: String,
}

/// A partition this host owns, as the source sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owned {
    pub partition: TopicPartition,
    /// Records behind the partition's end, when the client knows.
    pub lag: Option<i64>,
}

/// The `/status` document.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Status {
    pub pipeline: String,
    /// SHA-256 of the transform version running now.
    pub transform: String,
    /// True once the transform runs and the source has answered, while the store takes
    /// writes.
    pub ready: bool,
    /// Why the host is not ready, when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_ready: Option<String>,
    pub partitions: Vec<PartitionStatus>,
    /// The latest switches between versions, oldest first.
    pub swaps: Vec<Swap>,
    /// Versions this host would not run, oldest first.
    pub refused: Vec<Refusal>,
    /// The shadow version running beside the current one, and how their outputs compare.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowStatus>,
    /// Source schema versions that change a column in a way readers cannot follow (a type
    /// narrowed, or changed to another kind), oldest first. Their rows are written under
    /// the new version, never coerced.
    pub unsafe_schema_changes: Vec<SchemaFlag>,
}

/// A source schema version that is not a safe evolution of the one before it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SchemaFlag {
    pub topic: String,
    /// The versions' ids (as in Parquet keys and `wrt.source-schema`).
    pub from: String,
    pub to: String,
    /// `column: before → after`.
    pub changes: Vec<String>,
    pub at: String,
}

/// A shadow run on this host: what it compared since it started.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct ShadowStatus {
    pub digest: String,
    pub since: String,
    #[serde(flatten)]
    pub compared: Comparison,
    /// Time spent in the shadow (decoding and its calls), and in the current version's
    /// calls on the same batches.
    pub shadow_seconds: f64,
    pub current_seconds: f64,
}

impl ShadowStatus {
    /// Adds `other`'s counts, times and samples (up to [`SHADOW_SAMPLES`]): the total over
    /// hosts.
    pub fn add(&mut self, other: &ShadowStatus) {
        self.compared.add(&other.compared, SHADOW_SAMPLES);
        self.shadow_seconds += other.shadow_seconds;
        self.current_seconds += other.current_seconds;
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PartitionStatus {
    pub topic: String,
    pub partition: i32,
    /// The offset committed last by this host: everything before it is durable.
    pub last_commit: Option<i64>,
    pub lag: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Swap {
    pub from: String,
    pub to: String,
    pub at: String,
    /// How long the data path stood still: open windows sealed and queued for the writers,
    /// then the switch.
    pub pause_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Refusal {
    pub digest: String,
    pub reason: String,
    pub at: String,
}

/// Metrics and status of one pipeline in this process.
pub struct Telemetry {
    pipeline: String,
    registry: Registry,
    events_in: Counter,
    events_out: Family<DestinationLabels, Counter>,
    /// `events_out`'s counters by destination, so counting a row allocates nothing.
    out_by_destination: RwLock<HashMap<String, Counter>>,
    dead_letters: Counter,
    failed_alone: Counter,
    budget_spent: Counter,
    batch_events: Histogram,
    call_seconds: Histogram,
    flush_seconds: Histogram,
    upload_seconds: Histogram,
    upload_errors: Counter,
    store_retries: Counter,
    swaps: Counter,
    swaps_refused: Counter,
    swap_pause_seconds: Histogram,
    lag: Family<PartitionLabels, Gauge>,
    shadow_events: Family<OutcomeLabels, Counter>,
    shadow_cpu_share: Gauge<f64, std::sync::atomic::AtomicU64>,
    status: Mutex<StatusState>,
}

#[derive(Default)]
struct StatusState {
    status: Status,
    commits: BTreeMap<TopicPartition, i64>,
    /// The source has answered at least once.
    source_answered: bool,
    /// Why the source cannot deliver records now, if it says.
    source_trouble: Option<String>,
    /// Windows whose last write attempt failed, and the latest failure.
    failing_windows: usize,
    store_error: Option<String>,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn push_bounded<T>(list: &mut Vec<T>, item: T) {
    if list.len() == KEEP {
        list.remove(0);
    }
    list.push(item);
}

impl Telemetry {
    /// Metrics for `pipeline`, which runs `transform` (its digest) to start with.
    pub fn new(pipeline: &str, transform: &str) -> Telemetry {
        let mut registry = Registry::default();
        let labels = PipelineLabels {
            pipeline: pipeline.to_string(),
        };
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let family = Family::<PipelineLabels, Counter>::default();
            registry.register(name, help, family.clone());
            family.get_or_create(&labels).clone()
        };
        let histogram = |registry: &mut Registry, name: &str, help: &str, start: f64| {
            let family = Family::<PipelineLabels, Histogram, _>::new_with_constructor(move || {
                Histogram::new(exponential_buckets(start, 2.0, 16))
            });
            registry.register(name, help, family.clone());
            family.get_or_create(&labels).clone()
        };

        let events_in = counter(&mut registry, "wrt_events_in", "Kafka records read");
        let events_out = Family::default();
        registry.register(
            "wrt_events_out",
            "Rows written, per destination",
            events_out.clone(),
        );
        let dead_letters = counter(
            &mut registry,
            "wrt_dead_letters",
            "Records written to the dead-letter prefix",
        );
        let failed_alone = counter(
            &mut registry,
            "wrt_transform_failed_alone",
            "Events dead-lettered because a failed transform call, split down to them, failed with them alone",
        );
        let budget_spent = counter(
            &mut registry,
            "wrt_transform_budget_spent",
            "Batches whose failed-call budget ran out; their events not yet tried alone were dead-lettered",
        );
        let batch_events = histogram(
            &mut registry,
            "wrt_transform_batch_events",
            "Change events per transform call",
            1.0,
        );
        let call_seconds = histogram(
            &mut registry,
            "wrt_transform_call_seconds",
            "Duration of the transform calls on one batch (its parts' included after a failed call)",
            0.000_05,
        );
        let flush_seconds = histogram(
            &mut registry,
            "wrt_flush_seconds",
            "Writing a closed window: its marker and objects",
            0.001,
        );
        let upload_seconds = histogram(
            &mut registry,
            "wrt_upload_seconds",
            "Writing one object (or window marker) to the sink",
            0.000_5,
        );
        let upload_errors = counter(
            &mut registry,
            "wrt_upload_errors",
            "Object writes (window markers included) that failed after the client's retries",
        );
        let store_retries = counter(
            &mut registry,
            "wrt_store_retries",
            "Window writes that failed and were tried again after a backoff",
        );
        let swaps = counter(
            &mut registry,
            "wrt_transform_swaps",
            "Switches to another transform version",
        );
        let swaps_refused = counter(
            &mut registry,
            "wrt_transform_swaps_refused",
            "Versions refused because they failed to load or initialise",
        );
        let swap_pause_seconds = histogram(
            &mut registry,
            "wrt_transform_swap_pause_seconds",
            "How long the data path stood still for a switch",
            0.001,
        );
        let lag = Family::default();
        registry.register(
            "wrt_consumer_lag",
            "Records behind the end of each owned partition",
            lag.clone(),
        );

        let shadow_events = Family::default();
        registry.register(
            "wrt_shadow_events",
            "Change events the shadow version ran on, by how its outcome compared with the \
             current version's: identical, different, shadow_dead_letter, current_dead_letter",
            shadow_events.clone(),
        );
        let shadow_cpu_share = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "wrt_shadow_cpu_share",
            "The shadow's share of the transform time on the batches it ran on: its time \
             over its own plus the current version's",
            shadow_cpu_share.clone(),
        );

        let status = StatusState {
            status: Status {
                pipeline: pipeline.to_string(),
                transform: transform.to_string(),
                ..Status::default()
            },
            ..StatusState::default()
        };
        Telemetry {
            pipeline: pipeline.to_string(),
            registry,
            events_in,
            events_out,
            out_by_destination: RwLock::default(),
            dead_letters,
            failed_alone,
            budget_spent,
            batch_events,
            call_seconds,
            flush_seconds,
            upload_seconds,
            upload_errors,
            store_retries,
            swaps,
            swaps_refused,
            swap_pause_seconds,
            lag,
            shadow_events,
            shadow_cpu_share,
            status: Mutex::new(status),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, StatusState> {
        self.status.lock().expect("telemetry lock not poisoned")
    }

    /// The metrics in Prometheus' text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String does not fail");
        text
    }

    pub fn status(&self) -> Status {
        let state = self.state();
        let mut status = state.status.clone();
        status.not_ready = if !state.source_answered {
            Some("the source has not answered yet".into())
        } else if let Some(trouble) = &state.source_trouble {
            Some(trouble.clone())
        } else if state.failing_windows > 0 {
            Some(format!(
                "{} window(s) cannot be written, retrying: {}",
                state.failing_windows,
                state.store_error.as_deref().unwrap_or_default()
            ))
        } else {
            None
        };
        status.ready = status.not_ready.is_none();
        status
    }

    /// One lane batch: its records, its rows per destination, its dead letters. Counted
    /// once per batch by the lane, not once per row.
    pub fn counted(&self, records: u64, outputs: &[(String, u64)], dead_letters: u64) {
        self.events_in.inc_by(records);
        self.dead_letters.inc_by(dead_letters);
        for (destination, rows) in outputs {
            self.output(destination, *rows);
        }
    }

    fn output(&self, destination: &str, rows: u64) {
        let known = self.out_by_destination.read().expect("not poisoned");
        if let Some(counter) = known.get(destination) {
            counter.inc_by(rows);
            return;
        }
        drop(known);
        let counter = self
            .events_out
            .get_or_create(&DestinationLabels {
                pipeline: self.pipeline.clone(),
                destination: destination.to_string(),
            })
            .clone();
        counter.inc_by(rows);
        self.out_by_destination
            .write()
            .expect("not poisoned")
            .insert(destination.to_string(), counter);
    }

    pub fn transform_call(&self, events: usize, took: Duration) {
        self.batch_events.observe(events as f64);
        self.call_seconds.observe(took.as_secs_f64());
    }

    /// A batch whose transform call failed was split: `failed_alone` events failed alone,
    /// and its failed-call budget ran out if `budget_spent`.
    pub fn bisected(&self, failed_alone: u64, budget_spent: bool) {
        self.failed_alone.inc_by(failed_alone);
        if budget_spent {
            self.budget_spent.inc();
        }
    }

    pub fn upload(&self, took: Duration, ok: bool) {
        self.upload_seconds.observe(took.as_secs_f64());
        if !ok {
            self.upload_errors.inc();
        }
    }

    /// A window's write failed with `error` and will be tried again; `first` when the
    /// window had not failed before. The host is not ready until it is written.
    pub fn store_failing(&self, error: &str, first: bool) {
        self.store_retries.inc();
        let mut state = self.state();
        state.failing_windows += usize::from(first);
        state.store_error = Some(error.to_string());
    }

    /// A window that had failed is written at last.
    pub fn store_recovered(&self) {
        let mut state = self.state();
        state.failing_windows = state.failing_windows.saturating_sub(1);
        if state.failing_windows == 0 {
            state.store_error = None;
        }
    }

    /// A window's marker and objects are durable, after `took`.
    pub fn window_written(&self, took: Duration) {
        self.flush_seconds.observe(took.as_secs_f64());
    }

    /// Everything before `next_offset` of `partition` is durable and committed.
    pub fn committed(&self, partition: &TopicPartition, next_offset: i64) {
        self.state().commits.insert(partition.clone(), next_offset);
    }

    /// The source answered with the partitions it owns now, and what keeps it from
    /// delivering records, if anything.
    pub fn owned(&self, owned: Vec<Owned>, trouble: Option<String>) {
        for o in &owned {
            if let Some(lag) = o.lag {
                self.lag
                    .get_or_create(&PartitionLabels {
                        pipeline: self.pipeline.clone(),
                        topic: o.partition.topic.clone(),
                        partition: o.partition.partition.to_string(),
                    })
                    .set(lag);
            }
        }
        let mut state = self.state();
        let partitions = owned
            .into_iter()
            .map(|o| PartitionStatus {
                last_commit: state.commits.get(&o.partition).copied(),
                topic: o.partition.topic,
                partition: o.partition.partition,
                lag: o.lag,
            })
            .collect();
        state.status.partitions = partitions;
        state.source_answered = true;
        state.source_trouble = trouble;
    }

    /// A shadow of `digest` runs from now on; its counts start at zero.
    pub fn shadow_started(&self, digest: &str) {
        self.state().status.shadow = Some(ShadowStatus {
            digest: digest.to_string(),
            since: now(),
            ..ShadowStatus::default()
        });
    }

    pub fn shadow_ended(&self) {
        self.state().status.shadow = None;
    }

    /// How many more differences the shadow's status keeps.
    pub fn samples_wanted(&self) -> usize {
        let state = self.state();
        let kept = state
            .status
            .shadow
            .as_ref()
            .map_or(0, |s| s.compared.samples.len());
        SHADOW_SAMPLES.saturating_sub(kept)
    }

    /// A batch ran on the shadow too, which took `shadow`; the current version's calls on
    /// it took `current`.
    pub fn shadow_compared(
        &self,
        digest: &str,
        comparison: Comparison,
        shadow: Duration,
        current: Duration,
    ) {
        let outcomes = [
            ("identical", comparison.identical),
            ("different", comparison.different),
            ("shadow_dead_letter", comparison.shadow_only_dead_letters),
            ("current_dead_letter", comparison.current_only_dead_letters),
        ];
        for (outcome, n) in outcomes {
            self.shadow_events
                .get_or_create(&OutcomeLabels {
                    pipeline: self.pipeline.clone(),
                    outcome,
                })
                .inc_by(n);
        }
        let mut state = self.state();
        // A lane may still run the shadow this one replaced, for a batch or two.
        let Some(status) = state.status.shadow.as_mut().filter(|s| s.digest == digest) else {
            return;
        };
        status.compared.add(&comparison, SHADOW_SAMPLES);
        status.shadow_seconds += shadow.as_secs_f64();
        status.current_seconds += current.as_secs_f64();
        let total = status.shadow_seconds + status.current_seconds;
        if total > 0.0 {
            self.shadow_cpu_share.set(status.shadow_seconds / total);
        }
    }

    pub fn swapped(&self, from: &str, to: &str, pause: Duration) {
        self.swaps.inc();
        self.swap_pause_seconds.observe(pause.as_secs_f64());
        let mut state = self.state();
        state.status.transform = to.to_string();
        push_bounded(
            &mut state.status.swaps,
            Swap {
                from: from.to_string(),
                to: to.to_string(),
                at: now(),
                pause_ms: pause.as_secs_f64() * 1000.0,
            },
        );
    }

    /// `topic`'s records changed from source schema version `from` to `to`, a version not
    /// seen before, in the `changes` listed, which readers cannot follow. Flagged once per
    /// version, however many lanes meet it.
    pub fn unsafe_schema_change(&self, topic: &str, from: &str, to: &str, changes: Vec<String>) {
        let list = &mut self.state().status.unsafe_schema_changes;
        if list.iter().any(|f| f.topic == topic && f.to == to) {
            return;
        }
        tracing::warn!(%topic, from, to, changes = %changes.join(", "),
            "a source schema version narrows or retypes columns: its rows are written under \
             the new version, never coerced; readers of the older files must be told");
        push_bounded(
            list,
            SchemaFlag {
                topic: topic.to_string(),
                from: from.to_string(),
                to: to.to_string(),
                changes,
                at: now(),
            },
        );
    }

    pub fn refused(&self, digest: &str, reason: &str) {
        self.swaps_refused.inc();
        push_bounded(
            &mut self.state().status.refused,
            Refusal {
                digest: digest.to_string(),
                reason: reason.to_string(),
                at: now(),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unsafe_schema_change_is_flagged_once_in_the_status() {
        let telemetry = Telemetry::new("p", "d");
        for _ in 0..2 {
            telemetry.unsafe_schema_change("t", "a", "b", vec!["rev: int64 → int32".into()]);
        }
        telemetry.unsafe_schema_change("t", "b", "c", vec!["x: text → int64".into()]);
        let flags = telemetry.status().unsafe_schema_changes;
        let seen: Vec<(&str, &str, &str)> = (flags.iter())
            .map(|f| (f.from.as_str(), f.to.as_str(), f.changes[0].as_str()))
            .collect();
        assert_eq!(
            seen,
            [
                ("a", "b", "rev: int64 → int32"),
                ("b", "c", "x: text → int64")
            ]
        );
        let json = serde_json::to_value(telemetry.status()).unwrap();
        assert_eq!(json["unsafe_schema_changes"][0]["topic"], "t");
    }

    #[test]
    fn metrics_are_prometheus_text_with_the_counts() {
        let telemetry = Telemetry::new("shop", "abc");
        telemetry.counted(2, &[("customers".into(), 1)], 1);
        telemetry.counted(1, &[("customers".into(), 1)], 0);
        telemetry.swapped("abc", "def", Duration::from_millis(12));
        telemetry.bisected(1, false);
        telemetry.bisected(2, true);
        let text = telemetry.encode();
        assert!(
            text.contains("wrt_events_in_total{pipeline=\"shop\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("wrt_events_out_total{pipeline=\"shop\",destination=\"customers\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("wrt_transform_swaps_total{pipeline=\"shop\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("wrt_transform_failed_alone_total{pipeline=\"shop\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("wrt_transform_budget_spent_total{pipeline=\"shop\"} 1"),
            "{text}"
        );
        let status = telemetry.status();
        assert_eq!(status.transform, "def");
        assert_eq!(status.swaps.len(), 1);
        assert!(!status.ready, "not ready before the source answered");
    }

    #[test]
    fn not_ready_while_a_window_cannot_be_written_or_no_broker_answers() {
        let telemetry = Telemetry::new("shop", "abc");
        telemetry.owned(Vec::new(), None);
        assert!(telemetry.status().ready);
        telemetry.store_failing("s3://lake/a: connection refused", true);
        telemetry.store_failing("s3://lake/b: connection refused", true);
        telemetry.store_failing("s3://lake/b: timed out", false);
        let status = telemetry.status();
        assert!(!status.ready);
        assert_eq!(
            status.not_ready.as_deref(),
            Some("2 window(s) cannot be written, retrying: s3://lake/b: timed out")
        );
        telemetry.store_recovered();
        assert!(!telemetry.status().ready, "one window still fails");
        telemetry.store_recovered();
        assert!(telemetry.status().ready);
        telemetry.owned(Vec::new(), Some("no Kafka broker answers".into()));
        assert_eq!(
            telemetry.status().not_ready.as_deref(),
            Some("no Kafka broker answers")
        );
        telemetry.owned(Vec::new(), None);
        assert!(telemetry.status().ready);
        assert!(
            telemetry
                .encode()
                .contains("wrt_store_retries_total{pipeline=\"shop\"} 3")
        );
    }
}
