//! Policies, one folder per stage of the pipeline:
//!
//! ```text
//! yaml (text -> nodes with spans) -> load (tree walk, disk-store rules) -> model (serde types)
//!     -> compile (ids, imports, CEL, rule rows) -> compiled::CompiledPolicySet
//! ```
//!
//! `id` names policies and scope chains for every stage; `effect` is the rule effect the
//! model and the compiled set share.

pub mod compile;
pub mod compiled;
pub(crate) mod effect;
pub(crate) mod id;
pub mod load;
pub mod model;
pub(crate) mod yaml;

use std::path::Path;

pub use crate::jsonschema::{SchemaErrors, SchemaStore};
pub use compile::{CompileError, CompileErrorKind, CompileErrors, compile_policies};
pub use compiled::CompiledPolicySet;
pub use load::{LoadError, LoadErrors, LoadedStore, load_dir};
pub(crate) use yaml::span::Span;

/// Why a policy store could not be turned into a policy set.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Files could not be read or parsed.
    #[error("{0}")]
    Load(#[from] LoadErrors),
    /// Policies do not compile.
    #[error("{0}")]
    Compile(#[from] CompileErrors),
}

impl StoreError {
    /// One line per error with its position and kind only (`doc.yaml:3:7: parse error`),
    /// never the message: what the unauthenticated status shows. Read errors keep their
    /// message, which names the problem (`symbolic link resolves outside the policy
    /// directory`), not the content of a file.
    pub(crate) fn summary(&self) -> String {
        let lines: Vec<String> = match self {
            StoreError::Load(errors) => errors
                .errors()
                .iter()
                .map(|e| match e.kind {
                    load::LoadErrorKind::Parse => format!("{}: parse error", e.span),
                    load::LoadErrorKind::Validation => {
                        format!("{}: validation error", e.span)
                    }
                    _ => e.to_string(),
                })
                .collect(),
            StoreError::Compile(errors) => errors
                .errors()
                .iter()
                .map(|e| format!("{}: {}", e.span, e.kind))
                .collect(),
        };
        lines.join("\n")
    }
}

/// Loads a Cerbos disk store and compiles it.
pub fn load_and_compile(dir: &Path) -> Result<CompiledPolicySet, StoreError> {
    let store = load_dir(dir)?;
    compile_store(store)
}

/// Compiles an already loaded store. A schema that does not load is an error only
/// when a policy refers to it (as in Cerbos).
pub fn compile_store(store: LoadedStore) -> Result<CompiledPolicySet, StoreError> {
    let schemas = SchemaStore::new_lenient(store.schemas);
    Ok(compile_policies(&store.policies, schemas)?)
}

/// Compiles the policy defined in `main_file` (a path relative to `dir`) together with its
/// scope ancestors and the definitions they import: one Cerbos compilation unit, read
/// without the store-wide checks (see [`compile::compile_unit`]).
pub fn compile_definition(
    dir: &Path,
    main_file: &str,
    schemas: SchemaStore,
) -> Result<CompiledPolicySet, StoreError> {
    let store = load::load_dir_without_store_checks(dir)?;
    Ok(compile::compile_unit(&store.policies, main_file, schemas)?)
}
