//! Which expressions Cerbos 0.55 cannot even build a program for.
//!
//! Cerbos compiles every condition and output through cel-go's constant folder and then
//! plans it with cel-go's `OptOptimize`, which evaluates a type conversion (`int`, `uint`,
//! `double`, `bool`, `string`, `bytes`, `duration`, `timestamp`, `dyn`, `type`) of a
//! constant when the program is built. When that conversion fails, the program is never
//! built: a condition is then an evaluation *error* (the rule is skipped, no
//! `conditionNotMet` output), where a run-time failure only makes the condition false; an
//! output is that error, even when the failing conversion sits in a branch that is never
//! taken. [`plan_error_of`] finds that error (observed against the real Cerbos 0.55:
//! `src/cel/corners.rs`, `tests/data/parity_answers/plan_errors.json`).
//!
//! The folder, as Cerbos runs it: skipped entirely when the expression calls `now` or
//! `timeSince`; bottom-up, every call, operator, index or selection whose operands are all
//! literals (or lists and maps of literals) is evaluated and becomes a literal, and one
//! that fails is left as it is; `&&` and `||` with a literal operand and `? :` with a
//! literal condition are pruned; `x in []` is false; closed comprehensions (macros and
//! `cel.bind`) are evaluated. The folded expression is used only when it is still valid:
//! every `duration`, `timestamp` and `matches` literal argument parses, and no folded value
//! is of a kind a literal cannot hold (IP addresses, CIDRs, hierarchies, SPIFFE values).
//! Gatehouse then evaluates the folded expression too ([`folded`]), as Cerbos does: folding
//! can decide where evaluation would fail (`7 in [[0][1], 7]` is `true`,
//! `tests/data/parity_answers/folded_conditions.json`).

use chrono::DateTime;

use super::ast::{BinaryOp, Expr, ExprKind};
use super::compile::{HostBinding, HostScope, compile, type_ident};
use super::eval::Activation;
use super::functions::{CallStyle, registry};
use super::value::Value;

/// The conversions cel-go's planner evaluates when their argument is a constant.
const CONVERSIONS: [&str; 10] = [
    "int",
    "uint",
    "double",
    "bool",
    "string",
    "bytes",
    "duration",
    "timestamp",
    "dyn",
    "type",
];

/// The macros that become comprehensions in cel-go (their first argument or two name
/// the iteration variables).
const COMPREHENSIONS: [&str; 12] = [
    "all",
    "exists",
    "exists_one",
    "existsOne",
    "map",
    "filter",
    "sortBy",
    "transformList",
    "transformMap",
    "transformMapEntry",
    "optMap",
    "optFlatMap",
];

/// The error Cerbos 0.55 reports when it builds the program of `program_expr` (the
/// expression as [`folded`] gives it, or the original when that is `None`), if any: the
/// message of the first type conversion of a constant that fails (see the module docs).
pub(crate) fn plan_error_of(program_expr: &Expr) -> Option<String> {
    plan(program_expr).err()
}

/// The expression Cerbos 0.55 builds its program from when that is not `expr` itself: the
/// folded form, when the folder runs and its result is valid (see the module docs). Its
/// answers differ from `expr`'s where folding decides before a failure could: `7 in
/// [[0][1], 7]` is `true` and `(1/0) in []` is `false`, where `expr` fails.
pub(crate) fn folded(expr: &Expr) -> Option<Expr> {
    if calls_clock(expr) {
        return None;
    }
    let f = fold_final(&fold(expr, false));
    valid(&f).then_some(f)
}

/// No host names: a folded sub-expression refers to none.
struct NoHost;

impl HostScope for NoHost {
    fn variable(&self, _name: &str) -> Option<u16> {
        None
    }

    fn select(&self, _root: &str, _field: &str) -> Option<Result<HostBinding, String>> {
        None
    }
}

/// Evaluates a closed expression; `Err` when it does not compile without host names or
/// fails.
fn eval_closed(e: &Expr) -> Result<Value, String> {
    let program = compile(e, &NoHost).map_err(|e| e.message)?;
    let now = DateTime::from_timestamp(0, 0)
        .unwrap_or_default()
        .fixed_offset();
    program
        .eval(&Activation::new(&[], now))
        .map_err(|e| e.message().to_string())
}

fn literal(v: Value, pos: usize) -> Expr {
    Expr {
        kind: ExprKind::Literal(v),
        pos,
    }
}

/// cel-go's constant value: a literal, or a list or map of constant values.
fn is_constant(e: &Expr) -> bool {
    match &e.kind {
        ExprKind::Literal(_) => true,
        ExprKind::List(items) => items.iter().all(|(x, opt)| !opt && is_constant(x)),
        ExprKind::Map(entries) => entries
            .iter()
            .all(|(k, v, opt)| !opt && is_constant(k) && is_constant(v)),
        _ => false,
    }
}

/// Whether `expr` calls `now` or `timeSince` anywhere (Cerbos does not fold those).
fn calls_clock(expr: &Expr) -> bool {
    if let ExprKind::Call { func, .. } = &expr.kind
        && (func == "now" || func == "timeSince")
    {
        return true;
    }
    expr.children().into_iter().any(calls_clock)
}

/// `ns.f(..)` naming a namespaced global function (`math.greatest`, `base64.encode`).
fn is_namespaced(target: &Expr, func: &str) -> bool {
    target.qualified_name().is_some_and(|ns| {
        registry()
            .get(&format!("{ns}.{func}"), CallStyle::Global)
            .is_some()
    })
}

/// Whether the call is a comprehension macro or `cel.bind`.
fn is_comprehension(target: Option<&Expr>, func: &str, args: &[Expr]) -> bool {
    match target {
        Some(t) if t.as_ident() == Some("cel") && func == "bind" => args.len() == 3,
        Some(_) => COMPREHENSIONS.contains(&func) && args.len() >= 2,
        None => false,
    }
}

/// Replaces `e` by its value when it evaluates; keeps it when it fails.
fn try_fold(e: Expr) -> Expr {
    match eval_closed(&e) {
        Ok(v) => literal(v, e.pos),
        Err(_) => e,
    }
}

fn boxed(e: &Expr, in_comprehension: bool) -> Box<Expr> {
    Box::new(fold(e, in_comprehension))
}

/// The constant folder's main loop, bottom-up. Comprehensions nested in another
/// comprehension are not folded here (cel-go folds them only in its last pass).
fn fold(e: &Expr, in_comprehension: bool) -> Expr {
    let pos = e.pos;
    let kind = match &e.kind {
        ExprKind::Literal(_) | ExprKind::Ident(_) | ExprKind::Struct { .. } => {
            return e.clone();
        }
        ExprKind::Call { target, func, args } => {
            return fold_call(target.as_deref(), func, args, pos, in_comprehension);
        }
        ExprKind::Binary(BinaryOp::In, ..) => {
            let kind = e.kind.map_children(|x| fold(x, in_comprehension));
            if let Some(answer) = in_list_literal(&kind) {
                return literal(Value::Bool(answer), pos);
            }
            kind
        }
        ExprKind::And(l, r) => {
            return logic(
                false,
                fold(l, in_comprehension),
                fold(r, in_comprehension),
                pos,
            );
        }
        ExprKind::Or(l, r) => {
            return logic(
                true,
                fold(l, in_comprehension),
                fold(r, in_comprehension),
                pos,
            );
        }
        ExprKind::Ternary(c, a, b) => {
            let c = fold(c, in_comprehension);
            match c.kind {
                ExprKind::Literal(Value::Bool(true)) => return fold(a, in_comprehension),
                ExprKind::Literal(Value::Bool(false)) => return fold(b, in_comprehension),
                _ => ExprKind::Ternary(
                    Box::new(c),
                    boxed(a, in_comprehension),
                    boxed(b, in_comprehension),
                ),
            }
        }
        ExprKind::Select { .. }
        | ExprKind::Index { .. }
        | ExprKind::List(_)
        | ExprKind::Map(_)
        | ExprKind::Unary(..)
        | ExprKind::Binary(..) => e.kind.map_children(|x| fold(x, in_comprehension)),
    };
    fold_if_constant(Expr { kind, pos })
}

/// `x in list` with its operands folded: false when the list is empty, true when `x` is a
/// literal found among the list's literals, `None` otherwise. A folded list value
/// (`intersect([1], [0])`) is a list of literals.
fn in_list_literal(kind: &ExprKind) -> Option<bool> {
    let ExprKind::Binary(_, l, r) = kind else {
        return None;
    };
    let needle = match &l.kind {
        ExprKind::Literal(v) => Some(v),
        _ => None,
    };
    let (empty, found) = match &r.kind {
        ExprKind::List(items) => (
            items.is_empty(),
            needle.is_some_and(|n| {
                items
                    .iter()
                    .any(|(x, _)| matches!(&x.kind, ExprKind::Literal(v) if v.cel_eq(n)))
            }),
        ),
        ExprKind::Literal(Value::List(items)) => (
            items.is_empty(),
            needle.is_some_and(|n| items.iter().any(|v| v.cel_eq(n))),
        ),
        _ => (false, false),
    };
    (empty || found).then_some(found)
}

/// A folded select, index, operator or conditional, evaluated when its operands are
/// constants.
fn fold_if_constant(folded: Expr) -> Expr {
    let constant = match &folded.kind {
        ExprKind::Select { operand, .. } => is_constant(operand),
        ExprKind::Index { operand, index, .. } => is_constant(operand) && is_constant(index),
        ExprKind::Unary(_, x) => is_constant(x),
        ExprKind::Binary(_, l, r) => is_constant(l) && is_constant(r),
        ExprKind::Ternary(c, a, b) => is_constant(c) && is_constant(a) && is_constant(b),
        _ => false,
    };
    if constant { try_fold(folded) } else { folded }
}

/// A folded call: its receiver and arguments folded (a namespace or `cel` receiver kept),
/// then the call itself evaluated when they are constant (a comprehension when it is not
/// nested in another one, `has` when its operand is constant).
fn fold_call(
    target: Option<&Expr>,
    func: &str,
    args: &[Expr],
    pos: usize,
    in_comprehension: bool,
) -> Expr {
    let comprehension = is_comprehension(target, func, args);
    let namespaced = target.is_some_and(|t| is_namespaced(t, func));
    let inner = in_comprehension || comprehension;
    let folded = Expr {
        kind: ExprKind::Call {
            target: target.map(|t| {
                if namespaced || (comprehension && t.as_ident() == Some("cel")) {
                    Box::new(t.clone())
                } else {
                    boxed(t, inner)
                }
            }),
            func: func.to_string(),
            args: args.iter().map(|a| fold(a, inner)).collect(),
        },
        pos,
    };
    let ExprKind::Call { target, args, .. } = &folded.kind else {
        unreachable!("built as a call")
    };
    if comprehension {
        return if in_comprehension {
            folded
        } else {
            try_fold(folded)
        };
    }
    if func == "has" && target.is_none() {
        // has(x.f) is a selection: folded when x is constant.
        let constant = matches!(&args[..], [Expr { kind: ExprKind::Select { operand, .. }, .. }] if is_constant(operand));
        return if constant { try_fold(folded) } else { folded };
    }
    let receiver_constant = namespaced || target.as_deref().is_none_or(is_constant);
    if receiver_constant && args.iter().all(is_constant) {
        try_fold(folded)
    } else {
        folded
    }
}

/// cel-go's pruning of `&&` (`short == false`) and `||` (`short == true`) with a literal
/// operand: the short-circuiting literal wins, the other literal drops out.
fn logic(short: bool, l: Expr, r: Expr, pos: usize) -> Expr {
    let literal_operand = |e: &Expr| matches!(e.kind, ExprKind::Literal(_));
    if !literal_operand(&l) && !literal_operand(&r) {
        return rebuild_logic(short, l, r, pos);
    }
    let mut rest = Vec::new();
    for arg in [l, r] {
        match &arg.kind {
            ExprKind::Literal(Value::Bool(b)) if *b == short => return arg,
            ExprKind::Literal(_) => {}
            _ => rest.push(arg),
        }
    }
    match rest.len() {
        0 => literal(Value::Bool(!short), pos),
        1 => rest
            .pop()
            .unwrap_or_else(|| literal(Value::Bool(!short), pos)),
        _ => unreachable!("at least one operand is a literal"),
    }
}

fn rebuild_logic(short: bool, l: Expr, r: Expr, pos: usize) -> Expr {
    let (l, r) = (Box::new(l), Box::new(r));
    Expr {
        kind: if short {
            ExprKind::Or(l, r)
        } else {
            ExprKind::And(l, r)
        },
        pos,
    }
}

/// cel-go's last pass: every comprehension that evaluates (nested ones included) becomes
/// its value, its parents untouched.
fn fold_final(e: &Expr) -> Expr {
    let mut out = e.clone();
    fold_final_in(&mut out);
    out
}

fn fold_final_in(e: &mut Expr) {
    for child in e.children_mut() {
        fold_final_in(child);
    }
    if let ExprKind::Call { target, func, args } = &e.kind
        && is_comprehension(target.as_deref(), func, args)
        && let Ok(v) = eval_closed(e)
    {
        *e = literal(v, e.pos);
    }
}

/// Whether cel-go keeps the folded expression: its literals can all be written as CEL
/// literals, and the `duration`, `timestamp` and `matches` literal arguments are valid.
fn valid(e: &Expr) -> bool {
    let here = match &e.kind {
        ExprKind::Literal(v) => literal_representable(v),
        ExprKind::Call { target, func, args } => {
            let literal_arg = match (target.as_deref(), func.as_str(), &args[..]) {
                (None, "duration" | "timestamp", [a]) => Some(a),
                (Some(_), "matches", [a]) | (None, "matches", [_, a]) => Some(a),
                _ => None,
            };
            match literal_arg {
                Some(
                    a @ Expr {
                        kind: ExprKind::Literal(Value::String(_)),
                        ..
                    },
                ) => eval_closed(&Expr {
                    kind: ExprKind::Call {
                        target: target
                            .as_ref()
                            .map(|_| Box::new(literal(Value::string(""), e.pos))),
                        func: func.clone(),
                        args: if target.is_none() && func == "matches" {
                            vec![literal(Value::string(""), e.pos), a.clone()]
                        } else {
                            vec![a.clone()]
                        },
                    },
                    pos: e.pos,
                })
                .is_ok(),
                _ => true,
            }
        }
        _ => true,
    };
    here && e.children().into_iter().all(valid)
}

fn literal_representable(v: &Value) -> bool {
    match v {
        Value::Opaque(_) => false,
        Value::List(items) => items.iter().all(literal_representable),
        Value::Map(m) => m
            .iter()
            .all(|(k, v)| literal_representable(&k.to_value()) && literal_representable(v)),
        Value::Optional(Some(v)) => literal_representable(v),
        _ => true,
    }
}

/// cel-go's planner with `OptOptimize`: the constant value of `e` when the planner makes
/// it one (a literal, a type name, a list or map of constants, a conversion of a
/// constant), and the first conversion of a constant that fails.
fn plan(e: &Expr) -> Result<Option<Value>, String> {
    match &e.kind {
        ExprKind::Literal(v) => Ok(Some(v.clone())),
        ExprKind::Ident(name) => Ok(type_ident(name).map(Value::Type)),
        ExprKind::List(items) => {
            let mut all = Vec::with_capacity(items.len());
            for (x, opt) in items {
                all.push(plan(x)?.filter(|_| !opt));
            }
            Ok(all.into_iter().collect::<Option<Vec<_>>>().map(Value::list))
        }
        ExprKind::Call { target, func, args } => {
            if let Some(t) = target {
                plan(t)?;
            }
            let mut values = Vec::with_capacity(args.len());
            for a in args {
                values.push(plan(a)?);
            }
            match (target, &values[..]) {
                (None, [Some(v)]) if CONVERSIONS.contains(&func.as_str()) => eval_closed(&Expr {
                    kind: ExprKind::Call {
                        target: None,
                        func: func.clone(),
                        args: vec![literal(v.clone(), e.pos)],
                    },
                    pos: e.pos,
                })
                .map(Some),
                _ => Ok(None),
            }
        }
        _ => {
            for c in e.children() {
                plan(c)?;
            }
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cel::parse;

    fn err(src: &str) -> Option<String> {
        let expr = parse(src).expect("parses");
        plan_error_of(folded(&expr).as_ref().unwrap_or(&expr))
    }

    /// Each answer is the real Cerbos 0.55's: a condition that fails to plan is skipped
    /// without output, one that fails at run time emits its `conditionNotMet` output.
    #[test]
    fn conversions_of_constants_fail_the_program() {
        let bool_err = Some("type conversion error from 'string' to 'bool'".to_string());
        let int_err = Some("type conversion error from 'string' to 'int'".to_string());
        for (src, want) in [
            ("bool('12')", &bool_err),
            ("bool('' + '')", &bool_err),
            ("bool(['x'][0])", &bool_err),
            ("bool(['a'].map(x, 'x')[0])", &bool_err),
            ("bool(cel.bind(v, 'x', v))", &bool_err),
            ("R.attr.b ? true : bool('x')", &bool_err),
            ("R.attr.b && bool('x' + '')", &bool_err),
            ("1/0 == 1 || bool('x')", &bool_err),
            ("1 in [] || bool('x')", &bool_err),
            ("[1, 2].map(x, int('y')).size() == 0", &int_err),
            ("R.attr.b ? 1 : int('x')", &int_err),
            ("{'a': 1, 'a': int('z')}", &int_err),
        ] {
            assert_eq!(&err(src), want, "{src}");
        }
        assert_eq!(
            err("0u % 0u - 1u * uint(-3)").as_deref(),
            Some("unsigned integer overflow")
        );
    }

    #[test]
    fn run_time_failures_and_pruned_branches_do_not() {
        for src in [
            "bool(R.attr.s)",
            "1/0 == 1",
            "[1][5] == 1",
            "string(1/0) == 'a'",
            "bool(string(1))",
            "bool('x' + R.attr.s)",
            "bool('x') || true",
            "false && bool('x')",
            "bool('x') == true || (1 + 1 == 2)",
            "int('x') in []",
            "1/0 in [] || R.attr.b",
            // No folding with the clock, and a non-literal argument is not planned.
            "now() > timestamp(0) && bool('x' + '') == false",
            // A folded IP address cannot be a literal: nothing is folded.
            "ip('1.2.3.4') == ip(R.attr.ip) || bool('x' + '')",
            // An invalid folded duration or pattern: nothing is folded.
            "duration('1x' + 'h') > duration('0s')",
            "'a'.matches('(' + '')",
        ] {
            assert_eq!(err(src), None, "{src}");
        }
    }
}
