//! `wrt infra` as a user runs it: help, a bad topology file, and plan / up / status / down
//! through the binary against moto's server (install it with `bash .ci/moto`).

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// moto 5.2 writes MSK's `creationTime` without a UTC offset, which the SDK in the binary
/// refuses (infra/README.md); the server is started with the offset added.
const MOTO_WITH_UTC_TIMES: &str = "
import sys
from moto.kafka import models
from moto.server import main
init = models.FakeKafkaCluster.__init__
def with_utc(self, *args, **kwargs):
    init(self, *args, **kwargs)
    self.creation_time += 'Z'
models.FakeKafkaCluster.__init__ = with_utc
sys.exit(main())
";

/// moto's server on a free loopback port, stopped when dropped.
struct Moto {
    child: Child,
    url: String,
}

impl Moto {
    fn start() -> Self {
        let server = std::env::var_os("WRT_MOTO_SERVER").map_or_else(
            || {
                let home = std::env::var_os("HOME").expect("HOME is set");
                PathBuf::from(home).join(".cache/wrt/moto-venv/bin/moto_server")
            },
            PathBuf::from,
        );
        // The venv's interpreter, beside its moto_server script.
        let python = server.with_file_name("python");
        assert!(
            python.exists(),
            "moto's server is not installed ({} is missing): run `bash .ci/moto` \
             (or point WRT_MOTO_SERVER at a moto_server in a virtualenv)",
            python.display()
        );
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(&python)
            .args(["-c", MOTO_WITH_UTC_TIMES, "-H", "127.0.0.1", "-p"])
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting moto's server");
        let moto = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let start = Instant::now();
        while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "moto's server did not answer on port {port} within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `wrt infra <args>` with moto's test credentials and nothing from the user's AWS setup.
fn infra(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wrt"))
        .arg("infra")
        .args(args)
        .current_dir(cwd)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("WRT_AWS_ENDPOINT_URL")
        .env_remove("WRT_INFRA_CONFIG")
        .output()
        .expect("running wrt")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `wrt infra` and returns its stdout, failing with both streams if it failed.
fn infra_ok(args: &[&str], cwd: &Path) -> String {
    let out = infra(args, cwd);
    assert!(
        out.status.success(),
        "wrt infra {args:?} failed:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// A folder holding `infra.toml`: the recipe without what moto lacks (MSK Connect) and
/// without a final snapshot to leave behind.
fn topology_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("infra.toml"),
        "[database]\nfinal-snapshot = false\n[connector]\nenabled = false\n",
    )
    .unwrap();
    dir
}

#[test]
fn infra_and_every_subcommand_have_help_with_an_example() {
    let cwd = std::env::temp_dir();
    for args in [
        &["--help"][..],
        &["check", "--help"],
        &["plan", "--help"],
        &["up", "--help"],
        &["status", "--help"],
        &["down", "--help"],
    ] {
        let help = infra_ok(args, &cwd);
        assert!(help.contains("Example:\n  wrt infra "), "{args:?}: {help}");
    }
}

#[test]
fn check_names_the_bad_field() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("infra.toml"),
        "[database]\nbinlog-format = \"MIXED\"\n",
    )
    .unwrap();
    let out = infra(&["check", "--config", "infra.toml"], dir.path());
    assert!(!out.status.success(), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("database.binlog-format = MIXED: cannot feed Debezium; set it to ROW"),
        "{stderr}"
    );
}

#[test]
fn plan_on_an_empty_account_lists_everything_in_dependency_order() {
    let moto = Moto::start();
    let dir = topology_dir();
    let plan = infra_ok(
        &[
            "plan",
            "--config",
            "infra.toml",
            "--endpoint-url",
            &moto.url,
        ],
        dir.path(),
    );
    // The library's snapshot of the same plan: the binary must print exactly that.
    let snapshot = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../infra/tests/snapshots/plan-empty-account.txt");
    assert_eq!(plan, std::fs::read_to_string(snapshot).unwrap());
}

#[test]
fn up_status_down_converge_and_leave_nothing_tagged() {
    let moto = Moto::start();
    let dir = topology_dir();
    let run = |action: &str| {
        infra_ok(
            &[
                action,
                "--config",
                "infra.toml",
                "--endpoint-url",
                &moto.url,
            ],
            dir.path(),
        )
    };

    let up = run("up");
    assert!(up.contains("creating vpc wrt-vpc"), "{up}");
    assert!(
        up.ends_with("up: 21 created or changed, 1 already as wanted\n"),
        "{up}"
    );

    let status = run("status");
    let states: Vec<&str> = status
        .lines()
        .map(|l| l.split_whitespace().next().unwrap_or_default())
        .collect();
    assert_eq!(states.len(), 22, "{status}");
    // Everything is there; binlog retention is SQL the hosts run, invisible to the API.
    assert!(
        states.iter().all(|s| *s == "ok" || *s == "deferred"),
        "{status}"
    );
    assert!(
        status.contains("ok       ec2 instance         wrt-host-1            i-"),
        "{status}"
    );

    let down = run("down");
    assert!(
        down.ends_with("down: 21 resources deleted, 0 remaining\n"),
        "{down}"
    );
    let after = run("status");
    assert!(
        after
            .lines()
            .all(|l| l.starts_with("missing") || l.starts_with("deferred")),
        "{after}"
    );
}
