//! The Gatehouse metrics handle: the fixed set of families, the hooks adapters call, and
//! the scrape rendering.

use std::cell::RefCell;
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::Deserialize;

use super::family::{Counter, Family, Histogram, header, plain_sample};

/// Default cap on distinct label combinations per metric.
pub(crate) const DEFAULT_MAX_SERIES: usize = 1000;

/// The `metrics` section of `gatehouse.yaml`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct MetricsConfig {
    /// Serve `GET /metrics` on the HTTP listener.
    #[serde(default = "default_enabled")]
    pub(crate) enabled: bool,
    /// Most distinct label combinations kept per metric; further ones are counted
    /// under labels `other`.
    #[serde(default = "default_max_series")]
    max_series_per_metric: usize,
}

fn default_enabled() -> bool {
    true
}

fn default_max_series() -> usize {
    DEFAULT_MAX_SERIES
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: default_enabled(),
            max_series_per_metric: DEFAULT_MAX_SERIES,
        }
    }
}

/// Which adapter decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub(crate) enum Origin {
    /// The Envoy ext_authz service.
    ExtAuthz,
    /// The Cerbos-compatible API (`CheckResources`).
    Api,
}

impl Origin {
    /// The label and audit value: `ext_authz` or `api`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Origin::ExtAuthz => "ext_authz",
            Origin::Api => "api",
        }
    }
}

/// How one attribute lookup went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum AttributeFetch {
    /// Fetched from the source.
    Ok,
    /// The source failed (the check was denied).
    Error,
    /// Answered from the cache, or by joining a fetch already in flight.
    CacheHit,
}

impl AttributeFetch {
    fn as_str(self) -> &'static str {
        match self {
            AttributeFetch::Ok => "ok",
            AttributeFetch::Error => "error",
            AttributeFetch::CacheHit => "cache_hit",
        }
    }
}

/// Why an audit record was not written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum AuditDrop {
    /// The writer's queue was full.
    QueueFull,
    /// The output could not be written.
    WriteError,
}

impl AuditDrop {
    fn as_str(self) -> &'static str {
        match self {
            AuditDrop::QueueFull => "queue_full",
            AuditDrop::WriteError => "write_error",
        }
    }
}

/// What became of finished trace spans.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum SpanExport {
    /// Accepted by the collector.
    Exported,
    /// Not queued: the export queue was full.
    Dropped,
    /// The export request failed or was refused.
    Failed,
}

impl SpanExport {
    fn as_str(self) -> &'static str {
        match self {
            SpanExport::Exported => "exported",
            SpanExport::Dropped => "dropped",
            SpanExport::Failed => "failed",
        }
    }
}

/// One action's decision, as counted by `gatehouse_decisions_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ActionOutcome<'a> {
    /// Resource kind (empty when the request never reached the engine).
    pub kind: &'a str,
    /// Action (empty when none applies, e.g. a public route).
    pub action: &'a str,
    /// Allowed or denied.
    pub allowed: bool,
}

/// One action's query plan, as counted by `gatehouse_plans_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PlanOutcome<'a> {
    /// Resource kind.
    pub(crate) kind: &'a str,
    /// Action.
    pub(crate) action: &'a str,
    /// The filter's kind: `always_allowed`, `always_denied` or `conditional`.
    pub(crate) filter: &'a str,
}

/// The policy store's state, read at scrape time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyStats {
    /// Revision in force: a content hash, or a commit for a git source.
    pub revision: String,
    /// Where the policies come from: `directory` or `git`.
    pub source: String,
    /// Successful loads, the first one included.
    pub reloads_ok: u64,
    /// Rejected reloads.
    pub reloads_failed: u64,
    /// Policies loaded, by type (`resource`, `principal`, `role`, ...).
    pub loaded: Vec<(String, u64)>,
}

/// `gatehouse_decisions_total` series each thread remembers.
const RECENT_SERIES: usize = 4;

thread_local! {
    /// The `gatehouse_decisions_total` series this thread counted on last.
    static RECENT_DECISIONS: RefCell<RecentDecisions> = const {
        RefCell::new(RecentDecisions {
            entries: [const { None }; RECENT_SERIES],
            next: 0,
        })
    };
}

/// A thread's remembered series, replaced in turn.
struct RecentDecisions {
    entries: [Option<RecentSeries>; RECENT_SERIES],
    next: usize,
}

/// A series and what finds it: its registry (compared by address; the weak reference
/// keeps that address from being another registry's) and its label values.
struct RecentSeries {
    registry: Weak<Registry>,
    key: LabelKey,
    series: Arc<Counter>,
}

/// Label values packed without allocation, each after its length; label sets longer
/// than the buffer are not remembered.
struct LabelKey {
    len: u8,
    bytes: [u8; 95],
}

impl LabelKey {
    fn new(values: [&str; 4]) -> Option<LabelKey> {
        let mut key = LabelKey {
            len: 0,
            bytes: [0; 95],
        };
        for v in values {
            let start = usize::from(key.len);
            let end = start + 1 + v.len();
            if end > key.bytes.len() {
                return None;
            }
            key.bytes[start] = u8::try_from(v.len()).ok()?;
            key.bytes[start + 1..end].copy_from_slice(v.as_bytes());
            key.len = u8::try_from(end).ok()?;
        }
        Some(key)
    }

    /// Whether these are the values packed.
    fn matches(&self, values: [&str; 4]) -> bool {
        let mut rest = &self.bytes[..usize::from(self.len)];
        for v in values {
            let Some((&len, tail)) = rest.split_first() else {
                return false;
            };
            if usize::from(len) != v.len() || tail.get(..v.len()) != Some(v.as_bytes()) {
                return false;
            }
            rest = &tail[v.len()..];
        }
        rest.is_empty()
    }
}

/// Cap of the families whose labels are fixed enumerations.
const ENUM_LABELS_CAP: usize = 16;

struct Registry {
    /// Verified-JWT cache lookups that found the token (`result="hit"`), and that did not.
    jwt_cache_hits: Counter,
    jwt_cache_misses: Counter,
    decisions: Family<Counter, 4>,
    check_duration: Family<Histogram, 1>,
    /// The `check_duration` series of each origin, resolved once.
    check_duration_by_origin: [Arc<Histogram>; 2],
    plans: Family<Counter, 4>,
    plan_duration: Family<Histogram, 1>,
    attribute_fetches: Family<Counter, 1>,
    audit_dropped: Family<Counter, 1>,
    trace_spans: Family<Counter, 1>,
    candidate_disagreements: Family<Counter, 2>,
}

/// The metrics registry: a cheap, cloneable handle shared by every adapter and sink.
/// Recording is lock-free for known label combinations (a read lock and an atomic add).
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Registry>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::with_max_series(DEFAULT_MAX_SERIES)
    }
}

impl Metrics {
    /// A registry configured by the `metrics` section.
    pub(crate) fn new(config: &MetricsConfig) -> Self {
        Metrics::with_max_series(config.max_series_per_metric)
    }

    /// A registry keeping at most `max_series` label combinations (at least 1) for the
    /// metrics whose labels come from requests (`gatehouse_decisions_total`).
    pub(crate) fn with_max_series(max_series: usize) -> Self {
        let cap = max_series.max(1);
        let check_duration = Family::new(
            "gatehouse_check_duration_seconds",
            "Time to decide one check request, in seconds.",
            ["origin"],
            ENUM_LABELS_CAP,
        );
        let check_duration_by_origin =
            [Origin::ExtAuthz, Origin::Api].map(|o| check_duration.handle([o.as_str()]));
        let registry = Registry {
            check_duration,
            check_duration_by_origin,
            jwt_cache_hits: Counter::default(),
            jwt_cache_misses: Counter::default(),
            decisions: Family::new(
                "gatehouse_decisions_total",
                "Authorization decisions, one per resource action.",
                ["effect", "kind", "action", "origin"],
                cap,
            ),
            plans: Family::new(
                "gatehouse_plans_total",
                "Query plans (PlanResources), one per action, by the kind of filter.",
                ["filter", "kind", "action", "origin"],
                cap,
            ),
            plan_duration: Family::new(
                "gatehouse_plan_duration_seconds",
                "Time to plan one PlanResources request, in seconds.",
                ["origin"],
                ENUM_LABELS_CAP,
            ),
            attribute_fetches: Family::new(
                "gatehouse_attribute_fetches_total",
                "Resource attribute lookups from HTTP attribute sources.",
                ["result"],
                ENUM_LABELS_CAP,
            ),
            audit_dropped: Family::new(
                "gatehouse_audit_dropped_total",
                "Audit records not written.",
                ["reason"],
                ENUM_LABELS_CAP,
            ),
            trace_spans: Family::new(
                "gatehouse_trace_spans_total",
                "Trace spans finished, by what became of them (OTLP export).",
                ["result"],
                ENUM_LABELS_CAP,
            ),
            candidate_disagreements: Family::new(
                "gatehouse_candidate_disagreements_total",
                "Decisions on which the candidate policy set disagrees with the live one.",
                ["kind", "action"],
                cap,
            ),
        };
        for origin in [Origin::ExtAuthz, Origin::Api] {
            registry.plan_duration.with([origin.as_str()], |_| ());
        }
        for r in [
            AttributeFetch::Ok,
            AttributeFetch::Error,
            AttributeFetch::CacheHit,
        ] {
            registry.attribute_fetches.with([r.as_str()], |_| ());
        }
        for r in [AuditDrop::QueueFull, AuditDrop::WriteError] {
            registry.audit_dropped.with([r.as_str()], |_| ());
        }
        Metrics {
            inner: Arc::new(registry),
        }
    }

    /// Records one check: its duration in `gatehouse_check_duration_seconds` and each
    /// action's decision in `gatehouse_decisions_total`.
    pub(crate) fn observe_check<'a>(
        &self,
        origin: Origin,
        elapsed: Duration,
        decisions: impl IntoIterator<Item = ActionOutcome<'a>>,
    ) {
        self.observe(origin, elapsed, decisions, "deny");
    }

    /// [`observe_check`](Self::observe_check) for a check in shadow mode: its denials
    /// are counted with effect `would_deny` (the request was let through).
    pub(crate) fn observe_shadow_check<'a>(
        &self,
        origin: Origin,
        elapsed: Duration,
        decisions: impl IntoIterator<Item = ActionOutcome<'a>>,
    ) {
        self.observe(origin, elapsed, decisions, "would_deny");
    }

    /// Counts one decision on which the candidate policy set disagrees with the live one.
    pub(crate) fn count_candidate_disagreement(&self, kind: &str, action: &str) {
        self.inner
            .candidate_disagreements
            .with([kind, action], |c| c.add(1));
    }

    fn observe<'a>(
        &self,
        origin: Origin,
        elapsed: Duration,
        decisions: impl IntoIterator<Item = ActionOutcome<'a>>,
        deny: &str,
    ) {
        let by_origin = match origin {
            Origin::ExtAuthz => 0,
            Origin::Api => 1,
        };
        self.inner.check_duration_by_origin[by_origin].observe(elapsed);
        for d in decisions {
            let effect = if d.allowed { "allow" } else { deny };
            self.count_decision([effect, d.kind, d.action, origin.as_str()]);
        }
    }

    /// Adds one to the `gatehouse_decisions_total` series of `labels`: one of the series
    /// this thread counted on last when the labels are the same (no hashing, no lock),
    /// else the family's, remembered for next time. The family never drops a series, so
    /// a remembered one stays the one the family would give.
    fn count_decision(&self, labels: [&str; 4]) {
        RECENT_DECISIONS.with(|recent| {
            let Ok(mut recent) = recent.try_borrow_mut() else {
                self.inner.decisions.with(labels, |c| c.add(1));
                return;
            };
            let registry = Arc::as_ptr(&self.inner);
            if let Some(hit) = recent
                .entries
                .iter()
                .flatten()
                .find(|e| e.registry.as_ptr() == registry && e.key.matches(labels))
            {
                hit.series.add(1);
                return;
            }
            let series = self.inner.decisions.handle(labels);
            series.add(1);
            if let Some(key) = LabelKey::new(labels) {
                let slot = recent.next;
                recent.next = (slot + 1) % RECENT_SERIES;
                recent.entries[slot] = Some(RecentSeries {
                    registry: Arc::downgrade(&self.inner),
                    key,
                    series,
                });
            }
        });
    }

    /// Records one plan: its duration in `gatehouse_plan_duration_seconds` and each
    /// action's filter kind in `gatehouse_plans_total`.
    pub(crate) fn observe_plan<'a>(
        &self,
        origin: Origin,
        elapsed: Duration,
        plans: impl IntoIterator<Item = PlanOutcome<'a>>,
    ) {
        self.inner
            .plan_duration
            .with([origin.as_str()], |h| h.observe(elapsed));
        for p in plans {
            self.inner
                .plans
                .with([p.filter, p.kind, p.action, origin.as_str()], |c| c.add(1));
        }
    }

    /// Counts one attribute lookup.
    pub(crate) fn count_attribute_fetch(&self, result: AttributeFetch) {
        self.inner
            .attribute_fetches
            .with([result.as_str()], |c| c.add(1));
    }

    /// Counts one lookup in the verified-JWT cache: found (`hit`) or not.
    pub(crate) fn count_jwt_cache(&self, hit: bool) {
        if hit {
            self.inner.jwt_cache_hits.add(1);
        } else {
            self.inner.jwt_cache_misses.add(1);
        }
    }

    #[cfg(test)]
    /// Verified-JWT cache lookups so far: hits and misses.
    pub(crate) fn jwt_cache_lookups(&self) -> (u64, u64) {
        (
            self.inner.jwt_cache_hits.get(),
            self.inner.jwt_cache_misses.get(),
        )
    }

    /// Counts one audit record that was not written.
    pub(crate) fn count_audit_dropped(&self, reason: AuditDrop) {
        self.inner
            .audit_dropped
            .with([reason.as_str()], |c| c.add(1));
    }

    /// Counts `n` trace spans that met `result`.
    pub(crate) fn count_trace_spans(&self, result: SpanExport, n: u64) {
        self.inner.trace_spans.with([result.as_str()], |c| c.add(n));
    }

    /// Audit records not written so far, for every reason.
    pub fn audit_dropped(&self) -> u64 {
        self.inner.audit_dropped.sum(Counter::get)
    }

    /// The registry in the Prometheus text exposition format 0.0.4, with the policy
    /// store's families when `policies` is given.
    pub fn render(&self, policies: Option<&PolicyStats>) -> String {
        let mut out = String::with_capacity(4096);
        let r = &self.inner;
        r.decisions.render(&mut out);
        r.check_duration.render(&mut out);
        r.plans.render(&mut out);
        r.plan_duration.render(&mut out);
        r.attribute_fetches.render(&mut out);
        r.audit_dropped.render(&mut out);
        r.trace_spans.render(&mut out);
        r.candidate_disagreements.render(&mut out);
        let name = "gatehouse_jwt_cache_lookups_total";
        header(
            &mut out,
            name,
            "Bearer JWTs looked up in the verified-token cache: hit (signature not checked again) or miss.",
            "counter",
        );
        plain_sample(&mut out, name, &[("result", "hit")], r.jwt_cache_hits.get());
        plain_sample(
            &mut out,
            name,
            &[("result", "miss")],
            r.jwt_cache_misses.get(),
        );
        if let Some(p) = policies {
            let name = "gatehouse_policy_reloads_total";
            header(
                &mut out,
                name,
                "Policy loads, the first one included, by result.",
                "counter",
            );
            plain_sample(&mut out, name, &[("result", "ok")], p.reloads_ok);
            plain_sample(&mut out, name, &[("result", "failed")], p.reloads_failed);

            let name = "gatehouse_policies_loaded";
            header(&mut out, name, "Policies in force, by type.", "gauge");
            for (kind, n) in &p.loaded {
                plain_sample(&mut out, name, &[("type", kind)], *n);
            }

            let name = "gatehouse_policy_revision_info";
            header(
                &mut out,
                name,
                "The revision of the policies in force: content hash (directory) or commit (git).",
                "gauge",
            );
            plain_sample(
                &mut out,
                name,
                &[("source", &p.source), ("revision", &p.revision)],
                1,
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_has_every_family() {
        let m = Metrics::default();
        m.observe_check(
            Origin::Api,
            Duration::from_micros(30),
            [
                ActionOutcome {
                    kind: "doc",
                    action: "read",
                    allowed: true,
                },
                ActionOutcome {
                    kind: "doc",
                    action: "write",
                    allowed: false,
                },
            ],
        );
        m.observe_plan(
            Origin::Api,
            Duration::from_micros(40),
            [PlanOutcome {
                kind: "doc",
                action: "read",
                filter: "conditional",
            }],
        );
        m.count_attribute_fetch(AttributeFetch::CacheHit);
        m.count_audit_dropped(AuditDrop::QueueFull);
        let snapshot = PolicyStats {
            revision: "abc".into(),
            source: "git".into(),
            reloads_ok: 2,
            reloads_failed: 1,
            loaded: vec![("resource".into(), 3)],
        };
        let text = m.render(Some(&snapshot));
        for line in [
            "gatehouse_decisions_total{effect=\"allow\",kind=\"doc\",action=\"read\",origin=\"api\"} 1",
            "gatehouse_decisions_total{effect=\"deny\",kind=\"doc\",action=\"write\",origin=\"api\"} 1",
            "gatehouse_check_duration_seconds_count{origin=\"api\"} 1",
            "gatehouse_check_duration_seconds_count{origin=\"ext_authz\"} 0",
            "gatehouse_plans_total{filter=\"conditional\",kind=\"doc\",action=\"read\",origin=\"api\"} 1",
            "gatehouse_plan_duration_seconds_count{origin=\"api\"} 1",
            "gatehouse_plan_duration_seconds_count{origin=\"ext_authz\"} 0",
            "gatehouse_attribute_fetches_total{result=\"cache_hit\"} 1",
            "gatehouse_attribute_fetches_total{result=\"ok\"} 0",
            "gatehouse_audit_dropped_total{reason=\"queue_full\"} 1",
            "gatehouse_policy_reloads_total{result=\"ok\"} 2",
            "gatehouse_policy_reloads_total{result=\"failed\"} 1",
            "gatehouse_policies_loaded{type=\"resource\"} 3",
            "gatehouse_policy_revision_info{source=\"git\",revision=\"abc\"} 1",
            "# TYPE gatehouse_check_duration_seconds histogram",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
        }
        assert_eq!(m.audit_dropped(), 1);
        assert!(!m.render(None).contains("gatehouse_policy_revision_info"));
    }

    #[test]
    fn shadow_denials_and_candidate_disagreements() {
        let m = Metrics::default();
        let outcome = |allowed| ActionOutcome {
            kind: "doc",
            action: "read",
            allowed,
        };
        m.observe_shadow_check(Origin::ExtAuthz, Duration::ZERO, [outcome(false)]);
        m.observe_shadow_check(Origin::ExtAuthz, Duration::ZERO, [outcome(true)]);
        m.observe_check(Origin::ExtAuthz, Duration::ZERO, [outcome(false)]);
        m.count_candidate_disagreement("doc", "approve");
        m.count_candidate_disagreement("doc", "approve");
        let text = m.render(None);
        for line in [
            "gatehouse_decisions_total{effect=\"would_deny\",kind=\"doc\",action=\"read\",origin=\"ext_authz\"} 1",
            "gatehouse_decisions_total{effect=\"allow\",kind=\"doc\",action=\"read\",origin=\"ext_authz\"} 1",
            "gatehouse_decisions_total{effect=\"deny\",kind=\"doc\",action=\"read\",origin=\"ext_authz\"} 1",
            "gatehouse_candidate_disagreements_total{kind=\"doc\",action=\"approve\"} 2",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
        }
    }

    /// Issue 15: decisions counted through a thread's remembered series add up exactly
    /// as through the family: more label sets than remembered, two registries in turn,
    /// labels too long to remember, the overflow series past the cap.
    #[test]
    fn issue_15_remembered_decision_series_count_as_the_family() {
        let a = Metrics::default();
        let b = Metrics::with_max_series(2);
        let long = "k".repeat(90);
        let kinds = ["doc", "album", "x", "y", "z", "doc", &long, "doc"];
        let mut expected = std::collections::BTreeMap::new();
        for round in 0..3 {
            for (i, kind) in kinds.iter().enumerate() {
                let allowed = (i + round) % 2 == 0;
                for m in [&a, &b] {
                    m.observe_check(
                        Origin::ExtAuthz,
                        Duration::ZERO,
                        [ActionOutcome {
                            kind,
                            action: "read",
                            allowed,
                        }],
                    );
                }
                let effect = if allowed { "allow" } else { "deny" };
                *expected.entry((effect, *kind)).or_insert(0u64) += 1;
            }
        }
        let count = |m: &Metrics, effect: &str, kind: &str| {
            let line = format!(
                "gatehouse_decisions_total{{effect=\"{effect}\",kind=\"{kind}\",action=\"read\",origin=\"ext_authz\"}} "
            );
            m.render(None)
                .lines()
                .find_map(|l| l.strip_prefix(&line)?.parse::<u64>().ok())
        };
        for ((effect, kind), n) in &expected {
            assert_eq!(count(&a, effect, kind), Some(*n), "{effect} {kind}");
        }
        // Capped at 2 series: the first two label sets, the rest in the overflow.
        let text = b.render(None);
        let total: u64 = text
            .lines()
            .filter_map(|l| l.strip_prefix("gatehouse_decisions_total{"))
            .map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap())
            .sum();
        assert_eq!(total, 24, "{text}");
        assert_eq!(
            count(&b, "allow", "doc"),
            expected.get(&("allow", "doc")).copied()
        );
        assert_eq!(
            count(&b, "deny", "album"),
            expected.get(&("deny", "album")).copied()
        );
        assert_eq!(count(&b, "allow", "album"), None, "{text}");
        // The last decision's series is remembered: the family's own.
        let labels = ["allow", "doc", "read", "ext_authz"];
        a.observe_check(
            Origin::ExtAuthz,
            Duration::ZERO,
            [ActionOutcome {
                kind: "doc",
                action: "read",
                allowed: true,
            }],
        );
        let family = a.inner.decisions.handle(labels);
        assert!(RECENT_DECISIONS.with(|r| {
            r.borrow()
                .entries
                .iter()
                .flatten()
                .any(|e| e.key.matches(labels) && Arc::ptr_eq(&e.series, &family))
        }));
        assert!(LabelKey::new(["allow", &long, "read", "ext_authz"]).is_none());
        let key = LabelKey::new(["allow", "doc", "read", "api"]).unwrap();
        assert!(key.matches(["allow", "doc", "read", "api"]));
        assert!(!key.matches(["allow", "doc", "rea", "dapi"]));
        assert!(!key.matches(["allow", "do", "c", "readapi"]));
    }

    #[test]
    fn config_defaults_and_unknown_keys() {
        let c: MetricsConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(c, MetricsConfig::default());
        assert!(serde_json::from_str::<MetricsConfig>(r#"{"maxSeries": 3}"#).is_err());
    }

    #[test]
    fn the_cardinality_cap_holds_for_request_supplied_actions() {
        let metrics = Metrics::with_max_series(10);
        let actions: Vec<String> = (0..500).map(|i| format!("action-{i}")).collect();
        let long = "x".repeat(10_000);
        metrics.observe_check(
            Origin::Api,
            Duration::from_micros(50),
            actions
                .iter()
                .map(String::as_str)
                .chain([long.as_str()])
                .map(|action| ActionOutcome {
                    kind: "document",
                    action,
                    allowed: false,
                }),
        );
        let text = metrics.render(None);
        assert!(!text.contains(&long[..200]), "label values are clipped");
        let series: Vec<f64> = text
            .lines()
            .filter_map(|l| l.strip_prefix("gatehouse_decisions_total{"))
            .map(|l| l.rsplit_once(' ').unwrap().1.parse().unwrap())
            .collect();
        assert_eq!(series.len(), 11, "10 series and the overflow:\n{text}");
        assert_eq!(series.iter().sum::<f64>(), 501.0);
        for line in [
            "gatehouse_decisions_total{effect=\"other\",kind=\"other\",action=\"other\",origin=\"other\"} 491",
            "gatehouse_check_duration_seconds_count{origin=\"api\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
        }
    }
}
