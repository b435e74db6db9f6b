//! Checks a lake against the offsets its pipeline committed (`wrt verify`): every committed
//! offset must be covered by exactly one window of a known transform version.
//!
//! Coverage is per window, not per object: a window writes one object per destination and
//! path (and one of dead letters), all over the same offsets, and a window whose records
//! made nothing writes no object at all. So every object records its window
//! ([`WindowSpan`]): where the window starts and ends, how many objects it wrote, and where
//! the records stop being accounted for by earlier windows (`from`, which reaches back over
//! windows that wrote nothing). A partition is covered when its windows' `[from, next)`
//! ranges follow each other without hole or overlap up to the committed offset.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use serde::Serialize;

use crate::model::{ObjectMeta, TopicPartition, path_segment};
use crate::pipeline::encode::DEAD_LETTER_PREFIX;
use crate::pipeline::sink::{Sink, SinkError};

/// Where window markers live (`pipeline::commit`): windows being written, not yet committed.
const MARKERS: &str = "_wrt/windows/";
/// The runtime's own keys (markers, the registry): not data.
const INTERNAL: &str = "_wrt/";
/// Metadata reads in flight at once.
const CONCURRENCY: usize = 32;

/// A data object and what its metadata says (`None`: missing or unreadable).
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub key: String,
    pub meta: Option<ObjectMeta>,
}

/// What the lake holds, as read by [`read`].
#[derive(Debug, Default)]
pub struct Lake {
    pub objects: Vec<Found>,
    /// Markers of windows being written (or left by a host that stopped mid-window).
    pub markers: Vec<String>,
    /// Dead letters by `stage/kind` of their reason.
    pub dead_letters: BTreeMap<String, u64>,
}

/// Reads every data object's metadata and counts the dead letters. `progress` is told how
/// many objects there are, then each one read.
pub async fn read<K>(sink: &K, progress: &dyn Fn(Progress)) -> Result<Lake, SinkError>
where
    K: Sink + Clone + Send + Sync + 'static,
{
    let mut lake = Lake::default();
    let mut data = Vec::new();
    for key in sink.list("").await? {
        if key.starts_with(MARKERS) {
            lake.markers.push(key);
        } else if !key.starts_with(INTERNAL)
            && (key.ends_with(".jsonl.gz") || key.ends_with(".parquet"))
        {
            data.push(key);
        }
    }
    progress(Progress::Total(data.len() as u64));
    let mut tasks = tokio::task::JoinSet::new();
    let mut keys = data.into_iter();
    loop {
        while tasks.len() < CONCURRENCY {
            let Some(key) = keys.next() else { break };
            let sink = sink.clone();
            tasks.spawn(async move {
                let meta = sink.metadata(&key).await?;
                let reasons = if key.starts_with(&format!("{DEAD_LETTER_PREFIX}/")) {
                    match sink.get(&key).await? {
                        Some(body) => dead_letter_reasons(&body),
                        None => Vec::new(),
                    }
                } else {
                    Vec::new()
                };
                Ok::<_, SinkError>((key, meta, reasons))
            });
        }
        let Some(done) = tasks.join_next().await else {
            break;
        };
        let (key, meta, reasons) = done.expect("reading metadata does not panic")?;
        for reason in reasons {
            *lake.dead_letters.entry(reason).or_default() += 1;
        }
        // Gone between the listing and the read: deleted meanwhile, so not in the lake.
        if let Some(pairs) = meta {
            lake.objects.push(Found {
                meta: ObjectMeta::from_pairs(&pairs),
                key,
            });
        }
        progress(Progress::Read);
    }
    lake.objects.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(lake)
}

/// What [`read`] reports as it goes.
#[derive(Debug, Clone, Copy)]
pub enum Progress {
    Total(u64),
    Read,
}

/// `stage/kind` of each dead letter in a gzipped JSON Lines body (`unreadable` for a line
/// that is not one).
fn dead_letter_reasons(body: &[u8]) -> Vec<String> {
    let mut text = String::new();
    if flate2::read::GzDecoder::new(body)
        .read_to_string(&mut text)
        .is_err()
    {
        return vec!["unreadable".into()];
    }
    text.lines()
        .map(|line| {
            let line: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
            let part = |name: &str| line["reason"][name].as_str().map(String::from);
            match (part("stage"), part("kind")) {
                (Some(stage), Some(kind)) => format!("{stage}/{kind}"),
                _ => "unreadable".into(),
            }
        })
        .collect()
}

/// What is wrong, with the keys that show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Problem {
    /// Offsets `[from, to)` are committed (or lie between windows) but no window covers them.
    Gap {
        topic: String,
        partition: i32,
        from: i64,
        to: i64,
        why: String,
        keys: Vec<String>,
    },
    /// Offsets `[from, to)` are covered more than once.
    Overlap {
        topic: String,
        partition: i32,
        from: i64,
        to: i64,
        why: String,
        keys: Vec<String>,
    },
    /// Objects made by a transform version the pipeline never ran.
    UnknownVersion {
        transform: String,
        keys: Vec<String>,
    },
    /// An object without readable `wrt-*` metadata: not written by this wrt.
    NoMetadata { key: String },
}

/// One partition's coverage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionReport {
    pub topic: String,
    pub partition: i32,
    pub windows: u64,
    pub objects: u64,
    /// The first offset the lake accounts for and the offset after the last one.
    pub covered: Option<(i64, i64)>,
    /// The group's committed offset, when there is a group and it committed.
    pub committed: Option<i64>,
}

/// The verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// True when the lake covers every committed offset exactly once.
    pub ok: bool,
    pub objects: u64,
    pub partitions: Vec<PartitionReport>,
    pub problems: Vec<Problem>,
    /// Dead letters by `stage/kind` of their reason.
    pub dead_letters: BTreeMap<String, u64>,
    /// Markers of windows being written, not yet committed.
    pub in_flight: Vec<String>,
    /// Offsets between windows that hold no record a consumer reads (Kafka transaction
    /// markers, aborted records): not gaps. See [`excuse_unreadable_gaps`].
    pub unreadable_offsets: u64,
}

/// Drops each gap whose offsets hold no record a consumer can read, by `readable(partition,
/// (from, to))`: with transactional producers (Kafka Connect's exactly-once source) every
/// commit leaves a marker at an offset of its own, which a host starting there never sees.
/// A gap `readable` cannot judge (`None`: the offsets left the topic) stays.
pub fn excuse_unreadable_gaps(
    report: &mut Report,
    mut readable: impl FnMut(&TopicPartition, (i64, i64)) -> Option<bool>,
) {
    let mut excused = 0;
    report.problems.retain(|problem| {
        let Problem::Gap {
            topic,
            partition,
            from,
            to,
            ..
        } = problem
        else {
            return true;
        };
        let source = TopicPartition {
            topic: topic.clone(),
            partition: *partition,
        };
        let empty = readable(&source, (*from, *to)) == Some(false);
        if empty {
            excused += (to - from) as u64;
        }
        !empty
    });
    report.unreadable_offsets += excused;
    report.ok = report.problems.is_empty();
}

/// A window as its objects describe it.
#[derive(Debug)]
struct Window<'a> {
    meta: &'a ObjectMeta,
    keys: Vec<String>,
}

/// The window a key names: `<topic>+<partition>+<first offset>+<digest12>.jsonl.gz`, or
/// `….<digest12>.<schema>.parquet`.
fn named_window(key: &str) -> Option<(&str, i32, i64, &str)> {
    let name = key.rsplit('/').next()?;
    let file = match name.strip_suffix(".parquet") {
        Some(versioned) => versioned.rsplit_once('.')?.0,
        None => name.strip_suffix(".jsonl.gz")?,
    };
    let mut parts = file.rsplitn(4, '+');
    let digest = parts.next()?;
    let first = parts.next()?.parse().ok()?;
    let partition = parts.next()?.parse().ok()?;
    Some((parts.next()?, partition, first, digest))
}

/// Whether `key` names the window and version `meta` describes; a copy under another
/// window's or version's key does not.
fn key_matches(key: &str, meta: &ObjectMeta) -> bool {
    let digest12 = &meta.transform[..meta.transform.len().min(12)];
    named_window(key).is_some_and(|(topic, partition, first, digest)| {
        topic == path_segment(&meta.topic)
            && partition == meta.partition
            && first == meta.window.first_offset
            && digest == digest12
    })
}

/// Checks `lake` against the `committed` offsets (empty without a consumer group: then only
/// the windows' own consistency is checked) and the transform versions in `known`.
pub fn check(
    lake: &Lake,
    known: &BTreeSet<String>,
    committed: &BTreeMap<TopicPartition, i64>,
) -> Report {
    let mut problems = Vec::new();
    // Windows by partition, then by (first offset, version).
    let mut windows: BTreeMap<TopicPartition, BTreeMap<(i64, &str), Window<'_>>> = BTreeMap::new();
    for found in &lake.objects {
        let Some(meta) = &found.meta else {
            problems.push(Problem::NoMetadata {
                key: found.key.clone(),
            });
            continue;
        };
        let source = TopicPartition {
            topic: meta.topic.clone(),
            partition: meta.partition,
        };
        if !key_matches(&found.key, meta) {
            problems.push(Problem::Overlap {
                topic: meta.topic.clone(),
                partition: meta.partition,
                from: meta.window.first_offset,
                to: meta.window.next_offset,
                why: format!(
                    "the key names another window or version than the object holds (window \
                     {} of {}): a copy",
                    meta.window.first_offset,
                    &meta.transform[..meta.transform.len().min(12)]
                ),
                keys: vec![found.key.clone()],
            });
            continue;
        }
        windows
            .entry(source)
            .or_default()
            .entry((meta.window.first_offset, meta.transform.as_str()))
            .or_insert_with(|| Window {
                meta,
                keys: Vec::new(),
            })
            .keys
            .push(found.key.clone());
    }

    let mut unknown: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut partitions = Vec::new();
    let sources: BTreeSet<&TopicPartition> = windows.keys().chain(committed.keys()).collect();
    for source in sources {
        let committed = committed.get(source).copied();
        let mut list: Vec<&Window<'_>> = windows
            .get(source)
            .into_iter()
            .flat_map(|w| w.values())
            .collect();
        list.sort_by_key(|w| (w.meta.window.from, w.meta.window.first_offset));
        let (topic, partition) = (source.topic.clone(), source.partition);
        let gap = |from, to, why: String, keys: Vec<String>| Problem::Gap {
            topic: topic.clone(),
            partition,
            from,
            to,
            why,
            keys,
        };
        let overlap = |from, to, why: String, keys: Vec<String>| Problem::Overlap {
            topic: topic.clone(),
            partition,
            from,
            to,
            why,
            keys,
        };
        let mut end: Option<(i64, &Window<'_>)> = None;
        for window in &list {
            let span = window.meta.window;
            if !known.contains(&window.meta.transform) {
                unknown
                    .entry(&window.meta.transform)
                    .or_default()
                    .extend(window.keys.iter().cloned());
            }
            let found = window.keys.len() as u64;
            if found != span.objects {
                let why = format!(
                    "the window wrote {} objects, {found} are here",
                    span.objects
                );
                problems.push(if found < span.objects {
                    gap(
                        span.first_offset,
                        span.next_offset,
                        why,
                        window.keys.clone(),
                    )
                } else {
                    overlap(
                        span.first_offset,
                        span.next_offset,
                        why,
                        window.keys.clone(),
                    )
                });
            }
            if let Some((covered_to, before)) = end {
                let keys = || [before.keys.clone(), window.keys.clone()].concat();
                if span.from > covered_to {
                    let why = "no window covers these offsets".to_string();
                    problems.push(gap(covered_to, span.from, why, keys()));
                } else if span.from < covered_to {
                    let why = "two windows cover these offsets".to_string();
                    let to = covered_to.min(span.next_offset);
                    problems.push(overlap(span.from, to, why, keys()));
                }
            }
            if end.is_none_or(|(covered_to, _)| span.next_offset > covered_to) {
                end = Some((span.next_offset, window));
            }
        }
        let covered = list
            .first()
            .zip(end)
            .map(|(first, (to, _))| (first.meta.window.from, to));
        if let (Some((_, to)), Some(committed)) = (covered, committed)
            && to < committed
        {
            let why = "committed, but no window in the lake covers these offsets".to_string();
            let keys = end.map(|(_, w)| w.keys.clone()).unwrap_or_default();
            problems.push(gap(to, committed, why, keys));
        }
        partitions.push(PartitionReport {
            topic,
            partition,
            windows: list.len() as u64,
            objects: list.iter().map(|w| w.keys.len() as u64).sum(),
            covered,
            committed,
        });
    }
    for (transform, keys) in unknown {
        problems.push(Problem::UnknownVersion {
            transform: transform.to_string(),
            keys,
        });
    }
    Report {
        ok: problems.is_empty(),
        objects: lake.objects.len() as u64,
        partitions,
        problems,
        dead_letters: lake.dead_letters.clone(),
        in_flight: lake.markers.clone(),
        unreadable_offsets: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::WindowSpan;

    const V1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const V2: &str = "2222222222222222222222222222222222222222222222222222222222222222";

    /// An object of window `[first, next)` of partition 0, one of `objects`, by `version`.
    fn object(dest: &str, from: i64, first: i64, next: i64, objects: u64, version: &str) -> Found {
        Found {
            key: format!(
                "{dest}/dt=2024-05-01/t+0+{first:020}+{}.jsonl.gz",
                &version[..12]
            ),
            meta: Some(ObjectMeta {
                records: 1,
                topic: "t".into(),
                partition: 0,
                first_offset: first,
                last_offset: next - 1,
                transform: version.into(),
                window: WindowSpan {
                    from,
                    first_offset: first,
                    next_offset: next,
                    objects,
                },
            }),
        }
    }

    fn lake(objects: Vec<Found>) -> Lake {
        Lake {
            objects,
            ..Lake::default()
        }
    }

    fn committed(offset: i64) -> BTreeMap<TopicPartition, i64> {
        let source = TopicPartition {
            topic: "t".into(),
            partition: 0,
        };
        BTreeMap::from([(source, offset)])
    }

    fn known() -> BTreeSet<String> {
        BTreeSet::from([V1.to_string(), V2.to_string()])
    }

    fn kinds(report: &Report) -> Vec<&'static str> {
        report
            .problems
            .iter()
            .map(|p| match p {
                Problem::Gap { .. } => "gap",
                Problem::Overlap { .. } => "overlap",
                Problem::UnknownVersion { .. } => "unknown-version",
                Problem::NoMetadata { .. } => "no-metadata",
            })
            .collect()
    }

    /// Windows [0,10) with two objects, [10,20) and [20,30) with none (tombstones only),
    /// [30,40) reaching back to 10, then [40,50) of the next version.
    fn clean() -> Vec<Found> {
        vec![
            object("a", 0, 0, 10, 2, V1),
            object("b", 0, 0, 10, 2, V1),
            object("a", 10, 30, 40, 1, V1),
            object("a", 40, 40, 50, 1, V2),
        ]
    }

    #[test]
    fn windows_that_follow_each_other_cover_the_committed_offsets() {
        let report = check(&lake(clean()), &known(), &committed(50));
        assert!(report.ok, "{report:?}");
        assert_eq!(report.partitions[0].covered, Some((0, 50)));
        assert_eq!(report.partitions[0].windows, 3);
        // Windows past the commit are being written: not a problem.
        assert!(check(&lake(clean()), &known(), &committed(40)).ok);
        // Without a group, the windows are checked against each other only.
        assert!(check(&lake(clean()), &known(), &BTreeMap::new()).ok);
    }

    #[test]
    fn a_gap_of_offsets_no_consumer_reads_is_excused_and_counted() {
        // A new owner started at 11, past a transaction marker at 10: windows [0,10) then
        // [11,50), and a real gap [50,60) before the commit.
        let objects = vec![object("a", 0, 0, 10, 1, V1), object("a", 11, 11, 50, 1, V1)];
        let mut report = check(&lake(objects), &known(), &committed(60));
        assert_eq!(kinds(&report), ["gap", "gap"]);
        let mut asked = Vec::new();
        excuse_unreadable_gaps(&mut report, |_, span| {
            asked.push(span);
            match span {
                (10, 11) => Some(false),
                _ => Some(true),
            }
        });
        assert_eq!(asked, [(10, 11), (50, 60)]);
        assert_eq!(kinds(&report), ["gap"]);
        assert_eq!(report.unreadable_offsets, 1);
        assert!(!report.ok);
        // Offsets that left the topic cannot be judged: the gap stays.
        let objects = vec![object("a", 0, 0, 10, 1, V1)];
        let mut report = check(&lake(objects), &known(), &committed(20));
        excuse_unreadable_gaps(&mut report, |_, _| None);
        assert_eq!(kinds(&report), ["gap"]);
    }

    #[test]
    fn parquet_objects_of_two_schema_versions_make_one_window() {
        // Window [0,10): a JSON Lines object and two Parquet ones, one per source schema.
        let mut objects = Vec::new();
        for (ext, at) in [
            ("jsonl.gz", "a"),
            ("0123abcd.parquet", "b"),
            ("undeclared.parquet", "b"),
        ] {
            let mut found = object(at, 0, 0, 10, 3, V1);
            found.key = found.key.replace("jsonl.gz", ext);
            objects.push(found);
        }
        let report = check(&lake(objects.clone()), &known(), &committed(10));
        assert!(report.ok, "{report:?}");
        // One of them lost is a gap; one under another window's key is not this window's.
        let report = check(&lake(objects[..2].to_vec()), &known(), &committed(10));
        assert_eq!(kinds(&report), ["gap"]);
        assert!(key_matches(
            &objects[1].key,
            objects[1].meta.as_ref().unwrap()
        ));
        let elsewhere = objects[1]
            .key
            .replace("+00000000000000000000+", "+00000000000000000005+");
        assert!(!key_matches(&elsewhere, objects[1].meta.as_ref().unwrap()));
    }

    #[test]
    fn a_missing_object_is_a_gap() {
        // One of a window's two objects.
        let mut objects = clean();
        objects.remove(1);
        let report = check(&lake(objects), &known(), &committed(50));
        assert_eq!(kinds(&report), ["gap"]);
        let Problem::Gap { from, to, keys, .. } = &report.problems[0] else {
            unreachable!()
        };
        assert_eq!((*from, *to, keys.len()), (0, 10, 1));
        // A window's only object.
        let mut objects = clean();
        objects.remove(2);
        let report = check(&lake(objects), &known(), &committed(50));
        assert_eq!(kinds(&report), ["gap"]);
        assert!(matches!(
            report.problems[0],
            Problem::Gap {
                from: 10,
                to: 40,
                ..
            }
        ));
        // The last window: the committed offset is not covered.
        let mut objects = clean();
        objects.pop();
        let report = check(&lake(objects), &known(), &committed(50));
        assert!(matches!(
            report.problems[..],
            [Problem::Gap {
                from: 40,
                to: 50,
                ..
            }]
        ));
    }

    #[test]
    fn a_copy_under_another_key_or_a_second_version_is_an_overlap() {
        // The first window's object under the next window's key.
        let mut objects = clean();
        let mut copy = objects[0].clone();
        copy.key = objects[2].key.replace("a/", "c/");
        objects.push(copy);
        let report = check(&lake(objects), &known(), &committed(50));
        assert_eq!(kinds(&report), ["overlap"]);
        // The same window written again by another version, metadata and key alike.
        let mut objects = clean();
        objects.push(object("a", 40, 40, 50, 1, V1));
        let report = check(&lake(objects), &known(), &committed(50));
        assert_eq!(kinds(&report), ["overlap"]);
        let Problem::Overlap { from, to, keys, .. } = &report.problems[0] else {
            unreachable!()
        };
        assert_eq!((*from, *to, keys.len()), (40, 50, 2));
    }

    #[test]
    fn objects_of_a_version_never_run_are_named() {
        let mut objects = clean();
        objects.push(object("a", 50, 50, 60, 1, &"3".repeat(64)));
        let report = check(&lake(objects), &known(), &committed(60));
        assert_eq!(kinds(&report), ["unknown-version"]);
        objects = vec![Found {
            key: "a/x.jsonl.gz".into(),
            meta: None,
        }];
        assert_eq!(
            kinds(&check(&lake(objects), &known(), &committed(0))),
            ["no-metadata"]
        );
    }

    #[test]
    fn dead_letters_are_counted_by_reason() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(
            &mut gz,
            b"{\"reason\":{\"stage\":\"transform\",\"kind\":\"rejected\"}}\nnot json\n",
        )
        .unwrap();
        let body = gz.finish().unwrap();
        assert_eq!(
            dead_letter_reasons(&body),
            ["transform/rejected", "unreadable"]
        );
    }
}
