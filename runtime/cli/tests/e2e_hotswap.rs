//! Deploys, hot-swaps and the admin API on the real local stack (`tests/stack/up`):
//! MariaDB → Debezium → Kafka → `wrt run` taking its versions from the registry → MinIO.
//!
//! The transforms are the `tagger` test guests: every change becomes a row
//! `{id, rev, _op, _version}`, so the lake shows both that each change landed once and which
//! version wrote it.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use common::*;
use sha2::{Digest, Sha256};
use wrt_tests::guest;

const TOKEN: &str = "e2e-admin-token";

fn digest(wasm: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(wasm).unwrap()))
}

fn hotswap_toml(names: &Names, stack: &Stack, admin_port: u16) -> String {
    Pipeline {
        guest: "tagger_v1",
        config: String::new(),
        batch: "batch-size = 128\nmax-records = 400\nmax-age-ms = 1000".into(),
        sections: "[registry]\npoll-interval-ms = 500",
        admin: Some(admin_port),
        ..Pipeline::default()
    }
    .toml(names, stack)
}

/// The `wrt` command line, with MinIO's credentials and the given compile cache.
fn wrt_cli(args: &[&str], config: &Path, cache: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wrt"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env("AWS_ACCESS_KEY_ID", MINIO_USER)
        .env("AWS_SECRET_ACCESS_KEY", MINIO_PASSWORD)
        .env("WRT_CACHE_DIR", cache)
        .output()
        .expect("running wrt")
}

fn shared_cache() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("components")
}

fn deploy(wasm: &Path, config: &Path) -> Output {
    let wasm = wasm.to_str().unwrap();
    wrt_cli(&["deploy", wasm, "--by", "e2e"], config, &shared_cache())
}

fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Asks the host to look at the registry now, as an operator would after a deploy.
fn check_now(admin: &AdminApi) {
    let (code, body) = admin.post("/transforms/check", Some(TOKEN));
    assert_eq!(code, 202, "{body}");
}

/// Rows under `customers/` in the lake now.
/// Rows in the customers objects that version `digest` wrote (keys name its first 12 digits).
async fn customer_rows(s3: &Client, bucket: &str, digest: &str) -> usize {
    let written_by = format!("+{}.", &digest[..12]);
    objects(s3, bucket, "customers/")
        .await
        .iter()
        .filter(|(key, _)| key.contains(&written_by))
        .map(|(_, rows)| rows.len())
        .sum()
}

/// Each customers object: (partition, first offset, the digest its metadata names, the
/// versions its rows name).
async fn object_versions(
    s3: &Client,
    bucket: &str,
    lake: &BTreeMap<String, Vec<String>>,
) -> Vec<(i32, i64, String, Vec<String>)> {
    let mut out = Vec::new();
    for (key, lines) in lake.iter().filter(|(k, _)| k.starts_with("customers/")) {
        let head = s3
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap();
        let meta = head.metadata().unwrap();
        let mut versions: Vec<String> = lines
            .iter()
            .map(|l| {
                let row: serde_json::Value = serde_json::from_str(l).unwrap();
                row["_version"].as_str().unwrap().to_string()
            })
            .collect();
        versions.dedup();
        out.push((
            meta["wrt-partition"].parse().unwrap(),
            meta["wrt-first-offset"].parse().unwrap(),
            meta["wrt-transform"].clone(),
            versions,
        ));
    }
    out.sort();
    out
}

/// A pipeline for `test` whose host runs `tagger_v1`, deployed to its registry, with the
/// admin API.
async fn running_v1(test: &str, load: &Workload) -> (Setup, Wrt, AdminApi) {
    let port = free_port();
    let setup = setup(test, load, |names, stack| hotswap_toml(names, stack, port)).await;
    let v1 = guest("tagger_v1");
    assert_ok(&deploy(&v1, &setup.config), "deploying v1");
    let mut wrt = Wrt::start_with_env(
        &setup.config,
        &setup.dir.path().join("wrt.log"),
        &[("WRT_ADMIN_TOKEN", TOKEN)],
    );
    let admin = AdminApi::new(port);
    let d1 = digest(&v1);
    admin.wait_for("the host to run v1", &mut wrt, |s| s["transform"] == d1);
    (setup, wrt, admin)
}

#[tokio::test(flavor = "multi_thread")]
async fn versions_swap_under_load_and_every_change_lands_once_per_version() {
    let load = workload(200, 12_000, 21);
    let (setup, mut wrt, admin) = running_v1("e2e_swap", &load).await;
    let (v1, v2) = (guest("tagger_v1"), guest("tagger_v2"));
    let (d1, d2) = (digest(&v1), digest(&v2));
    // The workload in seven parts, applied in order: each part runs while a switch is made,
    // and the next starts once the switch is seen, so every version has changes to write
    // however fast the machine consumes them (with the whole workload in one go, a fast run
    // could consume it all before the first switch).
    let parts: Vec<&[String]> = load
        .streaming_sql
        .chunks(load.streaming_sql.len().div_ceil(7))
        .collect();
    let mut writer = apply_statements_in_background(&setup, parts[0]);

    // Deploy v2 and roll back to v1, three times, while the changes stream in; after each
    // switch wait for new rows written by the version switched to, so every version writes
    // objects (rows of any version would not do: the old version's windows sealed at the
    // switch land after it).
    let bucket = &setup.names.bucket;
    let mut under_load = 0;
    let mut next = 1;
    for round in 0..3 {
        for (wanted, step) in [(&d2, "deploy"), (&d1, "rollback")] {
            let before = customer_rows(&setup.s3, bucket, wanted).await;
            let out = if step == "deploy" {
                deploy(&v2, &setup.config)
            } else {
                wrt_cli(&["rollback", "--by", "e2e"], &setup.config, &shared_cache())
            };
            assert_ok(&out, &format!("{step} in round {round}"));
            check_now(&admin);
            admin.wait_for(&format!("{step} {round}"), &mut wrt, |s| {
                s["transform"] == *wanted
            });
            under_load += usize::from(!writer.is_finished());
            writer.join().unwrap();
            writer = apply_statements_in_background(&setup, parts[next]);
            next += 1;
            let deadline = Instant::now() + Duration::from_secs(60);
            while customer_rows(&setup.s3, bucket, wanted).await <= before {
                assert!(Instant::now() < deadline, "no rows after {step} {round}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    writer.join().unwrap();
    assert_eq!(next, parts.len(), "every part was applied");
    let want: usize = load.expected.values().map(Vec::len).sum();
    wait_for_rows(&setup.s3, bucket, want, Duration::from_secs(240), &mut wrt).await;
    // The last windows are committed after their objects are visible: wait until every
    // partition that has records is committed to its end. The stack's Connect writes in
    // transactions, so a partition ends with a commit marker no consumer receives, and
    // librdkafka's lag reads 1 there.
    let topic = setup.names.topic();
    admin.wait_for("the last commits", &mut wrt, |s| {
        let partitions = s["partitions"].as_array().unwrap();
        let table_partitions = partitions.iter().filter(|p| p["topic"] == topic.as_str());
        table_partitions.count() == 3
            && partitions
                .iter()
                .filter(|p| p["topic"] == topic.as_str() || !p["last_commit"].is_null())
                .all(|p| !p["last_commit"].is_null() && p["lag"].as_i64().is_some_and(|l| l <= 1))
    });
    let status = admin.status();
    let (code, metrics) = admin.get("/metrics").unwrap();
    assert_eq!(code, 200);
    let log = wrt.stop();
    let lake = setup.lake().await;

    // Every change exactly once, in per-key order.
    let rows = rows_by_id(&lake);
    assert_eq!(rows.len(), load.expected.len(), "rows of unknown ids");
    for (id, changes) in &load.expected {
        let got: Vec<(String, i64)> = rows[id]
            .iter()
            .map(|r| {
                (
                    r["_op"].as_str().unwrap().into(),
                    r["rev"].as_i64().unwrap(),
                )
            })
            .collect();
        let want: Vec<(String, i64)> = changes.iter().map(|(o, r)| (o.to_string(), *r)).collect();
        assert_eq!(got, want, "id {id}: changes lost, doubled or out of order");
    }

    // Each object is one version's, and its metadata names that version.
    let versions = object_versions(&setup.s3, bucket, &lake).await;
    for (partition, offset, meta_digest, in_rows) in &versions {
        let expected = if *meta_digest == d1 {
            "v1"
        } else {
            assert_eq!(
                *meta_digest, d2,
                "object {partition}+{offset}: unknown version"
            );
            "v2"
        };
        assert_eq!(
            in_rows,
            &[expected.to_string()],
            "object {partition}+{offset} mixes versions or is mislabelled"
        );
    }
    // On a partition, in offset order, the versions alternate as they were deployed.
    let most_runs = (0..3)
        .map(|partition| {
            let mut runs: Vec<&str> = Vec::new();
            for (.., in_rows) in versions.iter().filter(|v| v.0 == partition) {
                if runs.last() != Some(&in_rows[0].as_str()) {
                    runs.push(&in_rows[0]);
                }
            }
            runs.len()
        })
        .max()
        .unwrap();
    assert!(
        most_runs >= 3,
        "no partition shows v1, v2, v1: {versions:?}"
    );
    let v2_objects = versions.iter().filter(|v| v.2 == d2).count();
    assert!(v2_objects > 0, "v2 wrote no object");
    assert!(
        versions.iter().filter(|v| v.2 == d1).count() > 0,
        "v1 wrote no object"
    );

    // The switches, and how long each held the data path.
    let swaps = status["swaps"].as_array().unwrap();
    assert_eq!(swaps.len(), 6, "{status}");
    let mut pauses: Vec<f64> = swaps
        .iter()
        .map(|s| s["pause_ms"].as_f64().unwrap())
        .collect();
    pauses.sort_by(f64::total_cmp);
    println!(
        "e2e hot-swap: {want} changes, 6 switches ({under_load} while the SQL workload ran), \
         {} objects ({v2_objects} by v2); pause at the switch p50 {:.1} ms, max {:.1} ms: {pauses:?}",
        versions.len(),
        (pauses[2] + pauses[3]) / 2.0,
        pauses[5]
    );
    assert!(under_load >= 1, "no switch happened under load");
    assert!(!log.contains("refusing"), "{log}");

    // /metrics parses, and its counters match what the test produced.
    let scrape = parse_metrics(&metrics);
    let pipeline = setup.names.connector.as_str();
    let p = ("pipeline", pipeline);
    let schema_rows: usize = lake
        .iter()
        .filter(|(k, _)| k.starts_with("_schema_changes/"))
        .map(|(_, lines)| lines.len())
        .sum();
    let deletes = load
        .expected
        .values()
        .flatten()
        .filter(|(op, _)| *op == "d")
        .count();
    let objects_written = lake.keys().filter(|k| !k.starts_with("_wrt/")).count();
    // Each window that wrote objects wrote its marker first: `topic+partition+first-offset`
    // in the objects' names tells the windows apart.
    let windows_written = lake
        .keys()
        .filter(|k| !k.starts_with("_wrt/"))
        .filter_map(|k| {
            k.rsplit('/')
                .next()?
                .rsplit_once('+')
                .map(|(window, _)| window)
        })
        .collect::<BTreeSet<_>>()
        .len();
    let m = |name: &str, labels: &[(&str, &str)]| sample(&scrape, name, labels);
    assert_eq!(
        m("wrt_events_out_total", &[p, ("destination", "customers")]),
        want as f64
    );
    assert_eq!(
        m(
            "wrt_events_out_total",
            &[p, ("destination", "_schema_changes")]
        ),
        schema_rows as f64
    );
    // Every Kafka record: a row change, a tombstone after each delete, or a DDL event.
    assert_eq!(
        m("wrt_events_in_total", &[p]),
        (want + deletes + schema_rows) as f64
    );
    assert_eq!(m("wrt_dead_letters_total", &[p]), 0.0);
    assert_eq!(m("wrt_transform_swaps_total", &[p]), 6.0);
    assert_eq!(m("wrt_transform_swaps_refused_total", &[p]), 0.0);
    assert_eq!(
        m("wrt_upload_seconds_count", &[p]),
        (objects_written + windows_written) as f64
    );
    assert_eq!(m("wrt_upload_errors_total", &[p]), 0.0);
    assert_eq!(m("wrt_transform_swap_pause_seconds_count", &[p]), 6.0);
    assert!(
        scrape
            .samples
            .iter()
            .any(|s| s.metric == "wrt_consumer_lag" && s.labels.get("topic") == Some(&topic)),
        "consumer lag per partition is reported"
    );
    // /status: the partitions owned, each with its last commit.
    let partitions = status["partitions"].as_array().unwrap();
    assert!(
        partitions
            .iter()
            .any(|p| p["topic"] == topic.as_str() && p["last_commit"].as_i64() > Some(0)),
        "{status}"
    );
    setup.stack.drop_connector(&setup.names.connector);
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_versions_are_refused_by_deploy_and_by_the_host() {
    let load = workload(20, 200, 5);
    let port = free_port();
    let setup = setup("e2e_refuse", &load, |names, stack| {
        hotswap_toml(names, stack, port)
    })
    .await;
    let v1 = guest("tagger_v1");
    let d1 = digest(&v1);
    let broken = [
        (
            guest("not-a-transform"),
            "does not implement the `wrt:transform/transformer` world",
        ),
        (guest("broken_init"), "refused to initialise"),
    ];

    // `wrt deploy` refuses both and ships nothing.
    assert_ok(&deploy(&v1, &setup.config), "deploying v1");
    for (wasm, why) in &broken {
        let out = deploy(wasm, &setup.config);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{} was deployed", wasm.display());
        assert!(stderr.contains("nothing was shipped"), "{stderr}");
        assert!(stderr.contains(why), "{stderr}");
    }
    let history = wrt_cli(&["transforms", "history"], &setup.config, &shared_cache());
    assert_ok(&history, "transforms history");
    assert_eq!(String::from_utf8_lossy(&history.stdout).lines().count(), 1);

    let mut wrt = Wrt::start_with_env(
        &setup.config,
        &setup.dir.path().join("wrt.log"),
        &[("WRT_ADMIN_TOKEN", TOKEN)],
    );
    let admin = AdminApi::new(port);
    admin.wait_for("the host to run v1", &mut wrt, |s| s["transform"] == d1);
    let (code, _) = admin.post("/transforms/check", None);
    assert_eq!(code, 401, "state-changing calls need the token");
    let (code, _) = admin.post("/transforms/check", Some("wrong"));
    assert_eq!(code, 401);
    assert_eq!(admin.get("/healthz").unwrap().0, 200);
    apply_in_background(&setup, &load).join().unwrap();

    // Behind the CLI's back: each broken component stored and the pointer moved by hand.
    for (n, (wasm, why)) in broken.iter().enumerate() {
        let bytes = std::fs::read(wasm).unwrap();
        let bad = digest(wasm);
        let prefix = format!("_wrt/transforms/{}", setup.names.connector);
        let put = |key: String, body: Vec<u8>| {
            setup
                .s3
                .put_object()
                .bucket(&setup.names.bucket)
                .key(key)
                .body(body.into())
                .send()
        };
        put(format!("{prefix}/{bad}.wasm"), bytes).await.unwrap();
        let pointer = serde_json::json!({
            "pipeline": setup.names.connector,
            "current": bad,
            "history": [{"digest": bad, "action": "deploy", "by": "by hand",
                         "at": "2026-11-25T00:00:00Z", "previous": d1}],
        });
        put(
            format!("{prefix}/current.json"),
            pointer.to_string().into_bytes(),
        )
        .await
        .unwrap();
        check_now(&admin);
        admin.wait_for("the refusal", &mut wrt, |s| {
            s["refused"].as_array().is_some_and(|r| r.len() == n + 1)
        });
        let status = admin.status();
        let refusal = &status["refused"][n];
        assert_eq!(refusal["digest"], bad);
        assert!(
            refusal["reason"].as_str().unwrap().contains(why),
            "{refusal}"
        );
        assert_eq!(status["transform"], d1, "the old version keeps running");
    }

    // Changes made after the refusals still land, written by v1.
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
    let (_, metrics) = admin.get("/metrics").unwrap();
    let log = wrt.stop();
    let rows = rows_by_id(&setup.lake().await);
    for id in 900_001..=900_020 {
        assert_eq!(rows[&id][0]["_version"], "v1", "{log}");
    }
    let scrape = parse_metrics(&metrics);
    let p = ("pipeline", setup.names.connector.as_str());
    assert_eq!(
        sample(&scrape, "wrt_transform_swaps_refused_total", &[p]),
        2.0
    );
    assert_eq!(sample(&scrape, "wrt_transform_swaps_total", &[p]), 0.0);
    setup.stack.drop_connector(&setup.names.connector);
}

#[tokio::test(flavor = "multi_thread")]
async fn of_two_concurrent_deploys_exactly_one_wins() {
    let stack = Stack::get();
    let names = Names::new("e2e_race");
    let s3 = stack.s3_with_bucket(&names.bucket).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pipeline.toml");
    std::fs::write(
        &config,
        format!(
            "name = \"race\"\n[source]\nkind = \"sample\"\n[transform]\npath = \"{}\"\n\
             [sink]\nkind = \"s3\"\nbucket = \"{}\"\nendpoint-url = \"{}\"\n\
             region = \"us-east-1\"\nforce-path-style = true\n",
            guest("tagger_v1").display(),
            names.bucket,
            stack.minio
        ),
    )
    .unwrap();
    let contenders = [guest("tagger_v2"), guest("pii_mask")];

    // Twice: racing to make the first version, and racing to replace one.
    for round in ["first deploy", "replacing v1"] {
        if round == "replacing v1" {
            assert_ok(&deploy(&guest("tagger_v1"), &config), "deploying v1");
        }
        // Each compiles from an empty cache, so both read the pointer before either writes.
        let caches = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let children: Vec<_> = contenders
            .iter()
            .zip(&caches)
            .map(|(wasm, cache)| {
                let config = config.clone();
                let (wasm, cache) = (wasm.to_str().unwrap().to_string(), cache.path().to_owned());
                std::thread::spawn(move || wrt_cli(&["deploy", &wasm], &config, &cache))
            })
            .collect();
        let outs: Vec<Output> = children.into_iter().map(|c| c.join().unwrap()).collect();
        let winners: Vec<usize> = (0..2).filter(|&i| outs[i].status.success()).collect();
        assert_eq!(winners.len(), 1, "{round}: {outs:?}");
        let loser = &outs[1 - winners[0]];
        let stderr = String::from_utf8_lossy(&loser.stderr);
        assert!(
            stderr.contains("conflict: another deploy moved pipeline `race`"),
            "{round}: {stderr}"
        );
        let pointer = s3
            .get_object()
            .bucket(&names.bucket)
            .key("_wrt/transforms/race/current.json")
            .send()
            .await
            .unwrap()
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes();
        let pointer: serde_json::Value = serde_json::from_slice(&pointer).unwrap();
        assert_eq!(
            pointer["current"],
            digest(&contenders[winners[0]]),
            "{round}"
        );
        // Reset for the next round.
        s3.delete_object()
            .bucket(&names.bucket)
            .key("_wrt/transforms/race/current.json")
            .send()
            .await
            .unwrap();
        println!(
            "e2e deploy race ({round}): the loser said: {}",
            stderr.trim()
        );
    }
}

/// The customer id a workload statement changes.
fn statement_id(sql: &str) -> i64 {
    let digits = match sql.split_once("WHERE id = ") {
        Some((_, rest)) => rest,
        None => sql.split_once("VALUES (").expect("an INSERT").1,
    };
    let end = digits.find(|c: char| !c.is_ascii_digit()).unwrap();
    digits[..end].parse().unwrap()
}

/// `wrt transforms diff --json` once every host's report covers `compared` events.
fn diff_when_compared(config: &Path, compared: u64) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = wrt_cli(&["transforms", "diff", "--json"], config, &shared_cache());
        assert_ok(&out, "wrt transforms diff");
        let diff: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        if diff["total"]["compared"] == compared {
            return diff;
        }
        assert!(
            Instant::now() < deadline,
            "the reports never covered {compared}: {diff}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `wrt deploy --shadow`: a fix of v1 (`_version` reads `fixed` for ids that are multiples
/// of 10) runs beside v1 on the live batches and is reported exactly on those rows, while the
/// lake gets v1 only; `--promote` switches to it with nothing lost or doubled; a shadow that
/// traps on every event leaves the live output as it was.
#[tokio::test(flavor = "multi_thread")]
async fn a_shadow_is_compared_never_written_then_promoted() {
    let load = workload(100, 1_500, 47);
    let (setup, mut wrt, admin) = running_v1("e2e_shadow", &load).await;
    let (fix, trap) = (guest("tagger_fix"), guest("tagger_trap"));
    let (d_fix, d_trap) = (digest(&fix), digest(&trap));
    let bucket = &setup.names.bucket;
    wait_for_rows(&setup.s3, bucket, 100, Duration::from_secs(60), &mut wrt).await;

    let shadow = |wasm: &Path| {
        let wasm = wasm.to_str().unwrap();
        wrt_cli(
            &["deploy", wasm, "--shadow", "--by", "e2e"],
            &setup.config,
            &shared_cache(),
        )
    };
    assert_ok(&shadow(&fix), "deploying the fix as the shadow");
    check_now(&admin);
    admin.wait_for("the shadow to run", &mut wrt, |s| {
        s["shadow"]["digest"] == d_fix
    });

    // A third of the changes under the shadow: each compared, those of ids ending in 0
    // different, nothing of the shadow's in the lake.
    let thirds: Vec<&[String]> = load.streaming_sql.chunks(500).collect();
    let apply = |part: &[String]| {
        let sql = format!("USE {};\n{}", setup.names.database, part.concat());
        setup.stack.sql(&sql)
    };
    apply(thirds[0]);
    let changes = thirds[0].len() as u64;
    let fixed = thirds[0]
        .iter()
        .filter(|s| statement_id(s) % 10 == 0)
        .count() as u64;
    assert!(
        fixed > 10,
        "the workload changes only {fixed} ids ending in 0"
    );
    let diff = diff_when_compared(&setup.config, changes);
    let total = &diff["total"];
    assert_eq!(total["different"], fixed, "{diff}");
    assert_eq!(total["identical"], changes - fixed, "{diff}");
    assert_eq!(total["shadow_only_dead_letters"], 0, "{diff}");
    assert_eq!(total["current_only_dead_letters"], 0, "{diff}");
    assert_eq!(diff["hosts"].as_object().unwrap().len(), 1, "{diff}");
    let first = total["samples"][0]["diff"].as_str().unwrap();
    assert!(
        first.contains("-  _version: \"v1\"\n+  _version: \"fixed\""),
        "{first}"
    );
    let table = wrt_cli(
        &["transforms", "diff", "--samples", "1"],
        &setup.config,
        &shared_cache(),
    );
    assert_ok(&table, "wrt transforms diff");
    let table = String::from_utf8_lossy(&table.stdout);
    println!("{table}");
    let total_line = table.lines().find(|l| l.starts_with("total")).unwrap();
    let numbers: Vec<&str> = total_line.split_whitespace().collect();
    assert_eq!(
        numbers[1..6],
        [changes, changes - fixed, fixed, 0, 0].map(|n| n.to_string())
    );
    let status = admin.status();
    assert_eq!(status["shadow"]["different"], fixed, "{status}");
    let metrics = parse_metrics(&admin.get("/metrics").unwrap().1);
    let share = sample(&metrics, "wrt_shadow_cpu_share", &[]);
    assert!(share > 0.0 && share < 1.0, "shadow CPU share {share}");
    let first_third = expected_upto(&load, thirds[0].len());
    wait_for_rows(
        &setup.s3,
        bucket,
        count(&first_third),
        Duration::from_secs(60),
        &mut wrt,
    )
    .await;
    let rows = assert_changes_once(&setup.lake().await, &first_third);
    assert!(rows.values().flatten().all(|r| r["_version"] == "v1"));

    // Promoted, the fix writes from its switch on.
    let promote = wrt_cli(
        &["deploy", "--promote", "--by", "e2e"],
        &setup.config,
        &shared_cache(),
    );
    assert_ok(&promote, "promoting the shadow");
    check_now(&admin);
    admin.wait_for("the promotion", &mut wrt, |s| {
        s["transform"] == d_fix && s["shadow"].is_null()
    });
    apply(thirds[1]);
    let two_thirds = expected_upto(&load, thirds[0].len() + thirds[1].len());
    wait_for_rows(
        &setup.s3,
        bucket,
        count(&two_thirds),
        Duration::from_secs(60),
        &mut wrt,
    )
    .await;

    // A shadow that traps on every event: every change still lands once.
    assert_ok(&shadow(&trap), "deploying the trapping shadow");
    check_now(&admin);
    admin.wait_for("the trapping shadow", &mut wrt, |s| {
        s["shadow"]["digest"] == d_trap
    });
    apply(thirds[2]);
    let diff = diff_when_compared(&setup.config, thirds[2].len() as u64);
    assert_eq!(
        diff["total"]["shadow_only_dead_letters"],
        thirds[2].len() as u64,
        "{diff}"
    );
    let want = count(&load.expected);
    wait_for_rows(&setup.s3, bucket, want, Duration::from_secs(120), &mut wrt).await;
    let lake = setup.lake().await;
    let rows = assert_changes_once(&lake, &load.expected);
    // v1's rows, then from the promote on the fix's (`fixed` on ids ending in 0); the
    // trapping shadow wrote none.
    for (id, rows) in &rows {
        let promoted = first_third.get(id).map_or(0, Vec::len);
        let fix = if id % 10 == 0 { "fixed" } else { "v1" };
        for (n, row) in rows.iter().enumerate() {
            let wanted = if n < promoted { "v1" } else { fix };
            assert_eq!(row["_version"], wanted, "id {id}, change {n}");
        }
    }
    assert!(
        !lake.keys().any(|k| k.starts_with("_dead_letter/")),
        "the shadow's dead letters reached the lake"
    );
    let discard = wrt_cli(
        &["deploy", "--discard", "--by", "e2e"],
        &setup.config,
        &shared_cache(),
    );
    assert_ok(&discard, "discarding the shadow");
    wrt.stop();
}

/// The changes the snapshot and the first `statements` of the streaming workload make.
fn expected_upto(load: &Workload, statements: usize) -> BTreeMap<i64, Vec<Change>> {
    let mut made: BTreeMap<i64, usize> = BTreeMap::new();
    for sql in &load.streaming_sql[..statements] {
        *made.entry(statement_id(sql)).or_default() += 1;
    }
    load.expected
        .iter()
        .filter_map(|(id, changes)| {
            let snapshot = changes.iter().take_while(|(op, _)| *op == "r").count();
            let n = snapshot + made.get(id).copied().unwrap_or(0);
            (n > 0).then(|| (*id, changes[..n].to_vec()))
        })
        .collect()
}

fn count(expected: &BTreeMap<i64, Vec<Change>>) -> usize {
    expected.values().map(Vec::len).sum()
}
