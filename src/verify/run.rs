//! Running test suites against a compiled policy set.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{NaiveDate, TimeZone, Utc};
use regex::Regex;
use serde_json::Value as Json;

use super::compat::go_quote;
use super::fixture::{TestFixture, check_groups};
use super::results::{
    Details, Outcome, OutputFailure, OutputFailureKind, OutputValue, SuiteResult, TestResults,
    Verdict,
};
use super::suite::{Named, TestOptions, TestSuite, lookup, parse_suite};
use super::table::{Fixtures, Test, expand_tests};
use crate::cel::{self, MapValue, Timestamp};
use crate::engine::json::{aux_data_from_json, principal_from_json, resource_from_json};
use crate::engine::{
    CheckInput, CheckOutput, Engine, EngineConfig, SchemaEnforcement, Trace, TraceEvent,
};
use crate::policy::compiled::{CompiledPolicySet, Effect};
use crate::policy::id::ScopedKind;
use crate::policy::model::{Policy, PolicyKind};
use crate::policy::{LoadedStore, StoreError};

/// Skip reason of a test whose name does not match the test-name filters.
pub const SKIP_REASON_NAME: &str = "Test name did not match the provided pattern";
/// Skip reason of a test whose resource policy was excluded.
pub const SKIP_REASON_RESOURCE: &str =
    "Resource matched a policy that was excluded from the bundle";
/// Skip reason of a test whose principal policy was excluded.
pub const SKIP_REASON_PRINCIPAL: &str =
    "Principal matched a policy that was excluded from the bundle";

/// The error of a test that reads the clock without `now` in its options.
const USED_DEFAULT_NOW: &str =
    "a policy used a time-based condition, but `now` was not provided in the test options";
/// Deepest directory nesting followed.
const MAX_DIR_DEPTH: usize = 64;
/// Test suite file suffixes.
const SUITE_SUFFIXES: &[&str] = &["_test.yaml", "_test.yml", "_test.json"];
/// The shared fixtures directory.
const TESTDATA: &str = "testdata";

/// How to run tests (Cerbos's `verify` configuration and `compile` flags).
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct VerifyOptions {
    /// Cerbos's `--run`: only tests whose name matches this regex run; the name is
    /// `<suite name>/test_table_name:"<table>" principal_key:"<p>" resource_key:"<r>"`.
    pub(crate) run: Option<String>,
    /// Cerbos's `includedTestNamesRegexp`, applied like `run` (both must match when both are set).
    pub included_test_names_regexp: Option<String>,
    /// Resource policies left out (`cerbos.resource.<kind>.v<version>[/<scope>]`): tests
    /// whose resource resolves to one of them are skipped, and [`compile_for_tests`] drops them.
    pub excluded_resource_policy_fqns: BTreeSet<String>,
    /// Principal policies left out (`cerbos.principal.<id>.v<version>[/<scope>]`), likewise.
    pub excluded_principal_policy_fqns: BTreeSet<String>,
    /// Cerbos's `--ignore-schemas`: schema enforcement `none` instead of `reject`.
    pub ignore_schemas: bool,
    /// Record the engine's explanation of every test (Cerbos's `--verbose`).
    pub(crate) trace: bool,
    /// Cerbos's `--test-filter` flags, merged.
    pub(crate) test_filter: super::filter::TestFilter,
    /// Cerbos's `--strict-evaluation`: every test runs with strict evaluation.
    pub(crate) strict_evaluation: bool,
    /// The clock for tests whose options do not set `now`. `None` (the default) is
    /// Cerbos's behaviour: such a test errors when a policy reads the clock.
    pub(crate) now: Option<Timestamp>,
}

/// A run that could not start.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// A test-name filter is not a valid regex.
    #[error("invalid run specification: {0}")]
    InvalidRun(String),
    /// The tests directory could not be read.
    #[error("failed to read {path}: {message}")]
    Io {
        /// The path.
        path: String,
        /// The error.
        message: String,
    },
}

/// The policy's fully qualified name when [`VerifyOptions`] excludes it.
fn excluded_fqn(policy: &Policy, options: &VerifyOptions) -> bool {
    match &policy.kind {
        PolicyKind::Resource(_) => options
            .excluded_resource_policy_fqns
            .contains(&policy.fqn()),
        PolicyKind::Principal(_) => options
            .excluded_principal_policy_fqns
            .contains(&policy.fqn()),
        _ => false,
    }
}

/// Compiles a loaded store for a test run: the policies that `options` excludes are dropped first.
pub fn compile_for_tests(
    mut store: LoadedStore,
    options: &VerifyOptions,
) -> Result<CompiledPolicySet, StoreError> {
    store.policies.retain(|p| !excluded_fqn(p, options));
    crate::policy::compile_store(store)
}

/// Runs every test suite (`*_test.yaml`, `*_test.yml`, `*_test.json`) under `tests_dir`
/// against `policies`. Suites are reported in file-name order; a suite or test that cannot
/// be read or run is reported in the results, as Cerbos reports it. Fails only when the
/// filters are invalid or the directory cannot be read.
pub fn run_tests(
    tests_dir: &Path,
    policies: Arc<CompiledPolicySet>,
    options: &VerifyOptions,
) -> Result<TestResults, VerifyError> {
    let filters = [&options.run, &options.included_test_names_regexp]
        .into_iter()
        .flatten()
        .map(|r| Regex::new(r).map_err(|e| VerifyError::InvalidRun(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let mut found = Found::default();
    walk(tests_dir, "", 0, &mut found)?;
    found.suites.sort();

    let runner = Runner {
        policies,
        options,
        filters,
    };
    let mut fixtures: BTreeMap<String, Result<TestFixture, String>> = BTreeMap::new();
    let mut results = TestResults::default();
    for (rel, path) in &found.suites {
        let fixture_dir = match rel.rsplit_once('/') {
            Some((dir, _)) => format!("{dir}/{TESTDATA}"),
            None => TESTDATA.to_owned(),
        };
        let fixture = if found.fixture_dirs.contains(&fixture_dir) {
            Some(
                fixtures
                    .entry(fixture_dir.clone())
                    .or_insert_with(|| {
                        TestFixture::load(&tests_dir.join(&fixture_dir)).map_err(|e| e.to_string())
                    })
                    .clone(),
            )
        } else {
            None
        };
        results.push(runner.suite_file(rel, path, &fixture_dir, fixture));
    }
    Ok(results)
}

#[derive(Default)]
struct Found {
    /// (relative path, full path) of suite files.
    suites: Vec<(String, PathBuf)>,
    /// Relative paths of `testdata` directories.
    fixture_dirs: BTreeSet<String>,
}

fn walk(dir: &Path, rel: &str, depth: usize, found: &mut Found) -> Result<(), VerifyError> {
    let io = |e: std::io::Error| VerifyError::Io {
        path: dir.display().to_string(),
        message: e.to_string(),
    };
    if depth > MAX_DIR_DEPTH {
        return Err(VerifyError::Io {
            path: dir.display().to_string(),
            message: "directory nesting is too deep".to_owned(),
        });
    }
    let mut entries: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .map_err(io)?
        .map(|e| e.map(|e| (e.file_name().to_string_lossy().into_owned(), e.path())))
        .collect::<Result<_, _>>()
        .map_err(io)?;
    entries.sort();
    for (name, path) in entries {
        let child = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            if name == TESTDATA {
                found.fixture_dirs.insert(child);
            } else {
                walk(&path, &child, depth + 1, found)?;
            }
        } else if meta.is_file() && SUITE_SUFFIXES.iter().any(|s| name.ends_with(s)) {
            found.suites.push((child, path));
        }
    }
    Ok(())
}

struct Runner<'a> {
    policies: Arc<CompiledPolicySet>,
    options: &'a VerifyOptions,
    filters: Vec<Regex>,
}

impl Runner<'_> {
    fn suite_file(
        &self,
        rel: &str,
        path: &Path,
        fixture_dir: &str,
        fixture: Option<Result<TestFixture, String>>,
    ) -> SuiteResult {
        let text = match std::fs::read(path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => {
                return SuiteResult::errored(
                    rel,
                    "Unknown",
                    "",
                    format!("failed to load test suite: {e}"),
                );
            }
        };
        let suite = match parse_suite(&text) {
            Ok(s) => s,
            Err(e) => {
                return SuiteResult::errored(
                    rel,
                    "Unknown",
                    "",
                    format!("failed to load test suite:{e}"),
                );
            }
        };
        let fixture = match fixture {
            Some(Ok(f)) => Some(f),
            Some(Err(e)) => {
                return SuiteResult::errored(
                    rel,
                    &suite.name,
                    &suite.description,
                    format!("failed to load test fixtures from {fixture_dir}: {e}"),
                );
            }
            None => None,
        };
        self.suite(rel, &suite, fixture.as_ref())
    }

    /// Runs one suite.
    fn suite(&self, file: &str, suite: &TestSuite, fixture: Option<&TestFixture>) -> SuiteResult {
        let mut result = SuiteResult {
            file: file.to_owned(),
            name: suite.name.clone(),
            description: suite.description.clone(),
            ..SuiteResult::default()
        };
        let fixtures = Fixtures {
            suite,
            shared: fixture,
        };
        let errored =
            |error: String| SuiteResult::errored(file, &suite.name, &suite.description, error);
        if let Err(e) = check_groups(&suite.principal_groups, |n| fixtures.principal(n).is_ok()) {
            return errored(format!("Invalid principal groups in test suite: {e}"));
        }
        if let Err(e) = check_groups(&suite.resource_groups, |n| fixtures.resource(n).is_ok()) {
            return errored(format!("Invalid resource groups in test suite: {e}"));
        }
        if suite.skip {
            result.summary.overall_result = Verdict::Skipped;
            result.skip_reason = suite.skip_reason.clone();
            return result;
        }
        let duplicates = duplicate_test_names(suite);
        if !duplicates.is_empty() {
            return errored(format!("Invalid test suite: {}", duplicates.join("; ")));
        }
        let tests = match expand_tests(suite, fixture) {
            Ok(t) => t,
            Err(e) => return errored(format!("Failed to load the test suite: {e}")),
        };
        for test in &tests {
            self.suite_test(suite, test, &mut result);
        }
        result
    }

    /// Runs one test of a suite (the actions the filter keeps) and adds its actions'
    /// results, those the filter left out last.
    fn suite_test(&self, suite: &TestSuite, test: &Test, result: &mut SuiteResult) {
        let n = &test.name;
        let filter = &self.options.test_filter;
        let add = |result: &mut SuiteResult, action: &str, details: Details| {
            result.add(
                &n.test_table_name,
                &n.principal_key,
                &n.resource_key,
                action,
                details,
            );
        };
        let left_out_by = |result: &mut SuiteResult, action: &str, reason: &str| {
            result.add_filtered(
                &n.test_table_name,
                &n.principal_key,
                &n.resource_key,
                action,
                reason,
            );
        };
        if let Some(reason) = filter.skip_reason(
            &suite.name,
            &n.test_table_name,
            &n.principal_key,
            &n.resource_key,
        ) {
            for action in &test.actions {
                left_out_by(result, action, reason);
            }
            return;
        }
        // As Cerbos: the actions that run come first, then those the filter left out.
        let (runs, left_out): (Vec<&String>, Vec<&String>) =
            test.actions.iter().partition(|a| filter.runs_action(a));
        let skipped = self.skip_reason(suite, test);
        let mut ran = match (&skipped, left_out.is_empty()) {
            (Some(_), _) => Vec::new(),
            _ if runs.is_empty() => Vec::new(),
            (None, true) => self.test(test),
            (None, false) => {
                let mut subset = test.clone();
                subset.actions.retain(|a| filter.runs_action(a));
                self.test(&subset)
            }
        };
        for action in runs {
            if let Some(reason) = &skipped {
                add(result, action, Details::skipped(reason));
            } else if let Some(i) = ran.iter().position(|(a, _)| a == action) {
                let (_, details) = ran.swap_remove(i);
                add(result, action, details);
            }
        }
        for action in left_out {
            left_out_by(result, action, super::filter::SKIP_ACTION);
        }
    }

    /// Why a test is skipped, if it is.
    fn skip_reason(&self, suite: &TestSuite, test: &Test) -> Option<String> {
        let name = format!("{}/{}", suite.name, test.name.to_text());
        if !self.filters.iter().all(|f| f.is_match(&name)) {
            return Some(SKIP_REASON_NAME.to_owned());
        }
        let options = test.options.as_ref();
        if !self.options.excluded_resource_policy_fqns.is_empty() {
            let fqn = policy_fqn(ScopedKind::Resource, &test.resource, "kind", options);
            if self.options.excluded_resource_policy_fqns.contains(&fqn) {
                return Some(SKIP_REASON_RESOURCE.to_owned());
            }
        }
        if !self.options.excluded_principal_policy_fqns.is_empty() {
            let fqn = policy_fqn(ScopedKind::Principal, &test.principal, "id", options);
            if self.options.excluded_principal_policy_fqns.contains(&fqn) {
                return Some(SKIP_REASON_PRINCIPAL.to_owned());
            }
        }
        test.skip.then(|| test.skip_reason.clone())
    }

    fn engine_config(&self, options: Option<&TestOptions>) -> EngineConfig {
        let mut config = EngineConfig {
            schema_enforcement: if self.options.ignore_schemas {
                SchemaEnforcement::None
            } else {
                SchemaEnforcement::Reject
            },
            ..EngineConfig::default()
        };
        if let Some(o) = options {
            config.lenient_scope_search = o.lenient_scope_search;
            if let cel::Value::Map(m) = cel::from_json(&Json::Object(o.globals.clone())) {
                config.globals = m;
            } else {
                config.globals = Arc::new(MapValue::new());
            }
            if !o.default_policy_version.is_empty() {
                config.default_policy_version = o.default_policy_version.clone();
            }
            config.default_scope = o.default_scope.clone();
            config.strict_evaluation = o.strict_evaluation;
        }
        config.strict_evaluation |= self.options.strict_evaluation;
        config
    }

    /// Runs the actions of one test together; returns the details of each action.
    fn test(&self, test: &Test) -> Vec<(String, Details)> {
        let errored = |message: String, trace: &[String]| -> Vec<(String, Details)> {
            test.actions
                .iter()
                .map(|a| {
                    let details = Details {
                        result: Verdict::Errored,
                        outcome: Outcome::Error(message.clone()),
                        engine_trace: trace.to_vec(),
                    };
                    (a.clone(), details)
                })
                .collect()
        };
        let input = match build_input(test) {
            Ok(i) => i,
            Err(e) => return errored(e, &[]),
        };
        let engine = Engine::new(
            self.policies.clone(),
            self.engine_config(test.options.as_ref()),
        );
        let now = test
            .options
            .as_ref()
            .and_then(|o| o.now)
            .or(self.options.now);
        let (output, trace) = match self.decide(&engine, &input, now) {
            Ok(decided) => decided,
            Err((e, trace)) => return errored(e, &trace),
        };
        test.actions
            .iter()
            .map(|action| (action.clone(), judge(test, action, &output, &trace)))
            .collect()
    }

    /// Checks the input. Without a clock, the check runs at two instants and fails when a
    /// policy reads the clock (a traced condition calls `now()` or `timeSince()`, or the
    /// decisions differ).
    #[allow(clippy::type_complexity)]
    fn decide(
        &self,
        engine: &Engine,
        input: &CheckInput,
        now: Option<Timestamp>,
    ) -> Result<(CheckOutput, Vec<String>), (String, Vec<String>)> {
        let lines =
            |t: &Trace| -> Vec<String> { t.events().iter().map(ToString::to_string).collect() };
        let Some(now) = now else {
            let mut trace = Trace::new();
            let first = engine.check_traced(input, instant(1), &mut trace);
            let second = engine.check_at(input, instant(2200));
            let kept = if self.options.trace {
                lines(&trace)
            } else {
                Vec::new()
            };
            let reads_clock = trace.events().iter().any(|e| {
                matches!(e, TraceEvent::Expr { expr, .. } if calls(expr, "now") || calls(expr, "timeSince"))
            });
            return match (first, second) {
                (Err(e), _) => Err((e.to_string(), kept)),
                (Ok(a), Ok(b)) if a == b && !reads_clock => Ok((a, kept)),
                _ => Err((USED_DEFAULT_NOW.to_owned(), kept)),
            };
        };
        if self.options.trace {
            let mut trace = Trace::new();
            match engine.check_traced(input, now, &mut trace) {
                Ok(out) => Ok((out, lines(&trace))),
                Err(e) => Err((e.to_string(), lines(&trace))),
            }
        } else {
            engine
                .check_at(input, now)
                .map(|o| (o, Vec::new()))
                .map_err(|e| (e.to_string(), Vec::new()))
        }
    }
}

/// Whether CEL source text calls the function `name` (`name(` not preceded by an identifier
/// character).
fn calls(expr: &str, name: &str) -> bool {
    let pattern = format!("{name}(");
    expr.match_indices(&pattern).any(|(i, _)| {
        !expr[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

/// Midnight UTC on 1 January of `year`.
fn instant(year: i32) -> Timestamp {
    let date = NaiveDate::from_ymd_opt(year, 1, 1).unwrap_or_default();
    Utc.from_utc_datetime(&date.and_time(chrono::NaiveTime::MIN))
        .fixed_offset()
}

/// `cerbos.<kind>.<name>.v<version>[/<scope>]` of a fixture under the test's options.
fn policy_fqn(
    kind: ScopedKind,
    fixture: &Json,
    name_field: &str,
    options: Option<&TestOptions>,
) -> String {
    let field = |f: &str| fixture.get(f).and_then(Json::as_str).unwrap_or_default();
    let version = match field("policyVersion") {
        "" => options
            .map(|o| o.default_policy_version.as_str())
            .filter(|v| !v.is_empty())
            .unwrap_or("default"),
        v => v,
    };
    let scope = match field("scope") {
        "" | "." => options
            .map(|o| o.default_scope.as_str())
            .unwrap_or_default(),
        s => s,
    };
    crate::policy::id::policy_fqn(kind, field(name_field), version, scope)
}

/// One complaint per test named like an earlier one in the suite.
fn duplicate_test_names(suite: &TestSuite) -> Vec<String> {
    suite
        .tests
        .iter()
        .enumerate()
        .filter(|(i, t)| suite.tests[..*i].iter().any(|u| u.name == t.name))
        .map(|(_, t)| format!("another test named {} already exists", t.name))
        .collect()
}

fn build_input(test: &Test) -> Result<CheckInput, String> {
    Ok(CheckInput {
        request_id: String::new(),
        principal: principal_from_json(&test.principal).map_err(|e| e.to_string())?,
        resource: resource_from_json(&test.resource).map_err(|e| e.to_string())?,
        actions: test.actions.clone(),
        aux_data: aux_data_from_json(test.aux_data.as_ref()).map_err(|e| e.to_string())?,
    })
}

/// Compares one action's decision with the test's expectations.
fn judge(test: &Test, action: &str, output: &CheckOutput, trace: &[String]) -> Details {
    let details = |result, outcome| Details {
        result,
        outcome,
        engine_trace: trace.to_vec(),
    };
    let Some(actual) = output.effect(action).map(|a| a.effect) else {
        return details(
            Verdict::Errored,
            Outcome::Error(format!("no result for action {}", go_quote(action))),
        );
    };
    let expected = lookup(&test.expected, action)
        .copied()
        .unwrap_or(Effect::Deny);
    if expected != actual {
        return details(
            Verdict::Failed,
            Outcome::Failure {
                expected,
                actual,
                outputs: Vec::new(),
            },
        );
    }
    let outputs: Vec<OutputValue> = output
        .outputs
        .iter()
        .filter(|o| o.action == action)
        .map(|o| OutputValue {
            src: o.src.clone(),
            action: o.action.clone(),
            value: o.value.clone(),
        })
        .collect();
    if let Some(entries) = lookup(&test.expected_outputs, action) {
        let failures = output_failures(entries, &outputs);
        if !failures.is_empty() {
            return details(
                Verdict::Failed,
                Outcome::Failure {
                    expected,
                    actual,
                    outputs: failures,
                },
            );
        }
    }
    details(
        Verdict::Passed,
        Outcome::Success {
            effect: actual,
            outputs,
        },
    )
}

/// The expected outputs (`src` → value) that the action's outputs miss, got as errors,
/// or got with another value (the last output of a `src` counts).
fn output_failures(entries: &Named<Json>, outputs: &[OutputValue]) -> Vec<OutputFailure> {
    entries
        .iter()
        .filter_map(|(src, want)| {
            let kind = match outputs
                .iter()
                .rev()
                .find(|o| &o.src == src)
                .map(|o| &o.value)
            {
                None => OutputFailureKind::Missing {
                    expected: want.clone(),
                },
                Some(Err(error)) => OutputFailureKind::Errored {
                    expected: want.clone(),
                    error: error.clone(),
                },
                Some(Ok(have)) if !super::compat::proto_value_eq(want, have) => {
                    OutputFailureKind::Mismatched {
                        expected: want.clone(),
                        actual: have.clone(),
                    }
                }
                Some(Ok(_)) => return None,
            };
            Some(OutputFailure {
                src: src.clone(),
                kind,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fqns_follow_options() {
        let mut o = TestOptions::default();
        let r = serde_json::json!({"kind": "doc", "id": "1"});
        assert_eq!(
            policy_fqn(ScopedKind::Resource, &r, "kind", None),
            "cerbos.resource.doc.vdefault"
        );
        o.default_policy_version = "2".into();
        o.default_scope = "acme".into();
        assert_eq!(
            policy_fqn(ScopedKind::Resource, &r, "kind", Some(&o)),
            "cerbos.resource.doc.v2/acme"
        );
    }

    #[test]
    fn clock_calls() {
        assert!(calls("now() > R.attr.t", "now"));
        assert!(calls("timestamp(x).timeSince() > d", "timeSince"));
        assert!(!calls("P.attr.known(1)", "now"));
    }

    #[test]
    fn invalid_run_regex() {
        let options = VerifyOptions {
            run: Some("(".into()),
            ..VerifyOptions::default()
        };
        let err = run_tests(
            Path::new("."),
            Arc::new(CompiledPolicySet::default()),
            &options,
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("invalid run specification: "));
    }
}
