//! Helpers shared by the tests in `tests/tests/`.
//!
//! The guests are built by `build.rs`; [`guest`] finds them.

use std::path::PathBuf;

/// The path of a guest component built by `build.rs`, e.g. `guest("pii_mask")`.
pub fn guest(name: &str) -> PathBuf {
    PathBuf::from(env!("WRT_GUESTS")).join(format!("{name}.wasm"))
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every file under `dir`, keyed by its path relative to `dir` (an object key, for a folder
/// that stands in for a bucket).
pub fn files(dir: &std::path::Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        for entry in std::fs::read_dir(&path)
            .expect("a readable folder")
            .flatten()
        {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let key = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.insert(key, std::fs::read(&p).expect("a readable file"));
            }
        }
    }
    out
}

/// pyarrow's reading of every `.parquet` file under `dir`, as the JSON document
/// `tests/readers/parquet_rows.py` prints: relative path → types, metadata and rows. The
/// reader is installed by `.ci/readers` (in `WRT_READERS_VENV`, by default
/// `~/.cache/wrt/readers-venv`).
pub fn pyarrow_read(dir: &std::path::Path) -> Vec<u8> {
    let venv = std::env::var_os("WRT_READERS_VENV").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/wrt/readers-venv"),
        PathBuf::from,
    );
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `bash .ci/readers` (installs pyarrow)",
        python.display()
    );
    let out = std::process::Command::new(&python)
        .arg(repo_root().join("tests/readers/parquet_rows.py"))
        .arg(dir)
        .output()
        .expect("running the Parquet reader");
    assert!(
        out.status.success(),
        "the Parquet reader failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
