//! Step 3 of a decision: the proxy-neutral answer (allow with the headers for the backend,
//! or deny with the status, headers and body for the client), and its rendering as
//! Envoy's gRPC `CheckResponse`. The HTTP ext_authz and forward-auth modes render the
//! same answer as an HTTP response (see `http_mode`).

use std::sync::Arc;

use prost::bytes::BufMut;

use crate::protowire::{
    VARINT, field_len, key, put_len, put_str, put_varint_field, str_len, varint_field_len,
};

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

/// Text shared without copying: header names built once per configuration, a
/// principal's header values built once per principal, the decision id.
pub(crate) type Text = Arc<str>;

/// An allowed request.
#[derive(Debug)]
pub(crate) struct Allowed {
    /// The decision id (also among `headers`).
    pub(crate) decision_id: Text,
    /// The principal's id, when one was resolved.
    pub(crate) principal: Option<Text>,
    /// Headers set on the request to the backend (lower-case names).
    pub(crate) headers: Vec<(Text, Text)>,
    /// Client-sent headers under our prefix, removed before the backend sees them.
    pub(crate) remove: Vec<String>,
    /// The gRPC answer carries the decision in Envoy's dynamic metadata
    /// (`extAuthz.envoyMetadata: all`).
    pub(crate) metadata: bool,
}

/// A denied request.
#[derive(Debug)]
pub(crate) struct Denied {
    /// The decision id (also among `headers` and in `body`).
    pub(crate) decision_id: Text,
    /// HTTP status for the client.
    pub(crate) status: u16,
    /// Response headers (lower-case names): content type, decision id, challenge.
    pub(crate) headers: Vec<(Text, Text)>,
    /// Response body (JSON).
    pub(crate) body: String,
    /// The detailed reason (for Envoy's metadata and gRPC status, never the body unless
    /// `denyDetails` is on).
    pub(crate) reason: String,
    /// The policy that denied, when one did.
    pub(crate) policy: Option<String>,
    /// The gRPC answer carries the decision in Envoy's dynamic metadata (unless
    /// `extAuthz.envoyMetadata: none`).
    pub(crate) metadata: bool,
}

impl Answer {
    /// Envoy's gRPC answer: headers to set and remove on allow, a denied HTTP response
    /// otherwise, with the decision in the dynamic metadata (for Envoy's access log).
    pub(crate) fn into_check_response(self) -> CheckResponse {
        match self {
            Answer::Allow(a) => {
                let mut meta = Struct::default();
                meta.fields
                    .insert("decision_id".into(), pb_string(&a.decision_id));
                meta.fields.insert("effect".into(), pb_string("allow"));
                if let Some(p) = &a.principal {
                    meta.fields.insert("principal".into(), pb_string(p));
                }
                let ok = OkHttpResponse {
                    headers: a.headers.iter().map(|(k, v)| header(k, v)).collect(),
                    headers_to_remove: a.remove,
                    ..Default::default()
                };
                CheckResponse {
                    status: rpc_status(0, ""),
                    http_response: Some(HttpResponse::OkResponse(ok)),
                    dynamic_metadata: a.metadata.then_some(meta),
                }
            }
            Answer::Deny(d) => {
                let code = grpc_code(d.status);
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
                    headers: d.headers.iter().map(|(k, v)| header(k, v)).collect(),
                    body: d.body,
                };
                CheckResponse {
                    status,
                    http_response: Some(HttpResponse::DeniedResponse(denied)),
                    dynamic_metadata: d.metadata.then_some(meta),
                }
            }
        }
    }
}

impl Answer {
    /// The protobuf bytes of [`into_check_response`](Self::into_check_response)'s
    /// message (the same bytes prost writes), written straight from the answer: no copy
    /// of a header name or value, no metadata map. The servers use
    /// [`encode_reserving`](Self::encode_reserving).
    #[cfg(test)]
    pub(crate) fn encode(&self, buf: &mut impl BufMut) {
        self.encode_with(self.body_len(), buf);
    }

    /// The protobuf bytes of [`into_check_response`](Self::into_check_response)'s
    /// message (the same bytes prost writes), written straight from the answer (no copy
    /// of a header name or value, no metadata map) after `reserve` is told their length:
    /// the length of the headers is worked out once for both.
    pub(crate) fn encode_reserving<B: BufMut>(
        &self,
        buf: &mut B,
        reserve: impl FnOnce(&mut B, usize),
    ) {
        let body = self.body_len();
        reserve(buf, self.len_with(body));
        self.encode_with(body, buf);
    }

    /// The length of the `OkHttpResponse` or the `DeniedHttpResponse`.
    fn body_len(&self) -> usize {
        match self {
            Answer::Allow(a) => a.ok_len(),
            Answer::Deny(d) => d.denied_len(),
        }
    }

    /// Writes the whole message, given the length of the HTTP response (`body_len`).
    fn encode_with(&self, body: usize, buf: &mut impl BufMut) {
        match self {
            Answer::Allow(a) => {
                // `status`: code 0, no message: an empty message, still present.
                put_len(buf, 1, 0);
                put_len(buf, 3, body);
                for (k, v) in &a.headers {
                    put_header(buf, k, v);
                }
                for name in &a.remove {
                    put_len(buf, 5, name.len());
                    buf.put_slice(name.as_bytes());
                }
                if a.metadata {
                    put_metadata(buf, &a.metadata());
                }
            }
            Answer::Deny(d) => {
                let code = grpc_code(d.status);
                put_len(buf, 1, status_len(code, &d.reason));
                put_varint_field(buf, 1, code);
                put_str(buf, 2, &d.reason);
                put_len(buf, 2, body);
                put_len(buf, 1, http_status_len(d.status));
                put_varint_field(buf, 1, i32::from(d.status));
                for (k, v) in &d.headers {
                    put_header(buf, k, v);
                }
                put_str(buf, 3, &d.body);
                if d.metadata {
                    put_metadata(buf, &d.metadata());
                }
            }
        }
    }

    /// The length of what [`encode`](Self::encode) writes.
    #[cfg(test)]
    pub(crate) fn encoded_len(&self) -> usize {
        self.len_with(self.body_len())
    }

    /// The length of the whole message, given the length of the HTTP response.
    fn len_with(&self, body: usize) -> usize {
        match self {
            Answer::Allow(a) => {
                let meta = if a.metadata {
                    metadata_len(&a.metadata())
                } else {
                    0
                };
                field_len(0) + field_len(body) + meta
            }
            Answer::Deny(d) => {
                let meta = if d.metadata {
                    metadata_len(&d.metadata())
                } else {
                    0
                };
                field_len(status_len(grpc_code(d.status), &d.reason)) + field_len(body) + meta
            }
        }
    }
}

/// The dynamic metadata's entries, in key order (prost writes a map in key order).
type Metadata<'a> = [Option<(&'static str, &'a str)>; 4];

impl Allowed {
    fn metadata(&self) -> Metadata<'_> {
        [
            Some(("decision_id", &self.decision_id)),
            Some(("effect", "allow")),
            self.principal.as_deref().map(|p| ("principal", p)),
            None,
        ]
    }

    /// The `OkHttpResponse`'s length: headers (tag 2), headers to remove (tag 5).
    fn ok_len(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| field_len(header_len(k, v)))
            .sum();
        let remove: usize = self.remove.iter().map(|r| field_len(r.len())).sum();
        headers + remove
    }
}

impl Denied {
    fn metadata(&self) -> Metadata<'_> {
        [
            Some(("decision_id", &self.decision_id)),
            Some(("effect", "deny")),
            self.policy.as_deref().map(|p| ("policy", p)),
            Some(("reason", &self.reason)),
        ]
    }

    /// The `DeniedHttpResponse`'s length: status (tag 1), headers (2), body (3).
    fn denied_len(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| field_len(header_len(k, v)))
            .sum();
        field_len(http_status_len(self.status)) + headers + str_len(&self.body)
    }
}

/// `google.rpc.Status`: code (tag 1), message (2).
fn status_len(code: i32, message: &str) -> usize {
    varint_field_len(code) + str_len(message)
}

/// `envoy.type.v3.HttpStatus`: code (tag 1).
fn http_status_len(status: u16) -> usize {
    varint_field_len(i32::from(status))
}

/// `HeaderValue` (key, value) inside a `HeaderValueOption`.
fn header_value_len(k: &str, v: &str) -> usize {
    str_len(k) + str_len(v)
}

/// `HeaderValueOption`: header (tag 1), append action (3) overwrite-or-add, keep empty
/// value (4) true.
fn header_len(k: &str, v: &str) -> usize {
    field_len(header_value_len(k, v)) + 2 + 2
}

/// One header (tag 2 of both `OkHttpResponse` and `DeniedHttpResponse`): the bytes as
/// `put_len`, `put_str` and `put_varint_field` write them, the keys and lengths between
/// the name and the value gathered on the stack first (four writes to `buf`, each of which
/// checks its room, instead of one per key, length and flag).
fn put_header(buf: &mut impl BufMut, k: &str, v: &str) {
    let mut head = Head::default();
    head.len_field(2, header_len(k, v));
    head.len_field(1, header_value_len(k, v));
    if !k.is_empty() {
        head.len_field(1, k.len());
    }
    buf.put_slice(head.take());
    buf.put_slice(k.as_bytes());
    if !v.is_empty() {
        head.len_field(2, v.len());
        buf.put_slice(head.take());
        buf.put_slice(v.as_bytes());
    }
    let action = HeaderAppendAction::OverwriteIfExistsOrAdd as i32;
    if action != 0 {
        head.byte(key(3, VARINT));
        head.varint(i64::from(action) as u64);
    }
    // `keep_empty_value: true`.
    head.byte(key(4, VARINT));
    head.byte(1);
    buf.put_slice(head.take());
}

/// Protobuf's length-delimited wire type.
const LEN_DELIMITED: u8 = 2;

/// A few field keys and varints, written on the stack: at most three keys with their
/// lengths between two `take`s, 30 bytes (a length below 2^63 is at most nine bytes).
#[derive(Default)]
struct Head {
    bytes: [u8; 32],
    len: usize,
}

impl Head {
    fn byte(&mut self, b: u8) {
        self.bytes[self.len] = b;
        self.len += 1;
    }

    /// A varint as prost writes it (at most ten bytes).
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.byte((v as u8) | 0x80);
            v >>= 7;
        }
        self.byte(v as u8);
    }

    /// The key and the length of a length-delimited field (as `put_len` writes them).
    fn len_field(&mut self, tag: u8, len: usize) {
        self.byte(key(tag, LEN_DELIMITED));
        self.varint(len as u64);
    }

    /// The bytes written since the last `take`.
    fn take(&mut self) -> &[u8] {
        let n = std::mem::take(&mut self.len);
        &self.bytes[..n]
    }
}

/// A `google.protobuf.Value` holding a string: `string_value` (tag 3), written even
/// when empty (a oneof member).
fn string_value_len(v: &str) -> usize {
    field_len(v.len())
}

/// One entry of `Struct.fields`: key (tag 1), value (2).
fn entry_len(k: &str, v: &str) -> usize {
    str_len(k) + field_len(string_value_len(v))
}

/// The `Struct` (tag 4 of `CheckResponse`): each entry a `fields` (tag 1) item.
fn metadata_len(m: &Metadata<'_>) -> usize {
    field_len(struct_len(m))
}

fn struct_len(m: &Metadata<'_>) -> usize {
    m.iter()
        .flatten()
        .map(|(k, v)| field_len(entry_len(k, v)))
        .sum()
}

fn put_metadata(buf: &mut impl BufMut, m: &Metadata<'_>) {
    put_len(buf, 4, struct_len(m));
    for (k, v) in m.iter().flatten() {
        put_len(buf, 1, entry_len(k, v));
        put_str(buf, 1, k);
        put_len(buf, 2, string_value_len(v));
        put_len(buf, 3, v.len());
        buf.put_slice(v.as_bytes());
    }
}

/// The gRPC status code of a denial with this HTTP status.
fn grpc_code(status: u16) -> i32 {
    match status {
        401 => 16,
        400 | 413 => 3,
        404 => 5,
        503 => 14,
        _ => 7,
    }
}

fn header(key: &str, value: &str) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: key.to_string(),
            value: value.to_string(),
            ..Default::default()
        }),
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        keep_empty_value: true,
        ..Default::default()
    }
}

fn pb_string(s: &str) -> PbValue {
    PbValue {
        kind: Some(Kind::StringValue(s.to_string())),
    }
}

fn rpc_status(code: i32, message: &str) -> Option<RpcStatus> {
    Some(RpcStatus {
        code,
        message: message.to_string(),
        details: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    fn text(s: &str) -> Text {
        Text::from(s)
    }

    fn allowed(principal: Option<&str>, headers: &[(&str, &str)], remove: &[&str]) -> Answer {
        Answer::Allow(Allowed {
            decision_id: text("0193a5b6c7d8ffeeddccbbaa99887766"),
            principal: principal.map(text),
            headers: headers.iter().map(|(k, v)| (text(k), text(v))).collect(),
            remove: remove.iter().map(|r| r.to_string()).collect(),
            metadata: true,
        })
    }

    /// `answer` without Envoy dynamic metadata.
    fn without_metadata(mut answer: Answer) -> Answer {
        match &mut answer {
            Answer::Allow(a) => a.metadata = false,
            Answer::Deny(d) => d.metadata = false,
        }
        answer
    }

    fn denied(status: u16, reason: &str, policy: Option<&str>, body: &str) -> Answer {
        Answer::Deny(Denied {
            decision_id: text("id-1"),
            status,
            headers: vec![
                (text("content-type"), text("application/json")),
                (text("x-gatehouse-decision-id"), text("id-1")),
            ],
            body: body.to_string(),
            reason: reason.to_string(),
            policy: policy.map(str::to_string),
            metadata: true,
        })
    }

    /// Every shape of answer: the direct encoding is byte for byte prost's encoding of the
    /// built `CheckResponse`, and decodes to that message.
    #[test]
    fn issue_15_the_direct_encoding_is_prosts() {
        let long = "v".repeat(300);
        let answers = [
            allowed(None, &[], &[]),
            allowed(Some("bob"), &[("x-gatehouse-decision-id", "id")], &[]),
            allowed(
                Some(""),
                &[
                    ("x-gatehouse-principal", "b%C3%B6b"),
                    ("x-gatehouse-roles", ""),
                ],
                &["x-gatehouse-forged", ""],
            ),
            allowed(
                Some("é"),
                &[("x-gatehouse-principal-attr", &long), ("", "v")],
                &[&long],
            ),
            denied(
                403,
                "bob may not read document \"1\"",
                Some("resource.document.vdefault"),
                "{}",
            ),
            denied(401, "", None, ""),
            denied(400, "rejected path", None, &long),
            denied(404, &long, Some(""), "{\"detail\":\"not found\"}"),
            denied(413, "too large", None, "x"),
            denied(503, "down", None, "x"),
            denied(418, "other", None, "x"),
            denied(65535, "any status", None, "x"),
            without_metadata(allowed(
                Some("bob"),
                &[("x-gatehouse-decision-id", "id")],
                &[],
            )),
            without_metadata(allowed(None, &[], &["x-gatehouse-roles"])),
            without_metadata(denied(403, "no", Some("p"), "{}")),
        ];
        for answer in answers {
            let mut direct = Vec::new();
            answer.encode(&mut direct);
            assert_eq!(direct.len(), answer.encoded_len(), "{answer:?}");
            let (mut reserved, mut told) = (Vec::new(), None);
            answer.encode_reserving(&mut reserved, |_, n| told = Some(n));
            assert_eq!(
                (reserved.as_slice(), told),
                (direct.as_slice(), Some(direct.len()))
            );
            let built = answer.into_check_response();
            assert_eq!(direct, built.encode_to_vec(), "{built:?}");
            assert_eq!(CheckResponse::decode(direct.as_slice()).unwrap(), built);
        }
    }

    /// `envoyMetadata` decides whether an answer carries Envoy dynamic metadata: an
    /// answer without it has no `dynamic_metadata` at all (an empty `Struct` would still
    /// be parsed and merged by Envoy).
    #[test]
    fn issue_15_metadata_only_when_asked() {
        let with = allowed(Some("bob"), &[("x-gatehouse-decision-id", "id")], &[]);
        let mut bytes = Vec::new();
        with.encode(&mut bytes);
        let meta = CheckResponse::decode(bytes.as_slice())
            .unwrap()
            .dynamic_metadata;
        assert_eq!(meta.unwrap().fields.len(), 3);
        for answer in [
            without_metadata(allowed(Some("bob"), &[], &[])),
            without_metadata(denied(403, "no", None, "{}")),
        ] {
            let mut bytes = Vec::new();
            answer.encode(&mut bytes);
            assert_eq!(bytes.len(), answer.encoded_len());
            assert_eq!(
                CheckResponse::decode(bytes.as_slice())
                    .unwrap()
                    .dynamic_metadata,
                None
            );
        }
    }
}
