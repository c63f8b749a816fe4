//! Reading Cerbos policy files and disk stores into the [`super::model`].
//!
//! Files are YAML 1.2 (JSON is read as YAML): several documents per file, anchors,
//! aliases and merge keys. Each document is read into a tree that keeps every node's
//! position, deserialized into the model through serde, then validated the way Cerbos
//! validates policies when it reads them. Problems are reported with their positions,
//! the way Cerbos reports them, and collected: one bad document or file does not stop the
//! others from being read.

mod deserializer;
mod quoted;
mod store;
pub(crate) mod tree;

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use serde::de::{
    self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};

use crate::errors::{Errors, Report};

use super::model::{Policy, PolicyKind, RawPolicy};
use super::yaml::span::{self, SPAN_FIELD, SPANNED_STRUCT, Span, VALUE_FIELD, VALUE_SPAN_FIELD};
use super::yaml::{Node, NodeKind, Pos, Scalar, ScalarValue, build_documents};
use deserializer::{Ctx, NodeDe};
use quoted::quoted_string_problems;
pub(crate) use store::load_dir_without_store_checks;
pub use store::{LoadedStore, load_dir};
use tree::FileRole;

// === Errors ===

/// What kind of problem a [`LoadError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LoadErrorKind {
    /// The file is not valid YAML or JSON, or does not have the shape of a policy.
    Parse,
    /// The policy breaks a rule Cerbos checks when it reads policies.
    Validation,
    /// The file or directory could not be read.
    Io,
}

/// One problem found while loading policies, at a source position.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{span}: {message}")]
pub struct LoadError {
    /// Where.
    pub span: Span,
    /// What kind of problem.
    pub kind: LoadErrorKind,
    /// What is wrong, in Cerbos's words where Cerbos reports the same problem.
    pub message: String,
    /// For an unknown key: the key and the keys that were valid in its place (for a hint).
    pub(crate) unknown_key: Option<UnknownKey>,
}

/// A key the policy format does not have, and the keys it has at that place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct UnknownKey {
    /// The key as written.
    pub(crate) key: String,
    /// The keys valid where it stands.
    pub(crate) expected: &'static [&'static str],
}

impl LoadError {
    pub(super) fn new(span: Span, kind: LoadErrorKind, message: impl Into<String>) -> Self {
        Self {
            span,
            kind,
            message: message.into(),
            unknown_key: None,
        }
    }
}

/// Every problem found while loading (never empty), in the order they were found (files
/// in path order, positions in order).
pub type LoadErrors = Errors<LoadError>;

impl Report for LoadError {}

// === Parsing one file ===

/// Parses every policy document of one file (YAML or JSON). Empty and comment-only
/// documents are skipped. `file` names the file in the spans of the policies and errors.
///
/// Fails with every problem of every document when any document is invalid.
pub fn parse_policies(text: &str, file: &str) -> Result<Vec<Policy>, LoadErrors> {
    let parsed = parse_file(text, &Arc::from(file), true);
    match Errors::from_vec(parsed.errors) {
        Some(errors) => Err(errors),
        None => Ok(parsed.policies),
    }
}

/// The outcome of parsing one file.
struct ParsedFile {
    policies: Vec<Policy>,
    /// Non-empty documents, valid or not.
    documents: usize,
    errors: Vec<LoadError>,
}

/// `store_checks`: also make the checks Cerbos makes when it indexes a store.
fn parse_file(text: &str, file: &Arc<str>, store_checks: bool) -> ParsedFile {
    let mut out = ParsedFile {
        policies: Vec::new(),
        documents: 0,
        errors: Vec::new(),
    };
    let parse_error =
        |pos: Pos, message: String| LoadError::new(pos.span(file), LoadErrorKind::Parse, message);
    let docs = match build_documents(text) {
        Ok(docs) => docs,
        Err(e) => {
            // Cerbos looks for quoted strings followed by more text first, and reports
            // every one of them rather than the first syntax error.
            let quoted = quoted_string_problems(text);
            if quoted.is_empty() {
                out.errors.push(parse_error(e.pos, e.message));
            } else {
                out.errors.extend(quoted.into_iter().map(|pos| {
                    parse_error(
                        pos,
                        "invalid YAML string: use a literal or folded block for strings containing quotes"
                            .to_owned(),
                    )
                }));
            }
            return out;
        }
    };
    let mut previous_invalid = false;
    for doc in docs {
        out.documents += 1;
        if !matches!(doc.kind, NodeKind::Map(_)) {
            // Cerbos reports a run of non-mapping documents (lines of text) once.
            if !previous_invalid {
                out.errors.push(parse_error(
                    doc.pos,
                    "invalid document: contents are not valid YAML or JSON".to_owned(),
                ));
            }
            previous_invalid = true;
            continue;
        }
        previous_invalid = false;
        match read_policy(&doc, file, store_checks) {
            Ok(policy) => out.policies.push(policy),
            Err(errors) => out.errors.extend(errors),
        }
    }
    out
}

/// Deserializes and validates one document.
fn read_policy(doc: &Node, file: &Arc<str>, store_checks: bool) -> Result<Policy, Vec<LoadError>> {
    let ctx = Ctx {
        file: file.clone(),
        positions: RefCell::new(HashMap::new()),
    };
    let de = NodeDe {
        node: doc,
        ctx: &ctx,
        report: doc.start,
        path: String::new(),
        key: None,
    };
    let raw = RawPolicy::deserialize(de).map_err(|e| {
        let pos = e.pos.unwrap_or(doc.start);
        vec![LoadError {
            unknown_key: e.unknown_key,
            ..LoadError::new(pos.span(file), LoadErrorKind::Parse, e.message)
        }]
    })?;
    let mut policy = raw.into_policy().map_err(|e| {
        let (span, message) = e.describe();
        let kind = if message.starts_with("policyType:") {
            LoadErrorKind::Validation
        } else {
            LoadErrorKind::Parse
        };
        vec![LoadError::new(span, kind, message)]
    })?;
    policy.root_span = doc.pos.span(file);
    let positions = ctx.positions.into_inner();
    let mut errors: Vec<LoadError> = policy
        .validate()
        .into_iter()
        .filter(|v| store_checks || !v.store_check)
        .map(|v| {
            let pos = lookup_position(&positions, &v.path).unwrap_or(doc.start);
            let message = if v.qualified {
                format!("{}: {}", v.path, v.message)
            } else {
                v.message
            };
            LoadError::new(pos.span(file), LoadErrorKind::Validation, message)
        })
        .collect();
    if !errors.is_empty() {
        errors.sort_by_key(|e| (e.span.line, e.span.col));
        return Err(errors);
    }
    if let PolicyKind::Role(rp) = &policy.kind
        && rp.version_defaulted
    {
        tracing::warn!(
            file = %file,
            role = %rp.role,
            "role policy has no version; using \"{}\"",
            rp.version
        );
    }
    Ok(policy)
}

/// The position recorded for a path, or for its closest recorded parent.
fn lookup_position(positions: &HashMap<String, Pos>, path: &str) -> Option<Pos> {
    let mut path = path;
    loop {
        if let Some(pos) = positions.get(path) {
            return Some(*pos);
        }
        let cut = path.rfind(['.', '['])?;
        path = &path[..cut];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::model::{Condition, Effect, Match};

    fn parse(text: &str) -> Vec<Policy> {
        parse_policies(text, "p.yaml").unwrap_or_else(|e| panic!("{e}"))
    }

    fn errors(text: &str) -> Vec<String> {
        match parse_policies(text, "p.yaml") {
            Ok(p) => panic!("expected errors, parsed {} policies", p.len()),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    const RESOURCE: &str = "\
apiVersion: api.cerbos.dev/v1
resourcePolicy:
  resource: album
  version: default
  importDerivedRoles:
    - owners
  rules:
    - actions: ['view']
      effect: EFFECT_ALLOW
      derivedRoles: [owner]
      condition:
        match:
          all:
            of:
              - expr: R.attr.public
              - expr: |-
                  P.id == R.attr.owner
";

    #[test]
    fn spans_point_where_cerbos_points() {
        let p = parse(RESOURCE);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].span.to_string(), "p.yaml:1:1");
        let PolicyKind::Resource(rp) = &p[0].kind else {
            panic!("not a resource policy");
        };
        assert_eq!(rp.import_derived_roles[0].span.to_string(), "p.yaml:6:7");
        let rule = &rp.rules[0];
        // A block mapping list item is reported at its first `:`.
        assert_eq!(rule.span.to_string(), "p.yaml:8:14");
        assert_eq!(rule.derived_roles[0].span.to_string(), "p.yaml:10:22");
        assert_eq!(rule.effect, Effect::Allow);
        let Some(Condition::Match(Match::All(items))) = &rule.condition else {
            panic!("not an all condition");
        };
        let Match::Expr(first) = &items[0] else {
            panic!("not an expression");
        };
        assert_eq!(first.text, "R.attr.public");
        assert_eq!(first.span.to_string(), "p.yaml:15:17");
        assert_eq!(first.value_span.to_string(), "p.yaml:15:23");
        let Match::Expr(second) = &items[1] else {
            panic!("not an expression");
        };
        assert_eq!(second.text, "P.id == R.attr.owner");
        assert_eq!(second.value_span.to_string(), "p.yaml:16:23");
    }

    #[test]
    fn variable_definitions_are_reported_at_their_values() {
        let p = parse(
            "apiVersion: api.cerbos.dev/v1\n\
             variables:\n  top: \"1\"\n\
             derivedRoles:\n  name: dr\n  definitions:\n    - name: a\n      parentRoles: [b]\n\
             ---\n\
             apiVersion: api.cerbos.dev/v1\n\
             exportVariables:\n  name: ev\n  definitions:\n    a: V.b\n    b: '2'\n",
        );
        assert_eq!(p[0].variables[0].1.span.to_string(), "p.yaml:3:8");
        let PolicyKind::ExportVariables(ev) = &p[1].kind else {
            panic!("not export variables");
        };
        let names: Vec<&str> = ev.definitions.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(ev.definitions[0].1.span.to_string(), "p.yaml:14:8");
        assert_eq!(ev.definitions.spans()[1].name.to_string(), "p.yaml:15:5");
    }

    #[test]
    fn yaml_1_2_scalars_stay_strings() {
        let p = parse(
            "apiVersion: api.cerbos.dev/v1\nexportConstants:\n  name: c\n  definitions:\n    \
             a: yes\n    b: 2022-08-01T15:00:00Z\n    c: 0x10\n    d: 1.5\n    e: ~\n    f: on\n",
        );
        let PolicyKind::ExportConstants(ec) = &p[0].kind else {
            panic!("not export constants");
        };
        let values: Vec<String> = ec.definitions.iter().map(|(_, v)| v.to_string()).collect();
        assert_eq!(
            values,
            [
                "\"yes\"",
                "\"2022-08-01T15:00:00Z\"",
                "16",
                "1.5",
                "null",
                "\"on\""
            ]
        );
    }

    #[test]
    fn several_documents_and_empty_ones() {
        let text = format!("---\n---\n# only a comment\n---\n{RESOURCE}---\n{RESOURCE}...\n");
        let p = parse(&text);
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].span.line, 23);
    }

    #[test]
    fn errors_of_all_documents_are_collected() {
        let text = "apiVersion: api.cerbos.dev/v1\nwibble: 1\n---\nwat\n---\n\
                    apiVersion: api.cerbos.dev/v2\nderivedRoles:\n  name: x\n  definitions:\n    \
                    - name: a\n      parentRoles: [r]\n";
        assert_eq!(
            errors(text),
            [
                "p.yaml:2:1: unknown field \"wibble\"",
                "p.yaml:4:1: invalid document: contents are not valid YAML or JSON",
                "p.yaml:6:1: apiVersion: must equal `api.cerbos.dev/v1`",
            ]
        );
    }

    #[test]
    fn type_errors_point_at_the_value() {
        let text = "apiVersion: api.cerbos.dev/v1\nresourcePolicy:\n  resource:\n    kind: x\n";
        assert_eq!(
            errors(text),
            ["p.yaml:4:9: expected string value got Mapping"]
        );
    }

    #[test]
    fn merge_keys_and_anchors() {
        let text = "apiVersion: api.cerbos.dev/v1\nresourcePolicy: &rp\n  resource: a\n  version: b\n  \
                    rules: []\n---\napiVersion: api.cerbos.dev/v1\nresourcePolicy:\n  version: c\n  <<: *rp\n";
        let p = parse(text);
        assert_eq!(p[1].fqn(), "cerbos.resource.a.vc");
    }

    #[test]
    fn duplicate_fields_and_policy_keys_are_rejected() {
        let text = "apiVersion: api.cerbos.dev/v1\napiVersion: api.cerbos.dev/v1\n";
        assert_eq!(
            errors(text),
            ["p.yaml:2:1: duplicate field definition: previous definition at [1:1]"]
        );
        let text = "apiVersion: api.cerbos.dev/v1\nexportVariables: {name: a}\nexportConstants: {name: b}\n";
        assert_eq!(
            errors(text),
            ["p.yaml:3:1: invalid value: oneof field is already set at [2:1]"]
        );
        let text = "apiVersion: api.cerbos.dev/v1\n";
        assert_eq!(
            errors(text),
            ["p.yaml:1:1: policyType: exactly one field is required in oneof"]
        );
    }

    #[test]
    fn malformed_input_never_panics() {
        let long = "[".repeat(10_000);
        let deep_map = "a:\n".to_owned() + &" a:\n".repeat(500);
        let laughs = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n\
                      c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n\
                      e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n\
                      g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\n";
        let inputs = [
            "\u{0}\u{1}\u{2}garbage\u{ff}",
            "{",
            "\"unterminated",
            "apiVersion: api.cerbos.dev/v1\nexportConstants:\n  name: x\n  definitions:\n    n: 1e999999\n    m: 123456789012345678901234567890123456789012345678901234567890\n",
            "- a\n- b\n",
            "*unknown",
            "a: !!binary aGVsbG8=\n",
            "? [complex]\n: key\n",
            long.as_str(),
            deep_map.as_str(),
            laughs,
        ];
        for input in inputs {
            let _ = parse_policies(input, "x.yaml");
        }
    }

    #[test]
    fn deeply_nested_conditions_do_not_overflow() {
        for levels in [30, 60] {
            let condition = format!(
                "{}{{expr: x}}{}",
                "{all: {of: [".repeat(levels),
                "]}}".repeat(levels)
            );
            let text = format!(
                "apiVersion: api.cerbos.dev/v1\nresourcePolicy:\n  resource: a\n  version: b\n  \
                 rules:\n    - actions: [x]\n      effect: EFFECT_ALLOW\n      roles: [a]\n      \
                 condition:\n        match: {condition}\n"
            );
            let result = parse_policies(&text, "deep.yaml");
            assert_eq!(result.is_ok(), levels == 30, "{levels} levels: {result:?}");
        }
    }

    #[test]
    fn quoted_strings_followed_by_text_are_reported() {
        let text = "apiVersion: api.cerbos.dev/v1\nresourcePolicy:\n  resource: a\n  version: b\n  \
                    rules:\n    - actions: [\"x\"]\n      effect: EFFECT_ALLOW\n      roles: [\"a\"]\n      \
                    condition:\n        match:\n          expr: \"a\" in b\n";
        assert_eq!(
            errors(text),
            [
                "p.yaml:11:17: invalid YAML string: use a literal or folded block for strings containing quotes"
            ]
        );
    }

    #[test]
    fn script_conditions_are_kept_for_the_compiler() {
        let text = "apiVersion: api.cerbos.dev/v1\nderivedRoles:\n  name: d\n  definitions:\n    \
                    - name: a\n      parentRoles: [b]\n      condition:\n        script: x == y\n";
        let p = parse(text);
        assert_eq!(p[0].root_span.to_string(), "p.yaml:1:11");
        let PolicyKind::DerivedRoles(dr) = &p[0].kind else {
            panic!("not derived roles");
        };
        let Some(Condition::Script { source, span }) = &dr.definitions[0].condition else {
            panic!("not a script condition");
        };
        assert_eq!(
            (source.as_str(), span.to_string().as_str()),
            ("x == y", "p.yaml:7:7")
        );
    }
}
