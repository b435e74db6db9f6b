//! `wrt infra` as a user runs it: help, a bad topology file, and plan / up / status / down
//! through the binary against moto's server (install it with `bash .ci/moto`); and a
//! pipeline's Glue catalog, against moto's Glue and S3.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wrt_tests::guest;

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
    let mut all = vec!["infra"];
    all.extend(args);
    wrt_on_moto(&all, cwd)
}

/// Runs `wrt <args>` with moto's test credentials and nothing from the user's AWS setup.
fn wrt_on_moto(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wrt"))
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
fn plan_reads_the_working_directorys_infra_toml() {
    let moto = Moto::start();
    let dir = topology_dir();
    // No --config: the folder's infra.toml (connector off) is read, and the plan says so.
    let out = infra(&["plan", "--endpoint-url", &moto.url], dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        "topology: infra.toml (from the working directory)\n"
    );
    // The library's snapshot of the same plan: the binary must print exactly that.
    let snapshot = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../infra/tests/snapshots/plan-empty-account.txt");
    assert_eq!(
        text(&out.stdout),
        std::fs::read_to_string(snapshot).unwrap()
    );

    // Elsewhere, without a file, the recipe (connector included) is read, and said to be;
    // moto lacks MSK Connect, and its failure prints as one line.
    let empty = tempfile::tempdir().unwrap();
    let out = infra(&["plan", "--endpoint-url", &moto.url], empty.path());
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(
        lines[0].starts_with("topology: the recipe's defaults"),
        "{stderr}"
    );
    assert!(
        lines[1].starts_with("error: kafkaconnect:ListWorkerConfigurations: HTTP 500"),
        "{stderr}"
    );
}

#[test]
fn up_ships_binary_and_transform_then_down_removes_everything() {
    let moto = Moto::start();
    let dir = topology_dir();
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--endpoint-url", &moto.url]);
        if args[0] != "down" {
            all.extend(["--wrt-binary", "wrt-linux"]);
        }
        infra_ok(&all, dir.path())
    };
    // A copy: the shared build directory's guests may be rebuilt while the test runs.
    let v1 = dir.path().join("tagger_v1.wasm");
    std::fs::copy(guest("tagger_v1"), &v1).unwrap();
    let v1_digest = hex::encode(Sha256::digest(std::fs::read(&v1).unwrap()));
    // A debug wrt is over a gigabyte: the hosts get a stand-in Linux x86_64 executable (the
    // plan test above reads the running wrt, the default).
    let mut wrt = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0];
    wrt.resize(18, 0);
    wrt.extend_from_slice(&0x3e_u16.to_le_bytes());
    wrt.resize(4096, 0);
    std::fs::write(dir.path().join("wrt-linux"), &wrt).unwrap();
    let wrt_key = format!("bin/wrt-{}", hex::encode(Sha256::digest(&wrt)));

    // Nothing uploaded by hand: the hosts' wrt goes up; with no transform the hosts wait.
    let up = run(&["up"]);
    assert!(up.contains("creating vpc wrt-vpc"), "{up}");
    assert!(up.contains(&format!("[{wrt_key}]")), "{up}");
    assert!(
        up.ends_with("up: 22 created or changed, 2 already as wanted\n"),
        "{up}"
    );
    let status = run(&["status"]);
    assert!(
        status.contains(
            "waiting  transform            wrt                   nothing deployed: the hosts wait"
        ),
        "{status}"
    );

    // The first transform, deployed as `wrt deploy` deploys it; then nothing left to do.
    let up = run(&["up", "--transform", v1.to_str().unwrap()]);
    assert!(
        up.contains(&format!(
            "deployed {v1_digest} to pipeline `wrt` (was nothing)"
        )),
        "{up}"
    );
    assert!(
        up.ends_with("up: 1 created or changed, 23 already as wanted\n"),
        "{up}"
    );
    let again = run(&["up", "--transform", v1.to_str().unwrap()]);
    assert!(
        again.ends_with("up: 0 created or changed, 24 already as wanted\n"),
        "{again}"
    );
    assert!(!again.contains(&format!("deployed {v1_digest}")), "{again}");

    let status = run(&["status"]);
    let states: Vec<&str> = status
        .lines()
        .map(|l| l.split_whitespace().next().unwrap_or_default())
        .collect();
    assert_eq!(states.len(), 24, "{status}");
    // Everything is there; binlog retention is SQL the hosts run, invisible to the API; the
    // host runs, but moto runs no user data, so its wrt never reports ready.
    let host = (status.lines())
        .find(|l| l.contains("ec2 instance"))
        .unwrap_or_default();
    assert!(
        host.starts_with("waiting  ec2 instance         wrt-host-1            i-")
            && host.ends_with("  running, wrt not ready yet (no report)"),
        "{status}"
    );
    assert_eq!(
        states
            .iter()
            .filter(|s| **s != "ok" && **s != "deferred")
            .count(),
        1,
        "{status}"
    );
    for line in [
        format!("ok       s3 object            wrt                   {wrt_key}"),
        format!("ok       transform            wrt                   {v1_digest}"),
    ] {
        assert!(status.contains(&line), "{line:?} missing from:\n{status}");
    }

    let down = run(&["down"]);
    assert!(
        down.ends_with("down: 23 resources deleted, 0 remaining\n"),
        "{down}"
    );
    let after = run(&["status"]);
    assert!(
        after.lines().all(|l| l.starts_with("missing")
            || l.starts_with("deferred")
            || l.starts_with("waiting")),
        "{after}"
    );
}

#[test]
fn a_binary_for_other_hosts_is_refused_before_anything_is_made() {
    let dir = topology_dir();
    let mac = dir.path().join("wrt-macos");
    std::fs::write(&mac, [0xcf, 0xfa, 0xed, 0xfe, 7, 0, 0, 1]).unwrap();
    // No endpoint is reachable: the refusal must come before any AWS call.
    let out = infra(
        &[
            "up",
            "--wrt-binary",
            "wrt-macos",
            "--endpoint-url",
            "http://127.0.0.1:9",
        ],
        dir.path(),
    );
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("--wrt-binary: wrt-macos is a macOS (Mach-O) executable, but the hosts (t3.small) run Amazon Linux on x86_64")
            && stderr.contains("--target x86_64-unknown-linux-gnu"),
        "{stderr}"
    );
    assert_eq!(
        stderr.lines().count(),
        2,
        "the topology line and one error line: {stderr}"
    );
}

/// The bundled sample through the router example into moto's S3 as Parquet, with a Glue
/// catalog: every destination is a table with the files' columns and types, partitioned by
/// the keys of its Hive paths with every partition registered, and the sample's mid-stream
/// `ALTER TABLE customers ADD COLUMN loyalty_tier` reaches the table as an update.
#[tokio::test(flavor = "multi_thread")]
async fn parquet_tables_are_described_in_glue_and_follow_an_added_column() {
    use aws_sdk_glue::types::Column;
    let moto = Moto::start();
    let credentials =
        aws_sdk_s3::config::Credentials::new("testing", "testing", None, None, "moto");
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::new()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .endpoint_url(&moto.url)
            .force_path_style(true)
            .credentials_provider(credentials.clone())
            .build(),
    );
    s3.create_bucket().bucket("lake").send().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pipeline.toml");
    std::fs::write(
        &config,
        format!(
            r#"name = "glue"
[source]
kind = "sample"
[transform]
path = "{router}"
[batch]
format = "parquet"
[sink]
kind = "s3"
bucket = "lake"
prefix = "cdc/"
region = "us-east-1"
endpoint-url = "{url}"
force-path-style = true
[catalog]
kind = "glue"
database = "shop_lake"
endpoint-url = "{url}"
"#,
            router = guest("router").display(),
            url = moto.url
        ),
    )
    .unwrap();
    let out = wrt_on_moto(&["run", "--config", config.to_str().unwrap()], dir.path());
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    let glue = aws_sdk_glue::Client::from_conf(
        aws_sdk_glue::config::Builder::new()
            .behavior_version(aws_sdk_glue::config::BehaviorVersion::latest())
            .region(aws_sdk_glue::config::Region::new("us-east-1"))
            .endpoint_url(&moto.url)
            .credentials_provider(credentials)
            .build(),
    );
    let tables = glue
        .get_tables()
        .database_name("shop_lake")
        .send()
        .await
        .unwrap();
    let mut names: Vec<&str> = tables.table_list().iter().map(|t| t.name()).collect();
    names.sort();
    assert_eq!(
        names,
        ["_schema_changes", "customers", "order_lines", "orders"]
    );
    let columns = |list: &[Column]| -> Vec<(String, String)> {
        (list.iter())
            .map(|c| {
                (
                    c.name().to_string(),
                    c.r#type().unwrap_or_default().to_string(),
                )
            })
            .collect()
    };
    let customers = glue
        .get_table()
        .database_name("shop_lake")
        .name("customers")
        .send()
        .await
        .unwrap();
    let customers = customers.table().unwrap();
    let descriptor = customers.storage_descriptor().unwrap();
    assert_eq!(descriptor.location(), Some("s3://lake/cdc/customers/"));
    assert_eq!(
        descriptor
            .serde_info()
            .and_then(|s| s.serialization_library()),
        Some("org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe")
    );
    assert_eq!(
        columns(customers.partition_keys()),
        [
            ("dt".into(), "string".into()),
            ("country".into(), "string".into())
        ]
    );
    let have = columns(descriptor.columns());
    for expected in [
        ("id", "int"),
        ("balance", "decimal(10,2)"),
        ("vip", "smallint"),
        ("birth_date", "date"),
        ("created_at", "timestamp"),
        ("loyalty_tier", "string"),
        ("_deleted", "boolean"),
    ] {
        assert!(
            have.contains(&(expected.0.into(), expected.1.into())),
            "{expected:?} not in {have:?}"
        );
    }
    // The partition key is not also a column (Athena refuses that).
    assert!(!have.iter().any(|(name, _)| name == "country"), "{have:?}");

    // Created before the ALTER's rows were written, updated after: the first version lacks
    // the column, the last has it.
    let versions = glue
        .get_table_versions()
        .database_name("shop_lake")
        .table_name("customers")
        .send()
        .await
        .unwrap();
    let mut versions: Vec<(i64, Vec<(String, String)>)> = (versions.table_versions().iter())
        .map(|v| {
            let table = v.table().unwrap();
            let columns = columns(table.storage_descriptor().unwrap().columns());
            (v.version_id().unwrap().parse().unwrap(), columns)
        })
        .collect();
    versions.sort();
    assert!(versions.len() >= 2, "{versions:?}");
    let tier = |c: &Vec<(String, String)>| c.iter().any(|(name, _)| name == "loyalty_tier");
    assert!(
        !tier(&versions[0].1) && tier(&versions.last().unwrap().1),
        "{versions:?}"
    );

    // Every partition the files are in, and no other.
    let mut folders = std::collections::BTreeSet::new();
    let listed = s3
        .list_objects_v2()
        .bucket("lake")
        .prefix("cdc/customers/")
        .send()
        .await
        .unwrap();
    assert!(!listed.is_truncated().unwrap_or(false));
    for object in listed.contents() {
        let key = object.key().unwrap();
        let parts: Vec<&str> = key.split('/').collect();
        let value = |segment: &str| segment.split_once('=').unwrap().1.to_string();
        folders.insert(vec![value(parts[2]), value(parts[3])]);
    }
    let partitions = glue
        .get_partitions()
        .database_name("shop_lake")
        .table_name("customers")
        .send()
        .await
        .unwrap();
    let registered: std::collections::BTreeSet<Vec<String>> = partitions
        .partitions()
        .iter()
        .map(|p| p.values().to_vec())
        .collect();
    assert!(folders.len() > 1);
    assert_eq!(registered, folders);
    for partition in partitions.partitions() {
        // Registered before the ALTER or after, each partition reads through the table's
        // columns now (engines read a partition through its own list).
        let descriptor = partition.storage_descriptor().unwrap();
        assert_eq!(
            columns(descriptor.columns()),
            have,
            "{:?}",
            partition.values()
        );
        let location = descriptor.location().unwrap();
        assert_eq!(
            location,
            format!(
                "s3://lake/cdc/customers/dt={}/country={}/",
                partition.values()[0],
                partition.values()[1]
            )
        );
    }
}
