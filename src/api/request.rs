//! A `CheckResources` request as the API works on it: the principal and resources already
//! in the engine's shape (attributes as CEL maps, roles shared), so that neither transport
//! decodes into protobuf's `google.protobuf.Value` tree first and converts it again.
//! [`wire`](super::wire) reads it from protobuf, [`protojson`](super::protojson) from JSON.

use std::collections::BTreeMap;
use std::sync::Arc;

use prost_types::value::Kind;

use super::pb::cerbos::audit::v1::RequestContext;
use super::pb::cerbos::engine::v1 as pb_engine;
use super::pb::cerbos::request::v1::check_resources_request::ResourceEntry;
use super::pb::cerbos::request::v1::{AuxData, CheckResourcesRequest};
use crate::cel::{Key, MapValue, Value};
use crate::engine;

/// A decoded `cerbos.request.v1.CheckResourcesRequest`.
#[derive(Clone, Debug, Default)]
pub struct CheckRequest {
    pub(crate) request_id: String,
    pub(crate) include_meta: bool,
    pub(crate) principal: Option<engine::Principal>,
    pub(crate) resources: Vec<Entry>,
    pub(crate) aux_data: Option<AuxData>,
    pub(crate) request_context: Option<RequestContext>,
}

/// One `ResourceEntry`: the actions asked and the resource.
#[derive(Clone, Debug, Default)]
pub(crate) struct Entry {
    pub(crate) actions: Vec<String>,
    pub(crate) resource: Option<engine::Resource>,
}

impl From<CheckResourcesRequest> for CheckRequest {
    fn from(req: CheckResourcesRequest) -> Self {
        CheckRequest {
            request_id: req.request_id,
            include_meta: req.include_meta,
            principal: req.principal.as_ref().map(principal_input),
            resources: req
                .resources
                .into_iter()
                .map(|e| Entry {
                    actions: e.actions,
                    resource: e.resource.map(resource_input),
                })
                .collect(),
            aux_data: req.aux_data,
            request_context: req.request_context,
        }
    }
}

impl CheckRequest {
    /// Reads a request from protobuf bytes as the gRPC service does: with prost's rules and
    /// errors, attributes straight into CEL maps.
    pub fn decode_protobuf(bytes: &[u8]) -> Result<CheckRequest, prost::DecodeError> {
        use prost::Message;
        super::wire::CheckResourcesWire::decode(bytes)
            .map(super::wire::CheckResourcesWire::into_request)
    }

    /// The same request as the generated protobuf message (for clients and tests).
    pub fn to_pb(&self) -> CheckResourcesRequest {
        CheckResourcesRequest {
            request_id: self.request_id.clone(),
            include_meta: self.include_meta,
            principal: self.principal.as_ref().map(|p| pb_engine::Principal {
                id: p.id.clone(),
                policy_version: p.policy_version.clone(),
                roles: p.roles.iter().map(|r| r.to_string()).collect(),
                attr: pb_map(&p.attr),
                scope: p.scope.clone(),
            }),
            resources: self
                .resources
                .iter()
                .map(|e| ResourceEntry {
                    actions: e.actions.clone(),
                    resource: e.resource.as_ref().map(|r| pb_engine::Resource {
                        kind: r.kind.clone(),
                        policy_version: r.policy_version.clone(),
                        id: r.id.clone(),
                        attr: pb_map(&r.attr),
                        scope: r.scope.clone(),
                    }),
                })
                .collect(),
            aux_data: self.aux_data.clone(),
            request_context: self.request_context.clone(),
        }
    }
}

/// A CEL map of request attributes as a protobuf `map<string, Value>`.
pub(crate) fn pb_map(m: &MapValue) -> BTreeMap<String, prost_types::Value> {
    m.iter()
        .map(|(k, v)| (k.to_string(), pb_value(v)))
        .collect()
}

/// A CEL value of request attributes as a `google.protobuf.Value`. Attributes read from a
/// request hold only JSON's shapes (null, bool, double, string, list, string-keyed map);
/// integers become numbers and any other value null.
pub(crate) fn pb_value(v: &Value) -> prost_types::Value {
    let kind = match v {
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Double(d) => Kind::NumberValue(*d),
        Value::Int(i) => Kind::NumberValue(*i as f64),
        Value::Uint(u) => Kind::NumberValue(*u as f64),
        Value::String(s) => Kind::StringValue(s.to_string()),
        Value::List(items) => Kind::ListValue(prost_types::ListValue {
            values: items.iter().map(pb_value).collect(),
        }),
        Value::Map(m) => Kind::StructValue(prost_types::Struct { fields: pb_map(m) }),
        _ => Kind::NullValue(0),
    };
    prost_types::Value { kind: Some(kind) }
}

/// A `google.protobuf.Value` as a CEL value (numbers are doubles, as in Cerbos).
fn cel_value(v: &prost_types::Value) -> Value {
    match &v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(*b),
        Some(Kind::NumberValue(n)) => Value::Double(*n),
        Some(Kind::StringValue(s)) => Value::String(Arc::from(s.as_str())),
        Some(Kind::ListValue(l)) => Value::list(l.values.iter().map(cel_value).collect()),
        Some(Kind::StructValue(s)) => Value::map(cel_map(&s.fields)),
    }
}

/// A protobuf `map<string, Value>` as a CEL map.
pub(super) fn cel_map(m: &BTreeMap<String, prost_types::Value>) -> MapValue {
    // Sized once; the keys come in order, so every insert appends.
    let mut out = MapValue::with_capacity(m.len());
    for (k, v) in m {
        out.insert(Key::String(Arc::from(k.as_str())), cel_value(v));
    }
    out
}

/// A protobuf principal as the engine's.
pub(super) fn principal_input(p: &pb_engine::Principal) -> engine::Principal {
    engine::Principal {
        id: p.id.clone(),
        roles: p.roles.iter().map(|r| Arc::from(r.as_str())).collect(),
        attr: Arc::new(cel_map(&p.attr)),
        policy_version: p.policy_version.clone(),
        scope: p.scope.clone(),
    }
}

fn resource_input(r: pb_engine::Resource) -> engine::Resource {
    engine::Resource {
        attr: Arc::new(cel_map(&r.attr)),
        kind: r.kind,
        id: r.id,
        policy_version: r.policy_version,
        scope: r.scope,
    }
}

/// Attribute entries in the order they arrived as a CEL map: sorted by key, and of
/// repeated keys the last one kept (protobuf's rule for maps). Already sorted input (what
/// most encoders write) is not sorted again; nothing here is quadratic.
pub(crate) fn sorted_map(mut fields: Vec<(Key, Value)>) -> MapValue {
    if !fields.windows(2).all(|w| w[0].0 < w[1].0) {
        // Stable, so that repeated keys stay in arrival order and the last one wins.
        fields.sort_by(|a, b| a.0.cmp(&b.0));
        fields.dedup_by(|later, kept| {
            if later.0 == kept.0 {
                std::mem::swap(later, kept);
                true
            } else {
                false
            }
        });
    }
    MapValue::from_sorted(fields)
}
