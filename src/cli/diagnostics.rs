//! Rendering policy errors as `file:line:col: message` with a source excerpt.

use std::collections::HashMap;
use std::path::Path;

use crate::policy::compile::IndexError;
use crate::policy::load::LoadErrorKind;
use crate::policy::yaml::{Pos, build_documents, node_tokens};
use crate::policy::{LoadErrors, Span, StoreError};

/// One problem to show the user.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    /// Where, when known.
    span: Option<Span>,
    /// Short kind, e.g. `unknown derived role`.
    kind: String,
    /// What is wrong.
    message: String,
    /// A suggestion shown under the excerpt (`did you mean "condition"?`).
    help: Option<String>,
}

/// Flattens a store error into diagnostics, in source order.
pub(crate) fn diagnostics(err: &StoreError) -> Vec<Diagnostic> {
    match err {
        StoreError::Load(errs) => errs
            .errors()
            .iter()
            .map(|e| Diagnostic {
                span: Some(e.span.clone()),
                kind: match e.kind {
                    crate::policy::load::LoadErrorKind::Parse => "parse error".into(),
                    crate::policy::load::LoadErrorKind::Validation => "invalid policy".into(),
                    _ => "load error".into(),
                },
                message: e.message.clone(),
                help: e.unknown_key.as_ref().and_then(|u| {
                    crate::suggest::did_you_mean(&u.key, u.expected.iter().copied())
                        .map(|k| format!("did you mean {k:?}?"))
                }),
            })
            .collect(),
        StoreError::Compile(errs) => errs
            .errors()
            .iter()
            .map(|e| Diagnostic {
                span: Some(e.span.clone()),
                kind: e.kind.to_string(),
                message: e.message.clone(),
                help: None,
            })
            .collect(),
    }
}

/// Renders a diagnostic: `file:line:col: kind: message`, then the source line with a caret.
pub(crate) fn render(d: &Diagnostic, root: &Path, color: bool) -> String {
    let (red, bold, dim, reset) = if color {
        ("\x1b[31m", "\x1b[1m", "\x1b[2m", "\x1b[0m")
    } else {
        ("", "", "", "")
    };
    let Some(span) = &d.span else {
        return format!("{red}{bold}error{reset}: {}: {}\n", d.kind, d.message);
    };
    let mut out = format!(
        "{bold}{span}{reset}: {red}{}{reset}: {}\n",
        d.kind, d.message
    );
    let text = std::fs::read_to_string(root.join(&*span.file)).unwrap_or_default();
    if let Some(line) = text.lines().nth(span.line.saturating_sub(1) as usize) {
        let gutter = span.line.to_string();
        let pad = " ".repeat(gutter.len());
        out.push_str(&format!("{dim}{gutter} |{reset} {line}\n"));
        let caret_pad: String = line
            .chars()
            .take(span.col.saturating_sub(1) as usize)
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        out.push_str(&format!("{dim}{pad} |{reset} {caret_pad}{red}^{reset}\n"));
    }
    if let Some(help) = &d.help {
        out.push_str(&format!("{bold}help{reset}: {help}\n"));
    }
    out
}

/// Error kinds Cerbos reports without a position (they concern several places).
const UNPOSITIONED_KINDS: &[&str] = &[
    "ambiguous derived role",
    "constant redefined",
    "variable redefined",
];

/// A file's text, and each node's JSON path and token position (see
/// [`node_tokens`]) by the position Cerbos reports.
type SourceFile = (String, HashMap<Pos, (String, Pos)>);

/// Reads the policy files under a root once each, to give positions their JSON path
/// and source context as Cerbos does.
struct Sources<'r> {
    root: &'r Path,
    files: HashMap<String, SourceFile>,
}

impl<'r> Sources<'r> {
    fn new(root: &'r Path) -> Self {
        Sources {
            root,
            files: HashMap::new(),
        }
    }

    fn file(&mut self, file: &str) -> &SourceFile {
        self.files.entry(file.to_owned()).or_insert_with(|| {
            let text = std::fs::read_to_string(self.root.join(file)).unwrap_or_default();
            let paths = build_documents(&text)
                .map(|docs| docs.iter().flat_map(node_tokens).collect())
                .unwrap_or_default();
            (text, paths)
        })
    }

    /// `{line, column, path}` (the path when a node is there).
    fn position(&mut self, span: &Span) -> serde_json::Value {
        let (_, paths) = self.file(&span.file);
        let mut position = serde_json::json!({"line": span.line, "column": span.col});
        if let Some((path, _)) = paths.get(&Pos {
            line: span.line,
            col: span.col,
        }) {
            position["path"] = serde_json::json!(path);
        }
        position
    }

    /// Cerbos's source excerpt (go-yaml's error printer): three lines before, the
    /// line marked `>` with a caret under the column, three lines after, and the
    /// indentation of the line after those (the whitespace that leads its first token).
    fn context(&mut self, span: &Span) -> Option<String> {
        let (text, tokens) = self.file(&span.file);
        let here = Pos {
            line: span.line,
            col: span.col,
        };
        let token = tokens.get(&here).map_or(here, |(_, t)| *t);
        let lines: Vec<&str> = text.lines().collect();
        let at = span.line.checked_sub(1)? as usize;
        lines.get(at)?;
        let numbered = |i: usize, line: &str| {
            let mark = if i == at { ">" } else { " " };
            format!("{mark} {:>2} | {line}", i + 1)
        };
        let before: Vec<String> = (at.saturating_sub(3)..=at)
            .map(|i| numbered(i, lines[i].trim_end()))
            .collect();
        let caret_at = format!("  {:>2} | ", at + 1).len() + token.col.saturating_sub(1) as usize;
        let last = (at + 3).min(lines.len() - 1);
        let mut after: Vec<String> = (at + 1..=last).map(|i| numbered(i, lines[i])).collect();
        // go-yaml gives a scalar token the whitespace that follows it: the next line's
        // indentation shows after a line that ends in a value (not after `key:`).
        if let Some(next) = lines.get(at + 4)
            && at + 3 == last
            && !lines[last].trim_end().ends_with(':')
        {
            let indent = &next[..next.len() - next.trim_start().len()];
            after.push(numbered(at + 4, indent));
        }
        Some(format!(
            "{}\n{}^\n{}",
            before.join("\n"),
            " ".repeat(caret_at),
            after.join("\n")
        ))
    }
}

/// Diagnostics as JSON, for `-o json`, in Cerbos's shape: `file`, `error`,
/// `description`, `position` (`line`, `column` and the node's JSON `path`) and
/// `context`, read from the files under `root`.
pub fn to_json(ds: &[Diagnostic], root: &Path) -> serde_json::Value {
    let mut sources = Sources::new(root);
    serde_json::json!({
        "errors": ds.iter().map(|d| {
            let mut e = serde_json::json!({"error": d.kind, "description": d.message});
            if let Some(s) = &d.span {
                e["file"] = serde_json::json!(&*s.file);
                if !UNPOSITIONED_KINDS.contains(&d.kind.as_str()) {
                    e["position"] = sources.position(s);
                    if let Some(c) = sources.context(s) {
                        e["context"] = serde_json::json!(c);
                    }
                }
            }
            e
        }).collect::<Vec<_>>()
    })
}

/// Load failures as Cerbos's `lintErrors.load_failures`.
pub(crate) fn load_failures_json(errors: &LoadErrors, root: &Path) -> serde_json::Value {
    let mut sources = Sources::new(root);
    let failures: Vec<serde_json::Value> = errors
        .errors()
        .iter()
        .map(|e| {
            let mut details = serde_json::json!({});
            // Cerbos's kinds: 1 for a parse error, 2 for a protovalidate violation
            // (`<field path>: <message>`); its own checks have none.
            match e.kind {
                LoadErrorKind::Parse => details["kind"] = serde_json::json!(1),
                LoadErrorKind::Validation if is_field_violation(&e.message) => {
                    details["kind"] = serde_json::json!(2)
                }
                _ => {}
            }
            details["position"] = sources.position(&e.span);
            details["message"] = serde_json::json!(e.message);
            if let Some(c) = sources.context(&e.span) {
                details["context"] = serde_json::json!(c);
            }
            serde_json::json!({
                "file": &*e.span.file,
                "error": e.message,
                "error_details": details,
            })
        })
        .collect();
    serde_json::json!({"load_failures": failures})
}

fn is_field_violation(message: &str) -> bool {
    message.split_once(": ").is_some_and(|(path, _)| {
        !path.is_empty()
            && path
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '[' | ']'))
    })
}

/// Index problems as Cerbos's `lintErrors`: `duplicate_defs`, `missing_imports`,
/// `missing_scope_details` and `scope_permissions_conflicts`.
pub(crate) fn index_errors_json(errors: &[IndexError], root: &Path) -> serde_json::Value {
    let mut sources = Sources::new(root);
    let mut duplicates = Vec::new();
    let mut imports = Vec::new();
    let mut conflicts = Vec::new();
    let mut missing: Vec<(String, Vec<String>)> = Vec::new();
    for e in errors {
        match e {
            IndexError::DuplicateDefinition {
                span,
                other_file,
                policy,
            } => duplicates.push(serde_json::json!({
                "file": &*span.file,
                "other_file": &**other_file,
                "policy": policy,
                "position": {"line": span.line, "column": span.col},
            })),
            IndexError::MissingImport {
                span,
                policy,
                kind,
                name,
            } => {
                let mut m = serde_json::json!({
                    "importing_file": &*span.file,
                    "desc": e.description(),
                    "importing_policy": policy,
                    "import_kind": kind.as_str(),
                    "import_name": name,
                    "position": sources.position(span),
                });
                if let Some(c) = sources.context(span) {
                    m["context"] = serde_json::json!(c);
                }
                imports.push(m);
            }
            IndexError::MissingAncestor {
                policy, ancestor, ..
            } => match missing.iter_mut().find(|(a, _)| a == ancestor) {
                Some((_, descendants)) => descendants.push(policy.clone()),
                None => missing.push((ancestor.clone(), vec![policy.clone()])),
            },
            IndexError::ScopePermissionsConflict {
                span,
                scope,
                policy,
                other,
            } => conflicts.push(serde_json::json!({
                "file": &*span.file,
                "scope": scope,
                "policy": policy,
                "other_policy": other,
            })),
        }
    }
    let mut out = serde_json::Map::new();
    if !duplicates.is_empty() {
        out.insert("duplicate_defs".into(), duplicates.into());
    }
    if !imports.is_empty() {
        out.insert("missing_imports".into(), imports.into());
    }
    if !missing.is_empty() {
        missing.sort_by(|a, b| a.0.cmp(&b.0));
        let details: Vec<serde_json::Value> = missing
            .into_iter()
            .map(|(ancestor, mut descendants)| {
                descendants.sort();
                descendants.dedup();
                serde_json::json!({"missing_policy": ancestor, "descendants": descendants})
            })
            .collect();
        out.insert("missing_scope_details".into(), details.into());
    }
    if !conflicts.is_empty() {
        out.insert("scope_permissions_conflicts".into(), conflicts.into());
    }
    serde_json::Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_location_and_caret() {
        let dir = std::env::temp_dir().join(format!("gh-diag-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("p.yaml"), "a: 1\n  bad: value\n").unwrap();
        let d = Diagnostic {
            span: Some(Span::new("p.yaml", 2, 3)),
            kind: "invalid policy".into(),
            message: "unknown field `bad`".into(),
            help: None,
        };
        let text = render(&d, &dir, false);
        assert_eq!(
            text,
            "p.yaml:2:3: invalid policy: unknown field `bad`\n2 |   bad: value\n  |   ^\n"
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
