//! Who is asking: the principal from Envoy's jwt_authn metadata, a bearer JWT that
//! Gatehouse verifies, the mTLS peer, or (for development) plain headers.

use std::collections::HashMap;
use std::sync::Arc;

use envoy_types::pb::google::protobuf::{Struct, Value as PbValue, value::Kind};
use serde_json::{Map, Value as Json};

use super::config::{ClaimsConfig, HeadersSource, JwtAuthnSource, MtlsSource};
use crate::cel::{MapValue, Value, from_json};
use crate::engine::Principal;
use crate::jwt::JwtVerifier;

/// A compiled principal source.
pub enum Source {
    /// Envoy jwt_authn metadata.
    JwtAuthn(JwtAuthnSource),
    /// A bearer token verified here.
    Jwt {
        /// Header carrying the token.
        header: String,
        /// The verifier.
        verifier: Arc<JwtVerifier>,
    },
    /// mTLS peer.
    Mtls(MtlsSource),
    /// Development headers.
    Headers(HeadersSource),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::JwtAuthn(s) => f.debug_tuple("JwtAuthn").field(s).finish(),
            Source::Jwt { header, .. } => f
                .debug_struct("Jwt")
                .field("header", header)
                .finish_non_exhaustive(),
            Source::Mtls(s) => f.debug_tuple("Mtls").field(s).finish(),
            Source::Headers(s) => f.debug_tuple("Headers").field(s).finish(),
        }
    }
}

/// What the request says about who is asking.
#[derive(Clone, Debug)]
pub enum Identity {
    /// An identified principal, and the source that identified it.
    Known(Principal, &'static str),
    /// Credentials were presented but are invalid: never fall back to anonymous.
    Invalid(String),
    /// No credentials at all.
    Missing,
}

/// Converts a protobuf `Struct` into JSON.
pub(crate) fn struct_to_json(s: &Struct) -> Json {
    Json::Object(
        s.fields
            .iter()
            .map(|(k, v)| (k.clone(), pb_value_to_json(v)))
            .collect(),
    )
}

/// Converts a protobuf `Value` into JSON.
pub(crate) fn pb_value_to_json(v: &PbValue) -> Json {
    match &v.kind {
        None | Some(Kind::NullValue(_)) => Json::Null,
        Some(Kind::NumberValue(n)) => {
            serde_json::Number::from_f64(*n).map_or(Json::Null, Json::Number)
        }
        Some(Kind::StringValue(s)) => Json::String(s.clone()),
        Some(Kind::BoolValue(b)) => Json::Bool(*b),
        Some(Kind::StructValue(s)) => struct_to_json(s),
        Some(Kind::ListValue(l)) => Json::Array(l.values.iter().map(pb_value_to_json).collect()),
    }
}

/// Builds a principal from verified claims.
pub(crate) fn principal_from_claims(
    claims: &Map<String, Json>,
    mapping: &ClaimsConfig,
) -> Result<Principal, String> {
    let id = match claims.get(&mapping.id) {
        Some(Json::String(s)) if !s.is_empty() => s.clone(),
        Some(Json::Number(n)) => n.to_string(),
        _ => return Err(format!("token has no {:?} claim", mapping.id)),
    };
    let roles: Vec<Arc<str>> = match claims.get(&mapping.roles) {
        Some(Json::Array(items)) => items
            .iter()
            .filter_map(|r| r.as_str().map(Arc::from))
            .collect(),
        Some(Json::String(s)) => s
            .split([' ', ','])
            .filter(|r| !r.is_empty())
            .map(Arc::from)
            .collect(),
        _ => Vec::new(),
    };
    let mut attr = MapValue::new();
    let all = mapping.attr.iter().any(|a| a == "*");
    for (k, v) in claims {
        if all || mapping.attr.iter().any(|a| a == k) {
            attr.insert(crate::cel::Key::String(Arc::from(k.as_str())), from_json(v));
        }
    }
    Ok(Principal {
        id,
        roles,
        attr: Arc::new(attr),
        policy_version: String::new(),
        scope: String::new(),
    })
}

fn bearer<'h>(headers: &'h HashMap<String, String>, header: &str) -> Option<&'h str> {
    let v = headers.get(header)?;
    let (scheme, token) = v.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The SPIFFE ID in an `x-forwarded-client-cert` header (first element's `URI=`).
pub(crate) fn xfcc_spiffe_id(xfcc: &str) -> Option<String> {
    let first = xfcc.split(',').next()?;
    first.split(';').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        let v = v.trim_matches('"');
        (k.trim().eq_ignore_ascii_case("uri") && v.starts_with("spiffe://")).then(|| v.to_string())
    })
}

/// The request facts principal sources read.
pub(crate) struct RequestFacts<'a> {
    /// Lower-cased request headers.
    pub headers: &'a HashMap<String, String>,
    /// `metadata_context.filter_metadata`.
    pub filter_metadata: Option<&'a HashMap<String, Struct>>,
    /// `source.principal` (the verified mTLS peer identity).
    pub peer_principal: &'a str,
}

/// Resolves the identity: sources in order, the first that yields an identity wins.
pub(crate) async fn resolve(
    sources: &[Source],
    facts: &RequestFacts<'_>,
    claims: &ClaimsConfig,
) -> Identity {
    for source in sources {
        match source {
            Source::JwtAuthn(cfg) => {
                let Some(ns) = facts.filter_metadata.and_then(|m| m.get(&cfg.namespace)) else {
                    continue;
                };
                let payload = if cfg.payload_key.is_empty() {
                    ns.fields.values().next()
                } else {
                    ns.fields.get(&cfg.payload_key)
                };
                let Some(PbValue {
                    kind: Some(Kind::StructValue(s)),
                }) = payload
                else {
                    continue;
                };
                let Json::Object(map) = struct_to_json(s) else {
                    continue;
                };
                return match principal_from_claims(&map, claims) {
                    Ok(p) => Identity::Known(p, "jwt_authn"),
                    Err(e) => Identity::Invalid(e),
                };
            }
            Source::Jwt { header, verifier } => {
                let Some(token) = bearer(facts.headers, header) else {
                    if facts.headers.contains_key(header) {
                        return Identity::Invalid(
                            "authorization header is not a bearer token".into(),
                        );
                    }
                    continue;
                };
                return match verifier.verify_shared(token, None).await {
                    Ok(map) => match principal_from_claims(&map, claims) {
                        Ok(p) => Identity::Known(p, "jwt"),
                        Err(e) => Identity::Invalid(e),
                    },
                    Err(e) => Identity::Invalid(e.to_string()),
                };
            }
            Source::Mtls(cfg) => {
                let id = if !facts.peer_principal.is_empty() {
                    Some(facts.peer_principal.to_string())
                } else if cfg.trust_xfcc {
                    facts
                        .headers
                        .get("x-forwarded-client-cert")
                        .and_then(|v| xfcc_spiffe_id(v))
                } else {
                    None
                };
                let Some(id) = id else { continue };
                let mut attr = MapValue::new();
                attr.insert(
                    crate::cel::Key::String(Arc::from("spiffe_id")),
                    Value::from(id.as_str()),
                );
                return Identity::Known(
                    Principal {
                        id,
                        roles: cfg.roles.iter().map(|r| Arc::from(r.as_str())).collect(),
                        attr: Arc::new(attr),
                        policy_version: String::new(),
                        scope: String::new(),
                    },
                    "mtls",
                );
            }
            Source::Headers(cfg) => {
                let Some(id) = facts.headers.get(&cfg.id).filter(|v| !v.is_empty()) else {
                    continue;
                };
                let roles = cfg
                    .roles
                    .as_ref()
                    .and_then(|h| facts.headers.get(h))
                    .map(|v| {
                        v.split(',')
                            .map(str::trim)
                            .filter(|r| !r.is_empty())
                            .map(Arc::from)
                            .collect()
                    })
                    .unwrap_or_default();
                return Identity::Known(
                    Principal {
                        id: id.clone(),
                        roles,
                        attr: Arc::new(MapValue::new()),
                        policy_version: String::new(),
                        scope: String::new(),
                    },
                    "headers",
                );
            }
        }
    }
    Identity::Missing
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_map_to_principal() {
        let claims: Map<String, Json> = serde_json::from_str(
            r#"{"sub":"alice","roles":"user manager","department":"eng","email":"a@x"}"#,
        )
        .unwrap();
        let mapping = ClaimsConfig {
            id: "sub".into(),
            roles: "roles".into(),
            attr: vec!["department".into()],
        };
        let p = principal_from_claims(&claims, &mapping).unwrap();
        assert_eq!(p.id, "alice");
        assert_eq!(p.roles.len(), 2);
        assert!(p.attr.get_str("department").is_some());
        assert!(p.attr.get_str("email").is_none());
        let no_sub: Map<String, Json> = serde_json::from_str(r#"{"roles":["user"]}"#).unwrap();
        assert!(principal_from_claims(&no_sub, &mapping).is_err());
    }

    #[test]
    fn xfcc_parsing() {
        let v = r#"By=spiffe://td/gw;Hash=abc;URI=spiffe://td/ns/default/sa/reporting,By=x;URI=spiffe://other"#;
        assert_eq!(
            xfcc_spiffe_id(v).as_deref(),
            Some("spiffe://td/ns/default/sa/reporting")
        );
        assert_eq!(xfcc_spiffe_id("Hash=abc"), None);
    }

    #[tokio::test]
    async fn sources_in_order_and_invalid_credentials_stop() {
        let mut headers = HashMap::new();
        headers.insert("x-user".to_string(), "dev".to_string());
        headers.insert("x-roles".to_string(), "admin, user".to_string());
        let facts = RequestFacts {
            headers: &headers,
            filter_metadata: None,
            peer_principal: "spiffe://td/ns/a/sa/b",
        };
        let sources = vec![
            Source::Mtls(MtlsSource::default()),
            Source::Headers(HeadersSource {
                id: "x-user".into(),
                roles: Some("x-roles".into()),
            }),
        ];
        match resolve(&sources, &facts, &ClaimsConfig::default()).await {
            Identity::Known(p, "mtls") => assert_eq!(p.id, "spiffe://td/ns/a/sa/b"),
            other => panic!("{other:?}"),
        }
        let facts = RequestFacts {
            peer_principal: "",
            ..facts
        };
        match resolve(&sources, &facts, &ClaimsConfig::default()).await {
            Identity::Known(p, "headers") => assert_eq!(p.roles.len(), 2),
            other => panic!("{other:?}"),
        }
        let mut md = HashMap::new();
        let mut payload = Struct::default();
        payload.fields.insert(
            "jwt_payload".into(),
            PbValue {
                kind: Some(Kind::StructValue(Struct {
                    fields: [(
                        "sub".to_string(),
                        PbValue {
                            kind: Some(Kind::StringValue("bob".into())),
                        },
                    )]
                    .into_iter()
                    .collect(),
                })),
            },
        );
        md.insert("envoy.filters.http.jwt_authn".to_string(), payload);
        let facts = RequestFacts {
            filter_metadata: Some(&md),
            ..facts
        };
        let sources = vec![Source::JwtAuthn(JwtAuthnSource {
            namespace: "envoy.filters.http.jwt_authn".into(),
            payload_key: String::new(),
        })];
        match resolve(&sources, &facts, &ClaimsConfig::default()).await {
            Identity::Known(p, "jwt_authn") => assert_eq!(p.id, "bob"),
            other => panic!("{other:?}"),
        }
    }
}
