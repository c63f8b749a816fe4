//! The rules Cerbos enforces when it reads a policy (the policy proto's protovalidate
//! rules and the store-index checks), as [`Violation`]s with protojson paths.

use std::sync::LazyLock;

use regex::Regex;

use super::*;

/// A rule Cerbos enforces when it reads a policy, broken at `path` (a protojson path such
/// as `resourcePolicy.rules[1].derivedRoles[0]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Violation {
    /// Where, as a protojson path.
    pub(crate) path: String,
    /// What is wrong.
    pub(crate) message: String,
    /// Whether Cerbos prefixes the message with the path (protovalidate rules do; the
    /// store-index checks do not).
    pub(crate) qualified: bool,
    /// Whether this is one of the checks Cerbos makes when it indexes a store (rules
    /// without roles, duplicate names, top-level variables in exports), rather than a
    /// rule of the policy proto. Cerbos's compiler, handed files directly, skips them.
    pub(crate) store_check: bool,
}

/// A regular expression of the policy proto: how Cerbos prints it, and an equivalent
/// ASCII-only pattern (Go's `\w` and POSIX classes are ASCII).
struct Pattern {
    shown: &'static str,
    regex: LazyLock<Regex>,
}

impl Pattern {
    fn is_match(&self, s: &str) -> bool {
        self.regex.is_match(s)
    }
}

macro_rules! pattern {
    ($name:ident, $shown:literal, $re:literal) => {
        static $name: Pattern = Pattern {
            shown: $shown,
            regex: LazyLock::new(|| Regex::new($re).unwrap_or_else(|e| panic!("{e}"))),
        };
    };
}

pattern!(KIND_NAME, r"^[^!*?\[\]{}]+$", r"^[^!*?\[\]{}]+$");
pattern!(VERSION, r"^[\w]+$", r"^[0-9A-Z_a-z]+$");
pattern!(ROLE_VERSION, r"^[\w]*$", r"^[0-9A-Z_a-z]*$");
pattern!(
    SCOPE,
    r"^(^$|\.|[0-9a-zA-Z][\w\-]*(\.\w[\w\-]*)*)$",
    r"^(^$|\.|[0-9a-zA-Z][0-9A-Z_a-z\-]*(\.[0-9A-Z_a-z][0-9A-Z_a-z\-]*)*)$"
);
pattern!(IDENT, r"^[\w\-\.]+$", r"^[0-9A-Z_a-z\-.]+$");
pattern!(
    RULE_NAME,
    r"^([[:alpha:]][[:word:]\@\.\-]*)*$",
    r"^([A-Za-z][0-9A-Z_a-z@.\-]*)*$"
);

/// Collects violations while walking a policy.
struct Validator {
    out: Vec<Violation>,
}

impl Validator {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.out.push(Violation {
            path: path.into(),
            message: message.into(),
            qualified: true,
            store_check: false,
        });
    }

    fn push_plain(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.out.push(Violation {
            path: path.into(),
            message: message.into(),
            qualified: false,
            store_check: true,
        });
    }

    fn pattern(&mut self, path: &str, value: &str, pattern: &Pattern) {
        if !pattern.is_match(value) {
            self.push(
                path,
                format!("does not match regex pattern `{}`", pattern.shown),
            );
        }
    }

    fn min_len(&mut self, path: &str, value: &str) {
        if value.is_empty() {
            self.push(path, "must be at least 1 characters");
        }
    }

    fn required_str(&mut self, path: &str, value: &str) {
        if value.is_empty() {
            self.push(path, "value is required");
        }
    }

    fn min_items<T>(&mut self, path: &str, items: &[T]) {
        if items.is_empty() {
            self.push(path, "must contain at least 1 item(s)");
        }
    }

    fn unique<T: AsRef<str>>(&mut self, path: &str, items: &[T]) {
        let mut seen = HashSet::new();
        if !items.iter().all(|i| seen.insert(i.as_ref())) {
            self.push(path, "repeated value must contain unique items");
        }
    }

    /// A list of strings: unique, each non-empty.
    fn names(&mut self, path: &str, items: &[String]) {
        self.unique(path, items);
        for (i, item) in items.iter().enumerate() {
            self.min_len(&format!("{path}[{i}]"), item);
        }
    }

    /// A list of identifiers (imports, derived role references): unique, each matching
    /// [`IDENT`].
    fn idents(&mut self, path: &str, items: &[Spanned<String>]) {
        let values: Vec<&str> = items.iter().map(|i| i.value.as_str()).collect();
        self.unique(path, &values);
        for (i, item) in items.iter().enumerate() {
            self.pattern(&format!("{path}[{i}]"), item, &IDENT);
        }
    }

    fn variables(&mut self, path: &str, v: Option<&Variables>) {
        if let Some(v) = v {
            self.idents(&format!("{path}.import"), &v.import);
        }
    }

    fn constants(&mut self, path: &str, c: Option<&Constants>) {
        if let Some(c) = c {
            self.idents(&format!("{path}.import"), &c.import);
        }
    }

    fn condition(&mut self, path: &str, c: Option<&Condition>) {
        if let Some(Condition::Match(m)) = c {
            self.matches(&format!("{path}.match"), m);
        }
    }

    fn matches(&mut self, path: &str, m: &Match) {
        let (op, items) = match m {
            Match::Expr(_) => return,
            Match::All(items) => ("all", items),
            Match::Any(items) => ("any", items),
            Match::None(items) => ("none", items),
        };
        let of = format!("{path}.{op}.of");
        self.min_items(&of, items);
        for (i, item) in items.iter().enumerate() {
            self.matches(&format!("{of}[{i}]"), item);
        }
    }

    fn rule_name(&mut self, path: &str, name: Option<&String>) {
        if let Some(name) = name {
            self.pattern(&format!("{path}.name"), name, &RULE_NAME);
        }
    }

    fn resource_policy(&mut self, p: &ResourcePolicy) {
        let root = "resourcePolicy";
        self.pattern(&format!("{root}.resource"), &p.resource, &KIND_NAME);
        self.pattern(&format!("{root}.version"), &p.version, &VERSION);
        self.idents(
            &format!("{root}.importDerivedRoles"),
            &p.import_derived_roles,
        );
        let mut names: HashMap<&str, (usize, &Span)> = HashMap::new();
        for (i, rule) in p.rules.iter().enumerate() {
            let path = format!("{root}.rules[{i}]");
            self.min_items(&format!("{path}.actions"), &rule.actions);
            self.names(&format!("{path}.actions"), &rule.actions);
            self.idents(&format!("{path}.derivedRoles"), &rule.derived_roles);
            self.names(&format!("{path}.roles"), &rule.roles);
            self.condition(&format!("{path}.condition"), rule.condition.as_ref());
            self.rule_name(&path, rule.name.as_ref());
            if rule.roles.is_empty() && rule.derived_roles.is_empty() {
                self.push_plain(
                    &path,
                    format!(
                        "rule #{} does not specify any roles or derived roles to match",
                        i + 1
                    ),
                );
            }
            if let Some(name) = &rule.name {
                match names.get(name.as_str()) {
                    Some((j, span)) => self.push_plain(
                        &path,
                        format!(
                            "duplicate rule name {name:?}: rule #{} has the same name as rule #{} defined at {}:{}",
                            i + 1,
                            j + 1,
                            span.line,
                            span.col
                        ),
                    ),
                    None => {
                        names.insert(name, (i, &rule.span));
                    }
                }
            }
        }
        self.pattern(&format!("{root}.scope"), &p.scope, &SCOPE);
        if let Some(s) = &p.schemas {
            for (field, schema) in [
                ("principalSchema", &s.principal_schema),
                ("resourceSchema", &s.resource_schema),
            ] {
                if let Some(schema) = schema {
                    let path = format!("{root}.schemas.{field}");
                    self.required_str(&format!("{path}.ref"), &schema.reference);
                    if let Some(iw) = &schema.ignore_when {
                        let path = format!("{path}.ignoreWhen.actions");
                        self.min_items(&path, &iw.actions);
                        self.names(&path, &iw.actions);
                    }
                }
            }
        }
        self.variables(&format!("{root}.variables"), p.variables.as_ref());
        self.constants(&format!("{root}.constants"), p.constants.as_ref());
    }

    fn principal_policy(&mut self, p: &PrincipalPolicy) {
        let root = "principalPolicy";
        self.pattern(&format!("{root}.principal"), &p.principal, &KIND_NAME);
        self.pattern(&format!("{root}.version"), &p.version, &VERSION);
        for (i, rule) in p.rules.iter().enumerate() {
            let path = format!("{root}.rules[{i}]");
            self.min_len(&format!("{path}.resource"), &rule.resource);
            self.min_items(&format!("{path}.actions"), &rule.actions);
            let mut names: HashMap<&str, (usize, &Span)> = HashMap::new();
            for (j, action) in rule.actions.iter().enumerate() {
                let path = format!("{path}.actions[{j}]");
                self.min_len(&format!("{path}.action"), &action.action);
                self.condition(&format!("{path}.condition"), action.condition.as_ref());
                self.rule_name(&path, action.name.as_ref());
                if let Some(name) = &action.name {
                    match names.get(name.as_str()) {
                        Some((k, span)) => self.push_plain(
                            &path,
                            format!(
                                "duplicate action rule name {name:?}: action rule #{} for resource {:?} has the same name as action rule #{} defined at {}:{}",
                                j + 1,
                                rule.resource,
                                k + 1,
                                span.line,
                                span.col
                            ),
                        ),
                        None => {
                            names.insert(name, (j, &action.span));
                        }
                    }
                }
            }
        }
        self.pattern(&format!("{root}.scope"), &p.scope, &SCOPE);
        self.variables(&format!("{root}.variables"), p.variables.as_ref());
        self.constants(&format!("{root}.constants"), p.constants.as_ref());
    }

    fn role_policy(&mut self, p: &RolePolicy) {
        let root = "rolePolicy";
        if p.role.is_empty() {
            self.required_str(&format!("{root}.role"), &p.role);
        } else {
            self.pattern(&format!("{root}.role"), &p.role, &KIND_NAME);
        }
        self.names(&format!("{root}.parentRoles"), &p.parent_roles);
        self.pattern(&format!("{root}.version"), &p.version, &ROLE_VERSION);
        self.pattern(&format!("{root}.scope"), &p.scope, &SCOPE);
        for (i, rule) in p.rules.iter().enumerate() {
            let path = format!("{root}.rules[{i}]");
            self.min_len(&format!("{path}.resource"), &rule.resource);
            self.min_items(&format!("{path}.allowActions"), &rule.allow_actions);
            self.names(&format!("{path}.allowActions"), &rule.allow_actions);
            self.condition(&format!("{path}.condition"), rule.condition.as_ref());
            self.rule_name(&path, rule.name.as_ref());
        }
        self.variables(&format!("{root}.variables"), p.variables.as_ref());
        self.constants(&format!("{root}.constants"), p.constants.as_ref());
        if p.scope_permissions == Some(ScopePermissions::OverrideParent) {
            self.push(format!("{root}.scopePermissions"), "must be in list [0, 2]");
        }
    }

    fn derived_roles(&mut self, p: &DerivedRoles) {
        let root = "derivedRoles";
        self.min_len(&format!("{root}.name"), &p.name);
        if !p.name.is_empty() {
            self.pattern(&format!("{root}.name"), &p.name, &IDENT);
        }
        if p.definitions.is_empty() {
            self.push(format!("{root}.definitions"), "value is required");
        }
        let mut names: HashMap<&str, (usize, &Span)> = HashMap::new();
        for (i, def) in p.definitions.iter().enumerate() {
            let path = format!("{root}.definitions[{i}]");
            self.pattern(&format!("{path}.name"), &def.name, &IDENT);
            self.min_items(&format!("{path}.parentRoles"), &def.parent_roles);
            self.names(&format!("{path}.parentRoles"), &def.parent_roles);
            self.condition(&format!("{path}.condition"), def.condition.as_ref());
            match names.get(def.name.as_str()) {
                Some((j, span)) => self.push_plain(
                    &path,
                    format!(
                        "duplicate derived role definition {:?}: definition #{} has the same name as definition #{} at {}:{}",
                        def.name,
                        i + 1,
                        j + 1,
                        span.line,
                        span.col
                    ),
                ),
                None => {
                    names.insert(&def.name, (i, &def.span));
                }
            }
        }
        self.variables(&format!("{root}.variables"), p.variables.as_ref());
        self.constants(&format!("{root}.constants"), p.constants.as_ref());
    }

    fn export_name(&mut self, root: &str, name: &str) {
        self.min_len(&format!("{root}.name"), name);
        if !name.is_empty() {
            self.pattern(&format!("{root}.name"), name, &IDENT);
        }
    }
}

impl Policy {
    /// The problems Cerbos reports for this policy when it reads it.
    pub(crate) fn validate(&self) -> Vec<Violation> {
        let mut v = Validator { out: Vec::new() };
        if self.api_version != API_VERSION {
            v.push("apiVersion", format!("must equal `{API_VERSION}`"));
        }
        match &self.kind {
            PolicyKind::Resource(p) => v.resource_policy(p),
            PolicyKind::Principal(p) => v.principal_policy(p),
            PolicyKind::Role(p) => v.role_policy(p),
            PolicyKind::DerivedRoles(p) => v.derived_roles(p),
            PolicyKind::ExportVariables(p) => {
                v.export_name("exportVariables", &p.name);
                if !self.variables.is_empty() {
                    v.push_plain(
                        "variables",
                        "export variables policies do not support the deprecated top-level variables field",
                    );
                }
            }
            PolicyKind::ExportConstants(p) => {
                v.export_name("exportConstants", &p.name);
                if !self.variables.is_empty() {
                    v.push_plain(
                        "variables",
                        "export constants policies do not support the deprecated top-level variables field",
                    );
                }
            }
        }
        v.out
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::policy;
    use super::*;

    #[test]
    fn patterns_match_the_proto_rules() {
        assert!(SCOPE.is_match(""));
        assert!(SCOPE.is_match("acme.hr.uk"));
        assert!(!SCOPE.is_match("¬s"));
        assert!(!SCOPE.is_match("acme..hr"));
        assert!(IDENT.is_match("employee_that_owns_the_record"));
        assert!(!IDENT.is_match(""));
        assert!(RULE_NAME.is_match("public-view"));
        assert!(RULE_NAME.is_match(""));
        assert!(!RULE_NAME.is_match("1st"));
        assert!(KIND_NAME.is_match("arn:aws:sns:us-east-1:123456789012:topic-a"));
        assert!(!KIND_NAME.is_match("album*"));
        assert!(VERSION.is_match("20210210"));
        assert!(!VERSION.is_match("v1.0"));
    }

    #[test]
    fn validation_reports_rules_without_roles() {
        let rp = ResourcePolicy {
            resource: "r".into(),
            version: "default".into(),
            rules: vec![ResourceRule {
                actions: vec!["view".into()],
                derived_roles: vec![],
                roles: vec![],
                condition: None,
                effect: Effect::Allow,
                name: None,
                output: None,
                span: Span::default(),
            }],
            ..Default::default()
        };
        let v = policy(PolicyKind::Resource(rp)).validate();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].path, "resourcePolicy.rules[0]");
        assert!(!v[0].qualified);
        assert_eq!(
            v[0].message,
            "rule #1 does not specify any roles or derived roles to match"
        );
    }
}
