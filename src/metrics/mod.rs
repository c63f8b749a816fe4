//! A small Prometheus registry: counters and duration histograms with a bounded number of
//! label combinations per metric, rendered in the text exposition format 0.0.4.
//!
//! [`Metrics`] is a cheap cloneable handle handed to each adapter and sink. It imports
//! nothing upstream: adapters report through [`Metrics::observe_check`] and
//! [`Metrics::count_attribute_fetch`], the audit sink through
//! [`Metrics::count_audit_dropped`], and the policy store's state arrives at scrape time
//! as a [`PolicyStats`]. [`metrics_router`] serves `GET /metrics`.
//!
//! Metrics:
//!
//! | name | type | labels |
//! |---|---|---|
//! | `gatehouse_decisions_total` | counter | `effect` (`allow`, `deny`, `would_deny` in shadow mode), `kind`, `action`, `origin` |
//! | `gatehouse_candidate_disagreements_total` | counter | `kind`, `action` |
//! | `gatehouse_check_duration_seconds` | histogram | `origin` |
//! | `gatehouse_attribute_fetches_total` | counter | `result` = `ok`, `error`, `cache_hit` |
//! | `gatehouse_audit_dropped_total` | counter | `reason` = `queue_full`, `write_error` |
//! | `gatehouse_trace_spans_total` | counter | `result` = `exported`, `dropped`, `failed` |
//! | `gatehouse_jwt_cache_lookups_total` | counter | `result` = `hit`, `miss` (bearer JWTs verified by ext_authz) |
//! | `gatehouse_policy_reloads_total` | counter | `result` = `ok`, `failed` |
//! | `gatehouse_policies_loaded` | gauge | `type` |
//! | `gatehouse_policy_revision_info` | gauge (always 1) | `source`, `revision` |
//!
//! Label values come partly from requests (actions, resource kinds): each metric keeps at
//! most `maxSeriesPerMetric` combinations and counts the rest under one series whose
//! labels are all `other`; values longer than 128 bytes are cut.

mod family;
mod registry;
mod router;

pub(crate) use registry::{
    ActionOutcome, AttributeFetch, AuditDrop, MetricsConfig, Origin, PlanOutcome, SpanExport,
};
pub use registry::{Metrics, PolicyStats};
pub use router::{CONTENT_TYPE, metrics_router};
