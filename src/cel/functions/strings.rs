//! cel-go's strings extension (`ext.Strings()`, latest version, as Cerbos enables it).
//!
//! Indices and lengths count Unicode code points, not bytes.

use std::fmt::Write as _;

use chrono::{SecondsFormat, Utc};

use super::{FunctionRegistry, arg_int, arg_list, arg_opt_int, arg_str, no_overload};
use crate::cel::eval::{Activation, EvalError};
use crate::cel::value::{Timestamp, Value};

pub(super) fn register(r: &mut FunctionRegistry) {
    r.receiver("charAt", char_at);
    r.receiver("indexOf", index_of);
    r.receiver("lastIndexOf", last_index_of);
    r.receiver("lowerAscii", lower_ascii);
    r.receiver("upperAscii", upper_ascii);
    r.receiver("replace", replace);
    r.receiver("split", split);
    r.receiver("substring", substring);
    r.receiver("trim", trim);
    r.receiver("join", join);
    r.receiver("format", format);
    r.global("strings.quote", quote);
    // `reverse` is shared with lists: registered by the lists library, which
    // hands strings to `reverse_string`.
}

fn out_of_range(i: i64) -> EvalError {
    EvalError::new(format!("index out of range: {i}"))
}

/// A rune index as `usize`, or `None` when negative.
fn to_index(i: i64) -> Option<usize> {
    usize::try_from(i).ok()
}

fn char_at(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    if args.len() != 2 {
        return Err(no_overload("charAt", args));
    }
    let s = arg_str("charAt", args, 0)?;
    let i = arg_int("charAt", args, 1)?;
    let idx = to_index(i).ok_or_else(|| out_of_range(i))?;
    let mut chars = s.chars();
    match chars.nth(idx) {
        Some(c) => Ok(Value::from(c.to_string())),
        None if s.chars().count() == idx => Ok(Value::from("")),
        None => Err(out_of_range(i)),
    }
}

fn find_from(hay: &[char], needle: &[char], start: usize) -> Option<usize> {
    if needle.len() > hay.len() {
        return None;
    }
    (start..=hay.len() - needle.len()).find(|&i| hay[i..i + needle.len()] == *needle)
}

fn index_of(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    if !(2..=3).contains(&args.len()) {
        return Err(no_overload("indexOf", args));
    }
    let s = arg_str("indexOf", args, 0)?;
    let sub = arg_str("indexOf", args, 1)?;
    let offset = arg_opt_int("indexOf", args, 2)?.unwrap_or(0);
    let off = to_index(offset).ok_or_else(|| out_of_range(offset))?;
    let hay: Vec<char> = s.chars().collect();
    if sub.is_empty() {
        return Ok(Value::Int(offset.min(hay.len() as i64)));
    }
    if off >= hay.len() {
        return Ok(Value::Int(-1));
    }
    let needle: Vec<char> = sub.chars().collect();
    Ok(Value::Int(
        find_from(&hay, &needle, off).map_or(-1, |i| i as i64),
    ))
}

fn last_index_of(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    if !(2..=3).contains(&args.len()) {
        return Err(no_overload("lastIndexOf", args));
    }
    let s = arg_str("lastIndexOf", args, 0)?;
    let sub = arg_str("lastIndexOf", args, 1)?;
    let hay: Vec<char> = s.chars().collect();
    let offset = match arg_opt_int("lastIndexOf", args, 2)? {
        Some(o) => o,
        None if sub.is_empty() => return Ok(Value::Int(hay.len() as i64)),
        None if s.len() < sub.len() => return Ok(Value::Int(-1)),
        None => hay.len() as i64 - 1,
    };
    let off = to_index(offset).ok_or_else(|| out_of_range(offset))?;
    if sub.is_empty() {
        return Ok(Value::Int(offset.min(hay.len() as i64)));
    }
    if off >= hay.len() {
        return Ok(Value::Int(-1));
    }
    let needle: Vec<char> = sub.chars().collect();
    let Some(last_start) = hay.len().checked_sub(needle.len()) else {
        return Ok(Value::Int(-1));
    };
    let found = (0..=off.min(last_start))
        .rev()
        .find(|&i| hay[i..i + needle.len()] == *needle);
    Ok(Value::Int(found.map_or(-1, |i| i as i64)))
}

fn lower_ascii(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    match args {
        [Value::String(s)] => Ok(Value::from(s.to_ascii_lowercase())),
        _ => Err(no_overload("lowerAscii", args)),
    }
}

fn upper_ascii(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    match args {
        [Value::String(s)] => Ok(Value::from(s.to_ascii_uppercase())),
        _ => Err(no_overload("upperAscii", args)),
    }
}

fn replace(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    if !(3..=4).contains(&args.len()) {
        return Err(no_overload("replace", args));
    }
    let s = arg_str("replace", args, 0)?;
    let old = arg_str("replace", args, 1)?;
    let new = arg_str("replace", args, 2)?;
    let out = match arg_opt_int("replace", args, 3)? {
        Some(n) if n >= 0 => s.replacen(old, new, usize::try_from(n).unwrap_or(usize::MAX)),
        _ => s.replace(old, new),
    };
    Ok(Value::from(out))
}

/// Go's `strings.SplitN`: `n < 0` splits everywhere, `n == 0` gives no parts, and
/// an empty separator splits into code points.
fn go_split_n(s: &str, sep: &str, n: i64) -> Vec<Value> {
    if n == 0 {
        return Vec::new();
    }
    let limit = usize::try_from(n).ok();
    if sep.is_empty() {
        let chars: Vec<(usize, char)> = s.char_indices().collect();
        let count = limit.map_or(chars.len(), |l| l.min(chars.len()));
        let mut out = Vec::with_capacity(count);
        for (k, (i, c)) in chars.iter().take(count).enumerate() {
            if k + 1 == count {
                out.push(Value::from(&s[*i..]));
            } else {
                out.push(Value::from(c.to_string()));
            }
        }
        return out;
    }
    match limit {
        Some(l) => s.splitn(l, sep).map(Value::from).collect(),
        None => s.split(sep).map(Value::from).collect(),
    }
}

fn split(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    if !(2..=3).contains(&args.len()) {
        return Err(no_overload("split", args));
    }
    let s = arg_str("split", args, 0)?;
    let sep = arg_str("split", args, 1)?;
    let n = arg_opt_int("split", args, 2)?.unwrap_or(-1);
    Ok(Value::list(go_split_n(s, sep, n)))
}

fn substring(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    if !(2..=3).contains(&args.len()) {
        return Err(no_overload("substring", args));
    }
    let s = arg_str("substring", args, 0)?;
    let start = arg_int("substring", args, 1)?;
    let end = arg_opt_int("substring", args, 2)?;
    let chars: Vec<char> = s.chars().collect();
    let len = chars.len() as i64;
    if let Some(end) = end
        && start > end
    {
        return Err(EvalError::new(format!(
            "invalid substring range. start: {start}, end: {end}"
        )));
    }
    if start < 0 || start > len {
        return Err(out_of_range(start));
    }
    let end = end.unwrap_or(len);
    if end < 0 || end > len {
        return Err(out_of_range(end));
    }
    // Both bounds are within 0..=len here.
    Ok(Value::from(
        chars[start as usize..end as usize]
            .iter()
            .collect::<String>(),
    ))
}

fn trim(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    match args {
        [Value::String(s)] => Ok(Value::from(s.trim())),
        _ => Err(no_overload("trim", args)),
    }
}

fn join(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    if !(1..=2).contains(&args.len()) {
        return Err(no_overload("join", args));
    }
    let items = arg_list("join", args, 0)?;
    let sep = if args.len() == 2 {
        arg_str("join", args, 1)?
    } else {
        ""
    };
    let mut out = String::new();
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(sep);
        }
        match item {
            Value::String(s) => out.push_str(s),
            other => {
                let shown = format_value(other).unwrap_or_else(|_| other.type_name().to_string());
                return Err(EvalError::new(format!("join: invalid input: {shown}")));
            }
        }
    }
    Ok(Value::from(out))
}

/// The string half of `reverse()`: code points in reverse order.
pub(super) fn reverse_string(s: &str) -> Value {
    Value::from(s.chars().rev().collect::<String>())
}

fn quote(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    let [Value::String(s)] = args else {
        return Err(no_overload("strings.quote", args));
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out.push('"');
    Ok(Value::from(out))
}

// === format ===

/// Largest precision accepted by `%.Nf` and `%.Ne` (cel-go's default limit).
const MAX_PRECISION: usize = 100;

/// Default precision of `%f` and `%e`.
const DEFAULT_PRECISION: usize = 6;

fn format(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    if args.len() != 2 {
        return Err(no_overload("format", args));
    }
    let template = arg_str("format", args, 0)?;
    let list = arg_list("format", args, 1)?;
    format_template(template, list)
        .map(Value::from)
        .map_err(EvalError::new)
}

/// `"...".format([...])`, following the cel-spec strings extension (cel-go's v2 formatter).
fn format_template(template: &str, list: &[Value]) -> Result<String, String> {
    format_with(template, list.len(), |i, clause, precision| {
        format_clause(clause, precision, &list[i])
    })
    .map(|(text, _)| text)
}

/// Checks a constant format string against the arguments' static types, as cel-go's
/// compile-time format validator: `samples[i]` is a value of argument `i`'s type, `None`
/// when the type is not known. Returns the number of arguments the string uses.
pub(crate) fn format_check(template: &str, samples: &[Option<Value>]) -> Result<usize, String> {
    format_with(
        template,
        samples.len(),
        |i, clause, precision| match &samples[i] {
            Some(v) => format_clause(clause, precision, v),
            None => Ok(String::new()),
        },
    )
    .map(|(_, used)| used)
}

/// Walks a format string: `clause(i, letter, precision)` renders argument `i`. Returns the
/// text and the number of arguments used.
fn format_with(
    template: &str,
    args: usize,
    mut clause_text: impl FnMut(usize, char, usize) -> Result<String, String>,
) -> Result<(String, usize), String> {
    let bytes = template.as_bytes();
    let mut out = String::with_capacity(template.len());
    let mut arg_index = 0usize;
    let mut i = 0usize;
    let mut literal_start = 0usize;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            i += 1;
            continue;
        }
        out.push_str(&template[literal_start..i]);
        if bytes.get(i + 1) == Some(&b'%') {
            out.push('%');
            i += 2;
            literal_start = i;
            continue;
        }
        if arg_index >= args {
            return Err(format!("index {arg_index} out of range"));
        }
        if i + 1 >= bytes.len() {
            return Err("unexpected end of string".into());
        }
        let (consumed, clause, precision) = parse_clause(&template[i + 1..])
            .map_err(|e| format!("could not parse formatting clause: {e}"))?;
        let text = clause_text(arg_index, clause, precision)
            .map_err(|e| format!("error during formatting: {e}"))?;
        out.push_str(&text);
        i += 1 + consumed;
        literal_start = i;
        arg_index += 1;
    }
    out.push_str(&template[literal_start..]);
    Ok((out, arg_index))
}

/// Parses `[.N]c` after a `%`: returns bytes consumed, the clause letter and the precision.
fn parse_clause(s: &str) -> Result<(usize, char, usize), String> {
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut precision = DEFAULT_PRECISION;
    if bytes.first() == Some(&b'.') {
        i = 1;
        loop {
            match bytes.get(i) {
                None => {
                    return Err(
                        "error while parsing precision: could not find end of precision specifier"
                            .into(),
                    );
                }
                Some(b) if b.is_ascii_digit() => i += 1,
                Some(_) => break,
            }
        }
        let digits = &s[1..i];
        precision = digits.parse::<usize>().map_err(|_| {
            format!(
                "error while parsing precision: error while converting precision to integer: \
                 strconv.Atoi: parsing {digits:?}: invalid syntax"
            )
        })?;
        if precision > MAX_PRECISION {
            return Err(format!(
                "error while parsing precision: precision {precision} exceeds maximum allowed precision {MAX_PRECISION}"
            ));
        }
    }
    let c = s[i..].chars().next().unwrap_or('\0');
    match c {
        's' | 'd' | 'f' | 'e' | 'b' | 'x' | 'X' | 'o' => Ok((i + 1, c, precision)),
        _ => Err(format!("unrecognized formatting clause \"{c}\"")),
    }
}

fn format_clause(clause: char, precision: usize, arg: &Value) -> Result<String, String> {
    let type_name = arg.type_name();
    match clause {
        's' => format_value(arg),
        'd' => match arg {
            Value::Int(i) => Ok(i.to_string()),
            Value::Uint(u) => Ok(u.to_string()),
            Value::Double(d) => Ok(go_float_shortest(*d)),
            _ => Err(format!(
                "decimal clause can only be used on ints, uints, and doubles, was given {type_name}"
            )),
        },
        'f' => match as_f64(arg) {
            Some(d) => Ok(special_float(d).unwrap_or_else(|| format!("{d:.precision$}"))),
            None => Err(format!(
                "fixed-point clause can only be used on ints, uints, and doubles, was given {type_name}"
            )),
        },
        'e' => match as_f64(arg) {
            Some(d) => Ok(special_float(d).unwrap_or_else(|| go_exp(d, precision))),
            None => Err(format!(
                "scientific clause can only be used on ints, uints, and doubles, was given {type_name}"
            )),
        },
        'b' => match arg {
            Value::Bool(b) => Ok(if *b { "1" } else { "0" }.into()),
            Value::Int(i) => Ok(signed_radix(*i, |u| format!("{u:b}"))),
            Value::Uint(u) => Ok(format!("{u:b}")),
            _ => Err(format!(
                "only ints, uints, and bools can be formatted as binary, was given {type_name}"
            )),
        },
        'x' | 'X' => {
            let lower = match arg {
                Value::Int(i) => signed_radix(*i, |u| format!("{u:x}")),
                Value::Uint(u) => format!("{u:x}"),
                Value::String(s) => hex_bytes(s.as_bytes()),
                Value::Bytes(b) => hex_bytes(b),
                _ => {
                    return Err(format!(
                        "only ints, uints, bytes, and strings can be formatted as hex, was given {type_name}"
                    ));
                }
            };
            Ok(if clause == 'X' {
                lower.to_ascii_uppercase()
            } else {
                lower
            })
        }
        'o' => match arg {
            Value::Int(i) => Ok(signed_radix(*i, |u| format!("{u:o}"))),
            Value::Uint(u) => Ok(format!("{u:o}")),
            _ => Err(format!(
                "octal clause can only be used on ints and uints, was given {type_name}"
            )),
        },
        _ => Err(format!("unrecognized formatting clause \"{clause}\"")),
    }
}

fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Int(i) => Some(*i as f64),
        Value::Uint(u) => Some(*u as f64),
        Value::Double(d) => Some(*d),
        _ => None,
    }
}

fn special_float(d: f64) -> Option<String> {
    if d.is_nan() {
        Some("NaN".into())
    } else if d.is_infinite() {
        Some(if d > 0.0 { "Infinity" } else { "-Infinity" }.into())
    } else {
        None
    }
}

/// Go's `strconv.FormatFloat(d, 'f', -1, 64)`: shortest digits, never an exponent.
fn go_float_shortest(d: f64) -> String {
    special_float(d).unwrap_or_else(|| format!("{d}"))
}

/// Go's `%1.Ne`: mantissa with N decimals and an exponent of at least two digits.
fn go_exp(d: f64, precision: usize) -> String {
    let s = format!("{d:.precision$e}");
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let (sign, digits) = match exp.strip_prefix('-') {
        Some(rest) => ('-', rest),
        None => ('+', exp),
    };
    format!("{mantissa}e{sign}{digits:0>2}")
}

/// Formats a signed integer in another base as Go does: a `-` and the magnitude.
fn signed_radix(i: i64, digits: impl Fn(u64) -> String) -> String {
    let mag = digits(i.unsigned_abs());
    if i < 0 { format!("-{mag}") } else { mag }
}

fn hex_bytes(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len() * 2);
    for byte in b {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// RFC 3339 in UTC with as many fractional digits as needed (Go's `time.RFC3339Nano`).
fn rfc3339_nano_utc(t: &Timestamp) -> String {
    let utc = t.with_timezone(&Utc);
    let mut s = utc.to_rfc3339_opts(SecondsFormat::Nanos, true);
    // "...:SS.nnnnnnnnnZ": drop trailing zeros of the fraction, and the dot if none remain.
    if let Some(dot) = s.rfind('.') {
        let frac_end = s.len() - 1;
        let trimmed = s[dot + 1..frac_end].trim_end_matches('0').len();
        let keep = if trimmed == 0 { dot } else { dot + 1 + trimmed };
        s.replace_range(keep..frac_end, "");
    }
    s
}

/// The `%s` rendering of a value (cel-go's v2 formatter).
fn format_value(v: &Value) -> Result<String, String> {
    let mut out = String::new();
    write_value(&mut out, v)?;
    Ok(out)
}

fn write_value(out: &mut String, v: &Value) -> Result<(), String> {
    match v {
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Uint(u) => {
            let _ = write!(out, "{u}");
        }
        Value::Double(d) => out.push_str(&go_float_shortest(*d)),
        Value::Bytes(b) => out.push_str(&String::from_utf8_lossy(b)),
        Value::String(s) => out.push_str(s),
        Value::Duration(d) => {
            let secs = d.num_seconds() as f64 + f64::from(d.subsec_nanos()) / 1e9;
            out.push_str(&go_float_shortest(secs));
            out.push('s');
        }
        Value::Timestamp(t) => out.push_str(&rfc3339_nano_utc(t)),
        Value::Null => out.push_str("null"),
        Value::Type(t) => out.push_str(t.name()),
        Value::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(out, item)?;
            }
            out.push(']');
        }
        Value::Map(m) => {
            let mut entries = m
                .iter()
                .map(|(k, v)| Ok((format_value(&k.to_value())?, format_value(v)?)))
                .collect::<Result<Vec<_>, String>>()?;
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            out.push('{');
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(k);
                out.push_str(": ");
                out.push_str(v);
            }
            out.push('}');
        }
        Value::Optional(_) | Value::Opaque(_) => {
            return Err(format!(
                "string clause can only be used on strings, bools, bytes, ints, doubles, maps, \
                 lists, types, durations, and timestamps, was given {}",
                v.type_name()
            ));
        }
    }
    Ok(())
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
    fn char_at_and_substring_count_code_points() {
        for src in [
            "'hello'.charAt(4) == 'o'",
            "'hello'.charAt(5) == ''",
            "'héllo'.charAt(1) == 'é'",
            "'tacocat'.substring(4) == 'cat'",
            "'tacocat'.substring(0, 4) == 'taco'",
            "'héllo'.substring(1, 2) == 'é'",
            "'abc'.substring(3) == ''",
        ] {
            assert_true(src);
        }
        for src in [
            "'hello'.charAt(-1)",
            "'hello'.charAt(6)",
            "'tacocat'.substring(-1)",
            "'tacocat'.substring(2, 1)",
            "'tacocat'.substring(0, 8)",
            "'tacocat'.substring(9223372036854775807)",
        ] {
            assert!(eval(src).is_err(), "{src}");
        }
    }

    #[test]
    fn index_of_and_last_index_of() {
        for src in [
            "'hello mellow'.indexOf('') == 0",
            "'hello mellow'.indexOf('ello') == 1",
            "'hello mellow'.indexOf('jello') == -1",
            "'hello mellow'.indexOf('', 2) == 2",
            "'hello mellow'.indexOf('ello', 2) == 7",
            "'hello mellow'.indexOf('ello', 20) == -1",
            "'hello mellow'.indexOf('', 20) == 12",
            "'héllo'.indexOf('l') == 2",
            "'hello mellow'.lastIndexOf('') == 12",
            "'hello mellow'.lastIndexOf('ello') == 7",
            "'hello mellow'.lastIndexOf('jello') == -1",
            "'hello mellow'.lastIndexOf('ello', 6) == 1",
            "'hello mellow'.lastIndexOf('ello', 20) == -1",
            "'ab'.lastIndexOf('abc') == -1",
            "'abc'.lastIndexOf('c', 2) == 2",
        ] {
            assert_true(src);
        }
        assert!(eval("'hello'.indexOf('l', -1)").is_err());
        assert!(eval("'hello'.lastIndexOf('l', -1)").is_err());
    }

    #[test]
    fn replace_split_join_trim() {
        for src in [
            "'hello hello'.replace('he', 'we') == 'wello wello'",
            "'hello hello'.replace('he', 'we', -1) == 'wello wello'",
            "'hello hello'.replace('he', 'we', 1) == 'wello hello'",
            "'hello hello'.replace('he', 'we', 0) == 'hello hello'",
            "'hello'.replace('', '_') == '_h_e_l_l_o_'",
            "'hello hello hello'.split(' ') == ['hello', 'hello', 'hello']",
            "'hello hello hello'.split(' ', 0) == []",
            "'hello hello hello'.split(' ', 1) == ['hello hello hello']",
            "'hello hello hello'.split(' ', 2) == ['hello', 'hello hello']",
            "'abc'.split('') == ['a', 'b', 'c']",
            "'abc'.split('', 2) == ['a', 'bc']",
            "''.split('') == []",
            "''.split(',') == ['']",
            "['hello', 'mellow'].join() == 'hellomellow'",
            "['hello', 'mellow'].join(' ') == 'hello mellow'",
            "[].join('/') == ''",
            "'  \\ttrim\\n    '.trim() == 'trim'",
            "'TacoCÆt Xii'.lowerAscii() == 'tacocÆt xii'",
            "'TacoCÆt Xii'.upperAscii() == 'TACOCÆT XII'",
        ] {
            assert_true(src);
        }
        assert!(eval("[1, 'a'].join()").is_err());
    }

    #[test]
    fn quote_escapes() {
        assert_eq!(
            eval_str(r#"strings.quote('single-quote with "double quote"')"#),
            r#""single-quote with \"double quote\"""#
        );
        assert_eq!(
            eval_str(r#"strings.quote("two escape sequences \a\n")"#),
            r#""two escape sequences \a\n""#
        );
    }

    #[test]
    fn format_clauses() {
        let cases = [
            (
                r#""this is a string: %s\nand an integer: %d".format(["str", 42])"#,
                "this is a string: str\nand an integer: 42",
            ),
            (
                r#""a double substituted with %%s: %s".format([64.2])"#,
                "a double substituted with %s: 64.2",
            ),
            (
                r#""string type: %s".format([string])"#,
                "string type: string",
            ),
            (r#""%s".format([type(1)])"#, "int"),
            (
                r#""timestamp: %s".format([timestamp("2023-02-03T23:31:20+00:00")])"#,
                "timestamp: 2023-02-03T23:31:20Z",
            ),
            (
                r#""%s".format([timestamp("2023-02-03T23:31:20.120-01:00")])"#,
                "2023-02-04T00:31:20.12Z",
            ),
            (
                r#""duration: %s".format([duration("1h45m47s")])"#,
                "duration: 6347s",
            ),
            (r#""%s".format([duration("1.5s")])"#, "1.5s"),
            (r#""%f".format([3.14])"#, "3.140000"),
            (r#""%.2f".format([0.125])"#, "0.12"),
            (r#""%.3f".format([2])"#, "2.000"),
            (r#""%e".format([2.71828])"#, "2.718280e+00"),
            (r#""%.2e".format([0.00012])"#, "1.20e-04"),
            (r#""5 in binary: %b".format([5])"#, "5 in binary: 101"),
            (r#""%b".format([-5])"#, "-101"),
            (r#""26 in hex: %x".format([26])"#, "26 in hex: 1a"),
            (r#""%x".format([-255])"#, "-ff"),
            (
                r#""26 in hex (uppercase): %X".format([26u])"#,
                "26 in hex (uppercase): 1A",
            ),
            (r#""%x".format(["Hi"])"#, "4869"),
            (r#""30 in octal: %o".format([30])"#, "30 in octal: 36"),
            (
                r#""%s".format([[1, 2, 3, {"b": "y", "a": "x"}]])"#,
                "[1, 2, 3, {a: x, b: y}]",
            ),
            (r#""%s %s %b".format([true, false, true])"#, "true false 1"),
            (r#""%s".format([null])"#, "null"),
            (r#""%d %f".format([1.5, double("NaN")])"#, "1.5 NaN"),
            (r#""%f".format([double("-Infinity")])"#, "-Infinity"),
            (r#""%s".format([b"abc"])"#, "abc"),
            (r#""no clauses".format([])"#, "no clauses"),
            (r#""100%%".format([])"#, "100%"),
        ];
        for (src, want) in cases {
            assert_eq!(eval_str(src), want, "{src}");
        }
        for src in [
            r#""%d".format(["str"])"#,
            r#""%s %s".format(["one"])"#,
            r#""%".format([1])"#,
            r#""%y".format([1])"#,
            r#""%.".format([1])"#,
            r#""%.101f".format([1.0])"#,
            r#""%b".format([1.0])"#,
            r#""%o".format([true])"#,
            r#""%s".format([optional.none()])"#,
        ] {
            assert!(eval(src).is_err(), "{src}");
        }
    }

    #[test]
    fn format_errors_carry_cel_go_messages() {
        let err = eval(r#""%d".format(["str"])"#).unwrap_err();
        assert!(
            err.contains(
                "error during formatting: decimal clause can only be used on ints, uints, and doubles, was given string"
            ),
            "{err}"
        );
        let err = eval(r#""%s %s".format(["one"])"#).unwrap_err();
        assert!(err.contains("index 1 out of range"), "{err}");
    }
}
