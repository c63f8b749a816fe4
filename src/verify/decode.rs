//! Reading protojson-shaped YAML into the test-suite model, with the problems Cerbos
//! reports: parse problems (`5:5 unknown field "x"`) and validation problems
//! (`19:17 tests[0].expected[0]: principal, principals, or principalGroups must be present`).

use serde_json::{Map, Value as Json};

use super::compat::{go_quote, json_name};
use crate::policy::yaml::{Node, NodeKind, Pos, ScalarValue};

/// A problem found while reading a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Problem {
    pos: Option<Pos>,
    /// The field path (validation problems only).
    path: Option<String>,
    message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(pos) = self.pos {
            write!(f, "{}:{} ", pos.line, pos.col)?;
        }
        if let Some(path) = &self.path {
            write!(f, "{path}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Renders problems as Cerbos does: each on its own line, after a line break.
pub(crate) fn render_problems(problems: &[Problem]) -> String {
    problems.iter().map(|p| format!("\n{p}")).collect()
}

/// The decoder: collects parse and validation problems.
#[derive(Default)]
pub(crate) struct Dec {
    parse: Vec<Problem>,
    invalid: Vec<Problem>,
}

/// The fields of a message node, by canonical (protojson) name.
pub(crate) struct Msg<'a> {
    pub(crate) path: String,
    fields: Vec<(&'static str, &'a Node)>,
}

impl<'a> Msg<'a> {
    /// A field's value; `None` when absent or null.
    pub(crate) fn get(&self, name: &str) -> Option<&'a Node> {
        self.fields
            .iter()
            .rev()
            .find(|(n, v)| *n == name && !v.is_null())
            .map(|(_, v)| *v)
    }

    /// The path of a field.
    pub(crate) fn field_path(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.path)
        }
    }
}

impl Dec {
    /// The problems, or nothing: parse problems first (validation is not reported when
    /// the file does not parse).
    pub(crate) fn finish(mut self) -> Result<(), Vec<Problem>> {
        if !self.parse.is_empty() {
            self.parse.sort_by_key(|p| p.pos);
            return Err(self.parse);
        }
        if !self.invalid.is_empty() {
            return Err(self.invalid);
        }
        Ok(())
    }

    /// Records a parse problem at a node.
    pub(crate) fn parse_error(&mut self, pos: Pos, message: impl Into<String>) {
        self.parse.push(Problem {
            pos: Some(pos),
            path: None,
            message: message.into(),
        });
    }

    /// Records a validation problem.
    pub(crate) fn violation(&mut self, pos: Option<Pos>, path: &str, message: impl Into<String>) {
        self.invalid.push(Problem {
            pos,
            path: Some(path.to_owned()),
            message: message.into(),
        });
    }

    fn expected(&mut self, node: &Node, what: &str) {
        self.parse_error(
            node.pos,
            format!("expected {what} got {}", node.type_name()),
        );
    }

    /// Reads a message: `known` lists the field names (protojson names; the snake_case
    /// proto names are accepted too). Unknown fields are parse problems.
    pub(crate) fn message<'a>(
        &mut self,
        node: &'a Node,
        path: String,
        known: &[&'static str],
    ) -> Option<Msg<'a>> {
        let NodeKind::Map(entries) = &node.kind else {
            if !node.is_null() {
                self.expected(node, "mapping");
            }
            return None;
        };
        let mut fields = Vec::with_capacity(entries.len());
        for (k, v) in entries {
            let Some(text) = k.scalar_text() else {
                self.parse_error(k.pos, format!("unexpected key type {}", k.type_name()));
                continue;
            };
            let camel = json_name(text);
            match known.iter().find(|n| **n == text || **n == camel) {
                Some(name) => fields.push((*name, v)),
                None => self.parse_error(k.pos, format!("unknown field {}", go_quote(text))),
            }
        }
        Some(Msg { path, fields })
    }

    /// A string field: scalars as written, null as empty.
    pub(crate) fn string(&mut self, node: Option<&Node>) -> String {
        let Some(node) = node else {
            return String::new();
        };
        match &node.kind {
            NodeKind::Scalar(s) => match s.value {
                ScalarValue::Null => String::new(),
                ScalarValue::Float(_) => {
                    self.expected(node, "string value");
                    String::new()
                }
                _ => s.text.clone(),
            },
            _ => {
                self.expected(node, "string value");
                String::new()
            }
        }
    }

    /// A bool field.
    pub(crate) fn boolean(&mut self, node: Option<&Node>) -> bool {
        let Some(node) = node else { return false };
        match &node.kind {
            NodeKind::Scalar(s) => match s.value {
                ScalarValue::Bool(b) => b,
                ScalarValue::Null => false,
                _ => {
                    self.expected(node, "bool value");
                    false
                }
            },
            _ => {
                self.expected(node, "bool value");
                false
            }
        }
    }

    /// A repeated string field, with each item's position.
    pub(crate) fn strings(&mut self, node: Option<&Node>) -> Vec<(String, Pos)> {
        let Some(node) = node else { return Vec::new() };
        match &node.kind {
            NodeKind::Seq(items) => items
                .iter()
                .map(|i| (self.string(Some(i)), i.pos))
                .collect(),
            _ => {
                self.expected(node, "sequence");
                Vec::new()
            }
        }
    }

    /// The entries of a map field: key, key position and value.
    pub(crate) fn map<'a>(&mut self, node: Option<&'a Node>) -> Vec<(String, &'a Node)> {
        let Some(node) = node else { return Vec::new() };
        match &node.kind {
            NodeKind::Map(entries) => {
                let mut out: Vec<(String, &'a Node)> = Vec::with_capacity(entries.len());
                for (k, v) in entries {
                    let key = self.string(Some(k));
                    match out.iter_mut().find(|(name, _)| *name == key) {
                        Some(slot) => slot.1 = v,
                        None => out.push((key, v)),
                    }
                }
                out
            }
            _ => {
                self.expected(node, "mapping");
                Vec::new()
            }
        }
    }

    /// A `google.protobuf.Struct`-like map of values.
    pub(crate) fn struct_value(&mut self, node: Option<&Node>) -> Map<String, Json> {
        self.map(node)
            .into_iter()
            .map(|(k, v)| (k, v.to_json()))
            .collect()
    }

    // === protovalidate rules ===

    /// `required` on a string.
    pub(crate) fn require_string(&mut self, msg: &Msg<'_>, name: &str, value: &str) {
        if value.is_empty() {
            self.violation(
                msg.get(name).map(|n| n.pos),
                &msg.field_path(name),
                "value is required",
            );
        }
    }

    /// `required` on a repeated or map field.
    pub(crate) fn require_items(&mut self, msg: &Msg<'_>, name: &str, len: usize) {
        if len == 0 {
            self.violation(
                msg.get(name).map(|n| n.pos),
                &msg.field_path(name),
                "value is required",
            );
        }
    }

    /// `repeated {unique, items {string {min_len: 1}}}`.
    pub(crate) fn unique_non_empty(&mut self, msg: &Msg<'_>, name: &str, items: &[(String, Pos)]) {
        let path = msg.field_path(name);
        for (i, (item, pos)) in items.iter().enumerate() {
            if item.is_empty() {
                self.violation(
                    Some(*pos),
                    &format!("{path}[{i}]"),
                    "value length must be at least 1 characters",
                );
            }
        }
        let duplicated = items
            .iter()
            .enumerate()
            .any(|(i, (a, _))| items[..i].iter().any(|(b, _)| a == b));
        if duplicated {
            self.violation(
                msg.get(name).map(|n| n.pos),
                &path,
                "repeated value must contain unique items",
            );
        }
    }

    /// `string {pattern}`.
    pub(crate) fn pattern(&mut self, msg: &Msg<'_>, name: &str, value: &str, re: &regex::Regex) {
        if !re.is_match(value) {
            self.violation(
                msg.get(name).map(|n| n.pos),
                &msg.field_path(name),
                format!("value does not match regex pattern `{}`", re.as_str()),
            );
        }
    }
}

/// The path of a map entry: `resources["johnLeaveRequest"]` (keys in protobuf JSON-name form,
/// as Cerbos prints them).
pub(crate) fn map_entry_path(field_path: &str, key: &str) -> String {
    format!("{field_path}[{}]", go_quote(&json_name(key)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::yaml::build_documents as parse_documents;

    #[test]
    fn unknown_fields_and_types() {
        let doc = parse_documents("a: 1\nb_c: x\nzz: 2\n").unwrap().remove(0);
        let mut d = Dec::default();
        let m = d.message(&doc, String::new(), &["a", "bC"]).unwrap();
        assert_eq!(d.string(m.get("bC")), "x");
        assert_eq!(d.string(m.get("a")), "1");
        let err = d.finish().unwrap_err();
        assert_eq!(render_problems(&err), "\n3:1 unknown field \"zz\"");
    }

    #[test]
    fn validation_problems_render_with_paths() {
        let mut d = Dec::default();
        d.violation(None, "tests", "value is required");
        d.violation(
            Some(Pos { line: 2, col: 3 }),
            &map_entry_path("resources", "a_b"),
            "x",
        );
        assert_eq!(
            render_problems(&d.finish().unwrap_err()),
            "\ntests: value is required\n2:3 resources[\"aB\"]: x"
        );
    }
}
