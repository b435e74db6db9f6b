//! Finds newer versions of a running pipeline's transform — in the registry, or in a local
//! file during development — and loads them off the data path (compile, check the world,
//! instantiate, `init`) on a blocking thread. A loaded version goes to the pipeline, which
//! switches at a batch boundary; one that fails to load is refused, logged and reported,
//! and the running version carries on.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::{Notify, mpsc, watch};

use crate::pipeline::sink::Sink;
use crate::pipeline::transform::sandbox::Loader;
use crate::pipeline::transform::{Newer, Transform};
use crate::registry::Registry;
use crate::telemetry::Telemetry;

/// Where newer versions come from.
pub enum Origin<K> {
    /// The pipeline's pointer in the registry (`wrt deploy`, `wrt rollback`).
    Registry(Registry<K>),
    /// A component file rebuilt in place (`wrt run --watch`).
    File(PathBuf),
}

impl<K: Sink> Origin<K> {
    /// The versions wanted now: the current one and the shadow, by digest, and the bytes
    /// of each that is neither what runs nor `refused`.
    async fn wanted(&self, running: &Running, refused: &HashSet<String>) -> Result<Wanted, String> {
        let fetch = |digest: &str, running: Option<&str>| {
            (running != Some(digest) && !refused.contains(digest)).then(|| digest.to_string())
        };
        match self {
            Origin::Registry(registry) => {
                let Some(seen) = registry.pointer().await.map_err(|e| e.to_string())? else {
                    return Ok(Wanted::default());
                };
                let pointer = seen.pointer;
                let download = |digest: Option<String>| async move {
                    match digest {
                        Some(digest) => {
                            let wasm = registry
                                .download(&digest)
                                .await
                                .map_err(|e| e.to_string())?;
                            Ok::<_, String>(Some((digest, wasm)))
                        }
                        None => Ok(None),
                    }
                };
                let current = download(fetch(&pointer.current, Some(&running.current))).await?;
                let shadow = match &pointer.shadow {
                    Some(digest) => download(fetch(digest, running.shadow.as_deref()))
                        .await?
                        .map(Some),
                    None if running.shadow.is_some() => Some(None),
                    None => None,
                };
                Ok(Wanted { current, shadow })
            }
            Origin::File(path) => {
                let wasm = tokio::fs::read(path)
                    .await
                    .map_err(|e| format!("reading {}: {e}", path.display()))?;
                let digest = hex::encode(Sha256::digest(&wasm));
                let current = fetch(&digest, Some(&running.current)).map(|d| (d, wasm));
                Ok(Wanted {
                    current,
                    shadow: None,
                })
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            Origin::Registry(registry) => {
                format!("the registry of pipeline `{}`", registry.pipeline())
            }
            Origin::File(path) => path.display().to_string(),
        }
    }
}

/// What runs now, by digest.
struct Running {
    current: String,
    shadow: Option<String>,
}

/// What [`Origin::wanted`] found to hand over: a new current version, and a change of
/// shadow (`Some(None)`: the shadow was dropped).
#[derive(Default)]
struct Wanted {
    current: Option<(String, Vec<u8>)>,
    shadow: Option<Option<(String, Vec<u8>)>>,
}

/// Watches an [`Origin`] for a pipeline.
pub struct Watcher<K> {
    pub origin: Origin<K>,
    pub loader: Loader,
    /// How often the origin is checked.
    pub interval: Duration,
    /// Wakes the watcher for a check now (the admin API's `POST /transforms/check`).
    pub check_now: Arc<Notify>,
    pub telemetry: Arc<Telemetry>,
}

impl<K: Sink> Watcher<K> {
    /// Checks until `stop` turns true or the pipeline is gone, sending each newer version
    /// and each change of shadow that loads. `running` is the digest of the version the
    /// pipeline starts with.
    pub async fn run(
        self,
        running: String,
        versions: mpsc::Sender<Newer>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut running = Running {
            current: running,
            shadow: None,
        };
        let mut refused = HashSet::new();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = self.check_now.notified() => {}
                _ = stop.changed() => return,
            }
            let wanted = match self.origin.wanted(&running, &refused).await {
                Ok(wanted) => wanted,
                Err(e) => {
                    tracing::warn!("checking {} for a new version: {e}", self.origin.describe());
                    continue;
                }
            };
            if let Some((digest, wasm)) = wanted.current
                && let Some(transform) = self.load(&digest, wasm, &mut refused).await
            {
                tracing::info!(version = %digest, "new transform version loaded; switching at the next batch");
                running.current = digest;
                if versions.send(Newer::Current(transform)).await.is_err() {
                    return;
                }
            }
            let shadow = match wanted.shadow {
                None => continue,
                Some(None) => {
                    tracing::info!("the shadow run ends");
                    running.shadow = None;
                    None
                }
                Some(Some((digest, wasm))) => {
                    let Some(transform) = self.load(&digest, wasm, &mut refused).await else {
                        continue;
                    };
                    tracing::info!(version = %digest, "shadow version loaded; comparing it with the current one");
                    running.shadow = Some(digest);
                    Some(transform)
                }
            };
            if versions.send(Newer::Shadow(shadow)).await.is_err() {
                return;
            }
        }
    }

    /// Compiles and initialises `wasm` off the async context; a version that fails is
    /// refused, logged and reported, and never tried again.
    async fn load(
        &self,
        digest: &str,
        wasm: Vec<u8>,
        refused: &mut HashSet<String>,
    ) -> Option<Box<dyn Transform>> {
        let loader = self.loader.clone();
        // The guest's `init` may print: under the pipeline's span, like its calls.
        let span = tracing::Span::current();
        let loaded = tokio::task::spawn_blocking(move || span.in_scope(|| loader.load(&wasm)))
            .await
            .expect("loading a component does not panic");
        match loaded {
            Ok(transform) => Some(Box::new(transform)),
            Err(e) => {
                tracing::error!(version = %digest,
                    "refusing the new transform version, the running one carries on: {e}");
                self.telemetry.refused(digest, &e.to_string());
                refused.insert(digest.to_string());
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::sink::LocalDir;
    use crate::pipeline::transform::sandbox::{Limits, Sandbox};
    use wrt_tests::guest;

    fn current(newer: Newer) -> Box<dyn Transform> {
        match newer {
            Newer::Current(transform) => transform,
            Newer::Shadow(_) => panic!("a file has no shadow"),
        }
    }

    /// `wrt run --watch`: a rebuilt file is loaded and handed over; a broken one is refused
    /// and reported, and the next good one still gets through.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_watched_file_hands_over_good_versions_and_refuses_broken_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.wasm");
        let copy = |name: &str| {
            let wasm = std::fs::read(guest(name)).unwrap();
            std::fs::write(&path, &wasm).unwrap();
            hex::encode(Sha256::digest(&wasm))
        };
        let v1 = copy("tagger_v1");
        let telemetry = Arc::new(Telemetry::new("dev", &v1));
        let watcher: Watcher<LocalDir> = Watcher {
            origin: Origin::File(path.clone()),
            loader: Loader::new(
                Sandbox::new(None).unwrap(),
                Default::default(),
                Limits::default(),
            ),
            interval: Duration::from_millis(20),
            check_now: Arc::new(Notify::new()),
            telemetry: Arc::clone(&telemetry),
        };
        let (versions, mut newer) = mpsc::channel(1);
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(watcher.run(v1, versions, stopped));

        let v2 = copy("tagger_v2");
        assert_eq!(current(newer.recv().await.unwrap()).digest(), v2);

        let broken = copy("broken_init");
        while telemetry.status().refused.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let refused = &telemetry.status().refused[0];
        assert_eq!(refused.digest, broken);
        assert!(
            refused.reason.contains("refused to initialise"),
            "{}",
            refused.reason
        );
        assert!(
            newer.try_recv().is_err(),
            "a broken version is not handed over"
        );

        let v1_again = copy("tagger_v1");
        assert_eq!(current(newer.recv().await.unwrap()).digest(), v1_again);
        stop.send(true).unwrap();
        task.await.unwrap();
    }
}
