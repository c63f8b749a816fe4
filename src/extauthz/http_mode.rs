//! Envoy's HTTP ext_authz (`http_service`): Envoy sends the client's request (method,
//! headers, body when buffered) to `/_gatehouse/authz` + the original path on the HTTP
//! listener; `200` lets it through with the backend headers (and
//! `x-envoy-auth-headers-to-remove` for forged ones), anything else is the denial Envoy
//! sends back. The decision is the gRPC mode's: the request becomes the same
//! `CheckRequest` (step 1) and the same [`Answer`] (step 3) is rendered as HTTP.
//!
//! The router also serves forward-auth (see [`super::forward_auth`]).

use std::collections::HashMap;

use crate::extauthz::pb::envoy::service::auth::v3::AttributeContext;
use crate::extauthz::pb::envoy::service::auth::v3::attribute_context::{
    HttpRequest, Request as AttrRequest,
};
use crate::extauthz::pb::v3::CheckRequest;
use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;

use super::LiveExtAuthz;
use super::answer::Answer;

/// Envoy's `path_prefix` for Gatehouse's HTTP ext_authz service.
pub(crate) const AUTHZ_PREFIX: &str = "/_gatehouse/authz";

/// Where forward-auth proxies send their subrequests.
pub(crate) const FORWARD_AUTH_PATH: &str = "/_gatehouse/forward-auth";

/// The header that asks Envoy's HTTP ext_authz to remove request headers on allow.
const HEADERS_TO_REMOVE: &str = "x-envoy-auth-headers-to-remove";

/// The HTTP listener's routes for the HTTP ext_authz and forward-auth modes; each answers
/// 404 while its mode is off in the configuration in force.
pub fn router(ext: LiveExtAuthz) -> Router {
    Router::new()
        .route(AUTHZ_PREFIX, any(http_authz))
        .route(&format!("{AUTHZ_PREFIX}/{{*rest}}"), any(http_authz))
        .route(FORWARD_AUTH_PATH, any(super::forward_auth::handle))
        .with_state(ext)
}

/// Request headers as Envoy puts them in a CheckRequest: lower-case names, repeated
/// headers joined with `,`.
pub(crate) fn header_map(headers: &HeaderMap) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = HashMap::with_capacity(headers.len());
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        out.entry(name.as_str().to_string())
            .and_modify(|v| {
                v.push(',');
                v.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    out
}

/// A CheckRequest for `method path` (path with its query) with `headers` and `body`.
pub(crate) fn check_request(
    method: &str,
    path: &str,
    headers: HashMap<String, String>,
    body: Vec<u8>,
) -> CheckRequest {
    let host = headers.get("host").cloned().unwrap_or_default();
    let id = headers.get("x-request-id").cloned().unwrap_or_default();
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(AttrRequest {
                http: Some(HttpRequest {
                    id,
                    method: method.to_string(),
                    path: path.to_string(),
                    host,
                    headers,
                    size: i64::try_from(body.len()).unwrap_or(i64::MAX),
                    raw_body: body,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

async fn http_authz(State(live): State<LiveExtAuthz>, request: Request) -> Response {
    let ext = live.current();
    if !ext.http_service {
        return StatusCode::NOT_FOUND.into_response();
    }
    let (parts, body) = request.into_parts();
    let raw = parts
        .uri
        .path_and_query()
        .map_or(parts.uri.path(), |p| p.as_str());
    // The original path is what follows the prefix (Envoy appends the client's :path).
    let path = raw.strip_prefix(AUTHZ_PREFIX).unwrap_or_default();
    let mut headers = header_map(&parts.headers);
    // Envoy sends at most its `max_request_bytes`; a longer body than Gatehouse reads is
    // a partial one, refused by routes that read the body.
    let body = match to_bytes(body, ext.max_body).await {
        Ok(b) => b.to_vec(),
        Err(_) => {
            headers.insert("x-envoy-auth-partial-body".into(), "true".into());
            Vec::new()
        }
    };
    let req = check_request(parts.method.as_str(), path, headers, body);
    let view = super::view::CheckView::from_message(&req);
    render(ext.authorize(&view, None).await, true, None)
}

/// The answer as an HTTP response: `200` with the backend headers (and, for Envoy,
/// the forged headers to remove), or the denial; `deny_status` replaces the status of
/// every denial but 401.
pub(crate) fn render(answer: Answer, envoy: bool, deny_status: Option<u16>) -> Response {
    match answer {
        Answer::Allow(a) => {
            let mut headers = HeaderMap::with_capacity(a.headers.len() + 1);
            for (k, v) in &a.headers {
                let (Ok(name), Ok(value)) =
                    (HeaderName::try_from(&**k), HeaderValue::try_from(&**v))
                else {
                    // Every value Gatehouse sets is encoded to be a valid header; if one
                    // were not, the request must not pass without it.
                    tracing::error!(header = %k, "unencodable backend header: denying");
                    return StatusCode::INTERNAL_SERVER_ERROR.into_response();
                };
                headers.insert(name, value);
            }
            if envoy
                && !a.remove.is_empty()
                && let Ok(v) = HeaderValue::try_from(a.remove.join(","))
            {
                headers.insert(HeaderName::from_static(HEADERS_TO_REMOVE), v);
            }
            (StatusCode::OK, headers).into_response()
        }
        Answer::Deny(d) => {
            let status = match deny_status {
                Some(s) if d.status != 401 => s,
                _ => d.status,
            };
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
            let mut headers = HeaderMap::with_capacity(d.headers.len());
            for (k, v) in &d.headers {
                if let (Ok(name), Ok(value)) =
                    (HeaderName::try_from(&**k), HeaderValue::try_from(&**v))
                {
                    headers.insert(name, value);
                }
            }
            (status, headers, Body::from(d.body)).into_response()
        }
    }
}
