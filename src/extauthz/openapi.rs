//! Routes from a FastAPI app's OpenAPI document (`/openapi.json`).
//!
//! Each operation (`get`, `put`, `post`, `delete`, `patch` of each path) becomes a route:
//!
//! * the path template, with each path parameter typed where the document types it
//!   (`integer` is `{id:int}`, `number` `{x:float}`, a `uuid` string `{x:uuid}`);
//! * the action from the operation's `x-gatehouse-action`, else the method's default
//!   (GET `read`, POST `create`, PUT and PATCH `update`, DELETE `delete`);
//! * the resource kind from `x-gatehouse-resource`, else the first tag, else the
//!   collection segment (the last literal segment before the last parameter, or the last
//!   literal segment); the resource id from `x-gatehouse-id`, else the last path parameter,
//!   else `*`;
//! * public (passed through without a decision) when the operation says
//!   `x-gatehouse-public: true` or `security: []`, and only if the caller allows it;
//!   otherwise it is decided like any other route.

use serde_json::Value as Json;

use super::config::{AttributesConfig, ResourceConfig, RouteConfig};
use super::route::default_action;

/// Operations read at most (a document with more is refused).
const MAX_OPERATIONS: usize = 5_000;
/// Longest path template, extension value or tag read.
const MAX_TEXT: usize = 1_024;

/// Why an OpenAPI document gives no routes.
#[derive(Debug, thiserror::Error)]
#[error("OpenAPI document: {0}")]
pub struct OpenApiError(String);

/// Where an imported route's action came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActionOrigin {
    /// The operation's `x-gatehouse-action`.
    Extension,
    /// The method's default.
    Default,
}

/// One operation turned into a route.
#[derive(Clone, Debug)]
pub struct ImportedRoute {
    /// The route, as if written in `extAuthz.routes`.
    pub config: RouteConfig,
    /// The HTTP method.
    pub method: String,
    /// Where the action came from (`None` for public routes).
    pub action_origin: Option<ActionOrigin>,
    /// The operation's `operationId`, if any.
    pub operation_id: Option<String>,
}

/// Reads the operations of `doc` in document order. `pass_public`: operations marked
/// public become public routes; otherwise they are decided like the others.
pub fn routes_from_openapi(
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
            let text = |key: &str| -> Result<Option<String>, OpenApiError> {
                match op.get(key) {
                    None => Ok(None),
                    Some(Json::String(s)) if !s.is_empty() && s.len() <= MAX_TEXT => {
                        Ok(Some(s.clone()))
                    }
                    Some(_) => Err(err(format!(
                        "{method} {path}: {key} must be a non-empty string"
                    ))),
                }
            };
            let params = path_params(path, item.get("parameters"), op.get("parameters"));
            let template = typed_template(path, &params);
            let public = op.get("x-gatehouse-public").and_then(Json::as_bool) == Some(true)
                || op
                    .get("security")
                    .and_then(Json::as_array)
                    .is_some_and(Vec::is_empty);
            let operation_id = text("operationId")?;
            if public && pass_public {
                out.push(ImportedRoute {
                    config: route(template, &method, true, None, None),
                    method,
                    action_origin: None,
                    operation_id,
                });
                continue;
            }
            let (action, origin) = match text("x-gatehouse-action")? {
                Some(a) => (a, ActionOrigin::Extension),
                None => match default_action(&method) {
                    Some(a) => (a.to_string(), ActionOrigin::Default),
                    None => continue,
                },
            };
            let tag = op
                .get("tags")
                .and_then(Json::as_array)
                .and_then(|t| t.first())
                .and_then(Json::as_str)
                .filter(|t| !t.is_empty() && t.len() <= MAX_TEXT)
                .map(str::to_string);
            let kind = match text("x-gatehouse-resource")?.or(tag) {
                Some(k) => k,
                None => collection_segment(path).ok_or_else(|| {
                    err(format!(
                        "{method} {path}: no resource kind (add x-gatehouse-resource)"
                    ))
                })?,
            };
            let id = match text("x-gatehouse-id")? {
                Some(id) => id,
                None => last_param(path).map_or_else(|| "*".to_string(), |p| format!("{{{p}}}")),
            };
            let resource = ResourceConfig {
                kind,
                id,
                policy_version: String::new(),
                scope: String::new(),
            };
            out.push(ImportedRoute {
                config: route(template, &method, false, Some(resource), Some(action)),
                method,
                action_origin: Some(origin),
                operation_id,
            });
        }
    }
    Ok(out)
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
pub fn import_table(routes: &[ImportedRoute]) -> Vec<String> {
    let rows: Vec<[String; 5]> = routes
        .iter()
        .map(|r| {
            let c = &r.config;
            let resource = c
                .resource
                .as_ref()
                .map_or(String::new(), |res| format!("{} {}", res.kind, res.id));
            let (action, origin) = match r.action_origin {
                None => (
                    "-".to_string(),
                    "public: allowed without a decision".to_string(),
                ),
                Some(o) => (
                    c.action.clone().unwrap_or_default(),
                    match o {
                        ActionOrigin::Extension => "x-gatehouse-action".to_string(),
                        ActionOrigin::Default => format!("default for {}", r.method),
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
    fn issue_17_bad_documents_are_refused() {
        assert!(routes_from_openapi(&json!({"swagger": "2.0"}), false).is_err());
        assert!(routes_from_openapi(&json!({"openapi": "3.0.0"}), false).is_err());
        let bad = json!({"openapi": "3.0.0", "paths": {"/a": {"get": {"x-gatehouse-action": 7}}}});
        assert!(routes_from_openapi(&bad, false).is_err());
        let rootless = json!({"openapi": "3.0.0", "paths": {"/": {"get": {}}}});
        assert!(routes_from_openapi(&rootless, false).is_err());
    }
}
