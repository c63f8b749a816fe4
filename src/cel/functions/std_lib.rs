//! The CEL standard library: size, string predicates, type conversions, optionals.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta};

use super::{FunctionRegistry, arg_str, arity, no_overload};
use crate::cel::eval::{Activation, EvalError, timestamp_value};
use crate::cel::value::Value;

pub(super) fn register(r: &mut FunctionRegistry) {
    r.both("size", size);
    r.receiver("contains", contains);
    r.receiver("startsWith", starts_with);
    r.receiver("endsWith", ends_with);
    r.both("matches", matches);
    r.global("int", to_int);
    r.global("uint", to_uint);
    r.global("double", to_double);
    r.global("string", to_string);
    r.global("bytes", to_bytes);
    r.global("bool", to_bool);
    r.global("dyn", dyn_);
    r.global("type", type_of);
    r.global("timestamp", to_timestamp);
    r.global("duration", to_duration);
    r.global("optional.of", optional_of);
    r.global("optional.ofNonZeroValue", optional_of_non_zero);
    r.global("optional.none", optional_none);
    r.receiver("hasValue", has_value);
    r.receiver("value", optional_value);
}

fn size(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    arity("size", args, 1)?;
    let n = match &args[0] {
        Value::String(s) => s.chars().count(),
        Value::Bytes(b) => b.len(),
        Value::List(l) => l.len(),
        Value::Map(m) => m.len(),
        _ => return Err(no_overload("size", args)),
    };
    Ok(Value::Int(n as i64))
}

fn contains(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    arity("contains", args, 2)?;
    Ok(Value::Bool(
        arg_str("contains", args, 0)?.contains(arg_str("contains", args, 1)?),
    ))
}

fn starts_with(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    arity("startsWith", args, 2)?;
    Ok(Value::Bool(
        arg_str("startsWith", args, 0)?.starts_with(arg_str("startsWith", args, 1)?),
    ))
}

fn ends_with(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    arity("endsWith", args, 2)?;
    Ok(Value::Bool(
        arg_str("endsWith", args, 0)?.ends_with(arg_str("endsWith", args, 1)?),
    ))
}

fn matches(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    arity("matches", args, 2)?;
    let s = arg_str("matches", args, 0)?;
    // A pattern that is not a constant (constants are compiled with the policy): bounded
    // and cached, see `regexes::bounded_regex`.
    let re = super::regexes::bounded_regex(arg_str("matches", args, 1)?)
        .map_err(|e| EvalError::new(format!("invalid regular expression: {e}")))?;
    Ok(Value::Bool(re.is_match(s)))
}

fn range_err() -> EvalError {
    EvalError::new("range error converting value")
}

fn int_overflow() -> EvalError {
    EvalError::new("integer overflow")
}

fn uint_overflow() -> EvalError {
    EvalError::new("unsigned integer overflow")
}

/// cel-go's text for a string that does not parse as the wanted type.
fn conversion_err(to: &str) -> EvalError {
    EvalError::new(format!("type conversion error from 'string' to '{to}'"))
}

fn to_int(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    arity("int", args, 1)?;
    match &args[0] {
        Value::Int(i) => Ok(Value::Int(*i)),
        Value::Uint(u) => i64::try_from(*u)
            .map(Value::Int)
            .map_err(|_| int_overflow()),
        Value::Double(d) => {
            if d.is_finite() && *d > -9.223_372_036_854_776e18 && *d < 9.223_372_036_854_776e18 {
                Ok(Value::Int(d.trunc() as i64))
            } else {
                Err(int_overflow())
            }
        }
        Value::String(s) => s
            .parse::<i64>()
            .map(Value::Int)
            .map_err(|_| conversion_err("int")),
        Value::Timestamp(t) => Ok(Value::Int(t.timestamp())),
        // Nanoseconds, as cel-go (a duration never exceeds int64 nanoseconds).
        Value::Duration(d) => d.num_nanoseconds().map(Value::Int).ok_or_else(range_err),
        Value::Bool(b) => Ok(Value::Int(i64::from(*b))),
        _ => Err(no_overload("int", args)),
    }
}

fn to_uint(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    arity("uint", args, 1)?;
    match &args[0] {
        Value::Uint(u) => Ok(Value::Uint(*u)),
        Value::Int(i) => u64::try_from(*i)
            .map(Value::Uint)
            .map_err(|_| uint_overflow()),
        Value::Double(d) => {
            if d.is_finite() && *d >= 0.0 && *d < 1.844_674_407_370_955_2e19 {
                Ok(Value::Uint(d.trunc() as u64))
            } else {
                Err(uint_overflow())
            }
        }
        Value::String(s) => s
            .parse::<u64>()
            .map(Value::Uint)
            .map_err(|_| conversion_err("uint")),
        _ => Err(no_overload("uint", args)),
    }
}

fn to_double(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    arity("double", args, 1)?;
    match &args[0] {
        Value::Double(d) => Ok(Value::Double(*d)),
        Value::Int(i) => Ok(Value::Double(*i as f64)),
        Value::Uint(u) => Ok(Value::Double(*u as f64)),
        Value::String(s) => s
            .parse::<f64>()
            .map(Value::Double)
            .map_err(|_| conversion_err("double")),
        _ => Err(no_overload("double", args)),
    }
}

/// Formats a double as Go's `strconv.FormatFloat(d, 'g', -1, 64)`, which cel-go uses.
pub(crate) fn format_double(d: f64) -> String {
    if d.is_nan() {
        return "NaN".into();
    }
    if d.is_infinite() {
        return if d > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if d == 0.0 {
        return if d.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    // Shortest round-trip digits via Rust's exponent formatting.
    let e = format!("{d:e}");
    let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exp.abs());
    }
    format!("{d}")
}

/// Formats a duration as cel-go's `string(duration)` does: Go's `d.Seconds()` (a float) with
/// the shortest digits that round-trip and an `s` (`1.5s`, `86400s`). Beyond 2^53
/// nanoseconds the float rounds, as in Cerbos (`-67442380.000000001s` prints `-67442380s`).
pub(crate) fn format_duration(d: TimeDelta) -> String {
    let nanos = d.num_nanoseconds().unwrap_or(if d < TimeDelta::zero() {
        i64::MIN
    } else {
        i64::MAX
    });
    let secs = (nanos / 1_000_000_000) as f64 + (nanos % 1_000_000_000) as f64 / 1e9;
    format!("{secs}s")
}

/// Formats a timestamp as Go's RFC 3339 with nanoseconds (trailing zeros trimmed, the
/// written offset kept, `Z` for UTC), as cel-go's `string(timestamp)`.
pub(crate) fn format_timestamp(t: &crate::cel::value::Timestamp) -> String {
    use chrono::{Offset, Timelike};
    let mut s = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let nanos = t.nanosecond() % 1_000_000_000;
    if nanos != 0 {
        let mut frac = format!("{nanos:09}");
        while frac.ends_with('0') {
            frac.pop();
        }
        s.push('.');
        s.push_str(&frac);
    }
    let offset = t.offset().fix().local_minus_utc();
    if offset == 0 {
        s.push('Z');
    } else {
        let sign = if offset < 0 { '-' } else { '+' };
        let abs = offset.unsigned_abs();
        s.push_str(&format!("{sign}{:02}:{:02}", abs / 3600, (abs % 3600) / 60));
    }
    s
}

fn to_string(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    arity("string", args, 1)?;
    Ok(match &args[0] {
        Value::String(s) => Value::String(s.clone()),
        Value::Int(i) => Value::from(i.to_string()),
        Value::Uint(u) => Value::from(u.to_string()),
        Value::Double(d) => Value::from(format_double(*d)),
        Value::Bool(b) => Value::from(b.to_string()),
        Value::Bytes(b) => Value::from(
            std::str::from_utf8(b)
                .map_err(|_| EvalError::new("invalid UTF-8 in bytes, cannot convert to string"))?
                .to_string(),
        ),
        Value::Timestamp(t) => Value::from(format_timestamp(t)),
        Value::Duration(d) => Value::from(format_duration(*d)),
        Value::Type(t) => Value::from(t.name()),
        _ => return Err(no_overload("string", args)),
    })
}

fn to_bytes(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    arity("bytes", args, 1)?;
    match &args[0] {
        Value::Bytes(b) => Ok(Value::Bytes(b.clone())),
        Value::String(s) => Ok(Value::Bytes(Arc::from(s.as_bytes()))),
        _ => Err(no_overload("bytes", args)),
    }
}

fn to_bool(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    arity("bool", args, 1)?;
    match &args[0] {
        Value::Bool(b) => Ok(Value::Bool(*b)),
        Value::String(s) => match &**s {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(Value::Bool(true)),
            "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(Value::Bool(false)),
            _ => Err(conversion_err("bool")),
        },
        _ => Err(no_overload("bool", args)),
    }
}

fn dyn_(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    arity("dyn", args, 1)?;
    Ok(args[0].clone())
}

fn type_of(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    arity("type", args, 1)?;
    Ok(Value::Type(args[0].cel_type()))
}

/// Parses an RFC 3339 timestamp, as Cerbos 0.55's `timestamp(string)`: text outside RFC
/// 3339's grammar is `invalid RFC 3339 timestamp "..."`; text in it that Go's
/// `time.Parse(time.RFC3339, ..)` refuses (a lower-case `t` or `z`, a leap second, a day the
/// month does not have) is cel-go's conversion error.
pub(crate) fn parse_timestamp(s: &str) -> Result<crate::cel::value::Timestamp, EvalError> {
    let b = s.as_bytes();
    let syntax = || EvalError::new(format!("invalid RFC 3339 timestamp {s:?}"));
    let num = |at: usize, len: usize, max: u32| -> Option<u32> {
        let digits = b.get(at..at + len)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = digits.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0'));
        (n <= max).then_some(n)
    };
    let sep = |at: usize, c: u8| b.get(at) == Some(&c);
    let date_time = num(0, 4, 9999).is_some()
        && sep(4, b'-')
        && num(5, 2, 12).is_some_and(|m| m >= 1)
        && sep(7, b'-')
        && num(8, 2, 31).is_some_and(|d| d >= 1)
        && matches!(b.get(10), Some(b'T' | b't'))
        && num(11, 2, 23).is_some()
        && sep(13, b':')
        && num(14, 2, 59).is_some()
        && sep(16, b':')
        && num(17, 2, 60).is_some();
    if !date_time {
        return Err(syntax());
    }
    let mut i = 19;
    if sep(i, b'.') {
        let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return Err(syntax());
        }
        i += 1 + digits;
    }
    let zone_ok = match b.get(i) {
        Some(b'Z' | b'z') => b.len() == i + 1,
        Some(b'+' | b'-') => {
            b.len() == i + 6
                && num(i + 1, 2, 23).is_some()
                && sep(i + 3, b':')
                && num(i + 4, 2, 59).is_some()
        }
        _ => false,
    };
    if !zone_ok {
        return Err(syntax());
    }
    if b[10] != b'T' || b[i] == b'z' || num(17, 2, 59).is_none() {
        return Err(conversion_err("google.protobuf.Timestamp"));
    }
    DateTime::parse_from_rfc3339(s).map_err(|_| conversion_err("google.protobuf.Timestamp"))
}

fn to_timestamp(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    arity("timestamp", args, 1)?;
    match &args[0] {
        Value::Timestamp(t) => Ok(Value::Timestamp(*t)),
        Value::String(s) => parse_timestamp(s).and_then(timestamp_value),
        Value::Int(i) => DateTime::from_timestamp(*i, 0)
            .ok_or_else(|| EvalError::new("timestamp overflow"))
            .and_then(|t| timestamp_value(t.fixed_offset())),
        _ => Err(no_overload("timestamp", args)),
    }
}

/// Parses a Go duration string (`1h30m`, `-1.5s`, `300ms`, `2us`), as cel-go's `duration(string)`.
pub(crate) fn parse_duration(s: &str) -> Result<TimeDelta, EvalError> {
    let bad = || EvalError::new(format!("invalid duration: {s:?}"));
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(TimeDelta::zero());
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let num = &rest[..num_end];
        if num.is_empty() || num == "." {
            return Err(bad());
        }
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_end];
        rest = &rest[unit_end..];
        let scale: i128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(bad()),
        };
        let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
        let int: i128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| bad())?
        };
        let mut nanos = int.checked_mul(scale).ok_or_else(bad)?;
        if !frac_part.is_empty() {
            let digits = frac_part.len().min(18) as u32;
            let frac: i128 = frac_part[..digits as usize].parse().map_err(|_| bad())?;
            nanos += frac * scale / 10i128.pow(digits);
        }
        total = total.checked_add(nanos).ok_or_else(bad)?;
    }
    if neg {
        total = -total;
    }
    let total = i64::try_from(total).map_err(|_| bad())?;
    Ok(TimeDelta::nanoseconds(total))
}

fn to_duration(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    arity("duration", args, 1)?;
    match &args[0] {
        Value::Duration(d) => Ok(Value::Duration(*d)),
        Value::String(s) => parse_duration(s).map(Value::Duration).map_err(|_| {
            EvalError::new("type conversion error from 'string' to 'google.protobuf.Duration'")
        }),
        _ => Err(no_overload("duration", args)),
    }
}

fn optional_of(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    arity("optional.of", args, 1)?;
    Ok(Value::Optional(Some(Arc::new(args[0].clone()))))
}

fn optional_of_non_zero(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    arity("optional.ofNonZeroValue", args, 1)?;
    if args[0].is_zero() {
        Ok(Value::Optional(None))
    } else {
        Ok(Value::Optional(Some(Arc::new(args[0].clone()))))
    }
}

fn optional_none(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    arity("optional.none", args, 0)?;
    Ok(Value::Optional(None))
}

fn has_value(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    match args {
        [Value::Optional(o)] => Ok(Value::Bool(o.is_some())),
        _ => Err(no_overload("hasValue", args)),
    }
}

fn optional_value(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    match args {
        [Value::Optional(Some(v))] => Ok((**v).clone()),
        [Value::Optional(None)] => Err(EvalError::new("optional.none() dereference")),
        _ => Err(no_overload("value", args)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_duration_syntax() {
        assert_eq!(parse_duration("1h30m").unwrap(), TimeDelta::minutes(90));
        assert_eq!(
            parse_duration("-1.5s").unwrap(),
            TimeDelta::milliseconds(-1500)
        );
        assert_eq!(
            parse_duration("300ms").unwrap(),
            TimeDelta::milliseconds(300)
        );
        assert!(parse_duration("1d").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn go_float_format() {
        assert_eq!(format_double(1.5), "1.5");
        assert_eq!(format_double(1e21), "1e+21");
        assert_eq!(format_double(100.0), "100");
        assert_eq!(format_double(1e6), "1e+06");
        assert_eq!(format_double(0.00001), "1e-05");
        assert_eq!(format_duration(TimeDelta::milliseconds(1500)), "1.5s");
        assert_eq!(format_duration(TimeDelta::seconds(86400)), "86400s");
        assert_eq!(format_duration(TimeDelta::nanoseconds(-1)), "-0.000000001s");
        assert_eq!(format_duration(TimeDelta::zero()), "0s");
        // Issue 11, class 5: Cerbos renders through float seconds.
        assert_eq!(
            format_duration(TimeDelta::nanoseconds(-67_442_380_000_000_001)),
            "-67442380s"
        );
        assert_eq!(
            format_duration(TimeDelta::nanoseconds(-68_158_554_999_999_999)),
            "-68158555s"
        );
        let t = parse_timestamp("2021-04-22T10:05:20.120-05:00").unwrap();
        assert_eq!(format_timestamp(&t), "2021-04-22T10:05:20.12-05:00");
        let t = parse_timestamp("2021-04-22T10:05:20Z").unwrap();
        assert_eq!(format_timestamp(&t), "2021-04-22T10:05:20Z");
    }
}
