//! Quoted values followed by more text on one line, as Cerbos rejects them.

use super::*;

/// Positions of quoted values followed by more text on the same line, such as
/// `expr: "a" in b` (Cerbos's `detectStringStartingWithQuote`). Only block context is
/// checked; flow collections (`[...]`, `{...}`) and block scalars are skipped.
pub(super) fn quoted_string_problems(text: &str) -> Vec<Pos> {
    let mut problems = Vec::new();
    let mut flow_depth = 0usize;
    let mut block_indent: Option<usize> = None;
    let mut open_quote: Option<char> = None;
    for (line_no, raw_line) in text.split('\n').enumerate() {
        let line = raw_line.strip_suffix('\r').unwrap_or(raw_line);
        let chars: Vec<char> = line.chars().collect();
        let indent = chars.iter().take_while(|c| **c == ' ').count();
        if let Some(parent) = block_indent {
            if indent >= chars.len() || indent > parent {
                continue;
            }
            block_indent = None;
        }
        let mut i = 0;
        if let Some(q) = open_quote {
            match closing_quote(&chars, 0, q) {
                Some(end) => {
                    open_quote = None;
                    i = end + 1;
                }
                None => continue,
            }
        }
        // Where a value may start: after `key: `, `- ` or at the start of the line.
        let mut value_start = true;
        while i < chars.len() {
            let c = chars[i];
            match c {
                ' ' | '\t' => {}
                '#' if i == 0 || chars[i - 1] == ' ' || chars[i - 1] == '\t' => break,
                '"' | '\'' if value_start || flow_depth > 0 => {
                    let Some(end) = closing_quote(&chars, i + 1, c) else {
                        open_quote = Some(c);
                        break;
                    };
                    let after_colon = previous_non_blank(&chars, i) == Some(':');
                    if flow_depth == 0 && after_colon && trailing_content(&chars[end + 1..]) {
                        problems.push(Pos {
                            line: u32::try_from(line_no + 1).unwrap_or(u32::MAX),
                            col: u32::try_from(i + 1).unwrap_or(u32::MAX),
                        });
                    }
                    i = end + 1;
                    value_start = false;
                    continue;
                }
                '[' | '{' if value_start || flow_depth > 0 => {
                    flow_depth += 1;
                    value_start = true;
                }
                ']' | '}' if flow_depth > 0 => {
                    flow_depth -= 1;
                    value_start = false;
                }
                ',' if flow_depth > 0 => value_start = true,
                ':' if chars.get(i + 1).is_none_or(|n| *n == ' ' || *n == '\t') => {
                    value_start = true;
                }
                '-' if value_start && chars.get(i + 1).is_none_or(|n| *n == ' ') => {}
                '|' | '>' if value_start && flow_depth == 0 => {
                    block_indent = Some(indent);
                    break;
                }
                _ => {
                    if flow_depth == 0 && value_start {
                        // A plain scalar: skip to a `: ` or a comment.
                        value_start = false;
                    }
                }
            }
            i += 1;
        }
    }
    problems
}

/// Index of the quote closing a string that starts at `from`.
fn closing_quote(chars: &[char], from: usize, quote: char) -> Option<usize> {
    let mut i = from;
    while i < chars.len() {
        let c = chars[i];
        if quote == '"' && c == '\\' {
            i += 2;
            continue;
        }
        if c == quote {
            if quote == '\'' && chars.get(i + 1) == Some(&'\'') {
                i += 2;
                continue;
            }
            return Some(i);
        }
        i += 1;
    }
    None
}

fn previous_non_blank(chars: &[char], before: usize) -> Option<char> {
    chars[..before]
        .iter()
        .rev()
        .find(|c| **c != ' ' && **c != '\t')
        .copied()
}

/// Whether text after a closing quote holds anything but separators, anchors and comments
/// (and is not the `:` that makes the string a key).
fn trailing_content(rest: &[char]) -> bool {
    let rest: String = rest.iter().collect();
    let trimmed = rest.trim_start();
    if trimmed.is_empty() || trimmed.starts_with(':') {
        return false;
    }
    for (n, word) in trimmed.split_whitespace().enumerate() {
        if word.starts_with('#') && (n > 0 || rest.starts_with([' ', '\t'])) {
            return false;
        }
        let allowed = word.chars().all(|c| c == ',' || c == '}') || word.starts_with('&');
        if !allowed {
            return true;
        }
    }
    false
}
