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
