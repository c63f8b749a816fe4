//! Property tests of the verifier: mutated and random tokens never verify, and
//! `decode_unverified` never panics (issue 12). Fixed seeds only in the sense of
//! proptest's runner: a failure prints the minimal input.

use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use serde_json::json;

use super::{JwtConfig, JwtVerifier, decode_unverified};
use crate::jwt::{KeySet, KeySource};

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

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

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
    let key = jsonwebtoken::EncodingKey::from_ed_pem(ED25519_PRIVATE.as_bytes()).unwrap();
    let claims = json!({"sub": "alice", "iss": "https://issuer.test", "aud": "api",
        "exp": 4_102_444_800i64, "roles": ["user"]});
    let input = format!(
        "{}.{}",
        b64(json!({"alg": "EdDSA", "typ": "JWT"}).to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig =
        jsonwebtoken::crypto::sign(input.as_bytes(), &key, jsonwebtoken::Algorithm::EdDSA).unwrap();
    let token = format!("{input}.{sig}");
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
