//! `GET /metrics` for the HTTP listener.

use axum::http::header::CONTENT_TYPE as CONTENT_TYPE_HEADER;

use super::registry::{Metrics, PolicyStats};

/// Content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// A router serving `GET /metrics`: `metrics` plus, at every scrape, the policy families
/// from `policies` (called once per scrape; `None` leaves them out). Merge it into the
/// HTTP listener's router.
pub fn metrics_router<F>(metrics: Metrics, policies: F) -> axum::Router
where
    F: Fn() -> Option<PolicyStats> + Clone + Send + Sync + 'static,
{
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let body = metrics.render(policies().as_ref());
            async move { ([(CONTENT_TYPE_HEADER, CONTENT_TYPE)], body) }
        }),
    )
}
