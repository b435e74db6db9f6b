//! Kafka through rdkafka: a consumer group member that never auto-commits. Offsets are
//! committed by the pipeline, window by window, once the window's objects are durable.
//! Partitions revoked in a rebalance are reported so their open windows are abandoned: the
//! next owner starts from the committed offset and rewrites the same objects. Assignment is
//! cooperative-sticky (incremental): a rebalance moves only the partitions that must move,
//! and the hosts keep reading the others meanwhile; the eager protocol would stop every
//! host's every partition at each join and leave. A revocation waits, inside the rebalance,
//! for the partition's window writes under way ([`Owners`]), so the next owner is given the
//! partition only once this host has stopped writing it. `wrt replay` uses the same source
//! with its partitions assigned instead ([`Kafka::replay`]): no rebalance, and each
//! partition ends at its span's end.

use std::collections::BTreeMap;
use std::error::Error;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::OAuthToken;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, Statistics, TopicPartitionList};
use tokio::sync::watch;

use super::{Source, SourceError};
use crate::config::{KafkaAuth, KafkaSource, Scram, StartFrom};
use crate::model::{KafkaRecord, Owners, TopicPartition};
use crate::telemetry::Owned;

/// How long a poll waits for more records once it has some, to fill a batch.
const LINGER: Duration = Duration::from_millis(50);
/// How long an empty poll waits before returning, so idle windows can be aged out.
const IDLE_TICK: Duration = Duration::from_millis(250);
/// Longest a revocation waits for the partition's window writes under way. A write attempt
/// is bounded by the store's timeouts; one still going after this is reported, because it
/// may land after the next owner's.
const REVOKE_WAIT: Duration = Duration::from_secs(60);

/// A consumer group member reading Debezium topics, or a replay of a range of them.
pub struct Kafka {
    consumer: Arc<StreamConsumer<GroupContext>>,
    shutdown: watch::Receiver<bool>,
    /// A record received after a revocation, kept for the next poll: a batch holds only
    /// records from before it.
    held: Option<KafkaRecord>,
    /// Offsets to commit once the commit under way has its answer.
    waiting: BTreeMap<TopicPartition, i64>,
    /// Whether a commit is waiting for the broker, on a blocking thread.
    committing: Arc<std::sync::atomic::AtomicBool>,
    /// A replay's partitions not read to their end yet, and where each ends; `None` for a
    /// group member, which reads for ever.
    ends: Option<BTreeMap<TopicPartition, i64>>,
    /// The offsets a replay reads, for its progress bar.
    total: Option<u64>,
}

impl Kafka {
    /// Joins `group_id` and subscribes; fails on an invalid librdkafka setting.
    /// `shutdown` turning true ends the stream after the current poll.
    pub fn connect(
        config: &KafkaSource,
        group_id: &str,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Self, SourceError> {
        let (client, context) = client_config(config, group_id)?;
        let consumer: StreamConsumer<GroupContext> = client
            .create_with_context(context)
            .map_err(|e| SourceError(Box::new(e)))?;
        let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| SourceError(Box::new(e)))?;
        Ok(Kafka::reading(consumer, shutdown, None))
    }

    /// Reads `spans` from their starts and ends once each is read to its end: a replay.
    /// The partitions are assigned, not subscribed to, so `group_id` only keeps the
    /// replay's own commits, and no live host's partitions move.
    pub fn replay(
        config: &KafkaSource,
        group_id: &str,
        spans: &[Span],
        shutdown: watch::Receiver<bool>,
    ) -> Result<Self, SourceError> {
        let error = |e: KafkaError| SourceError(Box::new(e));
        let (client, context) = client_config(config, group_id)?;
        let consumer: StreamConsumer<GroupContext> =
            client.create_with_context(context).map_err(error)?;
        let mut list = TopicPartitionList::new();
        let mut ends = BTreeMap::new();
        for span in spans.iter().filter(|s| s.start < s.to) {
            let p = &span.partition;
            list.add_partition_offset(&p.topic, p.partition, Offset::Offset(span.start))
                .map_err(error)?;
            consumer.context().owners.assigned(p.clone());
            ends.insert(p.clone(), span.to);
        }
        consumer.assign(&list).map_err(error)?;
        let total = spans.iter().map(|s| (s.to - s.start) as u64).sum();
        Ok(Kafka::reading(consumer, shutdown, Some((ends, total))))
    }

    /// The source around `consumer`; a replay passes where its partitions end, and the
    /// offsets it reads in all.
    fn reading(
        consumer: StreamConsumer<GroupContext>,
        shutdown: watch::Receiver<bool>,
        replay: Option<(BTreeMap<TopicPartition, i64>, u64)>,
    ) -> Self {
        let (ends, total) = replay.unzip();
        Kafka {
            consumer: Arc::new(consumer),
            shutdown,
            held: None,
            waiting: BTreeMap::new(),
            committing: Arc::default(),
            ends,
            total,
        }
    }

    /// Whether a replay has read every partition to its end.
    fn replayed(&self) -> bool {
        self.ends.as_ref().is_some_and(BTreeMap::is_empty)
    }

    /// A replay's `record`, or `None` past its partition's end, which it notes.
    fn within_span(&mut self, record: KafkaRecord) -> Option<KafkaRecord> {
        let Some(ends) = &self.ends else {
            return Some(record);
        };
        let partition = TopicPartition {
            topic: record.topic.clone(),
            partition: record.partition,
        };
        let end = *ends.get(&partition)?;
        if record.offset + 1 >= end {
            self.finished(&partition);
        }
        (record.offset < end).then_some(record)
    }

    /// Ends the partitions whose position reached their end without a record at it: the
    /// last offsets of a transactional topic are commit markers, which no consumer sees.
    fn note_positions(&mut self) {
        let (Some(ends), Ok(positions)) = (&self.ends, self.consumer.position()) else {
            return;
        };
        let done: Vec<TopicPartition> = offsets_of(&positions)
            .filter(|(p, at)| ends.get(p).is_some_and(|end| at >= end))
            .map(|(p, _)| p)
            .collect();
        for partition in done {
            self.finished(&partition);
        }
    }

    /// Stops fetching a replayed partition.
    fn finished(&mut self, partition: &TopicPartition) {
        if let Some(ends) = &mut self.ends {
            ends.remove(partition);
        }
        let mut list = TopicPartitionList::new();
        list.add_partition(&partition.topic, partition.partition);
        if let Err(e) = self.consumer.pause(&list) {
            tracing::debug!("pausing a replayed partition: {e}");
        }
    }
}

/// A Kafka message as the pipeline's record.
pub fn record_of(message: &impl Message) -> KafkaRecord {
    KafkaRecord {
        topic: message.topic().to_string(),
        partition: message.partition(),
        offset: message.offset(),
        timestamp_ms: message.timestamp().to_millis(),
        key: message.key().map(<[u8]>::to_vec),
        value: message.payload().map(<[u8]>::to_vec),
    }
}

/// Credentials that cannot be used: the operator's to fix, so never retried. The messages
/// name the user and the variable, never the password.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "source.auth.password-env: the environment variable {var} is not set or is empty; \
         export the SCRAM password of user `{user}` in it"
    )]
    MissingPassword { var: String, user: String },
    #[error(
        "source.auth.ca-file: cannot read {}: {source}; point it at the PEM file of the CA \
         that signed the brokers' certificates",
        path.display()
    )]
    CaFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the broker at {brokers} refused the {mechanism} credentials of user `{user}` \
         ({reason}); check source.auth.username and the password in the environment variable \
         {var} (source.auth.password-env)"
    )]
    Refused {
        brokers: String,
        mechanism: &'static str,
        user: String,
        var: String,
        reason: String,
    },
    #[error(
        "the TLS handshake with the broker at {brokers} failed ({reason}); check \
         source.auth.ca-file ({ca}) and that source.brokers names the TLS listener"
    )]
    Tls {
        brokers: String,
        ca: String,
        reason: String,
    },
}

impl From<AuthError> for SourceError {
    fn from(error: AuthError) -> Self {
        SourceError(Box::new(error))
    }
}

/// What an authentication failure message names: where, who, and which setting to fix.
struct Login {
    brokers: String,
    mechanism: &'static str,
    scram: Scram,
}

impl Login {
    /// The error for a librdkafka error that retrying cannot fix, if `error` is one.
    fn refusal(&self, error: &KafkaError, reason: &str) -> Option<AuthError> {
        match error.rdkafka_error_code()? {
            RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed => {
                Some(AuthError::Refused {
                    brokers: self.brokers.clone(),
                    mechanism: self.mechanism,
                    user: self.scram.username.clone(),
                    var: self.scram.password_env.clone(),
                    reason: reason.to_string(),
                })
            }
            RDKafkaErrorCode::SSL => Some(AuthError::Tls {
                brokers: self.brokers.clone(),
                ca: match &self.scram.ca_file {
                    Some(path) => path.display().to_string(),
                    None => "not set: the system's trust store".into(),
                },
                reason: reason.to_string(),
            }),
            _ => None,
        }
    }
}

/// The client settings of a member of `group_id`, and its callbacks. Fails when the
/// credentials the file points at are missing.
fn client_config(
    config: &KafkaSource,
    group_id: &str,
) -> Result<(ClientConfig, GroupContext), AuthError> {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.brokers)
        .set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set(
            "auto.offset.reset",
            match config.start_from {
                StartFrom::Earliest => "earliest",
                StartFrom::Latest => "latest",
            },
        )
        // Subscriptions by pattern notice new tables' topics quickly.
        .set("topic.metadata.refresh.interval.ms", "10000")
        // Statistics carry each partition's consumer lag, for the lag metric.
        .set("statistics.interval.ms", "5000")
        // librdkafka prefetches up to 64 MiB by default; the lanes keep up with far less,
        // and the host's memory is bounded by what it buffers here.
        .set("queued.max.messages.kbytes", "16384")
        // ... but only if a full queue does not stop fetching for the default second: at
        // 16 MiB that held the host to 6,500 events/s (the lanes idle) on the benchmark.
        .set("fetch.queue.backoff.ms", "10")
        // A broker that goes away is reconnected to for ever, backing off up to 10 s; a hung
        // one fails its requests after 30 s. Written out so the behaviour in a broker
        // outage is read here, not looked up in librdkafka's defaults.
        .set("socket.connection.setup.timeout.ms", "10000")
        .set("socket.timeout.ms", "30000")
        .set("reconnect.backoff.ms", "100")
        .set("reconnect.backoff.max.ms", "10000");
    let mut region = None;
    let mut login = None;
    match &config.auth {
        KafkaAuth::None => {}
        KafkaAuth::MskIam { region: r } => {
            client
                .set("security.protocol", "SASL_SSL")
                .set("sasl.mechanism", "OAUTHBEARER");
            region = Some(r.clone());
        }
        KafkaAuth::ScramSha512(scram) | KafkaAuth::ScramSha256(scram) => {
            let mechanism = match config.auth {
                KafkaAuth::ScramSha256(_) => "SCRAM-SHA-256",
                _ => "SCRAM-SHA-512",
            };
            let password = std::env::var(&scram.password_env)
                .ok()
                .filter(|p| !p.is_empty())
                .ok_or_else(|| AuthError::MissingPassword {
                    var: scram.password_env.clone(),
                    user: scram.username.clone(),
                })?;
            client
                .set("security.protocol", "SASL_SSL")
                .set("sasl.mechanism", mechanism)
                .set("sasl.username", &scram.username)
                .set("sasl.password", password);
            if let Some(ca) = &scram.ca_file {
                // librdkafka would only say "ssl.ca.location failed" at connect time.
                std::fs::File::open(ca).map_err(|source| AuthError::CaFile {
                    path: ca.clone(),
                    source,
                })?;
                client.set("ssl.ca.location", ca.display().to_string());
            }
            login = Some(Login {
                brokers: config.brokers.clone(),
                mechanism,
                scram: scram.clone(),
            });
        }
    }
    for (key, value) in &config.properties {
        client.set(key, value);
    }
    let context = GroupContext {
        revoked: Arc::default(),
        owners: Arc::default(),
        confirmed: Mutex::default(),
        lag: Arc::default(),
        msk_region: region,
        login,
        refused: Mutex::default(),
        trouble: Mutex::default(),
        last_error: Mutex::default(),
    };
    Ok((client, context))
}

/// The offsets `group_id` committed for every partition of the topics `config` names
/// (a name starting with `^` is a regular expression, as in a subscription), read without
/// joining the group: a metadata request and an offset fetch. Partitions without a commit
/// are left out.
pub fn committed_offsets(
    config: &KafkaSource,
    group_id: &str,
    timeout: Duration,
) -> Result<BTreeMap<TopicPartition, i64>, SourceError> {
    let consumer = outside_consumer(config, group_id)?;
    let list = topic_partitions(&consumer, config, timeout)?;
    committed(&consumer, list, timeout)
}

/// A consumer that reads metadata and offsets without joining `group_id`.
fn outside_consumer(
    config: &KafkaSource,
    group_id: &str,
) -> Result<BaseConsumer<GroupContext>, SourceError> {
    let (client, context) = client_config(config, group_id)?;
    client
        .create_with_context(context)
        .map_err(|e| SourceError(Box::new(e)))
}

/// Every partition of the topics `config` names.
fn topic_partitions(
    consumer: &BaseConsumer<GroupContext>,
    config: &KafkaSource,
    timeout: Duration,
) -> Result<TopicPartitionList, SourceError> {
    let error = |e: KafkaError| SourceError(Box::new(e));
    // A refused login is only reported to the error callback, which runs when the consumer
    // is polled; metadata is asked for in short rounds so a refusal ends this at once.
    let deadline = Instant::now() + timeout;
    let metadata = loop {
        let round = timeout.min(Duration::from_secs(1));
        match consumer.fetch_metadata(None, round) {
            Ok(metadata) => break metadata,
            Err(e) => {
                let _ = consumer.poll(Duration::ZERO);
                if let Some(refused) = consumer.context().refused() {
                    return Err(SourceError(Box::new(refused)));
                }
                if Instant::now() >= deadline {
                    return Err(error(e));
                }
            }
        }
    };
    let mut patterns = Vec::new();
    for topic in &config.topics {
        if topic.starts_with('^') {
            patterns.push(regex::Regex::new(topic).map_err(|e| SourceError(Box::new(e)))?);
        }
    }
    let wanted = |name: &str| {
        config.topics.iter().any(|t| t == name) || patterns.iter().any(|p| p.is_match(name))
    };
    let mut list = TopicPartitionList::new();
    for topic in metadata.topics().iter().filter(|t| wanted(t.name())) {
        for partition in topic.partitions() {
            list.add_partition(topic.name(), partition.id());
        }
    }
    Ok(list)
}

/// The offsets the consumer's group committed for `list`; partitions without one are left
/// out.
fn committed(
    consumer: &BaseConsumer<GroupContext>,
    list: TopicPartitionList,
    timeout: Duration,
) -> Result<BTreeMap<TopicPartition, i64>, SourceError> {
    let committed = consumer
        .committed_offsets(list, timeout)
        .map_err(|e| SourceError(Box::new(e)))?;
    Ok(offsets_of(&committed).collect())
}

/// The partitions of `list` that carry an offset, with it.
fn offsets_of(list: &TopicPartitionList) -> impl Iterator<Item = (TopicPartition, i64)> + '_ {
    list.elements()
        .into_iter()
        .filter_map(|p| match p.offset() {
            Offset::Offset(offset) => Some((
                TopicPartition {
                    topic: p.topic().to_string(),
                    partition: p.partition(),
                },
                offset,
            )),
            _ => None,
        })
}

/// Where a replay starts or ends in each partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bound {
    /// The oldest record each partition still holds (retention removes older ones).
    Earliest,
    /// The end of each partition when the replay starts.
    Now,
    /// The first record stamped at or after this time, in ms since the Unix epoch.
    Time(i64),
    /// Exact offsets of the partitions named. As a start, it limits the replay to them; as
    /// an end, the others end [`Bound::Now`].
    Offsets(BTreeMap<TopicPartition, i64>),
}

/// One partition's share of a replay: the offsets `[from, to)`, read from `start` (`from`,
/// or where an earlier run of the same replay committed).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Span {
    #[serde(flatten)]
    pub partition: TopicPartition,
    pub from: i64,
    pub to: i64,
    pub start: i64,
}

/// Each partition's [`Span`] between `from` and `to`, with `group_id`'s commits as the
/// place to resume. Fails, naming the partition and the fix, when `from` lies before what
/// the topic still holds (retention), after `to`, or past the partition's end.
pub fn replay_spans(
    config: &KafkaSource,
    group_id: &str,
    (from, to): (&Bound, &Bound),
    timeout: Duration,
) -> Result<Vec<Span>, SourceError> {
    let error = |e: KafkaError| SourceError(Box::new(e));
    let consumer = outside_consumer(config, group_id)?;
    let list = topic_partitions(&consumer, config, timeout)?;
    let known: Vec<TopicPartition> = partitions_of(&list).collect();
    for bound in [from, to] {
        if let Bound::Offsets(named) = bound
            && let Some(unknown) = named.keys().find(|p| !known.contains(p))
        {
            return Err(SourceError(
                format!(
                    "{}/{} is not a partition of the pipeline's topics (source.topics); name \
                     partitions as TOPIC/PARTITION/OFFSET",
                    unknown.topic, unknown.partition
                )
                .into(),
            ));
        }
    }
    let at_times = |bound: &Bound| -> Result<BTreeMap<TopicPartition, i64>, SourceError> {
        let Bound::Time(ms) = bound else {
            return Ok(BTreeMap::new());
        };
        let mut asked = TopicPartitionList::new();
        for p in &known {
            asked
                .add_partition_offset(&p.topic, p.partition, Offset::Offset(*ms))
                .map_err(error)?;
        }
        let found = consumer.offsets_for_times(asked, timeout).map_err(error)?;
        Ok(offsets_of(&found).collect())
    };
    let (from_times, to_times) = (at_times(from)?, at_times(to)?);
    let committed = committed(&consumer, list, timeout)?;
    let mut spans = Vec::new();
    for partition in known {
        let (low, high) = consumer
            .fetch_watermarks(&partition.topic, partition.partition, timeout)
            .map_err(error)?;
        let resolve = |bound: &Bound, times: &BTreeMap<TopicPartition, i64>| match bound {
            Bound::Earliest => Some(low),
            Bound::Now => Some(high),
            // No record that late: the partition's end.
            Bound::Time(_) => Some(times.get(&partition).copied().unwrap_or(high)),
            Bound::Offsets(named) => named.get(&partition).copied(),
        };
        let Some(start_at) = resolve(from, &from_times) else {
            continue;
        };
        let end_at = resolve(to, &to_times).unwrap_or(high);
        let name = format!("{}/{}", partition.topic, partition.partition);
        let refuse = |why: String| Err(SourceError(format!("{name}: {why}").into()));
        if start_at < low {
            return refuse(format!(
                "offset {start_at} has left the topic (its retention.ms or retention.bytes); \
                 the oldest it holds is {low}: replay from there (--from earliest) or later"
            ));
        }
        // The first record kept may not be the first one stamped after that time: older
        // ones may have left. Only `earliest` says the gap is accepted.
        if matches!(from, Bound::Time(_)) && start_at == low && low > 0 {
            return refuse(format!(
                "the records from --from's time on may have left the topic (its retention.ms \
                 or retention.bytes): the oldest it holds, offset {low}, is the first at or \
                 after that time; replay from --from earliest to accept the gap, or from a \
                 later time"
            ));
        }
        if end_at > high {
            return refuse(format!(
                "it ends at offset {high} for now, before --to's {end_at}; give an end it has \
                 reached, or --to now"
            ));
        }
        if start_at > end_at {
            return refuse(format!(
                "--from resolves to offset {start_at}, after --to's {end_at}; swap them"
            ));
        }
        let start = match committed.get(&partition) {
            Some(&done) if done > start_at => done.min(end_at),
            _ => start_at,
        };
        if start < low {
            return refuse(format!(
                "the replay stopped at offset {start}, which has left the topic since (its \
                 retention.ms or retention.bytes; the oldest it holds is {low}); replay into \
                 a new --prefix"
            ));
        }
        spans.push(Span {
            partition,
            from: start_at,
            to: end_at,
            start,
        });
    }
    Ok(spans)
}

/// Every partition of `list`.
fn partitions_of(list: &TopicPartitionList) -> impl Iterator<Item = TopicPartition> + '_ {
    list.elements().into_iter().map(|p| TopicPartition {
        topic: p.topic().to_string(),
        partition: p.partition(),
    })
}

/// Whether a consumer can read a record of `source` at an offset in `[from, to)`: `false`
/// when those offsets hold none (transaction markers and aborted transactions' records,
/// which no `read_committed` consumer sees), `None` when they have left the topic
/// (retention), so nobody can tell. Reads at most one record, without joining the group.
pub fn readable_between(
    config: &KafkaSource,
    group_id: &str,
    source: &TopicPartition,
    (from, to): (i64, i64),
    timeout: Duration,
) -> Result<Option<bool>, SourceError> {
    let error = |e: KafkaError| SourceError(Box::new(e));
    let (mut client, context) = client_config(config, group_id)?;
    client.set("enable.partition.eof", "true");
    let consumer: BaseConsumer<GroupContext> =
        client.create_with_context(context).map_err(error)?;
    let (low, _) = consumer
        .fetch_watermarks(&source.topic, source.partition, timeout)
        .map_err(error)?;
    if low > from {
        return Ok(None);
    }
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(&source.topic, source.partition, Offset::Offset(from))
        .map_err(error)?;
    consumer.assign(&list).map_err(error)?;
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(250)) {
            Some(Ok(message)) => return Ok(Some(message.offset() < to)),
            Some(Err(KafkaError::PartitionEOF(_))) => return Ok(Some(false)),
            Some(Err(e)) => return Err(error(e)),
            None => {}
        }
    }
    Err(SourceError(
        format!(
            "{}/{} answered nothing at offset {from} within {} s",
            source.topic,
            source.partition,
            timeout.as_secs()
        )
        .into(),
    ))
}

/// Commits `list` and waits for the broker: whether it accepted. A failed commit is not
/// fatal: the objects are durable, their keys deterministic and their markers kept, so
/// whoever re-reads the range rewrites the same objects.
fn commit_sync(consumer: &StreamConsumer<GroupContext>, list: &TopicPartitionList) -> bool {
    match consumer.commit(list, CommitMode::Sync) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(
                partitions = list.count(),
                "offset commit failed ({e}); the range will be re-read and rewritten identically"
            );
            false
        }
    }
}

fn offset_list(offsets: &[(TopicPartition, i64)]) -> Result<TopicPartitionList, SourceError> {
    let mut list = TopicPartitionList::new();
    for (source, next_offset) in offsets {
        list.add_partition_offset(
            &source.topic,
            source.partition,
            Offset::Offset(*next_offset),
        )
        .map_err(|e| SourceError(Box::new(e)))?;
    }
    Ok(list)
}

impl Kafka {
    /// Sends the offsets waiting, unless a commit is under way: one at a time, on a
    /// blocking thread, so a broker that does not answer holds no task; the next carries
    /// every partition's latest offset.
    fn send_waiting(&mut self) -> Result<(), SourceError> {
        use std::sync::atomic::Ordering;
        if self.waiting.is_empty() || self.committing.load(Ordering::Acquire) {
            return Ok(());
        }
        let offsets: Vec<(TopicPartition, i64)> =
            std::mem::take(&mut self.waiting).into_iter().collect();
        let list = offset_list(&offsets)?;
        self.committing.store(true, Ordering::Release);
        let (consumer, committing) = (Arc::clone(&self.consumer), Arc::clone(&self.committing));
        tokio::task::spawn_blocking(move || {
            if commit_sync(&consumer, &list) {
                let context = consumer.context();
                context
                    .confirmed
                    .lock()
                    .expect("not poisoned")
                    .extend(offsets);
            }
            committing.store(false, Ordering::Release);
        });
        Ok(())
    }

    fn revocation_pending(&self) -> bool {
        !self
            .consumer
            .context()
            .revoked
            .lock()
            .expect("not poisoned")
            .is_empty()
    }
}

impl Source for Kafka {
    async fn poll(&mut self, max: usize) -> Result<Option<Vec<KafkaRecord>>, SourceError> {
        let mut batch: Vec<KafkaRecord> = self.held.take().into_iter().collect();
        loop {
            if self.revocation_pending() {
                return Ok(Some(batch));
            }
            if *self.shutdown.borrow() || self.replayed() {
                return Ok((!batch.is_empty()).then_some(batch));
            }
            if let Some(refused) = self.consumer.context().refused() {
                return Err(SourceError(Box::new(refused)));
            }
            let wait = if batch.is_empty() { IDLE_TICK } else { LINGER };
            let received = tokio::select! {
                received = tokio::time::timeout(wait, self.consumer.recv()) => received,
                _ = self.shutdown.changed() => continue,
            };
            match received {
                Err(_idle) => {
                    self.note_positions();
                    return Ok(Some(batch));
                }
                // librdkafka reports most errors (a topic not created yet, a broker
                // restarting) and recovers by itself; only a fatal one ends the stream.
                Ok(Err(e)) => {
                    if let Some((_, reason)) = self.consumer.client().fatal_error() {
                        return Err(SourceError(reason.into()));
                    }
                    // Said already, once per kind, by `GroupContext::error`. Handed back
                    // so the host can report it: an outage is not a reason to spin.
                    tracing::debug!("kafka: {e}");
                    if batch.is_empty() {
                        tokio::time::sleep(IDLE_TICK).await;
                    }
                    return Ok(Some(batch));
                }
                Ok(Ok(message)) => {
                    let record = record_of(&message);
                    // Received after a revocation (served inside this `recv`): it waits
                    // until the revocation is handled.
                    if self.revocation_pending() {
                        self.held = Some(record);
                        return Ok(Some(batch));
                    }
                    let Some(record) = self.within_span(record) else {
                        continue;
                    };
                    batch.push(record);
                    if batch.len() >= max {
                        return Ok(Some(batch));
                    }
                }
            }
        }
    }

    fn commit(&mut self, offsets: &[(TopicPartition, i64)]) -> Result<(), SourceError> {
        self.waiting.extend(offsets.iter().cloned());
        self.send_waiting()
    }

    fn confirmed(&mut self) -> Vec<(TopicPartition, i64)> {
        if let Err(e) = self.send_waiting() {
            tracing::warn!("offset commit not sent ({e}); it is tried again");
        }
        std::mem::take(
            &mut *self
                .consumer
                .context()
                .confirmed
                .lock()
                .expect("not poisoned"),
        )
    }

    async fn commit_and_wait(
        &mut self,
        offsets: &[(TopicPartition, i64)],
    ) -> Result<bool, SourceError> {
        Ok(commit_sync(&self.consumer, &offset_list(offsets)?))
    }

    fn owners(&self) -> Option<Arc<Owners>> {
        Some(Arc::clone(&self.consumer.context().owners))
    }

    fn revoked(&mut self) -> Vec<TopicPartition> {
        let revoked = std::mem::take(
            &mut *self
                .consumer
                .context()
                .revoked
                .lock()
                .expect("not poisoned"),
        );
        // Nothing more is committed for a partition another host owns now.
        for partition in &revoked {
            self.waiting.remove(partition);
        }
        revoked
    }

    fn len_hint(&self) -> Option<u64> {
        self.total
    }

    fn trouble(&self) -> Option<String> {
        self.consumer
            .context()
            .trouble
            .lock()
            .expect("not poisoned")
            .clone()
    }

    fn owned(&self) -> Vec<Owned> {
        let Ok(assignment) = self.consumer.assignment() else {
            return Vec::new();
        };
        let lag = self.consumer.context().lag.lock().expect("not poisoned");
        assignment
            .elements()
            .iter()
            .map(|p| {
                let partition = TopicPartition {
                    topic: p.topic().to_string(),
                    partition: p.partition(),
                };
                Owned {
                    lag: lag.get(&partition).copied(),
                    partition,
                }
            })
            .collect()
    }
}

/// Rebalance, statistics and authentication callbacks; they run inside `recv`.
struct GroupContext {
    revoked: Arc<Mutex<Vec<TopicPartition>>>,
    owners: Arc<Owners>,
    /// Offsets the broker accepted, until the pipeline takes them.
    confirmed: Mutex<Vec<(TopicPartition, i64)>>,
    lag: Arc<Mutex<BTreeMap<TopicPartition, i64>>>,
    msk_region: Option<String>,
    /// The SCRAM login, to name it when the broker refuses it.
    login: Option<Login>,
    /// Set when the broker refused the credentials or the TLS handshake failed: librdkafka
    /// would retry that for ever, the source ends instead.
    refused: Mutex<Option<AuthError>>,
    /// Set when librdkafka reports every broker down; cleared by the next statistics that
    /// show a broker up again.
    trouble: Mutex<Option<String>>,
    /// The last error logged, so an outage is logged once, not at every retry; cleared
    /// with `trouble`.
    last_error: Mutex<Option<String>>,
}

impl GroupContext {
    /// The refusal the error callback recorded, if any.
    fn refused(&self) -> Option<AuthError> {
        self.refused.lock().expect("not poisoned").take()
    }
}

/// Whether `error` says a subscribed topic (or every topic of a pattern) does not exist yet:
/// normal before Debezium has captured a table, and over once the topic is created.
fn waiting_for_topic(error: &KafkaError) -> bool {
    error.rdkafka_error_code() == Some(RDKafkaErrorCode::UnknownTopicOrPartition)
}

impl ClientContext for GroupContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    /// librdkafka's errors: a subscription that matches no topic yet is a WARN saying what
    /// the consumer waits for; every broker down makes the source unready; other errors are
    /// logged once each until a record arrives, not at every retry.
    fn error(&self, error: KafkaError, reason: &str) {
        if waiting_for_topic(&error) {
            let topic = reason
                .strip_prefix("Subscribed topic not available: ")
                .and_then(|rest| rest.split(": ").next())
                .unwrap_or(reason);
            tracing::warn!(
                "kafka: no topic matches `{topic}` yet; waiting for it to be created \
                 (records are read from it as soon as it exists)"
            );
            return;
        }
        // Not logged: the error ends the run, and the binary prints it once.
        if let Some(refused) = self.login.as_ref().and_then(|l| l.refusal(&error, reason)) {
            *self.refused.lock().expect("not poisoned") = Some(refused);
            return;
        }
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            *self.trouble.lock().expect("not poisoned") =
                Some(format!("no Kafka broker answers ({reason}); reconnecting"));
        }
        let said = error.to_string();
        let mut last = self.last_error.lock().expect("not poisoned");
        if last.as_ref() != Some(&said) {
            tracing::warn!("kafka: {said}: {reason}; retrying");
            *last = Some(said);
        }
    }

    fn stats(&self, statistics: Statistics) {
        // Only real brokers count, not librdkafka's internal and logical (coordinator)
        // handles, whose state says nothing about a broker answering.
        let real = |source: &str| source == "learned" || source == "configured";
        if statistics
            .brokers
            .values()
            .any(|b| b.state == "UP" && real(&b.source))
        {
            *self.trouble.lock().expect("not poisoned") = None;
            *self.last_error.lock().expect("not poisoned") = None;
        }
        let mut lag = self.lag.lock().expect("not poisoned");
        for (topic, t) in statistics.topics {
            // Partition -1 is librdkafka's internal one; a lag of -1 means not known yet.
            for (partition, p) in t.partitions {
                if partition >= 0 && p.consumer_lag >= 0 {
                    let key = TopicPartition {
                        topic: topic.clone(),
                        partition,
                    };
                    lag.insert(key, p.consumer_lag);
                }
            }
        }
    }

    fn generate_oauth_token(&self, _config: Option<&str>) -> Result<OAuthToken, Box<dyn Error>> {
        let region = self
            .msk_region
            .clone()
            .ok_or("OAUTHBEARER needs `auth = { mechanism = \"msk-iam\", region = … }`")?;
        // The callback runs on a runtime thread, where blocking on a future is not allowed;
        // tokens are made every few minutes, so a short-lived thread is cheap enough.
        let (token, lifetime_ms) = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime
                .block_on(aws_msk_iam_sasl_signer::generate_auth_token(
                    aws_config::Region::new(region),
                ))
                .map_err(|e| -> Box<dyn Error + Send + Sync> { e.to_string().into() })
        })
        .join()
        .map_err(|_| "the MSK token thread panicked")?
        .map_err(|e| e.to_string())?;
        Ok(OAuthToken {
            token,
            principal_name: String::new(),
            lifetime_ms,
        })
    }
}

impl ConsumerContext for GroupContext {
    /// Records the new owner of each partition; a revocation waits here for the partition's
    /// window writes under way, so the group hands it on only once they have ended.
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let partitions = |list: &TopicPartitionList| {
            list.elements()
                .iter()
                .map(|p| TopicPartition {
                    topic: p.topic().to_string(),
                    partition: p.partition(),
                })
                .collect::<Vec<_>>()
        };
        match rebalance {
            Rebalance::Assign(list) => {
                for p in partitions(list) {
                    tracing::info!(topic = %p.topic, partition = p.partition, "partition assigned");
                    self.owners.assigned(p);
                }
            }
            Rebalance::Revoke(list) => {
                let revoked = partitions(list);
                let wait = || {
                    for p in &revoked {
                        let started = Instant::now();
                        let left = self.owners.revoked(p, REVOKE_WAIT);
                        let waited_ms = started.elapsed().as_millis() as u64;
                        if left > 0 {
                            tracing::warn!(topic = %p.topic, partition = p.partition, left,
                                "partition revoked while {left} window write(s) had not ended \
                                 after {waited_ms} ms; they may land after the next owner's");
                        } else {
                            tracing::info!(topic = %p.topic, partition = p.partition, waited_ms,
                                "partition revoked");
                        }
                    }
                };
                // The callback runs inside `recv` on a runtime thread; the writers it waits
                // for run on the others.
                match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
                    Ok(tokio::runtime::RuntimeFlavor::MultiThread) => {
                        tokio::task::block_in_place(wait)
                    }
                    _ => wait(),
                }
                self.revoked.lock().expect("not poisoned").extend(revoked);
            }
            Rebalance::Error(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scram_source(var: &str, ca_file: Option<PathBuf>) -> KafkaSource {
        KafkaSource {
            brokers: "127.0.0.1:9094".into(),
            topics: vec!["t".into()],
            group_id: None,
            start_from: StartFrom::Earliest,
            auth: KafkaAuth::ScramSha512(Scram {
                username: "wrt".into(),
                password_env: var.into(),
                ca_file,
            }),
            properties: BTreeMap::new(),
        }
    }

    /// Sets a variable only this test reads.
    fn set(var: &str, value: &str) {
        // SAFETY: each test uses its own variable name, read by no other thread.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var(var, value)
        };
    }

    #[test]
    fn a_missing_password_names_the_variable_and_the_fix() {
        let Err(error) = client_config(&scram_source("WRT_TEST_UNSET_PASSWORD", None), "g") else {
            panic!("expected an error")
        };
        let said = error.to_string();
        assert!(said.starts_with("source.auth.password-env:"), "{said}");
        assert!(said.contains("WRT_TEST_UNSET_PASSWORD"), "{said}");
        assert!(
            said.contains("export the SCRAM password of user `wrt`"),
            "{said}"
        );
    }

    #[test]
    fn an_unreadable_ca_file_names_the_field() {
        set("WRT_TEST_CA_PASSWORD", "pw-ca");
        let source = scram_source("WRT_TEST_CA_PASSWORD", Some("/nonexistent/ca.pem".into()));
        let Err(error) = client_config(&source, "g") else {
            panic!("expected an error")
        };
        let said = error.to_string();
        assert!(
            said.starts_with("source.auth.ca-file: cannot read /nonexistent/ca.pem"),
            "{said}"
        );
        assert!(!said.contains("pw-ca"), "{said}");
    }

    #[test]
    fn scram_is_wired_and_a_refusal_never_shows_the_password() {
        let secret = "s3cret-never-printed";
        set("WRT_TEST_SCRAM_PASSWORD", secret);
        let ca = tempfile::NamedTempFile::new().unwrap();
        let source = scram_source("WRT_TEST_SCRAM_PASSWORD", Some(ca.path().into()));
        let (client, context) = client_config(&source, "g").unwrap();
        assert_eq!(client.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(client.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(client.get("sasl.username"), Some("wrt"));
        assert_eq!(client.get("sasl.password"), Some(secret));
        assert_eq!(
            client.get("ssl.ca.location"),
            Some(ca.path().to_str().unwrap())
        );
        let reason = "SASL authentication error: Authentication failed during authentication \
                      due to invalid credentials with SASL mechanism SCRAM-SHA-512";
        context.error(KafkaError::Global(RDKafkaErrorCode::Authentication), reason);
        let said = context.refused().expect("a refusal").to_string();
        assert!(
            said.starts_with(
                "the broker at 127.0.0.1:9094 refused the SCRAM-SHA-512 credentials of user `wrt`"
            ),
            "{said}"
        );
        assert!(
            said.contains("WRT_TEST_SCRAM_PASSWORD (source.auth.password-env)"),
            "{said}"
        );
        assert!(!said.contains(secret), "{said}");
        // The configuration holds the variable's name only, and rdkafka leaves the password
        // out of its own Debug.
        assert!(!format!("{source:?}").contains(secret));
        assert!(!format!("{client:?}").contains(secret));
        // A broker that is merely down is retried, not a refusal.
        context.error(KafkaError::Global(RDKafkaErrorCode::AllBrokersDown), "down");
        assert!(context.refused().is_none());
    }
}
