//! Transforms in every supported language, built from `sdk/wit/` with the toolchains
//! `sdk/toolchains` installs: the PII example in each language makes byte-identical output
//! on the same fixture, and the project `wrt new` makes for each language builds and passes
//! its own `wrt test`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use wrt_tests::{guest, repo_root};

/// The languages other than Rust, whose PII examples live in `guest-examples/<lang>/pii-mask`.
const GUEST_LANGS: [&str; 4] = ["js", "python", "go", "c"];

fn run(cmd: &mut Command) -> Output {
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        output.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Installs the toolchains once, before any build script runs (they would race otherwise).
fn toolchains() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        run(Command::new("bash")
            .arg("-c")
            .arg("source sdk/toolchains")
            .current_dir(repo_root()));
    });
}

/// Builds the project in `dir` with `sdk/<lang>/build` into `out`.
fn build(lang: &str, dir: &Path, out: &Path) {
    toolchains();
    run(
        Command::new(repo_root().join("sdk").join(lang).join("build"))
            .arg(dir)
            .arg(out),
    );
}

fn wrt(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wrt"))
        .args(args)
        .current_dir(cwd)
        .env(
            "WRT_CACHE_DIR",
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("components"),
        )
        .output()
        .expect("running wrt")
}

/// A unified diff, expected first.
fn unified(expected: &str, actual: &str) -> String {
    similar::TextDiff::from_lines(expected, actual)
        .unified_diff()
        .header("expected", "actual")
        .to_string()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("UTF-8 output")
}

/// What `wrt test` prints for the PII example `wasm` on `events`.
fn pii_output(wasm: &Path, events: &Path) -> String {
    let output = wrt(
        &[
            "test",
            wasm.to_str().unwrap(),
            "--events",
            events.to_str().unwrap(),
            "--config",
            "salt=test-salt",
        ],
        &repo_root(),
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout(&output)
}

/// The PII example in every language on the example's fixture and on the conformance suite
/// (`sdk/conformance/`: every value type, NULLs, Unicode edge cases, timestamps before 1970
/// and with 9-digit fractions, large decimals): byte-identical output, and the same objects
/// from `wrt run`.
#[test]
fn pii_examples_agree_byte_for_byte_in_every_language() {
    let fixture = repo_root().join("guest-examples/pii-mask/tests");
    let events = fixture.join("events.jsonl");
    let conformance = repo_root().join("sdk/conformance");
    let print = |wasm: &Path| {
        (
            pii_output(wasm, &events),
            pii_output(wasm, &conformance.join("events.jsonl")),
        )
    };
    let events = events.to_str().unwrap();

    // `wrt run` into a folder: the same objects, keyed by each version's digest.
    let lake = |wasm: &Path| {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().to_str().unwrap();
        let wasm_path = wasm.to_str().unwrap();
        let args = [
            "run",
            wasm_path,
            "--events",
            events,
            "--set",
            "salt=test-salt",
            "--out",
            out,
        ];
        let ran = wrt(&args, &repo_root());
        assert!(
            ran.status.success(),
            "{}",
            String::from_utf8_lossy(&ran.stderr)
        );
        // Keys name the digest's first 12 hex digits; dead letters carry all of it.
        let digest = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(std::fs::read(wasm).unwrap()))
        };
        wrt_tests::files(dir.path())
            .into_iter()
            // The objects, not the local store's metadata beside them (it names the version).
            .filter(|(key, _)| key.ends_with(".jsonl.gz"))
            .map(|(key, body)| {
                let mut text = String::new();
                std::io::Read::read_to_string(
                    &mut flate2::read::GzDecoder::new(&body[..]),
                    &mut text,
                )
                .unwrap();
                (
                    key.replace(&digest[..12], "DIGEST"),
                    text.replace(&digest, "DIGEST"),
                )
            })
            .collect::<std::collections::BTreeMap<_, _>>()
    };

    let rust = print(&guest("pii_mask"));
    let rust_lake = lake(&guest("pii_mask"));
    let expected = std::fs::read_to_string(fixture.join("expected.jsonl")).unwrap();
    assert_eq!(rust.0, expected, "the Rust guest is the reference");
    assert!(rust.0.contains("[type-mismatch]") && rust.0.lines().count() == 17);
    let expected = std::fs::read_to_string(conformance.join("expected.jsonl")).unwrap();
    assert_eq!(rust.1, expected, "the conformance suite's expectation");

    let out = tempfile::tempdir().unwrap();
    for lang in GUEST_LANGS {
        let wasm = out.path().join(format!("pii_mask_{lang}.wasm"));
        build(
            lang,
            &repo_root()
                .join("guest-examples")
                .join(lang)
                .join("pii-mask"),
            &wasm,
        );
        let (actual, conforms) = print(&wasm);
        assert!(actual == rust.0, "{lang} differs from Rust:\n{actual}");
        assert!(
            conforms == rust.1,
            "{lang} fails the conformance suite:\n{}",
            unified(&rust.1, &conforms)
        );
        assert!(
            lake(&wasm) == rust_lake,
            "{lang}: `wrt run` wrote other objects"
        );
    }
}

#[test]
fn new_projects_build_and_pass_their_own_test_in_every_language() {
    let root = tempfile::tempdir().unwrap();
    for lang in ["rust", "js", "python", "go", "c"] {
        let name = format!("tagger-{lang}");
        let dir = root.path().join(&name);
        let created = wrt(&["new", &name, "--lang", lang], root.path());
        assert!(
            created.status.success(),
            "{}",
            String::from_utf8_lossy(&created.stderr)
        );

        // The README's commands, run as written.
        let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
        let sdk = std::fs::canonicalize(repo_root().join("sdk")).unwrap();
        let build_line = format!("{}/{lang}/build . {name}.wasm", sdk.display());
        assert!(
            readme.contains(&build_line),
            "{lang}: README lacks `{build_line}`:\n{readme}"
        );
        let test_line = format!(
            "wrt test {name}.wasm --events tests/events.jsonl --expect tests/expected.jsonl"
        );
        assert!(
            readme.contains(&test_line),
            "{lang}: README lacks the test command"
        );

        build(lang, &dir, &dir.join(format!("{name}.wasm")));
        let tested = wrt(&test_line.split(' ').skip(1).collect::<Vec<_>>(), &dir);
        assert!(
            tested.status.success(),
            "{lang}: {}{}",
            stdout(&tested),
            String::from_utf8_lossy(&tested.stderr)
        );
        assert!(
            stdout(&tested).starts_with("ok: 4 records, 4 output lines match"),
            "{lang}"
        );

        let again = wrt(&["new", &name, "--lang", lang], root.path());
        assert!(
            !again.status.success(),
            "{lang}: a second `wrt new` must refuse the folder"
        );
        assert!(String::from_utf8_lossy(&again.stderr).contains("already exists and is not empty"));
    }
}

/// Guests that draw on their language's sources of non-determinism (`tests/guests/<lang>/
/// entropy`) print the same bytes on two `wrt test` runs (two fresh instances) and write the
/// same objects on two `wrt run`s of the embedded default: JavaScript's `Math.random()` and
/// `Date.now()`, Python's iteration order of a set of strings, and Go's clocks around a sleep
/// and a goroutine, whose waits run through Go's scheduler polling WASI's monotonic clock.
/// JavaScript and Python also pass `--check-replay`: a replay from a fresh instance agrees.
#[test]
fn entropy_guests_give_the_same_bytes_on_every_run() {
    let events = repo_root().join("guest-examples/pii-mask/tests/events.jsonl");
    let events = events.to_str().unwrap();
    let out = tempfile::tempdir().unwrap();
    for (lang, column, replays) in [
        ("js", "math_random", true),
        ("python", "set_order", true),
        ("go", "slept", false),
    ] {
        let wasm = out.path().join(format!("entropy_{lang}.wasm"));
        build(
            lang,
            &repo_root().join("tests/guests").join(lang).join("entropy"),
            &wasm,
        );
        let wasm = wasm.to_str().unwrap();
        let test = |extra: &[&str]| {
            let mut args = vec!["test", wasm, "--events", events];
            args.extend(extra);
            let output = wrt(&args, &repo_root());
            assert!(
                output.status.success(),
                "{lang}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            stdout(&output)
        };
        let printed = test(&[]);
        assert_eq!(printed.lines().count(), 17, "{lang}: {printed}");
        assert!(printed.contains(&format!("\"{column}\":")), "{lang}");
        assert!(
            test(&[]) == printed,
            "{lang}: a second `wrt test` printed other bytes"
        );
        if replays {
            assert!(test(&["--check-replay"]) == printed, "{lang}");
        }
        if lang == "go" {
            // The sleeps took virtual time: 20 ms and 3 ms, plus a few clock steps.
            let slept: Vec<&str> = printed
                .split("\"slept\":\"")
                .skip(1)
                .map(|rest| rest.split('"').next().unwrap())
                .collect();
            assert_eq!(slept.len(), 13);
            assert!(slept.iter().all(|s| s.starts_with("23.0")), "{slept:?}");
        }

        let lake = || {
            let dir = tempfile::tempdir().unwrap();
            let lake = dir.path().join("lake");
            let ran = wrt(&["run", wasm, "--out", lake.to_str().unwrap()], dir.path());
            assert!(
                ran.status.success(),
                "{lang}: {}",
                String::from_utf8_lossy(&ran.stderr)
            );
            wrt_tests::files(&lake)
        };
        let objects = lake();
        assert!(
            objects.keys().any(|k| k.starts_with("customers/")),
            "{lang}: {:?}",
            objects.keys()
        );
        assert!(
            objects == lake(),
            "{lang}: a second `wrt run` wrote other objects"
        );
    }
}
