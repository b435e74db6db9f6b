//! The commit protocol, the heart of exactly-once (DESIGN §3). For each closed window:
//!
//! 1. a *marker* under [`Marker::key`] records where the window ends, which transform wrote
//!    it and which objects it holds;
//! 2. the schema history documents of its Parquet objects' versions and every object of
//!    the window are written, and the catalog told of its tables if there is one
//!    ([`Catalog`]);
//! 3. once this window and every earlier window of its partition are durable, the offset
//!    after it is committed ([`Committer`]);
//! 4. then the marker is removed.
//!
//! Windows are written in the background, several at a time, while consumption goes on: so a
//! crash can leave several markers of one partition behind, one per window in flight. A
//! replay follows them in order ([`replay_end`]): each replayed window ends where its marker
//! says, so it rewrites the same keys with the same bytes, and only after the last marker
//! does the partition go back to closing windows by count, size and age.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::model::{Object, TopicPartition, path_segment};
use crate::pipeline::catalog::Catalog;
use crate::pipeline::sink::{ConditionalError, Expect, Sink, SinkError};

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
            topic = path_segment(&source.topic)
        )
    }
}

/// A closed window, encoded, on its way to the store.
#[derive(Debug)]
pub struct Sealed {
    pub source: TopicPartition,
    /// Which ownership of the partition the window belongs to: a window written for an
    /// earlier assignment (before a rebalance) must not commit for the current one.
    pub generation: u64,
    /// The window's place among its partition's windows in this generation, from 0.
    pub seq: u64,
    pub first_offset: i64,
    /// What to commit once the window is durable.
    pub next_offset: i64,
    /// The transform that made the objects.
    pub transform: String,
    pub objects: Vec<Object>,
    /// Schema history documents of the objects' source schema versions, written before
    /// them. Not listed in the marker: other windows' files use them too, so a replay
    /// leaves them.
    pub documents: Vec<Document>,
}

/// A document the window writes beside its objects, unless one is there already.
#[derive(Debug)]
pub struct Document {
    pub key: String,
    pub body: Vec<u8>,
    /// Whether it replaces `there`, a document already under its key: `(there, ours)`.
    pub replaces: fn(&[u8], &[u8]) -> bool,
}

/// What writing a [`Sealed`] window did.
#[derive(Debug)]
pub struct Written {
    pub source: TopicPartition,
    pub generation: u64,
    pub seq: u64,
    pub next_offset: i64,
    /// The marker to remove once the offset is committed (none for a window with no object).
    pub marker: Option<String>,
    pub objects: u64,
    pub bytes: u64,
    /// Marker and objects, end to end.
    pub took: Duration,
    /// Per write, the marker's first: how long it took and whether it succeeded.
    pub uploads: Vec<(Duration, bool)>,
    pub result: Result<(), SinkError>,
    /// Not written, because the partition was revoked first: it never commits.
    pub abandoned: bool,
}

/// Steps 1 and 2: the window's marker, then its objects and their tables. Returns what it
/// wrote; the commit is the [`Committer`]'s, because it depends on the windows before this
/// one.
pub async fn write<K: Sink>(sink: &K, catalog: Option<&Catalog>, window: &Sealed) -> Written {
    let started = Instant::now();
    let mut written = Written::nothing(window);
    written.result = write_objects(sink, window, &mut written).await;
    if let (Ok(()), Some(catalog)) = (&written.result, catalog) {
        written.result = catalog.register(&window.objects).await;
    }
    written.took = started.elapsed();
    written
}

impl Written {
    /// `window` before anything of it is written.
    fn nothing(window: &Sealed) -> Self {
        Written {
            marker: None,
            objects: 0,
            bytes: 0,
            took: Duration::ZERO,
            uploads: Vec::with_capacity(window.objects.len()),
            result: Ok(()),
            abandoned: false,
            source: window.source.clone(),
            generation: window.generation,
            seq: window.seq,
            next_offset: window.next_offset,
        }
    }

    /// `window`, not written because its partition was revoked before its write began.
    pub fn abandoned(window: &Sealed) -> Self {
        Written {
            abandoned: true,
            ..Written::nothing(window)
        }
    }
}

async fn write_objects<K: Sink>(
    sink: &K,
    window: &Sealed,
    written: &mut Written,
) -> Result<(), SinkError> {
    let Some(first) = window.objects.first() else {
        return Ok(());
    };
    let marker = Marker {
        next_offset: window.next_offset,
        transform: window.transform.clone(),
        objects: window.objects.iter().map(|o| o.key.clone()).collect(),
    };
    let key = Marker::key(&window.source, window.first_offset);
    let upload = Instant::now();
    let put = sink
        .put(&Object {
            key: key.clone(),
            body: serde_json::to_vec(&marker).expect("a marker serializes"),
            meta: first.meta.clone(),
        })
        .await;
    written.uploads.push((upload.elapsed(), put.is_ok()));
    put?;
    written.marker = Some(key);
    for document in &window.documents {
        let upload = Instant::now();
        let put = write_document(sink, document).await;
        written.uploads.push((upload.elapsed(), put.is_ok()));
        put?;
    }
    for object in &window.objects {
        let upload = Instant::now();
        let put = sink.put(object).await;
        written.uploads.push((upload.elapsed(), put.is_ok()));
        put?;
        written.objects += 1;
        written.bytes += object.body.len() as u64;
    }
    Ok(())
}

/// Writes `document` where there is none; replaces one that is there only if the document
/// says so, and only if nobody wrote it since it was read.
async fn write_document<K: Sink>(sink: &K, document: &Document) -> Result<(), SinkError> {
    let body = || document.body.clone();
    match sink.put_if(&document.key, body(), Expect::Absent).await {
        Ok(()) => return Ok(()),
        Err(ConditionalError::Changed) => {}
        Err(ConditionalError::Sink(e)) => return Err(e),
    }
    let Some((there, tag)) = sink.get_versioned(&document.key).await? else {
        return Ok(());
    };
    if !(document.replaces)(&there, &document.body) {
        return Ok(());
    }
    match sink
        .put_if(&document.key, body(), Expect::Version(&tag))
        .await
    {
        Ok(()) | Err(ConditionalError::Changed) => Ok(()),
        Err(ConditionalError::Sink(e)) => Err(e),
    }
}

/// The end recorded by a marker at `offset` of `source`: a window that was being written
/// when the partition's last owner stopped. The marker fixes where the window ends; the
/// objects it lists are deleted first and the range written afresh by `digest`, because the
/// replay may not make the same keys: another transform version, format or source schema
/// version names them differently.
pub async fn replay_end<K: Sink>(
    sink: &K,
    source: &TopicPartition,
    offset: i64,
    digest: &str,
) -> Result<Option<i64>, SinkError> {
    let Some(bytes) = sink.get(&Marker::key(source, offset)).await? else {
        return Ok(None);
    };
    match serde_json::from_slice::<Marker>(&bytes) {
        Ok(marker) => {
            if marker.transform != digest {
                tracing::info!(topic = %source.topic, partition = source.partition, offset,
                    "replacing a partial window of another transform version");
            }
            for key in &marker.objects {
                sink.delete(key).await?;
            }
            Ok(Some(marker.next_offset))
        }
        Err(e) => {
            tracing::warn!(topic = %source.topic, partition = source.partition,
                "ignoring an unreadable window marker: {e}");
            Ok(None)
        }
    }
}

/// Step 3's bookkeeping: windows finish out of order (several are written at once), but a
/// partition's offset moves only past windows whose predecessors are all durable.
#[derive(Debug, Default)]
pub struct Committer {
    partitions: HashMap<TopicPartition, Pending>,
}

#[derive(Debug, Default)]
struct Pending {
    generation: u64,
    next_seq: u64,
    done: BTreeMap<u64, Written>,
}

/// A partition's offset to commit, and the windows that got it there.
#[derive(Debug)]
pub struct Commit {
    pub source: TopicPartition,
    pub next_offset: i64,
    pub windows: Vec<Written>,
}

impl Commit {
    /// Step 4, once the offset is committed: the markers to remove, each with the offset
    /// after its window.
    pub fn markers(&self) -> impl Iterator<Item = (i64, &str)> {
        self.windows
            .iter()
            .filter_map(|w| Some((w.next_offset, w.marker.as_deref()?)))
    }
}

impl Committer {
    /// `source` is owned from now on under `generation`; its windows count from 0.
    pub fn assigned(&mut self, source: TopicPartition, generation: u64) {
        self.partitions.insert(
            source,
            Pending {
                generation,
                ..Pending::default()
            },
        );
    }

    /// `source` is no longer owned: windows still being written for it will not commit
    /// (their markers stay, for the next owner to replay).
    pub fn revoked(&mut self, source: &TopicPartition) {
        self.partitions.remove(source);
    }

    /// Records a durable window. One of an earlier ownership, or abandoned, is dropped and
    /// returned: its partition's offset never moves past it.
    pub fn written(&mut self, window: Written) -> Option<Written> {
        match self.partitions.get_mut(&window.source) {
            Some(pending) if pending.generation == window.generation && !window.abandoned => {
                pending.done.insert(window.seq, window);
                None
            }
            _ => Some(window),
        }
    }

    /// Every partition whose next windows in order are durable: the offset to commit.
    pub fn ready(&mut self) -> Vec<Commit> {
        let mut commits = Vec::new();
        for (source, pending) in &mut self.partitions {
            let mut windows = Vec::new();
            while let Some(window) = pending.done.remove(&pending.next_seq) {
                pending.next_seq += 1;
                windows.push(window);
            }
            if let Some(last) = windows.last() {
                commits.push(Commit {
                    source: source.clone(),
                    next_offset: last.next_offset,
                    windows,
                });
            }
        }
        commits.sort_by(|a, b| a.source.cmp(&b.source));
        commits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(partition: i32) -> TopicPartition {
        TopicPartition {
            topic: "t".into(),
            partition,
        }
    }

    fn written(partition: i32, generation: u64, seq: u64, next_offset: i64) -> Written {
        Written {
            source: tp(partition),
            generation,
            seq,
            next_offset,
            marker: Some(format!("m{partition}-{seq}")),
            objects: 1,
            bytes: 1,
            took: Duration::ZERO,
            uploads: Vec::new(),
            result: Ok(()),
            abandoned: false,
        }
    }

    #[test]
    fn offsets_move_only_past_windows_whose_predecessors_are_durable() {
        let mut committer = Committer::default();
        committer.assigned(tp(0), 1);
        committer.assigned(tp(1), 2);
        // Partition 0's second and third windows finish before its first.
        assert!(committer.written(written(0, 1, 1, 200)).is_none());
        assert!(committer.written(written(0, 1, 2, 300)).is_none());
        assert!(committer.written(written(1, 2, 0, 50)).is_none());
        let commits = committer.ready();
        assert_eq!(commits.len(), 1);
        assert_eq!(
            (commits[0].source.partition, commits[0].next_offset),
            (1, 50)
        );
        assert!(committer.ready().is_empty());
        // The first arrives: all three commit at once, markers in window order.
        assert!(committer.written(written(0, 1, 0, 100)).is_none());
        let commits = committer.ready();
        assert_eq!(commits[0].next_offset, 300);
        assert_eq!(
            commits[0].markers().collect::<Vec<_>>(),
            [(100, "m0-0"), (200, "m0-1"), (300, "m0-2")]
        );
    }

    #[test]
    fn windows_of_an_earlier_ownership_never_commit() {
        let mut committer = Committer::default();
        committer.assigned(tp(0), 1);
        committer.revoked(&tp(0));
        assert!(committer.written(written(0, 1, 0, 100)).is_some());
        committer.assigned(tp(0), 2);
        assert!(committer.written(written(0, 1, 0, 100)).is_some());
        assert!(committer.ready().is_empty());
        assert!(committer.written(written(0, 2, 0, 40)).is_none());
        assert_eq!(committer.ready()[0].next_offset, 40);
    }

    #[test]
    fn an_abandoned_window_never_commits_nor_lets_later_ones() {
        let mut committer = Committer::default();
        committer.assigned(tp(0), 1);
        let abandoned = Written {
            abandoned: true,
            ..written(0, 1, 0, 100)
        };
        assert!(committer.written(abandoned).is_some());
        assert!(committer.written(written(0, 1, 1, 200)).is_none());
        assert!(committer.ready().is_empty());
    }
}
