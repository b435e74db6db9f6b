//! End to end on the real local stack, with the store failing under a running SQL workload:
//! MariaDB → Debezium → Kafka → `wrt run` → Toxiproxy → a MinIO of the test's own, which the
//! test stops and restarts, and whose connections the proxy hangs and slows (the stack's
//! MinIO serves the other tests, so it is never touched). The host must keep running, say it
//! is not ready while the store fails, count the failures, and land every change exactly once
//! when the store is back. The broker's connections get the same treatment through the
//! stack's `PROXIED` listener.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use wrt_tests::guest;

/// A MinIO server of this test's own, on a free port, keeping its data across restarts.
struct OwnMinio {
    binary: PathBuf,
    data: tempfile::TempDir,
    port: u16,
    console_port: u16,
    child: Option<Child>,
}

impl OwnMinio {
    fn start() -> OwnMinio {
        // The binary `tests/stack/install` put in place, at the version the stack pins.
        let binary = PathBuf::from(&stack_sh("echo \"$MINIO_BIN\"")[0]);
        assert!(
            binary.is_file(),
            "no MinIO at {}: run tests/stack/install",
            binary.display()
        );
        let mut minio = OwnMinio {
            binary,
            data: tempfile::tempdir().unwrap(),
            port: free_port(),
            console_port: free_port(),
            child: None,
        };
        minio.resume();
        minio
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) and waits until it answers.
    fn resume(&mut self) {
        let child = Command::new(&self.binary)
            .args(["server", "--address", &format!("127.0.0.1:{}", self.port)])
            .args([
                "--console-address",
                &format!("127.0.0.1:{}", self.console_port),
            ])
            .arg(self.data.path())
            .env("MINIO_ROOT_USER", MINIO_USER)
            .env("MINIO_ROOT_PASSWORD", MINIO_PASSWORD)
            .env("MINIO_BROWSER", "off")
            .env("MINIO_UPDATE", "off")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting MinIO");
        self.child = Some(child);
        let health = AdminApi::new(self.port);
        let deadline = Instant::now() + Duration::from_secs(60);
        while health.get("/minio/health/ready").map(|(code, _)| code) != Some(200) {
            assert!(
                Instant::now() < deadline,
                "MinIO did not start on {}",
                self.url()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops the server (SIGKILL: an outage, not a shutdown).
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    fn s3_config(&self) -> Stack {
        Stack {
            mariadb_port: String::new(),
            kafka: String::new(),
            minio: self.url(),
        }
    }
}

impl Drop for OwnMinio {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Toxiproxy (`tests/stack/install` builds it) between wrt and the store or the broker: a
/// real fault injector, started by the test, its API on a free port.
struct FaultProxy {
    child: Child,
    api: String,
    name: &'static str,
    listen: u16,
    agent: ureq::Agent,
}

impl FaultProxy {
    /// One proxy, `name`, from 127.0.0.1:`listen` to `upstream`.
    fn start(name: &'static str, upstream: &str, listen: u16) -> FaultProxy {
        let binary = PathBuf::from(&stack_sh("echo \"$TOXIPROXY_BIN\"")[0]);
        assert!(
            binary.is_file(),
            "no Toxiproxy at {}: run tests/stack/install",
            binary.display()
        );
        let api_port = free_port();
        let child = Command::new(&binary)
            .args(["-host", "127.0.0.1", "-port", &api_port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting Toxiproxy");
        let proxy = FaultProxy {
            child,
            api: format!("http://127.0.0.1:{api_port}"),
            name,
            listen,
            agent: ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_secs(10)))
                .build()
                .into(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while proxy
            .agent
            .get(format!("{}/version", proxy.api))
            .call()
            .is_err()
        {
            assert!(Instant::now() < deadline, "Toxiproxy did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        proxy.post(
            "/proxies",
            serde_json::json!({"name": name, "upstream": upstream,
                "listen": format!("127.0.0.1:{}", proxy.listen)}),
        );
        proxy
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.listen)
    }

    fn post(&self, path: &str, body: serde_json::Value) {
        self.agent
            .post(format!("{}{path}", self.api))
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .unwrap_or_else(|e| panic!("Toxiproxy POST {path}: {e}"));
    }

    /// Adds a toxic to the answers coming back from the upstream.
    fn add(&self, name: &str, kind: &str, attributes: serde_json::Value) {
        self.post(
            &format!("/proxies/{}/toxics", self.name),
            serde_json::json!({"name": name, "type": kind, "stream": "downstream",
                "attributes": attributes}),
        );
    }

    fn remove(&self, name: &str) {
        self.agent
            .delete(format!("{}/proxies/{}/toxics/{name}", self.api, self.name))
            .call()
            .unwrap_or_else(|e| panic!("Toxiproxy DELETE {name}: {e}"));
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A counter's value in wrt's `/metrics`.
fn counter(admin: &AdminApi, pipeline: &str, name: &str) -> f64 {
    let (_, text) = admin.get("/metrics").expect("the admin server answers");
    sample(&parse_metrics(&text), name, &[("pipeline", pipeline)])
}

/// `/readyz`'s status code, or `None` while nothing answers.
fn readyz(admin: &AdminApi) -> Option<u16> {
    admin.get("/readyz").map(|(code, _)| code)
}

/// Polls `/readyz` until it answers `want`; returns how long that took.
fn wait_for_ready(admin: &AdminApi, want: u16, limit: Duration, wrt: &mut Wrt) -> Duration {
    let started = Instant::now();
    while readyz(admin) != Some(want) {
        wrt.assert_running();
        assert!(
            started.elapsed() < limit,
            "/readyz did not answer {want} within {limit:?}; see {}",
            wrt.log.display()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    started.elapsed()
}

/// Keeps `wrt` under watch for `span`: it must not exit, and `/readyz` must stay `want`.
fn hold(admin: &AdminApi, want: u16, span: Duration, wrt: &mut Wrt) {
    let until = Instant::now() + span;
    while Instant::now() < until {
        wrt.assert_running();
        assert_eq!(
            readyz(admin),
            Some(want),
            "/readyz during the outage; see {}",
            wrt.log.display()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The peak resident memory of a process, in MiB.
#[tokio::test(flavor = "multi_thread")]
async fn the_store_stopped_then_hung_mid_run_loses_and_doubles_nothing() {
    let mut minio = OwnMinio::start();
    let proxy = FaultProxy::start("store", &format!("127.0.0.1:{}", minio.port), free_port());
    let admin_port = free_port();
    let admin = AdminApi::new(admin_port);
    let load = workload(300, 10_000, 23);
    let mut setup = setup("e2e_store", &load, |names, stack| {
        Pipeline {
            store: Some(proxy.url()),
            // Short, so the frozen store's requests fail within the test's patience.
            sink: "read-timeout-ms = 2000\nattempt-timeout-ms = 5000",
            sections: "[retry]\nmax-backoff-ms = 4000",
            admin: Some(admin_port),
            ..Pipeline::default()
        }
        .toml(names, stack)
    })
    .await;
    // The test reads the store directly; wrt goes through the fault proxy.
    setup.s3 = minio.s3_config().s3_with_bucket(&setup.names.bucket).await;
    let pipeline = setup.names.connector.clone();

    let mut wrt = Wrt::start(&setup.config, &setup.dir.path().join("wrt.log"));
    let pid = wrt.child.id();
    let writer = apply_in_background(&setup, &load);
    // Stop the store once the first rows have landed, with most of the workload to come.
    setup
        .wait_for_key("customers/", Duration::from_secs(120), &mut wrt)
        .await;
    wait_for_ready(&admin, 200, Duration::from_secs(30), &mut wrt);

    // 1. MinIO stopped for 30 s.
    let errors_before = counter(&admin, &pipeline, "wrt_upload_errors_total");
    minio.stop();
    let stopped = Instant::now();
    let noticed = wait_for_ready(&admin, 503, Duration::from_secs(30), &mut wrt);
    hold(
        &admin,
        503,
        Duration::from_secs(30).saturating_sub(stopped.elapsed()),
        &mut wrt,
    );
    let errors_during = counter(&admin, &pipeline, "wrt_upload_errors_total") - errors_before;
    let retries = counter(&admin, &pipeline, "wrt_store_retries_total");
    assert!(errors_during > 0.0, "the upload-error counter did not rise");
    assert!(retries > 0.0, "no window was retried");
    minio.resume();
    let recovered = wait_for_ready(&admin, 200, Duration::from_secs(60), &mut wrt);
    println!(
        "e2e store stopped 30 s: not ready after {:.1} s, {errors_during} upload errors, {retries} window retries, ready again {:.1} s after the restart",
        noticed.as_secs_f64(),
        recovered.as_secs_f64()
    );
    writer.join().unwrap();

    // 2. The proxy hangs every connection to the store for 20 s while new changes arrive
    // (nothing comes back, nothing is closed): the timeouts turn the hang into failures, and
    // the host says so instead of stalling silently. Then 500 ms of latency on every answer
    // for the rest of the run.
    let mut expected = load.expected.clone();
    let late: Vec<String> = (800_001..=800_200).map(|id| insert(id, 0)).collect();
    for id in 800_001..=800_200 {
        expected.insert(id, vec![("c", 0)]);
    }
    proxy.add("hang", "timeout", serde_json::json!({"timeout": 0}));
    let hung = Instant::now();
    setup
        .stack
        .sql(&format!("USE {};\n{}", setup.names.database, late.concat()));
    let noticed = wait_for_ready(&admin, 503, Duration::from_secs(20), &mut wrt);
    hold(
        &admin,
        503,
        Duration::from_secs(20).saturating_sub(hung.elapsed()),
        &mut wrt,
    );
    proxy.remove("hang");
    proxy.add("slow", "latency", serde_json::json!({"latency": 500}));
    let recovered = wait_for_ready(&admin, 200, Duration::from_secs(60), &mut wrt);
    println!(
        "e2e store hung 20 s: not ready after {:.1} s, ready again {:.1} s after the hang ended (500 ms latency from then on)",
        noticed.as_secs_f64(),
        recovered.as_secs_f64()
    );

    let want = setup
        .wait_for(&expected, &mut wrt, Duration::from_secs(240))
        .await;
    let rss = peak_rss_mib(pid);
    let log = wrt.stop();
    let lake = setup.lake().await;
    let rows: usize = rows_by_id(&lake).values().map(Vec::len).sum();
    println!(
        "e2e store faults: {want} changes written, {rows} rows in the lake (lost and doubled: 0, asserted next), peak RSS {rss:.0} MiB"
    );
    assert_exactly_once(&lake, &expected);
    assert!(log.contains("the window is written again"), "{log}");
    assert!(
        !log.contains(MINIO_PASSWORD),
        "the store's secret is in the log"
    );
    assert!(
        !lake.keys().any(|k| k.starts_with("_dead_letter/")),
        "an outage is not a bad record: {log}"
    );
    proxy.remove("slow");
    assert_verified(&setup.config);
    setup.stack.drop_connector(&setup.names.connector);
}

/// Bad credentials are not an outage: the host stops at once and says what to fix, without
/// printing the secret it was given.
#[tokio::test(flavor = "multi_thread")]
async fn a_store_that_refuses_the_credentials_stops_the_host_with_the_fix() {
    let stack = Stack::get();
    let names = Names::new("e2e_refused");
    stack.s3_with_bucket(&names.bucket).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pipeline.toml");
    std::fs::write(
        &config,
        Pipeline {
            topics: Some(format!("[\"{}.nothing\"]", names.prefix)),
            ..Pipeline::default()
        }
        .toml(&names, &stack),
    )
    .unwrap();
    let secret = "not-the-secret-3141";
    let mut wrt = Wrt::start_with_env(
        &config,
        &dir.path().join("wrt.log"),
        &[("AWS_SECRET_ACCESS_KEY", secret)],
    );
    let (_, log) = wrt.wait_failure(Duration::from_secs(30));
    println!(
        "e2e refused: {}",
        log.trim().lines().last().unwrap_or_default()
    );
    assert!(log.contains("check the AWS credentials"), "{log}");
    assert!(!log.contains(secret), "the secret is in the output:\n{log}");
}

/// The broker's connections go through a fault proxy (the stack's `PROXIED` listener
/// advertises the proxy's port, so bootstrap and every later connection pass it): hung for
/// 20 s, then reset for 10 s, then slowed by 500 ms, each while new changes arrive after the
/// 10,000-change workload. The host never exits, reads again once each fault ends, and every
/// change lands exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn the_broker_connections_hung_reset_and_slowed_lose_nothing() {
    let ports = stack_sh("echo \"$KAFKA_PROXIED_PORT\"; echo \"$KAFKA_PROXIED_UPSTREAM\"");
    let [listen, upstream] = &ports[..] else {
        panic!("tests/stack/lib.sh: {ports:?}")
    };
    assert!(
        std::net::TcpStream::connect(upstream).is_ok(),
        "no PROXIED listener on {upstream}: a broker started by an older tests/stack/up lacks \
         it; restart Kafka (tests/stack/down && tests/stack/up)"
    );
    let proxy = FaultProxy::start("broker", upstream, listen.parse().unwrap());
    let admin_port = free_port();
    let admin = AdminApi::new(admin_port);
    let load = workload(300, 10_000, 43);
    let setup = setup("e2e_broker_proxy", &load, |names, stack| {
        Pipeline {
            brokers: Some(format!("127.0.0.1:{listen}")),
            admin: Some(admin_port),
            ..Pipeline::default()
        }
        .toml(names, stack)
    })
    .await;
    let mut wrt = Wrt::start(&setup.config, &setup.dir.path().join("wrt.log"));
    let pid = wrt.child.id();
    apply_in_background(&setup, &load).join().unwrap();
    let mut expected = load.expected.clone();
    setup
        .wait_for(&expected, &mut wrt, Duration::from_secs(300))
        .await;
    let mut next_id = 700_001;
    let faults = [
        ("hung", "timeout", serde_json::json!({"timeout": 0}), 20),
        ("reset", "reset_peer", serde_json::json!({"timeout": 0}), 10),
    ];
    for (name, kind, attributes, seconds) in faults {
        proxy.add(name, kind, attributes);
        let started = Instant::now();
        // 200 changes made during the fault, which can only land after it.
        let late: Vec<String> = (next_id..next_id + 200).map(|id| insert(id, 0)).collect();
        for id in next_id..next_id + 200 {
            expected.insert(id, vec![("c", 0)]);
        }
        next_id += 200;
        setup
            .stack
            .sql(&format!("USE {};\n{}", setup.names.database, late.concat()));
        let mut unready = None;
        while started.elapsed() < Duration::from_secs(seconds) {
            wrt.assert_running();
            if unready.is_none() && readyz(&admin) == Some(503) {
                unready = Some(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        proxy.remove(name);
        let ended = Instant::now();
        setup
            .wait_for(&expected, &mut wrt, Duration::from_secs(120))
            .await;
        println!(
            "e2e broker connections {name} {seconds} s: {}; the 200 changes made during it all landed {:.1} s after it ended",
            unready.map_or("/readyz stayed 200".into(), |t| format!(
                "not ready after {:.1} s",
                t.as_secs_f64()
            )),
            ended.elapsed().as_secs_f64()
        );
    }
    proxy.add("slow", "latency", serde_json::json!({"latency": 500}));
    let started = Instant::now();
    let late: Vec<String> = (next_id..next_id + 200).map(|id| insert(id, 0)).collect();
    for id in next_id..next_id + 200 {
        expected.insert(id, vec![("c", 0)]);
    }
    setup
        .stack
        .sql(&format!("USE {};\n{}", setup.names.database, late.concat()));
    let want = setup
        .wait_for(&expected, &mut wrt, Duration::from_secs(120))
        .await;
    println!(
        "e2e broker connections slowed by 500 ms: 200 new changes landed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    proxy.remove("slow");
    let rss = peak_rss_mib(pid);
    let log = wrt.stop();
    let lake = setup.lake().await;
    let rows: usize = rows_by_id(&lake).values().map(Vec::len).sum();
    println!(
        "e2e broker connection faults: {want} changes written, {rows} rows in the lake (lost and doubled: 0, asserted next), peak RSS {rss:.0} MiB"
    );
    assert_exactly_once(&lake, &expected);
    assert!(
        !lake.keys().any(|k| k.starts_with("_dead_letter/")),
        "a broker fault is not a bad record: {log}"
    );
    assert_verified(&setup.config);
    setup.stack.drop_connector(&setup.names.connector);
}

/// No broker answering is an outage too: the host keeps trying and says why it is not
/// ready, instead of exiting or answering 200.
#[tokio::test(flavor = "multi_thread")]
async fn no_broker_answering_makes_the_host_unready_not_dead() {
    let dir = tempfile::tempdir().unwrap();
    let admin_port = free_port();
    let config = dir.path().join("pipeline.toml");
    std::fs::write(
        &config,
        format!(
            r#"name = "no-broker"

[source]
kind = "kafka"
brokers = "127.0.0.1:{kafka_port}"
topics = ["customers"]

[transform]
path = "{guest}"
config = {{ salt = "{SALT}" }}

[sink]
kind = "local"
path = "{lake}"

[admin]
listen = "127.0.0.1:{admin_port}"
"#,
            kafka_port = free_port(),
            guest = guest("pii_mask").display(),
            lake = dir.path().join("lake").display(),
        ),
    )
    .unwrap();
    let mut wrt = Wrt::start(&config, &dir.path().join("wrt.log"));
    let admin = AdminApi::new(admin_port);
    let started = Instant::now();
    let why = loop {
        wrt.assert_running();
        if let Some((503, why)) = admin.get("/readyz")
            && why.contains("no Kafka broker answers")
        {
            break why;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "/readyz never said no broker answers; see {}",
            wrt.log.display()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let noticed = started.elapsed();
    hold(&admin, 503, Duration::from_secs(10), &mut wrt);
    println!(
        "e2e no broker: not ready after {:.1} s ({}), still running 10 s later",
        noticed.as_secs_f64(),
        why.trim()
    );
    wrt.stop();
}

/// A guest that traps on one marked row inserted among the 10,000-change workload, read in
/// batches of up to 256: the batch is split until the row is alone, so exactly one dead
/// letter (kind `trap`) and every other change lands once.
/// The id of the row the hostile guest traps on; the workload's ids stay far below it.
const MARKED_ID: i64 = 1_000_000;

#[tokio::test(flavor = "multi_thread")]
async fn a_poison_row_in_a_batch_costs_one_dead_letter() {
    let mut load = workload(300, 10_000, 41);
    // Early in the stream, so it is in the backlog wrt starts on, where polls are full.
    load.streaming_sql.insert(1_000, insert(MARKED_ID, 777_777));
    let setup = setup("e2e_poison_row", &load, |names, stack| {
        Pipeline {
            topics: Some(format!("[\"^{}\\\\..*\"]", names.prefix)),
            guest: "hostile",
            config: r#"{ attack = "trap-marked", mark = "777777" }"#.into(),
            batch: "batch-size = 256\nmax-age-ms = 1000".into(),
            sections: "[pipeline]\nlanes = 1",
            ..Pipeline::default()
        }
        .toml(names, stack)
    })
    .await;
    let writer = apply_in_background(&setup, &load);
    // wrt starts once 3,000 changes wait in the topic's three partitions, and runs one lane,
    // so each poll (up to 256 records) is one transform call.
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let probe: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &setup.stack.kafka)
        .create()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let in_kafka = || -> i64 {
        (0..3)
            .map(|partition| {
                probe
                    .fetch_watermarks(&setup.names.topic(), partition, Duration::from_secs(5))
                    .map_or(0, |(_, high)| high)
            })
            .sum()
    };
    while in_kafka() < 3_000 {
        assert!(
            Instant::now() < deadline,
            "3,000 changes did not reach Kafka in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut wrt = Wrt::start(&setup.config, &setup.dir.path().join("wrt.log"));
    let pid = wrt.child.id();
    writer.join().unwrap();
    let written = setup
        .wait_for(&load.expected, &mut wrt, Duration::from_secs(300))
        .await;
    setup
        .wait_for_key("_dead_letter/", Duration::from_secs(60), &mut wrt)
        .await;
    let rss = peak_rss_mib(pid);
    let log = wrt.stop();
    let lake = setup.lake().await;
    // No row of the marked id either: `assert_changes_once` allows no unknown id.
    let landed = assert_changes_once(&lake, &load.expected);
    let in_lake: usize = landed.values().map(Vec::len).sum();
    let dead: Vec<serde_json::Value> = lake
        .iter()
        .filter(|(k, _)| k.starts_with("_dead_letter/"))
        .flat_map(|(_, lines)| lines.iter().map(|l| serde_json::from_str(l).unwrap()))
        .collect();
    assert_eq!(dead.len(), 1, "{dead:?}");
    // A poll returns what librdkafka has fetched, up to 256 records: the batch holding the
    // marked row is usually full, not always (88 events in one run).
    let batch: usize = log
        .lines()
        .find_map(|l| l.split("events=").nth(1)?.split(' ').next()?.parse().ok())
        .expect("the split is logged with the batch's size");
    assert!(batch > 1, "the marked row was not in a batch: {log}");
    assert_eq!(dead[0]["reason"]["kind"], "trap", "{dead:?}");
    assert!(
        dead[0]["value"].as_str().unwrap().contains("777777"),
        "the dead letter is the marked row: {dead:?}"
    );
    assert!(
        dead[0]["reason"]["message"]
            .as_str()
            .unwrap()
            .contains("hostile guest traps on the row marked \"777777\""),
        "the reason is the guest's panic message: {dead:?}"
    );
    println!(
        "e2e poison row: a batch of {batch} events split; {written} changes written, {in_lake} in the lake, 0 lost, 0 doubled, 1 dead letter ({}), peak RSS {rss:.0} MiB; {}",
        dead[0]["reason"]["message"],
        log.lines()
            .find(|l| l.contains("failed_calls"))
            .unwrap_or("no split logged")
    );
    assert_verified(&setup.config);
    setup.stack.drop_connector(&setup.names.connector);
}
