//! cel-go's regex extension (`ext.Regex()`): `regex.replace`, `regex.extract`
//! and `regex.extractAll`.
//!
//! Patterns are compiled at call time, and the same helper compiles the pattern of a
//! `matches()` call that is not a constant (constant patterns are compiled once, with
//! the policy). Patterns can come from request data, so they are bounded: at most
//! [`MAX_PATTERN_BYTES`] long, compiled within [`COMPILED_SIZE_LIMIT`] bytes (the
//! `regex` crate's size limits), and a small per-thread cache of
//! [`CACHE_CAPACITY`] patterns keeps recently used ones. A pattern past the bounds is an
//! evaluation error: the condition fails, as for an invalid pattern.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use regex::{Captures, Regex, RegexBuilder};

use super::{FunctionRegistry, arg_opt_int, arg_str, no_overload};
use crate::cel::eval::{Activation, EvalError};
use crate::cel::value::Value;

/// How many compiled patterns each thread keeps.
const CACHE_CAPACITY: usize = 64;
/// Longest pattern compiled at evaluation time, in bytes.
pub(crate) const MAX_PATTERN_BYTES: usize = 4096;
/// Largest compiled program (and lazy DFA cache) of a pattern, in bytes.
pub(crate) const COMPILED_SIZE_LIMIT: usize = 1 << 20;

pub(super) fn register(r: &mut FunctionRegistry) {
    r.global("regex.replace", replace);
    r.global("regex.extract", extract);
    r.global("regex.extractAll", extract_all);
}

thread_local! {
    static CACHE: RefCell<HashMap<Arc<str>, Regex>> = RefCell::new(HashMap::new());
}

/// Compiles `pattern` within the bounds above, reusing a cached compilation when there is
/// one. The error is the reason, without a prefix.
pub(super) fn bounded_regex(pattern: &str) -> Result<Regex, String> {
    if pattern.len() > MAX_PATTERN_BYTES {
        return Err(format!("pattern longer than {MAX_PATTERN_BYTES} bytes"));
    }
    if let Some(re) = CACHE.with(|c| c.borrow().get(pattern).cloned()) {
        return Ok(re);
    }
    let re = RegexBuilder::new(pattern)
        .size_limit(COMPILED_SIZE_LIMIT)
        .dfa_size_limit(COMPILED_SIZE_LIMIT)
        .build()
        .map_err(|e| e.to_string())?;
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= CACHE_CAPACITY {
            c.clear();
        }
        c.insert(Arc::from(pattern), re.clone());
    });
    Ok(re)
}

fn compile_regex(pattern: &str) -> Result<Regex, EvalError> {
    bounded_regex(pattern).map_err(|e| EvalError::new(format!("error parsing regexp: {e}")))
}

/// Successive non-overlapping matches, skipping an empty match that directly
/// follows the previous match (Go's `FindAll` rule).
fn go_captures<'h>(re: &Regex, hay: &'h str) -> Vec<Captures<'h>> {
    let mut out: Vec<Captures<'h>> = Vec::new();
    let mut prev_end = None;
    for caps in re.captures_iter(hay) {
        let Some(m) = caps.get(0) else { continue };
        if m.is_empty() && prev_end == Some(m.start()) {
            continue;
        }
        prev_end = Some(m.end());
        out.push(caps);
    }
    out
}

/// Expands `\N` group references and `\\` in a replacement string.
fn expand(replacement: &str, caps: &Captures, groups: usize) -> Result<String, EvalError> {
    let mut out = String::with_capacity(replacement.len());
    let mut chars = replacement.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some(next) = chars.next() else {
            return Err(EvalError::new(format!(
                "invalid replacement string: '{replacement}' \\ not allowed at end"
            )));
        };
        if next == '\\' {
            out.push('\\');
            continue;
        }
        let Some(group) = next.to_digit(10) else {
            return Err(EvalError::new(format!(
                "invalid replacement string: '{replacement}' \\ must be followed by a digit or \\"
            )));
        };
        let group = group as usize;
        if group > groups {
            return Err(EvalError::new(format!(
                "replacement string references group {group} but regex has only {groups} group(s)"
            )));
        }
        if let Some(m) = caps.get(group) {
            out.push_str(m.as_str());
        }
    }
    Ok(out)
}

fn replace(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    if !(3..=4).contains(&args.len()) {
        return Err(no_overload("regex.replace", args));
    }
    let target = arg_str("regex.replace", args, 0)?;
    let pattern = arg_str("regex.replace", args, 1)?;
    let replacement = arg_str("regex.replace", args, 2)?;
    let count = arg_opt_int("regex.replace", args, 3)?.unwrap_or(-1);
    if count == 0 {
        return Ok(Value::from(target));
    }
    let re = compile_regex(pattern)?;
    let groups = re.captures_len() - 1;
    let limit = usize::try_from(count).unwrap_or(usize::MAX);
    let mut out = String::with_capacity(target.len());
    let mut last = 0;
    for caps in go_captures(&re, target).iter().take(limit) {
        let Some(m) = caps.get(0) else { continue };
        let text = expand(replacement, caps, groups)?;
        out.push_str(&target[last..m.start()]);
        out.push_str(&text);
        last = m.end();
    }
    out.push_str(&target[last..]);
    Ok(Value::from(out))
}

fn check_groups(re: &Regex, pattern: &str) -> Result<usize, EvalError> {
    let groups = re.captures_len() - 1;
    if groups > 1 {
        return Err(EvalError::new(format!(
            "regular expression has more than one capturing group: {pattern:?}"
        )));
    }
    Ok(groups)
}

fn extract(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    if args.len() != 2 {
        return Err(no_overload("regex.extract", args));
    }
    let target = arg_str("regex.extract", args, 0)?;
    let pattern = arg_str("regex.extract", args, 1)?;
    let re = compile_regex(pattern)?;
    let groups = check_groups(&re, pattern)?;
    let Some(caps) = re.captures(target) else {
        return Ok(Value::Optional(None));
    };
    let text = if groups == 1 {
        match caps.get(1).map(|m| m.as_str()) {
            Some(s) if !s.is_empty() => s,
            _ => return Ok(Value::Optional(None)),
        }
    } else {
        caps.get(0).map_or("", |m| m.as_str())
    };
    Ok(Value::Optional(Some(Arc::new(Value::from(text)))))
}

fn extract_all(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    if args.len() != 2 {
        return Err(no_overload("regex.extractAll", args));
    }
    let target = arg_str("regex.extractAll", args, 0)?;
    let pattern = arg_str("regex.extractAll", args, 1)?;
    let re = compile_regex(pattern)?;
    let groups = check_groups(&re, pattern)?;
    let out = go_captures(&re, target)
        .iter()
        .filter_map(|caps| {
            if groups == 1 {
                caps.get(1)
                    .map(|m| m.as_str())
                    .filter(|s| !s.is_empty())
                    .map(Value::from)
            } else {
                caps.get(0).map(|m| Value::from(m.as_str()))
            }
        })
        .collect();
    Ok(Value::list(out))
}

#[cfg(test)]
mod tests {
    use crate::cel::testing::{assert_true, eval};

    #[test]
    fn issue_12_patterns_from_request_data_are_bounded() {
        use crate::cel::testing::eval_with;
        use crate::cel::value::Value;
        // Each pattern compiles to far more than the limit (seconds of work unbounded);
        // the call fails fast instead, which fails the condition.
        for pattern in [r"(\w{1000}){1000}", "(a{999}){999}"] {
            for call in ["'aaa'.matches(x)", "regex.extract('aaa', x)"] {
                let err = eval_with(call, Value::from(pattern)).unwrap_err();
                assert!(err.contains("size limit"), "{call} with {pattern}: {err}");
            }
        }
        let long = "a".repeat(super::MAX_PATTERN_BYTES + 1);
        let err = eval_with("'a'.matches(x)", Value::from(long.as_str())).unwrap_err();
        assert!(err.contains("pattern longer than 4096 bytes"), "{err}");
        assert!(matches!(
            eval_with("'abc'.matches(x)", Value::from("^a.c$")),
            Ok(Value::Bool(true))
        ));
    }

    #[test]
    fn replace_with_group_references() {
        for src in [
            "regex.replace('hello world hello', 'hello', 'hi') == 'hi world hi'",
            "regex.replace('banana', 'a', 'x', 0) == 'banana'",
            "regex.replace('banana', 'a', 'x', 1) == 'bxnana'",
            "regex.replace('banana', 'a', 'x', 2) == 'bxnxna'",
            "regex.replace('banana', 'a', 'x', -12) == 'bxnxnx'",
            r"regex.replace('foo bar', '(fo)o (ba)r', r'\2 \1') == 'ba fo'",
            r"regex.replace('banana', 'b(a).*', r'\1') == 'a'",
            r"regex.replace('a.b', '\\.', '\\\\') == 'a\\b'",
            "regex.replace('abc', 'x*', '-') == '-a-b-c-'",
            "regex.replace('baaac', 'a*', '-') == '-b-c-'",
            r"regex.replace('ab', '(x)?b', r'[\1]') == 'a[]'",
        ] {
            assert_true(src);
        }
        for src in [
            r"regex.replace('test', '(.)', r'\2')",
            "regex.replace('foo bar', '(', '$2 $1')",
            r"regex.replace('id=123', r'id=(?P<value>\d+)', r'value: \values')",
            r"regex.replace('abc', 'b', 'x\\')",
        ] {
            assert!(eval(src).is_err(), "{src}");
        }
    }

    #[test]
    fn extract_and_extract_all() {
        for src in [
            "regex.extract('hello world', 'hello(.*)') == optional.of(' world')",
            r"regex.extract('item-A, item-B', 'item-(\\w+)') == optional.of('A')",
            "regex.extract('HELLO', 'hello') == optional.none()",
            "regex.extract('hello', 'h(x)?') == optional.none()",
            "regex.extract('hello', 'l+') == optional.of('ll')",
            r"regex.extractAll('id:123, id:456', 'id:\\d+') == ['id:123', 'id:456']",
            r"regex.extractAll('id:123, id:456', 'id:(\\d+)') == ['123', '456']",
            "regex.extractAll('id:123, id:456', 'assa') == []",
            "regex.extractAll('a bb a cc', 'a') == ['a', 'a']",
        ] {
            assert_true(src);
        }
        for src in [
            "regex.extract('testuser@testdomain', '(.*)@([^.]*)')",
            "regex.extractAll('testuser@testdomain', '(.*)@([^.]*)')",
            "regex.extract('x', '[')",
        ] {
            assert!(eval(src).is_err(), "{src}");
        }
    }
}
