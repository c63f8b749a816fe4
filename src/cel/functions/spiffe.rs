//! Cerbos's SPIFFE functions: `spiffeID(...)`, `spiffeTrustDomain(...)` and the
//! matchers `spiffeMatchAny()`, `spiffeMatchExact(...)`, `spiffeMatchOneOf(...)`,
//! `spiffeMatchTrustDomain(...)`, with the rules of go-spiffe's `spiffeid` package.

use std::sync::Arc;

use super::{FunctionRegistry, no_overload};
use crate::cel::eval::{Activation, EvalError};
use crate::cel::value::{Opaque, SpiffeMatcher, Value};

const SCHEME: &str = "spiffe://";

pub(super) fn register(r: &mut FunctionRegistry) {
    r.global("spiffeID", spiffe_id);
    r.global("spiffeTrustDomain", spiffe_trust_domain);
    r.global("spiffeMatchAny", match_any);
    r.global("spiffeMatchExact", match_exact);
    r.global("spiffeMatchOneOf", match_one_of);
    r.global("spiffeMatchTrustDomain", match_trust_domain);
    r.receiver("isMemberOf", is_member_of);
    r.receiver("path", path);
    r.receiver("trustDomain", trust_domain);
    r.receiver("id", trust_domain_id);
    r.receiver("name", trust_domain_name);
    r.receiver("matchesID", matches_id);
}

/// A parsed SPIFFE ID: trust domain name and path (empty or starting with `/`).
struct Id<'a> {
    trust_domain: &'a str,
    path: &'a str,
}

fn is_trust_domain_char(b: u8) -> bool {
    matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_')
}

fn is_path_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')
}

const BAD_TRUST_DOMAIN_CHAR: &str = "trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores";

fn validate_path(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        return Ok(());
    }
    if !path.starts_with('/') {
        return Err("path must have a leading slash");
    }
    let segments: Vec<&str> = path[1..].split('/').collect();
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *segment {
            "" if last => return Err("path cannot have a trailing slash"),
            "" => return Err("path cannot contain empty segments"),
            "." | ".." => return Err("path cannot contain dot segments"),
            s if !s.bytes().all(is_path_char) => {
                return Err(
                    "path segment characters are limited to letters, numbers, dots, dashes, and underscores",
                );
            }
            _ => {}
        }
    }
    Ok(())
}

/// go-spiffe's `spiffeid.FromString`.
fn parse_id(s: &str) -> Result<Id<'_>, &'static str> {
    if s.is_empty() {
        return Err("cannot be empty");
    }
    let rest = s
        .strip_prefix(SCHEME)
        .ok_or("scheme is missing or invalid")?;
    let td_end = rest.find('/').unwrap_or(rest.len());
    let trust_domain = &rest[..td_end];
    if !trust_domain.bytes().all(is_trust_domain_char) {
        return Err(BAD_TRUST_DOMAIN_CHAR);
    }
    if trust_domain.is_empty() {
        return Err("trust domain is missing");
    }
    let path = &rest[td_end..];
    validate_path(path)?;
    Ok(Id { trust_domain, path })
}

/// go-spiffe's `spiffeid.TrustDomainFromString`: a name, or the trust domain of an ID.
fn parse_trust_domain(s: &str) -> Result<&str, &'static str> {
    if s.is_empty() {
        return Err("trust domain is missing");
    }
    if s.contains(":/") {
        return parse_id(s).map(|id| id.trust_domain);
    }
    if !s.bytes().all(is_trust_domain_char) {
        return Err(BAD_TRUST_DOMAIN_CHAR);
    }
    Ok(s)
}

fn id_error(e: &str) -> EvalError {
    EvalError::new(format!("failed to parse SPIFFE ID: {e}"))
}

fn trust_domain_error(e: &str) -> EvalError {
    EvalError::new(format!("failed to parse SPIFFE trust domain: {e}"))
}

fn opaque(o: Opaque) -> Value {
    Value::Opaque(Arc::new(o))
}

fn id_value(id: &Id) -> Value {
    opaque(Opaque::SpiffeId {
        trust_domain: Arc::from(id.trust_domain),
        path: Arc::from(id.path),
    })
}

/// The trust domain and path of a SPIFFE ID value.
fn as_id(v: &Value) -> Option<(&Arc<str>, &Arc<str>)> {
    match v {
        Value::Opaque(o) => match &**o {
            Opaque::SpiffeId { trust_domain, path } => Some((trust_domain, path)),
            _ => None,
        },
        _ => None,
    }
}

fn as_trust_domain(v: &Value) -> Option<&Arc<str>> {
    match v {
        Value::Opaque(o) => match &**o {
            Opaque::SpiffeTrustDomain(td) => Some(td),
            _ => None,
        },
        _ => None,
    }
}

fn as_matcher(v: &Value) -> Option<&SpiffeMatcher> {
    match v {
        Value::Opaque(o) => match &**o {
            Opaque::SpiffeMatcher(m) => Some(m),
            _ => None,
        },
        _ => None,
    }
}

fn id_string(trust_domain: &str, path: &str) -> String {
    format!("{SCHEME}{trust_domain}{path}")
}

fn spiffe_id(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    match args {
        [Value::String(s)] => parse_id(s).map(|id| id_value(&id)).map_err(id_error),
        [v] if as_id(v).is_some() => Ok(v.clone()),
        _ => Err(no_overload("spiffeID", args)),
    }
}

fn spiffe_trust_domain(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    match args {
        [Value::String(s)] => parse_trust_domain(s)
            .map(|td| opaque(Opaque::SpiffeTrustDomain(Arc::from(td))))
            .map_err(trust_domain_error),
        [v] if as_trust_domain(v).is_some() => Ok(v.clone()),
        [v] => match as_id(v) {
            Some((td, _)) => Ok(opaque(Opaque::SpiffeTrustDomain(td.clone()))),
            None => Err(no_overload("spiffeTrustDomain", args)),
        },
        _ => Err(no_overload("spiffeTrustDomain", args)),
    }
}

fn matcher(m: SpiffeMatcher) -> Value {
    opaque(Opaque::SpiffeMatcher(m))
}

fn match_any(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    if !args.is_empty() {
        return Err(no_overload("spiffeMatchAny", args));
    }
    Ok(matcher(SpiffeMatcher::Any))
}

/// The `spiffe://...` form of an ID given as a value or a string.
fn id_of(v: &Value) -> Option<Result<Arc<str>, &'static str>> {
    match v {
        Value::String(s) => {
            Some(parse_id(s).map(|id| Arc::from(id_string(id.trust_domain, id.path))))
        }
        other => as_id(other).map(|(td, path)| Ok(Arc::from(id_string(td, path)))),
    }
}

fn match_exact(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    match args {
        [v] => match id_of(v) {
            Some(id) => Ok(matcher(SpiffeMatcher::OneOf(vec![id.map_err(id_error)?]))),
            None => Err(no_overload("spiffeMatchExact", args)),
        },
        _ => Err(no_overload("spiffeMatchExact", args)),
    }
}

/// A list of SPIFFE ID values, or else a list of strings that all parse as IDs.
fn match_one_of(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    let [Value::List(items)] = args else {
        return Err(no_overload("spiffeMatchOneOf", args));
    };
    let ids: Option<Vec<Arc<str>>> = if items.iter().all(|v| as_id(v).is_some()) {
        items
            .iter()
            .map(|v| id_of(v).and_then(Result::ok))
            .collect()
    } else {
        items
            .iter()
            .map(|v| match v {
                Value::String(_) => id_of(v).and_then(Result::ok),
                _ => None,
            })
            .collect()
    };
    ids.map(|ids| matcher(SpiffeMatcher::OneOf(ids)))
        .ok_or_else(|| no_overload("spiffeMatchOneOf", args))
}

fn match_trust_domain(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    match args {
        [Value::String(s)] => parse_trust_domain(s)
            .map(|td| matcher(SpiffeMatcher::TrustDomain(Arc::from(td))))
            .map_err(trust_domain_error),
        [v] => match as_trust_domain(v) {
            Some(td) => Ok(matcher(SpiffeMatcher::TrustDomain(td.clone()))),
            None => Err(no_overload("spiffeMatchTrustDomain", args)),
        },
        _ => Err(no_overload("spiffeMatchTrustDomain", args)),
    }
}

fn is_member_of(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    match args {
        [id, td] => match (as_id(id), as_trust_domain(td)) {
            (Some((id_td, _)), Some(td)) => Ok(Value::Bool(id_td == td)),
            _ => Err(no_overload("isMemberOf", args)),
        },
        _ => Err(no_overload("isMemberOf", args)),
    }
}

fn path(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    match args {
        [v] => match as_id(v) {
            Some((_, path)) => Ok(Value::String(path.clone())),
            None => Err(no_overload("path", args)),
        },
        _ => Err(no_overload("path", args)),
    }
}

fn trust_domain(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    match args {
        [v] => match as_id(v) {
            Some((td, _)) => Ok(opaque(Opaque::SpiffeTrustDomain(td.clone()))),
            None => Err(no_overload("trustDomain", args)),
        },
        _ => Err(no_overload("trustDomain", args)),
    }
}

/// `td.id()`: the trust domain as a SPIFFE ID string, `spiffe://td`.
fn trust_domain_id(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    match args {
        [v] => match as_trust_domain(v) {
            Some(td) => Ok(Value::from(id_string(td, ""))),
            None => Err(no_overload("id", args)),
        },
        _ => Err(no_overload("id", args)),
    }
}

fn trust_domain_name(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    match args {
        [v] => match as_trust_domain(v) {
            Some(td) => Ok(Value::String(td.clone())),
            None => Err(no_overload("name", args)),
        },
        _ => Err(no_overload("name", args)),
    }
}

fn matches_id(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    let [m, id] = args else {
        return Err(no_overload("matchesID", args));
    };
    let Some(m) = as_matcher(m) else {
        return Err(no_overload("matchesID", args));
    };
    let (td, path): (Arc<str>, Arc<str>) = match id {
        Value::String(s) => {
            let id = parse_id(s).map_err(|e| EvalError::new(format!("invalid SPIFFE ID: {e}")))?;
            (Arc::from(id.trust_domain), Arc::from(id.path))
        }
        other => match as_id(other) {
            Some((td, path)) => (td.clone(), path.clone()),
            None => return Err(no_overload("matchesID", args)),
        },
    };
    let matched = match m {
        SpiffeMatcher::Any => true,
        SpiffeMatcher::OneOf(ids) => {
            let full = id_string(&td, &path);
            ids.iter().any(|x| **x == *full)
        }
        SpiffeMatcher::TrustDomain(expected) => *expected == td,
    };
    Ok(Value::Bool(matched))
}

#[cfg(test)]
mod tests {
    use crate::cel::testing::{assert_true, eval};

    #[test]
    fn ids_and_trust_domains() {
        for src in [
            "spiffeID('spiffe://cerbos.dev/ns/privileged').path() == '/ns/privileged'",
            "spiffeID('spiffe://cerbos.dev').path() == ''",
            "spiffeID('spiffe://cerbos.dev/ns/privileged').trustDomain() == spiffeTrustDomain('cerbos.dev')",
            "spiffeID('spiffe://cerbos.dev/ns/privileged').trustDomain().name() == 'cerbos.dev'",
            "spiffeID('spiffe://cerbos.dev/ns/privileged').isMemberOf(spiffeTrustDomain('spiffe://cerbos.dev'))",
            "!spiffeID('spiffe://cerbos.dev/x').isMemberOf(spiffeTrustDomain('example.com'))",
            "spiffeTrustDomain('cerbos.dev').id() == 'spiffe://cerbos.dev'",
            "spiffeTrustDomain(spiffeID('spiffe://a.b/c')).name() == 'a.b'",
            "spiffeID(spiffeID('spiffe://a/b')) == spiffeID('spiffe://a/b')",
        ] {
            assert_true(src);
        }
        for src in [
            "spiffeID('')",
            "spiffeID('http://cerbos.dev/x')",
            "spiffeID('spiffe://Cerbos.dev/x')",
            "spiffeID('spiffe:///x')",
            "spiffeID('spiffe://cerbos.dev/')",
            "spiffeID('spiffe://cerbos.dev//x')",
            "spiffeID('spiffe://cerbos.dev/./x')",
            "spiffeID('spiffe://cerbos.dev/a/..')",
            "spiffeID('spiffe://cerbos.dev/a b')",
            "spiffeTrustDomain('')",
            "spiffeTrustDomain('Cerbos.dev')",
            "spiffeTrustDomain('spiffe://cerbos.dev/')",
            "spiffeID(1)",
        ] {
            assert!(eval(src).is_err(), "{src}");
        }
    }

    #[test]
    fn matchers() {
        for src in [
            "spiffeMatchAny().matchesID(spiffeID('spiffe://a.b/c'))",
            "spiffeMatchAny().matchesID('spiffe://a.b/c')",
            "spiffeMatchExact(spiffeID('spiffe://a.b/c')).matchesID('spiffe://a.b/c')",
            "spiffeMatchExact('spiffe://a.b/c').matchesID(spiffeID('spiffe://a.b/c'))",
            "!spiffeMatchExact('spiffe://a.b/c').matchesID('spiffe://a.b/d')",
            "spiffeMatchOneOf(['spiffe://a.b/c', 'spiffe://a.b/d']).matchesID('spiffe://a.b/d')",
            "spiffeMatchOneOf([spiffeID('spiffe://a.b/c')]).matchesID('spiffe://a.b/c')",
            "!spiffeMatchOneOf([]).matchesID('spiffe://a.b/c')",
            "spiffeMatchTrustDomain('a.b').matchesID('spiffe://a.b/anything')",
            "spiffeMatchTrustDomain(spiffeTrustDomain('a.b')).matchesID(spiffeID('spiffe://a.b'))",
            "!spiffeMatchTrustDomain('a.b').matchesID('spiffe://x.y/z')",
        ] {
            assert_true(src);
        }
        for src in [
            "spiffeMatchAny(1)",
            "spiffeMatchOneOf(['spiffe://a.b/c', 'nope'])",
            "spiffeMatchOneOf([1])",
            "spiffeMatchExact('nope')",
            "spiffeMatchAny().matchesID('nope')",
            "spiffeMatchAny().matchesID(1)",
        ] {
            assert!(eval(src).is_err(), "{src}");
        }
    }
}
