//! Compile-time checks of expressions, as Cerbos 0.55's CEL type checker makes them against
//! the declared message types of `request`, `R`, `P` and `runtime` and the overloads of
//! every function Cerbos declares.
//!
//! Types flow through literals, lists, maps, indexing, calls (by their overloads, with type
//! parameters), macros and comprehension variables; `attr` maps, variables, constants,
//! globals and anything else not declared stay `dyn`, as in Cerbos. The problems found:
//! fields a message does not declare (`undefined field 'attrs'`), field selection on a
//! type without fields, calls no overload accepts (`found no matching overload for 'size'
//! applied to '(int)'`, arity included), unknown functions and identifiers, non-bool
//! operands of `&&`/`||` and predicates, and the macros' own argument errors. When there are
//! none, literal arguments are validated as Cerbos's validators do (`timestamp`,
//! `duration`, `matches`, `ip`, `cidr`, `format`).

use std::collections::HashMap;
use std::sync::OnceLock;

use super::ast::{BinaryOp, Expr, ExprKind, UnaryOp};
use super::compile::type_ident;
use super::eval::Activation;
use super::functions::{CallStyle, format_check, registry};
use super::value::{CelType, Value};

/// The messages Cerbos declares to expressions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Message {
    Request,
    Principal,
    Resource,
    AuxData,
    Jwt,
    Runtime,
}

impl Message {
    fn name(self) -> &'static str {
        match self {
            Message::Request => "cerbos.engine.v1.Request",
            Message::Principal => "cerbos.engine.v1.Request.Principal",
            Message::Resource => "cerbos.engine.v1.Request.Resource",
            Message::AuxData => "cerbos.engine.v1.AuxData",
            Message::Jwt => "cerbos.engine.v1.AuxData.JWT",
            Message::Runtime => "cerbos.engine.v1.Runtime",
        }
    }
}

/// A type as far as the checker follows it.
#[derive(Clone, Debug, PartialEq)]
enum Ty {
    /// Not known until evaluation.
    Dyn,
    /// A type error was already reported for this expression.
    Error,
    /// A type without parameters, by its CEL name (`int`, `timestamp`, `net.IP`, ...).
    Prim(&'static str),
    List(Box<Ty>),
    Map(Box<Ty>, Box<Ty>),
    /// `type(T)`.
    Type(Box<Ty>),
    /// `optional_type(T)`.
    Opt(Box<Ty>),
    Msg(Message),
    /// A type parameter of an overload (only in signatures).
    Param(u8),
    /// The element type of an empty list or map literal, until an overload fixes it (as
    /// cel-go's free type variables).
    Var(u32),
}

impl Ty {
    /// The name in overload messages (free type variables as `dyn`).
    fn name(&self) -> String {
        self.name_with(false)
    }

    /// The name in `expected type` messages, where cel-go leaves a free type variable as
    /// it is (`_var0`).
    fn raw_name(&self) -> String {
        self.name_with(true)
    }

    fn name_with(&self, raw: bool) -> String {
        match self {
            Ty::Var(v) if raw => format!("_var{v}"),
            Ty::Dyn | Ty::Param(_) | Ty::Var(_) => "dyn".into(),
            Ty::Error => "*error*".into(),
            Ty::Prim("null_type") => "null".into(),
            Ty::Prim(p) => (*p).into(),
            Ty::List(e) => format!("list({})", e.name_with(raw)),
            Ty::Map(k, v) => format!("map({}, {})", k.name_with(raw), v.name_with(raw)),
            Ty::Type(t) => format!("type({})", t.name_with(raw)),
            Ty::Opt(t) => format!("optional_type({})", t.name_with(raw)),
            Ty::Msg(m) => m.name().into(),
        }
    }

    fn is_dyn_or_error(&self) -> bool {
        matches!(self, Ty::Dyn | Ty::Error | Ty::Var(_))
    }

    fn list(t: Ty) -> Ty {
        Ty::List(Box::new(t))
    }
}

const STRING: Ty = Ty::Prim("string");
const INT: Ty = Ty::Prim("int");
const BOOL: Ty = Ty::Prim("bool");

fn attr_map() -> Ty {
    Ty::Map(Box::new(STRING), Box::new(Ty::Dyn))
}

/// The type of `message.field`, or `None` when the message has no such field (proto and
/// JSON names both select, as in Cerbos).
fn field(message: Message, field: &str) -> Option<Ty> {
    Some(match (message, field) {
        (Message::Request, "principal") => Ty::Msg(Message::Principal),
        (Message::Request, "resource") => Ty::Msg(Message::Resource),
        (Message::Request, "auxData" | "aux_data") => Ty::Msg(Message::AuxData),
        (Message::Principal, "id" | "scope" | "policyVersion" | "policy_version") => STRING,
        (Message::Principal, "roles") => Ty::list(STRING),
        (Message::Principal | Message::Resource, "attr") => attr_map(),
        (Message::Resource, "id" | "kind" | "scope" | "policyVersion" | "policy_version") => STRING,
        (Message::AuxData, "jwt") => attr_map(),
        (Message::AuxData, "jwts") => Ty::Map(Box::new(STRING), Box::new(Ty::Msg(Message::Jwt))),
        (Message::Jwt, "claims") => attr_map(),
        (Message::Runtime, "effectiveDerivedRoles" | "effective_derived_roles") => Ty::list(STRING),
        _ => return None,
    })
}

// === overloads ===

/// One overload: receiver-style or global, parameter types, result type.
struct Overload {
    member: bool,
    params: Vec<Ty>,
    result: Ty,
}

/// The signatures of every function Cerbos 0.55 declares, one function per line:
/// `name: sig; sig; ...` where a signature is `(params) -> result` for a global call and
/// `receiver.(params) -> result` for a receiver-style call. `A`, `B`, `T` are type
/// parameters; `ts`, `dur`, `ip`, `cidr`, `hier`, `sid`, `std`, `smt` name the timestamp,
/// duration, network, hierarchy and SPIFFE types.
const SIGNATURES: &str = "
_==_: (A, A) -> bool
_!=_: (A, A) -> bool
_<_: (bool, bool) -> bool; (int, int) -> bool; (int, double) -> bool; (int, uint) -> bool; (uint, uint) -> bool; (uint, double) -> bool; (uint, int) -> bool; (double, double) -> bool; (double, int) -> bool; (double, uint) -> bool; (string, string) -> bool; (bytes, bytes) -> bool; (ts, ts) -> bool; (dur, dur) -> bool
_+_: (bytes, bytes) -> bytes; (double, double) -> double; (dur, dur) -> dur; (dur, ts) -> ts; (ts, dur) -> ts; (int, int) -> int; (list(A), list(A)) -> list(A); (string, string) -> string; (uint, uint) -> uint
_-_: (double, double) -> double; (dur, dur) -> dur; (int, int) -> int; (ts, dur) -> ts; (ts, ts) -> dur; (uint, uint) -> uint
_*_: (double, double) -> double; (int, int) -> int; (uint, uint) -> uint
_/_: (double, double) -> double; (int, int) -> int; (uint, uint) -> uint
_%_: (int, int) -> int; (uint, uint) -> uint
-_: (double) -> double; (int) -> int
!_: (bool) -> bool
_[_]: (list(A), int) -> A; (map(A, B), A) -> B; (hier, int) -> string
@in: (A, list(A)) -> bool; (A, map(A, B)) -> bool
_?_:_: (bool, A, A) -> A
size: (bytes) -> int; (list(A)) -> int; (map(A, B)) -> int; (string) -> int; bytes.() -> int; list(A).() -> int; map(A, B).() -> int; string.() -> int; hier.() -> int
type: (A) -> type(A)
bool: (bool) -> bool; (string) -> bool
bytes: (bytes) -> bytes; (string) -> bytes
double: (double) -> double; (int) -> double; (string) -> double; (uint) -> double
duration: (dur) -> dur; (string) -> dur
dyn: (A) -> dyn
int: (int) -> int; (double) -> int; (dur) -> int; (string) -> int; (ts) -> int; (uint) -> int
string: (string) -> string; (bool) -> string; (bytes) -> string; (double) -> string; (dur) -> string; (int) -> string; (ts) -> string; (uint) -> string; (cidr) -> string; (ip) -> string
timestamp: (ts) -> ts; (int) -> ts; (string) -> ts
uint: (uint) -> uint; (double) -> uint; (int) -> uint; (string) -> uint
contains: string.(string) -> bool
endsWith: string.(string) -> bool
startsWith: string.(string) -> bool
matches: (string, string) -> bool; string.(string) -> bool
getFullYear: ts.() -> int; ts.(string) -> int
getMonth: ts.() -> int; ts.(string) -> int
getDayOfYear: ts.() -> int; ts.(string) -> int
getDayOfMonth: ts.() -> int; ts.(string) -> int
getDate: ts.() -> int; ts.(string) -> int
getDayOfWeek: ts.() -> int; ts.(string) -> int
getHours: ts.() -> int; ts.(string) -> int; dur.() -> int
getMinutes: ts.() -> int; ts.(string) -> int; dur.() -> int
getSeconds: ts.() -> int; ts.(string) -> int; dur.() -> int
getMilliseconds: ts.() -> int; ts.(string) -> int; dur.() -> int
charAt: string.(int) -> string
indexOf: string.(string) -> int; string.(string, int) -> int
lastIndexOf: string.(string) -> int; string.(string, int) -> int
lowerAscii: string.() -> string
upperAscii: string.() -> string
replace: string.(string, string) -> string; string.(string, string, int) -> string
split: string.(string) -> list(string); string.(string, int) -> list(string)
substring: string.(int) -> string; string.(int, int) -> string
trim: string.() -> string
format: string.(list(dyn)) -> string
strings.quote: (string) -> string
join: list(string).() -> string; list(string).(string) -> string
reverse: string.() -> string; list(A).() -> list(A)
math.@min: (double) -> double; (int) -> int; (uint) -> uint; (double, double) -> double; (int, int) -> int; (uint, uint) -> uint; (int, uint) -> dyn; (int, double) -> dyn; (double, int) -> dyn; (double, uint) -> dyn; (uint, int) -> dyn; (uint, double) -> dyn; (list(double)) -> double; (list(int)) -> int; (list(uint)) -> uint
math.@max: (double) -> double; (int) -> int; (uint) -> uint; (double, double) -> double; (int, int) -> int; (uint, uint) -> uint; (int, uint) -> dyn; (int, double) -> dyn; (double, int) -> dyn; (double, uint) -> dyn; (uint, int) -> dyn; (uint, double) -> dyn; (list(double)) -> double; (list(int)) -> int; (list(uint)) -> uint
math.ceil: (double) -> double
math.floor: (double) -> double
math.round: (double) -> double
math.trunc: (double) -> double
math.isInf: (double) -> bool
math.isNaN: (double) -> bool
math.isFinite: (double) -> bool
math.abs: (double) -> double; (int) -> int; (uint) -> uint
math.sign: (double) -> double; (int) -> int; (uint) -> uint
math.bitAnd: (int, int) -> int; (uint, uint) -> uint
math.bitOr: (int, int) -> int; (uint, uint) -> uint
math.bitXor: (int, int) -> int; (uint, uint) -> uint
math.bitNot: (int) -> int; (uint) -> uint
math.bitShiftLeft: (int, int) -> int; (uint, int) -> uint
math.bitShiftRight: (int, int) -> int; (uint, int) -> uint
math.sqrt: (double) -> double; (int) -> double; (uint) -> double
slice: list(A).(int, int) -> list(A)
flatten: list(list(A)).() -> list(A); list(dyn).(int) -> list(dyn)
sort: list(int).() -> list(int); list(uint).() -> list(uint); list(double).() -> list(double); list(bool).() -> list(bool); list(dur).() -> list(dur); list(ts).() -> list(ts); list(string).() -> list(string); list(bytes).() -> list(bytes)
@sortByAssociatedKeys: list(A).(list(int)) -> list(A); list(A).(list(uint)) -> list(A); list(A).(list(double)) -> list(A); list(A).(list(bool)) -> list(A); list(A).(list(dur)) -> list(A); list(A).(list(ts)) -> list(A); list(A).(list(string)) -> list(A); list(A).(list(bytes)) -> list(A)
lists.range: (int) -> list(int)
distinct: list(A).() -> list(A)
sets.contains: (list(A), list(A)) -> bool
sets.equivalent: (list(A), list(A)) -> bool
sets.intersects: (list(A), list(A)) -> bool
base64.decode: (string) -> bytes
base64.encode: (bytes) -> string
json.encode: (A) -> string
regex.extract: (string, string) -> optional(string)
regex.extractAll: (string, string) -> list(string)
regex.replace: (string, string, string) -> string; (string, string, string, int) -> string
cidr: (string) -> cidr
containsCIDR: cidr.(cidr) -> bool; cidr.(string) -> bool
containsIP: cidr.(ip) -> bool; cidr.(string) -> bool
family: ip.() -> int
ip: (string) -> ip; cidr.() -> ip
ip.isCanonical: (string) -> bool
isCIDR: (string) -> bool
isIP: (string) -> bool
isGlobalUnicast: ip.() -> bool
isLinkLocalMulticast: ip.() -> bool
isLinkLocalUnicast: ip.() -> bool
isLoopback: ip.() -> bool
isUnspecified: ip.() -> bool
isMask: cidr.() -> bool
masked: cidr.() -> cidr
prefixLength: cidr.() -> int
except: (list(A), list(A)) -> list(A); list(A).(list(A)) -> list(A)
intersect: (list(A), list(A)) -> list(A); list(A).(list(A)) -> list(A)
hasIntersection: (list(A), list(A)) -> bool; list(A).(list(A)) -> bool
has_intersection: (list(A), list(A)) -> bool; list(A).(list(A)) -> bool
isSubset: (list(A), list(A)) -> bool; list(A).(list(A)) -> bool
is_subset: (list(A), list(A)) -> bool; list(A).(list(A)) -> bool
inIPAddrRange: string.(string) -> bool
now: () -> ts
timeSince: (ts) -> dur; ts.() -> dur
id: (dyn) -> dyn; std.() -> string
basePath: (string) -> string
dirPath: (string) -> string
extPath: (string) -> string
joinPath: (list(string)) -> string
pathHasPrefix: (string, string) -> bool; string.(string) -> bool
pathMatch: (string, string) -> bool; string.(string) -> bool
pathMatchAnyOf: (string, list(string)) -> bool; string.(list(string)) -> bool
relPath: (string, string) -> string
volumeName: (string) -> string
hierarchy: (string) -> hier; (string, string) -> hier; (list(string)) -> hier
ancestorOf: hier.(hier) -> bool
commonAncestors: hier.(hier) -> hier
descendentOf: hier.(hier) -> bool
immediateChildOf: hier.(hier) -> bool
immediateParentOf: hier.(hier) -> bool
overlaps: hier.(hier) -> bool
siblingOf: hier.(hier) -> bool
spiffeID: (string) -> sid
spiffeTrustDomain: (string) -> std
spiffeMatchAny: () -> smt
spiffeMatchExact: (sid) -> smt; (string) -> smt
spiffeMatchOneOf: (list(sid)) -> smt; (list(string)) -> smt
spiffeMatchTrustDomain: (std) -> smt; (string) -> smt
isMemberOf: sid.(std) -> bool
path: sid.() -> string
trustDomain: sid.() -> std
name: std.() -> string
matchesID: smt.(sid) -> bool; smt.(string) -> bool
optional.of: (A) -> optional(A)
optional.ofNonZeroValue: (A) -> optional(A)
optional.none: () -> optional(dyn)
hasValue: optional(A).() -> bool
value: optional(A).() -> A
or: optional(A).(optional(A)) -> optional(A)
orValue: optional(A).(A) -> A
";

/// A tiny reader for the signature notation.
struct SigReader<'a> {
    s: &'a str,
}

impl<'a> SigReader<'a> {
    fn eat(&mut self, p: &str) -> bool {
        let t = self.s.trim_start();
        match t.strip_prefix(p) {
            Some(rest) => {
                self.s = rest;
                true
            }
            None => false,
        }
    }

    fn word(&mut self) -> &'a str {
        let t = self.s.trim_start();
        let end = t
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(t.len());
        let (w, rest) = t.split_at(end);
        self.s = rest;
        w
    }

    fn ty(&mut self) -> Ty {
        let w = self.word();
        let nominal: &'static str = match w {
            "A" => return Ty::Param(0),
            "B" => return Ty::Param(1),
            "dyn" => return Ty::Dyn,
            "list" | "optional" | "map" | "type" => {
                self.eat("(");
                let first = self.ty();
                let out = match w {
                    "list" => Ty::List(Box::new(first)),
                    "optional" => Ty::Opt(Box::new(first)),
                    "type" => Ty::Type(Box::new(first)),
                    _ => {
                        self.eat(",");
                        Ty::Map(Box::new(first), Box::new(self.ty()))
                    }
                };
                self.eat(")");
                return out;
            }
            "ts" => "timestamp",
            "dur" => "duration",
            "ip" => "net.IP",
            "cidr" => "net.CIDR",
            "hier" => "cerbos.lib.hierarchy",
            "sid" => "cerbos.lib.spiffeID",
            "std" => "cerbos.lib.spiffeTrustDomain",
            "smt" => "cerbos.lib.spiffeMatcher",
            "int" => "int",
            "uint" => "uint",
            "double" => "double",
            "bool" => "bool",
            "string" => "string",
            "bytes" => "bytes",
            other => unreachable!("unknown type {other:?} in SIGNATURES"),
        };
        Ty::Prim(nominal)
    }

    fn overload(&mut self) -> Overload {
        let mut params = Vec::new();
        let member = !self.s.trim_start().starts_with('(');
        if member {
            params.push(self.ty());
            self.eat(".");
        }
        self.eat("(");
        while !self.eat(")") {
            params.push(self.ty());
            self.eat(",");
        }
        self.eat("->");
        let result = self.ty();
        Overload {
            member,
            params,
            result,
        }
    }
}

/// The declared functions by name.
fn functions() -> &'static HashMap<&'static str, Vec<Overload>> {
    static TABLE: OnceLock<HashMap<&'static str, Vec<Overload>>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table: HashMap<&'static str, Vec<Overload>> = HashMap::new();
        for line in SIGNATURES.lines().filter(|l| !l.trim().is_empty()) {
            let (name, sigs) = line.split_once(": ").expect("name: signatures");
            let list = table.entry(name.trim()).or_default();
            for sig in sigs.split(';') {
                list.push(SigReader { s: sig }.overload());
            }
        }
        // The relational operators share `<`'s signatures.
        let lt: Vec<(Vec<Ty>, Ty)> = table["_<_"]
            .iter()
            .map(|o| (o.params.clone(), o.result.clone()))
            .collect();
        for op in ["_<=_", "_>_", "_>=_"] {
            table.insert(
                op,
                lt.iter()
                    .map(|(p, r)| Overload {
                        member: false,
                        params: p.clone(),
                        result: r.clone(),
                    })
                    .collect(),
            );
        }
        table
    })
}

/// Type parameter (and type variable) bindings while one overload is tried.
#[derive(Default)]
struct Bindings([Option<Ty>; 2], Vec<(u32, Ty)>);

impl Bindings {
    fn var(&self, v: u32) -> Option<&Ty> {
        self.1.iter().find(|(n, _)| *n == v).map(|(_, t)| t)
    }

    fn substitute(&self, t: &Ty) -> Ty {
        match t {
            Ty::Param(p) => self.0[*p as usize].clone().unwrap_or(Ty::Dyn),
            Ty::List(e) => Ty::list(self.substitute(e)),
            Ty::Map(k, v) => Ty::Map(Box::new(self.substitute(k)), Box::new(self.substitute(v))),
            Ty::Type(e) => Ty::Type(Box::new(self.substitute(e))),
            Ty::Opt(e) => Ty::Opt(Box::new(self.substitute(e))),
            other => other.clone(),
        }
    }

    /// Whether a value of type `arg` may be passed where `param` is declared, binding the
    /// parameters on the way (cel-go's `isAssignable`).
    fn assignable(&mut self, arg: &Ty, param: &Ty) -> bool {
        if let Ty::Var(v) = arg {
            if let Some(t) = self.var(*v).cloned() {
                return self.assignable(&t, param);
            }
            if !matches!(param, Ty::Param(_) | Ty::Var(_) | Ty::Dyn | Ty::Error) {
                let t = self.substitute(param);
                self.1.push((*v, t));
                return true;
            }
        }
        if let Ty::Var(v) = param {
            if let Some(t) = self.var(*v).cloned() {
                return self.assignable(arg, &t);
            }
            if !arg.is_dyn_or_error() {
                self.1.push((*v, arg.clone()));
            }
            return true;
        }
        if let Ty::Param(p) = param {
            let slot = *p as usize;
            return match self.0[slot].clone() {
                None => {
                    self.0[slot] = Some(arg.clone());
                    true
                }
                Some(bound) if bound == *arg => true,
                Some(Ty::Var(v)) if self.var(v).is_none() => {
                    if !arg.is_dyn_or_error() {
                        self.1.push((v, arg.clone()));
                    }
                    self.0[slot] = Some(arg.clone());
                    true
                }
                Some(bound) => {
                    if Bindings::default().assignable(arg, &bound) {
                        self.0[slot] = Some(most_general(arg, &bound));
                        true
                    } else {
                        false
                    }
                }
            };
        }
        if arg.is_dyn_or_error() || param.is_dyn_or_error() {
            return true;
        }
        match (arg, param) {
            (Ty::Prim(a), Ty::Prim(b)) => a == b,
            (Ty::List(a), Ty::List(b)) | (Ty::Opt(a), Ty::Opt(b)) => self.assignable(a, b),
            // Type values compare whatever type they stand for.
            (Ty::Type(_), Ty::Type(_)) => true,
            (Ty::Map(k1, v1), Ty::Map(k2, v2)) => {
                self.assignable(k1, k2) && self.assignable(v1, v2)
            }
            (Ty::Msg(a), Ty::Msg(b)) => a == b,
            _ => false,
        }
    }
}

/// The less specific of two compatible types (`dyn` wins).
fn most_general(a: &Ty, b: &Ty) -> Ty {
    match (a, b) {
        _ if a == b => a.clone(),
        (Ty::Dyn | Ty::Error, _) | (_, Ty::Dyn | Ty::Error) => Ty::Dyn,
        (Ty::List(x), Ty::List(y)) => Ty::list(most_general(x, y)),
        (Ty::Opt(x), Ty::Opt(y)) => Ty::Opt(Box::new(most_general(x, y))),
        (Ty::Type(x), Ty::Type(y)) => Ty::Type(Box::new(most_general(x, y))),
        (Ty::Map(k1, v1), Ty::Map(k2, v2)) => Ty::Map(
            Box::new(most_general(k1, k2)),
            Box::new(most_general(v1, v2)),
        ),
        _ => b.clone(),
    }
}

/// The type a type name stands for, as the value of the identifier.
fn type_value(t: CelType) -> Ty {
    let inner = match t {
        CelType::Null => Ty::Prim("null_type"),
        CelType::Bool => BOOL,
        CelType::Int => INT,
        CelType::Uint => Ty::Prim("uint"),
        CelType::Double => Ty::Prim("double"),
        CelType::String => STRING,
        CelType::Bytes => Ty::Prim("bytes"),
        CelType::List => Ty::list(Ty::Dyn),
        CelType::Map => Ty::Map(Box::new(Ty::Dyn), Box::new(Ty::Dyn)),
        CelType::Timestamp => Ty::Prim("timestamp"),
        CelType::Duration => Ty::Prim("duration"),
        CelType::Type => Ty::Type(Box::new(Ty::Dyn)),
        CelType::Optional => Ty::Opt(Box::new(Ty::Dyn)),
        CelType::Named(n) => Ty::Prim(n),
    };
    Ty::Type(Box::new(inner))
}

// === the checker ===

/// The problems Cerbos's compiler reports for `expr`, in source order (empty when there
/// are none): type-check problems, else invalid literal arguments.
pub(crate) fn type_problems(expr: &Expr) -> Vec<String> {
    let mut c = Checker {
        locals: Vec::new(),
        problems: Vec::new(),
        vars: Vec::new(),
    };
    c.infer(expr);
    if c.problems.is_empty() {
        c.literals(expr);
    }
    c.problems.sort_by_key(|(pos, _)| *pos);
    c.problems.into_iter().map(|(_, p)| p).collect()
}

struct Checker {
    /// Comprehension and `cel.bind` variables in scope, innermost last.
    locals: Vec<(String, Ty)>,
    /// Problems with the source offset they belong to.
    problems: Vec<(usize, String)>,
    /// The bindings of the type variables of empty literals.
    vars: Vec<Option<Ty>>,
}

/// Names bound by Cerbos whose values are not typed (variables, constants, globals).
const DYNAMIC_ROOTS: &[&str] = &["V", "variables", "C", "constants", "G", "globals"];

impl Checker {
    fn fresh(&mut self) -> Ty {
        self.vars.push(None);
        Ty::Var(u32::try_from(self.vars.len() - 1).unwrap_or(u32::MAX))
    }

    /// `t` with the bound type variables replaced by their types.
    fn zonk(&self, t: &Ty) -> Ty {
        match t {
            Ty::Var(v) => match self.vars.get(*v as usize) {
                Some(Some(b)) => self.zonk(b),
                _ => t.clone(),
            },
            Ty::List(e) => Ty::list(self.zonk(e)),
            Ty::Map(k, v) => Ty::Map(Box::new(self.zonk(k)), Box::new(self.zonk(v))),
            Ty::Type(e) => Ty::Type(Box::new(self.zonk(e))),
            Ty::Opt(e) => Ty::Opt(Box::new(self.zonk(e))),
            other => other.clone(),
        }
    }

    /// The type of an aggregate literal's elements: their common type (fixing the type
    /// variables of empty literals on the way), else `dyn`.
    fn join(&mut self, types: &[Ty]) -> Ty {
        let mut it = types.iter();
        let Some(first) = it.next() else {
            return Ty::Dyn;
        };
        let mut out = self.zonk(first);
        for t in it {
            let t = self.zonk(t);
            let mut b = Bindings::default();
            if b.assignable(&t, &out) && Bindings::default().assignable(&out, &t) {
                for (v, bound) in b.1 {
                    if let Some(slot @ None) = self.vars.get_mut(v as usize) {
                        *slot = Some(bound);
                    }
                }
                out = most_general(&self.zonk(&t), &self.zonk(&out));
            } else {
                return Ty::Dyn;
            }
        }
        out
    }

    fn problem(&mut self, pos: usize, msg: String) -> Ty {
        self.problems.push((pos, msg));
        Ty::Error
    }

    fn is_bound(&self, name: &str) -> bool {
        self.locals.iter().any(|(n, _)| n == name)
            || matches!(name, "request" | "R" | "P" | "runtime")
            || DYNAMIC_ROOTS.contains(&name)
    }

    fn ident(&mut self, name: &str, pos: usize) -> Ty {
        if let Some((_, t)) = self.locals.iter().rev().find(|(n, _)| n == name) {
            return t.clone();
        }
        match name {
            "request" => Ty::Msg(Message::Request),
            "R" => Ty::Msg(Message::Resource),
            "P" => Ty::Msg(Message::Principal),
            "runtime" => Ty::Msg(Message::Runtime),
            "dyn" => Ty::Type(Box::new(Ty::Dyn)),
            _ if DYNAMIC_ROOTS.contains(&name) => Ty::Dyn,
            _ => match type_ident(name) {
                Some(t) => type_value(t),
                None => self.problem(pos, undeclared(name)),
            },
        }
    }

    fn select(&mut self, operand: Ty, name: &str, pos: usize) -> Ty {
        match operand {
            Ty::Msg(m) => field(m, name)
                .unwrap_or_else(|| self.problem(pos, format!("undefined field '{name}'"))),
            Ty::Map(_, v) => *v,
            Ty::Dyn | Ty::Error | Ty::Var(_) => operand,
            other => self.problem(
                pos,
                format!("type '{}' does not support field selection", other.name()),
            ),
        }
    }

    /// Resolves a call against the declared overloads; `args` includes the receiver of a
    /// receiver-style call.
    fn resolve(&mut self, func: &str, member: bool, args: &[Ty], pos: usize) -> Ty {
        let Some(overloads) = functions().get(func) else {
            return self.problem(pos, undeclared(func));
        };
        let mut result: Option<Ty> = None;
        for o in overloads
            .iter()
            .filter(|o| o.member == member && o.params.len() == args.len())
        {
            let args: Vec<Ty> = args.iter().map(|a| self.zonk(a)).collect();
            let mut b = Bindings::default();
            if args.iter().zip(&o.params).all(|(a, p)| b.assignable(a, p)) {
                for (v, t) in std::mem::take(&mut b.1) {
                    if let Some(slot @ None) = self.vars.get_mut(v as usize) {
                        *slot = Some(t);
                    }
                }
                let r = self.zonk(&b.substitute(&o.result));
                result = Some(match result {
                    None => r,
                    Some(prev) if prev == r => prev,
                    Some(_) => Ty::Dyn,
                });
            }
        }
        match result {
            Some(r) => r,
            // An operand already in error is not reported again.
            None if args.contains(&Ty::Error) => Ty::Error,
            None => {
                let names: Vec<String> = args.iter().map(|a| self.zonk(a).name()).collect();
                let applied = if member {
                    format!("{}.({})", names[0], names[1..].join(", "))
                } else {
                    format!("({})", names.join(", "))
                };
                self.problem(
                    pos,
                    format!("found no matching overload for '{func}' applied to '{applied}'"),
                )
            }
        }
    }

    /// `&&` and `||`: each operand must be a bool.
    fn logical(&mut self, l: &Expr, r: &Expr) -> Ty {
        for side in [l, r] {
            let t = self.infer(side);
            if !Bindings::default().assignable(&t, &BOOL) {
                self.problem(
                    cel_pos(side),
                    format!(
                        "expected type 'bool' but found '{}'",
                        self.zonk(&t).raw_name()
                    ),
                );
            }
        }
        BOOL
    }

    fn infer(&mut self, e: &Expr) -> Ty {
        match &e.kind {
            ExprKind::Literal(v) => literal_type(v),
            ExprKind::Ident(n) => self.ident(n, e.pos),
            ExprKind::Select {
                operand,
                field,
                optional,
            } => self.select_expr(e, operand, field, *optional),
            ExprKind::Index {
                operand,
                index,
                optional,
            } => self.index_expr(operand, index, *optional, e.pos),
            ExprKind::Call { target, func, args } => self.call(target.as_deref(), func, args, e),
            ExprKind::List(items) => self.list_literal(items),
            ExprKind::Map(entries) => self.map_literal(entries),
            ExprKind::Struct { type_name, fields } => {
                for (_, v, _) in fields {
                    self.infer(v);
                }
                self.problem(e.pos, undeclared(type_name))
            }
            ExprKind::Unary(op, x) => {
                let t = self.infer(x);
                let func = match op {
                    UnaryOp::Not => "!_",
                    UnaryOp::Neg => "-_",
                };
                self.resolve(func, false, &[t], e.pos)
            }
            ExprKind::Binary(op, l, r) => {
                let (lt, rt) = (self.infer(l), self.infer(r));
                self.resolve(binary_function(*op), false, &[lt, rt], e.pos)
            }
            ExprKind::And(l, r) | ExprKind::Or(l, r) => self.logical(l, r),
            ExprKind::Ternary(c, a, b) => {
                let types = [self.infer(c), self.infer(a), self.infer(b)];
                // cel-go places a conditional at its `?`, just before the first branch.
                self.resolve("_?_:_", false, &types, start(a).saturating_sub(1))
            }
        }
    }

    /// `a.f`, `a.?f`, or a qualified type name (`google.protobuf.Timestamp`).
    fn select_expr(&mut self, e: &Expr, operand: &Expr, field: &str, optional: bool) -> Ty {
        if !optional
            && let Some(q) = e.qualified_name()
            && !self.is_bound(q.split('.').next().unwrap_or(""))
            && let Some(t) = type_ident(&q)
        {
            return type_value(t);
        }
        let t = self.infer(operand);
        if optional {
            let inner = match t {
                Ty::Opt(inner) => *inner,
                other => other,
            };
            let selected = self.select(inner, field, e.pos);
            return if selected == Ty::Error {
                Ty::Error
            } else {
                Ty::Opt(Box::new(selected))
            };
        }
        self.select(t, field, e.pos)
    }

    /// `a[i]` and `a[?i]`.
    fn index_expr(&mut self, operand: &Expr, index: &Expr, optional: bool, pos: usize) -> Ty {
        let t = self.infer(operand);
        let i = self.infer(index);
        if optional {
            let inner = match t {
                Ty::Opt(inner) => *inner,
                other => other,
            };
            let r = self.resolve("_[_]", false, &[inner, i], pos);
            return if r == Ty::Error {
                r
            } else {
                Ty::Opt(Box::new(r))
            };
        }
        self.resolve("_[_]", false, &[t, i], pos)
    }

    /// `[a, ?b]`: a list of the elements' joined type.
    fn list_literal(&mut self, items: &[(Expr, bool)]) -> Ty {
        let types: Vec<Ty> = items
            .iter()
            .map(|(x, opt)| {
                let t = self.infer(x);
                match (opt, t) {
                    (true, Ty::Opt(inner)) => *inner,
                    (true, _) => Ty::Dyn,
                    (false, t) => t,
                }
            })
            .collect();
        if types.is_empty() {
            return Ty::list(self.fresh());
        }
        Ty::list(self.join(&types))
    }

    /// `{k: v, ?k2: v2}`: a map of the keys' and the values' joined types.
    fn map_literal(&mut self, entries: &[(Expr, Expr, bool)]) -> Ty {
        let mut keys = Vec::new();
        let mut values = Vec::new();
        for (k, v, opt) in entries {
            keys.push(self.infer(k));
            let t = self.infer(v);
            values.push(match (opt, t) {
                (true, Ty::Opt(inner)) => *inner,
                (true, _) => Ty::Dyn,
                (false, t) => t,
            });
        }
        if entries.is_empty() {
            return Ty::Map(Box::new(self.fresh()), Box::new(self.fresh()));
        }
        let k = self.join(&keys);
        let v = self.join(&values);
        Ty::Map(Box::new(k), Box::new(v))
    }

    fn call(&mut self, target: Option<&Expr>, func: &str, args: &[Expr], e: &Expr) -> Ty {
        let pos = e.pos;
        // Namespaced functions and macros: `math.greatest(..)`, `cel.bind(..)`.
        if let Some(ns) = target.and_then(Expr::qualified_name)
            && !self.is_bound(ns.split('.').next().unwrap_or(""))
            && let Some(t) = self.namespaced_call(&format!("{ns}.{func}"), args, pos)
        {
            return t;
        }
        if let Some(t) = self.macro_call(target, func, args, pos) {
            return t;
        }
        let mut types = Vec::with_capacity(args.len() + 1);
        if let Some(t) = target {
            types.push(self.infer(t));
        }
        types.extend(args.iter().map(|a| self.infer(a)));
        self.resolve(func, target.is_some(), &types, pos)
    }

    /// A call by its namespaced name `full` (`cel.bind`, `math.greatest`, `strings.quote`...);
    /// `None` if no such function or macro is declared.
    fn namespaced_call(&mut self, full: &str, args: &[Expr], pos: usize) -> Option<Ty> {
        match full {
            "cel.bind" if args.len() == 3 => return Some(self.bind(args)),
            "math.greatest" | "math.least" => return Some(self.min_max(full, args, pos)),
            _ => {}
        }
        let (name, _) = functions().get_key_value(full)?;
        let types: Vec<Ty> = args.iter().map(|a| self.infer(a)).collect();
        Some(self.resolve(name, false, &types, pos))
    }

    /// The macros over a receiver (`has`, `all`, `exists`, `map`, `filter`, `transform*`,
    /// `sortBy`, `optMap`...); `None` if the call is none of them.
    fn macro_call(
        &mut self,
        target: Option<&Expr>,
        func: &str,
        args: &[Expr],
        pos: usize,
    ) -> Option<Ty> {
        let is_var = |a: &Expr| a.as_ident().is_some();
        Some(match (target, func, args.len()) {
            (None, "has", 1) => {
                self.infer(&args[0]);
                BOOL
            }
            (Some(t), "all" | "exists" | "exists_one", 2) if is_var(&args[0]) => {
                let range = self.infer(t);
                self.quantifier(func, range, &args[..1], &args[1], pos)
            }
            (Some(t), "all" | "exists" | "exists_one" | "existsOne", 3)
                if is_var(&args[0]) && is_var(&args[1]) =>
            {
                let range = self.infer(t);
                self.quantifier(func, range, &args[..2], &args[2], pos)
            }
            (Some(t), "map", 2 | 3) if is_var(&args[0]) => {
                let range = self.infer(t);
                self.map_like(range, &args[..1], &args[1..], pos)
            }
            (Some(t), "filter", 2) if is_var(&args[0]) => {
                let range = self.infer(t);
                self.filter(range, args, pos)
            }
            (Some(t), "transformList" | "transformMap" | "transformMapEntry", 3 | 4)
                if is_var(&args[0]) && is_var(&args[1]) =>
            {
                let range = self.infer(t);
                self.transform(func, range, args, pos)
            }
            (Some(t), "sortBy", 2) if is_var(&args[0]) => {
                let range = self.infer(t);
                self.sort_by(range, args, pos)
            }
            (Some(t), "optMap" | "optFlatMap", 2) if is_var(&args[0]) => {
                let o = self.infer(t);
                self.opt_map(func, o, args)
            }
            _ => return None,
        })
    }

    /// `range.filter(x, pred)`: a list of `range`'s elements.
    fn filter(&mut self, range: Ty, args: &[Expr], pos: usize) -> Ty {
        let Some(vars) = self.bind_range(&range, &args[..1], pos) else {
            return Ty::Error;
        };
        let elem = vars[0].clone();
        let bound = self.push_vars(&args[..1], vars);
        let f = self.infer(&args[1]);
        self.locals.truncate(bound);
        let acc = Ty::list(elem);
        self.resolve("_?_:_", false, &[f, acc.clone(), acc.clone()], args[1].pos);
        acc
    }

    /// `range.sortBy(x, key)`: `range` sorted by the keys.
    fn sort_by(&mut self, range: Ty, args: &[Expr], pos: usize) -> Ty {
        let Some(vars) = self.bind_range(&range, &args[..1], pos) else {
            return Ty::Error;
        };
        let bound = self.push_vars(&args[..1], vars);
        let key = self.infer(&args[1]);
        self.locals.truncate(bound);
        self.resolve("@sortByAssociatedKeys", true, &[range, Ty::list(key)], pos)
    }

    /// `o.optMap(x, body)` and `o.optFlatMap(x, body)` over the optional type `o`.
    fn opt_map(&mut self, func: &str, o: Ty, args: &[Expr]) -> Ty {
        let inner = match o {
            Ty::Opt(i) => *i,
            _ => Ty::Dyn,
        };
        let bound = self.push_vars(&args[..1], vec![inner]);
        let body = self.infer(&args[1]);
        self.locals.truncate(bound);
        if func == "optMap" {
            Ty::Opt(Box::new(body))
        } else {
            body
        }
    }

    /// The iteration variables' types over `range`, or `None` (reported) when it cannot be
    /// iterated.
    fn bind_range(&mut self, range: &Ty, vars: &[Expr], pos: usize) -> Option<Vec<Ty>> {
        let two = vars.len() == 2;
        Some(match range {
            Ty::List(e) if two => vec![INT, (**e).clone()],
            Ty::List(e) => vec![(**e).clone()],
            Ty::Map(k, v) if two => vec![(**k).clone(), (**v).clone()],
            Ty::Map(k, _) => vec![(**k).clone()],
            Ty::Dyn | Ty::Error | Ty::Var(_) => vec![Ty::Dyn; vars.len()],
            other => {
                self.problem(
                    pos,
                    format!(
                        "expression of type '{}' cannot be range of a comprehension (must be list, map, or dynamic)",
                        other.name()
                    ),
                );
                return None;
            }
        })
    }

    fn push_vars(&mut self, vars: &[Expr], types: Vec<Ty>) -> usize {
        let bound = self.locals.len();
        for (v, t) in vars.iter().zip(types) {
            if let Some(name) = v.as_ident() {
                self.locals.push((name.to_string(), t));
            }
        }
        bound
    }

    fn quantifier(&mut self, func: &str, range: Ty, vars: &[Expr], pred: &Expr, pos: usize) -> Ty {
        let Some(types) = self.bind_range(&range, vars, pos) else {
            self.infer_in_scope(vars, vec![Ty::Error; vars.len()], pred);
            return Ty::Error;
        };
        let p = self.infer_in_scope(vars, types, pred);
        if matches!(func, "exists_one" | "existsOne") {
            self.resolve("_?_:_", false, &[p, INT, INT], pred.pos);
        } else if !Bindings::default().assignable(&p, &BOOL) {
            self.problem(
                cel_pos(pred),
                format!(
                    "expected type 'bool' but found '{}'",
                    self.zonk(&p).raw_name()
                ),
            );
        }
        BOOL
    }

    fn infer_in_scope(&mut self, vars: &[Expr], types: Vec<Ty>, body: &Expr) -> Ty {
        let bound = self.push_vars(vars, types);
        let t = self.infer(body);
        self.locals.truncate(bound);
        t
    }

    /// `map(x, t)` and `map(x, f, t)`.
    fn map_like(&mut self, range: Ty, vars: &[Expr], rest: &[Expr], pos: usize) -> Ty {
        let Some(types) = self.bind_range(&range, vars, pos) else {
            return Ty::Error;
        };
        let bound = self.push_vars(vars, types);
        let filter = (rest.len() == 2).then(|| (self.infer(&rest[0]), rest[0].pos));
        let t = self.infer(&rest[rest.len() - 1]);
        self.locals.truncate(bound);
        let acc = Ty::list(t);
        if let Some((f, fpos)) = filter {
            self.resolve("_?_:_", false, &[f, acc.clone(), acc.clone()], fpos);
        }
        acc
    }

    /// `transformList`, `transformMap`, `transformMapEntry` with an optional filter.
    fn transform(&mut self, func: &str, range: Ty, args: &[Expr], pos: usize) -> Ty {
        let Some(types) = self.bind_range(&range, &args[..2], pos) else {
            return Ty::Error;
        };
        let key = types[0].clone();
        let bound = self.push_vars(&args[..2], types);
        let filter = (args.len() == 4).then(|| (self.infer(&args[2]), args[2].pos));
        let t = self.infer(&args[args.len() - 1]);
        self.locals.truncate(bound);
        let acc = match func {
            "transformList" => Ty::list(t),
            "transformMap" => Ty::Map(Box::new(key), Box::new(t)),
            _ => match t {
                Ty::Map(..) => t,
                _ => Ty::Map(Box::new(Ty::Dyn), Box::new(Ty::Dyn)),
            },
        };
        if let Some((f, fpos)) = filter {
            self.resolve("_?_:_", false, &[f, acc.clone(), acc.clone()], fpos);
        }
        acc
    }

    fn bind(&mut self, args: &[Expr]) -> Ty {
        let init = self.infer(&args[1]);
        match args[0].as_ident() {
            Some(_) => self.infer_in_scope(&args[..1], vec![init], &args[2]),
            None => {
                self.infer(&args[2]);
                Ty::Dyn
            }
        }
    }

    /// `math.greatest(...)` and `math.least(...)`: the macro's argument rules, then the
    /// overloads of `math.@max` / `math.@min`.
    fn min_max(&mut self, name: &str, args: &[Expr], pos: usize) -> Ty {
        let internal = if name == "math.greatest" {
            "math.@max"
        } else {
            "math.@min"
        };
        let numeric = |a: &Expr| {
            matches!(
                a.kind,
                ExprKind::Literal(Value::Int(_) | Value::Uint(_) | Value::Double(_))
            )
        };
        let simple = |a: &Expr| !matches!(a.kind, ExprKind::Literal(_)) || numeric(a);
        match args.len() {
            0 => self.problem(pos, format!("{name}() requires at least one argument")),
            1 if !(simple(&args[0]) || matches!(args[0].kind, ExprKind::List(_))) => {
                self.problem(pos, format!("{name}() invalid single argument value"))
            }
            n if n > 1 && !args.iter().all(simple) => self.problem(
                pos,
                format!("{name}() simple literal arguments must be numeric"),
            ),
            1 | 2 => {
                let types: Vec<Ty> = args.iter().map(|a| self.infer(a)).collect();
                self.resolve(internal, false, &types, pos)
            }
            _ => {
                let types: Vec<Ty> = args.iter().map(|a| self.infer(a)).collect();
                let list = Ty::list(self.join(&types));
                self.resolve(internal, false, &[list], pos)
            }
        }
    }

    // === literal arguments ===

    /// Cerbos's literal validators: `timestamp`, `duration`, `ip` and `cidr` of a literal,
    /// `matches` of a literal pattern, `format` of a literal string with a list literal.
    fn literals(&mut self, e: &Expr) {
        if let ExprKind::Call { target, func, args } = &e.kind {
            if let Some(ExprKind::Literal(lit)) = args.first().map(|a| &a.kind) {
                let global = target.is_none();
                let apos = args[0].pos;
                match func.as_str() {
                    "timestamp" | "duration"
                        if global && args.len() == 1 && call_native(func, lit).is_err() =>
                    {
                        self.problem(apos, format!("invalid {func} argument"));
                    }
                    "ip" | "cidr" if global && args.len() == 1 => {
                        if let Err(msg) = call_native(func, lit) {
                            self.problem(apos, format!("invalid {func} argument: {msg}"));
                        }
                    }
                    "matches" if args.len() == 1 || (global && args.len() == 2) => {
                        if let Value::String(p) = lit
                            && regex::Regex::new(p).is_err()
                        {
                            self.problem(apos, "invalid matches argument".into());
                        }
                    }
                    _ => {}
                }
            }
            if func == "format"
                && args.len() == 1
                && let Some(ExprKind::Literal(Value::String(template))) =
                    target.as_deref().map(|t| &t.kind)
                && let ExprKind::List(items) = &args[0].kind
            {
                let samples: Vec<Option<Value>> = items
                    .iter()
                    .map(|(x, _)| {
                        let mut c = Checker {
                            locals: self.locals.clone(),
                            problems: Vec::new(),
                            vars: Vec::new(),
                        };
                        sample(&c.infer(x))
                    })
                    .collect();
                match format_check(template, &samples) {
                    Err(msg) => {
                        self.problem(e.pos, msg);
                    }
                    Ok(used) if used < samples.len() => {
                        self.problem(
                            e.pos,
                            format!(
                                "too many arguments supplied to string.format (expected {used}, got {})",
                                samples.len()
                            ),
                        );
                    }
                    Ok(_) => {}
                }
            }
        }
        for c in e.children() {
            self.literals(c);
        }
    }
}

/// Where an expression's text starts (its position is that of its operator).
fn start(e: &Expr) -> usize {
    match &e.kind {
        ExprKind::Select { operand, .. } | ExprKind::Index { operand, .. } => start(operand),
        ExprKind::Call {
            target: Some(t), ..
        } => start(t),
        ExprKind::Binary(_, l, _) | ExprKind::And(l, _) | ExprKind::Or(l, _) => start(l),
        ExprKind::Ternary(c, ..) => start(c),
        _ => e.pos,
    }
}

/// The position cel-go gives an expression (a conditional at its `?`).
fn cel_pos(e: &Expr) -> usize {
    match &e.kind {
        ExprKind::Ternary(_, a, _) => start(a).saturating_sub(1),
        _ => e.pos,
    }
}

fn undeclared(name: &str) -> String {
    format!("undeclared reference to '{name}' (in container '')")
}

/// The overload name of a binary operator (`_+_`, `@in`...).
fn binary_function(op: BinaryOp) -> &'static str {
    match op {
        BinaryOp::Add => "_+_",
        BinaryOp::Sub => "_-_",
        BinaryOp::Mul => "_*_",
        BinaryOp::Div => "_/_",
        BinaryOp::Rem => "_%_",
        BinaryOp::Eq => "_==_",
        BinaryOp::Ne => "_!=_",
        BinaryOp::Lt => "_<_",
        BinaryOp::Le => "_<=_",
        BinaryOp::Gt => "_>_",
        BinaryOp::Ge => "_>=_",
        BinaryOp::In => "@in",
    }
}

fn literal_type(v: &Value) -> Ty {
    match v {
        Value::String(_) => STRING,
        Value::Int(_) => INT,
        Value::Uint(_) => Ty::Prim("uint"),
        Value::Double(_) => Ty::Prim("double"),
        Value::Bool(_) => BOOL,
        Value::Bytes(_) => Ty::Prim("bytes"),
        Value::Null => Ty::Prim("null_type"),
        _ => Ty::Dyn,
    }
}

/// Calls a global one-argument function on a literal, as Cerbos's validators evaluate it.
fn call_native(func: &str, arg: &Value) -> Result<Value, String> {
    let f = registry()
        .get(func, CallStyle::Global)
        .ok_or_else(|| format!("no function {func}"))?;
    let now = chrono::DateTime::UNIX_EPOCH.fixed_offset();
    f(std::slice::from_ref(arg), &Activation::new(&[], now)).map_err(|e| e.message().to_string())
}

/// A value of a statically known type, for the format validator (`None` when not known).
fn sample(t: &Ty) -> Option<Value> {
    Some(match t {
        Ty::Prim("int") => Value::Int(0),
        Ty::Prim("uint") => Value::Uint(0),
        Ty::Prim("double") => Value::Double(0.0),
        Ty::Prim("bool") => Value::Bool(false),
        Ty::Prim("string") => Value::from(""),
        Ty::Prim("bytes") => Value::Bytes(Vec::new().into()),
        Ty::Prim("null_type") => Value::Null,
        Ty::Prim("timestamp") => Value::Timestamp(chrono::DateTime::UNIX_EPOCH.fixed_offset()),
        Ty::Prim("duration") => Value::Duration(chrono::TimeDelta::zero()),
        Ty::Prim("net.IP") => call_native("ip", &Value::from("0.0.0.0")).ok()?,
        Ty::Prim("net.CIDR") => call_native("cidr", &Value::from("0.0.0.0/0")).ok()?,
        Ty::Prim("cerbos.lib.hierarchy") => call_native("hierarchy", &Value::from("a")).ok()?,
        Ty::List(_) => Value::list(Vec::new()),
        Ty::Map(..) => from_empty_map(),
        Ty::Type(_) => Value::Type(CelType::Int),
        Ty::Opt(_) => Value::Optional(None),
        _ => return None,
    })
}

fn from_empty_map() -> Value {
    super::json::from_json(&serde_json::json!({}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(src: &str) -> Vec<String> {
        type_problems(&crate::cel::parse(src).expect("parses"))
    }

    /// Each case with the problems `cerbos compile` 0.55 reports for it.
    #[test]
    fn field_selections_are_checked_as_cerbos() {
        let cases: &[(&str, &[&str])] = &[
            ("R.attrs.owner == P.id", &["undefined field 'attrs'"]),
            ("P.idd == \"x\"", &["undefined field 'idd'"]),
            (
                "request.principl.id == \"x\"",
                &["undefined field 'principl'"],
            ),
            (
                "R.id.foo == \"x\"",
                &["type 'string' does not support field selection"],
            ),
            (
                "P.attr.x == 1 && R.id.foo.bar == 1",
                &["type 'string' does not support field selection"],
            ),
            (
                "runtime.effectiveDerivedRole == []",
                &["undefined field 'effectiveDerivedRole'"],
            ),
            (
                "request.resource.attrs.x == 1",
                &["undefined field 'attrs'"],
            ),
            ("request.auxData.jwtt == 1", &["undefined field 'jwtt'"]),
            (
                "request.auxData.jwts.a.claim.x == 1",
                &["undefined field 'claim'"],
            ),
            (
                "P.roles.x == 1",
                &["type 'list(string)' does not support field selection"],
            ),
            (
                "R.attr.x == 1 && R.attrs.y == 2 && P.idd == 1",
                &["undefined field 'attrs'", "undefined field 'idd'"],
            ),
            ("has(R.attrs)", &["undefined field 'attrs'"]),
            (
                "[1].exists(R, R.foo == 1)",
                &["type 'int' does not support field selection"],
            ),
            (
                "P.roles.exists(r, r.foo == 1)",
                &["type 'string' does not support field selection"],
            ),
            ("{\"a\": R}.a.attrs == 1", &["undefined field 'attrs'"]),
            (
                "R.attr.owner.size() > 0 && runtime.x == 1",
                &["undefined field 'x'"],
            ),
            (
                "request.principal.attr.x == 1 || request.foo == 1",
                &["undefined field 'foo'"],
            ),
        ];
        for (src, want) in cases {
            assert_eq!(problems(src), *want, "{src}");
        }
        for ok in [
            "P.roles == [\"a\"] && R.attr == {} && R.attr.x == 1 && [1] == [R.attr.x]",
            "R.id == R.attr.x && P.roles == [] && R.attr == {\"a\": 1}",
            "P.policyVersion == \"x\" && P.policy_version == \"x\" && R.policyVersion == \"x\"",
            "request.auxData.jwt.x == 1 && request.aux_data.jwt.x == 1",
            "request.auxData.jwts.token_a.claims.aud == 1",
            "runtime.effective_derived_roles == [] && runtime.effectiveDerivedRoles == []",
            "R.scope == \"a\" && P.scope == \"b\" && R.attr.x.y == 1 && P.attr.z",
            "V.anything.goes && C.x.y && G.z.w && globals.a.b",
            "P.roles.exists(R, R == \"x\") && cel.bind(x, R.attr, x.foo.bar)",
        ] {
            assert_eq!(problems(ok), Vec::<String>::new(), "{ok}");
        }
    }

    /// Overloads, arity, unknown names, macros and literal arguments, each with the
    /// problems `cerbos compile` 0.55 reports.
    #[test]
    fn overloads_and_literals_are_checked_as_cerbos() {
        let cases: &[(&str, &str)] = &[
            (
                "1 == 1.0",
                "found no matching overload for '_==_' applied to '(int, double)'",
            ),
            (
                "1u == 1",
                "found no matching overload for '_==_' applied to '(uint, int)'",
            ),
            (
                "R.id == null",
                "found no matching overload for '_==_' applied to '(string, null)'",
            ),
            (
                "R == P",
                "found no matching overload for '_==_' applied to '(cerbos.engine.v1.Request.Resource, cerbos.engine.v1.Request.Principal)'",
            ),
            (
                "size(1) == 1",
                "found no matching overload for 'size' applied to '(int)'",
            ),
            (
                "\"a\".startsWith(1)",
                "found no matching overload for 'startsWith' applied to 'string.(int)'",
            ),
            (
                "timestamp(1,2) == 1",
                "found no matching overload for 'timestamp' applied to '(int, int)'",
            ),
            (
                "inIPAddrRange(\"a\", \"b\")",
                "found no matching overload for 'inIPAddrRange' applied to '(string, string)'",
            ),
            (
                "ip(\"1.1.1.1\").inIPAddrRange(1)",
                "found no matching overload for 'inIPAddrRange' applied to 'net.IP.(int)'",
            ),
            (
                "size(\"a\", \"b\") == 1",
                "found no matching overload for 'size' applied to '(string, string)'",
            ),
            (
                "R.attr.x.startsWith(1)",
                "found no matching overload for 'startsWith' applied to 'dyn.(int)'",
            ),
            ("foo(1)", "undeclared reference to 'foo' (in container '')"),
            (
                "json.encode(1, 2) == \"1\"",
                "found no matching overload for 'json.encode' applied to '(int, int)'",
            ),
            (
                "json.encode(\"a\") == 1",
                "found no matching overload for '_==_' applied to '(string, int)'",
            ),
            (
                "1 + \"a\" == 1",
                "found no matching overload for '_+_' applied to '(int, string)'",
            ),
            (
                "!1",
                "found no matching overload for '!_' applied to '(int)'",
            ),
            (
                "1 in [\"a\"]",
                "found no matching overload for '@in' applied to '(int, list(string))'",
            ),
            (
                "(true ? 1 : \"a\") == 1",
                "found no matching overload for '_?_:_' applied to '(bool, int, string)'",
            ),
            ("[1].all(x, x)", "expected type 'bool' but found 'int'"),
            ("1 && true", "expected type 'bool' but found 'int'"),
            (
                "[1].exists_one(x, 1)",
                "found no matching overload for '_?_:_' applied to '(int, int, int)'",
            ),
            (
                "[1].filter(x, x)",
                "found no matching overload for '_?_:_' applied to '(int, list(int), list(int))'",
            ),
            (
                "type(1) == 1",
                "found no matching overload for '_==_' applied to '(type(int), int)'",
            ),
            (
                "google.protobuf.Timestamp == 1",
                "found no matching overload for '_==_' applied to '(type(timestamp), int)'",
            ),
            (
                "optional.none() == 1",
                "found no matching overload for '_==_' applied to '(optional_type(dyn), int)'",
            ),
            (
                "R.?id == 1",
                "found no matching overload for '_==_' applied to '(optional_type(string), int)'",
            ),
            (
                "{\"a\": 1}[1] == 1",
                "found no matching overload for '_[_]' applied to '(map(string, int), int)'",
            ),
            (
                "[].map(x, x) == 1",
                "found no matching overload for '_==_' applied to '(list(dyn), int)'",
            ),
            (
                "[[1]].sort() == [[1]]",
                "found no matching overload for 'sort' applied to 'list(list(int)).()'",
            ),
            (
                "[1].sortBy(x, [x]) == [1]",
                "found no matching overload for '@sortByAssociatedKeys' applied to 'list(int).(list(list(int)))'",
            ),
            (
                "math.greatest() == 1",
                "math.greatest() requires at least one argument",
            ),
            (
                "math.greatest(\"a\") == 1",
                "math.greatest() invalid single argument value",
            ),
            (
                "math.least(1, \"a\")",
                "math.least() simple literal arguments must be numeric",
            ),
            (
                "math.greatest(1, 2) == \"a\"",
                "found no matching overload for '_==_' applied to '(int, string)'",
            ),
            (
                "timestamp(\"2021-04-20\") == now()",
                "invalid timestamp argument",
            ),
            (
                "duration(\"\") == duration(\"1s\")",
                "invalid duration argument",
            ),
            ("\"a\".matches(\"(\")", "invalid matches argument"),
            (
                "\"%d\".format([\"a\"]) == \"\"",
                "error during formatting: decimal clause can only be used on ints, uints, and doubles, was given string",
            ),
            ("\"%d %d\".format([1]) == \"\"", "index 1 out of range"),
            (
                "\"%s\".format([1, 2]) == \"\"",
                "too many arguments supplied to string.format (expected 1, got 2)",
            ),
            (
                "\"%q\".format([1]) == \"\"",
                "could not parse formatting clause: unrecognized formatting clause \"q\"",
            ),
            ("x == 1", "undeclared reference to 'x' (in container '')"),
            (
                "[].sort() == [\"a\"]",
                "found no matching overload for '_==_' applied to '(list(int), list(string))'",
            ),
            (
                "{\"k\": []}.charAt([].sort())",
                "found no matching overload for 'charAt' applied to 'map(string, list(dyn)).(list(int))'",
            ),
            (
                "math.abs([1].except([]))",
                "found no matching overload for 'math.abs' applied to '(list(int))'",
            ),
            (
                "{\"k\": []} && true",
                "expected type 'bool' but found 'map(string, list(_var0))'",
            ),
            (
                "[[], [1]] == [[\"a\"]]",
                "found no matching overload for '_==_' applied to '(list(list(int)), list(list(string)))'",
            ),
        ];
        let mut failed = Vec::new();
        for (src, want) in cases {
            let got = problems(src);
            if got != [*want] {
                failed.push(format!("{src}: want {want:?}, got {got:?}"));
            }
        }
        let multi: &[(&str, &[&str])] = &[
            (
                "[1].all(x, x > R.attr.n == 3 ? 2 : 5)",
                &[
                    "found no matching overload for '_==_' applied to '(bool, int)'",
                    "expected type 'bool' but found 'int'",
                ],
            ),
            (
                "x.y == 1 && size(1) == 1",
                &[
                    "undeclared reference to 'x' (in container '')",
                    "found no matching overload for 'size' applied to '(int)'",
                ],
            ),
            (
                "math.foo(1)",
                &[
                    "undeclared reference to 'math' (in container '')",
                    "undeclared reference to 'foo' (in container '')",
                ],
            ),
            (
                "json.parse(\"{}\") == {}",
                &[
                    "undeclared reference to 'json' (in container '')",
                    "undeclared reference to 'parse' (in container '')",
                ],
            ),
            (
                "[1].existsOne(x, 1)",
                &[
                    "undeclared reference to 'existsOne' (in container '')",
                    "undeclared reference to 'x' (in container '')",
                ],
            ),
        ];
        for (src, want) in multi {
            let got = problems(src);
            if got != *want {
                failed.push(format!("{src}: want {want:?}, got {got:?}"));
            }
        }
        for ok in [
            "timestamp(\"2021-01-01T00:00:00Z\").getHours(\"a\") == 1",
            "math.greatest(1, 2u) == \"a\"",
            "math.greatest(R.attr.x) == \"a\"",
            "dyn(1) == \"a\" && type(1) == type(\"a\") && id(1) == 1",
            "[1, \"a\"] == [1] && [1, 2u] == [1] && \"a\" in {\"a\": 1}",
            "matches(\"a\", \"(\") || \"%s\".format([R.attr.x]) == \"\" || \"%d\".format([R.attr.x]) == \"\"",
            "1 < 1.0 && [] == [1]",
            "R.id",
            "json.encode(P.attr) == \"x\" && json.encode(1) == \"1\"",
            "[1].all(i, v, v > 0) && {\"a\": 1}.transformMap(k, v, v + 1) == {} && P.roles.sortBy(r, r) == []",
        ] {
            let got = problems(ok);
            if !got.is_empty() {
                failed.push(format!("{ok}: want no problems, got {got:?}"));
            }
        }
        assert!(failed.is_empty(), "{failed:#?}");
    }
}
