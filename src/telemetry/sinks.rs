//! [`Sinks`]: where decisions are reported (metrics, the audit log, trace spans), handed
//! to every adapter as one value.

use std::time::Duration;

use super::Tracer;
use crate::audit::AuditSink;
use crate::metrics::Metrics;

/// The server's metrics registry, audit log and tracer, created once by `serve` and
/// cloned into each adapter (every member is a cheap shared handle).
#[derive(Clone)]
pub struct Sinks {
    /// Prometheus metrics.
    pub(crate) metrics: Metrics,
    /// The decision log.
    pub(crate) audit: AuditSink,
    /// OpenTelemetry spans (a no-op when tracing is off).
    pub(crate) tracer: Tracer,
}

impl Sinks {
    /// The three sinks.
    pub fn new(metrics: Metrics, audit: AuditSink, tracer: Tracer) -> Self {
        Sinks {
            metrics,
            audit,
            tracer,
        }
    }

    /// Nothing recorded: fresh metrics, no audit log, no spans.
    pub(crate) fn disabled() -> Self {
        Sinks::new(
            Metrics::default(),
            AuditSink::disabled(),
            Tracer::disabled(),
        )
    }

    /// Flushes the audit log and sends the spans still queued, waiting at most `timeout`
    /// for the exporter.
    pub(crate) async fn shutdown(&self, timeout: Duration) {
        self.audit.flush();
        self.tracer.shutdown(timeout).await;
    }
}
