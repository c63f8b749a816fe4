//! Cerbos's attribute-schema cases (`schema/test_cases/*.yaml`) replayed against
//! `gatehouse::jsonschema`, plus the corpus's schema stores and the schema-enforcement
//! engine cases' validation errors.
//!
//! A case validates `checkInput.principal.attr` with `schemaRefs.principalSchema` and
//! `checkInput.resource.attr` with `schemaRefs.resourceSchema`, skipping a side when every
//! action matches its `ignoreWhen.actions`, and compares the (source, path, message) set with
//! `wantValidationErrors`. A schema that cannot be loaded yields Cerbos's
//! `Failed to load principal schema "<ref>": <reason>` error without a path.
//!
//! A `planResourcesInput` case goes through the query planner itself (`Engine::plan` on a
//! store holding the corpus's `_schemas` and one resource policy naming the case's schemas),
//! which validates as Cerbos's planner does: no `required` errors for the resource.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use gatehouse::cel::from_json;
use gatehouse::jsonschema::SchemaStore;
use serde_json::Value as Json;

/// Cases expected to fail, with the reason. Empty: every case passes.
const KNOWN_FAILURES: &[(&str, &str)] = &[];

/// (source, path, message), as Cerbos's `ValidationError`.
type Found = (String, String, String);

fn corpus_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("GATEHOUSE_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance"));
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "conformance corpus not found at {} (set GATEHOUSE_CONFORMANCE_DIR)",
        dir.display()
    );
    println!(
        "schema: conformance corpus not found at {}, skipped",
        dir.display()
    );
    None
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn read_yaml(path: &Path) -> Json {
    serde_saphyr::from_str::<Json>(&read(path))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Loads a `_schemas` directory the way Cerbos's disk store does: JSON files only, hidden
/// files and directories skipped, each file's first JSON value (as Go's `json.Decoder` reads
/// it, so `"this": "is not a schema"` is the string `"this"`).
fn load_schema_dir(dir: &Path) -> Vec<(String, Json)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Json)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(Result::ok)
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if name.ends_with(".json") {
                let text = read(&path);
                let first = serde_json::Deserializer::from_str(&text)
                    .into_iter::<Json>()
                    .next();
                if let Some(Ok(value)) = first {
                    let rel = path.strip_prefix(root).unwrap_or(&path);
                    let rel = rel.to_string_lossy().replace('\\', "/");
                    out.push((rel, value));
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out
}

/// A protojson field under its JSON name or its proto name.
fn field<'a>(v: &'a Json, json_name: &str, proto_name: &str) -> Option<&'a Json> {
    v.get(json_name).or_else(|| v.get(proto_name))
}

fn strings(v: Option<&Json>) -> Vec<String> {
    v.and_then(Json::as_array)
        .into_iter()
        .flatten()
        .filter_map(Json::as_str)
        .map(str::to_owned)
        .collect()
}

/// Cerbos's action globs: `*` matches any run of characters.
fn glob_match(glob: &str, s: &str) -> bool {
    match glob.split_once('*') {
        None => glob == s,
        Some((prefix, rest)) => {
            let Some(tail) = s.strip_prefix(prefix) else {
                return false;
            };
            (0..=tail.len())
                .filter(|&i| tail.is_char_boundary(i))
                .any(|i| glob_match(rest, &tail[i..]))
        }
    }
}

/// Go's `%q` for the ASCII references of the corpus.
fn go_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Validates one side of a request, as Cerbos's schema manager does.
fn validate_side(
    store: &SchemaStore,
    source: &str,
    label: &str,
    schema: Option<&Json>,
    attrs: Option<&Json>,
    actions: &[String],
) -> Vec<Found> {
    let Some(schema) = schema else {
        return Vec::new();
    };
    let reference = schema.get("ref").and_then(Json::as_str).unwrap_or_default();
    if reference.is_empty() {
        return Vec::new();
    }
    let ignored =
        strings(field(schema, "ignoreWhen", "ignore_when").and_then(|i| i.get("actions")));
    if !ignored.is_empty()
        && actions
            .iter()
            .all(|a| ignored.iter().any(|g| glob_match(g, a)))
    {
        return Vec::new();
    }
    match store.load(reference) {
        Err(err) => vec![(
            source.to_owned(),
            String::new(),
            format!(
                "Failed to load {label} schema {}: {err}",
                go_quote(reference)
            ),
        )],
        Ok(compiled) => {
            let value = attrs.map_or(gatehouse::cel::Value::Null, from_json);
            compiled
                .validate(&value)
                .into_iter()
                .map(|v| (source.to_owned(), v.cerbos_path().to_owned(), v.message))
                .collect()
        }
    }
}

/// The validation errors the planner reports for a `planResourcesInput` case: a store with
/// the corpus's `_schemas` and one resource policy for the case's kind and version whose
/// `schemas` are the case's `schemaRefs`, schema enforcement `warn`.
fn plan_validation_errors(
    corpus: &Path,
    name: &str,
    refs: Option<&Json>,
    plan: &Json,
) -> BTreeSet<Found> {
    use gatehouse::engine::{EngineConfig, Principal, SchemaEnforcement};
    use gatehouse::planner::{PlanInput, PlanResource};
    use std::sync::Arc;

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap().filter_map(Result::ok) {
            let target = to.join(e.file_name());
            if e.path().is_dir() {
                copy_dir(&e.path(), &target);
            } else {
                std::fs::copy(e.path(), target).unwrap();
            }
        }
    }
    let map = |v: Option<&Json>| match v.map(from_json) {
        Some(gatehouse::cel::Value::Map(m)) => m,
        _ => Arc::default(),
    };
    let text = |v: Option<&Json>| v.and_then(Json::as_str).unwrap_or_default().to_string();
    let (principal, resource) = (&plan["principal"], &plan["resource"]);
    let dir = std::env::temp_dir().join(format!(
        "gatehouse-schema-plan-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&corpus.join("schema/fs/_schemas"), &dir.join("_schemas"));
    let policy = serde_json::json!({"apiVersion": "api.cerbos.dev/v1", "resourcePolicy": {
        "resource": resource["kind"], "version": resource["policyVersion"],
        "schemas": refs.cloned().unwrap_or(Json::Null),
        "rules": [{"actions": ["*"], "roles": ["*"], "effect": "EFFECT_ALLOW"}],
    }});
    std::fs::write(dir.join("policy.json"), policy.to_string()).unwrap();
    let config = EngineConfig {
        schema_enforcement: SchemaEnforcement::Warn,
        ..EngineConfig::default()
    };
    let store = gatehouse::store::PolicyStore::load(&dir, config)
        .unwrap_or_else(|e| panic!("{name}: store: {e}"));
    let input = PlanInput {
        principal: Principal {
            id: text(principal.get("id")),
            roles: strings(principal.get("roles"))
                .iter()
                .map(|r| Arc::from(r.as_str()))
                .collect(),
            attr: map(principal.get("attr")),
            policy_version: text(principal.get("policyVersion")),
            scope: String::new(),
        },
        resource: PlanResource {
            kind: text(resource.get("kind")),
            attr: map(resource.get("attr")),
            policy_version: text(resource.get("policyVersion")),
            scope: String::new(),
        },
        actions: vec![text(plan.get("action"))],
        ..Default::default()
    };
    let out = store
        .snapshot()
        .engine
        .plan(&input)
        .unwrap_or_else(|e| panic!("{name}: plan: {e}"));
    std::fs::remove_dir_all(&dir).unwrap();
    out.validation_errors
        .iter()
        .map(|v| {
            (
                v.source.as_str().to_owned(),
                v.path.clone(),
                v.message.clone(),
            )
        })
        .collect()
}

fn want_errors(list: Option<&Json>) -> BTreeSet<Found> {
    list.and_then(Json::as_array)
        .into_iter()
        .flatten()
        .map(|e| {
            let s = |k: &str| {
                e.get(k)
                    .and_then(Json::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            (s("source"), s("path"), s("message"))
        })
        .collect()
}

fn diff(want: &BTreeSet<Found>, have: &BTreeSet<Found>) -> String {
    let missing: Vec<_> = want.difference(have).collect();
    let extra: Vec<_> = have.difference(want).collect();
    format!("missing {missing:?}, unexpected {extra:?}")
}

#[test]
fn schema_test_cases() {
    let Some(corpus) = corpus_dir() else {
        return;
    };
    let store = SchemaStore::new_lenient(load_schema_dir(&corpus.join("schema/fs/_schemas")));
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus.join("schema/test_cases"))
        .expect("schema/test_cases")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();

    let (mut passed, mut failed) = (0, 0);
    let mut unexpected = Vec::new();
    for path in &files {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let case = read_yaml(path);
        let refs = field(&case, "schemaRefs", "schema_refs");
        let Some(input) = field(&case, "checkInput", "check_input") else {
            let Some(plan) = field(&case, "planResourcesInput", "plan_resources_input") else {
                panic!("{name}: neither checkInput nor planResourcesInput");
            };
            let have = plan_validation_errors(&corpus, &name, refs, plan);
            let want = want_errors(field(
                &case,
                "wantValidationErrors",
                "want_validation_errors",
            ));
            if have == want {
                passed += 1;
            } else {
                failed += 1;
                let detail = diff(&want, &have);
                println!("schema: {name} FAILED: {detail}");
                unexpected.push(format!("{name}: {detail}"));
            }
            continue;
        };
        let actions = strings(input.get("actions"));
        let attrs = |who: &str| input.get(who).and_then(|p| p.get("attr"));
        let mut have: BTreeSet<Found> = BTreeSet::new();
        have.extend(validate_side(
            &store,
            "SOURCE_PRINCIPAL",
            "principal",
            refs.and_then(|r| field(r, "principalSchema", "principal_schema")),
            attrs("principal"),
            &actions,
        ));
        have.extend(validate_side(
            &store,
            "SOURCE_RESOURCE",
            "resource",
            refs.and_then(|r| field(r, "resourceSchema", "resource_schema")),
            attrs("resource"),
            &actions,
        ));
        let want = want_errors(field(
            &case,
            "wantValidationErrors",
            "want_validation_errors",
        ));
        let want_error =
            field(&case, "wantError", "want_error").and_then(Json::as_bool) == Some(true);
        let ok = if want_error {
            have.iter().any(|(_, _, m)| m.starts_with("Failed to load"))
        } else {
            have == want
        };
        let known = KNOWN_FAILURES.iter().find(|(n, _)| *n == name);
        if ok {
            passed += 1;
            if let Some((_, reason)) = known {
                unexpected.push(format!("{name}: listed as failing ({reason}) but passes"));
            }
        } else {
            failed += 1;
            let detail = diff(&want, &have);
            println!("schema: {name} FAILED: {detail}");
            if known.is_none() {
                unexpected.push(format!("{name}: {detail}"));
            }
        }
    }
    println!("schema: {passed} passed, {failed} failed");
    assert_eq!(passed + failed, files.len());
    assert_eq!(
        passed + failed,
        18,
        "expected the corpus's 15 checkInput and 3 planResourcesInput cases"
    );
    assert!(unexpected.is_empty(), "{}", unexpected.join("\n"));
    assert_eq!(failed, KNOWN_FAILURES.len());
}

#[test]
fn store_schemas_compile() {
    let Some(corpus) = corpus_dir() else {
        return;
    };
    let docs = load_schema_dir(&corpus.join("store/_schemas"));
    let store = SchemaStore::new(docs).unwrap_or_else(|e| panic!("store/_schemas: {e}"));
    let paths: Vec<&str> = store.paths().collect();
    assert_eq!(
        paths,
        [
            "principal.json",
            "resources/leave_request.json",
            "resources/purchase_order.json",
            "resources/salary_record.json"
        ]
    );
    for url in [
        "cerbos:///principal.json",
        "cerbos:///resources/leave_request.json",
        "resources/leave_request.json",
    ] {
        assert!(store.get(url).is_some(), "{url}");
    }
}

/// Cerbos's `TestLoad` cases and the compile cases' schema errors, on `schema/fs/_schemas`.
#[test]
fn schema_fs_store_loads_as_cerbos_does() {
    let Some(corpus) = corpus_dir() else {
        return;
    };
    let docs = load_schema_dir(&corpus.join("schema/fs/_schemas"));
    let strict = SchemaStore::new(docs.clone()).expect_err("the fs store has broken schemas");
    let broken: Vec<&str> = strict.iter().map(|e| e.schema()).collect();
    assert_eq!(
        broken,
        [
            "cerbos:///customer_invalid.json",
            "cerbos:///invalid.json",
            "cerbos:///non_existent_cerbos_ref.json",
            "cerbos:///non_existent_file_ref.json",
            "cerbos:///non_existent_http_ref.json"
        ],
        "{strict}"
    );

    let store = SchemaStore::new_lenient(docs);
    for ok in [
        "cerbos:///customer_relative.json",
        "cerbos:///customer_absolute.json",
        "cerbos:///subdir/customer_absolute.json",
        "cerbos:///complex_object.json",
        "cerbos:///address.json",
    ] {
        assert!(store.load(ok).is_ok(), "{ok}: {:?}", store.load(ok).err());
    }
    for bad in [
        "cerbos:///customer_bad.json",
        "cerbos:///invalid.json",
        "cerbos:///blah.json",
    ] {
        assert!(store.load(bad).is_err(), "{bad}");
    }
    assert_eq!(
        store
            .load("cerbos:///customer_invalid.json")
            .err()
            .map(|e| e.to_string()),
        Some(
            "schema _schemas/non_existent_address.json referenced by \
             cerbos:///customer_invalid.json doesn't exist"
                .to_owned()
        )
    );

    for (case, reference) in [
        ("invalid_schemas", "cerbos:///invalid.json"),
        ("missing_schemas", "cerbos:///non_existent_principal.json"),
        (
            "missing_schemas",
            "cerbos:///non_existent_leave_request.json",
        ),
    ] {
        let golden: Json =
            serde_json::from_str(&read(&corpus.join(format!("golden/compile/{case}.json"))))
                .expect("golden JSON");
        let descriptions: Vec<&str> = golden["output"]["compileErrors"]["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["description"].as_str())
            .collect();
        let err = store.load(reference).expect_err(reference);
        let label = if reference.contains("leave_request") {
            "resource"
        } else {
            "principal"
        };
        let want = format!(
            "Failed to load {label} schema {}: {err}",
            go_quote(reference)
        );
        assert!(
            descriptions.contains(&want.as_str()),
            "{case}: {want} not in {descriptions:?}"
        );
    }
}

/// The engine's schema-enforcement cases: the validation errors of each input.
#[test]
fn schema_enforcement_engine_cases() {
    let Some(corpus) = corpus_dir() else {
        return;
    };
    let store = SchemaStore::new(load_schema_dir(&corpus.join("store/_schemas")))
        .unwrap_or_else(|e| panic!("store/_schemas: {e}"));
    let mut checked = 0;
    for mode in ["warn", "reject"] {
        let dir = corpus.join("engine/schema_enforcement").join(mode);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("schema_enforcement cases")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        files.sort();
        for path in files {
            let case = read_yaml(&path);
            let inputs = case["inputs"].as_array().cloned().unwrap_or_default();
            let outputs = field(&case, "wantOutputs", "want_outputs")
                .and_then(Json::as_array)
                .cloned()
                .unwrap_or_default();
            for (input, output) in inputs.iter().zip(&outputs) {
                let kind = input["resource"]["kind"].as_str().unwrap_or_default();
                assert_eq!(
                    kind,
                    "leave_request",
                    "{}: schemas of {kind}",
                    path.display()
                );
                let refs = serde_json::json!({
                    "principalSchema": {"ref": "cerbos:///principal.json"},
                    "resourceSchema": {"ref": "cerbos:///resources/leave_request.json"},
                });
                let actions = strings(input.get("actions"));
                let mut have: BTreeSet<Found> = BTreeSet::new();
                have.extend(validate_side(
                    &store,
                    "SOURCE_PRINCIPAL",
                    "principal",
                    refs.get("principalSchema"),
                    input["principal"].get("attr"),
                    &actions,
                ));
                have.extend(validate_side(
                    &store,
                    "SOURCE_RESOURCE",
                    "resource",
                    refs.get("resourceSchema"),
                    input["resource"].get("attr"),
                    &actions,
                ));
                let want = want_errors(field(output, "validationErrors", "validation_errors"));
                assert_eq!(have, want, "{}: {}", path.display(), diff(&want, &have));
                checked += 1;
            }
        }
    }
    println!("schema: {checked} schema-enforcement inputs agree");
    assert!(checked > 0);
}
