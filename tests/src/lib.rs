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
