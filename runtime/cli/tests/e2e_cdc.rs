//! End to end on the real local stack (`tests/stack/up`): MariaDB → Debezium → Kafka →
//! `wrt run` with the PII guest → MinIO. Each test has its own database, topic prefix,
//! consumer group and bucket. The stack must be running; `.ci/test` starts it.
//!
//! The workload gives every change a unique `rev`, so each output row names the change it
//! came from: the tests assert every change landed exactly once, in per-key order, with
//! the exact transformed values.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn pipeline_toml(names: &Names, stack: &Stack, max_records: u64) -> String {
    pipeline_toml_as(names, stack, max_records, "jsonl")
}

fn pipeline_toml_as(names: &Names, stack: &Stack, max_records: u64, format: &str) -> String {
    Pipeline {
        batch: format!(
            "batch-size = 256\nmax-records = {max_records}\nmax-age-ms = 1000\nformat = \"{format}\""
        ),
        ..Pipeline::default()
    }
    .toml(names, stack)
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_changes_land_exactly_once() {
    let load = workload(300, 10_000, 7);
    let setup = setup("e2e_once", &load, |names, stack| {
        pipeline_toml(names, stack, 1_000)
    })
    .await;
    let mut wrt = Wrt::start(&setup.config, &setup.dir.path().join("wrt.log"));
    let started = Instant::now();
    apply_in_background(&setup, &load).join().unwrap();
    let want = setup
        .wait_for(&load.expected, &mut wrt, Duration::from_secs(240))
        .await;
    let elapsed = started.elapsed();
    let log = wrt.stop();
    println!(
        "e2e: {want} changes through MariaDB → Debezium → Kafka → wrt → MinIO in {:.1} s ({:.0} changes/s)",
        elapsed.as_secs_f64(),
        want as f64 / elapsed.as_secs_f64()
    );

    let lake = setup.lake().await;
    assert_exactly_once(&lake, &load.expected);
    assert!(
        lake.keys().any(|k| k.starts_with("_schema_changes/")),
        "the CREATE TABLE reached _schema_changes: {:?}",
        lake.keys().take(5).collect::<Vec<_>>()
    );
    assert!(
        !lake.keys().any(|k| k.starts_with("_dead_letter/")),
        "{log}"
    );
    assert!(
        !lake.keys().any(|k| k.starts_with("_wrt/")),
        "markers are removed after commit"
    );
    // `wrt verify` agrees: the group's committed offsets are covered exactly once.
    assert_verified(&setup.config);
    setup.stack.drop_connector(&setup.names.connector);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_while_uploading_loses_and_doubles_nothing() {
    sigkill_while_uploading("e2e_kill", "jsonl").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_while_uploading_parquet_loses_and_doubles_nothing() {
    sigkill_while_uploading("e2e_kill_parquet", "parquet").await;
}

/// Kills the host mid-upload until three kills have left a window half written, then checks
/// that a last run lands every change exactly once, with objects in `format`.
async fn sigkill_while_uploading(test: &str, format: &str) {
    let load = workload(300, 10_000, 11);
    // Small windows: many uploads, so a kill lands inside one.
    let setup = setup(test, &load, |names, stack| {
        pipeline_toml_as(names, stack, 100, format)
    })
    .await;
    let log = |n: usize| setup.dir.path().join(format!("wrt-{n}.log"));
    let writer = apply_in_background(&setup, &load);

    // Kill as soon as a window marker is visible (a window is being written), until a kill
    // leaves one behind: that run died between its marker and its commit.
    let mut interrupted = 0;
    for attempt in 0..20 {
        let wrt = Wrt::start(&setup.config, &log(attempt));
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline
            && keys(&setup.s3, &setup.names.bucket, "_wrt/windows/")
                .await
                .is_empty()
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        wrt.kill();
        if !keys(&setup.s3, &setup.names.bucket, "_wrt/windows/")
            .await
            .is_empty()
        {
            interrupted += 1;
            if interrupted == 3 {
                break;
            }
        }
    }
    assert!(interrupted > 0, "no kill landed inside a window write");
    writer.join().unwrap();

    let mut wrt = Wrt::start(&setup.config, &log(99));
    setup
        .wait_for(&load.expected, &mut wrt, Duration::from_secs(240))
        .await;
    wrt.stop();
    let lake = setup.lake().await;
    println!(
        "e2e ({format}): {interrupted} runs killed mid-upload; duplicates 0, losses 0 asserted next"
    );
    let data = |k: &String| k.starts_with("customers/");
    assert!(
        lake.keys()
            .filter(|k| data(k))
            .all(|k| k.ends_with(format.replace("jsonl", "jsonl.gz").as_str()))
    );
    assert_exactly_once(&lake, &load.expected);
    assert_verified(&setup.config);
    setup.stack.drop_connector(&setup.names.connector);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_poison_record_is_dead_lettered_and_the_pipeline_goes_on() {
    let load = workload(50, 200, 3);
    let setup = setup("e2e_poison", &load, |names, stack| {
        pipeline_toml(names, stack, 500)
    })
    .await;
    let mut wrt = Wrt::start(&setup.config, &setup.dir.path().join("wrt.log"));
    apply_in_background(&setup, &load).join().unwrap();

    // Straight into the table's topic, between real change events.
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &setup.stack.kafka)
        .create()
        .unwrap();
    producer
        .send(
            BaseRecord::to(&setup.names.topic())
                .partition(0)
                .key(r#"{"id":-1}"#)
                .payload("this is not a Debezium envelope"),
        )
        .unwrap();
    producer.flush(Duration::from_secs(10)).unwrap();
    // Changes after the poison must still land.
    let mut after = load.expected.clone();
    let late: Vec<String> = (900_001..=900_020).map(|id| insert(id, 0)).collect();
    for id in 900_001..=900_020 {
        after.insert(id, vec![("c", 0)]);
    }
    setup
        .stack
        .sql(&format!("USE {};\n{}", setup.names.database, late.concat()));

    setup
        .wait_for(&after, &mut wrt, Duration::from_secs(120))
        .await;
    wrt.stop();
    let lake = setup.lake().await;
    assert_exactly_once(&lake, &after);
    let dead: Vec<serde_json::Value> = lake
        .iter()
        .filter(|(k, _)| k.starts_with(&format!("_dead_letter/{}/", setup.names.topic())))
        .flat_map(|(_, lines)| lines.iter().map(|l| serde_json::from_str(l).unwrap()))
        .collect();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["reason"]["stage"], "decode");
    assert!(
        dead[0]["reason"]["message"]
            .as_str()
            .unwrap()
            .contains("not valid JSON")
    );
    assert_eq!(dead[0]["value"], "this is not a Debezium envelope");
    assert_eq!(dead[0]["source"]["partition"], 0);
    setup.stack.drop_connector(&setup.names.connector);
}

/// The S3 sink against MinIO: a large object goes up in parts, comes back byte for byte,
/// carries its offsets and transform digest as metadata, and markers read back and delete.
#[tokio::test(flavor = "multi_thread")]
async fn the_s3_sink_uploads_large_objects_in_parts_with_metadata() {
    use wrt::model::{Object, ObjectMeta, WindowSpan};
    use wrt::pipeline::sink::Sink;

    let stack = Stack::get();
    let names = Names::new("e2e_sink");
    let s3 = stack.s3_with_bucket(&names.bucket).await;
    let sink = wrt::pipeline::sink::s3::S3::new(&wrt::config::S3Sink {
        prefix: "lake/".into(),
        endpoint_url: Some(stack.minio.clone()),
        force_path_style: true,
        multipart_threshold_mb: 5,
        ..wrt::config::S3Sink::new(names.bucket.clone(), "us-east-1".into())
    })
    .await;
    sink.check().await.unwrap();

    let mut rng = fastrand::Rng::with_seed(1);
    let body: Vec<u8> = std::iter::repeat_with(|| rng.u8(..))
        .take(12 << 20)
        .collect();
    let object = Object {
        key: "t/dt=2024-05-01/t+0+00000000000000000042+abcdef012345.jsonl.gz".into(),
        body: body.clone(),
        meta: ObjectMeta {
            records: 3,
            topic: "t".into(),
            partition: 0,
            first_offset: 42,
            last_offset: 44,
            transform: "abcdef0123456789".into(),
            window: WindowSpan {
                from: 42,
                first_offset: 42,
                next_offset: 45,
                objects: 1,
            },
        },
    };
    sink.put(&object).await.unwrap();

    let head = s3
        .head_object()
        .bucket(&names.bucket)
        .key(format!("lake/{}", object.key))
        .send()
        .await
        .unwrap();
    let e_tag = head.e_tag().unwrap_or_default();
    assert!(
        e_tag.contains("-3"),
        "three parts of 5 MiB at most: {e_tag}"
    );
    let meta = head.metadata().unwrap();
    assert_eq!(meta["wrt-first-offset"], "42");
    assert_eq!(meta["wrt-last-offset"], "44");
    assert_eq!(meta["wrt-transform"], "abcdef0123456789");
    assert_eq!(sink.get(&object.key).await.unwrap(), Some(body));

    assert_eq!(sink.get("missing").await.unwrap(), None);
    sink.delete(&object.key).await.unwrap();
    assert_eq!(sink.get(&object.key).await.unwrap(), None);
}
