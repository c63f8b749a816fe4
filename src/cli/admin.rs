//! The admin surface and who may reach the Cerbos API (issue 12, item 7).
//!
//! `/metrics`, `/_gatehouse/status` and `/_gatehouse/jwks.json` are served on their own
//! listener (`server.adminListenAddr`, default `127.0.0.1:3594`), never on the API
//! listeners; `/health` and `/_cerbos/health` stay on the HTTP listener for probes. The
//! Cerbos API (`server.cerbosApi`) is `enabled`, `disabled`, or `loopback`: answered only to
//! clients connecting from a loopback address (others get HTTP 403 or gRPC
//! `PERMISSION_DENIED`), on both listeners.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

pub(crate) use crate::config::CerbosApiMode;
use axum::extract::{ConnectInfo, Request};
use axum::http;
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

/// The Cerbos gRPC service behind [`api_allowed`]: under [`CerbosApiMode::Loopback`] a
/// call from any other peer (or from an unknown one) answers `PERMISSION_DENIED` without
/// reaching `inner`; under the other modes calls go straight through, the request
/// untouched (no conversion to a `tonic::Request` and back, as an interceptor makes).
#[derive(Clone, Debug)]
pub(crate) struct GrpcGuard<S> {
    inner: S,
    mode: CerbosApiMode,
}

impl<S> GrpcGuard<S> {
    /// `inner` served under `mode`.
    pub(crate) fn new(inner: S, mode: CerbosApiMode) -> Self {
        GrpcGuard { inner, mode }
    }
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for GrpcGuard<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tower_service::Service<http::Request<B>> for GrpcGuard<S>
where
    S: tower_service::Service<
            http::Request<B>,
            Response = http::Response<tonic::body::Body>,
            Error = Infallible,
        >,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = GuardFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if self.mode != CerbosApiMode::Enabled {
            let peer = request
                .extensions()
                .get::<tonic::transport::server::TcpConnectInfo>()
                .and_then(|i| i.remote_addr());
            if !api_allowed(self.mode, peer) {
                let refused = tonic::Status::permission_denied(
                    "the Cerbos API is served to loopback clients only",
                );
                return GuardFuture::Refused {
                    response: Some(refused.into_http()),
                };
            }
        }
        GuardFuture::Inner {
            inner: self.inner.call(request),
        }
    }
}

pin_project_lite::pin_project! {
    /// [`GrpcGuard`]'s answer: the inner service's, or the refusal.
    #[project = GuardFutureProj]
    pub(crate) enum GuardFuture<F> {
        /// Allowed: the inner service answers.
        Inner { #[pin] inner: F },
        /// Refused (taken when polled).
        Refused { response: Option<http::Response<tonic::body::Body>> },
    }
}

impl<F> Future for GuardFuture<F>
where
    F: Future<Output = Result<http::Response<tonic::body::Body>, Infallible>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            GuardFutureProj::Inner { inner } => inner.poll(cx),
            GuardFutureProj::Refused { response } => match response.take() {
                Some(r) => Poll::Ready(Ok(r)),
                None => Poll::Pending,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A service that answers every call with an empty response (no `grpc-status`).
    #[derive(Clone, Copy)]
    struct Answering;

    impl tower_service::Service<http::Request<()>> for Answering {
        type Response = http::Response<tonic::body::Body>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Self::Response, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            std::future::ready(Ok(http::Response::new(tonic::body::Body::empty())))
        }
    }

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
        let answered = |r: http::Response<tonic::body::Body>| {
            r.headers()
                .get("grpc-status")
                .map_or("0 (the service)".to_string(), |v| {
                    v.to_str().unwrap().to_string()
                })
        };
        let inner = Answering;
        for (mode, peer, expected) in [
            (CerbosApiMode::Loopback, None, "7"),
            (CerbosApiMode::Loopback, Some("10.1.2.3:5000"), "7"),
            (CerbosApiMode::Loopback, Some("[2001:db8::1]:5000"), "7"),
            (
                CerbosApiMode::Loopback,
                Some("127.0.0.1:5000"),
                "0 (the service)",
            ),
            (
                CerbosApiMode::Loopback,
                Some("[::1]:5000"),
                "0 (the service)",
            ),
            (CerbosApiMode::Enabled, None, "0 (the service)"),
            (
                CerbosApiMode::Enabled,
                Some("10.1.2.3:5000"),
                "0 (the service)",
            ),
        ] {
            let mut request = http::Request::new(());
            request
                .extensions_mut()
                .insert(tonic::transport::server::TcpConnectInfo {
                    local_addr: None,
                    remote_addr: peer.map(|p| p.parse().unwrap()),
                });
            let mut guard = GrpcGuard::new(inner, mode);
            let response = guard.call(request).await.unwrap();
            assert_eq!(answered(response), expected, "{mode:?} from {peer:?}");
        }
        assert!(!api_allowed(
            CerbosApiMode::Disabled,
            Some("127.0.0.1:1".parse().unwrap())
        ));
        assert!(api_allowed(CerbosApiMode::Enabled, None));
    }
}
