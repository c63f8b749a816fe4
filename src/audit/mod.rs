//! The decision (audit) log: one JSON line per decision, to standard output or to a file
//! rotated by size.
//!
//! Adapters hand a [`DecisionRecord`] to an [`AuditSink`]; the sink imports nothing
//! upstream. Records are serialised off the request path: they go through a bounded queue
//! to a writer thread, which writes them in batches (one flush per batch). With the queue
//! full, `whenFull: drop` (the default) drops the record, counts it in
//! `gatehouse_audit_dropped_total` (see [`crate::metrics`]) and logs how many were dropped;
//! `whenFull: block` makes the decision wait for room. The server flushes the queue before
//! it exits on SIGTERM.
//!
//! A line (keys always present, `null` when unknown):
//!
//! ```json
//! {"time":"2025-01-02T03:04:05.678901Z","decisionId":"0194...","origin":"ext_authz",
//!  "effect":"deny","status":403,"reason":"carol may not update document \"1\"",
//!  "principal":{"id":"carol","roles":["user"],"attr":null},
//!  "resources":[{"kind":"document","id":"1","policyVersion":"","scope":"","attr":null,
//!    "actions":[{"action":"update","effect":"deny","policy":"resource.document.vdefault",
//!                "scope":"","rule":null}]}],
//!  "policyRevision":"5f1c...","requestId":"c0a8...","traceId":"4bf92f35..."}
//! ```
//!
//! Header values, tokens and request bodies are never written. Attributes are written
//! only with `includeAttributes`, after masking by `maskPaths`.

mod config;
mod mask;
mod record;
mod rotate;
mod sink;

pub use config::{
    AuditConfig, AuditFileConfig, AuditMode, AuditOutput, DEFAULT_QUEUE_CAPACITY, WhenFull,
};
pub(crate) use record::{
    ActionRecord, Attributes, DecisionRecord, PlanRecord, PrincipalRecord, ResourceRecord,
};
pub use sink::{AuditError, AuditSink};
