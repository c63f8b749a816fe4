//! Expression-level differential test against the real Cerbos 0.55 (issue 11, class 5;
//! ignored by default, run by `tests/diff/run.sh`). Random typed expressions
//! (`expr_gen`) become the condition and the output of one resource policy each; both
//! `cerbos compile` and `gatehouse compile` judge the directory (acceptance and error text
//! per policy), then the real Cerbos server and Gatehouse serve the policies both accept and
//! answer the same CheckResources requests: the decision (the condition), the output's value
//! or its error text, compared field by field.
//!
//! ```sh
//! GATEHOUSE_EXPR_DIFF_COUNT=6000 cargo test --test it expr_diff -- --ignored --nocapture
//! ```
//!
//! `GATEHOUSE_EXPR_DIFF_COUNT` (default 400) and `GATEHOUSE_EXPR_DIFF_SEED` (default 11);
//! `GATEHOUSE_DIFF_ALLOW_MISMATCHES=1` reports without failing;
//! `GATEHOUSE_EXPR_DIFF_DUMP=<file>` writes every difference there (the output shows 60).
//! Any compile or evaluation difference fails the test, apart from the listed deliberate
//! ones ([`KNOWN_DIFFERENCES`], [`NON_FINITE`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use gatehouse::api::ApiSettings;
use gatehouse::engine::EngineConfig;
use gatehouse::store::PolicyStore;

use crate::api_diff::{Rng, TempDir, cerbos_bin, reqwest_like, start_cerbos_with};
use crate::api_server::{prune, start};
use crate::expr_gen::{ALL, Gen, RESOURCE_ATTR, T};

/// Expressions Gatehouse deliberately evaluates differently from Cerbos 0.55, with the
/// reason: `(expression, reason)`. The generator does not produce them.
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[];

/// How Cerbos 0.55's HTTP API fails a whole CheckResources request (HTTP 500) when one
/// output is NaN or infinite: protojson cannot write such a `google.protobuf.Value`.
/// Deliberately not followed (README, "Known differences"): Gatehouse answers every
/// resource and writes the number as a string (`"NaN"`, `"+Inf"`, `"-Inf"`, as CEL's
/// `string()` spells it), where Cerbos's own gRPC API carries the number. The test sends such a
/// batch again resource by resource, and counts these apart.
/// (protobuf-go writes the space after `proto:` as an ordinary or a non-breaking one.)
const NON_FINITE: &str = "google.protobuf.Value.number_value: invalid ";

/// Per policy file, the compile errors' descriptions (empty when it compiles).
fn compile_errors(bin: &Path, dir: &Path) -> BTreeMap<String, Vec<String>> {
    let out = Command::new(bin)
        .args(["compile", "-o", "json"])
        .arg(dir)
        .output()
        .expect("compile runs");
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let mut by_file: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in json["compileErrors"]["errors"]
        .as_array()
        .into_iter()
        .flatten()
    {
        by_file
            .entry(e["file"].as_str().unwrap_or_default().to_string())
            .or_default()
            .push(format!(
                "{} {}",
                e["description"].as_str().unwrap_or_default(),
                e["position"]
            ));
    }
    if let Some(lint) = json.get("lintErrors") {
        by_file.insert("<lint>".into(), vec![lint.to_string()]);
    }
    by_file
}

fn policy(i: usize, condition: &str, output: &str) -> Value {
    json!({"apiVersion": "api.cerbos.dev/v1", "resourcePolicy": {
        "resource": format!("k{i}"),
        "version": "default",
        "rules": [{
            "actions": ["a"],
            "effect": "EFFECT_ALLOW",
            "roles": ["*"],
            "condition": {"match": {"expr": condition}},
            "output": {"when": {"ruleActivated": output, "conditionNotMet": output}},
        }],
    }})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the Cerbos binary: see the module docs of api_diff"]
async fn expr_diff() {
    let count: usize = std::env::var("GATEHOUSE_EXPR_DIFF_COUNT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(400);
    let seed: u64 = std::env::var("GATEHOUSE_EXPR_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(11);
    for (what, why) in KNOWN_DIFFERENCES {
        println!("expr-diff: not generated (deliberate difference): {what}: {why}");
    }
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let dir =
        TempDir(std::env::temp_dir().join(format!("gatehouse-expr-diff-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).unwrap();
    let mut exprs = Vec::new();
    for i in 0..count {
        let mut g = Gen { rng: &mut rng };
        let t = *g.rng.pick(ALL);
        let output = g.typed(t, 3);
        let condition = g.typed(T::Bool, 3);
        if KNOWN_DIFFERENCES
            .iter()
            .any(|(k, _)| output.contains(k) || condition.contains(k))
        {
            continue;
        }
        let name = format!("k{i}.json");
        std::fs::write(
            dir.0.join(&name),
            serde_json::to_string_pretty(&policy(i, &condition, &output)).unwrap(),
        )
        .unwrap();
        exprs.push((i, name, condition, output));
    }

    // Compile acceptance and error text, per policy.
    let gatehouse = Path::new(env!("CARGO_BIN_EXE_gatehouse"));
    let theirs = compile_errors(&cerbos_bin(), &dir.0);
    let ours = compile_errors(gatehouse, &dir.0);
    let mut mismatches = Vec::new();
    let mut refused = 0;
    for (_, name, condition, output) in &exprs {
        let (t, o) = (theirs.get(name), ours.get(name));
        refused += usize::from(t.is_some());
        if t != o {
            mismatches.push(format!(
                "COMPILE condition `{condition}` output `{output}`\n  cerbos: {t:?}\n  ours:   {o:?}"
            ));
        }
        if t.is_some() || o.is_some() {
            let _ = std::fs::remove_file(dir.0.join(name));
        }
    }
    if let Some(lint) = theirs.get("<lint>").or(ours.get("<lint>")) {
        mismatches.push(format!("LINT {lint:?}"));
    }
    let compile_mismatches = mismatches.len();

    // Evaluation: decisions and outputs.
    let served: Vec<_> = exprs
        .iter()
        .filter(|(_, name, _, _)| dir.0.join(name).exists())
        .collect();
    let cerbos = start_cerbos_with(
        &dir.0,
        json!({"schema": {"enforcement": "none"}, "engine": {}}),
    )
    .await;
    let store = PolicyStore::load(&dir.0, EngineConfig::default())
        .unwrap_or_else(|e| panic!("Gatehouse refuses what both compile: {e}"));
    let server = start(store, ApiSettings::default()).await;
    let client = reqwest_like::Client::new();
    let attr: Value = serde_json::from_str(RESOURCE_ATTR).unwrap();
    let (mut allowed, mut outputs, mut errors) = (0usize, 0usize, 0usize);
    let mut batches: std::collections::VecDeque<Vec<_>> =
        served.chunks(25).map(<[_]>::to_vec).collect();
    let mut non_finite = 0usize;
    while let Some(batch) = batches.pop_front() {
        let resources: Vec<Value> = batch
            .iter()
            .map(|(i, ..)| json!({"actions": ["a"], "resource": {"kind": format!("k{i}"), "id": "r1", "attr": attr}}))
            .collect();
        let req = json!({
            "requestId": "x",
            "principal": {"id": "alice", "roles": ["user"], "attr": {"dept": "eng"}},
            "resources": resources,
        });
        let (ts, tb) = client
            .post(&format!("{}/api/check/resources", cerbos.http_base), &req)
            .await
            .expect("Cerbos answers");
        let (os, ob) = server.check_http(&req).await;
        if ts == 500
            && tb["message"]
                .as_str()
                .is_some_and(|m| m.contains(NON_FINITE))
        {
            // The listed difference: compare the others one by one, and this one only on
            // Gatehouse writing the non-finite number as a string.
            if batch.len() > 1 {
                batches.extend(batch.iter().map(|item| vec![*item]));
            } else if os == 200 && {
                let outs = ob["results"][0]["outputs"].to_string();
                ["\"NaN\"", "\"+Inf\"", "\"-Inf\""]
                    .iter()
                    .any(|n| outs.contains(n))
            } {
                non_finite += 1;
            } else {
                mismatches.push(format!(
                    "REQUEST status {ts} vs {os}\n  cerbos: {tb}\n  ours:   {ob}"
                ));
            }
            continue;
        }
        let t_results = tb["results"].as_array().cloned().unwrap_or_default();
        let o_results = ob["results"].as_array().cloned().unwrap_or_default();
        if ts != os || t_results.len() != batch.len() || o_results.len() != batch.len() {
            mismatches.push(format!(
                "REQUEST status {ts} vs {os}\n  cerbos: {tb}\n  ours:   {ob}"
            ));
            continue;
        }
        for ((_, _, condition, output), (t, o)) in
            batch.iter().zip(t_results.iter().zip(&o_results))
        {
            allowed += usize::from(t["actions"]["a"] == "EFFECT_ALLOW");
            for out in t["outputs"].as_array().into_iter().flatten() {
                outputs += 1;
                errors += usize::from(out.get("error").is_some());
            }
            if prune(t) != prune(o) {
                mismatches.push(format!(
                    "EVAL condition `{condition}` output `{output}`\n  cerbos: {}\n  ours:   {}",
                    t, o
                ));
            }
        }
    }
    drop(cerbos);
    if let Ok(path) = std::env::var("GATEHOUSE_EXPR_DIFF_DUMP") {
        std::fs::write(&path, mismatches.join("\n")).expect("dump written");
    }
    for m in mismatches.iter().take(60) {
        println!("MISMATCH {m}");
    }
    println!(
        "expr-diff: seed {seed}: {} policies ({} expressions), {refused} refused by Cerbos, {compile_mismatches} compile differences; {} served: {allowed} allowed, {outputs} outputs ({errors} errors); {} evaluation differences ({non_finite} non-finite outputs Cerbos's HTTP API cannot write, listed)",
        exprs.len(),
        exprs.len() * 2,
        served.len(),
        mismatches.len() - compile_mismatches
    );
    if std::env::var("GATEHOUSE_DIFF_ALLOW_MISMATCHES").as_deref() != Ok("1") {
        assert_eq!(compile_mismatches, 0, "compile acceptance or text differs");
        assert!(
            mismatches.is_empty(),
            "{} evaluation differences",
            mismatches.len()
        );
    }
}
