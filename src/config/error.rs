//! Configuration errors: `file:line:col: message`, then the line with a caret.

use std::fmt;

use serde_saphyr::MessageFormatter;

use crate::errors::{Errors, Report};
use crate::policy::Span;

/// One problem in a configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ConfigError {
    span: Option<Span>,
    message: String,
    line: Option<String>,
}

impl ConfigError {
    /// An error at `span` (when known); the source line is added by [`ConfigErrors`]'
    /// constructors that know the text.
    pub(crate) fn new(span: Option<Span>, message: impl Into<String>) -> Self {
        ConfigError {
            span,
            message: message.into(),
            line: None,
        }
    }

    /// Where the problem is.
    pub(crate) fn span(&self) -> Option<&Span> {
        self.span.as_ref()
    }

    #[cfg(test)]
    /// What is wrong.
    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn with_line(mut self, text: &str) -> Self {
        if let Some(span) = &self.span {
            self.line = text
                .lines()
                .nth(span.line.saturating_sub(1) as usize)
                .map(str::to_string);
        }
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.span {
            Some(span) => write!(f, "{span}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in a configuration file (never empty), in file order.
pub(crate) type ConfigErrors = Errors<ConfigError>;

impl Errors<ConfigError> {
    /// Adds each error's source line from `text`, for the caret display.
    pub(crate) fn with_lines(self, text: &str) -> Self {
        self.map(|e| e.with_line(text))
    }

    /// The errors on one line each, without source excerpts (for logs and status).
    pub(crate) fn summary(&self) -> String {
        self.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl Report for ConfigError {
    /// `file:line:col: message`, then its line with a caret under the column, as policy
    /// errors are shown.
    fn report(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")?;
        if let (Some(span), Some(line)) = (&self.span, &self.line) {
            let gutter = span.line.to_string();
            let pad = " ".repeat(gutter.len());
            let caret: String = line
                .chars()
                .take(span.col.saturating_sub(1) as usize)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            write!(f, "\n{gutter} | {}\n{pad} | {caret}^", printable(line))?;
        }
        Ok(())
    }
}

/// A source line with control characters escaped (the file may hold anything).
fn printable(line: &str) -> String {
    line.chars()
        .map(|c| {
            if c.is_control() && c != '\t' {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// A YAML or shape error from the parser, at its position, with a hint for a
/// misspelled key.
pub(super) fn from_yaml(e: &serde_saphyr::Error, file: &str) -> ConfigError {
    let bare = e.without_snippet();
    let message = serde_saphyr::DefaultMessageFormatter
        .format_message(bare)
        .into_owned();
    let span = bare
        .location()
        .filter(|l| l.line() > 0)
        .map(|l| Span::new(file, l.line() as u32, l.column() as u32));
    ConfigError::new(span, with_hint(&message))
}

/// `unknown field `x`, expected one of a, b` becomes `unknown field `x`: did you mean
/// `b`?` when one of the expected keys is close, and keeps the list otherwise.
fn with_hint(message: &str) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return message.to_string();
    };
    let Some((field, tail)) = rest.split_once('`') else {
        return message.to_string();
    };
    let expected = tail
        .trim_start_matches(',')
        .trim()
        .trim_start_matches("expected one of ")
        .trim_start_matches("expected ");
    let candidates = expected
        .split(',')
        .map(|c| c.trim().trim_matches('`'))
        .filter(|c| !c.is_empty());
    match crate::suggest::did_you_mean(field, candidates) {
        Some(key) => format!("unknown field `{field}`: did you mean `{key}`?"),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_replace_the_list_only_when_close() {
        assert_eq!(
            with_hint("unknown field `method`, expected one of path, prefix, methods"),
            "unknown field `method`: did you mean `methods`?"
        );
        assert_eq!(
            with_hint("unknown field `x`, expected one of path, prefix"),
            "unknown field `x`, expected one of path, prefix"
        );
    }

    #[test]
    fn errors_show_the_line_and_a_caret() {
        let errors = ConfigErrors::one(ConfigError::new(Some(Span::new("g.yaml", 2, 5)), "bad"))
            .with_lines("a: 1\nb:  x\n");
        assert_eq!(errors.to_string(), "g.yaml:2:5: bad\n2 | b:  x\n  |     ^");
    }
}
