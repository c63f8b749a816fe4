//! Cerbos's HTTP bodies: protojson as grpc-gateway reads and writes it. Requests accept each
//! field under its JSON name (`policyVersion`) or its proto name (`policy_version`), `null`
//! for "not set", and refuse unknown fields; responses use JSON names and leave out empty
//! fields.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

use prost_types::value::Kind;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value as Json};

use super::error::ApiError;
use super::pb::cerbos::audit::v1::RequestContext;
use super::pb::cerbos::effect::v1::Effect;
use super::pb::cerbos::engine::v1::plan_resources_input;
use super::pb::cerbos::engine::v1::{OutputEntry, Principal};
use super::pb::cerbos::request::v1::{AuxData, PlanResourcesRequest, aux_data};
use super::pb::cerbos::response::v1::check_resources_response::{ResultEntry, result_entry};
use super::pb::cerbos::response::v1::{CheckResourcesResponse, ServerInfoResponse};
use super::pb::cerbos::schema::v1::ValidationError;
use super::request::{CheckRequest, Entry as CheckEntry, sorted_map};
use crate::cel::{Key, MapValue, Value};
use crate::engine;

// === decoding ===

/// Reads a `CheckResourcesRequest` from a request body. An empty body is an empty message.
/// Attributes are read straight into CEL values.
pub fn decode_check_resources(body: &[u8]) -> Result<CheckRequest, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(CheckRequest::default());
    }
    let json = parse(body)?;
    let mut o = Fields::new(&json)?;
    let req = CheckRequest {
        request_id: o.string("requestId", "request_id")?,
        include_meta: o.bool("includeMeta", "include_meta")?,
        principal: o.message("principal", "principal", check_principal)?,
        resources: o.repeated_messages("resources", "resources", resource_entry)?,
        aux_data: o.message("auxData", "aux_data", aux_data)?,
        request_context: o.message("requestContext", "request_context", request_context)?,
    };
    o.finish()?;
    Ok(req)
}

/// Reads a `PlanResourcesRequest` from a request body. An empty body is an empty message.
pub fn decode_plan_resources(body: &[u8]) -> Result<PlanResourcesRequest, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(PlanResourcesRequest::default());
    }
    let json = parse(body)?;
    let mut o = Fields::new(&json)?;
    let req = PlanResourcesRequest {
        request_id: o.string("requestId", "request_id")?,
        action: o.string("action", "action")?,
        principal: o.message("principal", "principal", principal)?,
        resource: o.message("resource", "resource", plan_resource)?,
        aux_data: o.message("auxData", "aux_data", aux_data)?,
        include_meta: o.bool("includeMeta", "include_meta")?,
        actions: o.repeated_strings("actions", "actions")?,
        request_context: o.message("requestContext", "request_context", request_context)?,
    };
    o.finish()?;
    Ok(req)
}

fn plan_resource(v: &Node<'_>) -> Result<plan_resources_input::Resource, ApiError> {
    let mut o = Fields::new(v)?;
    let r = plan_resources_input::Resource {
        kind: o.string("kind", "kind")?,
        attr: o.value_map("attr", "attr")?,
        policy_version: o.string("policyVersion", "policy_version")?,
        scope: o.string("scope", "scope")?,
    };
    o.finish()?;
    Ok(r)
}

fn principal(v: &Node<'_>) -> Result<Principal, ApiError> {
    let mut o = Fields::new(v)?;
    let p = Principal {
        id: o.string("id", "id")?,
        policy_version: o.string("policyVersion", "policy_version")?,
        roles: o.repeated_strings("roles", "roles")?,
        attr: o.value_map("attr", "attr")?,
        scope: o.string("scope", "scope")?,
    };
    o.finish()?;
    Ok(p)
}

/// A principal of a check, its fields in the order of the generated message's reader.
fn check_principal(v: &Node<'_>) -> Result<engine::Principal, ApiError> {
    let mut o = Fields::new(v)?;
    let id = o.string("id", "id")?;
    let policy_version = o.string("policyVersion", "policy_version")?;
    let roles = o.repeated_strings("roles", "roles")?;
    let attr = o.cel_map("attr", "attr")?;
    let scope = o.string("scope", "scope")?;
    o.finish()?;
    Ok(engine::Principal {
        id,
        roles: roles.iter().map(|r| super::intern::shared(r)).collect(),
        attr: std::sync::Arc::new(attr),
        policy_version,
        scope,
    })
}

fn resource(v: &Node<'_>) -> Result<engine::Resource, ApiError> {
    let mut o = Fields::new(v)?;
    let kind = o.string("kind", "kind")?;
    let policy_version = o.string("policyVersion", "policy_version")?;
    let id = o.string("id", "id")?;
    let attr = o.cel_map("attr", "attr")?;
    let scope = o.string("scope", "scope")?;
    o.finish()?;
    Ok(engine::Resource {
        kind,
        id,
        attr: std::sync::Arc::new(attr),
        policy_version,
        scope,
    })
}

fn resource_entry(v: &Node<'_>) -> Result<CheckEntry, ApiError> {
    let mut o = Fields::new(v)?;
    let e = CheckEntry {
        actions: o.repeated_strings("actions", "actions")?,
        resource: o.message("resource", "resource", resource)?,
    };
    o.finish()?;
    Ok(e)
}

fn jwt(v: &Node<'_>) -> Result<aux_data::Jwt, ApiError> {
    let mut o = Fields::new(v)?;
    let j = aux_data::Jwt {
        token: o.string("token", "token")?,
        key_set_id: o.string("keySetId", "key_set_id")?,
    };
    o.finish()?;
    Ok(j)
}

fn aux_data(v: &Node<'_>) -> Result<AuxData, ApiError> {
    let mut o = Fields::new(v)?;
    let a = AuxData {
        jwt: o.message("jwt", "jwt", jwt)?,
        jwts: o.message_map("jwts", "jwts", jwt)?,
    };
    o.finish()?;
    Ok(a)
}

fn request_context(v: &Node<'_>) -> Result<RequestContext, ApiError> {
    let mut o = Fields::new(v)?;
    let c = RequestContext {
        annotations: o.value_map("annotations", "annotations")?,
    };
    o.finish()?;
    Ok(c)
}

/// How a JSON value reads in an error message.
fn token(v: &Node<'_>) -> String {
    match v {
        Node::Object(_) => "{".to_string(),
        Node::Array(_) => "[".to_string(),
        Node::Null => "null".to_string(),
        Node::Bool(b) => b.to_string(),
        Node::Number(n) => n.to_string(),
        Node::String(s) => Json::from(s.as_ref()).to_string(),
    }
}

fn unexpected(v: &Node<'_>) -> ApiError {
    ApiError::invalid_argument(format!(
        "proto: syntax error: unexpected token {}",
        token(v)
    ))
}

fn invalid(kind: &str, name: &str, v: &Node<'_>) -> ApiError {
    ApiError::invalid_argument(format!(
        "proto: invalid value for {kind} field {name}: {}",
        token(v)
    ))
}

/// The fields of one JSON object, taken one by one; whatever is left is unknown.
struct Fields<'a> {
    map: &'a [Entry<'a>],
    taken: Vec<&'a str>,
}

impl<'a> Fields<'a> {
    fn new(v: &'a Node<'a>) -> Result<Self, ApiError> {
        match v {
            Node::Object(map) => Ok(Fields {
                map,
                taken: Vec::with_capacity(map.len()),
            }),
            other => Err(unexpected(other)),
        }
    }

    /// The field's value and the name it was given under; `None` when absent or null.
    fn take(
        &mut self,
        json_name: &'static str,
        proto_name: &'static str,
    ) -> Result<Option<(&'a str, &'a Node<'a>)>, ApiError> {
        let mut found: Option<(&'a str, &'a Node<'a>)> = None;
        for name in [json_name, proto_name] {
            if let Some((k, v)) = self.map.iter().find(|(k, _)| k == name) {
                if self.taken.contains(&k.as_ref()) {
                    continue;
                }
                if found.is_some() {
                    return Err(ApiError::invalid_argument(format!(
                        "proto: duplicate field {k:?}"
                    )));
                }
                self.taken.push(k.as_ref());
                found = Some((k.as_ref(), v));
            }
        }
        Ok(found.filter(|(_, v)| !matches!(v, Node::Null)))
    }

    fn finish(self) -> Result<(), ApiError> {
        match self
            .map
            .iter()
            .map(|(k, _)| k.as_ref())
            .find(|k| !self.taken.contains(k))
        {
            Some(k) => Err(ApiError::invalid_argument(format!(
                "proto: unknown field {k:?}"
            ))),
            None => Ok(()),
        }
    }

    fn string(&mut self, j: &'static str, p: &'static str) -> Result<String, ApiError> {
        match self.take(j, p)? {
            None => Ok(String::new()),
            Some((_, Node::String(s))) => Ok(s.to_string()),
            Some((name, v)) => Err(invalid("string", name, v)),
        }
    }

    fn bool(&mut self, j: &'static str, p: &'static str) -> Result<bool, ApiError> {
        match self.take(j, p)? {
            None => Ok(false),
            Some((_, Node::Bool(b))) => Ok(*b),
            Some((name, v)) => Err(invalid("bool", name, v)),
        }
    }

    fn message<T>(
        &mut self,
        j: &'static str,
        p: &'static str,
        read: fn(&Node<'_>) -> Result<T, ApiError>,
    ) -> Result<Option<T>, ApiError> {
        self.take(j, p)?.map(|(_, v)| read(v)).transpose()
    }

    fn array(
        &mut self,
        j: &'static str,
        p: &'static str,
    ) -> Result<(&'a str, &'a [Node<'a>]), ApiError> {
        match self.take(j, p)? {
            None => Ok((j, &[])),
            Some((name, Node::Array(items))) => Ok((name, items)),
            Some((_, v)) => Err(unexpected(v)),
        }
    }

    fn repeated_strings(
        &mut self,
        j: &'static str,
        p: &'static str,
    ) -> Result<Vec<String>, ApiError> {
        let (name, items) = self.array(j, p)?;
        items
            .iter()
            .map(|v| match v {
                Node::String(s) => Ok(s.to_string()),
                other => Err(invalid("string", name, other)),
            })
            .collect()
    }

    fn repeated_messages<T>(
        &mut self,
        j: &'static str,
        p: &'static str,
        read: fn(&Node<'_>) -> Result<T, ApiError>,
    ) -> Result<Vec<T>, ApiError> {
        let (_, items) = self.array(j, p)?;
        items.iter().map(read).collect()
    }

    fn object(
        &mut self,
        j: &'static str,
        p: &'static str,
    ) -> Result<Option<&'a [Entry<'a>]>, ApiError> {
        match self.take(j, p)? {
            None => Ok(None),
            Some((_, Node::Object(m))) => Ok(Some(m)),
            Some((_, v)) => Err(unexpected(v)),
        }
    }

    fn value_map(
        &mut self,
        j: &'static str,
        p: &'static str,
    ) -> Result<BTreeMap<String, prost_types::Value>, ApiError> {
        let Some(m) = self.object(j, p)? else {
            return Ok(BTreeMap::new());
        };
        m.iter()
            .map(|(k, v)| Ok((k.to_string(), node_value(v)?)))
            .collect()
    }

    /// A `map<string, google.protobuf.Value>` read straight into a CEL map.
    fn cel_map(&mut self, j: &'static str, p: &'static str) -> Result<MapValue, ApiError> {
        let Some(m) = self.object(j, p)? else {
            return Ok(MapValue::new());
        };
        node_cel_map(m)
    }

    fn message_map<T: Default>(
        &mut self,
        j: &'static str,
        p: &'static str,
        read: fn(&Node<'_>) -> Result<T, ApiError>,
    ) -> Result<BTreeMap<String, T>, ApiError> {
        let Some(m) = self.object(j, p)? else {
            return Ok(BTreeMap::new());
        };
        m.iter()
            .map(|(k, v)| {
                let msg = if matches!(v, Node::Null) {
                    T::default()
                } else {
                    read(v)?
                };
                Ok((k.to_string(), msg))
            })
            .collect()
    }
}

/// A request body as parsed: a JSON tree whose strings borrow from the body unless they
/// hold escapes. The messages are read from it directly, without the hashing and copying
/// of a `serde_json::Value`; it keeps `serde_json::Value`'s meaning exactly (a repeated
/// key keeps its first place and its last value, a non-finite number is null).
#[derive(Debug, PartialEq)]
enum Node<'a> {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(Cow<'a, str>),
    Array(Vec<Node<'a>>),
    Object(Vec<Entry<'a>>),
}

/// One key and value of a parsed object.
type Entry<'a> = (Cow<'a, str>, Node<'a>);

/// Objects with more keys than this find repeated keys through a hash index.
const LINEAR_KEYS: usize = 8;

/// Parses a body as JSON; a syntax error reads as Cerbos's.
fn parse(body: &[u8]) -> Result<Node<'_>, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid_argument(format!("proto: syntax error: {e}")))
}

impl<'de> Deserialize<'de> for Node<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

/// An object key, borrowed from the body when it has no escapes.
struct NodeKey<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for NodeKey<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(NodeVisitor).and_then(|n| match n {
            Node::String(s) => Ok(NodeKey(s)),
            _ => Err(de::Error::custom("expected a string key")),
        })
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Node<'de>, E> {
        Ok(Node::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Node<'de>, E> {
        Ok(Node::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Node<'de>, E> {
        Ok(Node::Number(n.into()))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Node<'de>, E> {
        Ok(serde_json::Number::from_f64(n).map_or(Node::Null, Node::Number))
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Node<'de>, E> {
        Ok(Node::String(Cow::Borrowed(s)))
    }

    fn visit_str<E>(self, s: &str) -> Result<Node<'de>, E> {
        Ok(Node::String(Cow::Owned(s.to_string())))
    }

    fn visit_string<E>(self, s: String) -> Result<Node<'de>, E> {
        Ok(Node::String(Cow::Owned(s)))
    }

    fn visit_none<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }

    fn visit_unit<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node<'de>, D::Error> {
        Node::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node<'de>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node<'de>, A::Error> {
        let mut entries: Vec<Entry<'de>> = Vec::new();
        let mut index: HashMap<Cow<'de, str>, usize> = HashMap::new();
        while let Some(NodeKey(key)) = map.next_key()? {
            let value: Node<'de> = map.next_value()?;
            let seen = if entries.len() <= LINEAR_KEYS {
                entries.iter().position(|(k, _)| *k == key)
            } else {
                if index.is_empty() {
                    index.extend(entries.iter().enumerate().map(|(i, (k, _))| (k.clone(), i)));
                }
                index.get(&key).copied()
            };
            match seen {
                Some(i) => entries[i].1 = value,
                None => {
                    if !index.is_empty() {
                        index.insert(key.clone(), entries.len());
                    }
                    entries.push((key, value));
                }
            }
        }
        Ok(Node::Object(entries))
    }
}

/// A JSON number as a `google.protobuf.Value` kind: finite doubles only, as Cerbos.
fn number_kind(n: &serde_json::Number) -> Result<Kind, ApiError> {
    match n.as_f64().filter(|f| f.is_finite()) {
        Some(f) => Ok(Kind::NumberValue(f)),
        None => Err(ApiError::invalid_argument(format!(
            "proto: invalid google.protobuf.Value: {n}"
        ))),
    }
}

/// A parsed JSON value as a `google.protobuf.Value`.
fn node_value(v: &Node<'_>) -> Result<prost_types::Value, ApiError> {
    let kind = match v {
        Node::Null => Kind::NullValue(0),
        Node::Bool(b) => Kind::BoolValue(*b),
        Node::Number(n) => number_kind(n)?,
        Node::String(s) => Kind::StringValue(s.to_string()),
        Node::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.iter().map(node_value).collect::<Result<_, _>>()?,
        }),
        Node::Object(m) => Kind::StructValue(prost_types::Struct {
            fields: m
                .iter()
                .map(|(k, v)| Ok((k.to_string(), node_value(v)?)))
                .collect::<Result<_, ApiError>>()?,
        }),
    };
    Ok(prost_types::Value { kind: Some(kind) })
}

/// A parsed JSON value as the CEL value its `google.protobuf.Value` stands for (numbers
/// are doubles, as in Cerbos), with [`node_value`]'s errors.
fn node_cel(v: &Node<'_>) -> Result<Value, ApiError> {
    Ok(match v {
        Node::Null => Value::Null,
        Node::Bool(b) => Value::Bool(*b),
        Node::Number(n) => match number_kind(n)? {
            Kind::NumberValue(f) => Value::Double(f),
            _ => Value::Null,
        },
        Node::String(s) => Value::String(super::intern::shared(s)),
        Node::Array(items) => Value::list(items.iter().map(node_cel).collect::<Result<_, _>>()?),
        Node::Object(m) => Value::map(node_cel_map(m)?),
    })
}

/// A parsed JSON object (its keys already distinct) as a CEL map.
fn node_cel_map(m: &[Entry<'_>]) -> Result<MapValue, ApiError> {
    let fields = m
        .iter()
        .map(|(k, v)| Ok((Key::String(super::intern::shared(k)), node_cel(v)?)))
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(sorted_map(fields))
}

/// A JSON value as a `google.protobuf.Value`.
pub fn json_to_value(v: &Json) -> Result<prost_types::Value, ApiError> {
    let kind = match v {
        Json::Null => Kind::NullValue(0),
        Json::Bool(b) => Kind::BoolValue(*b),
        Json::Number(n) => number_kind(n)?,
        Json::String(s) => Kind::StringValue(s.clone()),
        Json::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.iter().map(json_to_value).collect::<Result<_, _>>()?,
        }),
        Json::Object(m) => Kind::StructValue(prost_types::Struct {
            fields: m
                .iter()
                .map(|(k, v)| Ok((k.clone(), json_to_value(v)?)))
                .collect::<Result<_, ApiError>>()?,
        }),
    };
    Ok(prost_types::Value { kind: Some(kind) })
}

// === encoding ===

/// A `google.protobuf.Value` as JSON. Whole numbers print without a fraction, as Go does.
pub fn value_to_json(v: &prost_types::Value) -> Json {
    match &v.kind {
        None | Some(Kind::NullValue(_)) => Json::Null,
        Some(Kind::BoolValue(b)) => Json::Bool(*b),
        Some(Kind::NumberValue(n)) => number(*n),
        Some(Kind::StringValue(s)) => Json::String(s.clone()),
        Some(Kind::ListValue(l)) => Json::Array(l.values.iter().map(value_to_json).collect()),
        Some(Kind::StructValue(s)) => Json::Object(
            s.fields
                .iter()
                .map(|(k, v)| (k.clone(), value_to_json(v)))
                .collect(),
        ),
    }
}

/// A double as a JSON number: integral values within `i64` print as integers.
pub(crate) fn number(n: f64) -> Json {
    const LIMIT: f64 = 9_223_372_036_854_775_808.0; // 2^63
    if n == 0.0 && n.is_sign_negative() {
        // Cerbos keeps the sign of a negative zero.
        return serde_json::Number::from_f64(n).map_or(Json::from(0), Json::Number);
    }
    if n.fract() == 0.0 && n.abs() < LIMIT {
        Json::from(n as i64)
    } else {
        serde_json::Number::from_f64(n)
            .map(Json::Number)
            .unwrap_or_else(|| Json::String(n.to_string()))
    }
}

fn put_str(m: &mut Map<String, Json>, key: &str, v: &str) {
    if !v.is_empty() {
        m.insert(key.to_string(), Json::from(v));
    }
}

/// The name of a `cerbos.effect.v1.Effect` number (`EFFECT_UNSPECIFIED` for unknown ones).
fn effect_name(e: i32) -> &'static str {
    Effect::try_from(e).unwrap_or_default().as_str_name()
}

fn source_name(s: i32) -> &'static str {
    match s {
        1 => "SOURCE_PRINCIPAL",
        2 => "SOURCE_RESOURCE",
        _ => "SOURCE_UNSPECIFIED",
    }
}

pub(crate) fn validation_error_json(e: &ValidationError) -> Json {
    let mut m = Map::new();
    put_str(&mut m, "path", &e.path);
    put_str(&mut m, "message", &e.message);
    if e.source != 0 {
        m.insert("source".into(), Json::from(source_name(e.source)));
    }
    Json::Object(m)
}

fn output_json(o: &OutputEntry) -> Json {
    let mut m = Map::new();
    put_str(&mut m, "src", &o.src);
    if let Some(v) = &o.val {
        m.insert("val".into(), value_to_json(v));
    }
    put_str(&mut m, "action", &o.action);
    put_str(&mut m, "error", &o.error);
    Json::Object(m)
}

fn result_json(r: &ResultEntry) -> Json {
    let mut m = Map::new();
    if let Some(res) = &r.resource {
        let mut rm = Map::new();
        put_str(&mut rm, "id", &res.id);
        put_str(&mut rm, "kind", &res.kind);
        put_str(&mut rm, "policyVersion", &res.policy_version);
        put_str(&mut rm, "scope", &res.scope);
        m.insert("resource".into(), Json::Object(rm));
    }
    if !r.actions.is_empty() {
        let actions = r
            .actions
            .iter()
            .map(|(a, e)| (a.clone(), Json::from(effect_name(*e))))
            .collect();
        m.insert("actions".into(), Json::Object(actions));
    }
    if !r.validation_errors.is_empty() {
        let errs = r
            .validation_errors
            .iter()
            .map(validation_error_json)
            .collect();
        m.insert("validationErrors".into(), Json::Array(errs));
    }
    if let Some(meta) = &r.meta {
        let mut mm = Map::new();
        if !meta.actions.is_empty() {
            let actions = meta
                .actions
                .iter()
                .map(|(a, em)| {
                    let mut e = Map::new();
                    put_str(&mut e, "matchedPolicy", &em.matched_policy);
                    put_str(&mut e, "matchedScope", &em.matched_scope);
                    (a.clone(), Json::Object(e))
                })
                .collect();
            mm.insert("actions".into(), Json::Object(actions));
        }
        if !meta.effective_derived_roles.is_empty() {
            mm.insert(
                "effectiveDerivedRoles".into(),
                Json::from(meta.effective_derived_roles.clone()),
            );
        }
        m.insert("meta".into(), Json::Object(mm));
    }
    if !r.outputs.is_empty() {
        let outs = r.outputs.iter().map(output_json).collect();
        m.insert("outputs".into(), Json::Array(outs));
    }
    Json::Object(m)
}

/// A `CheckResourcesResponse` as protojson.
pub fn encode_check_resources(r: &CheckResourcesResponse) -> Json {
    let mut m = Map::new();
    put_str(&mut m, "requestId", &r.request_id);
    if !r.results.is_empty() {
        m.insert(
            "results".into(),
            Json::Array(r.results.iter().map(result_json).collect()),
        );
    }
    put_str(&mut m, "cerbosCallId", &r.cerbos_call_id);
    Json::Object(m)
}

/// A `CheckResourcesResponse` as protojson text, written straight from the message: the
/// bytes of `encode_check_resources(r).to_string()` without building the tree.
pub fn write_check_resources(r: &CheckResourcesResponse) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + 256 * r.results.len());
    match serde_json::to_writer(&mut out, &CheckResponseText(r)) {
        Ok(()) => out,
        // Writing to a Vec and serialising strings and maps cannot fail; stay correct anyway.
        Err(_) => encode_check_resources(r).to_string().into_bytes(),
    }
}

/// Serialises a `CheckResourcesResponse` as protojson (empty fields left out).
struct CheckResponseText<'a>(&'a CheckResourcesResponse);

impl Serialize for CheckResponseText<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut m = s.serialize_map(None)?;
        put_entry(&mut m, "requestId", &r.request_id)?;
        if !r.results.is_empty() {
            m.serialize_entry("results", &Items(&r.results, ResultText))?;
        }
        put_entry(&mut m, "cerbosCallId", &r.cerbos_call_id)?;
        m.end()
    }
}

/// A repeated field, each item serialised through `F`.
struct Items<'a, T, F>(&'a [T], fn(&'a T) -> F);

impl<'a, T, F: Serialize> Serialize for Items<'a, T, F> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(self.1))
    }
}

/// A string field, left out when empty.
fn put_entry<M: SerializeMap>(m: &mut M, key: &str, v: &str) -> Result<(), M::Error> {
    if v.is_empty() {
        Ok(())
    } else {
        m.serialize_entry(key, v)
    }
}

struct ResultText<'a>(&'a ResultEntry);

impl Serialize for ResultText<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut m = s.serialize_map(None)?;
        if let Some(res) = &r.resource {
            m.serialize_entry("resource", &ResourceText(res))?;
        }
        if !r.actions.is_empty() {
            m.serialize_entry("actions", &EffectsText(&r.actions))?;
        }
        if !r.validation_errors.is_empty() {
            m.serialize_entry(
                "validationErrors",
                &Items(&r.validation_errors, validation_error_json),
            )?;
        }
        if let Some(meta) = &r.meta {
            m.serialize_entry("meta", &MetaText(meta))?;
        }
        if !r.outputs.is_empty() {
            m.serialize_entry("outputs", &Items(&r.outputs, output_json))?;
        }
        m.end()
    }
}

struct ResourceText<'a>(&'a result_entry::Resource);

impl Serialize for ResourceText<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut m = s.serialize_map(None)?;
        put_entry(&mut m, "id", &r.id)?;
        put_entry(&mut m, "kind", &r.kind)?;
        put_entry(&mut m, "policyVersion", &r.policy_version)?;
        put_entry(&mut m, "scope", &r.scope)?;
        m.end()
    }
}

struct EffectsText<'a>(&'a BTreeMap<String, i32>);

impl Serialize for EffectsText<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(a, e)| (a, effect_name(*e))))
    }
}

struct MetaText<'a>(&'a result_entry::Meta);

impl Serialize for MetaText<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let meta = self.0;
        let mut m = s.serialize_map(None)?;
        if !meta.actions.is_empty() {
            m.serialize_entry("actions", &MetaActionsText(&meta.actions))?;
        }
        if !meta.effective_derived_roles.is_empty() {
            m.serialize_entry("effectiveDerivedRoles", &meta.effective_derived_roles)?;
        }
        m.end()
    }
}

struct MetaActionsText<'a>(&'a BTreeMap<String, result_entry::meta::EffectMeta>);

impl Serialize for MetaActionsText<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(a, em)| (a, EffectMetaText(em))))
    }
}

struct EffectMetaText<'a>(&'a result_entry::meta::EffectMeta);

impl Serialize for EffectMetaText<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        put_entry(&mut m, "matchedPolicy", &self.0.matched_policy)?;
        put_entry(&mut m, "matchedScope", &self.0.matched_scope)?;
        m.end()
    }
}

/// A `ServerInfoResponse` as protojson.
pub fn encode_server_info(r: &ServerInfoResponse) -> Json {
    let mut m = Map::new();
    put_str(&mut m, "version", &r.version);
    put_str(&mut m, "commit", &r.commit);
    put_str(&mut m, "buildDate", &r.build_date);
    Json::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_spellings_and_nulls() {
        let body = br#"{"request_id":"r","includeMeta":true,"principal":{"id":"p","roles":["a"],"policy_version":"v1","attr":{"n":1,"x":null}},
            "resources":[{"actions":["view"],"resource":{"kind":"k","id":"i","policyVersion":null}}],"auxData":null}"#;
        let req = decode_check_resources(body).unwrap();
        assert_eq!(req.request_id, "r");
        assert!(req.include_meta);
        let p = req.principal.unwrap();
        assert_eq!(p.policy_version, "v1");
        assert!(matches!(p.attr.get_str("x"), Some(Value::Null)));
        assert!(matches!(p.attr.get_str("n"), Some(Value::Double(n)) if *n == 1.0));
        assert_eq!(
            req.resources[0].resource.as_ref().unwrap().policy_version,
            ""
        );
        assert!(req.aux_data.is_none());
    }

    #[test]
    fn refuses_unknown_duplicate_and_mistyped_fields() {
        let msg = |b: &[u8]| decode_check_resources(b).unwrap_err().message().to_string();
        assert_eq!(msg(br#"{"bogus":1}"#), r#"proto: unknown field "bogus""#);
        assert_eq!(
            msg(br#"{"requestId":"a","request_id":"b"}"#),
            r#"proto: duplicate field "request_id""#
        );
        assert_eq!(
            msg(br#"{"principal":{"id":5}}"#),
            "proto: invalid value for string field id: 5"
        );
        assert_eq!(
            msg(br#"{"includeMeta":"true"}"#),
            r#"proto: invalid value for bool field includeMeta: "true""#
        );
        assert_eq!(
            msg(br#"{"principal":{"roles":"a"}}"#),
            r#"proto: syntax error: unexpected token "a""#
        );
        assert_eq!(msg(b"null"), "proto: syntax error: unexpected token null");
        assert!(msg(b"{not json").starts_with("proto: syntax error: "));
        assert_eq!(
            decode_check_resources(b"  ").unwrap().to_pb(),
            Default::default()
        );
    }

    /// The parsed tree means what `serde_json::Value` means: same numbers, strings with
    /// escapes, and a repeated key keeps its last value, in small and large objects.
    #[test]
    fn parsed_values_match_serde_json() {
        let many: String = (0..20).map(|i| format!(r#""k{i}":{i},"#)).collect();
        let bodies = [
            r#"{"a":1,"b":-0,"c":-0.0,"d":1.5e300,"e":18446744073709551615,"f":-9223372036854775808}"#.to_string(),
            r#"{"s":"plain","t":"esc\"aped\u00e9\n","u":["x",null,true,false,[],{}],"v":{"w":{"x":[1,[2,{"y":3}]]}}}"#.to_string(),
            r#"{"a":1,"b":2,"a":3}"#.to_string(),
            format!(r#"{{{many}"k3":"again","k19":null}}"#),
            format!(r#"{{"outer":{{{many}"k0":"last"}},"k\u0030":5}}"#),
        ];
        for body in &bodies {
            let node = parse(body.as_bytes()).unwrap();
            let json: Json = serde_json::from_str(body).unwrap();
            assert_eq!(
                node_value(&node).unwrap(),
                json_to_value(&json).unwrap(),
                "{body}"
            );
            // Read straight into CEL values, the same value.
            assert_eq!(
                crate::api::request::pb_value(&node_cel(&node).unwrap()),
                json_to_value(&json).unwrap(),
                "{body}"
            );
        }
    }

    #[test]
    fn repeated_fields_keep_the_last_value_and_the_first_place() {
        let req = decode_check_resources(br#"{"requestId":"a","requestId":"b"}"#).unwrap();
        assert_eq!(req.request_id, "b");
        let msg = decode_check_resources(br#"{"zz":1,"requestId":"x","yy":3,"zz":2}"#)
            .unwrap_err()
            .message()
            .to_string();
        assert_eq!(msg, r#"proto: unknown field "zz""#);
        let roles = decode_check_resources(br#"{"principal":{"roles":"a\"\u0001\u00e9"}}"#)
            .unwrap_err()
            .message()
            .to_string();
        assert_eq!(
            roles,
            format!(
                "proto: syntax error: unexpected token {}",
                Json::from("a\"\u{1}\u{e9}")
            )
        );
    }

    /// The text written straight from the message is the text of the JSON tree.
    #[test]
    fn written_responses_match_the_tree() {
        use super::super::pb::cerbos::response::v1::check_resources_response::result_entry::meta::EffectMeta;
        let full = ResultEntry {
            resource: Some(result_entry::Resource {
                id: "doc \"1\"\n".into(),
                kind: "document".into(),
                policy_version: String::new(),
                scope: "acme.hr".into(),
            }),
            actions: [
                ("read".to_string(), 1),
                ("é".to_string(), 2),
                ("x".to_string(), 7),
            ]
            .into_iter()
            .collect(),
            validation_errors: vec![ValidationError {
                path: "/a".into(),
                message: "bad".into(),
                source: 2,
            }],
            meta: Some(result_entry::Meta {
                actions: [(
                    "read".to_string(),
                    EffectMeta {
                        matched_policy: "resource.document.vdefault".into(),
                        matched_scope: String::new(),
                    },
                )]
                .into_iter()
                .collect(),
                effective_derived_roles: vec!["owner".into(), "boss".into()],
            }),
            outputs: vec![
                OutputEntry {
                    src: "resource.document.vdefault#r1".into(),
                    val: Some(
                        json_to_value(&serde_json::json!({"n": 1.5, "m": [-0.0, 3.0, "s"]}))
                            .unwrap(),
                    ),
                    action: "read".into(),
                    error: String::new(),
                },
                OutputEntry {
                    error: "no such key".into(),
                    ..Default::default()
                },
            ],
        };
        let responses = [
            CheckResourcesResponse::default(),
            CheckResourcesResponse {
                request_id: "r\u{2028}1".into(),
                results: vec![
                    full,
                    ResultEntry {
                        resource: Some(Default::default()),
                        meta: Some(Default::default()),
                        ..Default::default()
                    },
                    ResultEntry::default(),
                ],
                cerbos_call_id: "01HZ".into(),
            },
        ];
        for r in &responses {
            assert_eq!(
                String::from_utf8(write_check_resources(r)).unwrap(),
                encode_check_resources(r).to_string()
            );
        }
    }

    #[test]
    fn numbers_print_like_go() {
        assert_eq!(number(1.0).to_string(), "1");
        assert_eq!(number(1.01).to_string(), "1.01");
        assert_eq!(number(-3.0).to_string(), "-3");
        assert_eq!(number(1e300).to_string(), "1e+300");
    }
}
