//! Partial evaluation of a CEL expression with the resource unknown, as Cerbos does
//! it with cel-go: evaluate with `R` / `request.resource` unknown (except `R.kind`,
//! `R.scope` and the resource attributes the request gives), then prune the tree:
//! every known sub-expression becomes a literal, `&&`, `||`, `!`, `?:` and `in` fold
//! around known operands, and comprehension bodies are re-evaluated with their
//! variables unknown. Finally the two rewrites of Cerbos's planner apply at the root:
//! a lookup in a known map (`P.attr.m[R.attr.k] == c`) becomes a disjunction over the
//! map's entries, and `all`/`exists` over a known list or map is unrolled.

use std::collections::HashMap;
use std::sync::Arc;

use crate::cel::ast::{BinaryOp, Expr, ExprKind, UnaryOp};
use crate::cel::functions::std_lib_format::{format_duration, format_timestamp};
use crate::cel::functions::{CallStyle, registry};
use crate::cel::{
    Activation, EvalError, Key, MapValue, Timestamp, Value, binary, index_value,
    sort_values_by_key, type_ident,
};

use crate::cel::inline::{is_macro, macro_vars};

/// Upper bound on evaluation steps for one expression (a guard against blow-up).
const MAX_STEPS: usize = 200_000;
/// Cerbos unrolls `all`/`exists` over known ranges of at most this many items.
const MAX_UNROLL: usize = 10;
/// Most entries of a known map that a lookup is rewritten over (Cerbos has no bound; past
/// it the plan fails instead of building an unbounded disjunction).
const MAX_STRUCT_ENTRIES: usize = 256;

/// The outcome of evaluating one node.
#[derive(Clone, Debug)]
pub(crate) enum Val {
    Known(Value),
    Unknown,
    Error(EvalError),
}

impl Val {
    fn known(&self) -> Option<&Value> {
        match self {
            Val::Known(v) => Some(v),
            _ => None,
        }
    }
}

/// What is known of the request while planning.
pub(crate) struct KnownRequest<'a> {
    /// `request` (its `resource` member is never read).
    pub(crate) request: &'a Value,
    /// `P`.
    pub(crate) principal: &'a Value,
    /// `G` / `globals`.
    pub(crate) globals: &'a Value,
    /// `R.kind`.
    pub(crate) kind: Value,
    /// `R.scope`.
    pub(crate) scope: Value,
    /// The resource attributes given in the request (known).
    pub(crate) attr: &'a MapValue,
    /// The request's `now()`.
    pub(crate) now: Timestamp,
}

#[derive(Clone)]
enum Local {
    Known(Value),
    Unknown,
}

/// A partial evaluator over one known request.
pub(crate) struct Evaluator<'a> {
    req: &'a KnownRequest<'a>,
    locals: Vec<(Arc<str>, Local)>,
    state: HashMap<*const Expr, Val>,
    steps: usize,
    /// Set when a comprehension body cannot be planned (Cerbos fails the request).
    failed: Option<EvalError>,
}

fn err(msg: impl Into<Arc<str>>) -> Val {
    Val::Error(EvalError::new(msg))
}

fn no_overload() -> Val {
    err("no such overload")
}

fn lit(v: Value, pos: usize) -> Expr {
    Expr {
        kind: ExprKind::Literal(v),
        pos,
    }
}

fn mk(kind: ExprKind, pos: usize) -> Expr {
    Expr { kind, pos }
}

/// Names that are host variables, never namespaces of functions.
fn is_host_name(n: &str) -> bool {
    matches!(n, "R" | "P" | "request" | "G" | "globals" | "runtime")
}

/// The literal expression for a known value, as cel-go's pruning builds it; `None`
/// for values with no literal form (IP addresses, hierarchies, types...).
pub(crate) fn literal(v: &Value, pos: usize) -> Option<Expr> {
    Some(match v {
        Value::Null
        | Value::Bool(_)
        | Value::Int(_)
        | Value::Uint(_)
        | Value::Double(_)
        | Value::String(_)
        | Value::Bytes(_)
        | Value::Optional(_) => lit(v.clone(), pos),
        Value::Duration(d) => mk(
            ExprKind::Call {
                target: None,
                func: "duration".into(),
                args: vec![lit(Value::from(format_duration(*d)), pos)],
            },
            pos,
        ),
        Value::Timestamp(t) => mk(
            ExprKind::Call {
                target: None,
                func: "timestamp".into(),
                args: vec![lit(Value::from(format_timestamp(t)), pos)],
            },
            pos,
        ),
        Value::List(items) => {
            let mut out = Vec::with_capacity(items.len());
            for i in items.iter() {
                out.push((literal(i, pos)?, false));
            }
            mk(ExprKind::List(out), pos)
        }
        Value::Map(m) => {
            let mut out = Vec::with_capacity(m.len());
            for (k, v) in m.iter() {
                out.push((literal(&k.to_value(), pos)?, literal(v, pos)?, false));
            }
            mk(ExprKind::Map(out), pos)
        }
        _ => return None,
    })
}

/// Whether an expression is made only of literals (cel-go's `containsOnlyKnownValues`).
fn only_known_values(e: &Expr) -> bool {
    match &e.kind {
        ExprKind::Literal(_) => true,
        ExprKind::List(items) => items.iter().all(|(x, _)| only_known_values(x)),
        ExprKind::Map(entries) => entries
            .iter()
            .all(|(k, v, _)| only_known_values(k) && only_known_values(v)),
        _ => false,
    }
}

/// The items a comprehension iterates: (first variable, second variable).
fn items(range: &Value, two: bool) -> Option<Vec<(Value, Value)>> {
    match range {
        Value::List(l) => Some(
            l.iter()
                .enumerate()
                .map(|(i, v)| {
                    if two {
                        (Value::Int(i as i64), v.clone())
                    } else {
                        (v.clone(), Value::Null)
                    }
                })
                .collect(),
        ),
        Value::Map(m) => Some(m.iter().map(|(k, v)| (k.to_value(), v.clone())).collect()),
        _ => None,
    }
}

/// The outcome of a strict operation over two non-known operands: an error wins
/// over an unknown (as the real Cerbos answers), else the first.
fn strict_first(a: Val, b: Val) -> Val {
    match (&a, &b) {
        (Val::Error(_), _) | (Val::Known(_), _) => {
            if matches!(a, Val::Known(_)) {
                b
            } else {
                a
            }
        }
        (_, Val::Error(_)) => b,
        _ => a,
    }
}

/// Cerbos's set functions (`hasIntersection`, `isSubset`, `except`, `intersect` and the
/// deprecated snake-case names), declared non-strict: their first operand that is not
/// known is the result, even an unknown ahead of an error.
fn cerbos_set_function(name: &str) -> bool {
    matches!(
        name,
        "hasIntersection" | "has_intersection" | "isSubset" | "is_subset" | "except" | "intersect"
    )
}

fn select_value(v: &Value, field: &str) -> Val {
    match v {
        Value::Map(m) => match m.get_str(field) {
            Some(x) => Val::Known(x.clone()),
            None => err(format!("no such key: {field}")),
        },
        _ => err(format!(
            "type '{}' does not support field selection",
            v.type_name()
        )),
    }
}

impl<'a> Evaluator<'a> {
    /// An evaluator with no local variables.
    pub(crate) fn new(req: &'a KnownRequest<'a>) -> Self {
        Evaluator {
            req,
            locals: Vec::new(),
            state: HashMap::new(),
            steps: 0,
            failed: None,
        }
    }

    fn local(&self, name: &str) -> Option<&Local> {
        self.locals
            .iter()
            .rev()
            .find(|(n, _)| &**n == name)
            .map(|(_, l)| l)
    }

    fn is_local(&self, name: &str) -> bool {
        self.local(name).is_some()
    }

    /// Evaluates `e`, recording the value of every node for pruning.
    pub(crate) fn eval(&mut self, e: &Expr) -> Val {
        let v = self.eval_inner(e);
        self.state.insert(e as *const Expr, v.clone());
        v
    }

    /// The path below `R` / `request.resource` when `e` is a select chain rooted there.
    fn resource_path<'e>(&self, e: &'e Expr, out: &mut Vec<&'e str>) -> bool {
        match &e.kind {
            ExprKind::Ident(n) if n == "R" && !self.is_local("R") => true,
            ExprKind::Select {
                operand,
                field,
                optional: false,
            } => {
                if field == "resource"
                    && operand.as_ident() == Some("request")
                    && !self.is_local("request")
                {
                    return true;
                }
                if self.resource_path(operand, out) {
                    out.push(field);
                    true
                } else {
                    false
                }
            }
            _ => false,
        }
    }

    fn eval_inner(&mut self, e: &Expr) -> Val {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            return err("expression too complex to plan");
        }
        match &e.kind {
            ExprKind::Literal(v) => Val::Known(v.clone()),
            ExprKind::Ident(n) => self.ident(n),
            ExprKind::Select {
                operand,
                field,
                optional,
            } => self.select(e, operand, field, *optional),
            ExprKind::Index {
                operand,
                index,
                optional,
            } => self.index(operand, index, *optional),
            ExprKind::Call { target, func, args } => self.call(target.as_deref(), func, args),
            ExprKind::List(items) => self.list(items),
            ExprKind::Map(entries) => self.map(entries),
            ExprKind::Struct { type_name, .. } => err(format!(
                "undeclared reference to '{type_name}' (in container '')"
            )),
            ExprKind::Unary(op, x) => self.unary(*op, x),
            ExprKind::Binary(op, l, r) => {
                let lv = self.eval(l);
                let rv = self.eval(r);
                let (Val::Known(a), Val::Known(b)) = (&lv, &rv) else {
                    return strict_first(lv, rv);
                };
                match binary(*op, a, b) {
                    Ok(v) => Val::Known(v),
                    Err(e) => Val::Error(e),
                }
            }
            ExprKind::And(l, r) => self.logic(l, r, false),
            ExprKind::Or(l, r) => self.logic(l, r, true),
            ExprKind::Ternary(c, a, b) => match self.eval(c) {
                Val::Known(Value::Bool(true)) => self.eval(a),
                Val::Known(Value::Bool(false)) => self.eval(b),
                Val::Known(_) => no_overload(),
                other => other,
            },
        }
    }

    /// `operand.field` (`e`), or `operand.?field` when `optional`: the resource's kind,
    /// scope and attributes as the request knows them (unknown otherwise), `request.x`
    /// from the request, else a selection from the operand's value.
    fn select(&mut self, e: &Expr, operand: &Expr, field: &str, optional: bool) -> Val {
        if !optional {
            let mut path = Vec::new();
            if self.resource_path(e, &mut path) {
                return match path.as_slice() {
                    ["kind"] => Val::Known(self.req.kind.clone()),
                    ["scope"] => Val::Known(self.req.scope.clone()),
                    ["attr", name] => match self.req.attr.get_str(name) {
                        Some(v) => Val::Known(v.clone()),
                        None => Val::Unknown,
                    },
                    _ => Val::Unknown,
                };
            }
            if operand.as_ident() == Some("request") && !self.is_local("request") {
                return select_value(self.req.request, field);
            }
        }
        let o = self.eval(operand);
        let Val::Known(v) = o else { return o };
        if !optional {
            return select_value(&v, field);
        }
        let inner = match v {
            Value::Optional(None) => return Val::Known(Value::Optional(None)),
            Value::Optional(Some(x)) => (*x).clone(),
            other => other,
        };
        match inner {
            Value::Map(m) => Val::Known(Value::Optional(m.get_str(field).cloned().map(Arc::new))),
            _ => no_overload(),
        }
    }

    /// `operand[index]`, or `operand[?index]` when `optional`.
    fn index(&mut self, operand: &Expr, index: &Expr, optional: bool) -> Val {
        // An unknown operand is not indexed: the index is not evaluated.
        let o = self.eval(operand);
        let Val::Known(o) = &o else { return o };
        let i = self.eval(index);
        let Val::Known(i) = &i else { return i };
        if !optional {
            return match index_value(o, i) {
                Ok(v) => Val::Known(v),
                Err(e) => Val::Error(e),
            };
        }
        let target = match o {
            Value::Optional(None) => return Val::Known(Value::Optional(None)),
            Value::Optional(Some(x)) => (**x).clone(),
            other => other.clone(),
        };
        match index_value(&target, i) {
            Ok(v) => Val::Known(Value::Optional(Some(Arc::new(v)))),
            Err(_) if matches!(target, Value::Map(_) | Value::List(_)) => {
                Val::Known(Value::Optional(None))
            }
            Err(e) => Val::Error(e),
        }
    }

    /// A list literal: every element is evaluated; any element not known makes the list
    /// unknown (or an error, the strict first of them).
    fn list(&mut self, items: &[(Expr, bool)]) -> Val {
        let mut out = Vec::with_capacity(items.len());
        let mut bad: Option<Val> = None;
        for (x, _) in items {
            let v = self.eval(x);
            if v.known().is_none() {
                bad = Some(match bad {
                    None => v,
                    Some(b) => strict_first(b, v),
                });
            }
        }
        if let Some(b) = bad {
            return b;
        }
        for (x, optional) in items {
            let Some(Val::Known(v)) = self.state.get(&(x as *const Expr)).cloned() else {
                return no_overload();
            };
            if *optional {
                match v {
                    Value::Optional(Some(x)) => out.push((*x).clone()),
                    Value::Optional(None) => {}
                    _ => return no_overload(),
                }
            } else {
                out.push(v);
            }
        }
        Val::Known(Value::list(out))
    }

    /// A map literal, entry by entry (the first entry not known is the answer); a
    /// repeated key fails as in Cerbos's planner.
    fn map(&mut self, entries: &[(Expr, Expr, bool)]) -> Val {
        let mut m = MapValue::with_capacity(entries.len());
        for (k, v, optional) in entries {
            let kv = self.eval(k);
            let Val::Known(kv) = kv else { return kv };
            let vv = self.eval(v);
            let Val::Known(vv) = vv else { return vv };
            let Some(key) = Key::from_value(&kv) else {
                return err(format!("unsupported key type: {}", kv.type_name()));
            };
            let vv = if *optional {
                match vv {
                    Value::Optional(Some(x)) => (*x).clone(),
                    Value::Optional(None) => continue,
                    _ => return no_overload(),
                }
            } else {
                vv
            };
            if m.insert(key, vv).is_some() {
                return err(format!("Failed with repeated key: {kv:?}"));
            }
        }
        Val::Known(Value::map(m))
    }

    /// `!x` and `-x`.
    fn unary(&mut self, op: UnaryOp, x: &Expr) -> Val {
        let v = self.eval(x);
        let Val::Known(v) = v else { return v };
        match (op, v) {
            (UnaryOp::Not, Value::Bool(b)) => Val::Known(Value::Bool(!b)),
            (UnaryOp::Neg, Value::Int(i)) => match i.checked_neg() {
                Some(n) => Val::Known(Value::Int(n)),
                None => err("integer overflow"),
            },
            (UnaryOp::Neg, Value::Double(d)) => Val::Known(Value::Double(-d)),
            (UnaryOp::Neg, Value::Duration(d)) => Val::Known(Value::Duration(-d)),
            _ => no_overload(),
        }
    }

    /// `&&` (`decisive` false) and `||` (`decisive` true): an unknown wins over an error.
    fn logic(&mut self, l: &Expr, r: &Expr, decisive: bool) -> Val {
        let mut acc = Decider::new(decisive);
        for term in [l, r] {
            if let Some(v) = acc.add(self.eval(term)) {
                return v;
            }
        }
        acc.finish()
    }

    fn ident(&mut self, n: &str) -> Val {
        if let Some(l) = self.local(n) {
            return match l {
                Local::Known(v) => Val::Known(v.clone()),
                Local::Unknown => Val::Unknown,
            };
        }
        match n {
            "R" | "request" => Val::Unknown,
            "P" => Val::Known(self.req.principal.clone()),
            "G" | "globals" => Val::Known(self.req.globals.clone()),
            "runtime" => Val::Known(Value::map(MapValue::new())),
            _ => match type_ident(n) {
                Some(t) => Val::Known(Value::Type(t)),
                None => err(format!("undeclared reference to '{n}' (in container '')")),
            },
        }
    }

    fn call(&mut self, target: Option<&Expr>, func: &str, args: &[Expr]) -> Val {
        // Namespaced global functions: `math.greatest(..)`, `cel.bind(..)`.
        if let Some(ns) = target.and_then(Expr::qualified_name) {
            let root = ns.split('.').next().unwrap_or("");
            if !self.is_local(root) && !is_host_name(root) {
                let full = format!("{ns}.{func}");
                if full == "cel.bind" && args.len() == 3 {
                    return self.bind(args);
                }
                if let Some(f) = registry().get(&full, CallStyle::Global) {
                    return self.apply(f, None, args, false);
                }
            }
        }
        match (target, func, args.len()) {
            (None, "has", 1) => {
                let ExprKind::Select { operand, field, .. } = &args[0].kind else {
                    return err("invalid argument to has() macro");
                };
                let mut path = Vec::new();
                // The resource is unknown as a whole, so is any presence test on it, except
                // on an attribute the request gives: Cerbos replaces `R.attr.name` by the
                // known value before planning, the presence test included, so
                // `has(R.attr.name)` is that value (and a condition that is not a boolean
                // fails).
                if self.resource_path(operand, &mut path) {
                    if path.as_slice() == ["attr"]
                        && let Some(v) = self.req.attr.get_str(field)
                    {
                        return Val::Known(v.clone());
                    }
                    return Val::Unknown;
                }
                let o = if operand.as_ident() == Some("request") && !self.is_local("request") {
                    Val::Known(self.req.request.clone())
                } else {
                    self.eval(operand)
                };
                match o {
                    Val::Known(Value::Map(m)) => {
                        Val::Known(Value::Bool(m.get_str(field).is_some()))
                    }
                    Val::Known(other) => err(format!(
                        "invalid type for field selection: {}",
                        other.type_name()
                    )),
                    other => other,
                }
            }
            (Some(t), _, n) if is_macro(func, true, n) => self.comprehension(t, func, args),
            (Some(t), "or" | "orValue", 1) => {
                let o = self.eval(t);
                let Val::Known(o) = o else { return o };
                match o {
                    Value::Optional(Some(v)) => {
                        if func == "orValue" {
                            Val::Known((*v).clone())
                        } else {
                            Val::Known(Value::Optional(Some(v)))
                        }
                    }
                    Value::Optional(None) => self.eval(&args[0]),
                    _ => no_overload(),
                }
            }
            _ => {
                let style = if target.is_some() {
                    CallStyle::Receiver
                } else {
                    CallStyle::Global
                };
                match registry().get(func, style) {
                    Some(f) => self.apply(f, target, args, cerbos_set_function(func)),
                    None => err(format!(
                        "undeclared reference to '{func}' (in container '')"
                    )),
                }
            }
        }
    }

    /// Calls a native function: operands evaluated in order; the first unknown or error
    /// is the result (with more than two operands, cel-go stops at it). With `left_first`
    /// (Cerbos's non-strict set functions) the first operand that is not known decides,
    /// so an unknown before an error stays unknown.
    fn apply(
        &mut self,
        f: crate::cel::functions::NativeFn,
        target: Option<&Expr>,
        args: &[Expr],
        left_first: bool,
    ) -> Val {
        let operands: Vec<&Expr> = target.into_iter().chain(args.iter()).collect();
        let mut vals = Vec::with_capacity(operands.len());
        let mut first_bad: Option<Val> = None;
        for o in &operands {
            let v = self.eval(o);
            match v {
                Val::Known(v) => vals.push(v),
                other => {
                    first_bad = Some(match first_bad {
                        None => other,
                        Some(b) if left_first => b,
                        Some(b) => strict_first(b, other),
                    });
                    if operands.len() > 2 {
                        break;
                    }
                }
            }
        }
        if let Some(bad) = first_bad {
            return bad;
        }
        match f(&vals, &Activation::new(&[], self.req.now)) {
            Ok(v) => Val::Known(v),
            Err(e) => Val::Error(e),
        }
    }

    fn bind(&mut self, args: &[Expr]) -> Val {
        let Some(name) = args[0].as_ident() else {
            return err("argument must be a simple name");
        };
        let init = match self.eval(&args[1]) {
            Val::Known(v) => Local::Known(v),
            Val::Unknown => Local::Unknown,
            e @ Val::Error(_) => return e,
        };
        self.locals.push((Arc::from(name), init));
        let out = self.eval(&args[2]);
        self.locals.pop();
        out
    }

    fn comprehension(&mut self, range: &Expr, func: &str, args: &[Expr]) -> Val {
        let nvars = macro_vars(func, args.len());
        let names: Vec<Arc<str>> = args[..nvars]
            .iter()
            .map(|a| Arc::from(a.as_ident().unwrap_or("_")))
            .collect();
        let rest = &args[nvars..];
        let (filter, body) = match rest {
            [f, b] => (Some(f), b),
            [b] => (None, b),
            _ => return err("invalid macro"),
        };
        let rv = self.eval(range);
        let Val::Known(rv) = rv else { return rv };
        let two = names.len() == 2;
        let Some(items) = items(&rv, two) else {
            return no_overload();
        };
        let base = self.locals.len();
        for n in &names {
            self.locals.push((n.clone(), Local::Unknown));
        }
        let l = Loop {
            base,
            two,
            filter,
            body,
        };
        let out = self.fold(func, &rv, items, &l);
        self.locals.truncate(base);
        out
    }

    /// A comprehension over its range's items, by macro (an unknown body makes the
    /// quantifiers unknown; elsewhere the first value not known is the answer).
    fn fold(&mut self, func: &str, range: &Value, items: Vec<(Value, Value)>, l: &Loop) -> Val {
        match func {
            "all" | "exists" => self.fold_quantifier(func == "exists", items, l),
            "exists_one" | "existsOne" => self.fold_exists_one(items, l),
            "map" | "filter" | "transformList" => self.fold_list(func == "filter", items, l),
            "transformMap" | "transformMapEntry" => self.fold_map(func == "transformMap", items, l),
            "sortBy" => {
                let Value::List(_) = range else {
                    return no_overload();
                };
                self.fold_sort(items, l)
            }
            _ => err("invalid macro"),
        }
    }

    /// Binds one item to the comprehension's variables.
    fn bind_item(&mut self, l: &Loop, a: Value, b: Value) {
        self.locals[l.base].1 = Local::Known(a);
        if l.two {
            self.locals[l.base + 1].1 = Local::Known(b);
        }
    }

    /// Whether the filter (if any) keeps the bound item; `Err` with the answer when the
    /// filter is not a known boolean.
    fn kept(&mut self, l: &Loop) -> Result<bool, Val> {
        let Some(f) = l.filter else {
            return Ok(true);
        };
        match self.eval(f) {
            Val::Known(Value::Bool(b)) => Ok(b),
            Val::Known(_) => Err(no_overload()),
            other => Err(other),
        }
    }

    /// `all` (`decisive` false) and `exists` (`decisive` true).
    fn fold_quantifier(&mut self, decisive: bool, items: Vec<(Value, Value)>, l: &Loop) -> Val {
        let mut acc = Decider::new(decisive);
        for (a, b) in items {
            self.bind_item(l, a, b);
            if let Some(v) = acc.add(self.eval(l.body)) {
                return v;
            }
        }
        acc.finish()
    }

    /// `exists_one`.
    fn fold_exists_one(&mut self, items: Vec<(Value, Value)>, l: &Loop) -> Val {
        let mut n = 0usize;
        let mut unknown = false;
        for (a, b) in items {
            self.bind_item(l, a, b);
            match self.eval(l.body) {
                Val::Known(Value::Bool(true)) => n += 1,
                Val::Known(Value::Bool(false)) => {}
                Val::Unknown => unknown = true,
                Val::Known(_) => return no_overload(),
                e @ Val::Error(_) => return e,
            }
        }
        if unknown {
            Val::Unknown
        } else {
            Val::Known(Value::Bool(n == 1))
        }
    }

    /// `map`, `transformList` and (`filter`) `filter`.
    fn fold_list(&mut self, filter: bool, items: Vec<(Value, Value)>, l: &Loop) -> Val {
        let mut out = Vec::new();
        for (a, b) in items {
            let elem = a.clone();
            self.bind_item(l, a, b);
            match self.kept(l) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(answer) => return answer,
            }
            match (filter, self.eval(l.body)) {
                (true, Val::Known(Value::Bool(true))) => out.push(elem),
                (true, Val::Known(Value::Bool(false))) => {}
                (true, Val::Known(_)) => return no_overload(),
                (_, Val::Known(v)) => out.push(v),
                (_, other) => return other,
            }
        }
        Val::Known(Value::list(out))
    }

    /// `transformMap` (`by_key`) and `transformMapEntry`.
    fn fold_map(&mut self, by_key: bool, items: Vec<(Value, Value)>, l: &Loop) -> Val {
        let mut out = MapValue::new();
        for (a, b) in items {
            let key = a.clone();
            self.bind_item(l, a, b);
            match self.kept(l) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(answer) => return answer,
            }
            let v = match self.eval(l.body) {
                Val::Known(v) => v,
                other => return other,
            };
            if by_key {
                let Some(k) = Key::from_value(&key) else {
                    return no_overload();
                };
                out.insert(k, v);
            } else {
                let Value::Map(entry) = v else {
                    return no_overload();
                };
                for (k, v) in entry.iter() {
                    if out.insert(k.clone(), v.clone()).is_some() {
                        return err(format!("insert failed: key {k} already exists"));
                    }
                }
            }
        }
        Val::Known(Value::map(out))
    }

    /// `sortBy` over a list.
    fn fold_sort(&mut self, items: Vec<(Value, Value)>, l: &Loop) -> Val {
        let mut keyed = Vec::with_capacity(items.len());
        for (a, b) in items {
            let elem = a.clone();
            self.bind_item(l, a, b);
            match self.eval(l.body) {
                Val::Known(k) => keyed.push((k, elem)),
                other => return other,
            }
        }
        if let Err(e) = sort_values_by_key(&mut keyed) {
            return Val::Error(e);
        }
        Val::Known(Value::list(keyed.into_iter().map(|(_, v)| v).collect()))
    }

    fn known_bool(&self, e: &Expr) -> Option<bool> {
        match self.state.get(&(e as *const Expr)) {
            Some(Val::Known(Value::Bool(b))) => Some(*b),
            _ => None,
        }
    }

    fn is_known(&self, e: &Expr) -> bool {
        matches!(self.state.get(&(e as *const Expr)), Some(Val::Known(_)))
    }

    /// The residual of an evaluated expression (cel-go's `PruneAst`).
    pub(crate) fn prune(&self, e: &Expr) -> Expr {
        let st = self.state.get(&(e as *const Expr));
        if let Some(Val::Known(v)) = st
            && let Some(l) = literal(v, e.pos)
        {
            return l;
        }
        if let Some(pruned) = self.prune_here(e, st.is_some()) {
            return pruned;
        }
        let kind = match &e.kind {
            ExprKind::Struct { .. } => e.kind.clone(),
            ExprKind::Call { target, func, args }
                if target.is_some() && is_macro(func, true, args.len()) =>
            {
                // Only the range of a comprehension is pruned.
                ExprKind::Call {
                    target: target.as_ref().map(|t| Box::new(self.prune(t))),
                    func: func.clone(),
                    args: args.clone(),
                }
            }
            other => other.map_children(|x| self.prune(x)),
        };
        mk(kind, e.pos)
    }

    /// The residual of an evaluated (`evaluated`) `!`, `in`, `&&`, `||` or `? :` that a
    /// known operand decides or reduces to one of its operands; `None` otherwise.
    fn prune_here(&self, e: &Expr, evaluated: bool) -> Option<Expr> {
        if !evaluated {
            return None;
        }
        match &e.kind {
            ExprKind::Unary(UnaryOp::Not, x) => {
                let b = self.known_bool(x)?;
                Some(lit(Value::Bool(!b), e.pos))
            }
            ExprKind::Binary(BinaryOp::In, _, r) => {
                let Some(Val::Known(v)) = self.state.get(&(&**r as *const Expr)) else {
                    return None;
                };
                let empty = match v {
                    Value::List(l) => l.is_empty(),
                    Value::Map(m) => m.is_empty(),
                    Value::String(s) => s.is_empty(),
                    Value::Bytes(b) => b.is_empty(),
                    _ => false,
                };
                empty.then(|| lit(Value::Bool(false), e.pos))
            }
            ExprKind::And(l, r) | ExprKind::Or(l, r) => {
                let absorbing = matches!(e.kind, ExprKind::Or(..));
                let (known, other) = [(l, r), (r, l)]
                    .into_iter()
                    .find(|(known, _)| self.is_known(known))?;
                Some(if self.known_bool(known) == Some(absorbing) {
                    lit(Value::Bool(absorbing), e.pos)
                } else {
                    self.prune(other)
                })
            }
            ExprKind::Ternary(c, a, b) => {
                let cv = self.known_bool(c)?;
                Some(self.prune(if cv { a } else { b }))
            }
            _ => None,
        }
    }

    /// Evaluates `e` in a fresh state with the current locals and returns its residual.
    fn residual_here(&mut self, e: &Expr) -> Expr {
        let saved = std::mem::take(&mut self.state);
        self.eval(e);
        let out = self.prune(e);
        self.state = saved;
        out
    }

    /// Re-evaluates the bodies of comprehensions in a residual with their variables
    /// unknown (Cerbos's `evalComprehensionBody`).
    pub(crate) fn comprehension_bodies(&mut self, e: &Expr) -> Expr {
        let kind = match &e.kind {
            ExprKind::Call {
                target: Some(t),
                func,
                args,
            } if is_macro(func, true, args.len()) => {
                let nvars = macro_vars(func, args.len());
                let idx = if func == "map" && args.len() == 3 {
                    1
                } else {
                    args.len() - 1
                };
                let base = self.locals.len();
                for a in &args[..nvars] {
                    self.locals
                        .push((Arc::from(a.as_ident().unwrap_or("_")), Local::Unknown));
                }
                let saved = std::mem::take(&mut self.state);
                if let Val::Error(e) = self.eval(&args[idx]) {
                    self.failed.get_or_insert(e);
                }
                let body = self.prune(&args[idx]);
                self.state = saved;
                let body = self.comprehension_bodies(&body);
                self.locals.truncate(base);
                let mut new_args = args.clone();
                new_args[idx] = body;
                ExprKind::Call {
                    target: Some(Box::new(self.comprehension_bodies(t))),
                    func: func.clone(),
                    args: new_args,
                }
            }
            ExprKind::Struct { .. } => e.kind.clone(),
            other => other.map_children(|x| self.comprehension_bodies(x)),
        };
        mk(kind, e.pos)
    }
}

/// One comprehension being planned: where its variables sit among the locals (one, or
/// two when `two`), its filter and its body.
struct Loop<'e> {
    base: usize,
    two: bool,
    filter: Option<&'e Expr>,
    body: &'e Expr,
}

fn right_nested(mut items: Vec<Expr>, and: bool) -> Option<Expr> {
    let mut acc = items.pop()?;
    while let Some(x) = items.pop() {
        let pos = x.pos;
        acc = mk(
            if and {
                ExprKind::And(Box::new(x), Box::new(acc))
            } else {
                ExprKind::Or(Box::new(x), Box::new(acc))
            },
            pos,
        );
    }
    Some(acc)
}

/// `index [.field]` over a known map with a resource-attribute key: (field, entries, indexer).
/// A map literal's entries: (key, value, optional).
type MapEntries = Vec<(Expr, Expr, bool)>;

fn struct_indexer(e: &Expr) -> Option<(Option<&str>, &MapEntries, &Expr)> {
    let (field, ex) = match &e.kind {
        ExprKind::Select {
            operand,
            field,
            optional: false,
        } => (Some(field.as_str()), &**operand),
        _ => (None, e),
    };
    let ExprKind::Index {
        operand,
        index,
        optional: false,
    } = &ex.kind
    else {
        return None;
    };
    let ExprKind::Map(entries) = &operand.kind else {
        return None;
    };
    if !matches!(index.kind, ExprKind::Select { .. }) {
        return None;
    }
    Some((field, entries, index))
}

/// The number of map entries the struct matcher would rewrite `e` over, if it applies.
fn struct_match_size(e: &Expr) -> Option<usize> {
    match &e.kind {
        ExprKind::Binary(BinaryOp::In, l, r) if matches!(l.kind, ExprKind::Literal(_)) => {
            struct_indexer(r).map(|(_, entries, _)| entries.len())
        }
        ExprKind::Binary(_, l, r) if matches!(r.kind, ExprKind::Literal(_)) => {
            struct_indexer(l).map(|(_, entries, _)| entries.len())
        }
        _ => None,
    }
}

/// Cerbos's struct matcher: `m[R.attr.k] op c` and `c in m[R.attr.k]` over a known map
/// become `(R.attr.k == key1 && c op value1) || ...`.
fn struct_match(e: &Expr) -> Option<Expr> {
    let (op, (field, entries, indexer), constant) = match &e.kind {
        ExprKind::Binary(
            op @ (BinaryOp::Eq
            | BinaryOp::Ne
            | BinaryOp::Lt
            | BinaryOp::Le
            | BinaryOp::Gt
            | BinaryOp::Ge),
            l,
            r,
        ) if matches!(r.kind, ExprKind::Literal(_)) => (*op, struct_indexer(l)?, &**r),
        ExprKind::Binary(BinaryOp::In, l, r) if matches!(l.kind, ExprKind::Literal(_)) => {
            (BinaryOp::In, struct_indexer(r)?, &**l)
        }
        _ => return None,
    };
    let mut sorted: Vec<&(Expr, Expr, bool)> = entries.iter().collect();
    sorted.sort_by(|a, b| match (&a.0.kind, &b.0.kind) {
        (ExprKind::Literal(Value::String(x)), ExprKind::Literal(Value::String(y))) => x.cmp(y),
        _ => std::cmp::Ordering::Equal,
    });
    let pos = e.pos;
    let opts: Vec<Expr> = sorted
        .into_iter()
        .map(|(k, v, _)| {
            let v = match field {
                Some(f) => mk(
                    ExprKind::Select {
                        operand: Box::new(v.clone()),
                        field: f.to_string(),
                        optional: false,
                    },
                    pos,
                ),
                None => v.clone(),
            };
            let lhs = mk(
                ExprKind::Binary(BinaryOp::Eq, Box::new(indexer.clone()), Box::new(k.clone())),
                pos,
            );
            let rhs = mk(
                ExprKind::Binary(op, Box::new(constant.clone()), Box::new(v)),
                pos,
            );
            mk(ExprKind::And(Box::new(lhs), Box::new(rhs)), pos)
        })
        .collect();
    right_nested(opts, false)
}

impl Evaluator<'_> {
    /// Cerbos's lambda matcher: `all`/`exists` over a known list or map of at most ten
    /// items is unrolled into `&&`/`||` of the body for each item.
    fn lambda_match(&mut self, e: &Expr) -> Option<Expr> {
        let ExprKind::Call {
            target: Some(range),
            func,
            args,
        } = &e.kind
        else {
            return None;
        };
        if !matches!(func.as_str(), "all" | "exists") || !is_macro(func, true, args.len()) {
            return None;
        }
        if !matches!(range.kind, ExprKind::List(_) | ExprKind::Map(_)) || !only_known_values(range)
        {
            return None;
        }
        let nvars = macro_vars(func, args.len());
        let names: Vec<Arc<str>> = args[..nvars]
            .iter()
            .map(|a| Arc::from(a.as_ident().unwrap_or("_")))
            .collect();
        let body = &args[args.len() - 1];
        let mut bindings: Vec<(Value, Option<Value>)> = Vec::new();
        match &range.kind {
            ExprKind::List(items) => {
                if items.len() > MAX_UNROLL {
                    return None;
                }
                for (i, (x, _)) in items.iter().enumerate() {
                    let v = self.residual_value(x)?;
                    if names.len() == 2 {
                        bindings.push((Value::Int(i as i64), Some(v)));
                    } else {
                        bindings.push((v, None));
                    }
                }
            }
            ExprKind::Map(entries) => {
                if entries.len() > MAX_UNROLL {
                    return None;
                }
                for (k, v, _) in entries {
                    let k = self.residual_value(k)?;
                    let v = self.residual_value(v)?;
                    bindings.push((k, Some(v)));
                }
            }
            _ => return None,
        }
        let mut opts = Vec::with_capacity(bindings.len());
        for (a, b) in bindings {
            let base = self.locals.len();
            self.locals.push((names[0].clone(), Local::Known(a)));
            if let (Some(n), Some(b)) = (names.get(1), b) {
                self.locals.push((n.clone(), Local::Known(b)));
            }
            opts.push(self.residual_here(body));
            self.locals.truncate(base);
        }
        right_nested(opts, func == "all")
    }

    fn residual_value(&mut self, e: &Expr) -> Option<Value> {
        let saved = std::mem::take(&mut self.state);
        let v = self.eval(e);
        self.state = saved;
        match v {
            Val::Known(v) => Some(v),
            _ => None,
        }
    }
}

/// What a condition expression reduces to when planned.
pub(crate) enum Residual {
    /// A residual expression (a boolean literal when fully known).
    Expr(Expr),
    /// Evaluation failed: the condition is not satisfied.
    Error(EvalError),
    /// The expression cannot be planned (the whole plan fails, as in Cerbos).
    Failed(EvalError),
}

/// Plans one condition expression: Cerbos's `evaluateConditionExpression`.
pub(crate) fn plan_expr(req: &KnownRequest, e: &Expr) -> Residual {
    let mut ev = Evaluator::new(req);
    match ev.eval(e) {
        Val::Error(err) => Residual::Error(err),
        Val::Known(Value::Bool(b)) => Residual::Expr(lit(Value::Bool(b), e.pos)),
        Val::Known(_) => Residual::Expr(lit(Value::Bool(false), e.pos)),
        Val::Unknown => {
            let r = ev.prune(e);
            let r = ev.comprehension_bodies(&r);
            if let Some(e) = ev.failed.take() {
                return Residual::Failed(e);
            }
            if let Some(n) = struct_match_size(&r)
                && n > MAX_STRUCT_ENTRIES
            {
                return Residual::Failed(EvalError::new(format!(
                    "a lookup over a map of {n} entries exceeds the planner's bound ({MAX_STRUCT_ENTRIES})"
                )));
            }
            let rewritten = match struct_match(&r) {
                Some(m) => Some(m),
                None => ev.lambda_match(&r),
            };
            match rewritten {
                Some(m) => {
                    let mut again = Evaluator::new(req);
                    again.eval(&m);
                    Residual::Expr(again.prune(&m))
                }
                None => Residual::Expr(r),
            }
        }
    }
}

/// The partial answer of `&&`/`all` (`decisive` false) or `||`/`exists` (`decisive`
/// true) over its terms: a term equal to `decisive` decides; otherwise an unknown term
/// wins over an error, the first error over the other answer.
struct Decider {
    decisive: bool,
    unknown: bool,
    error: Option<EvalError>,
}

impl Decider {
    fn new(decisive: bool) -> Decider {
        Decider {
            decisive,
            unknown: false,
            error: None,
        }
    }

    /// Takes one term's value; `Some` when it decides the whole.
    fn add(&mut self, term: Val) -> Option<Val> {
        match term {
            Val::Known(Value::Bool(b)) if b == self.decisive => {
                return Some(Val::Known(Value::Bool(b)));
            }
            Val::Known(Value::Bool(_)) => {}
            Val::Unknown => self.unknown = true,
            Val::Known(_) => {
                self.error.get_or_insert(EvalError::new("no such overload"));
            }
            Val::Error(e) => {
                self.error.get_or_insert(e);
            }
        }
        None
    }

    /// The answer when no term decided.
    fn finish(self) -> Val {
        if self.unknown {
            Val::Unknown
        } else if let Some(e) = self.error {
            Val::Error(e)
        } else {
            Val::Known(Value::Bool(!self.decisive))
        }
    }
}
