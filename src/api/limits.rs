//! The request limits, checked before any per-item work: counts only, so that a request of
//! 100,000 actions or roles is refused in microseconds instead of being validated,
//! deduplicated or decided item by item.
//!
//! Cerbos's `server.requestLimits` (resources per request, actions per resource) keep
//! Cerbos's messages; the limits Cerbos does not have (roles, attribute values, `auxData`
//! tokens) are Gatehouse's, with the documented defaults of [`ApiSettings`].

use prost_types::value::Kind;

use super::error::ApiError;
use super::pb::cerbos::engine::v1::Principal;
use super::pb::cerbos::request::v1::{AuxData, PlanResourcesRequest};
use super::request::CheckRequest;
use super::settings::ApiSettings;
use crate::cel::Value;

/// Refuses a request that exceeds a count limit, with Cerbos's `INVALID_ARGUMENT` shape.
pub(crate) fn check_limits(req: &CheckRequest, limits: &ApiSettings) -> Result<(), ApiError> {
    if req.resources.len() > limits.max_resources {
        return Err(ApiError::invalid_argument(format!(
            "number of resources in batch ({}) exceeds configured limit ({})",
            req.resources.len(),
            limits.max_resources
        )));
    }
    if let Some(e) = req
        .resources
        .iter()
        .find(|e| e.actions.len() > limits.max_actions)
    {
        return Err(ApiError::invalid_argument(format!(
            "number of actions ({}) exceeds configured limit ({})",
            e.actions.len(),
            limits.max_actions
        )));
    }
    let roles = req.principal.as_ref().map_or(0, |p| p.roles.len());
    check_counts(roles, req.aux_data.as_ref(), limits)?;
    let mut budget = Budget(limits.max_attribute_values);
    let principal_attr = req.principal.iter().flat_map(|p| p.attr.iter());
    let resource_attr = req
        .resources
        .iter()
        .filter_map(|e| e.resource.as_ref())
        .flat_map(|r| r.attr.iter());
    if !principal_attr
        .chain(resource_attr)
        .all(|(_, v)| budget.take_cel_tree(v))
    {
        return Err(too_many_values(limits));
    }
    Ok(())
}

/// Refuses a `PlanResources` request that exceeds a count limit (roles, attribute values,
/// `auxData` tokens), before validation or planning; its action count is Cerbos's own
/// validation rule (at most 20).
pub(crate) fn check_plan_limits(
    req: &PlanResourcesRequest,
    limits: &ApiSettings,
) -> Result<(), ApiError> {
    let resource_attr = req.resource.iter().flat_map(|r| r.attr.values());
    check_shared_limits(
        req.principal.as_ref(),
        req.aux_data.as_ref(),
        resource_attr,
        limits,
    )
}

/// The limits both requests share: principal roles, `auxData` tokens, and attribute values
/// of the principal and the resources.
fn check_shared_limits<'a>(
    principal: Option<&'a Principal>,
    aux_data: Option<&AuxData>,
    resource_attr: impl Iterator<Item = &'a prost_types::Value>,
    limits: &ApiSettings,
) -> Result<(), ApiError> {
    check_counts(principal.map_or(0, |p| p.roles.len()), aux_data, limits)?;
    let mut budget = Budget(limits.max_attribute_values);
    let principal_attr = principal.into_iter().flat_map(|p| p.attr.values());
    if !principal_attr
        .chain(resource_attr)
        .all(|v| budget.take_tree(v))
    {
        return Err(too_many_values(limits));
    }
    Ok(())
}

fn too_many_values(limits: &ApiSettings) -> ApiError {
    ApiError::invalid_argument(format!(
        "number of attribute values exceeds configured limit ({})",
        limits.max_attribute_values
    ))
}

/// The counts both requests share, checked in this order: principal roles, `auxData`
/// tokens.
fn check_counts(
    roles: usize,
    aux_data: Option<&AuxData>,
    limits: &ApiSettings,
) -> Result<(), ApiError> {
    if roles > limits.max_roles {
        return Err(ApiError::invalid_argument(format!(
            "number of principal roles ({roles}) exceeds configured limit ({})",
            limits.max_roles
        )));
    }
    if let Some(aux) = aux_data {
        let tokens = aux.jwts.len() + usize::from(aux.jwt.is_some());
        if tokens > limits.max_aux_tokens {
            return Err(ApiError::invalid_argument(format!(
                "number of auxData tokens ({tokens}) exceeds configured limit ({})",
                limits.max_aux_tokens
            )));
        }
    }
    Ok(())
}

/// Attribute values still allowed; counting stops as soon as it runs out.
struct Budget(usize);

impl Budget {
    /// Counts `v` and every value nested in it (without recursion); false once over budget.
    /// A scalar is counted without allocating.
    fn take_tree(&mut self, v: &prost_types::Value) -> bool {
        let Some(left) = self.0.checked_sub(1) else {
            return false;
        };
        self.0 = left;
        let mut stack = match &v.kind {
            Some(Kind::ListValue(l)) => l.values.iter().collect::<Vec<_>>(),
            Some(Kind::StructValue(s)) => s.fields.values().collect(),
            _ => return true,
        };
        while let Some(v) = stack.pop() {
            let Some(left) = self.0.checked_sub(1) else {
                return false;
            };
            self.0 = left;
            match &v.kind {
                Some(Kind::ListValue(l)) => stack.extend(&l.values),
                Some(Kind::StructValue(s)) => stack.extend(s.fields.values()),
                _ => {}
            }
        }
        true
    }

    /// [`take_tree`](Self::take_tree) for an attribute already read as a CEL value.
    fn take_cel_tree(&mut self, v: &Value) -> bool {
        let nested = |v: &Value| matches!(v, Value::List(_) | Value::Map(_));
        // A scalar, or a list or map of scalars (most attributes): counted without a stack.
        let flat = match v {
            Value::List(items) => (!items.iter().any(nested)).then(|| items.len() + 1),
            Value::Map(m) => (!m.iter().any(|(_, v)| nested(v))).then(|| m.len() + 1),
            _ => Some(1),
        };
        if let Some(n) = flat {
            let Some(left) = self.0.checked_sub(n) else {
                return false;
            };
            self.0 = left;
            return true;
        }
        let mut stack = vec![v];
        while let Some(v) = stack.pop() {
            let Some(left) = self.0.checked_sub(1) else {
                return false;
            };
            self.0 = left;
            match v {
                Value::List(items) => stack.extend(items.iter()),
                Value::Map(m) => stack.extend(m.iter().map(|(_, v)| v)),
                _ => {}
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::protojson::{decode_check_resources, decode_plan_resources};

    fn refused(body: &str, limits: &ApiSettings) -> String {
        let req = decode_check_resources(body.as_bytes()).unwrap();
        match check_limits(&req, limits) {
            Ok(()) => String::new(),
            Err(e) => e.message().to_string(),
        }
    }

    #[test]
    fn counts_are_checked_with_cerbos_messages() {
        let limits = ApiSettings::default().with_limits(2, 2);
        let ok = r#"{"principal":{"id":"j","roles":["a"],"attr":{"x":[1,{"y":2}]}},"resources":[{"actions":["a","b"],"resource":{"kind":"k","id":"i"}}]}"#;
        assert_eq!(refused(ok, &limits), "");
        assert_eq!(
            refused(
                r#"{"resources":[{"actions":["a"]},{"actions":["a"]},{"actions":["a"]}]}"#,
                &limits
            ),
            "number of resources in batch (3) exceeds configured limit (2)"
        );
        assert_eq!(
            refused(r#"{"resources":[{"actions":["a","a","a"]}]}"#, &limits),
            "number of actions (3) exceeds configured limit (2)"
        );
        let mut few_roles = limits.clone();
        few_roles.max_roles = 1;
        assert_eq!(
            refused(r#"{"principal":{"id":"j","roles":["a","b"]}}"#, &few_roles),
            "number of principal roles (2) exceeds configured limit (1)"
        );
        let mut one_token = limits.clone();
        one_token.max_aux_tokens = 1;
        assert_eq!(
            refused(
                r#"{"auxData":{"jwts":{"a":{"token":"t"},"b":{"token":"t"}}}}"#,
                &one_token
            ),
            "number of auxData tokens (2) exceeds configured limit (1)"
        );
        let mut few_values = limits;
        few_values.max_attribute_values = 3;
        // x, [1, {y: 2}]: the list, 1, the struct and 2 are four values.
        assert_eq!(
            refused(ok, &few_values),
            "number of attribute values exceeds configured limit (3)"
        );
        few_values.max_attribute_values = 4;
        assert_eq!(refused(ok, &few_values), "");
    }

    #[test]
    fn plan_requests_are_bounded_before_validation() {
        let limits = ApiSettings {
            max_roles: 2,
            max_attribute_values: 3,
            ..ApiSettings::default()
        };
        let plan = |body: &str| {
            let req = decode_plan_resources(body.as_bytes()).unwrap();
            check_plan_limits(&req, &limits).map_err(|e| e.message().to_string())
        };
        let ok = r#"{"action":"read","principal":{"id":"j","roles":["a","b"],"attr":{"x":1}},"resource":{"kind":"k","attr":{"y":[2]}}}"#;
        assert_eq!(plan(ok), Ok(()));
        assert_eq!(
            plan(
                r#"{"action":"read","principal":{"id":"j","roles":["a","b","c"]},"resource":{"kind":"k"}}"#
            ),
            Err("number of principal roles (3) exceeds configured limit (2)".to_string())
        );
        assert_eq!(
            plan(
                r#"{"action":"read","principal":{"id":"j","roles":["a"]},"resource":{"kind":"k","attr":{"y":[2,3,4]}}}"#
            ),
            Err("number of attribute values exceeds configured limit (3)".to_string())
        );
    }
}
