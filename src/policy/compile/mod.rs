//! Compiles loaded policies into a [`CompiledPolicySet`]: indexes the store (duplicate
//! definitions, missing imports and scope ancestors, scope-permission conflicts), resolves
//! imports, derived roles, variables and constants, parses and resolves every CEL
//! expression once, and builds the rule rows and their index. Every problem is collected
//! and reported with its source position, with Cerbos's error kinds and messages.
//!
//! Two entry points:
//! * [`compile_policies`] compiles a whole store, as `cerbos compile` and the Cerbos server
//!   do: the store is indexed first, then every executable policy is compiled.
//! * [`compile_unit`] compiles one policy with its scope ancestors and the definitions
//!   they import (a Cerbos compilation unit), as Cerbos's compiler does when it is handed
//!   the files directly: no store-wide checks, and Cerbos's rules for when to stop.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;

use super::compiled::glob::Glob;
use super::compiled::{
    ActionSet, CompiledExpr, CompiledOutput, CompiledPolicySet, Condition, DerivedRole, Effect,
    PolicyCounts, PolicySchemas, Row, RowKind, SLOT_GLOBALS, SLOT_PRINCIPAL, SLOT_REQUEST,
    SLOT_RESOURCE, SLOT_RUNTIME, SchemaRef, ScopePermissions, ScopeRows,
};
use super::id::{self, ScopedKind};
use super::model::{self, Match, Policy, PolicyKind};
use super::yaml::span::{Span, Spanned};
use crate::cel::{self, HostBinding, HostScope, Value, ast::Expr, ast::ExprKind, from_json};
use crate::jsonschema::SchemaStore;

mod env;
mod errors;
mod index;
mod kinds;

use env::{
    ConstDef, Env, VarDef, cycles, english_list, host_index_problems, host_refs,
    identifier_problem, parse_expr,
};
pub use errors::{CompileError, CompileErrorKind, CompileErrors};
use index::ancestors;
pub use index::{
    CompilationUnit, DisabledPolicy, ImportKind, IndexError, PolicyIndex, index_policies,
};
use kinds::{compile_principal, compile_resource, compile_role};

// === Compiler ===

/// Whether a whole store or one compilation unit is compiled.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The store was indexed first, which reported missing imports.
    Store,
    /// One unit, as Cerbos's compiler: reports missing imports, stops where Cerbos stops.
    Unit,
}

/// A compiled `exportVariables` set: its definitions in file order.
type VariableSet = Rc<Vec<(String, VarDef)>>;

/// A compiled `exportConstants` set: its definitions in file order.
type ConstantSet = Rc<Vec<(String, ConstDef)>>;

/// A compiled derived roles set.
struct DerivedRoleSet {
    /// The file that defines it.
    file: Arc<str>,
    /// The roles by name; `None` for a role whose condition does not compile (reported).
    roles: HashMap<String, Option<Arc<DerivedRole>>>,
}

struct Compiler<'a> {
    mode: Mode,
    errors: Vec<CompileError>,
    /// Enabled definitions by fully qualified id (the first of duplicates).
    by_fqn: HashMap<String, &'a Policy>,
    /// Compiled `exportVariables` sets, by name (`None`: no such set).
    export_variables: HashMap<String, Option<VariableSet>>,
    /// Compiled `exportConstants` sets, by name.
    export_constants: HashMap<String, Option<ConstantSet>>,
    /// Compiled derived roles sets, by name.
    derived_roles: HashMap<String, Option<Rc<DerivedRoleSet>>>,
    evaluation_keys: HashMap<String, u32>,
    uses_request: Rc<Cell<bool>>,
    counts: PolicyCounts,
    /// The role policies compiled, for their parent roles.
    role_policies: Vec<&'a model::RolePolicy>,
}

impl<'a> Compiler<'a> {
    fn new(policies: &'a [Policy], mode: Mode) -> Self {
        let mut by_fqn = HashMap::new();
        for p in policies.iter().filter(|p| !p.disabled) {
            by_fqn.entry(p.fqn()).or_insert(p);
        }
        Self {
            mode,
            errors: Vec::new(),
            by_fqn,
            export_variables: HashMap::new(),
            export_constants: HashMap::new(),
            derived_roles: HashMap::new(),
            evaluation_keys: HashMap::new(),
            uses_request: Rc::new(Cell::new(false)),
            counts: PolicyCounts::default(),
            role_policies: Vec::new(),
        }
    }

    fn error(&mut self, span: &Span, kind: CompileErrorKind, message: impl Into<String>) {
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

    /// Reports an import of a definition that does not exist. A store's index already
    /// reported it; only a unit reports it here, in the words of Cerbos's compiler.
    fn import_not_found(&mut self, kind: ImportKind, import: &Spanned<String>) {
        if self.mode == Mode::Unit {
            let name = match kind {
                ImportKind::DerivedRoles => format!("{:?}", import.value),
                ImportKind::Variables | ImportKind::Constants => format!("'{}'", import.value),
            };
            self.error(
                &import.span,
                CompileErrorKind::ImportNotFound,
                format!("{} import {name} cannot be found", kind.title()),
            );
        }
    }

    fn check_identifier(&mut self, name: &str, span: &Span, kind: CompileErrorKind) {
        if let Some(problem) = identifier_problem(name) {
            self.error(span, kind, problem);
        }
    }

    fn invalid_expression(&mut self, text: &model::ExprText, span: &Span, problems: &str) {
        self.error(
            span,
            CompileErrorKind::InvalidExpression,
            format!("Invalid expression `{}`: [{problems}]", text.text.trim()),
        );
    }

    /// Parses an expression and checks it alone (every `V.x` and `C.x` a placeholder),
    /// reporting problems at `span`. `None` when it does not parse or check.
    fn parse_and_check(&mut self, text: &model::ExprText, span: &Span) -> Option<Arc<Expr>> {
        let parsed = match parse_expr(&text.text) {
            Ok(e) => e,
            Err(problems) => {
                self.invalid_expression(text, span, &problems.join(", "));
                return None;
            }
        };
        let mut problems = cel::check::type_problems(&parsed);
        problems.extend(host_index_problems(&parsed));
        if !problems.is_empty() {
            self.invalid_expression(text, span, &problems.join(", "));
            return None;
        }
        let checking = Env {
            placeholders: true,
            ..Env::default()
        };
        if let Err(e) = cel::compile(&parsed, &checking) {
            self.invalid_expression(text, span, &e.message);
            return None;
        }
        Some(Arc::new(parsed))
    }

    /// A variable definition: its name checked, its expression parsed and checked.
    fn variable(
        &mut self,
        name: &str,
        text: &model::ExprText,
        spans: &model::DefinitionSpan,
        origin: String,
    ) -> VarDef {
        self.check_identifier(name, &spans.name, CompileErrorKind::InvalidVariableName);
        let expr = self.parse_and_check(text, &text.span);
        let (mut variables, mut constants) = (Vec::new(), Vec::new());
        if let Some(e) = &expr {
            host_refs(e, &mut variables, &mut constants);
        }
        VarDef {
            expr,
            span: text.span.clone(),
            origin,
            variables,
            constants,
        }
    }

    /// An `exportVariables` set, compiled once.
    fn export_variables(&mut self, name: &str) -> Option<VariableSet> {
        if let Some(done) = self.export_variables.get(name) {
            return done.clone();
        }
        let fqn = ImportKind::Variables.fqn(name);
        let compiled = match self.by_fqn.get(&fqn).map(|p| &p.kind) {
            Some(PolicyKind::ExportVariables(ev)) => {
                let mut defs = Vec::with_capacity(ev.definitions.len());
                for (var, text, spans) in ev.definitions.iter_spanned() {
                    let def = self.variable(var, text, spans, String::new());
                    defs.push((var.to_owned(), def));
                }
                Some(Rc::new(defs))
            }
            _ => None,
        };
        self.export_variables
            .insert(name.to_owned(), compiled.clone());
        compiled
    }

    /// An `exportConstants` set, compiled once.
    fn export_constants(&mut self, name: &str) -> Option<ConstantSet> {
        if let Some(done) = self.export_constants.get(name) {
            return done.clone();
        }
        let fqn = ImportKind::Constants.fqn(name);
        let compiled = match self.by_fqn.get(&fqn).map(|p| &p.kind) {
            Some(PolicyKind::ExportConstants(ec)) => {
                let mut defs = Vec::with_capacity(ec.definitions.len());
                for (constant, value, spans) in ec.definitions.iter_spanned() {
                    self.check_identifier(
                        constant,
                        &spans.name,
                        CompileErrorKind::InvalidConstantName,
                    );
                    defs.push((
                        constant.to_owned(),
                        ConstDef {
                            value: from_json(value),
                            span: spans.value.clone(),
                        },
                    ));
                }
                Some(Rc::new(defs))
            }
            _ => None,
        };
        self.export_constants
            .insert(name.to_owned(), compiled.clone());
        compiled
    }

    /// Builds the variable and constant environment of a policy, reporting bad names,
    /// missing imports, redefinitions, undefined references and cycles.
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

        // Constants: (name, value, where, origin) in definition order.
        let mut consts: Vec<(String, ConstDef, String)> = Vec::new();
        if let Some(c) = constants {
            for import in &c.import {
                match self.export_constants(&import.value) {
                    Some(set) => consts.extend(set.iter().map(|(name, def)| {
                        (
                            name.clone(),
                            def.clone(),
                            format!("import '{}'", import.value),
                        )
                    })),
                    None => self.import_not_found(ImportKind::Constants, import),
                }
            }
            for (name, value, spans) in c.local.iter_spanned() {
                self.check_identifier(name, &spans.name, CompileErrorKind::InvalidConstantName);
                consts.push((
                    name.to_owned(),
                    ConstDef {
                        value: from_json(value),
                        span: spans.value.clone(),
                    },
                    "policy local constants".to_owned(),
                ));
            }
        }
        self.redefinitions(
            policy,
            consts.iter().map(|(n, d, o)| (n, &d.span, o)),
            CompileErrorKind::ConstantRedefined,
            "Constant",
        );
        for (name, def, _) in consts {
            env.constants.insert(name, def.value);
        }

        // Variables.
        let mut vars: Vec<(String, VarDef)> = Vec::new();
        if let Some(v) = variables {
            for import in &v.import {
                match self.export_variables(&import.value) {
                    Some(set) => vars.extend(set.iter().map(|(name, def)| {
                        let mut def = def.clone();
                        def.origin = format!("import '{}'", import.value);
                        (name.clone(), def)
                    })),
                    None => self.import_not_found(ImportKind::Variables, import),
                }
            }
            for (name, text, spans) in v.local.iter_spanned() {
                let def = self.variable(name, text, spans, "policy local variables".to_owned());
                vars.push((name.to_owned(), def));
            }
        }
        for (name, text, spans) in policy.variables.iter_spanned() {
            let origin = "deprecated top-level policy variables".to_owned();
            let def = self.variable(name, text, spans, origin);
            vars.push((name.to_owned(), def));
        }
        self.redefinitions(
            policy,
            vars.iter().map(|(n, d)| (n, &d.span, &d.origin)),
            CompileErrorKind::VariableRedefined,
            "Variable",
        );
        for (name, def) in vars {
            env.variables.insert(name, def);
        }
        self.resolve_variables(&mut env);
        env
    }

    /// Reports names defined more than once: `Variable 'x' has multiple definitions in
    /// import 'a' (file:1:2) and policy local variables (file:3:4)`.
    fn redefinitions<'d>(
        &mut self,
        policy: &Policy,
        defs: impl Iterator<Item = (&'d String, &'d Span, &'d String)>,
        kind: CompileErrorKind,
        what: &str,
    ) {
        let mut order: Vec<&String> = Vec::new();
        let mut places: HashMap<&String, Vec<String>> = HashMap::new();
        for (name, span, origin) in defs {
            let list = places.entry(name).or_default();
            if list.is_empty() {
                order.push(name);
            }
            list.push(format!("{origin} ({span})"));
        }
        for name in order {
            let list = &places[name];
            if list.len() > 1 {
                let message = format!(
                    "{what} '{name}' has multiple definitions in {}",
                    english_list(list)
                );
                self.error(&policy.span, kind, message);
            }
        }
    }

    /// Reports variables referring to undefined names, to themselves or in cycles, and
    /// marks those that must not be inlined.
    fn resolve_variables(&mut self, env: &mut Env) {
        let mut names: Vec<String> = env.variables.keys().cloned().collect();
        names.sort();
        let position: HashMap<&str, usize> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        let mut edges: Vec<Vec<usize>> = vec![Vec::new(); names.len()];
        for (i, name) in names.iter().enumerate() {
            let def = &env.variables[name];
            if def.expr.is_none() {
                env.broken.insert(name.clone());
            }
            for constant in &def.constants {
                if !env.constants.contains_key(constant) {
                    self.errors.push(CompileError {
                        span: def.span.clone(),
                        kind: CompileErrorKind::UndefinedConstant,
                        message: format!(
                            "Undefined constant '{constant}' referenced in variable '{name}'"
                        ),
                    });
                }
            }
            for var in &def.variables {
                if var == name {
                    self.errors.push(CompileError {
                        span: def.span.clone(),
                        kind: CompileErrorKind::CyclicalVariables,
                        message: format!("Variable '{name}' references itself"),
                    });
                    env.broken.insert(name.clone());
                } else if let Some(&j) = position.get(var.as_str()) {
                    edges[i].push(j);
                } else {
                    self.errors.push(CompileError {
                        span: def.span.clone(),
                        kind: CompileErrorKind::UndefinedVariable,
                        message: format!(
                            "Undefined variable '{var}' referenced in variable '{name}'"
                        ),
                    });
                }
            }
        }
        for mut cycle in cycles(&edges) {
            cycle.sort_unstable();
            let parts: Vec<String> = cycle
                .iter()
                .map(|&i| format!("'{}' ({})", names[i], env.variables[&names[i]].span))
                .collect();
            let span = env.variables[&names[cycle[0]]].span.clone();
            self.error(
                &span,
                CompileErrorKind::CyclicalVariables,
                format!("Variables {} form a cycle", english_list(&parts)),
            );
            env.broken.extend(cycle.iter().map(|&i| names[i].clone()));
        }
    }

    /// Compiles one expression against an environment: parse and check errors as
    /// `invalid expression` at the expression, then undefined variables and constants.
    fn expr(&mut self, text: &model::ExprText, env: &Env) -> Option<CompiledExpr> {
        let parsed = match parse_expr(&text.text) {
            Ok(e) => e,
            Err(problems) => {
                self.invalid_expression(text, &text.span, &problems.join(", "));
                return None;
            }
        };
        let mut problems = cel::check::type_problems(&parsed);
        problems.extend(host_index_problems(&parsed));
        if !problems.is_empty() {
            self.invalid_expression(text, &text.span, &problems.join(", "));
            return None;
        }
        let program = match cel::compile(&parsed, env) {
            Ok(p) => p,
            Err(e) => {
                self.invalid_expression(text, &text.span, &e.message);
                return None;
            }
        };
        let (mut variables, mut constants) = (Vec::new(), Vec::new());
        host_refs(&parsed, &mut variables, &mut constants);
        let mut used: Vec<&str> = Vec::new();
        let mut todo: Vec<&str> = Vec::new();
        for var in &variables {
            if env.variables.contains_key(var) {
                todo.push(var);
            } else {
                self.error(
                    &text.span,
                    CompileErrorKind::UndefinedVariable,
                    format!("Undefined variable '{var}'"),
                );
            }
        }
        while let Some(var) = todo.pop() {
            if used.contains(&var) {
                continue;
            }
            used.push(var);
            let def = &env.variables[var];
            for constant in &def.constants {
                if !env.constants.contains_key(constant) {
                    self.error(
                        &def.span,
                        CompileErrorKind::UndefinedConstant,
                        format!("Undefined constant '{constant}'"),
                    );
                }
            }
            todo.extend(
                def.variables
                    .iter()
                    .filter(|v| env.variables.contains_key(*v))
                    .map(String::as_str),
            );
        }
        for constant in &constants {
            if !env.constants.contains_key(constant) {
                self.error(
                    &text.span,
                    CompileErrorKind::UndefinedConstant,
                    format!("Undefined constant '{constant}'"),
                );
            }
        }
        Some(CompiledExpr {
            program,
            plan: Arc::new(crate::cel::inline::inline_host(&parsed, env)),
            source: Arc::from(text.text.as_str()),
            span: text.span.clone(),
        })
    }

    /// A rule condition; `None` (after reporting) when it does not compile. A `script`
    /// condition is an error, never "no condition".
    fn condition(&mut self, c: &model::Condition, env: &Env) -> Option<Condition> {
        match c {
            model::Condition::Match(m) => self.match_block(m, env),
            model::Condition::Script { span, .. } => {
                self.error(
                    span,
                    CompileErrorKind::ScriptCondition,
                    "Unsupported feature",
                );
                None
            }
        }
    }

    fn match_block(&mut self, m: &Match, env: &Env) -> Option<Condition> {
        Some(match m {
            Match::Expr(t) => Condition::Expr(self.expr(t, env)?),
            Match::All(items) => Condition::All(self.match_list(items, env)?),
            Match::Any(items) => Condition::Any(self.match_list(items, env)?),
            Match::None(items) => Condition::None(self.match_list(items, env)?),
        })
    }

    fn match_list(&mut self, items: &[Match], env: &Env) -> Option<Vec<Condition>> {
        let mut ok = true;
        let mut out = Vec::with_capacity(items.len());
        for i in items {
            match self.match_block(i, env) {
                Some(c) => out.push(c),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// The optional condition of a rule: `Err` when it is present but does not compile.
    fn rule_condition(
        &mut self,
        c: Option<&model::Condition>,
        env: &Env,
    ) -> Result<Option<Arc<Condition>>, ()> {
        match c {
            None => Ok(None),
            Some(c) => self.condition(c, env).map(|c| Some(Arc::new(c))).ok_or(()),
        }
    }

    fn output(&mut self, o: Option<&model::Output>, env: &Env) -> Option<Arc<CompiledOutput>> {
        let o = o?;
        let when = o.when.as_ref();
        let activated = when
            .and_then(|w| w.rule_activated.as_ref())
            .or(o.expr.as_ref());
        let not_met = when.and_then(|w| w.condition_not_met.as_ref());
        if activated.is_none() && not_met.is_none() {
            self.error(
                &o.span,
                CompileErrorKind::EmptyOutput,
                "output must have at least one expression",
            );
            return None;
        }
        let out = CompiledOutput {
            rule_activated: activated.and_then(|e| self.expr(e, env)),
            condition_not_met: not_met.and_then(|e| self.expr(e, env)),
        };
        Some(Arc::new(out))
    }

    fn glob(&mut self, pattern: &str, span: &Span) -> Glob {
        match Glob::new(pattern) {
            Ok(g) => g,
            Err(e) => {
                self.error(span, CompileErrorKind::InvalidGlob, e.to_string());
                Glob::Literal(pattern.into())
            }
        }
    }

    /// A derived roles set, compiled once: every definition, used or not (as Cerbos).
    fn derived_role_set(&mut self, name: &str) -> Option<Rc<DerivedRoleSet>> {
        if let Some(done) = self.derived_roles.get(name) {
            return done.clone();
        }
        let fqn = ImportKind::DerivedRoles.fqn(name);
        let compiled = match self.by_fqn.get(&fqn).copied() {
            Some(
                p @ Policy {
                    kind: PolicyKind::DerivedRoles(dr),
                    ..
                },
            ) => {
                let env = self.env(p, dr.variables.as_ref(), dr.constants.as_ref());
                let mut roles = HashMap::new();
                for def in &dr.definitions {
                    let Ok(condition) = self.rule_condition(def.condition.as_ref(), &env) else {
                        roles.insert(def.name.clone(), None);
                        continue;
                    };
                    let role = DerivedRole {
                        name: Arc::from(def.name.as_str()),
                        parent_roles: def
                            .parent_roles
                            .iter()
                            .map(|r| Arc::from(r.as_str()))
                            .collect(),
                        condition,
                    };
                    roles.insert(def.name.clone(), Some(Arc::new(role)));
                }
                Some(Rc::new(DerivedRoleSet {
                    file: p.span.file.clone(),
                    roles,
                }))
            }
            _ => None,
        };
        self.derived_roles.insert(name.to_owned(), compiled.clone());
        compiled
    }
}

/// Fills in what is computed over all compiled policies, or returns the errors.
fn finish(c: Compiler<'_>, mut set: CompiledPolicySet) -> Result<CompiledPolicySet, CompileErrors> {
    // Transitive parent roles per scope: (scope, role, direct parent roles) of every role policy.
    type RoleParents = (Arc<str>, Arc<str>, Vec<Arc<str>>);
    let direct: Vec<RoleParents> = c
        .role_policies
        .iter()
        .map(|rp| {
            (
                Arc::from(rp.scope.as_str()),
                Arc::from(rp.role.as_str()),
                rp.parent_roles
                    .iter()
                    .map(|r| Arc::from(r.as_str()))
                    .collect(),
            )
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

    set.counts = c.counts;
    set.evaluation_keys = c.evaluation_keys.len() as u32;
    set.uses_request = c.uses_request.get();
    set.index_metric_labels();
    match CompileErrors::collect(c.errors) {
        Some(errors) => Err(errors),
        None => Ok(set),
    }
}

/// Compiles a whole store (policies already loaded and parsed, disabled ones included)
/// and the schema store into a policy set, as `cerbos compile` does: the store is
/// indexed first ([`index_policies`]), then every executable policy is compiled with
/// the definitions it imports. Definitions that nothing imports are not compiled (as in
/// Cerbos). Every problem is reported.
pub fn compile_policies(
    policies: &[Policy],
    schemas: SchemaStore,
) -> Result<CompiledPolicySet, CompileErrors> {
    let index = index_policies(policies);
    let mut c = Compiler::new(policies, Mode::Store);
    c.errors.extend(index.compile_errors());
    let mut set = CompiledPolicySet {
        schema_store: Arc::new(schemas),
        ..Default::default()
    };
    for &i in &index.first {
        let p = &policies[i];
        match &p.kind {
            PolicyKind::Resource(rp) => {
                compile_resource(&mut c, &mut set, p, rp, false);
            }
            PolicyKind::Principal(pp) => compile_principal(&mut c, &mut set, p, pp),
            PolicyKind::Role(rp) => compile_role(&mut c, &mut set, p, rp),
            PolicyKind::DerivedRoles(_) => c.counts.derived_roles += 1,
            PolicyKind::ExportVariables(_) => c.counts.export_variables += 1,
            PolicyKind::ExportConstants(_) => c.counts.export_constants += 1,
        }
    }
    finish(c, set)
}

/// Compiles one compilation unit, as Cerbos's compiler does when it is handed files
/// directly: the policy defined in `main_file` (a path as in the policies' spans), its
/// scope ancestors (parent first) and the definitions they import, looked up in
/// `policies`. Nothing else is compiled, and no store-wide check is made.
///
/// As Cerbos, a resource policy whose derived roles or schemas have problems stops the
/// unit there (its rules and the remaining ancestors are not compiled), and the first
/// missing ancestor ends the unit with one `missing policy definition` error for each
/// missing ancestor. Export and derived roles definitions compile to an empty set.
pub(crate) fn compile_unit(
    policies: &[Policy],
    main_file: &str,
    schemas: SchemaStore,
) -> Result<CompiledPolicySet, CompileErrors> {
    let mut c = Compiler::new(policies, Mode::Unit);
    let mut set = CompiledPolicySet {
        schema_store: Arc::new(schemas),
        ..Default::default()
    };
    let Some(main) = policies.iter().find(|p| &*p.span.file == main_file) else {
        c.error(
            &Span::new(main_file, 1, 1),
            CompileErrorKind::MissingPolicyDefinition,
            format!("No policy is defined in {main_file}"),
        );
        return finish(c, set);
    };
    match &main.kind {
        PolicyKind::Resource(_) | PolicyKind::Principal(_) => {
            let required = ancestors(main);
            let chain = std::iter::once(Some(main)).chain(
                required
                    .iter()
                    .map(|(_, fqn)| c.by_fqn.get(fqn).copied())
                    .collect::<Vec<_>>(),
            );
            for entry in chain {
                let Some(p) = entry else {
                    for (_, fqn) in &required {
                        if !c.by_fqn.contains_key(fqn) {
                            c.error(
                                &main.span,
                                CompileErrorKind::MissingPolicyDefinition,
                                format!("Missing ancestor policy {:?}", id::key_of_fqn(fqn)),
                            );
                        }
                    }
                    break;
                };
                let go_on = match &p.kind {
                    PolicyKind::Resource(rp) => compile_resource(&mut c, &mut set, p, rp, true),
                    PolicyKind::Principal(pp) => {
                        compile_principal(&mut c, &mut set, p, pp);
                        true
                    }
                    _ => true,
                };
                if !go_on {
                    break;
                }
            }
        }
        PolicyKind::Role(rp) => compile_role(&mut c, &mut set, main, rp),
        PolicyKind::DerivedRoles(_)
        | PolicyKind::ExportVariables(_)
        | PolicyKind::ExportConstants(_) => {}
    }
    finish(c, set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::load::parse_policies;

    /// Parses `(file, text)` pairs into policies (one per file, as in a store).
    fn policies(files: &[(&str, &str)]) -> Vec<Policy> {
        files
            .iter()
            .flat_map(|(file, text)| parse_policies(text, file).unwrap_or_else(|e| panic!("{e}")))
            .collect()
    }

    fn errors(files: &[(&str, &str)]) -> Vec<String> {
        match compile_policies(&policies(files), SchemaStore::default()) {
            Ok(_) => Vec::new(),
            Err(e) => e
                .errors()
                .iter()
                .map(|e| format!("{}: {}: {}", e.span, e.kind, e.message))
                .collect(),
        }
    }

    const DERIVED: &str = "apiVersion: api.cerbos.dev/v1
derivedRoles:
  name: common
  definitions:
    - name: owner
      parentRoles: [user]
      condition:
        script: input.resource.attr.owner == input.principal.id
";

    const RESOURCE: &str = "apiVersion: api.cerbos.dev/v1
resourcePolicy:
  resource: album
  version: default
  importDerivedRoles: [common]
  rules:
    - actions: [view]
      effect: EFFECT_ALLOW
      derivedRoles: [owner]
";

    #[test]
    fn script_conditions_never_compile() {
        assert_eq!(
            errors(&[("derived.yaml", DERIVED), ("album.yaml", RESOURCE)]),
            [
                "derived.yaml:7:7: scripts in conditions are no longer supported: Unsupported feature"
            ]
        );
        // Not imported by anything: not compiled, as in Cerbos.
        assert!(errors(&[("derived.yaml", DERIVED)]).is_empty());
    }

    #[test]
    fn store_problems_are_reported_before_compiling() {
        let scoped = RESOURCE
            .replace(
                "  version: default\n",
                "  version: default\n  scope: acme.hr\n",
            )
            .replace(
                "importDerivedRoles: [common]",
                "importDerivedRoles: [missing]",
            );
        assert_eq!(
            errors(&[("a.yaml", &scoped), ("b.yaml", &scoped)]),
            [
                "a.yaml:1:11: missing policy definition: Missing ancestor policy \"resource.album.vdefault/acme\"",
                "a.yaml:1:11: missing policy definition: Missing ancestor policy \"resource.album.vdefault\"",
                "a.yaml:6:24: import not found: Derived roles import \"missing\" cannot be found",
                "a.yaml:10:22: unknown derived role: Derived role \"owner\" is not defined in any imports",
                "b.yaml:1:11: duplicate definition: duplicate policy definition: resource.album.vdefault/acme.hr is also defined in a.yaml",
            ]
        );
    }

    #[test]
    fn role_policies_stand_in_for_missing_resource_ancestors() {
        let scoped = RESOURCE
            .replace(
                "  version: default\n",
                "  version: default\n  scope: acme\n",
            )
            .replace("derivedRoles: [owner]", "roles: [user]")
            .replace("  importDerivedRoles: [common]\n", "");
        let role = "apiVersion: api.cerbos.dev/v1
rolePolicy:
  role: boss
  rules:
    - resource: album
      allowActions: [view]
";
        let index_errors = |files: &[(&str, &str)]| {
            let ps = policies(files);
            index_policies(&ps).errors().len()
        };
        assert_eq!(index_errors(&[("a.yaml", &scoped)]), 1);
        assert_eq!(index_errors(&[("a.yaml", &scoped), ("r.yaml", role)]), 0);
    }

    #[test]
    fn conflicting_scope_permissions() {
        let resource = |name: &str, perms: &str| {
            format!(
                "apiVersion: api.cerbos.dev/v1\nresourcePolicy:\n  resource: {name}\n  version: default\n  \
                 scope: acme\n  scopePermissions: {perms}\n  rules: []\n"
            )
        };
        let parents = |name: &str| {
            format!(
                "apiVersion: api.cerbos.dev/v1\nresourcePolicy:\n  resource: {name}\n  version: default\n  rules: []\n"
            )
        };
        let files = [
            ("a.yaml", resource("a", "SCOPE_PERMISSIONS_OVERRIDE_PARENT")),
            ("a0.yaml", parents("a")),
            (
                "b.yaml",
                resource("b", "SCOPE_PERMISSIONS_REQUIRE_PARENTAL_CONSENT_FOR_ALLOWS"),
            ),
            ("b0.yaml", parents("b")),
        ];
        let refs: Vec<(&str, &str)> = files.iter().map(|(f, t)| (*f, t.as_str())).collect();
        assert_eq!(
            errors(&refs),
            [
                "b.yaml:1:11: scope permissions conflict: Policies sharing scope \"acme\" have conflicting scopePermissions: resource.a.vdefault/acme and resource.b.vdefault/acme"
            ]
        );
    }

    #[test]
    fn syntax_errors_as_cerbos_lists_them() {
        assert_eq!(
            parse_expr("a ^^ true").err(),
            Some(vec![
                "Syntax error: token recognition error at: '^'".to_owned(),
                "Syntax error: token recognition error at: '^'".to_owned(),
                "Syntax error: extraneous input 'true' expecting <EOF>".to_owned(),
            ])
        );
        assert_eq!(
            parse_expr("a b c").err(),
            Some(vec![
                "Syntax error: mismatched input 'b' expecting <EOF>".to_owned()
            ])
        );
        assert!(
            parse_expr("a # b").is_err(),
            "an unrecognised character alone fails"
        );
        assert!(parse_expr("a.b == 'c#'").is_ok());
    }

    #[test]
    fn identifiers_and_cycles() {
        assert_eq!(identifier_problem("_a1"), None);
        assert_eq!(
            identifier_problem("in").as_deref(),
            Some("\"in\" is a reserved keyword and can't be used as an identifier")
        );
        assert_eq!(
            identifier_problem("a.b").as_deref(),
            Some("\"a.b\" is not a valid identifier")
        );
        assert_eq!(
            identifier_problem("").as_deref(),
            Some("\"\" is not a valid identifier")
        );
        // 0 -> 1 -> 2 -> 0, 3 -> 3 is not a cycle here (self references are reported apart).
        let mut found = cycles(&[vec![1], vec![2], vec![0, 3], vec![]]);
        found.iter_mut().for_each(|c| c.sort_unstable());
        assert_eq!(found, [vec![0, 1, 2]]);
        let long: Vec<Vec<usize>> = (0..100_000).map(|i| vec![(i + 1) % 100_000]).collect();
        assert_eq!(cycles(&long)[0].len(), 100_000);
    }

    #[test]
    fn variables_are_checked_where_they_are_defined() {
        let policy = "apiVersion: api.cerbos.dev/v1
resourcePolicy:
  resource: album
  version: default
  variables:
    local:
      a: V.b
      b: V.a
      c: C.nope
  rules:
    - actions: [view]
      effect: EFFECT_ALLOW
      roles: [user]
      condition:
        match:
          expr: V.a && V.zzz
";
        assert_eq!(
            errors(&[("p.yaml", policy)]),
            [
                "p.yaml:7:10: cyclical variable definitions: Variables 'a' (p.yaml:7:10) and 'b' (p.yaml:8:10) form a cycle",
                "p.yaml:9:10: undefined constant: Undefined constant 'nope' referenced in variable 'c'",
                "p.yaml:16:11: undefined variable: Undefined variable 'zzz'",
            ]
        );
    }
}
