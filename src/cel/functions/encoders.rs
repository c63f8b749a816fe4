//! cel-go's encoders extension (`ext.Encoders()`, latest version, as Cerbos enables it):
//! `base64.encode`, `base64.decode`, `base64.encodeUrl`, `base64.decodeUrl`,
//! `json.encode` and `json.parse`.

use std::fmt::Write as _;
use std::sync::Arc;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use chrono::{SecondsFormat, TimeDelta};

use super::{FunctionRegistry, no_overload};
use crate::cel::eval::{Activation, EvalError};
use crate::cel::value::{CelType, Key, MapValue, Timestamp, Value};

/// Largest string `json.parse` accepts (cel-go's limit).
const MAX_JSON_SIZE: usize = 10 * 1024 * 1024;

/// Largest integer JSON carries exactly (2^53 - 1); larger ones are encoded as strings.
const MAX_SAFE_INTEGER: i64 = 9_007_199_254_740_991;

pub(super) fn register(r: &mut FunctionRegistry) {
    r.global("base64.encode", base64_encode);
    r.global("base64.decode", base64_decode);
    r.global("base64.encodeUrl", base64_encode_url);
    r.global("base64.decodeUrl", base64_decode_url);
    r.global("json.encode", json_encode);
    r.global("json.parse", json_parse);
}

// === base64 ===

/// Go's `base64` decoders are lenient about the unused bits of the last symbol.
const fn lenient(padding: DecodePaddingMode) -> GeneralPurposeConfig {
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(padding)
}

const STD_PADDED: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    lenient(DecodePaddingMode::RequireCanonical),
);
const STD_RAW: GeneralPurpose =
    GeneralPurpose::new(&alphabet::STANDARD, lenient(DecodePaddingMode::RequireNone));
const URL_PADDED: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    lenient(DecodePaddingMode::RequireCanonical),
);
const URL_RAW: GeneralPurpose =
    GeneralPurpose::new(&alphabet::URL_SAFE, lenient(DecodePaddingMode::RequireNone));

fn base64_encode(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    match args {
        [Value::Bytes(b)] => Ok(Value::from(STD_PADDED.encode(b))),
        _ => Err(no_overload("base64.encode", args)),
    }
}

fn base64_encode_url(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    match args {
        [Value::Bytes(b)] => Ok(Value::from(URL_PADDED.encode(b))),
        _ => Err(no_overload("base64.encodeUrl", args)),
    }
}

/// Decodes padded input, falling back to unpadded input, as cel-go does. Like Go's
/// decoder, line breaks in the input are ignored.
fn decode_base64(s: &str, url: bool) -> Result<Vec<u8>, EvalError> {
    let cleaned: String;
    let input = if s.contains(['\r', '\n']) {
        cleaned = s.chars().filter(|c| !matches!(c, '\r' | '\n')).collect();
        cleaned.as_str()
    } else {
        s
    };
    let (padded, raw) = if url {
        (&URL_PADDED, &URL_RAW)
    } else {
        (&STD_PADDED, &STD_RAW)
    };
    padded
        .decode(input)
        .or_else(|_| raw.decode(input))
        .map_err(|_| {
            let at = go_raw_error_offset(s.as_bytes(), url);
            EvalError::new(format!("illegal base64 data at input byte {at}"))
        })
}

/// The offset Go's unpadded decoder (`RawStdEncoding` / `RawURLEncoding`, the error
/// cel-go reports) names for input that does not decode: the first byte outside the
/// alphabet (line breaks are skipped, `=` is outside it), or the start of a final quantum
/// of a single symbol.
fn go_raw_error_offset(s: &[u8], url: bool) -> usize {
    let symbol = |c: u8| {
        c.is_ascii_alphanumeric()
            || if url {
                c == b'-' || c == b'_'
            } else {
                c == b'+' || c == b'/'
            }
    };
    let (mut si, mut j) = (0, 0);
    while si < s.len() {
        let c = s[si];
        si += 1;
        if symbol(c) {
            j = (j + 1) % 4;
        } else if c != b'\n' && c != b'\r' {
            return si - 1;
        }
    }
    // Only a final quantum of one symbol fails (the caller knows decoding failed).
    if j == 1 { si - 1 } else { si }
}

fn base64_decode(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    match args {
        [Value::String(s)] => Ok(Value::Bytes(Arc::from(decode_base64(s, false)?))),
        _ => Err(no_overload("base64.decode", args)),
    }
}

fn base64_decode_url(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    match args {
        [Value::String(s)] => Ok(Value::Bytes(Arc::from(decode_base64(s, true)?))),
        _ => Err(no_overload("base64.decodeUrl", args)),
    }
}

// === json.encode ===

fn json_encode(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    let [v] = args else {
        return Err(no_overload("json.encode", args));
    };
    let mut out = String::new();
    encode_json(&mut out, v).map_err(EvalError::new)?;
    Ok(Value::from(out))
}

/// Encodes a value as compact JSON the way cel-go's `json.encode` does: map keys in
/// order, ints beyond 2^53 as strings, doubles as Go's `encoding/json`.
fn encode_json(out: &mut String, v: &Value) -> Result<(), String> {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => {
            if (-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER).contains(i) {
                let _ = write!(out, "{i}");
            } else {
                let _ = write!(out, "\"{i}\"");
            }
        }
        Value::Uint(u) => {
            if *u <= MAX_SAFE_INTEGER as u64 {
                let _ = write!(out, "{u}");
            } else {
                let _ = write!(out, "\"{u}\"");
            }
        }
        Value::Double(d) => {
            if !d.is_finite() {
                return Err("json encode error: NaN and Inf are not supported in JSON".into());
            }
            out.push_str(&go_json_float(*d));
        }
        Value::String(s) => {
            if s.len() < 128 && !s.chars().any(needs_json_escape) {
                go_quote(out, s);
            } else {
                json_string(out, s);
            }
        }
        Value::Bytes(b) => {
            out.push('"');
            out.push_str(&STD_PADDED.encode(b));
            out.push('"');
        }
        Value::Timestamp(t) => json_string(out, &rfc3339_nano(t)),
        Value::Duration(d) => json_string(out, &duration_seconds(*d)),
        Value::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                encode_json(out, item)?;
            }
            out.push(']');
        }
        Value::Map(m) => {
            out.push('{');
            for (i, (k, v)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                match k {
                    Key::String(s) => json_string(out, s),
                    other => {
                        let mut key = String::new();
                        encode_json(&mut key, &other.to_value())?;
                        json_string(out, &key);
                    }
                }
                out.push(':');
                encode_json(out, v)?;
            }
            out.push('}');
        }
        Value::Type(_) | Value::Optional(_) | Value::Opaque(_) => {
            return Err(format!(
                "type conversion error from '{}' to 'google.protobuf.Value'",
                v.type_name()
            ));
        }
    }
    Ok(())
}

/// Characters that send a string through `encoding/json` rather than `strconv.Quote`.
fn needs_json_escape(c: char) -> bool {
    matches!(c, '"' | '\\' | '<' | '>' | '&') || (c as u32) < 0x20
}

/// Go's `strconv.Quote`: printable characters as they are, others escaped.
fn go_quote(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if go_is_print(c) => out.push(c),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push('"');
}

/// An approximation of Go's `unicode.IsPrint`: letters, marks, numbers, punctuation,
/// symbols and the ASCII space, i.e. not controls, format characters, separators
/// other than the space, or private-use characters.
fn go_is_print(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    !matches!(c as u32,
        0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x180E
        | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x206F
        | 0xE000..=0xF8FF | 0xFEFF | 0xFFF9..=0xFFFB | 0xFFFE | 0xFFFF
        | 0x110BD | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F
        | 0xF0000..=0x10FFFF)
}

/// A JSON string as Go's `encoding/json` writes it (HTML characters escaped).
fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A double as Go's `encoding/json` writes it: plain decimal digits between 1e-6
/// and 1e21, exponent notation (`1e+21`, `1e-7`) outside.
fn go_json_float(d: f64) -> String {
    let abs = d.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let s = format!("{d:e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
        return match exp.strip_prefix('-') {
            Some(digits) => format!("{mantissa}e-{digits}"),
            None => format!("{mantissa}e+{exp:0>2}"),
        };
    }
    format!("{d}")
}

/// RFC 3339 in the timestamp's own offset, fraction trimmed (Go's `time.RFC3339Nano`).
fn rfc3339_nano(t: &Timestamp) -> String {
    let mut s = t.to_rfc3339_opts(SecondsFormat::Nanos, true);
    if let Some(dot) = s.find('.') {
        let digits_end = dot + 1 + s[dot + 1..].bytes().take_while(u8::is_ascii_digit).count();
        let kept = s[dot + 1..digits_end].trim_end_matches('0').len();
        let keep = if kept == 0 { dot } else { dot + 1 + kept };
        s.replace_range(keep..digits_end, "");
    }
    s
}

/// A duration as seconds with the fraction needed, e.g. `1.5s` (cel-go's `string(duration)`).
fn duration_seconds(d: TimeDelta) -> String {
    let secs = d.num_seconds() as f64 + f64::from(d.subsec_nanos()) / 1e9;
    format!("{secs}s")
}

// === json.parse ===

fn json_parse(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    let (s, target) = match args {
        [Value::String(s)] => (s, None),
        [Value::String(s), Value::Type(t)] => (s, Some(t)),
        _ => return Err(no_overload("json.parse", args)),
    };
    if s.len() > MAX_JSON_SIZE {
        return Err(EvalError::new(format!(
            "json parse error: string size exceeds maximum allowed limit of {MAX_JSON_SIZE} bytes"
        )));
    }
    let parsed = match target {
        None => parse_dynamic(s),
        Some(t) => parse_typed(s, t),
    };
    Ok(Value::Optional(parsed.map(Arc::new)))
}

fn parse_dynamic(s: &str) -> Option<Value> {
    let trimmed = s.trim();
    if trimmed.len() >= 2
        && trimmed.starts_with('"')
        && trimmed.ends_with('"')
        && !trimmed.contains('\\')
    {
        return Some(Value::from(&trimmed[1..trimmed.len() - 1]));
    }
    let json: serde_json::Value = serde_json::from_str(s).ok()?;
    Some(json_to_value(&json))
}

/// JSON to CEL for `json.parse`: integral numbers become ints, others doubles.
fn json_to_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::Int(i),
            (None, Some(u)) => Value::Uint(u),
            _ => Value::Double(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(items) => Value::list(items.iter().map(json_to_value).collect()),
        serde_json::Value::Object(o) => Value::map(
            o.iter()
                .map(|(k, v)| (Key::String(Arc::from(k.as_str())), json_to_value(v)))
                .collect::<MapValue>(),
        ),
    }
}

fn parse_typed(s: &str, t: &CelType) -> Option<Value> {
    let trimmed = s.trim();
    match t {
        CelType::String => match serde_json::from_str::<serde_json::Value>(s).ok()? {
            serde_json::Value::String(v) => Some(Value::from(v)),
            _ => None,
        },
        CelType::Bool => match trimmed {
            "true" => Some(Value::Bool(true)),
            "false" => Some(Value::Bool(false)),
            _ => None,
        },
        CelType::Int => trimmed.parse::<i64>().ok().map(Value::Int),
        CelType::Uint => trimmed.parse::<u64>().ok().map(Value::Uint),
        CelType::Double => {
            let first = trimmed.bytes().next()?;
            if first != b'-' && !first.is_ascii_digit() {
                return None;
            }
            trimmed
                .parse::<f64>()
                .ok()
                .filter(|d| d.is_finite())
                .map(Value::Double)
        }
        CelType::Null => (trimmed == "null").then_some(Value::Null),
        CelType::Bytes => match serde_json::from_str::<serde_json::Value>(s).ok()? {
            serde_json::Value::String(v) => decode_base64(&v, false)
                .ok()
                .map(|b| Value::Bytes(Arc::from(b))),
            _ => None,
        },
        CelType::List => match serde_json::from_str::<serde_json::Value>(s).ok()? {
            v @ serde_json::Value::Array(_) => Some(json_to_value(&v)),
            _ => None,
        },
        CelType::Map => match serde_json::from_str::<serde_json::Value>(s).ok()? {
            v @ serde_json::Value::Object(_) => Some(json_to_value(&v)),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use crate::cel::testing::{assert_true, eval};
    use crate::cel::value::Value;

    fn eval_str(src: &str) -> String {
        match eval(src) {
            Ok(Value::String(s)) => s.to_string(),
            other => panic!("{src} => {other:?}"),
        }
    }

    #[test]
    fn base64_round_trips() {
        for src in [
            "base64.decode('aGVsbG8=') == b'hello'",
            "base64.decode('aGVsbG8') == b'hello'",
            "base64.decode('aGVs\\nbG8=') == b'hello'",
            "base64.encode(b'hello') == 'aGVsbG8='",
            "base64.encode(b'') == ''",
            "base64.decodeUrl('____') == b'\\xff\\xff\\xff'",
            "base64.decodeUrl('aGVsbG8') == b'hello'",
            "base64.encodeUrl(b'\\xff\\xff\\xff') == '____'",
        ] {
            assert_true(src);
        }
        for src in [
            "base64.decode('a')",
            "base64.decode('!!!!')",
            "base64.encode('hello')",
        ] {
            assert!(eval(src).is_err(), "{src}");
        }
    }

    #[test]
    fn json_encode_matches_cel_go() {
        let cases = [
            ("json.encode({'hello': 'world'})", r#"{"hello":"world"}"#),
            (
                "json.encode({'b': 1, 'a': [true, null, 1.5]})",
                r#"{"a":[true,null,1.5],"b":1}"#,
            ),
            ("json.encode(9007199254740993)", r#""9007199254740993""#),
            (
                "json.encode(18446744073709551615u)",
                r#""18446744073709551615""#,
            ),
            ("json.encode(1.0)", "1"),
            ("json.encode(1e21)", "1e+21"),
            ("json.encode(1e-7)", "1e-7"),
            ("json.encode(0.000001)", "0.000001"),
            ("json.encode('a<b')", r#""a\u003cb""#),
            ("json.encode('line\\nbreak')", r#""line\nbreak""#),
            ("json.encode(b'hi')", r#""aGk=""#),
            ("json.encode({1: 'x'})", r#"{"1":"x"}"#),
            ("json.encode(duration('1.5s'))", r#""1.5s""#),
            (
                "json.encode(timestamp('2021-04-20T10:05:20.120-05:00'))",
                r#""2021-04-20T10:05:20.12-05:00""#,
            ),
            (
                "json.encode(timestamp('2021-04-20T10:05:20Z'))",
                r#""2021-04-20T10:05:20Z""#,
            ),
            ("json.encode([])", "[]"),
            ("json.encode({})", "{}"),
        ];
        for (src, want) in cases {
            assert_eq!(eval_str(src), want, "{src}");
        }
        assert!(eval("json.encode(double('NaN'))").is_err());
        assert!(eval("json.encode(optional.none())").is_err());
        assert!(eval("json.encode(int)").is_err());
    }

    #[test]
    fn json_parse_returns_optionals() {
        for src in [
            "json.parse('{\"hello\":\"world\"}') == optional.of({'hello': 'world'})",
            "json.parse('123') == optional.of(123)",
            "json.parse(' 1.5 ').value() == 1.5",
            "json.parse('\"x\"').value() == 'x'",
            "json.parse('[1, \"a\"]').value() == [1, 'a']",
            "json.parse('null').value() == null",
            "!json.parse('{').hasValue()",
            "!json.parse('').hasValue()",
            "json.parse('123', int) == optional.of(123)",
            "json.parse('true', bool) == optional.of(true)",
            "!json.parse('1.5', int).hasValue()",
            "json.parse('\"aGk=\"', bytes) == optional.of(b'hi')",
        ] {
            assert_true(src);
        }
    }
}
