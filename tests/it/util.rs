//! Shared helpers for the integration tests.

use std::path::{Path, PathBuf};

/// The conformance corpus: `GATEHOUSE_CONFORMANCE_DIR`, or `../shared/conformance`.
/// `None` (with a message) when it is absent outside CI; a panic when absent under `CI=true`.
pub fn corpus_dir(part: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("GATEHOUSE_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance"));
    if dir.join("README.md").exists() {
        return Some(dir);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "{part}: conformance corpus not found at {} (CI=true)",
            dir.display()
        );
    }
    println!(
        "{part}: SKIPPED, conformance corpus not found at {}",
        dir.display()
    );
    None
}

/// Reads every YAML document of a file as JSON values.
pub fn yaml_docs(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_multiple::<serde_json::Value>(&text)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}

/// Reads a JSON file.
pub fn json_file(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Files in a directory with an extension, sorted.
pub fn files_with_ext(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    v.sort();
    v
}
