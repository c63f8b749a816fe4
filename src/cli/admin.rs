//! The admin surface and who may reach the Cerbos API (issue 12, item 7).
//!
//! `/metrics`, `/_gatehouse/status` and `/_gatehouse/jwks.json` are served on their own
//! listener (`server.adminListenAddr`, default `127.0.0.1:3594`), never on the API
//! listeners; `/health` and `/_cerbos/health` stay on the HTTP listener for probes. The
//! Cerbos API (`server.cerbosApi`) is `enabled`, `disabled`, or `loopback`: answered only to
//! clients connecting from a loopback address (others get HTTP 403 or gRPC
//! `PERMISSION_DENIED`), on both listeners.

use std::net::SocketAddr;

pub(crate) use crate::config::CerbosApiMode;
use axum::extract::{ConnectInfo, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Whether `peer` may use the Cerbos API under `mode`.
pub(crate) fn api_allowed(mode: CerbosApiMode, peer: Option<SocketAddr>) -> bool {
    match mode {
        CerbosApiMode::Enabled => true,
        CerbosApiMode::Disabled => false,
        CerbosApiMode::Loopback => peer.is_some_and(|p| p.ip().to_canonical().is_loopback()),
    }
}

/// Paths that stay open to every client: the health probes.
fn is_health(path: &str) -> bool {
    path == "/health" || path == "/_cerbos/health"
}

/// Middleware of the Cerbos HTTP routes under [`CerbosApiMode::Loopback`].
pub(crate) async fn loopback_only(request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    if is_health(request.uri().path()) || api_allowed(CerbosApiMode::Loopback, peer) {
        return next.run(request).await;
    }
    (
        axum::http::StatusCode::FORBIDDEN,
        axum::Json(serde_json::json!({
            "code": 7,
            "message": "the Cerbos API is served to loopback clients only",
        })),
    )
        .into_response()
}

/// gRPC interceptor of the Cerbos service.
pub(crate) fn grpc_guard(
    mode: CerbosApiMode,
) -> impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone {
    move |request: tonic::Request<()>| {
        if api_allowed(mode, request.remote_addr()) {
            Ok(request)
        } else {
            Err(tonic::Status::permission_denied(
                "the Cerbos API is served to loopback clients only",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn issue_12_cerbos_api_loopback_mode_refuses_other_peers() {
        use tower_service::Service as _;
        let mut router = axum::Router::new()
            .route(
                "/api/check/resources",
                axum::routing::post(|| async { "ok" }),
            )
            .route("/_cerbos/health", axum::routing::get(|| async { "up" }))
            .layer(axum::middleware::from_fn(loopback_only));
        let call = |path: &str, peer: &str| {
            let mut r = Request::builder()
                .method(if path.starts_with("/api") {
                    "POST"
                } else {
                    "GET"
                })
                .uri(path)
                .body(axum::body::Body::empty())
                .unwrap();
            r.extensions_mut()
                .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
            r
        };
        for (path, peer, status) in [
            ("/api/check/resources", "127.0.0.1:5000", 200),
            ("/api/check/resources", "[::1]:5000", 200),
            ("/api/check/resources", "[::ffff:127.0.0.1]:5000", 200),
            ("/api/check/resources", "10.1.2.3:5000", 403),
            ("/api/check/resources", "[2001:db8::1]:5000", 403),
            ("/_cerbos/health", "10.1.2.3:5000", 200),
        ] {
            let response = router.call(call(path, peer)).await.unwrap();
            assert_eq!(response.status().as_u16(), status, "{path} from {peer}");
        }
        let mut guard = grpc_guard(CerbosApiMode::Loopback);
        assert_eq!(
            guard(tonic::Request::new(())).unwrap_err().code(),
            tonic::Code::PermissionDenied,
            "no peer address: refused"
        );
        assert!(!api_allowed(
            CerbosApiMode::Disabled,
            Some("127.0.0.1:1".parse().unwrap())
        ));
        assert!(api_allowed(CerbosApiMode::Enabled, None));
    }
}
