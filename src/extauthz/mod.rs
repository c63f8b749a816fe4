//! The Envoy ext_authz adapter: maps each `CheckRequest` to a principal (verified JWT
//! claims, jwt_authn metadata, mTLS identity, dev headers), a resource and an action
//! (route templates, attributes from the path, query, headers, body, context extensions
//! and the backend), asks the engine, and answers Envoy with headers the backend can
//! trust or a JSON denial.

mod answer;
mod assertion;
mod attributes;
pub mod config;
mod encoding;
pub(crate) mod forward_auth;
mod grpc;
mod http_mode;
mod live;
pub(crate) mod openapi;
pub mod pb;
mod principal;
pub(crate) mod route;
mod service;
mod shadow;
mod view;
mod wire;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use config::ExtAuthzConfig;
pub use grpc::CheckServer;
pub use http_mode::router as http_router;
pub use live::LiveExtAuthz;
pub(crate) use route::RouteMapper;
pub use service::ExtAuthz;
pub use wire::MalformedCheck;

use crate::jwt::{JwtConfig, JwtVerifier, KeySet, KeySource};
use crate::store::PolicyStore;
use crate::telemetry::Sinks;

/// Smallest `maxFilterBytes`: room for `{"kind":"KIND_ALWAYS_ALLOWED"}` and a little more.
const MIN_FILTER_BYTES: usize = 64;
/// Largest `maxFilterBytes`: under Envoy's default 60 KiB limit on a request's headers.
const MAX_FILTER_BYTES: usize = 48 * 1024;

/// Checks `maxFilterBytes`: room for the smallest filter, and under Envoy's limit.
pub(crate) fn check_max_filter(bytes: usize) -> Result<(), String> {
    if (MIN_FILTER_BYTES..=MAX_FILTER_BYTES).contains(&bytes) {
        return Ok(());
    }
    Err(format!(
        "maxFilterBytes {bytes} must be {MIN_FILTER_BYTES} to {MAX_FILTER_BYTES} (the smallest \
         filter header is 29 bytes; Envoy refuses requests whose headers exceed 60 KiB)"
    ))
}

/// An invalid `extAuthz` configuration.
#[derive(Debug, thiserror::Error)]
#[error("extAuthz: {0}")]
pub struct ConfigError(pub String);

fn algorithm(name: &str) -> Result<jsonwebtoken::Algorithm, ConfigError> {
    use jsonwebtoken::Algorithm::*;
    Ok(match name {
        "RS256" => RS256,
        "RS384" => RS384,
        "RS512" => RS512,
        "PS256" => PS256,
        "PS384" => PS384,
        "PS512" => PS512,
        "ES256" => ES256,
        "ES384" => ES384,
        "EdDSA" => EdDSA,
        "HS256" | "HS384" | "HS512" => {
            return Err(ConfigError(format!(
                "algorithm {name}: shared-secret algorithms are not accepted for bearer tokens"
            )));
        }
        other => return Err(ConfigError(format!("unknown algorithm {other:?}"))),
    })
}

/// Builds the service from its configuration, without metrics or audit log (see
/// [`build_with_sinks`]). Relative paths resolve against `base`.
pub async fn build(
    config: &ExtAuthzConfig,
    store: Arc<PolicyStore>,
    base: &Path,
) -> Result<ExtAuthz, ConfigError> {
    build_with_sinks(config, store, base, Sinks::disabled()).await
}

/// Builds the service from its configuration, reporting every decision to the sinks:
/// metrics (duration, effect, attribute fetches), the audit log (origin `ext_authz`) and
/// a span per check. Relative paths resolve against `base`.
pub async fn build_with_sinks(
    config: &ExtAuthzConfig,
    store: Arc<PolicyStore>,
    base: &Path,
    sinks: Sinks,
) -> Result<ExtAuthz, ConfigError> {
    build_after(config, store, base, sinks, None).await
}

/// As [`build_with_sinks`], on a reload: a failed OpenAPI import keeps the routes
/// `previous` imported.
pub(crate) async fn build_after(
    config: &ExtAuthzConfig,
    store: Arc<PolicyStore>,
    base: &Path,
    sinks: Sinks,
    previous: Option<&ExtAuthz>,
) -> Result<ExtAuthz, ConfigError> {
    let (imported, routes) = route_table(config, base, previous).await?;
    check_max_filter(config.max_filter_bytes).map_err(ConfigError)?;
    let prefix = header_prefix(&config.header_prefix)?;
    let mut sources = Vec::new();
    for s in &config.principal.sources {
        sources.push(principal_source(s, base, &sinks).await?);
    }
    let assertion = match &config.assertion {
        Some(a) => Some(Arc::new(assertion::AssertionSigner::load(a, base)?)),
        None => None,
    };
    let forward_auth = match &config.forward_auth {
        Some(f) => Some(forward_auth::ForwardAuth::new(f)?),
        None => None,
    };
    let candidate = match &config.candidate {
        Some(c) => {
            let engine = store.snapshot().engine.config().clone();
            let candidate = shadow::load_candidate(c, base, engine).await?;
            tracing::info!(revision = %candidate.snapshot().revision, "candidate policy set loaded: every decision is also made on it");
            Some(candidate)
        }
        None => None,
    };
    Ok(ExtAuthz {
        imported,
        mode: config.mode,
        candidate,
        http_service: config.http_service,
        forward_auth,
        assertion,
        store,
        routes,
        sources,
        claims: config.principal.claims.clone(),
        anonymous: config.principal.anonymous.clone(),
        names: service::HeaderNames::new(&prefix),
        prefix,
        deny_body: config.deny_body,
        deny_details: config.deny_details,
        max_body: config.max_body_bytes,
        max_filter: config.max_filter_bytes,
        envoy_metadata: config.envoy_metadata,
        fetcher: attributes::AttributeFetcher::new(),
        tracer: sinks.tracer,
        metrics: sinks.metrics,
        audit: sinks.audit,
    })
}

/// The configured routes, with the OpenAPI document's merged in when one is imported
/// (a failed import keeps `previous`'s), as a route mapper.
async fn route_table(
    config: &ExtAuthzConfig,
    base: &Path,
    previous: Option<&ExtAuthz>,
) -> Result<(Option<openapi::ImportState>, RouteMapper), ConfigError> {
    let imported = match &config.openapi {
        Some(o) => Some(
            openapi::load(
                o,
                base,
                &config.routes,
                previous.and_then(|p| p.imported.as_ref()),
            )
            .await,
        ),
        None => None,
    };
    let table = match &imported {
        Some(i) => openapi::merge(&config.routes, &i.routes),
        None => config.routes.clone(),
    };
    let routes = RouteMapper::new(&table).map_err(|errs| {
        ConfigError(
            errs.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    Ok((imported, routes))
}

/// `headerPrefix` in lower case; it must be a non-empty header name prefix.
fn header_prefix(configured: &str) -> Result<String, ConfigError> {
    let prefix = configured.to_ascii_lowercase();
    if prefix.is_empty()
        || !prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(ConfigError(format!(
            "headerPrefix {prefix:?} must be a non-empty header name prefix"
        )));
    }
    Ok(prefix)
}

/// One principal source, compiled (header names in lower case, JWT keys loaded).
async fn principal_source(
    s: &config::PrincipalSourceConfig,
    base: &Path,
    sinks: &Sinks,
) -> Result<principal::Source, ConfigError> {
    Ok(match s {
        config::PrincipalSourceConfig::JwtAuthn(c) => principal::Source::JwtAuthn(c.clone()),
        config::PrincipalSourceConfig::Mtls(c) => principal::Source::Mtls(c.clone()),
        config::PrincipalSourceConfig::Headers(c) => {
            tracing::warn!("principal source `headers` trusts client headers: development only");
            principal::Source::Headers(config::HeadersSource {
                id: c.id.to_ascii_lowercase(),
                roles: c.roles.as_ref().map(|r| r.to_ascii_lowercase()),
            })
        }
        config::PrincipalSourceConfig::Jwt(c) => jwt_source(c, base, sinks).await?,
    })
}

/// A bearer-token source: pinned algorithms, the key set (file or URL) loaded, a
/// verifier with its token cache, and the mapped-principal cache.
async fn jwt_source(
    c: &config::JwtSource,
    base: &Path,
    sinks: &Sinks,
) -> Result<principal::Source, ConfigError> {
    if c.algorithms.is_empty() {
        return Err(ConfigError(
            "jwt: `algorithms` must pin at least one algorithm".into(),
        ));
    }
    let algorithms = c
        .algorithms
        .iter()
        .map(|a| algorithm(a))
        .collect::<Result<Vec<_>, _>>()?;
    let source = match (&c.jwks.file, &c.jwks.url) {
        (Some(f), None) => KeySource::File(base.join(f)),
        (None, Some(u)) => KeySource::Url {
            url: u.clone(),
            refresh_interval: Some(Duration::from_secs(c.jwks.refresh_seconds)),
        },
        _ => {
            return Err(ConfigError(
                "jwt.jwks: give exactly one of `file` and `url`".into(),
            ));
        }
    };
    let keys = KeySet::load(source, false)
        .await
        .map_err(|e| ConfigError(format!("jwt.jwks: {e}")))?;
    let verifier = JwtVerifier::new(JwtConfig {
        key_sets: vec![("default".to_string(), keys)],
        algorithms,
        issuer: c.issuer.clone(),
        audiences: c.audiences.clone(),
        leeway: Duration::from_secs(c.leeway_seconds),
        require_exp: true,
    })
    .map_err(|e| ConfigError(format!("jwt: {e}")))?
    // Verified tokens are remembered (time claims are still checked on every use,
    // entries end at `exp`, a key set refetch invalidates them), so a client's repeated
    // requests pay for one signature check.
    .with_cache_size(10_000)
    .with_metrics(sinks.metrics.clone());
    Ok(principal::Source::Jwt {
        header: c.header.to_ascii_lowercase(),
        verifier: Arc::new(verifier),
        // As many mapped principals as cached tokens: a repeated token is mapped once.
        mapped: principal::MappedCache::new(10_000),
    })
}

/// What the allocation-budget tests decide on: a documents route (principal from the dev
/// headers, the document's attributes from headers) and the demo policies under
/// `policies/`.
#[cfg(test)]
pub(crate) fn documents_route_on_demo_policies() -> (ExtAuthzConfig, Arc<PolicyStore>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config: ExtAuthzConfig = serde_saphyr::from_str(
        r#"
principal:
  sources: [{headers: {id: x-dev-user, roles: x-dev-roles}}]
routes:
  - path: /documents/{id}
    methods: [GET]
    resource: {kind: document, id: "{id}"}
    action: read
    attributes:
      headers: {owner: x-doc-owner, department: x-doc-department, status: x-doc-status}
"#,
    )
    .unwrap();
    let store = Arc::new(
        PolicyStore::load(
            &root.join("policies"),
            crate::engine::EngineConfig::default(),
        )
        .unwrap(),
    );
    (config, store)
}
