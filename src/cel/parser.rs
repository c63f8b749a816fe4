//! CEL lexer and recursive-descent parser.
//!
//! Grammar and precedence follow the CEL specification: `?:` < `||` < `&&` <
//! relations (`< <= > >= == != in`) < `+ -` < `* / %` < unary `! -` < member
//! access, calls and indexing.

use std::sync::Arc;

use super::ast::{BinaryOp, Expr, ExprKind, UnaryOp};
use super::value::Value;

/// A syntax error at a byte offset in the expression.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    /// What is wrong.
    pub(crate) message: String,
    /// Byte offset in the source.
    pub(crate) pos: usize,
}

/// Maximum nesting of the parser's recursion (parentheses, literals, unary operators),
/// so hostile input cannot overflow the stack.
const MAX_DEPTH: usize = 96;

/// Maximum height of the syntax tree (long `a && b && ...` or `a.b.c...` chains), so that
/// compiling, evaluating and dropping it cannot overflow the stack either.
const MAX_HEIGHT: usize = 1000;

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Int(i64),
    /// An integer literal too large for i64 that only fits after negation.
    IntMinMagnitude,
    Uint(u64),
    Double(f64),
    Str(String),
    Bytes(Vec<u8>),
    Ident(String),
    /// A backquoted field name (`` m.`content-type` ``), allowed only after `.` and `.?`.
    QuotedIdent(String),
    Punct(&'static str),
    Eof,
}

struct Lexer<'a> {
    src: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

const PUNCTS: &[&str] = &[
    "==", "!=", "<=", ">=", "&&", "||", ".?", "(", ")", "[", "]", "{", "}", ".", ",", "?", ":",
    "!", "-", "+", "*", "/", "%", "<", ">",
];

impl<'a> Lexer<'a> {
    fn err<T>(&self, pos: usize, msg: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError {
            message: msg.into(),
            pos,
        })
    }

    fn skip_ws(&mut self) {
        loop {
            while self.pos < self.bytes.len() && self.bytes[self.pos].is_ascii_whitespace() {
                self.pos += 1;
            }
            if self.src[self.pos..].starts_with("//") {
                while self.pos < self.bytes.len() && self.bytes[self.pos] != b'\n' {
                    self.pos += 1;
                }
            } else {
                break;
            }
        }
    }

    fn next(&mut self) -> Result<(Tok, usize), ParseError> {
        self.skip_ws();
        let start = self.pos;
        let Some(&c) = self.bytes.get(self.pos) else {
            return Ok((Tok::Eof, start));
        };
        if c.is_ascii_digit()
            || (c == b'.' && self.bytes.get(self.pos + 1).is_some_and(u8::is_ascii_digit))
        {
            return self.number().map(|t| (t, start));
        }
        if c == b'"' || c == b'\'' {
            return self.string(false, false).map(|t| (t, start));
        }
        if c == b'`' {
            return self.quoted_ident().map(|t| (t, start));
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            // String prefixes: r, b, rb, br (any case).
            let rest = &self.bytes[self.pos..];
            let is_quote = |b: Option<&u8>| matches!(b, Some(b'"') | Some(b'\''));
            let (raw, bytes, skip) = match rest {
                [a, b, ..]
                    if is_quote(rest.get(2))
                        && matches!(
                            (a.to_ascii_lowercase(), b.to_ascii_lowercase()),
                            (b'r', b'b') | (b'b', b'r')
                        ) =>
                {
                    (true, true, 2)
                }
                [a, ..] if is_quote(rest.get(1)) && a.eq_ignore_ascii_case(&b'r') => {
                    (true, false, 1)
                }
                [a, ..] if is_quote(rest.get(1)) && a.eq_ignore_ascii_case(&b'b') => {
                    (false, true, 1)
                }
                _ => (false, false, 0),
            };
            if skip > 0 {
                self.pos += skip;
                return self.string(raw, bytes).map(|t| (t, start));
            }
            while self.pos < self.bytes.len()
                && (self.bytes[self.pos].is_ascii_alphanumeric() || self.bytes[self.pos] == b'_')
            {
                self.pos += 1;
            }
            return Ok((Tok::Ident(self.src[start..self.pos].to_string()), start));
        }
        for p in PUNCTS {
            if self.src[self.pos..].starts_with(p) {
                // `.?` only when followed by an identifier start (optional field selection).
                if *p == ".?" {
                    let after = self.bytes.get(self.pos + 2);
                    if !after.is_some_and(|b| {
                        b.is_ascii_alphabetic()
                            || *b == b'_'
                            || *b == b'`'
                            || b.is_ascii_whitespace()
                    }) {
                        continue;
                    }
                }
                self.pos += p.len();
                return Ok((Tok::Punct(p), start));
            }
        }
        let ch = self.src[self.pos..].chars().next().unwrap_or('?');
        self.err(start, format!("token recognition error at: '{ch}'"))
    }

    /// A backquoted identifier: letters, digits and `_ . - / ` and spaces (cel-go's
    /// `ESC_IDENTIFIER`).
    fn quoted_ident(&mut self) -> Result<Tok, ParseError> {
        let start = self.pos;
        self.pos += 1;
        let body = self.pos;
        while let Some(&b) = self.bytes.get(self.pos) {
            if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'/' | b' ') {
                self.pos += 1;
            } else {
                break;
            }
        }
        if self.pos == body || self.bytes.get(self.pos) != Some(&b'`') {
            return self.err(start, "token recognition error at: '`'");
        }
        self.pos += 1;
        Ok(Tok::QuotedIdent(self.src[body..self.pos - 1].to_string()))
    }

    fn number(&mut self) -> Result<Tok, ParseError> {
        let start = self.pos;
        let b = self.bytes;
        if b[self.pos] == b'0' && matches!(b.get(self.pos + 1), Some(b'x') | Some(b'X')) {
            self.pos += 2;
            let ds = self.pos;
            while self.pos < b.len() && b[self.pos].is_ascii_hexdigit() {
                self.pos += 1;
            }
            let digits = &self.src[ds..self.pos];
            if digits.is_empty() {
                return self.err(start, "invalid hex literal");
            }
            if matches!(b.get(self.pos), Some(b'u') | Some(b'U')) {
                self.pos += 1;
                return u64::from_str_radix(digits, 16)
                    .map(Tok::Uint)
                    .or_else(|_| self.err(start, "invalid uint literal"));
            }
            return match i64::from_str_radix(digits, 16) {
                Ok(i) => Ok(Tok::Int(i)),
                Err(_) if digits.eq_ignore_ascii_case("8000000000000000") => {
                    Ok(Tok::IntMinMagnitude)
                }
                Err(_) => self.err(start, "invalid int literal"),
            };
        }
        while self.pos < b.len() && b[self.pos].is_ascii_digit() {
            self.pos += 1;
        }
        let mut is_double = false;
        if b.get(self.pos) == Some(&b'.') && b.get(self.pos + 1).is_some_and(u8::is_ascii_digit) {
            is_double = true;
            self.pos += 1;
            while self.pos < b.len() && b[self.pos].is_ascii_digit() {
                self.pos += 1;
            }
        }
        if matches!(b.get(self.pos), Some(b'e') | Some(b'E')) {
            let save = self.pos;
            self.pos += 1;
            if matches!(b.get(self.pos), Some(b'+') | Some(b'-')) {
                self.pos += 1;
            }
            if b.get(self.pos).is_some_and(u8::is_ascii_digit) {
                is_double = true;
                while self.pos < b.len() && b[self.pos].is_ascii_digit() {
                    self.pos += 1;
                }
            } else {
                self.pos = save;
            }
        }
        let text = &self.src[start..self.pos];
        if is_double {
            return text
                .parse::<f64>()
                .map(Tok::Double)
                .or_else(|_| self.err(start, "invalid double literal"));
        }
        if matches!(b.get(self.pos), Some(b'u') | Some(b'U')) {
            self.pos += 1;
            return text
                .parse::<u64>()
                .map(Tok::Uint)
                .or_else(|_| self.err(start, "invalid uint literal"));
        }
        match text.parse::<i64>() {
            Ok(i) => Ok(Tok::Int(i)),
            Err(_) if text == "9223372036854775808" => Ok(Tok::IntMinMagnitude),
            Err(_) => self.err(start, "invalid int literal"),
        }
    }

    fn string(&mut self, raw: bool, bytes: bool) -> Result<Tok, ParseError> {
        let start = self.pos;
        let q = self.bytes[self.pos];
        let triple =
            self.bytes.get(self.pos + 1) == Some(&q) && self.bytes.get(self.pos + 2) == Some(&q);
        self.pos += if triple { 3 } else { 1 };
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(&c) = self.bytes.get(self.pos) else {
                return self.err(start, "unterminated string literal");
            };
            if triple {
                if c == q
                    && self.bytes.get(self.pos + 1) == Some(&q)
                    && self.bytes.get(self.pos + 2) == Some(&q)
                {
                    self.pos += 3;
                    break;
                }
            } else if c == q {
                self.pos += 1;
                break;
            } else if c == b'\n' || c == b'\r' {
                return self.err(start, "unterminated string literal");
            }
            if c == b'\\' && !raw {
                self.escape(&mut out, bytes)?;
                continue;
            }
            // Copy one UTF-8 character.
            let ch_len = self.src[self.pos..]
                .chars()
                .next()
                .map_or(1, char::len_utf8);
            out.extend_from_slice(&self.bytes[self.pos..self.pos + ch_len]);
            self.pos += ch_len;
        }
        if bytes {
            Ok(Tok::Bytes(out))
        } else {
            String::from_utf8(out)
                .map(Tok::Str)
                .or_else(|_| self.err(start, "invalid UTF-8 in string literal"))
        }
    }

    fn escape(&mut self, out: &mut Vec<u8>, bytes: bool) -> Result<(), ParseError> {
        let at = self.pos;
        self.pos += 1;
        let Some(&c) = self.bytes.get(self.pos) else {
            return self.err(at, "unterminated escape sequence");
        };
        self.pos += 1;
        let simple = match c {
            b'a' => Some(0x07),
            b'b' => Some(0x08),
            b'f' => Some(0x0c),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'v' => Some(0x0b),
            b'\\' | b'\'' | b'"' | b'`' | b'?' => Some(c),
            _ => None,
        };
        if let Some(s) = simple {
            out.push(s);
            return Ok(());
        }
        let hex = |lexer: &mut Lexer, n: usize| -> Result<u32, ParseError> {
            let s = lexer.src.get(lexer.pos..lexer.pos + n).unwrap_or("");
            let v =
                u32::from_str_radix(s, 16).or_else(|_| lexer.err(at, "invalid escape sequence"))?;
            lexer.pos += n;
            Ok(v)
        };
        match c {
            b'x' | b'X' => {
                let v = hex(self, 2)?;
                push_code(out, v, bytes).ok_or(ParseError {
                    message: "invalid escape sequence".into(),
                    pos: at,
                })?;
            }
            b'u' => {
                let v = hex(self, 4)?;
                push_char(out, v).ok_or(ParseError {
                    message: "invalid unicode escape".into(),
                    pos: at,
                })?;
            }
            b'U' => {
                let v = hex(self, 8)?;
                push_char(out, v).ok_or(ParseError {
                    message: "invalid unicode escape".into(),
                    pos: at,
                })?;
            }
            b'0'..=b'3' => {
                let s = self.src.get(self.pos - 1..self.pos + 2).unwrap_or("");
                let v =
                    u32::from_str_radix(s, 8).or_else(|_| self.err(at, "invalid octal escape"))?;
                self.pos += 2;
                push_code(out, v, bytes).ok_or(ParseError {
                    message: "invalid escape sequence".into(),
                    pos: at,
                })?;
            }
            _ => return self.err(at, "invalid escape sequence"),
        }
        Ok(())
    }
}

/// In bytes literals `\xNN` is one byte; in strings it is the code point U+00NN.
fn push_code(out: &mut Vec<u8>, v: u32, bytes: bool) -> Option<()> {
    if bytes {
        out.push(u8::try_from(v).ok()?);
        Some(())
    } else {
        push_char(out, v)
    }
}

fn push_char(out: &mut Vec<u8>, v: u32) -> Option<()> {
    let ch = char::from_u32(v)?;
    let mut buf = [0u8; 4];
    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
    Some(())
}

/// Parses a CEL expression.
pub fn parse(src: &str) -> Result<Expr, ParseError> {
    let mut p = Parser {
        lexer: Lexer {
            src,
            bytes: src.as_bytes(),
            pos: 0,
        },
        tok: Tok::Eof,
        tok_pos: 0,
        depth: 0,
        height: 0,
    };
    p.advance()?;
    let e = p.expr()?;
    if p.tok != Tok::Eof {
        return Err(p.unexpected());
    }
    Ok(e)
}

struct Parser<'a> {
    lexer: Lexer<'a>,
    tok: Tok,
    tok_pos: usize,
    depth: usize,
    height: usize,
}

const RESERVED: &[&str] = &[
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
];

impl Parser<'_> {
    fn advance(&mut self) -> Result<(), ParseError> {
        let (t, p) = self.lexer.next()?;
        self.tok = t;
        self.tok_pos = p;
        Ok(())
    }

    fn unexpected(&self) -> ParseError {
        let what = match &self.tok {
            Tok::Eof => "<EOF>".to_string(),
            Tok::Punct(p) => (*p).to_string(),
            Tok::Ident(i) => i.clone(),
            _ => self.lexer.src[self.tok_pos..self.lexer.pos].to_string(),
        };
        ParseError {
            message: format!("Syntax error: mismatched input '{what}'"),
            pos: self.tok_pos,
        }
    }

    fn is(&self, p: &str) -> bool {
        matches!(&self.tok, Tok::Punct(x) if *x == p)
    }

    fn eat(&mut self, p: &str) -> Result<bool, ParseError> {
        if self.is(p) {
            self.advance()?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    fn expect(&mut self, p: &str) -> Result<(), ParseError> {
        if self.eat(p)? {
            Ok(())
        } else {
            let mut e = self.unexpected();
            e.message = format!("{} expecting '{p}'", e.message);
            Err(e)
        }
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ParseError {
                message: "expression recursion limit exceeded".into(),
                pos: self.tok_pos,
            });
        }
        self.grow()
    }

    fn leave(&mut self) {
        self.depth -= 1;
        self.height -= 1;
    }

    /// Accounts for one more level of tree height on the current path.
    fn grow(&mut self) -> Result<(), ParseError> {
        self.height += 1;
        if self.height > MAX_HEIGHT {
            return Err(ParseError {
                message: "expression is nested too deeply".into(),
                pos: self.tok_pos,
            });
        }
        Ok(())
    }

    fn expr(&mut self) -> Result<Expr, ParseError> {
        self.enter()?;
        let pos = self.tok_pos;
        let cond = self.or()?;
        let out = if self.eat("?")? {
            let a = self.or()?;
            self.expect(":")?;
            let b = self.expr()?;
            Expr {
                kind: ExprKind::Ternary(Box::new(cond), Box::new(a), Box::new(b)),
                pos,
            }
        } else {
            cond
        };
        self.leave();
        Ok(out)
    }

    fn or(&mut self) -> Result<Expr, ParseError> {
        let mut l = self.and()?;
        let mut grown = 0;
        while self.is("||") {
            let pos = self.tok_pos;
            self.advance()?;
            let r = self.and()?;
            l = Expr {
                kind: ExprKind::Or(Box::new(l), Box::new(r)),
                pos,
            };
            self.grow()?;
            grown += 1;
        }
        self.height -= grown;
        Ok(l)
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut l = self.relation()?;
        let mut grown = 0;
        while self.is("&&") {
            let pos = self.tok_pos;
            self.advance()?;
            let r = self.relation()?;
            l = Expr {
                kind: ExprKind::And(Box::new(l), Box::new(r)),
                pos,
            };
            self.grow()?;
            grown += 1;
        }
        self.height -= grown;
        Ok(l)
    }

    fn relation(&mut self) -> Result<Expr, ParseError> {
        let mut l = self.addition()?;
        let mut grown = 0;
        loop {
            let op = match &self.tok {
                Tok::Punct("==") => BinaryOp::Eq,
                Tok::Punct("!=") => BinaryOp::Ne,
                Tok::Punct("<") => BinaryOp::Lt,
                Tok::Punct("<=") => BinaryOp::Le,
                Tok::Punct(">") => BinaryOp::Gt,
                Tok::Punct(">=") => BinaryOp::Ge,
                Tok::Ident(i) if i == "in" => BinaryOp::In,
                _ => break,
            };
            let pos = self.tok_pos;
            self.advance()?;
            let r = self.addition()?;
            l = Expr {
                kind: ExprKind::Binary(op, Box::new(l), Box::new(r)),
                pos,
            };
            self.grow()?;
            grown += 1;
        }
        self.height -= grown;
        Ok(l)
    }

    fn addition(&mut self) -> Result<Expr, ParseError> {
        let mut l = self.multiplication()?;
        let mut grown = 0;
        loop {
            let op = match &self.tok {
                Tok::Punct("+") => BinaryOp::Add,
                Tok::Punct("-") => BinaryOp::Sub,
                _ => break,
            };
            let pos = self.tok_pos;
            self.advance()?;
            let r = self.multiplication()?;
            l = Expr {
                kind: ExprKind::Binary(op, Box::new(l), Box::new(r)),
                pos,
            };
            self.grow()?;
            grown += 1;
        }
        self.height -= grown;
        Ok(l)
    }

    fn multiplication(&mut self) -> Result<Expr, ParseError> {
        let mut l = self.unary()?;
        let mut grown = 0;
        loop {
            let op = match &self.tok {
                Tok::Punct("*") => BinaryOp::Mul,
                Tok::Punct("/") => BinaryOp::Div,
                Tok::Punct("%") => BinaryOp::Rem,
                _ => break,
            };
            let pos = self.tok_pos;
            self.advance()?;
            let r = self.unary()?;
            l = Expr {
                kind: ExprKind::Binary(op, Box::new(l), Box::new(r)),
                pos,
            };
            self.grow()?;
            grown += 1;
        }
        self.height -= grown;
        Ok(l)
    }

    /// `!` and `-` as cel-go parses them: a run of the same operator applies once when its
    /// length is odd and not at all when it is even (`!!x` is `x`, `--x` is `x`).
    fn unary(&mut self) -> Result<Expr, ParseError> {
        let pos = self.tok_pos;
        if self.is("!") {
            let mut n = 0usize;
            while self.is("!") {
                self.advance()?;
                n += 1;
            }
            self.enter()?;
            let e = self.unary()?;
            self.leave();
            if n.is_multiple_of(2) {
                return Ok(e);
            }
            return Ok(Expr {
                kind: ExprKind::Unary(UnaryOp::Not, Box::new(e)),
                pos,
            });
        }
        if self.is("-") {
            let mut n = 0usize;
            while self.is("-") {
                self.advance()?;
                n += 1;
            }
            self.enter()?;
            // Fold a negative numeric literal, so that -9223372036854775808 is valid; the
            // other minus signs of the run apply to it.
            let (e, negations) = match &self.tok {
                Tok::IntMinMagnitude => {
                    self.advance()?;
                    let lit = Expr {
                        kind: ExprKind::Literal(Value::Int(i64::MIN)),
                        pos,
                    };
                    (self.member_suffix(lit)?, n - 1)
                }
                Tok::Int(i) if !self.next_is_member() => {
                    let v = -*i;
                    self.advance()?;
                    let lit = Expr {
                        kind: ExprKind::Literal(Value::Int(v)),
                        pos,
                    };
                    (lit, n - 1)
                }
                Tok::Double(d) if !self.next_is_member() => {
                    let v = -*d;
                    self.advance()?;
                    let lit = Expr {
                        kind: ExprKind::Literal(Value::Double(v)),
                        pos,
                    };
                    (lit, n - 1)
                }
                _ => (self.unary()?, n),
            };
            self.leave();
            if negations.is_multiple_of(2) {
                return Ok(e);
            }
            return Ok(Expr {
                kind: ExprKind::Unary(UnaryOp::Neg, Box::new(e)),
                pos,
            });
        }
        let prim = self.primary()?;
        self.member_suffix(prim)
    }

    /// Whether the token after the current one starts a member access (`.` or `[`).
    fn next_is_member(&self) -> bool {
        let rest = self.lexer.src[self.lexer.pos..].trim_start();
        rest.starts_with('.') || rest.starts_with('[')
    }

    fn member_suffix(&mut self, mut e: Expr) -> Result<Expr, ParseError> {
        let mut grown = 0;
        loop {
            if grown > 0 || self.is(".") || self.is(".?") || self.is("[") {
                self.grow()?;
                grown += 1;
            }
            let pos = self.tok_pos;
            if self.is(".") || self.is(".?") {
                let optional = self.is(".?");
                self.advance()?;
                let (name, quoted) = match self.tok.clone() {
                    Tok::Ident(name) => (name, false),
                    Tok::QuotedIdent(name) => (name, true),
                    _ => return Err(self.unexpected()),
                };
                self.advance()?;
                if !optional && !quoted && self.is("(") {
                    self.advance()?;
                    let args = self.args(")")?;
                    e = Expr {
                        kind: ExprKind::Call {
                            target: Some(Box::new(e)),
                            func: name,
                            args,
                        },
                        pos,
                    };
                } else {
                    e = Expr {
                        kind: ExprKind::Select {
                            operand: Box::new(e),
                            field: name,
                            optional,
                        },
                        pos,
                    };
                }
            } else if self.is("[") {
                self.advance()?;
                let optional = self.eat("?")?;
                let idx = self.expr()?;
                self.expect("]")?;
                e = Expr {
                    kind: ExprKind::Index {
                        operand: Box::new(e),
                        index: Box::new(idx),
                        optional,
                    },
                    pos,
                };
            } else if self.is("{")
                && let Some(type_name) = e.qualified_name()
            {
                self.advance()?;
                let mut fields = Vec::new();
                while !self.is("}") {
                    let optional = self.eat("?")?;
                    let Tok::Ident(f) = self.tok.clone() else {
                        return Err(self.unexpected());
                    };
                    self.advance()?;
                    self.expect(":")?;
                    let v = self.expr()?;
                    fields.push((f, v, optional));
                    if !self.eat(",")? {
                        break;
                    }
                }
                self.expect("}")?;
                e = Expr {
                    kind: ExprKind::Struct { type_name, fields },
                    pos: e.pos,
                };
            } else {
                self.height -= grown;
                return Ok(e);
            }
        }
    }

    fn args(&mut self, close: &str) -> Result<Vec<Expr>, ParseError> {
        let mut args = Vec::new();
        if self.eat(close)? {
            return Ok(args);
        }
        loop {
            args.push(self.expr()?);
            if self.eat(",")? {
                if self.eat(close)? {
                    return Ok(args);
                }
                continue;
            }
            self.expect(close)?;
            return Ok(args);
        }
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        let pos = self.tok_pos;
        let tok = self.tok.clone();
        let lit = |v: Value| Expr {
            kind: ExprKind::Literal(v),
            pos,
        };
        match tok {
            Tok::Int(i) => {
                self.advance()?;
                Ok(lit(Value::Int(i)))
            }
            Tok::IntMinMagnitude => Err(ParseError {
                message: "invalid int literal".into(),
                pos,
            }),
            Tok::Uint(u) => {
                self.advance()?;
                Ok(lit(Value::Uint(u)))
            }
            Tok::Double(d) => {
                self.advance()?;
                Ok(lit(Value::Double(d)))
            }
            Tok::Str(s) => {
                self.advance()?;
                Ok(lit(Value::String(Arc::from(s))))
            }
            Tok::Bytes(b) => {
                self.advance()?;
                Ok(lit(Value::Bytes(Arc::from(b))))
            }
            Tok::Ident(name) => {
                self.advance()?;
                match name.as_str() {
                    "true" => return Ok(lit(Value::Bool(true))),
                    "false" => return Ok(lit(Value::Bool(false))),
                    "null" => return Ok(lit(Value::Null)),
                    "in" => {
                        return Err(ParseError {
                            message: "Syntax error: mismatched input 'in'".into(),
                            pos,
                        });
                    }
                    n if RESERVED.contains(&n) => {
                        return Err(ParseError {
                            message: format!("reserved identifier: {n}"),
                            pos,
                        });
                    }
                    _ => {}
                }
                self.ident_or_call(name, pos)
            }
            Tok::Punct(".") => {
                // Leading-dot identifier: `.a.b` resolves from the root scope.
                self.advance()?;
                let Tok::Ident(name) = self.tok.clone() else {
                    return Err(self.unexpected());
                };
                self.advance()?;
                self.ident_or_call(name, pos)
            }
            Tok::Punct("(") => {
                self.advance()?;
                let e = self.expr()?;
                self.expect(")")?;
                Ok(e)
            }
            Tok::Punct("[") => self.list_literal(pos),
            Tok::Punct("{") => self.map_literal(pos),
            _ => Err(self.unexpected()),
        }
    }

    /// After an identifier `name` (at `pos`): a global call when `(` follows, else the
    /// identifier.
    fn ident_or_call(&mut self, name: String, pos: usize) -> Result<Expr, ParseError> {
        if self.is("(") {
            self.advance()?;
            let args = self.args(")")?;
            return Ok(Expr {
                kind: ExprKind::Call {
                    target: None,
                    func: name,
                    args,
                },
                pos,
            });
        }
        Ok(Expr {
            kind: ExprKind::Ident(name),
            pos,
        })
    }

    /// `[a, ?b, ...]` (at `[`).
    fn list_literal(&mut self, pos: usize) -> Result<Expr, ParseError> {
        self.enter()?;
        self.advance()?;
        let mut items = Vec::new();
        while !self.is("]") {
            let optional = self.eat("?")?;
            items.push((self.expr()?, optional));
            if !self.eat(",")? {
                break;
            }
        }
        self.expect("]")?;
        self.leave();
        Ok(Expr {
            kind: ExprKind::List(items),
            pos,
        })
    }

    /// `{k: v, ?k2: v2, ...}` (at `{`).
    fn map_literal(&mut self, pos: usize) -> Result<Expr, ParseError> {
        self.enter()?;
        self.advance()?;
        let mut entries = Vec::new();
        while !self.is("}") {
            let optional = self.eat("?")?;
            let k = self.expr()?;
            self.expect(":")?;
            let v = self.expr()?;
            entries.push((k, v, optional));
            if !self.eat(",")? {
                break;
            }
        }
        self.expect("}")?;
        self.leave();
        Ok(Expr {
            kind: ExprKind::Map(entries),
            pos,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Expr {
        parse(s).unwrap_or_else(|e| panic!("{s}: {e:?}"))
    }

    #[test]
    fn parses_precedence() {
        let e = ok("a || b && c == 1 + 2 * 3");
        assert!(matches!(e.kind, ExprKind::Or(..)));
        let e = ok("x ? y : z ? 1 : 2");
        assert!(matches!(e.kind, ExprKind::Ternary(..)));
    }

    #[test]
    fn parses_literals() {
        assert!(matches!(
            ok("-9223372036854775808").kind,
            ExprKind::Literal(Value::Int(i64::MIN))
        ));
        assert!(matches!(
            ok("0x1Fu").kind,
            ExprKind::Literal(Value::Uint(31))
        ));
        assert!(matches!(ok("1e3").kind, ExprKind::Literal(Value::Double(d)) if d == 1000.0));
        match ok(r#""a\n\x41\u00e9""#).kind {
            ExprKind::Literal(Value::String(s)) => assert_eq!(&*s, "a\nAé"),
            k => panic!("{k:?}"),
        }
        match ok(r"r'\1'").kind {
            ExprKind::Literal(Value::String(s)) => assert_eq!(&*s, "\\1"),
            k => panic!("{k:?}"),
        }
        match ok("'''a'b'''").kind {
            ExprKind::Literal(Value::String(s)) => assert_eq!(&*s, "a'b"),
            k => panic!("{k:?}"),
        }
        match ok(r#"b"\xff""#).kind {
            ExprKind::Literal(Value::Bytes(b)) => assert_eq!(&*b, &[0xff]),
            k => panic!("{k:?}"),
        }
    }

    #[test]
    fn parses_members_and_optionals() {
        ok("P.attr.teams.exists(t, t.startsWith('comm'))");
        ok("m.?a.orValue(1)");
        ok("l[?0]");
        ok("[?x, 1]");
        ok("{?'k': v}");
        ok("math.greatest(1, 2)");
        ok(".P.attr");
    }

    #[test]
    fn parses_backquoted_field_names() {
        // cel-spec fields/quoted_map_fields.
        match ok("m.`content-type`").kind {
            ExprKind::Select { field, .. } => assert_eq!(field, "content-type"),
            k => panic!("{k:?}"),
        }
        ok("has(m.`foo.txt`)");
        ok("m.?`a b/c`");
        assert!(parse("`a`").is_err());
        assert!(parse("m.`a`(1)").is_err());
        assert!(parse("m.``").is_err());
        assert!(parse("m.`a").is_err());
        assert!(parse("m.`a+b`").is_err());
    }

    #[test]
    fn rejects_bad_input_with_position() {
        let e = parse("a +").unwrap_err();
        assert_eq!(e.pos, 3);
        assert!(parse("'abc").is_err());
        assert!(parse("a b").is_err());
        assert!(parse("#").is_err());
        let deep = "(".repeat(10_000);
        assert!(parse(&deep).is_err());
        let chain = vec!["a"; 5_000].join(" && ");
        assert!(
            parse(&chain)
                .unwrap_err()
                .message
                .contains("nested too deeply")
        );
        let members = format!("a{}", ".b".repeat(5_000));
        assert!(parse(&members).is_err());
        let ok_chain = vec!["a"; 200].join(" || ");
        assert!(parse(&ok_chain).is_ok());
    }
}
