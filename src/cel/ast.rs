//! The parsed (unresolved) CEL syntax tree.

use super::value::Value;

/// A parsed expression with the byte offset where it starts in the source.
#[derive(Clone, Debug)]
pub struct Expr {
    /// What the expression is.
    pub(crate) kind: ExprKind,
    /// Byte offset into the source text.
    pub(crate) pos: usize,
}

/// Unary operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UnaryOp {
    /// `!x`
    Not,
    /// `-x`
    Neg,
}

/// Binary operators other than the short-circuiting `&&` and `||`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BinaryOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Rem,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `in`
    In,
}

impl BinaryOp {}

/// The kinds of expression.
#[derive(Clone, Debug)]
pub(crate) enum ExprKind {
    /// A literal.
    Literal(Value),
    /// An identifier (a leading `.` is dropped).
    Ident(String),
    /// `operand.field`, or `operand.?field` when `optional`.
    Select {
        /// The value selected from.
        operand: Box<Expr>,
        /// The field name.
        field: String,
        /// `.?` optional selection.
        optional: bool,
    },
    /// `operand[index]`, or `operand[?index]` when `optional`.
    Index {
        /// The value indexed.
        operand: Box<Expr>,
        /// The index.
        index: Box<Expr>,
        /// `[?` optional indexing.
        optional: bool,
    },
    /// `func(args)` or `target.func(args)`.
    Call {
        /// The receiver of a method-style call.
        target: Option<Box<Expr>>,
        /// Function name.
        func: String,
        /// Arguments.
        args: Vec<Expr>,
    },
    /// `[a, ?b]`: elements, each with whether it is optional.
    List(Vec<(Expr, bool)>),
    /// `{k: v, ?k2: v2}`.
    Map(Vec<(Expr, Expr, bool)>),
    /// `Type{field: value}` message construction.
    Struct {
        /// Message type name.
        type_name: String,
        /// Field initialisers.
        fields: Vec<(String, Expr, bool)>,
    },
    /// `!x`, `-x`.
    Unary(UnaryOp, Box<Expr>),
    /// `a op b`.
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    /// `a && b`.
    And(Box<Expr>, Box<Expr>),
    /// `a || b`.
    Or(Box<Expr>, Box<Expr>),
    /// `c ? a : b`.
    Ternary(Box<Expr>, Box<Expr>, Box<Expr>),
}

impl ExprKind {
    /// This node with each direct sub-expression replaced by `f` of it, called in source
    /// order (a call's target before its arguments, a map key before its value); the
    /// other fields are copied, and a leaf is returned as it is.
    pub(crate) fn map_children(&self, mut f: impl FnMut(&Expr) -> Expr) -> ExprKind {
        match self {
            ExprKind::Literal(_) | ExprKind::Ident(_) => self.clone(),
            ExprKind::Select {
                operand,
                field,
                optional,
            } => ExprKind::Select {
                operand: Box::new(f(operand)),
                field: field.clone(),
                optional: *optional,
            },
            ExprKind::Index {
                operand,
                index,
                optional,
            } => ExprKind::Index {
                operand: Box::new(f(operand)),
                index: Box::new(f(index)),
                optional: *optional,
            },
            ExprKind::Call { target, func, args } => ExprKind::Call {
                target: target.as_deref().map(|t| Box::new(f(t))),
                func: func.clone(),
                args: args.iter().map(&mut f).collect(),
            },
            ExprKind::List(items) => {
                ExprKind::List(items.iter().map(|(x, o)| (f(x), *o)).collect())
            }
            ExprKind::Map(entries) => ExprKind::Map(
                entries
                    .iter()
                    .map(|(k, v, o)| {
                        let k = f(k);
                        (k, f(v), *o)
                    })
                    .collect(),
            ),
            ExprKind::Struct { type_name, fields } => ExprKind::Struct {
                type_name: type_name.clone(),
                fields: fields
                    .iter()
                    .map(|(n, v, o)| (n.clone(), f(v), *o))
                    .collect(),
            },
            ExprKind::Unary(op, x) => ExprKind::Unary(*op, Box::new(f(x))),
            ExprKind::Binary(op, l, r) => {
                let l = Box::new(f(l));
                ExprKind::Binary(*op, l, Box::new(f(r)))
            }
            ExprKind::And(l, r) => {
                let l = Box::new(f(l));
                ExprKind::And(l, Box::new(f(r)))
            }
            ExprKind::Or(l, r) => {
                let l = Box::new(f(l));
                ExprKind::Or(l, Box::new(f(r)))
            }
            ExprKind::Ternary(c, a, b) => {
                let c = Box::new(f(c));
                let a = Box::new(f(a));
                ExprKind::Ternary(c, a, Box::new(f(b)))
            }
        }
    }
}

impl Expr {
    /// The direct sub-expressions, in source order.
    pub(crate) fn children(&self) -> Vec<&Expr> {
        match &self.kind {
            ExprKind::Literal(_) | ExprKind::Ident(_) => Vec::new(),
            ExprKind::Select { operand, .. } => vec![operand],
            ExprKind::Index { operand, index, .. } => vec![operand, index],
            ExprKind::Call { target, args, .. } => {
                target.as_deref().into_iter().chain(args).collect()
            }
            ExprKind::List(items) => items.iter().map(|(x, _)| x).collect(),
            ExprKind::Map(entries) => entries.iter().flat_map(|(k, v, _)| [k, v]).collect(),
            ExprKind::Struct { fields, .. } => fields.iter().map(|(_, v, _)| v).collect(),
            ExprKind::Unary(_, x) => vec![x],
            ExprKind::Binary(_, l, r) | ExprKind::And(l, r) | ExprKind::Or(l, r) => vec![l, r],
            ExprKind::Ternary(c, a, b) => vec![c, a, b],
        }
    }

    /// The direct sub-expressions, mutably, in source order (as [`Expr::children`]).
    pub(crate) fn children_mut(&mut self) -> Vec<&mut Expr> {
        match &mut self.kind {
            ExprKind::Literal(_) | ExprKind::Ident(_) => Vec::new(),
            ExprKind::Select { operand, .. } => vec![operand],
            ExprKind::Index { operand, index, .. } => vec![operand, index],
            ExprKind::Call { target, args, .. } => {
                target.as_deref_mut().into_iter().chain(args).collect()
            }
            ExprKind::List(items) => items.iter_mut().map(|(x, _)| x).collect(),
            ExprKind::Map(entries) => entries.iter_mut().flat_map(|(k, v, _)| [k, v]).collect(),
            ExprKind::Struct { fields, .. } => fields.iter_mut().map(|(_, v, _)| v).collect(),
            ExprKind::Unary(_, x) => vec![x],
            ExprKind::Binary(_, l, r) | ExprKind::And(l, r) | ExprKind::Or(l, r) => vec![l, r],
            ExprKind::Ternary(c, a, b) => vec![c, a, b],
        }
    }

    /// The identifier name, when this expression is a plain identifier.
    pub(crate) fn as_ident(&self) -> Option<&str> {
        match &self.kind {
            ExprKind::Ident(n) => Some(n),
            _ => None,
        }
    }

    /// The dotted name (`a.b.c`) when this expression is a chain of selects over an identifier.
    pub(crate) fn qualified_name(&self) -> Option<String> {
        match &self.kind {
            ExprKind::Ident(n) => Some(n.clone()),
            ExprKind::Select {
                operand,
                field,
                optional: false,
            } => operand.qualified_name().map(|q| format!("{q}.{field}")),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cel::parse;

    /// Renames every identifier `x` to `y`, recording the visiting order.
    fn rename(e: &Expr, seen: &mut Vec<String>) -> Expr {
        if let Some(n) = e.as_ident() {
            seen.push(n.to_string());
            let n = if n == "x" { "y" } else { n };
            return Expr {
                kind: ExprKind::Ident(n.to_string()),
                pos: e.pos,
            };
        }
        Expr {
            kind: e.kind.map_children(|c| rename(c, seen)),
            pos: e.pos,
        }
    }

    #[test]
    fn map_children_visits_in_source_order_and_keeps_the_rest() {
        let e = parse("a.f(x, [b, ?x], {c: x}, T{f: x}[d], !x ? e + x : x.g || h && x)")
            .expect("parses");
        let mut seen = Vec::new();
        let renamed = rename(&e, &mut seen);
        assert_eq!(
            seen,
            [
                "a", "x", "b", "x", "c", "x", "x", "d", "x", "e", "x", "x", "h", "x"
            ]
        );
        let mut after = Vec::new();
        rename(&renamed, &mut after);
        let want: Vec<&str> = seen
            .iter()
            .map(|n| if n == "x" { "y" } else { n.as_str() })
            .collect();
        assert_eq!(after, want);
        assert_eq!(
            format!("{e:?}").replace("\"x\"", "\"y\""),
            format!("{renamed:?}"),
            "only the identifiers changed"
        );
    }

    #[test]
    fn children_mut_matches_children() {
        let mut e =
            parse("a.f(x, [b], {c: d}, T{f: g}[h], !i ? j + k : l.m || n && o)").expect("parses");
        let names =
            |e: &Expr| -> Vec<String> { e.children().iter().map(|c| format!("{c:?}")).collect() };
        let before = names(&e);
        let mutable: Vec<String> = e.children_mut().iter().map(|c| format!("{c:?}")).collect();
        assert_eq!(before, mutable);
    }
}
