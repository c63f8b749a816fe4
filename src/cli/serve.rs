//! `gatehouse serve`: the ext_authz gRPC server and the HTTP listener, on one policy
//! store, with one shutdown signal.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, ValueEnum};
use tokio::sync::watch;

use super::reload::ConfigReloader;
use super::servers::{Addresses, Services};
use super::tls::ListenerTls;
use crate::config::{BUNDLED_CONFIG, ServeConfig};
use crate::engine::EngineConfig;
use crate::extauthz::{self, ExtAuthz};
use crate::store::PolicyStore;
use crate::store::config::{SourceConfig, source_config};
use crate::telemetry::Sinks;

/// How often a `--config` file is checked for changes when policies come from git.
const CONFIG_POLL: std::time::Duration = std::time::Duration::from_millis(500);

/// Log format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Log level (Cerbos's `--log-level`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
enum LogLevel {
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
pub(crate) struct ServeArgs {
    /// Configuration file (gatehouse.yaml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Policy directory.
    #[arg(long)]
    policies: Option<PathBuf>,
    /// gRPC listen address (ext_authz, health).
    #[arg(long)]
    grpc_addr: Option<SocketAddr>,
    /// HTTP listen address (Cerbos HTTP API, health).
    #[arg(long)]
    http_addr: Option<SocketAddr>,
    /// Admin listen address (status, metrics, the assertion JWKS, health).
    #[arg(long)]
    admin_addr: Option<SocketAddr>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Least severe level logged (Cerbos's flag); `RUST_LOG` wins when set.
    #[arg(long, value_enum, default_value_t = LogLevel::Info)]
    log_level: LogLevel,
    /// Fall back to the nearest existing ancestor scope (engine.lenientScopeSearch).
    #[arg(long)]
    lenient_scope_search: bool,
    /// Schema enforcement (schema.enforcement): none, warn or reject.
    #[arg(long)]
    schema_enforcement: Option<String>,
    /// Policy version used when a request gives none (engine.defaultPolicyVersion).
    #[arg(long)]
    default_policy_version: Option<String>,
    /// Globals (`G.x`) as a JSON object (engine.globals).
    #[arg(long)]
    globals: Option<String>,
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
pub(crate) fn run(args: ServeArgs) -> anyhow::Result<u8> {
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
    apply_flags(&mut config, &args)?;
    let source = policy_source(&config, &args, &base)?;
    // gatehouse.yaml is followed as the policy directory is (its interval; not at all
    // with `watchForChanges: false`, leaving SIGHUP), and every 500 ms beside git.
    let config_watch = match &source {
        SourceConfig::Directory { watch, .. } => *watch,
        SourceConfig::Git { .. } => Some(CONFIG_POLL),
    };
    let addrs = Addresses {
        grpc: args.grpc_addr.unwrap_or(config.server.grpc_listen_addr),
        http: args.http_addr.unwrap_or(config.server.http_listen_addr),
        admin: args.admin_addr.unwrap_or(config.server.admin_listen_addr),
    };
    let tls = listener_tls(&config, &base)?;
    let (store, poll) = load_store(source, config.engine_config()?, &args).await?;
    let sinks = start_sinks(&config, &base)?;
    let ext: ExtAuthz =
        extauthz::build_with_sinks(&config.ext_authz, store.clone(), &base, sinks.clone()).await?;
    let ext = extauthz::LiveExtAuthz::new(ext);
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
    follow_changes(&store, reloader.as_ref(), poll, config_watch);
    let shutdown = shutdown_on_signal();

    let services = Services {
        store,
        ext,
        api_settings,
        cerbos_api: config.server.cerbos_api,
        reloader,
        sinks: sinks.clone(),
        metrics: config.metrics.enabled,
    };
    super::servers::run(services, addrs, tls, &config.server.connections, shutdown).await?;
    sinks.shutdown(std::time::Duration::from_secs(5)).await;
    tracing::info!("stopped");
    Ok(0)
}

/// The command-line flags that override the configuration file.
fn apply_flags(config: &mut ServeConfig, args: &ServeArgs) -> anyhow::Result<()> {
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
    Ok(())
}

/// Where policies come from: the configuration's source, or `--policies` (a directory,
/// followed as the configured directory is, or every 500 ms in place of git).
fn policy_source(
    config: &ServeConfig,
    args: &ServeArgs,
    base: &Path,
) -> anyhow::Result<SourceConfig> {
    let source = source_config(config.policies.as_ref(), config.storage.as_ref(), base)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(match &args.policies {
        Some(dir) => SourceConfig::Directory {
            path: dir.clone(),
            watch: match source {
                SourceConfig::Directory { watch, .. } => watch,
                SourceConfig::Git { .. } => Some(std::time::Duration::from_millis(500)),
            },
        },
        None => source,
    })
}

/// The gRPC and HTTP listeners' TLS, when `server.tls` is configured.
fn listener_tls(
    config: &ServeConfig,
    base: &Path,
) -> anyhow::Result<Option<(ListenerTls, ListenerTls)>> {
    let Some(section) = config.server.tls.clone() else {
        return Ok(None);
    };
    let section = section.resolve(base);
    section.validate().map_err(|e| anyhow::anyhow!(e))?;
    let load = |alpn, name| {
        ListenerTls::load(&section, alpn, name).map_err(|e| anyhow::anyhow!("server.tls: {e}"))
    };
    Ok(Some((
        load(super::tls::ALPN_GRPC, "grpc")?,
        load(super::tls::ALPN_HTTP, "http")?,
    )))
}

/// Loads and compiles the policies (a git checkout off the async threads); fails when
/// they do not compile. Also gives how often the source is polled.
async fn load_store(
    source: SourceConfig,
    engine_config: EngineConfig,
    args: &ServeArgs,
) -> anyhow::Result<(Arc<PolicyStore>, Option<std::time::Duration>)> {
    let (store, poll) = match source {
        SourceConfig::Directory { path, watch } => {
            if !path.is_dir() {
                anyhow::bail!("{}", missing_policies(&path, args));
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
    let counts = store.snapshot().engine.policies().counts();
    tracing::info!(
        directory = %store.directory().display(),
        resource = counts.resource,
        principal = counts.principal,
        role = counts.role,
        "policies loaded"
    );
    Ok((Arc::new(store), poll))
}

/// The metrics registry, the audit sink and the tracer, as one handle.
fn start_sinks(config: &ServeConfig, base: &Path) -> anyhow::Result<Sinks> {
    let metrics = crate::metrics::Metrics::new(&config.metrics);
    let audit =
        crate::audit::AuditSink::new(&config.audit.clone().resolve_paths(base), metrics.clone())
            .map_err(|e| anyhow::anyhow!("audit: {e}"))?;
    let tracer = match config.tracing.resolve(|k| std::env::var(k).ok()) {
        Some(otlp) => {
            let tracer = crate::telemetry::Tracer::start(&otlp, metrics.clone())?;
            tracing::info!(endpoint = %otlp.endpoint, service = %otlp.service_name, "tracing: exporting spans over OTLP/HTTP");
            tracer
        }
        None => crate::telemetry::Tracer::disabled(),
    };
    Ok(Sinks::new(metrics, audit, tracer))
}

/// Follows the policy source (every `poll`) and the `--config` file (every
/// `config_watch`), and reloads both on SIGHUP.
fn follow_changes(
    store: &Arc<PolicyStore>,
    reloader: Option<&Arc<ConfigReloader>>,
    poll: Option<std::time::Duration>,
    config_watch: Option<std::time::Duration>,
) {
    if let Some(interval) = poll {
        tokio::spawn(store.clone().watch(interval));
    }
    if let Some(r) = reloader {
        tracing::info!(file = %r.path().display(), watched = config_watch.is_some(), "gatehouse.yaml: extAuthz and audit reload on change and on SIGHUP; other sections need a restart");
        if let Some(interval) = config_watch {
            tokio::spawn(r.clone().watch(interval));
        }
    }
    #[cfg(unix)]
    reload_on_sighup(store.clone(), reloader.cloned());
}

/// On SIGHUP: reloads the policies, then the `--config` file.
#[cfg(unix)]
fn reload_on_sighup(store: Arc<PolicyStore>, reloader: Option<Arc<ConfigReloader>>) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        return;
    };
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

/// A shutdown flag that turns true on SIGTERM or Ctrl-C.
fn shutdown_on_signal() -> watch::Receiver<bool> {
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: draining in-flight requests");
        let _ = shutdown_tx.send(true);
    });
    shutdown_rx
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
