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

// === Errors ===

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

    /// Sorts by position and drops exact repeats (a definition imported by several
    /// policies reports its problems once); `None` when there are no errors.
    fn collect(mut errors: Vec<CompileError>) -> Option<Self> {
        errors.sort_by(|a, b| a.span.cmp(&b.span));
        let mut seen = HashSet::new();
        errors.retain(|e| seen.insert((e.span.clone(), e.kind, e.message.clone())));
        (!errors.is_empty()).then_some(Self(errors))
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

// === Index ===

/// What an import refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ImportKind {
    /// `importDerivedRoles`: a `derivedRoles` set.
    DerivedRoles,
    /// `variables.import`: an `exportVariables` set.
    Variables,
    /// `constants.import`: an `exportConstants` set.
    Constants,
}

impl ImportKind {
    /// Cerbos's name of the kind, e.g. `derived roles`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DerivedRoles => "derived roles",
            Self::Variables => "variables",
            Self::Constants => "constants",
        }
    }

    /// The fully qualified id of the imported definition.
    fn fqn(self, name: &str) -> String {
        match self {
            Self::DerivedRoles => id::definition_fqn("derived_roles", name),
            Self::Variables => id::definition_fqn("export_variables", name),
            Self::Constants => id::definition_fqn("export_constants", name),
        }
    }

    /// The start of the compiler's "import not found" messages.
    fn title(self) -> &'static str {
        match self {
            Self::DerivedRoles => "Derived roles",
            Self::Variables => "Variables",
            Self::Constants => "Constants",
        }
    }
}

/// A problem found while indexing a store, before anything is compiled: what Cerbos
/// reports as `IndexBuildErrors`. Policies are named by their key, the fully qualified id
/// without `cerbos.` (`resource.leave_request.v20210210/acme`).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum IndexError {
    /// A policy is defined in more than one file; `span` is the later definition.
    DuplicateDefinition {
        /// The later definition (its root mapping).
        span: Span,
        /// The file of the first definition.
        other_file: Arc<str>,
        /// The policy key.
        policy: String,
    },
    /// An import names a definition that no (enabled) policy provides.
    MissingImport {
        /// The import.
        span: Span,
        /// The importing policy's key.
        policy: String,
        /// What is imported.
        kind: ImportKind,
        /// The imported name.
        name: String,
    },
    /// A scoped policy's ancestor (the same policy in a parent scope) does not exist.
    MissingAncestor {
        /// The scoped policy (its root mapping).
        span: Span,
        /// The scoped policy's key.
        policy: String,
        /// The missing ancestor's key.
        ancestor: String,
    },
    /// Resource and principal policies of one scope ask for different scope permissions.
    ScopePermissionsConflict {
        /// The policy that disagrees with the first one of the scope.
        span: Span,
        /// The scope.
        scope: String,
        /// The disagreeing policy's key.
        policy: String,
        /// The key of the first policy of the scope.
        other: String,
    },
}

impl IndexError {
    /// Where the problem is reported.
    pub fn span(&self) -> &Span {
        match self {
            Self::DuplicateDefinition { span, .. }
            | Self::MissingImport { span, .. }
            | Self::MissingAncestor { span, .. }
            | Self::ScopePermissionsConflict { span, .. } => span,
        }
    }

    /// Cerbos's description of a missing import (`cannot find derived roles 'x' imported
    /// by policy resource.y.vdefault`); `None` for the other problems, which Cerbos
    /// describes by their fields only.
    pub fn description(&self) -> Option<String> {
        match self {
            Self::MissingImport {
                policy, kind, name, ..
            } => Some(format!(
                "cannot find {} '{name}' imported by policy {policy}",
                kind.as_str()
            )),
            _ => None,
        }
    }

    fn to_compile_error(&self) -> CompileError {
        let (kind, message) = match self {
            Self::DuplicateDefinition {
                other_file, policy, ..
            } => (
                "duplicate definition",
                format!("duplicate policy definition: {policy} is also defined in {other_file}"),
            ),
            Self::MissingImport { kind, name, .. } => (
                "import not found",
                match kind {
                    ImportKind::DerivedRoles => {
                        format!("{} import {name:?} cannot be found", kind.title())
                    }
                    _ => format!("{} import '{name}' cannot be found", kind.title()),
                },
            ),
            Self::MissingAncestor { ancestor, .. } => (
                "missing policy definition",
                format!("Missing ancestor policy {ancestor:?}"),
            ),
            Self::ScopePermissionsConflict {
                scope,
                policy,
                other,
                ..
            } => (
                "scope permissions conflict",
                format!(
                    "Policies sharing scope {scope:?} have conflicting scopePermissions: {other} and {policy}"
                ),
            ),
        };
        CompileError {
            span: self.span().clone(),
            kind,
            message,
        }
    }
}

/// A disabled policy: loaded but not compiled. Cerbos lists them with the index errors.
#[derive(Clone, Debug, PartialEq)]
pub struct DisabledPolicy {
    /// The policy (its root mapping).
    pub span: Span,
    /// The policy key.
    pub policy: String,
}

/// The policies that Cerbos compiles together for one executable policy.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CompilationUnit {
    /// The policy's fully qualified id.
    pub main: String,
    /// Every definition of the unit: the policy, its ancestors and what they import
    /// (directly or through other imports).
    pub definitions: Vec<String>,
    /// The ancestors, parent first.
    pub ancestors: Vec<String>,
}

/// An indexed store: which policy defines what, and what is wrong with the store as a
/// whole (see [`index_policies`]).
#[derive(Debug)]
pub struct PolicyIndex<'a> {
    policies: &'a [Policy],
    /// The first enabled definition of each fully qualified id.
    by_fqn: HashMap<String, usize>,
    /// The first definitions, in store order.
    first: Vec<usize>,
    errors: Vec<IndexError>,
    disabled: Vec<DisabledPolicy>,
    /// Disabled policies that an enabled policy imports or descends from, with the key of
    /// one policy that needs them.
    needed_disabled: Vec<(usize, String)>,
}

impl<'a> PolicyIndex<'a> {
    /// The problems of the store (empty when it can be compiled).
    pub fn errors(&self) -> &[IndexError] {
        &self.errors
    }

    /// The disabled policies, in store order.
    pub fn disabled(&self) -> &[DisabledPolicy] {
        &self.disabled
    }

    /// The compilation unit of an executable policy, by fully qualified id
    /// (`cerbos.resource.leave_request.v20210210/acme`).
    pub fn compilation_unit(&self, fqn: &str) -> Option<CompilationUnit> {
        let &main = self.by_fqn.get(fqn)?;
        let policy = &self.policies[main];
        if !policy.is_executable() {
            return None;
        }
        let ancestors: Vec<String> = ancestors(policy)
            .into_iter()
            .map(|(_, fqn)| fqn)
            .filter(|a| self.by_fqn.contains_key(a))
            .collect();
        let mut definitions = vec![fqn.to_owned()];
        definitions.extend(ancestors.iter().cloned());
        let mut i = 0;
        while i < definitions.len() {
            let p = &self.policies[self.by_fqn[&definitions[i]]];
            for (kind, import) in imports(p) {
                let dep = kind.fqn(&import.value);
                if self.by_fqn.contains_key(&dep) && !definitions.contains(&dep) {
                    definitions.push(dep);
                }
            }
            i += 1;
        }
        Some(CompilationUnit {
            main: fqn.to_owned(),
            definitions,
            ancestors,
        })
    }

    /// The index errors as compile errors, plus one for each disabled policy that another
    /// policy needs.
    fn compile_errors(&self) -> Vec<CompileError> {
        let mut out: Vec<CompileError> = self
            .errors
            .iter()
            .map(IndexError::to_compile_error)
            .collect();
        for (i, needed_by) in &self.needed_disabled {
            let p = &self.policies[*i];
            out.push(CompileError {
                span: p.root_span.clone(),
                kind: "disabled policy",
                message: format!(
                    "Policy {:?} is disabled, but {needed_by} needs it",
                    id::key_of_fqn(&p.fqn())
                ),
            });
        }
        out
    }
}

/// The ancestors a scoped resource or principal policy needs, parent first: their scopes
/// and fully qualified ids.
fn ancestors(p: &Policy) -> Vec<(&str, String)> {
    let (kind, name, version, scope) = match &p.kind {
        PolicyKind::Resource(rp) => (ScopedKind::Resource, &rp.resource, &rp.version, &rp.scope),
        PolicyKind::Principal(pp) => (ScopedKind::Principal, &pp.principal, &pp.version, &pp.scope),
        _ => return Vec::new(),
    };
    id::scope_parents(scope)
        .map(|s| (s, id::policy_fqn(kind, name, version, s)))
        .collect()
}

/// What a policy imports, with the position of each import.
fn imports(p: &Policy) -> Vec<(ImportKind, &Spanned<String>)> {
    let (derived_roles, variables, constants) = match &p.kind {
        PolicyKind::Resource(rp) => (
            rp.import_derived_roles.as_slice(),
            rp.variables.as_ref(),
            rp.constants.as_ref(),
        ),
        PolicyKind::Principal(pp) => (&[][..], pp.variables.as_ref(), pp.constants.as_ref()),
        PolicyKind::Role(rp) => (&[][..], rp.variables.as_ref(), rp.constants.as_ref()),
        PolicyKind::DerivedRoles(dr) => (&[][..], dr.variables.as_ref(), dr.constants.as_ref()),
        PolicyKind::ExportVariables(_) | PolicyKind::ExportConstants(_) => return Vec::new(),
    };
    let mut out: Vec<(ImportKind, &Spanned<String>)> = derived_roles
        .iter()
        .map(|i| (ImportKind::DerivedRoles, i))
        .collect();
    out.extend(
        variables
            .into_iter()
            .flat_map(|v| &v.import)
            .map(|i| (ImportKind::Variables, i)),
    );
    out.extend(
        constants
            .into_iter()
            .flat_map(|c| &c.import)
            .map(|i| (ImportKind::Constants, i)),
    );
    out
}

/// The scope permissions in effect: unspecified behaves as "override parent".
fn effective_permissions(p: Option<model::ScopePermissions>) -> model::ScopePermissions {
    p.unwrap_or(model::ScopePermissions::OverrideParent)
}

/// Indexes a store, as Cerbos does before it compiles anything: finds policies defined
/// twice, imports of definitions that do not exist (or are disabled), scoped resource and
/// principal policies whose ancestors do not exist, and scopes whose policies ask for
/// different scope permissions.
///
/// As in Cerbos, a resource policy's missing ancestor is not required when a role policy
/// of that scope has a rule for the resource and the resource policy's version is
/// `default`.
pub fn index_policies(policies: &[Policy]) -> PolicyIndex<'_> {
    let mut index = PolicyIndex {
        policies,
        by_fqn: HashMap::new(),
        first: Vec::new(),
        errors: Vec::new(),
        disabled: Vec::new(),
        needed_disabled: Vec::new(),
    };
    let mut disabled_fqns: HashMap<String, usize> = HashMap::new();
    for (i, p) in policies.iter().enumerate() {
        let fqn = p.fqn();
        if p.disabled {
            index.disabled.push(DisabledPolicy {
                span: p.root_span.clone(),
                policy: id::key_of_fqn(&fqn).to_owned(),
            });
            disabled_fqns.entry(fqn).or_insert(i);
            continue;
        }
        match index.by_fqn.get(&fqn) {
            Some(&first) => {
                let other = &policies[first];
                if other.span.file != p.span.file {
                    index.errors.push(IndexError::DuplicateDefinition {
                        span: p.root_span.clone(),
                        other_file: other.span.file.clone(),
                        policy: id::key_of_fqn(&fqn).to_owned(),
                    });
                }
            }
            None => {
                index.by_fqn.insert(fqn, i);
                index.first.push(i);
            }
        }
    }

    // Role policy rules, for the ancestors they stand in for: (scope, resource glob).
    let role_rules: Vec<(&str, Glob)> = index
        .first
        .iter()
        .filter_map(|&i| match &policies[i].kind {
            PolicyKind::Role(rp) => Some(rp),
            _ => None,
        })
        .flat_map(|rp| {
            rp.rules
                .iter()
                .filter_map(|r| Glob::new(&r.resource).ok())
                .map(|g| (rp.scope.as_str(), g))
        })
        .collect();

    let mut needed_disabled: HashMap<usize, String> = HashMap::new();
    let mut scope_perms: HashMap<&str, (model::ScopePermissions, String)> = HashMap::new();
    let mut conflicting: HashSet<&str> = HashSet::new();
    for &i in &index.first {
        let p = &policies[i];
        let key = id::key_of_fqn(&p.fqn()).to_owned();
        for (kind, import) in imports(p) {
            let dep = kind.fqn(&import.value);
            if index.by_fqn.contains_key(&dep) {
                continue;
            }
            if let Some(&d) = disabled_fqns.get(&dep) {
                needed_disabled.entry(d).or_insert_with(|| key.clone());
            }
            index.errors.push(IndexError::MissingImport {
                span: import.span.clone(),
                policy: key.clone(),
                kind,
                name: import.value.clone(),
            });
        }
        let resource = match &p.kind {
            PolicyKind::Resource(rp) => Some(rp),
            _ => None,
        };
        for (ancestor_scope, ancestor) in ancestors(p) {
            if index.by_fqn.contains_key(&ancestor) {
                continue;
            }
            let stands_in = resource.is_some_and(|rp| {
                rp.version == model::DEFAULT_VERSION
                    && role_rules
                        .iter()
                        .any(|(scope, g)| *scope == ancestor_scope && g.matches(&rp.resource))
            });
            if stands_in {
                continue;
            }
            if let Some(&d) = disabled_fqns.get(&ancestor) {
                needed_disabled.entry(d).or_insert_with(|| key.clone());
            }
            index.errors.push(IndexError::MissingAncestor {
                span: p.root_span.clone(),
                policy: key.clone(),
                ancestor: id::key_of_fqn(&ancestor).to_owned(),
            });
        }
        let (scope, perms) = match &p.kind {
            PolicyKind::Resource(rp) => (rp.scope.as_str(), rp.scope_permissions),
            PolicyKind::Principal(pp) => (pp.scope.as_str(), pp.scope_permissions),
            _ => continue,
        };
        let perms = effective_permissions(perms);
        match scope_perms.get(scope) {
            None => {
                scope_perms.insert(scope, (perms, key));
            }
            Some((first, other)) => {
                if *first != perms && conflicting.insert(scope) {
                    index.errors.push(IndexError::ScopePermissionsConflict {
                        span: p.root_span.clone(),
                        scope: scope.to_owned(),
                        policy: key.clone(),
                        other: other.clone(),
                    });
                }
            }
        }
    }
    let mut needed: Vec<(usize, String)> = needed_disabled.into_iter().collect();
    needed.sort();
    index.needed_disabled = needed;
    index
}

// === Names visible to expressions ===

/// A variable definition.
#[derive(Clone, Debug)]
struct VarDef {
    /// The parsed expression; `None` when it does not parse or compile (already reported).
    expr: Option<Arc<Expr>>,
    /// Where the expression is (the definition's value).
    span: Span,
    /// Where the definition comes from, in Cerbos's words (`import 'common'`).
    origin: String,
    /// The variables (`V.x`) the expression refers to.
    variables: Vec<String>,
    /// The constants (`C.x`) the expression refers to.
    constants: Vec<String>,
}

/// A constant definition.
#[derive(Clone, Debug)]
struct ConstDef {
    value: Value,
    /// Where the value is.
    span: Span,
}

/// The names visible to a policy's expressions.
#[derive(Default)]
struct Env {
    variables: HashMap<String, VarDef>,
    /// Variables that are never inlined: they do not compile, refer to themselves or are
    /// part of a cycle (each already reported).
    broken: HashSet<String>,
    constants: HashMap<String, Value>,
    /// Every `V.x` and `C.x` stands for a placeholder: for checking an expression alone.
    placeholders: bool,
    /// Set when an expression compiled in this environment reads `request`.
    uses_request: Rc<Cell<bool>>,
}

/// What an unusable `V.x` or `C.x` compiles to. It only ever appears in expressions of a
/// policy set that has errors, so it never reaches the engine.
fn placeholder() -> HostBinding {
    HostBinding::Value(Value::Null)
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
            "V" | "variables" => Some(Ok(self
                .variables
                .get(field)
                .filter(|_| !self.placeholders && !self.broken.contains(field))
                .and_then(|v| v.expr.clone())
                .map_or_else(placeholder, HostBinding::Expr))),
            "C" | "constants" => Some(Ok(self
                .constants
                .get(field)
                .filter(|_| !self.placeholders)
                .map_or_else(placeholder, |v| HostBinding::Value(v.clone())))),
            _ => None,
        }
    }
}

/// The variables (`V.x`, `variables.x`) and constants (`C.x`, `constants.x`) an
/// expression refers to, each once, in order of appearance. Like Cerbos, this looks at
/// the syntax: a field selected from an identifier named `V`, `C`...
fn host_refs(e: &Expr, variables: &mut Vec<String>, constants: &mut Vec<String>) {
    let push = |list: &mut Vec<String>, name: &str| {
        if !list.iter().any(|n| n == name) {
            list.push(name.to_owned());
        }
    };
    let mut stack = vec![e];
    while let Some(e) = stack.pop() {
        if let ExprKind::Select { operand, field, .. } = &e.kind {
            match operand.as_ident() {
                Some("V" | "variables") => {
                    push(variables, field);
                    continue;
                }
                Some("C" | "constants") => {
                    push(constants, field);
                    continue;
                }
                _ => {}
            }
        }
        stack.extend(e.children().into_iter().rev());
    }
}

/// Type errors Cerbos's type checker finds that our compiler does not: `V`, `C` and `G`
/// (Cerbos's `cerbos.Variables` messages) cannot be indexed, only selected from.
fn host_index_problems(e: &Expr) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![e];
    while let Some(e) = stack.pop() {
        if let ExprKind::Index { operand, index, .. } = &e.kind
            && matches!(
                operand.as_ident(),
                Some("V" | "variables" | "C" | "constants" | "G" | "globals")
            )
        {
            let ty = match &index.kind {
                ExprKind::Literal(Value::String(_)) => "string",
                ExprKind::Literal(Value::Int(_)) => "int",
                ExprKind::Literal(Value::Uint(_)) => "uint",
                ExprKind::Literal(Value::Double(_)) => "double",
                ExprKind::Literal(Value::Bool(_)) => "bool",
                _ => "dyn",
            };
            out.push(format!(
                "found no matching overload for '_[_]' applied to '(cerbos.Variables, {ty})'"
            ));
        }
        stack.extend(e.children().into_iter().rev());
    }
    out
}

/// Parses an expression. On failure, the syntax errors as Cerbos's parser lists them:
/// every character the lexer does not recognise (skipped, as ANTLR's lexer skips them),
/// then the first parse error, with ANTLR's wording for unexpected trailing input.
fn parse_expr(src: &str) -> Result<Expr, Vec<String>> {
    let mut text = src.to_owned();
    let mut problems = Vec::new();
    loop {
        let e = match cel::parse(&text) {
            Ok(e) if problems.is_empty() => return Ok(e),
            Ok(_) => return Err(problems),
            Err(e) => e,
        };
        let message = e
            .message
            .strip_prefix("Syntax error: ")
            .unwrap_or(&e.message);
        let unrecognised = message.starts_with("token recognition error at: ");
        let width = text
            .get(e.pos..)
            .and_then(|rest| rest.chars().next())
            .map(char::len_utf8);
        match width {
            Some(width) if unrecognised => {
                problems.push(format!("Syntax error: {message}"));
                text.replace_range(e.pos..e.pos + width, &" ".repeat(width));
            }
            _ => {
                problems.push(format!(
                    "Syntax error: {}",
                    trailing_input(&text, e.pos, message)
                ));
                return Err(problems);
            }
        }
    }
}

/// ANTLR's message for input left over after a complete expression: `extraneous input 'x'
/// expecting <EOF>` when it is the last token, `mismatched input 'x' expecting <EOF>`
/// otherwise. Other messages are returned as they are.
fn trailing_input<'m>(text: &str, pos: usize, message: &'m str) -> std::borrow::Cow<'m, str> {
    let token = message
        .strip_prefix("mismatched input '")
        .and_then(|t| t.strip_suffix('\''));
    let Some(token) = token else {
        return message.into();
    };
    let complete_before = text.get(..pos).is_some_and(|head| cel::parse(head).is_ok());
    if !complete_before {
        return message.into();
    }
    let last = text
        .get(pos + token.len()..)
        .is_some_and(|rest| rest.trim().is_empty());
    if last {
        format!("extraneous input '{token}' expecting <EOF>").into()
    } else {
        format!("mismatched input '{token}' expecting <EOF>").into()
    }
}

/// Why a variable or constant name is not a CEL identifier, in Cerbos's words.
fn identifier_problem(name: &str) -> Option<String> {
    if matches!(name, "false" | "in" | "null" | "true") {
        return Some(format!(
            "{name:?} is a reserved keyword and can't be used as an identifier"
        ));
    }
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric());
    (!valid).then(|| format!("{name:?} is not a valid identifier"))
}

/// The strongly connected components with more than one member of a graph given as
/// adjacency lists (Tarjan's algorithm, without recursion).
fn cycles(edges: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let n = edges.len();
    let mut index = vec![usize::MAX; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut next = 0;
    let mut out = Vec::new();
    for root in 0..n {
        if index[root] != usize::MAX {
            continue;
        }
        // (node, next edge to follow)
        let mut work = vec![(root, 0usize)];
        index[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&mut (v, ref mut e)) = work.last_mut() {
            if let Some(&w) = edges[v].get(*e) {
                *e += 1;
                if index[w] == usize::MAX {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    work.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                let mut component = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    out.push(component);
                }
            }
        }
    }
    out
}

/// `a`, `a and b`, `a, b, and c`.
fn english_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [a, b] => format!("{a} and {b}"),
        [init @ .., last] => format!("{}, and {last}", init.join(", ")),
    }
}

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
                "import not found",
                format!("{} import {name} cannot be found", kind.title()),
            );
        }
    }

    fn check_identifier(&mut self, name: &str, span: &Span, kind: &'static str) {
        if let Some(problem) = identifier_problem(name) {
            self.error(span, kind, problem);
        }
    }

    fn invalid_expression(&mut self, text: &model::ExprText, span: &Span, problems: &str) {
        self.error(
            span,
            "invalid expression",
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
        let mut problems = cel::check::field_problems(&parsed);
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
        self.check_identifier(name, &spans.name, "invalid variable name");
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
                    self.check_identifier(constant, &spans.name, "invalid constant name");
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
                self.check_identifier(name, &spans.name, "invalid constant name");
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
            "constant redefined",
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
            "variable redefined",
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
        kind: &'static str,
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
                        kind: "undefined constant",
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
                        kind: "cyclical variable definitions",
                        message: format!("Variable '{name}' references itself"),
                    });
                    env.broken.insert(name.clone());
                } else if let Some(&j) = position.get(var.as_str()) {
                    edges[i].push(j);
                } else {
                    self.errors.push(CompileError {
                        span: def.span.clone(),
                        kind: "undefined variable",
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
                "cyclical variable definitions",
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
        let mut problems = cel::check::field_problems(&parsed);
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
                    "undefined variable",
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
                        "undefined constant",
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
                    "undefined constant",
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
                    "scripts in conditions are no longer supported",
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
                "empty output",
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
                self.error(span, "invalid glob", e.to_string());
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

// === Policies ===

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
            "unknown derived role",
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
            "ambiguous derived role",
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
fn compile_resource<'a>(
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
                "invalid resource rule",
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

fn compile_principal<'a>(
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

fn compile_role<'a>(
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
pub fn compile_unit(
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
            "missing policy definition",
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
                                "missing policy definition",
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
