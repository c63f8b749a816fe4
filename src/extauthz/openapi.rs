//! Routes from a FastAPI app's OpenAPI document (`/openapi.json`).
//!
//! Each operation (`get`, `put`, `post`, `delete`, `patch` of each path) becomes a route:
//!
//! * the path template, with each path parameter typed where the document types it
//!   (`integer` is `{id:int}`, `number` `{x:float}`, a `uuid` string `{x:uuid}`);
//! * the action from the operation's `x-gatehouse-action`, else the method's default
//!   (GET `read`, POST `create`, PUT and PATCH `update`, DELETE `delete`); or, with
//!   `x-gatehouse-plan: {action: read}` (a list operation), a plan route: the backend gets
//!   the filter instead of a decision (no resource id);
//! * the resource kind from `x-gatehouse-resource`, else the first tag, else the
//!   collection segment (the last literal segment before the last parameter, or the last
//!   literal segment); the resource id from `x-gatehouse-id`, else the last path parameter,
//!   else `*`;
//! * public (passed through without a decision) when the operation says
//!   `x-gatehouse-public: true` or `security: []`, and only if the caller allows it;
//!   otherwise it is decided like any other route;
//! * the attribute sources from `x-gatehouse-attributes` (a route's `attributes`, as in
//!   `gatehouse.yaml`; a fetch URL starting with `/` is relative to the app).
//!
//! `extAuthz.openapi` loads such routes at start ([`load`]): hand-written routes come
//! first and override an imported route of the same method and path template.

use serde_json::Value as Json;

use std::path::Path;
use std::time::Duration;

use super::config::{AttributesConfig, OpenApiConfig, PlanConfig, ResourceConfig, RouteConfig};
use super::route::default_action;

/// Operations read at most (a document with more is refused).
const MAX_OPERATIONS: usize = 5_000;
/// Longest path template, extension value or tag read.
const MAX_TEXT: usize = 1_024;

/// Why an OpenAPI document gives no routes.
#[derive(Debug, thiserror::Error)]
#[error("OpenAPI document: {0}")]
pub(crate) struct OpenApiError(String);

/// Where an imported route's action came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ActionOrigin {
    /// The operation's `x-gatehouse-action`.
    Extension,
    /// The method's default.
    Default,
    /// The operation's `x-gatehouse-plan`: planned, not decided.
    Plan,
}

/// One operation turned into a route.
#[derive(Clone, Debug)]
pub(crate) struct ImportedRoute {
    /// The route, as if written in `extAuthz.routes`.
    pub(crate) config: RouteConfig,
    /// The HTTP method.
    method: String,
    /// Where the action came from (`None` for public routes).
    action_origin: Option<ActionOrigin>,
}

/// Reads the operations of `doc` in document order. `pass_public`: operations marked
/// public become public routes; otherwise they are decided like the others.
pub(crate) fn routes_from_openapi(
    doc: &Json,
    pass_public: bool,
) -> Result<Vec<ImportedRoute>, OpenApiError> {
    let err = |m: String| OpenApiError(m);
    let version = doc
        .get("openapi")
        .and_then(Json::as_str)
        .unwrap_or_default();
    if !version.starts_with("3.") {
        return Err(err(format!(
            "expected an OpenAPI 3 document (\"openapi\": \"3.x\"), got {version:?}"
        )));
    }
    let paths = doc
        .get("paths")
        .and_then(Json::as_object)
        .ok_or_else(|| err("no \"paths\" object".into()))?;
    let mut out = Vec::new();
    for (path, item) in paths {
        if path.len() > MAX_TEXT || !path.starts_with('/') {
            return Err(err(format!(
                "path {:?} is not a path template",
                truncate(path)
            )));
        }
        let Some(item) = item.as_object() else {
            continue;
        };
        for method in ["get", "put", "post", "delete", "patch"] {
            let Some(op) = item.get(method).and_then(Json::as_object) else {
                continue;
            };
            if out.len() >= MAX_OPERATIONS {
                return Err(err(format!("more than {MAX_OPERATIONS} operations")));
            }
            let method = method.to_ascii_uppercase();
            if let Some(r) = import_operation(path, item, method, op, pass_public)? {
                out.push(r);
            }
        }
    }
    Ok(out)
}

/// A JSON object of the document.
type Object = serde_json::Map<String, Json>;

/// The optional text field `key` of operation `op`: a non-empty string of bounded size.
fn text(op: &Object, key: &str, method: &str, path: &str) -> Result<Option<String>, OpenApiError> {
    match op.get(key) {
        None => Ok(None),
        Some(Json::String(s)) if !s.is_empty() && s.len() <= MAX_TEXT => Ok(Some(s.clone())),
        Some(_) => Err(OpenApiError(format!(
            "{method} {path}: {key} must be a non-empty string"
        ))),
    }
}

/// One operation (`method` upper case) of path item `item` as a route: public, a plan
/// route, or decided with its action; `None` when it names no action and its method
/// has no default one.
fn import_operation(
    path: &str,
    item: &Object,
    method: String,
    op: &Object,
    pass_public: bool,
) -> Result<Option<ImportedRoute>, OpenApiError> {
    let err = |m: String| OpenApiError(m);
    let attributes = match op.get("x-gatehouse-attributes") {
        None => AttributesConfig::default(),
        Some(v) => serde_json::from_value::<AttributesConfig>(v.clone())
            .map_err(|e| err(format!("{method} {path}: x-gatehouse-attributes: {e}")))?,
    };
    let params = path_params(path, item.get("parameters"), op.get("parameters"));
    let template = typed_template(path, &params);
    let public = op.get("x-gatehouse-public").and_then(Json::as_bool) == Some(true)
        || op
            .get("security")
            .and_then(Json::as_array)
            .is_some_and(Vec::is_empty);
    // `operationId` must be a string when present; routes do not use it.
    text(op, "operationId", &method, path)?;
    if public && pass_public {
        return Ok(Some(ImportedRoute {
            config: route(template, &method, true, None, None),
            method,
            action_origin: None,
        }));
    }
    let plan = match op.get("x-gatehouse-plan") {
        None => None,
        Some(v) => Some(
            serde_json::from_value::<PlanConfig>(v.clone())
                .map_err(|e| err(format!("{method} {path}: x-gatehouse-plan: {e}")))?,
        ),
    };
    let (action, origin) = match (&plan, text(op, "x-gatehouse-action", &method, path)?) {
        (Some(_), Some(_)) => {
            return Err(err(format!(
                "{method} {path}: x-gatehouse-plan and x-gatehouse-action exclude each other"
            )));
        }
        (Some(p), None) => (p.action.clone(), ActionOrigin::Plan),
        (None, Some(a)) => (a, ActionOrigin::Extension),
        (None, None) => match default_action(&method) {
            Some(a) => (a.to_string(), ActionOrigin::Default),
            None => return Ok(None),
        },
    };
    let resource = operation_resource(path, &method, op, plan.is_some())?;
    let decided = plan.is_none().then_some(action);
    let mut config = route(template, &method, false, Some(resource), decided);
    config.attributes = attributes;
    config.plan = plan;
    Ok(Some(ImportedRoute {
        config,
        method,
        action_origin: Some(origin),
    }))
}

/// The resource an operation decides on: its kind from `x-gatehouse-resource`, the
/// first tag or the path's collection segment; its id from `x-gatehouse-id`, none for a
/// plan, else the path's last parameter (`*` without one).
fn operation_resource(
    path: &str,
    method: &str,
    op: &Object,
    plan: bool,
) -> Result<ResourceConfig, OpenApiError> {
    let tag = op
        .get("tags")
        .and_then(Json::as_array)
        .and_then(|t| t.first())
        .and_then(Json::as_str)
        .filter(|t| !t.is_empty() && t.len() <= MAX_TEXT)
        .map(str::to_string);
    let kind = match text(op, "x-gatehouse-resource", method, path)?.or(tag) {
        Some(k) => k,
        None => collection_segment(path).ok_or_else(|| {
            OpenApiError(format!(
                "{method} {path}: no resource kind (add x-gatehouse-resource)"
            ))
        })?,
    };
    let id = match text(op, "x-gatehouse-id", method, path)? {
        Some(id) => id,
        // A plan covers every resource of the kind: no id.
        None if plan => String::new(),
        None => last_param(path).map_or_else(|| "*".to_string(), |p| format!("{{{p}}}")),
    };
    Ok(ResourceConfig {
        kind,
        id,
        policy_version: String::new(),
        scope: String::new(),
    })
}

fn route(
    path: String,
    method: &str,
    public: bool,
    resource: Option<ResourceConfig>,
    action: Option<String>,
) -> RouteConfig {
    RouteConfig {
        path: Some(path),
        prefix: None,
        methods: vec![method.to_string()],
        public,
        resource,
        action,
        actions: Default::default(),
        attributes: AttributesConfig::default(),
        mode: None,
        plan: None,
        backend_headers: None,
    }
}

fn truncate(s: &str) -> &str {
    let mut end = s.len().min(80);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `{name}` segments of a template.
fn template_params(path: &str) -> impl Iterator<Item = &str> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
}

fn last_param(path: &str) -> Option<&str> {
    template_params(path).last()
}

/// The collection a path names: the last literal segment before the last parameter, or
/// the last literal segment when there is no parameter.
fn collection_segment(path: &str) -> Option<String> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let end = segs
        .iter()
        .rposition(|s| s.starts_with('{'))
        .unwrap_or(segs.len());
    segs[..end]
        .iter()
        .rev()
        .find(|s| !s.starts_with('{'))
        .map(|s| s.to_string())
}

/// Path parameters with their converter (`int`, `float`, `uuid`), from the path item's
/// and the operation's `parameters` (the operation's win).
fn path_params(path: &str, item: Option<&Json>, op: Option<&Json>) -> Vec<(String, &'static str)> {
    let declared = |list: Option<&Json>, name: &str| -> Option<&'static str> {
        list?.as_array()?.iter().find_map(|p| {
            (p.get("in")?.as_str()? == "path" && p.get("name")?.as_str()? == name)
                .then(|| converter(p.get("schema")))
                .flatten()
        })
    };
    template_params(path)
        .map(|name| {
            let conv = declared(op, name)
                .or_else(|| declared(item, name))
                .unwrap_or("");
            (name.to_string(), conv)
        })
        .collect()
}

/// The Starlette converter for a parameter's schema (`""`: untyped).
fn converter(schema: Option<&Json>) -> Option<&'static str> {
    let schema = schema?;
    let conv = match (
        schema.get("type").and_then(Json::as_str),
        schema.get("format").and_then(Json::as_str),
    ) {
        (Some("integer"), _) => "int",
        (Some("number"), _) => "float",
        (Some("string"), Some("uuid")) => "uuid",
        _ => "",
    };
    Some(conv)
}

fn typed_template(path: &str, params: &[(String, &'static str)]) -> String {
    path.split('/')
        .map(
            |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => match params.iter().find(|(n, _)| n == name) {
                    Some((_, conv)) if !conv.is_empty() => format!("{{{name}:{conv}}}"),
                    _ => s.to_string(),
                },
                None => s.to_string(),
            },
        )
        .collect::<Vec<_>>()
        .join("/")
}

/// The imported routes as a table: method, path, resource, action, where it came from.
pub(crate) fn import_table(routes: &[ImportedRoute]) -> Vec<String> {
    let rows: Vec<[String; 5]> = routes
        .iter()
        .map(|r| {
            let c = &r.config;
            let resource = c
                .resource
                .as_ref()
                .map_or(String::new(), |res| match &c.plan {
                    Some(_) => format!("{} (all)", res.kind),
                    None => format!("{} {}", res.kind, res.id),
                });
            let (action, origin) = match r.action_origin {
                None => (
                    "-".to_string(),
                    "public: allowed without a decision".to_string(),
                ),
                Some(o) => (
                    c.plan
                        .as_ref()
                        .map(|p| p.action.clone())
                        .or_else(|| c.action.clone())
                        .unwrap_or_default(),
                    match o {
                        ActionOrigin::Extension => "x-gatehouse-action".to_string(),
                        ActionOrigin::Default => format!("default for {}", r.method),
                        ActionOrigin::Plan => "x-gatehouse-plan: planned".to_string(),
                    },
                ),
            };
            [
                r.method.clone(),
                c.path.clone().unwrap_or_default(),
                resource,
                action,
                origin,
            ]
        })
        .collect();
    let mut widths = [0usize; 4];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    rows.iter()
        .map(|row| {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i < 4 {
                    line.push_str(&format!("{cell:<w$}  ", w = widths[i]));
                } else {
                    line.push_str(cell);
                }
            }
            line
        })
        .collect()
}

/// Largest OpenAPI document read from a file (a URL answer is bounded by the HTTP client's
/// limit).
const MAX_DOCUMENT: u64 = 16 * 1024 * 1024;

/// The imported route table in force, and how its last load went.
#[derive(Clone, Debug, Default)]
pub(crate) struct ImportState {
    /// Where the document is read from (file path or URL).
    source: String,
    /// The imported routes in force (the last good table; empty if none loaded yet).
    pub(crate) routes: Vec<RouteConfig>,
    /// Why the last load failed (`None`: it succeeded).
    last_error: Option<String>,
}

impl ImportState {
    /// The state as JSON, for `/_gatehouse/status`.
    pub(crate) fn status_json(&self) -> Json {
        serde_json::json!({
            "source": self.source,
            "routes": self.routes.len(),
            "lastError": self.last_error,
        })
    }
}

/// `path` with its parameters' names and types dropped: `/a/{x:int}` and `/a/{y}` are
/// the same template.
fn template_key(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut depth = 0usize;
    for c in path.chars() {
        match c {
            '{' => {
                depth += 1;
                if depth == 1 {
                    out.push_str("{}");
                }
            }
            '}' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// The route table: the hand-written routes first, then the imported ones that no
/// hand-written route of the same path template and method overrides.
pub(crate) fn merge(hand: &[RouteConfig], imported: &[RouteConfig]) -> Vec<RouteConfig> {
    let overridden = |r: &RouteConfig| {
        let Some(path) = r.path.as_deref().map(template_key) else {
            return false;
        };
        hand.iter().any(|h| {
            h.path.as_deref().map(template_key).as_deref() == Some(path.as_str())
                && (h.methods.is_empty()
                    || r.methods
                        .iter()
                        .all(|m| h.methods.iter().any(|hm| hm.eq_ignore_ascii_case(m))))
        })
    };
    hand.iter()
        .cloned()
        .chain(imported.iter().filter(|r| !overridden(r)).cloned())
        .collect()
}

/// `scheme://authority` of an absolute URL.
fn origin(url: &str) -> Option<String> {
    let uri: hyper::Uri = url.parse().ok()?;
    Some(format!("{}://{}", uri.scheme_str()?, uri.authority()?))
}

/// Routes of an OpenAPI document's text, with relative fetch URLs made absolute on `base`.
fn parse_document(
    text: &str,
    pass_public: bool,
    base: Option<&str>,
) -> Result<Vec<RouteConfig>, OpenApiError> {
    let doc: Json =
        serde_json::from_str(text).map_err(|e| OpenApiError(format!("not JSON: {e}")))?;
    let mut routes: Vec<RouteConfig> = routes_from_openapi(&doc, pass_public)?
        .into_iter()
        .map(|r| r.config)
        .collect();
    for r in &mut routes {
        if let Some(fetch) = &mut r.attributes.fetch
            && fetch.url.starts_with('/')
        {
            let base = base.ok_or_else(|| {
                OpenApiError(format!(
                    "fetch URL {:?} is relative: set extAuthz.openapi.baseUrl",
                    truncate(&fetch.url)
                ))
            })?;
            fetch.url = format!("{}{}", base.trim_end_matches('/'), fetch.url);
        }
    }
    Ok(routes)
}

async fn read_document(config: &OpenApiConfig, base_dir: &Path) -> Result<String, String> {
    match (&config.file, &config.url) {
        (Some(file), None) => {
            let path = base_dir.join(file);
            let len = tokio::fs::metadata(&path)
                .await
                .map_err(|e| format!("{}: {e}", path.display()))?
                .len();
            if len > MAX_DOCUMENT {
                return Err(format!(
                    "{}: larger than {MAX_DOCUMENT} bytes",
                    path.display()
                ));
            }
            tokio::fs::read_to_string(&path)
                .await
                .map_err(|e| format!("{}: {e}", path.display()))
        }
        (None, Some(url)) => {
            let uri = crate::jwt::fetch::check_url(url)?;
            let client = crate::jwt::fetch::client();
            let timeout = Duration::from_millis(config.timeout_ms);
            match tokio::time::timeout(timeout, crate::jwt::fetch::get_text(&client, &uri)).await {
                Ok(r) => r.map_err(|e| format!("{url}: {e}")),
                Err(_) => Err(format!("{url}: no answer within {}ms", config.timeout_ms)),
            }
        }
        _ => Err("extAuthz.openapi: give exactly one of `file` and `url`".to_string()),
    }
}

/// Loads the imported route table for the hand-written routes `hand`. On any failure
/// (unreadable or unreachable document, bad document, a table the route mapper refuses)
/// the `previous` table stays (none at start: the hand-written routes alone) and the
/// error is logged and recorded.
pub(crate) async fn load(
    config: &OpenApiConfig,
    base_dir: &Path,
    hand: &[RouteConfig],
    previous: Option<&ImportState>,
) -> ImportState {
    let source = match (&config.file, &config.url) {
        (Some(f), None) => base_dir.join(f).display().to_string(),
        (None, Some(u)) => u.clone(),
        _ => String::new(),
    };
    let base = config
        .base_url
        .clone()
        .or_else(|| config.url.as_deref().and_then(origin));
    let result = match read_document(config, base_dir).await {
        Ok(text) => parse_document(&text, config.public_passthrough, base.as_deref())
            .map_err(|e| e.to_string())
            .and_then(|routes| {
                super::RouteMapper::new(&merge(hand, &routes))
                    .map(|_| routes)
                    .map_err(|errs| {
                        errs.iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("; ")
                    })
            }),
        Err(e) => Err(e),
    };
    match result {
        Ok(routes) => {
            tracing::info!(source = %source, routes = routes.len(), "routes imported from the OpenAPI document");
            ImportState {
                source,
                routes,
                last_error: None,
            }
        }
        Err(error) => {
            let routes = previous.map(|p| p.routes.clone()).unwrap_or_default();
            tracing::error!(source = %source, error = %error, kept = routes.len(), "OpenAPI route import failed: keeping the last imported routes");
            ImportState {
                source,
                routes,
                last_error: Some(error),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Json {
        json!({
            "openapi": "3.1.0",
            "paths": {
                "/health": {"get": {"x-gatehouse-public": true}},
                "/documents": {
                    "get": {"tags": ["document"], "x-gatehouse-action": "list"},
                    "post": {"tags": ["document"]}
                },
                "/documents/{doc_id}": {
                    "get": {"parameters": [{"in": "path", "name": "doc_id",
                                            "schema": {"type": "integer"}}]},
                    "delete": {"x-gatehouse-resource": "doc"}
                },
                "/documents/{doc_id}/approve": {
                    "post": {"tags": ["document"], "x-gatehouse-action": "approve"}
                },
                "/keys/{key}": {"put": {"parameters": [{"in": "path", "name": "key",
                    "schema": {"type": "string", "format": "uuid"}}], "security": []}}
            }
        })
    }

    fn rows(pass_public: bool) -> Vec<(String, String, String, String, String, bool)> {
        routes_from_openapi(&doc(), pass_public)
            .unwrap()
            .into_iter()
            .map(|r| {
                let res = r.config.resource.clone();
                (
                    r.method,
                    r.config.path.unwrap(),
                    res.as_ref().map_or(String::new(), |x| x.kind.clone()),
                    res.map_or(String::new(), |x| x.id),
                    r.config.action.unwrap_or_default(),
                    r.config.public,
                )
            })
            .collect()
    }

    #[test]
    fn issue_17_operations_become_routes() {
        let s = |x: &str| x.to_string();
        assert_eq!(
            rows(true),
            vec![
                (s("GET"), s("/health"), s(""), s(""), s(""), true),
                (
                    s("GET"),
                    s("/documents"),
                    s("document"),
                    s("*"),
                    s("list"),
                    false
                ),
                (
                    s("POST"),
                    s("/documents"),
                    s("document"),
                    s("*"),
                    s("create"),
                    false
                ),
                (
                    s("GET"),
                    s("/documents/{doc_id:int}"),
                    s("documents"),
                    s("{doc_id}"),
                    s("read"),
                    false
                ),
                (
                    s("DELETE"),
                    s("/documents/{doc_id}"),
                    s("doc"),
                    s("{doc_id}"),
                    s("delete"),
                    false
                ),
                (
                    s("POST"),
                    s("/documents/{doc_id}/approve"),
                    s("document"),
                    s("{doc_id}"),
                    s("approve"),
                    false
                ),
                (s("PUT"), s("/keys/{key:uuid}"), s(""), s(""), s(""), true),
            ]
        );
        // Without pass-through, public operations are decided like the others.
        let decided = rows(false);
        assert_eq!(
            decided[0],
            (
                s("GET"),
                s("/health"),
                s("health"),
                s("*"),
                s("read"),
                false
            )
        );
        assert_eq!(decided[6].4, "update");
        // Every imported route is one the route mapper accepts.
        let configs: Vec<RouteConfig> = routes_from_openapi(&doc(), true)
            .unwrap()
            .into_iter()
            .map(|r| r.config)
            .collect();
        assert!(super::super::RouteMapper::new(&configs).is_ok());
        assert!(
            import_table(&routes_from_openapi(&doc(), true).unwrap())[1]
                .contains("x-gatehouse-action")
        );
    }

    #[test]
    fn issue_14_x_gatehouse_plan_makes_a_plan_route() {
        let doc = json!({"openapi": "3.1.0", "paths": {"/documents": {"get": {
            "tags": ["document"], "x-gatehouse-plan": {"action": "read"}}}}});
        let routes = routes_from_openapi(&doc, false).unwrap();
        let c = &routes[0].config;
        assert_eq!(c.plan.as_ref().map(|p| p.action.as_str()), Some("read"));
        assert_eq!(c.action, None);
        assert_eq!(c.resource.as_ref().unwrap().id, "");
        assert_eq!(routes[0].action_origin, Some(ActionOrigin::Plan));
        let configs = [c.clone()];
        let m = super::super::RouteMapper::new(&configs).unwrap();
        assert_eq!(
            m.find("/documents", "GET").unwrap().route.plan(),
            Some("read")
        );
        let table = import_table(&routes);
        assert!(
            table[0].contains("document (all)") && table[0].contains("x-gatehouse-plan"),
            "{table:?}"
        );
        for bad in [json!({"action": 7}), json!({"verb": "read"}), json!("read")] {
            let doc =
                json!({"openapi": "3.1.0", "paths": {"/d": {"get": {"x-gatehouse-plan": bad}}}});
            assert!(routes_from_openapi(&doc, false).is_err(), "{bad}");
        }
        let both = json!({"openapi": "3.1.0", "paths": {"/d": {"get": {
            "x-gatehouse-plan": {"action": "read"}, "x-gatehouse-action": "list"}}}});
        assert!(routes_from_openapi(&both, false).is_err());
    }

    #[test]
    fn issue_17_bad_documents_are_refused() {
        assert!(routes_from_openapi(&json!({"swagger": "2.0"}), false).is_err());
        assert!(routes_from_openapi(&json!({"openapi": "3.0.0"}), false).is_err());
        let bad = json!({"openapi": "3.0.0", "paths": {"/a": {"get": {"x-gatehouse-action": 7}}}});
        assert!(routes_from_openapi(&bad, false).is_err());
        let rootless = json!({"openapi": "3.0.0", "paths": {"/": {"get": {}}}});
        assert!(routes_from_openapi(&rootless, false).is_err());
    }

    fn hand(path: &str, methods: &[&str], action: &str) -> RouteConfig {
        let mut r = route(
            path.to_string(),
            "GET",
            false,
            Some(ResourceConfig {
                kind: "hand".into(),
                id: "*".into(),
                policy_version: String::new(),
                scope: String::new(),
            }),
            Some(action.to_string()),
        );
        r.methods = methods.iter().map(|m| m.to_string()).collect();
        r
    }

    #[test]
    fn hand_written_routes_override_imported_ones_of_the_same_method_and_template() {
        let imported = vec![
            hand("/documents/{doc_id:int}", &["GET"], "imported_read"),
            hand("/documents/{doc_id}", &["DELETE"], "imported_delete"),
            hand("/documents", &["GET"], "imported_list"),
            hand("/other", &["GET"], "imported_other"),
        ];
        let written = vec![
            hand("/documents/{id}", &["GET", "HEAD"], "read"),
            hand("/documents", &[], "list"),
            hand("/other", &["POST"], "create"),
        ];
        let merged = merge(&written, &imported);
        let actions: Vec<_> = merged.iter().map(|r| r.action.clone().unwrap()).collect();
        // Hand-written first; the imported GET /documents/{..} and GET /documents are
        // overridden; DELETE and GET /other (another method) stay.
        assert_eq!(
            actions,
            [
                "read",
                "list",
                "create",
                "imported_delete",
                "imported_other"
            ]
        );
        let m = super::super::RouteMapper::new(&merged).unwrap();
        assert_eq!(m.routes().len(), 5);
        assert_eq!(template_key("/a/{x:int}/b/{y}"), "/a/{}/b/{}");
    }

    #[test]
    fn attributes_come_from_the_extension_with_relative_fetch_urls_on_the_base() {
        let text = json!({"openapi": "3.1.0", "paths": {"/documents/{doc_id}": {"get": {
            "tags": ["document"],
            "x-gatehouse-attributes": {"fetch": {
                "url": "/internal/documents/{doc_id}/attributes", "timeoutMs": 500}}}},
            "/documents": {"post": {"tags": ["document"],
                "x-gatehouse-attributes": {"body": ["department"]}}}}})
        .to_string();
        let routes = parse_document(&text, false, Some("http://127.0.0.1:8000/")).unwrap();
        let fetch = routes[0].attributes.fetch.as_ref().unwrap();
        assert_eq!(
            fetch.url,
            "http://127.0.0.1:8000/internal/documents/{doc_id}/attributes"
        );
        assert_eq!(fetch.timeout_ms, 500);
        assert_eq!(routes[1].attributes.body, ["department"]);
        let e = parse_document(&text, false, None).unwrap_err().to_string();
        assert!(e.contains("baseUrl"), "{e}");
        let bad = json!({"openapi": "3.0.0", "paths": {"/a": {"get": {
            "tags": ["a"], "x-gatehouse-attributes": {"bogus": 1}}}}})
        .to_string();
        let e = parse_document(&bad, false, None).unwrap_err().to_string();
        assert!(e.contains("x-gatehouse-attributes"), "{e}");
    }

    fn import_config(file: Option<&Path>, url: Option<String>) -> OpenApiConfig {
        OpenApiConfig {
            file: file.map(Path::to_path_buf),
            url,
            timeout_ms: 300,
            public_passthrough: false,
            base_url: None,
        }
    }

    #[tokio::test]
    async fn a_failed_load_keeps_the_last_table_or_none_at_start() {
        let dir = std::env::temp_dir().join(format!("gh-openapi-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("openapi.json");
        std::fs::write(&file, doc().to_string()).unwrap();
        let written = vec![hand("/documents/{id}", &[], "read")];
        let good = load(&import_config(Some(&file), None), &dir, &written, None).await;
        assert!(good.last_error.is_none(), "{:?}", good.last_error);
        assert!(!good.routes.is_empty());
        // The document turns bad: the last table stays, the error is recorded.
        std::fs::write(&file, "{not json").unwrap();
        let kept = load(
            &import_config(Some(&file), None),
            &dir,
            &written,
            Some(&good),
        )
        .await;
        assert!(kept.last_error.as_deref().unwrap().contains("not JSON"));
        assert_eq!(kept.routes.len(), good.routes.len());
        // At start: no imported routes at all (the hand-written ones alone).
        let none = load(&import_config(Some(&file), None), &dir, &written, None).await;
        assert!(none.routes.is_empty() && none.last_error.is_some());
        // An unreachable URL: the same, within the timeout.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}/openapi.json");
        let started = std::time::Instant::now();
        let down = load(&import_config(None, Some(url)), &dir, &written, Some(&good)).await;
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(down.last_error.is_some());
        assert_eq!(down.routes.len(), good.routes.len());
        // Neither or both of file and url: an error too.
        let neither = load(&import_config(None, None), &dir, &written, None).await;
        assert!(neither.last_error.unwrap().contains("exactly one"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
