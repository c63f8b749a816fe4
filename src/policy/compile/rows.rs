//! What every kind shares: scope permissions, parental consent, and adding a
//! row to the set and its (version, scope) index.

use super::*;

pub(super) fn scope_permissions(p: Option<model::ScopePermissions>) -> ScopePermissions {
    match p {
        Some(model::ScopePermissions::RequireParentalConsentForAllows) => {
            ScopePermissions::RequireParentalConsentForAllows
        }
        _ => ScopePermissions::OverrideParent,
    }
}

/// Wraps a conditional ALLOW of a parental-consent policy into a DENY when the condition fails.
pub(super) fn parental_consent(
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

pub(super) fn scope_rows<'s>(
    set: &'s mut CompiledPolicySet,
    version: &str,
    scope: &str,
) -> &'s mut ScopeRows {
    set.index
        .entry(Arc::from(version))
        .or_default()
        .entry(Arc::from(scope))
        .or_default()
}

pub(super) fn push_row(set: &mut CompiledPolicySet, row: Row, version: &str) {
    let idx = set.rows.len() as u32;
    let scope = row.scope.clone();
    scope_rows(set, version, &scope).add(idx, &row);
    match row.kind {
        RowKind::Principal => set.principal_scopes.insert(scope),
        RowKind::Resource => set.resource_scopes.insert(scope),
    };
    set.rows.push(row);
}
