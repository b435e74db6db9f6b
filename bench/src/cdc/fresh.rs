//! Freshness: records produced at a steady rate with the wall clock as their commit time, and
//! the moment each output row's object first shows up in a bucket listing.

use std::collections::BTreeMap;
use std::io::Read;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use aws_sdk_s3::Client;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value as Json;
use wrt::model::KafkaRecord;

use crate::load::{client_config, topic};

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos() as i64
}

/// `value` with the commit time (`source.ts_*`) and processing time (`ts_*`) set to `ns`.
pub fn restamp(value: &[u8], ns: i64) -> anyhow::Result<Vec<u8>> {
    let mut message: Json = serde_json::from_slice(value)?;
    let payload = message
        .get_mut("payload")
        .and_then(Json::as_object_mut)
        .context("an envelope without payload")?;
    let stamp = |object: &mut serde_json::Map<String, Json>| {
        for (key, v) in [
            ("ts_ms", ns / 1_000_000),
            ("ts_us", ns / 1_000),
            ("ts_ns", ns),
        ] {
            if object.contains_key(key) {
                object.insert(key.into(), v.into());
            }
        }
    };
    stamp(payload);
    if let Some(source) = payload.get_mut("source").and_then(Json::as_object_mut) {
        stamp(source);
    }
    Ok(serde_json::to_vec(&message)?)
}

/// Produces `records` (table records only) into `prefix` topics at `rate` per second, each
/// stamped with the wall clock as it is sent. Returns how many carried a row.
pub async fn produce_paced(
    brokers: &str,
    prefix: &str,
    records: &[KafkaRecord],
    rate: u32,
) -> anyhow::Result<u64> {
    let producer: FutureProducer = client_config(brokers).set("linger.ms", "0").create()?;
    let started = Instant::now();
    let mut rows = 0;
    let mut pending = Vec::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        let due = started + Duration::from_secs_f64(i as f64 / f64::from(rate));
        tokio::time::sleep_until(due.into()).await;
        let ns = now_ns();
        let value = r.value.as_deref().map(|v| restamp(v, ns)).transpose()?;
        rows += u64::from(value.is_some());
        let topic = topic(prefix, &r.topic);
        let mut record = FutureRecord::<[u8], [u8]>::to(&topic)
            .partition(r.partition)
            .timestamp(ns / 1_000_000);
        if let Some(key) = &r.key {
            record = record.key(key.as_slice());
        }
        if let Some(value) = &value {
            record = record.payload(value.as_slice());
        }
        let delivery = producer
            .send_result(record)
            .map_err(|(e, _)| e)
            .context("queueing a paced record")?;
        pending.push(delivery);
    }
    for delivery in pending {
        delivery
            .await
            .context("a paced record was not delivered")?
            .map_err(|(e, _)| e)?;
    }
    Ok(rows)
}

/// Objects under a prefix, with when this process first saw each in a listing.
pub struct Watcher {
    client: Client,
    bucket: String,
    prefix: String,
    seen: BTreeMap<String, i64>,
    rows: u64,
    /// Milliseconds from commit time to first sight, one per output row.
    pub latencies_ms: Vec<f64>,
}

impl Watcher {
    pub fn new(client: Client, bucket: &str, prefix: &str) -> Self {
        Watcher {
            client,
            bucket: bucket.into(),
            prefix: prefix.into(),
            seen: BTreeMap::new(),
            rows: 0,
            latencies_ms: Vec::new(),
        }
    }

    pub fn objects(&self) -> usize {
        self.seen.len()
    }

    /// Lists the prefix every 100 ms, reading each new data object, until `rows` rows are in
    /// or `timeout` passes.
    pub async fn watch(&mut self, rows: u64, timeout: Duration) -> anyhow::Result<u64> {
        let deadline = Instant::now() + timeout;
        while self.rows < rows && Instant::now() < deadline {
            self.poll().await?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(self.rows)
    }

    async fn poll(&mut self) -> anyhow::Result<()> {
        let seen_at = now_ns();
        let mut new = row_objects(&self.client, &self.bucket, &self.prefix).await?;
        new.retain(|key| !self.seen.contains_key(key));
        for key in &new {
            self.seen.insert(key.clone(), seen_at);
        }
        for key in new {
            let body = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(&key)
                .send()
                .await?
                .body
                .collect()
                .await?
                .into_bytes();
            for commit_ns in commit_times(&body)? {
                self.rows += 1;
                self.latencies_ms
                    .push((seen_at - commit_ns) as f64 / 1_000_000.0);
            }
        }
        Ok(())
    }
}

/// The keys of the row objects under `prefix`: not window markers, the registry, dead
/// letters or DDL rows, whose keys start with `_` below it.
pub async fn row_objects(s3: &Client, bucket: &str, prefix: &str) -> anyhow::Result<Vec<String>> {
    let mut pages = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    let mut keys = Vec::new();
    while let Some(page) = pages.next().await {
        for object in page?.contents() {
            let key = object.key().unwrap_or_default();
            if !key[prefix.len()..].starts_with('_') {
                keys.push(key.to_string());
            }
        }
    }
    Ok(keys)
}

/// `_commit_time` of every line of a gzipped JSON Lines object, in nanoseconds.
pub fn commit_times(gzipped: &[u8]) -> anyhow::Result<Vec<i64>> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(gzipped).read_to_string(&mut text)?;
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let row: Json = serde_json::from_str(line)?;
            let time = row
                .get("_commit_time")
                .and_then(Json::as_str)
                .context("a row without _commit_time")?;
            let parsed = chrono::DateTime::parse_from_rfc3339(time)?;
            parsed
                .timestamp_nanos_opt()
                .context("a commit time out of range")
        })
        .collect()
}

/// The `q` quantile (0..=1) of `values`, nearest rank.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn restamps_commit_and_processing_times() {
        let value = br#"{"schema":{},"payload":{"op":"c","ts_ms":1,"ts_us":1000,"source":{"ts_ms":1,"ts_ns":1000000,"db":"shop"}}}"#;
        let out: Json = serde_json::from_slice(&restamp(value, 5_000_000_123).unwrap()).unwrap();
        assert_eq!(out["payload"]["ts_ms"], 5_000);
        assert_eq!(out["payload"]["ts_us"], 5_000_000);
        assert_eq!(out["payload"]["source"]["ts_ns"], 5_000_000_123_i64);
        assert_eq!(out["payload"]["source"]["db"], "shop");
        assert!(out["payload"]["source"].get("ts_us").is_none());
    }

    #[test]
    fn reads_commit_times_of_an_object() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"{\"id\":1,\"_commit_time\":\"1970-01-01T00:00:01.5Z\"}\n{\"_commit_time\":\"1970-01-01T00:00:02Z\"}\n")
            .unwrap();
        assert_eq!(
            commit_times(&gz.finish().unwrap()).unwrap(),
            vec![1_500_000_000, 2_000_000_000]
        );
    }

    #[test]
    fn nearest_rank_quantiles() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&values, 0.5), Some(50.0));
        assert_eq!(quantile(&values, 0.99), Some(99.0));
        assert_eq!(quantile(&[7.0], 0.99), Some(7.0));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
