//! Safe rollout: shadow mode (a denial is logged and counted as `would_deny`, and the
//! request is let through) and the candidate policy set (a second policy source decided
//! beside the live one on every decision; disagreements are counted in
//! `gatehouse_candidate_disagreements_total{kind,action}` and logged with both answers
//! and the decision id, and the live answer is the one returned).

use std::path::Path;
use std::sync::Arc;

use super::ConfigError;
use super::config::CandidateConfig;
use crate::engine::{CheckInput, EngineConfig};
use crate::store::GitSource;
use crate::store::PolicyStore;

/// Loads the candidate policy set with the live set's engine settings. It is read when
/// the configuration is (at start, on change, on SIGHUP); a candidate that does not load
/// is a configuration error, as a live set that does not load.
pub(crate) async fn load_candidate(
    config: &CandidateConfig,
    base: &Path,
    engine: EngineConfig,
) -> Result<Arc<PolicyStore>, ConfigError> {
    let store = match (&config.directory, &config.git) {
        (Some(dir), None) => {
            let dir = base.join(dir);
            tokio::task::spawn_blocking(move || PolicyStore::load(&dir, engine))
                .await
                .map_err(|e| ConfigError(format!("candidate: {e}")))?
                .map_err(|e| ConfigError(format!("candidate: {e}")))?
        }
        (None, Some(g)) => {
            let mut source = GitSource::new(&g.url, &g.branch);
            source.sub_dir = g.sub_dir.clone();
            tokio::task::spawn_blocking(move || PolicyStore::load_git(source, engine))
                .await
                .map_err(|e| ConfigError(format!("candidate: {e}")))?
                .map_err(|e| ConfigError(format!("candidate: {e}")))?
        }
        _ => {
            return Err(ConfigError(
                "candidate: give exactly one of `directory` and `git`".into(),
            ));
        }
    };
    Ok(Arc::new(store))
}

/// The candidate's answer on one decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CandidateAnswer {
    /// The candidate allows the action.
    Allow,
    /// The candidate denies it (`policy` decided).
    Deny(String),
    /// The candidate could not decide (it counts as a denial).
    Error(String),
}

impl CandidateAnswer {
    fn allowed(&self) -> bool {
        matches!(self, CandidateAnswer::Allow)
    }

    fn describe(&self) -> String {
        match self {
            CandidateAnswer::Allow => "allow".into(),
            CandidateAnswer::Deny(policy) => format!("deny ({policy})"),
            CandidateAnswer::Error(e) => format!("error ({e})"),
        }
    }
}

/// Decides `input`'s action on the candidate set.
pub(crate) fn decide(candidate: &PolicyStore, input: &CheckInput, action: &str) -> CandidateAnswer {
    match candidate.snapshot().engine.check(input) {
        Err(e) => CandidateAnswer::Error(e.to_string()),
        Ok(out) => match out.effect(action) {
            Some(e) if e.effect == crate::policy::compiled::Effect::Allow => CandidateAnswer::Allow,
            Some(e) => CandidateAnswer::Deny(e.policy.clone()),
            None => CandidateAnswer::Error("no decision".into()),
        },
    }
}

/// What the live set and the candidate said on one decision.
#[derive(Debug, Clone)]
pub(crate) struct Comparison {
    /// The live set allowed the action.
    pub(crate) live_allowed: bool,
    /// The candidate's answer.
    pub(crate) candidate: CandidateAnswer,
}

impl Comparison {
    /// Whether the two disagree.
    pub(crate) fn disagrees(&self) -> bool {
        self.live_allowed != self.candidate.allowed()
    }

    /// Logs a disagreement with both answers and the decision id.
    pub(crate) fn log(&self, decision_id: &str, principal: &str, kind: &str, action: &str) {
        tracing::warn!(
            decision_id,
            principal,
            kind,
            action,
            live = %if self.live_allowed { "allow" } else { "deny" },
            candidate = %self.candidate.describe(),
            "candidate policy set disagrees (live answer returned)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_different_verdict_is_a_disagreement() {
        let c = |live_allowed, candidate| Comparison {
            live_allowed,
            candidate,
        };
        assert!(!c(true, CandidateAnswer::Allow).disagrees());
        assert!(!c(false, CandidateAnswer::Deny("p".into())).disagrees());
        assert!(!c(false, CandidateAnswer::Error("e".into())).disagrees());
        assert!(c(true, CandidateAnswer::Deny("p".into())).disagrees());
        assert!(c(true, CandidateAnswer::Error("e".into())).disagrees());
        assert!(c(false, CandidateAnswer::Allow).disagrees());
    }
}
