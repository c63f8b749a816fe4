//! Replays Cerbos's CEL condition cases (`conformance/cel/*.yaml`) against the
//! golden answers recorded from the real Cerbos 0.55 (`conformance/golden/cel/*.json`).
//!
//! Each leaf expression is evaluated alone and compared with its golden value
//! (`true`, `false`, or `"error"` for an evaluation error or a non-boolean result);
//! then the whole condition (`all` / `any` / `none`, an erroring leaf counting as
//! not satisfied) is compared with the golden `conditionSatisfied`.

use std::path::{Path, PathBuf};

use chrono::DateTime;
use serde_json::{Value as Json, json};

use gatehouse::cel::{
    Activation, HostBinding, HostScope, Program, Timestamp, Value, compile, from_json, parse,
};

/// Cases that cannot pass, with the reason. Keys are `<case>: <expr>` for a leaf
/// and `<case>: condition` for a whole condition. Keep this list empty.
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[];

/// The request time of every case (the oracle's `now`).
const NOW: &str = "2021-04-22T10:05:20.021-05:00";

/// The host variables a condition can name, in activation-slot order.
const VARIABLES: [&str; 6] = ["request", "P", "R", "runtime", "G", "globals"];

struct Host;

impl HostScope for Host {
    fn variable(&self, name: &str) -> Option<u16> {
        VARIABLES.iter().position(|v| *v == name).map(|i| i as u16)
    }

    fn select(&self, _root: &str, _field: &str) -> Option<Result<HostBinding, String>> {
        None
    }
}

/// The corpus: `GATEHOUSE_CONFORMANCE_DIR`, or `../shared/conformance`.
fn corpus_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("GATEHOUSE_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance"));
    if dir.join("golden/cel").is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "cel: conformance corpus not found at {} (CI=true)",
        dir.display()
    );
    println!(
        "cel: SKIPPED, conformance corpus not found at {}",
        dir.display()
    );
    None
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The single YAML document of a case file, as JSON.
fn case_doc(path: &Path) -> Json {
    let docs: Vec<Json> = serde_saphyr::from_multiple(&read(path))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut docs: Vec<Json> = docs.into_iter().filter(|d| !d.is_null()).collect();
    assert_eq!(docs.len(), 1, "{}: expected one document", path.display());
    docs.remove(0)
}

fn str_field<'a>(v: &'a Json, name: &str) -> &'a str {
    v.get(name).and_then(Json::as_str).unwrap_or("")
}

/// A principal or resource as conditions see it, with both field spellings Cerbos accepts.
fn entity(v: &Json, fields: &[&str]) -> Json {
    let mut out = serde_json::Map::new();
    for f in fields {
        out.insert((*f).into(), json!(str_field(v, f)));
    }
    out.insert(
        "attr".into(),
        v.get("attr").cloned().unwrap_or_else(|| json!({})),
    );
    let version = json!(str_field(v, "policyVersion"));
    out.insert("policyVersion".into(), version.clone());
    out.insert("policy_version".into(), version);
    out.insert("scope".into(), json!(str_field(v, "scope")));
    Json::Object(out)
}

/// The activation slots (see [`VARIABLES`]) for a case's request.
fn host_values(request: &Json) -> Vec<Value> {
    let empty = json!({});
    let p = request.get("principal").unwrap_or(&empty);
    let r = request.get("resource").unwrap_or(&empty);
    let mut principal = entity(p, &["id"]);
    principal["roles"] = p.get("roles").cloned().unwrap_or_else(|| json!([]));
    let resource = entity(r, &["kind", "id"]);
    let jwt = request
        .pointer("/auxData/jwt")
        .or_else(|| request.pointer("/aux_data/jwt"))
        .cloned()
        .unwrap_or_else(|| json!({}));
    let aux = json!({ "jwt": jwt });
    let request = json!({
        "principal": principal,
        "resource": resource,
        "auxData": aux,
        "aux_data": aux,
    });
    let runtime = json!({ "effectiveDerivedRoles": [], "effective_derived_roles": [] });
    vec![
        from_json(&request),
        from_json(&principal),
        from_json(&resource),
        from_json(&runtime),
        from_json(&json!({})),
        from_json(&json!({})),
    ]
}

/// The outcome of one expression, as the golden files record it.
#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    True,
    False,
    Error(String),
}

impl Outcome {
    fn golden(v: &Json) -> Option<Outcome> {
        match v {
            Json::Bool(true) => Some(Outcome::True),
            Json::Bool(false) => Some(Outcome::False),
            Json::String(s) if s == "error" => Some(Outcome::Error(String::new())),
            _ => None,
        }
    }

    fn same_kind(&self, other: &Outcome) -> bool {
        matches!(
            (self, other),
            (Outcome::True, Outcome::True)
                | (Outcome::False, Outcome::False)
                | (Outcome::Error(_), Outcome::Error(_))
        )
    }

    fn is_true(&self) -> bool {
        *self == Outcome::True
    }
}

fn compile_expr(src: &str) -> Result<Program, String> {
    let expr = parse(src).map_err(|e| format!("parse error: {e}"))?;
    compile(&expr, &Host).map_err(|e| format!("compile error: {e}"))
}

/// Evaluates a leaf. Compile errors are reported separately: Cerbos compiled every case.
fn eval_leaf(src: &str, host: &[Value], now: Timestamp) -> Result<Outcome, String> {
    let program = compile_expr(src)?;
    Ok(match program.eval(&Activation::new(host, now)) {
        Ok(Value::Bool(true)) => Outcome::True,
        Ok(Value::Bool(false)) => Outcome::False,
        Ok(other) => Outcome::Error(format!("non-boolean result {other:?}")),
        Err(e) => Outcome::Error(e.to_string()),
    })
}

/// Evaluates a condition tree (`expr`, `all`, `any`, `none`, optionally under `match`).
fn eval_condition(node: &Json, host: &[Value], now: Timestamp) -> Result<bool, String> {
    if let Some(inner) = node.get("match") {
        return eval_condition(inner, host, now);
    }
    if let Some(src) = node.get("expr").and_then(Json::as_str) {
        return Ok(eval_leaf(src, host, now)?.is_true());
    }
    for op in ["all", "any", "none"] {
        let Some(group) = node.get(op) else { continue };
        let children = group
            .get("of")
            .and_then(Json::as_array)
            .ok_or_else(|| format!("`{op}` without `of`"))?;
        let results = children
            .iter()
            .map(|c| eval_condition(c, host, now))
            .collect::<Result<Vec<bool>, String>>()?;
        return Ok(match op {
            "all" => results.iter().all(|r| *r),
            "any" => results.iter().any(|r| *r),
            _ => !results.iter().any(|r| *r),
        });
    }
    Err(format!("unknown condition node {node}"))
}

#[test]
fn cel_cases() {
    let Some(dir) = corpus_dir() else { return };
    let now: Timestamp = DateTime::parse_from_rfc3339(NOW).expect("valid time");
    let mut goldens: Vec<PathBuf> = std::fs::read_dir(dir.join("golden/cel"))
        .expect("golden/cel")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    goldens.sort();

    let (mut passed, mut known, mut expressions, mut conditions) = (0, 0, 0, 0);
    let mut failures: Vec<String> = Vec::new();
    let mut stale: Vec<&str> = Vec::new();
    let mut check =
        |key: String, ok: bool, detail: String, failures: &mut Vec<String>| match KNOWN_DIFFERENCES
            .iter()
            .find(|(k, _)| *k == key)
        {
            Some((k, _)) if ok => stale.push(k),
            Some(_) => known += 1,
            None if ok => passed += 1,
            None => failures.push(format!("{key}\n    {detail}")),
        };

    for golden_path in &goldens {
        let golden: Json =
            serde_json::from_str(&read(golden_path)).unwrap_or_else(|e| panic!("{e}"));
        let case = golden["case"].as_str().expect("golden case path");
        let doc = case_doc(&dir.join(case));
        let host = host_values(&doc["request"]);

        for entry in golden["expressions"].as_array().expect("expressions") {
            expressions += 1;
            let src = entry["expr"].as_str().expect("expr");
            let want = Outcome::golden(&entry["value"]).expect("golden value");
            let key = format!("{case}: {src}");
            match eval_leaf(src, &host, now) {
                Ok(got) => {
                    let ok = got.same_kind(&want);
                    check(
                        key,
                        ok,
                        format!("want {want:?}, got {got:?}"),
                        &mut failures,
                    );
                }
                Err(e) => check(key, false, e, &mut failures),
            }
        }

        conditions += 1;
        let want = golden["conditionSatisfied"]
            .as_bool()
            .expect("conditionSatisfied");
        let key = format!("{case}: condition");
        match eval_condition(&doc["condition"], &host, now) {
            Ok(got) => check(
                key,
                got == want,
                format!("want {want}, got {got}"),
                &mut failures,
            ),
            Err(e) => check(key, false, e, &mut failures),
        }
    }

    for f in &failures {
        println!("FAILED {f}");
    }
    for k in &stale {
        println!("STALE known difference now passes, remove it from KNOWN_DIFFERENCES: {k}");
    }
    println!(
        "cel: {expressions} expressions and {conditions} conditions in {} cases",
        goldens.len()
    );
    println!(
        "cel: {passed} passed, {} failed, {known} skipped",
        failures.len()
    );
    assert!(failures.is_empty(), "{} CEL cases failed", failures.len());
    assert!(
        stale.is_empty(),
        "stale entries in KNOWN_DIFFERENCES: {stale:?}"
    );
    assert!(expressions > 0 && conditions > 0, "no CEL cases found");
}
