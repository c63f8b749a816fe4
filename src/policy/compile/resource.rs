//! Resource policies into rule rows: schemas, derived roles referenced, one row per rule,
//! action and role.

use super::derived_roles::referenced_derived_roles;
use super::rows::{parental_consent, push_row, scope_permissions, scope_rows};
use super::*;

/// Compiles a resource policy. With `stop_on_error` (a compilation unit), stops when
/// the unit has errors once the derived roles or the schemas are checked, as Cerbos does,
/// and returns `false`: the unit's remaining ancestors are not compiled.
pub(super) fn compile_resource<'a>(
    c: &mut Compiler<'a>,
    set: &mut CompiledPolicySet,
    p: &'a Policy,
    rp: &'a model::ResourcePolicy,
    stop_on_error: bool,
) -> bool {
    c.counts.resource += 1;
    let key = id::key_of_fqn(&p.fqn()).to_owned();
    let referenced = referenced_derived_roles(c, p, rp);
    if stop_on_error && !c.errors.is_empty() {
        return false;
    }

    // Every resource policy has an entry (empty without `schemas`): the engine needs to
    // know which (kind, version, scope) has a policy to find the schemas in effect.
    let ps = policy_schemas(c, set, p, rp);
    scope_rows(set, &rp.version, &rp.scope)
        .schemas
        .insert(Arc::from(&*id::sanitize(&rp.resource)), ps);
    if stop_on_error && !c.errors.is_empty() {
        return false;
    }

    let env = c.env(p, rp.variables.as_ref(), rp.constants.as_ref());
    // Only derived roles that a rule refers to take part in decisions (as in Cerbos).
    let mut policy_drs: Vec<Arc<DerivedRole>> = referenced.values().cloned().collect();
    policy_drs.sort_by(|a, b| a.name.cmp(&b.name));
    if !policy_drs.is_empty() {
        scope_rows(set, &rp.version, &rp.scope)
            .derived_roles
            .insert(Arc::from(&*id::sanitize(&rp.resource)), policy_drs);
    }

    let perms = rp.scope_permissions;
    set.scope_permissions
        .insert(Arc::from(rp.scope.as_str()), scope_permissions(perms));
    let resource_glob = c.glob(&id::sanitize(&rp.resource), &p.span);
    let scope: Arc<str> = Arc::from(rp.scope.as_str());

    if rp.rules.is_empty() {
        // A policy with no rules still exists in its scope (it defers to its parent).
        set.resource_scopes.insert(scope.clone());
        set.index
            .entry(Arc::from(rp.version.as_str()))
            .or_default()
            .entry(scope.clone())
            .or_default();
    }

    let policy = ResourceRows {
        key: &key,
        policy_key: Arc::from(key.as_str()),
        resource: resource_glob,
        scope,
        version: &rp.version,
        perms,
        referenced: &referenced,
    };
    for (i, rule) in rp.rules.iter().enumerate() {
        policy.rule_rows(c, set, i, rule, &env);
    }
    true
}

/// What every row of one resource policy shares.
struct ResourceRows<'p> {
    key: &'p str,
    policy_key: Arc<str>,
    resource: Glob,
    scope: Arc<str>,
    version: &'p str,
    perms: Option<model::ScopePermissions>,
    /// The derived roles the rules refer to, by name.
    referenced: &'p HashMap<String, Arc<DerivedRole>>,
}

impl ResourceRows<'_> {
    /// The rows of rule `i`: one per action and role, and per action and parent role of
    /// each derived role it names. A rule whose condition does not compile has none.
    fn rule_rows(
        &self,
        c: &mut Compiler<'_>,
        set: &mut CompiledPolicySet,
        i: usize,
        rule: &model::ResourceRule,
        env: &Env,
    ) {
        let name: Arc<str> = Arc::from(
            rule.name
                .clone()
                .unwrap_or_else(|| format!("rule-{:03}", i + 1)),
        );
        if rule.roles.is_empty() && rule.derived_roles.is_empty() {
            c.error(
                &rule.span,
                CompileErrorKind::InvalidResourceRule,
                format!("Rule '{name}' does not specify any roles or derived roles to be matched"),
            );
        }
        let condition = c.rule_condition(rule.condition.as_ref(), env);
        let output = c.output(rule.output.as_ref(), env);
        let Ok(condition) = condition else {
            return;
        };
        let output_src: Arc<str> = Arc::from(format!("{}#{name}", self.key));
        let rule_key = c.evaluation_key(format!("{}#{name}", self.key));
        let (eff, cond) = parental_consent(self.perms, rule.effect, condition);
        for action in &rule.actions {
            let action_glob = c.glob(action, &rule.span);
            // A row of this rule and action, for a role (through a derived role, if any).
            let row = |role: Glob, derived_role: Option<Arc<DerivedRole>>, evaluation_key| Row {
                kind: RowKind::Resource,
                policy_key: self.policy_key.clone(),
                resource: self.resource.clone(),
                role,
                actions: ActionSet::Action(action_glob.clone()),
                condition: cond.clone(),
                derived_role,
                effect: eff,
                scope: self.scope.clone(),
                principal: None,
                output: output.clone(),
                output_src: output_src.clone(),
                name: name.clone(),
                evaluation_key,
                span: rule.span.clone(),
            };
            for role in &rule.roles {
                let role = c.glob(role, &rule.span);
                push_row(set, row(role, None, rule_key), self.version);
            }
            for dr in &rule.derived_roles {
                let Some(drole) = self.referenced.get(&dr.value) else {
                    continue;
                };
                let dr_key =
                    c.evaluation_key(format!("derived_roles.{}#{}#{name}", dr.value, self.key));
                for parent in &drole.parent_roles {
                    let role = c.glob(parent, &rule.span);
                    push_row(set, row(role, Some(drole.clone()), dr_key), self.version);
                }
            }
        }
    }
}

/// The principal and resource schemas a resource policy names, each loaded to report
/// one that does not load, with its `ignoreWhen` actions.
fn policy_schemas(
    c: &mut Compiler<'_>,
    set: &CompiledPolicySet,
    p: &Policy,
    rp: &model::ResourcePolicy,
) -> PolicySchemas {
    let mut ps = PolicySchemas::default();
    if let Some(s) = &rp.schemas {
        for (target, sref, what) in [
            (&mut ps.principal, &s.principal_schema, "principal"),
            (&mut ps.resource, &s.resource_schema, "resource"),
        ] {
            if let Some(r) = sref {
                if let Err(e) = set.schema_store.load(&r.reference) {
                    c.error(
                        &r.span,
                        CompileErrorKind::InvalidSchema,
                        format!("Failed to load {what} schema {:?}: {e}", r.reference),
                    );
                }
                let ignore_actions = r
                    .ignore_when
                    .as_ref()
                    .map(|iw| iw.actions.iter().map(|a| c.glob(a, &p.span)).collect())
                    .unwrap_or_default();
                *target = Some(SchemaRef {
                    url: Arc::from(r.reference.as_str()),
                    ignore_actions,
                });
            }
        }
    }
    ps
}
