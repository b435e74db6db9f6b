//! What `up` ships besides AWS resources, into the stack's buckets: the connector plugin zip
//! and the wrt binary (registry bucket, each under its content digest), and the first
//! transform (the lake's registry, through the deploy the caller hands in).

use std::fmt;
use std::future::Future;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result, aws};
use crate::plan::Bucket;
use crate::plugin::{self, Recipe};
use crate::stack::{Found, Progress, Stack};

/// Where the hosts' wrt binaries live in the registry bucket, one per content digest.
const BINARY_PREFIX: &str = "bin/wrt-";

/// Object metadata naming the plugin recipe a zip was assembled from.
const RECIPE_META: &str = "wrt-recipe";

/// A deploy of the first transform through the registry, run by `up` once the lake exists.
pub type DeployFuture = Pin<Box<dyn Future<Output = std::result::Result<(), String>> + Send>>;

/// The transform `up` deploys, and how.
#[derive(Clone)]
pub struct TransformDeploy {
    /// SHA-256 (hex) of the component, as the registry names it.
    pub digest: String,
    /// Checks the component and moves the registry's pointer to it.
    pub deploy: Arc<dyn Fn() -> DeployFuture + Send + Sync>,
}

impl fmt::Debug for TransformDeploy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransformDeploy")
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

/// The wrt binary the hosts install, checked to run on them: made only by [`HostBinary::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostBinary {
    path: PathBuf,
    /// SHA-256 (hex) of the file.
    sha256: String,
}

impl HostBinary {
    /// Reads `path`, refusing it unless it is a Linux executable for `architecture`.
    pub fn check(path: &Path, architecture: &str, instance_type: &str) -> Result<Self> {
        let refuse = |message: String| Error::Artifact {
            field: "--wrt-binary".into(),
            message,
        };
        let reading = |e: std::io::Error| refuse(format!("reading {}: {e}", path.display()));
        // Streamed: a debug build of wrt is over a gigabyte.
        let mut file = std::fs::File::open(path).map_err(reading)?;
        let mut header = Vec::with_capacity(64);
        (&mut file)
            .take(64)
            .read_to_end(&mut header)
            .map_err(reading)?;
        let found = executable_kind(&header);
        if found != format!("Linux {architecture}") {
            return Err(refuse(format!(
                "{} is {found}, but the hosts ({instance_type}) run Amazon Linux on \
                 {architecture}: build wrt for them with `cargo build --release --target \
                 {architecture}-unknown-linux-gnu` on Linux (or with `cross` from another OS), \
                 then pass it with --wrt-binary PATH",
                path.display()
            )));
        }
        let mut hasher = Sha256::new();
        hasher.update(&header);
        std::io::copy(&mut file, &mut hasher).map_err(reading)?;
        Ok(Self {
            path: path.to_path_buf(),
            sha256: hex::encode(hasher.finalize()),
        })
    }

    /// SHA-256 (hex) of the file.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    fn key(&self) -> String {
        format!("{BINARY_PREFIX}{}", self.sha256)
    }
}

/// What kind of executable `bytes` is, in words: `Linux x86_64`, `a macOS (Mach-O)
/// executable`, ...
fn executable_kind(bytes: &[u8]) -> String {
    match bytes {
        [0x7f, b'E', b'L', b'F', class, data, ..] if bytes.len() >= 20 => {
            if *class != 2 || *data != 1 {
                return "a 32-bit or big-endian ELF file".into();
            }
            match u16::from_le_bytes([bytes[18], bytes[19]]) {
                0x3e => "Linux x86_64".into(),
                0xb7 => "Linux aarch64".into(),
                other => format!("an ELF executable for machine {other:#x}"),
            }
        }
        [0xcf, 0xfa, 0xed, 0xfe, ..]
        | [0xfe, 0xed, 0xfa, 0xcf, ..]
        | [0xca, 0xfe, 0xba, 0xbe, ..] => "a macOS (Mach-O) executable".into(),
        [b'M', b'Z', ..] => "a Windows executable".into(),
        _ => "not an executable".into(),
    }
}

impl Stack {
    fn registry(&self) -> String {
        self.t.name(crate::plan::Resource::Bucket(Bucket::Registry))
    }

    fn lake(&self) -> String {
        self.t.name(crate::plan::Resource::Bucket(Bucket::Lake))
    }

    /// Keys under `prefix` in `bucket`; none when the bucket is not there yet.
    async fn keys(&self, bucket: &str, prefix: &str) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut pages = (self.c.s3.list_objects_v2().bucket(bucket).prefix(prefix))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            match page {
                Ok(page) => keys.extend(
                    page.contents()
                        .iter()
                        .filter_map(|o| o.key())
                        .map(String::from),
                ),
                Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_bucket()) => {
                    return Ok(Vec::new());
                }
                Err(e) => return Err(aws("s3:ListObjectsV2")(e)),
            }
        }
        Ok(keys)
    }

    async fn delete_keys(&self, bucket: &str, keys: Vec<String>) -> Result<()> {
        for chunk in keys.chunks(1000) {
            let objects = chunk
                .iter()
                .map(|k| {
                    ObjectIdentifier::builder()
                        .key(k)
                        .build()
                        .expect("the key is set")
                })
                .collect();
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .expect("the objects are set");
            (self.c.s3.delete_objects().bucket(bucket).delete(delete))
                .send()
                .await
                .map_err(aws("s3:DeleteObjects"))?;
        }
        Ok(())
    }

    /// Everything `prefix` holds in `bucket`, found for `down` whatever recipe or build
    /// put it there.
    async fn found_under(&self, bucket: &str, prefix: &str) -> Result<Option<Found>> {
        Ok(self
            .keys(bucket, prefix)
            .await?
            .into_iter()
            .next()
            .map(|_| Found::new(format!("s3://{bucket}/{prefix}*"))))
    }

    // --- the wrt binary -------------------------------------------------------------

    pub(crate) async fn observe_host_binary(&self) -> Result<Option<Found>> {
        let binary = self.host_binary()?;
        let key = binary.key();
        let keys = self.keys(&self.registry(), &key).await?;
        Ok(keys.contains(&key).then(|| Found::new(key)))
    }

    pub(crate) async fn owned_host_binaries(&self) -> Result<Option<Found>> {
        self.found_under(&self.registry(), BINARY_PREFIX).await
    }

    pub(crate) async fn upload_host_binary(&self, progress: Progress<'_>) -> Result<String> {
        let binary = self.host_binary()?;
        let key = binary.key();
        progress(&format!(
            "uploading {} to s3://{}/{key} ...",
            binary.path.display(),
            self.registry()
        ));
        let body = ByteStream::from_path(&binary.path)
            .await
            .map_err(|e| Error::Artifact {
                field: "--wrt-binary".into(),
                message: format!("reading {}: {e}", binary.path.display()),
            })?;
        (self.c.s3.put_object().bucket(self.registry()).key(&key))
            .body(body)
            .content_type("application/octet-stream")
            .send()
            .await
            .map_err(aws("s3:PutObject"))?;
        Ok(key)
    }

    pub(crate) async fn delete_host_binaries(&self) -> Result<()> {
        let keys = self.keys(&self.registry(), BINARY_PREFIX).await?;
        self.delete_keys(&self.registry(), keys).await
    }

    // --- the connector plugin zip ---------------------------------------------------

    pub(crate) async fn observe_plugin_archive(&self) -> Result<Option<Found>> {
        let recipe = Recipe::of(&self.t);
        let fingerprint = recipe.fingerprint();
        for key in self.keys(&self.registry(), &recipe.key_prefix()).await? {
            let head = (self.c.s3.head_object().bucket(self.registry()).key(&key))
                .send()
                .await
                .map_err(aws("s3:HeadObject"))?;
            let made_from = head.metadata().and_then(|m| m.get(RECIPE_META));
            if made_from == Some(&fingerprint) {
                return Ok(Some(Found::new(key)));
            }
        }
        Ok(None)
    }

    pub(crate) async fn owned_plugin_archives(&self) -> Result<Option<Found>> {
        self.found_under(&self.registry(), plugin::KEY_PREFIX).await
    }

    /// Assembles the plugin zip (downloads are cached) and uploads it under its digest.
    pub(crate) async fn upload_plugin_archive(&self, progress: Progress<'_>) -> Result<String> {
        let recipe = Recipe::of(&self.t);
        let cache = self.downloads.clone();
        // The progress callback is borrowed; the blocking download reports through a channel.
        let (lines, mut shown) = tokio::sync::mpsc::unbounded_channel::<String>();
        let assembly = tokio::task::spawn_blocking({
            let recipe = recipe.clone();
            move || {
                plugin::assemble(&recipe, &cache, &|line: &str| {
                    let _ = lines.send(line.to_owned());
                })
            }
        });
        while let Some(line) = shown.recv().await {
            progress(&line);
        }
        let zip = assembly.await.map_err(|e| Error::Artifact {
            field: "connector".into(),
            message: format!("assembling the plugin stopped: {e}"),
        })??;
        let key = recipe.key(&zip.sha256);
        let jars = zip.files.iter().filter(|f| f.ends_with(".jar")).count();
        progress(&format!(
            "uploading the plugin ({jars} jars, {:.1} MiB) to s3://{}/{key} ...",
            zip.bytes.len() as f64 / f64::from(1 << 20),
            self.registry()
        ));
        (self.c.s3.put_object().bucket(self.registry()).key(&key))
            .body(ByteStream::from(zip.bytes))
            .content_type("application/zip")
            .metadata(RECIPE_META, recipe.fingerprint())
            .send()
            .await
            .map_err(aws("s3:PutObject"))?;
        Ok(key)
    }

    pub(crate) async fn delete_plugin_archives(&self) -> Result<()> {
        let keys = self.keys(&self.registry(), plugin::KEY_PREFIX).await?;
        self.delete_keys(&self.registry(), keys).await
    }

    // --- the first transform --------------------------------------------------------

    /// The registry's prefix for this stack's pipeline (the hosts' `name` is the stack).
    fn transforms_prefix(&self) -> String {
        format!("_wrt/transforms/{}/", self.t.stack)
    }

    /// The digest the registry's pointer names, if anything was deployed.
    pub(crate) async fn deployed_transform(&self) -> Result<Option<String>> {
        let key = format!("{}current.json", self.transforms_prefix());
        if !self.keys(&self.lake(), &key).await?.contains(&key) {
            return Ok(None);
        }
        let out = (self.c.s3.get_object().bucket(self.lake()).key(&key))
            .send()
            .await
            .map_err(aws("s3:GetObject"))?;
        let bytes = out.body.collect().await.map_err(|e| Error::Artifact {
            field: "transform".into(),
            message: format!("reading s3://{}/{key}: {e}", self.lake()),
        })?;
        let pointer: serde_json::Value =
            serde_json::from_slice(&bytes.into_bytes()).map_err(|e| Error::Artifact {
                field: "transform".into(),
                message: format!("s3://{}/{key} is damaged: {e}", self.lake()),
            })?;
        Ok(pointer["current"].as_str().map(str::to_owned))
    }

    pub(crate) async fn observe_transform(&self) -> Result<Option<Found>> {
        let Some(current) = self.deployed_transform().await? else {
            return Ok(None);
        };
        let mut found = Found::new(current.clone());
        if let Some(wanted) = &self.transform {
            found.change_unless(current == wanted.digest, || {
                format!(
                    "runs {}, --transform is {}",
                    short(&current),
                    short(&wanted.digest)
                )
            });
        }
        Ok(Some(found))
    }

    pub(crate) async fn owned_transforms(&self) -> Result<Option<Found>> {
        self.found_under(&self.lake(), &self.transforms_prefix())
            .await
    }

    /// Deploys `--transform`; without one, nothing (the hosts wait for a deploy).
    pub(crate) async fn deploy_transform(&self) -> Result<Option<String>> {
        let Some(transform) = &self.transform else {
            return Ok(None);
        };
        (transform.deploy)()
            .await
            .map_err(|message| Error::Artifact {
                field: "--transform".into(),
                message,
            })?;
        Ok(Some(transform.digest.clone()))
    }

    pub(crate) async fn delete_transforms(&self) -> Result<()> {
        let keys = self.keys(&self.lake(), &self.transforms_prefix()).await?;
        self.delete_keys(&self.lake(), keys).await
    }
}

fn short(digest: &str) -> &str {
    &digest[..digest.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first bytes of an ELF executable for `machine`, as `check` reads them.
    fn elf(machine: u16) -> Vec<u8> {
        let mut bytes = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0];
        bytes.resize(18, 0);
        bytes.extend_from_slice(&machine.to_le_bytes());
        bytes.resize(64, 0);
        bytes
    }

    #[test]
    fn the_binary_must_match_the_hosts() {
        let dir = tempfile::tempdir().unwrap();
        let linux = dir.path().join("wrt-linux");
        std::fs::write(&linux, elf(0x3e)).unwrap();
        let ok = HostBinary::check(&linux, "x86_64", "t3.small").unwrap();
        assert_eq!(ok.sha256, hex::encode(Sha256::digest(elf(0x3e))));
        assert_eq!(ok.key(), format!("bin/wrt-{}", ok.sha256));

        let err = HostBinary::check(&linux, "aarch64", "t4g.small")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("is Linux x86_64, but the hosts (t4g.small) run Amazon Linux on aarch64"),
            "{err}"
        );

        let mac = dir.path().join("wrt-mac");
        std::fs::write(&mac, [0xcf, 0xfa, 0xed, 0xfe, 7, 0, 0, 1]).unwrap();
        let err = HostBinary::check(&mac, "x86_64", "t3.small")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("--wrt-binary: ")
                && err.contains("is a macOS (Mach-O) executable, but the hosts (t3.small)")
                && err.contains("--target x86_64-unknown-linux-gnu"),
            "{err}"
        );
    }
}
