//! Compiles loaded policies into a [`CompiledPolicySet`]: resolves imports, derived
//! roles, variables and constants, parses and resolves every CEL expression once,
//! and builds the rule rows and their index. Every problem is collected and
//! reported with its source position.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;

use super::compiled::{
    ActionSet, CompiledExpr, CompiledOutput, CompiledPolicySet, Condition, DerivedRole, Effect,
    PolicyCounts, PolicySchemas, Row, RowKind, SLOT_GLOBALS, SLOT_PRINCIPAL, SLOT_REQUEST,
    SLOT_RESOURCE, SLOT_RUNTIME, SchemaRef, ScopePermissions, ScopeRows,
};
use super::glob::Glob;
use super::model::{self, Match, Policy, PolicyKind};
use super::schema::SchemaStore;
use super::span::Span;
use crate::cel::{self, HostBinding, HostScope, Value, ast::Expr, ast::ExprKind, from_json};

/// One compile problem, at a source position.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{span}: {message}")]
pub struct CompileError {
    /// Where.
    pub span: Span,
    /// Cerbos's short error kind, e.g. `unknown derived role`.
    pub kind: &'static str,
    /// What is wrong.
    pub message: String,
}

/// All problems found while compiling (never empty).
#[derive(Clone, Debug, PartialEq)]
pub struct CompileErrors(Vec<CompileError>);

impl CompileErrors {
    /// The errors, in source order.
    pub fn errors(&self) -> &[CompileError] {
        &self.0
    }
}

impl fmt::Display for CompileErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CompileErrors {}

/// A variable definition: its parsed expression and where it was written.
#[derive(Clone, Debug)]
struct VarDef {
    expr: Arc<Expr>,
    span: Span,
    origin: String,
}

/// The names visible to a policy's expressions.
#[derive(Default)]
struct Env {
    variables: HashMap<String, VarDef>,
    constants: HashMap<String, Value>,
    /// Set when an expression compiled in this environment reads `request`.
    uses_request: Rc<Cell<bool>>,
}

impl HostScope for Env {
    fn variable(&self, name: &str) -> Option<u16> {
        match name {
            "request" => {
                self.uses_request.set(true);
                Some(SLOT_REQUEST)
            }
            "P" => Some(SLOT_PRINCIPAL),
            "R" => Some(SLOT_RESOURCE),
            "G" | "globals" => Some(SLOT_GLOBALS),
            "runtime" => Some(SLOT_RUNTIME),
            _ => None,
        }
    }

    fn select(&self, root: &str, field: &str) -> Option<Result<HostBinding, String>> {
        match root {
            "V" | "variables" => Some(
                self.variables
                    .get(field)
                    .map(|v| HostBinding::Expr(v.expr.clone()))
                    .ok_or_else(|| format!("Undefined variable '{field}'")),
            ),
            "C" | "constants" => Some(
                self.constants
                    .get(field)
                    .map(|v| HostBinding::Value(v.clone()))
                    .ok_or_else(|| format!("Undefined constant '{field}'")),
            ),
            _ => None,
        }
    }
}

/// Collects `V.x` / `variables.x` references of an expression.
fn variable_refs(e: &Expr, out: &mut Vec<String>) {
    match &e.kind {
        ExprKind::Select { operand, field, .. } => {
            if matches!(operand.as_ident(), Some("V" | "variables")) {
                out.push(field.clone());
            } else {
                variable_refs(operand, out);
            }
        }
        ExprKind::Literal(_) | ExprKind::Ident(_) => {}
        ExprKind::Index { operand, index, .. } => {
            variable_refs(operand, out);
            variable_refs(index, out);
        }
        ExprKind::Call { target, args, .. } => {
            if let Some(t) = target {
                variable_refs(t, out);
            }
            for a in args {
                variable_refs(a, out);
            }
        }
        ExprKind::List(items) => items.iter().for_each(|(x, _)| variable_refs(x, out)),
        ExprKind::Map(entries) => entries.iter().for_each(|(k, v, _)| {
            variable_refs(k, out);
            variable_refs(v, out);
        }),
        ExprKind::Struct { fields, .. } => {
            fields.iter().for_each(|(_, v, _)| variable_refs(v, out))
        }
        ExprKind::Unary(_, x) => variable_refs(x, out),
        ExprKind::Binary(_, l, r) | ExprKind::And(l, r) | ExprKind::Or(l, r) => {
            variable_refs(l, out);
            variable_refs(r, out);
        }
        ExprKind::Ternary(c, a, b) => {
            variable_refs(c, out);
            variable_refs(a, out);
            variable_refs(b, out);
        }
    }
}

/// Source text of a CEL error position, as `line:col` offset from the expression's span.
fn expr_span(base: &Span, _src: &str, _pos: usize) -> Span {
    base.clone()
}

struct Compiler<'a> {
    errors: Vec<CompileError>,
    export_variables: HashMap<&'a str, &'a model::ExportVariables>,
    export_constants: HashMap<&'a str, &'a model::ExportConstants>,
    derived_roles: HashMap<&'a str, (&'a Policy, &'a model::DerivedRoles)>,
    evaluation_keys: HashMap<String, u32>,
    uses_request: Rc<Cell<bool>>,
}

impl<'a> Compiler<'a> {
    fn error(&mut self, span: &Span, kind: &'static str, message: impl Into<String>) {
        self.errors.push(CompileError {
            span: span.clone(),
            kind,
            message: message.into(),
        });
    }

    fn evaluation_key(&mut self, key: String) -> u32 {
        let n = self.evaluation_keys.len() as u32;
        *self.evaluation_keys.entry(key).or_insert(n)
    }

    /// Parses an expression, reporting syntax errors.
    fn parse(&mut self, text: &model::ExprText) -> Option<Arc<Expr>> {
        match cel::parse(&text.text) {
            Ok(e) => Some(Arc::new(e)),
            Err(e) => {
                self.error(
                    &expr_span(&text.span, &text.text, e.pos),
                    "invalid expression",
                    format!(
                        "Invalid expression `{}`: [Syntax error: {}]",
                        text.text.trim(),
                        e.message
                    ),
                );
                None
            }
        }
    }

    /// Builds the variable and constant environment of a policy.
    fn env(
        &mut self,
        policy: &'a Policy,
        variables: Option<&'a model::Variables>,
        constants: Option<&'a model::Constants>,
    ) -> Env {
        let mut env = Env {
            uses_request: self.uses_request.clone(),
            ..Env::default()
        };
        let mut const_origin: HashMap<String, String> = HashMap::new();
        if let Some(c) = constants {
            for imp in &c.import {
                match self.export_constants.get(imp.value.as_str()) {
                    Some(ec) => {
                        for (name, v) in &ec.definitions {
                            if let Some(prev) = const_origin.get(name) {
                                self.error(
                                    &imp.span,
                                    "constant redefined",
                                    format!("Constant '{name}' has multiple definitions in {prev} and import '{}'", imp.value),
                                );
                            }
                            const_origin.insert(name.clone(), format!("import '{}'", imp.value));
                            env.constants.insert(name.clone(), from_json(v));
                        }
                    }
                    None => self.error(
                        &imp.span,
                        "import not found",
                        format!("Constants import '{}' cannot be found", imp.value),
                    ),
                }
            }
            for (name, v) in &c.local {
                if let Some(prev) = const_origin.get(name) {
                    self.error(
                        &policy.span,
                        "constant redefined",
                        format!("Constant '{name}' has multiple definitions in {prev} and policy local constants"),
                    );
                }
                const_origin.insert(name.clone(), "policy local constants".into());
                env.constants.insert(name.clone(), from_json(v));
            }
        }

        let mut defs: Vec<(String, &'a model::ExprText, String)> = Vec::new();
        if let Some(v) = variables {
            for imp in &v.import {
                match self.export_variables.get(imp.value.as_str()) {
                    Some(ev) => {
                        for (name, e) in &ev.definitions {
                            defs.push((name.clone(), e, format!("import '{}'", imp.value)));
                        }
                    }
                    None => self.error(
                        &imp.span,
                        "import not found",
                        format!("Variables import '{}' cannot be found", imp.value),
                    ),
                }
            }
            for (name, e) in &v.local {
                defs.push((name.clone(), e, "policy local variables".into()));
            }
        }
        for (name, e) in &policy.variables {
            defs.push((
                name.clone(),
                e,
                "deprecated top-level policy variables".into(),
            ));
        }
        for (name, text, origin) in defs {
            if let Some(prev) = env.variables.get(&name) {
                let msg = format!(
                    "Variable '{name}' has multiple definitions in {} ({}) and {origin} ({})",
                    prev.origin, prev.span, text.span
                );
                let span = prev.span.clone();
                self.error(&span, "variable redefined", msg);
                continue;
            }
            if let Some(expr) = self.parse(text) {
                env.variables.insert(
                    name,
                    VarDef {
                        expr,
                        span: text.span.clone(),
                        origin,
                    },
                );
            }
        }
        self.check_variables(&env);
        env
    }

    /// Reports undefined and cyclic variable references.
    fn check_variables(&mut self, env: &Env) {
        let mut names: Vec<&String> = env.variables.keys().collect();
        names.sort_by_key(|n| (env.variables[*n].span.line, env.variables[*n].span.col));
        let mut refs: HashMap<&str, Vec<String>> = HashMap::new();
        for name in &names {
            let mut r = Vec::new();
            variable_refs(&env.variables[*name].expr, &mut r);
            for missing in r.iter().filter(|x| !env.variables.contains_key(*x)) {
                let span = env.variables[*name].span.clone();
                self.error(
                    &span,
                    "undefined variable",
                    format!("Undefined variable '{missing}' referenced in variable '{name}'"),
                );
            }
            refs.insert(name.as_str(), r);
        }
        // Cycle detection: depth-first search with colours.
        let mut state: HashMap<&str, u8> = HashMap::new();
        let mut reported: HashSet<Vec<String>> = HashSet::new();
        for name in &names {
            let mut stack: Vec<&str> = Vec::new();
            self.visit(name, &refs, &mut state, &mut stack, env, &mut reported);
        }
    }

    fn visit<'n>(
        &mut self,
        name: &'n str,
        refs: &'n HashMap<&'n str, Vec<String>>,
        state: &mut HashMap<&'n str, u8>,
        stack: &mut Vec<&'n str>,
        env: &Env,
        reported: &mut HashSet<Vec<String>>,
    ) {
        match state.get(name) {
            Some(2) => return,
            Some(1) => {
                let start = stack.iter().position(|s| *s == name).unwrap_or(0);
                let mut cycle: Vec<String> = stack[start..].iter().map(|s| s.to_string()).collect();
                let mut key = cycle.clone();
                key.sort();
                if reported.insert(key) {
                    cycle.sort_by_key(|n| (env.variables[n].span.line, env.variables[n].span.col));
                    let parts: Vec<String> = cycle
                        .iter()
                        .map(|n| format!("'{n}' ({})", env.variables[n].span))
                        .collect();
                    let list = match parts.len() {
                        1 => parts[0].clone(),
                        2 => format!("{} and {}", parts[0], parts[1]),
                        n => format!("{}, and {}", parts[..n - 1].join(", "), parts[n - 1]),
                    };
                    let span = env.variables[&cycle[0]].span.clone();
                    self.error(
                        &span,
                        "cyclical variable definitions",
                        format!("Variables {list} form a cycle"),
                    );
                }
                return;
            }
            _ => {}
        }
        let Some((key, deps)) = refs.get_key_value(name) else {
            return;
        };
        state.insert(key, 1);
        stack.push(key);
        for d in deps {
            if let Some((dk, _)) = refs.get_key_value(d.as_str()) {
                self.visit(dk, refs, state, stack, env, reported);
            }
        }
        stack.pop();
        state.insert(key, 2);
    }

    /// Compiles one expression against an environment.
    fn expr(&mut self, text: &model::ExprText, env: &Env) -> Option<CompiledExpr> {
        let parsed = self.parse(text)?;
        match cel::compile(&parsed, env) {
            Ok(program) => Some(CompiledExpr {
                program,
                source: Arc::from(text.text.as_str()),
                span: text.span.clone(),
            }),
            Err(e) => {
                let kind = if e.message.starts_with("Undefined variable") {
                    "undefined variable"
                } else if e.message.starts_with("Undefined constant") {
                    "undefined constant"
                } else {
                    "invalid expression"
                };
                let message = if kind == "invalid expression" {
                    format!("Invalid expression `{}`: [{}]", text.text.trim(), e.message)
                } else {
                    e.message
                };
                self.error(&text.span, kind, message);
                None
            }
        }
    }

    fn condition(&mut self, m: &Match, env: &Env) -> Option<Condition> {
        Some(match m {
            Match::Expr(t) => Condition::Expr(self.expr(t, env)?),
            Match::All(items) => Condition::All(self.conditions(items, env)?),
            Match::Any(items) => Condition::Any(self.conditions(items, env)?),
            Match::None(items) => Condition::None(self.conditions(items, env)?),
        })
    }

    fn conditions(&mut self, items: &[Match], env: &Env) -> Option<Vec<Condition>> {
        let mut ok = true;
        let mut out = Vec::with_capacity(items.len());
        for i in items {
            match self.condition(i, env) {
                Some(c) => out.push(c),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn output(&mut self, o: Option<&model::Output>, env: &Env) -> Option<Arc<CompiledOutput>> {
        let o = o?;
        let mut out = CompiledOutput::default();
        if let Some(e) = &o.expr {
            out.rule_activated = self.expr(e, env);
        }
        if let Some(w) = &o.when {
            if let Some(e) = &w.rule_activated {
                out.rule_activated = self.expr(e, env);
            }
            if let Some(e) = &w.condition_not_met {
                out.condition_not_met = self.expr(e, env);
            }
        }
        if out.rule_activated.is_none() && out.condition_not_met.is_none() {
            return None;
        }
        Some(Arc::new(out))
    }

    fn glob(&mut self, pattern: &str, span: &Span) -> Glob {
        match Glob::new(pattern) {
            Ok(g) => g,
            Err(e) => {
                self.error(span, "invalid glob", e.to_string());
                Glob::Literal(pattern.into())
            }
        }
    }
}

fn policy_key(kind: &str, name: &str, version: &str, scope: &str) -> String {
    if scope.is_empty() {
        format!("{kind}.{name}.v{version}")
    } else {
        format!("{kind}.{name}.v{version}/{scope}")
    }
}

fn parent_scope(scope: &str) -> Option<&str> {
    if scope.is_empty() {
        None
    } else {
        Some(scope.rfind('.').map_or("", |i| &scope[..i]))
    }
}

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

/// Compiles policies (already loaded and parsed) and the schema store into a policy set.
pub fn compile_policies(
    policies: &[Policy],
    schemas: SchemaStore,
) -> Result<CompiledPolicySet, CompileErrors> {
    let mut c = Compiler {
        errors: Vec::new(),
        export_variables: HashMap::new(),
        export_constants: HashMap::new(),
        derived_roles: HashMap::new(),
        evaluation_keys: HashMap::new(),
        uses_request: Rc::new(Cell::new(false)),
    };
    let enabled: Vec<&Policy> = policies.iter().filter(|p| !p.disabled).collect();
    let mut counts = PolicyCounts::default();
    let mut seen: HashMap<String, Span> = HashMap::new();
    for p in &enabled {
        let id = p.fqn();
        if let Some(prev) = seen.get(&id) {
            let msg = format!("duplicate policy definition: {id} is also defined at {prev}");
            c.error(&p.span, "duplicate definition", msg);
            continue;
        }
        seen.insert(id, p.span.clone());
        match &p.kind {
            PolicyKind::ExportVariables(ev) => {
                counts.export_variables += 1;
                c.export_variables.insert(&ev.name, ev);
            }
            PolicyKind::ExportConstants(ec) => {
                counts.export_constants += 1;
                c.export_constants.insert(&ec.name, ec);
            }
            PolicyKind::DerivedRoles(dr) => {
                counts.derived_roles += 1;
                c.derived_roles.insert(&dr.name, (p, dr));
            }
            PolicyKind::Resource(_) => counts.resource += 1,
            PolicyKind::Principal(_) => counts.principal += 1,
            PolicyKind::Role(_) => counts.role += 1,
        }
    }

    // Compiled derived-role sets, by set name.
    let mut dr_sets: HashMap<&str, HashMap<String, Arc<DerivedRole>>> = HashMap::new();
    let mut dr_names: Vec<&str> = c.derived_roles.keys().copied().collect();
    dr_names.sort_unstable();
    for name in dr_names {
        let (p, dr) = c.derived_roles[name];
        let env = c.env(p, dr.variables.as_ref(), dr.constants.as_ref());
        let mut set = HashMap::new();
        for def in &dr.definitions {
            let condition = match &def.condition {
                Some(m) => match c.condition(m, &env) {
                    Some(cond) => Some(Arc::new(cond)),
                    None => continue,
                },
                None => None,
            };
            set.insert(
                def.name.clone(),
                Arc::new(DerivedRole {
                    name: Arc::from(def.name.as_str()),
                    parent_roles: def
                        .parent_roles
                        .iter()
                        .map(|r| Arc::from(r.as_str()))
                        .collect(),
                    condition,
                }),
            );
        }
        dr_sets.insert(name, set);
    }

    let mut set = CompiledPolicySet {
        schema_store: Arc::new(schemas),
        ..Default::default()
    };
    let mut resource_chains: HashSet<(String, String, String)> = HashSet::new();
    let mut principal_chains: HashSet<(String, String, String)> = HashSet::new();
    for p in &enabled {
        match &p.kind {
            PolicyKind::Resource(rp) => {
                resource_chains.insert((rp.resource.clone(), rp.version.clone(), rp.scope.clone()));
            }
            PolicyKind::Principal(pp) => {
                principal_chains.insert((
                    pp.principal.clone(),
                    pp.version.clone(),
                    pp.scope.clone(),
                ));
            }
            _ => {}
        }
    }

    for p in &enabled {
        match &p.kind {
            PolicyKind::Resource(rp) => {
                compile_resource(&mut c, &mut set, p, rp, &dr_sets, &resource_chains)
            }
            PolicyKind::Principal(pp) => {
                compile_principal(&mut c, &mut set, p, pp, &principal_chains)
            }
            PolicyKind::Role(rp) => compile_role(&mut c, &mut set, p, rp),
            _ => {}
        }
    }

    // Transitive parent roles per scope.
    // (scope, role, direct parent roles) of every role policy.
    type RoleParents = (Arc<str>, Arc<str>, Vec<Arc<str>>);
    let direct: Vec<RoleParents> = enabled
        .iter()
        .filter_map(|p| match &p.kind {
            PolicyKind::Role(rp) => Some((
                Arc::from(rp.scope.as_str()),
                Arc::from(rp.role.as_str()),
                rp.parent_roles
                    .iter()
                    .map(|r| Arc::from(r.as_str()))
                    .collect(),
            )),
            _ => None,
        })
        .collect();
    for (scope, role, _) in &direct {
        let mut found: Vec<Arc<str>> = Vec::new();
        let mut todo = vec![role.clone()];
        let mut visited: HashSet<Arc<str>> = HashSet::new();
        while let Some(r) = todo.pop() {
            if !visited.insert(r.clone()) {
                continue;
            }
            for (s2, r2, parents) in &direct {
                if s2 == scope && *r2 == r {
                    for pr in parents {
                        if !found.contains(pr) {
                            found.push(pr.clone());
                        }
                        todo.push(pr.clone());
                    }
                }
            }
        }
        set.parent_roles
            .entry(scope.clone())
            .or_default()
            .insert(role.clone(), found);
    }

    set.counts = counts;
    set.evaluation_keys = c.evaluation_keys.len() as u32;
    set.uses_request = c.uses_request.get();
    if c.errors.is_empty() {
        Ok(set)
    } else {
        c.errors.sort_by(|a, b| {
            (&a.span.file, a.span.line, a.span.col).cmp(&(&b.span.file, b.span.line, b.span.col))
        });
        Err(CompileErrors(c.errors))
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
    let entry = set
        .index
        .entry(Arc::from(version))
        .or_default()
        .entry(scope.clone())
        .or_default();
    match (row.kind, &row.actions) {
        (RowKind::Principal, _) => {
            entry.has_principal = true;
            if let Some(pid) = &row.principal {
                entry.principal.entry(pid.clone()).or_default().push(idx);
            }
            set.principal_scopes.insert(scope.clone());
        }
        (RowKind::Resource, ActionSet::AllowActions(_)) => {
            entry.role.push(idx);
            set.resource_scopes.insert(scope.clone());
        }
        (RowKind::Resource, ActionSet::Action(_)) => {
            entry.resource.push(idx);
            set.resource_scopes.insert(scope.clone());
        }
    }
    set.rows.push(row);
}

fn check_ancestors(
    c: &mut Compiler,
    chains: &HashSet<(String, String, String)>,
    name: &str,
    version: &str,
    scope: &str,
    span: &Span,
    what: &str,
) {
    let mut s = scope;
    while let Some(parent) = parent_scope(s) {
        if !chains.contains(&(name.to_string(), version.to_string(), parent.to_string())) {
            c.error(
                span,
                "missing policy definition",
                format!(
                    "Missing ancestor {what} policy for {name} (version {version}) in scope {parent:?} required by scope {scope:?}"
                ),
            );
            return;
        }
        s = parent;
    }
}

fn compile_resource<'a>(
    c: &mut Compiler<'a>,
    set: &mut CompiledPolicySet,
    p: &'a Policy,
    rp: &'a model::ResourcePolicy,
    dr_sets: &HashMap<&str, HashMap<String, Arc<DerivedRole>>>,
    chains: &HashSet<(String, String, String)>,
) {
    check_ancestors(
        c,
        chains,
        &rp.resource,
        &rp.version,
        &rp.scope,
        &p.span,
        "resource",
    );
    let key = policy_key("resource", &rp.resource, &rp.version, &rp.scope);
    let env = c.env(p, rp.variables.as_ref(), rp.constants.as_ref());

    // Imported derived roles: name -> (role, import name, import span).
    let mut imported: HashMap<String, (Arc<DerivedRole>, String, Span)> = HashMap::new();
    let mut ambiguous: HashMap<String, Vec<(String, Span)>> = HashMap::new();
    for imp in &rp.import_derived_roles {
        match dr_sets.get(imp.value.as_str()) {
            Some(roles) => {
                for (name, dr) in roles {
                    if let Some((_, prev, prev_span)) = imported.get(name) {
                        ambiguous
                            .entry(name.clone())
                            .or_insert_with(|| vec![(prev.clone(), prev_span.clone())])
                            .push((imp.value.clone(), imp.span.clone()));
                    } else {
                        imported.insert(
                            name.clone(),
                            (dr.clone(), imp.value.clone(), imp.span.clone()),
                        );
                    }
                }
            }
            None => c.error(
                &imp.span,
                "import not found",
                format!("Derived roles import '{}' cannot be found", imp.value),
            ),
        }
    }
    let mut amb: Vec<_> = ambiguous.into_iter().collect();
    amb.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, sources) in amb {
        let list: Vec<String> = sources
            .iter()
            .map(|(imp, sp)| format!("imported as \"{imp}\" at {}:{}", sp.line, sp.col))
            .collect();
        c.error(
            &p.span,
            "ambiguous derived role",
            format!(
                "Derived role \"{name}\" is defined in more than one import: {}",
                list.join(", ")
            ),
        );
    }
    // Only derived roles that a rule refers to take part in decisions (as in Cerbos).
    let referenced: HashSet<&str> = rp
        .rules
        .iter()
        .flat_map(|r| r.derived_roles.iter().map(|d| d.value.as_str()))
        .collect();
    let mut policy_drs: Vec<Arc<DerivedRole>> = imported
        .iter()
        .filter(|(name, _)| referenced.contains(name.as_str()))
        .map(|(_, (d, _, _))| d.clone())
        .collect();
    policy_drs.sort_by(|a, b| a.name.cmp(&b.name));
    if !policy_drs.is_empty() {
        scope_rows(set, &rp.version, &rp.scope)
            .derived_roles
            .insert(Arc::from(rp.resource.as_str()), policy_drs);
    }

    if let Some(s) = &rp.schemas {
        let mut ps = PolicySchemas::default();
        for (target, sref, what) in [
            (&mut ps.principal, &s.principal_schema, "principal"),
            (&mut ps.resource, &s.resource_schema, "resource"),
        ] {
            if let Some(r) = sref {
                if let Err(e) = set.schema_store.load(&r.reference) {
                    c.error(
                        &r.span,
                        "invalid schema",
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
        scope_rows(set, &rp.version, &rp.scope)
            .schemas
            .insert(Arc::from(rp.resource.as_str()), ps);
    }

    let perms = rp.scope_permissions;
    set.scope_permissions
        .insert(Arc::from(rp.scope.as_str()), scope_permissions(perms));
    let resource_glob = c.glob(&rp.resource, &p.span);
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
        let condition = match &rule.condition {
            Some(m) => match c.condition(m, &env) {
                Some(cond) => Some(Arc::new(cond)),
                None => continue,
            },
            None => None,
        };
        let output = c.output(rule.output.as_ref(), &env);
        let output_src: Arc<str> = Arc::from(format!("{key}#{name}"));
        for dr in &rule.derived_roles {
            if !imported.contains_key(&dr.value) {
                c.error(
                    &dr.span,
                    "unknown derived role",
                    format!(
                        "Derived role \"{}\" is not defined in any imports",
                        dr.value
                    ),
                );
            }
        }
        let rule_key = c.evaluation_key(format!("{key}#{name}"));
        let (eff, cond) = parental_consent(perms, effect(rule.effect), condition);
        for action in &rule.actions {
            let action_glob = c.glob(action, &rule.span);
            for role in &rule.roles {
                let row = Row {
                    kind: RowKind::Resource,
                    policy_key: policy_key_arc.clone(),
                    resource: resource_glob.clone(),
                    role: c.glob(role, &rule.span),
                    actions: ActionSet::Action(action_glob.clone()),
                    condition: cond.clone(),
                    derived_role: None,
                    effect: eff,
                    scope: scope.clone(),
                    principal: None,
                    output: output.clone(),
                    output_src: output_src.clone(),
                    name: name.clone(),
                    evaluation_key: rule_key,
                    span: rule.span.clone(),
                };
                push_row(set, row, &rp.version);
            }
            for dr in &rule.derived_roles {
                let Some((drole, _, _)) = imported.get(&dr.value) else {
                    continue;
                };
                let dr_key = c.evaluation_key(format!("derived_roles.{}#{key}#{name}", dr.value));
                for parent in &drole.parent_roles {
                    let row = Row {
                        kind: RowKind::Resource,
                        policy_key: policy_key_arc.clone(),
                        resource: resource_glob.clone(),
                        role: c.glob(parent, &rule.span),
                        actions: ActionSet::Action(action_glob.clone()),
                        condition: cond.clone(),
                        derived_role: Some(drole.clone()),
                        effect: eff,
                        scope: scope.clone(),
                        principal: None,
                        output: output.clone(),
                        output_src: output_src.clone(),
                        name: name.clone(),
                        evaluation_key: dr_key,
                        span: rule.span.clone(),
                    };
                    push_row(set, row, &rp.version);
                }
            }
        }
    }
}

fn compile_principal<'a>(
    c: &mut Compiler<'a>,
    set: &mut CompiledPolicySet,
    p: &'a Policy,
    pp: &'a model::PrincipalPolicy,
    chains: &HashSet<(String, String, String)>,
) {
    check_ancestors(
        c,
        chains,
        &pp.principal,
        &pp.version,
        &pp.scope,
        &p.span,
        "principal",
    );
    let key = policy_key("principal", &pp.principal, &pp.version, &pp.scope);
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
    let mut n = 0usize;
    for rule in &pp.rules {
        let resource_glob = c.glob(&rule.resource, &p.span);
        for action in &rule.actions {
            n += 1;
            let name: Arc<str> = Arc::from(
                action
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("rule-{n:03}")),
            );
            let condition = match &action.condition {
                Some(m) => match c.condition(m, &env) {
                    Some(cond) => Some(Arc::new(cond)),
                    None => continue,
                },
                None => None,
            };
            let output = c.output(action.output.as_ref(), &env);
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

fn compile_role<'a>(
    c: &mut Compiler<'a>,
    set: &mut CompiledPolicySet,
    p: &'a Policy,
    rp: &'a model::RolePolicy,
) {
    let key = policy_key("role", &rp.role, &rp.version, &rp.scope);
    let env = c.env(p, rp.variables.as_ref(), rp.constants.as_ref());
    let scope: Arc<str> = Arc::from(rp.scope.as_str());
    let policy_key_arc: Arc<str> = Arc::from(key.as_str());
    for (i, rule) in rp.rules.iter().enumerate() {
        let name: Arc<str> = Arc::from(
            rule.name
                .clone()
                .unwrap_or_else(|| format!("{}_rule-{:03}", rp.role, i)),
        );
        let condition = match &rule.condition {
            Some(m) => match c.condition(m, &env) {
                Some(cond) => Some(Arc::new(cond)),
                None => continue,
            },
            None => None,
        };
        let output = c.output(rule.output.as_ref(), &env);
        let evaluation_key = c.evaluation_key(format!("{key}#{}_rule-{i:03}", rp.role));
        let actions = rule
            .allow_actions
            .iter()
            .map(|a| c.glob(a, &rule.span))
            .collect();
        let row = Row {
            kind: RowKind::Resource,
            policy_key: policy_key_arc.clone(),
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
