//! Cerbos's policy parser cases (`parser/cases/case_NNN.json` with `.input`), the same
//! policies in YAML and JSON (`parser/policy_formats/`) and the well-known-type files
//! (`parser/wkt/`), replayed against the policy loader.

use std::path::{Path, PathBuf};

use gatehouse::policy::load::{LoadError, parse_policies};
use gatehouse::policy::model::Policy;
use serde_json::Value;

/// Cases whose expectations we deliberately do not meet, with the reason. Empty: every
/// case is met.
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[];

/// The conformance corpus, `None` when it is absent outside CI.
fn corpus() -> Option<PathBuf> {
    let dir = std::env::var_os("GATEHOUSE_CONFORMANCE_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance"),
        PathBuf::from,
    );
    if dir.join("parser").is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "parser: conformance corpus not found at {} (CI=true)",
        dir.display()
    );
    println!(
        "parser: SKIPPED, conformance corpus not found at {}",
        dir.display()
    );
    None
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn sorted_files(dir: &Path, keep: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(&keep))
        .collect();
    files.sort();
    files
}

/// An error as the case files describe it: line, column and message.
fn wanted_error(e: &Value) -> (u64, u64, String) {
    let pos = &e["position"];
    (
        pos["line"].as_u64().unwrap_or(0),
        pos["column"].as_u64().unwrap_or(0),
        e["message"].as_str().unwrap_or_default().to_owned(),
    )
}

fn actual_error(e: &LoadError) -> (u64, u64, String) {
    (
        u64::from(e.span.line),
        u64::from(e.span.col),
        e.message.clone(),
    )
}

fn to_json(policy: &Policy) -> Value {
    serde_json::to_value(policy).unwrap_or_else(|e| panic!("serializing a policy: {e}"))
}

/// Checks one `case_NNN.json`; `Err` describes the mismatch.
fn check_case(case: &Path) -> Result<(), String> {
    let expect: Value =
        serde_json::from_str(&read(case)).map_err(|e| format!("reading the case: {e}"))?;
    let input_path = PathBuf::from(format!("{}.input", case.display()));
    let input = read(&input_path);
    let result = parse_policies(&input, "input");
    let wanted_errors = expect["wantErrors"].as_array().cloned().unwrap_or_default();
    if !wanted_errors.is_empty() {
        let actual = match result {
            Ok(policies) => {
                return Err(format!("wanted errors, parsed {} policies", policies.len()));
            }
            Err(errors) => errors.errors().iter().map(actual_error).collect::<Vec<_>>(),
        };
        let mut wanted: Vec<_> = wanted_errors.iter().map(wanted_error).collect();
        let mut actual = actual;
        wanted.sort();
        actual.sort();
        if wanted != actual {
            return Err(format!(
                "errors differ:\n  want {wanted:?}\n  got  {actual:?}"
            ));
        }
        return Ok(());
    }
    let policies = result.map_err(|e| format!("unexpected errors:\n{e}"))?;
    let want = expect["want"].as_array().cloned().unwrap_or_default();
    if policies.len() != want.len() {
        return Err(format!(
            "want {} policies, parsed {}",
            want.len(),
            policies.len()
        ));
    }
    for (i, (policy, want)) in policies.iter().zip(&want).enumerate() {
        let got = to_json(policy);
        if got != want["message"] {
            return Err(format!(
                "policy #{} differs:\n  want {}\n  got  {got}",
                i + 1,
                want["message"]
            ));
        }
    }
    Ok(())
}

/// `policy_formats/`: each YAML file parses, and its JSON twin parses to the same policies.
fn check_formats(dir: &Path) -> Vec<(String, Result<(), String>)> {
    let mut out = Vec::new();
    for yaml in sorted_files(dir, |n| n.ends_with(".yaml")) {
        let name = format!(
            "policy_formats/{}",
            yaml.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default()
        );
        let parsed = parse_policies(&read(&yaml), &name).map_err(|e| e.to_string());
        let result = parsed.and_then(|policies| {
            if policies.is_empty() {
                return Err("no policy parsed".to_owned());
            }
            let json = yaml.with_extension("json");
            if !json.exists() {
                return Ok(());
            }
            let twin = parse_policies(&read(&json), "twin.json").map_err(|e| e.to_string())?;
            // The JSON files also name their JSON Schema (`$schema`); YAML ones do not.
            let without_schema = |p: &Policy| {
                let mut v = to_json(p);
                if let Some(m) = v.as_object_mut() {
                    m.remove("$schema");
                }
                v
            };
            let a: Vec<Value> = policies.iter().map(without_schema).collect();
            let b: Vec<Value> = twin.iter().map(without_schema).collect();
            if a == b {
                Ok(())
            } else {
                Err(format!("YAML and JSON differ:\n  yaml {a:?}\n  json {b:?}"))
            }
        });
        out.push((name, result));
    }
    out
}

/// `wkt/`: test-fixture files, not policies: they must be rejected cleanly.
fn check_wkt(dir: &Path) -> Vec<(String, Result<(), String>)> {
    sorted_files(dir, |n| n.ends_with(".yaml") || n.ends_with(".json"))
        .into_iter()
        .map(|file| {
            let name = format!(
                "wkt/{}",
                file.file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default()
            );
            let result = match parse_policies(&read(&file), &name) {
                Ok(p) => Err(format!(
                    "not a policy file, but parsed {} policies",
                    p.len()
                )),
                Err(_) => Ok(()),
            };
            (name, result)
        })
        .collect()
}

#[test]
fn parser_cases() {
    let Some(corpus) = corpus() else {
        return;
    };
    let parser = corpus.join("parser");
    let mut results: Vec<(String, Result<(), String>)> = sorted_files(&parser.join("cases"), |n| {
        n.starts_with("case_") && n.ends_with(".json")
    })
    .into_iter()
    .map(|case| {
        let name = case
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        (name, check_case(&case))
    })
    .collect();
    results.extend(check_formats(&parser.join("policy_formats")));
    results.extend(check_wkt(&parser.join("wkt")));

    let mut passed = 0;
    let mut failed = Vec::new();
    for (name, result) in &results {
        let known = KNOWN_DIFFERENCES.iter().find(|(n, _)| n == name);
        match (result, known) {
            (Ok(()), None) => passed += 1,
            (Ok(()), Some(_)) => failed.push(format!(
                "{name}: passes but is listed as a known difference"
            )),
            (Err(_), Some((_, reason))) => println!("parser: {name}: known difference: {reason}"),
            (Err(e), None) => failed.push(format!("{name}: {e}")),
        }
    }
    for f in &failed {
        println!("parser: FAILED {f}");
    }
    println!("parser: {passed} passed, {} failed", failed.len());
    assert!(failed.is_empty(), "{} parser cases failed", failed.len());
}
