//! Request paths to routes: normalisation that agrees with what the app will see, and
//! path templates (`/documents/{id}`).
//!
//! The app (Starlette under uvicorn) routes on the percent-decoded path, so Gatehouse
//! matches on the decoded path too: `/documents/a%2Fb` is `/documents/a/b` to both.
//! Paths that could be read two ways (dot segments, empty segments, NUL, backslashes,
//! invalid UTF-8) are refused instead of guessed at: the request is denied.

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::config::{AttributesConfig, ResourceConfig, RouteConfig};

/// Why a path was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PathError {
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

/// A request target split into its decoded path and raw query, borrowed from the
/// target when nothing is decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RequestPath<'a> {
    /// Percent-decoded path, trailing slash removed (except for `/`).
    pub(crate) path: Cow<'a, str>,
    /// The raw query string (without `?`).
    pub(crate) query: &'a str,
}

/// Percent-decodes a string (no `+` handling: that is for queries).
pub(crate) fn percent_decode(s: &str) -> Result<String, PathError> {
    crate::percent::decode(s).map_err(|e| match e {
        crate::percent::DecodeError::BadEscape => PathError::BadEscape,
        crate::percent::DecodeError::NotUtf8 => PathError::NotUtf8,
    })
}

/// Splits and normalises a request target (`/a/b?x=1#f`): the path ends at the first
/// `?` or `#`, the query at the first `#` after it. One pass over the bytes for the
/// split (noting `%` escapes on the way), one for the checks; the path is copied only
/// when it has `%` escapes.
pub(crate) fn normalize(target: &str) -> Result<RequestPath<'_>, PathError> {
    let mut end = target.len();
    let mut escaped = false;
    for (i, b) in target.bytes().enumerate() {
        match b {
            b'?' | b'#' => {
                end = i;
                break;
            }
            b'%' => escaped = true,
            _ => {}
        }
    }
    let (raw_path, rest) = target.split_at(end);
    let query = match rest.strip_prefix('?') {
        Some(q) => q.bytes().position(|b| b == b'#').map_or(q, |at| &q[..at]),
        None => "",
    };
    if !raw_path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let mut path = if escaped {
        Cow::Owned(percent_decode(raw_path)?)
    } else {
        Cow::Borrowed(raw_path)
    };
    if path.len() > 1 && path.ends_with('/') {
        match &mut path {
            Cow::Borrowed(p) => *p = &p[..p.len() - 1],
            Cow::Owned(p) => {
                p.pop();
            }
        }
    }
    if ambiguous(&path) {
        return Err(PathError::Ambiguous);
    }
    Ok(RequestPath { path, query })
}

/// Whether a decoded path (trailing slash removed) has NUL, a backslash, or (below the
/// root) an empty, `.` or `..` segment.
fn ambiguous(path: &str) -> bool {
    let bytes = path.as_bytes();
    if bytes.len() <= 1 {
        return bytes.iter().any(|&b| b == 0 || b == b'\\');
    }
    // One pass: each segment's length and how many of its bytes are dots (a segment of
    // one or two dots only is `.` or `..`).
    let (mut len, mut dots) = (0usize, 0usize);
    let dubious = |len: usize, dots: usize| len == 0 || (dots == len && len <= 2);
    for &b in &bytes[1..] {
        match b {
            b'/' => {
                if dubious(len, dots) {
                    return true;
                }
                (len, dots) = (0, 0);
            }
            0 | b'\\' => return true,
            b'.' => (len, dots) = (len + 1, dots + 1),
            _ => len += 1,
        }
    }
    dubious(len, dots)
}

/// Decodes `application/x-www-form-urlencoded` query parameters.
pub(crate) fn query_params(query: &str) -> Vec<(String, String)> {
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
    /// `{name}` or `{name:int}` (Starlette's converters: `str`, `int`, `float`, `uuid`).
    Param(String, Converter),
    /// `{name:path}`: the rest of the path.
    Rest(String),
}

/// What a typed path parameter accepts, as Starlette's converters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Converter {
    /// Any non-empty segment.
    Str,
    /// Digits (`[0-9]+`).
    Int,
    /// `[0-9]+(\.[0-9]+)?`.
    Float,
    /// A hyphenated UUID (`8-4-4-4-12` hex digits).
    Uuid,
}

impl Converter {
    fn from_name(name: &str) -> Option<Converter> {
        match name {
            "str" => Some(Converter::Str),
            "int" => Some(Converter::Int),
            "float" => Some(Converter::Float),
            "uuid" => Some(Converter::Uuid),
            _ => None,
        }
    }

    /// Whether a path segment matches.
    fn accepts(self, s: &str) -> bool {
        let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
        match self {
            Converter::Str => !s.is_empty(),
            Converter::Int => digits(s),
            Converter::Float => match s.split_once('.') {
                Some((i, f)) => digits(i) && digits(f),
                None => digits(s),
            },
            Converter::Uuid => {
                let groups: Vec<&str> = s.split('-').collect();
                groups.len() == 5
                    && groups
                        .iter()
                        .zip([8, 4, 4, 4, 12])
                        .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
            }
        }
    }
}

/// How a route matches paths.
#[derive(Clone, Debug)]
enum Matcher {
    Template(Vec<Segment>),
    Prefix(String),
}

/// Invalid route configuration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("route {route}: {message}")]
pub(crate) struct RouteError {
    /// Index of the route in the configuration (0-based; the configuration loader turns
    /// it into the route's line).
    pub(crate) index: usize,
    /// The route as a reader knows it: its methods and path (`POST /documents/{id}/share`).
    route: String,
    /// The key of the route the problem is in (`["resource", "id"]`); empty for the route
    /// itself.
    pub(crate) field: &'static [&'static str],
    /// Where in that key's text the problem starts, in characters.
    pub(crate) offset: Option<usize>,
    /// What is wrong.
    message: String,
}

/// What a route's path names, which decides whether the HTTP method may supply the
/// action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PathShape {
    /// A collection: the path has no parameter (`/documents`).
    Collection,
    /// One item: the path's only parameter is its last segment and is the whole resource
    /// id (`/documents/{id}`).
    Item,
    /// Anything else: a sub-resource or verb segment after the id
    /// (`/documents/{id}/share`), a nested collection (`/orgs/{org}/documents`), a
    /// prefix. Such a route must name its action.
    Beyond,
}

impl PathShape {
    /// How the shape reads in the route table and in errors.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            PathShape::Collection => "a collection path",
            PathShape::Item => "an item path",
            PathShape::Beyond => "a path beyond the resource id",
        }
    }
}

/// Where a route's action for a method comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ActionSource {
    /// The route's `actions` map, for this method.
    PerMethod,
    /// The route's `action`.
    Route,
    /// The method's default, allowed on collection and item paths only.
    Default(PathShape),
    /// The route's `plan.action`: planned, not decided.
    Plan,
}

/// Placeholders filled from the request besides path parameters. There are none: every
/// `{name}` names a path parameter.
pub(crate) const BUILTIN_PLACEHOLDERS: &[&str] = &[];

/// The `{name}` placeholders of a template, with their character offsets; an unclosed
/// or malformed placeholder is an error at its offset.
pub(crate) fn placeholders(template: &str) -> Result<Vec<(usize, &str)>, (usize, String)> {
    let mut out = Vec::new();
    let mut rest = template;
    let mut offset = 0;
    while let Some(open) = rest.find(['{', '}']) {
        let at = offset + rest[..open].chars().count();
        if rest.as_bytes()[open] == b'}' {
            return Err((at, "a `}` without its `{`".into()));
        }
        let after = &rest[open + 1..];
        let Some(close) = after
            .find(['{', '}'])
            .filter(|&c| after.as_bytes()[c] == b'}')
        else {
            return Err((at, "a `{` without its `}`".into()));
        };
        let name = &after[..close];
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err((at, format!("{{{name}}} is not a placeholder name")));
        }
        out.push((at, name));
        let consumed = open + 1 + close + 1;
        offset += rest[..consumed].chars().count();
        rest = &rest[consumed..];
    }
    Ok(out)
}

/// A compiled route.
#[derive(Clone, Debug)]
pub(crate) struct Route {
    matcher: Matcher,
    methods: Vec<String>,
    /// Public routes are allowed without a decision.
    pub(crate) public: bool,
    /// The resource.
    pub(crate) resource: Option<ResourceConfig>,
    action: Option<String>,
    actions: BTreeMap<String, String>,
    /// Attribute sources.
    pub(crate) attributes: AttributesConfig,
    /// The attributes read from request headers, built once: the attribute's key and
    /// the header's name in lower case, in key order, each key once (the request's
    /// attribute map appends them in this order).
    pub(crate) header_attrs: Vec<(crate::cel::Key, String)>,
    /// Index in the configuration (for logs).
    pub(crate) index: usize,
    /// Enforcement mode, when the route sets one.
    pub(crate) mode: Option<super::config::Mode>,
    shape: PathShape,
    template: String,
    /// The action planned, on a plan route.
    plan: Option<String>,
    /// The headers the backend gets on allow.
    pub(crate) backend_headers: super::config::HeaderSet,
}

impl Route {
    /// The action for an HTTP method.
    pub(crate) fn action_for(&self, method: &str) -> Option<String> {
        self.action_with_source(method).map(|(a, _)| a.to_string())
    }

    /// The action for an HTTP method and where it comes from.
    pub(crate) fn action_with_source(&self, method: &str) -> Option<(&str, ActionSource)> {
        if let Some(a) = &self.plan {
            return Some((a, ActionSource::Plan));
        }
        if let Some(a) = self.actions.get(method) {
            return Some((a, ActionSource::PerMethod));
        }
        if let Some(a) = &self.action {
            return Some((a, ActionSource::Route));
        }
        if self.shape == PathShape::Beyond {
            return None;
        }
        default_action(method).map(|a| (a, ActionSource::Default(self.shape)))
    }

    /// The methods the route is limited to (empty: every method).
    pub(crate) fn methods(&self) -> &[String] {
        &self.methods
    }

    /// The path template or prefix as configured (a prefix ends in `/**`).
    pub(crate) fn template(&self) -> &str {
        &self.template
    }

    /// The action planned, when the route asks for a plan instead of a decision.
    pub(crate) fn plan(&self) -> Option<&str> {
        self.plan.as_deref()
    }
}

/// Default action of an HTTP method.
pub(crate) fn default_action(method: &str) -> Option<&'static str> {
    match method {
        "GET" | "HEAD" => Some("read"),
        "POST" => Some("create"),
        "PUT" | "PATCH" => Some("update"),
        "DELETE" => Some("delete"),
        _ => None,
    }
}

fn parse_template(index: usize, route: &str, t: &str) -> Result<Vec<Segment>, RouteError> {
    let err = |m: &str| RouteError {
        index,
        route: route.to_string(),
        field: &["path"],
        offset: None,
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
                Some(("", _)) => return Err(err("empty parameter name")),
                Some((name, conv)) => match Converter::from_name(conv) {
                    Some(c) => out.push(Segment::Param(name.to_string(), c)),
                    None => return Err(err(&format!("unknown converter {conv:?}"))),
                },
                None if inner.is_empty() => return Err(err("empty parameter name")),
                None => out.push(Segment::Param(inner.to_string(), Converter::Str)),
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

/// How a route reads in errors and tables: `POST /documents/{id}/share`.
fn route_name(c: &RouteConfig) -> String {
    let path = match (&c.path, &c.prefix) {
        (Some(p), _) => p.clone(),
        (None, Some(p)) => format!("{}/**", p.trim_end_matches('/')),
        (None, None) => "(no path)".into(),
    };
    if c.methods.is_empty() {
        path
    } else {
        let methods: Vec<String> = c.methods.iter().map(|m| m.to_ascii_uppercase()).collect();
        format!("{} {path}", methods.join(","))
    }
}

/// The shape of a template path given the route's resource id: a collection has no
/// parameter at all, an item exactly one, last, that is the whole resource id.
fn path_shape(segs: &[Segment], resource_id: &str) -> PathShape {
    let mut params = segs.iter().filter_map(|s| match s {
        Segment::Param(n, _) | Segment::Rest(n) => Some(n),
        Segment::Literal(_) => None,
    });
    match (params.next(), params.next(), segs.last()) {
        (None, _, _) => PathShape::Collection,
        (Some(n), None, Some(Segment::Param(last, _) | Segment::Rest(last)))
            if n == last && resource_id == format!("{{{n}}}") =>
        {
            PathShape::Item
        }
        _ => PathShape::Beyond,
    }
}

/// Checks that every `{name}` of a template is a path parameter (or a built-in).
fn check_template(
    errors: &mut Vec<RouteError>,
    err: &dyn Fn(&'static [&'static str], Option<usize>, String) -> RouteError,
    field: &'static [&'static str],
    template: &str,
    params: &[&str],
) {
    match placeholders(template) {
        Err((at, m)) => errors.push(err(field, Some(at), m)),
        Ok(found) => {
            for (at, name) in found {
                if params.contains(&name) || BUILTIN_PLACEHOLDERS.contains(&name) {
                    continue;
                }
                let known = if params.is_empty() {
                    "the path has no parameters".to_string()
                } else {
                    let names: Vec<String> = params.iter().map(|p| format!("{{{p}}}")).collect();
                    format!("the path's parameters are {}", names.join(", "))
                };
                let hint = crate::suggest::did_you_mean(name, params.iter().copied())
                    .map(|h| format!("; did you mean {{{h}}}?"))
                    .unwrap_or_default();
                errors.push(err(
                    field,
                    Some(at),
                    format!("{{{name}}} is not a path parameter ({known}){hint}"),
                ));
            }
        }
    }
}

/// Checks that a value that is not a template has no placeholder (it would be taken
/// literally).
fn check_literal(
    errors: &mut Vec<RouteError>,
    err: &dyn Fn(&'static [&'static str], Option<usize>, String) -> RouteError,
    field: &'static [&'static str],
    value: &str,
) {
    if let Some(at) = value.find(['{', '}']) {
        errors.push(err(
            field,
            Some(value[..at].chars().count()),
            "placeholders are not filled in here: the text would be used literally".into(),
        ));
    }
}

fn compile_route(index: usize, c: &RouteConfig) -> Result<Route, Vec<RouteError>> {
    let name = route_name(c);
    let err = |field: &'static [&'static str], offset: Option<usize>, message: String| RouteError {
        index,
        route: name.clone(),
        field,
        offset,
        message,
    };
    let fail = |m: &str| vec![err(&[], None, m.to_string())];
    let (matcher, template) = match (&c.path, &c.prefix) {
        (Some(p), None) => (
            Matcher::Template(parse_template(index, &name, p).map_err(|e| vec![e])?),
            p.clone(),
        ),
        (None, Some(p)) if p.starts_with('/') => (
            Matcher::Prefix(p.clone()),
            format!("{}/**", p.trim_end_matches('/')),
        ),
        (None, Some(_)) => return Err(fail("prefix must start with '/'")),
        _ => return Err(fail("give exactly one of `path` and `prefix`")),
    };
    if !c.public && c.resource.is_none() {
        return Err(fail("a non-public route needs a `resource`"));
    }
    let params = param_names(&matcher);
    let mut errors = Vec::new();
    check_fields(&mut errors, &err, c, &params);
    let shape = match &matcher {
        Matcher::Template(segs) => {
            path_shape(segs, c.resource.as_ref().map_or("", |r| r.id.as_str()))
        }
        Matcher::Prefix(_) => PathShape::Beyond,
    };
    if let Some(plan) = &c.plan {
        check_plan(&mut errors, &err, c, plan);
    }
    let methods: Vec<String> = c.methods.iter().map(|m| m.to_ascii_uppercase()).collect();
    let actions: BTreeMap<String, String> = c
        .actions
        .iter()
        .map(|(k, v)| (k.to_ascii_uppercase(), v.clone()))
        .collect();
    if !c.public && c.action.is_none() && c.plan.is_none() {
        check_actions(&mut errors, &err, shape, &methods, &actions);
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Route {
        matcher,
        methods,
        public: c.public,
        resource: c.resource.clone(),
        action: c.action.clone(),
        actions,
        attributes: c.attributes.clone(),
        header_attrs: header_attrs(&c.attributes),
        index,
        mode: c.mode,
        shape,
        template,
        plan: c.plan.as_ref().map(|p| p.action.clone()),
        backend_headers: super::config::HeaderSet::of(c.backend_headers.as_deref()),
    })
}

/// The names of the path template's parameters (`{name}`, `{name...}`); none for a
/// prefix.
fn param_names(matcher: &Matcher) -> Vec<&str> {
    match matcher {
        Matcher::Template(segs) => segs
            .iter()
            .filter_map(|s| match s {
                Segment::Param(n, _) | Segment::Rest(n) => Some(n.as_str()),
                Segment::Literal(_) => None,
            })
            .collect(),
        Matcher::Prefix(_) => Vec::new(),
    }
}

/// The attributes read from request headers: the attribute's key and the header's
/// lowercase name.
fn header_attrs(attributes: &AttributesConfig) -> Vec<(crate::cel::Key, String)> {
    attributes
        .headers
        .iter()
        .map(|(name, header)| {
            (
                crate::cel::Key::String(std::sync::Arc::from(name.as_str())),
                header.to_ascii_lowercase(),
            )
        })
        .collect()
}

/// The resource's and attributes' fields: templates name only the path's parameters,
/// literals have no placeholders.
fn check_fields(
    errors: &mut Vec<RouteError>,
    err: &dyn Fn(&'static [&'static str], Option<usize>, String) -> RouteError,
    c: &RouteConfig,
    params: &[&str],
) {
    if let Some(r) = &c.resource {
        check_template(errors, err, &["resource", "id"], &r.id, params);
        check_template(errors, err, &["resource", "scope"], &r.scope, params);
        check_literal(errors, err, &["resource", "kind"], &r.kind);
        check_literal(
            errors,
            err,
            &["resource", "policyVersion"],
            &r.policy_version,
        );
    }
    let a = &c.attributes;
    if let Some(fetch) = &a.fetch {
        check_template(
            errors,
            err,
            &["attributes", "fetch", "url"],
            &fetch.url,
            params,
        );
    }
    for (attr, header) in &a.headers {
        check_literal(errors, err, &["attributes", "headers"], attr);
        check_literal(errors, err, &["attributes", "headers"], header);
    }
    for (attr, param) in &a.query {
        check_literal(errors, err, &["attributes", "query"], attr);
        check_literal(errors, err, &["attributes", "query"], param);
    }
}

/// A route without `action` (not public, not a plan route) takes its action from the
/// method: every method needs one (`actions`, or the default for a path that ends at
/// the resource id).
fn check_actions(
    errors: &mut Vec<RouteError>,
    err: &dyn Fn(&'static [&'static str], Option<usize>, String) -> RouteError,
    shape: PathShape,
    methods: &[String],
    actions: &BTreeMap<String, String>,
) {
    if shape == PathShape::Beyond {
        let covered = !methods.is_empty() && methods.iter().all(|m| actions.contains_key(m));
        if !covered {
            errors.push(err(
                &[],
                None,
                "the path goes beyond the resource id (a sub-resource or verb segment), so \
                 the HTTP method does not say what is being done: name it with \
                 `action: <name>` (or `actions` for every listed method)"
                    .into(),
            ));
        }
    } else {
        let uncovered: Vec<&String> = methods
            .iter()
            .filter(|m| default_action(m).is_none() && !actions.contains_key(*m))
            .collect();
        if !uncovered.is_empty() {
            errors.push(err(
                &[],
                None,
                format!("no action for methods {uncovered:?}"),
            ));
        }
    }
}

/// A plan route names its one action in `plan` and covers every resource of its kind:
/// no principal-free `public`, no decided `action`/`actions`, no resource `id`.
fn check_plan(
    errors: &mut Vec<RouteError>,
    err: &dyn Fn(&'static [&'static str], Option<usize>, String) -> RouteError,
    c: &RouteConfig,
    plan: &super::config::PlanConfig,
) {
    if c.public {
        errors.push(err(
            &["plan"],
            None,
            "a public route has no principal to plan for: drop `public` or `plan`".into(),
        ));
    }
    if c.action.is_some() {
        errors.push(err(
            &["action"],
            None,
            "a plan route decides nothing: its action is `plan.action`; drop `action`".into(),
        ));
    }
    if !c.actions.is_empty() {
        errors.push(err(
            &["actions"],
            None,
            "a plan route decides nothing: its action is `plan.action`; drop `actions`".into(),
        ));
    }
    if let Some(r) = &c.resource
        && !r.id.is_empty()
    {
        errors.push(err(
            &["resource", "id"],
            None,
            "a plan route covers every resource of its kind: drop `id` (the filter says which)"
                .into(),
        ));
    }
    if plan.action.trim().is_empty() {
        errors.push(err(
            &["plan", "action"],
            None,
            "the action planned must not be empty".into(),
        ));
    }
    check_literal(errors, err, &["plan", "action"], &plan.action);
}

/// The path parameters of `path` under the template `segs`, borrowed from both (no
/// copies): `{rest:path}` takes what is left of the path, slashes included.
fn match_template<'r, 'p>(segs: &'r [Segment], path: &'p str) -> Option<Params<'r, 'p>> {
    // The segments not matched yet, as `path[1..].split('/')` would give them.
    let mut rest = if path == "/" { None } else { path.get(1..) };
    let mut params = Params::new();
    for seg in segs {
        match seg {
            Segment::Literal(l) => {
                if next_segment(&mut rest)? != l.as_str() {
                    return None;
                }
            }
            Segment::Param(name, conv) => {
                let p = next_segment(&mut rest).filter(|p| conv.accepts(p))?;
                params.push((name.as_str(), p));
            }
            Segment::Rest(name) => {
                params.push((name.as_str(), rest.take()?));
            }
        }
    }
    rest.is_none().then_some(params)
}

/// The next `/`-separated segment of `rest` (none left: `None`). Segments are short: a
/// plain byte scan finds the `/` with less work than a string search.
fn next_segment<'p>(rest: &mut Option<&'p str>) -> Option<&'p str> {
    let r = (*rest)?;
    Some(match r.bytes().position(|b| b == b'/') {
        Some(at) => {
            // `/` is ASCII: both sides are on character boundaries.
            *rest = r.get(at + 1..);
            &r[..at]
        }
        None => {
            *rest = None;
            r
        }
    })
}

/// Path parameters, in template order: names from the route, values from the path
/// (inline up to four: a route match allocates nothing).
pub(crate) type Params<'r, 'p> = smallvec::SmallVec<[(&'r str, &'p str); 4]>;

/// Maps normalised paths and methods to routes; first match wins.
#[derive(Clone, Debug, Default)]
pub(crate) struct RouteMapper {
    routes: Vec<Route>,
}

/// A matched route with its path parameters.
#[derive(Clone, Debug)]
pub(crate) struct RouteMatch<'r, 'p> {
    /// The route.
    pub(crate) route: &'r Route,
    /// Path parameters, in template order.
    pub(crate) params: Params<'r, 'p>,
}

impl RouteMapper {
    /// Compiles and validates routes: every error of every route is reported.
    pub(crate) fn new(configs: &[RouteConfig]) -> Result<RouteMapper, Vec<RouteError>> {
        let mut routes = Vec::new();
        let mut errors = Vec::new();
        for (index, c) in configs.iter().enumerate() {
            match compile_route(index, c) {
                Ok(r) => routes.push(r),
                Err(mut e) => errors.append(&mut e),
            }
        }
        if errors.is_empty() {
            Ok(RouteMapper { routes })
        } else {
            Err(errors)
        }
    }

    /// The routes, in matching order.
    pub(crate) fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Finds the route for a normalised path and method.
    pub(crate) fn find<'p>(&self, path: &'p str, method: &str) -> Option<RouteMatch<'_, 'p>> {
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
                    Params::new()
                }
            };
            Some(RouteMatch { route: r, params })
        })
    }
}

/// Fills `{name}` placeholders from path parameters, in one pass over the template: a
/// value is never searched for placeholders itself (a path segment spelled `{other}`
/// stays as sent), and a placeholder without a parameter stays as written.
pub(crate) fn fill_template(template: &str, params: &[(&str, &str)], encode: bool) -> String {
    if !template.contains('{') {
        // Nothing to fill (an empty scope template, a fixed id): no room for the values.
        return template.to_string();
    }
    // The usual id template, one whole placeholder (`{id}`): the value itself.
    if let Some(name) = template
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .filter(|n| !n.bytes().any(|b| b == b'{' || b == b'}'))
    {
        return match params.iter().find(|(k, _)| *k == name) {
            Some((_, v)) if encode => encode_segment(v).into_owned(),
            Some((_, v)) => (*v).to_string(),
            None => template.to_string(),
        };
    }
    let values: usize = params.iter().map(|(_, v)| v.len()).sum();
    let mut out = String::with_capacity(template.len() + values);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let found = after.find('}').and_then(|close| {
            let name = &after[..close];
            params
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (close, v))
        });
        match found {
            Some((close, v)) => {
                if encode {
                    out.push_str(&encode_segment(v));
                } else {
                    out.push_str(v);
                }
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Percent-encodes a value for use as one URL path segment (the tests' spelling).
#[cfg(test)]
fn percent_encode_segment(v: &str) -> String {
    encode_segment(v).into_owned()
}

/// A value percent-encoded for use as one URL path segment: everything but RFC 3986's
/// unreserved characters (so `/` too, unlike the identity headers' encoding); borrowed
/// when nothing needs encoding.
fn encode_segment(v: &str) -> std::borrow::Cow<'_, str> {
    crate::percent::encode(v, |b| {
        b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
    })
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

    /// Issue 15: the one-pass split and check read every target as the reading they
    /// replaced (`position` + `contains('%')` for the split, `split('/')` for the check),
    /// results and errors alike, on every target of up to 5 characters over the
    /// characters that matter.
    #[test]
    fn normalize_agrees_with_the_plain_reading() {
        fn plain(target: &str) -> Result<RequestPath<'_>, PathError> {
            let end = target
                .bytes()
                .position(|b| b == b'?' || b == b'#')
                .unwrap_or(target.len());
            let (raw_path, rest) = target.split_at(end);
            let query = match rest.strip_prefix('?') {
                Some(q) => q.split_once('#').map_or(q, |(q, _)| q),
                None => "",
            };
            if !raw_path.starts_with('/') {
                return Err(PathError::NotAbsolute);
            }
            let mut path = if raw_path.contains('%') {
                Cow::Owned(percent_decode(raw_path)?)
            } else {
                Cow::Borrowed(raw_path)
            };
            if path.len() > 1 && path.ends_with('/') {
                path.to_mut().pop();
            }
            let b = path.as_bytes();
            let ambiguous = if b.len() <= 1 {
                b.iter().any(|&b| b == 0 || b == b'\\')
            } else {
                b[1..].split(|&b| b == b'/').any(|seg| {
                    matches!(seg, b"" | b"." | b"..") || seg.iter().any(|&b| b == 0 || b == b'\\')
                })
            };
            if ambiguous {
                return Err(PathError::Ambiguous);
            }
            Ok(RequestPath { path, query })
        }
        let chars = ['/', '.', 'a', '%', '2', 'e', '?', '#', '\\', '\0'];
        let mut targets = vec![String::new()];
        let mut n = 0;
        for _ in 0..5 {
            let mut next = Vec::new();
            for t in &targets {
                for c in chars {
                    let t = format!("{t}{c}");
                    assert_eq!(normalize(&t), plain(&t), "{t:?}");
                    assert_eq!(
                        normalize(&format!("/{t}")),
                        plain(&format!("/{t}")),
                        "/{t:?}"
                    );
                    n += 1;
                    next.push(t);
                }
            }
            targets = next;
        }
        assert_eq!(n, 10 + 100 + 1_000 + 10_000 + 100_000);
        assert_eq!(normalize("//").unwrap().path, "/");
        assert_eq!(normalize("/a/.../b").unwrap().path, "/a/.../b");
        assert_eq!(normalize("/a/..").unwrap_err(), PathError::Ambiguous);
    }

    /// Issue 15: a template that is one whole placeholder is filled as the general
    /// reading fills it (encoded or not; a placeholder without a parameter stays).
    #[test]
    fn a_whole_placeholder_template_is_the_value() {
        let p = [("id", "a b/c"), ("x", "")];
        assert_eq!(fill_template("{id}", &p, false), "a b/c");
        assert_eq!(fill_template("{id}", &p, true), "a%20b%2Fc");
        assert_eq!(fill_template("{x}", &p, true), "");
        assert_eq!(fill_template("{nope}", &p, false), "{nope}");
        assert_eq!(fill_template("{}", &p, false), "{}");
        assert_eq!(fill_template("{id}}", &p, false), "a b/c}");
        assert_eq!(fill_template("{{id}", &p, false), "{a b/c");
        assert_eq!(fill_template("{id}{x}", &p, false), "a b/c");
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
            mode: None,
            plan: None,
            backend_headers: None,
        }
    }

    #[test]
    fn templates_match_whole_segments() {
        let mut files = route("/files/{rest:path}", &["GET"]);
        files.resource.as_mut().unwrap().id = "{rest}".into();
        let m = RouteMapper::new(&[route("/documents/{id}", &[]), files]).unwrap();
        let hit = m.find("/documents/42", "GET").unwrap();
        assert_eq!(hit.params.as_slice(), [("id", "42")]);
        assert!(m.find("/documents/42/secrets", "GET").is_none());
        assert!(m.find("/documents", "GET").is_none());
        let hit = m.find("/files/a/b/c", "GET").unwrap();
        assert_eq!(hit.params[0].1, "a/b/c");
        assert!(m.find("/files/a", "POST").is_none());
        assert_eq!(hit.route.action_for("GET").as_deref(), Some("read"));
        assert_eq!(hit.route.action_for("TRACE"), None);
    }

    #[test]
    fn issue_17_typed_parameters_match_as_starlette_converters() {
        let m = RouteMapper::new(&[
            route("/n/{id:int}", &[]),
            route("/f/{id:float}", &[]),
            route("/u/{id:uuid}", &[]),
        ])
        .unwrap();
        assert!(m.find("/n/42", "GET").is_some());
        assert!(m.find("/n/4a", "GET").is_none());
        assert!(m.find("/n/-1", "GET").is_none());
        assert!(m.find("/f/1.5", "GET").is_some());
        assert!(m.find("/f/1.", "GET").is_none());
        assert!(
            m.find("/u/123e4567-e89b-12d3-a456-426614174000", "GET")
                .is_some()
        );
        assert!(
            m.find("/u/123e4567e89b12d3a456426614174000", "GET")
                .is_none()
        );
        let hit = m.find("/n/42", "GET").unwrap();
        assert_eq!(hit.params.as_slice(), [("id", "42")]);
    }

    #[test]
    fn bad_routes_are_rejected() {
        assert!(RouteMapper::new(&[route("documents/{id}", &[])]).is_err());
        assert!(RouteMapper::new(&[route("/a/{x:bogus}", &[])]).is_err());
        assert!(RouteMapper::new(&[route("/a/{:int}", &[])]).is_err());
        assert!(RouteMapper::new(&[route("/a/{x:path}/b", &[])]).is_err());
        assert!(RouteMapper::new(&[route("/a", &["TRACE"])]).is_err());
    }

    fn errors(r: RouteConfig) -> Vec<String> {
        RouteMapper::new(&[r])
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn issue_18_a_path_beyond_the_id_must_name_its_action() {
        // `POST /documents/{id}/share` was decided as `create`.
        let share = route("/documents/{id}/share", &["POST"]);
        let e = errors(share.clone());
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with(
                "route POST /documents/{id}/share: the path goes beyond the resource id"
            ),
            "{e:?}"
        );
        let mut named = share.clone();
        named.action = Some("share".into());
        let m = RouteMapper::new(&[named]).unwrap();
        let hit = m.find("/documents/7/share", "POST").unwrap();
        assert_eq!(
            hit.route.action_with_source("POST"),
            Some(("share", ActionSource::Route))
        );
        let mut per_method = share.clone();
        per_method.actions.insert("post".into(), "share".into());
        assert!(RouteMapper::new(&[per_method.clone()]).is_ok());
        // `actions` must cover every method the route matches.
        per_method.methods.push("PUT".into());
        assert!(RouteMapper::new(&[per_method]).is_err());
        // Nested collections and prefixes are not plain either.
        let mut nested = route("/orgs/{org}/documents", &["POST"]);
        nested.resource.as_mut().unwrap().id = "new".into();
        assert!(RouteMapper::new(&[nested]).is_err());
        let mut prefix = route("/x", &["GET"]);
        prefix.path = None;
        prefix.prefix = Some("/admin".into());
        prefix.resource.as_mut().unwrap().id = "admin".into();
        assert!(RouteMapper::new(&[prefix]).is_err());
        // Plain collection and item paths keep the method defaults.
        let mut collection = route("/documents", &["POST"]);
        collection.resource.as_mut().unwrap().id = "new".into();
        let m = RouteMapper::new(&[collection, route("/documents/{id}", &[])]).unwrap();
        let hit = m.find("/documents", "POST").unwrap();
        assert_eq!(
            hit.route.action_with_source("POST"),
            Some(("create", ActionSource::Default(PathShape::Collection)))
        );
        let hit = m.find("/documents/1", "DELETE").unwrap();
        assert_eq!(
            hit.route.action_with_source("DELETE"),
            Some(("delete", ActionSource::Default(PathShape::Item)))
        );
    }

    #[test]
    fn issue_18_unknown_placeholders_are_errors() {
        let mut r = route("/documents/{id}/share", &["POST"]);
        r.action = Some("share".into());
        r.resource.as_mut().unwrap().id = "{doc_id}".into();
        r.attributes.fetch = Some(super::super::config::FetchConfig {
            url: "http://app/internal/{docId}/attributes".into(),
            timeout_ms: 500,
            cache_ttl_ms: 0,
            answer_not_found: false,
        });
        let e = RouteMapper::new(&[r]).unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
        assert_eq!(e[0].field, &["resource", "id"]);
        assert_eq!(e[0].offset, Some(0));
        assert!(
            e[0].message.contains("{doc_id} is not a path parameter"),
            "{e:?}"
        );
        assert_eq!(e[1].field, &["attributes", "fetch", "url"]);
        assert_eq!(e[1].offset, Some(20));
        let mut r = route("/documents/{id}", &[]);
        r.resource.as_mut().unwrap().scope = "{ID}".into();
        assert!(errors(r)[0].contains("did you mean {id}?"));
        let mut r = route("/documents/{id}", &[]);
        r.resource.as_mut().unwrap().kind = "{kind}".into();
        assert!(errors(r)[0].contains("used literally"));
        let mut r = route("/documents/{id}", &[]);
        r.resource.as_mut().unwrap().id = "{id".into();
        assert!(errors(r)[0].contains("without its `}`"));
    }

    fn plan_route() -> RouteConfig {
        let mut r = route("/documents", &["GET"]);
        r.resource.as_mut().unwrap().id = String::new();
        r.plan = Some(super::super::config::PlanConfig {
            action: "read".into(),
        });
        r
    }

    #[test]
    fn issue_14_a_plan_route_plans_its_action() {
        let m = RouteMapper::new(&[plan_route()]).unwrap();
        let hit = m.find("/documents", "GET").unwrap();
        assert_eq!(hit.route.plan(), Some("read"));
        assert_eq!(
            hit.route.action_with_source("GET"),
            Some(("read", ActionSource::Plan))
        );
        // A path beyond the id needs no other action when it plans one.
        let mut nested = plan_route();
        nested.path = Some("/orgs/{org}/documents".into());
        nested.resource.as_mut().unwrap().scope = "{org}".into();
        let m = RouteMapper::new(&[nested]).unwrap();
        assert_eq!(
            m.find("/orgs/acme/documents", "GET").unwrap().route.plan(),
            Some("read")
        );
        // Other routes plan nothing.
        let m = RouteMapper::new(&[route("/documents/{id}", &[])]).unwrap();
        assert_eq!(m.find("/documents/1", "GET").unwrap().route.plan(), None);
    }

    #[test]
    fn issue_14_bad_plan_entries_are_rejected_at_their_key() {
        let fields = |r: RouteConfig| -> Vec<(&'static [&'static str], String)> {
            RouteMapper::new(&[r])
                .unwrap_err()
                .into_iter()
                .map(|e| (e.field, e.to_string()))
                .collect()
        };
        let mut r = plan_route();
        r.action = Some("list".into());
        let e = fields(r);
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].0, &["action"]);
        assert_eq!(
            e[0].1,
            "route GET /documents: a plan route decides nothing: its action is `plan.action`; drop `action`"
        );
        let mut r = plan_route();
        r.actions.insert("GET".into(), "list".into());
        assert_eq!(fields(r)[0].0, &["actions"]);
        let mut r = plan_route();
        r.resource.as_mut().unwrap().id = "*".into();
        let e = fields(r);
        assert_eq!(e[0].0, &["resource", "id"]);
        assert!(
            e[0].1.contains("covers every resource of its kind"),
            "{e:?}"
        );
        let mut r = plan_route();
        r.public = true;
        assert_eq!(fields(r)[0].0, &["plan"]);
        let mut r = plan_route();
        r.plan.as_mut().unwrap().action = " ".into();
        assert_eq!(fields(r)[0].0, &["plan", "action"]);
        let mut r = plan_route();
        r.plan.as_mut().unwrap().action = "{verb}".into();
        let e = fields(r);
        assert_eq!(e[0].0, &["plan", "action"]);
        assert!(e[0].1.contains("used literally"), "{e:?}");
        // A plan route still needs its resource kind.
        let mut r = plan_route();
        r.resource = None;
        assert!(RouteMapper::new(&[r]).is_err());
    }

    #[test]
    fn placeholders_report_character_offsets() {
        assert_eq!(
            placeholders("é{a}/{b_2}").unwrap(),
            vec![(1, "a"), (5, "b_2")]
        );
        assert!(placeholders("{}").is_err());
        assert!(placeholders("a}").is_err());
        assert_eq!(placeholders("{a{b}").unwrap_err().0, 0);
    }

    #[test]
    fn templates_fill_and_encode() {
        let p = vec![("id", "a b/c")];
        assert_eq!(
            fill_template("http://x/{id}/attrs", &p, true),
            "http://x/a%20b%2Fc/attrs"
        );
        assert_eq!(fill_template("{id}", &p, false), "a b/c");
        assert_eq!(
            fill_template("x/{id}", &[("id", "é%")], true),
            "x/%C3%A9%25"
        );
    }

    #[test]
    fn issue_15_a_path_value_is_not_a_template() {
        // One pass over the template: a segment spelled like a placeholder stays as sent
        // (it used to be filled from the next parameter), unknown placeholders stay.
        let p = vec![("a", "{b}"), ("b", "x")];
        assert_eq!(fill_template("{a}/{b}", &p, false), "{b}/x");
        assert_eq!(fill_template("{a}/{b}", &p, true), "%7Bb%7D/x");
        assert_eq!(fill_template("{b}{c}{b}", &p, false), "x{c}x");
        assert_eq!(fill_template("no placeholder", &p, false), "no placeholder");
        assert_eq!(fill_template("{b", &p, false), "{b");
        assert_eq!(fill_template("", &p, false), "");
    }

    /// Pieces request paths are made of: ordinary segments, dot segments in every
    /// spelling, encoded and raw separators, NUL, backslashes, broken escapes, UTF-8 (raw,
    /// encoded, truncated), query and fragment markers.
    const PIECES: &[&str] = &[
        "documents",
        "1",
        "a",
        "admin",
        ".",
        "..",
        "",
        "%2e",
        "%2E%2e",
        ".%2e",
        "%2f",
        "%2F",
        "%00",
        "%5c",
        "\\",
        "%",
        "%z",
        "%4",
        "%ff",
        "%C3%A9",
        "é",
        "%C3",
        "?",
        "#",
        "x=1",
        ";",
        "//",
        "%25",
        "%252e",
        "+",
        " ",
        "%20",
        "~",
        "\u{0}",
    ];

    fn target() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        (
            any::<bool>(),
            proptest::collection::vec(proptest::sample::select(PIECES), 0..8),
            any::<bool>(),
        )
            .prop_map(|(absolute, segments, slash)| {
                let mut t = if absolute {
                    "/".to_string()
                } else {
                    String::new()
                };
                t.push_str(&segments.join("/"));
                if slash {
                    t.push('/');
                }
                t
            })
    }

    fn check_normalised(target: &str) -> Result<(), proptest::test_runner::TestCaseError> {
        use proptest::prop_assert;
        use proptest::prop_assert_eq;
        // Issue 15: the same answer as before paths were borrowed.
        prop_assert_eq!(
            normalize(target).map(|n| (n.path.into_owned(), n.query.to_string())),
            normalize_before(target),
            "{:?}",
            target
        );
        let Ok(n) = normalize(target) else {
            return Ok(());
        };
        let p = &n.path;
        prop_assert!(p.starts_with('/'), "{target:?} -> {p:?}");
        prop_assert!(
            !p.contains('\0') && !p.contains('\\'),
            "{target:?} -> {p:?}"
        );
        if p != "/" {
            prop_assert!(!p.ends_with('/'), "{target:?} -> {p:?}");
            prop_assert!(
                p[1..]
                    .split('/')
                    .all(|s| !s.is_empty() && s != "." && s != ".."),
                "{target:?} -> {p:?} has an empty or dot segment"
            );
        }
        // Idempotent: the normalised path, each segment encoded again, normalises to
        // itself (what the app routes on is what Gatehouse decided on).
        let encoded: Vec<String> = p.split('/').map(percent_encode_segment).collect();
        let joined = encoded.join("/");
        let again = normalize(&joined);
        prop_assert_eq!(
            again.map(|a| a.path.into_owned()),
            Ok(p.to_string()),
            "{:?}",
            target
        );
        Ok(())
    }

    /// `normalize` as it was before it borrowed (its oracle).
    fn normalize_before(target: &str) -> Result<(String, String), PathError> {
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
        Ok((path, query))
    }

    proptest::proptest! {
        #![proptest_config(crate::testing::proptest_config(2000))]

        /// Normalised paths are absolute, have no `.`, `..` or empty segments, no NUL or
        /// backslash, and normalise to themselves; nothing panics.
        #[test]
        fn issue_12_property_normalised_paths_are_unambiguous_and_idempotent(t in target()) {
            check_normalised(&t)?;
        }

        /// Arbitrary text: no panic, and whatever is accepted keeps the invariants.
        #[test]
        fn issue_12_property_any_target_normalises_or_is_refused(t in ".{0,64}") {
            check_normalised(&t)?;
            let _ = query_params(&t);
        }
    }
}
