//! The local stack (`tests/stack/up`) as the end-to-end tests use it: its endpoints, a
//! deterministic SQL workload with the changes it must produce, `wrt run` as a child process,
//! and reading the lake back from MinIO. Each test file uses part of it.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use sha2::{Digest, Sha256};
use wrt::event::Timestamp;
use wrt_tests::{guest, repo_root};

pub const MINIO_USER: &str = "wrtminio";
pub const MINIO_PASSWORD: &str = "wrtminio-secret";

pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// The endpoints of `tests/stack/up`, movable with the same variables.
pub struct Stack {
    pub mariadb_port: String,
    pub kafka: String,
    pub minio: String,
}

impl Stack {
    pub fn get() -> Stack {
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
    pub fn sql(&self, script: &str) {
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

    pub fn connector(&self, name: &str, database: &str, prefix: &str) {
        let status = Command::new(repo_root().join("tests/stack/connector"))
            .args(["create", name, database, prefix])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "registering connector {name}");
    }

    pub fn drop_connector(&self, name: &str) {
        let _ = Command::new(repo_root().join("tests/stack/connector"))
            .args(["delete", name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// A client, and an empty bucket of its own for the test.
    pub async fn s3_with_bucket(&self, bucket: &str) -> Client {
        let s3 = self.s3().await;
        s3.create_bucket().bucket(bucket).send().await.unwrap();
        s3
    }

    pub async fn s3(&self) -> Client {
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
pub struct Names {
    pub database: String,
    pub prefix: String,
    pub bucket: String,
    pub connector: String,
}

impl Names {
    pub fn new(test: &str) -> Names {
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

    pub fn topic(&self) -> String {
        format!("{}.{}.customers", self.prefix, self.database)
    }
}

/// A pipeline file for the end-to-end tests: the test's name, topics and bucket on the
/// stack's broker and MinIO, the PII guest, batches of 256; each test sets only what it is
/// about, with `..Pipeline::default()`.
pub struct Pipeline {
    /// `source.brokers`; the stack's plaintext listener by default.
    pub brokers: Option<String>,
    /// `source.topics`, a TOML array; by default the table topics and the connector's
    /// schema-change topic.
    pub topics: Option<String>,
    /// More `[source]` lines (auth, librdkafka properties).
    pub source: String,
    /// The guest, by its name in the test build, and its config as a TOML inline table
    /// (empty: none).
    pub guest: &'static str,
    pub config: String,
    /// The `[batch]` section's lines.
    pub batch: String,
    /// `sink.endpoint-url`; the stack's MinIO by default.
    pub store: Option<String>,
    /// More `[sink]` lines (timeouts).
    pub sink: &'static str,
    /// Further sections, verbatim (`[pipeline]`, `[retry]`, `[registry]`).
    pub sections: &'static str,
    /// The admin server's port, if the test talks to it.
    pub admin: Option<u16>,
}

impl Default for Pipeline {
    fn default() -> Self {
        Pipeline {
            brokers: None,
            topics: None,
            source: String::new(),
            guest: "pii_mask",
            config: format!("{{ salt = \"{SALT}\" }}"),
            batch: "batch-size = 256\nmax-records = 500\nmax-age-ms = 1000".into(),
            store: None,
            sink: "",
            sections: "",
            admin: None,
        }
    }
}

impl Pipeline {
    pub fn toml(&self, names: &Names, stack: &Stack) -> String {
        let line = |text: &str| {
            if text.is_empty() {
                String::new()
            } else {
                format!("{}\n", text.trim_end())
            }
        };
        let topics = self.topics.clone().unwrap_or_else(|| {
            format!(
                "[\"^{prefix}\\\\..*\", \"{prefix}\"]",
                prefix = names.prefix
            )
        });
        let config = match self.config.as_str() {
            "" => String::new(),
            config => format!("config = {config}\n"),
        };
        let admin = self.admin.map_or(String::new(), |port| {
            format!("\n[admin]\nlisten = \"127.0.0.1:{port}\"\n")
        });
        format!(
            r#"name = "{connector}"

[source]
kind = "kafka"
brokers = "{brokers}"
topics = {topics}
{source}
[transform]
path = "{guest}"
{config}
[batch]
{batch}
[sink]
kind = "s3"
bucket = "{bucket}"
endpoint-url = "{store}"
region = "us-east-1"
force-path-style = true
{sink}{sections}{admin}"#,
            connector = names.connector,
            brokers = self.brokers.as_deref().unwrap_or(&stack.kafka),
            source = line(&self.source),
            guest = guest(self.guest).display(),
            batch = line(&self.batch),
            bucket = names.bucket,
            store = self.store.as_deref().unwrap_or(&stack.minio),
            sink = line(self.sink),
            sections = match self.sections {
                "" => String::new(),
                sections => format!("\n{}", line(sections)),
            },
        )
    }
}

pub const TABLE: &str = "CREATE TABLE customers (
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

pub const NAMES: [&str; 5] = [
    "Zoë Müller",
    "李雷",
    "Łukasz Żółć",
    "Дмитрий",
    "José Ñúñez 🙂",
];
pub const STATUSES: [&str; 3] = ["active", "suspended", "closed"];

/// The row a change with `rev` writes for `id`: every column a function of both.
pub struct RowImage {
    pub email: String,
    pub full_name: String,
    pub phone: Option<String>,
    pub balance_cents: Option<i64>,
    pub created_micros: i64,
    pub updated_micros: Option<i64>,
    pub prefs: Option<String>,
    pub status: &'static str,
}

pub const JAN_2024: i64 = 1_704_067_200;
pub const JUN_2024: i64 = 1_717_200_000;

pub fn image(id: i64, rev: i64) -> RowImage {
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

pub fn sql_str(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

pub fn sql_opt(s: &Option<String>) -> String {
    s.as_deref().map_or("NULL".into(), sql_str)
}

pub fn decimal(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", cents.abs() / 100, cents.abs() % 100)
}

pub fn sql_datetime(micros: i64) -> String {
    let t = chrono::DateTime::from_timestamp_micros(micros).unwrap();
    format!("'{}'", t.format("%Y-%m-%d %H:%M:%S%.6f"))
}

pub fn insert(id: i64, rev: i64) -> String {
    let r = image(id, rev);
    format!(
        // Columns named: a test may add one with a default mid-stream.
        "INSERT INTO customers (id, email, full_name, phone, balance, created_at, updated_at, \
         prefs, status, rev, password_hash) \
         VALUES ({id}, {}, {}, {}, {}, {}, {}, {}, '{}', {rev}, 'secret');\n",
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

pub fn update(id: i64, rev: i64) -> String {
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
pub type Change = (&'static str, i64);

/// A deterministic workload: `changes` statements after `initial` snapshot rows, with
/// inserts, updates (some twice in a row, setting and clearing NULLs), deletes, and deletes
/// followed by a re-insert of the same key. Returns the SQL and, per id, the expected changes.
pub struct Workload {
    pub snapshot_sql: String,
    pub streaming_sql: Vec<String>,
    pub expected: BTreeMap<i64, Vec<Change>>,
}

pub fn workload(initial: i64, changes: i64, seed: u64) -> Workload {
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

/// `wrt run --config` as a child process.
pub struct Wrt {
    pub child: Child,
    pub log: PathBuf,
}

impl Wrt {
    pub fn start(config: &Path, log: &Path) -> Wrt {
        Wrt::start_with_env(config, log, &[])
    }

    /// [`Wrt::start`] with more environment variables, which override its own.
    pub fn start_with_env(config: &Path, log: &Path, env: &[(&str, &str)]) -> Wrt {
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
            .envs(env.iter().copied())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .expect("starting wrt");
        Wrt {
            child,
            log: log.to_path_buf(),
        }
    }

    /// SIGKILL, and reap the process.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM: write what is buffered, commit, exit 0.
    pub fn stop(mut self) -> String {
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

    /// Waits for a host that must stop by itself (a refusal) to fail, at most `limit`;
    /// returns how long it ran and its log.
    pub fn wait_failure(&mut self, limit: Duration) -> (Duration, String) {
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                started.elapsed() < limit,
                "wrt still runs after {limit:?}; see {}",
                self.log.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        assert!(!status.success(), "wrt exited 0:\n{log}");
        (started.elapsed(), log)
    }

    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            panic!(
                "wrt exited early with {status}:\n{log}{}",
                self.crash_report(status)
            );
        }
    }

    /// For a host killed by a signal that dumps core: every thread's stack from the core
    /// file, when the kernel wrote one where it writes by default (the working directory;
    /// `.ci/test` lifts the size limit) and gdb is there to read it. A crash in native code
    /// (librdkafka) says nothing in the log.
    fn crash_report(&self, status: std::process::ExitStatus) -> String {
        use std::os::unix::process::ExitStatusExt;
        if !status.core_dumped() {
            return String::new();
        }
        let pid = self.child.id();
        let Some(core) = [format!("core.{pid}"), "core".into()]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
        else {
            return "\n(a core was dumped, but not as ./core or ./core.<pid>: see \
                    /proc/sys/kernel/core_pattern)"
                .into();
        };
        let trace = Command::new("gdb")
            .args(["-batch", "-nx", "-ex", "thread apply all bt 30"])
            .arg(env!("CARGO_BIN_EXE_wrt"))
            .arg(&core)
            .output();
        let report = match trace {
            Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
            Err(e) => format!("(gdb could not run: {e}; the core is kept)"),
        };
        if report.contains("Thread ") {
            let _ = std::fs::remove_file(&core);
        }
        format!(
            "\nthe core file ({}), every thread:\n{report}",
            core.display()
        )
    }
}

/// A test that fails (panics) while its host runs must not leave the process behind to eat
/// CPU beside the next tests: whatever ends the handle ends the process. After `kill` or
/// `stop` the process is already reaped and this does nothing.
impl Drop for Wrt {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Window markers (`_wrt/windows/…`) are deleted right after their window commits: a key
/// listed a moment ago may be gone when it is read. Every other object is permanent.
fn is_transient(key: &str) -> bool {
    key.starts_with("_wrt/windows/")
}

/// The keys under `prefix`, in key order, without reading a body: for "is anything there?".
pub async fn keys(s3: &Client, bucket: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut pages = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        out.extend(
            page.unwrap()
                .contents()
                .iter()
                .map(|object| object.key().unwrap().to_string()),
        );
    }
    out
}

/// Every object under `prefix`: key → its lines, in key order; a Parquet object's rows as
/// JSON lines, read by pyarrow (see [`parquet_files`]). A window marker deleted between the
/// listing and its read was committed meanwhile, and counts as absent; any other object
/// that cannot be read fails the test.
pub async fn objects(s3: &Client, bucket: &str, prefix: &str) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for key in keys(s3, bucket, prefix).await {
        if key.ends_with(".parquet") {
            continue;
        }
        let Some(body) = read(s3, bucket, &key).await else {
            continue;
        };
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
    for (key, file) in parquet_files(s3, bucket, prefix).await {
        let rows = file["rows"].as_array().unwrap().iter();
        out.insert(key, rows.map(|row| row.to_string()).collect());
    }
    out
}

async fn read(s3: &Client, bucket: &str, key: &str) -> Option<Vec<u8>> {
    let response = match s3.get_object().bucket(bucket).key(key).send().await {
        Ok(response) => response,
        Err(e)
            if is_transient(key)
                && e.as_service_error().is_some_and(
                    aws_sdk_s3::operation::get_object::GetObjectError::is_no_such_key,
                ) =>
        {
            return None;
        }
        Err(e) => panic!("reading {key} from {bucket}: {e:?}"),
    };
    Some(response.body.collect().await.unwrap().into_bytes().to_vec())
}

/// pyarrow's reading of the Parquet objects read so far, by bucket and key: an object's key
/// always holds the same bytes, so a test that polls reads each one once.
static PARQUET: std::sync::Mutex<BTreeMap<(String, String), serde_json::Value>> =
    std::sync::Mutex::new(BTreeMap::new());

/// Every Parquet object under `prefix` as the independent reader sees it
/// (`tests/readers/parquet_rows.py`): key → `{"types", "metadata", "rows"}`.
pub async fn parquet_files(
    s3: &Client,
    bucket: &str,
    prefix: &str,
) -> BTreeMap<String, serde_json::Value> {
    let keys: Vec<String> = (keys(s3, bucket, prefix).await.into_iter())
        .filter(|key| key.ends_with(".parquet"))
        .collect();
    let cached = |key: &String| {
        PARQUET
            .lock()
            .unwrap()
            .contains_key(&(bucket.into(), key.clone()))
    };
    let new: Vec<&String> = keys.iter().filter(|key| !cached(key)).collect();
    if !new.is_empty() {
        let dir = tempfile::tempdir().unwrap();
        for key in &new {
            let body = read(s3, bucket, key)
                .await
                .expect("a data object is never deleted");
            let path = dir.path().join(key);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, body).unwrap();
        }
        let read: BTreeMap<String, serde_json::Value> =
            serde_json::from_slice(&wrt_tests::pyarrow_read(dir.path())).unwrap();
        assert_eq!(read.len(), new.len(), "pyarrow read every file");
        let mut cache = PARQUET.lock().unwrap();
        for (key, file) in read {
            cache.insert((bucket.into(), key), file);
        }
    }
    let cache = PARQUET.lock().unwrap();
    (keys.into_iter())
        .map(|key| {
            let file = cache[&(bucket.to_string(), key.clone())].clone();
            (key, file)
        })
        .collect()
}

/// The customer rows in the lake, per id, in Kafka order: objects of one partition sort
/// by their zero-padded first offset, and lines keep the order they were written in.
pub fn rows_by_id(
    objects: &BTreeMap<String, Vec<String>>,
) -> BTreeMap<i64, Vec<serde_json::Value>> {
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

/// Polls until the lake holds `want` customer rows, or fails after `limit`.
pub async fn wait_for_rows(s3: &Client, bucket: &str, want: usize, limit: Duration, wrt: &mut Wrt) {
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
        if Instant::now() >= deadline {
            let log = std::fs::read_to_string(&wrt.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            panic!(
                "only {rows} of {want} rows arrived in {limit:?}; the host's last log lines:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub struct Setup {
    pub stack: Stack,
    pub names: Names,
    pub s3: Client,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

/// A database with the customers table and `initial` rows, its connector streaming, an
/// empty bucket, and a pipeline.toml for them.
pub async fn setup(
    test: &str,
    load: &Workload,
    pipeline_toml: impl FnOnce(&Names, &Stack) -> String,
) -> Setup {
    setup_partitioned(test, load, None, pipeline_toml).await
}

/// [`setup`], with the table's topic created first with `partitions` partitions (the
/// broker's default is 3).
pub async fn setup_partitioned(
    test: &str,
    load: &Workload,
    partitions: Option<i32>,
    pipeline_toml: impl FnOnce(&Names, &Stack) -> String,
) -> Setup {
    let stack = Stack::get();
    let names = Names::new(test);
    if let Some(partitions) = partitions {
        create_topic(&stack.kafka, &names.topic(), partitions).await;
    }
    stack.sql(&format!(
        "CREATE DATABASE {db} CHARACTER SET utf8mb4; USE {db}; {TABLE};\n{}",
        load.snapshot_sql,
        db = names.database
    ));
    stack.connector(&names.connector, &names.database, &names.prefix);
    let s3 = stack.s3_with_bucket(&names.bucket).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pipeline.toml");
    std::fs::write(&config, pipeline_toml(&names, &stack)).unwrap();
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
    pub async fn wait_for(
        &self,
        expected: &BTreeMap<i64, Vec<Change>>,
        wrt: &mut Wrt,
        limit: Duration,
    ) -> usize {
        let want = expected.values().map(Vec::len).sum();
        wait_for_rows(&self.s3, &self.names.bucket, want, limit, wrt).await;
        want
    }

    /// Waits until some object's key starts with `prefix` (`customers/`: a first row
    /// landed; `_dead_letter/`: a dead letter), failing after `limit` or if wrt exits.
    pub async fn wait_for_key(&self, prefix: &str, limit: Duration, wrt: &mut Wrt) {
        let deadline = Instant::now() + limit;
        while keys(&self.s3, &self.names.bucket, prefix).await.is_empty() {
            wrt.assert_running();
            assert!(
                Instant::now() < deadline,
                "nothing under {prefix} after {limit:?}; see {}",
                wrt.log.display()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Every object in the test's bucket.
    pub async fn lake(&self) -> BTreeMap<String, Vec<String>> {
        objects(&self.s3, &self.names.bucket, "").await
    }
}

/// The lines `script` prints after sourcing `tests/stack/lib.sh`: the stack's own names for
/// its ports, binaries and processes (moved by the same `WRT_STACK_*` variables).
pub fn stack_sh(script: &str) -> Vec<String> {
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("source tests/stack/lib.sh && {script}"))
        .current_dir(repo_root())
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Creates `topic` with `partitions` partitions, before anything writes to it.
pub async fn create_topic(brokers: &str, topic: &str, partitions: i32) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("a Kafka admin client");
    let created = admin
        .create_topics(
            [&NewTopic::new(
                topic,
                partitions,
                TopicReplication::Fixed(1),
            )],
            &AdminOptions::new(),
        )
        .await
        .expect("the create-topics request");
    for result in created {
        result.unwrap_or_else(|(topic, e)| panic!("creating topic {topic}: {e}"));
    }
}

/// `wrt verify --config`, which must exit 0: the group's committed offsets are covered by
/// the lake exactly once.
pub fn assert_verified(config: &Path) {
    let verify = Command::new(env!("CARGO_BIN_EXE_wrt"))
        .args(["verify", "--config"])
        .arg(config)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "wrt verify failed:\n{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
}

/// Applies the streaming part of the workload from another thread.
pub fn apply_in_background(setup: &Setup, load: &Workload) -> std::thread::JoinHandle<()> {
    apply_statements_in_background(setup, &load.streaming_sql)
}

/// Applies `statements` (a part of a workload's streaming SQL) from another thread.
pub fn apply_statements_in_background(
    setup: &Setup,
    statements: &[String],
) -> std::thread::JoinHandle<()> {
    let script = format!("USE {};\n{}", setup.names.database, statements.concat());
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

pub const SALT: &str = "e2e-salt";

/// `micros` since the epoch as the lake writes an instant (RFC 3339, UTC).
pub fn rfc3339_micros(micros: i64) -> String {
    Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1000) as u32,
    }
    .to_rfc3339()
}

/// The PII guest's output for `id`'s row image at `rev`, field by field.
pub fn expected_row(id: i64, rev: i64, op: &str) -> serde_json::Value {
    let r = image(id, rev);
    let hash = hex::encode(Sha256::digest(
        format!("{SALT}{}", r.email.trim().to_lowercase()).as_bytes(),
    ));
    let time = rfc3339_micros;
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

/// Exactly once, in per-key order, with the exact values of the PII guest's output; counts
/// duplicates and losses.
pub fn assert_exactly_once(
    objects: &BTreeMap<String, Vec<String>>,
    expected: &BTreeMap<i64, Vec<Change>>,
) {
    let actual = assert_changes_once(objects, expected);
    for (id, changes) in expected {
        for (row, (op, rev)) in actual[id].iter().zip(changes) {
            let mut row = row.clone();
            let commit_time = row.as_object_mut().unwrap().remove("_commit_time");
            assert!(commit_time.is_some_and(|t| t.as_str().is_some_and(|t| t.ends_with('Z'))));
            assert_eq!(row, expected_row(*id, *rev, op), "id {id} rev {rev}");
        }
    }
}

/// Every expected change (`_op`, `rev`) exactly once, in per-key order, and no row of an
/// unknown id, whatever the guest makes of the values; returns the rows by id.
pub fn assert_changes_once(
    objects: &BTreeMap<String, Vec<String>>,
    expected: &BTreeMap<i64, Vec<Change>>,
) -> BTreeMap<i64, Vec<serde_json::Value>> {
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
    }
    let expected_total: usize = expected.values().map(Vec::len).sum();
    assert_eq!(actual.len(), expected.len(), "rows of unknown ids");
    assert_eq!((duplicates, losses, total), (0, 0, expected_total));
    actual
}

/// The most resident memory process `pid` has used so far, in MiB.
pub fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024.0
}

/// A port nothing listens on at the moment.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The admin API on `port`.
pub struct AdminApi {
    port: u16,
    agent: ureq::Agent,
}

impl AdminApi {
    pub fn new(port: u16) -> AdminApi {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        AdminApi { port, agent }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Status code and body, or `None` while nothing listens.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut response = self.agent.get(&self.url(path)).call().ok()?;
        let body = response.body_mut().read_to_string().unwrap();
        Some((response.status().as_u16(), body))
    }

    pub fn post(&self, path: &str, token: Option<&str>) -> (u16, String) {
        let mut request = self.agent.post(&self.url(path));
        if let Some(token) = token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let mut response = request.send_empty().unwrap();
        let body = response.body_mut().read_to_string().unwrap();
        (response.status().as_u16(), body)
    }

    pub fn status(&self) -> serde_json::Value {
        let (code, body) = self.get("/status").expect("the admin server answers");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Polls `/status` until `done` holds.
    pub fn wait_for(&self, what: &str, wrt: &mut Wrt, done: impl Fn(&serde_json::Value) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            wrt.assert_running();
            let status = self.get("/status");
            if let Some((200, body)) = &status
                && done(&serde_json::from_str(body).unwrap())
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; status {status:?}; log:\n{}",
                std::fs::read_to_string(&wrt.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The value of the sample `name` whose labels include `labels`.
pub fn sample(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let found = scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)));
    match found.map(|s| &s.value) {
        Some(prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v))
        | Some(prometheus_parse::Value::Untyped(v)) => *v,
        Some(prometheus_parse::Value::Histogram(_) | prometheus_parse::Value::Summary(_)) => {
            panic!("{name} is not a single value")
        }
        None => panic!("no sample {name}{labels:?} in the scrape"),
    }
}

pub fn parse_metrics(text: &str) -> prometheus_parse::Scrape {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).expect("/metrics parses as Prometheus text")
}
