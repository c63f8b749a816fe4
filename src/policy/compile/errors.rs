//! What compiling reports: [`CompileError`]s at source positions, collected into
//! [`CompileErrors`] (never empty).

use super::*;
use crate::errors::{Errors, Report};

/// One compile problem, at a source position.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{span}: {message}")]
pub struct CompileError {
    /// Where.
    pub span: Span,
    /// What kind of problem (Cerbos's short name, e.g. `unknown derived role`).
    pub kind: CompileErrorKind,
    /// What is wrong.
    pub message: String,
}

/// The kinds of compile problem; each prints as Cerbos's short name for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CompileErrorKind {
    /// A derived role name that more than one import defines.
    AmbiguousDerivedRole,
    /// A constant defined more than once for one policy.
    ConstantRedefined,
    /// Variables that refer to each other in a cycle.
    CyclicalVariables,
    /// An import or ancestor that is disabled.
    DisabledPolicy,
    /// Two files define the same policy.
    DuplicateDefinition,
    /// An output with no expression.
    EmptyOutput,
    /// An imported definition that does not exist.
    ImportNotFound,
    /// A constant name that is not a CEL identifier.
    InvalidConstantName,
    /// A CEL expression that does not parse or compile.
    InvalidExpression,
    /// An action or resource glob that does not compile.
    InvalidGlob,
    /// A resource rule that cannot match.
    InvalidResourceRule,
    /// A schema reference that does not load.
    InvalidSchema,
    /// A variable name that is not a CEL identifier.
    InvalidVariableName,
    /// A scope ancestor or main policy that does not exist.
    MissingPolicyDefinition,
    /// Policies of one scope with different scope permissions.
    ScopePermissionsConflict,
    /// A condition written as a script (no longer supported).
    ScriptCondition,
    /// A reference to a constant nobody defines.
    UndefinedConstant,
    /// A reference to a variable nobody defines.
    UndefinedVariable,
    /// A derived role no import defines.
    UnknownDerivedRole,
    /// A variable defined more than once for one policy.
    VariableRedefined,
}

impl CompileErrorKind {
    /// Cerbos's short name, e.g. `unknown derived role`.
    fn as_str(self) -> &'static str {
        match self {
            Self::AmbiguousDerivedRole => "ambiguous derived role",
            Self::ConstantRedefined => "constant redefined",
            Self::CyclicalVariables => "cyclical variable definitions",
            Self::DisabledPolicy => "disabled policy",
            Self::DuplicateDefinition => "duplicate definition",
            Self::EmptyOutput => "empty output",
            Self::ImportNotFound => "import not found",
            Self::InvalidConstantName => "invalid constant name",
            Self::InvalidExpression => "invalid expression",
            Self::InvalidGlob => "invalid glob",
            Self::InvalidResourceRule => "invalid resource rule",
            Self::InvalidSchema => "invalid schema",
            Self::InvalidVariableName => "invalid variable name",
            Self::MissingPolicyDefinition => "missing policy definition",
            Self::ScopePermissionsConflict => "scope permissions conflict",
            Self::ScriptCondition => "scripts in conditions are no longer supported",
            Self::UndefinedConstant => "undefined constant",
            Self::UndefinedVariable => "undefined variable",
            Self::UnknownDerivedRole => "unknown derived role",
            Self::VariableRedefined => "variable redefined",
        }
    }
}

impl fmt::Display for CompileErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// All problems found while compiling (never empty).
pub type CompileErrors = Errors<CompileError>;

impl Report for CompileError {}

/// Sorts by position and drops exact repeats (a definition imported by several
/// policies reports its problems once); `None` when there are no errors.
pub(super) fn collect(mut errors: Vec<CompileError>) -> Option<CompileErrors> {
    errors.sort_by(|a, b| a.span.cmp(&b.span));
    let mut seen = HashSet::new();
    errors.retain(|e| seen.insert((e.span.clone(), e.kind, e.message.clone())));
    Errors::from_vec(errors)
}
