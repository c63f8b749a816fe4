//! JWT key sets and verification: Cerbos's `auxdata` key-set cases (local
//! data, local file and remote URL), signed-token checks, and remote JWKS
//! refresh behaviour against a tiny local HTTP server.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use gatehouse::jwt::{
    JwtConfig, JwtError, JwtVerifier, KeySet, KeySetOptions, KeySource, MAX_TOKEN_BYTES,
    to_cerbos_claims,
};

use crate::util::{corpus_dir, files_with_ext};

const VERIFY_KID: &str = "19LfZatEdg83YNc5r23guMJqrn4=";

// === helpers ===

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A compact JWS over `header` and `claims`.
fn sign(header: &Value, claims: &Value, key: &EncodingKey, alg: Algorithm) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), key, alg).expect("sign");
    format!("{input}.{sig}")
}

/// One DER element.
fn der(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    if value.len() < 0x80 {
        out.push(value.len() as u8);
    } else if value.len() < 0x100 {
        out.extend([0x81, value.len() as u8]);
    } else {
        out.extend([0x82, (value.len() >> 8) as u8, value.len() as u8]);
    }
    out.extend_from_slice(value);
    out
}

/// An ES384 signing key from a private P-384 JWK (`d`, `x`, `y`), as PKCS#8.
fn ec_p384_signing_key(jwk: &Value) -> EncodingKey {
    let field = |name: &str| {
        URL_SAFE_NO_PAD
            .decode(jwk[name].as_str().expect(name))
            .expect(name)
    };
    let point = [vec![0x00, 0x04], field("x"), field("y")].concat();
    let ec_private = der(
        0x30,
        &[
            der(0x02, &[1]),
            der(0x04, &field("d")),
            der(0xA1, &der(0x03, &point)),
        ]
        .concat(),
    );
    let algorithm = der(
        0x30,
        &[
            der(0x06, &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01]),
            der(0x06, &[0x2B, 0x81, 0x04, 0x00, 0x22]),
        ]
        .concat(),
    );
    let pkcs8 = der(
        0x30,
        &[der(0x02, &[0]), algorithm, der(0x04, &ec_private)].concat(),
    );
    EncodingKey::from_ec_der(&pkcs8)
}

/// The `auxdata` directory of the corpus, if present.
fn auxdata_dir() -> Option<PathBuf> {
    corpus_dir("auxdata").map(|d| d.join("auxdata"))
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AuxDataCase {
    #[serde(default)]
    description: String,
    input: AuxDataInput,
    want_err: Option<String>,
    want_local_err: Option<String>,
    want_remote_err: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuxDataInput {
    key: String,
    #[serde(default)]
    pem: bool,
}

fn read_case(path: &Path) -> AuxDataCase {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn case_key(name: &str) -> String {
    let dir = auxdata_dir().expect("corpus");
    read_case(&dir.join(name)).input.key
}

/// A scratch directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "gatehouse-jwt-{}-{}-{name}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// === a tiny HTTP server ===

/// Serves scripted responses on 127.0.0.1: request `i` gets response
/// `min(i, last)`. Counts requests.
struct JwksServer {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    async fn start(responses: Vec<(u16, String)>) -> JwksServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let responses = Arc::new(Mutex::new(responses));
        let (h, r) = (Arc::clone(&hits), Arc::clone(&responses));
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (h, r) = (Arc::clone(&h), Arc::clone(&r));
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 65536 {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let i = h.fetch_add(1, Ordering::SeqCst);
                    let (status, body) = {
                        let r = r.lock().expect("responses");
                        r[i.min(r.len() - 1)].clone()
                    };
                    let response = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        JwksServer { addr, hits, task }
    }

    fn url(&self) -> String {
        format!("http://{}/keys.jwks", self.addr)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// === (a) Cerbos's auxdata key-set cases ===

/// Why a variant of a case failed, or `None` when it passed.
fn judge(result: Result<KeySet, JwtError>, want: Option<&str>) -> Option<String> {
    match (result, want) {
        (Ok(set), None) if !set.is_empty() => None,
        (Ok(_), None) => Some("loaded an empty key set".to_string()),
        (Ok(_), Some(want)) => Some(format!("loaded, want error containing {want:?}")),
        (Err(e), None) => Some(format!("unexpected error: {e}")),
        (Err(e), Some(want)) if e.to_string().contains(want) => None,
        (Err(e), Some(want)) => Some(format!(
            "error {:?}, want it to contain {want:?}",
            e.to_string()
        )),
    }
}

#[tokio::test]
async fn auxdata_key_set_cases() {
    let Some(dir) = auxdata_dir() else { return };
    let scratch = TempDir::new("auxdata");
    let (mut passed, mut failed) = (0, 0);
    let mut failures = Vec::new();
    for path in files_with_ext(&dir, "yaml") {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("?")
            .to_string();
        let case = read_case(&path);
        let pem = case.input.pem;
        let key = case.input.key.clone();
        let local_want = case.want_err.as_deref().or(case.want_local_err.as_deref());
        let remote_want = case.want_err.as_deref().or(case.want_remote_err.as_deref());

        let file = scratch.0.join(&name);
        std::fs::write(&file, &key).expect("write key");
        let server = JwksServer::start(vec![(200, key.clone())]).await;
        let variants: [(&str, KeySource, Option<&str>); 3] = [
            ("local/data", KeySource::Data(key.clone()), local_want),
            ("local/file", KeySource::File(file), local_want),
            (
                "remote",
                KeySource::Url {
                    url: server.url(),
                    refresh_interval: None,
                },
                remote_want,
            ),
        ];
        for (variant, source, want) in variants {
            match judge(KeySet::load(source, pem).await, want) {
                None => passed += 1,
                Some(why) => {
                    failed += 1;
                    failures.push(format!("{name} [{}] {variant}: {why}", case.description));
                }
            }
        }
    }
    for f in &failures {
        println!("FAIL {f}");
    }
    println!("auxdata: {passed} passed, {failed} failed");
    assert_eq!(failed, 0, "auxdata failures:\n{}", failures.join("\n"));
    assert!(passed > 0, "no auxdata cases found in {}", dir.display());
}

// === (b) signed tokens ===

struct Fixture {
    signing: EncodingKey,
    verifier: JwtVerifier,
}

async fn fixture() -> Option<Fixture> {
    let dir = auxdata_dir()?;
    let signing = ec_p384_signing_key(&read_json(&dir.join("keys/signing_key.jwk")));
    let set = KeySet::load(KeySource::File(dir.join("keys/verify_key.jwk")), false)
        .await
        .expect("verify_key.jwk loads");
    let verifier = JwtVerifier::new(JwtConfig {
        key_sets: vec![("cerbos".to_string(), set)],
        algorithms: Vec::new(),
        issuer: Some("cerbos-test-suite".to_string()),
        audiences: vec!["cerbos-jwt-tests".to_string()],
        leeway: Duration::from_secs(60),
        require_exp: true,
    })
    .expect("verifier");
    Some(Fixture { signing, verifier })
}

fn cerbos_claims(exp: i64) -> Value {
    json!({
        "iss": "cerbos-test-suite",
        "aud": ["cerbos-jwt-tests"],
        "exp": exp,
        "customString": "foobar",
        "customInt": 42,
        "customArray": ["A", "B", "C"],
        "customMap": {"A": "AA", "B": "BB", "C": "CC"},
    })
}

fn es384_header() -> Value {
    json!({"alg": "ES384", "kid": VERIFY_KID, "typ": "JWT"})
}

#[tokio::test]
async fn valid_token_yields_claims() {
    let Some(f) = fixture().await else { return };
    let exp = now() + 3600;
    let token = sign(
        &es384_header(),
        &cerbos_claims(exp),
        &f.signing,
        Algorithm::ES384,
    );
    let claims = f
        .verifier
        .verify(&token, Some("cerbos"))
        .await
        .expect("valid");
    assert_eq!(claims["customString"], "foobar");
    assert_eq!(Value::Object(claims.clone()), cerbos_claims(exp));
    let same = f.verifier.verify(&token, None).await.expect("only key set");
    assert_eq!(same, claims);

    let shaped = to_cerbos_claims(claims);
    let want_exp = chrono::DateTime::from_timestamp(exp, 0)
        .expect("time")
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert_eq!(shaped["exp"], Value::String(want_exp));
    assert_eq!(shaped["aud"], json!(["cerbos-jwt-tests"]));

    let within_skew = sign(
        &es384_header(),
        &cerbos_claims(now() - 2),
        &f.signing,
        Algorithm::ES384,
    );
    assert!(f.verifier.verify(&within_skew, None).await.is_ok());
}

#[tokio::test]
async fn bad_tokens_are_rejected_with_the_right_error() {
    let Some(f) = fixture().await else { return };
    let dir = auxdata_dir().expect("corpus");
    let good_exp = now() + 3600;
    let es = |claims: &Value| sign(&es384_header(), claims, &f.signing, Algorithm::ES384);
    let with = |patch: Value| {
        let mut c = cerbos_claims(good_exp);
        for (k, v) in patch.as_object().expect("object") {
            c[k] = v.clone();
        }
        c
    };

    let good = es(&cerbos_claims(good_exp));
    let (input, sig) = good.rsplit_once('.').expect("three parts");
    let mut sig_bytes = URL_SAFE_NO_PAD.decode(sig).expect("sig");
    sig_bytes[10] ^= 0x01;
    let tampered_signature = format!("{input}.{}", b64(&sig_bytes));
    let (header, _) = input.split_once('.').expect("header");
    let other_payload = b64(with(json!({"customString": "evil"})).to_string().as_bytes());
    let tampered_payload = format!("{header}.{other_payload}.{sig}");

    let alg_none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "kid": VERIFY_KID})
            .to_string()
            .as_bytes()),
        b64(cerbos_claims(good_exp).to_string().as_bytes())
    );
    // Alg confusion: HS256 keyed with the public key's own bytes.
    let public_bytes = std::fs::read(dir.join("keys/verify_key.jwk")).expect("verify key");
    let hmac_with_public = EncodingKey::from_secret(&public_bytes);
    let confused = sign(
        &json!({"alg": "HS256", "kid": VERIFY_KID}),
        &cerbos_claims(good_exp),
        &hmac_with_public,
        Algorithm::HS256,
    );
    let confused_no_kid = sign(
        &json!({"alg": "HS256"}),
        &cerbos_claims(good_exp),
        &hmac_with_public,
        Algorithm::HS256,
    );
    let unknown_kid = sign(
        &json!({"alg": "ES384", "kid": "not-a-key"}),
        &cerbos_claims(good_exp),
        &f.signing,
        Algorithm::ES384,
    );
    let padding = "x".repeat(MAX_TOKEN_BYTES);
    let oversized = es(&with(json!({"padding": padding})));

    let cases: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            es(&cerbos_claims(now() - 3600)),
            "token has expired (exp)",
        ),
        (
            "expired beyond skew",
            es(&cerbos_claims(now() - 61)),
            "token has expired (exp)",
        ),
        (
            "nbf in future",
            es(&with(json!({"nbf": now() + 3600}))),
            "token is not valid yet (nbf)",
        ),
        (
            "iat in future",
            es(&with(json!({"iat": now() + 3600}))),
            "issued at time is in the future (iat)",
        ),
        (
            "wrong iss",
            es(&with(json!({"iss": "someone-else"}))),
            "invalid issuer (iss)",
        ),
        (
            "wrong aud",
            es(&with(json!({"aud": "other-service"}))),
            "invalid audience (aud)",
        ),
        (
            "no exp",
            es(&json!({"iss": "cerbos-test-suite", "aud": "cerbos-jwt-tests"})),
            "token has no \"exp\" claim",
        ),
        (
            "tampered signature",
            tampered_signature,
            "signature verification failed",
        ),
        (
            "tampered payload",
            tampered_payload,
            "signature verification failed",
        ),
        (
            "alg none",
            alg_none,
            "algorithm \"none\" is not allowed: unsigned tokens are never accepted",
        ),
        (
            "alg confusion",
            confused,
            "algorithm \"HS256\" is not allowed: key \"19LfZatEdg83YNc5r23guMJqrn4=\" of key set \"cerbos\" refuses it: the key is for ES384",
        ),
        (
            "alg confusion without kid",
            confused_no_kid,
            "algorithm \"HS256\" is not allowed: no key in key set \"cerbos\" accepts it",
        ),
        (
            "unknown kid",
            unknown_kid,
            "no key with ID \"not-a-key\" in key set \"cerbos\"",
        ),
        (
            "garbage",
            "not-a-token".to_string(),
            "malformed token: expected 3 dot-separated segments, found 1",
        ),
    ];
    for (name, token, want) in &cases {
        let err = f
            .verifier
            .verify(token, Some("cerbos"))
            .await
            .expect_err(name);
        assert_eq!(err.to_string(), *want, "{name}");
    }
    let err = f
        .verifier
        .verify(&oversized, None)
        .await
        .expect_err("oversized");
    assert!(
        matches!(err, JwtError::TokenTooLarge { max, .. } if max == MAX_TOKEN_BYTES),
        "{err}"
    );
    let err = f
        .verifier
        .verify(&good, Some("nope"))
        .await
        .expect_err("set");
    assert_eq!(err.to_string(), "keyset not found: nope");
}

#[tokio::test]
async fn pinned_algorithms() {
    let Some(dir) = auxdata_dir() else { return };
    let signing = ec_p384_signing_key(&read_json(&dir.join("keys/signing_key.jwk")));
    let set = KeySet::load(KeySource::File(dir.join("keys/verify_key.jwk")), false)
        .await
        .expect("set");
    let pinned = JwtVerifier::new(JwtConfig {
        key_sets: vec![("cerbos".to_string(), set)],
        algorithms: vec![Algorithm::RS256],
        ..JwtConfig::default()
    })
    .expect("verifier");
    let token = sign(
        &es384_header(),
        &cerbos_claims(now() + 60),
        &signing,
        Algorithm::ES384,
    );
    let err = pinned.verify(&token, None).await.expect_err("not pinned");
    assert_eq!(
        err.to_string(),
        "algorithm \"ES384\" is not allowed: not in the configured algorithm list"
    );
}

#[tokio::test]
async fn corpus_pem_and_jwk_keys_sign_and_verify() {
    let Some(_) = auxdata_dir() else { return };
    let claims = json!({"sub": "alice", "exp": now() + 600});
    let verify_with = |set: KeySet| {
        JwtVerifier::new(JwtConfig {
            key_sets: vec![("ks".to_string(), set)],
            ..JwtConfig::default()
        })
        .expect("verifier")
    };

    // RSA: the PEM private key signs; the set derived from the same PEM and
    // the JWK case holding the same key both verify.
    let rsa_pem = case_key("single_key.rsa.rs256.pem.yaml");
    let rsa_signing = EncodingKey::from_rsa_pem(rsa_pem.as_bytes()).expect("rsa pem");
    let from_pem = verify_with(
        KeySet::load(KeySource::Data(rsa_pem.clone()), true)
            .await
            .expect("pem set"),
    );
    let from_jwk = verify_with(
        KeySet::load(
            KeySource::Data(case_key("single_key.rsa.rs256.yaml")),
            false,
        )
        .await
        .expect("jwk set"),
    );
    for alg in [Algorithm::RS256, Algorithm::RS512, Algorithm::PS256] {
        let token = sign(
            &json!({"alg": format!("{alg:?}")}),
            &claims,
            &rsa_signing,
            alg,
        );
        assert_eq!(
            from_pem.verify(&token, None).await.expect("pem")["sub"],
            "alice",
            "{alg:?}"
        );
    }
    let rs256 = sign(
        &json!({"alg": "RS256", "kid": "cerbos-test"}),
        &claims,
        &rsa_signing,
        Algorithm::RS256,
    );
    assert!(from_jwk.verify(&rs256, None).await.is_ok());
    let ps256 = sign(
        &json!({"alg": "PS256", "kid": "cerbos-test"}),
        &claims,
        &rsa_signing,
        Algorithm::PS256,
    );
    let err = from_jwk
        .verify(&ps256, None)
        .await
        .expect_err("jwk is RS256 only");
    assert!(err.to_string().contains("the key is for RS256"), "{err}");
    // A token with a kid still verifies against anonymous PEM keys.
    assert!(from_pem.verify(&rs256, None).await.is_ok());

    // EC P-384: the PEM private key has no public point; it is derived.
    let ec_pem = case_key("single_key.ec.es384.pem.yaml");
    let ec_signing = EncodingKey::from_ec_pem(ec_pem.as_bytes()).expect("ec pem");
    let ec_from_pem = verify_with(
        KeySet::load(KeySource::Data(ec_pem), true)
            .await
            .expect("pem set"),
    );
    let ec_from_jwk = verify_with(
        KeySet::load(
            KeySource::Data(case_key("multiple_keys.ec.es384.yaml")),
            false,
        )
        .await
        .expect("jwk set"),
    );
    let es384 = sign(
        &json!({"alg": "ES384", "kid": "cerbos-test"}),
        &claims,
        &ec_signing,
        Algorithm::ES384,
    );
    assert!(ec_from_pem.verify(&es384, None).await.is_ok());
    assert!(ec_from_jwk.verify(&es384, None).await.is_ok());
    let es256 = sign(
        &json!({"alg": "ES256"}),
        &claims,
        &ec_signing,
        Algorithm::ES384,
    );
    let err = ec_from_pem
        .verify(&es256, None)
        .await
        .expect_err("curve mismatch");
    assert!(matches!(err, JwtError::AlgorithmNotAllowed { .. }), "{err}");
}

// === (c) remote key sets ===

fn jwks(keys: &[Value]) -> String {
    json!({ "keys": keys }).to_string()
}

#[tokio::test]
async fn remote_rotation_refetches_once_on_unknown_kid() {
    let Some(dir) = auxdata_dir() else { return };
    let verify_key = read_json(&dir.join("keys/verify_key.jwk"));
    let mut old_key = read_json(&dir.join("keys/verify_key.jwk"));
    old_key["kid"] = json!("retired");
    let server = JwksServer::start(vec![
        (200, jwks(&[old_key.clone()])),
        (200, jwks(&[old_key, verify_key])),
    ])
    .await;
    let set = KeySet::load(
        KeySource::Url {
            url: server.url(),
            refresh_interval: Some(Duration::from_secs(3600)),
        },
        false,
    )
    .await
    .expect("first fetch");
    assert_eq!(server.hits(), 1);
    assert_eq!(set.key_ids(), vec!["retired"]);
    let v = JwtVerifier::new(JwtConfig {
        key_sets: vec![("remote".to_string(), set.clone())],
        ..JwtConfig::default()
    })
    .expect("verifier");

    let signing = ec_p384_signing_key(&read_json(&dir.join("keys/signing_key.jwk")));
    let token = sign(
        &es384_header(),
        &cerbos_claims(now() + 600),
        &signing,
        Algorithm::ES384,
    );
    let claims = v
        .verify(&token, None)
        .await
        .expect("refetched and verified");
    assert_eq!(claims["customInt"], 42);
    assert_eq!(server.hits(), 2, "exactly one refetch");
    assert_eq!(set.key_ids(), vec!["retired", VERIFY_KID]);

    let stranger = sign(
        &json!({"alg": "ES384", "kid": "stranger"}),
        &cerbos_claims(now() + 600),
        &signing,
        Algorithm::ES384,
    );
    let err = v.verify(&stranger, None).await.expect_err("unknown");
    assert_eq!(
        err.to_string(),
        "no key with ID \"stranger\" in key set \"remote\""
    );
    assert_eq!(
        server.hits(),
        2,
        "rate-limited: no second refetch within 10s"
    );
    assert!(v.verify(&token, None).await.is_ok());
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn remote_fetch_failures_are_clear() {
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let url = format!("http://{down}/jwks.json");
    let err = KeySet::load(
        KeySource::Url {
            url: url.clone(),
            refresh_interval: None,
        },
        false,
    )
    .await
    .expect_err("nothing listens");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "failed to look up remote keyset {url}: request failed"
        )),
        "{text}"
    );

    let err = KeySet::load(
        KeySource::Url {
            url: "ftp://idp.example/jwks.json".to_string(),
            refresh_interval: None,
        },
        false,
    )
    .await
    .expect_err("ftp");
    assert_eq!(
        err.to_string(),
        "failed to look up remote keyset ftp://idp.example/jwks.json: unsupported URL scheme \"ftp\""
    );

    let server = JwksServer::start(vec![(500, "boom".to_string())]).await;
    let err = KeySet::load(
        KeySource::Url {
            url: server.url(),
            refresh_interval: None,
        },
        false,
    )
    .await
    .expect_err("500");
    assert_eq!(
        err.to_string(),
        format!(
            "failed to look up remote keyset {}: unexpected HTTP status 500 Internal Server Error",
            server.url()
        )
    );

    let server = JwksServer::start(vec![(200, "{not json".to_string())]).await;
    let err = KeySet::load(
        KeySource::Url {
            url: server.url(),
            refresh_interval: None,
        },
        false,
    )
    .await
    .expect_err("bad json");
    assert!(
        err.to_string()
            .contains("failed to parse key data: invalid JSON"),
        "{err}"
    );

    // A lazily fetched set reports the failure at verification time, and
    // does not hammer the endpoint afterwards.
    let server = JwksServer::start(vec![(503, String::new())]).await;
    let lazy = KeySet::remote(&server.url(), None, KeySetOptions::new()).expect("lazy");
    let v = JwtVerifier::new(JwtConfig {
        key_sets: vec![("lazy".to_string(), lazy)],
        ..JwtConfig::default()
    })
    .expect("verifier");
    let token = sign(
        &json!({"alg": "HS256", "kid": "x"}),
        &json!({"exp": now() + 60}),
        &EncodingKey::from_secret(b"s"),
        Algorithm::HS256,
    );
    for _ in 0..3 {
        let err = v.verify(&token, None).await.expect_err("down");
        assert!(matches!(err, JwtError::Fetch { .. }), "{err}");
        assert!(err.to_string().contains("503"), "{err}");
    }
    assert_eq!(
        server.hits(),
        1,
        "failed fetches are retried at most every 10s"
    );
}

#[tokio::test]
async fn failed_refresh_keeps_the_old_keys() {
    let Some(dir) = auxdata_dir() else { return };
    let verify_key = read_json(&dir.join("keys/verify_key.jwk"));
    let server = JwksServer::start(vec![(200, jwks(&[verify_key])), (500, String::new())]).await;
    let set = KeySet::load(
        KeySource::Url {
            url: server.url(),
            refresh_interval: None,
        },
        false,
    )
    .await
    .expect("first fetch");
    let err = set.refresh().await.expect_err("second fetch fails");
    assert!(err.to_string().contains("500"), "{err}");
    assert_eq!(set.key_ids(), vec![VERIFY_KID], "old keys kept");

    let v = JwtVerifier::new(JwtConfig {
        key_sets: vec![("r".to_string(), set)],
        ..JwtConfig::default()
    })
    .expect("verifier");
    let signing = ec_p384_signing_key(&read_json(&dir.join("keys/signing_key.jwk")));
    let token = sign(
        &es384_header(),
        &cerbos_claims(now() + 600),
        &signing,
        Algorithm::ES384,
    );
    assert!(
        v.verify(&token, None).await.is_ok(),
        "served from the old keys"
    );
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn stale_sets_refresh_in_the_background() {
    let Some(dir) = auxdata_dir() else { return };
    let verify_key = read_json(&dir.join("keys/verify_key.jwk"));
    let server = JwksServer::start(vec![(200, jwks(&[verify_key]))]).await;
    let set = KeySet::load(
        KeySource::Url {
            url: server.url(),
            refresh_interval: Some(Duration::from_secs(1)),
        },
        false,
    )
    .await
    .expect("first fetch");
    let v = JwtVerifier::new(JwtConfig {
        key_sets: vec![("r".to_string(), set)],
        ..JwtConfig::default()
    })
    .expect("verifier");
    let signing = ec_p384_signing_key(&read_json(&dir.join("keys/signing_key.jwk")));
    let token = sign(
        &es384_header(),
        &cerbos_claims(now() + 600),
        &signing,
        Algorithm::ES384,
    );
    assert!(v.verify(&token, None).await.is_ok());
    assert_eq!(server.hits(), 1, "fresh: no refetch");

    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(
        v.verify(&token, None).await.is_ok(),
        "stale keys still serve"
    );
    for _ in 0..100 {
        if server.hits() > 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.hits(), 2, "one background refetch");
}
