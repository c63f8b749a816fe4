//! Strict JWT verification against key sets.
//!
//! Shared by the Envoy ext_authz adapter (`Authorization: Bearer` tokens) and
//! the Cerbos-compatible API (`auxData.jwt`, `auxData.jwts`).
//!
//! * [`KeySet`]: keys from a JWKS document, a single JWK or PEM (public keys,
//!   certificates, or the public half of private keys), read from a file,
//!   inline data or a URL ([`KeySource`]). Remote sets are cached, refreshed
//!   when stale, and refetched once on an unknown `kid`.
//! * [`JwtVerifier`]: picks the key by `kid`, refuses `alg: none`, unpinned
//!   algorithms and algorithms that do not fit the key, verifies the
//!   signature, then `exp`, `nbf`, `iat`, `iss` and `aud` with leeway.
//! * [`decode_unverified`]: claims without any check, for Cerbos's
//!   `disableVerification: true`; [`to_cerbos_claims`] shapes claims the way
//!   Cerbos exposes them to policies.
//!
//! Header-supplied keys (`jwk`, `jku`, `x5u`, `x5c`) are never trusted.

mod der;
mod error;
pub(crate) mod fetch;
mod key;
mod keyset;
mod verify;

pub use error::JwtError;
pub use keyset::{
    DEFAULT_REFRESH_INTERVAL, KeySet, KeySetOptions, KeySource, MIN_REFETCH_INTERVAL,
};
pub(crate) use verify::decode_unverified;
pub use verify::{Claims, JwtConfig, JwtVerifier, MAX_TOKEN_BYTES, to_cerbos_claims};
