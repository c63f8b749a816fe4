//! The verifier over whole tokens: EdDSA, HMAC and kid-less tokens against several key
//! sets, mangled tokens, and the properties (issue 12) that mutated and random tokens
//! never verify and that `decode_unverified` never panics (a failure prints proptest's
//! minimal input).

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use serde_json::{Value, json};

use super::{JwtConfig, JwtVerifier, decode_unverified};
use crate::jwt::{JwtError, KeySet, KeySetOptions, KeySource};

/// Runs `test` on `default_cases` inputs of `strategy` (or `PROPTEST_CASES`), printing
/// how many ran and failing with proptest's minimal case.
fn run<S: Strategy>(
    name: &str,
    default_cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let cases = std::cell::Cell::new(0u64);
    let mut runner = TestRunner::new(crate::testing::proptest_config(default_cases));
    let result = runner.run(&strategy, |v| {
        cases.set(cases.get() + 1);
        test(v)
    });
    println!("property {name}: {} cases", cases.get());
    if let Err(e) = result {
        panic!("property {name} failed: {e}");
    }
}

/// An Ed25519 key pair made with `openssl genpkey -algorithm ed25519`.
const ED25519_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEICGoehlvy4uHn4nXH9Vf3NKB3vCyOPltlHZmCOgTFMLd
-----END PRIVATE KEY-----";
const ED25519_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAvDKJhspHrRHFSzF7kh+YF4jgimUYbqkmUg0z8L6lVfg=
-----END PUBLIC KEY-----";

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

#[tokio::test]
async fn eddsa_hmac_and_kidless_tokens() {
    let claims = json!({"sub": "bob", "exp": now() + 600});
    let ed_signing = EncodingKey::from_ed_pem(ED25519_PRIVATE.as_bytes()).expect("ed pem");
    let ed_set = KeySet::parse(ED25519_PUBLIC, KeySetOptions::new().pem(true)).expect("ed set");
    let secret = b"a-shared-secret-of-32-bytes-long";
    let oct = json!({"keys": [
        {"kty": "oct", "kid": "h1", "alg": "HS256", "k": b64(b"another-secret-another-secret-xx")},
        {"kty": "oct", "kid": "h2", "alg": "HS256", "k": b64(secret)},
    ]});
    let oct_no_kid = json!({"keys": [{"kty": "oct", "alg": "HS256", "k": b64(secret)}]});
    let hmac_set = KeySet::parse(&oct.to_string(), KeySetOptions::new()).expect("oct set");
    let anon_set = KeySet::parse(
        &oct_no_kid.to_string(),
        KeySetOptions::new().insecure_optional_kid(true),
    )
    .expect("optional kid");
    let v = JwtVerifier::new(JwtConfig {
        key_sets: vec![
            ("ed".to_string(), ed_set),
            ("hmac".to_string(), hmac_set),
            ("anon".to_string(), anon_set),
        ],
        ..JwtConfig::default()
    })
    .expect("verifier");

    let ed = sign(
        &json!({"alg": "EdDSA"}),
        &claims,
        &ed_signing,
        Algorithm::EdDSA,
    );
    assert_eq!(
        v.verify(&ed, Some("ed")).await.expect("eddsa")["sub"],
        "bob"
    );
    let err = v.verify(&ed, None).await.expect_err("three sets");
    assert!(
        matches!(err, JwtError::NoKeySetSelected { count: 3 }),
        "{err}"
    );

    let hmac_key = EncodingKey::from_secret(secret);
    let no_kid = sign(
        &json!({"alg": "HS256"}),
        &claims,
        &hmac_key,
        Algorithm::HS256,
    );
    assert!(
        v.verify(&no_kid, Some("hmac")).await.is_ok(),
        "tries every key"
    );
    assert!(v.verify(&no_kid, Some("anon")).await.is_ok());
    let wrong_kid = sign(
        &json!({"alg": "HS256", "kid": "h1"}),
        &claims,
        &hmac_key,
        Algorithm::HS256,
    );
    let err = v
        .verify(&wrong_kid, Some("hmac"))
        .await
        .expect_err("h1 is another key");
    assert!(matches!(err, JwtError::BadSignature), "{err}");
    let hs384 = sign(
        &json!({"alg": "HS384", "kid": "h2"}),
        &claims,
        &hmac_key,
        Algorithm::HS384,
    );
    let err = v
        .verify(&hs384, Some("hmac"))
        .await
        .expect_err("key is HS256");
    assert!(err.to_string().contains("the key is for HS256"), "{err}");

    assert_eq!(decode_unverified(&ed).expect("decodes")["sub"], "bob");
}

#[tokio::test]
async fn mangled_tokens_never_panic() {
    let secret = b"0123456789abcdef0123456789abcdef";
    let set = KeySet::parse(
        &json!({"kty": "oct", "kid": "k", "alg": "HS256", "k": b64(secret)}).to_string(),
        KeySetOptions::new(),
    )
    .expect("set");
    let v = JwtVerifier::new(JwtConfig {
        key_sets: vec![("k".to_string(), set)],
        ..JwtConfig::default()
    })
    .expect("verifier");
    let token = sign(
        &json!({"alg": "HS256", "kid": "k"}),
        &json!({"exp": now() + 600, "n": [1, 2, {"x": null}]}),
        &EncodingKey::from_secret(secret),
        Algorithm::HS256,
    );
    assert!(v.verify(&token, None).await.is_ok());
    let bytes = token.as_bytes();
    let mut rejected = 0;
    for i in 0..bytes.len() {
        for replacement in [b'.', b'A', b'-', b'_', b'=', 0xC3] {
            let mut m = bytes.to_vec();
            m[i] = replacement;
            let mutated = String::from_utf8_lossy(&m).into_owned();
            if mutated != token && v.verify(&mutated, None).await.is_err() {
                rejected += 1;
            }
            let _ = decode_unverified(&mutated);
        }
        let _ = v.verify(&token[..i], None).await;
    }
    assert!(
        rejected > bytes.len() * 4,
        "most mutations are rejected ({rejected})"
    );
}

// === properties ===

struct Jwt {
    rt: tokio::runtime::Runtime,
    verifier: JwtVerifier,
    token: String,
}

fn jwt() -> Jwt {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let set = rt
        .block_on(KeySet::load(KeySource::Data(ED25519_PUBLIC.into()), true))
        .unwrap();
    let verifier = JwtVerifier::new(JwtConfig {
        key_sets: vec![("k".into(), set)],
        issuer: Some("https://issuer.test".into()),
        audiences: vec!["api".into()],
        ..JwtConfig::default()
    })
    .unwrap();
    let key = EncodingKey::from_ed_pem(ED25519_PRIVATE.as_bytes()).unwrap();
    let claims = json!({"sub": "alice", "iss": "https://issuer.test", "aud": "api",
        "exp": 4_102_444_800i64, "roles": ["user"]});
    let token = sign(
        &json!({"alg": "EdDSA", "typ": "JWT"}),
        &claims,
        &key,
        Algorithm::EdDSA,
    );
    rt.block_on(verifier.verify(&token, None))
        .expect("the unmutated token verifies");
    Jwt {
        rt,
        verifier,
        token,
    }
}

const TOKEN_NOISE: &[&str] = &[
    ".",
    "=",
    "+",
    "/",
    "-",
    "_",
    "A",
    "a",
    "0",
    " ",
    "\n",
    "%",
    "\u{0}",
    "é",
    "eyJ",
    "..",
    "eyJhbGciOiJub25lIn0",
    "eyJhbGciOiJIUzI1NiJ9",
    "e30",
];

/// Mutated valid tokens (characters replaced, inserted, removed, segments swapped or
/// cut, headers replaced by `alg: none` or HS256): never verified unless unchanged, and
/// `decode_unverified` never panics.
#[test]
fn issue_12_property_mutated_tokens_never_verify() {
    let j = jwt();
    let token = j.token.clone();
    let edit = (
        any::<usize>(),
        0u8..6,
        proptest::sample::select(TOKEN_NOISE),
    );
    run(
        "mutated_tokens_never_verify",
        1500,
        proptest::collection::vec(edit, 1..4),
        |edits| {
            let mut t: Vec<char> = token.chars().collect();
            for (at, op, noise) in edits {
                let at = at % (t.len() + 1);
                match op {
                    0 if at < t.len() => t[at] = noise.chars().next().unwrap(),
                    1 if at < t.len() => {
                        t.remove(at);
                    }
                    2 => {
                        for (i, c) in noise.chars().enumerate() {
                            t.insert(at + i, c);
                        }
                    }
                    3 => t.truncate(at),
                    4 => {
                        // swap the header for a forged one
                        let s: String = t.iter().collect();
                        let rest = s.split_once('.').map_or("", |(_, r)| r).to_string();
                        t = format!("{noise}.{rest}").chars().collect();
                    }
                    _ => {
                        let s: String = t.iter().collect();
                        let parts: Vec<&str> = s.split('.').collect();
                        t = parts
                            .iter()
                            .rev()
                            .copied()
                            .collect::<Vec<_>>()
                            .join(".")
                            .chars()
                            .collect();
                    }
                }
            }
            let mutated: String = t.into_iter().collect();
            let _ = decode_unverified(&mutated);
            let verified = j.rt.block_on(j.verifier.verify(&mutated, None));
            if mutated != token {
                prop_assert!(verified.is_err(), "a mutated token verified: {mutated}");
            }
            Ok(())
        },
    );
}

/// Random three-part tokens with generated headers and claims (any `alg`, `kid`,
/// `crit`, claims of any type) and random signatures: never verified, never a panic.
#[test]
fn issue_12_property_random_tokens_never_verify() {
    let j = jwt();
    let algs = proptest::sample::select(
        &[
            "none", "None", "EdDSA", "HS256", "RS256", "ES256", "", "eddsa",
        ][..],
    );
    let claim = prop_oneof![
        Just(json!(null)),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        "[ -~]{0,8}".prop_map(|s| json!(s)),
        Just(json!(["api"])),
        Just(json!({"nested": {"x": 1}})),
    ];
    let strategy = (
        algs,
        proptest::option::of("[a-z0-9]{0,4}"),
        proptest::collection::btree_map(
            proptest::sample::select(&["sub", "iss", "aud", "exp", "nbf", "iat", "roles"][..]),
            claim,
            0..7,
        ),
        proptest::collection::vec(any::<u8>(), 0..80),
        ".{0,40}",
    );
    run(
        "random_tokens_never_verify",
        1500,
        strategy,
        |(alg, kid, claims, sig, junk)| {
            let mut header = json!({"alg": alg});
            if let Some(k) = kid {
                header["kid"] = json!(k);
            }
            let token = format!(
                "{}.{}.{}",
                b64(header.to_string().as_bytes()),
                b64(serde_json::to_string(&claims).unwrap().as_bytes()),
                b64(&sig)
            );
            for t in [token.as_str(), junk.as_str()] {
                let _ = decode_unverified(t);
                let verified = j.rt.block_on(j.verifier.verify(t, None));
                prop_assert!(verified.is_err(), "verified: {t}");
            }
            Ok(())
        },
    );
}
