//! Just enough PEM and DER to pull public keys out of key files.
//!
//! Reads SubjectPublicKeyInfo (`PUBLIC KEY`), X.509 certificates, PKCS#1 RSA
//! keys and the public half of PKCS#8 / SEC1 private keys. Every read is
//! bounds-checked; malformed input yields an error, never a panic.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::key::{Curve, Material};

const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_OID: u8 = 0x06;
const TAG_SEQUENCE: u8 = 0x30;
const TAG_CONTEXT_0: u8 = 0xA0;
const TAG_CONTEXT_1: u8 = 0xA1;
const TAG_CONTEXT_1_PRIMITIVE: u8 = 0x81;

const OID_RSA_ENCRYPTION: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01];
const OID_RSASSA_PSS: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x0A];
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2B, 0x81, 0x04, 0x00, 0x22];
const OID_P521: &[u8] = &[0x2B, 0x81, 0x04, 0x00, 0x23];
const OID_ED25519: &[u8] = &[0x2B, 0x65, 0x70];

/// A failure to read PEM or DER, as a human-readable reason.
pub(crate) type DerResult<T> = Result<T, String>;

// === PEM ===

/// One `-----BEGIN label-----` block, base64-decoded.
#[derive(Debug)]
pub(crate) struct PemBlock {
    pub(crate) label: String,
    pub(crate) der: Vec<u8>,
}

/// Every PEM block in `text`, in order. Text between blocks is ignored.
pub(crate) fn parse_pem(text: &str) -> DerResult<Vec<PemBlock>> {
    let mut blocks = Vec::new();
    let mut lines = text.lines().map(str::trim);
    while let Some(line) = lines.next() {
        let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|rest| rest.strip_suffix("-----"))
        else {
            continue;
        };
        let end = format!("-----END {label}-----");
        let mut body = String::new();
        let mut closed = false;
        for line in lines.by_ref() {
            if line == end {
                closed = true;
                break;
            }
            if line.contains(':') {
                return Err(format!(
                    "PEM block {label:?} has headers (encrypted keys are not supported)"
                ));
            }
            body.push_str(line);
        }
        if !closed {
            return Err(format!("PEM block {label:?} has no END line"));
        }
        let der = STANDARD
            .decode(body.as_bytes())
            .map_err(|e| format!("PEM block {label:?} is not valid base64: {e}"))?;
        blocks.push(PemBlock {
            label: label.to_string(),
            der,
        });
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
        "RSA PRIVATE KEY" => rsa_private_key(der)?,
        "PRIVATE KEY" => pkcs8(der)?,
        "EC PRIVATE KEY" => sec1(der, None)?,
        "EC PARAMETERS" => return Ok(None),
        other => return Err(format!("unsupported PEM block type {other:?}")),
    };
    Ok(Some(material))
}

// === DER reader ===

/// One tag-length-value element.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tlv<'a> {
    pub(crate) tag: u8,
    pub(crate) value: &'a [u8],
}

/// A cursor over consecutive DER elements.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// The next element. Only low tag numbers and definite lengths.
    pub(crate) fn next(&mut self) -> DerResult<Tlv<'a>> {
        let (&tag, rest) = self.rest.split_first().ok_or("truncated DER")?;
        if tag & 0x1F == 0x1F {
            return Err("unsupported DER tag".to_string());
        }
        let (&first, mut rest) = rest.split_first().ok_or("truncated DER")?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7F);
            if count == 0 || count > 4 {
                return Err("unsupported DER length".to_string());
            }
            let (bytes, after) = rest.split_at_checked(count).ok_or("truncated DER")?;
            rest = after;
            bytes.iter().fold(0usize, |n, &b| (n << 8) | usize::from(b))
        };
        let (value, after) = rest.split_at_checked(len).ok_or("truncated DER")?;
        self.rest = after;
        Ok(Tlv { tag, value })
    }

    /// The next element, which must carry `tag`.
    pub(crate) fn expect(&mut self, tag: u8, what: &str) -> DerResult<&'a [u8]> {
        let tlv = self.next()?;
        if tlv.tag != tag {
            return Err(format!("expected {what} in DER"));
        }
        Ok(tlv.value)
    }

    /// The next element if it carries `tag`.
    fn optional(&mut self, tag: u8) -> DerResult<Option<&'a [u8]>> {
        if self.peek_tag() == Some(tag) {
            self.next().map(|t| Some(t.value))
        } else {
            Ok(None)
        }
    }
}

/// The value of a single SEQUENCE filling all of `der`.
fn outer_sequence(der: &[u8]) -> DerResult<Reader<'_>> {
    let mut r = Reader::new(der);
    let seq = r.expect(TAG_SEQUENCE, "SEQUENCE")?;
    if !r.is_empty() {
        return Err("trailing data after DER".to_string());
    }
    Ok(Reader::new(seq))
}

/// An unsigned big-endian INTEGER without leading zero bytes.
fn unsigned(bytes: &[u8]) -> DerResult<Vec<u8>> {
    let trimmed: &[u8] = match bytes.iter().position(|&b| b != 0) {
        Some(i) => &bytes[i..],
        None => &[],
    };
    if trimmed.is_empty() {
        return Err("zero INTEGER in key".to_string());
    }
    if bytes.first().is_some_and(|&b| b & 0x80 != 0) {
        return Err("negative INTEGER in key".to_string());
    }
    Ok(trimmed.to_vec())
}

/// A BIT STRING's bytes; it must have no unused bits.
fn bit_string(value: &[u8]) -> DerResult<&[u8]> {
    match value.split_first() {
        Some((0, bits)) => Ok(bits),
        _ => Err("BIT STRING with unused bits".to_string()),
    }
}

fn curve_from_oid(oid: &[u8]) -> DerResult<Curve> {
    match oid {
        OID_P256 => Ok(Curve::P256),
        OID_P384 => Ok(Curve::P384),
        OID_P521 => Err("unsupported EC curve P-521".to_string()),
        _ => Err("unsupported EC curve".to_string()),
    }
}

/// AlgorithmIdentifier: the OID and its parameters.
fn algorithm_identifier<'a>(seq: &'a [u8]) -> DerResult<(&'a [u8], Option<Tlv<'a>>)> {
    let mut r = Reader::new(seq);
    let oid = r.expect(TAG_OID, "algorithm OID")?;
    let params = if r.is_empty() { None } else { Some(r.next()?) };
    Ok((oid, params))
}

fn named_curve(params: Option<Tlv<'_>>) -> DerResult<Curve> {
    match params {
        Some(Tlv {
            tag: TAG_OID,
            value,
        }) => curve_from_oid(value),
        _ => Err("EC key without a named curve".to_string()),
    }
}

// === key structures ===

/// SubjectPublicKeyInfo.
pub(crate) fn spki(der: &[u8]) -> DerResult<Material> {
    let mut r = outer_sequence(der)?;
    spki_fields(&mut r)
}

fn spki_fields(r: &mut Reader<'_>) -> DerResult<Material> {
    let (oid, params) = algorithm_identifier(r.expect(TAG_SEQUENCE, "AlgorithmIdentifier")?)?;
    let key = bit_string(r.expect(TAG_BIT_STRING, "public key BIT STRING")?)?;
    match oid {
        OID_RSA_ENCRYPTION => rsa_public_key(key, false),
        OID_RSASSA_PSS => rsa_public_key(key, true),
        OID_EC_PUBLIC_KEY => Ok(Material::Ec {
            curve: named_curve(params)?,
            point: key.to_vec(),
        }),
        OID_ED25519 => Ok(Material::Ed25519(key.to_vec())),
        _ => Err("unsupported public key algorithm".to_string()),
    }
}

/// An X.509 certificate: the SubjectPublicKeyInfo of its TBSCertificate.
pub(crate) fn certificate(der: &[u8]) -> DerResult<Material> {
    let mut cert = outer_sequence(der)?;
    let mut tbs = Reader::new(cert.expect(TAG_SEQUENCE, "TBSCertificate")?);
    tbs.optional(TAG_CONTEXT_0)?;
    tbs.expect(TAG_INTEGER, "certificate serial number")?;
    tbs.expect(TAG_SEQUENCE, "certificate signature algorithm")?;
    tbs.expect(TAG_SEQUENCE, "certificate issuer")?;
    tbs.expect(TAG_SEQUENCE, "certificate validity")?;
    tbs.expect(TAG_SEQUENCE, "certificate subject")?;
    let mut spki = Reader::new(tbs.expect(TAG_SEQUENCE, "SubjectPublicKeyInfo")?);
    spki_fields(&mut spki)
}

/// PKCS#1 RSAPublicKey: `SEQUENCE { n, e }`.
fn rsa_public_key(der: &[u8], pss_only: bool) -> DerResult<Material> {
    let mut r = outer_sequence(der)?;
    let n = unsigned(r.expect(TAG_INTEGER, "RSA modulus")?)?;
    let e = unsigned(r.expect(TAG_INTEGER, "RSA exponent")?)?;
    Ok(Material::Rsa { n, e, pss_only })
}

/// PKCS#1 RSAPrivateKey: `SEQUENCE { version, n, e, d, ... }`; keeps n and e.
fn rsa_private_key(der: &[u8]) -> DerResult<Material> {
    let mut r = outer_sequence(der)?;
    r.expect(TAG_INTEGER, "RSA key version")?;
    let n = unsigned(r.expect(TAG_INTEGER, "RSA modulus")?)?;
    let e = unsigned(r.expect(TAG_INTEGER, "RSA exponent")?)?;
    Ok(Material::Rsa {
        n,
        e,
        pss_only: false,
    })
}

/// PKCS#8 PrivateKeyInfo / OneAsymmetricKey: the public half.
fn pkcs8(der: &[u8]) -> DerResult<Material> {
    let mut r = outer_sequence(der)?;
    r.expect(TAG_INTEGER, "PKCS#8 version")?;
    let (oid, params) = algorithm_identifier(r.expect(TAG_SEQUENCE, "AlgorithmIdentifier")?)?;
    let private = r.expect(TAG_OCTET_STRING, "private key OCTET STRING")?;
    r.optional(TAG_CONTEXT_0)?;
    let public = r.optional(TAG_CONTEXT_1_PRIMITIVE)?;
    match oid {
        OID_RSA_ENCRYPTION => rsa_private_key(private),
        OID_RSASSA_PSS => match rsa_private_key(private)? {
            Material::Rsa { n, e, .. } => Ok(Material::Rsa {
                n,
                e,
                pss_only: true,
            }),
            other => Ok(other),
        },
        OID_EC_PUBLIC_KEY => sec1(private, Some(named_curve(params)?)),
        OID_ED25519 => match public {
            Some(bits) => Ok(Material::Ed25519(bit_string(bits)?.to_vec())),
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
    let mut r = outer_sequence(der)?;
    r.expect(TAG_INTEGER, "EC key version")?;
    r.expect(TAG_OCTET_STRING, "EC private key")?;
    let params = r.optional(TAG_CONTEXT_0)?;
    let public = r.optional(TAG_CONTEXT_1)?;
    let curve = match (curve, params) {
        (Some(c), _) => c,
        (None, Some(p)) => curve_from_oid(Reader::new(p).expect(TAG_OID, "EC curve OID")?)?,
        (None, None) => return Err("EC private key without a named curve".to_string()),
    };
    let point = match public {
        Some(p) => bit_string(Reader::new(p).expect(TAG_BIT_STRING, "EC public key")?)?.to_vec(),
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
    let alg_id = [tlv(TAG_OID, OID_EC_PUBLIC_KEY), tlv(TAG_OID, curve_oid)].concat();
    let pkcs8 = tlv(
        TAG_SEQUENCE,
        &[
            tlv(TAG_INTEGER, &[0]),
            tlv(TAG_SEQUENCE, &alg_id),
            tlv(TAG_OCTET_STRING, sec1),
        ]
        .concat(),
    );
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

/// Encodes one DER element.
pub(crate) fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
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
        assert!(err.contains("not valid base64"), "{err}");
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
            let _ = certificate(&der[..cut]);
            let _ = spki(&der[..cut]);
            let _ = pkcs8(&der[..cut]);
        }
        for i in 0..der.len() {
            let mut m = der.clone();
            m[i] ^= 0xFF;
            let _ = certificate(&m);
        }
        assert!(Reader::new(&[0x30, 0x85, 1, 1, 1, 1, 1]).next().is_err());
        assert!(Reader::new(&[0x1F, 0x00]).next().is_err());
    }

    #[test]
    fn tlv_round_trip() {
        let long = vec![7u8; 300];
        let enc = tlv(TAG_OCTET_STRING, &long);
        let mut r = Reader::new(&enc);
        let t = r.next().unwrap();
        assert_eq!((t.tag, t.value.len()), (TAG_OCTET_STRING, 300));
        assert!(r.is_empty());
        let rsa = tlv(
            TAG_SEQUENCE,
            &[
                tlv(TAG_INTEGER, &[0, 0xC1, 3]),
                tlv(TAG_INTEGER, &[1, 0, 1]),
            ]
            .concat(),
        );
        match rsa_public_key(&rsa, false).unwrap() {
            Material::Rsa { n, e, .. } => {
                assert_eq!(n, vec![0xC1, 3]);
                assert_eq!(e, vec![1, 0, 1]);
            }
            other => panic!("unexpected {other:?}"),
        }
        let spki_der = tlv(
            TAG_SEQUENCE,
            &[
                tlv(
                    TAG_SEQUENCE,
                    &[tlv(TAG_OID, OID_RSA_ENCRYPTION), vec![0x05, 0x00]].concat(),
                ),
                tlv(TAG_BIT_STRING, &[&[0u8][..], &rsa].concat()),
            ]
            .concat(),
        );
        assert!(matches!(spki(&spki_der).unwrap(), Material::Rsa { .. }));
    }
}
