//! Per-kind compilation: resource, principal and role policies into rule rows.

use super::*;

fn scope_permissions(p: Option<model::ScopePermissions>) -> ScopePermissions {
    match p {
        Some(model::ScopePermissions::RequireParentalConsentForAllows) => {
            ScopePermissions::RequireParentalConsentForAllows
        }
        _ => ScopePermissions::OverrideParent,
    }
}

/// Wraps a conditional ALLOW of a parental-consent policy into a DENY when the condition fails.
fn parental_consent(
    perms: Option<model::ScopePermissions>,
    effect: Effect,
    condition: Option<Arc<Condition>>,
) -> (Effect, Option<Arc<Condition>>) {
    match (perms, effect, condition) {
        (
            Some(model::ScopePermissions::RequireParentalConsentForAllows),
            Effect::Allow,
            Some(c),
        ) => (
            Effect::Deny,
            Some(Arc::new(Condition::None(vec![(*c).clone()]))),
        ),
        (_, e, c) => (e, c),
    }
}

fn effect(e: model::Effect) -> Effect {
    match e {
        model::Effect::Allow => Effect::Allow,
        model::Effect::Deny => Effect::Deny,
    }
}

fn scope_rows<'s>(set: &'s mut CompiledPolicySet, version: &str, scope: &str) -> &'s mut ScopeRows {
    set.index
        .entry(Arc::from(version))
        .or_default()
        .entry(Arc::from(scope))
        .or_default()
}

fn push_row(set: &mut CompiledPolicySet, row: Row, version: &str) {
    let idx = set.rows.len() as u32;
    let scope = row.scope.clone();
    scope_rows(set, version, &scope).add(idx, &row);
    match row.kind {
        RowKind::Principal => set.principal_scopes.insert(scope),
        RowKind::Resource => set.resource_scopes.insert(scope),
    };
    set.rows.push(row);
}

/// The derived roles a resource policy's rules refer to, by name, after reporting unknown
/// and ambiguous references (as Cerbos: each unknown name once, at its last reference).
fn referenced_derived_roles<'a>(
    c: &mut Compiler<'a>,
    p: &'a Policy,
    rp: &'a model::ResourcePolicy,
) -> HashMap<String, Arc<DerivedRole>> {
    let mut imports: Vec<(Rc<DerivedRoleSet>, &Spanned<String>)> = Vec::new();
    for import in &rp.import_derived_roles {
        match c.derived_role_set(&import.value) {
            Some(set) => imports.push((set, import)),
            None => c.import_not_found(ImportKind::DerivedRoles, import),
        }
    }
    let mut unknown: Vec<(&str, &Span)> = Vec::new();
    let mut ambiguous: Vec<(&str, Vec<usize>)> = Vec::new();
    let mut referenced: HashMap<String, Arc<DerivedRole>> = HashMap::new();
    for reference in rp.rules.iter().flat_map(|r| &r.derived_roles) {
        let name = reference.value.as_str();
        let defining: Vec<usize> = imports
            .iter()
            .enumerate()
            .filter(|(_, (set, _))| set.roles.contains_key(name))
            .map(|(i, _)| i)
            .collect();
        match defining.as_slice() {
            [] => match unknown.iter_mut().find(|(n, _)| *n == name) {
                Some(entry) => entry.1 = &reference.span,
                None => unknown.push((name, &reference.span)),
            },
            [one] => {
                if let Some(Some(role)) = imports[*one].0.roles.get(name) {
                    referenced.insert(name.to_owned(), role.clone());
                }
            }
            _ => {
                if !ambiguous.iter().any(|(n, _)| *n == name) {
                    ambiguous.push((name, defining));
                }
            }
        }
    }
    for (name, span) in unknown {
        c.error(
            span,
            CompileErrorKind::UnknownDerivedRole,
            format!("Derived role {name:?} is not defined in any imports"),
        );
    }
    for (name, defining) in ambiguous {
        let list: Vec<String> = defining
            .iter()
            .map(|&i| {
                let (set, import) = &imports[i];
                format!(
                    "{} (imported as {:?} at {}:{})",
                    set.file, import.value, import.span.line, import.span.col
                )
            })
            .collect();
        c.error(
            &p.span,
            CompileErrorKind::AmbiguousDerivedRole,
            format!(
                "Derived role {name:?} is defined in more than one import: {}",
                list.join(", ")
            ),
        );
    }
    referenced
}

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
    let policy_key_arc: Arc<str> = Arc::from(key.as_str());

    if rp.rules.is_empty() {
        // A policy with no rules still exists in its scope (it defers to its parent).
        set.resource_scopes.insert(scope.clone());
        set.index
            .entry(Arc::from(rp.version.as_str()))
            .or_default()
            .entry(scope.clone())
            .or_default();
    }

    for (i, rule) in rp.rules.iter().enumerate() {
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
        let condition = c.rule_condition(rule.condition.as_ref(), &env);
        let output = c.output(rule.output.as_ref(), &env);
        let Ok(condition) = condition else {
            continue;
        };
        let output_src: Arc<str> = Arc::from(format!("{key}#{name}"));
        let rule_key = c.evaluation_key(format!("{key}#{name}"));
        let (eff, cond) = parental_consent(perms, effect(rule.effect), condition);
        for action in &rule.actions {
            let action_glob = c.glob(action, &rule.span);
            // A row of this rule and action, for a role (through a derived role, if any).
            let row = |role: Glob, derived_role: Option<Arc<DerivedRole>>, evaluation_key| Row {
                kind: RowKind::Resource,
                policy_key: policy_key_arc.clone(),
                resource: resource_glob.clone(),
                role,
                actions: ActionSet::Action(action_glob.clone()),
                condition: cond.clone(),
                derived_role,
                effect: eff,
                scope: scope.clone(),
                principal: None,
                output: output.clone(),
                output_src: output_src.clone(),
                name: name.clone(),
                evaluation_key,
                span: rule.span.clone(),
            };
            for role in &rule.roles {
                let role = c.glob(role, &rule.span);
                push_row(set, row(role, None, rule_key), &rp.version);
            }
            for dr in &rule.derived_roles {
                let Some(drole) = referenced.get(&dr.value) else {
                    continue;
                };
                let dr_key = c.evaluation_key(format!("derived_roles.{}#{key}#{name}", dr.value));
                for parent in &drole.parent_roles {
                    let role = c.glob(parent, &rule.span);
                    push_row(set, row(role, Some(drole.clone()), dr_key), &rp.version);
                }
            }
        }
    }
    true
}

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
            let (eff, cond) = parental_consent(perms, effect(action.effect), condition);
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
