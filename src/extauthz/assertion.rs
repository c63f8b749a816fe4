//! The signed assertion ("wristband") added on allow: a short-lived Ed25519 JWT that
//! says who was allowed to do which request, so the app can tell a request that passed
//! through Gatehouse from one that reached it some other way with forged
//! `x-gatehouse-*` headers. Its public key is served as a JWKS
//! (`GET /_gatehouse/jwks.json` on the HTTP listener).
//!
//! Claims: `iss`, `aud`, `sub` (the principal), `roles`, `jti` (the decision id),
//! `method` and `path` (the decoded request path, as the app routes on it), `iat`,
//! `exp` (`iat` + `ttlSeconds`).

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ed25519_dalek::{Signer as _, SigningKey};
use serde::Deserialize;

use super::ConfigError;

/// `extAuthz.assertion`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct AssertionConfig {
    /// Ed25519 private key, PKCS#8 PEM (`openssl genpkey -algorithm ed25519`), relative
    /// to the configuration file.
    key_file: String,
    /// `iss` of the tokens.
    #[serde(default = "default_issuer")]
    issuer: String,
    /// `aud` of the tokens: the app that checks them.
    audience: String,
    /// Lifetime of a token, seconds.
    #[serde(default = "default_ttl")]
    ttl_seconds: u64,
}

fn default_issuer() -> String {
    "gatehouse".into()
}

fn default_ttl() -> u64 {
    60
}

/// DER prefix of an Ed25519 private key in PKCS#8 v1 (RFC 8410), before the 32-byte seed.
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// Largest key file read.
const MAX_KEY_FILE: u64 = 16 * 1024;

/// Signs assertions with one key.
pub(crate) struct AssertionSigner {
    key: SigningKey,
    kid: String,
    /// `base64url(header).` with the `iss` and `aud` parts of the claims prepared once.
    header: String,
    issuer: String,
    audience: String,
    ttl: u64,
    jwks: serde_json::Value,
}

impl std::fmt::Debug for AssertionSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssertionSigner")
            .field("kid", &self.kid)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

/// The 32-byte seed of a PKCS#8 PEM Ed25519 private key.
fn seed_from_pem(text: &str) -> Result<[u8; 32], String> {
    let body: String = text
        .lines()
        .skip_while(|l| l.trim() != "-----BEGIN PRIVATE KEY-----")
        .skip(1)
        .take_while(|l| l.trim() != "-----END PRIVATE KEY-----")
        .map(str::trim)
        .collect();
    if body.is_empty() {
        return Err("not a PEM `PRIVATE KEY` (PKCS#8)".into());
    }
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|e| format!("PEM body is not base64: {e}"))?;
    match der.strip_prefix(&PKCS8_ED25519_PREFIX[..]) {
        Some(seed) if seed.len() == 32 => {
            let mut out = [0u8; 32];
            out.copy_from_slice(seed);
            Ok(out)
        }
        _ => Err("not an Ed25519 private key (PKCS#8, RFC 8410)".into()),
    }
}

impl AssertionSigner {
    /// Loads the key named by `config` (relative to `base`).
    pub(crate) fn load(
        config: &AssertionConfig,
        base: &Path,
    ) -> Result<AssertionSigner, ConfigError> {
        let path = base.join(&config.key_file);
        let err = |m: String| ConfigError(format!("assertion.keyFile {}: {m}", path.display()));
        let len = std::fs::metadata(&path)
            .map_err(|e| err(e.to_string()))?
            .len();
        if len > MAX_KEY_FILE {
            return Err(err(format!("larger than {MAX_KEY_FILE} bytes")));
        }
        let text = std::fs::read_to_string(&path).map_err(|e| err(e.to_string()))?;
        let seed = seed_from_pem(&text).map_err(err)?;
        if config.audience.is_empty() {
            return Err(ConfigError("assertion.audience must not be empty".into()));
        }
        if config.ttl_seconds == 0 || config.ttl_seconds > 3600 {
            return Err(ConfigError(
                "assertion.ttlSeconds must be between 1 and 3600".into(),
            ));
        }
        Ok(Self::new(SigningKey::from_bytes(&seed), config))
    }

    fn new(key: SigningKey, config: &AssertionConfig) -> Self {
        let public = key.verifying_key().to_bytes();
        let kid = B64.encode(&public[..12]);
        let header =
            B64.encode(serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": kid}).to_string());
        let jwks = serde_json::json!({"keys": [{
            "kty": "OKP", "crv": "Ed25519", "x": B64.encode(public),
            "kid": kid, "alg": "EdDSA", "use": "sig",
        }]});
        AssertionSigner {
            key,
            kid,
            header,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            ttl: config.ttl_seconds,
            jwks,
        }
    }

    /// The public key as a JWKS document.
    pub(crate) fn jwks(&self) -> &serde_json::Value {
        &self.jwks
    }

    /// A token for one allowed request.
    pub(crate) fn sign(
        &self,
        principal: &str,
        roles: &[&str],
        decision_id: &str,
        method: &str,
        path: &str,
    ) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.sign_at(principal, roles, decision_id, method, path, now)
    }

    fn sign_at(
        &self,
        principal: &str,
        roles: &[&str],
        decision_id: &str,
        method: &str,
        path: &str,
        now: u64,
    ) -> String {
        let claims = serde_json::json!({
            "iss": self.issuer, "aud": self.audience, "sub": principal, "roles": roles,
            "jti": decision_id, "method": method, "path": path,
            "iat": now, "exp": now + self.ttl,
        });
        let mut token = format!("{}.{}", self.header, B64.encode(claims.to_string()));
        let signature = self.key.sign(token.as_bytes());
        token.push('.');
        token.push_str(&B64.encode(signature.to_bytes()));
        token
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> AssertionConfig {
        AssertionConfig {
            key_file: "k.pem".into(),
            issuer: "gatehouse".into(),
            audience: "documents-api".into(),
            ttl_seconds: 60,
        }
    }

    // RFC 8032 test vector 1: seed and public key.
    const SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn pem(seed: &[u8]) -> String {
        let mut der = PKCS8_ED25519_PREFIX.to_vec();
        der.extend_from_slice(seed);
        format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(der)
        )
    }

    #[test]
    fn issue_18_assertions_verify_with_the_published_key() {
        let seed: [u8; 32] = hex(SEED).try_into().unwrap();
        assert_eq!(seed_from_pem(&pem(&seed)).unwrap(), seed);
        let signer = AssertionSigner::new(SigningKey::from_bytes(&seed), &config());
        let jwk = &signer.jwks()["keys"][0];
        assert_eq!(B64.decode(jwk["x"].as_str().unwrap()).unwrap(), hex(PUBLIC));
        let token = signer.sign_at("alice", &["user"], "d-1", "GET", "/documents/1", 1_000);
        // Verified independently, by jsonwebtoken with the JWKS's public key.
        let key =
            jsonwebtoken::DecodingKey::from_ed_components(jwk["x"].as_str().unwrap()).unwrap();
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
        v.validate_exp = false;
        v.set_audience(&["documents-api"]);
        v.set_issuer(&["gatehouse"]);
        let data = jsonwebtoken::decode::<serde_json::Value>(&token, &key, &v).unwrap();
        assert_eq!(data.header.kid.as_deref(), jwk["kid"].as_str());
        let c = data.claims;
        assert_eq!(c["sub"], "alice");
        assert_eq!(c["roles"], serde_json::json!(["user"]));
        assert_eq!(c["jti"], "d-1");
        assert_eq!(
            (c["method"].as_str(), c["path"].as_str()),
            (Some("GET"), Some("/documents/1"))
        );
        assert_eq!(
            (c["iat"].as_u64(), c["exp"].as_u64()),
            (Some(1_000), Some(1_060))
        );
        // A changed claim breaks the signature.
        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        parts[1] = B64.encode(c.to_string().replace("/documents/1", "/documents/2"));
        assert!(jsonwebtoken::decode::<serde_json::Value>(&parts.join("."), &key, &v).is_err());
    }

    #[test]
    fn issue_18_only_ed25519_pkcs8_keys_load() {
        assert!(seed_from_pem("nothing").is_err());
        let mut rsa_like = pem(&[1; 32]);
        rsa_like = rsa_like.replace("MC4CAQAwBQYDK2VwBCIEI", "MC4CAQAwBQYDK2VxBCIEI");
        assert!(seed_from_pem(&rsa_like).is_err());
        let dir = std::env::temp_dir().join(format!("gh-assertion-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("k.pem"), pem(&[7; 32])).unwrap();
        assert!(AssertionSigner::load(&config(), &dir).is_ok());
        let mut c = config();
        c.ttl_seconds = 0;
        assert!(AssertionSigner::load(&c, &dir).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
