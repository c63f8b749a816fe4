//! The three listeners `serve` starts once everything is built: gRPC (ext_authz, the
//! Cerbos gRPC API, health), HTTP (Envoy's HTTP ext_authz, forward-auth, the Cerbos HTTP
//! API, health) and admin (status, metrics, the assertion JWKS, health); all stop on one
//! shutdown signal, with a bounded drain.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::response::IntoResponse as _;
use tokio::sync::watch;

use super::admin::CerbosApiMode;
use super::listener::{ConnectionLimits, LimitedListener};
use super::reload::ConfigReloader;
use super::tls::ListenerTls;
use crate::api::ApiSettings;
use crate::config::file::ConnectionsSection;
use crate::extauthz::{self, LiveExtAuthz};
use crate::store::PolicyStore;
use crate::telemetry::Sinks;

/// How long in-flight requests may take to finish after SIGTERM.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest header list (HTTP/2 `SETTINGS_MAX_HEADER_LIST_SIZE`) of a gRPC call: Envoy's
/// ext_authz calls and Cerbos SDK calls carry a few hundred bytes; a larger list is refused
/// (HTTP 431) before it is decoded into a request. Set here rather than left to hyper's
/// default, which is the same today.
const MAX_GRPC_HEADER_LIST: u32 = 16 * 1024;

/// Where the listeners bind.
pub(super) struct Addresses {
    /// ext_authz gRPC, the Cerbos gRPC API, health.
    pub(crate) grpc: SocketAddr,
    /// Envoy's HTTP ext_authz, forward-auth, the Cerbos HTTP API, health.
    pub(crate) http: SocketAddr,
    /// Status, metrics, the assertion JWKS, health.
    pub(crate) admin: SocketAddr,
}

/// Everything the listeners serve, built by `serve`.
pub(super) struct Services {
    /// The policies in force.
    pub(crate) store: Arc<PolicyStore>,
    /// The ext_authz service (follows configuration reloads).
    pub(crate) ext: LiveExtAuthz,
    /// The Cerbos API's settings.
    pub(crate) api_settings: ApiSettings,
    /// Whether and to whom the Cerbos API answers.
    pub(crate) cerbos_api: CerbosApiMode,
    /// The `--config` file follower, for the status page.
    pub(crate) reloader: Option<Arc<ConfigReloader>>,
    /// Metrics, audit and tracing.
    pub(crate) sinks: Sinks,
    /// Whether `/metrics` is served.
    pub(crate) metrics: bool,
}

/// Binds the three listeners and serves until `shutdown` turns true, then drains
/// in-flight requests for at most [`DRAIN_TIMEOUT`].
pub(super) async fn run(
    services: Services,
    addrs: Addresses,
    tls: Option<(ListenerTls, ListenerTls)>,
    conns: &ConnectionsSection,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<extauthz::CheckServer>().await;
    health_reporter
        .set_serving::<crate::api::pb::cerbos::svc::v1::cerbos_service_server::CerbosServiceServer<
            crate::api::CerbosApi,
        >>()
        .await;
    let (grpc_listener, http_listener, admin_listener) =
        bind(&addrs, tls, conns, services.cerbos_api).await?;

    let grpc = tonic::transport::Server::builder()
        .max_concurrent_streams(Some(conns.max_concurrent_streams))
        .http2_max_header_list_size(MAX_GRPC_HEADER_LIST)
        .http2_keepalive_interval(Some(millis(conns.keep_alive_interval_ms)))
        .http2_keepalive_timeout(Some(millis(conns.keep_alive_timeout_ms)))
        .max_connection_age(millis(conns.max_connection_age_ms))
        .add_service(health_service)
        .add_service(super::catch_panic::CatchPanic::new(
            extauthz::CheckServer::new(services.ext.clone()),
            super::catch_panic::grpc_internal,
        ))
        .add_optional_service((services.cerbos_api != CerbosApiMode::Disabled).then(|| {
            super::admin::GrpcGuard::new(
                super::catch_panic::CatchPanic::new(
                    crate::api::grpc_service(services.store.clone(), services.api_settings.clone()),
                    super::catch_panic::grpc_internal,
                ),
                services.cerbos_api,
            )
        }))
        .serve_with_incoming_shutdown(grpc_listener.into_stream(), signalled(shutdown.clone()));
    let http = super::listener::serve_http(
        http_listener,
        http_router(&services),
        signalled(shutdown.clone()),
    );
    let admin = super::listener::serve_http(
        admin_listener,
        admin_router(&services),
        signalled(shutdown.clone()),
    );

    // In-flight requests drain after the signal, but an idle client holding its
    // connection open must not keep the process alive: the drain is bounded.
    let drain_deadline = async move {
        signalled(shutdown).await;
        tokio::time::sleep(DRAIN_TIMEOUT).await;
    };
    tokio::select! {
        (g, (), ()) = async { tokio::join!(grpc, http, admin) } => {
            g.context("gRPC server failed")?;
        }
        _ = drain_deadline => {
            tracing::warn!("drain timeout reached; closing remaining connections");
        }
    }
    Ok(())
}

/// Resolves once the shutdown signal is given.
async fn signalled(mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|v| *v).await;
}

/// A configured number of milliseconds, at least one.
fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms.max(1))
}

/// The gRPC, HTTP and admin listeners, with the connection limits and, for the first
/// two, TLS (its certificates followed on disk).
async fn bind(
    addrs: &Addresses,
    tls: Option<(ListenerTls, ListenerTls)>,
    conns: &ConnectionsSection,
    cerbos_api: CerbosApiMode,
) -> anyhow::Result<(LimitedListener, LimitedListener, LimitedListener)> {
    let listen = |addr: SocketAddr| async move {
        tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))
    };
    let grpc_listener = listen(addrs.grpc).await?;
    let http_listener = listen(addrs.http).await?;
    let admin_listener = listen(addrs.admin).await?;
    tracing::info!(grpc = %grpc_listener.local_addr()?, http = %http_listener.local_addr()?, admin = %admin_listener.local_addr()?, tls = tls.is_some(), cerbos_api = ?cerbos_api, "listening");
    let limits = ConnectionLimits {
        max_connections: super::listener::effective_max_connections(conns.max_connections),
        idle_timeout: millis(conns.idle_timeout_ms),
        header_read_timeout: millis(conns.header_read_timeout_ms),
    };
    tracing::info!(
        max_connections = limits.max_connections,
        idle_timeout_ms = conns.idle_timeout_ms,
        "connection limits per listener"
    );
    let (grpc_tls, http_tls) = match tls {
        Some((g, h)) => {
            tokio::spawn(g.clone().watch());
            tokio::spawn(h.clone().watch());
            (Some(g), Some(h))
        }
        None => (None, None),
    };
    Ok((
        LimitedListener::new(grpc_listener, limits).with_tls(grpc_tls),
        LimitedListener::new(http_listener, limits).with_tls(http_tls),
        LimitedListener::new(admin_listener, limits),
    ))
}

/// The HTTP listener: health for probes, the Cerbos HTTP API unless it is off, and the
/// ext_authz HTTP modes.
fn http_router(s: &Services) -> axum::Router {
    let router = axum::Router::new().route("/health", axum::routing::get(health));
    let router = match s.cerbos_api {
        CerbosApiMode::Disabled => router.route("/_cerbos/health", axum::routing::get(health)),
        CerbosApiMode::Enabled => router.merge(crate::api::http_router(
            s.store.clone(),
            s.api_settings.clone(),
        )),
        CerbosApiMode::Loopback => router
            .merge(crate::api::http_router(
                s.store.clone(),
                s.api_settings.clone(),
            ))
            .layer(axum::middleware::from_fn(super::admin::loopback_only)),
    };
    router.merge(extauthz::http_router(s.ext.clone()))
}

/// The admin listener: status, metrics (when enabled), the assertion JWKS, and health.
fn admin_router(s: &Services) -> axum::Router {
    let jwks_ext = s.ext.clone();
    let status_ext = s.ext.clone();
    let status_store = s.store.clone();
    let status_config = s.reloader.clone();
    let router = axum::Router::new()
        .route("/health", axum::routing::get(health))
        .route(
            "/_gatehouse/jwks.json",
            axum::routing::get(move || {
                // The key of the configuration in force (it follows reloads).
                let jwks = jwks_ext
                    .current()
                    .assertion
                    .as_ref()
                    .map(|s| s.jwks().clone());
                async move {
                    match jwks {
                        Some(j) => axum::Json(j).into_response(),
                        None => axum::http::StatusCode::NOT_FOUND.into_response(),
                    }
                }
            }),
        )
        .route(
            "/_gatehouse/status",
            axum::routing::get(move || {
                let st = status_store.status();
                let config = status_config.as_ref().map(|r| r.status_json());
                let openapi = status_ext
                    .current()
                    .imported
                    .as_ref()
                    .map(crate::extauthz::openapi::ImportState::status_json);
                async move {
                    axum::Json(serde_json::json!({
                        "revision": st.revision,
                        "reloadsOk": st.reloads_ok,
                        "reloadsFailed": st.reloads_failed,
                        "lastError": st.last_error,
                        "panics": super::catch_panic::panics(),
                        "config": config,
                        "openapi": openapi,
                    }))
                }
            }),
        );
    if !s.metrics {
        return router;
    }
    let store = s.store.clone();
    router.merge(crate::metrics::metrics_router(
        s.sinks.metrics.clone(),
        move || Some(policy_stats(&store)),
    ))
}

/// The policy set's revision, reload counts and policies per kind, for `/metrics`.
fn policy_stats(s: &PolicyStore) -> crate::metrics::PolicyStats {
    let st = s.status();
    let c = s.snapshot().engine.policies().counts();
    crate::metrics::PolicyStats {
        revision: st.revision,
        source: if s.git().is_some() {
            "git"
        } else {
            "directory"
        }
        .into(),
        reloads_ok: st.reloads_ok,
        reloads_failed: st.reloads_failed,
        loaded: vec![
            ("resource".into(), c.resource as u64),
            ("principal".into(), c.principal as u64),
            ("role".into(), c.role as u64),
            ("derived_roles".into(), c.derived_roles as u64),
            ("export_variables".into(), c.export_variables as u64),
            ("export_constants".into(), c.export_constants as u64),
        ],
    }
}

async fn health() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"status": "SERVING"}))
}
