//! The decision engine: evaluates a compiled policy set against check inputs.
//!
//! The engine sees only [`CompiledPolicySet`]: every expression was parsed and
//! resolved when the policies were compiled.

pub(crate) mod check;
pub(crate) mod json;
pub(crate) mod schemas;
mod trace;
mod types;

use std::sync::Arc;

use crate::cel::Timestamp;
use crate::policy::compiled::CompiledPolicySet;

use check::CheckError;
pub use json::{InputError, input_from_json, output_to_json};
pub(crate) use trace::{Trace, TraceEvent};
pub use types::{
    ActionEffect, AuxData, CheckInput, CheckOutput, EngineConfig, EvaluationError, OutputEntry,
    Principal, Resource, SchemaEnforcement, ValidationError, ValidationSource,
};

/// A policy set together with the engine settings: decides check inputs.
#[derive(Clone, Debug)]
pub struct Engine {
    policies: Arc<CompiledPolicySet>,
    config: Arc<EngineConfig>,
}

impl Engine {
    /// An engine over a compiled policy set.
    pub fn new(policies: Arc<CompiledPolicySet>, config: EngineConfig) -> Self {
        Engine {
            policies,
            config: Arc::new(config),
        }
    }

    /// The policy set in force.
    pub fn policies(&self) -> &Arc<CompiledPolicySet> {
        &self.policies
    }

    /// The engine settings.
    pub(crate) fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Decides one input, with `now()` read from the clock once.
    pub fn check(&self, input: &CheckInput) -> Result<CheckOutput, CheckError> {
        self.check_at(input, now())
    }

    /// Decides one input with a fixed `now()`.
    pub fn check_at(&self, input: &CheckInput, now: Timestamp) -> Result<CheckOutput, CheckError> {
        check::check(&self.policies, &self.config, input, now, None)
    }

    /// Decides one input and records an explain trace.
    pub(crate) fn check_traced(
        &self,
        input: &CheckInput,
        now: Timestamp,
        trace: &mut Trace,
    ) -> Result<CheckOutput, CheckError> {
        check::check(&self.policies, &self.config, input, now, Some(trace))
    }
}

/// The current time as a CEL timestamp.
pub fn now() -> Timestamp {
    chrono::Utc::now().fixed_offset()
}
