//! Cerbos's compiler cases (`compile/*.yaml` with their `.input` txtar archives): each
//! archive is unpacked into a policy directory and its `mainDef` is compiled with its
//! ancestors and imports (one Cerbos compilation unit), against the corpus's schema store.
//! A case with `wantErrors` must fail with exactly those errors (file, kind, description,
//! and position when the case gives one); the others must compile.

use std::path::{Path, PathBuf};

use gatehouse::policy::{SchemaStore, StoreError, compile_definition, load_dir};
use serde_json::Value;

use crate::util;

/// Cases whose expectations we deliberately do not meet, with the reason. Empty: every
/// case is met.
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[];

/// Writes the files of a txtar archive (`-- path --` lines start files) under `dir`.
pub fn unpack_txtar(archive: &str, dir: &Path) {
    let mut current: Option<(String, String)> = None;
    let mut files: Vec<(String, String)> = Vec::new();
    for line in archive.split_inclusive('\n') {
        let trimmed = line.trim_end_matches(['\n', '\r']);
        if let Some(name) = trimmed
            .strip_prefix("-- ")
            .and_then(|r| r.strip_suffix(" --"))
        {
            files.extend(current.take());
            current = Some((name.trim().to_owned(), String::new()));
        } else if let Some((_, text)) = &mut current {
            text.push_str(line);
        }
    }
    files.extend(current);
    for (name, text) in files {
        let path = dir.join(&name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{}: {e}", parent.display()));
        }
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

/// A fresh directory under the system temp dir.
pub fn temp_dir(prefix: &str, case: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("gatehouse-{prefix}-{}-{case}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

/// An error as compared: file, kind, description, line and column.
#[derive(Clone, Debug, PartialEq)]
struct Reported {
    file: String,
    kind: String,
    description: String,
    position: Option<(u64, u64)>,
}

fn wanted(e: &Value) -> Reported {
    let text = |k: &str| e[k].as_str().unwrap_or_default().trim().to_owned();
    let pos = &e["position"];
    Reported {
        file: text("file"),
        kind: text("error"),
        description: text("description"),
        position: pos["line"]
            .as_u64()
            .map(|line| (line, pos["column"].as_u64().unwrap_or(0))),
    }
}

fn actual(err: &StoreError) -> Vec<Reported> {
    match err {
        StoreError::Compile(errs) => errs
            .errors()
            .iter()
            .map(|e| Reported {
                file: e.span.file.to_string(),
                kind: e.kind.to_string(),
                description: e.message.trim().to_owned(),
                position: Some((u64::from(e.span.line), u64::from(e.span.col))),
            })
            .collect(),
        StoreError::Load(errs) => errs
            .errors()
            .iter()
            .map(|e| Reported {
                file: e.span.file.to_string(),
                kind: format!("load error ({:?})", e.kind),
                description: e.message.clone(),
                position: Some((u64::from(e.span.line), u64::from(e.span.col))),
            })
            .collect(),
        other => vec![Reported {
            file: String::new(),
            kind: "other".into(),
            description: other.to_string(),
            position: None,
        }],
    }
}

/// Whether an actual error is the wanted one (the position only when the case gives one).
fn matches(want: &Reported, got: &Reported) -> bool {
    want.file == got.file
        && want.kind == got.kind
        && want.description == got.description
        && (want.position.is_none() || want.position == got.position)
}

fn check_case(case: &Path, schemas: &[(String, Value)]) -> Result<(), String> {
    let spec = util::yaml_docs(case)
        .into_iter()
        .next()
        .ok_or("empty case file")?;
    let main = spec["mainDef"].as_str().ok_or("no mainDef")?;
    let name = case.file_stem().and_then(|s| s.to_str()).unwrap_or("case");
    let archive = std::fs::read_to_string(format!("{}.input", case.display()))
        .map_err(|e| format!("reading the archive: {e}"))?;
    let dir = temp_dir("compile", name);
    unpack_txtar(&archive, &dir);
    let result = compile_definition(&dir, main, SchemaStore::new_lenient(schemas.to_vec()));
    let _ = std::fs::remove_dir_all(&dir);
    let want: Vec<Reported> = spec["wantErrors"]
        .as_array()
        .map(|a| a.iter().map(wanted).collect())
        .unwrap_or_default();
    match result {
        Ok(_) if want.is_empty() => Ok(()),
        Ok(_) => Err(format!(
            "compiled, but {} error(s) were wanted: {want:#?}",
            want.len()
        )),
        Err(e) if want.is_empty() => Err(format!("unexpected errors:\n{e}")),
        Err(e) => {
            let mut got = actual(&e);
            let mut missing = Vec::new();
            for w in &want {
                match got.iter().position(|g| matches(w, g)) {
                    Some(i) => {
                        got.remove(i);
                    }
                    None => missing.push(w),
                }
            }
            if missing.is_empty() && got.is_empty() {
                Ok(())
            } else {
                Err(format!("missing: {missing:#?}\nunexpected: {got:#?}"))
            }
        }
    }
}

#[test]
fn compile_cases() {
    let Some(corpus) = util::corpus_dir("compile") else {
        return;
    };
    let schemas = load_dir(&corpus.join("schema/fs"))
        .unwrap_or_else(|e| panic!("schema store: {e}"))
        .schemas;
    let (mut passed, mut failed) = (0, 0);
    for case in util::files_with_ext(&corpus.join("compile"), "yaml") {
        let name = case
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let known = KNOWN_DIFFERENCES.iter().find(|(n, _)| *n == name);
        match (check_case(&case, &schemas), known) {
            (Ok(()), None) => passed += 1,
            (Ok(()), Some(_)) => {
                failed += 1;
                println!("compile {name}: passes, remove it from KNOWN_DIFFERENCES");
            }
            (Err(e), Some((_, reason))) => {
                println!("compile {name}: known difference ({reason}): {e}")
            }
            (Err(e), None) => {
                failed += 1;
                println!("compile {name}: FAILED\n{e}");
            }
        }
    }
    println!("compile: {passed} passed, {failed} failed");
    assert_eq!(failed, 0);
    assert!(
        passed + KNOWN_DIFFERENCES.len() >= 30,
        "expected the 30 compile cases"
    );
}
