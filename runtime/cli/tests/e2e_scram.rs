//! End to end through the local stack's authenticated listener (`tests/stack/up`: SASL_SSL
//! with SCRAM-SHA-512 on 127.0.0.1:9094, a self-signed CA in the run dir): MariaDB →
//! Debezium → Kafka → `wrt run` over TLS + SCRAM → MinIO, then `wrt verify` over the same
//! listener. Wrong credentials and a wrong CA must end `wrt run` and `wrt verify` at once,
//! saying what to fix, without printing the password.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;

/// The variable the pipeline files name; the password is only ever in the environment.
const PASSWORD_ENV: &str = "WRT_KAFKA_PASSWORD";

/// The SCRAM listener's address, its user and password and the CA file, as `tests/stack/lib.sh`
/// defines them (moved by the same `WRT_STACK_*` variables).
struct Scram {
    brokers: String,
    user: String,
    password: String,
    ca_file: PathBuf,
}

impl Scram {
    fn get() -> Scram {
        let lines = stack_sh(
            "printf '%s\\n' \"$KAFKA_SCRAM_BOOTSTRAP\" \"$KAFKA_SCRAM_USER\" \
             \"$KAFKA_SCRAM_PASSWORD\" \"$KAFKA_CA_FILE\"",
        );
        let [brokers, user, password, ca_file] = &lines[..] else {
            panic!("tests/stack/lib.sh: {lines:?}")
        };
        assert!(
            std::net::TcpStream::connect(brokers).is_ok(),
            "nothing listens on the SCRAM listener {brokers}: a broker started by an older \
             tests/stack/up lacks it; restart Kafka (tests/stack/down && tests/stack/up)"
        );
        Scram {
            brokers: brokers.clone(),
            user: user.clone(),
            password: password.clone(),
            ca_file: ca_file.into(),
        }
    }
}

fn pipeline_toml(
    names: &Names,
    stack: &Stack,
    scram: &Scram,
    ca_file: &Path,
    admin: u16,
) -> String {
    Pipeline {
        brokers: Some(scram.brokers.clone()),
        source: format!(
            r#"auth = {{ mechanism = "scram-sha-512", username = "{user}", password-env = "{PASSWORD_ENV}", ca-file = "{ca}" }}"#,
            user = scram.user,
            ca = ca_file.display(),
        ),
        admin: Some(admin),
        ..Pipeline::default()
    }
    .toml(names, stack)
}

/// `wrt verify --config` with the password in the environment.
fn verify(config: &Path, password: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wrt"))
        .args(["verify", "--config"])
        .arg(config)
        .env("AWS_ACCESS_KEY_ID", MINIO_USER)
        .env("AWS_SECRET_ACCESS_KEY", MINIO_PASSWORD)
        .env(PASSWORD_ENV, password)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_scram_listener_carries_a_workload_exactly_once() {
    let scram = Scram::get();
    let admin_port = free_port();
    let admin = AdminApi::new(admin_port);
    let load = workload(300, 10_000, 31);
    let setup = setup("e2e_scram", &load, |names, stack| {
        pipeline_toml(names, stack, &scram, &scram.ca_file, admin_port)
    })
    .await;
    let started = Instant::now();
    let mut wrt = Wrt::start_with_env(
        &setup.config,
        &setup.dir.path().join("wrt.log"),
        &[(PASSWORD_ENV, &scram.password)],
    );
    let pid = wrt.child.id();
    let writer = apply_in_background(&setup, &load);
    writer.join().unwrap();
    let written = setup
        .wait_for(&load.expected, &mut wrt, Duration::from_secs(300))
        .await;
    let status = admin.status().to_string();
    let rss = peak_rss_mib(pid);
    let log = wrt.stop();
    let seconds = started.elapsed().as_secs_f64();

    let lake = setup.lake().await;
    let rows = rows_by_id(&lake);
    let in_lake: usize = rows.values().map(Vec::len).sum();
    let (mut lost, mut doubled) = (0, 0);
    for (id, changes) in &load.expected {
        for (op, rev) in changes {
            let copies = rows.get(id).map_or(0, |rows| {
                rows.iter()
                    .filter(|r| r["_op"] == *op && r["rev"] == *rev)
                    .count()
            });
            lost += usize::from(copies == 0);
            doubled += copies.saturating_sub(1);
        }
    }
    println!(
        "e2e scram: {written} changes written, {in_lake} in the lake, {lost} lost, {doubled} duplicated, {seconds:.1} s, peak RSS {rss:.0} MiB"
    );
    assert_exactly_once(&lake, &load.expected);

    let verified = verify(&setup.config, &scram.password);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );
    assert!(verified.status.success(), "wrt verify over SCRAM: {said}");
    for (what, text) in [
        ("the log", &log),
        ("/status", &status),
        ("wrt verify", &said),
    ] {
        assert!(
            !text.contains(&scram.password),
            "the password is in {what}:\n{text}"
        );
    }
    setup.stack.drop_connector(&setup.names.connector);
}

/// Runs `wrt run` until it exits, failing after 30 s; returns how long it took and its output.
fn run_until_exit(config: &Path, log: &Path, password: &str) -> (Duration, String) {
    Wrt::start_with_env(config, log, &[(PASSWORD_ENV, password)])
        .wait_failure(Duration::from_secs(30))
}

/// A refused login is not an outage: `wrt run` and `wrt verify` stop within seconds, naming
/// the user, the brokers and the variable to fix, and never the password they were given.
#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_or_ca_stops_run_and_verify_with_the_fix() {
    let scram = Scram::get();
    let stack = Stack::get();
    let names = Names::new("e2e_scram_refused");
    stack.s3_with_bucket(&names.bucket).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pipeline.toml");
    std::fs::write(
        &config,
        pipeline_toml(&names, &stack, &scram, &scram.ca_file, free_port()),
    )
    .unwrap();
    let wrong = "wrong-password-2718";

    let (took, output) = run_until_exit(&config, &dir.path().join("run.log"), wrong);
    println!(
        "e2e scram wrong password: wrt run exited after {:.1} s: {}",
        took.as_secs_f64(),
        output.trim().lines().last().unwrap_or_default()
    );
    let refused = format!(
        "the broker at {} refused the SCRAM-SHA-512 credentials of user `{}`",
        scram.brokers, scram.user
    );
    assert_eq!(output.matches(&refused).count(), 1, "said once: {output}");
    assert!(
        output.contains(&format!("{PASSWORD_ENV} (source.auth.password-env)")),
        "{output}"
    );
    assert!(
        !output.contains(wrong),
        "the password is in the output:\n{output}"
    );

    let started = Instant::now();
    let verified = verify(&config, wrong);
    let said = String::from_utf8_lossy(&verified.stderr);
    println!(
        "e2e scram wrong password: wrt verify exited after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(!verified.status.success(), "{said}");
    assert!(started.elapsed() < Duration::from_secs(30), "{said}");
    assert!(said.contains(&refused), "{said}");
    assert!(
        !said.contains(wrong),
        "the password is in the output:\n{said}"
    );

    // The system's CAs did not sign the stack's broker certificate.
    let system_cas = Path::new("/etc/ssl/certs/ca-certificates.crt");
    std::fs::write(
        &config,
        pipeline_toml(&names, &stack, &scram, system_cas, free_port()),
    )
    .unwrap();
    let (took, output) = run_until_exit(&config, &dir.path().join("tls.log"), &scram.password);
    println!(
        "e2e scram wrong CA: wrt run exited after {:.1} s",
        took.as_secs_f64()
    );
    assert!(
        output.contains("the TLS handshake with the broker at"),
        "{output}"
    );
    assert!(output.contains("source.auth.ca-file"), "{output}");
    assert!(
        !output.contains(&scram.password),
        "the password is in the output:\n{output}"
    );
}
