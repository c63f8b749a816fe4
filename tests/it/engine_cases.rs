//! Replays Cerbos's engine cases (`conformance/engine/**`) against the golden answers
//! recorded from the real Cerbos 0.55, field by field: effect, policy, scope,
//! effective derived roles, outputs and validation errors.

use std::path::Path;
use std::sync::Arc;

use serde_json::{Value as Json, json};

use gatehouse::engine::{Engine, EngineConfig, SchemaEnforcement, input_from_json, output_to_json};
use gatehouse::policy::compiled::CompiledPolicySet;

use crate::util::{corpus_dir, json_file, yaml_docs};

/// Cases we knowingly decide differently from Cerbos, with the reason. Keep empty.
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[];

fn sort_by_keys(list: &mut [Json], keys: &[&str]) {
    list.sort_by(|a, b| {
        let ka: Vec<String> = keys
            .iter()
            .map(|k| a.get(*k).map(|v| v.to_string()).unwrap_or_default())
            .collect();
        let kb: Vec<String> = keys
            .iter()
            .map(|k| b.get(*k).map(|v| v.to_string()).unwrap_or_default())
            .collect();
        ka.cmp(&kb)
    });
}

/// Normalises an output for comparison: empty fields dropped, lists sorted.
fn normalise(v: &Json) -> Json {
    let mut out = serde_json::Map::new();
    for k in ["requestId", "resourceId"] {
        if let Some(s) = v.get(k).and_then(Json::as_str).filter(|s| !s.is_empty()) {
            out.insert(k.into(), json!(s));
        }
    }
    let mut actions = serde_json::Map::new();
    if let Some(Json::Object(a)) = v.get("actions") {
        for (name, eff) in a {
            let mut e = serde_json::Map::new();
            for f in ["effect", "policy", "scope"] {
                if let Some(s) = eff.get(f).and_then(Json::as_str).filter(|s| !s.is_empty()) {
                    e.insert(f.into(), json!(s));
                }
            }
            actions.insert(name.clone(), Json::Object(e));
        }
    }
    out.insert("actions".into(), Json::Object(actions));
    let edr_key = if v.get("effectiveDerivedRoles").is_some() {
        "effectiveDerivedRoles"
    } else {
        "effective_derived_roles"
    };
    if let Some(Json::Array(edr)) = v.get(edr_key) {
        let mut edr: Vec<String> = edr
            .iter()
            .filter_map(|x| x.as_str().map(String::from))
            .collect();
        edr.sort();
        if !edr.is_empty() {
            out.insert("effectiveDerivedRoles".into(), json!(edr));
        }
    }
    if let Some(Json::Array(outputs)) = v.get("outputs") {
        let mut outputs: Vec<Json> = outputs
            .iter()
            .map(|o| {
                let mut m = o.as_object().cloned().unwrap_or_default();
                if m.get("val") == Some(&Json::Null) {
                    m.remove("val");
                }
                Json::Object(m)
            })
            .collect();
        sort_by_keys(&mut outputs, &["src", "action"]);
        if !outputs.is_empty() {
            out.insert("outputs".into(), Json::Array(outputs));
        }
    }
    if let Some(Json::Array(errs)) = v.get("validationErrors") {
        let mut errs = errs.clone();
        sort_by_keys(&mut errs, &["source", "path", "message"]);
        if !errs.is_empty() {
            out.insert("validationErrors".into(), Json::Array(errs));
        }
    }
    Json::Object(out)
}

fn engine_config(golden: &Json, lenient_override: Option<bool>) -> EngineConfig {
    let cfg = &golden["engineConfig"];
    let globals = gatehouse::cel::from_json(&cfg["globals"]);
    EngineConfig {
        globals: match globals {
            gatehouse::cel::Value::Map(m) => m,
            _ => Arc::new(gatehouse::cel::MapValue::new()),
        },
        lenient_scope_search: lenient_override
            .unwrap_or(cfg["lenientScopeSearch"].as_bool().unwrap_or(false)),
        schema_enforcement: match cfg["schemaEnforcement"].as_str() {
            Some("warn") => SchemaEnforcement::Warn,
            Some("reject") => SchemaEnforcement::Reject,
            _ => SchemaEnforcement::None,
        },
        default_policy_version: cfg["defaultPolicyVersion"]
            .as_str()
            .unwrap_or("default")
            .to_string(),
        default_scope: cfg["defaultScope"].as_str().unwrap_or("").to_string(),
        strict_evaluation: false,
    }
}

/// Runs one group of cases; returns (passed, failed) action decisions per input.
fn run_group(
    corpus: &Path,
    policies: &Arc<CompiledPolicySet>,
    group: &str,
    lenient_override: Option<bool>,
    failures: &mut Vec<String>,
) -> (usize, usize) {
    let golden_dir = corpus.join("golden/engine").join(group);
    let mut passed = 0;
    let mut failed = 0;
    for golden_path in crate::util::files_with_ext(&golden_dir, "json") {
        let golden = json_file(&golden_path);
        let case_rel = golden["case"].as_str().unwrap_or_default().to_string();
        let case = yaml_docs(&corpus.join(&case_rel))
            .into_iter()
            .next()
            .unwrap_or(Json::Null);
        let engine = Engine::new(policies.clone(), engine_config(&golden, lenient_override));
        let inputs = case["inputs"].as_array().cloned().unwrap_or_default();
        for result in golden["results"].as_array().into_iter().flatten() {
            let idx = result["index"].as_u64().unwrap_or(0) as usize;
            let label = format!(
                "{case_rel}[{idx}]{}",
                if lenient_override == Some(true) {
                    " (lenient)"
                } else {
                    ""
                }
            );
            if KNOWN_DIFFERENCES.iter().any(|(c, _)| label.starts_with(c)) {
                continue;
            }
            let input = match input_from_json(&inputs[idx]) {
                Ok(i) => i,
                Err(e) => {
                    failed += 1;
                    failures.push(format!("{label}: bad input: {e}"));
                    continue;
                }
            };
            let want = normalise(&result["actual"]);
            match engine.check(&input) {
                Ok(out) => {
                    let got = normalise(&output_to_json(&out));
                    if got == want {
                        passed += 1;
                    } else {
                        failed += 1;
                        failures.push(format!(
                            "{label}: {}\n  want: {want}\n  got:  {got}\n  evaluation errors: {:?}",
                            case["description"].as_str().unwrap_or_default(),
                            out.evaluation_errors
                        ));
                    }
                }
                Err(e) => {
                    failed += 1;
                    failures.push(format!("{label}: check failed: {e}\n  want: {want}"));
                }
            }
        }
    }
    (passed, failed)
}

#[test]
fn engine_conformance() {
    let Some(corpus) = corpus_dir("engine") else {
        return;
    };
    let policies = Arc::new(
        gatehouse::policy::load_and_compile(&corpus.join("store"))
            .unwrap_or_else(|e| panic!("store: {e}")),
    );
    let mut failures = Vec::new();
    let mut total = (0, 0);
    for (group, lenient) in [
        ("default", None),
        ("default", Some(true)),
        ("strict_scope_search", None),
        ("lenient_scope_search", None),
        ("schema_enforcement/warn", None),
        ("schema_enforcement/reject", None),
    ] {
        let (p, f) = run_group(&corpus, &policies, group, lenient, &mut failures);
        println!(
            "engine {group}{}: {p} passed, {f} failed",
            if lenient == Some(true) {
                " (lenient)"
            } else {
                ""
            }
        );
        total.0 += p;
        total.1 += f;
    }
    for f in &failures {
        println!("MISMATCH {f}");
    }
    println!("engine: {} passed, {} failed", total.0, total.1);
    assert_eq!(total.1, 0, "engine conformance mismatches (see above)");
    assert!(total.0 > 0, "no engine case ran");
}
