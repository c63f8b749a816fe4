//! Engine inputs, outputs and configuration: plain data.

use std::sync::Arc;

use crate::cel::{MapValue, Value};
use crate::policy::compiled::Effect;

/// Who is asking.
#[derive(Clone, Debug, Default)]
pub struct Principal {
    /// Principal id.
    pub id: String,
    /// Roles.
    pub roles: Vec<Arc<str>>,
    /// Attributes (a CEL map).
    pub attr: Arc<MapValue>,
    /// Policy version; empty means the default.
    pub policy_version: String,
    /// Scope; empty means the default scope.
    pub scope: String,
}

/// What is being accessed.
#[derive(Clone, Debug, Default)]
pub struct Resource {
    /// Resource kind.
    pub kind: String,
    /// Resource id.
    pub id: String,
    /// Attributes (a CEL map).
    pub attr: Arc<MapValue>,
    /// Policy version; empty means the default.
    pub policy_version: String,
    /// Scope; empty means the default scope.
    pub scope: String,
}

/// Auxiliary data: verified JWT claims.
#[derive(Clone, Debug, Default)]
pub struct AuxData {
    /// Claims of `auxData.jwt` (a map), or null.
    pub(crate) jwt: Value,
    /// Named tokens of `auxData.jwts`: name -> `{claims: {...}}` (a map), or null.
    pub(crate) jwts: Value,
}

/// One check: a principal, a resource and the actions to decide.
#[derive(Clone, Debug, Default)]
pub struct CheckInput {
    /// Caller's request id, echoed back.
    pub request_id: String,
    /// The principal.
    pub principal: Principal,
    /// The resource.
    pub resource: Resource,
    /// Actions to decide.
    pub actions: Vec<String>,
    /// Auxiliary data.
    pub aux_data: AuxData,
}

/// The decision for one action.
#[derive(Clone, Debug, PartialEq)]
pub struct ActionEffect {
    /// The action.
    pub action: String,
    /// Allow or deny.
    pub effect: Effect,
    /// The deciding policy (`resource.kind.vversion[/scope]`), or `NO_MATCH`.
    pub(crate) policy: String,
    /// The scope of the deciding rule.
    pub(crate) scope: String,
    /// The name of the deciding rule (Cerbos generates `rule-NNN` for unnamed rules);
    /// `None` when no rule decided (no match, schema rejection).
    pub rule: Option<Arc<str>>,
}

/// A value (or error) produced by a rule's `output` expression.
#[derive(Clone, Debug, PartialEq)]
pub struct OutputEntry {
    /// `policy_key#rule_name`.
    pub(crate) src: String,
    /// The action being decided when the output was produced.
    pub(crate) action: String,
    /// The value as JSON, or the evaluation error message.
    pub(crate) value: Result<serde_json::Value, String>,
}

/// Where a schema violation was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ValidationSource {
    /// Principal attributes.
    Principal,
    /// Resource attributes.
    Resource,
}

impl ValidationSource {
    /// Cerbos's enum name.
    pub fn as_str(self) -> &'static str {
        match self {
            ValidationSource::Principal => "SOURCE_PRINCIPAL",
            ValidationSource::Resource => "SOURCE_RESOURCE",
        }
    }
}

/// An attribute that failed schema validation.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidationError {
    /// JSON pointer into the attributes.
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// Principal or resource.
    pub source: ValidationSource,
}

/// A CEL evaluation error met while deciding (the condition counted as not satisfied).
#[derive(Clone, Debug, PartialEq)]
pub struct EvaluationError {
    /// The expression's source.
    pub(crate) expression: String,
    /// The error.
    pub(crate) message: String,
}

/// The result of one check.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CheckOutput {
    /// The input's request id.
    pub(crate) request_id: String,
    /// The resource id.
    pub(crate) resource_id: String,
    /// One entry per distinct action, in input order.
    pub actions: Vec<ActionEffect>,
    /// Derived roles that were activated.
    pub(crate) effective_derived_roles: Vec<String>,
    /// Outputs of matched rules.
    pub(crate) outputs: Vec<OutputEntry>,
    /// Schema violations.
    pub(crate) validation_errors: Vec<ValidationError>,
    /// CEL errors met (conditions counted as not satisfied).
    pub evaluation_errors: Vec<EvaluationError>,
}

impl CheckOutput {
    /// The decision for `action`, if it was asked.
    pub fn effect(&self, action: &str) -> Option<&ActionEffect> {
        self.actions.iter().find(|a| a.action == action)
    }

    /// Whether `action` is allowed.
    pub fn is_allowed(&self, action: &str) -> bool {
        self.effect(action)
            .is_some_and(|a| a.effect == Effect::Allow)
    }
}

/// Schema enforcement level.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SchemaEnforcement {
    /// Do not validate.
    #[default]
    None,
    /// Validate and report, but decide anyway.
    Warn,
    /// Validate and deny every action on violation.
    Reject,
}

/// Engine settings (Cerbos's `engine` and `schema` configuration).
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Values exposed as `G` / `globals`.
    pub globals: Arc<MapValue>,
    /// Whether a missing scope falls back to its nearest existing ancestor.
    pub lenient_scope_search: bool,
    /// Schema enforcement.
    pub schema_enforcement: SchemaEnforcement,
    /// Policy version used when the input gives none.
    pub default_policy_version: String,
    /// Scope used when the input gives none.
    pub default_scope: String,
    /// Strict evaluation: a rule whose condition fails to evaluate denies the actions
    /// it covers (instead of being skipped).
    pub strict_evaluation: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            globals: Arc::new(MapValue::new()),
            lenient_scope_search: false,
            schema_enforcement: SchemaEnforcement::None,
            default_policy_version: "default".to_string(),
            default_scope: String::new(),
            strict_evaluation: false,
        }
    }
}
