//! The `extAuthz` section of `gatehouse.yaml`: how Envoy's CheckRequests become
//! principals, resources and actions, and how answers are shaped.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The `extAuthz` section.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExtAuthzConfig {
    /// Prefix of the headers injected for the backend (and stripped from clients).
    #[serde(default = "default_prefix")]
    pub(crate) header_prefix: String,
    /// Shape of denial bodies.
    #[serde(default)]
    pub deny_body: DenyBody,
    /// Put the detailed reason of a denial in its body (development only). Off: the body
    /// has the status, a generic reason and the decision id; the details are in the
    /// decision log under that id.
    #[serde(default)]
    pub deny_details: bool,
    /// Where principals come from.
    #[serde(default)]
    pub(crate) principal: PrincipalConfig,
    /// Request to resource mapping.
    #[serde(default)]
    pub(crate) routes: Vec<RouteConfig>,
    /// Largest request body (bytes) read for attributes; larger bodies are denied.
    #[serde(default = "default_max_body")]
    pub(crate) max_body_bytes: usize,
    /// A signed assertion added on allow (off when absent).
    #[serde(default)]
    pub(crate) assertion: Option<super::assertion::AssertionConfig>,
    /// Envoy's HTTP ext_authz (`http_service` with `path_prefix: /_gatehouse/authz`),
    /// served on the HTTP listener.
    #[serde(default)]
    pub(crate) http_service: bool,
    /// Forward-auth for nginx `auth_request` and Traefik/Caddy `forward_auth`, served on
    /// the HTTP listener at `/_gatehouse/forward-auth` (off when absent).
    #[serde(default)]
    pub(crate) forward_auth: Option<ForwardAuthConfig>,
    /// What a denial does on routes that do not say: enforce it, or only log and count it
    /// (`shadow`).
    #[serde(default)]
    pub(crate) mode: Mode,
    /// A candidate policy set decided beside the live one (off when absent).
    #[serde(default)]
    pub(crate) candidate: Option<CandidateConfig>,
    /// Routes imported at start from the app's OpenAPI document, after the hand-written
    /// `routes` (off when absent).
    #[serde(default)]
    pub(crate) openapi: Option<OpenApiConfig>,
    /// Largest `<prefix>filter` header (bytes) a plan route hands the backend; a larger
    /// filter is answered 503, never shortened.
    #[serde(default = "default_max_filter")]
    pub(crate) max_filter_bytes: usize,
    /// Which gRPC answers carry the decision as Envoy dynamic metadata (for Envoy's access
    /// log): denials by default; allowed requests carry the decision id in the backend's
    /// `<prefix>decision-id` header, which the access log can read instead.
    #[serde(default)]
    pub(crate) envoy_metadata: EnvoyMetadata,
}

/// `extAuthz.envoyMetadata`: which gRPC answers carry the decision in Envoy's dynamic
/// metadata (namespace `envoy.filters.http.ext_authz`). Each answer that carries it costs
/// Envoy about 15,000 instructions (parsing, copying and merging the `Struct`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum EnvoyMetadata {
    /// No answer (`none`).
    #[serde(rename = "none")]
    Never,
    /// Denials only: `decision_id`, `effect`, `reason`, `policy`.
    #[default]
    Deny,
    /// Every answer; allowed ones carry `decision_id`, `effect`, `principal`.
    All,
}

impl EnvoyMetadata {
    /// Allowed answers carry the metadata.
    pub(crate) fn on_allow(self) -> bool {
        self == EnvoyMetadata::All
    }

    /// Denials carry the metadata.
    pub(crate) fn on_deny(self) -> bool {
        self != EnvoyMetadata::Never
    }
}

/// `extAuthz.openapi`: where the app's OpenAPI document is read from (exactly one of
/// `file` and `url`).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct OpenApiConfig {
    /// The document saved to a file (relative to the configuration file).
    #[serde(default)]
    pub(crate) file: Option<std::path::PathBuf>,
    /// The app's `/openapi.json` URL.
    #[serde(default)]
    pub(crate) url: Option<String>,
    /// Timeout of the fetch from `url`, milliseconds.
    #[serde(default = "default_openapi_timeout")]
    pub(crate) timeout_ms: u64,
    /// Pass operations marked public through without a decision.
    #[serde(default)]
    pub(crate) public_passthrough: bool,
    /// Base of relative fetch URLs in `x-gatehouse-attributes` (default: the origin of
    /// `url`).
    #[serde(default)]
    pub(crate) base_url: Option<String>,
}

fn default_openapi_timeout() -> u64 {
    2_000
}

/// Enforcement mode of a route (or of all routes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Mode {
    /// Denials are answered.
    #[default]
    Enforce,
    /// Denials are logged and counted as `would_deny`; the request is allowed.
    Shadow,
}

/// The `candidate` section: a second policy source, a directory or a git branch.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct CandidateConfig {
    /// A policy directory (relative to the configuration file).
    #[serde(default)]
    pub(crate) directory: Option<std::path::PathBuf>,
    /// A git branch instead of a directory.
    #[serde(default)]
    pub(crate) git: Option<CandidateGit>,
}

/// `candidate.git`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct CandidateGit {
    /// Repository URL (credentials from git's own configuration).
    pub(crate) url: String,
    /// Branch (or tag) to check out.
    #[serde(default = "default_candidate_branch")]
    pub(crate) branch: String,
    /// Directory of the policies inside the repository.
    #[serde(default)]
    pub(crate) sub_dir: std::path::PathBuf,
}

fn default_candidate_branch() -> String {
    "main".into()
}

/// The `forwardAuth` section.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ForwardAuthConfig {
    /// Addresses or CIDR blocks of the proxies whose `X-Forwarded-*`/`X-Original-*`
    /// headers are believed; requests from anywhere else are denied.
    pub(crate) trusted_proxies: Vec<String>,
    /// Status of every denial but 401 (nginx passes only 401 and 403 on); absent: the
    /// denial's own status (403, 400, 404, 413).
    #[serde(default)]
    pub(crate) deny_status: Option<u16>,
}

fn default_prefix() -> String {
    "x-gatehouse-".into()
}

fn default_max_body() -> usize {
    1024 * 1024
}

/// Default of `maxFilterBytes`: 8 KiB.
pub(crate) fn default_max_filter() -> usize {
    8 * 1024
}

impl Default for ExtAuthzConfig {
    fn default() -> Self {
        ExtAuthzConfig {
            header_prefix: default_prefix(),
            deny_body: DenyBody::default(),
            deny_details: false,
            principal: PrincipalConfig::default(),
            routes: Vec::new(),
            max_body_bytes: default_max_body(),
            assertion: None,
            http_service: false,
            forward_auth: None,
            mode: Mode::default(),
            candidate: None,
            openapi: None,
            max_filter_bytes: default_max_filter(),
            envoy_metadata: EnvoyMetadata::default(),
        }
    }
}

/// Body format of denials.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DenyBody {
    /// `{"detail": "..."}`, as FastAPI's HTTPException.
    #[default]
    Fastapi,
    /// RFC 9457 `application/problem+json`.
    Problem,
}

/// Principal sources and claim mapping.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct PrincipalConfig {
    /// Sources, tried in order.
    #[serde(default)]
    pub(crate) sources: Vec<PrincipalSourceConfig>,
    /// How claims become the principal.
    #[serde(default)]
    pub(crate) claims: ClaimsConfig,
    /// The principal used when no source yields an identity (absent: 401).
    #[serde(default)]
    pub(crate) anonymous: Option<AnonymousConfig>,
}

/// One principal source.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) enum PrincipalSourceConfig {
    /// Claims verified by Envoy's `jwt_authn` filter, from the CheckRequest's metadata.
    JwtAuthn(JwtAuthnSource),
    /// A bearer JWT verified by Gatehouse.
    Jwt(JwtSource),
    /// The mTLS peer identity (SPIFFE ID).
    Mtls(MtlsSource),
    /// Plain request headers: for development only.
    Headers(HeadersSource),
}

/// `jwtAuthn` source.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct JwtAuthnSource {
    /// Metadata namespace of the jwt_authn filter.
    #[serde(default = "default_jwt_authn_ns")]
    pub(crate) namespace: String,
    /// Key of the payload (`payload_in_metadata`); empty takes the first entry.
    #[serde(default)]
    pub(crate) payload_key: String,
}

fn default_jwt_authn_ns() -> String {
    "envoy.filters.http.jwt_authn".into()
}

/// `jwt` source.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct JwtSource {
    /// Header carrying `Bearer <token>`.
    #[serde(default = "default_auth_header")]
    pub(crate) header: String,
    /// Where the verification keys are.
    pub(crate) jwks: JwksConfig,
    /// Accepted algorithms (pinned).
    pub(crate) algorithms: Vec<String>,
    /// Required issuer.
    #[serde(default)]
    pub(crate) issuer: Option<String>,
    /// Accepted audiences (any one must be present).
    #[serde(default)]
    pub(crate) audiences: Vec<String>,
    /// Allowed clock skew, seconds.
    #[serde(default = "default_leeway")]
    pub(crate) leeway_seconds: u64,
}

fn default_auth_header() -> String {
    "authorization".into()
}

fn default_leeway() -> u64 {
    30
}

/// A JWKS location.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct JwksConfig {
    /// A local JWKS (or PEM) file.
    #[serde(default)]
    pub(crate) file: Option<String>,
    /// A remote JWKS URL.
    #[serde(default)]
    pub(crate) url: Option<String>,
    /// Refresh interval for remote sets, seconds.
    #[serde(default = "default_refresh")]
    pub(crate) refresh_seconds: u64,
}

fn default_refresh() -> u64 {
    300
}

/// `mtls` source.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct MtlsSource {
    /// Also trust `x-forwarded-client-cert` (only behind an Envoy that sanitises it).
    #[serde(default)]
    pub(crate) trust_xfcc: bool,
    /// Roles given to mTLS peers.
    #[serde(default)]
    pub(crate) roles: Vec<String>,
}

/// `headers` source (development only).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct HeadersSource {
    /// Header with the principal id.
    pub(crate) id: String,
    /// Header with comma-separated roles.
    #[serde(default)]
    pub(crate) roles: Option<String>,
}

/// Claim to principal mapping.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ClaimsConfig {
    /// Claim holding the principal id.
    #[serde(default = "default_sub")]
    pub(crate) id: String,
    /// Claim holding the roles (a list, or a space/comma separated string).
    #[serde(default = "default_roles_claim")]
    pub(crate) roles: String,
    /// Claims copied into `P.attr` (`["*"]` copies all).
    #[serde(default)]
    pub(crate) attr: Vec<String>,
}

fn default_sub() -> String {
    "sub".into()
}

fn default_roles_claim() -> String {
    "roles".into()
}

impl Default for ClaimsConfig {
    fn default() -> Self {
        ClaimsConfig {
            id: default_sub(),
            roles: default_roles_claim(),
            attr: Vec::new(),
        }
    }
}

/// The anonymous principal.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct AnonymousConfig {
    /// Principal id.
    pub(crate) id: String,
    /// Roles.
    #[serde(default)]
    pub(crate) roles: Vec<String>,
}

/// One route.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RouteConfig {
    /// Path template (`/documents/{id}`, `{rest:path}` for the remainder).
    #[serde(default)]
    pub(crate) path: Option<String>,
    /// Path prefix (instead of a template).
    #[serde(default)]
    pub(crate) prefix: Option<String>,
    /// Methods (empty: all).
    #[serde(default)]
    pub(crate) methods: Vec<String>,
    /// Allowed without a policy decision (no principal needed).
    #[serde(default)]
    pub(crate) public: bool,
    /// The resource.
    #[serde(default)]
    pub(crate) resource: Option<ResourceConfig>,
    /// The action, for every method of the route.
    #[serde(default)]
    pub(crate) action: Option<String>,
    /// Per-method actions, overriding the defaults (GET/HEAD read, POST create,
    /// PUT/PATCH update, DELETE delete).
    #[serde(default)]
    pub(crate) actions: BTreeMap<String, String>,
    /// Where resource attributes come from.
    #[serde(default)]
    pub(crate) attributes: AttributesConfig,
    /// Enforcement mode of this route (absent: `extAuthz.mode`).
    #[serde(default)]
    pub(crate) mode: Option<Mode>,
    /// Ask for a query plan instead of a decision (list routes): the backend gets the
    /// filter of the resources the principal may act on.
    #[serde(default)]
    pub(crate) plan: Option<PlanConfig>,
    /// The headers this route's backend gets (absent: all of them); the others are not
    /// sent, and client-sent copies of them are removed as ever.
    #[serde(default)]
    pub(crate) backend_headers: Option<Vec<BackendHeader>>,
}

/// A header Gatehouse sets for the backend, by its name under the prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum BackendHeader {
    /// `<prefix>decision-id`.
    DecisionId,
    /// `<prefix>principal`.
    Principal,
    /// `<prefix>roles`.
    Roles,
    /// `<prefix>principal-attr`.
    PrincipalAttr,
    /// `<prefix>derived-roles`.
    DerivedRoles,
    /// `<prefix>outputs`.
    Outputs,
}

/// A set of [`BackendHeader`]s, one bit each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HeaderSet(u8);

impl HeaderSet {
    /// Every header.
    pub(crate) const ALL: HeaderSet = HeaderSet(u8::MAX);

    /// The headers listed (`None`: all).
    pub(crate) fn of(list: Option<&[BackendHeader]>) -> HeaderSet {
        match list {
            None => HeaderSet::ALL,
            Some(l) => HeaderSet(l.iter().fold(0, |set, h| set | 1 << *h as u8)),
        }
    }

    /// `h` is in the set.
    pub(crate) fn has(self, h: BackendHeader) -> bool {
        self.0 & (1 << h as u8) != 0
    }
}

impl Default for HeaderSet {
    /// Every header.
    fn default() -> Self {
        HeaderSet::ALL
    }
}

/// A plan route's `plan`: which resources of the route's kind the principal may act on,
/// as a filter for the backend's query (Cerbos's `PlanResources`).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct PlanConfig {
    /// The action planned (`read`).
    pub(crate) action: String,
}

/// A route's resource.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ResourceConfig {
    /// Resource kind.
    pub(crate) kind: String,
    /// Resource id, a template over path parameters (`{id}`).
    #[serde(default)]
    pub(crate) id: String,
    /// Policy version.
    #[serde(default)]
    pub(crate) policy_version: String,
    /// Scope (a template over path parameters).
    #[serde(default)]
    pub(crate) scope: String,
}

/// A route's attribute sources.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct AttributesConfig {
    /// Top-level JSON body fields copied into `R.attr`.
    #[serde(default)]
    pub(crate) body: Vec<String>,
    /// `R.attr` name -> query parameter.
    #[serde(default)]
    pub(crate) query: BTreeMap<String, String>,
    /// `R.attr` name -> request header.
    #[serde(default)]
    pub(crate) headers: BTreeMap<String, String>,
    /// Envoy `context_extensions` keys copied into `R.attr`.
    #[serde(default)]
    pub(crate) context_extensions: Vec<String>,
    /// Keys of Envoy route metadata (`route_metadata_context`, any namespace Envoy sends
    /// via `route_metadata_context_namespaces`) copied into `R.attr`.
    #[serde(default)]
    pub(crate) route_metadata: Vec<String>,
    /// Copy path parameters into `R.attr`.
    #[serde(default)]
    pub(crate) path_params: bool,
    /// Fetch attributes over HTTP.
    #[serde(default)]
    pub(crate) fetch: Option<FetchConfig>,
}

/// An HTTP attribute source.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct FetchConfig {
    /// URL template over path parameters (`http://app/internal/documents/{id}/attributes`).
    pub(crate) url: String,
    /// Timeout, milliseconds.
    #[serde(default = "default_timeout")]
    pub(crate) timeout_ms: u64,
    /// How long a fetched answer is reused, milliseconds (0: not cached).
    #[serde(default)]
    pub(crate) cache_ttl_ms: u64,
    /// Answer 404 when the source answers 404 (the record does not exist). Off: 403,
    /// so that a denial does not reveal whether a record exists.
    #[serde(default)]
    pub(crate) answer_not_found: bool,
}

fn default_timeout() -> u64 {
    500
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServeConfig;

    fn error(text: &str) -> String {
        ServeConfig::parse(text, "g.yaml").unwrap_err().to_string()
    }

    /// `envoyMetadata` and `routes[].backendHeaders` take only their listed values; a
    /// bad one is an error at its line and column.
    #[test]
    fn issue_15_envoy_metadata_and_backend_headers_are_validated() {
        let e = error("policies: {directory: p}\nextAuthz:\n  envoyMetadata: allow\n");
        assert!(e.starts_with("g.yaml:3:18:"), "{e}");
        let e = error(
            "policies: {directory: p}\nextAuthz:\n  routes:\n    - {path: /d, resource: {kind: d}, backendHeaders: [principal, role]}\n",
        );
        assert!(e.starts_with("g.yaml:4:"), "{e}");
        assert!(e.contains("role"), "{e}");
        let c = ServeConfig::parse(
            "policies: {directory: p}\nextAuthz:\n  envoyMetadata: none\n  routes:\n    - {path: /d, resource: {kind: d}, backendHeaders: [principal, decision-id]}\n    - {path: /e, resource: {kind: d}}\n",
            "g.yaml",
        )
        .unwrap();
        assert_eq!(c.ext_authz.envoy_metadata, EnvoyMetadata::Never);
        let routes = &c.ext_authz.routes;
        let lean = HeaderSet::of(routes[0].backend_headers.as_deref());
        assert!(lean.has(BackendHeader::Principal) && lean.has(BackendHeader::DecisionId));
        assert!(!lean.has(BackendHeader::Roles) && !lean.has(BackendHeader::PrincipalAttr));
        let all = HeaderSet::of(routes[1].backend_headers.as_deref());
        assert_eq!(all, HeaderSet::ALL);
        assert!(all.has(BackendHeader::Outputs));
        assert_eq!(
            ServeConfig::parse("policies: {directory: p}\n", "g.yaml")
                .unwrap()
                .ext_authz
                .envoy_metadata,
            EnvoyMetadata::Deny
        );
    }
}
