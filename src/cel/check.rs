//! Compile-time checks of field selections, as Cerbos's CEL type checker makes them against
//! the declared message types of `request`, `R`, `P` and `runtime`.
//!
//! Selecting a field the message does not declare (`R.attrs`, `P.idd`, `request.principl`)
//! is `undefined field 'attrs'`; selecting from a string or a list (`R.id.foo`,
//! `P.roles.x`) is `type 'string' does not support field selection`. Types flow through
//! literals, lists, maps, indexing and comprehension variables; `attr` maps, variables,
//! constants, globals and everything else stay dynamic, as in Cerbos. Of the overloads,
//! only equality (`==`, `!=`) between known types is checked here.

use super::ast::{BinaryOp, Expr, ExprKind};
use super::value::Value;

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

/// A type as far as the checker follows it.
#[derive(Clone, Debug, PartialEq)]
enum Ty {
    /// Not known until evaluation.
    Dyn,
    /// A type error was already reported for this expression.
    Error,
    /// A primitive type, by its CEL name.
    Prim(&'static str),
    List(Box<Ty>),
    Map(Box<Ty>, Box<Ty>),
    Msg(Message),
}

impl Ty {
    fn name(&self) -> String {
        match self {
            Ty::Dyn => "dyn".into(),
            Ty::Error => "!error!".into(),
            Ty::Prim("null_type") => "null".into(),
            Ty::Prim(p) => (*p).into(),
            Ty::List(e) => format!("list({})", e.name()),
            Ty::Map(k, v) => format!("map({}, {})", k.name(), v.name()),
            Ty::Msg(m) => match m {
                Message::Request => "cerbos.engine.v1.Request",
                Message::Principal => "cerbos.engine.v1.Request.Principal",
                Message::Resource => "cerbos.engine.v1.Request.Resource",
                Message::AuxData => "cerbos.engine.v1.AuxData",
                Message::Jwt => "cerbos.engine.v1.AuxData.JWT",
                Message::Runtime => "cerbos.engine.v1.Runtime",
            }
            .into(),
        }
    }
}

fn string() -> Ty {
    Ty::Prim("string")
}

fn attr_map() -> Ty {
    Ty::Map(Box::new(string()), Box::new(Ty::Dyn))
}

/// The type of `message.field`, or `None` when the message has no such field (proto and
/// JSON names both select, as in Cerbos).
fn field(message: Message, field: &str) -> Option<Ty> {
    Some(match (message, field) {
        (Message::Request, "principal") => Ty::Msg(Message::Principal),
        (Message::Request, "resource") => Ty::Msg(Message::Resource),
        (Message::Request, "auxData" | "aux_data") => Ty::Msg(Message::AuxData),
        (Message::Principal, "id" | "scope" | "policyVersion" | "policy_version") => string(),
        (Message::Principal, "roles") => Ty::List(Box::new(string())),
        (Message::Principal | Message::Resource, "attr") => attr_map(),
        (Message::Resource, "id" | "kind" | "scope" | "policyVersion" | "policy_version") => {
            string()
        }
        (Message::AuxData, "jwt") => attr_map(),
        (Message::AuxData, "jwts") => Ty::Map(Box::new(string()), Box::new(Ty::Msg(Message::Jwt))),
        (Message::Jwt, "claims") => attr_map(),
        (Message::Runtime, "effectiveDerivedRoles" | "effective_derived_roles") => {
            Ty::List(Box::new(string()))
        }
        _ => return None,
    })
}

/// The problems Cerbos's type checker reports for field selections in `expr`, in source
/// order (empty when there are none).
pub(crate) fn field_problems(expr: &Expr) -> Vec<String> {
    let mut c = Checker {
        locals: Vec::new(),
        problems: Vec::new(),
    };
    c.infer(expr);
    c.problems
}

struct Checker {
    /// Comprehension and `cel.bind` variables in scope, innermost last.
    locals: Vec<(String, Ty)>,
    problems: Vec<String>,
}

impl Checker {
    fn ident(&self, name: &str) -> Ty {
        if let Some((_, t)) = self.locals.iter().rev().find(|(n, _)| n == name) {
            return t.clone();
        }
        match name {
            "request" => Ty::Msg(Message::Request),
            "R" => Ty::Msg(Message::Resource),
            "P" => Ty::Msg(Message::Principal),
            "runtime" => Ty::Msg(Message::Runtime),
            _ => Ty::Dyn,
        }
    }

    fn select(&mut self, operand: Ty, name: &str) -> Ty {
        match operand {
            Ty::Msg(m) => field(m, name).unwrap_or_else(|| {
                self.problems.push(format!("undefined field '{name}'"));
                Ty::Error
            }),
            Ty::Map(_, v) => *v,
            Ty::Prim(_) | Ty::List(_) => {
                self.problems.push(format!(
                    "type '{}' does not support field selection",
                    operand.name()
                ));
                Ty::Error
            }
            Ty::Dyn | Ty::Error => operand,
        }
    }

    /// The common type of some expressions: theirs when they agree, else `dyn`.
    fn common(&mut self, items: Vec<Ty>) -> Ty {
        let mut it = items.into_iter();
        let Some(first) = it.next() else {
            return Ty::Dyn;
        };
        if it.all(|t| t == first) {
            first
        } else {
            Ty::Dyn
        }
    }

    /// A comprehension: the iteration variable(s) bound to the range's element types
    /// while the remaining arguments are checked.
    fn comprehension(&mut self, range: Ty, args: &[Expr]) -> Ty {
        let vars: Vec<&str> = args.iter().map_while(Expr::as_ident).collect();
        let n = vars.len().min(args.len().saturating_sub(1)).min(2);
        let (first, second) = match &range {
            Ty::List(e) if n == 1 => ((**e).clone(), Ty::Dyn),
            Ty::List(e) => (Ty::Prim("int"), (**e).clone()),
            Ty::Map(k, v) => ((**k).clone(), (**v).clone()),
            _ => (Ty::Dyn, Ty::Dyn),
        };
        let bound = self.locals.len();
        for (i, v) in vars.iter().take(n).enumerate() {
            let t = if i == 0 {
                first.clone()
            } else {
                second.clone()
            };
            self.locals.push(((*v).to_string(), t));
        }
        for a in &args[n..] {
            self.infer(a);
        }
        self.locals.truncate(bound);
        Ty::Dyn
    }

    fn infer(&mut self, e: &Expr) -> Ty {
        match &e.kind {
            ExprKind::Literal(v) => match v {
                Value::String(_) => string(),
                Value::Int(_) => Ty::Prim("int"),
                Value::Uint(_) => Ty::Prim("uint"),
                Value::Double(_) => Ty::Prim("double"),
                Value::Bool(_) => Ty::Prim("bool"),
                Value::Bytes(_) => Ty::Prim("bytes"),
                Value::Null => Ty::Prim("null_type"),
                _ => Ty::Dyn,
            },
            ExprKind::Ident(n) => self.ident(n),
            ExprKind::Select {
                operand,
                field,
                optional,
            } => {
                let t = self.infer(operand);
                let selected = self.select(t, field);
                if *optional { Ty::Dyn } else { selected }
            }
            ExprKind::Index { operand, index, .. } => {
                let t = self.infer(operand);
                self.infer(index);
                match t {
                    Ty::List(e) => *e,
                    Ty::Map(_, v) => *v,
                    Ty::Error => Ty::Error,
                    _ => Ty::Dyn,
                }
            }
            ExprKind::Call { target, func, args } => match (target.as_deref(), func.as_str()) {
                (None, "has") if args.len() == 1 => {
                    self.infer(&args[0]);
                    Ty::Prim("bool")
                }
                (Some(t), "bind") if t.as_ident() == Some("cel") && args.len() == 3 => {
                    let init = self.infer(&args[1]);
                    let bound = self.locals.len();
                    if let Some(v) = args[0].as_ident() {
                        self.locals.push((v.to_string(), init));
                    }
                    let body = self.infer(&args[2]);
                    self.locals.truncate(bound);
                    body
                }
                (
                    Some(t),
                    "all" | "exists" | "exists_one" | "existsOne" | "map" | "filter" | "sortBy"
                    | "transformList" | "transformMap" | "transformMapEntry",
                ) if args.first().and_then(Expr::as_ident).is_some() => {
                    let range = self.infer(t);
                    self.comprehension(range, args)
                }
                _ => {
                    if let Some(t) = target {
                        self.infer(t);
                    }
                    for a in args {
                        self.infer(a);
                    }
                    Ty::Dyn
                }
            },
            ExprKind::List(items) => {
                let types: Vec<Ty> = items.iter().map(|(x, _)| self.infer(x)).collect();
                let elem = self.common(types);
                Ty::List(Box::new(elem))
            }
            ExprKind::Map(entries) => {
                let mut keys = Vec::new();
                let mut values = Vec::new();
                for (k, v, _) in entries {
                    keys.push(self.infer(k));
                    values.push(self.infer(v));
                }
                let (k, v) = (self.common(keys), self.common(values));
                Ty::Map(Box::new(k), Box::new(v))
            }
            ExprKind::Binary(op @ (BinaryOp::Eq | BinaryOp::Ne), l, r) => {
                let (lt, rt) = (self.infer(l), self.infer(r));
                if !comparable(&lt, &rt) {
                    let func = if *op == BinaryOp::Eq { "_==_" } else { "_!=_" };
                    self.problems.push(format!(
                        "found no matching overload for '{func}' applied to '({}, {})'",
                        lt.name(),
                        rt.name()
                    ));
                    return Ty::Error;
                }
                Ty::Prim("bool")
            }
            _ => {
                for c in e.children() {
                    self.infer(c);
                }
                Ty::Dyn
            }
        }
    }
}

/// Whether Cerbos's checker finds an equality overload for these operand types: `dyn`
/// (and an already reported error) matches anything, lists and maps compare their
/// parameters, and int and uint compare with each other.
fn comparable(a: &Ty, b: &Ty) -> bool {
    match (a, b) {
        (Ty::Dyn | Ty::Error, _) | (_, Ty::Dyn | Ty::Error) => true,
        (Ty::Prim("int" | "uint"), Ty::Prim("int" | "uint")) => true,
        (Ty::Prim(x), Ty::Prim(y)) => x == y,
        (Ty::List(x), Ty::List(y)) => comparable(x, y),
        (Ty::Map(k1, v1), Ty::Map(k2, v2)) => comparable(k1, k2) && comparable(v1, v2),
        (Ty::Msg(x), Ty::Msg(y)) => x == y,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(src: &str) -> Vec<String> {
        field_problems(&crate::cel::parse(src).expect("parses"))
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
        let eq: &[(&str, &str)] = &[
            ("1 == 1.0", "'_==_' applied to '(int, double)'"),
            ("R.id == 1", "'_==_' applied to '(string, int)'"),
            (
                "P.roles == [1]",
                "'_==_' applied to '(list(string), list(int))'",
            ),
            ("R.id == null", "'_==_' applied to '(string, null)'"),
            ("R.id != 1", "'_!=_' applied to '(string, int)'"),
            (
                "R == P",
                "'_==_' applied to '(cerbos.engine.v1.Request.Resource, cerbos.engine.v1.Request.Principal)'",
            ),
        ];
        for (src, want) in eq {
            assert_eq!(
                problems(src),
                [format!("found no matching overload for {want}")],
                "{src}"
            );
        }
        for ok in [
            "P.roles == [\"a\"] && R.attr == {} && R.attr.x == 1 && [1] == [R.attr.x]",
            "R.id == R.attr.x && P.roles == [] && 1u == 1 && R.attr == {\"a\": 1}",
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
}
