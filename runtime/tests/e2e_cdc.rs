//! End to end on the real local stack (`tests/stack/up`): MariaDB → Debezium → Kafka →
//! `wrt run` with the PII guest → MinIO. Each test has its own database, topic prefix,
//! consumer group and bucket. The stack must be running; `.ci/test` starts it.
//!
//! The workload gives every change a unique `rev`, so each output row names the change it
//! came from: the tests assert every change landed exactly once, in per-key order, with
//! the exact transformed values.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use sha2::{Digest, Sha256};
use wrt::event::Timestamp;
use wrt_tests::{guest, repo_root};

const SALT: &str = "e2e-salt";
const MINIO_USER: &str = "wrtminio";
const MINIO_PASSWORD: &str = "wrtminio-secret";

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// The endpoints of `tests/stack/up`, movable with the same variables.
struct Stack {
    mariadb_port: String,
    kafka: String,
    minio: String,
}

impl Stack {
    fn get() -> Stack {
        // The S3 sink takes MinIO's credentials from the default chain, as on AWS.
        static CREDENTIALS: std::sync::Once = std::sync::Once::new();
        CREDENTIALS.call_once(|| {
            // SAFETY: every test calls `Stack::get` first, so this runs before any test
            // starts a thread or a client that could read the environment.
            #[allow(unsafe_code)]
            unsafe {
                std::env::set_var("AWS_ACCESS_KEY_ID", MINIO_USER);
                std::env::set_var("AWS_SECRET_ACCESS_KEY", MINIO_PASSWORD);
            }
        });
        let stack = Stack {
            mariadb_port: env_or("WRT_STACK_MARIADB_PORT", "3307"),
            kafka: format!("127.0.0.1:{}", env_or("WRT_STACK_KAFKA_PORT", "9092")),
            minio: format!(
                "http://127.0.0.1:{}",
                env_or("WRT_STACK_MINIO_PORT", "9000")
            ),
        };
        let status = Command::new(repo_root().join("tests/stack/status"))
            .stdout(Stdio::null())
            .status()
            .expect("running tests/stack/status");
        assert!(
            status.success(),
            "the local stack is not running: start it with `tests/stack/install && tests/stack/up`"
        );
        stack
    }

    /// Runs SQL through the `mariadb` client, failing the test on any error.
    fn sql(&self, script: &str) {
        let mut child = Command::new("mariadb")
            .args(["-h127.0.0.1", "-P", &self.mariadb_port, "-uwrt", "-pwrt"])
            .args(["--default-character-set=utf8mb4", "--batch"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running the mariadb client");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "SQL failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn connector(&self, name: &str, database: &str, prefix: &str) {
        let status = Command::new(repo_root().join("tests/stack/connector"))
            .args(["create", name, database, prefix])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "registering connector {name}");
    }

    fn drop_connector(&self, name: &str) {
        let _ = Command::new(repo_root().join("tests/stack/connector"))
            .args(["delete", name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// A client, and an empty bucket of its own for the test.
    async fn s3_with_bucket(&self, bucket: &str) -> Client {
        let s3 = self.s3().await;
        s3.create_bucket().bucket(bucket).send().await.unwrap();
        s3
    }

    async fn s3(&self) -> Client {
        let config = aws_sdk_s3::config::Builder::new()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .endpoint_url(&self.minio)
            .force_path_style(true)
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                MINIO_USER,
                MINIO_PASSWORD,
                None,
                None,
                "test",
            ))
            .build();
        Client::from_conf(config)
    }
}

/// A test's own names, unique per run so reruns never see old data.
struct Names {
    database: String,
    prefix: String,
    bucket: String,
    connector: String,
}

impl Names {
    fn new(test: &str) -> Names {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
            % 100_000_000;
        Names {
            database: format!("{test}_{stamp}"),
            prefix: format!("{test}{stamp}"),
            bucket: format!("{}-{stamp}", test.replace('_', "-")),
            connector: format!("wrt-{test}-{stamp}"),
        }
    }

    fn topic(&self) -> String {
        format!("{}.{}.customers", self.prefix, self.database)
    }
}

const TABLE: &str = "CREATE TABLE customers (
    id INT PRIMARY KEY,
    email VARCHAR(100) NOT NULL,
    full_name VARCHAR(100) NOT NULL,
    phone VARCHAR(30) NULL,
    balance DECIMAL(12,2) NULL,
    created_at TIMESTAMP(6) NOT NULL,
    updated_at DATETIME(6) NULL,
    prefs JSON NULL,
    status ENUM('active','suspended','closed') NOT NULL,
    rev INT NOT NULL,
    password_hash VARCHAR(64) NOT NULL
) DEFAULT CHARSET=utf8mb4";

const NAMES: [&str; 5] = [
    "Zoë Müller",
    "李雷",
    "Łukasz Żółć",
    "Дмитрий",
    "José Ñúñez 🙂",
];
const STATUSES: [&str; 3] = ["active", "suspended", "closed"];

/// The row a change with `rev` writes for `id`: every column a function of both.
struct RowImage {
    email: String,
    full_name: String,
    phone: Option<String>,
    balance_cents: Option<i64>,
    created_micros: i64,
    updated_micros: Option<i64>,
    prefs: Option<String>,
    status: &'static str,
}

const JAN_2024: i64 = 1_704_067_200;
const JUN_2024: i64 = 1_717_200_000;

fn image(id: i64, rev: i64) -> RowImage {
    let k = (id + rev) as usize;
    RowImage {
        email: format!(" User{id}.R{rev}@Example.COM "),
        full_name: format!("{} #{id}", NAMES[k % NAMES.len()]),
        phone: (!k.is_multiple_of(4)).then(|| format!("+1 555 {:07}", id * 7 + rev)),
        balance_cents: (rev % 5 != 3).then(|| (id * 31 + rev * 17) % 200_000 - 50_000),
        created_micros: (JAN_2024 + id) * 1_000_000 + id % 1_000_000,
        updated_micros: (rev > 0).then(|| (JUN_2024 + rev) * 1_000_000 + 250_000),
        prefs: (rev % 3 != 2).then(|| format!(r#"{{"n": {rev}, "tags": ["a", "ü"]}}"#)),
        status: STATUSES[(rev % 3) as usize],
    }
}

fn sql_str(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

fn sql_opt(s: &Option<String>) -> String {
    s.as_deref().map_or("NULL".into(), sql_str)
}

fn decimal(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", cents.abs() / 100, cents.abs() % 100)
}

fn sql_datetime(micros: i64) -> String {
    let t = chrono::DateTime::from_timestamp_micros(micros).unwrap();
    format!("'{}'", t.format("%Y-%m-%d %H:%M:%S%.6f"))
}

fn insert(id: i64, rev: i64) -> String {
    let r = image(id, rev);
    format!(
        "INSERT INTO customers VALUES ({id}, {}, {}, {}, {}, {}, {}, {}, '{}', {rev}, 'secret');\n",
        sql_str(&r.email),
        sql_str(&r.full_name),
        sql_opt(&r.phone),
        r.balance_cents.map_or("NULL".into(), decimal),
        sql_datetime(r.created_micros),
        r.updated_micros.map_or("NULL".into(), sql_datetime),
        sql_opt(&r.prefs),
        r.status,
    )
}

fn update(id: i64, rev: i64) -> String {
    let r = image(id, rev);
    format!(
        "UPDATE customers SET email = {}, full_name = {}, phone = {}, balance = {}, \
         updated_at = {}, prefs = {}, status = '{}', rev = {rev} WHERE id = {id};\n",
        sql_str(&r.email),
        sql_str(&r.full_name),
        sql_opt(&r.phone),
        r.balance_cents.map_or("NULL".into(), decimal),
        r.updated_micros.map_or("NULL".into(), sql_datetime),
        sql_opt(&r.prefs),
        r.status,
    )
}

/// What one change must become: the op and the `rev` of the row image the output carries
/// (for a delete, the image before it).
type Change = (&'static str, i64);

/// A deterministic workload: `changes` statements after `initial` snapshot rows, with
/// inserts, updates (some twice in a row, setting and clearing NULLs), deletes, and deletes
/// followed by a re-insert of the same key. Returns the SQL and, per id, the expected changes.
struct Workload {
    snapshot_sql: String,
    streaming_sql: Vec<String>,
    expected: BTreeMap<i64, Vec<Change>>,
}

fn workload(initial: i64, changes: i64, seed: u64) -> Workload {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut expected: BTreeMap<i64, Vec<Change>> = BTreeMap::new();
    let mut live: Vec<i64> = Vec::new();
    let mut current: HashMap<i64, i64> = HashMap::new();
    let mut snapshot_sql = String::new();
    for id in 1..=initial {
        snapshot_sql.push_str(&insert(id, 0));
        expected.entry(id).or_default().push(("r", 0));
        live.push(id);
        current.insert(id, 0);
    }
    let mut next_id = initial + 1;
    let mut streaming_sql = Vec::new();
    let mut rev = 0;
    while rev < changes {
        rev += 1;
        let roll = rng.u32(0..100);
        if roll < 35 || live.len() < 10 {
            let id = next_id;
            next_id += 1;
            streaming_sql.push(insert(id, rev));
            expected.entry(id).or_default().push(("c", rev));
            live.push(id);
            current.insert(id, rev);
        } else if roll < 85 {
            let id = live[rng.usize(..live.len())];
            streaming_sql.push(update(id, rev));
            expected.entry(id).or_default().push(("u", rev));
            current.insert(id, rev);
            if roll < 45 && rev < changes {
                rev += 1;
                streaming_sql.push(update(id, rev));
                expected.entry(id).or_default().push(("u", rev));
                current.insert(id, rev);
            }
        } else {
            let at = rng.usize(..live.len());
            let id = live.swap_remove(at);
            streaming_sql.push(format!("DELETE FROM customers WHERE id = {id};\n"));
            expected.entry(id).or_default().push(("d", current[&id]));
            if roll >= 95 && rev < changes {
                rev += 1;
                streaming_sql.push(insert(id, rev));
                expected.entry(id).or_default().push(("c", rev));
                live.push(id);
                current.insert(id, rev);
            }
        }
    }
    Workload {
        snapshot_sql,
        streaming_sql,
        expected,
    }
}

/// The PII guest's output for `id`'s row image at `rev`, field by field.
fn expected_row(id: i64, rev: i64, op: &str) -> serde_json::Value {
    let r = image(id, rev);
    let hash = hex::encode(Sha256::digest(
        format!("{SALT}{}", r.email.trim().to_lowercase()).as_bytes(),
    ));
    let time = |micros: i64| {
        Timestamp {
            seconds: micros.div_euclid(1_000_000),
            nanos: (micros.rem_euclid(1_000_000) * 1000) as u32,
        }
        .to_rfc3339()
    };
    let phone = r.phone.map(|p| format!("***{}", &p[p.len() - 4..]));
    serde_json::json!({
        "id": id,
        "email": hash,
        "full_name": r.full_name,
        "phone": phone,
        "balance": r.balance_cents.map(decimal),
        "created_at": time(r.created_micros),
        "updated_at": r.updated_micros.map(time),
        "prefs": r.prefs,
        "status": r.status,
        "rev": rev,
        "_op": op,
    })
}

/// `wrt run --config` as a child process.
struct Wrt {
    child: Child,
    log: PathBuf,
}

impl Wrt {
    fn start(config: &Path, log: &Path) -> Wrt {
        let log_file = std::fs::File::create(log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_wrt"))
            .args(["run", "--config"])
            .arg(config)
            .env("AWS_ACCESS_KEY_ID", MINIO_USER)
            .env("AWS_SECRET_ACCESS_KEY", MINIO_PASSWORD)
            .env("WRT_LOG", "info")
            .env(
                "WRT_CACHE_DIR",
                PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("components"),
            )
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .expect("starting wrt");
        Wrt {
            child,
            log: log.to_path_buf(),
        }
    }

    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM: write what is buffered, commit, exit 0.
    fn stop(mut self) -> String {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                assert!(status.success(), "wrt exited with {status}:\n{log}");
                return log;
            }
            assert!(Instant::now() < deadline, "wrt did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            panic!("wrt exited early with {status}:\n{log}");
        }
    }
}

fn pipeline_toml(names: &Names, stack: &Stack, max_records: u64) -> String {
    format!(
        r#"name = "{connector}"

[source]
kind = "kafka"
brokers = "{kafka}"
# the table topics, and the connector's schema-change topic
topics = ["^{prefix}\\..*", "{prefix}"]

[transform]
path = "{guest}"
config = {{ salt = "{SALT}" }}

[batch]
batch-size = 256
max-records = {max_records}
max-age-ms = 1000

[sink]
kind = "s3"
bucket = "{bucket}"
endpoint-url = "{minio}"
region = "us-east-1"
force-path-style = true
"#,
        connector = names.connector,
        kafka = stack.kafka,
        prefix = names.prefix,
        guest = guest("pii_mask").display(),
        bucket = names.bucket,
        minio = stack.minio,
    )
}

/// Every object under `prefix`: key → its lines, in key order.
async fn objects(s3: &Client, bucket: &str, prefix: &str) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    let mut pages = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for object in page.unwrap().contents() {
            let key = object.key().unwrap().to_string();
            let body = s3
                .get_object()
                .bucket(bucket)
                .key(&key)
                .send()
                .await
                .unwrap()
                .body
                .collect()
                .await
                .unwrap()
                .into_bytes();
            let mut text = String::new();
            if key.ends_with(".gz") {
                flate2::read::GzDecoder::new(&body[..])
                    .read_to_string(&mut text)
                    .unwrap();
            } else {
                text = String::from_utf8_lossy(&body).into_owned();
            }
            out.insert(key, text.lines().map(String::from).collect());
        }
    }
    out
}

/// The customer rows in the lake, per id, in Kafka order: objects of one partition sort
/// by their zero-padded first offset, and lines keep the order they were written in.
fn rows_by_id(objects: &BTreeMap<String, Vec<String>>) -> BTreeMap<i64, Vec<serde_json::Value>> {
    let mut ordered: Vec<(i32, i64, &Vec<String>)> = objects
        .iter()
        .filter(|(k, _)| k.starts_with("customers/"))
        .map(|(k, lines)| {
            let file = k.rsplit('/').next().unwrap();
            let parts: Vec<&str> = file.split('+').collect();
            (parts[1].parse().unwrap(), parts[2].parse().unwrap(), lines)
        })
        .collect();
    ordered.sort_by_key(|(partition, offset, _)| (*partition, *offset));
    let mut rows: BTreeMap<i64, Vec<serde_json::Value>> = BTreeMap::new();
    for (_, _, lines) in ordered {
        for line in lines {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            rows.entry(row["id"].as_i64().unwrap())
                .or_default()
                .push(row);
        }
    }
    rows
}

/// Exactly once, in per-key order, with the exact values; counts duplicates and losses.
fn assert_exactly_once(
    objects: &BTreeMap<String, Vec<String>>,
    expected: &BTreeMap<i64, Vec<Change>>,
) {
    let actual = rows_by_id(objects);
    let (mut duplicates, mut losses, mut total) = (0usize, 0usize, 0usize);
    for (id, changes) in expected {
        let got: Vec<Change> = actual
            .get(id)
            .map(|rows| {
                rows.iter()
                    .map(|r| {
                        let op = match r["_op"].as_str().unwrap() {
                            "r" => "r",
                            "c" => "c",
                            "u" => "u",
                            "d" => "d",
                            other => panic!("unexpected _op {other}"),
                        };
                        (op, r["rev"].as_i64().unwrap())
                    })
                    .collect()
            })
            .unwrap_or_default();
        total += got.len();
        for change in changes {
            match got.iter().filter(|g| *g == change).count() {
                0 => losses += 1,
                1 => {}
                n => duplicates += n - 1,
            }
        }
        assert_eq!(
            &got, changes,
            "id {id}: changes out of order, lost or doubled"
        );
        for (row, (op, rev)) in actual[id].iter().zip(changes) {
            let mut row = row.clone();
            let commit_time = row.as_object_mut().unwrap().remove("_commit_time");
            assert!(commit_time.is_some_and(|t| t.as_str().is_some_and(|t| t.ends_with('Z'))));
            assert_eq!(row, expected_row(*id, *rev, op), "id {id} rev {rev}");
        }
    }
    let expected_total: usize = expected.values().map(Vec::len).sum();
    assert_eq!(actual.len(), expected.len(), "rows of unknown ids");
    assert_eq!((duplicates, losses, total), (0, 0, expected_total));
}

/// Polls until the lake holds `want` customer rows, or fails after `limit`.
async fn wait_for_rows(s3: &Client, bucket: &str, want: usize, limit: Duration, wrt: &mut Wrt) {
    let deadline = Instant::now() + limit;
    loop {
        wrt.assert_running();
        let rows: usize = objects(s3, bucket, "customers/")
            .await
            .values()
            .map(Vec::len)
            .sum();
        if rows >= want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {rows} of {want} rows arrived in {limit:?}; see {}",
            wrt.log.display()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

struct Setup {
    stack: Stack,
    names: Names,
    s3: Client,
    dir: tempfile::TempDir,
    config: PathBuf,
}

/// A database with the customers table and `initial` rows, its connector streaming, an
/// empty bucket, and a pipeline.toml for them.
async fn setup(test: &str, load: &Workload, max_records: u64) -> Setup {
    let stack = Stack::get();
    let names = Names::new(test);
    stack.sql(&format!(
        "CREATE DATABASE {db} CHARACTER SET utf8mb4; USE {db}; {TABLE};\n{}",
        load.snapshot_sql,
        db = names.database
    ));
    stack.connector(&names.connector, &names.database, &names.prefix);
    let s3 = stack.s3_with_bucket(&names.bucket).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pipeline.toml");
    std::fs::write(&config, pipeline_toml(&names, &stack, max_records)).unwrap();
    Setup {
        stack,
        names,
        s3,
        dir,
        config,
    }
}

impl Setup {
    /// Waits until every expected change has a row in the lake; returns their count.
    async fn wait_for(
        &self,
        expected: &BTreeMap<i64, Vec<Change>>,
        wrt: &mut Wrt,
        limit: Duration,
    ) -> usize {
        let want = expected.values().map(Vec::len).sum();
        wait_for_rows(&self.s3, &self.names.bucket, want, limit, wrt).await;
        want
    }

    /// Every object in the test's bucket.
    async fn lake(&self) -> BTreeMap<String, Vec<String>> {
        objects(&self.s3, &self.names.bucket, "").await
    }
}

/// Applies the streaming part of the workload from another thread.
fn apply_in_background(setup: &Setup, load: &Workload) -> std::thread::JoinHandle<()> {
    let script = format!(
        "USE {};\n{}",
        setup.names.database,
        load.streaming_sql.concat()
    );
    let port = setup.stack.mariadb_port.clone();
    std::thread::spawn(move || {
        let stack = Stack {
            mariadb_port: port,
            kafka: String::new(),
            minio: String::new(),
        };
        stack.sql(&script);
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_changes_land_exactly_once() {
    let load = workload(300, 10_000, 7);
    let setup = setup("e2e_once", &load, 1_000).await;
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
    setup.stack.drop_connector(&setup.names.connector);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_while_uploading_loses_and_doubles_nothing() {
    let load = workload(300, 10_000, 11);
    // Small windows: many uploads, so a kill lands inside one.
    let setup = setup("e2e_kill", &load, 100).await;
    let log = |n: usize| setup.dir.path().join(format!("wrt-{n}.log"));
    let writer = apply_in_background(&setup, &load);

    // Kill as soon as a window marker is visible (a window is being written), until a kill
    // leaves one behind: that run died between its marker and its commit.
    let mut interrupted = 0;
    for attempt in 0..20 {
        let wrt = Wrt::start(&setup.config, &log(attempt));
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline
            && objects(&setup.s3, &setup.names.bucket, "_wrt/windows/")
                .await
                .is_empty()
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        wrt.kill();
        if !objects(&setup.s3, &setup.names.bucket, "_wrt/windows/")
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
    println!("e2e: {interrupted} runs killed mid-upload; duplicates 0, losses 0 asserted next");
    assert_exactly_once(&lake, &load.expected);
    setup.stack.drop_connector(&setup.names.connector);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_poison_record_is_dead_lettered_and_the_pipeline_goes_on() {
    let load = workload(50, 200, 3);
    let setup = setup("e2e_poison", &load, 500).await;
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
    use wrt::encode::{Object, ObjectMeta};
    use wrt::sink::Sink;

    let stack = Stack::get();
    let names = Names::new("e2e_sink");
    let s3 = stack.s3_with_bucket(&names.bucket).await;
    let sink = wrt::sink::s3::S3::new(&wrt::config::S3Sink {
        bucket: names.bucket.clone(),
        prefix: "lake/".into(),
        region: "us-east-1".into(),
        endpoint_url: Some(stack.minio.clone()),
        force_path_style: true,
        multipart_threshold_mb: 5,
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
