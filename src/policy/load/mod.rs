//! Reading Cerbos policy files and disk stores into the [`super::model`].
//!
//! Files are YAML 1.2 (JSON is read as YAML): several documents per file, anchors,
//! aliases and merge keys. Each document is read into a tree that keeps every node's
//! position, deserialized into the model through serde, then validated the way Cerbos
//! validates policies when it reads them. Problems are reported with their positions,
//! the way Cerbos reports them, and collected: one bad document or file does not stop the
//! others from being read.

pub mod tree;

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

use super::model::{Policy, PolicyKind, RawPolicy};
use super::yaml::span::{self, SPAN_FIELD, SPANNED_STRUCT, Span, VALUE_FIELD, VALUE_SPAN_FIELD};
use super::yaml::{Node, NodeKind, Pos, Scalar, ScalarValue, build_documents};
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
    pub unknown_key: Option<UnknownKey>,
}

/// A key the policy format does not have, and the keys it has at that place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownKey {
    /// The key as written.
    pub key: String,
    /// The keys valid where it stands.
    pub expected: &'static [&'static str],
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

/// Every problem found while loading (never empty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadErrors(Vec<LoadError>);

impl LoadErrors {
    /// Wraps a list of errors; `None` when it is empty.
    pub(crate) fn from_vec(errors: Vec<LoadError>) -> Option<Self> {
        (!errors.is_empty()).then_some(Self(errors))
    }

    /// The errors, in the order they were found (files in path order, positions in order).
    pub fn errors(&self) -> &[LoadError] {
        &self.0
    }
}

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadErrors {}

impl IntoIterator for LoadErrors {
    type Item = LoadError;
    type IntoIter = std::vec::IntoIter<LoadError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

// === Parsing one file ===

/// Parses every policy document of one file (YAML or JSON). Empty and comment-only
/// documents are skipped. `file` names the file in the spans of the policies and errors.
///
/// Fails with every problem of every document when any document is invalid.
pub fn parse_policies(text: &str, file: &str) -> Result<Vec<Policy>, LoadErrors> {
    let parsed = parse_file(text, &Arc::from(file), true);
    match LoadErrors::from_vec(parsed.errors) {
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

// === Disk stores ===

/// The contents of a Cerbos disk store.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoadedStore {
    /// Every policy, disabled ones included, in path order.
    pub policies: Vec<Policy>,
    /// The JSON schemas under `_schemas/`: path relative to `_schemas` with `/`
    /// separators (e.g. `resources/leave_request.json`) and the parsed document.
    pub schemas: Vec<(String, serde_json::Value)>,
    /// The test suite files (`*_test.yaml`, `*_test.yml`, `*_test.json`), in path order.
    pub test_files: Vec<PathBuf>,
}

/// Loads a Cerbos disk store: every `.yaml`, `.yml` and `.json` file under `dir` at any
/// depth, except hidden files and directories (names starting with `.`), `testdata`
/// directories and test suites (`*_test.*`, listed in [`LoadedStore::test_files`]).
/// `_schemas/` at the root holds JSON schemas. Spans name files relative to `dir`.
///
/// As Cerbos, a policy file holds a single policy. Every problem of every file is
/// reported.
pub fn load_dir(dir: &Path) -> Result<LoadedStore, LoadErrors> {
    load(dir, true)
}

/// Loads a disk store as [`load_dir`] does, without the checks Cerbos makes only when it
/// indexes a store (rules without roles, duplicate rule or definition names, top-level
/// variables in exports). This is what Cerbos's compiler sees when it is handed files
/// directly; [`super::compile::compile_unit`] reports what it needs itself.
pub(crate) fn load_dir_without_store_checks(dir: &Path) -> Result<LoadedStore, LoadErrors> {
    load(dir, false)
}

fn load(dir: &Path, store_checks: bool) -> Result<LoadedStore, LoadErrors> {
    let mut tree = tree::scan(dir);
    let mut loader = StoreLoader {
        store: LoadedStore::default(),
        errors: std::mem::take(&mut tree.errors),
        store_checks,
    };
    let files = std::mem::take(&mut tree.files);
    for file in &files {
        match file.role {
            FileRole::Test => loader.store.test_files.push(file.path.clone()),
            FileRole::Policy => match tree.read(file) {
                Ok(bytes) => loader.policy_file(bytes, &file.rel),
                Err(e) => loader.errors.push(e),
            },
            FileRole::Schema => match tree.read(file) {
                Ok(bytes) => {
                    let name = file.rel.strip_prefix("_schemas/").unwrap_or(&file.rel);
                    match first_json_value(&bytes) {
                        Some(value) => loader.store.schemas.push((name.to_owned(), value)),
                        None => tracing::warn!(
                            schema = %file.rel,
                            "ignoring schema that is not JSON"
                        ),
                    }
                }
                Err(e) => loader.errors.push(e),
            },
        }
    }
    match LoadErrors::from_vec(loader.errors) {
        Some(errors) => Err(errors),
        None => Ok(loader.store),
    }
}

struct StoreLoader {
    store: LoadedStore,
    errors: Vec<LoadError>,
    store_checks: bool,
}

impl StoreLoader {
    fn policy_file(&mut self, bytes: Vec<u8>, rel: &str) {
        let Ok(text) = String::from_utf8(bytes) else {
            self.errors.push(LoadError::new(
                Span::new(rel, 1, 1),
                LoadErrorKind::Parse,
                "invalid document: contents are not valid YAML or JSON",
            ));
            return;
        };
        let parsed = parse_file(&text, &Arc::from(rel), self.store_checks);
        if !parsed.errors.is_empty() {
            self.errors.extend(parsed.errors);
        } else if parsed.documents > 1 {
            let span = parsed
                .policies
                .get(1)
                .map_or_else(|| Span::new(rel, 1, 1), |p| p.span.clone());
            self.errors.push(LoadError::new(
                span,
                LoadErrorKind::Validation,
                "more than one YAML document detected",
            ));
        } else {
            self.store.policies.extend(parsed.policies);
        }
    }
}

/// The first JSON value of a file, as Go's JSON decoder reads schemas (trailing text is
/// left for the schema compiler to complain about).
fn first_json_value(bytes: &[u8]) -> Option<serde_json::Value> {
    serde_json::Deserializer::from_slice(bytes)
        .into_iter::<serde_json::Value>()
        .next()?
        .ok()
}

// === Quoted strings followed by more text ===

/// Positions of quoted values followed by more text on the same line, such as
/// `expr: "a" in b` (Cerbos's `detectStringStartingWithQuote`). Only block context is
/// checked; flow collections (`[...]`, `{...}`) and block scalars are skipped.
fn quoted_string_problems(text: &str) -> Vec<Pos> {
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

// === Deserializer over the tree ===

/// Shared state of one document's deserialization.
struct Ctx {
    file: Arc<str>,
    /// Position of every field, list item and map value read, by protojson path.
    positions: RefCell<HashMap<String, Pos>>,
}

impl Ctx {
    fn record(&self, path: &str, pos: Pos) {
        self.positions.borrow_mut().insert(path.to_owned(), pos);
    }
}

/// How a key is read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    /// A field name of a message.
    Field,
    /// A key of a map field.
    MapKey,
}

/// A deserialization error, with the position of the node it is about.
#[derive(Debug)]
struct DeError {
    message: String,
    pos: Option<Pos>,
    unknown_key: Option<UnknownKey>,
}

impl DeError {
    fn at(mut self, pos: Pos) -> Self {
        if self.pos.is_none() {
            self.pos = Some(pos);
        }
        self
    }

    fn new(message: String, pos: Pos) -> Self {
        Self {
            message,
            pos: Some(pos),
            unknown_key: None,
        }
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        let message = msg.to_string();
        match span::split_positioned(&message) {
            Some((line, col, text)) => Self {
                message: text.to_owned(),
                pos: Some(Pos { line, col }),
                unknown_key: None,
            },
            None => Self {
                message,
                pos: None,
                unknown_key: None,
            },
        }
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        Self {
            unknown_key: Some(UnknownKey {
                key: field.to_owned(),
                expected,
            }),
            ..Self::custom(format_args!("unknown field {field:?}"))
        }
    }

    fn unknown_variant(variant: &str, _expected: &'static [&'static str]) -> Self {
        Self::custom(format_args!("invalid enum value {variant:?}"))
    }

    fn missing_field(field: &'static str) -> Self {
        Self::custom(format_args!("missing field {field:?}"))
    }

    fn duplicate_field(field: &'static str) -> Self {
        Self::custom(format_args!("duplicate field {field:?}"))
    }
}

/// Reads one node.
struct NodeDe<'a> {
    node: &'a Node,
    ctx: &'a Ctx,
    /// Where this value is reported: the key of a field, the item, or the map value.
    report: Pos,
    /// The protojson path of this value.
    path: String,
    /// Set when the node is a key.
    key: Option<KeyKind>,
}

impl<'a> NodeDe<'a> {
    fn err(&self, message: String) -> DeError {
        DeError::new(message, self.node.pos)
    }

    fn expected(&self, what: &str) -> DeError {
        self.err(format!("expected {what} got {}", self.node.type_name()))
    }

    /// Checks that a key is a string.
    fn check_key(&self) -> Result<(), DeError> {
        match self.key {
            Some(_) if self.node.key_text().is_some() => Ok(()),
            Some(KeyKind::Field) => {
                Err(self.err(format!("unexpected key type {}", self.node.type_name())))
            }
            Some(KeyKind::MapKey) => Err(self.expected("string")),
            None => Ok(()),
        }
    }

    /// A scalar read as a string, as Cerbos does: numbers and booleans as written,
    /// null as empty.
    fn string(&self) -> Result<String, DeError> {
        self.check_key()?;
        match &self.node.kind {
            NodeKind::Scalar(s) => match s.value {
                ScalarValue::Str | ScalarValue::Bool(_) => Ok(s.text.clone()),
                ScalarValue::Null => Ok(String::new()),
                ScalarValue::Int(v) => Ok(v.to_string()),
                ScalarValue::Float(_) => Err(self.expected("string value")),
            },
            _ => Err(self.expected("string value")),
        }
    }

    fn scalar(&self) -> Option<&'a Scalar> {
        match &self.node.kind {
            NodeKind::Scalar(s) => Some(s),
            _ => None,
        }
    }

    fn integer<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let pos = self.node.pos;
        let value = match self.scalar().map(|s| (s.value, s)) {
            Some((ScalarValue::Int(v), _)) => v,
            Some((ScalarValue::Str, s)) => s
                .text
                .trim()
                .parse::<i128>()
                .map_err(|e| self.err(format!("invalid integer value {:?}: {e}", s.text)))?,
            _ => return Err(self.expected("integer value")),
        };
        visit_int(value, visitor).map_err(|e: DeError| e.at(pos))
    }
}

fn visit_int<'de, V: Visitor<'de>>(value: i128, visitor: V) -> Result<V::Value, DeError> {
    if let Ok(v) = i64::try_from(value) {
        visitor.visit_i64(v)
    } else if let Ok(v) = u64::try_from(value) {
        visitor.visit_u64(v)
    } else {
        // Too large for 64 bits: keep the magnitude.
        #[allow(clippy::cast_precision_loss)]
        visitor.visit_f64(value as f64)
    }
}

impl<'de> Deserializer<'de> for NodeDe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let pos = self.node.pos;
        if self.key.is_some() {
            let s = self.string()?;
            return visitor.visit_string(s).map_err(|e: DeError| e.at(pos));
        }
        let result = match &self.node.kind {
            NodeKind::Scalar(s) => match s.value {
                ScalarValue::Null => visitor.visit_unit(),
                ScalarValue::Bool(b) => visitor.visit_bool(b),
                ScalarValue::Int(v) => visit_int(v, visitor),
                ScalarValue::Float(v) => visitor.visit_f64(v),
                ScalarValue::Str => visitor.visit_string(s.text.clone()),
            },
            NodeKind::Seq(items) => visitor.visit_seq(SeqAcc::new(&self, items)),
            NodeKind::Map(entries) => {
                visitor.visit_map(MapAcc::new(&self, entries, KeyKind::MapKey, None))
            }
        };
        result.map_err(|e: DeError| e.at(pos))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.scalar().map(|s| s.value) {
            Some(ScalarValue::Bool(b)) => visitor
                .visit_bool(b)
                .map_err(|e: DeError| e.at(self.node.pos)),
            _ => Err(self.expected("boolean value")),
        }
    }

    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.integer(visitor)
    }

    fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.integer(visitor)
    }

    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.integer(visitor)
    }

    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.integer(visitor)
    }

    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.integer(visitor)
    }

    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.integer(visitor)
    }

    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.integer(visitor)
    }

    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.integer(visitor)
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let pos = self.node.pos;
        #[allow(clippy::cast_precision_loss)]
        let value = match self.scalar().map(|s| (s.value, s)) {
            Some((ScalarValue::Float(v), _)) => v,
            Some((ScalarValue::Int(v), _)) => v as f64,
            Some((ScalarValue::Str, s)) => s
                .text
                .trim()
                .parse::<f64>()
                .map_err(|e| self.err(format!("invalid float value {:?}: {e}", s.text)))?,
            _ => return Err(self.expected("float value")),
        };
        visitor.visit_f64(value).map_err(|e: DeError| e.at(pos))
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_string(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_string(visitor)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let s = self.string()?;
        visitor
            .visit_string(s)
            .map_err(|e: DeError| e.at(self.node.pos))
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_byte_buf(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let s = self.string()?;
        visitor
            .visit_byte_buf(s.into_bytes())
            .map_err(|e: DeError| e.at(self.node.pos))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        // Cerbos reads a null field as the field's zero value, so the inner type decides.
        let pos = self.node.pos;
        visitor.visit_some(self).map_err(|e: DeError| e.at(pos))
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.scalar().map(|s| s.value) {
            Some(ScalarValue::Null) => visitor
                .visit_unit()
                .map_err(|e: DeError| e.at(self.node.pos)),
            _ => Err(self.expected("null")),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let pos = self.node.pos;
        if name == SPANNED_STRUCT {
            return visitor
                .visit_map(SpannedAcc {
                    de: Some(self),
                    state: 0,
                })
                .map_err(|e: DeError| e.at(pos));
        }
        visitor
            .visit_newtype_struct(self)
            .map_err(|e: DeError| e.at(pos))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.kind {
            NodeKind::Seq(items) => visitor
                .visit_seq(SeqAcc::new(&self, items))
                .map_err(|e: DeError| e.at(self.node.pos)),
            _ => Err(self.expected("sequence")),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.kind {
            NodeKind::Map(entries) => visitor
                .visit_map(MapAcc::new(&self, entries, KeyKind::MapKey, None))
                .map_err(|e: DeError| e.at(self.node.pos)),
            _ => Err(self.expected("map")),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let pos = self.node.pos;
        self.check_key()?;
        match &self.node.kind {
            NodeKind::Map(entries) => {
                let span = fields.contains(&SPAN_FIELD).then_some(self.report);
                visitor
                    .visit_map(MapAcc::new(&self, entries, KeyKind::Field, span))
                    .map_err(|e: DeError| e.at(pos))
            }
            _ => Err(self.expected("object")),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let s = self.string()?;
        visitor
            .visit_enum(s.into_deserializer())
            .map_err(|e: DeError| e.at(self.node.pos))
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_string(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

/// Reads a sequence's items.
struct SeqAcc<'a> {
    items: std::iter::Enumerate<std::slice::Iter<'a, Node>>,
    ctx: &'a Ctx,
    path: String,
}

impl<'a> SeqAcc<'a> {
    fn new(parent: &NodeDe<'a>, items: &'a [Node]) -> Self {
        Self {
            items: items.iter().enumerate(),
            ctx: parent.ctx,
            path: parent.path.clone(),
        }
    }
}

impl<'de> SeqAccess<'de> for SeqAcc<'_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        let Some((i, item)) = self.items.next() else {
            return Ok(None);
        };
        let path = format!("{}[{i}]", self.path);
        self.ctx.record(&path, item.pos);
        let de = NodeDe {
            node: item,
            ctx: self.ctx,
            report: item.pos,
            path,
            key: None,
        };
        seed.deserialize(de).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

/// Reads a mapping: the fields of a message, or the entries of a map.
struct MapAcc<'a> {
    entries: std::slice::Iter<'a, (Node, Node)>,
    current: Option<&'a (Node, Node)>,
    ctx: &'a Ctx,
    path: String,
    keys: KeyKind,
    /// The struct's position, handed out as the synthetic `$span` field first.
    span: Option<Pos>,
    span_value: Option<Pos>,
    /// Field names seen, by canonical name, for duplicate detection.
    seen: HashMap<String, Pos>,
}

impl<'a> MapAcc<'a> {
    fn new(
        parent: &NodeDe<'a>,
        entries: &'a [(Node, Node)],
        keys: KeyKind,
        span: Option<Pos>,
    ) -> Self {
        Self {
            entries: entries.iter(),
            current: None,
            ctx: parent.ctx,
            path: parent.path.clone(),
            keys,
            span,
            span_value: None,
            seen: HashMap::new(),
        }
    }
}

/// `import_derived_roles` → `importDerivedRoles`: field names are recorded by their
/// protojson name whichever spelling the file uses.
fn camel_case(name: &str) -> Cow<'_, str> {
    if !name.contains('_') {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

impl<'de> MapAccess<'de> for MapAcc<'_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        if let Some(pos) = self.span.take() {
            self.span_value = Some(pos);
            self.seen.insert(SPAN_FIELD.to_owned(), pos);
            return seed.deserialize(SPAN_FIELD.into_deserializer()).map(Some);
        }
        let Some(entry) = self.entries.next() else {
            return Ok(None);
        };
        self.current = Some(entry);
        let key = &entry.0;
        let de = NodeDe {
            node: key,
            ctx: self.ctx,
            report: key.pos,
            path: self.path.clone(),
            key: Some(self.keys),
        };
        de.check_key()?;
        if self.keys == KeyKind::Field {
            let name = camel_case(key.key_text().unwrap_or_default()).into_owned();
            if let Some(previous) = self.seen.get(&name) {
                return Err(DeError::new(
                    format!(
                        "duplicate field definition: previous definition at [{}:{}]",
                        previous.line, previous.col
                    ),
                    key.pos,
                ));
            }
            self.seen.insert(name, key.pos);
        }
        seed.deserialize(de)
            .map(Some)
            .map_err(|e: DeError| e.at(key.pos))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        if let Some(pos) = self.span_value.take() {
            return seed.deserialize(SpanDe {
                file: &self.ctx.file,
                pos,
            });
        }
        let Some((key, value)) = self.current.take() else {
            return Err(de::Error::custom("value requested before key"));
        };
        let name = key.key_text().unwrap_or_default();
        let (path, report) = match self.keys {
            KeyKind::Field if self.path.is_empty() => (camel_case(name).into_owned(), key.pos),
            KeyKind::Field => (format!("{}.{}", self.path, camel_case(name)), key.pos),
            KeyKind::MapKey => (format!("{}[{name:?}]", self.path), value.pos),
        };
        self.ctx.record(&path, report);
        let de = NodeDe {
            node: value,
            ctx: self.ctx,
            report,
            path,
            key: None,
        };
        seed.deserialize(de)
    }
}

/// Answers the [`SPANNED_STRUCT`] request: the report position, the start position, then
/// the node itself.
struct SpannedAcc<'a> {
    de: Option<NodeDe<'a>>,
    state: u8,
}

impl<'de> MapAccess<'de> for SpannedAcc<'_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let key = match self.state {
            0 => SPAN_FIELD,
            1 => VALUE_SPAN_FIELD,
            2 => VALUE_FIELD,
            _ => return Ok(None),
        };
        seed.deserialize(key.into_deserializer()).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let state = self.state;
        self.state += 1;
        match (state, self.de.as_ref()) {
            (0, Some(de)) => seed.deserialize(SpanDe {
                file: &de.ctx.file,
                pos: de.report,
            }),
            (1, Some(de)) => seed.deserialize(SpanDe {
                file: &de.ctx.file,
                pos: de.node.start,
            }),
            (2, Some(_)) => match self.de.take() {
                Some(de) => seed.deserialize(de),
                None => Err(de::Error::custom("value requested twice")),
            },
            _ => Err(de::Error::custom("value requested twice")),
        }
    }
}

/// A position, read as a `(file, line, col)` tuple.
struct SpanDe<'a> {
    file: &'a Arc<str>,
    pos: Pos,
}

impl<'de> Deserializer<'de> for SpanDe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_seq(SpanSeq {
            span: self,
            next: 0,
        })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

struct SpanSeq<'a> {
    span: SpanDe<'a>,
    next: u8,
}

impl<'de> SeqAccess<'de> for SpanSeq<'_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        let n = self.next;
        self.next += 1;
        match n {
            0 => seed
                .deserialize((&**self.span.file).into_deserializer())
                .map(Some),
            1 => seed
                .deserialize(self.span.pos.line.into_deserializer())
                .map(Some),
            2 => seed
                .deserialize(self.span.pos.col.into_deserializer())
                .map(Some),
            _ => Ok(None),
        }
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
    fn store_layout_rules() {
        let root = std::env::temp_dir().join(format!(
            "gatehouse-loader-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&root);
        let write = |rel: &str, text: &str| {
            let path = root.join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{e}"));
            }
            std::fs::write(path, text).unwrap_or_else(|e| panic!("{e}"));
        };
        let ev = "apiVersion: api.cerbos.dev/v1\nexportVariables:\n  name: N\n  definitions:\n    a: 'true'\n";
        write("policies/a.yaml", &ev.replace('N', "a"));
        write("policies/nested/deeper/b.yml", &ev.replace('N', "b"));
        write("policies/.hidden.yaml", "not: [valid");
        write(".hidden_dir/c.yaml", "not: [valid");
        write("policies/testdata/d.yaml", "not: [valid");
        write("policies/e_test.yaml", "name: a test suite\n");
        write("policies/notes.txt", "not: [valid");
        write("_schemas/principal.json", "{\"type\": \"object\"}");
        write("_schemas/resources/r.json", "{\"type\": \"object\"}");
        write("_schemas/ignored.yaml", "not: [valid");
        let store = load_dir(&root).unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<String> = store.policies.iter().map(Policy::fqn).collect();
        assert_eq!(
            names,
            ["cerbos.export_variables.a", "cerbos.export_variables.b"]
        );
        assert_eq!(
            store.policies[1].span.to_string(),
            "policies/nested/deeper/b.yml:1:1"
        );
        assert_eq!(store.test_files, [root.join("policies/e_test.yaml")]);
        let schemas: Vec<&str> = store.schemas.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(schemas, ["principal.json", "resources/r.json"]);

        write(
            "policies/bad1.yaml",
            "apiVersion: api.cerbos.dev/v1\nfoo: bar\n",
        );
        write(
            "policies/bad2.json",
            "{\"apiVersion\": \"api.cerbos.dev/v1\", \"bar\": 1}",
        );
        write(
            "policies/two.yaml",
            &format!("{}---\n{}", ev.replace('N', "x"), ev.replace('N', "y")),
        );
        write("policies/_schemas/s.json", "{}");
        let errors: Vec<String> = load_dir(&root)
            .err()
            .map(|e| e.into_iter().map(|e| e.to_string()).collect())
            .unwrap_or_default();
        assert_eq!(
            errors,
            [
                "policies/_schemas:1:1: _schemas directory must be under the root of the storage directory",
                "policies/bad1.yaml:2:1: unknown field \"foo\"",
                "policies/bad2.json:1:37: unknown field \"bar\"",
                "policies/two.yaml:7:1: more than one YAML document detected",
            ]
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn conformance_store_counts() {
        let corpus = std::env::var_os("GATEHOUSE_CONFORMANCE_DIR").map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance"),
            PathBuf::from,
        );
        let dir = corpus.join("store");
        if !dir.exists() {
            println!("conformance store not found at {}; skipped", dir.display());
            return;
        }
        let store = load_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
        let count =
            |f: fn(&PolicyKind) -> bool| store.policies.iter().filter(|p| f(&p.kind)).count();
        assert_eq!(count(|k| matches!(k, PolicyKind::Resource(_))), 32);
        assert_eq!(count(|k| matches!(k, PolicyKind::Principal(_))), 11);
        assert_eq!(count(|k| matches!(k, PolicyKind::Role(_))), 8);
        assert_eq!(count(|k| matches!(k, PolicyKind::DerivedRoles(_))), 7);
        assert_eq!(count(|k| matches!(k, PolicyKind::ExportVariables(_))), 1);
        assert_eq!(count(|k| matches!(k, PolicyKind::ExportConstants(_))), 1);
        let disabled: Vec<String> = store
            .policies
            .iter()
            .filter(|p| p.disabled)
            .map(Policy::fqn)
            .collect();
        assert_eq!(disabled.len(), 1);
        let executable = store
            .policies
            .iter()
            .filter(|p| p.is_executable() && !p.disabled)
            .count();
        assert_eq!(executable, 50);
        assert_eq!(store.test_files.len(), 3);
        assert_eq!(store.schemas.len(), 4);
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

    #[test]
    fn store_checks_can_be_left_to_the_compiler() {
        let root =
            std::env::temp_dir().join(format!("gatehouse-loader-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap_or_else(|e| panic!("{e}"));
        let policy = "apiVersion: api.cerbos.dev/v1\nresourcePolicy:\n  resource: a\n  version: default\n  \
                      rules:\n    - actions: [view]\n      effect: EFFECT_ALLOW\n";
        std::fs::write(root.join("a.yaml"), policy).unwrap_or_else(|e| panic!("{e}"));
        let errors: Vec<String> = load_dir(&root)
            .err()
            .map(|e| e.into_iter().map(|e| e.to_string()).collect())
            .unwrap_or_default();
        assert_eq!(
            errors,
            ["a.yaml:6:14: rule #1 does not specify any roles or derived roles to match"]
        );
        let store = load_dir_without_store_checks(&root).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(store.policies.len(), 1);
        let _ = std::fs::remove_dir_all(&root);
    }
}
