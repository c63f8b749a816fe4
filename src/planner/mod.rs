//! The query planner (Cerbos's `PlanResources`): which resources of a kind may a
//! principal act on? The policies are partially evaluated with the resource's
//! attributes unknown, over the same compiled rule table as checks, and the answer is
//! a filter: always allowed, always denied, or a condition over
//! `request.resource.attr.*` in Cerbos's operator vocabulary.
//!
//! ```text
//! CompiledPolicySet --plan(PlanInput)--> rule walk (plan.rs)
//!     -> residual CEL per condition (residual.rs) -> plan tree -> Filter (filter.rs)
//! ```

mod filter;
mod plan;
mod residual;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::cel::MapValue;
use crate::engine::{AuxData, EvaluationError, Principal, ValidationError};

pub use filter::{Expression, Filter, FilterKind, Operand, operand_json};

/// The resource side of a plan: a kind, and whatever attributes are already known.
#[derive(Clone, Debug, Default)]
pub struct PlanResource {
    /// Resource kind.
    pub kind: String,
    /// Attributes known in advance (treated as known, not as filter variables).
    pub attr: Arc<MapValue>,
    /// Policy version; empty means the default.
    pub policy_version: String,
    /// Scope; empty means the default scope.
    pub scope: String,
}

/// One plan request.
#[derive(Clone, Debug, Default)]
pub struct PlanInput {
    /// Caller's request id, echoed back.
    pub request_id: String,
    /// The principal.
    pub principal: Principal,
    /// The resource kind and known attributes.
    pub resource: PlanResource,
    /// The actions; the filter allows a resource for all of them.
    pub actions: Vec<String>,
    /// Auxiliary data.
    pub aux_data: AuxData,
    /// Record which rules took part ([`PlanOutput::steps`], `gatehouse plan --explain`).
    pub explain: bool,
}

/// One rule that took part in a plan, with what it contributed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PlanStep {
    /// The action planned.
    pub(crate) action: String,
    /// The principal's role the rule was found for.
    pub(crate) role: String,
    /// The policy (its key, e.g. `resource.document.vdefault`, or the role policy's).
    pub(crate) policy: String,
    /// The rule's name, or what stood in for a rule (a role policy allowing nothing).
    pub(crate) rule: String,
    /// `EFFECT_ALLOW` or `EFFECT_DENY` (a negated condition, for parental consent and
    /// role policies, counts as a DENY).
    pub(crate) effect: &'static str,
    /// The rule's condition as planned, rendered as `filterDebug` renders filters.
    pub(crate) condition: String,
    /// Where the rule is: `file:line:col`, when known.
    pub(crate) location: String,
}

/// The answer to a plan request.
#[derive(Clone, Debug)]
pub struct PlanOutput {
    /// Resource kind.
    pub(crate) kind: String,
    /// The actions planned.
    pub(crate) actions: Vec<String>,
    /// The filter.
    pub filter: Filter,
    /// The filter as Cerbos renders it (`NO_MATCH` when no policy applied).
    pub filter_debug: String,
    /// Action -> the OVERRIDE_PARENT scope whose rules decided it (or "").
    pub(crate) matched_scopes: BTreeMap<String, String>,
    /// Schema violations.
    pub validation_errors: Vec<ValidationError>,
    /// CEL errors met (the conditions counted as not satisfied).
    pub evaluation_errors: Vec<EvaluationError>,
    /// With [`PlanInput::explain`]: the rules that took part, in the order walked.
    pub(crate) steps: Vec<PlanStep>,
}

/// A plan that cannot be made (Cerbos answers these with an internal error).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// A condition has a part the planner cannot express (for example a comprehension
    /// whose body fails to evaluate).
    #[error("cannot plan {expression:?}: {message}")]
    Unplannable {
        /// The condition's source.
        expression: String,
        /// The evaluation error.
        message: String,
    },
    /// The filter would exceed the bounds on its size (never truncated).
    #[error("the plan's filter is too large ({nodes} nodes, depth {depth})")]
    TooLarge {
        /// Operands in the filter.
        nodes: usize,
        /// Nesting depth of the filter.
        depth: usize,
    },
    /// A policy refers to a schema the store does not have.
    #[error("failed to validate input: schema {0:?} not found")]
    SchemaNotFound(String),
}
