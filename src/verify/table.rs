//! Expanding test tables into single tests, as Cerbos does: every input principal x
//! every input resource, with the table's actions. A pair without an expectation expects
//! `EFFECT_DENY` for every action; an action an expectation leaves out expects
//! `EFFECT_DENY` too.

use serde_json::{Map, Value as Json, json};

use super::compat::{go_quote, proto_value_eq};
use super::fixture::TestFixture;
use super::suite::{Expectation, Named, TableInput, TestOptions, TestSuite, TestTable, lookup};
use crate::policy::compiled::Effect;

/// The name of a single test (`cerbos.policy.v1.Test.TestName`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TestName {
    /// The table's name.
    pub(crate) test_table_name: String,
    /// The principal fixture's name.
    pub(crate) principal_key: String,
    /// The resource fixture's name.
    pub(crate) resource_key: String,
}

impl TestName {
    /// The name in protobuf text form, which test-name filters (`--run`) match against
    /// (after the suite name and a `/`).
    pub(crate) fn to_text(&self) -> String {
        format!(
            "test_table_name:{} principal_key:{} resource_key:{}",
            go_quote(&self.test_table_name),
            go_quote(&self.principal_key),
            go_quote(&self.resource_key)
        )
    }
}

/// A single test (`cerbos.policy.v1.Test`): one principal, one resource, the table's actions.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct Test {
    /// The name.
    pub(crate) name: TestName,
    /// The table's description.
    description: String,
    /// Whether the table is skipped.
    pub(crate) skip: bool,
    /// Why.
    pub(crate) skip_reason: String,
    /// The principal (protojson `cerbos.engine.v1.Principal`).
    pub(crate) principal: Json,
    /// The resource (protojson `cerbos.engine.v1.Resource`).
    pub(crate) resource: Json,
    /// The actions.
    pub(crate) actions: Vec<String>,
    /// The aux data (protojson `cerbos.engine.v1.AuxData`), if any.
    pub(crate) aux_data: Option<Json>,
    /// Expected effects by action (an action left out expects `EFFECT_DENY`).
    pub(crate) expected: Named<Effect>,
    /// Expected outputs: by action, the values by `src`.
    pub(crate) expected_outputs: Named<Named<Json>>,
    /// The options in force (the table's, else the suite's).
    pub(crate) options: Option<TestOptions>,
}

impl Test {
    /// The test in protojson form.
    pub fn to_json(&self) -> Json {
        let mut out = Map::new();
        out.insert(
            "name".into(),
            json!({
                "testTableName": self.name.test_table_name,
                "principalKey": self.name.principal_key,
                "resourceKey": self.name.resource_key,
            }),
        );
        if !self.description.is_empty() {
            out.insert("description".into(), json!(self.description));
        }
        if self.skip {
            out.insert("skip".into(), json!(true));
        }
        if !self.skip_reason.is_empty() {
            out.insert("skipReason".into(), json!(self.skip_reason));
        }
        let mut input = Map::new();
        input.insert("principal".into(), self.principal.clone());
        input.insert("resource".into(), self.resource.clone());
        input.insert("actions".into(), json!(self.actions));
        if let Some(aux) = &self.aux_data {
            input.insert("auxData".into(), aux.clone());
        }
        out.insert("input".into(), Json::Object(input));
        let expected: Map<String, Json> = self
            .expected
            .iter()
            .map(|(a, e)| (a.clone(), json!(e.as_str())))
            .collect();
        out.insert("expected".into(), Json::Object(expected));
        if let Some(options) = &self.options {
            out.insert("options".into(), options.to_json());
        }
        if !self.expected_outputs.is_empty() {
            let outputs: Map<String, Json> = self
                .expected_outputs
                .iter()
                .map(|(action, entries)| {
                    let entries: Map<String, Json> = entries.iter().cloned().collect();
                    (action.clone(), json!({ "entries": entries }))
                })
                .collect();
            out.insert("expectedOutputs".into(), Json::Object(outputs));
        }
        Json::Object(out)
    }
}

/// A test table that cannot be expanded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid test {}: {message}", go_quote(table))]
pub struct ExpandError {
    table: String,
    message: String,
}

/// Where fixtures are looked up: the suite first, then the shared `testdata` fixtures.
#[derive(Clone, Copy)]
pub(crate) struct Fixtures<'a> {
    pub(crate) suite: &'a TestSuite,
    pub(crate) shared: Option<&'a TestFixture>,
}

impl<'a> Fixtures<'a> {
    pub(crate) fn principal(&self, name: &str) -> Result<&'a Json, String> {
        lookup(&self.suite.principals, name)
            .or_else(|| self.shared.and_then(|f| f.principal(name)))
            .ok_or_else(|| format!("principal {} not found", go_quote(name)))
    }

    pub(crate) fn resource(&self, name: &str) -> Result<&'a Json, String> {
        lookup(&self.suite.resources, name)
            .or_else(|| self.shared.and_then(|f| f.resource(name)))
            .ok_or_else(|| format!("resource {} not found", go_quote(name)))
    }

    fn aux_data(&self, name: &str) -> Result<Option<&'a Json>, String> {
        if name.is_empty() {
            return Ok(None);
        }
        lookup(&self.suite.aux_data, name)
            .or_else(|| self.shared.and_then(|f| f.aux_data(name)))
            .map(Some)
            .ok_or_else(|| format!("auxData {} not found", go_quote(name)))
    }

    fn principal_group(&self, name: &str) -> Result<&'a [String], String> {
        lookup(&self.suite.principal_groups, name)
            .map(Vec::as_slice)
            .or_else(|| self.shared.and_then(|f| f.principal_group(name)))
            .ok_or_else(|| format!("principal group {} not found", go_quote(name)))
    }

    fn resource_group(&self, name: &str) -> Result<&'a [String], String> {
        lookup(&self.suite.resource_groups, name)
            .map(Vec::as_slice)
            .or_else(|| self.shared.and_then(|f| f.resource_group(name)))
            // Cerbos words this error the same way as for principal groups.
            .ok_or_else(|| format!("principal group {} not found", go_quote(name)))
    }
}

/// Expands every table of a suite into single tests, in table order, then principal
/// order, then resource order. `fixture` holds the shared fixtures of the suite's
/// `testdata` directory, if any.
pub fn expand_tests(
    suite: &TestSuite,
    fixture: Option<&TestFixture>,
) -> Result<Vec<Test>, ExpandError> {
    let fixtures = Fixtures {
        suite,
        shared: fixture,
    };
    let mut tests = Vec::new();
    for table in &suite.tests {
        let expanded = expand_table(fixtures, table).map_err(|message| ExpandError {
            table: table.name.clone(),
            message,
        })?;
        tests.extend(expanded);
    }
    Ok(tests)
}

/// What one (principal, resource) pair is expected to do.
#[derive(Clone, Debug, Default)]
struct PairExpectation {
    actions: Named<Effect>,
    outputs: Named<Named<Json>>,
}

/// The names given directly (`one` replaces `many`), then the members of the groups.
fn collect<'a>(
    one: &str,
    many: &[String],
    groups: &[String],
    group: impl Fn(&str) -> Result<&'a [String], String>,
) -> Result<Vec<String>, String> {
    let mut names: Vec<String> = if one.is_empty() {
        many.to_vec()
    } else {
        vec![one.to_owned()]
    };
    for g in groups {
        for member in group(g)? {
            if !names.contains(member) {
                names.push(member.clone());
            }
        }
    }
    Ok(names)
}

/// An expectation's outputs: by action, the values by `src` (later entries win).
fn output_expectations(e: &Expectation) -> Named<Named<Json>> {
    let mut out: Named<Named<Json>> = Vec::new();
    for o in &e.outputs {
        let mut entries: Named<Json> = Vec::new();
        for entry in &o.expected {
            set(&mut entries, &entry.src, entry.val.clone());
        }
        set(&mut out, &o.action, entries);
    }
    out
}

fn set<T>(items: &mut Named<T>, key: &str, value: T) {
    match items.iter_mut().find(|(k, _)| k == key) {
        Some(slot) => slot.1 = value,
        None => items.push((key.to_owned(), value)),
    }
}

fn merge(
    key: &(String, String),
    target: &mut PairExpectation,
    actions: &Named<Effect>,
    outputs: &Named<Named<Json>>,
) -> Result<(), String> {
    let (principal, resource) = key;
    for (action, effect) in actions {
        match lookup(&target.actions, action) {
            Some(old) if old != effect => {
                return Err(format!(
                    "found inconsistent expectations for principal {} performing action {} on resource {}",
                    go_quote(principal),
                    go_quote(action),
                    go_quote(resource)
                ));
            }
            Some(_) => {}
            None => target.actions.push((action.clone(), *effect)),
        }
    }
    for (action, entries) in outputs {
        if lookup(&target.outputs, action).is_none() {
            target.outputs.push((action.clone(), Vec::new()));
        }
        let Some((_, target_entries)) = target.outputs.iter_mut().find(|(a, _)| a == action) else {
            continue;
        };
        for (src, val) in entries {
            match lookup(target_entries, src) {
                Some(old) if !proto_value_eq(old, val) => {
                    return Err(format!(
                        "found inconsistent expectations for output {} from principal {} performing action {} on resource {}",
                        go_quote(src),
                        go_quote(principal),
                        go_quote(action),
                        go_quote(resource)
                    ));
                }
                Some(_) => {}
                None => target_entries.push((src.clone(), val.clone())),
            }
        }
    }
    Ok(())
}

/// A test table as its tests: one per (principal, resource) pair of the input, expecting
/// what the table's expectations say for the pair and `EFFECT_DENY` otherwise.
fn expand_table(fixtures: Fixtures<'_>, table: &TestTable) -> Result<Vec<Test>, String> {
    let input = &table.input;
    let expectations = pair_expectations(fixtures, table)?;
    let matrix = expectation_matrix(fixtures, input, expectations)?;
    let options = table
        .options
        .clone()
        .or_else(|| fixtures.suite.options.clone());
    matrix
        .into_iter()
        .map(|((p, r), expected)| {
            let principal = fixtures.principal(&p)?.clone();
            let resource = fixtures.resource(&r)?.clone();
            let aux_data = fixtures.aux_data(&input.aux_data)?.cloned();
            Ok(Test {
                name: TestName {
                    test_table_name: table.name.clone(),
                    principal_key: p,
                    resource_key: r,
                },
                description: table.description.clone(),
                skip: table.skip,
                skip_reason: table.skip_reason.clone(),
                principal,
                resource,
                actions: input.actions.clone(),
                aux_data,
                expected: expected.actions,
                expected_outputs: expected.outputs,
                options: options.clone(),
            })
        })
        .collect()
}

/// (Principal, resource) pair key.
type PairKey = (String, String);

/// The table's expectations, merged per (principal, resource) pair, in order of first
/// mention; errors for actions that are not in the input.
fn pair_expectations(
    fixtures: Fixtures<'_>,
    table: &TestTable,
) -> Result<Vec<(PairKey, PairExpectation)>, String> {
    let input = &table.input;
    let is_input_action = |a: &str| input.actions.iter().any(|x| x == a);
    let mut expectations: Vec<(PairKey, PairExpectation)> = Vec::new();
    for e in &table.expected {
        let outputs = output_expectations(e);
        let unreachable: Vec<&str> = outputs
            .iter()
            .map(|(a, _)| a.as_str())
            .filter(|a| !is_input_action(a))
            .collect();
        if !unreachable.is_empty() {
            return Err(format!(
                "found output expectations for actions that are not in the input actions list: [{}]",
                unreachable.join(",")
            ));
        }
        let principals = collect(&e.principal, &e.principals, &e.principal_groups, |g| {
            fixtures.principal_group(g)
        })?;
        let resources = collect(&e.resource, &e.resources, &e.resource_groups, |g| {
            fixtures.resource_group(g)
        })?;
        for p in &principals {
            for r in &resources {
                let mut extra: Vec<&str> = e
                    .actions
                    .iter()
                    .map(|(a, _)| a.as_str())
                    .filter(|a| !is_input_action(a))
                    .collect();
                if !extra.is_empty() {
                    extra.sort_unstable();
                    return Err(format!(
                        "found expectations for actions that do not exist in the input actions list: [{}]",
                        extra.join(",")
                    ));
                }
                let key = (p.clone(), r.clone());
                let idx = match expectations.iter().position(|(k, _)| *k == key) {
                    Some(i) => i,
                    None => {
                        expectations.push((key.clone(), PairExpectation::default()));
                        expectations.len() - 1
                    }
                };
                merge(&key, &mut expectations[idx].1, &e.actions, &outputs)?;
            }
        }
    }
    Ok(expectations)
}

/// Every (principal, resource) pair of the input with its expectation (all actions denied
/// when none is given); an error if an expectation names a pair outside the input.
fn expectation_matrix(
    fixtures: Fixtures<'_>,
    input: &TableInput,
    mut expectations: Vec<(PairKey, PairExpectation)>,
) -> Result<Vec<(PairKey, PairExpectation)>, String> {
    let default = PairExpectation {
        actions: input
            .actions
            .iter()
            .map(|a| (a.clone(), Effect::Deny))
            .collect(),
        outputs: Vec::new(),
    };
    let principals = collect("", &input.principals, &input.principal_groups, |g| {
        fixtures.principal_group(g)
    })?;
    let resources = collect("", &input.resources, &input.resource_groups, |g| {
        fixtures.resource_group(g)
    })?;

    let mut matrix = Vec::with_capacity(principals.len() * resources.len());
    for p in &principals {
        for r in &resources {
            let key = (p.clone(), r.clone());
            let expected = match expectations.iter().position(|(k, _)| *k == key) {
                Some(i) => expectations.remove(i).1,
                None => default.clone(),
            };
            matrix.push((key, expected));
        }
    }
    if let Some(((p, r), _)) = expectations.first() {
        return Err(format!(
            "found an expectation for principal {} and resource {}, but at least one of these is not present in input",
            go_quote(p),
            go_quote(r)
        ));
    }
    Ok(matrix)
}

#[cfg(test)]
mod tests {
    use super::super::suite::parse_suite;
    use super::*;

    const FIXTURES: &str = "principals:\n  a: {id: a, roles: [u]}\n  b: {id: b, roles: [u]}\n\
        resources:\n  x: {kind: k, id: x}\n";

    #[test]
    fn unlisted_pairs_expect_deny() {
        let suite = parse_suite(&format!(
            "name: S\n{FIXTURES}tests:\n  - name: t\n    input: {{principals: [a, b], resources: [x], actions: [v, w]}}\n    \
             expected:\n      - {{principal: a, resource: x, actions: {{v: EFFECT_ALLOW}}}}\n"
        ))
        .unwrap();
        let tests = expand_tests(&suite, None).unwrap();
        assert_eq!(tests.len(), 2);
        assert_eq!(tests[0].expected, vec![("v".to_owned(), Effect::Allow)]);
        assert_eq!(
            tests[1].expected,
            vec![
                ("v".to_owned(), Effect::Deny),
                ("w".to_owned(), Effect::Deny)
            ]
        );
        assert_eq!(
            tests[1].name.to_text(),
            r#"test_table_name:"t" principal_key:"b" resource_key:"x""#
        );
    }

    #[test]
    fn expectation_for_a_pair_not_in_input() {
        let suite = parse_suite(&format!(
            "name: S\n{FIXTURES}tests:\n  - name: t\n    input: {{principals: [a], resources: [x], actions: [v]}}\n    \
             expected:\n      - {{principal: b, resource: x, actions: {{v: EFFECT_ALLOW}}}}\n"
        ))
        .unwrap();
        assert_eq!(
            expand_tests(&suite, None).unwrap_err().to_string(),
            "invalid test \"t\": found an expectation for principal \"b\" and resource \"x\", but at least one of these is not present in input"
        );
    }
}
