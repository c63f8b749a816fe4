//! What a panic does (issue 12): it fails the one request closed and the server keeps
//! serving. A panic while a request is handled is caught around that request's future:
//! gRPC answers `INTERNAL` (Envoy's ext_authz then applies `status_on_error`, a denial),
//! HTTP answers 500 with a generic body, and the panic is logged (message and location,
//! escaped like every log line) and counted (`panics` in `/_gatehouse/status`). Nothing is
//! allowed by a panic, no connection other than the panicking request's is touched, and
//! state shared between requests is immutable snapshots (`ArcSwap`), so nothing is left
//! half-updated.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use axum::http;

/// Panics caught since the start.
static PANICS: AtomicU64 = AtomicU64::new(0);

/// Panics caught so far.
pub(crate) fn panics() -> u64 {
    PANICS.load(Ordering::Relaxed)
}

fn describe(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// Logs panics through `tracing` (with their location) instead of raw stderr lines.
pub(crate) fn install_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_default();
        tracing::error!(panic = describe(info.payload()), location = %location, "panic while handling a request: the request fails closed");
    }));
}

pin_project_lite::pin_project! {
    /// A request's future whose panic becomes the `on_panic` answer instead of
    /// unwinding further; `inner` is `None` when the call itself panicked.
    pub(crate) struct CatchPanicFuture<F, B> {
        #[pin]
        inner: Option<F>,
        on_panic: fn() -> http::Response<B>,
    }
}

impl<F, B, E> Future for CatchPanicFuture<F, B>
where
    F: Future<Output = Result<http::Response<B>, E>>,
{
    type Output = Result<http::Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(inner) = this.inner.as_pin_mut() else {
            return Poll::Ready(Ok((this.on_panic)()));
        };
        match std::panic::catch_unwind(AssertUnwindSafe(move || inner.poll(cx))) {
            Ok(poll) => poll,
            Err(_) => {
                PANICS.fetch_add(1, Ordering::Relaxed);
                Poll::Ready(Ok((this.on_panic)()))
            }
        }
    }
}

/// A service whose requests fail closed on a panic, answered by `on_panic`.
pub(crate) struct CatchPanic<S, B> {
    inner: S,
    on_panic: fn() -> http::Response<B>,
}

impl<S: Clone, B> Clone for CatchPanic<S, B> {
    fn clone(&self) -> Self {
        CatchPanic {
            inner: self.inner.clone(),
            on_panic: self.on_panic,
        }
    }
}

impl<S, B> CatchPanic<S, B> {
    /// Wraps `inner`.
    pub(crate) fn new(inner: S, on_panic: fn() -> http::Response<B>) -> Self {
        CatchPanic { inner, on_panic }
    }
}

/// The gRPC answer to a panic: `INTERNAL`, no detail.
pub(crate) fn grpc_internal() -> http::Response<tonic::body::Body> {
    tonic::Status::internal("internal error").into_http()
}

/// The HTTP answer to a panic: 500 with a generic JSON body.
pub(crate) fn http_internal() -> http::Response<axum::body::Body> {
    let mut r = http::Response::new(axum::body::Body::from(
        r#"{"code":13,"message":"internal error"}"#,
    ));
    *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

impl<S, R, B> tower_service::Service<R> for CatchPanic<S, B>
where
    S: tower_service::Service<R, Response = http::Response<B>>,
{
    type Response = http::Response<B>;
    type Error = S::Error;
    type Future = CatchPanicFuture<S::Future, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let inner = &mut self.inner;
        let inner = match std::panic::catch_unwind(AssertUnwindSafe(move || inner.call(request))) {
            Ok(f) => Some(f),
            Err(_) => {
                PANICS.fetch_add(1, Ordering::Relaxed);
                None
            }
        };
        CatchPanicFuture {
            inner,
            on_panic: self.on_panic,
        }
    }
}

impl<S: tonic::server::NamedService, B> tonic::server::NamedService for CatchPanic<S, B> {
    const NAME: &'static str = S::NAME;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower_service::Service as _;

    #[tokio::test]
    async fn issue_12_a_panic_fails_the_request_closed_and_the_service_goes_on() {
        let router = axum::Router::new()
            .route(
                "/boom",
                axum::routing::get(|| async {
                    let v: Vec<u8> = Vec::new();
                    #[allow(clippy::indexing_slicing)]
                    let x = v[3];
                    format!("{x}")
                }),
            )
            .route("/ok", axum::routing::get(|| async { "fine" }));
        let mut service = CatchPanic::new(router, http_internal);
        let get = |path: &str| {
            http::Request::builder()
                .uri(path)
                .body(axum::body::Body::empty())
                .unwrap()
        };
        let before = panics();
        let r = service.call(get("/boom")).await.unwrap();
        assert_eq!(r.status(), 500);
        let body = axum::body::to_bytes(r.into_body(), 1024).await.unwrap();
        assert_eq!(&body[..], br#"{"code":13,"message":"internal error"}"#);
        assert!(panics() > before);
        let r = service.call(get("/ok")).await.unwrap();
        assert_eq!(r.status(), 200);
        let grpc = grpc_internal();
        assert_eq!(grpc.headers()["grpc-status"], "13");
    }
}
