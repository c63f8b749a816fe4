//! Principal policies into rule rows (one row per action rule).

use super::rows::{parental_consent, push_row, scope_permissions};
use super::*;

pub(super) fn compile_principal<'a>(
    c: &mut Compiler<'a>,
    set: &mut CompiledPolicySet,
    p: &'a Policy,
    pp: &'a model::PrincipalPolicy,
) {
    c.counts.principal += 1;
    let key = id::key_of_fqn(&p.fqn()).to_owned();
    let env = c.env(p, pp.variables.as_ref(), pp.constants.as_ref());
    let perms = pp.scope_permissions;
    set.scope_permissions
        .insert(Arc::from(pp.scope.as_str()), scope_permissions(perms));
    let scope: Arc<str> = Arc::from(pp.scope.as_str());
    let principal: Arc<str> = Arc::from(pp.principal.as_str());
    let policy_key_arc: Arc<str> = Arc::from(key.as_str());
    if pp.rules.is_empty() {
        set.principal_scopes.insert(scope.clone());
        let entry = set
            .index
            .entry(Arc::from(pp.version.as_str()))
            .or_default()
            .entry(scope.clone())
            .or_default();
        entry.has_principal = true;
    }
    for rule in &pp.rules {
        let resource_glob = c.glob(&id::sanitize(&rule.resource), &p.span);
        for (i, action) in rule.actions.iter().enumerate() {
            // As Cerbos: an unnamed action rule is named after its resource block (as
            // written) and numbered within that block.
            let name: Arc<str> = Arc::from(
                action
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("{}_rule-{:03}", rule.resource, i + 1)),
            );
            let condition = c.rule_condition(action.condition.as_ref(), &env);
            let output = c.output(action.output.as_ref(), &env);
            let Ok(condition) = condition else {
                continue;
            };
            let (eff, cond) = parental_consent(perms, action.effect, condition);
            let evaluation_key = c.evaluation_key(format!("{key}#{name}"));
            let row = Row {
                kind: RowKind::Principal,
                policy_key: policy_key_arc.clone(),
                resource: resource_glob.clone(),
                role: Glob::Any,
                actions: ActionSet::Action(c.glob(&action.action, &action.span)),
                condition: cond,
                derived_role: None,
                effect: eff,
                scope: scope.clone(),
                principal: Some(principal.clone()),
                output,
                output_src: Arc::from(format!("{key}#{name}")),
                name,
                evaluation_key,
                span: action.span.clone(),
            };
            push_row(set, row, &pp.version);
        }
    }
}
