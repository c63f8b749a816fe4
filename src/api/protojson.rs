//! Cerbos's HTTP bodies: protojson as grpc-gateway reads and writes it. Requests accept each
//! field under its JSON name (`policyVersion`) or its proto name (`policy_version`), `null`
//! for "not set", and refuse unknown fields; responses use JSON names and leave out empty
//! fields.

use std::collections::BTreeMap;

use prost_types::value::Kind;
use serde_json::{Map, Value as Json};

use super::error::ApiError;
use super::pb::cerbos::audit::v1::RequestContext;
use super::pb::cerbos::effect::v1::Effect;
use super::pb::cerbos::engine::v1::plan_resources_input;
use super::pb::cerbos::engine::v1::{OutputEntry, Principal, Resource};
use super::pb::cerbos::request::v1::check_resources_request::ResourceEntry;
use super::pb::cerbos::request::v1::{
    AuxData, CheckResourcesRequest, PlanResourcesRequest, aux_data,
};
use super::pb::cerbos::response::v1::check_resources_response::ResultEntry;
use super::pb::cerbos::response::v1::{CheckResourcesResponse, ServerInfoResponse};
use super::pb::cerbos::schema::v1::ValidationError;

// === decoding ===

/// Reads a `CheckResourcesRequest` from a request body. An empty body is an empty message.
pub fn decode_check_resources(body: &[u8]) -> Result<CheckResourcesRequest, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(CheckResourcesRequest::default());
    }
    let json: Json = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid_argument(format!("proto: syntax error: {e}")))?;
    let mut o = Fields::new(&json)?;
    let req = CheckResourcesRequest {
        request_id: o.string("requestId", "request_id")?,
        include_meta: o.bool("includeMeta", "include_meta")?,
        principal: o.message("principal", "principal", principal)?,
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
    let json: Json = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid_argument(format!("proto: syntax error: {e}")))?;
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

fn plan_resource(v: &Json) -> Result<plan_resources_input::Resource, ApiError> {
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

fn principal(v: &Json) -> Result<Principal, ApiError> {
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

fn resource(v: &Json) -> Result<Resource, ApiError> {
    let mut o = Fields::new(v)?;
    let r = Resource {
        kind: o.string("kind", "kind")?,
        policy_version: o.string("policyVersion", "policy_version")?,
        id: o.string("id", "id")?,
        attr: o.value_map("attr", "attr")?,
        scope: o.string("scope", "scope")?,
    };
    o.finish()?;
    Ok(r)
}

fn resource_entry(v: &Json) -> Result<ResourceEntry, ApiError> {
    let mut o = Fields::new(v)?;
    let e = ResourceEntry {
        actions: o.repeated_strings("actions", "actions")?,
        resource: o.message("resource", "resource", resource)?,
    };
    o.finish()?;
    Ok(e)
}

fn jwt(v: &Json) -> Result<aux_data::Jwt, ApiError> {
    let mut o = Fields::new(v)?;
    let j = aux_data::Jwt {
        token: o.string("token", "token")?,
        key_set_id: o.string("keySetId", "key_set_id")?,
    };
    o.finish()?;
    Ok(j)
}

fn aux_data(v: &Json) -> Result<AuxData, ApiError> {
    let mut o = Fields::new(v)?;
    let a = AuxData {
        jwt: o.message("jwt", "jwt", jwt)?,
        jwts: o.message_map("jwts", "jwts", jwt)?,
    };
    o.finish()?;
    Ok(a)
}

fn request_context(v: &Json) -> Result<RequestContext, ApiError> {
    let mut o = Fields::new(v)?;
    let c = RequestContext {
        annotations: o.value_map("annotations", "annotations")?,
    };
    o.finish()?;
    Ok(c)
}

/// How a JSON value reads in an error message.
fn token(v: &Json) -> String {
    match v {
        Json::Object(_) => "{".to_string(),
        Json::Array(_) => "[".to_string(),
        other => other.to_string(),
    }
}

fn unexpected(v: &Json) -> ApiError {
    ApiError::invalid_argument(format!(
        "proto: syntax error: unexpected token {}",
        token(v)
    ))
}

fn invalid(kind: &str, name: &str, v: &Json) -> ApiError {
    ApiError::invalid_argument(format!(
        "proto: invalid value for {kind} field {name}: {}",
        token(v)
    ))
}

/// The fields of one JSON object, taken one by one; whatever is left is unknown.
struct Fields<'a> {
    map: &'a Map<String, Json>,
    taken: Vec<&'a str>,
}

impl<'a> Fields<'a> {
    fn new(v: &'a Json) -> Result<Self, ApiError> {
        match v {
            Json::Object(map) => Ok(Fields {
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
    ) -> Result<Option<(&'a str, &'a Json)>, ApiError> {
        let mut found: Option<(&'a str, &'a Json)> = None;
        for name in [json_name, proto_name] {
            if let Some((k, v)) = self.map.get_key_value(name) {
                if self.taken.contains(&k.as_str()) {
                    continue;
                }
                if found.is_some() {
                    return Err(ApiError::invalid_argument(format!(
                        "proto: duplicate field {k:?}"
                    )));
                }
                self.taken.push(k.as_str());
                found = Some((k.as_str(), v));
            }
        }
        Ok(found.filter(|(_, v)| !v.is_null()))
    }

    fn finish(self) -> Result<(), ApiError> {
        match self.map.keys().find(|k| !self.taken.contains(&k.as_str())) {
            Some(k) => Err(ApiError::invalid_argument(format!(
                "proto: unknown field {k:?}"
            ))),
            None => Ok(()),
        }
    }

    fn string(&mut self, j: &'static str, p: &'static str) -> Result<String, ApiError> {
        match self.take(j, p)? {
            None => Ok(String::new()),
            Some((_, Json::String(s))) => Ok(s.clone()),
            Some((name, v)) => Err(invalid("string", name, v)),
        }
    }

    fn bool(&mut self, j: &'static str, p: &'static str) -> Result<bool, ApiError> {
        match self.take(j, p)? {
            None => Ok(false),
            Some((_, Json::Bool(b))) => Ok(*b),
            Some((name, v)) => Err(invalid("bool", name, v)),
        }
    }

    fn message<T>(
        &mut self,
        j: &'static str,
        p: &'static str,
        read: fn(&Json) -> Result<T, ApiError>,
    ) -> Result<Option<T>, ApiError> {
        self.take(j, p)?.map(|(_, v)| read(v)).transpose()
    }

    fn array(
        &mut self,
        j: &'static str,
        p: &'static str,
    ) -> Result<(&'a str, &'a [Json]), ApiError> {
        match self.take(j, p)? {
            None => Ok((j, &[])),
            Some((name, Json::Array(items))) => Ok((name, items)),
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
                Json::String(s) => Ok(s.clone()),
                other => Err(invalid("string", name, other)),
            })
            .collect()
    }

    fn repeated_messages<T>(
        &mut self,
        j: &'static str,
        p: &'static str,
        read: fn(&Json) -> Result<T, ApiError>,
    ) -> Result<Vec<T>, ApiError> {
        let (_, items) = self.array(j, p)?;
        items.iter().map(read).collect()
    }

    fn object(
        &mut self,
        j: &'static str,
        p: &'static str,
    ) -> Result<Option<&'a Map<String, Json>>, ApiError> {
        match self.take(j, p)? {
            None => Ok(None),
            Some((_, Json::Object(m))) => Ok(Some(m)),
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
            .map(|(k, v)| Ok((k.clone(), json_to_value(v)?)))
            .collect()
    }

    fn message_map<T: Default>(
        &mut self,
        j: &'static str,
        p: &'static str,
        read: fn(&Json) -> Result<T, ApiError>,
    ) -> Result<BTreeMap<String, T>, ApiError> {
        let Some(m) = self.object(j, p)? else {
            return Ok(BTreeMap::new());
        };
        m.iter()
            .map(|(k, v)| {
                let msg = if v.is_null() { T::default() } else { read(v)? };
                Ok((k.clone(), msg))
            })
            .collect()
    }
}

/// A JSON value as a `google.protobuf.Value`.
pub fn json_to_value(v: &Json) -> Result<prost_types::Value, ApiError> {
    let kind = match v {
        Json::Null => Kind::NullValue(0),
        Json::Bool(b) => Kind::BoolValue(*b),
        Json::Number(n) => match n.as_f64().filter(|f| f.is_finite()) {
            Some(f) => Kind::NumberValue(f),
            None => {
                return Err(ApiError::invalid_argument(format!(
                    "proto: invalid google.protobuf.Value: {n}"
                )));
            }
        },
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
        assert_eq!(p.attr["x"].kind, Some(Kind::NullValue(0)));
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
            decode_check_resources(b"  ").unwrap(),
            CheckResourcesRequest::default()
        );
    }

    #[test]
    fn numbers_print_like_go() {
        assert_eq!(number(1.0).to_string(), "1");
        assert_eq!(number(1.01).to_string(), "1.01");
        assert_eq!(number(-3.0).to_string(), "-3");
        assert_eq!(number(1e300).to_string(), "1e+300");
    }
}
