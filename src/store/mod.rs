//! Where the policy set in force lives: an atomically swappable snapshot of the engine
//! and its revision. Every check takes one snapshot (`snapshot()`) and uses it for the
//! whole decision, so the revision a decision log names is the one that decided; a
//! reload compiles off the request path and swaps the new snapshot in without locks. A
//! bad change never replaces the last good set.
//!
//! Sources: a local directory (revision: a content hash) or a git repository
//! ([`GitSource`], revision: the commit).

pub(crate) mod config;
mod git;

pub use git::{GitError, GitSource};

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::engine::{Engine, EngineConfig};
use crate::policy::{StoreError, load_and_compile};

/// What is in force, and how the last reload went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreStatus {
    /// Revision (content hash) of the set in force.
    pub revision: String,
    /// Successful loads (including the first).
    pub reloads_ok: u64,
    /// Failed reloads.
    pub reloads_failed: u64,
    /// The errors of the last failed reload, when it failed after the last success: for
    /// policy errors only `file:line:col` and the error kind (see [`StoreError::summary`]),
    /// since the status is served without authentication.
    pub(crate) last_error: Option<String>,
}

/// One loaded policy set: the engine and the revision it was compiled from.
#[derive(Debug)]
pub struct PolicySnapshot {
    /// The engine over this set.
    pub engine: Engine,
    /// Content hash (directory) or commit (git) of this set.
    pub(crate) revision: Arc<str>,
}

/// The policy set in force, with the source it was loaded from.
#[derive(Debug)]
pub struct PolicyStore {
    current: ArcSwap<PolicySnapshot>,
    directory: PathBuf,
    git: Option<GitSource>,
    config: EngineConfig,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// Serializes reloads (watcher, SIGHUP): one git operation or compile at a time.
    reloading: Mutex<()>,
}

/// A fingerprint of a policy directory: every policy file's path, resolved path, size and
/// modification time, under the rules of [`crate::policy::load::tree`] (links followed only
/// inside the directory, loops detected). Nothing is read.
pub(crate) fn fingerprint(dir: &Path) -> u64 {
    crate::policy::load::tree::scan(dir).fingerprint()
}

/// A content hash of the policy files, shown as the set's revision: the files the loader
/// reads, read under the same caps (a file past them hashes its error, not its bytes).
fn revision(dir: &Path) -> String {
    let mut tree = crate::policy::load::tree::scan(dir);
    let mut h = DefaultHasher::new();
    let files = std::mem::take(&mut tree.files);
    for f in &files {
        f.rel.hash(&mut h);
        match tree.read(f) {
            Ok(bytes) => bytes.hash(&mut h),
            Err(e) => e.to_string().hash(&mut h),
        }
    }
    for e in &tree.errors {
        e.to_string().hash(&mut h);
    }
    format!("{:016x}", h.finish())
}

impl PolicyStore {
    /// Loads and compiles a policy directory.
    pub fn load(directory: &Path, config: EngineConfig) -> Result<PolicyStore, StoreError> {
        let rev = revision(directory);
        let set = load_and_compile(directory)?;
        Ok(PolicyStore::new(
            directory.to_path_buf(),
            None,
            set,
            rev,
            config,
        ))
    }

    /// Clones (or updates) a git repository, checks out its branch and compiles the
    /// policies in its sub-directory. The revision is the commit.
    pub(crate) fn load_git(
        source: GitSource,
        config: EngineConfig,
    ) -> Result<PolicyStore, ReloadError> {
        let commit = source.checkout()?;
        let directory = source.policy_dir();
        let set = load_and_compile(&directory)?;
        Ok(PolicyStore::new(
            directory,
            Some(source),
            set,
            commit,
            config,
        ))
    }

    fn new(
        directory: PathBuf,
        git: Option<GitSource>,
        set: crate::policy::CompiledPolicySet,
        revision: String,
        config: EngineConfig,
    ) -> PolicyStore {
        PolicyStore {
            current: ArcSwap::from_pointee(PolicySnapshot {
                engine: Engine::new(Arc::new(set), config.clone()),
                revision: revision.into(),
            }),
            directory,
            git,
            config,
            reloads_ok: AtomicU64::new(1),
            reloads_failed: AtomicU64::new(0),
            last_error: Mutex::new(None),
            reloading: Mutex::new(()),
        }
    }

    /// The set in force (one snapshot; use it for a whole decision).
    pub fn snapshot(&self) -> Arc<PolicySnapshot> {
        self.current.load_full()
    }

    /// The policy directory (for a git source: the sub-directory of the checkout).
    pub(crate) fn directory(&self) -> &Path {
        &self.directory
    }

    /// The git source, when policies come from a repository.
    pub(crate) fn git(&self) -> Option<&GitSource> {
        self.git.as_ref()
    }

    /// The revision in force and the reload counters.
    pub fn status(&self) -> StoreStatus {
        StoreStatus {
            revision: self.current.load().revision.to_string(),
            reloads_ok: self.reloads_ok.load(Ordering::Relaxed),
            reloads_failed: self.reloads_failed.load(Ordering::Relaxed),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }

    /// Reloads from the source (a git source fetches its branch first) and swaps the
    /// new set in. On error the old set stays in force, and the error is recorded and
    /// returned.
    pub(crate) fn reload(&self) -> Result<String, ReloadError> {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        match &self.git {
            None => self
                .compile_and_swap(revision(&self.directory))
                .map_err(ReloadError::from),
            Some(git) => {
                let fetched = git.fetch().inspect_err(|e| self.record_failure(e))?;
                if *fetched == *self.current.load().revision {
                    return Ok(fetched);
                }
                git.switch_to(&fetched)
                    .inspect_err(|e| self.record_failure(e))?;
                self.compile_and_swap(fetched).map_err(ReloadError::from)
            }
        }
    }

    fn compile_and_swap(&self, rev: String) -> Result<String, StoreError> {
        match load_and_compile(&self.directory) {
            Ok(set) => {
                self.current.store(Arc::new(PolicySnapshot {
                    engine: Engine::new(Arc::new(set), self.config.clone()),
                    revision: rev.as_str().into(),
                }));
                self.reloads_ok.fetch_add(1, Ordering::Relaxed);
                *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
                tracing::info!(revision = %rev, directory = %self.directory.display(), "policies reloaded");
                Ok(rev)
            }
            Err(e) => {
                self.record_failure_summarised(&e, e.summary());
                Err(e)
            }
        }
    }

    fn record_failure(&self, e: &dyn std::fmt::Display) {
        self.record_failure_summarised(e, e.to_string());
    }

    /// Logs the whole error; the status (served without authentication) keeps `summary`.
    fn record_failure_summarised(&self, e: &dyn std::fmt::Display, summary: String) {
        self.reloads_failed.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(summary);
        tracing::error!(
            directory = %self.directory.display(),
            "reload rejected, keeping revision {}:\n{e}",
            self.current.load().revision
        );
    }

    /// Watches the directory (polling every `interval`) and reloads once a change has
    /// been quiet for one more interval, so half-written saves are not compiled. Runs
    /// until the task is dropped.
    pub(crate) async fn watch(self: Arc<Self>, interval: Duration) {
        if self.git.is_some() {
            return self.watch_git(interval).await;
        }
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

    /// Polls the git branch every `interval` and switches to each new commit. A commit
    /// that fails to compile is not retried until the branch moves again; the last good
    /// set stays in force meanwhile.
    async fn watch_git(self: Arc<Self>, interval: Duration) {
        let mut rejected: Option<String> = None;
        loop {
            tokio::time::sleep(interval).await;
            let store = self.clone();
            let tried = rejected.take();
            rejected = tokio::task::spawn_blocking(move || store.poll_git(tried.as_deref()))
                .await
                .unwrap_or(None);
        }
    }

    /// One poll of the git source; returns the commit that was rejected, if any.
    fn poll_git(&self, rejected: Option<&str>) -> Option<String> {
        let git = self.git.as_ref()?;
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        let fetched = match git.fetch() {
            Ok(c) => c,
            Err(e) => {
                self.record_failure(&e);
                return rejected.map(str::to_string);
            }
        };
        if *fetched == *self.current.load().revision || Some(fetched.as_str()) == rejected {
            return rejected.map(str::to_string);
        }
        let switched = git
            .switch_to(&fetched)
            .map_err(ReloadError::from)
            .and_then(|()| {
                self.compile_and_swap(fetched.clone())
                    .map_err(ReloadError::from)
            });
        match switched {
            Ok(_) => None,
            Err(ReloadError::Git(e)) => {
                self.record_failure(&e);
                None
            }
            Err(ReloadError::Policies(_)) => Some(fetched),
        }
    }
}

/// Why a load or reload failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReloadError {
    /// The policies do not load or compile.
    #[error("{0}")]
    Policies(#[from] StoreError),
    /// A git operation failed.
    #[error("{0}")]
    Git(#[from] GitError),
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

    fn allows(store: &PolicyStore) -> bool {
        store
            .snapshot()
            .engine
            .check(&input())
            .unwrap()
            .is_allowed("read")
    }

    #[test]
    fn bad_reload_keeps_the_last_good_set() {
        let dir = std::env::temp_dir().join(format!("gh-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("doc.yaml"), POLICY).unwrap();
        let store = PolicyStore::load(&dir, EngineConfig::default()).unwrap();
        let rev = store.status().revision;
        assert!(allows(&store));

        std::fs::write(dir.join("doc.yaml"), POLICY.replace("[user]", "[user")).unwrap();
        assert!(store.reload().is_err());
        let st = store.status();
        assert_eq!(st.revision, rev);
        assert_eq!(st.reloads_failed, 1);
        assert!(st.last_error.unwrap().contains("doc.yaml:"));
        assert!(allows(&store));

        std::fs::write(
            dir.join("doc.yaml"),
            POLICY.replace("EFFECT_ALLOW", "EFFECT_DENY"),
        )
        .unwrap();
        let new_rev = store.reload().unwrap();
        assert_ne!(new_rev, rev);
        assert!(!allows(&store));
        assert_eq!(store.status().last_error, None);

        std::fs::remove_dir_all(&dir).unwrap();
        assert!(store.reload().is_err(), "a deleted directory is rejected");
        assert!(!allows(&store));
    }

    #[test]
    fn issue_12_status_shows_positions_and_kinds_not_content() {
        let dir = std::env::temp_dir().join(format!("gh-store-status-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("doc.yaml"), POLICY).unwrap();
        let store = PolicyStore::load(&dir, EngineConfig::default()).unwrap();
        std::fs::write(dir.join("doc.yaml"), "SECRET-TOKEN: [\n").unwrap();
        let logged = store.reload().unwrap_err().to_string();
        assert!(logged.contains("doc.yaml:"), "{logged}");
        let shown = store.status().last_error.unwrap();
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(
            shown.starts_with("doc.yaml:") && shown.ends_with(": parse error"),
            "{shown}"
        );
        std::fs::write(dir.join("doc.yaml"), POLICY).unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.join("zero.yaml")).unwrap();
        assert!(store.reload().is_err());
        assert_eq!(
            store.status().last_error.unwrap(),
            "zero.yaml:1:1: symbolic link resolves outside the policy directory"
        );
        assert!(allows(&store), "the last good set stays in force");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
