//! The sink stage: makes objects durable. `put` returns only once the object is durable,
//! because the offsets behind it are committed right after.

pub mod s3;

use std::path::{Path, PathBuf};

use crate::encode::Object;

/// Why the store failed. Always the store's side: retrying later may help.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{location}: {message}")]
    Store { location: String, message: String },
}

/// Somewhere objects become durable.
pub trait Sink {
    /// Writes `object` under its key, replacing any object already there.
    fn put(&self, object: &Object) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// The bytes under `key`, if there is an object.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Vec<u8>>, SinkError>> + Send;

    /// Removes the object under `key`, if any.
    fn delete(&self, key: &str) -> impl Future<Output = Result<(), SinkError>> + Send;
}

/// A local folder laid out exactly like the bucket: the key is the relative path.
#[derive(Debug, Clone)]
pub struct LocalDir {
    root: PathBuf,
}

impl LocalDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl Sink for LocalDir {
    async fn put(&self, object: &Object) -> Result<(), SinkError> {
        let path = self.root.join(&object.key);
        let io = |source| SinkError::Io {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await.map_err(io)?;
        }
        // Write, sync, rename: a reader sees the old object or the whole new one.
        let tmp = path.with_extension("partial");
        let file = tokio::fs::File::create(&tmp).await.map_err(io)?;
        let mut file = tokio::io::BufWriter::new(file);
        tokio::io::AsyncWriteExt::write_all(&mut file, &object.body)
            .await
            .map_err(io)?;
        tokio::io::AsyncWriteExt::flush(&mut file)
            .await
            .map_err(io)?;
        file.into_inner().sync_all().await.map_err(io)?;
        tokio::fs::rename(&tmp, &path).await.map_err(io)
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, SinkError> {
        let path = self.root.join(key);
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(SinkError::Io { path, source }),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), SinkError> {
        let path = self.root.join(key);
        match tokio::fs::remove_file(&path).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(SinkError::Io { path, source: e });
            }
            _ => {}
        }
        // Folders mirror key prefixes, which vanish with their last object in a bucket.
        let mut dir = path.parent();
        while let Some(d) = dir.filter(|d| *d != self.root) {
            if tokio::fs::remove_dir(d).await.is_err() {
                break;
            }
            dir = d.parent();
        }
        Ok(())
    }
}
