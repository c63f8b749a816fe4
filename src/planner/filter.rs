//! The plan's filter: the tree of logical nodes the rule walk builds, its conversion
//! to Cerbos's `PlanResourcesFilter` (operators, variables and values), Cerbos's
//! normalisation, the `filterDebug` rendering and the merge of several actions.

use std::collections::BTreeMap;

use serde_json::{Value as Json, json};

use crate::cel::Value;
use crate::cel::ast::{BinaryOp, Expr, ExprKind, UnaryOp};

use super::residual::literal;
use crate::cel::inline::{is_macro, macro_vars};

/// A node of the plan tree: a residual expression or a logical operation.
#[derive(Clone, Debug)]
pub(crate) enum Node {
    Expr(Expr),
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
}

impl Node {
    /// A boolean literal node.
    pub(crate) fn bool(b: bool) -> Node {
        Node::Expr(Expr {
            kind: ExprKind::Literal(Value::Bool(b)),
            pos: 0,
        })
    }

    /// The value of a boolean literal node.
    pub(crate) fn const_bool(&self) -> Option<bool> {
        match self {
            Node::Expr(Expr {
                kind: ExprKind::Literal(Value::Bool(b)),
                ..
            }) => Some(*b),
            _ => None,
        }
    }

    /// `!node`, with a double negation removed.
    pub(crate) fn invert(self) -> Node {
        match self {
            Node::Not(inner) => *inner,
            other => Node::Not(Box::new(other)),
        }
    }

    /// A key equal for structurally equal nodes (map entries in any order).
    fn key(&self) -> String {
        let mut s = String::new();
        node_key(self, &mut s);
        s
    }

    /// The node as a CEL expression (`&&`, `||`, `!`).
    pub(crate) fn to_expr(&self) -> Expr {
        let mk = |kind| Expr { kind, pos: 0 };
        match self {
            Node::Expr(e) => e.clone(),
            Node::Not(n) => mk(ExprKind::Unary(UnaryOp::Not, Box::new(n.to_expr()))),
            Node::And(ns) | Node::Or(ns) => {
                let and = matches!(self, Node::And(_));
                let mut items: Vec<Expr> = ns.iter().map(Node::to_expr).collect();
                let mut acc = items.pop().unwrap_or_else(|| Node::bool(and).to_expr());
                while let Some(x) = items.pop() {
                    acc = mk(if and {
                        ExprKind::And(Box::new(x), Box::new(acc))
                    } else {
                        ExprKind::Or(Box::new(x), Box::new(acc))
                    });
                }
                acc
            }
        }
    }
}

fn node_key(n: &Node, out: &mut String) {
    match n {
        Node::Expr(e) => expr_key(e, out),
        Node::Not(x) => {
            out.push_str("(!");
            node_key(x, out);
            out.push(')');
        }
        Node::And(ns) | Node::Or(ns) => {
            out.push_str(if matches!(n, Node::And(_)) {
                "(&&"
            } else {
                "(||"
            });
            for x in ns {
                out.push(' ');
                node_key(x, out);
            }
            out.push(')');
        }
    }
}

fn expr_key(e: &Expr, out: &mut String) {
    match &e.kind {
        ExprKind::Literal(v) => out.push_str(&format!("{v:?}")),
        ExprKind::Ident(n) => out.push_str(n),
        ExprKind::Map(entries) => {
            let mut keys: Vec<String> = entries
                .iter()
                .map(|(k, v, o)| {
                    let mut s = String::new();
                    expr_key(k, &mut s);
                    s.push(':');
                    expr_key(v, &mut s);
                    if *o {
                        s.push('?');
                    }
                    s
                })
                .collect();
            keys.sort();
            out.push_str(&format!("{{{}}}", keys.join(",")));
        }
        other => {
            out.push_str(&format!("({}", kind_tag(other)));
            for c in e.children() {
                out.push(' ');
                expr_key(c, out);
            }
            out.push(')');
        }
    }
}

fn kind_tag(k: &ExprKind) -> String {
    match k {
        ExprKind::Select {
            field, optional, ..
        } => format!(".{}{field}", if *optional { "?" } else { "" }),
        ExprKind::Index { optional, .. } => format!("[{optional}]"),
        ExprKind::Call { target, func, .. } => format!("call:{func}:{}", target.is_some()),
        ExprKind::List(items) => format!(
            "list:{}",
            items
                .iter()
                .map(|(_, o)| if *o { '?' } else { '-' })
                .collect::<String>()
        ),
        ExprKind::Struct { type_name, fields } => format!(
            "struct:{type_name}:{}",
            fields
                .iter()
                .map(|(n, _, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(",")
        ),
        ExprKind::Unary(op, _) => format!("{op:?}"),
        ExprKind::Binary(op, _, _) => format!("{op:?}"),
        ExprKind::And(..) => "&&".into(),
        ExprKind::Or(..) => "||".into(),
        ExprKind::Ternary(..) => "?:".into(),
        _ => String::new(),
    }
}

fn dedup(nodes: Vec<Node>) -> Vec<Node> {
    let mut seen = std::collections::HashSet::new();
    nodes.into_iter().filter(|n| seen.insert(n.key())).collect()
}

/// `a || b || ...` with duplicates removed; `None` when empty.
pub(crate) fn or_node(nodes: Vec<Node>) -> Option<Node> {
    let mut u = dedup(nodes);
    match u.len() {
        0 => None,
        1 => u.pop(),
        _ => Some(Node::Or(u)),
    }
}

/// `a && b && ...` with duplicates removed; `None` when empty.
pub(crate) fn and_node(nodes: Vec<Node>) -> Option<Node> {
    let mut u = dedup(nodes);
    match u.len() {
        0 => None,
        1 => u.pop(),
        _ => Some(Node::And(u)),
    }
}

/// One operand of a filter expression.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Operand {
    /// A constant (a JSON value, as `google.protobuf.Value`).
    Value(Json),
    /// A variable such as `request.resource.attr.owner`.
    Variable(String),
    /// An operator applied to operands.
    Expression(Expression),
}

/// An operator and its operands.
#[derive(Clone, Debug, PartialEq)]
pub struct Expression {
    /// Cerbos's operator name (`eq`, `and`, `in`, `lambda`, ...).
    pub operator: String,
    /// The operands, in order.
    pub operands: Vec<Operand>,
}

/// The kind of a plan's filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FilterKind {
    /// Every resource is allowed.
    AlwaysAllowed,
    /// No resource is allowed.
    AlwaysDenied,
    /// Resources matching the condition are allowed.
    Conditional,
}

impl FilterKind {
    /// Cerbos's enum name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            FilterKind::AlwaysAllowed => "KIND_ALWAYS_ALLOWED",
            FilterKind::AlwaysDenied => "KIND_ALWAYS_DENIED",
            FilterKind::Conditional => "KIND_CONDITIONAL",
        }
    }
}

/// A plan's filter: Cerbos's `PlanResourcesFilter`.
#[derive(Clone, Debug, PartialEq)]
pub struct Filter {
    /// Always allowed, always denied or conditional.
    pub kind: FilterKind,
    /// The condition of a conditional filter.
    pub condition: Option<Operand>,
}

impl Filter {
    fn denied() -> Filter {
        Filter {
            kind: FilterKind::AlwaysDenied,
            condition: None,
        }
    }

    /// The filter in Cerbos's JSON form.
    pub fn to_json(&self) -> Json {
        let mut m = serde_json::Map::new();
        m.insert("kind".into(), json!(self.kind.as_str()));
        if let Some(c) = &self.condition {
            m.insert("condition".into(), operand_json(c));
        }
        Json::Object(m)
    }

    /// Parses a filter from Cerbos's JSON form.
    pub fn from_json(v: &Json) -> Option<Filter> {
        let kind = match v.get("kind").and_then(Json::as_str).unwrap_or("") {
            "KIND_ALWAYS_ALLOWED" => FilterKind::AlwaysAllowed,
            "KIND_ALWAYS_DENIED" => FilterKind::AlwaysDenied,
            "KIND_CONDITIONAL" => FilterKind::Conditional,
            _ => return None,
        };
        let condition = match v.get("condition") {
            Some(c) => Some(operand_from_json(c)?),
            None => None,
        };
        Some(Filter { kind, condition })
    }

    /// The filter as Cerbos renders it in `filterDebug`.
    pub fn debug_string(&self) -> String {
        match self.kind {
            FilterKind::AlwaysAllowed => "(true)".into(),
            FilterKind::AlwaysDenied => "(false)".into(),
            FilterKind::Conditional => {
                let mut s = String::new();
                if let Some(c) = &self.condition {
                    operand_string(c, &mut s);
                }
                s
            }
        }
    }

    /// Cerbos's normalisation of a (conditional) filter: literal `true`/`false` folded
    /// away, repeated operands of `and`/`or` dropped, `in` over one value turned into
    /// `eq`, abbreviated variables (`R.`, `P.`) expanded.
    pub fn normalise(mut self) -> Filter {
        self.condition = self.condition.and_then(normalise_operand);
        match &self.condition {
            None => {
                self.kind = FilterKind::AlwaysAllowed;
            }
            Some(Operand::Value(Json::Bool(b))) => {
                self.kind = if *b {
                    FilterKind::AlwaysAllowed
                } else {
                    FilterKind::AlwaysDenied
                };
                self.condition = None;
            }
            Some(_) => {}
        }
        self
    }
}

/// An operand in Cerbos's JSON form.
pub fn operand_json(o: &Operand) -> Json {
    match o {
        Operand::Value(v) => single("value", v.clone()),
        Operand::Variable(v) => single("variable", Json::String(v.clone())),
        Operand::Expression(e) => {
            let mut m = serde_json::Map::new();
            m.insert("operator".into(), json!(e.operator));
            if !e.operands.is_empty() {
                m.insert(
                    "operands".into(),
                    Json::Array(e.operands.iter().map(operand_json).collect()),
                );
            }
            // Built in place: `json!` would serialise `m` again, at every level.
            single("expression", Json::Object(m))
        }
    }
}

/// `{key: value}`.
fn single(key: &str, value: Json) -> Json {
    let mut m = serde_json::Map::with_capacity(1);
    m.insert(key.to_string(), value);
    Json::Object(m)
}

fn operand_from_json(v: &Json) -> Option<Operand> {
    if let Some(x) = v.get("value") {
        return Some(Operand::Value(x.clone()));
    }
    if let Some(x) = v.get("variable") {
        return Some(Operand::Variable(x.as_str()?.to_string()));
    }
    let e = v.get("expression")?;
    let operands = match e.get("operands") {
        Some(Json::Array(a)) => a
            .iter()
            .map(operand_from_json)
            .collect::<Option<Vec<_>>>()?,
        _ => Vec::new(),
    };
    Some(Operand::Expression(Expression {
        operator: e.get("operator")?.as_str()?.to_string(),
        operands,
    }))
}

fn operand_string(o: &Operand, s: &mut String) {
    match o {
        Operand::Value(v) => s.push_str(&value_debug(v)),
        Operand::Variable(v) => s.push_str(v),
        Operand::Expression(e) => {
            s.push('(');
            s.push_str(&e.operator);
            s.push(' ');
            for (i, op) in e.operands.iter().enumerate() {
                if i > 0 {
                    s.push(' ');
                }
                operand_string(op, s);
            }
            s.push(')');
        }
    }
}

/// A value as Go's protojson writes it, compacted.
fn value_debug(v: &Json) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "<ERROR>".into())
}

fn bool_value(o: &Operand) -> Option<bool> {
    match o {
        Operand::Value(Json::Bool(b)) => Some(*b),
        _ => None,
    }
}

fn operand_key(o: &Operand) -> String {
    operand_json(o).to_string()
}

fn normalise_operand(o: Operand) -> Option<Operand> {
    match o {
        Operand::Value(_) => Some(o),
        Operand::Variable(v) => Some(Operand::Variable(expand_abbrev(&v))),
        Operand::Expression(e) => normalise_expression(e),
    }
}

/// `R.x` -> `request.resource.x`, `P.x` -> `request.principal.x`, ...
fn expand_abbrev(s: &str) -> String {
    let (prefix, rest) = match s.split_once('.') {
        Some((p, r)) => (p, Some(r)),
        None => (s, None),
    };
    let expanded = match prefix {
        "P" => "request.principal",
        "R" => "request.resource",
        "C" => "constants",
        "V" => "variables",
        "G" => "globals",
        other => other,
    };
    match rest {
        Some(r) => format!("{expanded}.{r}"),
        None => expanded.to_string(),
    }
}

fn normalise_expression(mut e: Expression) -> Option<Operand> {
    if e.operator == "in" && e.operands.len() == 2 {
        match &e.operands[1] {
            Operand::Value(Json::Object(m)) => match m.len() {
                0 => return Some(Operand::Value(Json::Bool(false))),
                1 => {
                    let k = m.keys().next().cloned().unwrap_or_default();
                    e.operator = "eq".into();
                    e.operands[1] = Operand::Value(Json::String(k));
                }
                _ => {}
            },
            Operand::Value(Json::Array(a)) => match a.len() {
                0 => return Some(Operand::Value(Json::Bool(false))),
                1 => {
                    let v = a[0].clone();
                    e.operator = "eq".into();
                    e.operands[1] = Operand::Value(v);
                }
                _ => {}
            },
            Operand::Value(_) => e.operator = "eq".into(),
            _ => {}
        }
    }
    let logical = matches!(e.operator.as_str(), "and" | "or" | "not");
    let dedup = matches!(e.operator.as_str(), "and" | "or");
    let mut seen = std::collections::HashSet::new();
    let mut operands = Vec::with_capacity(e.operands.len());
    for op in std::mem::take(&mut e.operands) {
        let key = dedup.then(|| operand_key(&op));
        let Some(n) = normalise_operand(op) else {
            continue;
        };
        if logical && let Some(b) = bool_value(&n) {
            match (e.operator.as_str(), b) {
                ("and", true) | ("or", false) => continue,
                ("and", false) => return Some(Operand::Value(Json::Bool(false))),
                ("or", true) => return Some(Operand::Value(Json::Bool(true))),
                _ => {}
            }
        }
        if let Some(k) = key
            && !seen.insert(k)
        {
            continue;
        }
        operands.push(n);
    }
    if logical {
        match operands.len() {
            0 => {
                return match e.operator.as_str() {
                    "and" => Some(Operand::Value(Json::Bool(true))),
                    "or" => Some(Operand::Value(Json::Bool(false))),
                    _ => None,
                };
            }
            1 if dedup => return operands.pop(),
            1 => {
                if let Some(b) = bool_value(&operands[0]) {
                    return Some(Operand::Value(Json::Bool(!b)));
                }
            }
            _ => {}
        }
    }
    e.operands = operands;
    Some(Operand::Expression(e))
}

// === Conversion of the plan tree ===

fn expression(op: &str, operands: Vec<Operand>) -> Operand {
    Operand::Expression(Expression {
        operator: op.to_string(),
        operands,
    })
}

/// A plan tree as a filter condition (before normalisation).
pub(crate) fn node_operand(n: &Node) -> Operand {
    match n {
        Node::Expr(e) => expr_operand(e, false),
        Node::And(ns) => expression("and", ns.iter().map(node_operand).collect()),
        Node::Or(ns) => expression("or", ns.iter().map(node_operand).collect()),
        Node::Not(x) => expression("not", vec![node_operand(x)]),
    }
}

/// A known primitive as a filter value.
fn value_json(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => number(*i as f64),
        Value::Uint(u) => number(*u as f64),
        Value::Double(d) => number(*d),
        Value::String(s) => Json::String(s.to_string()),
        Value::Bytes(b) => {
            use base64::Engine as _;
            Json::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        other => crate::cel::to_json(other),
    }
}

/// A number as `google.protobuf.Value` holds it (a double), written without a
/// fraction when it has none.
fn number(d: f64) -> Json {
    if d.fract() == 0.0 && d.abs() < 9.007_199_254_740_992e15 {
        json!(d as i64)
    } else {
        serde_json::Number::from_f64(d).map_or(Json::Null, Json::Number)
    }
}

fn is_primitive_literal(e: &Expr) -> bool {
    matches!(&e.kind, ExprKind::Literal(v) if !matches!(v, Value::List(_) | Value::Map(_)))
}

fn binary_name(op: BinaryOp) -> &'static str {
    match op {
        BinaryOp::Add => "add",
        BinaryOp::Sub => "sub",
        BinaryOp::Mul => "mult",
        BinaryOp::Div => "div",
        BinaryOp::Rem => "mod",
        BinaryOp::Eq => "eq",
        BinaryOp::Ne => "ne",
        BinaryOp::Lt => "lt",
        BinaryOp::Le => "le",
        BinaryOp::Gt => "gt",
        BinaryOp::Ge => "ge",
        BinaryOp::In => "in",
    }
}

/// Cerbos's `buildExpr`: a residual expression as a filter operand. `in_rhs` is set for
/// the right operand of `in`, where a map stands for its keys.
fn expr_operand(e: &Expr, in_rhs: bool) -> Operand {
    match &e.kind {
        ExprKind::Literal(
            v @ (Value::List(_) | Value::Map(_) | Value::Timestamp(_) | Value::Duration(_)),
        ) => match literal(v, e.pos) {
            Some(x) => expr_operand(&x, in_rhs),
            None => Operand::Value(crate::cel::to_json(v)),
        },
        ExprKind::Literal(v) => Operand::Value(value_json(v)),
        ExprKind::Ident(n) => Operand::Variable(n.clone()),
        ExprKind::Select {
            operand,
            field,
            optional,
        } => select_operand(e, operand, field, *optional),
        ExprKind::Index {
            operand,
            index,
            optional,
        } => expression(
            if *optional { "_[?_]" } else { "index" },
            vec![expr_operand(operand, false), expr_operand(index, false)],
        ),
        ExprKind::Call {
            target: None,
            func,
            args,
        } if func == "has" && args.len() == 1 => Operand::Value(Json::Bool(true)),
        ExprKind::Call {
            target: Some(t),
            func,
            args,
        } if is_macro(func, true, args.len()) => lambda_operand(t, func, args),
        ExprKind::Call { target, func, args } => call_operand(target.as_deref(), func, args),
        ExprKind::List(items) => list_operand(items),
        ExprKind::Map(entries) if in_rhs => map_keys_operand(entries, e.pos),
        ExprKind::Map(entries) => {
            struct_operand(entries.iter().map(|(k, v, _)| (expr_operand(k, false), v)))
        }
        ExprKind::Struct { fields, .. } => struct_operand(
            fields
                .iter()
                .map(|(n, v, _)| (Operand::Value(Json::String(n.clone())), v)),
        ),
        ExprKind::Unary(UnaryOp::Not, x) => expression("not", vec![expr_operand(x, false)]),
        ExprKind::Unary(UnaryOp::Neg, x) => expression("-_", vec![expr_operand(x, false)]),
        ExprKind::Binary(op, l, r) => expression(
            binary_name(*op),
            vec![expr_operand(l, false), expr_operand(r, *op == BinaryOp::In)],
        ),
        ExprKind::And(l, r) => {
            expression("and", vec![expr_operand(l, false), expr_operand(r, false)])
        }
        ExprKind::Or(l, r) => {
            expression("or", vec![expr_operand(l, false), expr_operand(r, false)])
        }
        ExprKind::Ternary(c, a, b) => expression(
            "if",
            vec![
                expr_operand(c, false),
                expr_operand(a, false),
                expr_operand(b, false),
            ],
        ),
    }
}

/// `a.b.c` as a variable when it is a qualified name, else `get-field`; `a.?f` as `_?._`.
fn select_operand(e: &Expr, operand: &Expr, field: &str, optional: bool) -> Operand {
    if optional {
        return expression(
            "_?._",
            vec![
                expr_operand(operand, false),
                Operand::Value(Json::String(field.to_owned())),
            ],
        );
    }
    match e.qualified_name() {
        Some(q) => Operand::Variable(q),
        None => expression(
            "get-field",
            vec![
                expr_operand(operand, false),
                Operand::Variable(field.to_owned()),
            ],
        ),
    }
}

/// A call as an expression operand: a namespaced global function (`math.greatest`) by
/// its full name, otherwise the function over its receiver and arguments.
fn call_operand(target: Option<&Expr>, func: &str, args: &[Expr]) -> Operand {
    let (name, target) = match target.and_then(Expr::qualified_name) {
        Some(ns)
            if crate::cel::functions::registry()
                .get(
                    &format!("{ns}.{func}"),
                    crate::cel::functions::CallStyle::Global,
                )
                .is_some() =>
        {
            (format!("{ns}.{func}"), None)
        }
        _ => (func.to_string(), target),
    };
    let mut ops: Vec<Operand> = target.map(|t| expr_operand(t, false)).into_iter().collect();
    ops.extend(args.iter().map(|a| expr_operand(a, false)));
    expression(&name, ops)
}

/// A map or message literal as Cerbos's `(struct (set-field key value)...)`.
fn struct_operand<'e>(fields: impl Iterator<Item = (Operand, &'e Expr)>) -> Operand {
    expression(
        "struct",
        fields
            .map(|(k, v)| expression("set-field", vec![k, expr_operand(v, false)]))
            .collect(),
    )
}

/// A list: a value when every element is a primitive literal, else a `list` expression.
fn list_operand(items: &[(Expr, bool)]) -> Operand {
    if items.iter().all(|(x, _)| is_primitive_literal(x)) {
        Operand::Value(Json::Array(
            items
                .iter()
                .map(|(x, _)| match &x.kind {
                    ExprKind::Literal(v) => value_json(v),
                    _ => Json::Null,
                })
                .collect(),
        ))
    } else {
        expression(
            "list",
            items.iter().map(|(x, _)| expr_operand(x, false)).collect(),
        )
    }
}

/// A map on the right of `in`: the list of its keys, in the order of their operands.
fn map_keys_operand(entries: &[(Expr, Expr, bool)], pos: usize) -> Operand {
    let mut keys: Vec<(String, &Expr)> = entries
        .iter()
        .map(|(k, _, _)| (format!("{:?}", operand_json(&expr_operand(k, false))), k))
        .collect();
    keys.sort_by(|a, b| a.0.cmp(&b.0));
    let list = Expr {
        kind: ExprKind::List(keys.into_iter().map(|(_, k)| (k.clone(), false)).collect()),
        pos,
    };
    expr_operand(&list, false)
}

/// A comprehension as Cerbos's `(op range (lambda body var...))`.
fn lambda_operand(range: &Expr, func: &str, args: &[Expr]) -> Operand {
    let nvars = macro_vars(func, args.len());
    let vars: Vec<Operand> = args[..nvars]
        .iter()
        .map(|a| Operand::Variable(a.as_ident().unwrap_or("_").to_string()))
        .collect();
    let rest = &args[nvars..];
    let (op, bodies): (&str, Vec<&Expr>) = match (func, rest) {
        ("all", [b]) => ("all", vec![b]),
        ("exists", [b]) => ("exists", vec![b]),
        ("exists_one" | "existsOne", [b]) => ("exists_one", vec![b]),
        ("map", [b]) => ("map", vec![b]),
        ("map", [f, b]) => {
            if matches!(
                b.kind,
                ExprKind::Ident(_) | ExprKind::Literal(_) | ExprKind::Select { .. }
            ) {
                ("filter", vec![f])
            } else {
                ("transformList", vec![f, b])
            }
        }
        ("filter", [b]) => ("filter", vec![b]),
        ("sortBy", [b]) => ("sortBy", vec![b]),
        ("transformList", [b]) => ("transformList", vec![b]),
        ("transformList", [f, b]) => ("transformList", vec![f, b]),
        ("transformMap", [b]) => ("transformMap", vec![b]),
        ("transformMap", [f, b]) => ("transformMap", vec![f, b]),
        ("transformMapEntry", [b]) => ("transformMapEntry", vec![b]),
        ("transformMapEntry", [f, b]) => ("transformMapEntry", vec![f, b]),
        (other, bs) => (other, bs.iter().collect()),
    };
    let on_struct = matches!(op, "transformMap" | "transformMapEntry" | "transformList");
    let range_op = expr_operand(range, !on_struct && matches!(range.kind, ExprKind::Map(_)));
    let mut lambda: Vec<Operand> = bodies.iter().map(|b| expr_operand(b, false)).collect();
    lambda.extend(vars);
    expression(op, vec![range_op, expression("lambda", lambda)])
}

// === Actions ===

/// Cerbos's `MergeWithAnd`: the filters of several actions combined; returns the
/// filter and its `filterDebug`.
pub(crate) fn merge_with_and(filters: Vec<Filter>) -> (Filter, String) {
    let mut conds: BTreeMap<String, Operand> = BTreeMap::new();
    for f in filters {
        match f.kind {
            FilterKind::AlwaysAllowed => {}
            FilterKind::AlwaysDenied => {
                let s = f.debug_string();
                return (Filter::denied(), s);
            }
            FilterKind::Conditional => {
                let key = f.debug_string();
                if let Some(c) = f.condition {
                    conds.insert(key, c);
                }
            }
        }
    }
    let filter = match conds.len() {
        0 => Filter {
            kind: FilterKind::AlwaysAllowed,
            condition: None,
        },
        1 => Filter {
            kind: FilterKind::Conditional,
            condition: conds.into_values().next(),
        },
        _ => Filter {
            kind: FilterKind::Conditional,
            condition: Some(expression("and", conds.into_values().collect())),
        },
    };
    let s = filter.debug_string();
    (filter, s)
}

/// A plan tree as a normalised filter (Cerbos's `ToFilter`).
pub(crate) fn to_filter(n: &Node) -> Filter {
    Filter {
        kind: FilterKind::Conditional,
        condition: Some(node_operand(n)),
    }
    .normalise()
}
