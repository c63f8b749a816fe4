//! `gatehouse serve`: the ext_authz gRPC server and the HTTP listener, on one policy
//! store, with one shutdown signal.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use axum::response::IntoResponse as _;
use clap::{Args, ValueEnum};
use envoy_types::ext_authz::v3::pb::AuthorizationServer;
use tokio::sync::watch;

use crate::config::{BUNDLED_CONFIG, ServeConfig};
use crate::extauthz::{self, ExtAuthz};
use crate::store::PolicyStore;
use crate::store::config::{SourceConfig, source_config};

/// How long in-flight requests may take to finish after SIGTERM.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How often a `--config` file is checked for changes when policies come from git.
const CONFIG_POLL: std::time::Duration = std::time::Duration::from_millis(500);

/// Log format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Log level (Cerbos's `--log-level`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    /// Everything, for debugging.
    Debug,
    /// Start, reloads, denials.
    #[default]
    Info,
    /// Problems only.
    Warn,
    /// Failures only.
    Error,
}

/// Arguments of `gatehouse serve`.
#[derive(Debug, Args)]
#[command(
    after_long_help = "Examples:\n  gatehouse serve\n  gatehouse serve --config gatehouse.yaml --grpc-addr 127.0.0.1:3593\n\n\
With no --config the bundled gatehouse.yaml is used, with paths relative to the working directory.\n\
Flags override the configuration file."
)]
pub struct ServeArgs {
    /// Configuration file (gatehouse.yaml).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Policy directory.
    #[arg(long)]
    pub policies: Option<PathBuf>,
    /// gRPC listen address (ext_authz, health).
    #[arg(long)]
    pub grpc_addr: Option<SocketAddr>,
    /// HTTP listen address (Cerbos HTTP API, health).
    #[arg(long)]
    pub http_addr: Option<SocketAddr>,
    /// Admin listen address (status, metrics, the assertion JWKS, health).
    #[arg(long)]
    pub admin_addr: Option<SocketAddr>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Least severe level logged (Cerbos's flag); `RUST_LOG` wins when set.
    #[arg(long, value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,
    /// Fall back to the nearest existing ancestor scope (engine.lenientScopeSearch).
    #[arg(long)]
    pub lenient_scope_search: bool,
    /// Schema enforcement (schema.enforcement): none, warn or reject.
    #[arg(long)]
    pub schema_enforcement: Option<String>,
    /// Policy version used when a request gives none (engine.defaultPolicyVersion).
    #[arg(long)]
    pub default_policy_version: Option<String>,
    /// Globals (`G.x`) as a JSON object (engine.globals).
    #[arg(long)]
    pub globals: Option<String>,
}

fn init_logging(format: LogFormat, level: LogLevel) {
    let _ = tracing::subscriber::set_global_default(log_subscriber(
        format,
        level,
        super::log_escape::EscapedStderr,
    ));
}

/// The log subscriber writing to `writer`. Control characters are escaped (request data
/// cannot forge lines), so ANSI colours are off.
fn log_subscriber<W>(
    format: LogFormat,
    level: LogLevel,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    let level = match level {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(writer);
    match format {
        LogFormat::Json => Box::new(builder.json().finish()),
        LogFormat::Text => Box::new(builder.finish()),
    }
}

/// Runs `gatehouse serve` until SIGTERM or Ctrl-C.
pub fn run(args: ServeArgs) -> anyhow::Result<u8> {
    init_logging(args.log_format, args.log_level);
    super::catch_panic::install_hook();
    if crate::fault::init()? {
        tracing::warn!(
            "fault injection is on ({}): requests with the secret in {} panic; for tests only",
            crate::fault::ENV,
            crate::fault::HEADER
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(serve(args));
    // A git operation still running on a blocking thread must not hold up the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}

/// Reads `path` (or, without one, the bundled configuration, with paths relative to the
/// working directory): the configuration, its key positions and the directory relative
/// paths resolve against.
pub(crate) fn read_config(
    path: Option<&Path>,
) -> anyhow::Result<(ServeConfig, crate::config::Positions, PathBuf)> {
    match path {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
            let (config, positions) =
                ServeConfig::parse_with_positions(&text, &path.display().to_string())?;
            Ok((config, positions, base))
        }
        None => {
            let (config, positions) =
                ServeConfig::parse_with_positions(BUNDLED_CONFIG, "bundled gatehouse.yaml")?;
            Ok((config, positions, PathBuf::from(".")))
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<u8> {
    let (mut config, positions, base) = read_config(args.config.as_deref())?;
    if args.lenient_scope_search {
        config.engine.lenient_scope_search = true;
    }
    if let Some(e) = &args.schema_enforcement {
        config.schema.enforcement = Some(e.clone());
    }
    if let Some(v) = &args.default_policy_version {
        config.engine.default_policy_version = Some(v.clone());
    }
    if let Some(g) = &args.globals {
        match serde_json::from_str::<serde_json::Value>(g) {
            Ok(serde_json::Value::Object(m)) => config.engine.globals = m,
            _ => anyhow::bail!("--globals must be a JSON object"),
        }
    }
    let mut source = source_config(config.policies.as_ref(), config.storage.as_ref(), &base)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(dir) = &args.policies {
        source = SourceConfig::Directory {
            path: dir.clone(),
            watch: match source {
                SourceConfig::Directory { watch, .. } => watch,
                SourceConfig::Git { .. } => Some(std::time::Duration::from_millis(500)),
            },
        };
    }
    // gatehouse.yaml is followed as the policy directory is (its interval; not at all
    // with `watchForChanges: false`, leaving SIGHUP), and every 500 ms beside git.
    let config_watch = match &source {
        SourceConfig::Directory { watch, .. } => *watch,
        SourceConfig::Git { .. } => Some(CONFIG_POLL),
    };
    let grpc_addr = args.grpc_addr.unwrap_or(config.server.grpc_listen_addr);
    let http_addr = args.http_addr.unwrap_or(config.server.http_listen_addr);
    let admin_addr = args.admin_addr.unwrap_or(config.server.admin_listen_addr);
    let cerbos_api = config.server.cerbos_api;
    let tls = match config.server.tls.clone() {
        None => None,
        Some(section) => {
            let section = section.resolve(&base);
            section.validate().map_err(|e| anyhow::anyhow!(e))?;
            let load = |alpn, name| {
                super::tls::ListenerTls::load(&section, alpn, name)
                    .map_err(|e| anyhow::anyhow!("server.tls: {e}"))
            };
            Some((
                load(super::tls::ALPN_GRPC, "grpc")?,
                load(super::tls::ALPN_HTTP, "http")?,
            ))
        }
    };

    let engine_config = config.engine_config()?;
    let (store, poll) = match source {
        SourceConfig::Directory { path, watch } => {
            if !path.is_dir() {
                anyhow::bail!("{}", missing_policies(&path, &args));
            }
            let store = PolicyStore::load(&path, engine_config).map_err(|e| {
                anyhow::anyhow!("policies in {} do not compile:\n{e}", path.display())
            })?;
            (store, watch)
        }
        SourceConfig::Git { source, poll } => {
            let url = source.redacted_url();
            let branch = source.branch.clone();
            let store =
                tokio::task::spawn_blocking(move || PolicyStore::load_git(source, engine_config))
                    .await
                    .context("git checkout task failed")?
                    .map_err(|e| {
                        anyhow::anyhow!("policies from {url} ({branch}) do not load:\n{e}")
                    })?;
            tracing::info!(url = %url, branch = %branch, commit = %store.status().revision, "policies checked out from git");
            (store, poll)
        }
    };
    let store = Arc::new(store);
    let counts = store.snapshot().engine.policies().counts();
    tracing::info!(
        directory = %store.directory().display(),
        resource = counts.resource,
        principal = counts.principal,
        role = counts.role,
        "policies loaded"
    );
    let metrics = crate::metrics::Metrics::new(&config.metrics);
    let audit =
        crate::audit::AuditSink::new(&config.audit.clone().resolve_paths(&base), metrics.clone())
            .map_err(|e| anyhow::anyhow!("audit: {e}"))?;
    let tracer = match config.tracing.resolve(|k| std::env::var(k).ok()) {
        Some(otlp) => {
            let tracer = crate::telemetry::Tracer::start(&otlp, metrics.clone())?;
            tracing::info!(endpoint = %otlp.endpoint, service = %otlp.service_name, "tracing: exporting spans over OTLP/HTTP");
            tracer
        }
        None => crate::telemetry::Tracer::disabled(),
    };
    let sinks = crate::telemetry::Sinks::new(metrics, audit, tracer);
    let ext: ExtAuthz =
        extauthz::build_with_sinks(&config.ext_authz, store.clone(), &base, sinks.clone()).await?;
    let ext = extauthz::LiveExtAuthz::new(ext);
    let jwks_ext = ext.clone();
    let http_ext = ext.clone();
    let status_ext = ext.clone();
    // The file is followed (bundled configuration: nothing to follow).
    let reloader = args.config.as_ref().map(|path| {
        Arc::new(super::reload::ConfigReloader::new(
            path.clone(),
            base.clone(),
            positions.text(),
            config.audit.clone().resolve_paths(&base),
            ext.clone(),
            store.clone(),
            sinks.clone(),
        ))
    });
    drop(positions);
    let api_settings = config.api_settings(&base).await?.with_sinks(sinks.clone());
    tracing::info!(revision = %store.status().revision, "policy revision in force");
    if let Some(interval) = poll {
        tokio::spawn(store.clone().watch(interval));
    }
    if let Some(r) = &reloader {
        tracing::info!(file = %r.path().display(), watched = config_watch.is_some(), "gatehouse.yaml: extAuthz and audit reload on change and on SIGHUP; other sections need a restart");
        if let Some(interval) = config_watch {
            tokio::spawn(r.clone().watch(interval));
        }
    }

    #[cfg(unix)]
    {
        let store = store.clone();
        let reloader = reloader.clone();
        if let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    match &reloader {
                        Some(r) => {
                            tracing::info!(file = %r.path().display(), "SIGHUP: reloading policies and gatehouse.yaml")
                        }
                        None => tracing::info!(
                            "SIGHUP: reloading policies (the bundled gatehouse.yaml does not change)"
                        ),
                    }
                    let s = store.clone();
                    let _ = tokio::task::spawn_blocking(move || s.reload()).await;
                    if let Some(r) = &reloader {
                        let _ = r.reload().await;
                    }
                }
            });
        }
    }

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: draining in-flight requests");
        let _ = shutdown_tx.send(true);
    });

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<AuthorizationServer<extauthz::LiveExtAuthz>>()
        .await;
    health_reporter
        .set_serving::<crate::api::pb::cerbos::svc::v1::cerbos_service_server::CerbosServiceServer<
            crate::api::CerbosApi,
        >>()
        .await;

    let grpc_listener = tokio::net::TcpListener::bind(grpc_addr)
        .await
        .with_context(|| format!("cannot listen on {grpc_addr}"))?;
    let http_listener = tokio::net::TcpListener::bind(http_addr)
        .await
        .with_context(|| format!("cannot listen on {http_addr}"))?;
    let admin_listener = tokio::net::TcpListener::bind(admin_addr)
        .await
        .with_context(|| format!("cannot listen on {admin_addr}"))?;
    tracing::info!(grpc = %grpc_listener.local_addr()?, http = %http_listener.local_addr()?, admin = %admin_listener.local_addr()?, tls = tls.is_some(), cerbos_api = ?cerbos_api, "listening");
    let conns = &config.server.connections;
    let limits = super::listener::ConnectionLimits {
        max_connections: super::listener::effective_max_connections(conns.max_connections),
        idle_timeout: std::time::Duration::from_millis(conns.idle_timeout_ms.max(1)),
        header_read_timeout: std::time::Duration::from_millis(conns.header_read_timeout_ms.max(1)),
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
    let grpc_listener =
        super::listener::LimitedListener::new(grpc_listener, limits).with_tls(grpc_tls);
    let http_listener =
        super::listener::LimitedListener::new(http_listener, limits).with_tls(http_tls);
    let admin_listener = super::listener::LimitedListener::new(admin_listener, limits);

    let mut grpc_shutdown = shutdown_rx.clone();
    let grpc = tonic::transport::Server::builder()
        .max_concurrent_streams(Some(conns.max_concurrent_streams))
        .http2_keepalive_interval(Some(std::time::Duration::from_millis(
            conns.keep_alive_interval_ms.max(1),
        )))
        .http2_keepalive_timeout(Some(std::time::Duration::from_millis(
            conns.keep_alive_timeout_ms.max(1),
        )))
        .max_connection_age(std::time::Duration::from_millis(
            conns.max_connection_age_ms.max(1),
        ))
        .add_service(health_service)
        .add_service(super::catch_panic::CatchPanic::new(
            AuthorizationServer::new(ext),
            super::catch_panic::grpc_internal,
        ))
        .add_optional_service(
            (cerbos_api != super::admin::CerbosApiMode::Disabled).then(|| {
                tonic::service::interceptor::InterceptedService::new(
                    super::catch_panic::CatchPanic::new(
                        crate::api::grpc_service(store.clone(), api_settings.clone()),
                        super::catch_panic::grpc_internal,
                    ),
                    super::admin::grpc_guard(cerbos_api),
                )
            }),
        )
        .serve_with_incoming_shutdown(grpc_listener.into_stream(), async move {
            let _ = grpc_shutdown.wait_for(|v| *v).await;
        });

    let status_store = store.clone();
    let status_config = reloader.clone();
    // The admin listener: status, metrics, the assertion JWKS (and health).
    let mut admin_router = axum::Router::new()
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
    // The HTTP listener: health for probes, and the Cerbos HTTP API unless it is off.
    let router = axum::Router::new().route("/health", axum::routing::get(health));
    let router = match cerbos_api {
        super::admin::CerbosApiMode::Disabled => {
            router.route("/_cerbos/health", axum::routing::get(health))
        }
        super::admin::CerbosApiMode::Enabled => {
            router.merge(crate::api::http_router(store.clone(), api_settings))
        }
        super::admin::CerbosApiMode::Loopback => router
            .merge(crate::api::http_router(store.clone(), api_settings))
            .layer(axum::middleware::from_fn(super::admin::loopback_only)),
    };
    let router = router.merge(extauthz::http_router(http_ext));
    if config.metrics.enabled {
        let s = store.clone();
        admin_router = admin_router.merge(crate::metrics::metrics_router(
            sinks.metrics.clone(),
            move || {
                let st = s.status();
                let c = s.snapshot().engine.policies().counts();
                Some(crate::metrics::PolicyStats {
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
                })
            },
        ));
    }
    let mut http_shutdown = shutdown_rx.clone();
    let http = super::listener::serve_http(http_listener, router, async move {
        let _ = http_shutdown.wait_for(|v| *v).await;
    });
    let mut admin_shutdown = shutdown_rx.clone();
    let admin = super::listener::serve_http(admin_listener, admin_router, async move {
        let _ = admin_shutdown.wait_for(|v| *v).await;
    });

    // In-flight requests drain after the signal, but an idle client holding its
    // connection open must not keep the process alive: the drain is bounded.
    let mut drain_rx = shutdown_rx.clone();
    let drain_deadline = async move {
        let _ = drain_rx.wait_for(|v| *v).await;
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
    sinks.shutdown(std::time::Duration::from_secs(5)).await;
    tracing::info!("stopped");
    Ok(0)
}

/// Why there is no policy directory: the path tried, made absolute, and which setting
/// named it (a newcomer running `serve` from another directory gets the bundled
/// configuration, whose paths are relative to the working directory).
fn missing_policies(path: &Path, args: &ServeArgs) -> String {
    let cwd = std::env::current_dir().unwrap_or_default();
    let named_by = match (&args.policies, &args.config) {
        (Some(_), _) => "--policies".to_string(),
        (None, Some(config)) => format!("the configuration {}", config.display()),
        (None, None) => "the bundled gatehouse.yaml (no --config given), whose paths are \
                         relative to the working directory"
            .to_string(),
    };
    format!(
        "no policy directory at {} ({}), named by {named_by}; working directory {}.\n\
         Run from the repository, or give --config FILE (its paths are relative to it) or \
         --policies DIR.",
        path.display(),
        cwd.join(path).display(),
        cwd.display()
    )
}

async fn health() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"status": "SERVING"}))
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_12_request_data_cannot_forge_log_lines() {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let writer = {
            let b = buffer.clone();
            move || super::super::log_escape::EscapeControl(b.clone())
        };
        let subscriber = log_subscriber(LogFormat::Text, LogLevel::Info, writer);
        let forged = "no route for GET /x\n2026-12-06T07:00:00Z  INFO gatehouse: allow \u{1b}[2J\r";
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(reason = %forged, path = forged, "deny");
        });
        let out = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(out.ends_with('\n'));
        assert!(
            out.contains(r"/x\n2026-12-06T07:00:00Z  INFO gatehouse: allow \u{1b}[2J\r"),
            "{out}"
        );
    }
}
