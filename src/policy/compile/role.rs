//! Role policies into rule rows (`allowActions` for one role, in one scope).

use super::rows::push_row;
use super::*;

pub(super) fn compile_role<'a>(
    c: &mut Compiler<'a>,
    set: &mut CompiledPolicySet,
    p: &'a Policy,
    rp: &'a model::RolePolicy,
) {
    c.counts.role += 1;
    c.role_policies.push(rp);
    let key = id::key_of_fqn(&p.fqn()).to_owned();
    let env = c.env(p, rp.variables.as_ref(), rp.constants.as_ref());
    let scope: Arc<str> = Arc::from(rp.scope.as_str());
    let policy_key_arc: Arc<str> = Arc::from(key.as_str());
    for (i, rule) in rp.rules.iter().enumerate() {
        let name: Arc<str> = Arc::from(
            rule.name
                .clone()
                .unwrap_or_else(|| format!("{}_rule-{:03}", rp.role, i)),
        );
        let condition = c.rule_condition(rule.condition.as_ref(), &env);
        let output = c.output(rule.output.as_ref(), &env);
        let Ok(condition) = condition else {
            continue;
        };
        let evaluation_key = c.evaluation_key(format!("{key}#{}_rule-{i:03}", rp.role));
        let actions = rule
            .allow_actions
            .iter()
            .map(|a| c.glob(a, &rule.span))
            .collect();
        let row = Row {
            kind: RowKind::Resource,
            policy_key: policy_key_arc.clone(),
            // As Cerbos's rule table: a role policy's resource is kept as written (not
            // sanitised), while requests are matched by their sanitised kind, so a role
            // policy rule for `album:photo` never matches (Cerbos 0.55 denies).
            resource: c.glob(&rule.resource, &rule.span),
            role: Glob::Literal(rp.role.as_str().into()),
            actions: ActionSet::AllowActions(actions),
            condition,
            derived_role: None,
            effect: Effect::Allow,
            scope: scope.clone(),
            principal: None,
            output,
            output_src: Arc::from(format!("{key}#{name}")),
            name,
            evaluation_key,
            span: rule.span.clone(),
        };
        push_row(set, row, &rp.version);
    }
    if rp.rules.is_empty() {
        set.resource_scopes.insert(scope.clone());
    }
}
