//! Fault injection for the panic policy's end-to-end test (issue 12, SECURITY.md): off
//! unless the operator starts `gatehouse serve` with `GATEHOUSE_FAULT_INJECTION_TOKEN`
//! set to a secret of at least 32 characters. Then, and only then, a decision request
//! carrying the header `x-gatehouse-fault: <that secret>` panics inside the handler, so a
//! test can watch the request fail closed and the server go on serving. Without the
//! variable no header, value or build does anything: clients cannot trigger it, in debug
//! or release builds. The header carries the `x-gatehouse-` prefix, so it is stripped
//! before anything reaches the backend.

use std::sync::OnceLock;

/// The request header that asks for the panic.
pub(crate) const HEADER: &str = "x-gatehouse-fault";

/// The environment variable holding the secret.
pub(crate) const ENV: &str = "GATEHOUSE_FAULT_INJECTION_TOKEN";

/// Shortest secret accepted.
const MIN_TOKEN_CHARS: usize = 32;

static TOKEN: OnceLock<Option<String>> = OnceLock::new();

/// A secret in `GATEHOUSE_FAULT_INJECTION_TOKEN` that is too short to be one.
#[derive(Debug, thiserror::Error)]
#[error("{ENV} must be at least {MIN_TOKEN_CHARS} characters (a random secret)")]
pub(crate) struct WeakToken;

/// Reads the environment once, at start: `Ok(true)` when fault injection is on.
pub(crate) fn init() -> Result<bool, WeakToken> {
    let token = match std::env::var(ENV) {
        Ok(t) if t.chars().count() >= MIN_TOKEN_CHARS => Some(t),
        Ok(t) if t.is_empty() => None,
        Ok(_) => return Err(WeakToken),
        Err(_) => None,
    };
    Ok(TOKEN.get_or_init(|| token).is_some())
}

/// Panics when fault injection is on and `value` (the request's [`HEADER`], looked up
/// only then) is the secret; otherwise nothing (one pointer check when off).
pub(crate) fn panic_if_requested<'v>(value: impl FnOnce() -> Option<&'v str>) {
    if let Some(Some(token)) = TOKEN.get()
        && let Some(value) = value()
        && same(value.as_bytes(), token.as_bytes())
    {
        panic!("fault injection: a panic was requested ({HEADER})");
    }
}

/// Equality in time independent of where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_12_fault_injection_is_off_without_the_secret() {
        // Not initialised (the library, `gatehouse check`, ...): nothing panics.
        panic_if_requested(|| Some("anything"));
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
    }
}
