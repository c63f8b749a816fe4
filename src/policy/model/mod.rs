//! The serde model of Cerbos policy files (`apiVersion: api.cerbos.dev/v1`).
//!
//! The types mirror the `cerbos.policy.v1` protobuf messages: field names follow the
//! protojson names (`importDerivedRoles`), the proto names (`import_derived_roles`) are
//! accepted as aliases, and unknown fields are rejected as Cerbos rejects them. Elements
//! that errors can point at keep their [`Span`] (see [`super::yaml::span`] for which position).
//!
//! The model is produced by [`super::load`], which supplies the positions and also runs
//! [`Policy`] validation (`validate`): the checks Cerbos applies when it reads a policy (protovalidate
//! rules of the proto and the store-index checks such as rules without roles or duplicate
//! rule names). Other deserializers (`serde_json`) read the same shapes without positions
//! and without validation. `Serialize` writes the protojson form. The compiler turns the
//! model into the compiled form; nothing here evaluates anything.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::ops::Deref;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Serialize, Serializer};

pub(crate) use super::effect::Effect;
use super::yaml::span::{Span, Spanned, deserialize_spanned, error_at};

mod validate;

/// The only `apiVersion` Cerbos accepts.
pub(crate) const API_VERSION: &str = "api.cerbos.dev/v1";

/// The version a role policy gets when it does not declare one.
pub(crate) const DEFAULT_VERSION: &str = "default";

// === Policy ===

/// One policy document.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// `apiVersion`; always [`API_VERSION`] once validated.
    api_version: String,
    /// `$schema`, the optional JSON Schema reference of editors.
    json_schema: String,
    /// `disabled`: a disabled policy is loaded but not compiled.
    pub(crate) disabled: bool,
    /// `description`.
    description: String,
    /// `metadata`.
    metadata: Option<Metadata>,
    /// `variables`: the deprecated top-level variable definitions (name to CEL expression).
    pub(crate) variables: Definitions<ExprText>,
    /// The policy itself: exactly one of the policy keys.
    pub(crate) kind: PolicyKind,
    /// Where the document starts (its first key).
    pub(crate) span: Span,
    /// Where Cerbos reports the policy as a whole (duplicate or disabled definitions): the
    /// document's root mapping, which for a block mapping is its first `:`.
    pub(crate) root_span: Span,
}

/// The policy carried by a document: which of the policy keys is present.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub(crate) enum PolicyKind {
    /// `resourcePolicy`.
    Resource(ResourcePolicy),
    /// `principalPolicy`.
    Principal(PrincipalPolicy),
    /// `rolePolicy`.
    Role(RolePolicy),
    /// `derivedRoles`.
    DerivedRoles(DerivedRoles),
    /// `exportVariables`.
    ExportVariables(ExportVariables),
    /// `exportConstants`.
    ExportConstants(ExportConstants),
}

impl PolicyKind {
    /// The document key of this kind, e.g. `resourcePolicy`.
    fn key(&self) -> &'static str {
        match self {
            Self::Resource(_) => "resourcePolicy",
            Self::Principal(_) => "principalPolicy",
            Self::Role(_) => "rolePolicy",
            Self::DerivedRoles(_) => "derivedRoles",
            Self::ExportVariables(_) => "exportVariables",
            Self::ExportConstants(_) => "exportConstants",
        }
    }
}

impl Policy {
    /// Cerbos's fully qualified policy id, e.g. `cerbos.resource.leave_request.v20210210/acme.hr`
    /// (the scope suffix only when the scope is not empty), `cerbos.derived_roles.common_roles`.
    pub(crate) fn fqn(&self) -> String {
        use super::id::{ScopedKind, definition_fqn, policy_fqn};
        match &self.kind {
            PolicyKind::Resource(p) => {
                policy_fqn(ScopedKind::Resource, &p.resource, &p.version, &p.scope)
            }
            PolicyKind::Principal(p) => {
                policy_fqn(ScopedKind::Principal, &p.principal, &p.version, &p.scope)
            }
            PolicyKind::Role(p) => policy_fqn(ScopedKind::Role, &p.role, &p.version, &p.scope),
            PolicyKind::DerivedRoles(p) => definition_fqn("derived_roles", &p.name),
            PolicyKind::ExportVariables(p) => definition_fqn("export_variables", &p.name),
            PolicyKind::ExportConstants(p) => definition_fqn("export_constants", &p.name),
        }
    }

    /// Whether the policy makes decisions by itself (resource, principal and role policies),
    /// as opposed to the definitions that those policies import.
    pub(crate) fn is_executable(&self) -> bool {
        matches!(
            self.kind,
            PolicyKind::Resource(_) | PolicyKind::Principal(_) | PolicyKind::Role(_)
        )
    }
}

/// The document as read, before the policy key has been checked. The loader uses it to
/// report a missing policy key as a validation error; [`Policy`]'s own `Deserialize`
/// reports it as a deserialization error.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub(crate) struct RawPolicy {
    #[serde(rename = "$span")]
    span: Span,
    #[serde(rename = "$schema", alias = "json_schema")]
    json_schema: String,
    #[serde(alias = "api_version")]
    api_version: String,
    disabled: bool,
    description: String,
    metadata: Option<Metadata>,
    variables: Definitions<ExprText>,
    #[serde(alias = "resource_policy")]
    resource_policy: Option<Spanned<ResourcePolicy>>,
    #[serde(alias = "principal_policy")]
    principal_policy: Option<Spanned<PrincipalPolicy>>,
    #[serde(alias = "role_policy")]
    role_policy: Option<Spanned<RolePolicy>>,
    #[serde(alias = "derived_roles")]
    derived_roles: Option<Spanned<DerivedRoles>>,
    #[serde(alias = "export_variables")]
    export_variables: Option<Spanned<ExportVariables>>,
    #[serde(alias = "export_constants")]
    export_constants: Option<Spanned<ExportConstants>>,
}

/// Why a document does not hold exactly one policy.
#[derive(Debug)]
pub(crate) enum PolicyKindError {
    /// None of the policy keys is present (the document starts at the span).
    Missing(Span),
    /// A second policy key, at `second`; the first is at `first`.
    Duplicate { first: Span, second: Span },
}

impl PolicyKindError {
    /// The message Cerbos gives, and where.
    pub(crate) fn describe(&self) -> (Span, String) {
        match self {
            Self::Missing(span) => (
                span.clone(),
                "policyType: exactly one field is required in oneof".to_owned(),
            ),
            Self::Duplicate { first, second } => (second.clone(), oneof_already_set(first)),
        }
    }
}

fn oneof_already_set(first: &Span) -> String {
    format!(
        "invalid value: oneof field is already set at [{}:{}]",
        first.line, first.col
    )
}

impl RawPolicy {
    /// Checks that exactly one policy key is present and builds the policy.
    pub(crate) fn into_policy(self) -> Result<Policy, PolicyKindError> {
        let mut kinds: Vec<(Span, PolicyKind)> = Vec::with_capacity(1);
        if let Some(p) = self.resource_policy {
            kinds.push((p.span, PolicyKind::Resource(p.value)));
        }
        if let Some(p) = self.principal_policy {
            kinds.push((p.span, PolicyKind::Principal(p.value)));
        }
        if let Some(p) = self.role_policy {
            kinds.push((p.span, PolicyKind::Role(p.value)));
        }
        if let Some(p) = self.derived_roles {
            kinds.push((p.span, PolicyKind::DerivedRoles(p.value)));
        }
        if let Some(p) = self.export_variables {
            kinds.push((p.span, PolicyKind::ExportVariables(p.value)));
        }
        if let Some(p) = self.export_constants {
            kinds.push((p.span, PolicyKind::ExportConstants(p.value)));
        }
        kinds.sort_by_key(|k| (k.0.line, k.0.col));
        let mut kinds = kinds.into_iter();
        let Some((first, mut kind)) = kinds.next() else {
            return Err(PolicyKindError::Missing(self.span));
        };
        if let Some((second, _)) = kinds.next() {
            return Err(PolicyKindError::Duplicate { first, second });
        }
        if let PolicyKind::Role(rp) = &mut kind
            && rp.version.is_empty()
        {
            rp.version = DEFAULT_VERSION.to_owned();
            rp.version_defaulted = true;
        }
        Ok(Policy {
            api_version: self.api_version,
            json_schema: self.json_schema,
            disabled: self.disabled,
            description: self.description,
            metadata: self.metadata,
            variables: self.variables,
            kind,
            root_span: self.span.clone(),
            span: self.span,
        })
    }
}

impl<'de> Deserialize<'de> for Policy {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = RawPolicy::deserialize(deserializer)?;
        raw.into_policy()
            .map_err(|e| de::Error::custom(e.describe().1))
    }
}

impl Serialize for Policy {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        if !self.json_schema.is_empty() {
            map.serialize_entry("$schema", &self.json_schema)?;
        }
        map.serialize_entry("apiVersion", &self.api_version)?;
        if self.disabled {
            map.serialize_entry("disabled", &true)?;
        }
        if !self.description.is_empty() {
            map.serialize_entry("description", &self.description)?;
        }
        if let Some(m) = &self.metadata {
            map.serialize_entry("metadata", m)?;
        }
        if !self.variables.is_empty() {
            map.serialize_entry("variables", &self.variables)?;
        }
        match &self.kind {
            PolicyKind::Resource(p) => map.serialize_entry(self.kind.key(), p)?,
            PolicyKind::Principal(p) => map.serialize_entry(self.kind.key(), p)?,
            PolicyKind::Role(p) => map.serialize_entry(self.kind.key(), p)?,
            PolicyKind::DerivedRoles(p) => map.serialize_entry(self.kind.key(), p)?,
            PolicyKind::ExportVariables(p) => map.serialize_entry(self.kind.key(), p)?,
            PolicyKind::ExportConstants(p) => map.serialize_entry(self.kind.key(), p)?,
        }
        map.end()
    }
}

/// `metadata` of a policy.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
struct Metadata {
    /// `sourceFile`.
    #[serde(alias = "source_file", skip_serializing_if = "String::is_empty")]
    source_file: String,
    /// `annotations`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
    /// `hash`, written as a number or a decimal string.
    #[serde(
        deserialize_with = "de_opt_hash",
        skip_serializing_if = "Option::is_none"
    )]
    hash: Option<u64>,
    /// `storeIdentifier`.
    #[serde(alias = "store_identifier", skip_serializing_if = "String::is_empty")]
    store_identifier: String,
    /// `storeIdentifer`: the misspelt field Cerbos keeps for compatibility.
    #[serde(alias = "store_identifer", skip_serializing_if = "String::is_empty")]
    store_identifer: String,
    /// `sourceAttributes`.
    #[serde(alias = "source_attributes", skip_serializing_if = "Option::is_none")]
    source_attributes: Option<SourceAttributes>,
}

/// `metadata.sourceAttributes`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
struct SourceAttributes {
    /// `attributes`: any JSON values.
    attributes: serde_json::Map<String, serde_json::Value>,
}

// === Resource policies ===

/// `resourcePolicy`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub(crate) struct ResourcePolicy {
    /// `resource`: the resource kind.
    pub(crate) resource: String,
    /// `version`.
    pub(crate) version: String,
    /// `importDerivedRoles`: names of derived-roles sets, each with its position.
    #[serde(alias = "import_derived_roles", skip_serializing_if = "Vec::is_empty")]
    pub(crate) import_derived_roles: Vec<Spanned<String>>,
    /// `rules`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) rules: Vec<ResourceRule>,
    /// `scope`, empty when unscoped.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) scope: String,
    /// `schemas`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) schemas: Option<Schemas>,
    /// `variables`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) variables: Option<Variables>,
    /// `constants`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) constants: Option<Constants>,
    /// `scopePermissions`; `None` when unspecified.
    #[serde(
        alias = "scope_permissions",
        deserialize_with = "de_scope_permissions",
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) scope_permissions: Option<ScopePermissions>,
}

/// One rule of a resource policy.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ResourceRule {
    /// `actions`: action names or globs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) actions: Vec<String>,
    /// `derivedRoles`: names of imported derived roles, each with its position.
    #[serde(
        default,
        alias = "derived_roles",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub(crate) derived_roles: Vec<Spanned<String>>,
    /// `roles`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) roles: Vec<String>,
    /// `condition`.
    #[serde(
        default,
        deserialize_with = "de_condition",
        serialize_with = "ser_condition",
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) condition: Option<Condition>,
    /// `effect`.
    pub(crate) effect: Effect,
    /// `name`; `None` when absent or empty.
    #[serde(
        default,
        deserialize_with = "de_opt_name",
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) name: Option<String>,
    /// `output`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) output: Option<Output>,
    /// Where the rule is (the list item).
    #[serde(rename = "$span", default, skip_serializing)]
    pub(crate) span: Span,
}

/// `schemas` of a resource policy.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub(crate) struct Schemas {
    /// `principalSchema`.
    #[serde(alias = "principal_schema", skip_serializing_if = "Option::is_none")]
    pub(crate) principal_schema: Option<SchemaRef>,
    /// `resourceSchema`.
    #[serde(alias = "resource_schema", skip_serializing_if = "Option::is_none")]
    pub(crate) resource_schema: Option<SchemaRef>,
}

/// A schema reference: `{ref: "cerbos:///principal.json", ignoreWhen: {actions: [...]}}`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", from = "RawSchemaRef")]
pub(crate) struct SchemaRef {
    /// `ref`: the schema URL.
    #[serde(rename = "ref")]
    pub(crate) reference: String,
    /// `ignoreWhen`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ignore_when: Option<IgnoreWhen>,
    /// Where `ref` is (its key), or the schema entry when `ref` is absent.
    #[serde(skip)]
    pub(crate) span: Span,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
struct RawSchemaRef {
    #[serde(rename = "$span")]
    span: Span,
    #[serde(rename = "ref")]
    reference: Option<Spanned<String>>,
    #[serde(alias = "ignore_when")]
    ignore_when: Option<IgnoreWhen>,
}

impl From<RawSchemaRef> for SchemaRef {
    fn from(raw: RawSchemaRef) -> Self {
        let (reference, span) = match raw.reference {
            Some(r) => (r.value, r.span),
            None => (String::new(), raw.span),
        };
        Self {
            reference,
            ignore_when: raw.ignore_when,
            span,
        }
    }
}

/// `ignoreWhen` of a schema reference.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct IgnoreWhen {
    /// `actions` for which the schema is not checked.
    pub(crate) actions: Vec<String>,
}

// === Principal policies ===

/// `principalPolicy`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub(crate) struct PrincipalPolicy {
    /// `principal`: the principal id.
    pub(crate) principal: String,
    /// `version`.
    pub(crate) version: String,
    /// `rules`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) rules: Vec<PrincipalRule>,
    /// `scope`, empty when unscoped.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) scope: String,
    /// `variables`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) variables: Option<Variables>,
    /// `constants`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) constants: Option<Constants>,
    /// `scopePermissions`; `None` when unspecified.
    #[serde(
        alias = "scope_permissions",
        deserialize_with = "de_scope_permissions",
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) scope_permissions: Option<ScopePermissions>,
}

/// A rule of a principal policy: the actions on one resource kind.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub(crate) struct PrincipalRule {
    /// `resource`: the resource kind or a glob.
    pub(crate) resource: String,
    /// `actions`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) actions: Vec<PrincipalAction>,
    /// Where the rule is (the list item).
    #[serde(rename = "$span", skip_serializing)]
    span: Span,
}

/// One action rule of a principal policy rule.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct PrincipalAction {
    /// `action`: an action name or glob.
    #[serde(default)]
    pub(crate) action: String,
    /// `condition`.
    #[serde(
        default,
        deserialize_with = "de_condition",
        serialize_with = "ser_condition",
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) condition: Option<Condition>,
    /// `effect`.
    pub(crate) effect: Effect,
    /// `name`; `None` when absent or empty.
    #[serde(
        default,
        deserialize_with = "de_opt_name",
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) name: Option<String>,
    /// `output`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) output: Option<Output>,
    /// Where the action rule is (the list item).
    #[serde(rename = "$span", default, skip_serializing)]
    pub(crate) span: Span,
}

// === Role policies ===

/// `rolePolicy`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub(crate) struct RolePolicy {
    /// `role`: the role the policy defines.
    pub(crate) role: String,
    /// `parentRoles`: the roles whose permissions this role narrows.
    #[serde(alias = "parent_roles", skip_serializing_if = "Vec::is_empty")]
    pub(crate) parent_roles: Vec<String>,
    /// `version`; [`DEFAULT_VERSION`] when the policy does not declare one.
    pub(crate) version: String,
    /// Whether `version` was absent and set to [`DEFAULT_VERSION`] (Cerbos warns about it).
    #[serde(skip)]
    pub(crate) version_defaulted: bool,
    /// `scope`, empty when unscoped.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) scope: String,
    /// `rules`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) rules: Vec<RoleRule>,
    /// `variables`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) variables: Option<Variables>,
    /// `constants`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) constants: Option<Constants>,
    /// `scopePermissions`; `None` when unspecified.
    #[serde(
        alias = "scope_permissions",
        deserialize_with = "de_scope_permissions",
        skip_serializing_if = "Option::is_none"
    )]
    scope_permissions: Option<ScopePermissions>,
}

/// A rule of a role policy: the actions the role may perform on one resource kind.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub(crate) struct RoleRule {
    /// `resource`: the resource kind or a glob.
    pub(crate) resource: String,
    /// `allowActions`.
    #[serde(alias = "allow_actions", skip_serializing_if = "Vec::is_empty")]
    pub(crate) allow_actions: Vec<String>,
    /// `condition`.
    #[serde(
        deserialize_with = "de_condition",
        serialize_with = "ser_condition",
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) condition: Option<Condition>,
    /// `name`; `None` when absent or empty.
    #[serde(
        deserialize_with = "de_opt_name",
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) name: Option<String>,
    /// `output`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) output: Option<Output>,
    /// Where the rule is (the list item).
    #[serde(rename = "$span", skip_serializing)]
    pub(crate) span: Span,
}

// === Derived roles and exports ===

/// `derivedRoles`: a named set of derived role definitions.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub(crate) struct DerivedRoles {
    /// `name`: what resource policies import.
    name: String,
    /// `definitions`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) definitions: Vec<RoleDef>,
    /// `variables`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) variables: Option<Variables>,
    /// `constants`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) constants: Option<Constants>,
}

/// One derived role: a name, the roles it derives from and an optional condition.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub(crate) struct RoleDef {
    /// `name`.
    pub(crate) name: String,
    /// `parentRoles`.
    #[serde(alias = "parent_roles", skip_serializing_if = "Vec::is_empty")]
    pub(crate) parent_roles: Vec<String>,
    /// `condition`.
    #[serde(
        deserialize_with = "de_condition",
        serialize_with = "ser_condition",
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) condition: Option<Condition>,
    /// Where the definition is (the list item).
    #[serde(rename = "$span", skip_serializing)]
    span: Span,
}

/// `exportVariables`: named variable definitions that policies import.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub(crate) struct ExportVariables {
    /// `name`.
    name: String,
    /// `definitions`: variable name to CEL expression, in file order.
    #[serde(skip_serializing_if = "Definitions::is_empty")]
    pub(crate) definitions: Definitions<ExprText>,
}

/// `exportConstants`: named constant definitions that policies import.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub(crate) struct ExportConstants {
    /// `name`.
    name: String,
    /// `definitions`: constant name to JSON value, in file order.
    #[serde(skip_serializing_if = "Definitions::is_empty")]
    pub(crate) definitions: Definitions<serde_json::Value>,
}

/// `variables` of a policy: imports and local definitions.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Variables {
    /// `import`: names of `exportVariables` sets, each with its position.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) import: Vec<Spanned<String>>,
    /// `local`: variable name to CEL expression, in file order.
    #[serde(skip_serializing_if = "Definitions::is_empty")]
    pub(crate) local: Definitions<ExprText>,
}

/// `constants` of a policy: imports and local definitions.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Constants {
    /// `import`: names of `exportConstants` sets, each with its position.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) import: Vec<Spanned<String>>,
    /// `local`: constant name to JSON value, in file order.
    #[serde(skip_serializing_if = "Definitions::is_empty")]
    pub(crate) local: Definitions<serde_json::Value>,
}

/// Where a definition of [`Definitions`] is written.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct DefinitionSpan {
    /// The name (the map key).
    pub(crate) name: Span,
    /// The value; this is where Cerbos reports problems with the definition.
    pub(crate) value: Span,
}

/// Named definitions (variables or constants) in file order.
///
/// Dereferences to a slice of `(name, value)` pairs; [`Definitions::spans`] holds the
/// positions of each pair, index for index. A name written twice keeps the last value.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Definitions<T> {
    entries: Vec<(String, T)>,
    spans: Vec<DefinitionSpan>,
    /// Index of each name in `entries`.
    index: HashMap<String, usize>,
}

impl<T> Default for Definitions<T> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            spans: Vec::new(),
            index: HashMap::new(),
        }
    }
}

impl<T> Definitions<T> {
    /// No definitions.
    fn new() -> Self {
        Self::default()
    }

    /// Adds a definition, replacing an earlier one with the same name.
    fn insert(&mut self, name: String, value: T, span: DefinitionSpan) {
        if let Some(&i) = self.index.get(&name) {
            self.entries[i].1 = value;
            self.spans[i] = span;
        } else {
            self.index.insert(name.clone(), self.entries.len());
            self.entries.push((name, value));
            self.spans.push(span);
        }
    }

    /// Whether there are no definitions.
    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    #[cfg(test)]
    /// The value defined for `name`.
    fn get(&self, name: &str) -> Option<&T> {
        self.index.get(name).map(|&i| &self.entries[i].1)
    }

    #[cfg(test)]
    /// The positions of the definitions, in the same order as the definitions.
    pub(crate) fn spans(&self) -> &[DefinitionSpan] {
        &self.spans
    }

    /// The definitions with their positions.
    pub(crate) fn iter_spanned(&self) -> impl Iterator<Item = (&str, &T, &DefinitionSpan)> {
        self.entries
            .iter()
            .zip(&self.spans)
            .map(|((n, v), s)| (n.as_str(), v, s))
    }
}

impl<T> Deref for Definitions<T> {
    type Target = [(String, T)];

    fn deref(&self) -> &[(String, T)] {
        &self.entries
    }
}

impl<'a, T> IntoIterator for &'a Definitions<T> {
    type Item = &'a (String, T);
    type IntoIter = std::slice::Iter<'a, (String, T)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter()
    }
}

impl<T> FromIterator<(String, T)> for Definitions<T> {
    fn from_iter<I: IntoIterator<Item = (String, T)>>(iter: I) -> Self {
        let mut out = Self::new();
        for (name, value) in iter {
            out.insert(name, value, DefinitionSpan::default());
        }
        out
    }
}

impl<T: Serialize> Serialize for Definitions<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.entries.len()))?;
        for (name, value) in &self.entries {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Definitions<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DefinitionsVisitor<T>(std::marker::PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for DefinitionsVisitor<T> {
            type Value = Definitions<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of definitions")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Definitions::new();
                while let Some(name) = map.next_key::<Spanned<String>>()? {
                    let value = map.next_value::<Spanned<T>>()?;
                    let span = DefinitionSpan {
                        name: name.span,
                        value: value.span,
                    };
                    out.insert(name.value, value.value, span);
                }
                Ok(out)
            }
        }

        deserializer.deserialize_map(DefinitionsVisitor(std::marker::PhantomData))
    }
}

// === Conditions, expressions and outputs ===

/// The text of a CEL expression and where it is written.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct ExprText {
    /// The expression as written (block scalars keep their line breaks).
    pub(crate) text: String,
    /// Where Cerbos reports problems with the expression: the `expr:` key of a condition or
    /// output, the value of a variable definition.
    pub(crate) span: Span,
    /// Where the expression text itself starts (for block scalars, the `|` or `>`).
    pub(crate) value_span: Span,
}

impl ExprText {}

impl<'de> Deserialize<'de> for ExprText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (text, span, value_span) = deserialize_spanned::<D, String>(deserializer)?;
        Ok(Self {
            text,
            span,
            value_span,
        })
    }
}

impl Serialize for ExprText {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

/// A rule condition: `condition: {match: ...}`, or the `script` form Cerbos no longer
/// supports.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub(crate) enum Condition {
    /// `match`: the condition holds when the block holds.
    Match(Match),
    /// `script`: kept only so that the compiler can reject it as Cerbos does ("scripts in
    /// conditions are no longer supported"). It never becomes a rule condition.
    Script {
        /// The script as written.
        source: String,
        /// Where the condition is (its `condition:` key).
        span: Span,
    },
}

/// A `match` block: one expression, or `all`/`any`/`none` of nested blocks
/// (written `{all: {of: [...]}}`).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub(crate) enum Match {
    /// `expr`: a CEL expression.
    Expr(ExprText),
    /// `all.of`: every block holds.
    All(Vec<Match>),
    /// `any.of`: at least one block holds.
    Any(Vec<Match>),
    /// `none.of`: no block holds.
    None(Vec<Match>),
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawMatch {
    #[serde(rename = "$span")]
    span: Span,
    expr: Option<ExprText>,
    all: Option<Spanned<ExprList>>,
    any: Option<Spanned<ExprList>>,
    none: Option<Spanned<ExprList>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ExprList {
    of: Vec<Match>,
}

impl<'de> Deserialize<'de> for Match {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = RawMatch::deserialize(deserializer)?;
        let mut ops: Vec<(Span, Match)> = Vec::with_capacity(1);
        if let Some(e) = raw.expr {
            ops.push((e.span.clone(), Match::Expr(e)));
        }
        if let Some(l) = raw.all {
            ops.push((l.span, Match::All(l.value.of)));
        }
        if let Some(l) = raw.any {
            ops.push((l.span, Match::Any(l.value.of)));
        }
        if let Some(l) = raw.none {
            ops.push((l.span, Match::None(l.value.of)));
        }
        ops.sort_by_key(|o| (o.0.line, o.0.col));
        let mut ops = ops.into_iter();
        let Some((first, op)) = ops.next() else {
            return Err(error_at(
                &raw.span,
                "match: exactly one of expr, all, any or none is required",
            ));
        };
        if let Some((second, _)) = ops.next() {
            return Err(error_at(&second, oneof_already_set(&first)));
        }
        Ok(op)
    }
}

impl Serialize for Match {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Of<'a>(&'a [Match]);

        impl Serialize for Of<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("of", &List(self.0))?;
                map.end()
            }
        }

        struct List<'a>(&'a [Match]);

        impl Serialize for List<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
                for m in self.0 {
                    seq.serialize_element(m)?;
                }
                seq.end()
            }
        }

        let mut map = serializer.serialize_map(Some(1))?;
        match self {
            Match::Expr(e) => map.serialize_entry("expr", e)?,
            Match::All(l) => map.serialize_entry("all", &Of(l))?,
            Match::Any(l) => map.serialize_entry("any", &Of(l))?,
            Match::None(l) => map.serialize_entry("none", &Of(l))?,
        }
        map.end()
    }
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawCondition {
    #[serde(rename = "$span")]
    span: Span,
    #[serde(rename = "match")]
    matches: Option<Spanned<Match>>,
    script: Option<Spanned<String>>,
}

/// Reads `condition: {match: ...}` or `condition: {script: ...}`. A script is kept as
/// [`Condition::Script`]: Cerbos reads it and rejects it when compiling.
fn de_condition<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Condition>, D::Error> {
    let raw = RawCondition::deserialize(deserializer)?;
    match (raw.matches, raw.script) {
        (Some(m), Some(s)) => {
            let (first, second) = if (m.span.line, m.span.col) <= (s.span.line, s.span.col) {
                (m.span, s.span)
            } else {
                (s.span, m.span)
            };
            Err(error_at(&second, oneof_already_set(&first)))
        }
        (Some(m), None) => Ok(Some(Condition::Match(m.value))),
        (None, Some(s)) => Ok(Some(Condition::Script {
            source: s.value,
            span: raw.span,
        })),
        (None, None) => Err(error_at(
            &raw.span,
            "condition: exactly one of match or script is required",
        )),
    }
}

fn ser_condition<S: Serializer>(
    condition: &Option<Condition>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut map = serializer.serialize_map(Some(1))?;
    match condition {
        Some(Condition::Match(m)) => map.serialize_entry("match", m)?,
        Some(Condition::Script { source, .. }) => map.serialize_entry("script", source)?,
        None => {}
    }
    map.end()
}

/// `output` of a rule.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub(crate) struct Output {
    /// `expr`: the deprecated form, evaluated when the rule activates.
    #[serde(
        deserialize_with = "de_opt_expr",
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) expr: Option<ExprText>,
    /// `when`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) when: Option<OutputWhen>,
    /// Where the output is (its `output:` key).
    #[serde(rename = "$span", skip_serializing)]
    pub(crate) span: Span,
}

/// `output.when`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub(crate) struct OutputWhen {
    /// `ruleActivated`: evaluated when the rule's roles and condition match.
    #[serde(
        alias = "rule_activated",
        deserialize_with = "de_opt_expr",
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) rule_activated: Option<ExprText>,
    /// `conditionNotMet`: evaluated when the roles match but the condition does not.
    #[serde(
        alias = "condition_not_met",
        deserialize_with = "de_opt_expr",
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) condition_not_met: Option<ExprText>,
}

/// An expression field where empty means unset (proto3 strings).
fn de_opt_expr<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<ExprText>, D::Error> {
    let e = ExprText::deserialize(deserializer)?;
    Ok((!e.text.is_empty()).then_some(e))
}

/// A name field where empty means unset (proto3 strings).
fn de_opt_name<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let s = String::deserialize(deserializer)?;
    Ok((!s.is_empty()).then_some(s))
}

fn de_opt_hash<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    struct HashVisitor;

    impl Visitor<'_> for HashVisitor {
        type Value = Option<u64>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a non-negative integer")
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            u64::try_from(v)
                .map(Some)
                .map_err(|_| E::custom(format_args!("invalid hash value {v}")))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            if v.is_empty() {
                return Ok(None);
            }
            v.trim()
                .parse()
                .map(Some)
                .map_err(|_| E::custom(format_args!("invalid hash value {v:?}")))
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }

    deserializer.deserialize_any(HashVisitor)
}

// === Enums ===

/// How a scoped policy combines with the policies of its parent scopes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub(crate) enum ScopePermissions {
    /// `SCOPE_PERMISSIONS_OVERRIDE_PARENT`: the most specific decision wins.
    OverrideParent,
    /// `SCOPE_PERMISSIONS_REQUIRE_PARENTAL_CONSENT_FOR_ALLOWS`: an allow must also be
    /// allowed by the parent scopes.
    RequireParentalConsentForAllows,
}

impl ScopePermissions {
    /// The Cerbos name, e.g. `SCOPE_PERMISSIONS_OVERRIDE_PARENT`.
    fn as_str(self) -> &'static str {
        match self {
            Self::OverrideParent => "SCOPE_PERMISSIONS_OVERRIDE_PARENT",
            Self::RequireParentalConsentForAllows => {
                "SCOPE_PERMISSIONS_REQUIRE_PARENTAL_CONSENT_FOR_ALLOWS"
            }
        }
    }
}

impl Serialize for ScopePermissions {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Reads a scope permissions enum; unspecified (by name, `0` or null) is `None`.
fn de_scope_permissions<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<ScopePermissions>, D::Error> {
    struct PermsVisitor;

    impl Visitor<'_> for PermsVisitor {
        type Value = Option<ScopePermissions>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a SCOPE_PERMISSIONS_* value")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            match v {
                "SCOPE_PERMISSIONS_UNSPECIFIED" => Ok(None),
                "SCOPE_PERMISSIONS_OVERRIDE_PARENT" => Ok(Some(ScopePermissions::OverrideParent)),
                "SCOPE_PERMISSIONS_REQUIRE_PARENTAL_CONSENT_FOR_ALLOWS" => {
                    Ok(Some(ScopePermissions::RequireParentalConsentForAllows))
                }
                _ => Err(E::custom(format_args!("invalid enum value {v:?}"))),
            }
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            match v {
                0 => Ok(None),
                1 => Ok(Some(ScopePermissions::OverrideParent)),
                2 => Ok(Some(ScopePermissions::RequireParentalConsentForAllows)),
                _ => Err(E::custom(format_args!("invalid enum value {v}"))),
            }
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            u64::try_from(v)
                .map_err(|_| E::custom(format_args!("invalid enum value {v}")))
                .and_then(|v| self.visit_u64(v))
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }

    deserializer.deserialize_any(PermsVisitor)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn policy(kind: PolicyKind) -> Policy {
        Policy {
            api_version: API_VERSION.into(),
            json_schema: String::new(),
            disabled: false,
            description: String::new(),
            metadata: None,
            variables: Definitions::new(),
            kind,
            span: Span::default(),
            root_span: Span::default(),
        }
    }

    #[test]
    fn fqn_follows_cerbos_naming() {
        let rp = ResourcePolicy {
            resource: "leave_request".into(),
            version: "20210210".into(),
            scope: "acme.hr".into(),
            ..Default::default()
        };
        assert_eq!(
            policy(PolicyKind::Resource(rp)).fqn(),
            "cerbos.resource.leave_request.v20210210/acme.hr"
        );
        let pp = PrincipalPolicy {
            principal: "donald_duck".into(),
            version: "default".into(),
            ..Default::default()
        };
        assert_eq!(
            policy(PolicyKind::Principal(pp)).fqn(),
            "cerbos.principal.donald_duck.vdefault"
        );
        let role = RolePolicy {
            role: "acme_admin".into(),
            version: "default".into(),
            scope: "acme".into(),
            ..Default::default()
        };
        assert_eq!(
            policy(PolicyKind::Role(role)).fqn(),
            "cerbos.role.acme_admin.vdefault/acme"
        );
        let dr = DerivedRoles {
            name: "common_roles".into(),
            ..Default::default()
        };
        assert_eq!(
            policy(PolicyKind::DerivedRoles(dr)).fqn(),
            "cerbos.derived_roles.common_roles"
        );
        let ev = ExportVariables {
            name: "foo".into(),
            ..Default::default()
        };
        assert_eq!(
            policy(PolicyKind::ExportVariables(ev)).fqn(),
            "cerbos.export_variables.foo"
        );
        let ec = ExportConstants {
            name: "bar".into(),
            ..Default::default()
        };
        assert_eq!(
            policy(PolicyKind::ExportConstants(ec)).fqn(),
            "cerbos.export_constants.bar"
        );
    }

    #[test]
    fn definitions_keep_order_and_replace_duplicates() {
        let mut d = Definitions::new();
        d.insert("b".into(), 1, DefinitionSpan::default());
        d.insert("a".into(), 2, DefinitionSpan::default());
        d.insert("b".into(), 3, DefinitionSpan::default());
        let pairs: Vec<(&str, i32)> = d.iter().map(|(n, v)| (n.as_str(), *v)).collect();
        assert_eq!(pairs, [("b", 3), ("a", 2)]);
        assert_eq!(d.get("a"), Some(&2));
        assert_eq!(d.spans().len(), 2);
    }

    #[test]
    fn policies_also_deserialize_from_plain_json() {
        let json = serde_json::json!({
            "apiVersion": "api.cerbos.dev/v1",
            "variables": {"v": "1"},
            "resourcePolicy": {
                "resource": "album",
                "version": "default",
                "importDerivedRoles": ["owners"],
                "rules": [{
                    "actions": ["view"],
                    "effect": "EFFECT_ALLOW",
                    "derivedRoles": ["owner"],
                    "condition": {"match": {"any": {"of": [{"expr": "a"}, {"expr": "b"}]}}},
                    "output": {"when": {"ruleActivated": "1"}}
                }],
                "constants": {"local": {"c": [1, {"d": true}]}}
            }
        });
        let policy: Policy = serde_json::from_value(json.clone()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(policy.fqn(), "cerbos.resource.album.vdefault");
        assert_eq!(
            serde_json::to_value(&policy).unwrap_or_else(|e| panic!("{e}")),
            json
        );
        let err = serde_json::from_value::<Policy>(serde_json::json!({
            "apiVersion": "api.cerbos.dev/v1",
            "exportVariables": {"name": "a", "wibble": 1}
        }));
        assert!(err.is_err_and(|e| e.to_string().contains("wibble")));
    }
}
