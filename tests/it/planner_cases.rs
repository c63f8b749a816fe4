//! Replays Cerbos's query planner corpus (`conformance/planner/`) in process, as
//! Cerbos's `TestQueryPlan` runs it: `common/` + `strict_scope_search/` under strict
//! scope search, `common/` + `lenient_scope_search/` under lenient search, globals
//! `{environment: test}`, the clock fixed at 2024-01-16T10:18:27.395+13:00, aux data
//! `jwt.customInt = 42`, filters compared after sorting the operands of commutative
//! operators. Then the 19 filter-normalisation cases.
//!
//! Cases that still differ are listed, with the reason, in
//! `tests/data/planner_known_failures.txt`; any other failure fails the test.

use std::path::Path;
use std::sync::Arc;

use serde_json::{Value as Json, json};

use gatehouse::engine::{Engine, EngineConfig, input_from_json};
use gatehouse::planner::{Filter, PlanInput, PlanResource};

use crate::util::{corpus_dir, files_with_ext, yaml_docs};

/// The checked-in list of cases that still fail: `label<TAB>reason` per line.
fn known_failures() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/planner_known_failures.txt");
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split('\t').next().unwrap_or("").trim().to_string())
        .collect()
}

/// Sorts the operands of commutative operators and the entries of struct literals,
/// recursively (Cerbos's `stabiliseFilter`).
pub(crate) fn stabilise(v: &Json) -> Json {
    match v {
        Json::Object(m) => {
            // Keys in order, so that the string form used for sorting is canonical.
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let mut out = serde_json::Map::new();
            for k in keys {
                out.insert(k.clone(), stabilise(&m[k]));
            }
            if let (Some(op), Some(Json::Array(ops))) = (
                out.get("operator")
                    .and_then(Json::as_str)
                    .map(str::to_string),
                out.get("operands").cloned(),
            ) && matches!(
                op.as_str(),
                "and" | "or" | "eq" | "ne" | "add" | "mult" | "struct"
            ) {
                let mut ops = ops;
                ops.sort_by_key(|o| o.to_string());
                out.insert("operands".into(), Json::Array(ops));
            }
            Json::Object(out)
        }
        Json::Array(a) => Json::Array(a.iter().map(stabilise).collect()),
        other => other.clone(),
    }
}

fn engine_config(lenient: bool) -> EngineConfig {
    let globals = match gatehouse::cel::from_json(&json!({"environment": "test"})) {
        gatehouse::cel::Value::Map(m) => m,
        _ => Arc::new(gatehouse::cel::MapValue::new()),
    };
    EngineConfig {
        globals,
        lenient_scope_search: lenient,
        ..EngineConfig::default()
    }
}

/// The plan input of one corpus test.
fn plan_input(principal: &Json, test: &Json, aux: &Json) -> Result<PlanInput, String> {
    let actions = match (test.get("actions"), test.get("action")) {
        (Some(a), _) => a.clone(),
        (None, Some(a)) => json!([a]),
        _ => json!([]),
    };
    let r = &test["resource"];
    let check = json!({
        "requestId": "requestId",
        "principal": principal,
        "resource": {"kind": r["kind"], "attr": r.get("attr").cloned().unwrap_or(json!({})),
                     "policyVersion": r.get("policyVersion").cloned().unwrap_or(json!("")),
                     "scope": r.get("scope").cloned().unwrap_or(json!(""))},
        "actions": actions,
        "auxData": aux,
    });
    let input = input_from_json(&check).map_err(|e| e.to_string())?;
    Ok(PlanInput {
        request_id: input.request_id,
        principal: input.principal,
        resource: PlanResource {
            kind: input.resource.kind,
            attr: input.resource.attr,
            policy_version: input.resource.policy_version,
            scope: input.resource.scope,
        },
        actions: input.actions,
        aux_data: input.aux_data,
        // The corpus runs with the explain trace on: recording it never changes a filter.
        explain: true,
    })
}

/// Runs the suites of `dirs` with one scope-search mode; returns (passed, failed labels).
fn run_suites(corpus: &Path, engine: &Engine, dirs: &[&str], mode: &str) -> (usize, Vec<String>) {
    let now = chrono::DateTime::parse_from_rfc3339("2024-01-16T10:18:27.395+13:00").unwrap();
    let aux = json!({"jwt": {"customInt": 42}});
    let mut passed = 0;
    let mut failed = Vec::new();
    for dir in dirs {
        for path in files_with_ext(&corpus.join("planner/suite").join(dir), "yaml") {
            let name = format!("{dir}/{}", path.file_name().unwrap().to_string_lossy());
            for suite in yaml_docs(&path) {
                for (i, test) in suite["tests"].as_array().into_iter().flatten().enumerate() {
                    let actions = match (test.get("actions"), test.get("action")) {
                        (Some(Json::Array(a)), _) => a
                            .iter()
                            .filter_map(Json::as_str)
                            .collect::<Vec<_>>()
                            .join(","),
                        (_, Some(Json::String(a))) => a.clone(),
                        _ => String::new(),
                    };
                    let label = format!("{name}#{i}:{actions} ({mode})");
                    let input = match plan_input(&suite["principal"], test, &aux) {
                        Ok(i) => i,
                        Err(e) => {
                            failed.push(format!("{label}\tbad input: {e}"));
                            continue;
                        }
                    };
                    let out = match engine.plan_at(&input, now) {
                        Ok(o) => o,
                        Err(e) => {
                            failed.push(format!("{label}\tplan failed: {e}"));
                            continue;
                        }
                    };
                    let want = stabilise(&test["want"]);
                    let got = stabilise(&out.filter.to_json());
                    if got == want {
                        passed += 1;
                    } else {
                        failed.push(format!(
                            "{label}\n  want: {want}\n  got:  {got}\n  debug: {}\n  errors: {:?}",
                            out.filter_debug, out.evaluation_errors
                        ));
                    }
                }
            }
        }
    }
    (passed, failed)
}

/// Runs the filter-normalisation cases; returns (passed, failed labels).
fn run_filter_cases(corpus: &Path) -> (usize, Vec<String>) {
    let mut passed = 0;
    let mut failed = Vec::new();
    for path in files_with_ext(&corpus.join("planner/filter"), "yaml") {
        let label = format!("filter/{}", path.file_name().unwrap().to_string_lossy());
        for case in yaml_docs(&path) {
            let Some(input) = Filter::from_json(&case["input"]) else {
                failed.push(format!("{label}\tunreadable input"));
                continue;
            };
            let got = input.normalise();
            let want_str = case["wantString"].as_str().unwrap_or_default();
            if got.to_json() == case["wantFilter"] && got.debug_string() == want_str {
                passed += 1;
            } else {
                failed.push(format!(
                    "{label}\n  want: {} {want_str}\n  got:  {} {}",
                    case["wantFilter"],
                    got.to_json(),
                    got.debug_string()
                ));
            }
        }
    }
    (passed, failed)
}

#[test]
fn planner_conformance() {
    let Some(corpus) = corpus_dir("planner") else {
        return;
    };
    let policies = Arc::new(
        gatehouse::policy::load_and_compile(&corpus.join("planner/policies"))
            .unwrap_or_else(|e| panic!("planner policies: {e}")),
    );
    let known = known_failures();
    let mut unexpected = Vec::new();
    let mut total = (0, 0);
    let mut report = |what: &str, (passed, failed): (usize, Vec<String>)| {
        println!("planner {what}: {passed} passed, {} failed", failed.len());
        for f in &failed {
            let label = f.split(['\n', '\t']).next().unwrap_or("").to_string();
            if known.contains(&label) {
                println!("KNOWN {label}");
            } else {
                println!("MISMATCH {f}");
                unexpected.push(label);
            }
        }
        total.0 += passed;
        total.1 += failed.len();
    };
    let strict = Engine::new(policies.clone(), engine_config(false));
    let lenient = Engine::new(policies.clone(), engine_config(true));
    report(
        "strict",
        run_suites(
            &corpus,
            &strict,
            &["common", "strict_scope_search"],
            "strict",
        ),
    );
    report(
        "lenient",
        run_suites(
            &corpus,
            &lenient,
            &["common", "lenient_scope_search"],
            "lenient",
        ),
    );
    report("filter", run_filter_cases(&corpus));
    println!("planner: {} passed, {} failed", total.0, total.1);
    assert!(total.0 > 0, "no planner case ran");
    assert!(
        unexpected.is_empty(),
        "planner cases failing that are not in tests/data/planner_known_failures.txt: {unexpected:#?}"
    );
}
