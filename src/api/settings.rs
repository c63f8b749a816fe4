//! What the API adapters are configured with.

use std::sync::Arc;

use crate::jwt::JwtVerifier;

/// Cerbos's default `server.requestLimits.maxResourcesPerRequest`.
pub const DEFAULT_MAX_RESOURCES: usize = 50;
/// Cerbos's default `server.requestLimits.maxActionsPerResource`.
pub const DEFAULT_MAX_ACTIONS: usize = 50;
/// Largest request accepted, in bytes (gRPC's and Cerbos's default receive limit).
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Most roles of the principal in one request (Gatehouse's limit; Cerbos has none).
pub const DEFAULT_MAX_ROLES: usize = 500;
/// Most attribute values in one request, nested values included, principal and resources
/// together (Gatehouse's limit; Cerbos has none).
pub const DEFAULT_MAX_ATTRIBUTE_VALUES: usize = 20_000;
/// Most `auxData` tokens (`jwt` plus the entries of `jwts`) in one request (Gatehouse's
/// limit; Cerbos has none).
pub const DEFAULT_MAX_AUX_TOKENS: usize = 16;

/// What `GET /api/server_info` and the `ServerInfo` RPC report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerInfo {
    /// Release version.
    pub version: String,
    /// Source commit the binary was built from.
    pub commit: String,
    /// Build time, RFC 3339.
    pub build_date: String,
}

impl Default for ServerInfo {
    /// This build: the crate version, and the commit and build time recorded by `build.rs`.
    fn default() -> Self {
        ServerInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            commit: env!("GATEHOUSE_COMMIT").to_string(),
            build_date: env!("GATEHOUSE_BUILD_DATE").to_string(),
        }
    }
}

/// Settings of the Cerbos-compatible API (Cerbos's `server.requestLimits` and `auxData.jwt`).
///
/// ```
/// use gatehouse::api::ApiSettings;
/// let settings = ApiSettings::default().with_limits(5, 5);
/// assert_eq!(settings.max_actions, 5);
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ApiSettings {
    /// Most resources in one CheckResources request (Cerbos `maxResourcesPerRequest`).
    pub max_resources: usize,
    /// Most actions per resource (Cerbos `maxActionsPerResource`).
    pub max_actions: usize,
    /// Largest HTTP request body and gRPC message accepted, in bytes.
    pub(crate) max_body_bytes: usize,
    /// Most principal roles per request.
    pub(crate) max_roles: usize,
    /// Most attribute values per request (nested values count).
    pub(crate) max_attribute_values: usize,
    /// Most `auxData` tokens per request.
    pub(crate) max_aux_tokens: usize,
    /// Verifies `auxData.jwt` and `auxData.jwts` tokens (Cerbos `auxData.jwt.keySets`).
    /// Without a verifier every request carrying a token is refused, unless
    /// `disable_jwt_verification` is set.
    pub(crate) jwt: Option<Arc<JwtVerifier>>,
    /// Read token claims without checking signatures (Cerbos
    /// `auxData.jwt.disableVerification`); for development only.
    pub(crate) disable_jwt_verification: bool,
    /// Reported by `ServerInfo`.
    pub(crate) server_info: ServerInfo,
    /// Where check latencies and decisions are counted (origin `api`).
    pub(crate) metrics: crate::metrics::Metrics,
    /// Where decisions are logged (origin `api`).
    pub(crate) audit: crate::audit::AuditSink,
    /// Where call spans go (off unless tracing is configured).
    pub(crate) tracer: crate::telemetry::Tracer,
}

impl Default for ApiSettings {
    /// Cerbos's defaults (50 resources of 50 actions, 4 MiB messages, no JWT key sets) and
    /// Gatehouse's (500 roles, 20,000 attribute values, 16 `auxData` tokens).
    fn default() -> Self {
        ApiSettings {
            max_resources: DEFAULT_MAX_RESOURCES,
            max_actions: DEFAULT_MAX_ACTIONS,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_roles: DEFAULT_MAX_ROLES,
            max_attribute_values: DEFAULT_MAX_ATTRIBUTE_VALUES,
            max_aux_tokens: DEFAULT_MAX_AUX_TOKENS,
            jwt: None,
            disable_jwt_verification: false,
            server_info: ServerInfo::default(),
            metrics: crate::metrics::Metrics::default(),
            audit: crate::audit::AuditSink::default(),
            tracer: crate::telemetry::Tracer::disabled(),
        }
    }
}

impl ApiSettings {
    /// Counts, logs and traces decisions into these sinks.
    pub fn with_sinks(mut self, sinks: crate::telemetry::Sinks) -> Self {
        self.metrics = sinks.metrics;
        self.audit = sinks.audit;
        self.tracer = sinks.tracer;
        self
    }

    /// Sets the request limits: resources per request and actions per resource.
    pub fn with_limits(mut self, max_resources: usize, max_actions: usize) -> Self {
        self.max_resources = max_resources;
        self.max_actions = max_actions;
        self
    }

    /// Sets Gatehouse's own request limits: principal roles, attribute values (nested
    /// values count) and `auxData` tokens per request.
    pub(crate) fn with_item_limits(
        mut self,
        max_roles: usize,
        max_attribute_values: usize,
        max_aux_tokens: usize,
    ) -> Self {
        self.max_roles = max_roles;
        self.max_attribute_values = max_attribute_values;
        self.max_aux_tokens = max_aux_tokens;
        self
    }

    /// Sets the largest accepted request, in bytes.
    pub fn with_max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Sets the verifier of `auxData` tokens.
    pub fn with_jwt(mut self, verifier: Arc<JwtVerifier>) -> Self {
        self.jwt = Some(verifier);
        self
    }

    /// Reads token claims without verifying them (Cerbos `disableVerification`).
    pub(crate) fn with_jwt_verification_disabled(mut self, disabled: bool) -> Self {
        self.disable_jwt_verification = disabled;
        self
    }

    /// Sets what `ServerInfo` reports.
    pub fn with_server_info(mut self, info: ServerInfo) -> Self {
        self.server_info = info;
        self
    }
}
