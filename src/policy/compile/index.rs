//! The store index: every policy by id, imports, scope ancestors and the
//! store-wide checks Cerbos makes before compiling ([`IndexError`]).

use super::*;

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
    pub(super) fn fqn(self, name: &str) -> String {
        match self {
            Self::DerivedRoles => id::definition_fqn("derived_roles", name),
            Self::Variables => id::definition_fqn("export_variables", name),
            Self::Constants => id::definition_fqn("export_constants", name),
        }
    }

    /// The start of the compiler's CompileErrorKind::ImportNotFound messages.
    pub(super) fn title(self) -> &'static str {
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
    fn span(&self) -> &Span {
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

    pub(super) fn to_compile_error(&self) -> CompileError {
        let (kind, message) = match self {
            Self::DuplicateDefinition {
                other_file, policy, ..
            } => (
                CompileErrorKind::DuplicateDefinition,
                format!("duplicate policy definition: {policy} is also defined in {other_file}"),
            ),
            Self::MissingImport { kind, name, .. } => (
                CompileErrorKind::ImportNotFound,
                match kind {
                    ImportKind::DerivedRoles => {
                        format!("{} import {name:?} cannot be found", kind.title())
                    }
                    _ => format!("{} import '{name}' cannot be found", kind.title()),
                },
            ),
            Self::MissingAncestor { ancestor, .. } => (
                CompileErrorKind::MissingPolicyDefinition,
                format!("Missing ancestor policy {ancestor:?}"),
            ),
            Self::ScopePermissionsConflict {
                scope,
                policy,
                other,
                ..
            } => (
                CompileErrorKind::ScopePermissionsConflict,
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
    main: String,
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
    pub(super) policies: &'a [Policy],
    /// The first enabled definition of each fully qualified id.
    pub(super) by_fqn: HashMap<String, usize>,
    /// The first definitions, in store order.
    pub(super) first: Vec<usize>,
    pub(super) errors: Vec<IndexError>,
    pub(super) disabled: Vec<DisabledPolicy>,
    /// Disabled policies that an enabled policy imports or descends from, with the key of
    /// one policy that needs them.
    pub(super) needed_disabled: Vec<(usize, String)>,
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
    pub(super) fn compile_errors(&self) -> Vec<CompileError> {
        let mut out: Vec<CompileError> = self
            .errors
            .iter()
            .map(IndexError::to_compile_error)
            .collect();
        for (i, needed_by) in &self.needed_disabled {
            let p = &self.policies[*i];
            out.push(CompileError {
                span: p.root_span.clone(),
                kind: CompileErrorKind::DisabledPolicy,
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
pub(super) fn ancestors(p: &Policy) -> Vec<(&str, String)> {
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
    let (mut index, disabled_fqns) = first_definitions(policies);
    let role_rules = role_rule_globs(&index);
    let mut references = References {
        by_fqn: &index.by_fqn,
        disabled_fqns: &disabled_fqns,
        role_rules: &role_rules,
        needed_disabled: HashMap::new(),
        errors: Vec::new(),
    };
    let mut scope_perms: HashMap<&str, (model::ScopePermissions, String)> = HashMap::new();
    let mut conflicting: HashSet<&str> = HashSet::new();
    for &i in &index.first {
        let p = &policies[i];
        let key = id::key_of_fqn(&p.fqn()).to_owned();
        references.check(p, &key);
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
                    references
                        .errors
                        .push(IndexError::ScopePermissionsConflict {
                            span: p.root_span.clone(),
                            scope: scope.to_owned(),
                            policy: key.clone(),
                            other: other.clone(),
                        });
                }
            }
        }
    }
    let mut needed: Vec<(usize, String)> = references.needed_disabled.into_iter().collect();
    needed.sort();
    index.errors.extend(references.errors);
    index.needed_disabled = needed;
    index
}

/// The index of the enabled definitions (the first of duplicates, a duplicate in
/// another file reported), and the disabled ones by fully qualified id.
fn first_definitions(policies: &[Policy]) -> (PolicyIndex<'_>, HashMap<String, usize>) {
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
    (index, disabled_fqns)
}

/// Role policy rules, for the ancestors they stand in for: (scope, resource glob).
fn role_rule_globs<'p>(index: &PolicyIndex<'p>) -> Vec<(&'p str, Glob)> {
    let policies = index.policies;
    index
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
        .collect()
}

/// Checks that what each definition refers to exists: imports and scope ancestors.
struct References<'i, 'p> {
    by_fqn: &'i HashMap<String, usize>,
    disabled_fqns: &'i HashMap<String, usize>,
    role_rules: &'i [(&'p str, Glob)],
    /// Disabled definitions something needs, with the first policy that needs each.
    needed_disabled: HashMap<usize, String>,
    errors: Vec<IndexError>,
}

impl References<'_, '_> {
    /// Reports the missing imports and scope ancestors of `p` (named `key`); a missing
    /// ancestor a role policy rule stands in for is not missing.
    fn check(&mut self, p: &Policy, key: &str) {
        for (kind, import) in imports(p) {
            let dep = kind.fqn(&import.value);
            if self.by_fqn.contains_key(&dep) {
                continue;
            }
            self.note_disabled(&dep, key);
            self.errors.push(IndexError::MissingImport {
                span: import.span.clone(),
                policy: key.to_owned(),
                kind,
                name: import.value.clone(),
            });
        }
        let resource = match &p.kind {
            PolicyKind::Resource(rp) => Some(rp),
            _ => None,
        };
        for (ancestor_scope, ancestor) in ancestors(p) {
            if self.by_fqn.contains_key(&ancestor) {
                continue;
            }
            let stands_in = resource.is_some_and(|rp| {
                rp.version == model::DEFAULT_VERSION
                    && self
                        .role_rules
                        .iter()
                        .any(|(scope, g)| *scope == ancestor_scope && g.matches(&rp.resource))
            });
            if stands_in {
                continue;
            }
            self.note_disabled(&ancestor, key);
            self.errors.push(IndexError::MissingAncestor {
                span: p.root_span.clone(),
                policy: key.to_owned(),
                ancestor: id::key_of_fqn(&ancestor).to_owned(),
            });
        }
    }

    fn note_disabled(&mut self, fqn: &str, key: &str) {
        if let Some(&d) = self.disabled_fqns.get(fqn) {
            self.needed_disabled
                .entry(d)
                .or_insert_with(|| key.to_owned());
        }
    }
}
