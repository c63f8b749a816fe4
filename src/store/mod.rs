//! Where the policy set in force lives: an atomically swappable engine. Every check
//! takes one snapshot (`load_full`) and uses it for the whole decision; a reload
//! swaps in a new engine without locks on the request path.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::engine::{Engine, EngineConfig};
use crate::policy::{StoreError, load_and_compile};

/// The engine in force, with the source it was loaded from.
#[derive(Debug)]
pub struct PolicyStore {
    current: ArcSwap<Engine>,
    directory: PathBuf,
    config: EngineConfig,
}

impl PolicyStore {
    /// Loads and compiles a policy directory.
    pub fn load(directory: &Path, config: EngineConfig) -> Result<PolicyStore, StoreError> {
        let set = load_and_compile(directory)?;
        Ok(PolicyStore {
            current: ArcSwap::from_pointee(Engine::new(Arc::new(set), config.clone())),
            directory: directory.to_path_buf(),
            config,
        })
    }

    /// The engine in force (one snapshot; use it for a whole decision).
    pub fn engine(&self) -> Arc<Engine> {
        self.current.load_full()
    }

    /// The policy directory.
    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// Recompiles the directory and swaps the new set in; on error the old set stays.
    pub fn reload(&self) -> Result<(), StoreError> {
        let set = load_and_compile(&self.directory)?;
        self.current
            .store(Arc::new(Engine::new(Arc::new(set), self.config.clone())));
        Ok(())
    }
}
