//! `gatehouse.yaml` as plain data: the file's schema with its defaults (Cerbos's key
//! names accepted where Cerbos has them), and its conversion, checked once, into the
//! settings each part takes (engine, Cerbos API). `gatehouse serve` only wires them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use super::{ConfigError, ConfigErrors, Positions, Step};
use crate::cel::{Value, from_json};
use crate::engine::{EngineConfig, SchemaEnforcement};
use crate::extauthz::ExtAuthzConfig;

/// A setting that is well-formed YAML but not a valid value.
fn invalid(message: impl Into<String>) -> ConfigError {
    ConfigError::new(None, message)
}

/// The bundled configuration, used when `--config` is not given.
pub(crate) const BUNDLED_CONFIG: &str = include_str!("../../gatehouse.yaml");

/// `gatehouse.yaml`. Cerbos's own key names are accepted where Cerbos has them
/// (`server.requestLimits`, `storage.disk`, `auxData.jwt`, `engine`, `schema`), so a
/// Cerbos configuration file works unchanged.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ServeConfig {
    /// Listeners.
    #[serde(default)]
    pub(crate) server: ServerSection,
    /// Policy source.
    #[serde(default)]
    pub(crate) policies: Option<crate::store::config::PoliciesSection>,
    /// Cerbos's name for the policy source (`storage.driver: disk` or `git`).
    #[serde(default)]
    pub(crate) storage: Option<crate::store::config::StorageSection>,
    /// JWT key sets for `auxData` in the Cerbos API.
    #[serde(default)]
    aux_data: AuxDataSection,
    /// Engine settings.
    #[serde(default)]
    pub(crate) engine: EngineSection,
    /// Schema enforcement.
    #[serde(default)]
    pub(crate) schema: SchemaSection,
    /// The Envoy adapter.
    #[serde(default)]
    pub(crate) ext_authz: ExtAuthzConfig,
    /// The decision (audit) log.
    #[serde(default)]
    pub(crate) audit: crate::audit::AuditConfig,
    /// Prometheus metrics on the HTTP listener.
    #[serde(default)]
    pub(crate) metrics: crate::metrics::MetricsConfig,
    /// OpenTelemetry spans over OTLP/HTTP (off by default).
    #[serde(default)]
    pub(crate) tracing: crate::telemetry::TracingConfig,
    /// Cerbos's usage telemetry settings: accepted so a Cerbos file works; Gatehouse
    /// sends no usage telemetry.
    #[serde(default)]
    #[expect(dead_code, reason = "accepted and checked, never read")]
    telemetry: Option<TelemetrySection>,
}

/// Cerbos's `telemetry` section (`disabled`, `reportInterval`, `stateDir`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[expect(dead_code, reason = "accepted and checked, never read")]
struct TelemetrySection {
    /// Turns Cerbos's usage reports off (Gatehouse never sends any).
    #[serde(default)]
    disabled: bool,
    /// How often Cerbos reports.
    #[serde(default)]
    report_interval: Option<String>,
    /// Where Cerbos keeps its telemetry state.
    #[serde(default)]
    state_dir: Option<PathBuf>,
}

/// `server`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ServerSection {
    /// gRPC listener (`host:port`, or Cerbos's `:port` for every interface).
    #[serde(default = "default_grpc", deserialize_with = "listen_addr")]
    pub(crate) grpc_listen_addr: SocketAddr,
    /// HTTP listener (`host:port`, or Cerbos's `:port` for every interface).
    #[serde(default = "default_http", deserialize_with = "listen_addr")]
    pub(crate) http_listen_addr: SocketAddr,
    /// Cerbos API request limits.
    #[serde(default)]
    request_limits: RequestLimits,
    /// Bounds of both listeners' connections (Gatehouse's keys).
    #[serde(default)]
    pub(crate) connections: ConnectionsSection,
    /// Admin listener: `/metrics`, `/_gatehouse/status`, `/_gatehouse/jwks.json`,
    /// `/health` (Gatehouse's key).
    #[serde(default = "default_admin", deserialize_with = "listen_addr")]
    pub(crate) admin_listen_addr: SocketAddr,
    /// Whether the Cerbos API is served, and to whom (Gatehouse's key).
    #[serde(default)]
    pub(crate) cerbos_api: CerbosApiMode,
    /// TLS on the gRPC and HTTP listeners (Cerbos's keys, plus Gatehouse's own).
    #[serde(default)]
    pub(crate) tls: Option<TlsSection>,
}

/// `server.cerbosApi`: whether the Cerbos API is served, and to whom.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum CerbosApiMode {
    /// Served on both listeners to every client that reaches them.
    #[default]
    Enabled,
    /// Not served (ext_authz only); the health endpoints stay.
    Disabled,
    /// Served only to clients connecting from 127.0.0.0/8 or ::1.
    Loopback,
}

/// `server.tls`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct TlsSection {
    /// Certificate chain, PEM (Cerbos's key).
    pub(crate) cert: PathBuf,
    /// Private key, PEM (Cerbos's key).
    pub(crate) key: PathBuf,
    /// CA certificates that sign client certificates, PEM (Cerbos's key). Given, a
    /// client certificate is verified against them.
    #[serde(default)]
    pub(crate) ca_cert: Option<PathBuf>,
    /// With `caCert`: `optional` (Cerbos's behaviour: a certificate is verified when the
    /// client sends one) or `required` (mutual TLS: no certificate, no connection).
    #[serde(default)]
    pub(crate) client_auth: ClientAuth,
    /// How often the files are checked for changes (milliseconds).
    #[serde(default = "default_reload_interval_ms")]
    pub(crate) reload_interval_ms: u64,
}

fn default_reload_interval_ms() -> u64 {
    5_000
}

/// Whether clients must present a certificate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum ClientAuth {
    /// Verified when sent (Cerbos's `VerifyClientCertIfGiven`).
    #[default]
    Optional,
    /// Every client must present a certificate signed by `caCert`.
    Required,
}

/// `server.connections`: how many connections the listeners keep, and for how long.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ConnectionsSection {
    /// Most open connections per listener (never more than a quarter of the descriptor
    /// limit each).
    #[serde(default = "default_max_connections")]
    pub(crate) max_connections: usize,
    /// A connection with no traffic for this long is closed.
    #[serde(default = "default_idle_timeout_ms")]
    pub(crate) idle_timeout_ms: u64,
    /// Longest TLS handshake, and longest wait for a whole HTTP/1 request head.
    #[serde(default = "default_header_read_timeout_ms")]
    pub(crate) header_read_timeout_ms: u64,
    /// Most concurrent HTTP/2 streams per gRPC connection.
    #[serde(default = "default_max_concurrent_streams")]
    pub(crate) max_concurrent_streams: u32,
    /// HTTP/2 keep-alive ping interval on gRPC connections.
    #[serde(default = "default_keep_alive_interval_ms")]
    pub(crate) keep_alive_interval_ms: u64,
    /// A keep-alive ping unanswered for this long closes the connection.
    #[serde(default = "default_keep_alive_timeout_ms")]
    pub(crate) keep_alive_timeout_ms: u64,
    /// gRPC connections are closed gracefully (GOAWAY) after this long.
    #[serde(default = "default_max_connection_age_ms")]
    pub(crate) max_connection_age_ms: u64,
}

fn default_max_connections() -> usize {
    4096
}

fn default_header_read_timeout_ms() -> u64 {
    10_000
}

fn default_idle_timeout_ms() -> u64 {
    60_000
}

fn default_max_concurrent_streams() -> u32 {
    1024
}

fn default_keep_alive_interval_ms() -> u64 {
    60_000
}

fn default_keep_alive_timeout_ms() -> u64 {
    20_000
}

fn default_max_connection_age_ms() -> u64 {
    600_000
}

impl Default for ConnectionsSection {
    fn default() -> Self {
        ConnectionsSection {
            max_connections: default_max_connections(),
            idle_timeout_ms: default_idle_timeout_ms(),
            header_read_timeout_ms: default_header_read_timeout_ms(),
            max_concurrent_streams: default_max_concurrent_streams(),
            keep_alive_interval_ms: default_keep_alive_interval_ms(),
            keep_alive_timeout_ms: default_keep_alive_timeout_ms(),
            max_connection_age_ms: default_max_connection_age_ms(),
        }
    }
}

/// `server.requestLimits` (Cerbos's keys).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RequestLimits {
    /// Most actions per resource in one CheckResources request.
    #[serde(default = "default_limit")]
    max_actions_per_resource: usize,
    /// Most resources in one CheckResources request.
    #[serde(default = "default_limit")]
    max_resources_per_request: usize,
    /// Most principal roles in one request (Gatehouse's key; Cerbos has no such limit).
    #[serde(default = "default_max_roles")]
    max_roles_per_principal: usize,
    /// Most attribute values, nested values included, in one request (Gatehouse's key).
    #[serde(default = "default_max_attribute_values")]
    max_attribute_values_per_request: usize,
    /// Most `auxData` tokens in one request (Gatehouse's key).
    #[serde(default = "default_max_aux_tokens")]
    max_aux_data_tokens: usize,
}

fn default_max_roles() -> usize {
    crate::api::DEFAULT_MAX_ROLES
}

fn default_max_attribute_values() -> usize {
    crate::api::DEFAULT_MAX_ATTRIBUTE_VALUES
}

fn default_max_aux_tokens() -> usize {
    crate::api::DEFAULT_MAX_AUX_TOKENS
}

fn default_limit() -> usize {
    50
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            max_actions_per_resource: default_limit(),
            max_resources_per_request: default_limit(),
            max_roles_per_principal: default_max_roles(),
            max_attribute_values_per_request: default_max_attribute_values(),
            max_aux_data_tokens: default_max_aux_tokens(),
        }
    }
}

/// `auxData` (Cerbos's keys).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AuxDataSection {
    /// `auxData.jwt`.
    #[serde(default)]
    jwt: Option<AuxJwtSection>,
}

/// `auxData.jwt`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AuxJwtSection {
    /// Key sets by id.
    #[serde(default)]
    key_sets: Vec<KeySetSection>,
    /// Accept tokens without verifying them (development only).
    #[serde(default)]
    disable_verification: bool,
    /// Allowed clock skew, a Go duration (`2s`).
    #[serde(default)]
    acceptable_time_skew: Option<String>,
    /// Verified tokens remembered.
    #[serde(default)]
    cache_size: usize,
}

/// One key set.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct KeySetSection {
    /// Id that requests name in `keySetId`.
    id: String,
    /// A local key set.
    #[serde(default)]
    local: Option<LocalKeySet>,
    /// A remote JWKS.
    #[serde(default)]
    remote: Option<RemoteKeySet>,
    /// Relaxed key checks.
    #[serde(default)]
    insecure: Option<InsecureKeySet>,
}

/// `local`: a file, or base64 data; `pem: true` for PEM keys.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LocalKeySet {
    /// Key file.
    #[serde(default)]
    file: Option<PathBuf>,
    /// Base64-encoded key data.
    #[serde(default)]
    data: Option<String>,
    /// The keys are PEM.
    #[serde(default)]
    pem: bool,
}

/// `remote`: a JWKS URL.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RemoteKeySet {
    /// URL.
    url: String,
    /// Refresh interval, a Go duration.
    #[serde(default)]
    refresh_interval: Option<String>,
}

/// `insecure`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct InsecureKeySet {
    /// Keys without `alg`.
    #[serde(default)]
    optional_alg: bool,
    /// Keys without `kid`.
    #[serde(default)]
    optional_kid: bool,
}

/// Reads a listen address; Cerbos's `:3593` means every interface, an explicit choice.
fn listen_addr<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(d)?;
    let full = if text.starts_with(':') {
        format!("0.0.0.0{text}")
    } else {
        text.clone()
    };
    full.parse().map_err(|_| {
        serde::de::Error::custom(format!("{text:?} is not a listen address (host:port)"))
    })
}

fn default_grpc() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 3593))
}

fn default_admin() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 3594))
}

fn default_http() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 3592))
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            grpc_listen_addr: default_grpc(),
            http_listen_addr: default_http(),
            request_limits: RequestLimits::default(),
            connections: ConnectionsSection::default(),
            admin_listen_addr: default_admin(),
            cerbos_api: CerbosApiMode::default(),
            tls: None,
        }
    }
}

/// `engine`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct EngineSection {
    /// Default policy version.
    #[serde(default)]
    pub(crate) default_policy_version: Option<String>,
    /// Lenient scope search.
    #[serde(default)]
    pub(crate) lenient_scope_search: bool,
    /// Globals.
    #[serde(default)]
    pub(crate) globals: serde_json::Map<String, serde_json::Value>,
    /// A rule whose condition fails to evaluate denies (instead of being skipped).
    #[serde(default)]
    strict_evaluation: bool,
}

/// `schema`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct SchemaSection {
    /// none | warn | reject.
    #[serde(default)]
    pub(crate) enforcement: Option<String>,
}

/// One of `auxData.jwt.keySets`: local (a file or inline base64 data) or remote.
async fn key_set(ks: &KeySetSection, base: &Path) -> Result<crate::jwt::KeySet, ConfigError> {
    use crate::jwt::{KeySet, KeySetOptions};
    let insecure = ks.insecure.as_ref();
    let options = KeySetOptions::new()
        .insecure_optional_alg(insecure.is_some_and(|i| i.optional_alg))
        .insecure_optional_kid(insecure.is_some_and(|i| i.optional_kid));
    let what = format!("auxData.jwt.keySets[{}]", ks.id);
    Ok(match (&ks.local, &ks.remote) {
        (Some(local), None) => {
            let options = options.pem(local.pem);
            let source = local_key_source(local, base, &what)?;
            KeySet::load_with(source, options)
                .await
                .map_err(|e| invalid(format!("{what}: {e}")))?
        }
        (None, Some(remote)) => KeySet::remote(
            &remote.url,
            optional_duration(
                &format!("{what}.remote.refreshInterval"),
                &remote.refresh_interval,
            )?,
            options,
        )
        .map_err(|e| invalid(format!("{what}: {e}")))?,
        _ => {
            return Err(invalid(format!(
                "{what}: give exactly one of `local` and `remote`"
            )));
        }
    })
}

/// Where a local key set is read from: its `file` (under `base`) or its base64 `data`.
fn local_key_source(
    local: &LocalKeySet,
    base: &Path,
    what: &str,
) -> Result<crate::jwt::KeySource, ConfigError> {
    use crate::jwt::KeySource;
    match (&local.file, &local.data) {
        (Some(f), None) => Ok(KeySource::File(base.join(f))),
        (None, Some(d)) => {
            use base64::Engine as _;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(d.trim())
                .map_err(|e| invalid(format!("{what}.local.data is not base64: {e}")))?;
            Ok(KeySource::Data(String::from_utf8(bytes).map_err(|_| {
                invalid(format!("{what}.local.data is not UTF-8"))
            })?))
        }
        _ => Err(invalid(format!(
            "{what}.local: give exactly one of `file` and `data`"
        ))),
    }
}

/// An optional Go duration (`what` names it in the error); negative ones are refused.
fn optional_duration(
    what: &str,
    v: &Option<String>,
) -> Result<Option<std::time::Duration>, ConfigError> {
    match v {
        None => Ok(None),
        Some(text) => {
            let d = crate::cel::functions::std_lib_format::parse_duration(text)
                .map_err(|e| invalid(format!("{what}: {e}")))?;
            Ok(Some(d.to_std().map_err(|_| {
                invalid(format!("{what}: negative duration"))
            })?))
        }
    }
}

impl ServeConfig {
    /// The Cerbos API settings: request limits and `auxData` JWT verification.
    pub(crate) async fn api_settings(
        &self,
        base: &Path,
    ) -> Result<crate::api::ApiSettings, ConfigError> {
        use crate::jwt::{JwtConfig, JwtVerifier};
        let limits = &self.server.request_limits;
        // Cerbos's own bounds of its two limits.
        for (key, value) in [
            ("maxActionsPerResource", limits.max_actions_per_resource),
            ("maxResourcesPerRequest", limits.max_resources_per_request),
        ] {
            if !(1..=500).contains(&value) {
                return Err(invalid(format!(
                    "server.requestLimits.{key} must be between 1 and 500"
                )));
            }
        }
        let mut settings = crate::api::ApiSettings::default()
            .with_limits(
                limits.max_resources_per_request,
                limits.max_actions_per_resource,
            )
            .with_item_limits(
                limits.max_roles_per_principal,
                limits.max_attribute_values_per_request,
                limits.max_aux_data_tokens,
            );
        let Some(jwt) = &self.aux_data.jwt else {
            return Ok(settings);
        };
        let mut key_sets = Vec::new();
        for ks in &jwt.key_sets {
            key_sets.push((ks.id.clone(), key_set(ks, base).await?));
        }
        let verifier = JwtVerifier::new(JwtConfig {
            key_sets,
            leeway: optional_duration("auxData.jwt.acceptableTimeSkew", &jwt.acceptable_time_skew)?
                .unwrap_or_default(),
            require_exp: false,
            ..JwtConfig::default()
        })
        .map_err(|e| invalid(format!("auxData.jwt: {e}")))?
        .with_cache_size(jwt.cache_size);
        settings = settings
            .with_jwt(Arc::new(verifier))
            .with_jwt_verification_disabled(jwt.disable_verification);
        Ok(settings)
    }

    /// Parses a configuration document and checks its routes; errors name
    /// `origin:line:col`.
    pub fn parse(text: &str, origin: &str) -> Result<ServeConfig, ConfigErrors> {
        Self::parse_with_positions(text, origin).map(|(c, _)| c)
    }

    /// [`parse`](Self::parse), also giving the position of every key.
    pub(crate) fn parse_with_positions(
        text: &str,
        origin: &str,
    ) -> Result<(ServeConfig, Positions), ConfigErrors> {
        let (config, positions) =
            super::parse::<ServeConfig>(text, origin).map_err(|e| e.with_lines(text))?;
        if let Err(errors) = crate::extauthz::RouteMapper::new(&config.ext_authz.routes)
            && let Some(errors) = super::route_errors(errors, &positions)
        {
            return Err(errors.with_lines(text));
        }
        if let Err(message) = crate::extauthz::check_max_filter(config.ext_authz.max_filter_bytes) {
            let path = [Step::Key("extAuthz"), Step::Key("maxFilterBytes")];
            return Err(
                ConfigErrors::one(ConfigError::new(positions.at(&path), message)).with_lines(text),
            );
        }
        Ok((config, positions))
    }

    /// The engine settings.
    pub(crate) fn engine_config(&self) -> Result<EngineConfig, ConfigError> {
        let schema_enforcement = match self.schema.enforcement.as_deref() {
            None | Some("none") => SchemaEnforcement::None,
            Some("warn") => SchemaEnforcement::Warn,
            Some("reject") => SchemaEnforcement::Reject,
            Some(other) => {
                return Err(invalid(format!(
                    "schema.enforcement: {other:?} is not none, warn or reject"
                )));
            }
        };
        let globals = match from_json(&serde_json::Value::Object(self.engine.globals.clone())) {
            Value::Map(m) => m,
            _ => Arc::default(),
        };
        Ok(EngineConfig {
            globals,
            lenient_scope_search: self.engine.lenient_scope_search,
            schema_enforcement,
            default_policy_version: self
                .engine
                .default_policy_version
                .clone()
                .unwrap_or_else(|| "default".into()),
            default_scope: String::new(),
            strict_evaluation: self.engine.strict_evaluation,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::config::{SourceConfig, source_config};

    #[test]
    fn bundled_config_is_valid() {
        let c = ServeConfig::parse(BUNDLED_CONFIG, "bundled").unwrap();
        assert_eq!(c.server.grpc_listen_addr, default_grpc());
        // Issue 12, item 7: the bundled configuration listens on loopback only.
        for addr in [
            c.server.grpc_listen_addr,
            c.server.http_listen_addr,
            c.server.admin_listen_addr,
        ] {
            assert!(addr.ip().is_loopback(), "{addr}");
        }
        assert_ne!(c.server.admin_listen_addr, c.server.http_listen_addr);
        assert!(c.engine_config().is_ok());
        assert!(crate::extauthz::RouteMapper::new(&c.ext_authz.routes).is_ok());
    }

    #[tokio::test]
    async fn issue_12_request_limits_are_configured_and_bounded() {
        let c = ServeConfig::parse(
            "server:\n  requestLimits: {maxActionsPerResource: 5, maxRolesPerPrincipal: 3, maxAttributeValuesPerRequest: 9, maxAuxDataTokens: 2}\n",
            "c.yaml",
        )
        .unwrap();
        let s = c.api_settings(Path::new(".")).await.unwrap();
        assert_eq!((s.max_actions, s.max_resources, s.max_roles), (5, 50, 3));
        assert_eq!((s.max_attribute_values, s.max_aux_tokens), (9, 2));
        let c = ServeConfig::parse(
            "server:\n  requestLimits: {maxActionsPerResource: 501}\n",
            "c.yaml",
        )
        .unwrap();
        let e = c.api_settings(Path::new(".")).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "server.requestLimits.maxActionsPerResource must be between 1 and 500"
        );
    }

    #[test]
    fn cerbos_configuration_files_are_accepted() {
        let c = ServeConfig::parse(
            "server:\n  httpListenAddr: \":3592\"\n  grpcListenAddr: 127.0.0.1:3593\n  requestLimits: {maxActionsPerResource: 5, maxResourcesPerRequest: 7}\n\
             storage:\n  driver: disk\n  disk: {directory: /p, watchForChanges: true}\n\
             engine: {defaultPolicyVersion: v1, lenientScopeSearch: true, globals: {env: test}}\n\
             schema: {enforcement: reject}\n",
            "cerbos.yaml",
        )
        .unwrap();
        assert_eq!(c.server.http_listen_addr.port(), 3592);
        assert!(c.server.http_listen_addr.ip().is_unspecified());
        assert_eq!(c.server.request_limits.max_resources_per_request, 7);
        let source = source_config(c.policies.as_ref(), c.storage.as_ref(), Path::new("/etc"));
        assert!(
            matches!(source, Ok(SourceConfig::Directory { path, watch: Some(_) }) if path == Path::new("/p"))
        );
        let e = c.engine_config().unwrap();
        assert!(e.lenient_scope_search);
        assert_eq!(e.default_policy_version, "v1");
        let audit = ServeConfig::parse(
            "policies: {directory: p}\naudit: {enabled: true}\n",
            "c.yaml",
        )
        .unwrap();
        assert_eq!(
            audit.audit.resolve_paths(Path::new(".")).mode,
            crate::audit::AuditMode::All
        );
        let audit = ServeConfig::parse(
            "policies: {directory: p}\naudit: {enabled: false, mode: all}\n",
            "c.yaml",
        )
        .unwrap();
        assert_eq!(
            audit.audit.resolve_paths(Path::new(".")).mode,
            crate::audit::AuditMode::Off
        );
        let hub = ServeConfig::parse("storage: {driver: hub}\n", "cerbos.yaml").unwrap();
        let e = source_config(hub.policies.as_ref(), hub.storage.as_ref(), Path::new("."));
        assert!(e.unwrap_err().contains("not supported"));
    }

    #[test]
    fn issue_14_bad_plan_routes_and_filter_bounds_name_file_line_col() {
        let text = "policies: {directory: p}\n\
                    extAuthz:\n\
                    \x20 routes:\n\
                    \x20   - path: /documents\n\
                    \x20     resource: {kind: document, id: \"*\"}\n\
                    \x20     plan: {action: read}\n\
                    \x20     action: list\n";
        let e = ServeConfig::parse(text, "g.yaml").unwrap_err().to_string();
        assert!(
            e.contains("g.yaml:5:38: route /documents: a plan route covers every resource"),
            "{e}"
        );
        assert!(
            e.contains("g.yaml:7:15: route /documents: a plan route decides nothing"),
            "{e}"
        );
        let e = ServeConfig::parse(
            "policies: {directory: p}\nextAuthz:\n  routes: [{path: /d, resource: {kind: d}, plan: {verb: read}}]\n",
            "g.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("g.yaml:3:"), "{e}");
        let e = ServeConfig::parse(
            "policies: {directory: p}\nextAuthz:\n  maxFilterBytes: 10\n",
            "g.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("g.yaml:3:19: maxFilterBytes 10 must be 64 to 49152"),
            "{e}"
        );
        let c = ServeConfig::parse(
            "policies: {directory: p}\nextAuthz:\n  routes: [{path: /d, resource: {kind: d}, plan: {action: read}}]\n",
            "g.yaml",
        )
        .unwrap();
        assert_eq!(c.ext_authz.max_filter_bytes, 8192);
    }

    #[test]
    fn unknown_keys_are_errors() {
        let e = ServeConfig::parse("policies: {directory: p}\nsever: {}\n", "x.yaml").unwrap_err();
        assert!(e.to_string().contains("sever"), "{e}");
        let c = ServeConfig::parse(
            "policies: {directory: p}\nschema: {enforcement: strict}\n",
            "x.yaml",
        )
        .unwrap();
        assert!(c.engine_config().is_err());
    }
}
