//! The explain trace: what the engine considered while deciding, in order.

use std::fmt;

use crate::policy::compiled::{Effect, RowKind};

/// One step of a decision.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub(crate) enum TraceEvent {
    /// No principal or resource policy exists in the requested scopes.
    NoPolicies {
        /// Principal scope asked for.
        principal_scope: String,
        /// Resource scope asked for.
        resource_scope: String,
    },
    /// A derived role was evaluated.
    DerivedRole {
        /// Derived role name.
        name: String,
        /// The resource policy importing it.
        policy: String,
        /// Whether it was activated.
        active: bool,
    },
    /// The engine looked for rules in a scope.
    Scope {
        /// Action being decided.
        action: String,
        /// Principal or resource policies.
        kind: RowKind,
        /// The principal role being tried.
        role: String,
        /// The scope.
        scope: String,
    },
    /// A CEL expression was evaluated.
    Expr {
        /// Where it is written (`file:line:col`).
        at: String,
        /// The expression.
        expr: String,
        /// Its boolean value, or why it has none.
        result: Result<bool, String>,
    },
    /// A rule matched the action and role, and its condition was checked.
    Rule {
        /// Action being decided.
        action: String,
        /// Policy key.
        policy: String,
        /// Rule name.
        rule: String,
        /// Where the rule is written (`file:line:col`).
        at: String,
        /// The rule's effect.
        effect: Effect,
        /// Whether the rule applied.
        matched: bool,
        /// Explanation.
        note: &'static str,
    },
    /// A role policy exists for the role but does not list the action.
    RoleNoMatch {
        /// Action being decided.
        action: String,
        /// The role policy.
        policy: String,
    },
    /// The final decision for an action.
    Decision {
        /// The action.
        action: String,
        /// The effect.
        effect: Effect,
        /// Deciding policy.
        policy: String,
        /// Deciding scope.
        scope: String,
    },
}

/// A recorded trace.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Trace {
    events: Vec<TraceEvent>,
}

impl Trace {
    /// An empty trace.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Records an event.
    pub(crate) fn push(&mut self, e: TraceEvent) {
        self.events.push(e);
    }

    /// The events in order.
    pub(crate) fn events(&self) -> &[TraceEvent] {
        &self.events
    }
}

impl fmt::Display for TraceEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceEvent::NoPolicies {
                principal_scope,
                resource_scope,
            } => write!(
                f,
                "no policies in principal scope {principal_scope:?} or resource scope {resource_scope:?}"
            ),
            TraceEvent::DerivedRole {
                name,
                policy,
                active,
            } => write!(
                f,
                "derived role {name} (imported by {policy}): {}",
                if *active { "active" } else { "inactive" }
            ),
            TraceEvent::Scope {
                action,
                kind,
                role,
                scope,
            } => {
                let k = match kind {
                    RowKind::Principal => "principal",
                    RowKind::Resource => "resource",
                };
                write!(f, "[{action}] {k} policies, role {role}, scope {scope:?}")
            }
            TraceEvent::Expr { at, expr, result } => {
                let expr = expr.trim();
                match result {
                    Ok(b) => write!(f, "    {expr} => {b}   ({at})"),
                    Err(e) => write!(f, "    {expr} => error: {e}   ({at})"),
                }
            }
            TraceEvent::Rule {
                action,
                policy,
                rule,
                at,
                effect,
                matched,
                note,
            } => write!(
                f,
                "  [{action}] rule {policy}#{rule} at {at} ({}): {} ({note})",
                effect.short_name(),
                if *matched { "applies" } else { "skipped" }
            ),
            TraceEvent::RoleNoMatch { action, policy } => {
                write!(f, "  [{action}] {policy} does not allow this action: DENY")
            }
            TraceEvent::Decision {
                action,
                effect,
                policy,
                scope,
            } => write!(
                f,
                "=> {action}: {} by {policy}{}",
                effect.short_name(),
                if scope.is_empty() {
                    String::new()
                } else {
                    format!(" in scope {scope:?}")
                }
            ),
        }
    }
}
