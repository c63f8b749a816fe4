//! Reading check inputs from Cerbos's JSON (protojson) form, where every field may
//! be written with its JSON name (`policyVersion`) or its proto name (`policy_version`).

use std::sync::Arc;

use serde_json::{Map, Value as Json};

use super::types::{AuxData, CheckInput, CheckOutput, Principal, Resource};
use crate::cel::{MapValue, Value, from_json};

/// A malformed check input.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("invalid check input: {0}")]
pub struct InputError(pub String);

/// Looks a field up by its JSON name or its proto (snake_case) name.
fn field<'a>(obj: &'a Map<String, Json>, json_name: &str) -> Option<&'a Json> {
    if let Some(v) = obj.get(json_name) {
        return Some(v);
    }
    let snake = to_snake(json_name);
    obj.get(&snake)
}

fn to_snake(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    for c in s.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn string_field(obj: &Map<String, Json>, name: &str) -> Result<String, InputError> {
    match field(obj, name) {
        None | Some(Json::Null) => Ok(String::new()),
        Some(Json::String(s)) => Ok(s.clone()),
        Some(other) => Err(InputError(format!(
            "{name}: expected a string, got {other}"
        ))),
    }
}

fn attr_field(obj: &Map<String, Json>) -> Result<Arc<MapValue>, InputError> {
    match field(obj, "attr") {
        None | Some(Json::Null) => Ok(Arc::new(MapValue::new())),
        Some(v @ Json::Object(_)) => match from_json(v) {
            Value::Map(m) => Ok(m),
            _ => Ok(Arc::new(MapValue::new())),
        },
        Some(other) => Err(InputError(format!("attr: expected an object, got {other}"))),
    }
}

fn object<'a>(v: Option<&'a Json>, name: &str) -> Result<&'a Map<String, Json>, InputError> {
    match v {
        Some(Json::Object(o)) => Ok(o),
        None | Some(Json::Null) => Err(InputError(format!("{name} is required"))),
        Some(other) => Err(InputError(format!(
            "{name}: expected an object, got {other}"
        ))),
    }
}

/// Reads a principal (`{id, roles, attr, policyVersion, scope}`).
pub(crate) fn principal_from_json(v: &Json) -> Result<Principal, InputError> {
    let o = object(Some(v), "principal")?;
    let roles = match field(o, "roles") {
        None | Some(Json::Null) => Vec::new(),
        Some(Json::Array(items)) => items
            .iter()
            .map(|r| match r {
                Json::String(s) => Ok(Arc::from(s.as_str())),
                other => Err(InputError(format!("roles: expected strings, got {other}"))),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => Err(InputError(format!("roles: expected a list, got {other}")))?,
    };
    Ok(Principal {
        id: string_field(o, "id")?,
        roles,
        attr: attr_field(o)?,
        policy_version: string_field(o, "policyVersion")?,
        scope: string_field(o, "scope")?,
    })
}

/// Reads a resource (`{kind, id, attr, policyVersion, scope}`).
pub(crate) fn resource_from_json(v: &Json) -> Result<Resource, InputError> {
    let o = object(Some(v), "resource")?;
    Ok(Resource {
        kind: string_field(o, "kind")?,
        id: string_field(o, "id")?,
        attr: attr_field(o)?,
        policy_version: string_field(o, "policyVersion")?,
        scope: string_field(o, "scope")?,
    })
}

/// Reads decoded auxiliary data (`{jwt: {claims...}}`).
pub(crate) fn aux_data_from_json(v: Option<&Json>) -> Result<AuxData, InputError> {
    let Some(Json::Object(o)) = v else {
        return Ok(AuxData::default());
    };
    Ok(AuxData {
        jwt: field(o, "jwt").map(from_json).unwrap_or(Value::Null),
        jwts: field(o, "jwts").map(from_json).unwrap_or(Value::Null),
    })
}

/// Reads a `cerbos.engine.v1.CheckInput`.
pub fn input_from_json(v: &Json) -> Result<CheckInput, InputError> {
    let o = object(Some(v), "input")?;
    let actions = match field(o, "actions") {
        None | Some(Json::Null) => Vec::new(),
        Some(Json::Array(items)) => items
            .iter()
            .map(|a| match a {
                Json::String(s) => Ok(s.clone()),
                other => Err(InputError(format!(
                    "actions: expected strings, got {other}"
                ))),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => Err(InputError(format!("actions: expected a list, got {other}")))?,
    };
    Ok(CheckInput {
        request_id: string_field(o, "requestId")?,
        principal: principal_from_json(field(o, "principal").unwrap_or(&Json::Null))
            .map_err(|e| InputError(e.0))?,
        resource: resource_from_json(field(o, "resource").unwrap_or(&Json::Null))?,
        actions,
        aux_data: aux_data_from_json(field(o, "auxData"))?,
    })
}

/// Writes a check output as a `cerbos.engine.v1.CheckOutput` (protojson names; empty
/// fields omitted).
pub fn output_to_json(o: &CheckOutput) -> Json {
    let mut actions = Map::new();
    for a in &o.actions {
        let mut e = Map::new();
        e.insert("effect".into(), Json::from(a.effect.as_str()));
        if !a.policy.is_empty() {
            e.insert("policy".into(), Json::from(a.policy.as_str()));
        }
        if !a.scope.is_empty() {
            e.insert("scope".into(), Json::from(a.scope.as_str()));
        }
        actions.insert(a.action.clone(), Json::Object(e));
    }
    let mut out = Map::new();
    if !o.request_id.is_empty() {
        out.insert("requestId".into(), Json::from(o.request_id.as_str()));
    }
    out.insert("resourceId".into(), Json::from(o.resource_id.as_str()));
    out.insert("actions".into(), Json::Object(actions));
    if !o.effective_derived_roles.is_empty() {
        out.insert(
            "effectiveDerivedRoles".into(),
            Json::from(o.effective_derived_roles.clone()),
        );
    }
    if !o.outputs.is_empty() {
        let outputs = o
            .outputs
            .iter()
            .map(|e| {
                let mut m = Map::new();
                m.insert("src".into(), Json::from(e.src.as_str()));
                m.insert("action".into(), Json::from(e.action.as_str()));
                match &e.value {
                    Ok(v) => m.insert("val".into(), v.clone()),
                    Err(msg) => m.insert("error".into(), Json::from(msg.as_str())),
                };
                Json::Object(m)
            })
            .collect();
        out.insert("outputs".into(), Json::Array(outputs));
    }
    if !o.validation_errors.is_empty() {
        let errs = o
            .validation_errors
            .iter()
            .map(|v| serde_json::json!({"path": v.path, "message": v.message, "source": v.source.as_str()}))
            .collect();
        out.insert("validationErrors".into(), Json::Array(errs));
    }
    if !o.evaluation_errors.is_empty() {
        let errs = o
            .evaluation_errors
            .iter()
            .map(|e| serde_json::json!({"celError": {"expression": e.expression, "message": e.message}}))
            .collect();
        out.insert("evaluationErrors".into(), Json::Array(errs));
    }
    Json::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_field_spellings() {
        let v: Json = serde_json::json!({
            "requestId": "r1",
            "actions": ["view"],
            "principal": {"id": "a", "roles": ["user"], "policy_version": "v1", "attr": {"x": 1}},
            "resource": {"kind": "doc", "id": "d", "policyVersion": "v2"}
        });
        let i = input_from_json(&v).unwrap();
        assert_eq!(i.principal.policy_version, "v1");
        assert_eq!(i.resource.policy_version, "v2");
        assert_eq!(i.actions, vec!["view"]);
        assert!(i.principal.attr.get_str("x").is_some());
    }

    #[test]
    fn rejects_wrong_types() {
        let v: Json = serde_json::json!({"principal": {"id": 1}, "resource": {"kind": "k"}});
        assert!(input_from_json(&v).is_err());
        let v: Json = serde_json::json!({"resource": {"kind": "k"}});
        assert!(
            input_from_json(&v)
                .unwrap_err()
                .0
                .contains("principal is required")
        );
    }
}
