//! The transform registry: where `wrt deploy` ships components and hosts find them.
//!
//! It lives beside the lake (same bucket or folder), under `_wrt/transforms/<pipeline>/`:
//! components by content (`<sha256>.wasm`), and `current.json`, a pointer naming the version
//! hosts run with every move it made. The pointer only moves by a conditional write on the
//! version that was read, so of two deploys that read the same pointer exactly one wins.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub mod watch;

use crate::model::path_segment;
use crate::pipeline::sink::{ConditionalError, Expect, Sink, SinkError};

/// A pipeline's pointer: the current version and how it got there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Pointer {
    pub pipeline: String,
    /// SHA-256 (hex) of the component hosts run.
    pub current: String,
    /// A candidate hosts run beside `current` on the same events, comparing outputs and
    /// writing nothing (`wrt deploy --shadow`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<String>,
    /// Every move of the pointer, oldest first; the last one made `current`.
    pub history: Vec<Move>,
}

/// One move of a pointer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Move {
    pub digest: String,
    pub action: Action,
    /// Who moved it (`user@host` unless told otherwise).
    pub by: String,
    /// When, RFC 3339 UTC.
    pub at: String,
    /// The version it replaced.
    pub previous: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Deploy,
    Rollback,
    /// `digest` became the shadow; the current version stayed.
    Shadow,
    /// The shadow `digest` became current.
    Promote,
    /// The shadow `digest` was dropped.
    Discard,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Deploy => "deploy",
            Action::Rollback => "rollback",
            Action::Shadow => "shadow",
            Action::Promote => "promote",
            Action::Discard => "discard",
        }
    }
}

/// A pointer as read, with the version tag a move must be conditional on.
#[derive(Debug, Clone)]
pub struct Seen {
    pub pointer: Pointer,
    tag: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(
        "conflict: another deploy moved pipeline `{pipeline}` while this one ran (it now runs \
         {now}); nothing was changed. See `wrt transforms history --pipeline {pipeline}` and \
         deploy again if this version is still wanted"
    )]
    Conflict { pipeline: String, now: String },
    #[error(
        "nothing is deployed to pipeline `{0}` yet: ship a version with `wrt deploy <transform.wasm>`"
    )]
    NothingDeployed(String),
    #[error("{0}")]
    NoSuchVersion(String),
    #[error("{key} is damaged: {reason}")]
    Damaged { key: String, reason: String },
    #[error(transparent)]
    Sink(#[from] SinkError),
}

/// One pipeline's part of the registry, in a store.
#[derive(Debug, Clone)]
pub struct Registry<K> {
    store: K,
    pipeline: String,
}

impl<K: Sink> Registry<K> {
    pub fn new(store: K, pipeline: &str) -> Self {
        Registry {
            store,
            pipeline: pipeline.to_string(),
        }
    }

    pub fn pipeline(&self) -> &str {
        &self.pipeline
    }

    fn prefix(&self) -> String {
        format!("_wrt/transforms/{}/", path_segment(&self.pipeline))
    }

    /// Where the component with `digest` is stored.
    pub fn component_key(&self, digest: &str) -> String {
        format!("{}{digest}.wasm", self.prefix())
    }

    /// Where the pointer is stored.
    pub fn pointer_key(&self) -> String {
        format!("{}current.json", self.prefix())
    }

    /// The pointer, if anything was ever deployed.
    pub async fn pointer(&self) -> Result<Option<Seen>, RegistryError> {
        let key = self.pointer_key();
        let Some((bytes, tag)) = self.store.get_versioned(&key).await? else {
            return Ok(None);
        };
        let pointer = serde_json::from_slice(&bytes).map_err(|e| RegistryError::Damaged {
            key,
            reason: e.to_string(),
        })?;
        Ok(Some(Seen { pointer, tag }))
    }

    /// Stores a component under its digest (once: the key names the bytes) and returns it.
    pub async fn upload(&self, wasm: &[u8]) -> Result<String, RegistryError> {
        let digest = hex::encode(Sha256::digest(wasm));
        match self
            .store
            .put_if(&self.component_key(&digest), wasm.to_vec(), Expect::Absent)
            .await
        {
            Ok(()) | Err(ConditionalError::Changed) => Ok(digest),
            Err(ConditionalError::Sink(e)) => Err(e.into()),
        }
    }

    /// The component with `digest`, checked against it.
    pub async fn download(&self, digest: &str) -> Result<Vec<u8>, RegistryError> {
        let key = self.component_key(digest);
        let wasm = self.store.get(&key).await?.ok_or_else(|| {
            RegistryError::NoSuchVersion(format!(
                "the pointer names {digest}, but {key} is missing from the registry"
            ))
        })?;
        let actual = hex::encode(Sha256::digest(&wasm));
        if actual != digest {
            return Err(RegistryError::Damaged {
                key,
                reason: format!("its SHA-256 is {actual}"),
            });
        }
        Ok(wasm)
    }

    /// Where this pipeline's hosts report their shadow runs.
    fn reports_prefix(&self) -> String {
        format!("_wrt/shadow/{}/", path_segment(&self.pipeline))
    }

    /// Replaces `host`'s report of its shadow run (JSON, a
    /// [`crate::telemetry::ShadowStatus`]); only that host writes it.
    pub async fn report_shadow(&self, host: &str, body: Vec<u8>) -> Result<(), RegistryError> {
        let key = format!("{}{}.json", self.reports_prefix(), path_segment(host));
        let tag = self.store.get_versioned(&key).await?.map(|(_, tag)| tag);
        let expect = tag.as_deref().map_or(Expect::Absent, Expect::Version);
        match self.store.put_if(&key, body, expect).await {
            Ok(()) | Err(ConditionalError::Changed) => Ok(()),
            Err(ConditionalError::Sink(e)) => Err(e.into()),
        }
    }

    /// Removes every host's shadow report, before a new shadow run.
    pub async fn clear_shadow_reports(&self) -> Result<(), RegistryError> {
        for key in self.store.list(&self.reports_prefix()).await? {
            self.store.delete(&key).await?;
        }
        Ok(())
    }

    /// Every host's latest shadow report, by host.
    pub async fn shadow_reports(&self) -> Result<Vec<(String, Vec<u8>)>, RegistryError> {
        let prefix = self.reports_prefix();
        let mut reports = Vec::new();
        for key in self.store.list(&prefix).await? {
            let host = key
                .strip_prefix(&prefix)
                .and_then(|k| k.strip_suffix(".json"));
            if let (Some(host), Some(body)) = (host, self.store.get(&key).await?) {
                reports.push((host.to_string(), body));
            }
        }
        Ok(reports)
    }

    /// The digests of every stored component.
    pub async fn components(&self) -> Result<Vec<String>, RegistryError> {
        let prefix = self.prefix();
        Ok(self
            .store
            .list(&prefix)
            .await?
            .into_iter()
            .filter_map(|key| {
                key.strip_prefix(&prefix)?
                    .strip_suffix(".wasm")
                    .map(String::from)
            })
            .collect())
    }

    /// Moves the pointer, only if it is still what `seen` says (or, with `None`, only if
    /// there is no pointer yet): `digest` becomes current (deploy, rollback, promote; a
    /// promote also ends the shadow), becomes the shadow, or, with [`Action::Discard`], is
    /// the shadow dropped.
    pub async fn move_to(
        &self,
        seen: Option<&Seen>,
        digest: &str,
        action: Action,
        by: &str,
    ) -> Result<Pointer, RegistryError> {
        let before = seen.map(|s| &s.pointer);
        let (current, shadow) = match action {
            // A shadow made current by hand is a shadow no more.
            Action::Deploy | Action::Rollback => (
                digest.to_string(),
                before
                    .and_then(|p| p.shadow.clone())
                    .filter(|shadow| shadow != digest),
            ),
            Action::Promote => (digest.to_string(), None),
            Action::Shadow | Action::Discard => {
                let current = before
                    .map(|p| p.current.clone())
                    .ok_or_else(|| RegistryError::NothingDeployed(self.pipeline.clone()))?;
                let shadow = (action == Action::Shadow).then(|| digest.to_string());
                (current, shadow)
            }
        };
        let mut history = before.map_or_else(Vec::new, |p| p.history.clone());
        history.push(Move {
            digest: digest.to_string(),
            action,
            by: by.to_string(),
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            previous: before.map(|p| p.current.clone()),
        });
        let pointer = Pointer {
            pipeline: self.pipeline.clone(),
            current,
            shadow,
            history,
        };
        let body = serde_json::to_vec_pretty(&pointer).expect("a pointer serializes");
        let expect = seen.map_or(Expect::Absent, |s| Expect::Version(&s.tag));
        match self.store.put_if(&self.pointer_key(), body, expect).await {
            Ok(()) => Ok(pointer),
            Err(ConditionalError::Changed) => {
                let now = match self.pointer().await {
                    Ok(Some(s)) => s.pointer.current,
                    _ => "an unknown version".into(),
                };
                Err(RegistryError::Conflict {
                    pipeline: self.pipeline.clone(),
                    now,
                })
            }
            Err(ConditionalError::Sink(e)) => Err(e.into()),
        }
    }
}

/// The version a rollback moves to: the stored component whose digest starts with `to`,
/// or else the version the current one replaced.
pub fn rollback_target(
    pointer: &Pointer,
    to: Option<&str>,
    components: &[String],
) -> Result<String, RegistryError> {
    let Some(to) = to else {
        // The last move that changed the current version: shadow moves leave it.
        let previous = pointer
            .history
            .iter()
            .rev()
            .find(|m| {
                matches!(
                    m.action,
                    Action::Deploy | Action::Rollback | Action::Promote
                )
            })
            .and_then(|m| m.previous.clone());
        return previous.ok_or_else(|| {
            RegistryError::NoSuchVersion(format!(
                "pipeline `{}` has had only one version; name one with --to",
                pointer.pipeline
            ))
        });
    };
    let matches: Vec<&String> = components.iter().filter(|d| d.starts_with(to)).collect();
    match matches[..] {
        [one] => Ok(one.clone()),
        [] => Err(RegistryError::NoSuchVersion(format!(
            "no stored version of pipeline `{}` starts with `{to}`; see `wrt transforms list`",
            pointer.pipeline
        ))),
        _ => Err(RegistryError::NoSuchVersion(format!(
            "`{to}` matches {} stored versions; give more of the digest",
            matches.len()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::sink::LocalDir;

    #[tokio::test]
    async fn deploys_move_the_pointer_and_keep_history() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::new(LocalDir::new(dir.path()), "shop");
        assert!(registry.pointer().await.unwrap().is_none());

        let v1 = registry.upload(b"one").await.unwrap();
        let v2 = registry.upload(b"two").await.unwrap();
        assert_eq!(registry.upload(b"one").await.unwrap(), v1, "idempotent");
        registry
            .move_to(None, &v1, Action::Deploy, "a@h")
            .await
            .unwrap();
        let seen = registry.pointer().await.unwrap().unwrap();
        registry
            .move_to(Some(&seen), &v2, Action::Deploy, "b@h")
            .await
            .unwrap();

        let pointer = registry.pointer().await.unwrap().unwrap().pointer;
        assert_eq!(pointer.current, v2);
        let moves: Vec<_> = pointer
            .history
            .iter()
            .map(|m| (m.digest.as_str(), m.by.as_str(), m.previous.as_deref()))
            .collect();
        assert_eq!(
            moves,
            [
                (v1.as_str(), "a@h", None),
                (v2.as_str(), "b@h", Some(v1.as_str()))
            ]
        );
        let mut stored = vec![v1.clone(), v2.clone()];
        stored.sort();
        assert_eq!(registry.components().await.unwrap(), stored);
        assert_eq!(registry.download(&v2).await.unwrap(), b"two");
        assert_eq!(rollback_target(&pointer, None, &stored).unwrap(), v1);
        assert_eq!(
            rollback_target(&pointer, Some(&v2[..8]), &stored).unwrap(),
            v2
        );
        assert!(rollback_target(&pointer, Some("zz"), &stored).is_err());
    }

    #[tokio::test]
    async fn a_shadow_rides_beside_deploys_until_promoted_or_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::new(LocalDir::new(dir.path()), "shop");
        let seen = || async { registry.pointer().await.unwrap() };
        let (v1, v2, v3) = (
            registry.upload(b"one").await.unwrap(),
            registry.upload(b"two").await.unwrap(),
            registry.upload(b"three").await.unwrap(),
        );
        // A shadow needs a current version to run beside.
        assert!(matches!(
            registry.move_to(None, &v2, Action::Shadow, "a").await,
            Err(RegistryError::NothingDeployed(_))
        ));
        registry
            .move_to(None, &v1, Action::Deploy, "a")
            .await
            .unwrap();
        let p = registry
            .move_to(seen().await.as_ref(), &v2, Action::Shadow, "a")
            .await
            .unwrap();
        assert_eq!(
            (p.current.as_str(), p.shadow.as_deref()),
            (&*v1, Some(&*v2))
        );
        // A deploy meanwhile keeps the shadow; a promote ends it.
        let p = registry
            .move_to(seen().await.as_ref(), &v3, Action::Deploy, "a")
            .await
            .unwrap();
        assert_eq!(
            (p.current.as_str(), p.shadow.as_deref()),
            (&*v3, Some(&*v2))
        );
        let p = registry
            .move_to(seen().await.as_ref(), &v2, Action::Promote, "a")
            .await
            .unwrap();
        assert_eq!((p.current.as_str(), p.shadow), (&*v2, None));
        registry
            .move_to(seen().await.as_ref(), &v1, Action::Shadow, "a")
            .await
            .unwrap();
        let p = registry
            .move_to(seen().await.as_ref(), &v1, Action::Discard, "a")
            .await
            .unwrap();
        assert_eq!((p.current.as_str(), p.shadow.as_deref()), (&*v2, None));
        let actions: Vec<&str> = p.history.iter().map(|m| m.action.as_str()).collect();
        assert_eq!(
            actions,
            ["deploy", "shadow", "deploy", "promote", "shadow", "discard"]
        );
        // A rollback goes back past the shadow moves, to what the promote replaced.
        assert_eq!(rollback_target(&p, None, &[]).unwrap(), v3);
        // Hosts' reports, one per host, replaced in place.
        registry.report_shadow("h1", b"1".to_vec()).await.unwrap();
        registry.report_shadow("h1", b"2".to_vec()).await.unwrap();
        registry.report_shadow("h2", b"3".to_vec()).await.unwrap();
        assert_eq!(
            registry.shadow_reports().await.unwrap(),
            [
                ("h1".to_string(), b"2".to_vec()),
                ("h2".to_string(), b"3".to_vec())
            ]
        );
        registry.clear_shadow_reports().await.unwrap();
        assert!(registry.shadow_reports().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_move_on_a_stale_read_is_a_conflict() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::new(LocalDir::new(dir.path()), "shop");
        let v1 = registry.upload(b"one").await.unwrap();
        let v2 = registry.upload(b"two").await.unwrap();
        let v3 = registry.upload(b"three").await.unwrap();
        registry
            .move_to(None, &v1, Action::Deploy, "a")
            .await
            .unwrap();
        // Two deploys read the same pointer; the first to write wins.
        let seen = registry.pointer().await.unwrap().unwrap();
        registry
            .move_to(Some(&seen), &v2, Action::Deploy, "b")
            .await
            .unwrap();
        let error = registry
            .move_to(Some(&seen), &v3, Action::Deploy, "c")
            .await
            .unwrap_err();
        assert!(matches!(&error, RegistryError::Conflict { now, .. } if *now == v2));
        assert!(
            error
                .to_string()
                .starts_with("conflict: another deploy moved pipeline `shop`")
        );
        // A first deploy racing another first deploy.
        let other = Registry::new(LocalDir::new(dir.path()), "other");
        other.move_to(None, &v1, Action::Deploy, "a").await.unwrap();
        assert!(matches!(
            other.move_to(None, &v2, Action::Deploy, "b").await,
            Err(RegistryError::Conflict { .. })
        ));
    }

    #[tokio::test]
    async fn a_damaged_component_is_not_handed_out() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDir::new(dir.path());
        let registry = Registry::new(store.clone(), "shop");
        let v1 = registry.upload(b"one").await.unwrap();
        std::fs::write(dir.path().join(registry.component_key(&v1)), b"tampered").unwrap();
        assert!(matches!(
            registry.download(&v1).await,
            Err(RegistryError::Damaged { .. })
        ));
    }
}
