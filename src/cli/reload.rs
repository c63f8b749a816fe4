//! Reloading `gatehouse.yaml` while serving: on a change of the file (polled by
//! content, so a Kubernetes ConfigMap's `..data` symlink swap is seen) and on SIGHUP.
//!
//! Routes, principal sources, attribute sources, deny responses (`extAuthz`) and the
//! decision log (`audit`) take effect at once. Everything else (listener addresses, the
//! policy source, engine, schema, `auxData`, metrics, tracing) is read at start only; a
//! change to it is named in the log and in the status as needing a restart. A file that
//! does not load leaves the configuration in force unchanged (last good), and its
//! errors are logged and shown in `/_gatehouse/status`.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::audit::{AuditConfig, AuditSink};
use crate::config::ServeConfig;
use crate::extauthz::LiveExtAuthz;
use crate::store::PolicyStore;
use crate::telemetry::Sinks;

/// Top-level sections applied on reload; every other section needs a restart.
pub(crate) const RELOADED_SECTIONS: &[&str] = &["extAuthz", "audit"];

/// How the configuration reloads went.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ConfigStatus {
    /// Successful loads (including the first).
    reloads_ok: u64,
    /// Failed reloads.
    reloads_failed: u64,
    /// The errors of the last failed reload, when it failed after the last success.
    last_error: Option<String>,
    /// Sections changed in the file that take effect only after a restart.
    restart_needed: Vec<String>,
}

/// What is in force: the file's sections as JSON (to see what changed) and the audit
/// settings (a new writer is started only when they change).
struct InForce {
    sections: serde_json::Map<String, serde_json::Value>,
    audit: AuditConfig,
}

/// Rebuilds the ext_authz service and the audit sink from `gatehouse.yaml`.
pub(crate) struct ConfigReloader {
    path: PathBuf,
    base: PathBuf,
    ext: LiveExtAuthz,
    store: Arc<PolicyStore>,
    /// The server's sinks; a reload replaces the audit sink's destination in place.
    sinks: Sinks,
    in_force: Mutex<InForce>,
    status: Mutex<ConfigStatus>,
    /// One reload at a time (watcher and SIGHUP).
    reloading: tokio::sync::Mutex<()>,
}

/// The top-level sections of a configuration text, as JSON.
fn sections(text: &str) -> serde_json::Map<String, serde_json::Value> {
    match serde_saphyr::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    }
}

/// A hash of the file's content (through symlinks), or of the error reading it.
fn fingerprint(path: &std::path::Path) -> u64 {
    let mut h = DefaultHasher::new();
    match std::fs::read(path) {
        Ok(bytes) => bytes.hash(&mut h),
        Err(e) => e.kind().hash(&mut h),
    }
    h.finish()
}

impl ConfigReloader {
    /// A reloader for the configuration at `path`, whose `text` and `audit` settings
    /// (paths resolved) are in force now.
    pub(crate) fn new(
        path: PathBuf,
        base: PathBuf,
        text: &str,
        audit_config: AuditConfig,
        ext: LiveExtAuthz,
        store: Arc<PolicyStore>,
        sinks: Sinks,
    ) -> Self {
        ConfigReloader {
            path,
            base,
            ext,
            store,
            sinks,
            in_force: Mutex::new(InForce {
                sections: sections(text),
                audit: audit_config,
            }),
            status: Mutex::new(ConfigStatus {
                reloads_ok: 1,
                ..ConfigStatus::default()
            }),
            reloading: tokio::sync::Mutex::new(()),
        }
    }

    /// The file being followed.
    pub(crate) fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// How the reloads went.
    pub(crate) fn status(&self) -> ConfigStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The status as JSON, for `/_gatehouse/status`.
    pub(crate) fn status_json(&self) -> serde_json::Value {
        let st = self.status();
        serde_json::json!({
            "file": self.path.display().to_string(),
            "reloadsOk": st.reloads_ok,
            "reloadsFailed": st.reloads_failed,
            "lastError": st.last_error,
            "restartNeeded": st.restart_needed,
        })
    }

    fn fail(&self, rendered: String, summary: String) -> String {
        let mut st = self.status.lock().unwrap_or_else(|p| p.into_inner());
        st.reloads_failed += 1;
        st.last_error = Some(summary.clone());
        drop(st);
        tracing::error!(
            file = %self.path.display(),
            "gatehouse.yaml reload rejected, keeping the configuration in force:\n{rendered}"
        );
        summary
    }

    /// Reads the file and puts its reloadable sections in force; on any error the
    /// configuration in force stays and the error is recorded and returned.
    pub(crate) async fn reload(&self) -> Result<(), String> {
        let _one_at_a_time = self.reloading.lock().await;
        let (text, config) = self.read().await?;
        let audit_config = config.audit.clone().resolve_paths(&self.base);
        let new_audit = self.changed_audit_sink(&audit_config)?;
        let previous = self.ext.current();
        let ext = match crate::extauthz::build_after(
            &config.ext_authz,
            self.store.clone(),
            &self.base,
            self.sinks.clone(),
            Some(&previous),
        )
        .await
        {
            Ok(ext) => ext,
            Err(e) => {
                let m = format!("{}: {e}", self.path.display());
                return Err(self.fail(m.clone(), m));
            }
        };
        let routes = config.ext_authz.routes.len();
        // Everything built: put it in force together.
        if let Some(sink) = &new_audit {
            self.sinks.audit.replace_with(sink);
        }
        self.ext.replace(ext);
        let restart_needed = self.put_sections_in_force(&text, audit_config);
        {
            let mut st = self.status.lock().unwrap_or_else(|p| p.into_inner());
            st.reloads_ok += 1;
            st.last_error = None;
            st.restart_needed = restart_needed.clone();
        }
        self.log_reloaded(routes, &restart_needed);
        Ok(())
    }

    /// The file's text and its parsed configuration; an error is recorded.
    async fn read(&self) -> Result<(String, ServeConfig), String> {
        let text = match tokio::fs::read_to_string(&self.path).await {
            Ok(t) => t,
            Err(e) => {
                let m = format!("cannot read {}: {e}", self.path.display());
                return Err(self.fail(m.clone(), m));
            }
        };
        match ServeConfig::parse(&text, &self.path.display().to_string()) {
            Ok(c) => Ok((text, c)),
            Err(e) => Err(self.fail(e.to_string(), e.summary())),
        }
    }

    /// A new audit sink when the audit settings changed, `None` when they did not; an
    /// error is recorded.
    fn changed_audit_sink(&self, audit_config: &AuditConfig) -> Result<Option<AuditSink>, String> {
        let changed = {
            let in_force = self.in_force.lock().unwrap_or_else(|p| p.into_inner());
            *audit_config != in_force.audit
        };
        if !changed {
            return Ok(None);
        }
        match AuditSink::new(audit_config, self.sinks.metrics.clone()) {
            Ok(sink) => Ok(Some(sink)),
            Err(e) => Err(self.fail(e.to_string(), e.to_string())),
        }
    }

    /// Records the reloaded sections of `text` and `audit_config` as in force; returns the
    /// sections that changed but need a restart.
    fn put_sections_in_force(&self, text: &str, audit_config: AuditConfig) -> Vec<String> {
        let new_sections = sections(text);
        let mut in_force = self.in_force.lock().unwrap_or_else(|p| p.into_inner());
        let mut keys: Vec<&String> = in_force
            .sections
            .keys()
            .chain(new_sections.keys())
            .filter(|k| !RELOADED_SECTIONS.contains(&k.as_str()))
            .collect();
        keys.sort();
        keys.dedup();
        let changed: Vec<String> = keys
            .into_iter()
            .filter(|k| in_force.sections.get(*k) != new_sections.get(*k))
            .cloned()
            .collect();
        // The sections that need a restart keep comparing against what is running.
        for k in RELOADED_SECTIONS {
            match new_sections.get(*k) {
                Some(v) => in_force.sections.insert((*k).to_string(), v.clone()),
                None => in_force.sections.remove(*k),
            };
        }
        in_force.audit = audit_config;
        changed
    }

    /// Logs a reload, and which changed sections wait for a restart.
    fn log_reloaded(&self, routes: usize, restart_needed: &[String]) {
        if restart_needed.is_empty() {
            tracing::info!(
                file = %self.path.display(),
                routes,
                "gatehouse.yaml reloaded: routes, principal sources, attribute sources, deny responses and audit settings in force"
            );
        } else {
            tracing::warn!(
                file = %self.path.display(),
                routes,
                restart_needed = %restart_needed.join(", "),
                "gatehouse.yaml reloaded: routes, principal sources, attribute sources, deny responses and audit settings in force; changes to {} (listener addresses, policy source, engine, schema, auxData, metrics, tracing) take effect only after a restart",
                restart_needed.join(", ")
            );
        }
    }

    /// Polls the file's content every `interval` and reloads once a change has been
    /// quiet for one more interval. Runs until the task is dropped.
    pub(crate) async fn watch(self: Arc<Self>, interval: Duration) {
        let path = self.path.clone();
        let mut seen = fingerprint(&path);
        let mut pending: Option<u64> = None;
        loop {
            tokio::time::sleep(interval).await;
            let p = path.clone();
            let now = tokio::task::spawn_blocking(move || fingerprint(&p))
                .await
                .unwrap_or(seen);
            match pending {
                Some(p) if p == now => {
                    pending = None;
                    seen = now;
                    let _ = self.reload().await;
                }
                _ if now != seen => pending = Some(now),
                _ => pending = None,
            }
        }
    }
}
