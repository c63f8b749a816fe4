//! Public keys out of PEM key files, read with the RustCrypto crates (`der`, `spki`,
//! `pkcs1`, `pkcs8`, `sec1`).
//!
//! Reads SubjectPublicKeyInfo (`PUBLIC KEY`), X.509 certificates, PKCS#1 RSA keys and the
//! public half of PKCS#8 / SEC1 private keys. Malformed input yields an error, never a panic.

use der::asn1::{AnyRef, ObjectIdentifier, UintRef};
use der::{Decode, Encode, Reader, SliceReader, Tag, TagNumber};
use spki::{AlgorithmIdentifierRef, SubjectPublicKeyInfoRef};

use super::key::{Curve, Material};

const OID_RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_P521: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// A failure to read PEM or DER, as a human-readable reason.
pub(crate) type DerResult<T> = Result<T, String>;

fn der_error(what: &str) -> impl Fn(der::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

// === PEM ===

/// One `-----BEGIN label-----` block, base64-decoded.
#[derive(Debug)]
pub(crate) struct PemBlock {
    pub(crate) label: String,
    pub(crate) der: Vec<u8>,
}

/// Every PEM block in `text`, in order (RFC 7468, decoded by `pem-rfc7468`). Text between
/// blocks is ignored.
pub(crate) fn parse_pem(text: &str) -> DerResult<Vec<PemBlock>> {
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let block = &rest[start..];
        let label = block["-----BEGIN ".len()..]
            .split_once("-----")
            .map(|(label, _)| label)
            .filter(|label| !label.contains('\n'))
            .ok_or("PEM BEGIN line is not closed")?;
        let end = format!("-----END {label}-----");
        let Some(end_at) = block.find(&end) else {
            return Err(format!("PEM block {label:?} has no END line"));
        };
        let one = &block[..end_at + end.len()];
        let (_, der) = der::pem::decode_vec(one.as_bytes())
            .map_err(|e| format!("PEM block {label:?} is not valid: {e}"))?;
        blocks.push(PemBlock {
            label: label.to_string(),
            der,
        });
        rest = &block[end_at + end.len()..];
    }
    if blocks.is_empty() {
        return Err("no PEM blocks found".to_string());
    }
    Ok(blocks)
}

/// The public key in one PEM block; `None` for blocks that hold no key
/// (`EC PARAMETERS`).
pub(crate) fn key_from_pem_block(block: &PemBlock) -> DerResult<Option<Material>> {
    let der = block.der.as_slice();
    let material = match block.label.as_str() {
        "PUBLIC KEY" => spki(der)?,
        "CERTIFICATE" => certificate(der)?,
        "RSA PUBLIC KEY" => rsa_public_key(der, false)?,
        "RSA PRIVATE KEY" => rsa_private_key(der, false)?,
        "PRIVATE KEY" => pkcs8(der)?,
        "EC PRIVATE KEY" => sec1(der, None)?,
        "EC PARAMETERS" => return Ok(None),
        other => return Err(format!("unsupported PEM block type {other:?}")),
    };
    Ok(Some(material))
}

// === key structures ===

fn curve_from_oid(oid: ObjectIdentifier) -> DerResult<Curve> {
    match oid {
        OID_P256 => Ok(Curve::P256),
        OID_P384 => Ok(Curve::P384),
        OID_P521 => Err("unsupported EC curve P-521".to_string()),
        _ => Err("unsupported EC curve".to_string()),
    }
}

/// The named curve in an EC AlgorithmIdentifier's parameters.
fn named_curve(algorithm: &AlgorithmIdentifierRef<'_>) -> DerResult<Curve> {
    let oid = algorithm
        .parameters_oid()
        .map_err(|_| "EC key without a named curve".to_string())?;
    curve_from_oid(oid)
}

/// An unsigned big-endian INTEGER (leading zeros already stripped by `UintRef`).
fn unsigned(value: UintRef<'_>) -> DerResult<Vec<u8>> {
    let bytes = value.as_bytes();
    if bytes.iter().all(|&b| b == 0) {
        return Err("zero INTEGER in key".to_string());
    }
    Ok(bytes.to_vec())
}

/// SubjectPublicKeyInfo.
pub(crate) fn spki(der: &[u8]) -> DerResult<Material> {
    let info = SubjectPublicKeyInfoRef::from_der(der).map_err(der_error("SubjectPublicKeyInfo"))?;
    spki_material(&info)
}

fn spki_material(info: &SubjectPublicKeyInfoRef<'_>) -> DerResult<Material> {
    let key = info
        .subject_public_key
        .as_bytes()
        .ok_or("BIT STRING with unused bits")?;
    match info.algorithm.oid {
        OID_RSA_ENCRYPTION => rsa_public_key(key, false),
        OID_RSASSA_PSS => rsa_public_key(key, true),
        OID_EC_PUBLIC_KEY => Ok(Material::Ec {
            curve: named_curve(&info.algorithm)?,
            point: key.to_vec(),
        }),
        OID_ED25519 => Ok(Material::Ed25519(key.to_vec())),
        _ => Err("unsupported public key algorithm".to_string()),
    }
}

/// An X.509 certificate: the SubjectPublicKeyInfo of its TBSCertificate. Only the fields
/// before it are stepped over; the certificate is not verified (it is a key container).
pub(crate) fn certificate(der: &[u8]) -> DerResult<Material> {
    let mut reader = SliceReader::new(der).map_err(der_error("certificate"))?;
    let info = reader
        .sequence(|cert| {
            let info = cert.sequence(|tbs| {
                let version = Tag::ContextSpecific {
                    constructed: true,
                    number: TagNumber::N0,
                };
                if tbs.peek_tag()? == version {
                    AnyRef::decode(tbs)?;
                }
                // Serial number, signature algorithm, issuer, validity, subject.
                for _ in 0..5 {
                    AnyRef::decode(tbs)?;
                }
                let info = SubjectPublicKeyInfoRef::decode(tbs)?;
                while !tbs.is_finished() {
                    AnyRef::decode(tbs)?;
                }
                Ok(info)
            })?;
            while !cert.is_finished() {
                AnyRef::decode(cert)?;
            }
            Ok(info)
        })
        .map_err(der_error("certificate"))?;
    let info = reader.finish(info).map_err(der_error("certificate"))?;
    spki_material(&info)
}

/// PKCS#1 RSAPublicKey: `SEQUENCE { n, e }`.
fn rsa_public_key(der: &[u8], pss_only: bool) -> DerResult<Material> {
    let key = pkcs1::RsaPublicKey::from_der(der).map_err(der_error("RSA public key"))?;
    Ok(Material::Rsa {
        n: unsigned(key.modulus)?,
        e: unsigned(key.public_exponent)?,
        pss_only,
    })
}

/// PKCS#1 RSAPrivateKey; keeps n and e.
fn rsa_private_key(der: &[u8], pss_only: bool) -> DerResult<Material> {
    let key = pkcs1::RsaPrivateKey::from_der(der).map_err(der_error("RSA private key"))?;
    Ok(Material::Rsa {
        n: unsigned(key.modulus)?,
        e: unsigned(key.public_exponent)?,
        pss_only,
    })
}

/// PKCS#8 PrivateKeyInfo / OneAsymmetricKey: the public half.
fn pkcs8(der: &[u8]) -> DerResult<Material> {
    let info = pkcs8::PrivateKeyInfo::from_der(der).map_err(der_error("PKCS#8 private key"))?;
    match info.algorithm.oid {
        OID_RSA_ENCRYPTION => rsa_private_key(info.private_key, false),
        OID_RSASSA_PSS => rsa_private_key(info.private_key, true),
        OID_EC_PUBLIC_KEY => sec1(info.private_key, Some(named_curve(&info.algorithm)?)),
        OID_ED25519 => match info.public_key {
            Some(key) => Ok(Material::Ed25519(key.to_vec())),
            None => Err(
                "Ed25519 private key without its public key; supply the public key instead"
                    .to_string(),
            ),
        },
        _ => Err("unsupported private key algorithm".to_string()),
    }
}

/// SEC1 ECPrivateKey; `curve` comes from the PKCS#8 wrapper when there is one.
fn sec1(der: &[u8], curve: Option<Curve>) -> DerResult<Material> {
    let key = sec1::EcPrivateKey::from_der(der).map_err(der_error("EC private key"))?;
    let curve = match (curve, key.parameters.and_then(|p| p.named_curve())) {
        (Some(c), _) => c,
        (None, Some(oid)) => curve_from_oid(oid)?,
        (None, None) => return Err("EC private key without a named curve".to_string()),
    };
    let point = match key.public_key {
        Some(p) => p.to_vec(),
        None => derive_ec_point(der, curve)?,
    };
    Ok(Material::Ec { curve, point })
}

/// The public point of a SEC1 private key that does not carry it.
fn derive_ec_point(sec1: &[u8], curve: Curve) -> DerResult<Vec<u8>> {
    use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
    let curve_oid = match curve {
        Curve::P256 => OID_P256,
        Curve::P384 => OID_P384,
    };
    let parameters = AnyRef::from(&curve_oid);
    let pkcs8 = pkcs8::PrivateKeyInfo::new(
        AlgorithmIdentifierRef {
            oid: OID_EC_PUBLIC_KEY,
            parameters: Some(parameters),
        },
        sec1,
    )
    .to_der()
    .map_err(der_error("cannot derive the EC public key"))?;
    let key = jsonwebtoken::EncodingKey::from_ec_der(&pkcs8);
    let jwk = Jwk::from_encoding_key(&key, curve.algorithm())
        .map_err(|e| format!("cannot derive the EC public key: {e}"))?;
    let AlgorithmParameters::EllipticCurve(params) = jwk.algorithm else {
        return Err("cannot derive the EC public key".to_string());
    };
    let x = super::key::b64url(&params.x).map_err(|e| format!("derived EC key: {e}"))?;
    let y = super::key::b64url(&params.y).map_err(|e| format!("derived EC key: {e}"))?;
    Ok([&[0x04][..], &x, &y].concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EC_CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBiTCCAS+gAwIBAgIUThcHO5smgxdPXaAJbPyNoGxnMykwCgYIKoZIzj0EAwIw
GTEXMBUGA1UEAwwOZ2F0ZWhvdXNlLXRlc3QwIBcNMjYxMTI3MDI1MTAxWhgPMjEy
NjExMDMwMjUxMDFaMBkxFzAVBgNVBAMMDmdhdGVob3VzZS10ZXN0MFkwEwYHKoZI
zj0CAQYIKoZIzj0DAQcDQgAEkSwG2yp+bvQCqoYPa4SQH7lGea/YZkLxC7foAai8
vbQ6xdn+n/+WUAShna5sOLJs8vWnC+pMtEhPe0n+Un+zaKNTMFEwHQYDVR0OBBYE
FOHuJHfdbuQo8twxl5zrpycrxXEkMB8GA1UdIwQYMBaAFOHuJHfdbuQo8twxl5zr
pycrxXEkMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIgfFZ8kSP3
XAYCpPnMP6+TN9I1g8TOcDrICXfAoXSLUi8CIQCbefx0ejVJPx+fE19/noxqDUT5
VaNRNRreDkG5pceQxA==
-----END CERTIFICATE-----";

    const EC_PUB: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEkSwG2yp+bvQCqoYPa4SQH7lGea/Y
ZkLxC7foAai8vbQ6xdn+n/+WUAShna5sOLJs8vWnC+pMtEhPe0n+Un+zaA==
-----END PUBLIC KEY-----";

    const SEC1_WITH_PARAMS: &str = "-----BEGIN EC PARAMETERS-----
BggqhkjOPQMBBw==
-----END EC PARAMETERS-----
-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIKsSh55Jo9zlNFaSkTM/b8rmLGtktuOl4Bu6YYz/3cEKoAoGCCqGSM49
AwEHoUQDQgAE1p2uH7apGjM8FlwtM3iGy93xSBpA8p2qpjp6r1Wtu507sAxD3Uu4
zgJFSJnlJ06Wbk3EDo0wVgxlQ1bYBxQ3VA==
-----END EC PRIVATE KEY-----";

    const ED_PUB: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAvDKJhspHrRHFSzF7kh+YF4jgimUYbqkmUg0z8L6lVfg=
-----END PUBLIC KEY-----";

    const ED_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEICGoehlvy4uHn4nXH9Vf3NKB3vCyOPltlHZmCOgTFMLd
-----END PRIVATE KEY-----";

    fn only_key(pem: &str) -> DerResult<Material> {
        let blocks = parse_pem(pem)?;
        let mut keys = Vec::new();
        for b in &blocks {
            if let Some(k) = key_from_pem_block(b)? {
                keys.push(k);
            }
        }
        assert_eq!(keys.len(), 1);
        Ok(keys.remove(0))
    }

    #[test]
    fn certificate_and_public_key_agree() {
        let from_cert = only_key(EC_CERT).unwrap();
        let from_pub = only_key(EC_PUB).unwrap();
        match (&from_cert, &from_pub) {
            (
                Material::Ec {
                    curve: Curve::P256,
                    point: a,
                },
                Material::Ec { point: b, .. },
            ) => {
                assert_eq!(a, b);
                assert_eq!(a.len(), 65);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn sec1_with_parameters_block() {
        match only_key(SEC1_WITH_PARAMS).unwrap() {
            Material::Ec {
                curve: Curve::P256,
                point,
            } => assert_eq!(point.len(), 65),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn ed25519_public_and_bare_private() {
        match only_key(ED_PUB).unwrap() {
            Material::Ed25519(x) => assert_eq!(x.len(), 32),
            other => panic!("unexpected {other:?}"),
        }
        let err = only_key(ED_PRIVATE).unwrap_err();
        assert!(
            err.contains("Ed25519 private key without its public key"),
            "{err}"
        );
    }

    #[test]
    fn pem_errors() {
        assert_eq!(parse_pem("hello").unwrap_err(), "no PEM blocks found");
        let err = parse_pem("-----BEGIN PUBLIC KEY-----\nAAAA").unwrap_err();
        assert!(err.contains("no END line"), "{err}");
        let err = parse_pem("-----BEGIN X-----\n!!!\n-----END X-----").unwrap_err();
        assert!(err.contains("is not valid"), "{err}");
        let block = PemBlock {
            label: "DSA PRIVATE KEY".into(),
            der: vec![],
        };
        assert!(
            key_from_pem_block(&block)
                .unwrap_err()
                .contains("unsupported PEM")
        );
    }

    #[test]
    fn truncated_and_mutated_der_never_panics() {
        let der = parse_pem(EC_CERT).unwrap().remove(0).der;
        for cut in 0..der.len() {
            assert!(certificate(&der[..cut]).is_err());
            let _ = spki(&der[..cut]);
            let _ = pkcs8(&der[..cut]);
        }
        for i in 0..der.len() {
            let mut m = der.clone();
            m[i] ^= 0xFF;
            let _ = certificate(&m);
        }
        assert!(spki(&[0x30, 0x85, 1, 1, 1, 1, 1]).is_err());
        assert!(spki(&[0x1F, 0x00]).is_err());
    }

    /// Encodes one DER element (test input only).
    fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = value.len();
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes: Vec<u8> = len
                .to_be_bytes()
                .into_iter()
                .skip_while(|&b| b == 0)
                .collect();
            out.push(0x80 | bytes.len() as u8);
            out.extend_from_slice(&bytes);
        }
        out.extend_from_slice(value);
        out
    }

    #[test]
    fn rsa_public_key_in_spki() {
        let rsa = tlv(
            0x30,
            &[tlv(0x02, &[0, 0xC1, 3]), tlv(0x02, &[1, 0, 1])].concat(),
        );
        match rsa_public_key(&rsa, false).unwrap() {
            Material::Rsa { n, e, .. } => {
                assert_eq!(n, vec![0xC1, 3]);
                assert_eq!(e, vec![1, 0, 1]);
            }
            other => panic!("unexpected {other:?}"),
        }
        let rsa_oid = OID_RSA_ENCRYPTION.to_der().unwrap();
        let spki_der = tlv(
            0x30,
            &[
                tlv(0x30, &[rsa_oid, vec![0x05, 0x00]].concat()),
                tlv(0x03, &[&[0u8][..], &rsa].concat()),
            ]
            .concat(),
        );
        assert!(matches!(spki(&spki_der).unwrap(), Material::Rsa { .. }));
        // A negative modulus is refused.
        let negative = tlv(
            0x30,
            &[tlv(0x02, &[0xC1, 3]), tlv(0x02, &[1, 0, 1])].concat(),
        );
        assert!(rsa_public_key(&negative, false).is_err());
    }
}
