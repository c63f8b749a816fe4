//! Rendering policy errors as `file:line:col: message` with a source excerpt.

use std::path::Path;

use crate::policy::{Span, StoreError};

/// One problem to show the user.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    /// Where, when known.
    pub span: Option<Span>,
    /// Short kind, e.g. `unknown derived role`.
    pub kind: String,
    /// What is wrong.
    pub message: String,
}

/// Flattens a store error into diagnostics, in source order.
pub fn diagnostics(err: &StoreError) -> Vec<Diagnostic> {
    match err {
        StoreError::Load(errs) => errs
            .errors()
            .iter()
            .map(|e| Diagnostic {
                span: Some(e.span.clone()),
                kind: match e.kind {
                    crate::policy::loader::LoadErrorKind::Parse => "parse error".into(),
                    crate::policy::loader::LoadErrorKind::Validation => "invalid policy".into(),
                    _ => "load error".into(),
                },
                message: e.message.clone(),
            })
            .collect(),
        StoreError::Compile(errs) => errs
            .errors()
            .iter()
            .map(|e| Diagnostic {
                span: Some(e.span.clone()),
                kind: e.kind.to_string(),
                message: e.message.clone(),
            })
            .collect(),
    }
}

/// Renders a diagnostic: `file:line:col: kind: message`, then the source line with a caret.
pub fn render(d: &Diagnostic, root: &Path, color: bool) -> String {
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
    out
}

/// Diagnostics as JSON, for `-o json`.
pub fn to_json(ds: &[Diagnostic]) -> serde_json::Value {
    serde_json::json!({
        "errors": ds.iter().map(|d| {
            let mut e = serde_json::json!({"error": d.kind, "description": d.message});
            if let Some(s) = &d.span {
                e["file"] = serde_json::json!(&*s.file);
                e["position"] = serde_json::json!({"line": s.line, "column": s.col});
            }
            e
        }).collect::<Vec<_>>()
    })
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
        };
        let text = render(&d, &dir, false);
        assert_eq!(
            text,
            "p.yaml:2:3: invalid policy: unknown field `bad`\n2 |   bad: value\n  |   ^\n"
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
