//! Who is asking: the principal from Envoy's jwt_authn metadata, a bearer JWT that
//! Gatehouse verifies, the mTLS peer, or (for development) plain headers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use crate::extauthz::pb::google::protobuf::{Struct, Value as PbValue, value::Kind};
use serde_json::{Map, Value as Json};

use super::config::{ClaimsConfig, HeadersSource, JwtAuthnSource, MtlsSource};
use super::view::Pairs;
use crate::cel::{MapValue, Value, from_json};
use crate::engine::Principal;
use crate::jwt::{Claims, JwtVerifier};

/// A compiled principal source.
pub(crate) enum Source {
    /// Envoy jwt_authn metadata.
    JwtAuthn(JwtAuthnSource),
    /// A bearer token verified here.
    Jwt {
        /// Header carrying the token.
        header: String,
        /// The verifier.
        verifier: Arc<JwtVerifier>,
        /// Principals mapped from the verifier's cached claims.
        mapped: MappedCache,
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

/// A principal, with the backend headers derived from it alone (built on first use).
#[derive(Debug)]
pub(crate) struct MappedPrincipal {
    /// The principal.
    pub(crate) principal: Principal,
    headers: OnceLock<PrincipalHeaders>,
}

/// The values of the principal headers the backend gets on allow, shared by every
/// answer for the principal.
#[derive(Debug)]
pub(crate) struct PrincipalHeaders {
    /// The principal id as it is (for Envoy's dynamic metadata).
    pub(crate) raw_id: Arc<str>,
    /// The principal id, percent-encoded.
    pub(crate) id: Arc<str>,
    /// The roles, each percent-encoded, joined with `,`.
    pub(crate) roles: Arc<str>,
    /// The attributes as ASCII-only JSON.
    pub(crate) attr: Arc<str>,
}

impl MappedPrincipal {
    /// `principal`, its headers not built yet.
    pub(crate) fn new(principal: Principal) -> Arc<MappedPrincipal> {
        Arc::new(MappedPrincipal {
            principal,
            headers: OnceLock::new(),
        })
    }

    /// The principal's header values, built once.
    pub(crate) fn headers(&self) -> &PrincipalHeaders {
        self.headers.get_or_init(|| {
            let p = &self.principal;
            // Percent-encoded names and ASCII-only JSON (see `encoding`): a role with a
            // comma stays one role, and accented names arrive intact.
            PrincipalHeaders {
                raw_id: Arc::from(p.id.as_str()),
                id: Arc::from(super::encoding::percent_encode(&p.id)),
                roles: Arc::from(super::encoding::encode_list(p.roles.iter().map(|r| &**r))),
                attr: Arc::from(super::encoding::ascii_json(&crate::cel::to_json(
                    &Value::Map(p.attr.clone()),
                ))),
            }
        })
    }
}

/// Principals mapped from verified claims, by the claims' identity: the JWT verifier's
/// cache hands out the same `Arc<Claims>` for every use of one cached token, so a repeated
/// token is mapped (and its headers built) once. An entry holds its claims, so their
/// address is never reused by other claims while the entry exists. The mapping reads the
/// claims and the claim mapping of the same configuration only (never the request's
/// headers), and the token is verified (signature, `exp`, `nbf`) before every look-up.
/// At most `capacity` entries: when full, entries whose claims the verifier no longer
/// holds are dropped, and if none are, all.
pub(crate) struct MappedCache {
    capacity: usize,
    entries: Mutex<MappedEntries>,
}

/// Mapped principals by the address of their claims (held, so never reused meanwhile);
/// addresses are not chosen by clients, so a fast hasher does.
type MappedEntries =
    HashMap<usize, (Arc<Claims>, Arc<MappedPrincipal>), foldhash::fast::RandomState>;

impl std::fmt::Debug for MappedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedCache")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl MappedCache {
    /// An empty cache of at most `capacity` principals (`0`: nothing is cached).
    pub(crate) fn new(capacity: usize) -> MappedCache {
        MappedCache {
            capacity,
            entries: Mutex::new(HashMap::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MappedEntries> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The number of principals cached now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// The principal of `claims` under `mapping`: cached when the verifier shares the
    /// claims (they are in its cache), mapped afresh otherwise. Mapping errors are not
    /// cached.
    pub(crate) fn get_or_map(
        &self,
        claims: &Arc<Claims>,
        mapping: &ClaimsConfig,
    ) -> Result<Arc<MappedPrincipal>, String> {
        let key = Arc::as_ptr(claims) as usize;
        if let Some((_, hit)) = self.lock().get(&key) {
            return Ok(hit.clone());
        }
        let mapped = MappedPrincipal::new(principal_from_claims(claims, mapping)?);
        // Only claims the verifier keeps (its cache holds another reference) come again.
        if self.capacity > 0 && Arc::strong_count(claims) > 1 {
            let mut entries = self.lock();
            if entries.len() >= self.capacity {
                entries.retain(|_, (c, _)| Arc::strong_count(c) > 1);
                if entries.len() >= self.capacity {
                    entries.clear();
                }
            }
            entries.insert(key, (claims.clone(), mapped.clone()));
        }
        Ok(mapped)
    }
}

/// What the request says about who is asking.
#[derive(Clone, Debug)]
pub(crate) enum Identity {
    /// An identified principal, and the source that identified it (which the unit
    /// tests check).
    Known(
        Arc<MappedPrincipal>,
        #[cfg_attr(not(test), expect(dead_code, reason = "read by the unit tests only"))]
        &'static str,
    ),
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

fn bearer<'h>(headers: &Pairs<'h>, header: &str) -> Option<&'h str> {
    bearer_token(headers.get(header)?)
}

/// The token of an `Authorization` value `Bearer <token>` (scheme in any case, spaces
/// around the value and the token trimmed).
fn bearer_token(v: &str) -> Option<&str> {
    // The usual spelling, `Bearer ` at the very start: the token without searching a
    // long value for its space (the same token as the general reading below).
    if let Some(prefix) = v.as_bytes().get(..7)
        && prefix.eq_ignore_ascii_case(b"bearer ")
    {
        // Nothing but spaces after the scheme: no token (the value trims to `Bearer`).
        let token = v[7..].trim();
        return (!token.is_empty()).then_some(token);
    }
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
    pub(crate) headers: &'a Pairs<'a>,
    /// `metadata_context.filter_metadata`.
    pub(crate) filter_metadata: Option<&'a HashMap<String, Struct>>,
    /// `source.principal` (the verified mTLS peer identity).
    pub(crate) peer_principal: &'a str,
}

/// Resolves the identity: sources in order, the first that yields an identity wins.
pub(crate) async fn resolve(
    sources: &[Source],
    facts: &RequestFacts<'_>,
    claims: &ClaimsConfig,
) -> Identity {
    for source in sources {
        let found = match source {
            Source::JwtAuthn(cfg) => from_jwt_authn(cfg, facts, claims),
            Source::Jwt {
                header,
                verifier,
                mapped,
            } => from_bearer(header, verifier, mapped, facts, claims).await,
            Source::Mtls(cfg) => from_mtls(cfg, facts),
            Source::Headers(cfg) => from_headers(cfg, facts),
        };
        if let Some(identity) = found {
            return identity;
        }
    }
    Identity::Missing
}

/// Claims Envoy's jwt_authn filter verified (its metadata namespace), if present.
fn from_jwt_authn(
    cfg: &JwtAuthnSource,
    facts: &RequestFacts<'_>,
    claims: &ClaimsConfig,
) -> Option<Identity> {
    let ns = facts.filter_metadata?.get(&cfg.namespace)?;
    let payload = if cfg.payload_key.is_empty() {
        ns.fields.values().next()
    } else {
        ns.fields.get(&cfg.payload_key)
    };
    let Some(PbValue {
        kind: Some(Kind::StructValue(s)),
    }) = payload
    else {
        return None;
    };
    let Json::Object(map) = struct_to_json(s) else {
        return None;
    };
    Some(match principal_from_claims(&map, claims) {
        Ok(p) => Identity::Known(MappedPrincipal::new(p), "jwt_authn"),
        Err(e) => Identity::Invalid(e),
    })
}

/// A bearer token in `header`, verified here; a header that is not a bearer token is
/// invalid credentials, no header at all is not this source's.
async fn from_bearer(
    header: &str,
    verifier: &JwtVerifier,
    mapped: &MappedCache,
    facts: &RequestFacts<'_>,
    claims: &ClaimsConfig,
) -> Option<Identity> {
    let Some(token) = bearer(facts.headers, header) else {
        return facts
            .headers
            .contains_key(header)
            .then(|| Identity::Invalid("authorization header is not a bearer token".into()));
    };
    Some(match verifier.verify_shared(token, None).await {
        Ok(map) => match mapped.get_or_map(&map, claims) {
            Ok(p) => Identity::Known(p, "jwt"),
            Err(e) => Identity::Invalid(e),
        },
        Err(e) => Identity::Invalid(e.to_string()),
    })
}

/// The mTLS peer (Envoy's `source.principal`, else a trusted XFCC header's SPIFFE ID).
fn from_mtls(cfg: &MtlsSource, facts: &RequestFacts<'_>) -> Option<Identity> {
    let id = if !facts.peer_principal.is_empty() {
        facts.peer_principal.to_string()
    } else if cfg.trust_xfcc {
        facts
            .headers
            .get("x-forwarded-client-cert")
            .and_then(xfcc_spiffe_id)?
    } else {
        return None;
    };
    let mut attr = MapValue::new();
    attr.insert(
        crate::cel::Key::String(Arc::from("spiffe_id")),
        Value::from(id.as_str()),
    );
    Some(Identity::Known(
        MappedPrincipal::new(Principal {
            id,
            roles: cfg.roles.iter().map(|r| Arc::from(r.as_str())).collect(),
            attr: Arc::new(attr),
            policy_version: String::new(),
            scope: String::new(),
        }),
        "mtls",
    ))
}

/// The development headers: an id, and roles separated by commas.
fn from_headers(cfg: &HeadersSource, facts: &RequestFacts<'_>) -> Option<Identity> {
    let id = facts.headers.get(&cfg.id).filter(|v| !v.is_empty())?;
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
    Some(Identity::Known(
        MappedPrincipal::new(Principal {
            id: id.to_string(),
            roles,
            attr: Arc::new(MapValue::new()),
            policy_version: String::new(),
            scope: String::new(),
        }),
        "headers",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 15: the fast reading of `Bearer <token>` gives what the general one gives,
    /// on every spelling of the scheme, spacing and token.
    #[test]
    fn bearer_token_reads_as_the_general_reading() {
        fn general(v: &str) -> Option<&str> {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        }
        let schemes = [
            "Bearer", "bearer", "BEARER", "Bearer\t", "Basic", "Bearerx", "", " Bearer",
        ];
        let gaps = ["", " ", "  ", "\t", " \u{a0}"];
        let tokens = ["", "abc.def", " abc ", "a b", "é", "abc\n"];
        let mut n = 0;
        for s in schemes {
            for g in gaps {
                for t in tokens {
                    for tail in ["", " ", "\t"] {
                        let v = format!("{s}{g}{t}{tail}");
                        assert_eq!(bearer_token(&v), general(&v), "{v:?}");
                        n += 1;
                    }
                }
            }
        }
        assert_eq!(n, 8 * 5 * 6 * 3);
        assert_eq!(bearer_token("Bearer  x "), Some("x"));
        assert_eq!(bearer_token("bearer"), None);
        assert_eq!(bearer_token("Bearer  "), None);
    }

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
        let headers = Pairs::from_map(&headers);
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
            Identity::Known(p, "mtls") => assert_eq!(p.principal.id, "spiffe://td/ns/a/sa/b"),
            other => panic!("{other:?}"),
        }
        let facts = RequestFacts {
            peer_principal: "",
            ..facts
        };
        match resolve(&sources, &facts, &ClaimsConfig::default()).await {
            Identity::Known(p, "headers") => assert_eq!(p.principal.roles.len(), 2),
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
            Identity::Known(p, "jwt_authn") => assert_eq!(p.principal.id, "bob"),
            other => panic!("{other:?}"),
        }
    }

    mod cached {
        use std::time::{SystemTime, UNIX_EPOCH};

        use base64::Engine as _;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;

        use super::*;
        use crate::jwt::{JwtConfig, KeySet, KeySetOptions};

        const SECRET_JWK: &str =
            r#"{"kty":"oct","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0IQ","kid":"h","alg":"HS256"}"#;

        fn sign(payload: &serde_json::Value) -> String {
            let b64 = |s: &str| URL_SAFE_NO_PAD.encode(s);
            let input = format!(
                "{}.{}",
                b64(r#"{"alg":"HS256","kid":"h"}"#),
                b64(&payload.to_string())
            );
            let key = jsonwebtoken::EncodingKey::from_secret(b"secret-secret-secret-secret!");
            let sig =
                jsonwebtoken::crypto::sign(input.as_bytes(), &key, jsonwebtoken::Algorithm::HS256)
                    .unwrap();
            format!("{input}.{sig}")
        }

        fn now() -> u64 {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs()
        }

        /// A token for `sub` with `roles` and a department, valid for `ttl` seconds.
        fn token(sub: &str, roles: &[&str], department: &str, ttl: u64) -> String {
            sign(&serde_json::json!({
                "sub": sub, "roles": roles, "department": department, "exp": now() + ttl,
            }))
        }

        /// A JWT source whose verifier caches `tokens` and whose mapping caches
        /// `principals`.
        fn source(tokens: usize, principals: usize) -> Source {
            let set = KeySet::parse(SECRET_JWK, KeySetOptions::new()).unwrap();
            let verifier = JwtVerifier::new(JwtConfig {
                key_sets: vec![("hmac".into(), set)],
                ..JwtConfig::default()
            })
            .unwrap()
            .with_cache_size(tokens);
            Source::Jwt {
                header: "authorization".into(),
                verifier: Arc::new(verifier),
                mapped: MappedCache::new(principals),
            }
        }

        fn mapping() -> ClaimsConfig {
            ClaimsConfig {
                id: "sub".into(),
                roles: "roles".into(),
                attr: vec!["department".into()],
            }
        }

        fn identify(source: &Source, token: &str) -> Identity {
            let headers: HashMap<String, String> =
                [("authorization".to_string(), format!("Bearer {token}"))].into();
            let headers = Pairs::from_map(&headers);
            let facts = RequestFacts {
                headers: &headers,
                filter_metadata: None,
                peer_principal: "",
            };
            let sources = std::slice::from_ref(source);
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap()
                .block_on(resolve(sources, &facts, &mapping()))
        }

        fn known(identity: Identity) -> Arc<MappedPrincipal> {
            match identity {
                Identity::Known(p, "jwt") => p,
                other => panic!("{other:?}"),
            }
        }

        fn cached(source: &Source) -> usize {
            match source {
                Source::Jwt { mapped, .. } => mapped.len(),
                _ => unreachable!(),
            }
        }

        #[test]
        fn a_repeated_token_is_mapped_once_and_never_lent_to_another() {
            let s = source(10, 10);
            let alice = token("alice", &["user"], "eng", 600);
            let bob = token("bob", &["admin", "a,b"], "sales", 600);
            let first = known(identify(&s, &alice));
            let again = known(identify(&s, &alice));
            assert!(Arc::ptr_eq(&first, &again), "the second use is a cache hit");
            assert_eq!(cached(&s), 1);
            let b = known(identify(&s, &bob));
            assert!(!Arc::ptr_eq(&first, &b));
            assert_eq!(b.principal.id, "bob");
            assert_eq!(&*b.headers().roles, "admin,a%2Cb");
            assert_eq!(&*b.headers().attr, r#"{"department":"sales"}"#);
            let a = known(identify(&s, &alice));
            assert_eq!(a.principal.id, "alice");
            assert_eq!(&*a.principal.roles[0], "user");
            assert_eq!(&*a.headers().id, "alice");
            assert_eq!(&*a.headers().attr, r#"{"department":"eng"}"#);
            // Same subject, other claims: another token, another principal.
            let alice_sales = known(identify(&s, &token("alice", &["user"], "sales", 600)));
            assert_eq!(&*alice_sales.headers().attr, r#"{"department":"sales"}"#);
            assert_eq!(cached(&s), 3);
        }

        #[test]
        fn the_cache_is_bounded_and_mapping_errors_are_not_cached() {
            let s = source(100, 3);
            for i in 0..10 {
                let sub = format!("user-{i}");
                let p = known(identify(&s, &token(&sub, &[], "eng", 600)));
                assert_eq!(p.principal.id, sub);
                assert!(cached(&s) <= 3, "{}", cached(&s));
            }
            let s = source(10, 10);
            let no_sub = sign(&serde_json::json!({"roles": ["x"], "exp": now() + 600}));
            for _ in 0..2 {
                assert!(matches!(identify(&s, &no_sub), Identity::Invalid(_)));
            }
            assert_eq!(cached(&s), 0);
        }

        #[test]
        fn without_the_verifier_cache_nothing_is_kept() {
            let s = source(0, 10);
            let alice = token("alice", &["user"], "eng", 600);
            let first = known(identify(&s, &alice));
            let again = known(identify(&s, &alice));
            assert!(!Arc::ptr_eq(&first, &again));
            assert_eq!(again.principal.id, "alice");
            assert_eq!(cached(&s), 0);
        }

        #[test]
        fn an_expired_token_gets_no_cached_principal() {
            let s = source(10, 10);
            let short = token("alice", &["user"], "eng", 1);
            assert_eq!(known(identify(&s, &short)).principal.id, "alice");
            assert_eq!(cached(&s), 1);
            std::thread::sleep(std::time::Duration::from_millis(2100));
            match identify(&s, &short) {
                Identity::Invalid(reason) => assert!(reason.contains("expired"), "{reason}"),
                other => panic!("{other:?}"),
            }
        }
    }
}
