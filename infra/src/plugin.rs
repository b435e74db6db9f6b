//! The MSK Connect custom plugin zip, assembled from pinned downloads: Debezium's MySQL
//! connector as Maven Central publishes it for Kafka Connect (the `plugin` archive: the
//! connector and every runtime jar it needs), checked against Central's SHA-1, and the
//! Secrets Manager config provider, checked against the SHA-256 pinned in the topology.
//!
//! The zip is written the same way every time (sorted entries, stored, fixed timestamps), so
//! the same inputs give the same bytes and the same digest.

use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::config::Topology;
use crate::error::{Error, Result};
use crate::stack::Progress;

/// Where each part of the plugin comes from, and how it is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipe {
    /// The Debezium version, which names the archive.
    pub debezium_version: String,
    pub parts: Vec<Part>,
}

/// One downloaded archive whose files go under `dir/` in the plugin zip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub dir: String,
    pub url: String,
    pub check: Check,
    /// The topology field that sets it, for error messages.
    pub field: String,
}

/// How a download is verified before it is used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// The `.sha1` file the Maven repository publishes beside every artifact.
    RepositorySha1,
    /// A SHA-256 pinned in the topology; `None` refuses the download.
    Sha256(Option<String>),
}

/// The assembled zip.
#[derive(Debug, Clone)]
pub struct PluginZip {
    pub bytes: Vec<u8>,
    /// SHA-256 of `bytes`, hex.
    pub sha256: String,
    /// Every file in it, sorted.
    pub files: Vec<String>,
}

/// Where the plugin zips live in the registry bucket, one per content digest.
pub(crate) const KEY_PREFIX: &str = "plugins/";

impl Recipe {
    pub fn of(t: &Topology) -> Self {
        let c = &t.connector;
        let v = &c.debezium_version;
        let repository = c.maven_repository.trim_end_matches('/');
        Recipe {
            debezium_version: v.clone(),
            parts: vec![
                Part {
                    dir: "debezium-connector-mysql".into(),
                    url: format!(
                        "{repository}/io/debezium/debezium-connector-mysql/{v}/\
                         debezium-connector-mysql-{v}-plugin.zip"
                    ),
                    check: Check::RepositorySha1,
                    field: "connector.debezium-version".into(),
                },
                Part {
                    dir: "msk-config-providers".into(),
                    url: c.config_provider.url.clone(),
                    check: Check::Sha256(c.config_provider.sha256.clone()),
                    field: "connector.config-provider".into(),
                },
            ],
        }
    }

    /// The start of the plugin zip's key: the version, so a listing finds this recipe's zips.
    pub fn key_prefix(&self) -> String {
        format!(
            "{KEY_PREFIX}debezium-connector-mysql-{}-",
            self.debezium_version
        )
    }

    /// The key a zip with `sha256` is stored under.
    pub fn key(&self, sha256: &str) -> String {
        format!("{}{sha256}.zip", self.key_prefix())
    }

    /// A digest of every input and its pin: stored with the zip, so `plan` can tell without
    /// downloading anything whether the zip in the bucket is this recipe's.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        for part in &self.parts {
            h.update(format!("{}\n{}\n{:?}\n", part.dir, part.url, part.check));
        }
        hex::encode(h.finalize())
    }

    /// What `up` needs before it may download: every pin set.
    pub fn check_pins(&self) -> Result<()> {
        for part in &self.parts {
            if part.check == Check::Sha256(None) {
                return Err(Error::Artifact {
                    field: format!("{}.sha256", part.field),
                    message: format!(
                        "is not set, and wrt puts nothing unverified in the plugin. {} is not \
                         published with a checksum wrt can check: download it, check it, and \
                         set {}.sha256 to the output of `sha256sum` on it",
                        part.url, part.field
                    ),
                });
            }
        }
        Ok(())
    }
}

/// Downloads (or takes from `cache`) every part, checks it, and zips the lot.
pub fn assemble(recipe: &Recipe, cache: &Path, progress: Progress<'_>) -> Result<PluginZip> {
    recipe.check_pins()?;
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for part in &recipe.parts {
        let archive = fetch_checked(part, cache, progress)?;
        files.extend(unzip(part, &archive)?);
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let bytes = zip(&files).map_err(|e| Error::Artifact {
        field: "connector".into(),
        message: format!("writing the plugin zip: {e}"),
    })?;
    Ok(PluginZip {
        sha256: hex::encode(Sha256::digest(&bytes)),
        files: files.into_iter().map(|(name, _)| name).collect(),
        bytes,
    })
}

/// The files of one downloaded archive, under the part's directory (the archive's own
/// top-level directory, if it has one, is dropped).
fn unzip(part: &Part, archive: &[u8]) -> Result<Vec<(String, Vec<u8>)>> {
    let bad = |e: &dyn std::fmt::Display| Error::Artifact {
        field: part.field.clone(),
        message: format!("{} is not a readable zip: {e}", part.url),
    };
    let mut zip = zip::ZipArchive::new(Cursor::new(archive)).map_err(|e| bad(&e))?;
    let mut files = Vec::new();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| bad(&e))?;
        if entry.is_dir() {
            continue;
        }
        let name = entry.name().map_err(|e| bad(&e))?.into_owned();
        let base = name.rsplit('/').next().unwrap_or(&name).to_owned();
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry.read_to_end(&mut bytes).map_err(|e| bad(&e))?;
        files.push((format!("{}/{base}", part.dir), bytes));
    }
    if !files.iter().any(|(name, _)| name.ends_with(".jar")) {
        return Err(bad(&"it holds no jar"));
    }
    Ok(files)
}

fn zip(files: &[(String, Vec<u8>)]) -> zip::result::ZipResult<Vec<u8>> {
    // Jars are compressed already; stored entries with a fixed time and system keep the bytes
    // a pure function of the inputs, whichever machine runs `up`.
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .system(zip::System::Unix)
        .last_modified_time(zip::DateTime::default())
        .unix_permissions(0o644);
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, bytes) in files {
        writer.start_file(name.as_str(), options)?;
        writer.write_all(bytes)?;
    }
    Ok(writer.finish()?.into_inner())
}

/// The part's archive, from the cache if a checked copy is there, else downloaded and
/// checked (then cached).
fn fetch_checked(part: &Part, cache: &Path, progress: Progress<'_>) -> Result<Vec<u8>> {
    let file_name = part.url.rsplit('/').next().unwrap_or("download");
    let cached = cache.join(file_name);
    let failed = |message: String| Error::Artifact {
        field: part.field.clone(),
        message,
    };
    let expected = match &part.check {
        Check::RepositorySha1 => {
            let sums = fetch(&format!("{}.sha1", part.url), &|_: &str| {})
                .map_err(|e| failed(format!("fetching the checksum of {}: {e}", part.url)))?;
            let sum = String::from_utf8_lossy(&sums);
            let sum = sum
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_lowercase();
            Expected::Sha1(sum)
        }
        Check::Sha256(pin) => Expected::Sha256(pin.clone().unwrap_or_default().to_lowercase()),
    };
    if let Ok(bytes) = std::fs::read(&cached)
        && expected.matches(&bytes)
    {
        progress(&format!("using {} (checked, cached)", cached.display()));
        return Ok(bytes);
    }
    let bytes =
        fetch(&part.url, progress).map_err(|e| failed(format!("downloading {}: {e}", part.url)))?;
    if !expected.matches(&bytes) {
        return Err(failed(format!(
            "{} does not match its {}: the download is damaged or not what was pinned",
            part.url,
            expected.describe()
        )));
    }
    // Best effort: a cache that cannot be written only costs a download next time.
    let _ = std::fs::create_dir_all(cache).and_then(|()| {
        let partial = cache.join(format!("{file_name}.partial"));
        std::fs::write(&partial, &bytes)?;
        std::fs::rename(&partial, &cached)
    });
    Ok(bytes)
}

enum Expected {
    Sha1(String),
    Sha256(String),
}

impl Expected {
    fn matches(&self, bytes: &[u8]) -> bool {
        match self {
            Expected::Sha1(sum) => hex::encode(Sha1::digest(bytes)) == *sum,
            Expected::Sha256(sum) => hex::encode(Sha256::digest(bytes)) == *sum,
        }
    }

    fn describe(&self) -> String {
        match self {
            Expected::Sha1(sum) => format!("published SHA-1 {sum}"),
            Expected::Sha256(sum) => format!("pinned SHA-256 {sum}"),
        }
    }
}

/// GETs `url` (`https://`, `http://` or `file://`), reporting progress every tenth.
fn fetch(url: &str, progress: Progress<'_>) -> std::result::Result<Vec<u8>, String> {
    if let Some(path) = url.strip_prefix("file://") {
        return std::fs::read(PathBuf::from(path)).map_err(|e| e.to_string());
    }
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_body(Some(Duration::from_secs(300)))
            // The system's trust store, as curl and Maven use: a proxy's CA is honoured.
            .tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::PlatformVerifier)
                    .build(),
            )
            .build(),
    );
    let mut response = agent.get(url).call().map_err(|e| e.to_string())?;
    let total: Option<u64> = (response.headers().get("content-length"))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let name = url.rsplit('/').next().unwrap_or(url);
    let mib = |n: u64| n as f64 / f64::from(1 << 20);
    if let Some(total) = total {
        progress(&format!(
            "downloading {name} ({:.1} MiB) from {url}",
            mib(total)
        ));
    }
    let mut reader = response.body_mut().as_reader();
    let mut bytes = Vec::with_capacity(total.unwrap_or(0) as usize);
    let mut buffer = vec![0; 1 << 16];
    let mut shown = 0;
    loop {
        let n = reader.read(&mut buffer).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        bytes.extend_from_slice(&buffer[..n]);
        if let Some(total) = total.filter(|t| *t > 0) {
            let tenth = bytes.len() as u64 * 10 / total;
            if tenth > shown {
                shown = tenth;
                progress(&format!(
                    "  {name}: {:.1} of {:.1} MiB",
                    mib(bytes.len() as u64),
                    mib(total)
                ));
            }
        }
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A zip holding `files`, as a download would be.
    fn archive(files: &[(&str, &[u8])]) -> Vec<u8> {
        let owned: Vec<(String, Vec<u8>)> = files
            .iter()
            .map(|(n, b)| ((*n).to_owned(), b.to_vec()))
            .collect();
        zip(&owned).unwrap()
    }

    fn recipe(dir: &Path, provider_sha256: Option<String>) -> Recipe {
        let dbz = dir.join("debezium-connector-mysql-3.4.0.Final-plugin.zip");
        let bytes = archive(&[
            (
                "debezium-connector-mysql/debezium-core-3.4.0.Final.jar",
                b"core",
            ),
            ("debezium-connector-mysql/LICENSE.txt", b"license"),
        ]);
        std::fs::write(&dbz, &bytes).unwrap();
        std::fs::write(
            dir.join("debezium-connector-mysql-3.4.0.Final-plugin.zip.sha1"),
            hex::encode(Sha1::digest(&bytes)),
        )
        .unwrap();
        let provider = dir.join("provider.zip");
        std::fs::write(&provider, archive(&[("lib/provider.jar", b"provider")])).unwrap();
        Recipe {
            debezium_version: "3.4.0.Final".into(),
            parts: vec![
                Part {
                    dir: "debezium-connector-mysql".into(),
                    url: format!("file://{}", dbz.display()),
                    check: Check::RepositorySha1,
                    field: "connector.debezium-version".into(),
                },
                Part {
                    dir: "msk-config-providers".into(),
                    url: format!("file://{}", provider.display()),
                    check: Check::Sha256(provider_sha256),
                    field: "connector.config-provider".into(),
                },
            ],
        }
    }

    fn sha256_of(path: &Path) -> String {
        hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
    }

    #[test]
    fn the_zip_holds_both_parts_and_is_the_same_every_time() {
        let dir = tempfile::tempdir().unwrap();
        let mut recipe = recipe(dir.path(), None);
        recipe.parts[1].check = Check::Sha256(Some(sha256_of(&dir.path().join("provider.zip"))));
        let cache = dir.path().join("cache");
        let first = assemble(&recipe, &cache, &|_: &str| {}).unwrap();
        assert_eq!(
            first.files,
            [
                "debezium-connector-mysql/LICENSE.txt",
                "debezium-connector-mysql/debezium-core-3.4.0.Final.jar",
                "msk-config-providers/provider.jar",
            ]
        );
        let lines = std::sync::Mutex::new(Vec::new());
        let again = assemble(&recipe, &cache, &|l: &str| {
            lines.lock().unwrap().push(l.to_owned())
        })
        .unwrap();
        assert_eq!(again.bytes, first.bytes);
        assert_eq!(again.sha256, first.sha256);
        assert!(
            lines
                .lock()
                .unwrap()
                .iter()
                .all(|l| l.starts_with("using ")),
            "the second assembly downloaded again: {lines:?}"
        );
        assert_eq!(
            recipe.key(&first.sha256),
            format!(
                "plugins/debezium-connector-mysql-3.4.0.Final-{}.zip",
                first.sha256
            )
        );
    }

    #[test]
    fn a_download_that_does_not_match_its_checksum_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let recipe = recipe(dir.path(), Some("00".repeat(32)));
        let err = assemble(&recipe, &dir.path().join("cache"), &|_: &str| {})
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("connector.config-provider: ")
                && err.contains("does not match its pinned SHA-256 0000"),
            "{err}"
        );
        // And a damaged Maven artifact against its published SHA-1.
        std::fs::write(
            dir.path()
                .join("debezium-connector-mysql-3.4.0.Final-plugin.zip.sha1"),
            "da39a3ee5e6b4b0d3255bfef95601890afd80709  debezium-connector-mysql.zip\n",
        )
        .unwrap();
        let err = assemble(&recipe, &dir.path().join("cache"), &|_: &str| {})
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("does not match its published SHA-1 da39a3ee"),
            "{err}"
        );
    }

    #[test]
    fn an_unpinned_provider_is_refused_before_any_download() {
        let dir = tempfile::tempdir().unwrap();
        let recipe = recipe(dir.path(), None);
        let err = assemble(&recipe, &dir.path().join("cache"), &|_: &str| {})
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("connector.config-provider.sha256: is not set"),
            "{err}"
        );
        assert!(!dir.path().join("cache").exists());
    }

    #[test]
    fn the_fingerprint_follows_the_pins() {
        let t = Topology::default();
        let a = Recipe::of(&t);
        let mut t2 = t.clone();
        t2.connector.debezium_version = "3.3.1.Final".into();
        let b = Recipe::of(&t2);
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint(), Recipe::of(&t).fingerprint());
        assert_eq!(
            a.parts[0].url,
            format!(
                "https://repo1.maven.org/maven2/io/debezium/debezium-connector-mysql/{v}/\
                 debezium-connector-mysql-{v}-plugin.zip",
                v = t.connector.debezium_version
            )
        );
    }
}
