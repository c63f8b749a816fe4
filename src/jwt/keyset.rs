//! Key sets: loaded once from a file or inline data, or fetched from a URL
//! and kept fresh.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use hyper::Uri;

use super::JwtError;
use super::fetch::{self, HttpClient, MAX_KEY_SET_BYTES};
use super::key::{self, Key};

/// Refresh interval of a remote key set that does not set one.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(3600);

/// Shortest time between two fetches caused by an unknown `kid`, and between
/// a failed fetch and the next attempt.
pub const MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(10);

/// Where a key set comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeySource {
    /// A local file (Cerbos `local.file`).
    File(PathBuf),
    /// Key text given inline, already base64-decoded (Cerbos `local.data`).
    Data(String),
    /// A JWKS endpoint (Cerbos `remote`); only `http://` for now.
    Url {
        /// The JWKS URL.
        url: String,
        /// How often to refetch; [`DEFAULT_REFRESH_INTERVAL`] when `None`.
        refresh_interval: Option<Duration>,
    },
}

/// How key text is read and checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeySetOptions {
    pem: bool,
    optional_alg: bool,
    optional_kid: bool,
}

impl KeySetOptions {
    /// JWK / JWKS text; every key must have `alg` and a non-empty `kid`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Read the text as PEM (public keys, certificates, or private keys whose
    /// public half is used). PEM keys carry no `alg` or `kid` and skip those checks.
    pub fn pem(mut self, pem: bool) -> Self {
        self.pem = pem;
        self
    }

    /// Accept JWKs without `alg` (Cerbos `insecure.optionalAlg`); the
    /// algorithm is then inferred from the key type.
    pub(crate) fn insecure_optional_alg(mut self, yes: bool) -> Self {
        self.optional_alg = yes;
        self
    }

    /// Accept JWKs without `kid` (Cerbos `insecure.optionalKid`).
    pub fn insecure_optional_kid(mut self, yes: bool) -> Self {
        self.optional_kid = yes;
        self
    }
}

/// Verification keys, shared cheaply by cloning.
///
/// Local sets are fixed once loaded. Remote sets are fetched over HTTP: when
/// older than their refresh interval they are refetched in the background on
/// the next use (the current keys stay in service meanwhile), and a token with
/// an unknown `kid` triggers one immediate refetch, at most once per
/// [`MIN_REFETCH_INTERVAL`]. A failed refetch keeps the previous keys.
#[derive(Clone)]
pub struct KeySet {
    inner: Arc<Inner>,
}

struct Inner {
    keys: ArcSwap<Keys>,
    remote: Option<Remote>,
}

/// One version of a key set's keys, indexed by `kid` so that choosing a token's key costs
/// the same whatever the number of keys.
pub(crate) struct Keys {
    list: Vec<Key>,
    /// Positions in `list` of the keys with each `kid`, in order.
    by_kid: HashMap<String, Vec<usize>>,
    /// Positions of the keys without a `kid` (PEM keys), in order.
    anonymous: Vec<usize>,
    /// Unique to this version: a key set that changes (a remote set refetched) gets a new one.
    generation: u64,
}

impl Keys {
    fn new(list: Vec<Key>) -> Keys {
        static GENERATION: AtomicU64 = AtomicU64::new(1);
        let mut by_kid: HashMap<String, Vec<usize>> = HashMap::new();
        let mut anonymous = Vec::new();
        for (i, key) in list.iter().enumerate() {
            match &key.kid {
                Some(kid) => by_kid.entry(kid.clone()).or_default().push(i),
                None => anonymous.push(i),
            }
        }
        Keys {
            list,
            by_kid,
            anonymous,
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Every key, in the set's order.
    pub(crate) fn all(&self) -> &[Key] {
        count_read(self.list.len());
        &self.list
    }

    /// The keys declaring `kid`, in order (a hash lookup).
    pub(crate) fn with_kid(&self, kid: &str) -> impl Iterator<Item = &Key> {
        let found = self.by_kid.get(kid).map_or(&[][..], Vec::as_slice);
        count_read(found.len());
        found.iter().map(|&i| &self.list[i])
    }

    /// Whether some key declares `kid`.
    pub(crate) fn has_kid(&self, kid: &str) -> bool {
        self.by_kid.contains_key(kid)
    }

    /// The keys without a `kid`, in order.
    pub(crate) fn anonymous(&self) -> impl Iterator<Item = &Key> {
        count_read(self.anonymous.len());
        self.anonymous.iter().map(|&i| &self.list[i])
    }

    /// This version's identity (see [`KeySet::generation`]).
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }
}

/// Keys handed out by [`Keys`] on this thread, for the test that choosing a token's key
/// does not grow with the number of keys in the set.
#[cfg(test)]
pub(crate) mod work {
    use std::cell::Cell;

    thread_local! {
        static KEYS_READ: Cell<usize> = const { Cell::new(0) };
    }

    /// Adds `n` keys read.
    pub(crate) fn add(n: usize) {
        KEYS_READ.with(|c| c.set(c.get() + n));
    }

    /// Keys read since the last call (and resets the count).
    pub(crate) fn take() -> usize {
        KEYS_READ.with(|c| c.replace(0))
    }
}

/// Counts keys read (for the test of [`work`]; nothing outside tests).
fn count_read(n: usize) {
    #[cfg(test)]
    work::add(n);
    #[cfg(not(test))]
    let _ = n;
}

struct Remote {
    url: String,
    uri: Uri,
    refresh_interval: Duration,
    options: KeySetOptions,
    client: HttpClient,
    status: Mutex<Status>,
    fetch_lock: tokio::sync::Mutex<()>,
    refreshing: AtomicBool,
}

#[derive(Default)]
struct Status {
    /// Completed fetch attempts, successful or not.
    attempts: u64,
    fetched_at: Option<Instant>,
    failed_at: Option<Instant>,
    last_error: Option<String>,
    kid_refresh_at: Option<Instant>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet")
            .field("url", &self.url())
            .field("keys", &self.inner.keys.load().all())
            .finish()
    }
}

impl KeySet {
    /// Loads a key set; `pem` reads the text as PEM instead of JWK / JWKS.
    ///
    /// A URL source is fetched once here, and the call fails if that fetch
    /// fails (see [`KeySet::remote`] to defer it).
    pub async fn load(source: KeySource, pem: bool) -> Result<KeySet, JwtError> {
        Self::load_with(source, KeySetOptions::new().pem(pem)).await
    }

    /// Loads a key set with explicit options.
    pub(crate) async fn load_with(
        source: KeySource,
        options: KeySetOptions,
    ) -> Result<KeySet, JwtError> {
        match source {
            KeySource::Data(text) => Self::parse(&text, options),
            KeySource::File(path) => {
                let bytes = tokio::fs::read(&path)
                    .await
                    .map_err(|source| JwtError::Read {
                        path: path.clone(),
                        source,
                    })?;
                let text = String::from_utf8(bytes).map_err(|_| JwtError::Read {
                    path: path.clone(),
                    source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"),
                })?;
                Self::parse(&text, options)
            }
            KeySource::Url {
                url,
                refresh_interval,
            } => {
                let set = Self::remote(&url, refresh_interval, options)?;
                set.refresh().await?;
                Ok(set)
            }
        }
    }

    /// A key set from key text (JWK, JWKS or PEM).
    pub fn parse(text: &str, options: KeySetOptions) -> Result<KeySet, JwtError> {
        let keys = parse_keys(text, options)?;
        Ok(KeySet {
            inner: Arc::new(Inner {
                keys: ArcSwap::from_pointee(Keys::new(keys)),
                remote: None,
            }),
        })
    }

    /// A remote key set that is fetched on first use rather than now.
    ///
    /// Fails only when the URL cannot be fetched at all (not an absolute `https://` or
    /// `http://` URL).
    pub fn remote(
        url: &str,
        refresh_interval: Option<Duration>,
        options: KeySetOptions,
    ) -> Result<KeySet, JwtError> {
        let uri = fetch::check_url(url).map_err(|reason| JwtError::Fetch {
            url: url.to_string(),
            reason,
        })?;
        let refresh_interval = refresh_interval
            .filter(|d| !d.is_zero())
            .unwrap_or(DEFAULT_REFRESH_INTERVAL)
            .max(Duration::from_secs(1));
        Ok(KeySet {
            inner: Arc::new(Inner {
                keys: ArcSwap::from_pointee(Keys::new(Vec::new())),
                remote: Some(Remote {
                    url: url.to_string(),
                    uri,
                    refresh_interval,
                    options,
                    client: fetch::client(),
                    status: Mutex::new(Status::default()),
                    fetch_lock: tokio::sync::Mutex::new(()),
                    refreshing: AtomicBool::new(false),
                }),
            }),
        })
    }

    /// Number of keys currently held.
    pub fn len(&self) -> usize {
        self.inner.keys.load().all().len()
    }

    /// Whether no keys are held (a remote set not fetched yet).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `kid`s of the keys currently held, in order.
    pub fn key_ids(&self) -> Vec<String> {
        self.inner
            .keys
            .load()
            .all()
            .iter()
            .filter_map(|k| k.kid.clone())
            .collect()
    }

    /// The identity of the keys in service now: it changes whenever they are replaced
    /// (a remote set refetched), so what was verified with older keys can be told apart.
    pub(crate) fn generation(&self) -> u64 {
        self.inner.keys.load().generation()
    }

    /// The URL of a remote set.
    fn url(&self) -> Option<&str> {
        self.inner.remote.as_ref().map(|r| r.url.as_str())
    }

    /// Refetches a remote set now (no-op for local sets). On failure the
    /// previous keys stay in service.
    pub async fn refresh(&self) -> Result<(), JwtError> {
        match &self.inner.remote {
            Some(remote) => {
                let seen = remote.status().attempts;
                self.inner.fetch(remote, seen).await
            }
            None => Ok(()),
        }
    }

    /// The keys to verify with now: fetches a remote set never fetched, and
    /// starts a background refetch of a stale one.
    pub(crate) async fn keys(&self) -> Result<Arc<Keys>, JwtError> {
        let Some(remote) = &self.inner.remote else {
            return Ok(self.inner.keys.load_full());
        };
        let (fetched_at, attempts, recent_failure) = {
            let st = remote.status();
            let recent_failure = match (&st.failed_at, &st.last_error) {
                (Some(at), Some(err)) if at.elapsed() < MIN_REFETCH_INTERVAL => Some(err.clone()),
                _ => None,
            };
            (st.fetched_at, st.attempts, recent_failure)
        };
        match fetched_at {
            None => match recent_failure {
                Some(reason) => {
                    return Err(JwtError::Fetch {
                        url: remote.url.clone(),
                        reason,
                    });
                }
                None => self.inner.fetch(remote, attempts).await?,
            },
            Some(at) if at.elapsed() >= remote.refresh_interval && recent_failure.is_none() => {
                self.spawn_refresh(remote, attempts);
            }
            Some(_) => {}
        }
        Ok(self.inner.keys.load_full())
    }

    /// Refetches a remote set because a token named an unknown `kid`.
    /// `Ok(true)` when new keys may be available, `Ok(false)` when the
    /// refetch was skipped (local set, or rate-limited).
    pub(crate) async fn refresh_for_unknown_kid(&self) -> Result<bool, JwtError> {
        let Some(remote) = &self.inner.remote else {
            return Ok(false);
        };
        let attempts = {
            let mut st = remote.status();
            if st
                .kid_refresh_at
                .is_some_and(|at| at.elapsed() < MIN_REFETCH_INTERVAL)
            {
                return Ok(false);
            }
            st.kid_refresh_at = Some(Instant::now());
            st.attempts
        };
        self.inner.fetch(remote, attempts).await.map(|()| true)
    }

    fn spawn_refresh(&self, remote: &Remote, attempts: u64) {
        if remote.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            remote.refreshing.store(false, Ordering::Release);
            return;
        };
        let inner = Arc::clone(&self.inner);
        runtime.spawn(async move {
            if let Some(remote) = &inner.remote {
                let _ = inner.fetch(remote, attempts).await;
                remote.refreshing.store(false, Ordering::Release);
            }
        });
    }
}

impl Remote {
    fn status(&self) -> MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inner {
    /// Fetches `remote` unless another fetch completed since `seen_attempts`,
    /// in which case that fetch's outcome is returned.
    async fn fetch(&self, remote: &Remote, seen_attempts: u64) -> Result<(), JwtError> {
        let _guard = remote.fetch_lock.lock().await;
        {
            let st = remote.status();
            if st.attempts != seen_attempts {
                return match &st.last_error {
                    None => Ok(()),
                    Some(reason) => Err(JwtError::Fetch {
                        url: remote.url.clone(),
                        reason: reason.clone(),
                    }),
                };
            }
        }
        let result = match fetch::get_text(&remote.client, &remote.uri).await {
            Ok(text) => parse_keys(&text, remote.options).map_err(|e| e.to_string()),
            Err(reason) => Err(reason),
        };
        let mut st = remote.status();
        st.attempts += 1;
        match result {
            Ok(keys) => {
                tracing::debug!(url = %remote.url, keys = keys.len(), "fetched JWT key set");
                self.keys.store(Arc::new(Keys::new(keys)));
                st.fetched_at = Some(Instant::now());
                st.last_error = None;
                Ok(())
            }
            Err(reason) => {
                tracing::warn!(url = %remote.url, error = %reason, "failed to fetch JWT key set");
                st.failed_at = Some(Instant::now());
                st.last_error = Some(reason.clone());
                Err(JwtError::Fetch {
                    url: remote.url.clone(),
                    reason,
                })
            }
        }
    }
}

/// Parses and checks key text.
fn parse_keys(text: &str, options: KeySetOptions) -> Result<Vec<Key>, JwtError> {
    if text.len() > MAX_KEY_SET_BYTES {
        return Err(JwtError::KeyParse(format!(
            "key data is larger than {MAX_KEY_SET_BYTES} bytes"
        )));
    }
    let keys = if options.pem {
        key::parse_pem_document(text)?
    } else {
        let keys = key::parse_jwk_document(text)?;
        key::validate_keys(&keys, options.optional_alg, options.optional_kid)?;
        keys
    };
    if keys.is_empty() {
        return Err(JwtError::KeyParse("the key set holds no keys".to_string()));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EC_JWK: &str = r#"{"kty":"EC","use":"sig","crv":"P-384","kid":"k1",
        "x":"NZa8GIgLBQC0DsmbISVHOhgkH41v3XxdNqRaOk1Pus3Mz3f46Lt6AP0ggqHPfbum",
        "y":"w-pnkb-ffeqd3tXihH33MNwseCYH7G3eN5nvCgdo-VY3xBhNJaSBQluJT4ggza9-","alg":"ES384"}"#;

    fn err(text: &str, options: KeySetOptions) -> String {
        KeySet::parse(text, options).unwrap_err().to_string()
    }

    #[test]
    fn single_jwk_and_set() {
        let one = KeySet::parse(EC_JWK, KeySetOptions::new()).unwrap();
        assert_eq!(one.key_ids(), vec!["k1"]);
        let set = format!(
            r#"{{"keys":[{EC_JWK},{}]}}"#,
            EC_JWK.replace(r#""kid":"k1""#, r#""kid":"k2""#)
        );
        let two = KeySet::parse(&set, KeySetOptions::new()).unwrap();
        assert_eq!(two.key_ids(), vec!["k1", "k2"]);
        assert_eq!(two.len(), 2);
        assert!(two.url().is_none());
    }

    #[test]
    fn cerbos_key_checks() {
        let no_kid = EC_JWK.replace(r#""kid":"k1","#, "");
        assert_eq!(
            err(&no_kid, KeySetOptions::new()),
            "failed to validate key at idx 0: missing key ID (kid)"
        );
        assert!(KeySet::parse(&no_kid, KeySetOptions::new().insecure_optional_kid(true)).is_ok());
        let empty_kid = EC_JWK.replace(r#""kid":"k1""#, r#""kid":"""#);
        assert_eq!(
            err(&empty_kid, KeySetOptions::new()),
            "failed to validate key at idx 0: empty key ID (kid)"
        );
        let no_alg = EC_JWK.replace(r#","alg":"ES384""#, "");
        assert_eq!(
            err(&no_alg, KeySetOptions::new()),
            "failed to validate key at idx 0: missing algorithm (alg)"
        );
        assert!(KeySet::parse(&no_alg, KeySetOptions::new().insecure_optional_alg(true)).is_ok());
        let bad_alg = EC_JWK.replace(r#""alg":"ES384""#, r#""alg":"XX""#);
        assert!(err(&bad_alg, KeySetOptions::new()).starts_with("invalid algorithm (alg)"));
    }

    #[test]
    fn parse_errors_are_clear() {
        assert!(err("-----BEGIN PUBLIC KEY-----", KeySetOptions::new()).contains("set pem: true"));
        assert!(err("[]", KeySetOptions::new()).contains("expected a JWK set"));
        assert!(err(r#"{"keys":[]}"#, KeySetOptions::new()).contains("holds no keys"));
        assert!(err(r#"{"keys":{}}"#, KeySetOptions::new()).contains("must be an array"));
        assert!(err(r#"{"keys":[1]}"#, KeySetOptions::new()).contains("not a JSON object"));
        let kty = EC_JWK.replace(r#""kty":"EC""#, r#""kty":"XYZ""#);
        assert!(err(&kty, KeySetOptions::new()).contains("unsupported key type (kty)"));
        let wrong_alg = EC_JWK.replace("ES384", "RS256");
        assert!(err(&wrong_alg, KeySetOptions::new()).contains("does not fit a EC P-384 key"));
        let off_curve = EC_JWK.replace("NZa8", "NZa9");
        assert!(err(&off_curve, KeySetOptions::new()).contains("invalid EC P-384 key"));
        let short = r#"{"kty":"OKP","crv":"Ed25519","x":"AAAA","kid":"e","alg":"EdDSA"}"#;
        assert!(err(short, KeySetOptions::new()).contains("must be 32 bytes"));
        let tiny_rsa = r#"{"kty":"RSA","n":"AQAB","e":"AQAB","kid":"r","alg":"RS256"}"#;
        assert!(err(tiny_rsa, KeySetOptions::new()).contains("too small"));
        assert!(err("nope", KeySetOptions::new().pem(true)).contains("no PEM blocks"));
        let huge = " ".repeat(MAX_KEY_SET_BYTES + 1);
        assert!(err(&huge, KeySetOptions::new()).contains("larger than"));
    }

    #[test]
    fn unsupported_keys_are_kept_but_unusable() {
        let p521 = r#"{"kty":"EC","crv":"P-521","x":"AA","y":"AA","kid":"p","alg":"ES512"}"#;
        let set = KeySet::parse(p521, KeySetOptions::new()).unwrap();
        let keys = set.inner.keys.load();
        let reason = keys.all()[0]
            .verifier_for(jsonwebtoken::Algorithm::ES256)
            .unwrap_err();
        assert!(reason.contains("ES512"), "{reason}");
    }

    #[test]
    fn remote_url_checks() {
        let ftp = KeySet::remote("ftp://idp.example/jwks", None, KeySetOptions::new())
            .unwrap_err()
            .to_string();
        assert!(ftp.starts_with("failed to look up remote keyset ftp://idp.example/jwks"));
        assert!(ftp.contains("unsupported URL scheme"));
        let https = KeySet::remote("https://idp.example/jwks", None, KeySetOptions::new());
        assert!(https.is_ok(), "https key sets are fetched lazily");
        let lazy = KeySet::remote("http://127.0.0.1:9/jwks", None, KeySetOptions::new()).unwrap();
        assert!(lazy.is_empty());
        assert_eq!(lazy.url(), Some("http://127.0.0.1:9/jwks"));
    }

    #[tokio::test]
    async fn missing_file_is_reported() {
        let err = KeySet::load(KeySource::File("/nonexistent/keys.jwk".into()), false)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("failed to read keyset from '/nonexistent/keys.jwk'"),
            "{err}"
        );
    }
}
