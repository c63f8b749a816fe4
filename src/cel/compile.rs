//! Turns a parsed expression into an executable [`Program`]: identifiers become
//! slots, function names become function pointers, macros become comprehensions,
//! and constant regular expressions are compiled once.

use std::sync::Arc;

use regex::Regex;

use super::ast::{Expr, ExprKind, UnaryOp};
use super::eval::{Activation, CompKind, Comprehension, EvalError, Locals, Node, Root, eval};
use super::functions::{CallStyle, registry};
use super::value::{CelType, Value};

/// Why an expression cannot become a [`Program`] (an undeclared name, an unknown
/// function, a bad constant regex), at a byte offset of the expression's source.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ProgramError {
    /// What is wrong.
    pub(crate) message: String,
    /// Byte offset in the source.
    pos: usize,
}

/// What a host namespace member (`V.x`, `C.x`) stands for.
#[derive(Clone, Debug)]
pub enum HostBinding {
    /// A constant value.
    Value(Value),
    /// An expression to compile in place of the reference (lazily evaluated variables).
    Expr(Arc<Expr>),
}

/// The names the host (the policy engine) declares to expressions.
pub trait HostScope {
    /// The activation slot of a top-level variable such as `request` or `P`.
    fn variable(&self, name: &str) -> Option<u16>;
    /// Resolves `root.field` for namespaces such as `V` or `C`.
    /// `None` means `root` is not such a namespace.
    fn select(&self, root: &str, field: &str) -> Option<Result<HostBinding, String>>;
    /// A slot that holds field `field` of the value in `slot` (such as `R.attr`), so that
    /// a path through it reads that slot instead of looking the field up.
    fn field_slot(&self, _slot: u16, _field: &str) -> Option<u16> {
        None
    }
}

/// A compiled, executable expression.
#[derive(Clone, Debug)]
pub struct Program {
    node: Node,
    locals: usize,
}

impl Program {
    /// Evaluates the program.
    pub fn eval(&self, act: &Activation) -> Result<Value, EvalError> {
        let mut locals = Locals::new(self.locals);
        eval(&self.node, act, &mut locals)
    }
}

/// Maximum depth of variables referring to variables, a guard against cycles.
const MAX_INLINE_DEPTH: usize = 32;

/// Compiles a parsed expression against a host scope.
pub fn compile(expr: &Expr, host: &dyn HostScope) -> Result<Program, ProgramError> {
    let mut c = Compiler {
        host,
        scopes: Vec::new(),
        next_slot: 0,
        max_slots: 0,
        inline_depth: 0,
    };
    let node = c.expr(expr)?;
    Ok(Program {
        node,
        locals: c.max_slots,
    })
}

struct Compiler<'h> {
    host: &'h dyn HostScope,
    scopes: Vec<(String, u16)>,
    next_slot: u16,
    max_slots: usize,
    inline_depth: usize,
}

fn err<T>(pos: usize, msg: impl Into<String>) -> Result<T, ProgramError> {
    Err(ProgramError {
        message: msg.into(),
        pos,
    })
}

fn undeclared(pos: usize, name: &str) -> ProgramError {
    ProgramError {
        message: format!("undeclared reference to '{name}' (in container '')"),
        pos,
    }
}

/// Functions whose global overloads Cerbos 0.55 declares non-strict (its set functions):
/// a failed argument makes them fail with `no such overload`, not with the argument's error.
const NON_STRICT: [&str; 6] = [
    "except",
    "hasIntersection",
    "has_intersection",
    "intersect",
    "isSubset",
    "is_subset",
];

/// The names of the extension types that expressions can name.
const EXTENSION_TYPES: [&str; 6] = [
    "net.IP",
    "net.CIDR",
    "cerbos.lib.hierarchy",
    "cerbos.lib.spiffeID",
    "cerbos.lib.spiffeTrustDomain",
    "cerbos.lib.spiffeMatcher",
];

/// The type value a type name (`int`, `google.protobuf.Timestamp`, ...) stands for.
pub(crate) fn type_ident(name: &str) -> Option<CelType> {
    Some(match name {
        "int" => CelType::Int,
        "uint" => CelType::Uint,
        "double" => CelType::Double,
        "string" => CelType::String,
        "bytes" => CelType::Bytes,
        "bool" => CelType::Bool,
        "list" => CelType::List,
        "map" => CelType::Map,
        "null_type" => CelType::Null,
        "type" => CelType::Type,
        "optional_type" => CelType::Optional,
        "google.protobuf.Timestamp" => CelType::Timestamp,
        "google.protobuf.Duration" => CelType::Duration,
        // The extension types, by the names Cerbos 0.55 declares.
        "net.IP"
        | "net.CIDR"
        | "cerbos.lib.hierarchy"
        | "cerbos.lib.spiffeID"
        | "cerbos.lib.spiffeTrustDomain"
        | "cerbos.lib.spiffeMatcher" => {
            CelType::Named(EXTENSION_TYPES.iter().find(|t| **t == name)?)
        }
        _ => return None,
    })
}

impl Compiler<'_> {
    fn local(&self, name: &str) -> Option<u16> {
        self.scopes
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, s)| *s)
    }

    /// Whether `name` is bound as a value (local or host), so `name.f()` is a method call on it.
    fn is_bound(&self, name: &str) -> bool {
        self.local(name).is_some() || self.host.variable(name).is_some()
    }

    fn alloc(&mut self, name: &str) -> u16 {
        let slot = self.next_slot;
        self.next_slot += 1;
        self.max_slots = self.max_slots.max(self.next_slot as usize);
        self.scopes.push((name.to_string(), slot));
        slot
    }

    fn release(&mut self, n: u16) {
        for _ in 0..n {
            self.scopes.pop();
        }
        self.next_slot -= n;
    }

    fn expr(&mut self, e: &Expr) -> Result<Node, ProgramError> {
        match &e.kind {
            ExprKind::Literal(v) => Ok(Node::Const(v.clone())),
            ExprKind::Ident(name) => self.ident(name, e.pos),
            ExprKind::Select {
                operand,
                field,
                optional,
            } => self.select(operand, field, *optional, e),
            ExprKind::Index {
                operand,
                index,
                optional,
            } => {
                let o = Box::new(self.expr(operand)?);
                let i = Box::new(self.expr(index)?);
                Ok(if *optional {
                    Node::OptIndex(o, i)
                } else {
                    Node::Index(o, i)
                })
            }
            ExprKind::Call { target, func, args } => {
                self.call(target.as_deref(), func, args, e.pos)
            }
            ExprKind::List(items) => {
                let nodes: Vec<(Node, bool)> = items
                    .iter()
                    .map(|(x, opt)| Ok((self.expr(x)?, *opt)))
                    .collect::<Result<_, ProgramError>>()?;
                // A list of constants is built once, here, not at every evaluation.
                if nodes
                    .iter()
                    .all(|(n, opt)| !opt && matches!(n, Node::Const(_)))
                {
                    let values = nodes
                        .into_iter()
                        .filter_map(|(n, _)| match n {
                            Node::Const(v) => Some(v),
                            _ => None,
                        })
                        .collect();
                    return Ok(Node::Const(Value::list(values)));
                }
                Ok(Node::List(nodes))
            }
            ExprKind::Map(entries) => Ok(Node::Map(
                entries
                    .iter()
                    .map(|(k, v, opt)| Ok((self.expr(k)?, self.expr(v)?, *opt)))
                    .collect::<Result<_, ProgramError>>()?,
            )),
            ExprKind::Struct { type_name, .. } => err(
                e.pos,
                format!("undeclared reference to '{type_name}' (in container '')"),
            ),
            ExprKind::Unary(op, x) => {
                let x = Box::new(self.expr(x)?);
                Ok(match op {
                    UnaryOp::Not => Node::Not(x),
                    UnaryOp::Neg => Node::Neg(x),
                })
            }
            ExprKind::Binary(op, l, r) => Ok(Node::Binary(
                *op,
                Box::new(self.expr(l)?),
                Box::new(self.expr(r)?),
            )),
            ExprKind::And(l, r) => Ok(Node::And(Box::new(self.expr(l)?), Box::new(self.expr(r)?))),
            ExprKind::Or(l, r) => Ok(Node::Or(Box::new(self.expr(l)?), Box::new(self.expr(r)?))),
            ExprKind::Ternary(c, a, b) => Ok(Node::Ternary(
                Box::new(self.expr(c)?),
                Box::new(self.expr(a)?),
                Box::new(self.expr(b)?),
            )),
        }
    }

    fn ident(&mut self, name: &str, pos: usize) -> Result<Node, ProgramError> {
        if let Some(slot) = self.local(name) {
            return Ok(Node::Local(slot));
        }
        if let Some(slot) = self.host.variable(name) {
            return Ok(Node::Host(slot));
        }
        if let Some(t) = type_ident(name) {
            return Ok(Node::Const(Value::Type(t)));
        }
        Err(undeclared(pos, name))
    }

    fn select(
        &mut self,
        operand: &Expr,
        field: &str,
        optional: bool,
        e: &Expr,
    ) -> Result<Node, ProgramError> {
        if !optional {
            if let Some(root) = operand.as_ident()
                && self.local(root).is_none()
                && let Some(binding) = self.host.select(root, field)
            {
                return self.host_binding(binding, e.pos);
            }
            // Qualified type names such as google.protobuf.Timestamp.
            if let Some(q) = e.qualified_name()
                && !self.is_bound(q.split('.').next().unwrap_or(""))
                && let Some(t) = type_ident(&q)
            {
                return Ok(Node::Const(Value::Type(t)));
            }
        }
        let base = self.expr(operand)?;
        let field: Arc<str> = Arc::from(field);
        if optional {
            return Ok(Node::OptSelect(Box::new(base), field));
        }
        Ok(match base {
            Node::Host(i) => match self.host.field_slot(i, &field) {
                Some(slot) => Node::Host(slot),
                None => Node::Path(Root::Host(i), Box::new([field])),
            },
            Node::Local(i) => Node::Path(Root::Local(i), Box::new([field])),
            Node::Path(root, fields) => {
                let mut v = fields.into_vec();
                v.push(field);
                Node::Path(root, v.into_boxed_slice())
            }
            other => Node::Select(Box::new(other), field),
        })
    }

    fn host_binding(
        &mut self,
        binding: Result<HostBinding, String>,
        pos: usize,
    ) -> Result<Node, ProgramError> {
        match binding {
            Err(msg) => err(pos, msg),
            Ok(HostBinding::Value(v)) => Ok(Node::Const(v)),
            Ok(HostBinding::Expr(expr)) => {
                if self.inline_depth >= MAX_INLINE_DEPTH {
                    return err(pos, "variable references are nested too deeply (a cycle?)");
                }
                // A variable's expression sees only the host's names, never the locals of
                // the place that refers to it; its own locals get fresh slots.
                let saved = std::mem::take(&mut self.scopes);
                self.inline_depth += 1;
                let out = self.expr(&expr);
                self.inline_depth -= 1;
                self.scopes = saved;
                out.map_err(|e| ProgramError {
                    message: e.message,
                    pos,
                })
            }
        }
    }

    fn macro_var(&self, e: &Expr) -> Result<String, ProgramError> {
        match e.as_ident() {
            Some(n) => Ok(n.to_string()),
            None => err(e.pos, "argument must be a simple name"),
        }
    }

    fn call(
        &mut self,
        target: Option<&Expr>,
        func: &str,
        args: &[Expr],
        pos: usize,
    ) -> Result<Node, ProgramError> {
        // Namespaced global functions: `math.greatest(..)`, `cel.bind(..)`.
        if let Some(ns) = target.and_then(Expr::qualified_name)
            && !self.is_bound(ns.split('.').next().unwrap_or(""))
        {
            let full = format!("{ns}.{func}");
            if full == "cel.bind" {
                return self.bind(args, pos);
            }
            if let Some(f) = registry().get(&full, CallStyle::Global) {
                let args = self.args(args)?;
                return Ok(Node::Call(f, args));
            }
        }
        if target.is_none() && func == "has" && args.len() == 1 {
            return self.has(&args[0]);
        }
        if let Some(t) = target
            && let Some(node) = self.receiver_macro(t, func, args)?
        {
            return Ok(node);
        }
        self.registered_call(target, func, args, pos)
    }

    /// `has(a.f)`.
    fn has(&mut self, arg: &Expr) -> Result<Node, ProgramError> {
        let ExprKind::Select {
            operand,
            field,
            optional: false,
        } = &arg.kind
        else {
            return err(arg.pos, "invalid argument to has() macro");
        };
        let o = self.expr(operand)?;
        Ok(Node::Has(Box::new(o), Arc::from(field.as_str())))
    }

    /// The macros and special forms on a receiver `t` (comprehensions, `optMap`, `or`,
    /// `matches` with a literal pattern); `None` if the call is none of them.
    fn receiver_macro(
        &mut self,
        t: &Expr,
        func: &str,
        args: &[Expr],
    ) -> Result<Option<Node>, ProgramError> {
        let quantifier = |func: &str| match func {
            "all" => CompKind::All,
            "exists" => CompKind::Exists,
            _ => CompKind::ExistsOne,
        };
        let node = match (func, args.len()) {
            ("all" | "exists" | "exists_one" | "existsOne", 2) => {
                self.comprehension(quantifier(func), t, &args[..1], None, &args[1])?
            }
            ("all" | "exists" | "existsOne" | "exists_one", 3) => {
                self.comprehension(quantifier(func), t, &args[..2], None, &args[2])?
            }
            ("map", 2) => self.comprehension(CompKind::Map, t, &args[..1], None, &args[1])?,
            ("map", 3) => {
                self.comprehension(CompKind::Map, t, &args[..1], Some(&args[1]), &args[2])?
            }
            ("filter", 2) => self.comprehension(CompKind::Filter, t, &args[..1], None, &args[1])?,
            ("sortBy", 2) => self.comprehension(CompKind::SortBy, t, &args[..1], None, &args[1])?,
            ("transformList" | "transformMap" | "transformMapEntry", 3 | 4) => {
                let kind = match func {
                    "transformList" => CompKind::TransformList,
                    "transformMap" => CompKind::TransformMap,
                    _ => CompKind::TransformMapEntry,
                };
                let filter = (args.len() == 4).then(|| &args[2]);
                self.comprehension(kind, t, &args[..2], filter, &args[args.len() - 1])?
            }
            ("optMap" | "optFlatMap", 2) => {
                self.opt_map(t, &args[0], &args[1], func == "optFlatMap")?
            }
            ("or" | "orValue", 1) => {
                let o = self.expr(t)?;
                let a = self.expr(&args[0])?;
                Node::OptOr(Box::new(o), Box::new(a), func == "orValue")
            }
            ("matches", 1) => {
                let ExprKind::Literal(Value::String(pattern)) = &args[0].kind else {
                    return Ok(None);
                };
                let re = Regex::new(pattern).map_err(|e| ProgramError {
                    message: format!("invalid regular expression: {e}"),
                    pos: args[0].pos,
                })?;
                let t = self.expr(t)?;
                Node::Matches(Box::new(t), Arc::new(re))
            }
            _ => return Ok(None),
        };
        Ok(Some(node))
    }

    /// A function from the registry, global (`size(x)`) or on a receiver (`x.size()`).
    fn registered_call(
        &mut self,
        target: Option<&Expr>,
        func: &str,
        args: &[Expr],
        pos: usize,
    ) -> Result<Node, ProgramError> {
        let style = if target.is_some() {
            CallStyle::Receiver
        } else {
            CallStyle::Global
        };
        let Some(f) = registry().get(func, style) else {
            return Err(undeclared(pos, func));
        };
        let mut all = Vec::with_capacity(args.len() + 1);
        if let Some(t) = target {
            all.push(self.expr(t)?);
        }
        all.extend(self.args(args)?);
        if target.is_none() && NON_STRICT.contains(&func) {
            return Ok(Node::NonStrictCall(f, all));
        }
        Ok(Node::Call(f, all))
    }

    fn args(&mut self, args: &[Expr]) -> Result<Vec<Node>, ProgramError> {
        args.iter().map(|a| self.expr(a)).collect()
    }

    fn comprehension(
        &mut self,
        kind: CompKind,
        range: &Expr,
        vars: &[Expr],
        filter: Option<&Expr>,
        body: &Expr,
    ) -> Result<Node, ProgramError> {
        let range = self.expr(range)?;
        let names = vars
            .iter()
            .map(|v| self.macro_var(v))
            .collect::<Result<Vec<_>, _>>()?;
        if names.len() == 2 && names[0] == names[1] && names[0] != "_" {
            return err(vars[1].pos, "overlapping declaration name");
        }
        let var1 = self.alloc(&names[0]);
        let var2 = names.get(1).map(|n| self.alloc(n));
        let filter = filter.map(|f| self.expr(f));
        let body = self.expr(body);
        self.release(names.len() as u16);
        Ok(Node::Comprehension(Box::new(Comprehension {
            kind,
            range,
            var1,
            var2,
            filter: filter.transpose()?,
            body: body?,
        })))
    }

    /// `opt.optMap(x, e)` is `opt.hasValue() ? optional.of(cel.bind(x, opt.value(), e)) :
    /// optional.none()`; `optFlatMap` leaves out the `optional.of` (cel-go's macros).
    fn opt_map(
        &mut self,
        target: &Expr,
        var: &Expr,
        body: &Expr,
        flat: bool,
    ) -> Result<Node, ProgramError> {
        let name = self.macro_var(var)?;
        let function = |name: &str, style| {
            registry().get(name, style).ok_or_else(|| ProgramError {
                message: format!("missing library function {name}"),
                pos: target.pos,
            })
        };
        let has_value = function("hasValue", CallStyle::Receiver)?;
        let value = function("value", CallStyle::Receiver)?;
        let of = function("optional.of", CallStyle::Global)?;
        let cond = Node::Call(has_value, vec![self.expr(target)?]);
        let init = Node::Call(value, vec![self.expr(target)?]);
        let slot = self.alloc(&name);
        let body = self.expr(body);
        self.release(1);
        let bound = Node::Bind(slot, Box::new(init), Box::new(body?));
        let then = if flat {
            bound
        } else {
            Node::Call(of, vec![bound])
        };
        Ok(Node::Ternary(
            Box::new(cond),
            Box::new(then),
            Box::new(Node::Const(Value::Optional(None))),
        ))
    }

    fn bind(&mut self, args: &[Expr], pos: usize) -> Result<Node, ProgramError> {
        if args.len() != 3 {
            return err(pos, "cel.bind() requires 3 arguments");
        }
        let name = self.macro_var(&args[0])?;
        let init = self.expr(&args[1])?;
        let slot = self.alloc(&name);
        let body = self.expr(&args[2]);
        self.release(1);
        Ok(Node::Bind(slot, Box::new(init), Box::new(body?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cel::{Key, MapValue, parse};

    /// `R` in slot 0, and `R.attr` also in slot 1.
    struct AttrHost;

    impl HostScope for AttrHost {
        fn variable(&self, name: &str) -> Option<u16> {
            (name == "R").then_some(0)
        }
        fn select(&self, _root: &str, _field: &str) -> Option<Result<HostBinding, String>> {
            None
        }
        fn field_slot(&self, slot: u16, field: &str) -> Option<u16> {
            (slot == 0 && field == "attr").then_some(1)
        }
    }

    fn map(entries: &[(&str, Value)]) -> Value {
        let mut m = MapValue::new();
        for (k, v) in entries {
            m.insert(Key::String(Arc::from(*k)), v.clone());
        }
        Value::map(m)
    }

    /// Issue 15: `R.attr.x` reads the slot of `R.attr` (one field lookup instead of two);
    /// other fields of `R` are still looked up in `R`.
    #[test]
    fn a_field_with_a_slot_is_read_from_it() {
        let expr =
            parse("R.attr.x == 1 && has(R.attr.x) && R.attr.size() == 1 && R.id == 'a'").unwrap();
        let prog = compile(&expr, &AttrHost).unwrap();
        let now = chrono::DateTime::parse_from_rfc3339("2021-04-22T10:05:20Z").unwrap();
        let attr = |x: i64| map(&[("x", Value::Int(x))]);
        let r = map(&[("attr", attr(1)), ("id", Value::from("a"))]);
        let run = |slot1: Value| prog.eval(&Activation::new(&[r.clone(), slot1], now));
        assert!(matches!(run(attr(1)), Ok(Value::Bool(true))));
        // The slot is what is read: the same `R` with another map in the slot.
        assert!(matches!(run(attr(2)), Ok(Value::Bool(false))));
    }
}
