//! Errors of key-set loading and token verification.

use std::path::PathBuf;

/// Why a key set could not be loaded or a token was rejected.
///
/// Key-set messages follow Cerbos's wording (`failed to validate key at idx 0:
/// missing key ID (kid)`, `invalid algorithm (alg)`, `failed to look up remote
/// keyset`), so configuration errors read the same in both products.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    /// The token is longer than [`MAX_TOKEN_BYTES`](super::MAX_TOKEN_BYTES).
    #[error("token is {size} bytes long, more than the limit of {max} bytes")]
    TokenTooLarge {
        /// Size of the rejected token.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The token is not three base64url segments holding a JSON header and payload.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The token's `alg` is `none`, unknown, not pinned, or does not fit the key.
    #[error("algorithm {alg:?} is not allowed: {reason}")]
    AlgorithmNotAllowed {
        /// The token's `alg` header.
        alg: String,
        /// Why it was refused.
        reason: String,
    },
    /// The token names a `kid` the key set does not hold (after any refresh).
    #[error("no key with ID {kid:?} in key set {key_set:?}")]
    UnknownKid {
        /// The token's `kid` header.
        kid: String,
        /// The key set searched.
        key_set: String,
    },
    /// No candidate key verifies the signature.
    #[error("signature verification failed")]
    BadSignature,
    /// `exp` is in the past, beyond the allowed skew.
    #[error("token has expired (exp)")]
    Expired,
    /// `nbf` is in the future, beyond the allowed skew.
    #[error("token is not valid yet (nbf)")]
    NotYetValid,
    /// `iat` is in the future, beyond the allowed skew.
    #[error("issued at time is in the future (iat)")]
    IssuedInFuture,
    /// A required claim is absent.
    #[error("token has no {0:?} claim")]
    MissingClaim(&'static str),
    /// A registered claim has the wrong JSON type.
    #[error("claim {claim:?} must be {expected}")]
    InvalidClaim {
        /// The claim.
        claim: &'static str,
        /// What it should have been.
        expected: &'static str,
    },
    /// `iss` is absent or differs from the configured issuer.
    #[error("invalid issuer (iss)")]
    InvalidIssuer,
    /// `aud` is absent or names none of the configured audiences.
    #[error("invalid audience (aud)")]
    InvalidAudience,
    /// The requested key set id is not configured.
    #[error("keyset not found: {0}")]
    KeySetNotFound(String),
    /// No key set id was given and there is not exactly one key set.
    #[error("cannot determine keyset to use for validating the JWT ({count} key sets configured)")]
    NoKeySetSelected {
        /// How many key sets are configured.
        count: usize,
    },
    /// The verifier configuration is inconsistent.
    #[error("invalid JWT configuration: {0}")]
    InvalidConfig(String),
    /// A remote key set could not be fetched, parsed or validated.
    #[error("failed to look up remote keyset {url}: {reason}")]
    Fetch {
        /// The key set URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// A local key file could not be read.
    #[error("failed to read keyset from '{}': {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A key declares an `alg` that is not a JOSE algorithm.
    #[error("invalid algorithm (alg) {alg:?} in key at idx {idx}")]
    InvalidKeyAlgorithm {
        /// Position of the key in the set.
        idx: usize,
        /// The declared algorithm.
        alg: String,
    },
    /// A key lacks a required `alg` or `kid`.
    #[error("failed to validate key at idx {idx}: {problem}")]
    InvalidKey {
        /// Position of the key in the set.
        idx: usize,
        /// `missing key ID (kid)`, `empty key ID (kid)`, `missing algorithm (alg)`.
        problem: &'static str,
    },
    /// The key data is not a usable JWK, JWK set or PEM key.
    #[error("failed to parse key data: {0}")]
    KeyParse(String),
}
