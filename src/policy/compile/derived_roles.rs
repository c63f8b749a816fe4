//! Derived roles: a set compiled once per import, and the roles a resource policy's rules
//! refer to.

use super::*;

impl<'a> Compiler<'a> {
    /// A derived roles set, compiled once: every definition, used or not (as Cerbos).
    pub(super) fn derived_role_set(&mut self, name: &str) -> Option<Rc<DerivedRoleSet>> {
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

/// The derived roles a resource policy's rules refer to, by name, after reporting unknown
/// and ambiguous references (as Cerbos: each unknown name once, at its last reference).
pub(super) fn referenced_derived_roles<'a>(
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
