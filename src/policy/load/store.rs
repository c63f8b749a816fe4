//! Disk stores: the rules of a Cerbos policy tree (one policy per file, `_schemas/`,
//! test suites) over the bounded walk of [`super::tree`].

use super::*;

/// The contents of a Cerbos disk store.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoadedStore {
    /// Every policy, disabled ones included, in path order.
    pub policies: Vec<Policy>,
    /// The JSON schemas under `_schemas/`: path relative to `_schemas` with `/`
    /// separators (e.g. `resources/leave_request.json`) and the parsed document.
    pub schemas: Vec<(String, serde_json::Value)>,
    /// The test suite files (`*_test.yaml`, `*_test.yml`, `*_test.json`), in path order.
    test_files: Vec<PathBuf>,
}

/// Loads a Cerbos disk store: every `.yaml`, `.yml` and `.json` file under `dir` at any
/// depth, except hidden files and directories (names starting with `.`), `testdata`
/// directories and test suites (`*_test.*`, listed in [`LoadedStore::test_files`]).
/// `_schemas/` at the root holds JSON schemas. Spans name files relative to `dir`.
///
/// As Cerbos, a policy file holds a single policy. Every problem of every file is
/// reported.
pub fn load_dir(dir: &Path) -> Result<LoadedStore, LoadErrors> {
    load(dir, true)
}

/// Loads a disk store as [`load_dir`] does, without the checks Cerbos makes only when it
/// indexes a store (rules without roles, duplicate rule or definition names, top-level
/// variables in exports). This is what Cerbos's compiler sees when it is handed files
/// directly; [`super::compile::compile_unit`] reports what it needs itself.
pub(crate) fn load_dir_without_store_checks(dir: &Path) -> Result<LoadedStore, LoadErrors> {
    load(dir, false)
}

fn load(dir: &Path, store_checks: bool) -> Result<LoadedStore, LoadErrors> {
    let mut tree = tree::scan(dir);
    let mut loader = StoreLoader {
        store: LoadedStore::default(),
        errors: std::mem::take(&mut tree.errors),
        store_checks,
    };
    let files = std::mem::take(&mut tree.files);
    for file in &files {
        match file.role {
            FileRole::Test => loader.store.test_files.push(file.path.clone()),
            FileRole::Policy => match tree.read(file) {
                Ok(bytes) => loader.policy_file(bytes, &file.rel),
                Err(e) => loader.errors.push(e),
            },
            FileRole::Schema => match tree.read(file) {
                Ok(bytes) => {
                    let name = file.rel.strip_prefix("_schemas/").unwrap_or(&file.rel);
                    match first_json_value(&bytes) {
                        Some(value) => loader.store.schemas.push((name.to_owned(), value)),
                        None => tracing::warn!(
                            schema = %file.rel,
                            "ignoring schema that is not JSON"
                        ),
                    }
                }
                Err(e) => loader.errors.push(e),
            },
        }
    }
    match Errors::from_vec(loader.errors) {
        Some(errors) => Err(errors),
        None => Ok(loader.store),
    }
}

struct StoreLoader {
    store: LoadedStore,
    errors: Vec<LoadError>,
    store_checks: bool,
}

impl StoreLoader {
    fn policy_file(&mut self, bytes: Vec<u8>, rel: &str) {
        let Ok(text) = String::from_utf8(bytes) else {
            self.errors.push(LoadError::new(
                Span::new(rel, 1, 1),
                LoadErrorKind::Parse,
                "invalid document: contents are not valid YAML or JSON",
            ));
            return;
        };
        let parsed = parse_file(&text, &Arc::from(rel), self.store_checks);
        if !parsed.errors.is_empty() {
            self.errors.extend(parsed.errors);
        } else if parsed.documents > 1 {
            let span = parsed
                .policies
                .get(1)
                .map_or_else(|| Span::new(rel, 1, 1), |p| p.span.clone());
            self.errors.push(LoadError::new(
                span,
                LoadErrorKind::Validation,
                "more than one YAML document detected",
            ));
        } else {
            self.store.policies.extend(parsed.policies);
        }
    }
}

/// The first JSON value of a file, as Go's JSON decoder reads schemas (trailing text is
/// left for the schema compiler to complain about).
fn first_json_value(bytes: &[u8]) -> Option<serde_json::Value> {
    serde_json::Deserializer::from_slice(bytes)
        .into_iter::<serde_json::Value>()
        .next()?
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_layout_rules() {
        let root = std::env::temp_dir().join(format!(
            "gatehouse-loader-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&root);
        let write = |rel: &str, text: &str| {
            let path = root.join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{e}"));
            }
            std::fs::write(path, text).unwrap_or_else(|e| panic!("{e}"));
        };
        let ev = "apiVersion: api.cerbos.dev/v1\nexportVariables:\n  name: N\n  definitions:\n    a: 'true'\n";
        write("policies/a.yaml", &ev.replace('N', "a"));
        write("policies/nested/deeper/b.yml", &ev.replace('N', "b"));
        write("policies/.hidden.yaml", "not: [valid");
        write(".hidden_dir/c.yaml", "not: [valid");
        write("policies/testdata/d.yaml", "not: [valid");
        write("policies/e_test.yaml", "name: a test suite\n");
        write("policies/notes.txt", "not: [valid");
        write("_schemas/principal.json", "{\"type\": \"object\"}");
        write("_schemas/resources/r.json", "{\"type\": \"object\"}");
        write("_schemas/ignored.yaml", "not: [valid");
        let store = load_dir(&root).unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<String> = store.policies.iter().map(Policy::fqn).collect();
        assert_eq!(
            names,
            ["cerbos.export_variables.a", "cerbos.export_variables.b"]
        );
        assert_eq!(
            store.policies[1].span.to_string(),
            "policies/nested/deeper/b.yml:1:1"
        );
        assert_eq!(store.test_files, [root.join("policies/e_test.yaml")]);
        let schemas: Vec<&str> = store.schemas.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(schemas, ["principal.json", "resources/r.json"]);

        write(
            "policies/bad1.yaml",
            "apiVersion: api.cerbos.dev/v1\nfoo: bar\n",
        );
        write(
            "policies/bad2.json",
            "{\"apiVersion\": \"api.cerbos.dev/v1\", \"bar\": 1}",
        );
        write(
            "policies/two.yaml",
            &format!("{}---\n{}", ev.replace('N', "x"), ev.replace('N', "y")),
        );
        write("policies/_schemas/s.json", "{}");
        let errors: Vec<String> = load_dir(&root)
            .err()
            .map(|e| e.into_iter().map(|e| e.to_string()).collect())
            .unwrap_or_default();
        assert_eq!(
            errors,
            [
                "policies/_schemas:1:1: _schemas directory must be under the root of the storage directory",
                "policies/bad1.yaml:2:1: unknown field \"foo\"",
                "policies/bad2.json:1:37: unknown field \"bar\"",
                "policies/two.yaml:7:1: more than one YAML document detected",
            ]
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn conformance_store_counts() {
        let corpus = std::env::var_os("GATEHOUSE_CONFORMANCE_DIR").map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance"),
            PathBuf::from,
        );
        let dir = corpus.join("store");
        if !dir.exists() {
            println!("conformance store not found at {}; skipped", dir.display());
            return;
        }
        let store = load_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
        let count =
            |f: fn(&PolicyKind) -> bool| store.policies.iter().filter(|p| f(&p.kind)).count();
        assert_eq!(count(|k| matches!(k, PolicyKind::Resource(_))), 32);
        assert_eq!(count(|k| matches!(k, PolicyKind::Principal(_))), 11);
        assert_eq!(count(|k| matches!(k, PolicyKind::Role(_))), 8);
        assert_eq!(count(|k| matches!(k, PolicyKind::DerivedRoles(_))), 7);
        assert_eq!(count(|k| matches!(k, PolicyKind::ExportVariables(_))), 1);
        assert_eq!(count(|k| matches!(k, PolicyKind::ExportConstants(_))), 1);
        let disabled: Vec<String> = store
            .policies
            .iter()
            .filter(|p| p.disabled)
            .map(Policy::fqn)
            .collect();
        assert_eq!(disabled.len(), 1);
        let executable = store
            .policies
            .iter()
            .filter(|p| p.is_executable() && !p.disabled)
            .count();
        assert_eq!(executable, 50);
        assert_eq!(store.test_files.len(), 3);
        assert_eq!(store.schemas.len(), 4);
    }

    #[test]
    fn store_checks_can_be_left_to_the_compiler() {
        let root =
            std::env::temp_dir().join(format!("gatehouse-loader-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap_or_else(|e| panic!("{e}"));
        let policy = "apiVersion: api.cerbos.dev/v1\nresourcePolicy:\n  resource: a\n  version: default\n  \
                      rules:\n    - actions: [view]\n      effect: EFFECT_ALLOW\n";
        std::fs::write(root.join("a.yaml"), policy).unwrap_or_else(|e| panic!("{e}"));
        let errors: Vec<String> = load_dir(&root)
            .err()
            .map(|e| e.into_iter().map(|e| e.to_string()).collect())
            .unwrap_or_default();
        assert_eq!(
            errors,
            ["a.yaml:6:14: rule #1 does not specify any roles or derived roles to match"]
        );
        let store = load_dir_without_store_checks(&root).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(store.policies.len(), 1);
        let _ = std::fs::remove_dir_all(&root);
    }
}
