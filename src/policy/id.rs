//! Policy ids, built in one place as Cerbos's `namer` builds them: sanitised names
//! (`album:photo` -> `album_photo`), policy keys (`resource.album_photo.vdefault/beta`),
//! fully qualified ids (`cerbos.` + key) and scope chains (`beta.eu` -> `beta` -> `""`).
//!
//! Every id of a policy, of an ancestor it needs, of a rule-table row and of a request's
//! policy lookup goes through [`policy_key`], so a kind with `:` names the same policy
//! everywhere.

use std::borrow::Cow;
use std::sync::OnceLock;

/// The prefix of fully qualified ids.
const FQN_PREFIX: &str = "cerbos.";

/// The kinds of scoped (resource, principal, role) policies, as written in their ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ScopedKind {
    /// `resource.<kind>.v<version>[/<scope>]`.
    Resource,
    /// `principal.<id>.v<version>[/<scope>]`.
    Principal,
    /// `role.<role>.v<version>[/<scope>]`.
    Role,
}

impl ScopedKind {
    fn prefix(self) -> &'static str {
        match self {
            Self::Resource => "resource",
            Self::Principal => "principal",
            Self::Role => "role",
        }
    }
}

/// Cerbos's name sanitisation: a name that follows the naming pattern of Cerbos before
/// 0.30 (`album:object`) has its non-word characters replaced by `_` (`album_object`);
/// any other name (`arn:aws:sns:us-east-1:123456789012:topic-a`) is kept as written.
pub(crate) fn sanitize(name: &str) -> Cow<'_, str> {
    static OLD: OnceLock<(regex::Regex, regex::Regex)> = OnceLock::new();
    if !name
        .bytes()
        .any(|b| !(b.is_ascii_alphanumeric() || b == b'_' || b == b'.'))
    {
        return Cow::Borrowed(name);
    }
    let (old, invalid) = OLD.get_or_init(|| {
        (
            regex::Regex::new(r"^[A-Za-z][0-9A-Za-z_@.\-/]*(:[A-Za-z][0-9A-Za-z_@.\-/]*)*$")
                .expect("valid regex"),
            regex::Regex::new(r"[^0-9A-Za-z_.]+").expect("valid regex"),
        )
    });
    if old.is_match(name) {
        invalid.replace_all(name, "_")
    } else {
        Cow::Borrowed(name)
    }
}

/// The policy key of a scoped policy: `resource.album_photo.vdefault/beta` (no scope
/// suffix for the root scope); the name and version are sanitised.
pub(crate) fn policy_key(kind: ScopedKind, name: &str, version: &str, scope: &str) -> String {
    let (name, version) = (sanitize(name), sanitize(version));
    let prefix = kind.prefix();
    if scope.is_empty() {
        format!("{prefix}.{name}.v{version}")
    } else {
        format!("{prefix}.{name}.v{version}/{scope}")
    }
}

/// The fully qualified id of a scoped policy: `cerbos.` + [`policy_key`].
pub(crate) fn policy_fqn(kind: ScopedKind, name: &str, version: &str, scope: &str) -> String {
    format!("{FQN_PREFIX}{}", policy_key(kind, name, version, scope))
}

/// The fully qualified id of a named definition (`derived_roles`, `export_variables`,
/// `export_constants`): `cerbos.<prefix>.<name>`, the name sanitised.
pub(crate) fn definition_fqn(prefix: &str, name: &str) -> String {
    format!("{FQN_PREFIX}{prefix}.{}", sanitize(name))
}

/// The policy key of a fully qualified id: without the `cerbos.` prefix.
pub(crate) fn key_of_fqn(fqn: &str) -> &str {
    fqn.strip_prefix(FQN_PREFIX).unwrap_or(fqn)
}

/// The parent of a scope (`a.b` -> `a`, `a` -> `""`); none for the root scope.
pub(crate) fn parent_scope(scope: &str) -> Option<&str> {
    if scope.is_empty() {
        None
    } else {
        Some(scope.rfind('.').map_or("", |i| &scope[..i]))
    }
}

/// The scopes above `scope`, nearest first, ending with the root `""` (nothing for the
/// root itself).
pub(crate) fn scope_parents(scope: &str) -> impl Iterator<Item = &str> {
    let mut cur = scope;
    std::iter::from_fn(move || {
        let parent = parent_scope(cur)?;
        cur = parent;
        Some(parent)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_follows_cerbos_pre_030_names() {
        assert_eq!(sanitize("album:object"), "album_object");
        assert_eq!(sanitize("a-b/c@d"), "a_b_c_d");
        assert_eq!(sanitize("leave_request"), "leave_request");
        let arn = "arn:aws:sns:us-east-1:123456789012:topic-a";
        assert_eq!(sanitize(arn), arn);
        assert_eq!(sanitize("leave_*"), "leave_*");
    }

    #[test]
    fn keys_sanitise_names_and_versions_in_every_scope() {
        use ScopedKind::*;
        assert_eq!(
            policy_key(Resource, "album:photo", "default", "beta.eu"),
            "resource.album_photo.vdefault/beta.eu"
        );
        assert_eq!(
            policy_fqn(Resource, "album:photo", "default", ""),
            "cerbos.resource.album_photo.vdefault"
        );
        assert_eq!(
            policy_key(Principal, "bob", "v-1", "a"),
            "principal.bob.vv_1/a"
        );
        assert_eq!(policy_key(Role, "x", "default", ""), "role.x.vdefault");
        assert_eq!(
            key_of_fqn("cerbos.resource.a.vdefault"),
            "resource.a.vdefault"
        );
        assert_eq!(
            definition_fqn("derived_roles", "common"),
            "cerbos.derived_roles.common"
        );
    }

    #[test]
    fn scope_parents_walk_to_root() {
        let v: Vec<&str> = scope_parents("a.b.c").collect();
        assert_eq!(v, ["a.b", "a", ""]);
        assert_eq!(scope_parents("").count(), 0);
        let v: Vec<&str> = scope_parents("a").collect();
        assert_eq!(v, [""]);
    }
}
