//! The names CEL expressions of a policy see (variables, constants, the request
//! roots), expression parsing with Cerbos's messages, and cycle detection.

use super::*;

/// A variable definition.
#[derive(Clone, Debug)]
pub(super) struct VarDef {
    /// The parsed expression; `None` when it does not parse or compile (already reported).
    pub(super) expr: Option<Arc<Expr>>,
    /// Where the expression is (the definition's value).
    pub(super) span: Span,
    /// Where the definition comes from, in Cerbos's words (`import 'common'`).
    pub(super) origin: String,
    /// The variables (`V.x`) the expression refers to.
    pub(super) variables: Vec<String>,
    /// The constants (`C.x`) the expression refers to.
    pub(super) constants: Vec<String>,
}

/// A constant definition.
#[derive(Clone, Debug)]
pub(super) struct ConstDef {
    pub(super) value: Value,
    /// Where the value is.
    pub(super) span: Span,
}

/// The names visible to a policy's expressions.
#[derive(Default)]
pub(super) struct Env {
    pub(super) variables: HashMap<String, VarDef>,
    /// Variables that are never inlined: they do not compile, refer to themselves or are
    /// part of a cycle (each already reported).
    pub(super) broken: HashSet<String>,
    pub(super) constants: HashMap<String, Value>,
    /// Every `V.x` and `C.x` stands for a placeholder: for checking an expression alone.
    pub(super) placeholders: bool,
    /// Set when an expression compiled in this environment reads `request`.
    pub(super) uses_request: Rc<Cell<bool>>,
    /// Set when an expression compiled in this environment reads `runtime`.
    pub(super) uses_runtime: Rc<Cell<bool>>,
}

/// What an unusable `V.x` or `C.x` compiles to. It only ever appears in expressions of a
/// policy set that has errors, so it never reaches the engine.
fn placeholder() -> HostBinding {
    HostBinding::Value(Value::Null)
}

impl HostScope for Env {
    fn variable(&self, name: &str) -> Option<u16> {
        match name {
            "request" => {
                self.uses_request.set(true);
                Some(SLOT_REQUEST)
            }
            "P" => Some(SLOT_PRINCIPAL),
            "R" => Some(SLOT_RESOURCE),
            "G" | "globals" => Some(SLOT_GLOBALS),
            "runtime" => {
                self.uses_runtime.set(true);
                Some(SLOT_RUNTIME)
            }
            _ => None,
        }
    }

    fn field_slot(&self, slot: u16, field: &str) -> Option<u16> {
        match (slot, field) {
            (SLOT_PRINCIPAL, "attr") => Some(SLOT_PRINCIPAL_ATTR),
            (SLOT_RESOURCE, "attr") => Some(SLOT_RESOURCE_ATTR),
            _ => None,
        }
    }

    fn select(&self, root: &str, field: &str) -> Option<Result<HostBinding, String>> {
        match root {
            "V" | "variables" => Some(Ok(self
                .variables
                .get(field)
                .filter(|_| !self.placeholders && !self.broken.contains(field))
                .and_then(|v| v.expr.clone())
                .map_or_else(placeholder, HostBinding::Expr))),
            "C" | "constants" => Some(Ok(self
                .constants
                .get(field)
                .filter(|_| !self.placeholders)
                .map_or_else(placeholder, |v| HostBinding::Value(v.clone())))),
            _ => None,
        }
    }
}

/// The variables (`V.x`, `variables.x`) and constants (`C.x`, `constants.x`) an
/// expression refers to, each once, in order of appearance. Like Cerbos, this looks at
/// the syntax: a field selected from an identifier named `V`, `C`...
pub(super) fn host_refs(e: &Expr, variables: &mut Vec<String>, constants: &mut Vec<String>) {
    let push = |list: &mut Vec<String>, name: &str| {
        if !list.iter().any(|n| n == name) {
            list.push(name.to_owned());
        }
    };
    let mut stack = vec![e];
    while let Some(e) = stack.pop() {
        if let ExprKind::Select { operand, field, .. } = &e.kind {
            match operand.as_ident() {
                Some("V" | "variables") => {
                    push(variables, field);
                    continue;
                }
                Some("C" | "constants") => {
                    push(constants, field);
                    continue;
                }
                _ => {}
            }
        }
        stack.extend(e.children().into_iter().rev());
    }
}

/// Type errors Cerbos's type checker finds that our compiler does not: `V`, `C` and `G`
/// (Cerbos's `cerbos.Variables` messages) cannot be indexed, only selected from.
pub(super) fn host_index_problems(e: &Expr) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![e];
    while let Some(e) = stack.pop() {
        if let ExprKind::Index { operand, index, .. } = &e.kind
            && matches!(
                operand.as_ident(),
                Some("V" | "variables" | "C" | "constants" | "G" | "globals")
            )
        {
            let ty = match &index.kind {
                ExprKind::Literal(Value::String(_)) => "string",
                ExprKind::Literal(Value::Int(_)) => "int",
                ExprKind::Literal(Value::Uint(_)) => "uint",
                ExprKind::Literal(Value::Double(_)) => "double",
                ExprKind::Literal(Value::Bool(_)) => "bool",
                _ => "dyn",
            };
            out.push(format!(
                "found no matching overload for '_[_]' applied to '(cerbos.Variables, {ty})'"
            ));
        }
        stack.extend(e.children().into_iter().rev());
    }
    out
}

/// Parses an expression. On failure, the syntax errors as Cerbos's parser lists them:
/// every character the lexer does not recognise (skipped, as ANTLR's lexer skips them),
/// then the first parse error, with ANTLR's wording for unexpected trailing input.
pub(super) fn parse_expr(src: &str) -> Result<Expr, Vec<String>> {
    let mut text = src.to_owned();
    let mut problems = Vec::new();
    loop {
        let e = match cel::parse(&text) {
            Ok(e) if problems.is_empty() => return Ok(e),
            Ok(_) => return Err(problems),
            Err(e) => e,
        };
        let message = e
            .message
            .strip_prefix("Syntax error: ")
            .unwrap_or(&e.message);
        let unrecognised = message.starts_with("token recognition error at: ");
        let width = text
            .get(e.pos..)
            .and_then(|rest| rest.chars().next())
            .map(char::len_utf8);
        match width {
            Some(width) if unrecognised => {
                problems.push(format!("Syntax error: {message}"));
                text.replace_range(e.pos..e.pos + width, &" ".repeat(width));
            }
            _ => {
                problems.push(format!(
                    "Syntax error: {}",
                    trailing_input(&text, e.pos, message)
                ));
                return Err(problems);
            }
        }
    }
}

/// ANTLR's message for input left over after a complete expression: `extraneous input 'x'
/// expecting <EOF>` when it is the last token, `mismatched input 'x' expecting <EOF>`
/// otherwise. Other messages are returned as they are.
fn trailing_input<'m>(text: &str, pos: usize, message: &'m str) -> std::borrow::Cow<'m, str> {
    let token = message
        .strip_prefix("mismatched input '")
        .and_then(|t| t.strip_suffix('\''));
    let Some(token) = token else {
        return message.into();
    };
    let complete_before = text.get(..pos).is_some_and(|head| cel::parse(head).is_ok());
    if !complete_before {
        return message.into();
    }
    let last = text
        .get(pos + token.len()..)
        .is_some_and(|rest| rest.trim().is_empty());
    if last {
        format!("extraneous input '{token}' expecting <EOF>").into()
    } else {
        format!("mismatched input '{token}' expecting <EOF>").into()
    }
}

/// Why a variable or constant name is not a CEL identifier, in Cerbos's words.
pub(super) fn identifier_problem(name: &str) -> Option<String> {
    if matches!(name, "false" | "in" | "null" | "true") {
        return Some(format!(
            "{name:?} is a reserved keyword and can't be used as an identifier"
        ));
    }
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric());
    (!valid).then(|| format!("{name:?} is not a valid identifier"))
}

/// The strongly connected components with more than one member of a graph given as
/// adjacency lists (Tarjan's algorithm, without recursion).
pub(super) fn cycles(edges: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let n = edges.len();
    let mut index = vec![usize::MAX; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut next = 0;
    let mut out = Vec::new();
    for root in 0..n {
        if index[root] != usize::MAX {
            continue;
        }
        // (node, next edge to follow)
        let mut work = vec![(root, 0usize)];
        index[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&mut (v, ref mut e)) = work.last_mut() {
            if let Some(&w) = edges[v].get(*e) {
                *e += 1;
                if index[w] == usize::MAX {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    work.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                let mut component = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    out.push(component);
                }
            }
        }
    }
    out
}

/// `a`, `a and b`, `a, b, and c`.
pub(super) fn english_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [a, b] => format!("{a} and {b}"),
        [init @ .., last] => format!("{}, and {last}", init.join(", ")),
    }
}
