//! The evaluator of compiled CEL programs.
//!
//! Semantics follow cel-go as Cerbos configures it: `&&`/`||` absorb errors when the
//! other side decides the result, equality is heterogeneous across numeric types,
//! and a missing map key is an error (`no such key: k`).

use std::cmp::Ordering;
use std::sync::Arc;

use regex::Regex;

use super::ast::BinaryOp;
use super::functions::NativeFn;
use super::value::{Key, MapValue, Opaque, Timestamp, Value};

/// A runtime evaluation error.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct EvalError(Arc<str>);

impl EvalError {
    /// An error with this message.
    pub(crate) fn new(msg: impl Into<Arc<str>>) -> Self {
        EvalError(msg.into())
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.0
    }
}

/// What an expression can see at run time: the host's variables (by slot) and the
/// request's fixed clock.
pub struct Activation<'a> {
    host: &'a [Value],
    now: Timestamp,
}

impl<'a> Activation<'a> {
    /// An activation over host variable slots (as numbered by the compiler's declarations).
    pub fn new(host: &'a [Value], now: Timestamp) -> Self {
        Activation { host, now }
    }

    /// The request's `now()`, fixed for the whole decision.
    pub(crate) fn now(&self) -> Timestamp {
        self.now
    }
}

/// The kinds of comprehension (macros over lists and maps).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CompKind {
    All,
    Exists,
    ExistsOne,
    Map,
    Filter,
    TransformList,
    TransformMap,
    TransformMapEntry,
    SortBy,
}

/// A comprehension: iterate `range`, binding one or two local slots.
#[derive(Clone, Debug)]
pub(crate) struct Comprehension {
    pub(crate) kind: CompKind,
    pub(crate) range: Node,
    /// First variable: the element (one-variable form) or the index/key (two-variable form).
    pub(crate) var1: u16,
    /// Second variable (the value) in the two-variable form.
    pub(crate) var2: Option<u16>,
    pub(crate) filter: Option<Node>,
    pub(crate) body: Node,
}

/// The root of a select path.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Root {
    Host(u16),
    Local(u16),
}

/// A compiled expression node. Names and functions are already resolved.
#[derive(Clone, Debug)]
pub(crate) enum Node {
    Const(Value),
    Host(u16),
    Local(u16),
    /// `root.f1.f2...`, walked by reference; only the final value is cloned.
    Path(Root, Box<[Arc<str>]>),
    Select(Box<Node>, Arc<str>),
    OptSelect(Box<Node>, Arc<str>),
    Has(Box<Node>, Arc<str>),
    Index(Box<Node>, Box<Node>),
    OptIndex(Box<Node>, Box<Node>),
    List(Vec<(Node, bool)>),
    Map(Vec<(Node, Node, bool)>),
    Not(Box<Node>),
    Neg(Box<Node>),
    Binary(BinaryOp, Box<Node>, Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Ternary(Box<Node>, Box<Node>, Box<Node>),
    Call(NativeFn, Vec<Node>),
    /// A call of a non-strict overload (Cerbos's global `intersect`, `hasIntersection`,
    /// ...): the function sees failed arguments and answers `no such overload` for them.
    NonStrictCall(NativeFn, Vec<Node>),
    Matches(Box<Node>, Arc<Regex>),
    Comprehension(Box<Comprehension>),
    Bind(u16, Box<Node>, Box<Node>),
    /// `opt.or(other)` / `opt.orValue(v)`: the alternative is evaluated only when needed.
    OptOr(Box<Node>, Box<Node>, bool),
}

/// Local variable slots for comprehensions and `cel.bind`.
pub(crate) struct Locals {
    slots: Vec<Value>,
    /// The error of a `cel.bind` initializer, raised where the variable is read (Cerbos's
    /// `cel.bind` is lazy: an unread failing initializer is no error).
    failed: Vec<Option<EvalError>>,
}

impl Locals {
    pub(crate) fn new(n: usize) -> Self {
        if n == 0 {
            // Most conditions bind no variable: no slots to allocate or fill.
            return Locals {
                slots: Vec::new(),
                failed: Vec::new(),
            };
        }
        Locals {
            slots: vec![Value::Null; n],
            failed: vec![None; n],
        }
    }

    fn read(&self, slot: u16) -> Result<&Value, EvalError> {
        match &self.failed[slot as usize] {
            Some(e) => Err(e.clone()),
            None => Ok(&self.slots[slot as usize]),
        }
    }
}

fn no_such_key(k: &str) -> EvalError {
    EvalError::new(format!("no such key: {k}"))
}

fn no_such_overload() -> EvalError {
    EvalError::new("no such overload")
}

/// Selects `field` from a value by reference.
fn select_ref<'v>(v: &'v Value, field: &str) -> Result<&'v Value, EvalError> {
    match v {
        Value::Map(m) => m.get_str(field).ok_or_else(|| no_such_key(field)),
        _ => Err(EvalError::new(format!(
            "type '{}' does not support field selection",
            v.type_name()
        ))),
    }
}

/// Evaluates `node`.
pub(crate) fn eval(node: &Node, act: &Activation, locals: &mut Locals) -> Result<Value, EvalError> {
    match node {
        Node::Const(v) => Ok(v.clone()),
        Node::Host(i) => Ok(act.host[*i as usize].clone()),
        Node::Local(i) => locals.read(*i).cloned(),
        Node::Path(root, fields) => path(root, fields, act, locals),
        Node::Select(operand, field) => match eval(operand, act, locals)? {
            v @ Value::Optional(_) => opt_select(v, field),
            v => select_ref(&v, field).cloned(),
        },
        Node::OptSelect(operand, field) => opt_select(eval(operand, act, locals)?, field),
        Node::Has(operand, field) => has(eval(operand, act, locals)?, field),
        Node::Index(operand, index) => {
            let v = eval(operand, act, locals)?;
            let i = eval(index, act, locals)?;
            match v {
                v @ Value::Optional(_) => opt_index(v, &i),
                v => index_value(&v, &i),
            }
        }
        Node::OptIndex(operand, index) => {
            let v = eval(operand, act, locals)?;
            let i = eval(index, act, locals)?;
            opt_index(v, &i)
        }
        Node::List(items) => list(items, act, locals),
        Node::Map(entries) => map(entries, act, locals),
        Node::Not(e) => match eval(e, act, locals)? {
            Value::Bool(b) => Ok(Value::Bool(!b)),
            _ => Err(no_such_overload()),
        },
        Node::Neg(e) => match eval(e, act, locals)? {
            Value::Int(i) => i
                .checked_neg()
                .map(Value::Int)
                .ok_or_else(|| EvalError::new("integer overflow")),
            Value::Double(d) => Ok(Value::Double(-d)),
            Value::Duration(d) => duration_value(-d),
            _ => Err(no_such_overload()),
        },
        Node::Binary(op, l, r) => {
            let lv = eval(l, act, locals)?;
            let rv = eval(r, act, locals)?;
            binary(*op, &lv, &rv)
        }
        Node::And(l, r) => logic(l, r, false, act, locals),
        Node::Or(l, r) => logic(l, r, true, act, locals),
        Node::Ternary(c, a, b) => match eval(c, act, locals)? {
            Value::Bool(true) => eval(a, act, locals),
            Value::Bool(false) => eval(b, act, locals),
            _ => Err(no_such_overload()),
        },
        Node::Call(f, args) => call(*f, args, act, locals),
        Node::Matches(target, re) => match eval(target, act, locals)? {
            Value::String(s) => Ok(Value::Bool(re.is_match(&s))),
            _ => Err(no_such_overload()),
        },
        Node::Comprehension(c) => comprehension(c, act, locals),
        Node::Bind(slot, init, body) => bind(*slot as usize, init, body, act, locals),
        Node::NonStrictCall(f, args) => non_strict_call(*f, args, act, locals),
        Node::OptOr(opt, alt, or_value) => {
            opt_or(eval(opt, act, locals)?, alt, *or_value, act, locals)
        }
    }
}

/// A path of selections from a host slot or local, by reference until a value is
/// optional (then the rest of the path is optional too).
#[inline]
fn path(
    root: &Root,
    fields: &[Arc<str>],
    act: &Activation,
    locals: &Locals,
) -> Result<Value, EvalError> {
    let mut cur: &Value = match root {
        Root::Host(i) => &act.host[*i as usize],
        Root::Local(i) => locals.read(*i)?,
    };
    for (n, f) in fields.iter().enumerate() {
        if let Value::Optional(_) = cur {
            // Selection on an optional value chains: the rest is optional too.
            let mut v = cur.clone();
            for f in &fields[n..] {
                v = opt_select(v, f)?;
            }
            return Ok(v);
        }
        cur = select_ref(cur, f)?;
    }
    Ok(cur.clone())
}

/// `has(v.field)`.
fn has(v: Value, field: &str) -> Result<Value, EvalError> {
    let v = match v {
        // `has(opt.f)`: false when `opt` is empty, else whether its value has `f`.
        Value::Optional(None) => return Ok(Value::Bool(false)),
        Value::Optional(Some(inner)) => (*inner).clone(),
        v => v,
    };
    match v {
        Value::Map(m) => Ok(Value::Bool(m.get_str(field).is_some())),
        other => Err(EvalError::new(format!(
            "invalid type for field selection: {}",
            other.type_name()
        ))),
    }
}

/// A list literal; an optional element (`?x`) is left out when empty.
fn list(items: &[(Node, bool)], act: &Activation, locals: &mut Locals) -> Result<Value, EvalError> {
    let mut out = Vec::with_capacity(items.len());
    for (item, optional) in items {
        let v = eval(item, act, locals)?;
        if *optional {
            match v {
                Value::Optional(Some(x)) => out.push((*x).clone()),
                Value::Optional(None) => {}
                _ => return Err(no_such_overload()),
            }
        } else {
            out.push(v);
        }
    }
    Ok(Value::list(out))
}

/// A map literal; an optional entry (`?k: v`) is left out when its value is empty.
fn map(
    entries: &[(Node, Node, bool)],
    act: &Activation,
    locals: &mut Locals,
) -> Result<Value, EvalError> {
    let mut m = MapValue::with_capacity(entries.len());
    for (k, v, optional) in entries {
        let kv = eval(k, act, locals)?;
        let key = map_key(&kv)?;
        let vv = eval(v, act, locals)?;
        let vv = if *optional {
            match vv {
                Value::Optional(Some(x)) => (*x).clone(),
                Value::Optional(None) => continue,
                _ => return Err(no_such_overload()),
            }
        } else {
            vv
        };
        // A repeated key keeps the last value, as in Cerbos (cel-go without its
        // checker's duplicate-key error).
        m.insert(key, vv);
    }
    Ok(Value::map(m))
}

/// `l && r` (`decisive` false) and `l || r` (`decisive` true), commutative over errors
/// as in cel-go: an operand equal to `decisive` wins; otherwise the left error first.
#[inline]
fn logic(
    l: &Node,
    r: &Node,
    decisive: bool,
    act: &Activation,
    locals: &mut Locals,
) -> Result<Value, EvalError> {
    let lv = eval(l, act, locals);
    if matches!(lv, Ok(Value::Bool(b)) if b == decisive) {
        return Ok(Value::Bool(decisive));
    }
    let rv = eval(r, act, locals);
    match (lv, rv) {
        (_, Ok(Value::Bool(b))) if b == decisive => Ok(Value::Bool(decisive)),
        (Ok(Value::Bool(_)), Ok(Value::Bool(_))) => Ok(Value::Bool(!decisive)),
        (Err(e), _) => Err(e),
        (_, Err(e)) => Err(e),
        _ => Err(no_such_overload()),
    }
}

/// A strict call: the arguments evaluated in order (the first error wins).
#[inline]
fn call(
    f: NativeFn,
    args: &[Node],
    act: &Activation,
    locals: &mut Locals,
) -> Result<Value, EvalError> {
    // Most calls have at most three arguments: avoid a heap allocation for them.
    let mut buf: [Value; 4] = Default::default();
    if args.len() <= buf.len() {
        for (slot, a) in buf.iter_mut().zip(args.iter()) {
            *slot = eval(a, act, locals)?;
        }
        f(&buf[..args.len()], act)
    } else {
        let vals = args
            .iter()
            .map(|a| eval(a, act, locals))
            .collect::<Result<Vec<_>, _>>()?;
        f(&vals, act)
    }
}

/// `cel.bind(x, init, body)`: `body` with local slot `i` bound to `init` (or to its
/// error, raised where `x` is read).
fn bind(
    i: usize,
    init: &Node,
    body: &Node,
    act: &Activation,
    locals: &mut Locals,
) -> Result<Value, EvalError> {
    let (v, failed) = match eval(init, act, locals) {
        Ok(v) => (v, None),
        Err(e) => (Value::Null, Some(e)),
    };
    let saved = std::mem::replace(&mut locals.slots[i], v);
    let saved_failed = std::mem::replace(&mut locals.failed[i], failed);
    let out = eval(body, act, locals);
    locals.slots[i] = saved;
    locals.failed[i] = saved_failed;
    out
}

/// A call whose failing argument makes it "no such overload".
fn non_strict_call(
    f: NativeFn,
    args: &[Node],
    act: &Activation,
    locals: &mut Locals,
) -> Result<Value, EvalError> {
    let mut vals = Vec::with_capacity(args.len());
    for a in args {
        match eval(a, act, locals) {
            Ok(v) => vals.push(v),
            Err(_) => return Err(EvalError::new("no such overload")),
        }
    }
    f(&vals, act)
}

/// `opt.or(alt)` (`or_value == false`) and `opt.orValue(alt)` over the value of `opt`.
fn opt_or(
    opt: Value,
    alt: &Node,
    or_value: bool,
    act: &Activation,
    locals: &mut Locals,
) -> Result<Value, EvalError> {
    match opt {
        Value::Optional(Some(v)) => {
            if or_value {
                Ok((*v).clone())
            } else {
                Ok(Value::Optional(Some(v)))
            }
        }
        Value::Optional(None) => {
            let a = eval(alt, act, locals)?;
            if !or_value && !matches!(a, Value::Optional(_)) {
                return Err(no_such_overload());
            }
            Ok(a)
        }
        _ => Err(no_such_overload()),
    }
}

/// `v.?field`, and `v.field` when `v` is optional: an empty optional stays empty, a missing
/// key gives an empty optional.
fn opt_select(v: Value, field: &str) -> Result<Value, EvalError> {
    let target = match v {
        Value::Optional(None) => return Ok(Value::Optional(None)),
        Value::Optional(Some(inner)) => inner,
        other => Arc::new(other),
    };
    match &*target {
        Value::Map(m) => Ok(Value::Optional(m.get_str(field).cloned().map(Arc::new))),
        _ => Err(no_such_overload()),
    }
}

/// `v[?index]`, and `v[index]` when `v` is optional: an empty optional stays empty, a
/// missing key or index gives an empty optional.
fn opt_index(v: Value, index: &Value) -> Result<Value, EvalError> {
    let target = match v {
        Value::Optional(None) => return Ok(Value::Optional(None)),
        Value::Optional(Some(inner)) => (*inner).clone(),
        other => other,
    };
    match index_value(&target, index) {
        Ok(v) => Ok(Value::Optional(Some(Arc::new(v)))),
        Err(_) if matches!(target, Value::Map(_) | Value::List(_)) => Ok(Value::Optional(None)),
        Err(e) => Err(e),
    }
}

fn map_key(v: &Value) -> Result<Key, EvalError> {
    Key::from_value(v)
        .ok_or_else(|| EvalError::new(format!("unsupported key type: {}", v.type_name())))
}

/// `target[index]`.
pub(crate) fn index_value(target: &Value, index: &Value) -> Result<Value, EvalError> {
    match target {
        Value::List(l) => {
            let i = match index {
                Value::Int(i) => *i,
                Value::Uint(u) => i64::try_from(*u).unwrap_or(i64::MAX),
                Value::Double(d) if d.fract() == 0.0 && d.is_finite() => *d as i64,
                _ => {
                    return Err(EvalError::new(format!(
                        "unsupported index type '{}' in list",
                        index.type_name()
                    )));
                }
            };
            usize::try_from(i)
                .ok()
                .and_then(|i| l.get(i))
                .cloned()
                .ok_or_else(|| EvalError::new(format!("index out of bounds: {i}")))
        }
        Value::Opaque(o) => match (&**o, index) {
            (Opaque::Hierarchy(parts), Value::Int(i)) => usize::try_from(*i)
                .ok()
                .and_then(|i| parts.get(i))
                .map(|p| Value::String(p.clone()))
                .ok_or_else(|| EvalError::new(format!("index out of bounds: {i}"))),
            _ => Err(no_such_overload()),
        },
        Value::Map(m) => m.get(index).cloned().ok_or_else(|| match index {
            Value::String(s) => no_such_key(s),
            Value::Int(i) => no_such_key(&i.to_string()),
            Value::Uint(u) => no_such_key(&u.to_string()),
            Value::Double(d) => no_such_key(&d.to_string()),
            Value::Bool(b) => no_such_key(&b.to_string()),
            other => EvalError::new(format!("unsupported key type: {}", other.type_name())),
        }),
        _ => Err(no_such_overload()),
    }
}

fn overflow() -> EvalError {
    EvalError::new("integer overflow")
}

fn uint_overflow() -> EvalError {
    EvalError::new("unsigned integer overflow")
}

/// Seconds from the Unix epoch to `0001-01-01T00:00:00Z`, the earliest CEL timestamp.
const MIN_UNIX_TIME: i64 = -62_135_596_800;
/// Seconds from the Unix epoch to `9999-12-31T23:59:59Z`, the latest whole second of a CEL
/// timestamp.
const MAX_UNIX_TIME: i64 = 253_402_300_799;

/// A duration value, or `integer overflow` beyond cel-go's range (int64 nanoseconds, about
/// ±292 years).
pub(crate) fn duration_value(d: chrono::TimeDelta) -> Result<Value, EvalError> {
    d.num_nanoseconds()
        .map(|_| Value::Duration(d))
        .ok_or_else(overflow)
}

/// A timestamp value, or `timestamp overflow` outside years 1 to 9999 (cel-go's range).
pub(crate) fn timestamp_value(t: Timestamp) -> Result<Value, EvalError> {
    if (MIN_UNIX_TIME..=MAX_UNIX_TIME).contains(&t.timestamp()) {
        Ok(Value::Timestamp(t))
    } else {
        Err(EvalError::new("timestamp overflow"))
    }
}

/// Applies a binary operator to two evaluated operands.
pub(crate) fn binary(op: BinaryOp, l: &Value, r: &Value) -> Result<Value, EvalError> {
    use Value::*;
    match op {
        BinaryOp::Eq => Ok(Bool(l.cel_eq(r))),
        BinaryOp::Ne => Ok(Bool(!l.cel_eq(r))),
        BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => {
            let ord = l.cel_cmp(r).ok_or_else(no_such_overload)?;
            Ok(Bool(match op {
                BinaryOp::Lt => ord == Ordering::Less,
                BinaryOp::Le => ord != Ordering::Greater,
                BinaryOp::Gt => ord == Ordering::Greater,
                _ => ord != Ordering::Less,
            }))
        }
        BinaryOp::In => match r {
            List(items) => Ok(Bool(items.iter().any(|x| x.cel_eq(l)))),
            Map(m) => Ok(Bool(m.contains(l))),
            _ => Err(no_such_overload()),
        },
        BinaryOp::Add => match (l, r) {
            (Int(a), Int(b)) => a.checked_add(*b).map(Int).ok_or_else(overflow),
            (Uint(a), Uint(b)) => a.checked_add(*b).map(Uint).ok_or_else(uint_overflow),
            (Double(a), Double(b)) => Ok(Double(a + b)),
            (String(a), String(b)) => {
                let mut s = std::string::String::with_capacity(a.len() + b.len());
                s.push_str(a);
                s.push_str(b);
                Ok(Value::from(s))
            }
            (Bytes(a), Bytes(b)) => Ok(Bytes(a.iter().chain(b.iter()).copied().collect())),
            (List(a), List(b)) => Ok(Value::list(a.iter().chain(b.iter()).cloned().collect())),
            (Timestamp(t), Duration(d)) | (Duration(d), Timestamp(t)) => t
                .checked_add_signed(*d)
                .ok_or_else(|| EvalError::new("timestamp overflow"))
                .and_then(timestamp_value),
            (Duration(a), Duration(b)) => a
                .checked_add(b)
                .ok_or_else(overflow)
                .and_then(duration_value),
            _ => Err(no_such_overload()),
        },
        BinaryOp::Sub => match (l, r) {
            (Int(a), Int(b)) => a.checked_sub(*b).map(Int).ok_or_else(overflow),
            (Uint(a), Uint(b)) => a.checked_sub(*b).map(Uint).ok_or_else(uint_overflow),
            (Double(a), Double(b)) => Ok(Double(a - b)),
            (Timestamp(a), Timestamp(b)) => duration_value(a.signed_duration_since(*b)),
            (Timestamp(t), Duration(d)) => t
                .checked_sub_signed(*d)
                .ok_or_else(|| EvalError::new("timestamp overflow"))
                .and_then(timestamp_value),
            (Duration(a), Duration(b)) => a
                .checked_sub(b)
                .ok_or_else(overflow)
                .and_then(duration_value),
            _ => Err(no_such_overload()),
        },
        BinaryOp::Mul => match (l, r) {
            (Int(a), Int(b)) => a.checked_mul(*b).map(Int).ok_or_else(overflow),
            (Uint(a), Uint(b)) => a.checked_mul(*b).map(Uint).ok_or_else(uint_overflow),
            (Double(a), Double(b)) => Ok(Double(a * b)),
            _ => Err(no_such_overload()),
        },
        BinaryOp::Div => match (l, r) {
            (Int(_), Int(0)) | (Uint(_), Uint(0)) => Err(EvalError::new("division by zero")),
            (Int(a), Int(b)) => a.checked_div(*b).map(Int).ok_or_else(overflow),
            (Uint(a), Uint(b)) => Ok(Uint(a / b)),
            (Double(a), Double(b)) => Ok(Double(a / b)),
            _ => Err(no_such_overload()),
        },
        BinaryOp::Rem => match (l, r) {
            (Int(_), Int(0)) | (Uint(_), Uint(0)) => Err(EvalError::new("modulus by zero")),
            (Int(a), Int(b)) => a.checked_rem(*b).map(Int).ok_or_else(overflow),
            (Uint(a), Uint(b)) => Ok(Uint(a % b)),
            _ => Err(no_such_overload()),
        },
    }
}

/// Items a comprehension iterates: (first variable, second variable).
fn iteration_items(range: &Value, two_vars: bool) -> Result<Vec<(Value, Value)>, EvalError> {
    match range {
        Value::List(l) => Ok(l
            .iter()
            .enumerate()
            .map(|(i, v)| {
                if two_vars {
                    (Value::Int(i as i64), v.clone())
                } else {
                    (v.clone(), Value::Null)
                }
            })
            .collect()),
        Value::Map(m) => Ok(m.iter().map(|(k, v)| (k.to_value(), v.clone())).collect()),
        _ => Err(no_such_overload()),
    }
}

fn comprehension(
    c: &Comprehension,
    act: &Activation,
    locals: &mut Locals,
) -> Result<Value, EvalError> {
    let range = eval(&c.range, act, locals)?;
    let items = iteration_items(&range, c.var2.is_some())?;
    let v1 = c.var1 as usize;
    let saved1 = locals.slots[v1].clone();
    let saved2 = c.var2.map(|s| locals.slots[s as usize].clone());
    let out = run_comprehension(c, &range, items, act, locals);
    locals.slots[v1] = saved1;
    if let (Some(s), Some(v)) = (c.var2, saved2) {
        locals.slots[s as usize] = v;
    }
    out
}

/// A comprehension over its range's items, by kind (the variables' slots are restored
/// by the caller).
fn run_comprehension(
    c: &Comprehension,
    range: &Value,
    items: Vec<(Value, Value)>,
    act: &Activation,
    locals: &mut Locals,
) -> Result<Value, EvalError> {
    match c.kind {
        CompKind::All | CompKind::Exists => quantifier(c, items, act, locals),
        CompKind::ExistsOne => exists_one(c, items, act, locals),
        CompKind::Map | CompKind::Filter | CompKind::TransformList => {
            to_list(c, items, act, locals)
        }
        CompKind::TransformMap | CompKind::TransformMapEntry => to_map(c, items, act, locals),
        CompKind::SortBy => sort_by(c, range, items, act, locals),
    }
}

/// Binds one item to the comprehension's variables.
fn bind_vars(c: &Comprehension, locals: &mut Locals, a: Value, b: Value) {
    locals.slots[c.var1 as usize] = a;
    if let Some(s) = c.var2 {
        locals.slots[s as usize] = b;
    }
}

/// Whether the comprehension's filter (`map(x, filter, body)`, `transform*`) keeps the
/// bound item; true without a filter.
fn kept(c: &Comprehension, act: &Activation, locals: &mut Locals) -> Result<bool, EvalError> {
    match &c.filter {
        None => Ok(true),
        Some(f) => match eval(f, act, locals)? {
            Value::Bool(b) => Ok(b),
            _ => Err(no_such_overload()),
        },
    }
}

/// `all` and `exists`: the decisive value ends the loop; otherwise the first error (or a
/// non-boolean body) is the answer.
fn quantifier(
    c: &Comprehension,
    items: Vec<(Value, Value)>,
    act: &Activation,
    locals: &mut Locals,
) -> Result<Value, EvalError> {
    let decisive = c.kind == CompKind::Exists;
    let mut err = None;
    for (a, b) in items {
        bind_vars(c, locals, a, b);
        match eval(&c.body, act, locals) {
            Ok(Value::Bool(x)) if x == decisive => return Ok(Value::Bool(decisive)),
            Ok(Value::Bool(_)) => {}
            Ok(_) => {
                err.get_or_insert_with(no_such_overload);
            }
            Err(e) => {
                err.get_or_insert(e);
            }
        }
    }
    match err {
        Some(e) => Err(e),
        None => Ok(Value::Bool(!decisive)),
    }
}

/// `exists_one`: exactly one item satisfies the body.
fn exists_one(
    c: &Comprehension,
    items: Vec<(Value, Value)>,
    act: &Activation,
    locals: &mut Locals,
) -> Result<Value, EvalError> {
    let mut n = 0usize;
    for (a, b) in items {
        bind_vars(c, locals, a, b);
        match eval(&c.body, act, locals)? {
            Value::Bool(true) => n += 1,
            Value::Bool(false) => {}
            _ => return Err(no_such_overload()),
        }
    }
    Ok(Value::Bool(n == 1))
}

/// `map`, `filter` and `transformList`: a list of the body's values (of the items the
/// body keeps, for `filter`).
fn to_list(
    c: &Comprehension,
    items: Vec<(Value, Value)>,
    act: &Activation,
    locals: &mut Locals,
) -> Result<Value, EvalError> {
    let mut out = Vec::new();
    for (a, b) in items {
        let elem = if c.kind == CompKind::Filter {
            a.clone()
        } else {
            Value::Null
        };
        bind_vars(c, locals, a, b);
        if !kept(c, act, locals)? {
            continue;
        }
        if c.kind == CompKind::Filter {
            match eval(&c.body, act, locals)? {
                Value::Bool(true) => out.push(elem),
                Value::Bool(false) => {}
                _ => return Err(no_such_overload()),
            }
        } else {
            out.push(eval(&c.body, act, locals)?);
        }
    }
    Ok(Value::list(out))
}

/// `transformMap` (the key to the body's value) and `transformMapEntry` (the body's
/// one-entry maps merged; a repeated key fails).
fn to_map(
    c: &Comprehension,
    items: Vec<(Value, Value)>,
    act: &Activation,
    locals: &mut Locals,
) -> Result<Value, EvalError> {
    let mut out = MapValue::new();
    for (a, b) in items {
        let key = a.clone();
        bind_vars(c, locals, a, b);
        if !kept(c, act, locals)? {
            continue;
        }
        let v = eval(&c.body, act, locals)?;
        if c.kind == CompKind::TransformMap {
            out.insert(map_key(&key)?, v);
        } else {
            let Value::Map(entry) = v else {
                return Err(no_such_overload());
            };
            for (k, v) in entry.iter() {
                if out.insert(k.clone(), v.clone()).is_some() {
                    return Err(EvalError::new(format!(
                        "insert failed: key {k} already exists"
                    )));
                }
            }
        }
    }
    Ok(Value::map(out))
}

/// `sortBy`: the list's elements ordered by the body's keys.
fn sort_by(
    c: &Comprehension,
    range: &Value,
    items: Vec<(Value, Value)>,
    act: &Activation,
    locals: &mut Locals,
) -> Result<Value, EvalError> {
    let Value::List(list) = range else {
        return Err(no_such_overload());
    };
    let mut keyed = Vec::with_capacity(list.len());
    for (a, _) in items {
        let elem = a.clone();
        bind_vars(c, locals, a, Value::Null);
        keyed.push((eval(&c.body, act, locals)?, elem));
    }
    sort_values_by_key(&mut keyed)?;
    Ok(Value::list(keyed.into_iter().map(|(_, v)| v).collect()))
}

/// Sorts (key, value) pairs by key; every key must be of one orderable type.
pub(crate) fn sort_values_by_key(pairs: &mut [(Value, Value)]) -> Result<(), EvalError> {
    if let Some((first, _)) = pairs.first() {
        let t = first.cel_type();
        if pairs.iter().any(|(k, _)| k.cel_type() != t) || first.cel_cmp(first).is_none() {
            return Err(EvalError::new("list elements must have the same type"));
        }
    }
    pairs.sort_by(|a, b| a.0.cel_cmp(&b.0).unwrap_or(Ordering::Equal));
    Ok(())
}
