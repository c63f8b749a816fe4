//! How identity travels to the backend in headers, losslessly and unambiguously:
//!
//! * the principal id and each role are percent-encoded (RFC 3986 / RFC 8187 style, UTF-8
//!   bytes) except for letters, digits and `-._~:@/+=!$&'()*;`; so a role `admin,viewer`
//!   is `admin%2Cviewer` (never two roles), `zoë` is `zo%C3%AB`, and `%` itself is
//!   `%25`. Roles are joined with `,`: split on `,`, then percent-decode each part.
//! * JSON headers (principal attributes, outputs) are JSON with every non-ASCII character
//!   written as a `\uXXXX` escape, which any JSON parser reads back unchanged.
//!
//! Plain ASCII names, the common case, are sent as they are.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Characters sent as they are.
fn plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~:@/+=!$&'()*;".contains(&b)
}

/// `value` percent-encoded for a header.
pub(crate) fn percent_encode(value: &str) -> Cow<'_, str> {
    crate::percent::encode(value, plain)
}

/// Roles as one header value: each percent-encoded, joined with `,`.
pub(crate) fn encode_list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&percent_encode(item));
    }
    out
}

/// `json` serialised with non-ASCII characters as `\uXXXX` escapes (UTF-16 units).
pub(crate) fn ascii_json(json: &serde_json::Value) -> String {
    let text = json.to_string();
    if text.is_ascii() {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{u:04x}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_12_names_are_unambiguous_and_lossless() {
        assert_eq!(percent_encode("svc-reporting"), "svc-reporting");
        assert_eq!(percent_encode("zoë"), "zo%C3%AB");
        assert_eq!(percent_encode("100%"), "100%25");
        assert_eq!(percent_encode("a b\r\n"), "a%20b%0D%0A");
        assert_eq!(encode_list(["user", "admin,viewer"]), "user,admin%2Cviewer");
        let json = serde_json::json!({"name": "Zoë 😀", "n": 1});
        let text = ascii_json(&json);
        assert!(text.is_ascii(), "{text}");
        assert_eq!(text, r#"{"name":"Zo\u00eb \ud83d\ude00","n":1}"#);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).unwrap(),
            json
        );
    }
}
