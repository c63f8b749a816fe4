//! The planner's view of a policy expression (built here, beside the parser, so that
//! the policy compiler does not import the planner): the parsed tree with every variable
//! (`V.x`) replaced by its definition and every constant (`C.x`) by its value, built
//! once when the policies are compiled.

use super::ast::{Expr, ExprKind};
use super::{HostBinding, HostScope};

/// Maximum depth of variables referring to variables (as the compiler's guard).
const MAX_INLINE_DEPTH: usize = 32;

/// The comprehension macros, whose first arguments name local variables.
pub(crate) fn is_macro(func: &str, has_target: bool, args: usize) -> bool {
    has_target
        && matches!(
            (func, args),
            ("all" | "exists" | "exists_one" | "existsOne", 2 | 3)
                | ("map", 2 | 3)
                | ("filter" | "sortBy", 2)
                | (
                    "transformList" | "transformMap" | "transformMapEntry",
                    3 | 4
                )
        )
}

/// How many of a macro's arguments name local variables.
pub(crate) fn macro_vars(func: &str, args: usize) -> usize {
    match func {
        "all" | "exists" | "exists_one" | "existsOne" => args - 1,
        "transformList" | "transformMap" | "transformMapEntry" => 2,
        _ => 1,
    }
}

/// `expr` with host namespace members (`V.x`, `C.x`) inlined through `host`.
pub(crate) fn inline_host(expr: &Expr, host: &dyn HostScope) -> Expr {
    let mut locals = Vec::new();
    inline(expr, host, &mut locals, 0)
}

fn inline(e: &Expr, host: &dyn HostScope, locals: &mut Vec<String>, depth: usize) -> Expr {
    let kind = match &e.kind {
        ExprKind::Select {
            operand,
            field,
            optional: false,
        } if operand
            .as_ident()
            .is_some_and(|root| !locals.iter().any(|l| l == root)) =>
        {
            let root = operand.as_ident().unwrap_or_default();
            match host.select(root, field) {
                Some(Ok(HostBinding::Value(v))) => ExprKind::Literal(v),
                Some(Ok(HostBinding::Expr(x))) if depth < MAX_INLINE_DEPTH => {
                    // A variable's expression sees only the host's names.
                    let mut fresh = Vec::new();
                    return Expr {
                        pos: e.pos,
                        ..inline(&x, host, &mut fresh, depth + 1)
                    };
                }
                Some(_) => ExprKind::Literal(crate::cel::Value::Null),
                None => e.kind.clone(),
            }
        }
        ExprKind::Call { target, func, args } => {
            let target = target
                .as_ref()
                .map(|t| Box::new(inline(t, host, locals, depth)));
            let bound: Vec<String> = if is_macro(func, target.is_some(), args.len()) {
                args.iter()
                    .take(macro_vars(func, args.len()))
                    .filter_map(|a| a.as_ident().map(str::to_string))
                    .collect()
            } else if func == "bind" && args.len() == 3 {
                args[0].as_ident().map(str::to_string).into_iter().collect()
            } else {
                Vec::new()
            };
            let before = locals.len();
            locals.extend(bound);
            let args = args
                .iter()
                .map(|a| inline(a, host, locals, depth))
                .collect();
            locals.truncate(before);
            ExprKind::Call {
                target,
                func: func.clone(),
                args,
            }
        }
        other => other.map_children(|x| inline(x, host, locals, depth)),
    };
    Expr { kind, pos: e.pos }
}
