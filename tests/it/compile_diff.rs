//! Differential test of `gatehouse compile` against the real `cerbos compile` (ignored by
//! default; it needs the Cerbos binary, see `api_diff`): the same flags on the same
//! directories must print the same JSON and exit with the same code. Covers
//! `--test-filter` on every dimension, test and compile failures, lint errors.
//!
//! ```sh
//! cargo test --test it compile_diff -- --ignored --nocapture
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::api_diff::cerbos_bin;

fn run(bin: &Path, args: &[&str], dir: &Path) -> (Option<i32>, Value) {
    let out = Command::new(bin)
        .arg("compile")
        .args(args)
        .args(["-o", "json"])
        .arg(dir)
        .output()
        .unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code(), json)
}

#[test]
#[ignore = "needs the real Cerbos binary (tests/diff/run.sh)"]
fn compile_diff() {
    let cerbos = cerbos_bin();
    assert!(
        cerbos.exists(),
        "Cerbos binary not found at {}",
        cerbos.display()
    );
    let gatehouse = PathBuf::from(env!("CARGO_BIN_EXE_gatehouse"));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let demo = root.join("policies");
    let mut cases: Vec<(Vec<&str>, PathBuf)> = Vec::new();
    for filter in [
        "principal=alice",
        "principal=b*",
        "action=read",
        "action=up*",
        "suite=Nope",
        "suite=Doc*",
        "test=Nope",
        "test=owner*;action=delete",
        "resource=doc_draft",
        "resource=nope",
        "principal=alice;resource=doc_*",
        "test=*;action=read",
    ] {
        cases.push((vec!["--test-filter", filter], demo.clone()));
    }
    cases.push((
        vec!["--test-filter=action=up*", "--test-filter=principal=bob"],
        demo.clone(),
    ));
    cases.push((vec![], demo.clone()));
    cases.push((vec!["--skip-tests"], demo.clone()));
    for dir in ["failing_suite", "bad_policies", "strict_suite"] {
        cases.push((vec![], root.join("tests/data").join(dir)));
    }
    cases.push((
        vec!["--strict-evaluation"],
        root.join("tests/data/strict_suite"),
    ));
    if let Some(corpus) = crate::util::corpus_dir("compile-diff") {
        cases.push((vec!["--ignore-schemas"], corpus.join("store")));
        cases.push((
            vec!["--ignore-schemas", "--test-filter", "action=view*"],
            corpus.join("store"),
        ));
    }
    let mut failed = Vec::new();
    for (args, dir) in &cases {
        let want = run(&cerbos, args, dir);
        let have = run(&gatehouse, args, dir);
        if want != have {
            failed.push(format!(
                "{args:?} {}: cerbos exit {:?}, gatehouse exit {:?}\ncerbos:    {}\ngatehouse: {}",
                dir.display(),
                want.0,
                have.0,
                want.1.to_string().chars().take(600).collect::<String>(),
                have.1.to_string().chars().take(600).collect::<String>(),
            ));
        }
    }
    // The human outputs too (failures' engine traces excepted: see the README).
    let text_cases: Vec<(Vec<&str>, PathBuf)> = vec![
        (vec![], demo.clone()),
        (vec!["-o", "list"], demo.clone()),
        (
            vec!["--verbose", "--test-filter", "principal=bob"],
            demo.clone(),
        ),
        (vec!["-o", "list", "--verbose"], demo.clone()),
        (vec![], root.join("tests/data/failing_suite")),
        (vec!["-o", "list"], root.join("tests/data/failing_suite")),
        (
            vec!["--strict-evaluation"],
            root.join("tests/data/strict_suite"),
        ),
    ];
    let text = |bin: &Path, args: &[&str], dir: &Path| {
        let out = Command::new(bin)
            .args(["compile", "--color=never"])
            .args(args)
            .arg(dir)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    for (args, dir) in &text_cases {
        let want = text(&cerbos, args, dir);
        let have = text(&gatehouse, args, dir);
        if want != have {
            failed.push(format!(
                "text {args:?} {}:\ncerbos ({:?}):\n{}\ngatehouse ({:?}):\n{}",
                dir.display(),
                want.0,
                want.1,
                have.0,
                have.1
            ));
        }
    }
    let total = cases.len() + text_cases.len();
    println!(
        "compile-diff: {} passed, {} failed",
        total - failed.len(),
        failed.len()
    );
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

/// Issue 11 class 4: mistyped conditions are accepted or refused by `gatehouse compile`
/// exactly as by `cerbos compile`, with the same exit code and the same `compileErrors`
/// JSON per policy. Generated: field selections from the declared fields of `request`,
/// `R`, `P`, `runtime` and `auxData` (typos, selections on strings and lists, through
/// `has`, comprehensions and map literals), and `expr_gen`'s mistyped expressions (overloads
/// and arity of every library's functions, unknown functions, invalid `timestamp`,
/// `duration`, `ip`, `cidr` literals, `format` verbs of the wrong type).
/// `GATEHOUSE_COMPILE_DIFF_EXPRS` sets the number of expressions (default 400).
#[test]
#[ignore = "needs the real Cerbos binary (tests/diff/run.sh)"]
fn compile_diff_mistyped_conditions() {
    use crate::api_diff::Rng;
    let cerbos = cerbos_bin();
    assert!(
        cerbos.exists(),
        "Cerbos binary not found at {}",
        cerbos.display()
    );
    let gatehouse = PathBuf::from(env!("CARGO_BIN_EXE_gatehouse"));
    let count: usize = std::env::var("GATEHOUSE_COMPILE_DIFF_EXPRS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(400);
    const ROOTS: &[&str] = &[
        "R",
        "P",
        "request",
        "request.principal",
        "request.resource",
        "runtime",
        "request.auxData",
        "request.aux_data",
        "request.auxData.jwts.t",
    ];
    const FIELDS: &[&str] = &[
        "id",
        "kind",
        "attr",
        "attrs",
        "roles",
        "scope",
        "policyVersion",
        "policy_version",
        "idd",
        "principal",
        "resource",
        "principl",
        "auxData",
        "jwt",
        "jwts",
        "claims",
        "effectiveDerivedRoles",
        "effective_derived_roles",
        "x",
    ];
    let mut rng = Rng(0x5eed_c0de_0011);
    let base = std::env::temp_dir().join(format!("gatehouse-compile-diff-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    // Field typos for a quarter of the expressions; for the rest, calls with arguments of
    // random types and counts, unknown functions, invalid literals, format verbs given the
    // wrong type, operators on mismatched operands (`expr_gen::Gen::mistyped`).
    let mut exprs = Vec::new();
    for i in 0..count {
        if i % 4 != 0 {
            exprs.push(crate::expr_gen::Gen { rng: &mut rng }.mistyped());
            continue;
        }
        let mut sel = format!("{}.{}", rng.pick(ROOTS), rng.pick(FIELDS));
        if rng.chance(35) {
            sel = format!("{sel}.{}", rng.pick(FIELDS));
        }
        exprs.push(match rng.below(6) {
            0 => format!("has({sel})"),
            1 => format!("P.roles.exists(r, r.{} == \"x\")", rng.pick(FIELDS)),
            2 => format!("{{\"k\": {}}}.k.{} == 1", rng.pick(ROOTS), rng.pick(FIELDS)),
            3 => format!("R.attr.owner == P.id && {sel} == \"x\""),
            _ => format!("{sel} == \"x\""),
        });
    }
    for (i, expr) in exprs.iter().enumerate() {
        let quoted = serde_json::to_string(expr).unwrap();
        let policy = format!(
            "apiVersion: api.cerbos.dev/v1\nresourcePolicy:\n  resource: doc{i}\n  version: default\n  rules:\n    - actions: [\"view\"]\n      effect: EFFECT_ALLOW\n      roles: [\"user\"]\n      condition:\n        match:\n          expr: {quoted}\n"
        );
        std::fs::write(base.join(format!("p{i}.yaml")), policy).unwrap();
    }
    // One run of each compiler over the whole directory; the errors compared per file.
    let per_file = |(code, json): (Option<i32>, Value)| {
        let mut by_file: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
        for e in json["compileErrors"]["errors"]
            .as_array()
            .into_iter()
            .flatten()
        {
            by_file
                .entry(e["file"].as_str().unwrap_or_default().to_string())
                .or_default()
                .push(e.clone());
        }
        (code, json.get("lintErrors").cloned(), by_file)
    };
    let theirs = per_file(run(&cerbos, &[], &base));
    let ours = per_file(run(&gatehouse, &[], &base));
    let _ = std::fs::remove_dir_all(&base);
    let (mut same, mut refused, mut failures) = (0usize, 0usize, Vec::new());
    if theirs.0 != ours.0 || theirs.1 != ours.1 {
        failures.push(format!(
            "exit code or lint errors: cerbos {:?} {:?}, ours {:?} {:?}",
            theirs.0, theirs.1, ours.0, ours.1
        ));
    }
    for (i, expr) in exprs.iter().enumerate() {
        let file = format!("p{i}.yaml");
        let (t, o) = (theirs.2.get(&file), ours.2.get(&file));
        refused += usize::from(t.is_some());
        if t == o {
            same += 1;
        } else {
            failures.push(format!("{expr}\n  cerbos: {t:?}\n  ours:   {o:?}"));
        }
    }
    for f in &failures {
        println!("MISMATCH {f}");
    }
    println!(
        "compile-diff: mistyped conditions: {count} expressions ({refused} refused by Cerbos), {same} identical, {} different",
        failures.len()
    );
    assert!(failures.is_empty(), "{} expressions differ", failures.len());
}
