//! Policy tests (`verify`) against Cerbos's conformance cases: the 45 `verify/cases` runs
//! (TestResults JSON), the 11 table-expansion cases and the 7 JUnit cases (byte for byte),
//! plus the demo suite under `policies/` and the store's own suites.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value as Json, json};

use gatehouse::policy::CompiledPolicySet;
use gatehouse::verify::{
    TestFixture, TestResults, VerifyOptions, compile_for_tests, expand_tests, parse_suite,
    render_json, render_junit, run_tests,
};

use crate::util::{corpus_dir, files_with_ext, json_file, yaml_docs};

/// Cases we knowingly answer differently from Cerbos, with the reason. They still run: one
/// that starts to pass fails the test until it is removed from this list.
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[];

/// The fixtures Cerbos's `Test_testSuiteRun_getTests` uses (Go code in Cerbos, data here).
const TABLE_PRINCIPALS: &str = "principals:
  employee: {id: employee, roles: [user]}
  manager: {id: manager, roles: [user]}
  department_head: {id: department_head, roles: [user]}
principalGroups:
  management: {principals: [manager, department_head]}
";
const TABLE_RESOURCES: &str = "resources:
  employee_leave_request: {kind: leave_request, id: employee}
  manager_leave_request: {kind: leave_request, id: manager}
  department_head_leave_request: {kind: leave_request, id: department_head}
resourceGroups:
  management_leave_requests: {resources: [manager_leave_request, department_head_leave_request]}
";
const TABLE_AUX_DATA: &str = "auxData:
  test_aux_data: {jwt: {answer: 42}}
";

/// A scratch directory under the system temp dir, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("gatehouse-verify-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Unpacks a txtar archive: a line `-- path --` starts a file; text before the first marker
/// is a comment.
fn unpack_txtar(archive: &str, into: &Path) {
    let mut files: Vec<(String, String)> = Vec::new();
    for line in archive.split_inclusive('\n') {
        let trimmed = line.trim_end_matches(['\n', '\r']);
        if let Some(name) = trimmed
            .strip_prefix("-- ")
            .and_then(|l| l.strip_suffix(" --"))
        {
            files.push((name.trim().to_owned(), String::new()));
        } else if let Some((_, content)) = files.last_mut() {
            content.push_str(line);
        }
    }
    for (name, content) in files {
        assert!(
            !name.starts_with('/') && !name.split('/').any(|c| c == ".."),
            "unsafe txtar path {name}"
        );
        let path = into.join(&name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{}: {e}", parent.display()));
        }
        std::fs::write(&path, content).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

/// Normalises JSON for comparison: U+00A0 as a space, numbers as doubles.
fn normalise(v: &Json) -> Json {
    match v {
        Json::String(s) => Json::String(s.replace('\u{a0}', " ")),
        Json::Number(n) => n
            .as_f64()
            .and_then(serde_json::Number::from_f64)
            .map_or(Json::Null, Json::Number),
        Json::Array(items) => Json::Array(items.iter().map(normalise).collect()),
        Json::Object(m) => Json::Object(m.iter().map(|(k, v)| (k.clone(), normalise(v))).collect()),
        other => other.clone(),
    }
}

fn strings(v: &Json) -> BTreeSet<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(String::from))
        .collect()
}

fn options_for(config: &Json) -> VerifyOptions {
    let mut options = VerifyOptions::default();
    options.ignore_schemas = true;
    options.excluded_resource_policy_fqns = strings(&config["excludedResourcePolicyFqns"]);
    options.excluded_principal_policy_fqns = strings(&config["excludedPrincipalPolicyFqns"]);
    options.included_test_names_regexp =
        config["includedTestNamesRegexp"].as_str().map(String::from);
    options
}

/// Compares results with a golden TestResults, suite by suite; returns the differences.
fn compare_results(got: &TestResults, golden: &Json) -> Vec<String> {
    let got = normalise(&render_json(got));
    let want = normalise(golden);
    let mut diffs = Vec::new();
    let got_suites = got["suites"].as_array().cloned().unwrap_or_default();
    let want_suites = want["suites"].as_array().cloned().unwrap_or_default();
    if got_suites.len() != want_suites.len() {
        diffs.push(format!(
            "{} suites, want {}",
            got_suites.len(),
            want_suites.len()
        ));
    }
    for (g, w) in got_suites.iter().zip(&want_suites) {
        if g != w {
            diffs.push(format!(
                "suite {}:\n    want: {w}\n    got:  {g}",
                w["file"]
            ));
        }
    }
    if got["summary"] != want["summary"] {
        diffs.push(format!(
            "summary:\n    want: {}\n    got:  {}",
            want["summary"], got["summary"]
        ));
    }
    diffs
}

fn load_store(dir: &Path) -> gatehouse::policy::LoadedStore {
    gatehouse::policy::load_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

#[test]
fn verify_conformance() {
    let Some(corpus) = corpus_dir("verify") else {
        return;
    };
    let store = load_store(&corpus.join("store"));
    let default_options = options_for(&Json::Null);
    let policies = Arc::new(
        compile_for_tests(store.clone(), &default_options).unwrap_or_else(|e| panic!("store: {e}")),
    );

    let mut passed = 0;
    let mut failures = Vec::new();
    let mut known_seen = Vec::new();
    for case_path in files_with_ext(&corpus.join("verify/cases"), "yaml") {
        let name = case_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let known = KNOWN_DIFFERENCES
            .iter()
            .find(|(c, _)| *c == name)
            .map(|(_, why)| *why);
        let case = yaml_docs(&case_path)
            .into_iter()
            .next()
            .unwrap_or(Json::Null);
        let options = options_for(&case["config"]);
        let policies: Arc<CompiledPolicySet> = if options.excluded_resource_policy_fqns.is_empty()
            && options.excluded_principal_policy_fqns.is_empty()
        {
            policies.clone()
        } else {
            match compile_for_tests(store.clone(), &options) {
                Ok(p) => Arc::new(p),
                Err(e) => {
                    failures.push(format!(
                        "{name}: store does not compile without the excluded policies: {e}"
                    ));
                    continue;
                }
            }
        };
        let scratch = Scratch::new(&name);
        let archive =
            std::fs::read_to_string(case_path.with_extension("yaml.input")).unwrap_or_default();
        unpack_txtar(&archive, &scratch.0);
        let outcome = run_tests(&scratch.0, policies, &options);
        let want_err = case["wantErr"].as_bool().unwrap_or(false);
        let failure = match (outcome, want_err) {
            (Err(_), true) => None,
            (Ok(_), true) => Some(format!("{name}: expected an error")),
            (Err(e), false) => Some(format!("{name}: {e}")),
            (Ok(results), false) => {
                let golden = json_file(&case_path.with_extension("yaml.golden"));
                let diffs = compare_results(&results, &golden);
                (!diffs.is_empty()).then(|| {
                    format!(
                        "{name} ({}):\n  {}",
                        case["description"].as_str().unwrap_or_default(),
                        diffs.join("\n  ")
                    )
                })
            }
        };
        match (failure, known) {
            (None, None) => passed += 1,
            (Some(f), None) => failures.push(f),
            (Some(_), Some(why)) => known_seen.push(format!("{name}: {why}")),
            (None, Some(_)) => failures.push(format!(
                "{name} now passes: remove it from KNOWN_DIFFERENCES"
            )),
        }
    }
    for f in &failures {
        println!("MISMATCH {f}");
    }
    for k in &known_seen {
        println!("KNOWN DIFFERENCE {k}");
    }
    println!(
        "verify: {passed} passed, {} failed ({} known differences)",
        failures.len(),
        known_seen.len()
    );
    assert!(passed > 0, "no verify case ran");
    assert!(
        failures.is_empty(),
        "verify conformance mismatches (see above)"
    );
}

#[test]
fn verify_table_expansion() {
    let Some(corpus) = corpus_dir("verify-tables") else {
        return;
    };
    let fixture = TestFixture::from_texts(
        Some(TABLE_PRINCIPALS),
        Some(TABLE_RESOURCES),
        Some(TABLE_AUX_DATA),
    )
    .unwrap_or_else(|e| panic!("fixtures: {e}"));
    let mut passed = 0;
    let mut failures = Vec::new();
    for path in files_with_ext(&corpus.join("verify/test_suite_run_get_tests"), "yaml") {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let case = yaml_docs(&path).into_iter().next().unwrap_or(Json::Null);
        let suite_json = json!({"name": "suite", "tests": [case["table"]]});
        let suite = match parse_suite(&suite_json.to_string()) {
            Ok(s) => s,
            Err(e) => {
                failures.push(format!("{name}: table does not parse:{e}"));
                continue;
            }
        };
        let got = expand_tests(&suite, Some(&fixture));
        match (got, case["wantErr"].as_str()) {
            (Err(e), Some(want)) if e.to_string() == want => passed += 1,
            (Err(e), Some(want)) => failures.push(format!(
                "{name}:\n    want error: {want}\n    got error:  {e}"
            )),
            (Ok(tests), Some(want)) => failures.push(format!(
                "{name}: want error {want}, got {} tests",
                tests.len()
            )),
            (Err(e), None) => failures.push(format!("{name}: {e}")),
            (Ok(tests), None) => {
                let got = normalise(&Json::Array(tests.iter().map(|t| t.to_json()).collect()));
                let want = normalise(&case["wantTests"]);
                if got == want {
                    passed += 1;
                } else {
                    failures.push(format!("{name}:\n    want: {want}\n    got:  {got}"));
                }
            }
        }
    }
    for f in &failures {
        println!("MISMATCH {f}");
    }
    println!("verify-tables: {passed} passed, {} failed", failures.len());
    assert!(passed > 0, "no table case ran");
    assert!(
        failures.is_empty(),
        "table expansion mismatches (see above)"
    );
}

#[test]
fn verify_junit() {
    let Some(corpus) = corpus_dir("verify-junit") else {
        return;
    };
    let junit = corpus.join("verify/junit");
    let mut options = VerifyOptions::default();
    options.ignore_schemas = true;
    let policies = Arc::new(
        compile_for_tests(load_store(&junit.join("store")), &options)
            .unwrap_or_else(|e| panic!("store: {e}")),
    );
    let mut passed = 0;
    let mut failures = Vec::new();
    for case_path in files_with_ext(&junit.join("cases"), "yaml") {
        let name = case_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let scratch = Scratch::new(&format!("junit-{name}"));
        let archive =
            std::fs::read_to_string(case_path.with_extension("yaml.input")).unwrap_or_default();
        unpack_txtar(&archive, &scratch.0);
        let golden =
            std::fs::read_to_string(case_path.with_extension("yaml.golden")).unwrap_or_default();
        match run_tests(&scratch.0, policies.clone(), &options) {
            Ok(results) => {
                let got = render_junit(&results, true);
                if got == golden.trim_end_matches('\n') {
                    passed += 1;
                } else {
                    failures.push(format!("{name}:\n--- want\n{golden}\n--- got\n{got}"));
                }
            }
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    for f in &failures {
        println!("MISMATCH {f}");
    }
    println!("verify-junit: {passed} passed, {} failed", failures.len());
    assert!(passed > 0, "no junit case ran");
    assert!(failures.is_empty(), "junit mismatches (see above)");
}

/// Runs the suites of a store against the store itself; returns a description of every
/// suite that does not pass.
fn own_suites(dir: &Path, options: &VerifyOptions) -> (TestResults, Vec<String>) {
    let policies = Arc::new(
        compile_for_tests(load_store(dir), options)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display())),
    );
    let results =
        run_tests(dir, policies, options).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let failed = results
        .suites
        .iter()
        .filter(|s| s.summary.overall_result.is_failure())
        .map(|s| {
            format!(
                "{}: {}",
                s.file,
                gatehouse::verify::render_tree(&results, false, false)
            )
        })
        .collect();
    (results, failed)
}

#[test]
fn verify_store_and_demo_suites() {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let (results, failed) = own_suites(&demo, &VerifyOptions::default());
    assert!(
        results
            .suites
            .iter()
            .any(|s| s.file == "tests/document_test.yaml"),
        "demo suite not found"
    );
    assert!(
        failed.is_empty(),
        "demo suites fail:\n{}",
        failed.join("\n")
    );
    println!("verify-demo: {} tests passed", results.summary.tests_count);

    let Some(corpus) = corpus_dir("verify-store") else {
        return;
    };
    let mut options = VerifyOptions::default();
    options.ignore_schemas = true;
    let (results, failed) = own_suites(&corpus.join("store"), &options);
    assert_eq!(results.suites.len(), 3, "the store has 3 suites");
    assert!(
        failed.is_empty(),
        "store suites fail:\n{}",
        failed.join("\n")
    );
    println!(
        "verify-store: {} suites, {} tests passed",
        results.suites.len(),
        results.summary.tests_count
    );
}
