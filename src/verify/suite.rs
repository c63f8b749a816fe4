//! The test-suite model (`cerbos.policy.v1.TestSuite` and its parts) and its reader.
//!
//! Principals, resources and aux data stay in their protojson form (`serde_json::Value`,
//! camelCase field names, empty fields left out): they are what a test case prints and
//! what the engine's JSON readers take.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value as Json, json};

use super::compat::{format_timestamp, go_quote, parse_rfc3339};
use super::decode::{Dec, Msg, Problem, map_entry_path, render_problems};
use crate::cel::Timestamp;
use crate::policy::compiled::Effect;
use crate::policy::effect::Refused;
use crate::policy::yaml::{Node, NodeKind, Pos, ScalarValue, build_documents};

static VERSION_PATTERN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new("^[0-9A-Z_a-z]*$").expect("valid regex"));
static SCOPE_PATTERN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(^$|\.|[0-9A-Za-z][\-0-9A-Z_a-z]*(\.[0-9A-Z_a-z][\-0-9A-Z_a-z]*)*)$")
        .expect("valid regex")
});

/// A test suite or fixture file that could not be read: every problem, one per line,
/// each after a line break (`\n5:5 unknown field "policyVursion"`), as Cerbos prints them.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FileError(String);

impl FileError {
    fn new(problems: &[Problem]) -> Self {
        FileError(render_problems(problems))
    }

    #[cfg(test)]
    /// The rendered problems.
    fn message(&self) -> &str {
        &self.0
    }
}

/// Named fixtures in file order.
pub type Named<T> = Vec<(String, T)>;

/// Looks a name up in named fixtures.
pub(crate) fn lookup<'a, T>(items: &'a Named<T>, name: &str) -> Option<&'a T> {
    items.iter().find(|(n, _)| n == name).map(|(_, v)| v)
}

/// `cerbos.policy.v1.TestOptions`: engine settings of a suite or a test table.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct TestOptions {
    /// The clock (`now`).
    pub(crate) now: Option<Timestamp>,
    /// `lenientScopeSearch`.
    pub(crate) lenient_scope_search: bool,
    /// `globals`.
    pub(crate) globals: Map<String, Json>,
    /// `defaultPolicyVersion`.
    pub(crate) default_policy_version: String,
    /// `defaultScope`.
    pub(crate) default_scope: String,
    /// `strictEvaluation`.
    pub(crate) strict_evaluation: bool,
}

impl TestOptions {
    /// The options in protojson form.
    pub fn to_json(&self) -> Json {
        let mut m = Map::new();
        if let Some(now) = &self.now {
            m.insert("now".into(), json!(format_timestamp(now)));
        }
        if self.lenient_scope_search {
            m.insert("lenientScopeSearch".into(), json!(true));
        }
        if !self.globals.is_empty() {
            m.insert("globals".into(), Json::Object(self.globals.clone()));
        }
        if !self.default_policy_version.is_empty() {
            m.insert(
                "defaultPolicyVersion".into(),
                json!(self.default_policy_version),
            );
        }
        if !self.default_scope.is_empty() {
            m.insert("defaultScope".into(), json!(self.default_scope));
        }
        if self.strict_evaluation {
            m.insert("strictEvaluation".into(), json!(true));
        }
        Json::Object(m)
    }
}

/// `cerbos.policy.v1.TestTable.Input`.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct TableInput {
    /// Principal fixture names.
    pub(crate) principals: Vec<String>,
    /// Resource fixture names.
    pub(crate) resources: Vec<String>,
    /// Actions.
    pub(crate) actions: Vec<String>,
    /// Aux data fixture name (empty: none).
    pub(crate) aux_data: String,
    /// Principal group names.
    pub(crate) principal_groups: Vec<String>,
    /// Resource group names.
    pub(crate) resource_groups: Vec<String>,
}

/// One expected output value (`cerbos.engine.v1.OutputEntry` with `src` and `val`).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ExpectedOutput {
    /// The rule that produces it (`resource.kind.vdefault#rule`).
    pub(crate) src: String,
    /// The value.
    pub(crate) val: Json,
}

/// `cerbos.policy.v1.TestTable.OutputExpectations`.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct OutputExpectations {
    /// The action.
    pub(crate) action: String,
    /// The expected outputs.
    pub(crate) expected: Vec<ExpectedOutput>,
}

/// `cerbos.policy.v1.TestTable.Expectation`.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct Expectation {
    /// One principal.
    pub(crate) principal: String,
    /// One resource.
    pub(crate) resource: String,
    /// Expected effects by action, in file order.
    pub(crate) actions: Named<Effect>,
    /// Expected outputs.
    pub(crate) outputs: Vec<OutputExpectations>,
    /// Several principals.
    pub(crate) principals: Vec<String>,
    /// Several resources.
    pub(crate) resources: Vec<String>,
    /// Principal groups.
    pub(crate) principal_groups: Vec<String>,
    /// Resource groups.
    pub(crate) resource_groups: Vec<String>,
}

/// `cerbos.policy.v1.TestTable`: a table of tests (principals x resources x actions).
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct TestTable {
    /// Name.
    pub(crate) name: String,
    /// Description.
    pub(crate) description: String,
    /// Whether the table is skipped.
    pub(crate) skip: bool,
    /// Why.
    pub(crate) skip_reason: String,
    /// The input.
    pub(crate) input: TableInput,
    /// The expectations.
    pub(crate) expected: Vec<Expectation>,
    /// Options (replacing the suite's).
    pub(crate) options: Option<TestOptions>,
}

/// `cerbos.policy.v1.TestSuite`.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct TestSuite {
    /// Name.
    pub(crate) name: String,
    /// Description.
    pub(crate) description: String,
    /// Whether the suite is skipped.
    pub(crate) skip: bool,
    /// Why.
    pub(crate) skip_reason: String,
    /// The test tables.
    pub(crate) tests: Vec<TestTable>,
    /// Inline principals (protojson `cerbos.engine.v1.Principal`).
    pub(crate) principals: Named<Json>,
    /// Inline resources (protojson `cerbos.engine.v1.Resource`).
    pub(crate) resources: Named<Json>,
    /// Inline aux data (protojson `cerbos.engine.v1.AuxData`).
    pub(crate) aux_data: Named<Json>,
    /// Options.
    pub(crate) options: Option<TestOptions>,
    /// Principal groups.
    pub(crate) principal_groups: Named<Vec<String>>,
    /// Resource groups.
    pub(crate) resource_groups: Named<Vec<String>>,
}

/// Parses and validates a test suite (YAML or JSON).
pub fn parse_suite(text: &str) -> Result<TestSuite, FileError> {
    let mut dec = Dec::default();
    let suite = with_document(text, &mut dec, read_suite);
    dec.finish().map_err(|p| FileError::new(&p))?;
    Ok(suite.unwrap_or_default())
}

/// The fixtures of a `testdata/principals.*` file.
pub(crate) struct PrincipalsFile {
    pub(crate) principals: Named<Json>,
    pub(crate) groups: Named<Vec<String>>,
}

/// The fixtures of a `testdata/resources.*` file.
pub(crate) struct ResourcesFile {
    pub(crate) resources: Named<Json>,
    pub(crate) groups: Named<Vec<String>>,
}

/// Parses a principals fixture file.
pub(crate) fn parse_principals_file(text: &str) -> Result<PrincipalsFile, FileError> {
    let mut dec = Dec::default();
    let file = with_document(text, &mut dec, |dec, node| {
        let msg = dec.message(
            node,
            String::new(),
            &["principals", "principalGroups", "$schema"],
        )?;
        let principals = read_named(dec, &msg, "principals", read_principal);
        let groups = read_groups(dec, &msg, "principalGroups", "principals");
        Some(PrincipalsFile { principals, groups })
    });
    dec.finish().map_err(|p| FileError::new(&p))?;
    Ok(file.unwrap_or(PrincipalsFile {
        principals: Vec::new(),
        groups: Vec::new(),
    }))
}

/// Parses a resources fixture file.
pub(crate) fn parse_resources_file(text: &str) -> Result<ResourcesFile, FileError> {
    let mut dec = Dec::default();
    let file = with_document(text, &mut dec, |dec, node| {
        let msg = dec.message(
            node,
            String::new(),
            &["resources", "resourceGroups", "$schema"],
        )?;
        let resources = read_named(dec, &msg, "resources", read_resource);
        let groups = read_groups(dec, &msg, "resourceGroups", "resources");
        Some(ResourcesFile { resources, groups })
    });
    dec.finish().map_err(|p| FileError::new(&p))?;
    Ok(file.unwrap_or(ResourcesFile {
        resources: Vec::new(),
        groups: Vec::new(),
    }))
}

/// Parses an aux data fixture file.
pub(crate) fn parse_aux_data_file(text: &str) -> Result<Named<Json>, FileError> {
    let mut dec = Dec::default();
    let file = with_document(text, &mut dec, |dec, node| {
        let msg = dec.message(node, String::new(), &["auxData", "$schema"])?;
        Some(read_named(dec, &msg, "auxData", read_aux_data))
    });
    dec.finish().map_err(|p| FileError::new(&p))?;
    Ok(file.unwrap_or_default())
}

/// Runs `read` on the single document of a file (an empty file reads as an empty mapping).
fn with_document<T>(
    text: &str,
    dec: &mut Dec,
    read: impl FnOnce(&mut Dec, &Node) -> Option<T>,
) -> Option<T> {
    let invalid = "invalid document: contents are not valid YAML or JSON";
    let docs = match build_documents(text) {
        Ok(docs) => docs,
        Err(e) => {
            dec.parse_error(e.pos, e.message);
            return None;
        }
    };
    let empty = Node {
        kind: NodeKind::Map(Vec::new()),
        pos: Pos { line: 1, col: 1 },
        start: Pos { line: 1, col: 1 },
    };
    let doc = match docs.as_slice() {
        [] => &empty,
        [doc] => doc,
        [_, second, ..] => {
            dec.parse_error(second.pos, "more than one YAML document detected");
            return None;
        }
    };
    if !matches!(doc.kind, NodeKind::Map(_)) {
        dec.parse_error(doc.pos, invalid);
        return None;
    }
    read(dec, doc)
}

fn read_suite(dec: &mut Dec, node: &Node) -> Option<TestSuite> {
    let msg = dec.message(
        node,
        String::new(),
        &[
            "name",
            "description",
            "skip",
            "skipReason",
            "tests",
            "principals",
            "resources",
            "auxData",
            "options",
            "$schema",
            "principalGroups",
            "resourceGroups",
        ],
    )?;
    let name = dec.string(msg.get("name"));
    dec.require_string(&msg, "name", &name);
    let description = dec.string(msg.get("description"));
    let skip = dec.boolean(msg.get("skip"));
    let skip_reason = dec.string(msg.get("skipReason"));
    let tests = read_list(dec, &msg, "tests", read_table);
    dec.require_items(&msg, "tests", tests.len());
    let principals = read_named(dec, &msg, "principals", read_principal);
    let resources = read_named(dec, &msg, "resources", read_resource);
    let aux_data = read_named(dec, &msg, "auxData", read_aux_data);
    let options = msg
        .get("options")
        .and_then(|n| read_options(dec, n, msg.field_path("options")));
    let principal_groups = read_groups(dec, &msg, "principalGroups", "principals");
    let resource_groups = read_groups(dec, &msg, "resourceGroups", "resources");
    Some(TestSuite {
        name,
        description,
        skip,
        skip_reason,
        tests,
        principals,
        resources,
        aux_data,
        options,
        principal_groups,
        resource_groups,
    })
}

/// A repeated message field.
fn read_list<T>(
    dec: &mut Dec,
    msg: &Msg<'_>,
    name: &str,
    read: impl Fn(&mut Dec, &Node, String) -> Option<T>,
) -> Vec<T> {
    let Some(node) = msg.get(name) else {
        return Vec::new();
    };
    let NodeKind::Seq(items) = &node.kind else {
        dec.parse_error(
            node.pos,
            format!("expected sequence got {}", node.type_name()),
        );
        return Vec::new();
    };
    let path = msg.field_path(name);
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| read(dec, item, format!("{path}[{i}]")))
        .collect()
}

/// A map field of messages.
fn read_named<T>(
    dec: &mut Dec,
    msg: &Msg<'_>,
    name: &str,
    read: impl Fn(&mut Dec, &Node, String) -> Option<T>,
) -> Named<T> {
    let path = msg.field_path(name);
    dec.map(msg.get(name))
        .into_iter()
        .filter_map(|(key, node)| {
            let value = read(dec, node, map_entry_path(&path, &key))?;
            Some((key, value))
        })
        .collect()
}

/// A map of fixture groups (`cerbos.policy.v1.TestFixtureGroup.Principals` / `.Resources`).
fn read_groups(
    dec: &mut Dec,
    msg: &Msg<'_>,
    name: &str,
    member_field: &'static str,
) -> Named<Vec<String>> {
    read_named(dec, msg, name, |dec, node, path| {
        let group = dec.message(node, path, &[member_field])?;
        let members = dec.strings(group.get(member_field));
        dec.require_items(&group, member_field, members.len());
        dec.unique_non_empty(&group, member_field, &members);
        Some(members.into_iter().map(|(m, _)| m).collect())
    })
}

/// `cerbos.engine.v1.Principal`.
fn read_principal(dec: &mut Dec, node: &Node, path: String) -> Option<Json> {
    let msg = dec.message(
        node,
        path,
        &["id", "policyVersion", "roles", "attr", "scope"],
    )?;
    let id = dec.string(msg.get("id"));
    dec.require_string(&msg, "id", &id);
    let version = dec.string(msg.get("policyVersion"));
    dec.pattern(&msg, "policyVersion", &version, &VERSION_PATTERN);
    let roles = dec.strings(msg.get("roles"));
    dec.require_items(&msg, "roles", roles.len());
    dec.unique_non_empty(&msg, "roles", &roles);
    let attr = read_attr(dec, &msg);
    let scope = dec.string(msg.get("scope"));
    dec.pattern(&msg, "scope", &scope, &SCOPE_PATTERN);
    let mut out = Map::new();
    out.insert("id".into(), json!(id));
    out.insert(
        "roles".into(),
        json!(roles.into_iter().map(|(r, _)| r).collect::<Vec<_>>()),
    );
    if !attr.is_empty() {
        out.insert("attr".into(), Json::Object(attr));
    }
    if !version.is_empty() {
        out.insert("policyVersion".into(), json!(version));
    }
    if !scope.is_empty() {
        out.insert("scope".into(), json!(scope));
    }
    Some(Json::Object(out))
}

/// `cerbos.engine.v1.Resource`.
fn read_resource(dec: &mut Dec, node: &Node, path: String) -> Option<Json> {
    let msg = dec.message(
        node,
        path,
        &["kind", "policyVersion", "id", "attr", "scope"],
    )?;
    let kind = dec.string(msg.get("kind"));
    dec.require_string(&msg, "kind", &kind);
    let version = dec.string(msg.get("policyVersion"));
    dec.pattern(&msg, "policyVersion", &version, &VERSION_PATTERN);
    let id = dec.string(msg.get("id"));
    dec.require_string(&msg, "id", &id);
    let attr = read_attr(dec, &msg);
    let scope = dec.string(msg.get("scope"));
    dec.pattern(&msg, "scope", &scope, &SCOPE_PATTERN);
    let mut out = Map::new();
    out.insert("kind".into(), json!(kind));
    out.insert("id".into(), json!(id));
    if !attr.is_empty() {
        out.insert("attr".into(), Json::Object(attr));
    }
    if !version.is_empty() {
        out.insert("policyVersion".into(), json!(version));
    }
    if !scope.is_empty() {
        out.insert("scope".into(), json!(scope));
    }
    Some(Json::Object(out))
}

fn read_attr(dec: &mut Dec, msg: &Msg<'_>) -> Map<String, Json> {
    let attr = dec.struct_value(msg.get("attr"));
    if attr.contains_key("") {
        let path = map_entry_path(&msg.field_path("attr"), "");
        dec.violation(
            msg.get("attr").map(|n| n.pos),
            &path,
            "value length must be at least 1 characters",
        );
    }
    attr
}

/// `cerbos.engine.v1.AuxData` with decoded tokens: `{jwt: {claims}}` or
/// `{jwts: {name: {claims: {...}}}}`.
fn read_aux_data(dec: &mut Dec, node: &Node, path: String) -> Option<Json> {
    let msg = dec.message(node, path, &["jwt", "jwts"])?;
    let jwt = dec.struct_value(msg.get("jwt"));
    let jwts_path = msg.field_path("jwts");
    let mut jwts = Map::new();
    for (name, token) in dec.map(msg.get("jwts")) {
        let entry_path = map_entry_path(&jwts_path, &name);
        if name.is_empty() {
            dec.violation(
                Some(token.pos),
                &entry_path,
                "value length must be at least 1 characters",
            );
        }
        if let Some(t) = dec.message(token, entry_path, &["claims"]) {
            let claims = dec.struct_value(t.get("claims"));
            jwts.insert(name, json!({"claims": claims}));
        }
    }
    let mut out = Map::new();
    if !jwt.is_empty() {
        out.insert("jwt".into(), Json::Object(jwt));
    }
    if !jwts.is_empty() {
        out.insert("jwts".into(), Json::Object(jwts));
    }
    Some(Json::Object(out))
}

/// `cerbos.policy.v1.TestOptions`.
fn read_options(dec: &mut Dec, node: &Node, path: String) -> Option<TestOptions> {
    let msg = dec.message(
        node,
        path,
        &[
            "now",
            "lenientScopeSearch",
            "globals",
            "defaultPolicyVersion",
            "defaultScope",
            "strictEvaluation",
        ],
    )?;
    let now = msg.get("now").and_then(|n| {
        let text = dec.string(Some(n));
        match parse_rfc3339(&text) {
            Ok(t) => Some(t),
            Err(e) => {
                dec.parse_error(
                    n.pos,
                    format!("invalid timestamp value {}: {e}", go_quote(&text)),
                );
                None
            }
        }
    });
    Some(TestOptions {
        now,
        lenient_scope_search: dec.boolean(msg.get("lenientScopeSearch")),
        globals: dec.struct_value(msg.get("globals")),
        default_policy_version: dec.string(msg.get("defaultPolicyVersion")),
        default_scope: dec.string(msg.get("defaultScope")),
        strict_evaluation: dec.boolean(msg.get("strictEvaluation")),
    })
}

fn read_table(dec: &mut Dec, node: &Node, path: String) -> Option<TestTable> {
    let msg = dec.message(
        node,
        path,
        &[
            "name",
            "description",
            "skip",
            "skipReason",
            "input",
            "expected",
            "options",
        ],
    )?;
    let name = dec.string(msg.get("name"));
    dec.require_string(&msg, "name", &name);
    let description = dec.string(msg.get("description"));
    let skip = dec.boolean(msg.get("skip"));
    let skip_reason = dec.string(msg.get("skipReason"));
    let input = match msg.get("input") {
        Some(n) => read_input(dec, n, msg.field_path("input")).unwrap_or_default(),
        None => {
            dec.violation(None, &msg.field_path("input"), "value is required");
            TableInput::default()
        }
    };
    let expected = read_list(dec, &msg, "expected", read_expectation);
    dec.require_items(&msg, "expected", expected.len());
    let options = msg
        .get("options")
        .and_then(|n| read_options(dec, n, msg.field_path("options")));
    Some(TestTable {
        name,
        description,
        skip,
        skip_reason,
        input,
        expected,
        options,
    })
}

fn read_input(dec: &mut Dec, node: &Node, path: String) -> Option<TableInput> {
    let msg = dec.message(
        node,
        path,
        &[
            "principals",
            "resources",
            "actions",
            "auxData",
            "principalGroups",
            "resourceGroups",
        ],
    )?;
    let principals = dec.strings(msg.get("principals"));
    dec.unique_non_empty(&msg, "principals", &principals);
    let resources = dec.strings(msg.get("resources"));
    dec.unique_non_empty(&msg, "resources", &resources);
    let actions = dec.strings(msg.get("actions"));
    dec.require_items(&msg, "actions", actions.len());
    dec.unique_non_empty(&msg, "actions", &actions);
    let aux_data = dec.string(msg.get("auxData"));
    let principal_groups = dec.strings(msg.get("principalGroups"));
    dec.unique_non_empty(&msg, "principalGroups", &principal_groups);
    let resource_groups = dec.strings(msg.get("resourceGroups"));
    dec.unique_non_empty(&msg, "resourceGroups", &resource_groups);
    if principals.is_empty() && principal_groups.is_empty() {
        dec.violation(
            Some(node.pos),
            &msg.path,
            "principals or principalGroups must be present",
        );
    }
    if resources.is_empty() && resource_groups.is_empty() {
        dec.violation(
            Some(node.pos),
            &msg.path,
            "resources or resourceGroups must be present",
        );
    }
    let names = |v: Vec<(String, Pos)>| v.into_iter().map(|(s, _)| s).collect();
    Some(TableInput {
        principals: names(principals),
        resources: names(resources),
        actions: names(actions),
        aux_data,
        principal_groups: names(principal_groups),
        resource_groups: names(resource_groups),
    })
}

fn read_effect(dec: &mut Dec, node: &Node, path: &str) -> Option<Effect> {
    let invalid = "must be one of [EFFECT_ALLOW, EFFECT_DENY]";
    let NodeKind::Scalar(s) = &node.kind else {
        dec.parse_error(
            node.pos,
            format!("expected enum value got {}", node.type_name()),
        );
        return None;
    };
    let effect = match s.value {
        ScalarValue::Str => Effect::from_name(&s.text),
        ScalarValue::Int(n) => Effect::from_number(n),
        ScalarValue::Null => Err(Refused::NotAllowed),
        ScalarValue::Bool(_) | ScalarValue::Float(_) => Err(Refused::Unknown),
    };
    match effect {
        Ok(effect) => Some(effect),
        Err(Refused::NotAllowed) => {
            dec.violation(Some(node.pos), path, invalid);
            None
        }
        Err(Refused::Unknown) => {
            dec.parse_error(
                node.pos,
                format!("invalid enum value {}", go_quote(&s.text)),
            );
            None
        }
    }
}

fn read_expectation(dec: &mut Dec, node: &Node, path: String) -> Option<Expectation> {
    let msg = dec.message(
        node,
        path,
        &[
            "principal",
            "resource",
            "actions",
            "outputs",
            "principals",
            "resources",
            "principalGroups",
            "resourceGroups",
        ],
    )?;
    let principal = dec.string(msg.get("principal"));
    let resource = dec.string(msg.get("resource"));
    let actions = read_expected_actions(dec, &msg);
    let outputs = read_list(dec, &msg, "outputs", read_output_expectations);
    let principals = dec.strings(msg.get("principals"));
    dec.unique_non_empty(&msg, "principals", &principals);
    let resources = dec.strings(msg.get("resources"));
    dec.unique_non_empty(&msg, "resources", &resources);
    let principal_groups = dec.strings(msg.get("principalGroups"));
    dec.unique_non_empty(&msg, "principalGroups", &principal_groups);
    let resource_groups = dec.strings(msg.get("resourceGroups"));
    dec.unique_non_empty(&msg, "resourceGroups", &resource_groups);
    let here = Some(node.pos);
    let principal_given = [!principal.is_empty(), !principals.is_empty()];
    one_of_given(
        dec,
        here,
        &msg.path,
        "principal",
        principal_given,
        &principal_groups,
    );
    let resource_given = [!resource.is_empty(), !resources.is_empty()];
    one_of_given(
        dec,
        here,
        &msg.path,
        "resource",
        resource_given,
        &resource_groups,
    );
    let names = |v: Vec<(String, Pos)>| v.into_iter().map(|(s, _)| s).collect();
    Some(Expectation {
        principal,
        resource,
        actions,
        outputs,
        principals: names(principals),
        resources: names(resources),
        principal_groups: names(principal_groups),
        resource_groups: names(resource_groups),
    })
}

/// An expectation's `actions`: action → effect, at least one, none named "".
fn read_expected_actions(dec: &mut Dec, msg: &Msg<'_>) -> Named<Effect> {
    let actions_path = msg.field_path("actions");
    let mut actions = Vec::new();
    for (action, value) in dec.map(msg.get("actions")) {
        let entry_path = map_entry_path(&actions_path, &action);
        if action.is_empty() {
            dec.violation(
                Some(value.pos),
                &entry_path,
                "value length must be at least 1 characters",
            );
        }
        if let Some(effect) = read_effect(dec, value, &entry_path) {
            actions.push((action, effect));
        }
    }
    if msg
        .get("actions")
        .is_none_or(|n| matches!(&n.kind, NodeKind::Map(e) if e.is_empty()))
    {
        dec.require_items(msg, "actions", 0);
    }
    actions
}

/// The `who` (`principal` or `resource`) of an expectation: one of `who`, `whos` and
/// `whoGroups` given (`[who given, whos given]`), and not both `who` and `whos`.
fn one_of_given(
    dec: &mut Dec,
    here: Option<Pos>,
    path: &str,
    who: &str,
    [single, list]: [bool; 2],
    groups: &[(String, Pos)],
) {
    if !single && !list && groups.is_empty() {
        dec.violation(
            here,
            path,
            format!("{who}, {who}s, or {who}Groups must be present"),
        );
    }
    if single && list {
        dec.violation(
            here,
            path,
            format!("{who} and {who}s may not both be present"),
        );
    }
}

fn read_output_expectations(
    dec: &mut Dec,
    node: &Node,
    path: String,
) -> Option<OutputExpectations> {
    let msg = dec.message(node, path, &["action", "expected"])?;
    let action = dec.string(msg.get("action"));
    dec.require_string(&msg, "action", &action);
    let expected = read_list(dec, &msg, "expected", |dec, node, path| {
        let entry = dec.message(node, path, &["src", "val", "action", "error"])?;
        let src = dec.string(entry.get("src"));
        let val = entry.get("val").map_or(Json::Null, Node::to_json);
        Some(ExpectedOutput { src, val })
    });
    dec.require_items(&msg, "expected", expected.len());
    Some(OutputExpectations { action, expected })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_suite() {
        let s = parse_suite(
            "name: S\nprincipals:\n  p: {id: p, roles: [r], policy_version: '1'}\noptions: {now: '2022-08-02T15:00:00Z'}\n\
             tests:\n  - name: t\n    input: {principals: [p], resources: [r], actions: [a]}\n    \
             expected:\n      - {principal: p, resource: r, actions: {a: EFFECT_ALLOW}}\n",
        )
        .unwrap();
        assert_eq!(s.name, "S");
        assert_eq!(
            s.principals[0].1,
            json!({"id": "p", "roles": ["r"], "policyVersion": "1"})
        );
        assert_eq!(
            s.tests[0].expected[0].actions,
            vec![("a".to_owned(), Effect::Allow)]
        );
        assert!(s.options.unwrap().now.is_some());
    }

    #[test]
    fn reports_problems_as_cerbos() {
        assert_eq!(
            parse_suite("x\n").unwrap_err().message(),
            "\n1:1 invalid document: contents are not valid YAML or JSON"
        );
        assert_eq!(
            parse_suite("name: S\n").unwrap_err().message(),
            "\ntests: value is required"
        );
        let err = parse_suite("name: S\noptions:\n  now: blah\ntests: []\n").unwrap_err();
        assert!(
            err.message()
                .starts_with("\n3:8 invalid timestamp value \"blah\": parsing time")
        );
        let err = parse_suite(
            "name: S\ntests:\n  - name: t\n    input: {principals: [p], resources: [r], actions: [a]}\n    expected:\n      - resource: r\n        actions:\n          a: EFFECT_NO_MATCH\n",
        )
        .unwrap_err();
        assert_eq!(
            err.message(),
            "\n8:14 tests[0].expected[0].actions[\"a\"]: must be one of [EFFECT_ALLOW, EFFECT_DENY]\n\
             6:17 tests[0].expected[0]: principal, principals, or principalGroups must be present"
        );
    }
}
