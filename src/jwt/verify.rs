//! Token verification: header and algorithm checks, key choice, signature,
//! then the registered claims.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use super::JwtError;
use super::key::{Key, signature_algorithm};
use super::keyset::{KeySet, Keys};
use crate::metrics::Metrics;

/// Largest token accepted, in bytes.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// JWT claims, as decoded from the payload.
pub type Claims = Map<String, Value>;

/// What a [`JwtVerifier`] accepts.
#[derive(Clone, Debug)]
pub struct JwtConfig {
    /// Key sets by id (Cerbos `auxData.jwt.keySets[].id`).
    pub key_sets: Vec<(String, KeySet)>,
    /// Pinned algorithms; empty means whatever the chosen key allows.
    /// `none` is never accepted.
    pub algorithms: Vec<Algorithm>,
    /// Required `iss`, if any.
    pub issuer: Option<String>,
    /// Accepted audiences; when non-empty `aud` must name one of them.
    pub audiences: Vec<String>,
    /// Clock skew allowed on `exp`, `nbf` and `iat` (Cerbos `acceptableTimeSkew`).
    pub leeway: Duration,
    /// Reject tokens without `exp`.
    pub require_exp: bool,
}

impl Default for JwtConfig {
    /// No key sets, no pinning, no issuer or audience, no leeway, `exp` required.
    fn default() -> Self {
        JwtConfig {
            key_sets: Vec::new(),
            algorithms: Vec::new(),
            issuer: None,
            audiences: Vec::new(),
            leeway: Duration::ZERO,
            require_exp: true,
        }
    }
}

/// Checks of the registered claims.
#[derive(Clone, Debug)]
struct ClaimRules {
    issuer: Option<String>,
    audiences: Vec<String>,
    leeway: f64,
    require_exp: bool,
}

/// Verifies JWTs against configured key sets.
#[derive(Debug)]
pub struct JwtVerifier {
    key_sets: Vec<(String, KeySet)>,
    algorithms: Vec<Algorithm>,
    rules: ClaimRules,
    cache: Option<TokenCache>,
    metrics: Option<Metrics>,
}

impl JwtVerifier {
    /// A verifier; fails on duplicate key-set ids.
    pub fn new(config: JwtConfig) -> Result<JwtVerifier, JwtError> {
        for (i, (id, _)) in config.key_sets.iter().enumerate() {
            if config.key_sets[..i].iter().any(|(other, _)| other == id) {
                return Err(JwtError::InvalidConfig(format!(
                    "duplicate keyset id '{id}'"
                )));
            }
        }
        Ok(JwtVerifier {
            key_sets: config.key_sets,
            algorithms: config.algorithms,
            rules: ClaimRules {
                issuer: config.issuer,
                audiences: config.audiences,
                leeway: config.leeway.as_secs_f64(),
                require_exp: config.require_exp,
            },
            cache: None,
            metrics: None,
        })
    }

    /// Remembers up to `size` verified tokens (Cerbos `cacheSize`) for at most
    /// [`TOKEN_CACHE_TTL`], so a repeated token skips signature checking; its time
    /// claims are still checked on every use, an entry is dropped at the token's `exp`,
    /// and entries verified with keys since replaced (a remote set refetched) are not
    /// used. `0` disables the cache.
    pub(crate) fn with_cache_size(self, size: usize) -> JwtVerifier {
        self.with_cache(size, TOKEN_CACHE_TTL)
    }

    /// [`with_cache_size`](Self::with_cache_size) with a chosen time to live.
    pub(crate) fn with_cache(mut self, size: usize, ttl: Duration) -> JwtVerifier {
        self.cache = (size > 0).then(|| TokenCache::new(size, ttl, self.key_sets.len()));
        self
    }

    /// Counts cache hits and misses in `metrics` (`gatehouse_jwt_cache_lookups_total`).
    pub(crate) fn with_metrics(mut self, metrics: Metrics) -> JwtVerifier {
        self.metrics = Some(metrics);
        self
    }

    /// The number of tokens cached now.
    #[cfg(test)]
    pub(crate) fn cached_tokens(&self) -> usize {
        self.cache.as_ref().map_or(0, TokenCache::len)
    }

    /// Verifies `token` and returns its claims.
    ///
    /// `key_set_id` picks the key set; without one (or with an empty one, as
    /// Cerbos treats an empty `keySetId`), the only configured set is used. The `alg` header must not be `none`, must be pinned (when
    /// pinning is configured) and must fit the key. The key is chosen by
    /// `kid`; a token without `kid` is tried against every key that fits.
    /// An unknown `kid` on a remote set triggers one refetch (at most once
    /// per [`MIN_REFETCH_INTERVAL`](super::MIN_REFETCH_INTERVAL)); if that
    /// fetch fails, its [`JwtError::Fetch`] is returned. Then `exp` (required
    /// if configured), `nbf`, `iat`, `iss` and `aud` are checked with the
    /// configured leeway.
    pub async fn verify(&self, token: &str, key_set_id: Option<&str>) -> Result<Claims, JwtError> {
        self.verify_at(token, key_set_id, unix_now())
            .await
            .map(Arc::unwrap_or_clone)
    }

    /// [`verify`](Self::verify), sharing the claims (with the cache when it is on)
    /// instead of copying them.
    pub(crate) async fn verify_shared(
        &self,
        token: &str,
        key_set_id: Option<&str>,
    ) -> Result<Arc<Claims>, JwtError> {
        self.verify_at(token, key_set_id, unix_now()).await
    }

    async fn verify_at(
        &self,
        token: &str,
        key_set_id: Option<&str>,
        now: f64,
    ) -> Result<Arc<Claims>, JwtError> {
        // A cached token passed every check below with this same configuration and the
        // keys still in service: only its time-dependent claims need checking again.
        if let Some(cache) = &self.cache
            && let Ok((index, _, set)) = self.select(key_set_id)
        {
            let hit = cache.get(index, token, set.generation(), now);
            if let Some(m) = &self.metrics {
                m.count_jwt_cache(hit.is_some());
            }
            if let Some(hit) = hit {
                hit.times.check(&self.rules, now)?;
                return Ok(hit.claims);
            }
        }
        let parsed = Parsed::new(token)?;
        let alg = self.token_algorithm(&parsed.alg)?;
        let (index, set_id, set) = self.select(key_set_id)?;
        let mut keys = set.keys().await?;
        match verify_signature(&keys, &parsed, alg, set_id) {
            Err(JwtError::UnknownKid { .. }) if set.refresh_for_unknown_kid().await? => {
                keys = set.keys().await?;
                verify_signature(&keys, &parsed, alg, set_id)?;
            }
            other => other?,
        }
        let claims = parsed.claims()?;
        validate_claims(&claims, &self.rules, now)?;
        let claims = Arc::new(claims);
        if let Some(cache) = &self.cache {
            let times = TimeClaims::of(&claims)?;
            cache.insert(
                index,
                token,
                Verified {
                    claims: claims.clone(),
                    times,
                    generation: keys.generation(),
                    expires: 0.0,
                },
                now,
            );
        }
        Ok(claims)
    }

    /// Decodes `token` without checking its signature, then checks its
    /// claims as [`verify`](Self::verify) does: Cerbos's
    /// `disableVerification: true` mode.
    pub(crate) fn validate_unverified(&self, token: &str) -> Result<Claims, JwtError> {
        let claims = decode_unverified(token)?;
        validate_claims(&claims, &self.rules, unix_now())?;
        Ok(claims)
    }

    fn token_algorithm(&self, name: &str) -> Result<Algorithm, JwtError> {
        let refuse = |reason: &str| JwtError::AlgorithmNotAllowed {
            alg: name.to_string(),
            reason: reason.to_string(),
        };
        if name.eq_ignore_ascii_case("none") {
            return Err(refuse("unsigned tokens are never accepted"));
        }
        let alg = signature_algorithm(name).ok_or_else(|| refuse("unsupported algorithm"))?;
        if !self.algorithms.is_empty() && !self.algorithms.contains(&alg) {
            return Err(refuse("not in the configured algorithm list"));
        }
        Ok(alg)
    }

    /// The key set `key_set_id` names (or the only one): its position, id and keys.
    fn select(&self, key_set_id: Option<&str>) -> Result<(usize, &str, &KeySet), JwtError> {
        match key_set_id.filter(|id| !id.is_empty()) {
            Some(id) => self
                .key_sets
                .iter()
                .position(|(k, _)| k == id)
                .map(|i| (i, self.key_sets[i].0.as_str(), &self.key_sets[i].1))
                .ok_or_else(|| JwtError::KeySetNotFound(id.to_string())),
            None => match self.key_sets.as_slice() {
                [(k, set)] => Ok((0, k.as_str(), set)),
                sets => Err(JwtError::NoKeySetSelected { count: sets.len() }),
            },
        }
    }
}

/// Decodes a token's claims WITHOUT verifying its signature or any claim.
///
/// Only for Cerbos's `disableVerification: true`; the token must still be a
/// well-formed JWS within [`MAX_TOKEN_BYTES`].
pub(crate) fn decode_unverified(token: &str) -> Result<Claims, JwtError> {
    Parsed::new(token)?.claims()
}

/// Rewrites claims the way Cerbos exposes them as `request.aux_data.jwt`:
/// `exp`, `nbf` and `iat` become RFC 3339 timestamps
/// (`2030-01-01T00:00:00Z`), and a single-string `aud` becomes a list.
pub fn to_cerbos_claims(mut claims: Claims) -> Claims {
    for name in ["exp", "nbf", "iat"] {
        let Some(Value::Number(n)) = claims.get(name) else {
            continue;
        };
        let Some(secs) = n.as_f64().map(f64::floor) else {
            continue;
        };
        if !(-8.0e12..8.0e12).contains(&secs) {
            continue;
        }
        if let Some(time) = chrono::DateTime::from_timestamp(secs as i64, 0) {
            let text = time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            claims.insert(name.to_string(), Value::String(text));
        }
    }
    if let Some(Value::String(aud)) = claims.get("aud") {
        let list = Value::Array(vec![Value::String(aud.clone())]);
        claims.insert("aud".to_string(), list);
    }
    claims
}

// === token parsing ===

/// A token split into its parts, with the header read.
struct Parsed<'a> {
    alg: String,
    kid: Option<String>,
    signing_input: &'a str,
    payload: &'a str,
    signature: &'a str,
}

impl<'a> Parsed<'a> {
    fn new(token: &'a str) -> Result<Parsed<'a>, JwtError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(JwtError::TokenTooLarge {
                size: token.len(),
                max: MAX_TOKEN_BYTES,
            });
        }
        let malformed = |m: &str| JwtError::Malformed(m.to_string());
        let segments = token.split('.').count();
        let (signing_input, signature) = match segments {
            3 => token
                .rsplit_once('.')
                .ok_or_else(|| malformed("no signature"))?,
            5 => return Err(malformed("encrypted tokens (JWE) are not supported")),
            n => {
                return Err(JwtError::Malformed(format!(
                    "expected 3 dot-separated segments, found {n}"
                )));
            }
        };
        let (header, payload) = signing_input
            .split_once('.')
            .ok_or_else(|| malformed("no payload"))?;
        let header = json_object(header, "header")?;
        let alg = match header.get("alg") {
            Some(Value::String(alg)) => alg.clone(),
            Some(_) => return Err(malformed("header \"alg\" is not a string")),
            None => return Err(malformed("header has no \"alg\"")),
        };
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(kid)) => Some(kid.clone()),
            Some(_) => return Err(malformed("header \"kid\" is not a string")),
        };
        if header.contains_key("crit") {
            return Err(malformed("unsupported critical header parameters (crit)"));
        }
        Ok(Parsed {
            alg,
            kid,
            signing_input,
            payload,
            signature,
        })
    }

    fn claims(&self) -> Result<Claims, JwtError> {
        json_object(self.payload, "payload")
    }
}

fn json_object(segment: &str, what: &str) -> Result<Claims, JwtError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment.as_bytes())
        .map_err(|_| JwtError::Malformed(format!("{what} is not base64url")))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(JwtError::Malformed(format!("{what} is not a JSON object"))),
    }
}

// === signature ===

fn verify_signature(
    keys: &Keys,
    token: &Parsed<'_>,
    alg: Algorithm,
    set_id: &str,
) -> Result<(), JwtError> {
    let signature = URL_SAFE_NO_PAD
        .decode(token.signature.as_bytes())
        .map_err(|_| JwtError::Malformed("signature is not base64url".to_string()))?;
    if signature.is_empty() {
        return Err(JwtError::Malformed("empty signature".to_string()));
    }
    // The key is looked up by `kid` (a hash lookup, whatever the number of keys).
    let (mut named, mut anonymous, mut every);
    let candidates: &mut dyn Iterator<Item = &Key> = match &token.kid {
        Some(kid) if keys.has_kid(kid) => {
            named = keys.with_kid(kid);
            &mut named
        }
        Some(kid) => {
            // Keys without a kid (PEM) may verify any token.
            anonymous = keys.anonymous().peekable();
            if anonymous.peek().is_none() {
                return Err(JwtError::UnknownKid {
                    kid: kid.clone(),
                    key_set: set_id.to_string(),
                });
            }
            &mut anonymous
        }
        None => {
            every = keys.all().iter();
            &mut every
        }
    };
    let mut tried = 0;
    let mut refusal = None;
    for key in candidates {
        match key.verifier_for(alg) {
            Ok(decoding) => {
                tried += 1;
                if let Ok(true) = jsonwebtoken::crypto::verify(
                    token.signature,
                    token.signing_input.as_bytes(),
                    decoding,
                    alg,
                ) {
                    return Ok(());
                }
            }
            Err(reason) => refusal = Some(reason),
        }
    }
    if tried > 0 {
        return Err(JwtError::BadSignature);
    }
    let reason = match (&token.kid, refusal) {
        (Some(kid), Some(reason)) => {
            format!("key {kid:?} of key set {set_id:?} refuses it: {reason}")
        }
        _ => format!("no key in key set {set_id:?} accepts it"),
    };
    Err(JwtError::AlgorithmNotAllowed {
        alg: token.alg.clone(),
        reason,
    })
}

// === claims ===

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn numeric_date(claims: &Claims, name: &'static str) -> Result<Option<f64>, JwtError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n.as_f64().map(Some).ok_or(JwtError::InvalidClaim {
            claim: name,
            expected: "a number (NumericDate)",
        }),
        Some(_) => Err(JwtError::InvalidClaim {
            claim: name,
            expected: "a number (NumericDate)",
        }),
    }
}

/// A token's time claims (`exp`, `nbf`, `iat`), read once.
#[derive(Clone, Copy, Debug)]
struct TimeClaims {
    exp: Option<f64>,
    nbf: Option<f64>,
    iat: Option<f64>,
}

impl TimeClaims {
    fn of(claims: &Claims) -> Result<TimeClaims, JwtError> {
        Ok(TimeClaims {
            exp: numeric_date(claims, "exp")?,
            nbf: numeric_date(claims, "nbf")?,
            iat: numeric_date(claims, "iat")?,
        })
    }

    /// `exp` (required if configured), `nbf` and `iat` at `now`, with the leeway.
    fn check(&self, rules: &ClaimRules, now: f64) -> Result<(), JwtError> {
        match self.exp {
            Some(exp) if now >= exp + rules.leeway => return Err(JwtError::Expired),
            None if rules.require_exp => return Err(JwtError::MissingClaim("exp")),
            _ => {}
        }
        if self.nbf.is_some_and(|nbf| now + rules.leeway < nbf) {
            return Err(JwtError::NotYetValid);
        }
        if self.iat.is_some_and(|iat| now + rules.leeway < iat) {
            return Err(JwtError::IssuedInFuture);
        }
        Ok(())
    }
}

fn validate_claims(claims: &Claims, rules: &ClaimRules, now: f64) -> Result<(), JwtError> {
    match numeric_date(claims, "exp")? {
        Some(exp) if now >= exp + rules.leeway => return Err(JwtError::Expired),
        None if rules.require_exp => return Err(JwtError::MissingClaim("exp")),
        _ => {}
    }
    if numeric_date(claims, "nbf")?.is_some_and(|nbf| now + rules.leeway < nbf) {
        return Err(JwtError::NotYetValid);
    }
    if numeric_date(claims, "iat")?.is_some_and(|iat| now + rules.leeway < iat) {
        return Err(JwtError::IssuedInFuture);
    }
    if let Some(want) = &rules.issuer
        && claims.get("iss").and_then(Value::as_str) != Some(want.as_str())
    {
        return Err(JwtError::InvalidIssuer);
    }
    if !rules.audiences.is_empty() {
        let matches = |v: &Value| {
            v.as_str()
                .is_some_and(|a| rules.audiences.iter().any(|w| w == a))
        };
        let ok = match claims.get("aud") {
            Some(v @ Value::String(_)) => matches(v),
            Some(Value::Array(list)) => list.iter().any(matches),
            _ => false,
        };
        if !ok {
            return Err(JwtError::InvalidAudience);
        }
    }
    Ok(())
}

// === cache ===

/// How long a verified token is remembered at most (its `exp` may end it sooner).
pub(crate) const TOKEN_CACHE_TTL: Duration = Duration::from_secs(300);

/// A verified token.
#[derive(Clone, Debug)]
struct Verified {
    claims: Arc<Claims>,
    times: TimeClaims,
    /// [`KeySet::generation`] of the keys that verified it.
    generation: u64,
    /// Unix time at which the entry stops being used: `min(exp, cached + TTL)`.
    expires: f64,
}

/// Verified tokens by key set and full token text (compared in full on lookup), at
/// most `capacity` of them, the oldest evicted first.
#[derive(Debug)]
struct TokenCache {
    capacity: usize,
    ttl: f64,
    entries: Mutex<CacheEntries>,
}

#[derive(Debug, Default)]
struct CacheEntries {
    /// Per key set (by position), verified tokens by their text. Hashed by their length
    /// and last bytes (see [`TailState`]): only tokens whose signature verified are
    /// inserted, so a client cannot fill the table with colliding keys, and a token is
    /// hashed on every request.
    sets: Vec<HashMap<Arc<str>, Verified, TailState>>,
    /// Insertion order, for eviction: key set and token.
    order: VecDeque<(usize, Arc<str>)>,
}

/// Bytes of a token's end that its hash reads: inside the signature, which is at least
/// 32 bytes (43 base64url characters) for every algorithm accepted.
const HASHED_TAIL: usize = 32;

/// Hashes a token by its length and its last [`HASHED_TAIL`] bytes (the signature's),
/// with foldhash keyed per process: the same buckets as hashing the whole token would
/// give for distinct signatures, for a tenth of the work on a typical RS256 token.
/// Look-ups still compare whole tokens.
#[derive(Clone, Debug, Default)]
struct TailState(foldhash::fast::RandomState);

impl std::hash::BuildHasher for TailState {
    type Hasher = TailHasher;

    fn build_hasher(&self) -> TailHasher {
        TailHasher(self.0.build_hasher())
    }
}

/// The hasher of [`TailState`].
struct TailHasher(foldhash::fast::FoldHasher<'static>);

impl std::hash::Hasher for TailHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.write_usize(bytes.len());
        self.0
            .write(&bytes[bytes.len().saturating_sub(HASHED_TAIL)..]);
    }

    fn write_u8(&mut self, i: u8) {
        self.0.write_u8(i);
    }

    fn finish(&self) -> u64 {
        self.0.finish()
    }
}

impl TokenCache {
    fn new(capacity: usize, ttl: Duration, sets: usize) -> Self {
        TokenCache {
            capacity,
            ttl: ttl.as_secs_f64(),
            entries: Mutex::new(CacheEntries {
                sets: (0..sets).map(|_| HashMap::default()).collect(),
                order: VecDeque::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheEntries> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().sets.iter().map(HashMap::len).sum()
    }

    /// The entry for `token` in key set `set`, unless it has expired at `now` or was
    /// verified with keys other than those of `generation` (then it is dropped).
    fn get(&self, set: usize, token: &str, generation: u64, now: f64) -> Option<Verified> {
        let mut entries = self.lock();
        let tokens = entries.sets.get_mut(set)?;
        let entry = tokens.get(token)?;
        if entry.generation == generation && now < entry.expires {
            return Some(entry.clone());
        }
        tokens.remove(token);
        None
    }

    fn insert(&self, set: usize, token: &str, mut verified: Verified, now: f64) {
        verified.expires = verified
            .times
            .exp
            .map_or(f64::INFINITY, |exp| exp)
            .min(now + self.ttl);
        if now >= verified.expires {
            return;
        }
        let token: Arc<str> = Arc::from(token);
        let mut entries = self.lock();
        let entries = &mut *entries;
        let Some(tokens) = entries.sets.get_mut(set) else {
            return;
        };
        if tokens.insert(token.clone(), verified).is_none() {
            entries.order.push_back((set, token));
        }
        while entries.order.len() > self.capacity {
            let Some((set, token)) = entries.order.pop_front() else {
                break;
            };
            // An entry dropped early and cached again has a newer place in the order.
            if let Some(tokens) = entries.sets.get_mut(set)
                && tokens
                    .get_key_value(&*token)
                    .is_some_and(|(k, _)| Arc::ptr_eq(k, &token))
            {
                tokens.remove(&*token);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::KeySetOptions;
    use std::hash::BuildHasher;

    const SECRET_JWK: &str =
        r#"{"kty":"oct","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0IQ","kid":"h","alg":"HS256"}"#;
    const NOW: f64 = 1_800_000_000.0;

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    fn sign(header: &str, payload: &str) -> String {
        let input = format!("{}.{}", b64(header), b64(payload));
        let key = jsonwebtoken::EncodingKey::from_secret(b"secret-secret-secret-secret!");
        let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &key, Algorithm::HS256).unwrap();
        format!("{input}.{sig}")
    }

    fn verifier(config: JwtConfig) -> JwtVerifier {
        let set = KeySet::parse(SECRET_JWK, KeySetOptions::new()).unwrap();
        JwtVerifier::new(JwtConfig {
            key_sets: vec![("hmac".into(), set)],
            ..config
        })
        .unwrap()
    }

    fn run(v: &JwtVerifier, token: &str) -> Result<Claims, JwtError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(v.verify_at(token, None, NOW))
            .map(Arc::unwrap_or_clone)
    }

    const HS: &str = r#"{"alg":"HS256","kid":"h"}"#;

    #[test]
    fn registered_claims() {
        let v = verifier(JwtConfig {
            issuer: Some("me".into()),
            audiences: vec!["you".into()],
            leeway: Duration::from_secs(60),
            ..JwtConfig::default()
        });
        let ok = sign(HS, r#"{"iss":"me","aud":["x","you"],"exp":1800000000}"#);
        assert!(run(&v, &ok).is_ok(), "within leeway");
        let cases = [
            (
                r#"{"iss":"me","aud":"you","exp":1799999940}"#,
                "token has expired (exp)",
            ),
            (
                r#"{"iss":"me","aud":"you","exp":1900000000,"nbf":1800000061}"#,
                "token is not valid yet (nbf)",
            ),
            (
                r#"{"iss":"me","aud":"you","exp":1900000000,"iat":1800000061}"#,
                "issued at time is in the future (iat)",
            ),
            (
                r#"{"iss":"it","aud":"you","exp":1900000000}"#,
                "invalid issuer (iss)",
            ),
            (r#"{"aud":"you","exp":1900000000}"#, "invalid issuer (iss)"),
            (
                r#"{"iss":"me","aud":["x"],"exp":1900000000}"#,
                "invalid audience (aud)",
            ),
            (r#"{"iss":"me","exp":1900000000}"#, "invalid audience (aud)"),
            (r#"{"iss":"me","aud":"you"}"#, "token has no \"exp\" claim"),
            (
                r#"{"iss":"me","aud":"you","exp":"soon"}"#,
                "claim \"exp\" must be a number (NumericDate)",
            ),
        ];
        for (payload, want) in cases {
            let err = run(&v, &sign(HS, payload)).unwrap_err().to_string();
            assert_eq!(err, want, "{payload}");
        }
    }

    #[test]
    fn header_and_format() {
        let v = verifier(JwtConfig::default());
        let good = sign(HS, r#"{"exp":1900000000}"#);
        assert!(run(&v, &good).is_ok());
        let cases = [
            (
                "a.b".to_string(),
                "malformed token: expected 3 dot-separated segments, found 2",
            ),
            (
                "a.b.c.d.e".to_string(),
                "malformed token: encrypted tokens (JWE) are not supported",
            ),
            (
                "!!.e30.AA".to_string(),
                "malformed token: header is not base64url",
            ),
            (
                format!("{}.e30.AA", b64("[]")),
                "malformed token: header is not a JSON object",
            ),
            (
                format!("{}.e30.AA", b64("{}")),
                "malformed token: header has no \"alg\"",
            ),
            (
                sign(r#"{"alg":"HS256","crit":["x"]}"#, "{}"),
                "malformed token: unsupported critical header parameters (crit)",
            ),
            (
                sign(r#"{"alg":"HS256","kid":7}"#, "{}"),
                "malformed token: header \"kid\" is not a string",
            ),
            (
                format!("{}.", good.rsplit_once('.').unwrap().0),
                "malformed token: empty signature",
            ),
            (
                sign(r#"{"alg":"HS999"}"#, "{}"),
                "algorithm \"HS999\" is not allowed: unsupported algorithm",
            ),
            (
                sign(r#"{"alg":"NONE"}"#, "{}"),
                "algorithm \"NONE\" is not allowed: unsigned tokens are never accepted",
            ),
            (
                sign(r#"{"alg":"HS256","kid":"zz"}"#, "{}"),
                "no key with ID \"zz\" in key set \"hmac\"",
            ),
        ];
        for (token, want) in cases {
            assert_eq!(run(&v, &token).unwrap_err().to_string(), want, "{token}");
        }
        let payload_not_object = sign(HS, "[1]");
        assert_eq!(
            run(&v, &payload_not_object).unwrap_err().to_string(),
            "malformed token: payload is not a JSON object"
        );
    }

    #[test]
    fn pinning_and_selection() {
        let pinned = verifier(JwtConfig {
            algorithms: vec![Algorithm::RS256],
            ..JwtConfig::default()
        });
        let token = sign(HS, r#"{"exp":1900000000}"#);
        assert_eq!(
            run(&pinned, &token).unwrap_err().to_string(),
            "algorithm \"HS256\" is not allowed: not in the configured algorithm list"
        );
        let none = JwtVerifier::new(JwtConfig::default()).unwrap();
        assert!(matches!(
            run(&none, &token),
            Err(JwtError::NoKeySetSelected { count: 0 })
        ));
        let v = verifier(JwtConfig::default());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let err = rt
            .block_on(v.verify_at(&token, Some("other"), NOW))
            .unwrap_err();
        assert_eq!(err.to_string(), "keyset not found: other");
        assert!(rt.block_on(v.verify_at(&token, Some(""), NOW)).is_ok());
        let set = KeySet::parse(SECRET_JWK, KeySetOptions::new()).unwrap();
        let dup = JwtVerifier::new(JwtConfig {
            key_sets: vec![("a".into(), set.clone()), ("a".into(), set)],
            ..JwtConfig::default()
        });
        assert!(
            dup.unwrap_err()
                .to_string()
                .contains("duplicate keyset id 'a'")
        );
    }

    #[test]
    fn choosing_the_key_does_not_grow_with_the_key_set() {
        use crate::jwt::keyset::work;
        // A JWKS of `n` HMAC keys k0..k{n-1}, each with its own secret; the token names the
        // last one (where a scan of the list would read every key).
        let keys_read = |n: usize| {
            let secret = |i: usize| format!("secret-{i:02}-secret-secret-secret-secret");
            let jwks = (0..n)
                .map(|i| {
                    format!(
                        r#"{{"kty":"oct","k":"{}","kid":"k{i}","alg":"HS256"}}"#,
                        b64(&secret(i))
                    )
                })
                .collect::<Vec<_>>()
                .join(",");
            let set =
                KeySet::parse(&format!(r#"{{"keys":[{jwks}]}}"#), KeySetOptions::new()).unwrap();
            assert_eq!(set.len(), n);
            let v = JwtVerifier::new(JwtConfig {
                key_sets: vec![("jwks".into(), set)],
                ..JwtConfig::default()
            })
            .unwrap();
            let last = n - 1;
            let input = format!(
                "{}.{}",
                b64(&format!(r#"{{"alg":"HS256","kid":"k{last}"}}"#)),
                b64(r#"{"exp":1900000000,"sub":"alice"}"#)
            );
            let sign_with = |i: usize| {
                let key = jsonwebtoken::EncodingKey::from_secret(secret(i).as_bytes());
                let sig =
                    jsonwebtoken::crypto::sign(input.as_bytes(), &key, Algorithm::HS256).unwrap();
                format!("{input}.{sig}")
            };
            work::take();
            let claims = run(&v, &sign_with(last)).unwrap();
            assert_eq!(claims["sub"], "alice");
            let good = work::take();
            // Signed with a secret outside the set: refused, after reading the same keys.
            assert!(matches!(
                run(&v, &sign_with(n)),
                Err(JwtError::BadSignature)
            ));
            (good, work::take())
        };
        assert_eq!(keys_read(1), (1, 1));
        assert_eq!(keys_read(50), (1, 1));
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// (hits, misses) of the verifier's cache.
    fn lookups(v: &JwtVerifier) -> (u64, u64) {
        v.metrics.as_ref().unwrap().jwt_cache_lookups()
    }

    #[test]
    fn cached_token_is_rejected_after_exp() {
        let v = verifier(JwtConfig::default())
            .with_cache_size(10)
            .with_metrics(Metrics::default());
        let token = sign(HS, r#"{"exp":1800000010}"#);
        assert!(block_on(v.verify_at(&token, None, NOW)).is_ok());
        assert_eq!(v.cached_tokens(), 1);
        assert!(block_on(v.verify_at(&token, None, NOW + 5.0)).is_ok());
        assert_eq!(lookups(&v), (1, 1));
        let later = block_on(v.verify_at(&token, None, NOW + 20.0));
        assert!(matches!(later, Err(JwtError::Expired)), "{later:?}");
        assert_eq!(lookups(&v), (1, 2), "the entry ends at exp: a miss");
        assert_eq!(v.cached_tokens(), 0, "and is dropped");

        // Within the leeway a token past exp is still accepted (as without the cache),
        // but never cached.
        let lenient = verifier(JwtConfig {
            leeway: Duration::from_secs(60),
            ..JwtConfig::default()
        })
        .with_cache_size(10);
        assert!(block_on(lenient.verify_at(&token, None, NOW + 20.0)).is_ok());
        assert_eq!(lenient.cached_tokens(), 0);
        // Time claims are checked again on a hit: a clock set back sees nbf again.
        let early = sign(HS, r#"{"exp":1900000000,"nbf":1800000050}"#);
        assert!(block_on(lenient.verify_at(&early, None, NOW)).is_ok());
        assert_eq!(lenient.cached_tokens(), 1);
        let before = block_on(lenient.verify_at(&early, None, NOW - 20.0));
        assert!(matches!(before, Err(JwtError::NotYetValid)), "{before:?}");
    }

    #[test]
    fn cache_entries_live_at_most_the_ttl() {
        let v = verifier(JwtConfig::default())
            .with_cache(10, Duration::from_secs(5))
            .with_metrics(Metrics::default());
        let token = sign(HS, r#"{"exp":1900000000}"#);
        for at in [0.0, 1.0, 6.0, 7.0] {
            assert!(block_on(v.verify_at(&token, None, NOW + at)).is_ok());
        }
        // 0: miss (cached until +5), 1: hit, 6: miss (expired; cached again), 7: hit.
        assert_eq!(lookups(&v), (2, 2));
    }

    #[test]
    fn cache_bound_is_respected() {
        let v = verifier(JwtConfig::default()).with_cache_size(3);
        let tokens: Vec<String> = (0..10)
            .map(|i| sign(HS, &format!(r#"{{"exp":1900000000,"n":{i}}}"#)))
            .collect();
        for t in &tokens {
            assert!(block_on(v.verify_at(t, None, NOW)).is_ok());
            assert!(v.cached_tokens() <= 3);
        }
        assert_eq!(v.cached_tokens(), 3);
        let cache = v.cache.as_ref().unwrap();
        let generation = v.key_sets[0].1.generation();
        assert!(cache.get(0, &tokens[9], generation, NOW).is_some());
        assert!(
            cache.get(0, &tokens[0], generation, NOW).is_none(),
            "oldest evicted"
        );
        // Same text, another key set: a different entry.
        assert!(cache.get(1, &tokens[9], generation, NOW).is_none());
    }

    #[test]
    fn issue_15_tokens_alike_in_their_hashed_tail_are_told_apart() {
        // The cache hashes a token's length and last bytes only; look-ups compare whole
        // tokens, so a token that ends like a cached one (same length) is not that one.
        let v = verifier(JwtConfig::default()).with_cache_size(10);
        let token = sign(HS, r#"{"exp":1900000000,"sub":"alice"}"#);
        assert!(block_on(v.verify_at(&token, None, NOW)).is_ok());
        let cache = v.cache.as_ref().unwrap();
        let generation = v.key_sets[0].1.generation();
        assert!(cache.get(0, &token, generation, NOW).is_some());
        let mut forged = token.clone().into_bytes();
        forged[0] = if forged[0] == b'e' { b'f' } else { b'e' };
        let forged = String::from_utf8(forged).unwrap();
        assert!(cache.get(0, &forged, generation, NOW).is_none());
        assert!(block_on(v.verify_at(&forged, None, NOW)).is_err());
        assert_eq!(v.cached_tokens(), 1);
        let hasher = TailState::default();
        assert_eq!(hasher.hash_one(&*token), hasher.hash_one(&*forged));
        assert_ne!(hasher.hash_one("a.b.c"), hasher.hash_one("a.b.cd"));
    }

    #[test]
    fn cache_hits_and_misses_are_counted() {
        let metrics = Metrics::default();
        let v = verifier(JwtConfig::default())
            .with_cache_size(10)
            .with_metrics(metrics.clone());
        let token = sign(HS, r#"{"exp":1900000000}"#);
        for _ in 0..3 {
            assert!(block_on(v.verify_at(&token, None, NOW)).is_ok());
        }
        let bad = sign(r#"{"alg":"HS256","kid":"zz"}"#, r#"{"exp":1900000000}"#);
        assert!(block_on(v.verify_at(&bad, None, NOW)).is_err());
        assert_eq!(metrics.jwt_cache_lookups(), (2, 2));
        let text = metrics.render(None);
        assert!(
            text.contains("gatehouse_jwt_cache_lookups_total{result=\"hit\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("gatehouse_jwt_cache_lookups_total{result=\"miss\"} 2\n"),
            "{text}"
        );
        let uncached = verifier(JwtConfig::default()).with_metrics(Metrics::default());
        assert!(block_on(uncached.verify_at(&token, None, NOW)).is_ok());
        assert_eq!(lookups(&uncached), (0, 0), "no cache, no lookups");
    }

    /// Serves `bodies[i]` (the last one from then on) to the i-th request on 127.0.0.1.
    async fn jwks_server(bodies: Vec<String>) -> (String, tokio::task::JoinHandle<()>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let mut served = 0;
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let body = &bodies[served.min(bodies.len() - 1)];
                served += 1;
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            }
        });
        (url, task)
    }

    #[test]
    fn rotated_keys_invalidate_cached_tokens() {
        block_on(async {
            let rotated = SECRET_JWK.replace(r#""kid":"h""#, r#""kid":"h2""#);
            let (url, server) = jwks_server(vec![
                format!(r#"{{"keys":[{SECRET_JWK}]}}"#),
                format!(r#"{{"keys":[{rotated}]}}"#),
            ])
            .await;
            let set = KeySet::load(
                crate::jwt::KeySource::Url {
                    url,
                    refresh_interval: Some(Duration::from_secs(3600)),
                },
                false,
            )
            .await
            .unwrap();
            let v = JwtVerifier::new(JwtConfig {
                key_sets: vec![("remote".into(), set.clone())],
                ..JwtConfig::default()
            })
            .unwrap()
            .with_cache_size(10)
            .with_metrics(Metrics::default());
            let token = sign(HS, r#"{"exp":1900000000}"#);
            assert!(v.verify_at(&token, None, NOW).await.is_ok());
            assert!(v.verify_at(&token, None, NOW).await.is_ok());
            assert_eq!(lookups(&v), (1, 1));
            // The IdP rotates: key "h" is gone. The cached token is no longer accepted.
            set.refresh().await.unwrap();
            assert_eq!(set.key_ids(), vec!["h2"]);
            let err = v.verify_at(&token, None, NOW).await.unwrap_err();
            assert_eq!(
                err.to_string(),
                "no key with ID \"h\" in key set \"remote\""
            );
            assert_eq!(lookups(&v), (1, 2));
            assert_eq!(v.cached_tokens(), 0);
            server.abort();
        });
    }

    #[test]
    fn shared_across_tasks() {
        fn send_sync<T: Send + Sync>(_: &T) {}
        fn send<T: Send>(_: &T) {}
        let v = verifier(JwtConfig::default());
        send_sync(&v);
        send(&v.verify("a.b.c", None));
        send(&KeySet::load(
            crate::jwt::KeySource::Data(SECRET_JWK.into()),
            false,
        ));
    }

    #[test]
    fn cerbos_claim_shape() {
        let claims: Claims =
            serde_json::from_str(r#"{"exp":1950277926,"iat":1.5e9,"aud":"a","nbf":"x","sub":"s"}"#)
                .unwrap();
        let out = to_cerbos_claims(claims);
        assert_eq!(out["exp"], "2031-10-20T15:52:06Z");
        assert_eq!(out["iat"], "2017-07-14T02:40:00Z");
        assert_eq!(out["aud"], serde_json::json!(["a"]));
        assert_eq!(out["nbf"], "x");
        assert_eq!(out["sub"], "s");
    }

    #[test]
    fn unverified_decoding() {
        let token = format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64(r#"{"sub":"x"}"#));
        assert_eq!(decode_unverified(&token).unwrap()["sub"], "x");
        let big = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert!(matches!(
            decode_unverified(&big),
            Err(JwtError::TokenTooLarge { .. })
        ));
        let v = verifier(JwtConfig::default());
        assert!(matches!(
            v.validate_unverified(&token),
            Err(JwtError::MissingClaim("exp"))
        ));
    }
}

#[cfg(test)]
mod tokens;
