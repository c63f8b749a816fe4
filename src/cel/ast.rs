//! The parsed (unresolved) CEL syntax tree.

use super::value::Value;

/// A parsed expression with the byte offset where it starts in the source.
#[derive(Clone, Debug)]
pub struct Expr {
    /// What the expression is.
    pub kind: ExprKind,
    /// Byte offset into the source text.
    pub pos: usize,
}

/// Unary operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnaryOp {
    /// `!x`
    Not,
    /// `-x`
    Neg,
}

/// Binary operators other than the short-circuiting `&&` and `||`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
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

impl BinaryOp {
    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Rem => "%",
            BinaryOp::Eq => "==",
            BinaryOp::Ne => "!=",
            BinaryOp::Lt => "<",
            BinaryOp::Le => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::Ge => ">=",
            BinaryOp::In => "in",
        }
    }
}

/// The kinds of expression.
#[derive(Clone, Debug)]
pub enum ExprKind {
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

impl Expr {
    /// The direct sub-expressions, in source order.
    pub fn children(&self) -> Vec<&Expr> {
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
