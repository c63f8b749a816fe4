//! Request paths to routes: normalisation that agrees with what the app will see, and
//! path templates (`/documents/{id}`).
//!
//! The app (Starlette under uvicorn) routes on the percent-decoded path, so Gatehouse
//! matches on the decoded path too: `/documents/a%2Fb` is `/documents/a/b` to both.
//! Paths that could be read two ways (dot segments, empty segments, NUL, backslashes,
//! invalid UTF-8) are refused instead of guessed at: the request is denied.

use std::collections::BTreeMap;

use super::config::{AttributesConfig, ResourceConfig, RouteConfig};

/// Why a path was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// A `%` escape is malformed.
    #[error("malformed percent-encoding in path")]
    BadEscape,
    /// The decoded path is not UTF-8.
    #[error("path is not valid UTF-8")]
    NotUtf8,
    /// The path contains `.` or `..` segments, empty segments, NUL or backslashes.
    #[error("ambiguous path segment")]
    Ambiguous,
    /// The path does not start with `/`.
    #[error("path must start with '/'")]
    NotAbsolute,
}

/// A request target split into its decoded path and raw query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestPath {
    /// Percent-decoded path, trailing slash removed (except for `/`).
    pub path: String,
    /// The raw query string (without `?`).
    pub query: String,
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes a string (no `+` handling: that is for queries).
pub fn percent_decode(s: &str) -> Result<String, PathError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = b.get(i + 1).copied().and_then(hex);
            let l = b.get(i + 2).copied().and_then(hex);
            match (h, l) {
                (Some(h), Some(l)) => out.push(h * 16 + l),
                _ => return Err(PathError::BadEscape),
            }
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| PathError::NotUtf8)
}

/// Splits and normalises a request target (`/a/b?x=1`).
pub fn normalize(target: &str) -> Result<RequestPath, PathError> {
    let target = target.split('#').next().unwrap_or("");
    let (raw_path, query) = match target.split_once('?') {
        Some((p, q)) => (p, q.to_string()),
        None => (target, String::new()),
    };
    if !raw_path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let decoded = percent_decode(raw_path)?;
    if decoded.contains('\0') || decoded.contains('\\') {
        return Err(PathError::Ambiguous);
    }
    let mut path = decoded;
    if path.len() > 1 && path.ends_with('/') {
        path.pop();
    }
    if path.len() > 1
        && path[1..]
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err(PathError::Ambiguous);
    }
    Ok(RequestPath { path, query })
}

/// Decodes `application/x-www-form-urlencoded` query parameters.
pub fn query_params(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = percent_decode(&k.replace('+', " ")).ok()?;
            let v = percent_decode(&v.replace('+', " ")).ok()?;
            Some((k, v))
        })
        .collect()
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
    /// `{name:path}`: the rest of the path.
    Rest(String),
}

/// How a route matches paths.
#[derive(Clone, Debug)]
enum Matcher {
    Template(Vec<Segment>),
    Prefix(String),
}

/// Invalid route configuration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("route {index}: {message}")]
pub struct RouteError {
    /// Index of the route in the configuration.
    pub index: usize,
    /// What is wrong.
    pub message: String,
}

/// A compiled route.
#[derive(Clone, Debug)]
pub struct Route {
    matcher: Matcher,
    methods: Vec<String>,
    /// Public routes are allowed without a decision.
    pub public: bool,
    /// The resource.
    pub resource: Option<ResourceConfig>,
    action: Option<String>,
    actions: BTreeMap<String, String>,
    /// Attribute sources.
    pub attributes: AttributesConfig,
    /// Index in the configuration (for logs).
    pub index: usize,
}

impl Route {
    /// The action for an HTTP method.
    pub fn action_for(&self, method: &str) -> Option<String> {
        if let Some(a) = self.actions.get(method) {
            return Some(a.clone());
        }
        if let Some(a) = &self.action {
            return Some(a.clone());
        }
        default_action(method).map(str::to_string)
    }
}

/// Default action of an HTTP method.
pub fn default_action(method: &str) -> Option<&'static str> {
    match method {
        "GET" | "HEAD" => Some("read"),
        "POST" => Some("create"),
        "PUT" | "PATCH" => Some("update"),
        "DELETE" => Some("delete"),
        _ => None,
    }
}

fn parse_template(index: usize, t: &str) -> Result<Vec<Segment>, RouteError> {
    let err = |m: &str| RouteError {
        index,
        message: format!("path {t:?}: {m}"),
    };
    if !t.starts_with('/') {
        return Err(err("must start with '/'"));
    }
    let trimmed = t.trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok(Vec::new());
    }
    let segs: Vec<&str> = trimmed[1..].split('/').collect();
    let mut out = Vec::with_capacity(segs.len());
    for (i, s) in segs.iter().enumerate() {
        if let Some(inner) = s.strip_prefix('{').and_then(|x| x.strip_suffix('}')) {
            match inner.split_once(':') {
                Some((name, "path")) if i == segs.len() - 1 => {
                    out.push(Segment::Rest(name.to_string()))
                }
                Some((_, "path")) => return Err(err("{name:path} must be the last segment")),
                Some((_, conv)) => return Err(err(&format!("unknown converter {conv:?}"))),
                None if inner.is_empty() => return Err(err("empty parameter name")),
                None => out.push(Segment::Param(inner.to_string())),
            }
        } else if s.contains('{') || s.contains('}') {
            return Err(err("a parameter must be a whole segment"));
        } else if s.is_empty() {
            return Err(err("empty segment"));
        } else {
            out.push(Segment::Literal(s.to_string()));
        }
    }
    Ok(out)
}

fn match_template(segs: &[Segment], path: &str) -> Option<Vec<(String, String)>> {
    let parts: Vec<&str> = if path == "/" {
        Vec::new()
    } else {
        path[1..].split('/').collect()
    };
    let mut params = Vec::new();
    let mut i = 0;
    for seg in segs {
        match seg {
            Segment::Literal(l) => {
                if parts.get(i) != Some(&l.as_str()) {
                    return None;
                }
                i += 1;
            }
            Segment::Param(name) => {
                let p = parts.get(i)?;
                params.push((name.clone(), (*p).to_string()));
                i += 1;
            }
            Segment::Rest(name) => {
                if i >= parts.len() {
                    return None;
                }
                params.push((name.clone(), parts[i..].join("/")));
                i = parts.len();
            }
        }
    }
    (i == parts.len()).then_some(params)
}

/// Maps normalised paths and methods to routes; first match wins.
#[derive(Clone, Debug, Default)]
pub struct RouteMapper {
    routes: Vec<Route>,
}

/// A matched route with its path parameters.
#[derive(Clone, Debug)]
pub struct RouteMatch<'r> {
    /// The route.
    pub route: &'r Route,
    /// Path parameters, in template order.
    pub params: Vec<(String, String)>,
}

impl RouteMapper {
    /// Compiles and validates routes.
    pub fn new(configs: &[RouteConfig]) -> Result<RouteMapper, Vec<RouteError>> {
        let mut routes = Vec::new();
        let mut errors = Vec::new();
        for (index, c) in configs.iter().enumerate() {
            let err = |m: &str| RouteError {
                index,
                message: m.to_string(),
            };
            let matcher = match (&c.path, &c.prefix) {
                (Some(p), None) => match parse_template(index, p) {
                    Ok(s) => Matcher::Template(s),
                    Err(e) => {
                        errors.push(e);
                        continue;
                    }
                },
                (None, Some(p)) if p.starts_with('/') => Matcher::Prefix(p.clone()),
                (None, Some(_)) => {
                    errors.push(err("prefix must start with '/'"));
                    continue;
                }
                _ => {
                    errors.push(err("give exactly one of `path` and `prefix`"));
                    continue;
                }
            };
            if !c.public && c.resource.is_none() {
                errors.push(err("a non-public route needs a `resource`"));
                continue;
            }
            let methods: Vec<String> = c.methods.iter().map(|m| m.to_ascii_uppercase()).collect();
            if !c.public && c.action.is_none() {
                let uncovered: Vec<&String> = methods
                    .iter()
                    .filter(|m| default_action(m).is_none() && !c.actions.contains_key(*m))
                    .collect();
                if !uncovered.is_empty() {
                    errors.push(err(&format!("no action for methods {uncovered:?}")));
                    continue;
                }
            }
            routes.push(Route {
                matcher,
                methods,
                public: c.public,
                resource: c.resource.clone(),
                action: c.action.clone(),
                actions: c
                    .actions
                    .iter()
                    .map(|(k, v)| (k.to_ascii_uppercase(), v.clone()))
                    .collect(),
                attributes: c.attributes.clone(),
                index,
            });
        }
        if errors.is_empty() {
            Ok(RouteMapper { routes })
        } else {
            Err(errors)
        }
    }

    /// Finds the route for a normalised path and method.
    pub fn find(&self, path: &str, method: &str) -> Option<RouteMatch<'_>> {
        self.routes.iter().find_map(|r| {
            if !r.methods.is_empty() && !r.methods.iter().any(|m| m == method) {
                return None;
            }
            let params = match &r.matcher {
                Matcher::Template(segs) => match_template(segs, path)?,
                Matcher::Prefix(p) => {
                    let p = p.trim_end_matches('/');
                    let ok = path == p
                        || path.starts_with(p) && path[p.len()..].starts_with('/')
                        || p.is_empty();
                    if !ok {
                        return None;
                    }
                    Vec::new()
                }
            };
            Some(RouteMatch { route: r, params })
        })
    }
}

/// Fills `{name}` placeholders from path parameters.
pub fn fill_template(template: &str, params: &[(String, String)], encode: bool) -> String {
    let mut out = template.to_string();
    for (k, v) in params {
        let value = if encode {
            percent_encode_segment(v)
        } else {
            v.clone()
        };
        out = out.replace(&format!("{{{k}}}"), &value);
    }
    out
}

/// Percent-encodes a value for use as one URL path segment.
pub fn percent_encode_segment(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_like_the_app() {
        assert_eq!(normalize("/documents/1?x=2").unwrap().path, "/documents/1");
        assert_eq!(normalize("/documents/1/").unwrap().path, "/documents/1");
        assert_eq!(
            normalize("/documents/a%2Fb").unwrap().path,
            "/documents/a/b"
        );
        assert_eq!(normalize("/").unwrap().path, "/");
        assert_eq!(normalize("/documents/../admin"), Err(PathError::Ambiguous));
        assert_eq!(
            normalize("/documents/%2e%2e/admin"),
            Err(PathError::Ambiguous)
        );
        assert_eq!(normalize("//documents/2"), Err(PathError::Ambiguous));
        assert_eq!(normalize("/documents/%zz"), Err(PathError::BadEscape));
        assert_eq!(normalize("/documents/%00"), Err(PathError::Ambiguous));
        assert_eq!(normalize("/documents/%ff"), Err(PathError::NotUtf8));
        assert_eq!(normalize("documents"), Err(PathError::NotAbsolute));
        assert_eq!(
            query_params("a=1&b=x+y&c=%2F"),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x y".into()),
                ("c".into(), "/".into())
            ]
        );
    }

    fn route(path: &str, methods: &[&str]) -> RouteConfig {
        RouteConfig {
            path: Some(path.into()),
            prefix: None,
            methods: methods.iter().map(|m| m.to_string()).collect(),
            public: false,
            resource: Some(ResourceConfig {
                kind: "document".into(),
                id: "{id}".into(),
                policy_version: String::new(),
                scope: String::new(),
            }),
            action: None,
            actions: BTreeMap::new(),
            attributes: AttributesConfig::default(),
        }
    }

    #[test]
    fn templates_match_whole_segments() {
        let m = RouteMapper::new(&[
            route("/documents/{id}", &[]),
            route("/files/{rest:path}", &["GET"]),
        ])
        .unwrap();
        let hit = m.find("/documents/42", "GET").unwrap();
        assert_eq!(hit.params, vec![("id".to_string(), "42".to_string())]);
        assert!(m.find("/documents/42/secrets", "GET").is_none());
        assert!(m.find("/documents", "GET").is_none());
        let hit = m.find("/files/a/b/c", "GET").unwrap();
        assert_eq!(hit.params[0].1, "a/b/c");
        assert!(m.find("/files/a", "POST").is_none());
        assert_eq!(hit.route.action_for("GET").as_deref(), Some("read"));
        assert_eq!(hit.route.action_for("TRACE"), None);
    }

    #[test]
    fn bad_routes_are_rejected() {
        assert!(RouteMapper::new(&[route("documents/{id}", &[])]).is_err());
        assert!(RouteMapper::new(&[route("/a/{x:int}", &[])]).is_err());
        assert!(RouteMapper::new(&[route("/a/{x:path}/b", &[])]).is_err());
        assert!(RouteMapper::new(&[route("/a", &["TRACE"])]).is_err());
    }

    #[test]
    fn templates_fill_and_encode() {
        let p = vec![("id".to_string(), "a b/c".to_string())];
        assert_eq!(
            fill_template("http://x/{id}/attrs", &p, true),
            "http://x/a%20b%2Fc/attrs"
        );
        assert_eq!(fill_template("{id}", &p, false), "a b/c");
    }
}
