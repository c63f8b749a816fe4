//! Schema validation of a request's attributes, shared by the check and the plan: the
//! principal's and the resource's attributes against a resource policy's schemas.

use std::sync::Arc;

use crate::cel::{MapValue, Value};
use crate::policy::compiled::{CompiledPolicySet, PolicySchemas};

use super::types::{ValidationError, ValidationSource};

/// Adds to `out` the violations of `principal` and `resource` against `schemas`, skipping
/// a schema whose `ignoreWhen.actions` cover every action. With `resource_optional`
/// (planning, where resource attributes are unknown), missing properties of the
/// resource are not violations. `Err` names a schema the store does not have.
pub(crate) fn violations<'a>(
    set: &CompiledPolicySet,
    schemas: &PolicySchemas,
    principal: &Arc<MapValue>,
    resource: &Arc<MapValue>,
    actions: impl Iterator<Item = &'a str> + Clone,
    resource_optional: bool,
    out: &mut Vec<ValidationError>,
) -> Result<(), Arc<str>> {
    let checks = [
        (&schemas.principal, principal, ValidationSource::Principal),
        (&schemas.resource, resource, ValidationSource::Resource),
    ];
    for (sref, attr, source) in checks {
        let Some(sref) = sref else { continue };
        if sref.ignored_for(actions.clone()) {
            continue;
        }
        let schema = set
            .schema_store
            .get(&sref.url)
            .ok_or_else(|| sref.url.clone())?;
        for v in schema.validate(&Value::Map(attr.clone())) {
            if resource_optional
                && source == ValidationSource::Resource
                && v.message.starts_with("missing properties")
            {
                continue;
            }
            out.push(ValidationError {
                path: v.cerbos_path().to_string(),
                message: v.message,
                source,
            });
        }
    }
    Ok(())
}
