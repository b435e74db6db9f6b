//! Builds the guest workspaces (examples and hostile test guests) for wasm32-wasip2, so tests
//! run against components made from the current source, never committed binaries.

use std::path::{Path, PathBuf};
use std::process::Command;

const WORKSPACES: [(&str, &str); 2] = [
    ("guest-examples", "Cargo.toml"),
    ("tests/guests", "Cargo.toml"),
];

fn main() {
    // Read at run time: a build script binary may be reused from a checkout elsewhere.
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it");
    let root = PathBuf::from(manifest_dir).join("..");
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    // Beside the host's own target dir (target/<profile>/build/<crate>/out → target), so
    // every profile shares one guest build; a separate dir also avoids cargo's build lock.
    let target_dir = out_dir
        .ancestors()
        .nth(4)
        .map_or_else(|| out_dir.join("guests"), |t| t.join("wasm-guests"));

    for (workspace, manifest) in WORKSPACES {
        let dir = root.join(workspace);
        for watched in ["Cargo.toml", "Cargo.lock"] {
            println!("cargo:rerun-if-changed={}", dir.join(watched).display());
        }
        rerun_if_any_changed(&dir);
        build(&dir.join(manifest), &target_dir);
    }
    rerun_if_any_changed(&root.join("sdk"));
    let artifacts = target_dir.join("wasm32-wasip2").join("release");
    println!("cargo:rustc-env=WRT_GUESTS={}", artifacts.display());
}

fn build(manifest: &Path, target_dir: &Path) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--release",
        "--quiet",
        "--target",
        "wasm32-wasip2",
        "--manifest-path",
    ])
    .arg(manifest)
    .arg("--target-dir")
    .arg(target_dir);
    // The outer build's flags and wrappers (clippy, coverage) are for host code only.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("running cargo for the guests");
    assert!(
        status.success(),
        "building the guests in {} failed; is the target installed? \
         `rustup target add wasm32-wasip2`",
        manifest.display()
    );
}

fn rerun_if_any_changed(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.file_name().is_some_and(|n| n == "target") {
            continue;
        }
        if path.is_dir() {
            rerun_if_any_changed(&path);
        } else {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}
