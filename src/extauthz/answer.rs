//! Step 3 of a decision: the proxy-neutral answer (allow with the headers for the backend,
//! or deny with the status, headers and body for the client), and its rendering as
//! Envoy's gRPC `CheckResponse`. The HTTP ext_authz and forward-auth modes render the
//! same answer as an HTTP response (see `http_mode`).

use crate::extauthz::pb::google::protobuf::{Struct, Value as PbValue, value::Kind};
use crate::extauthz::pb::google::rpc::Status as RpcStatus;
use crate::extauthz::pb::v3::{
    CheckResponse, DeniedHttpResponse, HeaderAppendAction, HeaderValue, HeaderValueOption,
    HttpResponse, HttpStatus, OkHttpResponse,
};

/// What the proxy is told about one request.
#[derive(Debug)]
pub(crate) enum Answer {
    /// Let the request through, with these headers.
    Allow(Allowed),
    /// Answer the client instead of the backend.
    Deny(Denied),
}

/// An allowed request.
#[derive(Debug)]
pub(crate) struct Allowed {
    /// The decision id (also among `headers`).
    pub(crate) decision_id: String,
    /// The principal's id, when one was resolved.
    pub(crate) principal: Option<String>,
    /// Headers set on the request to the backend (lower-case names).
    pub(crate) headers: Vec<(String, String)>,
    /// Client-sent headers under our prefix, removed before the backend sees them.
    pub(crate) remove: Vec<String>,
}

/// A denied request.
#[derive(Debug)]
pub(crate) struct Denied {
    /// The decision id (also among `headers` and in `body`).
    pub(crate) decision_id: String,
    /// HTTP status for the client.
    pub(crate) status: u16,
    /// Response headers (lower-case names): content type, decision id, challenge.
    pub(crate) headers: Vec<(String, String)>,
    /// Response body (JSON).
    pub(crate) body: String,
    /// The detailed reason (for Envoy's metadata and gRPC status, never the body unless
    /// `denyDetails` is on).
    pub(crate) reason: String,
    /// The policy that denied, when one did.
    pub(crate) policy: Option<String>,
}

impl Answer {
    /// Envoy's gRPC answer: headers to set and remove on allow, a denied HTTP response
    /// otherwise, with the decision in the dynamic metadata (for Envoy's access log).
    pub(crate) fn into_check_response(self) -> CheckResponse {
        match self {
            Answer::Allow(a) => {
                let mut meta = Struct::default();
                meta.fields
                    .insert("decision_id".into(), pb_owned(a.decision_id));
                meta.fields.insert("effect".into(), pb_string("allow"));
                if let Some(p) = a.principal {
                    meta.fields.insert("principal".into(), pb_owned(p));
                }
                let ok = OkHttpResponse {
                    headers: a.headers.into_iter().map(|(k, v)| header(k, v)).collect(),
                    headers_to_remove: a.remove,
                    ..Default::default()
                };
                CheckResponse {
                    status: rpc_status(0, ""),
                    http_response: Some(HttpResponse::OkResponse(ok)),
                    dynamic_metadata: Some(meta),
                }
            }
            Answer::Deny(d) => {
                let code = match d.status {
                    401 => 16,
                    400 | 413 => 3,
                    404 => 5,
                    503 => 14,
                    _ => 7,
                };
                let mut meta = Struct::default();
                meta.fields
                    .insert("decision_id".into(), pb_string(&d.decision_id));
                meta.fields.insert("effect".into(), pb_string("deny"));
                meta.fields.insert("reason".into(), pb_string(&d.reason));
                if let Some(p) = &d.policy {
                    meta.fields.insert("policy".into(), pb_string(p));
                }
                let status = rpc_status(code, &d.reason);
                let denied = DeniedHttpResponse {
                    status: Some(HttpStatus {
                        code: i32::from(d.status),
                    }),
                    headers: d.headers.into_iter().map(|(k, v)| header(k, v)).collect(),
                    body: d.body,
                };
                CheckResponse {
                    status,
                    http_response: Some(HttpResponse::DeniedResponse(denied)),
                    dynamic_metadata: Some(meta),
                }
            }
        }
    }
}

fn header(key: String, value: String) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key,
            value,
            ..Default::default()
        }),
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        keep_empty_value: true,
        ..Default::default()
    }
}

fn pb_string(s: &str) -> PbValue {
    pb_owned(s.to_string())
}

fn pb_owned(s: String) -> PbValue {
    PbValue {
        kind: Some(Kind::StringValue(s)),
    }
}

fn rpc_status(code: i32, message: &str) -> Option<RpcStatus> {
    Some(RpcStatus {
        code,
        message: message.to_string(),
        details: Vec::new(),
    })
}
