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
