//! Text conventions of Cerbos (a Go program) that test results reproduce: Go string
//! quoting (`%q`), protojson's rendering of numbers and values, protobuf JSON names, and
//! `time.Parse(time.RFC3339Nano, ..)` with its error messages.

use std::fmt::Write as _;

use chrono::{FixedOffset, NaiveDate, TimeZone};
use serde_json::Value as Json;

use crate::cel::Timestamp;

/// Quotes a string as Go's `%q` does.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The protobuf JSON name of a snake_case name: `john_leave_request` -> `johnLeaveRequest`.
pub(crate) fn json_name(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut upper = false;
    for c in s.chars() {
        if c == '_' {
            upper = true;
        } else if upper && c.is_ascii_lowercase() {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
            upper = false;
        }
    }
    out
}

/// A number as protojson writes it (Go's `encoding/json` float format).
pub(crate) fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "\"NaN\"".to_owned();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "\"Infinity\""
        } else {
            "\"-Infinity\""
        }
        .to_owned();
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let s = format!("{f:e}");
        return match s.split_once('e') {
            Some((m, e)) if e.starts_with('-') => format!("{m}e{e}"),
            Some((m, e)) => format!("{m}e+{e}"),
            None => s,
        };
    }
    if f == f.trunc() && abs < 1e17 {
        #[allow(clippy::cast_possible_truncation)]
        return format!("{}", f as i64);
    }
    format!("{f}")
}

/// A value as compact protojson (`google.protobuf.Value`): numbers as doubles, object keys sorted.
pub(crate) fn protojson(v: &Json) -> String {
    let mut out = String::new();
    write_protojson(&mut out, v);
    out
}

fn write_protojson(out: &mut String, v: &Json) {
    match v {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Number(n) => out.push_str(&go_float(n.as_f64().unwrap_or(f64::NAN))),
        Json::String(s) => out.push_str(&Json::String(s.clone()).to_string()),
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_protojson(out, item);
            }
            out.push(']');
        }
        Json::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Json::String(k.clone()).to_string());
                out.push(':');
                write_protojson(out, &m[k]);
            }
            out.push('}');
        }
    }
}

/// A value as protobuf sees it: numbers as doubles (integral ones written without a
/// fraction), object keys sorted.
pub(crate) fn proto_value(v: &Json) -> Json {
    match v {
        Json::Number(n) => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            if f == f.trunc() && f.abs() < 9.007_199_254_740_992e15 {
                #[allow(clippy::cast_possible_truncation)]
                return Json::from(f as i64);
            }
            serde_json::Number::from_f64(f).map_or(Json::Null, Json::Number)
        }
        Json::Array(items) => Json::Array(items.iter().map(proto_value).collect()),
        Json::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Json::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), proto_value(&m[k])))
                    .collect(),
            )
        }
        other => other.clone(),
    }
}

/// Equality of `google.protobuf.Value`s: numbers compare as doubles.
pub(crate) fn proto_value_eq(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => x.as_f64() == y.as_f64(),
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| proto_value_eq(a, b))
        }
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| proto_value_eq(v, w)))
        }
        _ => a == b,
    }
}

/// Go's `time.RFC3339Nano` layout.
const RFC3339_NANO: &str = "2006-01-02T15:04:05.999999999Z07:00";

/// Parses a timestamp as Go's `time.Parse(time.RFC3339Nano, value)`, with Go's error text.
pub(crate) fn parse_rfc3339(value: &str) -> Result<Timestamp, String> {
    let mut p = GoTime { value, rest: value };
    let year = p.number(4, "2006")?;
    p.skip("-")?;
    let month = p.number(2, "01")?;
    if !(1..=12).contains(&month) {
        return Err(p.range("month"));
    }
    p.skip("-")?;
    let day = p.number(2, "02")?;
    p.skip("T")?;
    let hour = p.hour()?;
    if hour >= 24 {
        return Err(p.range("hour"));
    }
    p.skip(":")?;
    let minute = p.number(2, "04")?;
    if minute >= 60 {
        return Err(p.range("minute"));
    }
    p.skip(":")?;
    let second = p.number(2, "05")?;
    if second >= 60 {
        return Err(p.range("second"));
    }
    let nanos = p.fraction();
    let offset_secs = p.offset()?;
    if !p.rest.is_empty() {
        return Err(format!(
            "parsing time {}: extra text: {}",
            go_quote(value),
            go_quote(p.rest)
        ));
    }
    let date = NaiveDate::from_ymd_opt(i32::try_from(year).unwrap_or(0), month, day)
        .ok_or_else(|| p.range("day"))?;
    let naive = date
        .and_hms_nano_opt(hour, minute, second, nanos)
        .ok_or_else(|| p.range("second"))?;
    let offset =
        FixedOffset::east_opt(offset_secs).ok_or_else(|| p.range("time zone offset hour"))?;
    offset
        .from_local_datetime(&naive)
        .single()
        .ok_or_else(|| p.range("day"))
}

/// Go's `time.Parse` of `value` in the RFC 3339 layout, one layout element at a time:
/// `rest` is the text not read yet.
struct GoTime<'a> {
    value: &'a str,
    rest: &'a str,
}

impl GoTime<'_> {
    /// Go's error for `rest` not matching the layout element `layout_elem`.
    fn bad(&self, layout_elem: &str) -> String {
        format!(
            "parsing time {} as {}: cannot parse {} as {}",
            go_quote(self.value),
            go_quote(RFC3339_NANO),
            go_quote(self.rest),
            go_quote(layout_elem)
        )
    }

    /// Go's error for a field out of its range.
    fn range(&self, what: &str) -> String {
        format!("parsing time {}: {what} out of range", go_quote(self.value))
    }

    /// The literal `lit`, character by character.
    fn skip(&mut self, lit: &str) -> Result<(), String> {
        for c in lit.chars() {
            match self.rest.strip_prefix(c) {
                Some(r) => self.rest = r,
                None => return Err(self.bad(lit)),
            }
        }
        Ok(())
    }

    /// `n` digits, for the layout element `layout_elem`.
    fn number(&mut self, n: usize, layout_elem: &str) -> Result<u32, String> {
        let d = digits(self.rest, n).ok_or_else(|| self.bad(layout_elem))?;
        self.rest = &self.rest[n..];
        Ok(d)
    }

    /// The hour: two digits, or one.
    fn hour(&mut self) -> Result<u32, String> {
        let (hour, len) = match (digits(self.rest, 2), digits(self.rest, 1)) {
            (Some(h), _) => (h, 2),
            (None, Some(h)) => (h, 1),
            _ => return Err(self.bad("15")),
        };
        self.rest = &self.rest[len..];
        Ok(hour)
    }

    /// The optional fraction of a second (after `.` or `,`), in nanoseconds.
    fn fraction(&mut self) -> u32 {
        let rest = self.rest;
        if rest.len() >= 2
            && (rest.starts_with('.') || rest.starts_with(','))
            && rest.as_bytes()[1].is_ascii_digit()
        {
            let frac: String = rest[1..].chars().take_while(char::is_ascii_digit).collect();
            self.rest = &rest[1 + frac.len()..];
            let mut scaled = frac;
            scaled.truncate(9);
            while scaled.len() < 9 {
                scaled.push('0');
            }
            return scaled.parse().unwrap_or(0);
        }
        0
    }

    /// The offset from UTC in seconds: `Z` or `±hh:mm`.
    fn offset(&mut self) -> Result<i32, String> {
        if let Some(r) = self.rest.strip_prefix('Z') {
            self.rest = r;
            return Ok(0);
        }
        let rest = self.rest;
        let b = rest.as_bytes();
        if b.len() < 6 || b[3] != b':' || !(b[0] == b'+' || b[0] == b'-') {
            return Err(self.bad("Z07:00"));
        }
        let (Some(hh), Some(mm)) = (digits(&rest[1..], 2), digits(&rest[4..], 2)) else {
            return Err(self.bad("Z07:00"));
        };
        if hh > 24 {
            return Err(self.range("time zone offset hour"));
        }
        if mm > 60 {
            return Err(self.range("time zone offset minute"));
        }
        let secs = i32::try_from(hh * 3600 + mm * 60).unwrap_or(0);
        let sign = if b[0] == b'-' { -1 } else { 1 };
        self.rest = &rest[6..];
        Ok(sign * secs)
    }
}

/// The first `n` characters of `rest` as a number, if they are all ASCII digits.
fn digits(rest: &str, n: usize) -> Option<u32> {
    let d = rest.get(..n)?;
    d.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| d.parse().ok())?
}

/// A timestamp as protojson writes it: UTC, with 0, 3, 6 or 9 fractional digits.
pub(crate) fn format_timestamp(t: &Timestamp) -> String {
    t.with_timezone(&chrono::Utc)
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_time_errors() {
        assert_eq!(
            parse_rfc3339("blah").unwrap_err(),
            "parsing time \"blah\" as \"2006-01-02T15:04:05.999999999Z07:00\": cannot parse \"blah\" as \"2006\""
        );
        assert_eq!(
            parse_rfc3339("2022-13-01T00:00:00Z").unwrap_err(),
            "parsing time \"2022-13-01T00:00:00Z\": month out of range"
        );
        assert_eq!(
            parse_rfc3339("2022-01-01 00:00:00Z").unwrap_err(),
            "parsing time \"2022-01-01 00:00:00Z\" as \"2006-01-02T15:04:05.999999999Z07:00\": cannot parse \" 00:00:00Z\" as \"T\""
        );
        assert!(
            parse_rfc3339("2022-02-30T00:00:00Z")
                .unwrap_err()
                .ends_with("day out of range")
        );
        assert!(
            parse_rfc3339("2022-01-01T00:00:00Zx")
                .unwrap_err()
                .ends_with("extra text: \"x\"")
        );
    }

    #[test]
    fn go_time_values() {
        let t = parse_rfc3339("2022-08-02T15:00:00.5+01:00").unwrap();
        assert_eq!(format_timestamp(&t), "2022-08-02T14:00:00.500Z");
        assert_eq!(
            format_timestamp(&parse_rfc3339("2022-08-02T15:00:00Z").unwrap()),
            "2022-08-02T15:00:00Z"
        );
    }

    #[test]
    fn numbers_and_names() {
        assert_eq!(go_float(42.0), "42");
        assert_eq!(go_float(1.01), "1.01");
        assert_eq!(go_float(1e21), "1e+21");
        assert_eq!(go_float(1.5e-7), "1.5e-7");
        assert_eq!(json_name("john_leave_request"), "johnLeaveRequest");
        assert_eq!(go_quote("a\"b\n"), "\"a\\\"b\\n\"");
        assert_eq!(
            protojson(&serde_json::json!({"b": 1.0, "a": [true, null, "x"]})),
            r#"{"a":[true,null,"x"],"b":1}"#
        );
        assert!(proto_value_eq(
            &serde_json::json!({"a": 42}),
            &serde_json::json!({"a": 42.0})
        ));
    }
}
