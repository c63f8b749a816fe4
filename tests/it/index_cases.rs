//! Cerbos's store-index cases (`index/*.yaml`): the files of each case are written to a
//! directory, loaded and indexed. A case with `wantErrList` must report the same
//! problems (load failures, duplicate definitions, missing imports and scope ancestors,
//! disabled definitions, scope-permission conflicts) with the wanted details, and the
//! store must not compile. The other cases must index cleanly, with the wanted compilation
//! units, and compile (a `script` condition, which Cerbos rejects at compile time, must
//! make compilation fail with Cerbos's error and nothing else).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use gatehouse::policy::compile::{IndexError, index_policies};
use gatehouse::policy::load::LoadErrorKind;
use gatehouse::policy::{
    CompileErrorKind, LoadErrors, LoadedStore, StoreError, compile_store, load_dir,
};
use serde_json::Value;

use crate::compile_cases::temp_dir;
use crate::util;

/// Cases whose expectations we deliberately do not meet, with the reason. Empty: every
/// case is met.
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[];

/// The categories of `IndexBuildErrors` that the index (not the loader) reports.
const INDEX_CATEGORIES: &[&str] = &[
    "duplicateDefs",
    "missingImports",
    "missingScopes",
    "missingScopeDetails",
    "scopePermissionsConflicts",
];

fn text(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or_default().trim().to_owned()
}

fn list<'v>(v: &'v Value, key: &str) -> &'v [Value] {
    v[key].as_array().map_or(&[], Vec::as_slice)
}

/// `(line, column)` of a `position`, when given.
fn position(v: &Value) -> Option<(u64, u64)> {
    let p = &v["position"];
    Some((p["line"].as_u64()?, p["column"].as_u64().unwrap_or(0)))
}

fn same_position(want: &Value, line: u32, col: u32) -> bool {
    position(want).is_none_or(|p| p == (u64::from(line), u64::from(col)))
}

/// Pairs every wanted item with a distinct actual item; describes what is left over.
fn match_all<T: std::fmt::Debug>(
    what: &str,
    want: &[Value],
    mut got: Vec<T>,
    same: impl Fn(&Value, &T) -> bool,
) -> Result<(), String> {
    let mut missing = Vec::new();
    for w in want {
        match got.iter().position(|g| same(w, g)) {
            Some(i) => {
                got.remove(i);
            }
            None => missing.push(w),
        }
    }
    if missing.is_empty() && got.is_empty() {
        Ok(())
    } else {
        Err(format!("{what}: missing {missing:?}, unexpected {got:?}"))
    }
}

fn check_load_failures(want: &Value, errors: &LoadErrors) -> Result<(), String> {
    for category in INDEX_CATEGORIES {
        if !list(want, category).is_empty() {
            return Err(format!(
                "{category} wanted, but loading failed first:\n{errors}"
            ));
        }
    }
    match_all(
        "loadFailures",
        list(want, "loadFailures"),
        errors.errors().to_vec(),
        |w, e| {
            let details = &w["errorDetails"];
            let kind_ok = match details["kind"].as_str() {
                Some("KIND_PARSE_ERROR") => e.kind == LoadErrorKind::Parse,
                Some("KIND_VALIDATION_ERROR") => e.kind == LoadErrorKind::Validation,
                _ => true,
            };
            text(w, "file") == *e.span.file
                && text(w, "error") == e.message
                && kind_ok
                && same_position(details, e.span.line, e.span.col)
        },
    )
}

fn check_index_errors(want: &Value, store: &LoadedStore) -> Result<(), String> {
    if !list(want, "loadFailures").is_empty() {
        return Err("loadFailures wanted, but every file loaded".into());
    }
    let index = index_policies(&store.policies);
    if index.errors().is_empty() {
        return Err("the index reports no errors".into());
    }
    let errors = index.errors();
    let duplicates: Vec<&IndexError> = errors
        .iter()
        .filter(|e| matches!(e, IndexError::DuplicateDefinition { .. }))
        .collect();
    match_all(
        "duplicateDefs",
        list(want, "duplicateDefs"),
        duplicates,
        |w, e| {
            let IndexError::DuplicateDefinition {
                span,
                other_file,
                policy,
            } = e
            else {
                return false;
            };
            text(w, "file") == *span.file
                && text(w, "otherFile") == **other_file
                && text(w, "policy") == *policy
                && same_position(w, span.line, span.col)
        },
    )?;
    let imports: Vec<&IndexError> = errors
        .iter()
        .filter(|e| matches!(e, IndexError::MissingImport { .. }))
        .collect();
    match_all(
        "missingImports",
        list(want, "missingImports"),
        imports,
        |w, e| {
            let IndexError::MissingImport {
                span,
                policy,
                kind,
                name,
            } = e
            else {
                return false;
            };
            text(w, "importingFile") == *span.file
                && text(w, "importingPolicy") == *policy
                && text(w, "importKind") == kind.as_str()
                && text(w, "importName") == *name
                && Some(text(w, "desc")) == e.description()
                && same_position(w, span.line, span.col)
        },
    )?;
    // Missing ancestors, grouped as Cerbos groups them: ancestor -> descendants.
    let mut missing: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in errors {
        if let IndexError::MissingAncestor {
            policy, ancestor, ..
        } = e
        {
            missing
                .entry(ancestor.clone())
                .or_default()
                .insert(policy.clone());
        }
    }
    let details: Vec<(String, Vec<String>)> = missing
        .iter()
        .map(|(a, d)| (a.clone(), d.iter().cloned().collect()))
        .collect();
    match_all(
        "missingScopeDetails",
        list(want, "missingScopeDetails"),
        details,
        |w, (ancestor, descendants)| {
            let mut wanted: Vec<String> = list(w, "descendants")
                .iter()
                .filter_map(|d| d.as_str().map(str::to_owned))
                .collect();
            wanted.sort();
            text(w, "missingPolicy") == *ancestor && wanted == *descendants
        },
    )
    .or_else(|e| {
        // Older cases list only the missing policies.
        let names: Vec<String> = missing.keys().cloned().collect();
        match_all(
            "missingScopes",
            list(want, "missingScopes"),
            names,
            |w, n| w.as_str() == Some(n.as_str()),
        )
        .map_err(|_| e)
    })?;
    let conflicts: Vec<String> = errors
        .iter()
        .filter_map(|e| match e {
            IndexError::ScopePermissionsConflict { scope, .. } => Some(scope.clone()),
            _ => None,
        })
        .collect();
    match_all(
        "scopePermissionsConflicts",
        list(want, "scopePermissionsConflicts"),
        conflicts,
        |w, scope| text(w, "scope") == *scope,
    )?;
    let disabled = index.disabled().to_vec();
    match_all(
        "disabledDefs",
        list(want, "disabledDefs"),
        disabled.clone(),
        |w, d| {
            text(w, "file") == *d.span.file
                && text(w, "policy") == d.policy
                && same_position(w, d.span.line, d.span.col)
        },
    )?;
    if let Some(keys) = want["disabled"].as_array() {
        match_all("disabled", keys, disabled, |w, d| {
            w.as_str() == Some(d.policy.as_str())
        })?;
    }
    match compile_store(store.clone()) {
        Err(StoreError::Compile(_)) => Ok(()),
        Err(e) => Err(format!("compiling: unexpected error {e}")),
        Ok(_) => Err("the store compiles despite the index errors".into()),
    }
}

fn check_success(spec: &Value, store: &LoadedStore) -> Result<(), String> {
    let index = index_policies(&store.policies);
    if !index.errors().is_empty() {
        return Err(format!("unexpected index errors: {:?}", index.errors()));
    }
    for unit in list(spec, "wantCompilationUnits") {
        let main = text(unit, "mainFqn");
        let got = index
            .compilation_unit(&main)
            .ok_or_else(|| format!("no compilation unit for {main}"))?;
        let strings = |key: &str| -> BTreeSet<String> {
            list(unit, key)
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        };
        let definitions: BTreeSet<String> = got.definitions.iter().cloned().collect();
        let ancestors: BTreeSet<String> = got.ancestors.iter().cloned().collect();
        if definitions != strings("definitionFqns") || got.definitions.len() != definitions.len() {
            return Err(format!("{main}: definitions {:?}", got.definitions));
        }
        if ancestors != strings("ancestorFqns") || got.ancestors.len() != ancestors.len() {
            return Err(format!("{main}: ancestors {:?}", got.ancestors));
        }
    }
    let scripts = spec["files"].as_object().is_some_and(|files| {
        files
            .values()
            .any(|f| f.as_str().is_some_and(|t| t.contains("script:")))
    });
    match compile_store(store.clone()) {
        Ok(_) if !scripts => Ok(()),
        Ok(_) => Err("a script condition compiled".into()),
        Err(StoreError::Compile(errs))
            if scripts
                && errs
                    .errors()
                    .iter()
                    .all(|e| e.kind == CompileErrorKind::ScriptCondition) =>
        {
            Ok(())
        }
        Err(e) => Err(format!("compiling: {e}")),
    }
}

fn check_case(case: &Path) -> Result<(), String> {
    let spec = util::yaml_docs(case)
        .into_iter()
        .next()
        .ok_or("empty case file")?;
    let name = case.file_stem().and_then(|s| s.to_str()).unwrap_or("case");
    let dir = temp_dir("index", name);
    for (path, content) in spec["files"].as_object().into_iter().flatten() {
        let file = dir.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&file, content.as_str().unwrap_or_default())
            .map_err(|e| format!("{}: {e}", file.display()))?;
    }
    let loaded = load_dir(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    let want = &spec["wantErrList"];
    match (want.is_object(), loaded) {
        (true, Err(errors)) => check_load_failures(want, &errors),
        (true, Ok(store)) => check_index_errors(want, &store),
        (false, Ok(store)) => check_success(&spec, &store),
        (false, Err(errors)) => Err(format!("unexpected load errors:\n{errors}")),
    }
}

#[test]
fn index_cases() {
    let Some(corpus) = util::corpus_dir("index") else {
        return;
    };
    let (mut passed, mut failed) = (0, 0);
    for case in util::files_with_ext(&corpus.join("index"), "yaml") {
        let name = case
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let known = KNOWN_DIFFERENCES.iter().find(|(n, _)| *n == name);
        match (check_case(&case), known) {
            (Ok(()), None) => passed += 1,
            (Ok(()), Some(_)) => {
                failed += 1;
                println!("index {name}: passes, remove it from KNOWN_DIFFERENCES");
            }
            (Err(e), Some((_, reason))) => {
                println!("index {name}: known difference ({reason}): {e}")
            }
            (Err(e), None) => {
                failed += 1;
                println!("index {name}: FAILED\n{e}");
            }
        }
    }
    println!("index: {passed} passed, {failed} failed");
    assert_eq!(failed, 0);
    assert!(
        passed + KNOWN_DIFFERENCES.len() >= 18,
        "expected the 18 index cases"
    );
}
