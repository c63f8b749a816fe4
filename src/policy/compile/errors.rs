//! What compiling reports: [`CompileError`]s at source positions, collected into
//! [`CompileErrors`] (never empty).

use super::*;

/// One compile problem, at a source position.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{span}: {message}")]
pub struct CompileError {
    /// Where.
    pub span: Span,
    /// Cerbos's short error kind, e.g. `unknown derived role`.
    pub kind: &'static str,
    /// What is wrong.
    pub message: String,
}

/// All problems found while compiling (never empty).
#[derive(Clone, Debug, PartialEq)]
pub struct CompileErrors(Vec<CompileError>);

impl CompileErrors {
    /// The errors, in source order.
    pub fn errors(&self) -> &[CompileError] {
        &self.0
    }

    /// Sorts by position and drops exact repeats (a definition imported by several
    /// policies reports its problems once); `None` when there are no errors.
    pub(super) fn collect(mut errors: Vec<CompileError>) -> Option<Self> {
        errors.sort_by(|a, b| a.span.cmp(&b.span));
        let mut seen = HashSet::new();
        errors.retain(|e| seen.insert((e.span.clone(), e.kind, e.message.clone())));
        (!errors.is_empty()).then_some(Self(errors))
    }
}

impl fmt::Display for CompileErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CompileErrors {}
