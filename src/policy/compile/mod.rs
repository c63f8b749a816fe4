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
    PolicyCounts, PolicySchemas, Row, RowKind, SLOT_GLOBALS, SLOT_PRINCIPAL, SLOT_PRINCIPAL_ATTR,
    SLOT_REQUEST, SLOT_RESOURCE, SLOT_RESOURCE_ATTR, SLOT_RUNTIME, SchemaRef, ScopePermissions,
    ScopeRows,
};
use super::id::{self, ScopedKind};
use super::model::{self, Match, Policy, PolicyKind};
use super::yaml::span::{Span, Spanned};
use crate::cel::{self, HostBinding, HostScope, Value, ast::Expr, ast::ExprKind, from_json};
use crate::jsonschema::SchemaStore;

mod derived_roles;
mod env;
mod errors;
mod expr;
mod index;
mod principal;
mod resource;
mod role;
mod rows;
mod variables;

use env::{
    ConstDef, Env, VarDef, cycles, english_list, host_index_problems, host_refs,
    identifier_problem, parse_expr,
};
pub use errors::{CompileError, CompileErrorKind, CompileErrors};
use index::ancestors;
pub use index::{
    CompilationUnit, DisabledPolicy, ImportKind, IndexError, PolicyIndex, index_policies,
};
use principal::compile_principal;
use resource::compile_resource;
use role::compile_role;

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
    uses_runtime: Rc<Cell<bool>>,
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
            uses_runtime: Rc::new(Cell::new(false)),
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
    set.uses_runtime = c.uses_runtime.get();
    set.index_metric_labels();
    match errors::collect(c.errors) {
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
