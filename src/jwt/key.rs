//! One verification key: its public material, identity and the algorithms it
//! accepts; parsed from a JWK or a PEM block.

use std::fmt;

use base64::Engine as _;
use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};

use super::JwtError;
use super::der;

/// base64url, with or without padding (JWK members are unpadded, but some
/// publishers pad).
const B64URL_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Decodes a base64url JWK member.
pub(crate) fn b64url(s: &str) -> Result<Vec<u8>, String> {
    B64URL_LENIENT
        .decode(s.as_bytes())
        .map_err(|e| format!("invalid base64url: {e}"))
}

/// Smallest RSA modulus accepted, in bytes (1024 bits).
const MIN_RSA_MODULUS_BYTES: usize = 128;

/// JOSE algorithm names that are valid but never verify a JWS here:
/// encryption algorithms and signature algorithms without a backend.
const OTHER_JOSE_ALGORITHMS: &[&str] = &[
    "none",
    "ES512",
    "ES256K",
    "Ed25519",
    "Ed448",
    "RSA1_5",
    "RSA-OAEP",
    "RSA-OAEP-256",
    "RSA-OAEP-384",
    "RSA-OAEP-512",
    "A128KW",
    "A192KW",
    "A256KW",
    "dir",
    "ECDH-ES",
    "ECDH-ES+A128KW",
    "ECDH-ES+A192KW",
    "ECDH-ES+A256KW",
    "A128GCMKW",
    "A192GCMKW",
    "A256GCMKW",
    "PBES2-HS256+A128KW",
    "PBES2-HS384+A192KW",
    "PBES2-HS512+A256KW",
    "A128CBC-HS256",
    "A192CBC-HS384",
    "A256CBC-HS512",
    "A128GCM",
    "A192GCM",
    "A256GCM",
];

/// A signature algorithm this crate verifies, by its JOSE name.
pub(crate) fn signature_algorithm(name: &str) -> Option<Algorithm> {
    Some(match name {
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        _ => return None,
    })
}

/// The algorithm a key declares in its `alg` member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum KeyAlg {
    /// A signature algorithm this crate verifies.
    Sig(Algorithm),
    /// A valid JOSE algorithm this key cannot verify tokens with.
    Other(String),
}

impl KeyAlg {
    fn parse(name: &str) -> Option<KeyAlg> {
        if let Some(alg) = signature_algorithm(name) {
            Some(KeyAlg::Sig(alg))
        } else if OTHER_JOSE_ALGORITHMS.contains(&name) {
            Some(KeyAlg::Other(name.to_string()))
        } else {
            None
        }
    }
}

/// An elliptic curve with an ECDSA backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Curve {
    /// NIST P-256, for ES256.
    P256,
    /// NIST P-384, for ES384.
    P384,
}

impl Curve {
    /// The one JWS algorithm that uses this curve.
    pub(crate) fn algorithm(self) -> Algorithm {
        match self {
            Curve::P256 => Algorithm::ES256,
            Curve::P384 => Algorithm::ES384,
        }
    }

    fn coordinate_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
        }
    }
}

/// Public key material.
#[derive(Clone)]
pub(crate) enum Material {
    /// RSA modulus and exponent, big-endian; `pss_only` for RSASSA-PSS keys.
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
        pss_only: bool,
    },
    /// An EC point in SEC1 encoding.
    Ec { curve: Curve, point: Vec<u8> },
    /// A 32-byte Ed25519 public key.
    Ed25519(Vec<u8>),
    /// An HMAC secret (`kty: oct`).
    Hmac(Vec<u8>),
    /// A key type or curve without a verifier, described.
    Unsupported(String),
}

impl fmt::Debug for Material {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.kind())
    }
}

impl Material {
    /// A short description: `RSA`, `EC P-256`, `OKP Ed25519`, `oct`.
    pub(crate) fn kind(&self) -> String {
        match self {
            Material::Rsa {
                pss_only: false, ..
            } => "RSA".to_string(),
            Material::Rsa { pss_only: true, .. } => "RSA-PSS".to_string(),
            Material::Ec { curve, .. } => format!("EC {}", curve.name()),
            Material::Ed25519(_) => "OKP Ed25519".to_string(),
            Material::Hmac(_) => "oct".to_string(),
            Material::Unsupported(what) => what.clone(),
        }
    }

    fn accepts(&self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            Material::Rsa {
                pss_only: false, ..
            } => {
                matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512)
            }
            Material::Rsa { pss_only: true, .. } => matches!(alg, PS256 | PS384 | PS512),
            Material::Ec { curve, .. } => curve.algorithm() == alg,
            Material::Ed25519(_) => alg == EdDSA,
            Material::Hmac(_) => matches!(alg, HS256 | HS384 | HS512),
            Material::Unsupported(_) => false,
        }
    }

    /// Any algorithm this material accepts, to probe the key with.
    fn probe_algorithm(&self) -> Option<Algorithm> {
        match self {
            Material::Rsa {
                pss_only: false, ..
            } => Some(Algorithm::RS256),
            Material::Rsa { pss_only: true, .. } => Some(Algorithm::PS256),
            Material::Ec { curve, .. } => Some(curve.algorithm()),
            Material::Ed25519(_) => Some(Algorithm::EdDSA),
            Material::Hmac(_) => Some(Algorithm::HS256),
            Material::Unsupported(_) => None,
        }
    }

    /// A checked decoding key, or why the material is unusable.
    fn decoding_key(&self) -> Result<Option<DecodingKey>, String> {
        let key = match self {
            Material::Rsa { n, e, .. } => {
                if n.len() < MIN_RSA_MODULUS_BYTES {
                    return Err(format!(
                        "RSA modulus of {} bits is too small (at least 1024 required)",
                        n.len() * 8
                    ));
                }
                DecodingKey::from_rsa_raw_components(n, e)
            }
            Material::Ec { curve, point } => {
                let want = 1 + 2 * curve.coordinate_len();
                if point.len() != want || point.first() != Some(&0x04) {
                    return Err(format!(
                        "EC {} public key must be an uncompressed point of {want} bytes",
                        curve.name()
                    ));
                }
                DecodingKey::from_ec_der(point)
            }
            Material::Ed25519(x) => {
                if x.len() != 32 {
                    return Err(format!(
                        "Ed25519 public key must be 32 bytes, not {}",
                        x.len()
                    ));
                }
                DecodingKey::from_ed_der(x)
            }
            Material::Hmac(k) => {
                if k.is_empty() {
                    return Err("empty HMAC key (k)".to_string());
                }
                DecodingKey::from_secret(k)
            }
            Material::Unsupported(_) => return Ok(None),
        };
        if let Some(alg) = self.probe_algorithm() {
            // A dummy signature: construction of the verifier checks the key
            // (RSA parameters, curve point); the signature itself just fails.
            jsonwebtoken::crypto::verify("AA", b"probe", &key, alg)
                .map_err(|e| format!("invalid {} key: {e}", self.kind()))?;
        }
        Ok(Some(key))
    }
}

/// One key of a key set.
#[derive(Clone)]
pub(crate) struct Key {
    /// `kid`, as declared (possibly empty).
    pub(crate) kid: Option<String>,
    /// `alg`, as declared.
    pub(crate) alg: Option<KeyAlg>,
    material: Material,
    /// `use` / `key_ops` allow signature verification.
    for_signatures: bool,
    decoding: Option<DecodingKey>,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("kind", &self.material)
            .field("for_signatures", &self.for_signatures)
            .finish()
    }
}

impl Key {
    fn new(
        material: Material,
        kid: Option<String>,
        alg: Option<KeyAlg>,
        for_signatures: bool,
    ) -> Result<Key, String> {
        if let (Some(KeyAlg::Sig(a)), false) = (&alg, matches!(material, Material::Unsupported(_)))
            && !material.accepts(*a)
        {
            return Err(format!(
                "algorithm {a:?} does not fit a {} key",
                material.kind()
            ));
        }
        let decoding = material.decoding_key()?;
        Ok(Key {
            kid,
            alg,
            material,
            for_signatures,
            decoding,
        })
    }

    /// The key to verify an `alg` signature with, or why this key cannot.
    pub(crate) fn verifier_for(&self, alg: Algorithm) -> Result<&DecodingKey, String> {
        if !self.for_signatures {
            return Err("the key is not meant for signatures (use/key_ops)".to_string());
        }
        match &self.alg {
            Some(KeyAlg::Sig(declared)) if *declared != alg => {
                return Err(format!("the key is for {declared:?}"));
            }
            Some(KeyAlg::Other(declared)) => return Err(format!("the key is for {declared}")),
            _ => {}
        }
        match &self.decoding {
            Some(key) if self.material.accepts(alg) => Ok(key),
            Some(_) => Err(format!("the key is a {} key", self.material.kind())),
            None => Err(format!(
                "the key type {} is not supported",
                self.material.kind()
            )),
        }
    }
}

// === JWK ===

/// Keys from a JWK set (`{"keys": [...]}`) or a single JWK.
pub(crate) fn parse_jwk_document(text: &str) -> Result<Vec<Key>, JwtError> {
    let doc: Value = serde_json::from_str(text).map_err(|e| {
        let hint = if text.trim_start().starts_with("-----BEGIN") {
            " (the data looks like PEM; set pem: true)"
        } else {
            ""
        };
        JwtError::KeyParse(format!("invalid JSON: {e}{hint}"))
    })?;
    let Value::Object(obj) = doc else {
        return Err(JwtError::KeyParse(
            "expected a JWK set or a JWK object".to_string(),
        ));
    };
    match obj.get("keys") {
        Some(Value::Array(keys)) => keys
            .iter()
            .enumerate()
            .map(|(idx, key)| match key {
                Value::Object(key) => parse_jwk(idx, key),
                _ => Err(JwtError::KeyParse(format!(
                    "key at idx {idx} is not a JSON object"
                ))),
            })
            .collect(),
        Some(_) => Err(JwtError::KeyParse(
            "\"keys\" must be an array of JWKs".to_string(),
        )),
        None if obj.contains_key("kty") => parse_jwk(0, &obj).map(|k| vec![k]),
        None => Err(JwtError::KeyParse(
            "expected a JWK set ({\"keys\": [...]}) or a JWK with \"kty\"".to_string(),
        )),
    }
}

fn string_member<'a>(
    idx: usize,
    key: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a str>, JwtError> {
    match key.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(JwtError::KeyParse(format!(
            "key at idx {idx}: {name:?} must be a string"
        ))),
    }
}

fn bytes_member(idx: usize, key: &Map<String, Value>, name: &str) -> Result<Vec<u8>, JwtError> {
    let s = string_member(idx, key, name)?
        .ok_or_else(|| JwtError::KeyParse(format!("key at idx {idx}: missing {name:?}")))?;
    let bytes =
        b64url(s).map_err(|e| JwtError::KeyParse(format!("key at idx {idx}: {name:?}: {e}")))?;
    if bytes.is_empty() {
        return Err(JwtError::KeyParse(format!(
            "key at idx {idx}: {name:?} is empty"
        )));
    }
    Ok(bytes)
}

/// A big-endian integer without leading zeros.
fn trim_leading_zeros(mut v: Vec<u8>) -> Vec<u8> {
    let zeros = v.iter().take_while(|&&b| b == 0).count();
    v.drain(..zeros);
    v
}

/// A coordinate left-padded to the curve's size.
fn coordinate(idx: usize, name: &str, v: Vec<u8>, curve: Curve) -> Result<Vec<u8>, JwtError> {
    let len = curve.coordinate_len();
    if v.len() > len {
        return Err(JwtError::KeyParse(format!(
            "key at idx {idx}: {name:?} is longer than {len} bytes for {}",
            curve.name()
        )));
    }
    let mut out = vec![0; len - v.len()];
    out.extend_from_slice(&v);
    Ok(out)
}

fn parse_jwk(idx: usize, key: &Map<String, Value>) -> Result<Key, JwtError> {
    let alg = match string_member(idx, key, "alg")? {
        None => None,
        Some(name) => Some(
            KeyAlg::parse(name).ok_or_else(|| JwtError::InvalidKeyAlgorithm {
                idx,
                alg: name.to_string(),
            })?,
        ),
    };
    let kid = string_member(idx, key, "kid")?.map(str::to_string);
    let for_use = string_member(idx, key, "use")?.is_none_or(|u| u == "sig");
    let for_ops = match key.get("key_ops") {
        None => true,
        Some(Value::Array(ops)) => ops
            .iter()
            .any(|op| matches!(op.as_str(), Some("verify" | "sign"))),
        Some(_) => {
            return Err(JwtError::KeyParse(format!(
                "key at idx {idx}: \"key_ops\" must be an array"
            )));
        }
    };
    let kty = string_member(idx, key, "kty")?
        .ok_or_else(|| JwtError::KeyParse(format!("key at idx {idx}: missing key type (kty)")))?;
    let material = match kty {
        "RSA" => Material::Rsa {
            n: trim_leading_zeros(bytes_member(idx, key, "n")?),
            e: trim_leading_zeros(bytes_member(idx, key, "e")?),
            pss_only: false,
        },
        "EC" => {
            let crv = string_member(idx, key, "crv")?.ok_or_else(|| {
                JwtError::KeyParse(format!("key at idx {idx}: missing curve (crv)"))
            })?;
            let curve = match crv {
                "P-256" => Some(Curve::P256),
                "P-384" => Some(Curve::P384),
                _ => None,
            };
            match curve {
                Some(curve) => {
                    let x = coordinate(idx, "x", bytes_member(idx, key, "x")?, curve)?;
                    let y = coordinate(idx, "y", bytes_member(idx, key, "y")?, curve)?;
                    Material::Ec {
                        curve,
                        point: [&[0x04][..], &x, &y].concat(),
                    }
                }
                None => Material::Unsupported(format!("EC {crv}")),
            }
        }
        "OKP" => match string_member(idx, key, "crv")? {
            Some("Ed25519") => Material::Ed25519(bytes_member(idx, key, "x")?),
            Some(crv) => Material::Unsupported(format!("OKP {crv}")),
            None => {
                return Err(JwtError::KeyParse(format!(
                    "key at idx {idx}: missing curve (crv)"
                )));
            }
        },
        "oct" => Material::Hmac(bytes_member(idx, key, "k")?),
        other => {
            return Err(JwtError::KeyParse(format!(
                "key at idx {idx}: unsupported key type (kty) {other:?}"
            )));
        }
    };
    Key::new(material, kid, alg, for_use && for_ops)
        .map_err(|e| JwtError::KeyParse(format!("key at idx {idx}: {e}")))
}

/// Cerbos's key checks: every key names its `alg` and a non-empty `kid`
/// unless the set relaxes them.
pub(crate) fn validate_keys(
    keys: &[Key],
    optional_alg: bool,
    optional_kid: bool,
) -> Result<(), JwtError> {
    for (idx, key) in keys.iter().enumerate() {
        if !optional_alg && key.alg.is_none() {
            return Err(JwtError::InvalidKey {
                idx,
                problem: "missing algorithm (alg)",
            });
        }
        if !optional_kid {
            match key.kid.as_deref() {
                None => {
                    return Err(JwtError::InvalidKey {
                        idx,
                        problem: "missing key ID (kid)",
                    });
                }
                Some("") => {
                    return Err(JwtError::InvalidKey {
                        idx,
                        problem: "empty key ID (kid)",
                    });
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}

// === PEM ===

/// Keys from PEM text: public keys, certificates, or the public half of
/// private keys. PEM keys have no `kid` or `alg`.
pub(crate) fn parse_pem_document(text: &str) -> Result<Vec<Key>, JwtError> {
    let blocks = der::parse_pem(text).map_err(JwtError::KeyParse)?;
    let mut keys = Vec::new();
    for (idx, block) in blocks.iter().enumerate() {
        let Some(material) = der::key_from_pem_block(block)
            .map_err(|e| JwtError::KeyParse(format!("PEM block {idx}: {e}")))?
        else {
            continue;
        };
        keys.push(
            Key::new(material, None, None, true)
                .map_err(|e| JwtError::KeyParse(format!("PEM block {idx}: {e}")))?,
        );
    }
    Ok(keys)
}
