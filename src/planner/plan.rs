//! The rule walk of a plan, following Cerbos's `planWithAuditTrail`: for each action,
//! resource policies then principal policies; for each role the scopes from the most
//! specific to the root; ALLOW rules OR-ed, DENY rules negated and AND-ed on top,
//! scope permissions and role policies applied as Cerbos applies them.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::cel::ast::{BinaryOp, Expr, ExprKind};
use crate::cel::{Timestamp, Value};
use crate::engine::check::{
    Binding, RowQuery, all_scopes, effective_scope, effective_version, query, request_values,
};
use crate::engine::{
    CheckInput, Engine, EngineConfig, EvaluationError, Resource, SchemaEnforcement, ValidationError,
};
use crate::policy::compiled::{
    CompiledExpr, CompiledPolicySet, Condition, DerivedRole, Effect, RowKind, ScopePermissions,
};
use crate::policy::id::sanitize;

use super::filter::{
    Filter, FilterKind, Node, Operand, and_node, merge_with_and, or_node, to_filter,
};
use super::residual::{KnownRequest, Residual, plan_expr};
use super::{PlanError, PlanInput, PlanOutput, PlanStep};

/// Bounds on a filter: operands in all, and nesting depth.
const MAX_FILTER_NODES: usize = 10_000;
const MAX_FILTER_DEPTH: usize = 200;

/// (operands, depth) of a filter condition, counting stops past the bounds.
fn filter_size(o: &Operand, depth: usize, nodes: &mut usize, max_depth: &mut usize) {
    *nodes += 1;
    *max_depth = (*max_depth).max(depth);
    if *nodes > MAX_FILTER_NODES || depth > MAX_FILTER_DEPTH {
        return;
    }
    if let Operand::Expression(e) = o {
        for x in &e.operands {
            filter_size(x, depth + 1, nodes, max_depth);
        }
    }
}

/// The `filterDebug` of a plan no policy matched.
const NO_MATCH: &str = "NO_MATCH";

/// A condition failed to evaluate under strict evaluation.
struct StrictError;

fn add(curr: Option<Node>, next: Option<Node>, or: bool) -> Option<Node> {
    match (curr, next) {
        (c, None) => c,
        (None, n) => n,
        (Some(c), Some(n)) => {
            if or {
                or_node(vec![c, n])
            } else {
                and_node(vec![c, n])
            }
        }
    }
}

fn is_const(n: &Option<Node>, b: bool) -> bool {
    n.as_ref().and_then(Node::const_bool) == Some(b)
}

/// Narrows a parent-scope DENY to fire only when no child OVERRIDE_PARENT scope allowed.
fn gate(child_override_allow: &Option<Node>, deny: Option<Node>) -> Option<Node> {
    let (Some(deny), Some(allow)) = (deny.clone(), child_override_allow) else {
        return deny;
    };
    let inv = allow.clone().invert();
    if deny.const_bool() == Some(true) {
        return Some(inv);
    }
    and_node(vec![inv, deny])
}

/// Whether an expression reads `runtime.effectiveDerivedRoles`.
fn reads_runtime(e: &Expr) -> bool {
    if is_runtime_edr(e) {
        return true;
    }
    e.children().into_iter().any(reads_runtime)
}

fn is_runtime_edr(e: &Expr) -> bool {
    matches!(&e.kind, ExprKind::Select { operand, field, optional: false }
        if operand.as_ident() == Some("runtime")
            && (field == "effectiveDerivedRoles" || field == "effective_derived_roles"))
}

/// `e` with `runtime.effectiveDerivedRoles` replaced by `with`.
fn replace_runtime(e: &Expr, with: &Expr) -> Expr {
    if is_runtime_edr(e) {
        return with.clone();
    }
    Expr {
        kind: e.kind.map_children(|x| replace_runtime(x, with)),
        pos: e.pos,
    }
}

/// The derived roles of a scope as the CEL list Cerbos substitutes for
/// `runtime.effectiveDerivedRoles`: `(c1 ? ["r1"] : []) + ((c2 ? ["r2"] : []) + ...)`.
fn derived_roles_list(roles: &[(Arc<str>, Node)]) -> Expr {
    let mk = |kind| Expr { kind, pos: 0 };
    let elem = |(name, node): &(Arc<str>, Node)| {
        mk(ExprKind::Ternary(
            Box::new(node.to_expr()),
            Box::new(mk(ExprKind::List(vec![(
                mk(ExprKind::Literal(Value::from(&**name))),
                false,
            )]))),
            Box::new(mk(ExprKind::List(Vec::new()))),
        ))
    };
    let mut items: Vec<Expr> = roles.iter().map(elem).collect();
    let Some(mut acc) = items.pop() else {
        return mk(ExprKind::List(Vec::new()));
    };
    while let Some(x) = items.pop() {
        acc = mk(ExprKind::Binary(BinaryOp::Add, Box::new(x), Box::new(acc)));
    }
    acc
}

/// How a list of conditions combines.
#[derive(Clone, Copy)]
enum Junction {
    /// `any`: true when one item is.
    Any,
    /// `all`: true when every item is.
    All,
    /// `none`: true when no item is.
    None,
}

impl Junction {
    /// The constant value of an item that decides the whole list.
    fn decisive(self) -> bool {
        !matches!(self, Junction::All)
    }

    /// The list's value when an item decides it (and the opposite when every item
    /// drops out).
    fn decided(self) -> bool {
        matches!(self, Junction::Any)
    }
}

struct Planner<'a> {
    req: KnownRequest<'a>,
    strict: bool,
    errors: Vec<EvaluationError>,
    /// An expression that cannot be planned: the plan fails.
    failure: Option<PlanError>,
}

impl Planner<'_> {
    /// Cerbos's `EvaluateCondition`: a `match` block as a plan node.
    fn condition(&mut self, c: Option<&Condition>, edr: &Expr) -> Result<Node, StrictError> {
        let Some(c) = c else {
            return Ok(Node::bool(true));
        };
        match c {
            Condition::Expr(ce) => self.expression(ce, edr),
            Condition::Any(items) => self.junction(Junction::Any, items, edr),
            Condition::All(items) => self.junction(Junction::All, items, edr),
            Condition::None(items) => self.junction(Junction::None, items, edr),
        }
    }

    /// One condition expression as a plan node (`runtime.effectiveDerivedRoles` replaced
    /// by `edr`): its residual, or false when it cannot be planned (the plan fails) or
    /// fails (an evaluation error; in strict mode the plan stops).
    fn expression(&mut self, ce: &CompiledExpr, edr: &Expr) -> Result<Node, StrictError> {
        let replaced;
        let expr: &Expr = if reads_runtime(&ce.plan) {
            replaced = replace_runtime(&ce.plan, edr);
            &replaced
        } else {
            &ce.plan
        };
        Ok(match plan_expr(&self.req, expr) {
            Residual::Expr(e) => Node::Expr(e),
            Residual::Failed(err) => {
                self.failure.get_or_insert(PlanError::Unplannable {
                    expression: ce.source.to_string(),
                    message: err.message().to_string(),
                });
                Node::bool(false)
            }
            Residual::Error(err) => {
                self.errors.push(EvaluationError {
                    expression: ce.source.to_string(),
                    message: err.message().to_string(),
                });
                if self.strict {
                    return Err(StrictError);
                }
                Node::bool(false)
            }
        })
    }

    /// `any`, `all` or `none` of conditions: an item whose constant decides the list
    /// ends it; items that are constant otherwise drop out; the rest are combined.
    fn junction(
        &mut self,
        j: Junction,
        items: &[Condition],
        edr: &Expr,
    ) -> Result<Node, StrictError> {
        let mut nodes = Vec::new();
        for i in items {
            let n = self.condition(Some(i), edr)?;
            match n.const_bool() {
                Some(b) if b == j.decisive() => return Ok(Node::bool(j.decided())),
                Some(_) => {}
                None if matches!(j, Junction::None) => nodes.push(n.invert()),
                None => nodes.push(n),
            }
        }
        Ok(match nodes.len() {
            0 => Node::bool(!j.decided()),
            1 => nodes.remove(0),
            _ if matches!(j, Junction::Any) => Node::Or(nodes),
            _ => Node::And(nodes),
        })
    }

    /// `none: [condition]`, the synthetic DENY Cerbos derives from a conditional ALLOW.
    fn negated(&mut self, c: &Condition, edr: &Expr) -> Result<Node, StrictError> {
        let n = self.condition(Some(c), edr)?;
        Ok(match n.const_bool() {
            Some(b) => Node::bool(!b),
            None => n.invert(),
        })
    }
}

/// Plans one input against a compiled policy set.
pub(crate) fn plan(
    set: &CompiledPolicySet,
    cfg: &EngineConfig,
    input: &PlanInput,
    now: Timestamp,
) -> Result<PlanOutput, PlanError> {
    let mut output = empty_output(input);
    let resource_scope = effective_scope(&input.resource.scope, &cfg.default_scope);
    let version = effective_version(&input.resource.policy_version, &cfg.default_policy_version);
    let kind_sanitized = sanitize(&input.resource.kind);
    let kind = &*kind_sanitized;
    let (principal_scopes, resource_scopes) = scope_chains(set, cfg, input);
    if principal_scopes.is_empty() && resource_scopes.is_empty() {
        return Ok(output);
    }
    if rejected_by_schemas(
        set,
        cfg,
        &resource_scopes,
        version,
        kind,
        input,
        &mut output,
    )? {
        return Ok(output);
    }

    let (request, principal, _) = request_values(&check_input(input), true);
    let globals = Value::Map(cfg.globals.clone());
    let mut walk = Walk {
        set,
        input,
        version,
        kind,
        resource_scope,
        all_roles: set.with_parent_roles(resource_scope, &input.principal.roles),
        principal_scopes,
        resource_scopes,
        empty_edr: derived_roles_list(&[]),
        scoped_edr: Vec::new(),
        bindings: Vec::new(),
        planner: Planner {
            req: KnownRequest {
                request: &request,
                principal: &principal,
                globals: &globals,
                kind: Value::from(input.resource.kind.as_str()),
                scope: Value::from(resource_scope),
                attr: &input.resource.attr,
                now,
            },
            strict: cfg.strict_evaluation,
            errors: Vec::new(),
            failure: None,
        },
    };
    let mut filters = Vec::with_capacity(input.actions.len());
    let mut policy_match = false;
    for action in &input.actions {
        output.matched_scopes.insert(action.clone(), String::new());
        let node = match walk.action(action, &mut output) {
            // A condition failed under strict evaluation: the action is denied.
            Err(StrictError) => Some(Node::bool(false)),
            Ok(root) => root,
        };
        policy_match |= node.is_some();
        filters.push(to_filter(&node.unwrap_or_else(|| Node::bool(false))));
    }
    finish(output, filters, policy_match, walk.planner)
}

/// The principal's and the resource's scope chains (most specific first) that have
/// policies of their kind.
fn scope_chains<'s>(
    set: &'s CompiledPolicySet,
    cfg: &EngineConfig,
    input: &PlanInput,
) -> (Vec<&'s Arc<str>>, Vec<&'s Arc<str>>) {
    let principal_scopes = all_scopes(
        &set.principal_scopes,
        effective_scope(&input.principal.scope, &cfg.default_scope),
        cfg.lenient_scope_search,
    );
    let resource_scopes = all_scopes(
        &set.resource_scopes,
        effective_scope(&input.resource.scope, &cfg.default_scope),
        cfg.lenient_scope_search,
    );
    (principal_scopes, resource_scopes)
}

/// The answer before any policy is walked: every action always denied, no match.
fn empty_output(input: &PlanInput) -> PlanOutput {
    PlanOutput {
        kind: input.resource.kind.clone(),
        actions: input.actions.clone(),
        filter: Filter {
            kind: FilterKind::AlwaysDenied,
            condition: None,
        },
        filter_debug: NO_MATCH.to_string(),
        matched_scopes: BTreeMap::new(),
        validation_errors: Vec::new(),
        evaluation_errors: Vec::new(),
        steps: Vec::new(),
    }
}

/// Schema validation, as Cerbos validates plan inputs: against the schemas of the first
/// resource policy in scope, with missing (required) resource attributes allowed.
/// Whether enforcement rejects the plan (then its filter is `(false)`).
fn rejected_by_schemas(
    set: &CompiledPolicySet,
    cfg: &EngineConfig,
    resource_scopes: &[&Arc<str>],
    version: &str,
    kind: &str,
    input: &PlanInput,
    output: &mut PlanOutput,
) -> Result<bool, PlanError> {
    if cfg.schema_enforcement == SchemaEnforcement::None {
        return Ok(false);
    }
    output.validation_errors = validate(set, resource_scopes, version, kind, input)?;
    if !output.validation_errors.is_empty() && cfg.schema_enforcement == SchemaEnforcement::Reject {
        output.filter_debug = "(false)".to_string();
        return Ok(true);
    }
    Ok(false)
}

/// The check input whose `request`, `P` and `R` values the planner knows (the resource
/// has no id, its attributes are the known ones).
fn check_input(input: &PlanInput) -> CheckInput {
    CheckInput {
        request_id: input.request_id.clone(),
        principal: input.principal.clone(),
        resource: Resource {
            kind: input.resource.kind.clone(),
            attr: input.resource.attr.clone(),
            policy_version: input.resource.policy_version.clone(),
            scope: input.resource.scope.clone(),
            ..Default::default()
        },
        actions: Vec::new(),
        aux_data: input.aux_data.clone(),
    }
}

/// The actions' filters AND-ed into the plan's, bounded in size, with the evaluation
/// errors; the plan fails when an expression could not be planned.
fn finish(
    mut output: PlanOutput,
    filters: Vec<Filter>,
    policy_match: bool,
    planner: Planner<'_>,
) -> Result<PlanOutput, PlanError> {
    let (filter, debug) = merge_with_and(filters);
    if let Some(c) = &filter.condition {
        let (mut nodes, mut depth) = (0, 0);
        filter_size(c, 1, &mut nodes, &mut depth);
        if nodes > MAX_FILTER_NODES || depth > MAX_FILTER_DEPTH {
            return Err(PlanError::TooLarge { nodes, depth });
        }
    }
    output.filter = filter;
    output.filter_debug = if policy_match {
        debug
    } else {
        NO_MATCH.to_string()
    };
    output.evaluation_errors = planner.errors;
    match planner.failure {
        Some(e) => Err(e),
        None => Ok(output),
    }
}

/// The ALLOW and DENY nodes of one scope or one role: DENY from role policies apart.
#[derive(Default)]
struct Nodes {
    allow: Option<Node>,
    deny: Option<Node>,
    deny_rp: Option<Node>,
}

/// One plan's rule walk: per action, the resource then the principal pass; per role,
/// the scopes from the most specific to the root; per scope, the rules that bind.
struct Walk<'w> {
    set: &'w CompiledPolicySet,
    input: &'w PlanInput,
    version: &'w str,
    kind: &'w str,
    resource_scope: &'w str,
    /// The principal's roles with their parent roles (for derived roles).
    all_roles: Cow<'w, [Arc<str>]>,
    principal_scopes: Vec<&'w Arc<str>>,
    resource_scopes: Vec<&'w Arc<str>>,
    /// `runtime.effectiveDerivedRoles` where no derived role applies.
    empty_edr: Expr,
    /// `runtime.effectiveDerivedRoles` per resource scope, made once.
    scoped_edr: Vec<(Arc<str>, Result<Expr, StrictError>)>,
    /// The rules bound in one scope (reused).
    bindings: Vec<Binding<'w>>,
    planner: Planner<'w>,
}

impl<'w> Walk<'w> {
    /// One action's node: `None` when no policy has a rule for it; Err when a condition
    /// failed under strict evaluation.
    fn action(
        &mut self,
        action: &str,
        output: &mut PlanOutput,
    ) -> Result<Option<Node>, StrictError> {
        let mut has_allow = false;
        let mut root: Option<Node> = None;
        for pass in [RowKind::Resource, RowKind::Principal] {
            let (type_allow, type_deny) = self.pass(pass, action, output)?;
            if let Some(ta) = type_allow {
                has_allow = true;
                root = match root {
                    None => Some(ta),
                    Some(r) => or_node(vec![ta, r]),
                };
            }
            if let Some(td) = type_deny {
                let inv = td.invert();
                root = match root {
                    None => Some(inv),
                    Some(r) => and_node(vec![inv, r]),
                };
            }
        }
        Ok(root.map(|r| if has_allow { r } else { Node::bool(false) }))
    }

    /// One pass (resource or principal policies): the roles' nodes combined; a role
    /// allowed unconditionally with no DENY decides the pass.
    fn pass(
        &mut self,
        pass: RowKind,
        action: &str,
        output: &mut PlanOutput,
    ) -> Result<(Option<Node>, Option<Node>), StrictError> {
        let (mut type_allow, mut type_deny) = (None, None);
        let input = self.input;
        for (i, role) in input.principal.roles.iter().enumerate() {
            if i > 0 && pass == RowKind::Principal {
                break;
            }
            let Nodes {
                mut allow,
                mut deny,
                mut deny_rp,
            } = self.role(pass, action, role, output)?;
            if is_const(&deny, true) || is_const(&deny_rp, true) {
                allow = Some(Node::bool(false));
                deny = None;
                deny_rp = None;
            } else if deny.is_none() && deny_rp.is_none() && is_const(&allow, true) {
                type_allow = allow;
                type_deny = None;
                break;
            }
            if let (Some(rp), Some(ra)) = (&deny_rp, &allow) {
                allow = and_node(vec![ra.clone(), rp.clone().invert()]);
            }
            type_allow = add(type_allow, allow, true);
            type_deny = add(type_deny, deny, true);
        }
        Ok((type_allow, type_deny))
    }

    /// One role across the scopes, most specific first, with the scope permissions:
    /// OVERRIDE_PARENT allows stop the walk and gate parent DENYs, parental consent
    /// requires the parent's ALLOW as well.
    fn role(
        &mut self,
        pass: RowKind,
        action: &str,
        role: &Arc<str>,
        output: &mut PlanOutput,
    ) -> Result<Nodes, StrictError> {
        let mut n = Nodes::default();
        let mut pending_allow = false;
        let mut child_override_allow: Option<Node> = None;
        let roles = self
            .set
            .with_parent_roles(self.resource_scope, std::slice::from_ref(role));
        let count = self.scopes(pass).len();
        for i in 0..count {
            let scope = self.scopes(pass)[i];
            if is_const(&child_override_allow, true) {
                break;
            }
            let s = self.scope(pass, action, role, scope, &roles, output)?;
            let scope_deny = gate(&child_override_allow, s.deny);
            let scope_deny_rp = gate(&child_override_allow, s.deny_rp);
            let any_node = scope_deny.is_some() || scope_deny_rp.is_some() || s.allow.is_some();
            n.deny = add(n.deny, scope_deny, true);
            n.deny_rp = add(n.deny_rp, scope_deny_rp, true);
            let perm = self.perms(scope);
            if let Some(sa) = &s.allow {
                n.allow = match n.allow {
                    None => Some(sa.clone()),
                    Some(ra) if pending_allow => {
                        pending_allow = false;
                        and_node(vec![ra, sa.clone()])
                    }
                    Some(ra) => or_node(vec![ra, sa.clone()]),
                };
                if perm == ScopePermissions::RequireParentalConsentForAllows {
                    pending_allow = true;
                }
            }
            if any_node && perm == ScopePermissions::OverrideParent {
                output
                    .matched_scopes
                    .insert(action.to_owned(), scope.to_string());
            }
            if s.allow.is_some() && perm == ScopePermissions::OverrideParent {
                child_override_allow = add(child_override_allow, s.allow, true);
            }
        }
        if pending_allow {
            n.allow = None;
        }
        Ok(n)
    }

    fn scopes(&self, pass: RowKind) -> &[&'w Arc<str>] {
        match pass {
            RowKind::Principal => &self.principal_scopes,
            RowKind::Resource => &self.resource_scopes,
        }
    }

    fn perms(&self, scope: &str) -> ScopePermissions {
        self.set
            .scope_permissions
            .get(scope)
            .copied()
            .unwrap_or_default()
    }

    /// The rules of one scope that bind the role and action, as nodes (and as steps
    /// when explaining).
    fn scope(
        &mut self,
        pass: RowKind,
        action: &str,
        role: &Arc<str>,
        scope: &'w Arc<str>,
        roles: &[Arc<str>],
        output: &mut PlanOutput,
    ) -> Result<Nodes, StrictError> {
        let edr = match pass {
            RowKind::Resource => self.scope_derived_roles(scope),
            RowKind::Principal => Ok(self.empty_edr.clone()),
        };
        let mut bindings = std::mem::take(&mut self.bindings);
        let id = &self.input.principal.id;
        let q = RowQuery {
            version: self.version,
            kind: self.kind,
            scope,
            action,
            roles,
            pass,
            principal_id: id,
        };
        query(self.set, &q, &mut bindings);
        let mut nodes = Nodes::default();
        let mut result = Ok(());
        for b in bindings.drain(..) {
            let origin = self.input.explain.then(|| step_origin(&b));
            let Ok(edr) = &edr else {
                result = Err(StrictError);
                break;
            };
            let evaluated = match self.binding_node(b, edr) {
                None => continue,
                Some(Ok(evaluated)) => evaluated,
                Some(Err(e)) => {
                    result = Err(e);
                    break;
                }
            };
            let (effect, node, from_role_policy) = evaluated;
            if let Some((policy, rule, location)) = origin {
                output.steps.push(PlanStep {
                    action: action.to_owned(),
                    role: role.to_string(),
                    policy,
                    rule,
                    effect: effect.as_str(),
                    condition: to_filter(&node).debug_string(),
                    location,
                });
            }
            match effect {
                Effect::Allow => nodes.allow = add(nodes.allow, Some(node), true),
                Effect::Deny if node.const_bool() == Some(false) => {}
                Effect::Deny if from_role_policy => {
                    nodes.deny_rp = add(nodes.deny_rp, Some(node), true);
                }
                Effect::Deny => nodes.deny = add(nodes.deny, Some(node), true),
            }
        }
        self.bindings = bindings;
        result.map(|()| nodes)
    }

    /// `runtime.effectiveDerivedRoles` in a resource scope, made once per scope.
    fn scope_derived_roles(&mut self, scope: &Arc<str>) -> Result<Expr, ()> {
        if !self.scoped_edr.iter().any(|(s, _)| s == scope) {
            let list = derived_roles_for_scope(
                self.set,
                &mut self.planner,
                self.version,
                scope,
                self.kind,
                &self.all_roles,
                &self.empty_edr,
            );
            self.scoped_edr.push((scope.clone(), list));
        }
        match self.scoped_edr.iter().find(|(s, _)| s == scope) {
            Some((_, Ok(e))) => Ok(e.clone()),
            _ => Err(()),
        }
    }

    /// A bound rule as (effect, node, from a role policy); `None` for a role policy
    /// rule without a condition (it only allows, which the role's pass already knows).
    fn binding_node(
        &mut self,
        b: Binding<'_>,
        edr: &Expr,
    ) -> Option<Result<(Effect, Node, bool), StrictError>> {
        let row = match b {
            Binding::RoleNoMatch(_) => return Some(Ok((Effect::Deny, Node::bool(true), true))),
            Binding::RoleRule(row) => {
                let c = row.condition.as_deref()?;
                return Some(
                    self.planner
                        .negated(c, edr)
                        .map(|n| (Effect::Deny, n, true)),
                );
            }
            Binding::Row(row) => row,
        };
        // A conditional ALLOW under parental consent is a DENY when its condition fails.
        let consent = row.effect == Effect::Allow
            && row.condition.is_some()
            && self.perms(&row.scope) == ScopePermissions::RequireParentalConsentForAllows;
        let node = if consent {
            row.condition
                .as_deref()
                .map(|c| self.planner.negated(c, edr))
                .unwrap_or(Ok(Node::bool(true)))
        } else {
            self.planner.condition(row.condition.as_deref(), edr)
        };
        let effect = if consent { Effect::Deny } else { row.effect };
        let node = node.and_then(|node| match row.derived_role.as_deref() {
            Some(DerivedRole {
                condition: Some(dc),
                ..
            }) => {
                let dr = self.planner.condition(Some(dc), edr)?;
                Ok(if row.condition.is_none() {
                    dr
                } else {
                    Node::And(vec![node, dr])
                })
            }
            _ => Ok(node),
        });
        Some(node.map(|n| (effect, n, false)))
    }
}

/// (policy, rule, location) of a binding, for [`PlanStep`].
fn step_origin(b: &Binding<'_>) -> (String, String, String) {
    match b {
        Binding::Row(row) | Binding::RoleRule(row) => {
            let rule = match row.derived_role.as_deref() {
                Some(dr) => format!("{} (derived role {})", row.name, dr.name),
                None => row.name.to_string(),
            };
            (row.policy_key.to_string(), rule, row.span.to_string())
        }
        Binding::RoleNoMatch(role) => (
            format!("role policy of {role}"),
            "no rule allows the action".to_string(),
            String::new(),
        ),
    }
}

/// The schema violations of a plan input's attributes.
fn validate(
    set: &CompiledPolicySet,
    resource_scopes: &[&Arc<str>],
    version: &str,
    kind: &str,
    input: &PlanInput,
) -> Result<Vec<ValidationError>, PlanError> {
    let mut out = Vec::new();
    let Some(schemas) = resource_scopes
        .iter()
        .find_map(|s| set.scope_rows(version, s).and_then(|r| r.schemas.get(kind)))
    else {
        return Ok(out);
    };
    // Resource attributes are optional when planning: no `required` errors.
    crate::engine::schemas::violations(
        set,
        schemas,
        &input.principal.attr,
        &input.resource.attr,
        input.actions.iter().map(String::as_str),
        true,
        &mut out,
    )
    .map_err(|url| PlanError::SchemaNotFound(url.to_string()))?;
    Ok(out)
}

/// The derived roles imported at `scope` that apply to the principal's roles, each
/// with its planned condition, as the list expression for `runtime.effectiveDerivedRoles`.
fn derived_roles_for_scope(
    set: &CompiledPolicySet,
    planner: &mut Planner,
    version: &str,
    scope: &str,
    kind: &str,
    roles: &[Arc<str>],
    empty: &Expr,
) -> Result<Expr, StrictError> {
    let Some(drs) = set
        .scope_rows(version, scope)
        .and_then(|r| r.derived_roles.get(kind))
    else {
        return Ok(empty.clone());
    };
    let mut out: Vec<(Arc<str>, Node)> = Vec::new();
    let mut failed = false;
    for dr in drs {
        let applies = dr
            .parent_roles
            .iter()
            .any(|p| &**p == "*" || roles.iter().any(|r| r == p));
        if !applies || out.iter().any(|(n, _)| *n == dr.name) {
            continue;
        }
        match planner.condition(dr.condition.as_deref(), empty) {
            Ok(n) => out.push((dr.name.clone(), n)),
            Err(StrictError) => failed = true,
        }
    }
    if failed {
        return Err(StrictError);
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(derived_roles_list(&out))
}

impl Engine {
    /// Plans one input (`PlanResources`), with `now()` read from the clock once.
    pub fn plan(&self, input: &PlanInput) -> Result<PlanOutput, PlanError> {
        self.plan_at(input, crate::engine::now())
    }

    /// Plans one input with a fixed `now()`.
    pub fn plan_at(&self, input: &PlanInput, now: Timestamp) -> Result<PlanOutput, PlanError> {
        plan(self.policies(), self.config(), input, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Principal;

    /// Plans `expr` as the condition of an ALLOW rule; returns `filterDebug`.
    fn debug_of(expr: &str) -> Result<String, PlanError> {
        debug_with(expr, serde_json::json!({}))
    }

    /// [`debug_of`] with resource attributes known in advance.
    fn debug_with(expr: &str, resource_attr: serde_json::Value) -> Result<String, PlanError> {
        let yaml = format!(
            "apiVersion: api.cerbos.dev/v1\nresourcePolicy:\n  resource: doc\n  version: default\n  rules:\n\
             \x20   - actions: [a]\n      effect: EFFECT_ALLOW\n      roles: ['*']\n      condition:\n        match:\n          expr: {}\n",
            serde_json::to_string(expr).unwrap()
        );
        let policies = crate::policy::load::parse_policies(&yaml, "doc.yaml").unwrap();
        let set = crate::policy::compile_policies(&policies, Default::default()).unwrap();
        let engine = Engine::new(Arc::new(set), EngineConfig::default());
        let attr =
            crate::cel::from_json(&serde_json::json!({"m": {}, "n": {"k1": "a", "k2": "b"}}));
        let input = PlanInput {
            principal: Principal {
                id: "p".into(),
                roles: vec![Arc::from("u")],
                attr: attr
                    .as_map()
                    .map(|m| Arc::new(m.clone()))
                    .unwrap_or_default(),
                ..Default::default()
            },
            resource: super::super::PlanResource {
                kind: "doc".into(),
                attr: crate::cel::from_json(&resource_attr)
                    .as_map()
                    .map(|m| Arc::new(m.clone()))
                    .unwrap_or_default(),
                ..Default::default()
            },
            actions: vec!["a".into()],
            ..Default::default()
        };
        engine.plan(&input).map(|o| o.filter_debug)
    }

    /// Cerbos replaces a known resource attribute by its value before planning, inside
    /// `has()` too: `has(R.attr.owner)` is the owner, not `true` (as the real Cerbos 0.55
    /// answers; found by the generated plan diff).
    #[test]
    fn presence_test_on_a_known_attribute_is_its_value() {
        let attr = serde_json::json!({"owner": "carol", "public": true});
        for (expr, want) in [
            ("has(R.attr.owner)", "(false)"),
            ("has(request.resource.attr.public)", "(true)"),
            ("!has(R.attr.owner)", "(false)"),
            ("has(R.attr.owner) || R.attr.x", "request.resource.attr.x"),
            (
                "(R.attr.x || R.attr.y) && has(R.attr.public)",
                "(or request.resource.attr.x request.resource.attr.y)",
            ),
            ("has(R.attr.missing)", "(true)"),
        ] {
            assert_eq!(debug_with(expr, attr.clone()).unwrap(), want, "{expr}");
        }
        assert_eq!(debug_of("has(R.attr.owner)").unwrap(), "(true)");
    }

    /// As the real Cerbos 0.55 answers (asked with these expressions; the `||` case
    /// with the principal attributes `{m: {}}`, pruned the same way here).
    #[test]
    fn errors_and_unknowns_combine_as_in_cerbos() {
        for (expr, want) in [
            // An error in a strict operation wins over an unknown operand.
            ("R.attr.x == P.attr.missing", "(false)"),
            ("P.attr.missing == R.attr.x", "(false)"),
            ("R.attr.x.startsWith(P.attr.missing)", "(false)"),
            ("[R.attr.x, P.attr.missing] == []", "(false)"),
            // Cerbos's set functions are non-strict: the first operand that is not known
            // decides (issue 14, found by the generated plan diff against Cerbos 0.55).
            (
                "R.attr.x.hasIntersection(P.attr.missing)",
                "(hasIntersection request.resource.attr.x (get-field (struct (set-field \"m\" (struct )) (set-field \"n\" (struct (set-field \"k1\" \"a\") (set-field \"k2\" \"b\")))) missing))",
            ),
            (
                "isSubset(R.attr.x, P.attr.missing)",
                "(isSubset request.resource.attr.x (get-field (struct (set-field \"m\" (struct )) (set-field \"n\" (struct (set-field \"k1\" \"a\") (set-field \"k2\" \"b\")))) missing))",
            ),
            ("P.attr.missing.hasIntersection(R.attr.x)", "(false)"),
            ("hasIntersection(P.attr.missing, R.attr.x)", "(false)"),
            // `||` keeps the unknown, and prunes the failing operand's known part.
            (
                "R.attr.x || P.attr.missing",
                "(or request.resource.attr.x (get-field (struct (set-field \"m\" (struct )) (set-field \"n\" (struct (set-field \"k1\" \"a\") (set-field \"k2\" \"b\")))) missing))",
            ),
            // An unknown map is not indexed, so the index is left as written.
            (
                "R.attr.x.size() > 2 && R.attr.y[P.attr.missing] == 1",
                "(and (gt (size request.resource.attr.x) 2) (eq (index request.resource.attr.y request.principal.attr.missing) 1))",
            ),
            // A lookup in an empty known map is not rewritten; a non-empty one is.
            (
                "P.attr.m[R.attr.x] == \"a\"",
                "(eq (index (struct ) request.resource.attr.x) \"a\")",
            ),
            (
                "P.attr.n[R.attr.x] == \"a\"",
                "(eq request.resource.attr.x \"k1\")",
            ),
            (
                "R.attr.a + 1 > 3 && -R.attr.b < 2 && (R.attr.c ? true : R.id == \"x\")",
                "(and (and (gt (add request.resource.attr.a 1) 3) (lt (-_ request.resource.attr.b) 2)) (if request.resource.attr.c true (eq request.resource.id \"x\")))",
            ),
        ] {
            assert_eq!(debug_of(expr).unwrap(), want, "{expr}");
        }
    }

    /// A filter past the size bounds is an error, never a truncated filter.
    #[test]
    fn an_oversized_filter_is_an_error() {
        let chain = |n: usize| {
            (0..n)
                .map(|i| format!("R.attr.a{i} == {i}"))
                .collect::<Vec<_>>()
                .join(" || ")
        };
        assert!(matches!(
            debug_of(&chain(250)),
            Err(PlanError::TooLarge { .. })
        ));
        assert!(debug_of(&chain(20)).is_ok());
    }

    /// A lookup in a huge known map fails the plan instead of a disjunction per entry.
    #[test]
    fn a_lookup_in_a_huge_map_fails_the_plan() {
        assert!(debug_of("P.attr.n[R.attr.x] == \"a\"").is_ok());
        let yaml_attr: serde_json::Map<String, serde_json::Value> = (0..300)
            .map(|i| (format!("k{i}"), serde_json::json!("a")))
            .collect();
        let expr = format!(
            "{}[R.attr.x] == \"a\"",
            serde_json::Value::Object(yaml_attr)
        );
        assert!(matches!(
            debug_of(&expr),
            Err(PlanError::Unplannable { .. })
        ));
    }

    /// Cerbos fails the whole request (an internal error) when a comprehension body
    /// cannot be planned.
    #[test]
    fn an_unplannable_comprehension_body_fails_the_plan() {
        assert!(matches!(
            debug_of("R.attr.tags.exists(t, t == P.attr.missing)"),
            Err(PlanError::Unplannable { .. })
        ));
    }
}
