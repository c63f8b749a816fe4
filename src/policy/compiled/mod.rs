//! The compiled form of a policy store: rule rows indexed by version and scope,
//! with every CEL expression already parsed and resolved. The engine reads only
//! these types.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

pub(crate) mod glob;

use super::Span;
pub use super::effect::Effect;
use crate::cel::Program;
use crate::jsonschema::SchemaStore;
use glob::Glob;

/// The hasher of the index maps: foldhash with a fixed seed (their keys come from
/// policies, never from requests, so flooding is not a concern). Its low bits (the bucket
/// a key lands in) depend on every byte of the key: FxHash, used before, gave the 10,000
/// kinds `kind0` to `kind9999` 32 distinct buckets of 16,384, so lookups slowed down as
/// policies were added (issue 15).
pub(crate) type IndexHasher = foldhash::fast::FixedState;
/// A map with the index hasher.
pub(crate) type FastMap<K, V> = HashMap<K, V, IndexHasher>;
/// A set with the index hasher.
pub(crate) type FastSet<K> = HashSet<K, IndexHasher>;

/// Activation slot of `request`.
pub(crate) const SLOT_REQUEST: u16 = 0;
/// Activation slot of `P` (`request.principal`).
pub(crate) const SLOT_PRINCIPAL: u16 = 1;
/// Activation slot of `R` (`request.resource`).
pub(crate) const SLOT_RESOURCE: u16 = 2;
/// Activation slot of `G` / `globals`.
pub(crate) const SLOT_GLOBALS: u16 = 3;
/// Activation slot of `runtime`.
pub(crate) const SLOT_RUNTIME: u16 = 4;
/// Activation slot of `P.attr` (the map in `P`'s `attr` entry).
pub(crate) const SLOT_PRINCIPAL_ATTR: u16 = 5;
/// Activation slot of `R.attr`.
pub(crate) const SLOT_RESOURCE_ATTR: u16 = 6;
/// Number of host slots.
pub(crate) const HOST_SLOTS: usize = 7;

/// How a scoped policy combines with its parent scopes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) enum ScopePermissions {
    /// Not set (role policies).
    #[default]
    Unspecified,
    /// The most specific decision wins (the default for resource and principal policies).
    OverrideParent,
    /// An allow must also be granted by a parent scope.
    RequireParentalConsentForAllows,
}

/// Which kind of policy a rule row came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum RowKind {
    /// A principal policy.
    Principal,
    /// A resource or role policy.
    Resource,
}

/// A compiled CEL expression with its source, for traces and errors.
#[derive(Clone, Debug)]
pub(crate) struct CompiledExpr {
    pub(crate) program: Program,
    /// The parsed expression with variables and constants inlined, for the planner.
    pub(crate) plan: Arc<crate::cel::ast::Expr>,
    /// Why Cerbos 0.55 cannot build this expression's program (a type conversion of a
    /// constant that fails, `cel::fold`): a condition with one is an evaluation error, an
    /// output is this error.
    pub(crate) plan_error: Option<Arc<str>>,
    pub(crate) source: Arc<str>,
    pub(crate) span: Span,
}

/// A compiled `match` block.
#[derive(Clone, Debug)]
pub(crate) enum Condition {
    Expr(CompiledExpr),
    All(Vec<Condition>),
    Any(Vec<Condition>),
    None(Vec<Condition>),
}

/// A rule's outputs.
#[derive(Clone, Debug, Default)]
pub(crate) struct CompiledOutput {
    pub(crate) rule_activated: Option<CompiledExpr>,
    pub(crate) condition_not_met: Option<CompiledExpr>,
}

/// A derived role as imported by a resource policy.
#[derive(Clone, Debug)]
pub(crate) struct DerivedRole {
    pub(crate) name: Arc<str>,
    pub(crate) parent_roles: Vec<Arc<str>>,
    pub(crate) condition: Option<Arc<Condition>>,
}

/// What actions a row covers.
#[derive(Clone, Debug)]
pub(crate) enum ActionSet {
    /// A resource or principal rule: one action pattern.
    Action(Glob),
    /// A role policy rule: the actions it allows (everything else is denied).
    AllowActions(Vec<Glob>),
}

/// One row of the rule table: a (rule, role, action) combination.
#[derive(Clone, Debug)]
pub(crate) struct Row {
    pub(crate) kind: RowKind,
    /// Policy key of the origin, e.g. `resource.leave_request.vdefault/acme`.
    pub(crate) policy_key: Arc<str>,
    pub(crate) resource: Glob,
    pub(crate) role: Glob,
    pub(crate) actions: ActionSet,
    pub(crate) condition: Option<Arc<Condition>>,
    pub(crate) derived_role: Option<Arc<DerivedRole>>,
    pub(crate) effect: Effect,
    pub(crate) scope: Arc<str>,
    pub(crate) principal: Option<Arc<str>>,
    pub(crate) output: Option<Arc<CompiledOutput>>,
    /// `policy_key#rule_name`, the `src` of outputs.
    pub(crate) output_src: Arc<str>,
    /// Rule name (generated as `rule-NNN` when absent).
    pub(crate) name: Arc<str>,
    /// Identifies the (rule, derived role) combination whose condition result can be reused.
    pub(crate) evaluation_key: u32,
    pub(crate) span: Span,
}

impl Row {
    /// Whether this row's action pattern matches.
    pub(crate) fn matches_action(&self, action: &str) -> bool {
        match &self.actions {
            ActionSet::Action(g) => g.matches(action),
            ActionSet::AllowActions(gs) => gs.iter().any(|g| g.matches(action)),
        }
    }
}

/// Schema references of a resource policy.
#[derive(Clone, Debug, Default)]
pub(crate) struct PolicySchemas {
    pub(crate) principal: Option<SchemaRef>,
    pub(crate) resource: Option<SchemaRef>,
}

/// One schema reference with its `ignoreWhen.actions`.
#[derive(Clone, Debug)]
pub(crate) struct SchemaRef {
    pub(crate) url: Arc<str>,
    pub(crate) ignore_actions: Vec<Glob>,
}

impl SchemaRef {
    /// Whether `ignoreWhen.actions` covers every requested action (then nothing is validated).
    pub(crate) fn ignored_for<'a>(&self, mut actions: impl Iterator<Item = &'a str>) -> bool {
        !self.ignore_actions.is_empty()
            && actions.all(|a| self.ignore_actions.iter().any(|g| g.matches(a)))
    }
}

/// Row numbers (ascending, that is in policy order) by role: literal roles by hash,
/// wildcard roles apart.
#[derive(Clone, Debug, Default)]
pub(crate) struct ByRole {
    pub(crate) literal: FastMap<Arc<str>, Vec<u32>>,
    pub(crate) wildcard: Vec<u32>,
}

/// Entries by resource kind: exact kinds by hash, wildcard kinds apart.
#[derive(Clone, Debug, Default)]
pub(crate) struct ByKind<T> {
    pub(crate) exact: FastMap<Arc<str>, T>,
    pub(crate) wildcard: T,
}

impl<T: Default> ByKind<T> {
    /// The entry of a row's resource pattern (created when missing).
    fn entry(&mut self, resource: &Glob) -> &mut T {
        match resource.literal() {
            Some(kind) => {
                if !self.exact.contains_key(kind) {
                    self.exact.insert(Arc::from(kind), T::default());
                }
                self.exact.get_mut(kind).expect("inserted above")
            }
            None => &mut self.wildcard,
        }
    }
}

/// The rows of one (version, scope) pair, indexed so that a query reads only the rows
/// of the requested kind (and the wildcard kinds): the cost of a decision does not grow
/// with the number of unrelated policies.
#[derive(Clone, Debug, Default)]
pub(crate) struct ScopeRows {
    /// Principal policy rows by principal id.
    pub(crate) principal: FastMap<Arc<str>, Vec<u32>>,
    /// Resource policy rows by kind, then role.
    pub(crate) resource: ByKind<ByRole>,
    /// Role policy rows by role (a role policy's role is a literal), then kind.
    pub(crate) role: FastMap<Arc<str>, ByKind<Vec<u32>>>,
    /// Exact kinds with resource or role policy rows here.
    kinds: FastSet<Arc<str>>,
    /// Resource and role policy rows whose resource is a wildcard pattern.
    wildcard_kind_rows: Vec<u32>,
    /// Whether any principal policy exists here.
    pub(crate) has_principal: bool,
    /// The policy keys of the resource policies here by (sanitised) kind, and of the
    /// principal policies by principal id: a decision names its policy without
    /// formatting one.
    resource_keys: FastMap<Arc<str>, Arc<str>>,
    principal_keys: FastMap<Arc<str>, Arc<str>>,
    /// Resource kind -> derived roles its policy here imports (and refers to).
    pub(crate) derived_roles: FastMap<Arc<str>, Vec<Arc<DerivedRole>>>,
    /// Resource kind -> schemas of its policy here (empty when it declares none); a kind
    /// is present exactly when it has a resource policy in this scope and version.
    pub(crate) schemas: FastMap<Arc<str>, PolicySchemas>,
}

impl ScopeRows {
    /// Files row `idx` (the next row number) under its kind and role.
    pub(crate) fn add(&mut self, idx: u32, row: &Row) {
        if row.kind == RowKind::Principal {
            self.has_principal = true;
            if let Some(pid) = &row.principal {
                self.principal.entry(pid.clone()).or_default().push(idx);
                if !self.principal_keys.contains_key(pid) {
                    self.principal_keys
                        .insert(pid.clone(), row.policy_key.clone());
                }
            }
            return;
        }
        if let (ActionSet::Action(_), Some(kind)) = (&row.actions, row.resource.literal())
            && !self.resource_keys.contains_key(kind)
        {
            self.resource_keys
                .insert(Arc::from(kind), row.policy_key.clone());
        }
        match row.resource.literal() {
            Some(kind) if !self.kinds.contains(kind) => {
                self.kinds.insert(Arc::from(kind));
            }
            Some(_) => {}
            None => self.wildcard_kind_rows.push(idx),
        }
        match &row.actions {
            ActionSet::AllowActions(_) => {
                let role = row.role.as_str();
                if !self.role.contains_key(role) {
                    self.role.insert(Arc::from(role), ByKind::default());
                }
                let by_kind = self.role.get_mut(role).expect("inserted above");
                by_kind.entry(&row.resource).push(idx);
            }
            ActionSet::Action(_) => {
                let by_role = self.resource.entry(&row.resource);
                match row.role.literal() {
                    Some(role) => match by_role.literal.get_mut(role) {
                        Some(v) => v.push(idx),
                        None => {
                            by_role.literal.insert(Arc::from(role), vec![idx]);
                        }
                    },
                    None => by_role.wildcard.push(idx),
                }
            }
        }
    }

    /// The policy key of the resource policy for `kind` here, if it has rules here.
    pub(crate) fn resource_key(&self, kind: &str) -> Option<&Arc<str>> {
        self.resource_keys.get(kind)
    }

    /// The policy key of the principal policy of `id` here, if it has rules here.
    pub(crate) fn principal_key(&self, id: &str) -> Option<&Arc<str>> {
        self.principal_keys.get(id)
    }

    /// Whether a resource or role policy rule here is for `kind`; `examined` counts the
    /// rows read.
    pub(crate) fn has_kind(&self, rows: &[Row], kind: &str, examined: &mut usize) -> bool {
        if self.kinds.contains(kind) {
            return true;
        }
        self.wildcard_kind_rows.iter().any(|&i| {
            *examined += 1;
            rows[i as usize].resource.matches(kind)
        })
    }
}

/// The policy kinds, for counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolicyCounts {
    /// Resource policies.
    pub resource: usize,
    /// Principal policies.
    pub principal: usize,
    /// Role policies.
    pub(crate) role: usize,
    /// Derived roles sets.
    pub derived_roles: usize,
    /// Exported variables.
    pub(crate) export_variables: usize,
    /// Exported constants.
    pub(crate) export_constants: usize,
}

/// Role -> all its (transitive) parent roles, within one scope.
pub(crate) type ParentRoles = FastMap<Arc<str>, Vec<Arc<str>>>;

/// A compiled, immutable policy set: what the engine evaluates.
#[derive(Debug, Default)]
pub struct CompiledPolicySet {
    pub(crate) rows: Vec<Row>,
    /// Rows indexed by version, then scope.
    pub(crate) index: FastMap<Arc<str>, FastMap<Arc<str>, ScopeRows>>,
    pub(crate) principal_scopes: FastSet<Arc<str>>,
    pub(crate) resource_scopes: FastSet<Arc<str>>,
    pub(crate) scope_permissions: FastMap<Arc<str>, ScopePermissions>,
    /// scope -> role -> all (transitive) parent roles, from role policies.
    pub(crate) parent_roles: FastMap<Arc<str>, ParentRoles>,
    pub(crate) schema_store: Arc<SchemaStore>,
    pub(crate) counts: PolicyCounts,
    pub(crate) evaluation_keys: u32,
    /// Whether any expression reads `request` (else it is not built per check).
    pub(crate) uses_request: bool,
    /// Whether any expression reads `runtime` (else a check does not build it for the
    /// derived roles it activates).
    pub(crate) uses_runtime: bool,
    /// Resource kinds named literally by some rule, with the actions named literally for
    /// them: the only label values metrics take (issue 12, item 7).
    pub(crate) metric_labels: FastMap<Arc<str>, FastSet<Arc<str>>>,
}

/// The label value of kinds and actions that the policy set does not name.
pub(crate) const OTHER_LABEL: &str = "other";

impl CompiledPolicySet {
    /// How many policies of each kind were compiled.
    pub fn counts(&self) -> PolicyCounts {
        self.counts
    }

    /// Number of executable policies (resource, principal and role policies).
    pub(crate) fn executable_policies(&self) -> usize {
        self.counts.resource + self.counts.principal + self.counts.role
    }

    /// The metric labels of a decision about `action` on `kind`: each value as the policy
    /// set names it, or [`OTHER_LABEL`] when no rule names it literally, so that callers
    /// cannot create label values (the series of a metric stay bounded by the policies).
    pub(crate) fn metric_labels<'a>(
        &'a self,
        kind: &'a str,
        action: &'a str,
    ) -> (&'a str, &'a str) {
        match self.metric_labels.get(kind) {
            None => (OTHER_LABEL, OTHER_LABEL),
            Some(actions) if actions.contains(action) => (kind, action),
            Some(_) => (kind, OTHER_LABEL),
        }
    }

    /// Fills [`metric_labels`](Self::metric_labels) from the rows.
    pub(crate) fn index_metric_labels(&mut self) {
        for row in &self.rows {
            let Some(kind) = row.resource.literal() else {
                continue;
            };
            let actions = self.metric_labels.entry(Arc::from(kind)).or_default();
            let globs = match &row.actions {
                ActionSet::Action(g) => std::slice::from_ref(g),
                ActionSet::AllowActions(gs) => gs.as_slice(),
            };
            actions.extend(globs.iter().filter_map(|g| g.literal()).map(Arc::from));
        }
    }

    /// The rows of a (version, scope), if any.
    pub(crate) fn scope_rows(&self, version: &str, scope: &str) -> Option<&ScopeRows> {
        self.index.get(version)?.get(scope)
    }

    /// Roles with their parent roles (transitively), as defined by role policies at `scope`.
    pub(crate) fn with_parent_roles<'r>(
        &self,
        scope: &str,
        roles: &'r [Arc<str>],
    ) -> Cow<'r, [Arc<str>]> {
        let Some(map) = self.parent_roles.get(scope) else {
            return Cow::Borrowed(roles);
        };
        if !roles.iter().any(|r| map.contains_key(r)) {
            return Cow::Borrowed(roles);
        }
        let mut out: Vec<Arc<str>> = roles.to_vec();
        for r in roles {
            if let Some(parents) = map.get(r) {
                out.extend(parents.iter().cloned());
            }
        }
        Cow::Owned(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    /// Issue 15: with 10,000 generated kinds (`kind0` .. `kind9999`) the index maps have
    /// 16,384 buckets; the kinds must spread over them (FxHash put them in 32), else the
    /// cost of a lookup grows with the number of policies.
    #[test]
    fn issue_15_generated_kinds_spread_over_the_buckets() {
        let hasher = IndexHasher::default();
        let buckets: FastSet<u64> = (0..10_000)
            .map(|i| hasher.hash_one(format!("kind{i}").as_str()) & 0x3fff)
            .collect();
        // 10,000 keys thrown at random into 16,384 buckets fill about 7,600 of them.
        assert!(buckets.len() > 7_000, "{} buckets used", buckets.len());
    }
}
