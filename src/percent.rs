//! Percent-encoding (RFC 3986 `%XX` over UTF-8 bytes), shared by the request paths and
//! identity headers of `extauthz` and the OTLP headers of `telemetry`. Decoding is strict:
//! a malformed escape or bytes that are not UTF-8 are an error, never passed through.
//! (The JSON Schema validator keeps its own lenient decoder: a `$ref` with a stray `%`
//! stays as written there, as Cerbos's resolver does.)

use std::borrow::Cow;
use std::fmt::Write as _;

/// Why a percent-encoded string does not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// The decoded bytes are not UTF-8.
    NotUtf8,
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `s` with every `%XX` escape decoded (`+` stays `+`: that is for form-encoded queries).
pub(crate) fn decode(s: &str) -> Result<String, DecodeError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = b.get(i + 1).copied().and_then(hex);
            let l = b.get(i + 2).copied().and_then(hex);
            match (h, l) {
                (Some(h), Some(l)) => out.push(h * 16 + l),
                _ => return Err(DecodeError::BadEscape),
            }
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| DecodeError::NotUtf8)
}

/// `value` with every byte that `keep` refuses written as `%XX` (upper-case hex);
/// borrowed when nothing needs escaping.
pub(crate) fn encode(value: &str, keep: impl Fn(u8) -> bool) -> Cow<'_, str> {
    if value.bytes().all(&keep) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 8);
    for b in value.bytes() {
        if keep(b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_strictly() {
        assert_eq!(decode("a%20b%2Fc+d").as_deref(), Ok("a b/c+d"));
        assert_eq!(decode("zo%C3%AB").as_deref(), Ok("zoë"));
        for bad in ["%", "%2", "%zz", "%+1", "%-1", "a%2"] {
            assert_eq!(decode(bad), Err(DecodeError::BadEscape), "{bad}");
        }
        assert_eq!(decode("%FF"), Err(DecodeError::NotUtf8));
    }

    #[test]
    fn encodes_what_keep_refuses() {
        let unreserved = |b: u8| b.is_ascii_alphanumeric() || b"-._~".contains(&b);
        assert!(matches!(
            encode("plain-1", unreserved),
            Cow::Borrowed("plain-1")
        ));
        assert_eq!(encode("a/b c%", unreserved), "a%2Fb%20c%25");
        assert_eq!(encode("zoë", unreserved), "zo%C3%AB");
        for v in ["a/b c%", "zoë", "100%", "\r\n"] {
            assert_eq!(decode(&encode(v, unreserved)).as_deref(), Ok(v));
        }
    }
}
