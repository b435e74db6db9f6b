//! The `wrt` command as a user runs it: `wrt test` on the guest examples, `wrt run` on the
//! embedded default, `--help`, and the errors a user sees.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use wrt_tests::{guest, repo_root};

fn wrt(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wrt"))
        .args(args)
        .current_dir(cwd)
        .env("WRT_CACHE_DIR", cache_dir())
        .output()
        .expect("running wrt")
}

/// One compile cache for every test, so each component is compiled once.
fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("components")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn example(name: &str) -> (String, String, String) {
    let dir = repo_root().join("guest-examples").join(name).join("tests");
    let path = |f: &str| dir.join(f).to_string_lossy().into_owned();
    (
        guest(&name.replace('-', "_"))
            .to_string_lossy()
            .into_owned(),
        path("events.jsonl"),
        path("expected.jsonl"),
    )
}

/// Reads the per-example transform config, one `key=value` a line.
fn example_config(name: &str) -> Vec<String> {
    let file = repo_root()
        .join("guest-examples")
        .join(name)
        .join("tests/config");
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .flat_map(|l| ["--config".to_string(), l.trim().to_string()])
        .collect()
}

fn wrt_test_example(name: &str, expect: &str) -> Output {
    let (wasm, _, _) = example(name);
    wrt_test_example_with(&wasm, name, expect)
}

/// `wrt test` of `wasm` on example `name`'s events and configuration.
fn wrt_test_example_with(wasm: &str, name: &str, expect: &str) -> Output {
    let (_, events, _) = example(name);
    let mut args = vec!["test", wasm, "--events", &events, "--expect", expect];
    let config = example_config(name);
    args.extend(config.iter().map(String::as_str));
    wrt(&args, &repo_root())
}

#[test]
fn both_examples_match_their_checked_in_expectations() {
    for name in ["pii-mask", "router"] {
        let (_, _, expected) = example(name);
        let out = wrt_test_example(name, &expected);
        assert!(
            out.status.success(),
            "{name}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        assert!(
            text(&out.stdout).starts_with("ok: "),
            "{}",
            text(&out.stdout)
        );
    }
}

#[test]
fn a_component_built_against_the_previous_contract_still_runs() {
    let (_, _, expected) = example("pii-mask");
    let old = repo_root().join("tests/fixtures/contract-0.1.0/pii_mask.wasm");
    let out = wrt_test_example_with(old.to_str().unwrap(), "pii-mask", &expected);
    assert!(
        out.status.success() && text(&out.stdout).starts_with("ok: "),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn a_wrong_expectation_fails_with_a_readable_diff() {
    let (_, _, expected) = example("pii-mask");
    let good = std::fs::read_to_string(&expected).unwrap();
    let first = good.lines().next().unwrap();
    let wrong_line = first.replacen("\"_op\":\"", "\"_op\":\"X", 1);
    assert_ne!(
        first, wrong_line,
        "the fixture's first line has an _op to alter"
    );
    let tmp = tempfile::tempdir().unwrap();
    let wrong = tmp.path().join("wrong.jsonl");
    std::fs::write(&wrong, good.replacen(first, &wrong_line, 1)).unwrap();

    let out = wrt_test_example("pii-mask", wrong.to_str().unwrap());
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains(&format!("-{wrong_line}")), "{stdout}");
    assert!(stdout.contains(&format!("+{first}")), "{stdout}");
    assert!(stdout.contains("FAILED: the output differs"), "{stdout}");
}

/// Every data object under `dir`: key → decompressed lines.
fn lake(dir: &Path) -> BTreeMap<String, Vec<String>> {
    wrt_tests::files(dir)
        .into_iter()
        .filter(|(key, _)| key.ends_with(".jsonl.gz"))
        .map(|(key, body)| {
            let mut text = String::new();
            flate2::read::GzDecoder::new(&body[..])
                .read_to_string(&mut text)
                .unwrap();
            (key, text.lines().map(String::from).collect())
        })
        .collect()
}

#[test]
fn run_on_the_embedded_default_writes_the_lake_and_a_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let pii = guest("pii_mask");
    let out = wrt(&["run", pii.to_str().unwrap(), "--json"], tmp.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let n = |k: &str| summary[k].as_u64().unwrap();
    assert!(n("change_events") >= 10_000, "{summary}");
    assert_eq!(n("records_out"), n("change_events") + n("schema_changes"));
    assert_eq!(n("dead_letters"), 0);
    assert!(n("tombstones") > 0 && n("heartbeats") > 0 && n("schema_changes") > 0);
    assert_eq!(
        n("records_in"),
        n("change_events") + n("tombstones") + n("heartbeats") + n("schema_changes")
    );

    // The default output folder is `lake`, laid out as the bucket will be.
    let objects = lake(&tmp.path().join("lake"));
    assert_eq!(objects.len() as u64, n("objects"));
    let lines: usize = objects.values().map(Vec::len).sum();
    assert_eq!(lines as u64, n("records_out"));
    for destination in ["customers", "orders", "order_lines", "_schema_changes"] {
        assert!(
            objects
                .keys()
                .any(|k| k.starts_with(&format!("{destination}/dt="))),
            "no objects for {destination}: {:?}",
            objects.keys().collect::<Vec<_>>()
        );
    }
    for key in objects.keys() {
        let file = key.rsplit('/').next().unwrap();
        let parts: Vec<&str> = file.trim_end_matches(".jsonl.gz").split('+').collect();
        assert_eq!(parts.len(), 4, "{key}: topic+partition+offset+digest");
        assert_eq!(parts[2].len(), 20, "{key}: zero-padded offset");
    }
    // PII is gone from every row.
    for line in objects.values().flatten() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(row.get("password_hash").is_none(), "{line}");
        if let Some(email) = row.get("email").and_then(|e| e.as_str()) {
            assert!(!email.contains('@') && email.len() == 64, "{line}");
        }
    }

    // The same input gives the same objects, byte for byte.
    let again = tempfile::tempdir().unwrap();
    let out = wrt(
        &["run", pii.to_str().unwrap(), "--out", "second"],
        again.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(lake(&again.path().join("second")), objects);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("records/s") && stdout.contains("dead letters"),
        "{stdout}"
    );
}

/// The rows of every JSON Lines object under `dir` by destination, each without its null
/// columns (a table has no "absent"), sorted.
fn rows_by_destination(lake: &BTreeMap<String, Vec<String>>) -> BTreeMap<String, Vec<String>> {
    let mut rows: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (key, lines) in lake {
        let destination = key.split('/').next().unwrap().to_string();
        for line in lines {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            rows.entry(destination.clone())
                .or_default()
                .push(without_nulls(&row));
        }
    }
    rows.values_mut().for_each(|r| r.sort());
    rows
}

/// A row as canonical text: keys sorted, null columns left out.
fn without_nulls(row: &serde_json::Value) -> String {
    let sorted: BTreeMap<&String, &serde_json::Value> = (row.as_object().unwrap().iter())
        .filter(|(_, v)| !v.is_null())
        .collect();
    serde_json::to_string(&sorted).unwrap()
}

#[test]
fn parquet_on_the_embedded_default_reads_back_in_pyarrow_as_the_json_lines_rows() {
    let tmp = tempfile::tempdir().unwrap();
    // The router example keeps every value's type (the PII example writes times as text).
    let router = guest("router");
    let run = |args: &[&str]| {
        let mut all = vec!["run", router.to_str().unwrap(), "--json"];
        all.extend(args);
        let out = wrt(&all, tmp.path());
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let lines = run(&["--out", "lines"]);
    let summary = run(&["--format", "parquet", "--out", "parquet"]);
    for counter in ["records_out", "dead_letters", "change_events"] {
        assert_eq!(summary[counter], lines[counter], "{counter}");
    }
    run(&["--format", "parquet", "--out", "again"]);
    let parquet = |dir: &str| -> BTreeMap<String, Vec<u8>> {
        let files = wrt_tests::files(&tmp.path().join(dir)).into_iter();
        files.filter(|(key, _)| key.ends_with(".parquet")).collect()
    };
    // A replay writes the same bytes.
    assert_eq!(parquet("parquet"), parquet("again"));

    let read: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&wrt_tests::pyarrow_read(&tmp.path().join("parquet"))).unwrap();
    assert_eq!(read.len(), parquet("parquet").len());
    assert_eq!(
        read.len() as u64,
        summary["objects"].as_u64().unwrap(),
        "every object is Parquet (no dead letters)"
    );
    let expected_types = [
        ("customers", "balance", "decimal128(10, 2)"),
        ("customers", "created_at", "timestamp[us, tz=UTC]"),
        ("customers", "birth_date", "date32[day]"),
        ("customers", "vip", "int16"),
        ("customers", "id", "int32"),
        ("customers", "prefs", "extension<arrow.json>"),
        ("orders", "id", "int64"),
        ("orders", "total", "decimal128(12, 2)"),
        ("orders", "placed_at", "timestamp[us, tz=UTC]"),
        ("orders", "pickup_time", "time64[us]"),
        ("orders", "_deleted", "bool"),
        ("order_lines", "unit_price", "decimal128(10, 2)"),
        ("order_lines", "updated_at", "timestamp[us, tz=UTC]"),
        ("order_lines", "discount", "double"),
        ("order_lines", "gift_wrap", "bool"),
        ("order_lines", "line_no", "int16"),
    ];
    let mut versions: BTreeMap<&str, std::collections::BTreeSet<String>> = BTreeMap::new();
    let mut rows: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (key, file) in &read {
        let destination = key.split('/').next().unwrap();
        for (at, column, expected) in expected_types {
            if at == destination {
                assert_eq!(file["types"][column], expected, "{key}: {column}");
            }
        }
        // The key names the source schema version the file's metadata records.
        let version = key.rsplit('.').nth(1).unwrap();
        if destination != "_schema_changes" {
            assert_eq!(file["metadata"]["wrt.source-schema"], version, "{key}");
            versions
                .entry(destination)
                .or_default()
                .insert(version.to_string());
        }
        for row in file["rows"].as_array().unwrap() {
            rows.entry(destination.to_string())
                .or_default()
                .push(without_nulls(row));
        }
    }
    rows.values_mut().for_each(|r| r.sort());
    // Every row, value for value, as the JSON Lines run wrote it: exactly once.
    assert_eq!(rows, rows_by_destination(&lake(&tmp.path().join("lines"))));
    // The sample's ALTER TABLE gives customers a second version; the others have one.
    assert_eq!(versions["customers"].len(), 2, "{versions:?}");
    assert_eq!(versions["orders"].len(), 1, "{versions:?}");
}

#[test]
fn every_command_has_help_with_an_example() {
    for command in [
        "run",
        "test",
        "sample",
        "new",
        "deploy",
        "rollback",
        "transforms",
        "transforms list",
        "transforms history",
        "verify",
    ] {
        let mut args: Vec<&str> = command.split(' ').collect();
        args.push("--help");
        let out = wrt(&args, &repo_root());
        assert!(out.status.success());
        let help = text(&out.stdout);
        assert!(
            help.contains("Example") && help.contains(":\n  wrt "),
            "{command}: {help}"
        );
    }
}

#[test]
fn a_missing_transform_is_explained() {
    let out = wrt(&["run", "nope.wasm"], &repo_root());
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("reading the transform nope.wasm"),
        "{stderr}"
    );
    assert!(stderr.contains("wasm32-wasip2"), "{stderr}");
}

#[test]
fn a_module_that_is_not_a_transform_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let bogus = tmp.path().join("bogus.wasm");
    std::fs::write(&bogus, b"\0asm\x01\0\0\0").unwrap();
    let out = wrt(&["run", bogus.to_str().unwrap()], tmp.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("not a valid WebAssembly component"),
        "{}",
        text(&out.stderr)
    );
    assert!(!tmp.path().join("lake").exists(), "nothing is written");
}

#[test]
fn sample_writes_records_that_wrt_test_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let out = wrt(&["sample", "--limit", "50", "--out", "s.jsonl"], tmp.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let router = guest("router");
    let out = wrt(
        &["test", router.to_str().unwrap(), "--events", "s.jsonl"],
        tmp.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().count(), 50);
}

/// The registry kept in a local lake: deploy, list, history, rollback, and `wrt run`
/// starting from the deployed version.
#[test]
fn deploys_and_rollbacks_move_the_registry_pointer() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pipeline.toml");
    let v1 = guest("tagger_v1");
    std::fs::write(
        &config,
        format!(
            "name = \"shop\"\n[source]\nkind = \"sample\"\n[transform]\npath = \"{}\"\n\
             [sink]\nkind = \"local\"\npath = \"lake\"\n[registry]\n",
            v1.display()
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    let run = |args: &[&str]| {
        let mut args = args.to_vec();
        args.extend(["--config", cfg]);
        wrt(&args, dir.path())
    };
    let digest = |name: &str| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(std::fs::read(guest(name)).unwrap()))
    };
    let (d1, d2) = (digest("tagger_v1"), digest("tagger_v2"));
    let v2 = guest("tagger_v2");

    let out = run(&["deploy", v1.to_str().unwrap(), "--by", "tester"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&format!("deployed {d1} to pipeline `shop` (was nothing)")));
    let out = run(&["deploy", v1.to_str().unwrap(), "--by", "tester"]);
    assert!(
        text(&out.stdout).contains("already runs"),
        "{}",
        text(&out.stdout)
    );
    // Checked under Winch by default; under the hosts' Cranelift when asked.
    let out = run(&[
        "deploy",
        v2.to_str().unwrap(),
        "--by",
        "tester",
        "--check-with",
        "cranelift",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // Refused: another world, and events the transform rejects.
    let out = run(&["deploy", guest("not-a-transform").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("does not implement"),
        "{}",
        text(&out.stderr)
    );
    let (pii, events, _) = example("pii-mask");
    let out = run(&["deploy", &pii, "--events", &events]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("of the events failed in the transform")
            && stderr.contains("nothing was shipped"),
        "{stderr}"
    );

    let list = text(&run(&["transforms", "list"]).stdout);
    assert_eq!(list.lines().count(), 2, "{list}");
    assert!(
        list.lines()
            .any(|l| l.starts_with(&d2) && l.contains("current")),
        "{list}"
    );
    assert!(
        !list.contains(&digest("pii_mask")),
        "a refused version is not stored"
    );

    let out = run(&["rollback", "--by", "tester"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&format!("back to {d1}")));
    let out = run(&["rollback", "--to", &d2[..10], "--by", "tester"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run(&["rollback", "--to", "ffffffff"]);
    assert!(
        text(&out.stderr).contains("no stored version"),
        "{}",
        text(&out.stderr)
    );

    let history = text(&run(&["transforms", "history"]).stdout);
    let actions: Vec<(&str, &str)> = history
        .lines()
        .map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            (words[1], words[2])
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("deploy", d1.as_str()),
            ("deploy", d2.as_str()),
            ("rollback", d1.as_str()),
            ("rollback", d2.as_str())
        ],
        "{history}"
    );
    assert!(history.contains("by tester"));

    // A host with the registry runs the deployed version, not transform.path.
    let out = wrt(&["run", "--config", cfg], dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&format!("transform {}", &d2[..12])),
        "{}",
        text(&out.stdout)
    );
    let lake = lake(&dir.path().join("lake"));
    let version = lake.values().flatten().find_map(|line| {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        row.get("_version").map(|v| v.to_string())
    });
    assert_eq!(version.as_deref(), Some("\"v2\""));
}

/// A guest drawing on each source of non-determinism besides its input (std's keyed
/// hashing, WASI `random`, the monotonic clock; `tests/guests/entropy`) prints the same
/// bytes on every `wrt test` and writes the same objects on every `wrt run`.
#[test]
fn a_guest_drawing_on_entropy_gives_the_same_bytes_on_every_run() {
    let entropy = guest("entropy");
    let entropy = entropy.to_str().unwrap();
    let (_, events, _) = example("pii-mask");
    for (source, column) in [
        ("hash", "keyed_hash"),
        ("random", "random"),
        ("clock", "slept_ns"),
    ] {
        let config = format!("source={source}");
        let test = || {
            let out = wrt(
                &["test", entropy, "--events", &events, "--config", &config],
                &repo_root(),
            );
            assert!(out.status.success(), "{source}: {}", text(&out.stderr));
            text(&out.stdout)
        };
        let printed = test();
        assert_eq!(printed.lines().count(), 17, "{source}: {printed}");
        assert!(printed.contains(&format!("\"{column}\":")), "{source}");
        assert_eq!(
            test(),
            printed,
            "{source}: a second `wrt test` printed other bytes"
        );

        let run = || {
            let dir = tempfile::tempdir().unwrap();
            let out = dir.path().join("lake");
            let ran = wrt(
                &[
                    "run",
                    entropy,
                    "--set",
                    &config,
                    "--out",
                    out.to_str().unwrap(),
                ],
                dir.path(),
            );
            assert!(ran.status.success(), "{source}: {}", text(&ran.stderr));
            wrt_tests::files(&out)
        };
        let objects = run();
        assert!(
            objects.keys().any(|k| k.starts_with("customers/")),
            "{source}: {:?}",
            objects.keys()
        );
        assert!(
            objects == run(),
            "{source}: a second `wrt run` wrote other objects"
        );
    }
}

/// `wrt test --check-replay` passes a guest whose draws are fixed by the batch, and
/// refuses one whose output depends on what the instance did before: std bumps the key of
/// each new `RandomState`, so a hash made in a call depends on the calls before it.
#[test]
fn check_replay_refuses_output_that_depends_on_earlier_calls() {
    let entropy = guest("entropy");
    let (_, events, _) = example("pii-mask");
    let check = |source: &str| {
        let config = format!("source={source}");
        let args = [
            "test",
            entropy.to_str().unwrap(),
            "--events",
            &events,
            "--config",
            &config,
            "--check-replay",
        ];
        wrt(&args, &repo_root())
    };
    for source in ["random", "clock"] {
        let out = check(source);
        assert!(out.status.success(), "{source}: {}", text(&out.stderr));
    }
    let out = check("hash");
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("the output depends on earlier calls: event shop.shop.customers/2/0: column `keyed_hash` was \"")
            && stderr.contains("on the same instance again"),
        "{stderr}"
    );
}

/// What a guest prints reaches the log by default, one line each, tagged with the
/// transform version and the batch's source position.
#[test]
fn what_a_guest_prints_is_logged_with_its_tags() {
    let hostile = guest("hostile");
    let (_, events, _) = example("pii-mask");
    let args = [
        "test",
        hostile.to_str().unwrap(),
        "--events",
        &events,
        "--config",
        "attack=print",
    ];
    // The first line the guest printed, from a run that succeeded.
    let guest_line = |out: Output| {
        let stderr = text(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        stderr
            .lines()
            .find(|l| l.contains("hostile guest prints at offset 0"))
            .unwrap_or_else(|| panic!("no guest line in:\n{stderr}"))
            .to_string()
    };
    let line = guest_line(wrt(&args, &repo_root()));
    assert!(
        line.contains("wrt::guest")
            && line.contains("version=")
            && line.contains("position=shop.shop.customers/")
            && line.contains("stream=\"stdout\""),
        "{line}"
    );

    // Under `wrt run`, the line also names the pipeline.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("printing.toml"),
        format!(
            "name = \"printing\"\n[source]\nkind = \"sample\"\n[transform]\npath = \"{}\"\n\
             [transform.config]\nattack = \"print\"\n[sink]\nkind = \"local\"\npath = \"lake\"\n",
            hostile.display()
        ),
    )
    .unwrap();
    let line = guest_line(wrt(&["run", "--config", "printing.toml"], dir.path()));
    assert!(
        line.contains("pipeline{name=printing}") && line.contains("version="),
        "{line}"
    );
}

/// `wrt deploy --events` ships a guest that keeps a cache (the same output either way) and
/// refuses one that keeps a counter, naming the first differing event and field.
#[test]
fn deploy_refuses_a_guest_whose_output_depends_on_earlier_calls() {
    let dir = tempfile::tempdir().unwrap();
    let stateful = guest("stateful");
    let (_, events, _) = example("pii-mask");
    let deploy = |keep: &str| {
        let config = dir.path().join(format!("{keep}.toml"));
        std::fs::write(
            &config,
            format!(
                "name = \"{keep}\"\n[source]\nkind = \"sample\"\n[transform]\npath = \"{}\"\n\
                 [transform.config]\nkeep = \"{keep}\"\n\
                 [sink]\nkind = \"local\"\npath = \"lake\"\n[registry]\n",
                stateful.display()
            ),
        )
        .unwrap();
        let args = [
            "deploy",
            stateful.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--events",
            &events,
            "--by",
            "tester",
        ];
        wrt(&args, dir.path())
    };

    let out = deploy("cache");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("and the same again on a used and on a fresh instance"),
        "{}",
        text(&out.stdout)
    );

    let out = deploy("counter");
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("nothing was shipped")
            && stderr.contains(
                "the output depends on earlier calls: event shop.shop.customers/2/0: \
                 column `n` was 1 on a fresh instance, 14 on the same instance again"
            ),
        "{stderr}"
    );
    let pipelines = wrt_tests::files(&dir.path().join("lake"));
    assert!(
        pipelines.keys().all(|key| !key.contains("/counter/")),
        "a refused version is not stored: {:?}",
        pipelines.keys()
    );
}

/// A pipeline file for the lake `wrt run <pii_mask>` wrote into `lake` under `dir`: the sample
/// source has no consumer group, so `wrt verify` checks the windows against each other.
fn local_pipeline(dir: &Path, lake: &str) -> String {
    let file = format!("{lake}.toml");
    std::fs::write(
        dir.join(&file),
        format!(
            "name = \"local\"\n[source]\nkind = \"sample\"\n[transform]\npath = \"{}\"\n\
             [sink]\nkind = \"local\"\npath = \"{lake}\"\n",
            guest("pii_mask").display()
        ),
    )
    .unwrap();
    file
}

/// `wrt verify` passes on a lake `wrt run` made, and fails, naming the keys, once an object
/// is deleted (a gap), copied under another window's or version's key (an overlap), or made
/// by a version the pipeline never ran.
#[test]
fn verify_finds_gaps_overlaps_and_unknown_versions() {
    let tmp = tempfile::tempdir().unwrap();
    let pii = guest("pii_mask");
    let out = wrt(
        &[
            "run",
            pii.to_str().unwrap(),
            "--max-records",
            "500",
            "--out",
            "clean",
        ],
        tmp.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let verify = |lake: &str| {
        let config = local_pipeline(tmp.path(), lake);
        let json = wrt(&["verify", "--config", &config, "--json"], tmp.path());
        let human = wrt(&["verify", "--config", &config], tmp.path());
        assert_eq!(json.status.code(), human.status.code());
        let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
        (human.status.code(), report, text(&human.stdout))
    };
    let (code, report, stdout) = verify("clean");
    assert_eq!(code, Some(0), "{stdout}");
    assert_eq!(report["ok"], true, "{report}");
    assert!(stdout.contains("ok: "), "{stdout}");

    // Partition 0 of the orders topic: 1,180 records, so windows at 0, 500 and 1000.
    let clean = wrt_tests::files(&tmp.path().join("clean"));
    let mut orders: Vec<&String> = clean
        .keys()
        .filter(|k| k.starts_with("orders/") && k.contains("/shop.shop.orders+0+"))
        .filter(|k| k.ends_with(".jsonl.gz"))
        .collect();
    orders.sort_by_key(|k| k.rsplit('/').next().unwrap().to_string());
    assert_eq!(orders.len(), 3, "{orders:?}");
    let meta = |key: &str| format!("{key}.wrt-meta.json");
    // A copy of the clean lake, damaged by `damage`; then the problems' kinds and the report.
    let damaged = |name: &str, damage: &dyn Fn(&Path)| {
        let dir = tmp.path().join(name);
        for (key, body) in &clean {
            std::fs::create_dir_all(dir.join(key).parent().unwrap()).unwrap();
            std::fs::write(dir.join(key), body).unwrap();
        }
        damage(&dir);
        let (code, report, stdout) = verify(name);
        assert_eq!(code, Some(1), "{name}: {stdout}");
        assert_eq!(report["ok"], false);
        let kinds: Vec<String> = report["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["kind"].as_str().unwrap().to_string())
            .collect();
        (kinds, stdout)
    };

    let (kinds, stdout) = damaged("deleted", &|dir| {
        std::fs::remove_file(dir.join(orders[1])).unwrap();
    });
    assert_eq!(kinds, ["gap"], "{stdout}");
    assert!(
        stdout.contains("gap shop.shop.orders/0 offsets 500..1000"),
        "{stdout}"
    );
    assert!(
        stdout.contains(orders[0]) && stdout.contains(orders[2]),
        "{stdout}"
    );

    let other_window = orders[0].replace("+00000000000000000000+", "+00000000000000000250+");
    let digest12 = orders[0]
        .rsplit('+')
        .next()
        .unwrap()
        .trim_end_matches(".jsonl.gz");
    let other_version = orders[0].replace(digest12, "0123456789ab");
    for copy in [&other_window, &other_version] {
        let (kinds, stdout) = damaged("copied", &|dir| {
            // As S3's CopyObject does, the metadata goes with the bytes.
            std::fs::copy(dir.join(orders[0]), dir.join(copy)).unwrap();
            std::fs::copy(dir.join(meta(orders[0])), dir.join(meta(copy))).unwrap();
        });
        assert_eq!(kinds, ["overlap"], "{stdout}");
        assert!(stdout.contains(copy.as_str()), "{stdout}");
        std::fs::remove_dir_all(tmp.path().join("copied")).unwrap();
    }

    let unknown = orders[1].replace(digest12, "feedfacecafe");
    let (kinds, stdout) = damaged("unknown", &|dir| {
        std::fs::rename(dir.join(orders[1]), dir.join(&unknown)).unwrap();
        let pairs = std::fs::read_to_string(dir.join(meta(orders[1]))).unwrap();
        let mut pairs: serde_json::Value = serde_json::from_str(&pairs).unwrap();
        pairs["wrt-transform"] = format!("feedfacecafe{}", "0".repeat(52)).into();
        std::fs::write(dir.join(meta(&unknown)), pairs.to_string()).unwrap();
    });
    assert_eq!(kinds, ["unknown-version"], "{stdout}");
    assert!(stdout.contains(&unknown), "{stdout}");
}

#[test]
fn verify_names_the_field_of_a_bad_configuration() {
    let tmp = tempfile::tempdir().unwrap();
    let config = local_pipeline(tmp.path(), "no-such-lake");
    let out = wrt(&["verify", "--config", &config], tmp.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("sink.path"),
        "{}",
        text(&out.stderr)
    );
}

/// Log lines written to a pipe or a file carry no colour codes; `--log-format json` (or
/// `WRT_LOG_FORMAT=json`) makes each one a JSON object.
#[test]
fn logs_off_a_terminal_are_plain_or_json() {
    let tmp = tempfile::tempdir().unwrap();
    let pii = guest("pii_mask");
    let run = |format: Option<&str>, env: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_wrt"));
        if let Some(format) = format {
            command.args(["--log-format", format]);
        }
        if let Some(env) = env {
            command.env("WRT_LOG_FORMAT", env);
        }
        let out = command
            .args(["run", pii.to_str().unwrap(), "--out", "lake"])
            .current_dir(tmp.path())
            .env("WRT_CACHE_DIR", cache_dir())
            .env("WRT_LOG", "info")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        let stderr = text(&out.stderr);
        assert!(stderr.lines().count() > 0, "no log lines");
        assert!(!stderr.contains("\x1b["), "{stderr}");
        stderr
    };
    let plain = run(None, None);
    assert!(plain.contains(" WARN "), "{plain}");
    for stderr in [run(Some("json"), None), run(None, Some("json"))] {
        for line in stderr.lines() {
            let line: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            assert!(line["level"].is_string() && line["fields"]["message"].is_string());
        }
    }
}
