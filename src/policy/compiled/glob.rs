//! Glob patterns for actions, roles and resource kinds, with Cerbos's semantics:
//! `:` separates segments, `*` matches within a segment, `**` across segments,
//! and a lone `*` matches everything.

use regex::Regex;

/// A compiled glob (or literal) pattern.
#[derive(Clone, Debug)]
pub(crate) enum Glob {
    /// Matches everything (`*` or `**`).
    Any,
    /// A pattern without wildcards: plain string equality.
    Literal(Box<str>),
    /// A wildcard pattern.
    Pattern {
        /// The pattern as written.
        source: Box<str>,
        /// The equivalent anchored regex.
        regex: Regex,
    },
}

/// An invalid glob pattern.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("invalid glob pattern {pattern:?}: {reason}")]
pub(crate) struct GlobError {
    /// The pattern.
    pattern: String,
    /// Why it is invalid.
    reason: String,
}

fn is_special(c: char) -> bool {
    matches!(c, '*' | '?' | '[' | '{' | '\\')
}

/// The anchored regular expression of a glob pattern: `*` within a `:`-separated
/// segment, `**` across them, `?`, `\` escapes, `[...]` and `[!...]` classes, `{a,b}`
/// alternatives; `Err` with the reason when the pattern is malformed.
fn translate(pattern: &str) -> Result<String, &'static str> {
    let mut re = String::with_capacity(pattern.len() * 2 + 8);
    re.push_str("^(?s:");
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    let mut brace_depth = 0usize;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '*' => {
                if chars.get(i + 1) == Some(&'*') {
                    re.push_str(".*");
                    i += 1;
                } else {
                    re.push_str("[^:]*");
                }
            }
            '?' => re.push_str("[^:]"),
            '\\' => {
                i += 1;
                let Some(n) = chars.get(i) else {
                    return Err("trailing escape");
                };
                re.push_str(&regex::escape(&n.to_string()));
            }
            '[' => i += char_class(&chars[i + 1..], &mut re)? + 1,
            '{' => {
                brace_depth += 1;
                re.push_str("(?:");
            }
            '}' if brace_depth > 0 => {
                brace_depth -= 1;
                re.push(')');
            }
            ',' if brace_depth > 0 => re.push('|'),
            other => re.push_str(&regex::escape(&other.to_string())),
        }
        i += 1;
    }
    if brace_depth > 0 {
        return Err("unclosed '{'");
    }
    re.push_str(")$");
    Ok(re)
}

/// A character class (`rest` follows its `[`) as a regex class pushed onto `re`;
/// returns the position of its `]` in `rest`.
fn char_class(rest: &[char], re: &mut String) -> Result<usize, &'static str> {
    let end = rest.iter().position(|&x| x == ']').ok_or("unclosed '['")?;
    let body: String = rest[..end].iter().collect();
    if body.is_empty() {
        return Err("empty character class");
    }
    re.push('[');
    let body = match body.strip_prefix('!') {
        Some(rest) => {
            re.push('^');
            rest.to_string()
        }
        None => body,
    };
    for ch in body.chars() {
        if matches!(ch, '\\' | '[' | ']' | '^' | '&' | '~') {
            re.push('\\');
        }
        re.push(ch);
    }
    re.push(']');
    Ok(end)
}

impl Glob {
    /// Compiles a pattern.
    pub(crate) fn new(pattern: &str) -> Result<Glob, GlobError> {
        if pattern == "*" || pattern == "**" {
            return Ok(Glob::Any);
        }
        if !pattern.chars().any(is_special) {
            return Ok(Glob::Literal(pattern.into()));
        }
        let err = |reason: &str| GlobError {
            pattern: pattern.to_string(),
            reason: reason.to_string(),
        };
        let re = translate(pattern).map_err(err)?;
        let regex = Regex::new(&re).map_err(|e| err(&e.to_string()))?;
        Ok(Glob::Pattern {
            source: pattern.into(),
            regex,
        })
    }

    /// Whether the pattern matches `value`.
    pub(crate) fn matches(&self, value: &str) -> bool {
        match self {
            Glob::Any => true,
            Glob::Literal(l) => &**l == value,
            Glob::Pattern { regex, .. } => regex.is_match(value),
        }
    }

    /// The pattern as written.
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Glob::Any => "*",
            Glob::Literal(l) => l,
            Glob::Pattern { source, .. } => source,
        }
    }

    /// The literal value when the pattern has no wildcards.
    pub(crate) fn literal(&self) -> Option<&str> {
        match self {
            Glob::Literal(l) => Some(l),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, v: &str) -> bool {
        Glob::new(p).unwrap().matches(v)
    }

    #[test]
    fn cerbos_glob_semantics() {
        assert!(m("*", "a:b:c"));
        assert!(m("view:*", "view:public"));
        assert!(!m("view:*", "view:public:x"));
        assert!(m("view:**", "view:public:x"));
        assert!(!m("view:*", "edit:public"));
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "a:c"));
        assert!(m("{read,write}", "write"));
        assert!(m("[ab]x", "bx"));
        assert!(!m("[!ab]x", "bx"));
        assert!(m("leave_*", "leave_request"));
        assert!(m(
            "arn:aws:sns:us-east-1:123456789012:topic-a",
            "arn:aws:sns:us-east-1:123456789012:topic-a"
        ));
        assert!(m("a.b", "a.b") && !m("a.b*", "axb"));
        assert!(Glob::new("[abc").is_err());
        assert!(Glob::new("{a,b").is_err());
    }
}
