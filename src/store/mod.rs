//! Where the policy set in force lives: an atomically swappable engine. Every check
//! takes one snapshot (`engine()`) and uses it for the whole decision; a reload
//! compiles off the request path and swaps the new engine in without locks. A bad
//! change never replaces the last good set.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;

use crate::engine::{Engine, EngineConfig};
use crate::policy::{StoreError, compile_store, load_dir};

/// What is in force, and how the last reload went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreStatus {
    /// Revision (content hash) of the set in force.
    pub revision: String,
    /// Successful loads (including the first).
    pub reloads_ok: u64,
    /// Failed reloads.
    pub reloads_failed: u64,
    /// The errors of the last failed reload, when it failed after the last success.
    pub last_error: Option<String>,
}

/// The engine in force, with the source it was loaded from.
#[derive(Debug)]
pub struct PolicyStore {
    current: ArcSwap<Engine>,
    revision: ArcSwap<String>,
    directory: PathBuf,
    config: EngineConfig,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// A fingerprint of a directory: every file's path, size and modification time.
pub fn fingerprint(dir: &Path) -> u64 {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, u64, Option<SystemTime>)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                walk(&path, out);
            } else {
                out.push((path, meta.len(), meta.modified().ok()));
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, &mut files);
    files.sort();
    let mut h = DefaultHasher::new();
    dir.exists().hash(&mut h);
    files.hash(&mut h);
    h.finish()
}

/// A content hash of the policy files, shown as the set's revision.
fn revision(dir: &Path) -> String {
    fn walk(dir: &Path, h: &mut DefaultHasher) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for p in paths {
            if p.is_dir() {
                walk(&p, h);
            } else if let Ok(bytes) = std::fs::read(&p) {
                p.strip_prefix(dir).unwrap_or(&p).hash(h);
                bytes.hash(h);
            }
        }
    }
    let mut h = DefaultHasher::new();
    walk(dir, &mut h);
    format!("{:016x}", h.finish())
}

impl PolicyStore {
    /// Loads and compiles a policy directory.
    pub fn load(directory: &Path, config: EngineConfig) -> Result<PolicyStore, StoreError> {
        let rev = revision(directory);
        let set = compile_store(load_dir(directory)?)?;
        Ok(PolicyStore {
            current: ArcSwap::from_pointee(Engine::new(Arc::new(set), config.clone())),
            revision: ArcSwap::from_pointee(rev),
            directory: directory.to_path_buf(),
            config,
            reloads_ok: AtomicU64::new(1),
            reloads_failed: AtomicU64::new(0),
            last_error: Mutex::new(None),
        })
    }

    /// The engine in force (one snapshot; use it for a whole decision).
    pub fn engine(&self) -> Arc<Engine> {
        self.current.load_full()
    }

    /// The policy directory.
    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// The revision in force and the reload counters.
    pub fn status(&self) -> StoreStatus {
        StoreStatus {
            revision: self.revision.load().to_string(),
            reloads_ok: self.reloads_ok.load(Ordering::Relaxed),
            reloads_failed: self.reloads_failed.load(Ordering::Relaxed),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }

    /// Recompiles the directory and swaps the new set in. On error the old set stays in
    /// force, and the error is recorded and returned.
    pub fn reload(&self) -> Result<String, StoreError> {
        let rev = revision(&self.directory);
        let result = load_dir(&self.directory)
            .map_err(StoreError::from)
            .and_then(compile_store);
        match result {
            Ok(set) => {
                self.current
                    .store(Arc::new(Engine::new(Arc::new(set), self.config.clone())));
                self.revision.store(Arc::new(rev.clone()));
                self.reloads_ok.fetch_add(1, Ordering::Relaxed);
                *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
                tracing::info!(revision = %rev, directory = %self.directory.display(), "policies reloaded");
                Ok(rev)
            }
            Err(e) => {
                self.reloads_failed.fetch_add(1, Ordering::Relaxed);
                *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                tracing::error!(directory = %self.directory.display(), "reload rejected, keeping revision {}:\n{e}", self.revision.load());
                Err(e)
            }
        }
    }

    /// Watches the directory (polling every `interval`) and reloads once a change has
    /// been quiet for one more interval, so half-written saves are not compiled. Runs
    /// until the task is dropped.
    pub async fn watch(self: Arc<Self>, interval: Duration) {
        let mut seen = fingerprint(&self.directory);
        let mut pending: Option<u64> = None;
        loop {
            tokio::time::sleep(interval).await;
            let dir = self.directory.clone();
            let now = tokio::task::spawn_blocking(move || fingerprint(&dir))
                .await
                .unwrap_or(seen);
            match pending {
                Some(p) if p == now => {
                    pending = None;
                    seen = now;
                    let store = self.clone();
                    let _ = tokio::task::spawn_blocking(move || store.reload()).await;
                }
                _ if now != seen => pending = Some(now),
                _ => pending = None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{CheckInput, Principal, Resource};

    const POLICY: &str = "apiVersion: api.cerbos.dev/v1\nresourcePolicy:\n  resource: doc\n  version: default\n  rules:\n    - actions: [read]\n      effect: EFFECT_ALLOW\n      roles: [user]\n";

    fn input() -> CheckInput {
        CheckInput {
            principal: Principal {
                id: "a".into(),
                roles: vec![Arc::from("user")],
                ..Default::default()
            },
            resource: Resource {
                kind: "doc".into(),
                ..Default::default()
            },
            actions: vec!["read".into()],
            ..Default::default()
        }
    }

    #[test]
    fn bad_reload_keeps_the_last_good_set() {
        let dir = std::env::temp_dir().join(format!("gh-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("doc.yaml"), POLICY).unwrap();
        let store = PolicyStore::load(&dir, EngineConfig::default()).unwrap();
        let rev = store.status().revision;
        assert!(store.engine().check(&input()).unwrap().is_allowed("read"));

        std::fs::write(dir.join("doc.yaml"), POLICY.replace("[user]", "[user")).unwrap();
        assert!(store.reload().is_err());
        let st = store.status();
        assert_eq!(st.revision, rev);
        assert_eq!(st.reloads_failed, 1);
        assert!(st.last_error.unwrap().contains("doc.yaml:"));
        assert!(store.engine().check(&input()).unwrap().is_allowed("read"));

        std::fs::write(
            dir.join("doc.yaml"),
            POLICY.replace("EFFECT_ALLOW", "EFFECT_DENY"),
        )
        .unwrap();
        let new_rev = store.reload().unwrap();
        assert_ne!(new_rev, rev);
        assert!(!store.engine().check(&input()).unwrap().is_allowed("read"));
        assert_eq!(store.status().last_error, None);

        std::fs::remove_dir_all(&dir).unwrap();
        assert!(store.reload().is_err(), "a deleted directory is rejected");
        assert!(!store.engine().check(&input()).unwrap().is_allowed("read"));
    }
}
