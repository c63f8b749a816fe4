//! Runs json-schema-org's JSON-Schema-Test-Suite for draft 2020-12
//! (`conformance/json-schema-suite/tests/draft2020-12/*.json`, the required tests, and
//! `optional/format/`, since Cerbos asserts formats) through the validator. The documents under `remotes/` are served from their
//! `http://localhost:1234/` URLs without network, as the suite's README asks.
//!
//! Where Cerbos 0.55 answers differently from the suite, Cerbos wins:
//! `tests/data/json-schema-suite/cerbos_answers.txt` gives Cerbos's answer (`valid`,
//! `invalid`, or `schema-error` when Cerbos's library refuses the schema), which is checked
//! instead of the suite's. `tests/data/json-schema-suite/known_failures.txt` lists the tests
//! that fail, each with its reason. Keys are `file`, `file :: case` or `file :: case :: test`.
//! The test fails on a failure it does not list and on a listed one that passes. It prints
//! `json-schema: N passed, M failed`.

use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use super::{StoreIndex, compile_all};
use crate::cel::from_json;

/// Where the suite's `remotes/` are served.
const REMOTE_BASE: &str = "http://localhost:1234/";

fn suite_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("GATEHOUSE_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance"))
        .join("json-schema-suite");
    if dir.join("tests/draft2020-12").is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "json-schema: suite not found at {} (CI=true)",
        dir.display()
    );
    println!("json-schema: SKIPPED, suite not found at {}", dir.display());
    None
}

fn read_json(path: &Path) -> Json {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every file under `dir` with its path relative to `dir`, sorted.
fn files(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = entry.expect("dir entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "json") {
                let rel = p.strip_prefix(dir).expect("under dir");
                out.push((rel.to_string_lossy().replace('\\', "/"), p));
            }
        }
    }
    out.sort();
    out
}

/// `key | reason` lines (`fields` 2), or `key | answer | reason` lines (`fields` 3) in
/// `cerbos_answers.txt`: the key and the rest of the line. Lines are split from the right,
/// since a key (a test's description) may itself hold ` | `.
fn listing(path: &Path, fields: usize) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let mut parts: Vec<&str> = l.rsplitn(fields, " | ").collect();
            assert!(
                parts.len() == fields && !parts[0].trim().is_empty(),
                "{}: `{l}` needs {fields} fields, the last a reason",
                path.display()
            );
            let key = parts.pop().unwrap_or_default().trim().to_string();
            parts.reverse();
            (key, parts.join(" | "))
        })
        .collect()
}

/// The entry whose key covers one of `keys`.
fn find<'l>(list: &'l [(String, String)], keys: &[String]) -> Option<&'l (String, String)> {
    list.iter().find(|(k, _)| keys.contains(k))
}

/// Compiles `schema` with the remotes and tells whether each instance is valid.
fn run_case(
    schema: &Json,
    remotes: &[(String, Json)],
    data: &[&Json],
) -> Result<Vec<bool>, String> {
    let mut index = StoreIndex::default();
    index.add("suite.json".to_string(), schema.clone());
    for (rel, doc) in remotes {
        index.add_at(
            format!("remotes/{rel}"),
            format!("{REMOTE_BASE}{rel}"),
            doc.clone(),
        );
    }
    index.add_metaschemas_if_referenced();
    let compiled = compile_all(&index)
        .into_iter()
        .next()
        .expect("the case's schema")
        .map_err(|e| format!("does not compile: {e}"))?;
    Ok(data
        .iter()
        .map(|d| compiled.violations(&from_json(d)).is_empty())
        .collect())
}

#[test]
fn json_schema_test_suite_draft2020_12() {
    let Some(dir) = suite_dir() else {
        return;
    };
    let data_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/json-schema-suite");
    let known = listing(&data_dir.join("known_failures.txt"), 2);
    let answers = listing(&data_dir.join("cerbos_answers.txt"), 3);
    let remotes: Vec<(String, Json)> = files(&dir.join("remotes"))
        .into_iter()
        .map(|(rel, p)| (rel, read_json(&p)))
        .collect();
    let (mut passed, mut failed) = (0usize, 0usize);
    let mut unexpected = Vec::new();
    let mut stale = Vec::new();
    let mut used = Vec::new();
    let mut with_cerbos_answer = 0usize;
    let tests_dir = dir.join("tests/draft2020-12");
    for (file, path) in files(&tests_dir) {
        if file.starts_with("optional/") && !file.starts_with("optional/format/") {
            continue;
        }
        let stem = file.trim_end_matches(".json");
        let cases = read_json(&path);
        for case in cases.as_array().expect("a list of cases") {
            let cdesc = case["description"].as_str().unwrap_or_default();
            let tests = case["tests"].as_array().expect("tests");
            let data: Vec<&Json> = tests.iter().map(|t| &t["data"]).collect();
            let outcome = run_case(&case["schema"], &remotes, &data);
            for (i, test) in tests.iter().enumerate() {
                let tdesc = test["description"].as_str().unwrap_or_default();
                let id = format!("{stem} :: {cdesc} :: {tdesc}");
                let keys = [stem.to_string(), format!("{stem} :: {cdesc}"), id.clone()];
                // None: the schema must not compile.
                let want = match find(&answers, &keys) {
                    Some((k, rest)) => {
                        used.push(k.clone());
                        with_cerbos_answer += 1;
                        match rest.split(" | ").next().map(str::trim) {
                            Some("valid") => Some(true),
                            Some("invalid") => Some(false),
                            Some("schema-error") => None,
                            other => panic!("cerbos_answers.txt: `{k}`: bad answer {other:?}"),
                        }
                    }
                    None => Some(test["valid"].as_bool().expect("valid")),
                };
                let result = match (&outcome, want) {
                    (Ok(valid), Some(want)) if valid[i] == want => Ok(()),
                    (Ok(valid), Some(want)) => Err(format!("valid: want {want}, got {}", valid[i])),
                    (Err(e), Some(_)) => Err(e.clone()),
                    (Err(_), None) => Ok(()),
                    (Ok(_), None) => Err("want a schema error, the schema compiles".to_string()),
                };
                let listed = find(&known, &keys).map(|(k, _)| k);
                if let Some(k) = listed {
                    used.push(k.clone());
                }
                match (result, listed) {
                    (Ok(()), None) => passed += 1,
                    (Ok(()), Some(_)) => {
                        passed += 1;
                        stale.push(id);
                    }
                    (Err(_), Some(_)) => failed += 1,
                    (Err(e), None) => {
                        failed += 1;
                        println!("json-schema FAIL {id}: {e}");
                        unexpected.push(id);
                    }
                }
            }
        }
    }
    println!("json-schema: {passed} passed, {failed} failed");
    println!(
        "json-schema: {with_cerbos_answer} of them checked against Cerbos's answer instead of the suite's"
    );
    for (k, _) in known.iter().chain(&answers) {
        assert!(
            used.contains(k),
            "known_failures.txt: `{k}` matches no test"
        );
    }
    assert!(
        unexpected.is_empty(),
        "JSON-Schema-Test-Suite tests failing that known_failures.txt does not list: {unexpected:#?}"
    );
    assert!(
        stale.is_empty(),
        "known_failures.txt lists tests that now pass: {stale:#?}"
    );
}
