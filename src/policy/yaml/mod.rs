//! A YAML 1.2 reader that keeps the position of every node, for policy files, test
//! suites and fixtures.
//!
//! Positions follow Cerbos: a node is reported where it starts, except a block mapping,
//! which is reported at the `:` after its first key, and a block scalar, at its `|` or
//! `>` (where Cerbos's YAML library puts them). Anchors, aliases (also to earlier
//! documents of the file) and merge keys (`<<`) are resolved while the tree is built.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value as Json;
use serde_saphyr::granit_parser::{Event, ScalarStyle, ScanError, StructureStyle};

pub(crate) mod span;

use span::Span;

/// Deepest nesting of collections accepted.
const MAX_DEPTH: usize = 100;
/// Most nodes a file may expand to (aliases copy their anchor's nodes).
const MAX_NODES: usize = 1_000_000;

/// A 1-based line and column.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Pos {
    pub(crate) line: u32,
    pub(crate) col: u32,
}

impl Pos {
    /// The span of this position in `file`.
    pub(crate) fn span(self, file: &Arc<str>) -> Span {
        Span {
            file: file.clone(),
            line: self.line,
            col: self.col,
        }
    }
}

/// A YAML node with its positions.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub(crate) kind: NodeKind,
    /// Where Cerbos reports this node: its start, except for block mappings (the first
    /// `:`) and block scalars (the `|` or `>`).
    pub(crate) pos: Pos,
    /// Where the node starts.
    pub(crate) start: Pos,
}

/// The shape of a node.
#[derive(Clone, Debug)]
pub(crate) enum NodeKind {
    Scalar(Scalar),
    Seq(Vec<Node>),
    /// Entries in file order, merge keys already applied.
    Map(Vec<(Node, Node)>),
}

/// A scalar: its text and its YAML 1.2 core schema value.
#[derive(Clone, Debug)]
pub(crate) struct Scalar {
    pub(crate) text: String,
    pub(crate) value: ScalarValue,
    /// A `|` or `>` block.
    pub(crate) block: bool,
}

/// A scalar resolved with the YAML 1.2 core schema.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum ScalarValue {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str,
}

impl Node {
    /// The type name Cerbos uses in messages.
    pub(crate) fn type_name(&self) -> &'static str {
        match &self.kind {
            NodeKind::Scalar(s) => match s.value {
                ScalarValue::Null => "Null",
                ScalarValue::Bool(_) => "Bool",
                ScalarValue::Int(_) => "Integer",
                ScalarValue::Float(_) => "Float",
                ScalarValue::Str if s.block => "Literal",
                ScalarValue::Str => "String",
            },
            NodeKind::Seq(_) => "Sequence",
            NodeKind::Map(_) => "Mapping",
        }
    }

    fn size(&self) -> usize {
        match &self.kind {
            NodeKind::Scalar(_) => 1,
            NodeKind::Seq(items) => 1 + items.iter().map(Node::size).sum::<usize>(),
            NodeKind::Map(entries) => {
                1 + entries
                    .iter()
                    .map(|(k, v)| k.size() + v.size())
                    .sum::<usize>()
            }
        }
    }

    /// The text of a string key, `None` for other keys.
    pub(crate) fn key_text(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar(s) if s.value == ScalarValue::Str => Some(&s.text),
            _ => None,
        }
    }
}

/// Resolves a plain scalar with the YAML 1.2 core schema.
fn resolve_plain(text: &str) -> ScalarValue {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return ScalarValue::Null,
        "true" | "True" | "TRUE" => return ScalarValue::Bool(true),
        "false" | "False" | "FALSE" => return ScalarValue::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return ScalarValue::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return ScalarValue::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return ScalarValue::Float(f64::NAN),
        _ => {}
    }
    let (negative, digits) = match text.as_bytes()[0] {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return match digits.parse::<i128>() {
            Ok(v) => ScalarValue::Int(if negative { -v } else { v }),
            Err(_) => text.parse().map_or(ScalarValue::Str, ScalarValue::Float),
        };
    }
    let radix = |prefix: &str, radix: u32| {
        text.strip_prefix(prefix)
            .filter(|d| !d.is_empty())
            .and_then(|d| i128::from_str_radix(d, radix).ok())
    };
    if let Some(v) = radix("0x", 16).or_else(|| radix("0o", 8)) {
        return ScalarValue::Int(v);
    }
    if is_core_float(digits)
        && let Ok(v) = text.parse::<f64>()
    {
        return ScalarValue::Float(v);
    }
    ScalarValue::Str
}

/// `(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?` (the sign already removed).
fn is_core_float(s: &str) -> bool {
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mantissa, None),
    };
    let all_digits = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match frac {
        Some(f) => all_digits(int) && all_digits(f) && !(int.is_empty() && f.is_empty()),
        None => !int.is_empty() && all_digits(int),
    };
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && all_digits(e)
    });
    mantissa_ok && exponent_ok
}

/// A YAML syntax error or a tree that is too big.
#[derive(Debug)]
pub(crate) struct BuildError {
    pub(crate) pos: Pos,
    pub(crate) message: String,
}

/// Reads every document of a file. Documents without content are left out.
pub(crate) fn build_documents(text: &str) -> Result<Vec<Node>, BuildError> {
    let mut options = serde_saphyr::granit_parser::Options::default();
    options.flow_nesting_limit = MAX_DEPTH;
    options.block_nesting_limit = MAX_DEPTH;
    // Cerbos resolves aliases to anchors of earlier documents of the same file.
    options.emit_anchor_events = true;
    options.block_scalar_eof_without_line_feed = true;
    options.emit_unresolved_aliases = true;
    let mut parser = serde_saphyr::granit_parser::Parser::new_from_str_with_options(text, options);
    let mut events = Vec::new();
    while let Some(next) = parser.next_event() {
        match next {
            Ok(event) => events.push(event),
            Err(e) => return Err(scan_error(text, &e)),
        }
    }
    let mut builder = TreeBuilder {
        text,
        events,
        next: 0,
        anchors: HashMap::new(),
        anchor_names: HashMap::new(),
        nodes: 0,
        last_end: (0, Pos { line: 1, col: 1 }),
    };
    builder.documents()
}

/// Turns a scanner error into the message Cerbos (goccy/go-yaml) gives where they differ.
fn scan_error(text: &str, e: &ScanError) -> BuildError {
    use serde_saphyr::granit_parser::ErrorKind;
    let mark = e.marker();
    let pos = Pos {
        line: u32::try_from(mark.line()).unwrap_or(u32::MAX),
        col: u32::try_from(mark.col() + 1).unwrap_or(u32::MAX),
    };
    let message = match e.kind() {
        ErrorKind::UnclosedQuotedScalar => {
            let quote = mark
                .byte_offset()
                .and_then(|o| text.get(o..))
                .and_then(|s| s.chars().next());
            if quote == Some('\'') {
                "could not find end character of single-quoted text".to_owned()
            } else {
                "could not find end character of double-quoted text".to_owned()
            }
        }
        ErrorKind::SimpleKeyExpected => "non-map value is specified".to_owned(),
        ErrorKind::UnclosedFlowCollection { open: '[' } => {
            "sequence end token ']' not found".to_owned()
        }
        ErrorKind::UnclosedFlowCollection { open: '{' } => {
            "could not find flow mapping end token '}'".to_owned()
        }
        ErrorKind::RecursionLimitExceeded => "document is nested too deeply".to_owned(),
        _ => e.info(),
    };
    BuildError { pos, message }
}

type EventWithSpan<'a> = (Event<'a>, serde_saphyr::granit_parser::Span);

struct TreeBuilder<'a> {
    text: &'a str,
    events: Vec<EventWithSpan<'a>>,
    next: usize,
    /// Anchored nodes and their sizes, by anchor id.
    anchors: HashMap<usize, (Node, usize)>,
    /// Anchor ids by name, for aliases to earlier documents.
    anchor_names: HashMap<String, usize>,
    nodes: usize,
    /// Byte offset and position where the previous event ended.
    last_end: (usize, Pos),
}

/// The position after `text`, which starts at `from`.
fn advance_pos(from: Pos, text: &str) -> Pos {
    match text.rfind('\n') {
        Some(i) => Pos {
            line: from
                .line
                .saturating_add(u32::try_from(text.matches('\n').count()).unwrap_or(u32::MAX)),
            col: u32::try_from(text[i + 1..].chars().count() + 1).unwrap_or(u32::MAX),
        },
        None => Pos {
            line: from.line,
            col: from
                .col
                .saturating_add(u32::try_from(text.chars().count()).unwrap_or(u32::MAX)),
        },
    }
}

fn marker_pos(m: &serde_saphyr::granit_parser::Marker) -> Pos {
    Pos {
        line: u32::try_from(m.line()).unwrap_or(u32::MAX),
        col: u32::try_from(m.col() + 1).unwrap_or(u32::MAX),
    }
}

impl<'a> TreeBuilder<'a> {
    fn advance(&mut self) -> Option<EventWithSpan<'a>> {
        let event = self.events.get_mut(self.next)?;
        let span = event.1;
        let taken = std::mem::replace(event, (Event::StreamEnd, span));
        self.next += 1;
        if !matches!(taken.0, Event::Anchor(..))
            && let Some(end) = taken.1.end.byte_offset()
        {
            self.last_end = (end, marker_pos(&taken.1.end));
        }
        Some(taken)
    }

    fn error(pos: Pos, message: &str) -> BuildError {
        BuildError {
            pos,
            message: message.to_owned(),
        }
    }

    fn count(&mut self, n: usize, pos: Pos) -> Result<(), BuildError> {
        self.nodes += n;
        if self.nodes > MAX_NODES {
            return Err(Self::error(pos, "document is too large (alias expansion)"));
        }
        Ok(())
    }

    fn documents(&mut self) -> Result<Vec<Node>, BuildError> {
        let mut docs = Vec::new();
        while let Some((event, span)) = self.advance() {
            match event {
                Event::DocumentStart(..) => {
                    // A document without content reads as an empty plain scalar.
                    let empty = matches!(self.events.get(self.next),
                        Some((Event::Scalar(_, ScalarStyle::Plain, 0, None), span))
                            if span.start.index() == span.end.index());
                    let body = self.node(0)?;
                    if !empty {
                        docs.push(body);
                    }
                }
                Event::StreamEnd => break,
                Event::StreamStart | Event::DocumentEnd => {}
                _ => {
                    return Err(Self::error(
                        marker_pos(&span.start),
                        "unexpected YAML event outside a document",
                    ));
                }
            }
        }
        Ok(docs)
    }

    fn node(&mut self, depth: usize) -> Result<Node, BuildError> {
        let before = self.last_end;
        let Some((event, span)) = self.advance() else {
            return Err(Self::error(Pos::default(), "unexpected end of YAML events"));
        };
        let start = marker_pos(&span.start);
        if depth > MAX_DEPTH {
            return Err(Self::error(start, "document is nested too deeply"));
        }
        self.count(1, start)?;
        let anchor_name = self.anchor_name();
        let (node, anchor) = match event {
            Event::Scalar(text, style, anchor, tag) => {
                let block = matches!(style, ScalarStyle::Literal | ScalarStyle::Folded);
                let value = match style {
                    ScalarStyle::Plain if tag.as_ref().is_none_or(|t| t.suffix() != "str") => {
                        resolve_plain(&text)
                    }
                    _ => ScalarValue::Str,
                };
                let pos = if block {
                    self.block_indicator(before, span.start.byte_offset())
                        .unwrap_or(start)
                } else {
                    start
                };
                let node = Node {
                    kind: NodeKind::Scalar(Scalar {
                        text: text.into_owned(),
                        value,
                        block,
                    }),
                    pos,
                    start: pos,
                };
                (node, anchor)
            }
            Event::SequenceStart(_, anchor, _) => (self.sequence(depth, start)?, anchor),
            Event::MappingStart(style, anchor, _) => (self.mapping(depth, start, style)?, anchor),
            Event::Alias(id) => (self.alias(id, start)?, 0),
            Event::UnresolvedAlias(name) => match self.anchor_names.get(name.as_ref()) {
                Some(id) => (self.alias(*id, start)?, 0),
                None => return Err(Self::error(start, &format!("unknown anchor {name:?}"))),
            },
            _ => return Err(Self::error(start, "unexpected YAML event")),
        };
        if anchor != 0 {
            let size = node.size();
            self.anchors.insert(anchor, (node.clone(), size));
            if let Some(name) = anchor_name {
                self.anchor_names.insert(name, anchor);
            }
        }
        Ok(node)
    }

    /// A sequence's items, up to its end event.
    fn sequence(&mut self, depth: usize, start: Pos) -> Result<Node, BuildError> {
        let mut items = Vec::new();
        while !self.at_end_event() {
            items.push(self.node(depth + 1)?);
        }
        self.advance();
        Ok(Node {
            kind: NodeKind::Seq(items),
            pos: start,
            start,
        })
    }

    /// A mapping's entries (merge keys applied), up to its end event. A block mapping is
    /// placed at its first colon and starts at its first key.
    fn mapping(
        &mut self,
        depth: usize,
        start: Pos,
        style: StructureStyle,
    ) -> Result<Node, BuildError> {
        let mut entries = Vec::new();
        let mut pos = start;
        let mut first_key = None;
        while !self.at_end_event() {
            let key = self.node(depth + 1)?;
            if entries.is_empty() {
                first_key = Some(key.start);
                if style == StructureStyle::Block {
                    pos = self.colon_after(self.last_end).unwrap_or(key.start);
                }
            }
            let value = self.node(depth + 1)?;
            entries.push((key, value));
        }
        self.advance();
        let entries = self.merge(entries)?;
        let start = match style {
            StructureStyle::Block => first_key.unwrap_or(start),
            StructureStyle::Flow => start,
        };
        Ok(Node {
            kind: NodeKind::Map(entries),
            pos,
            start,
        })
    }

    /// The name of the anchor defined on the node just read (its event follows the node's).
    fn anchor_name(&mut self) -> Option<String> {
        if !matches!(self.events.get(self.next), Some((Event::Anchor(..), _))) {
            return None;
        }
        match self.advance() {
            Some((Event::Anchor(_, name), _)) => Some(name.into_owned()),
            _ => None,
        }
    }

    /// A copy of an anchored node, positioned at the alias.
    fn alias(&mut self, id: usize, start: Pos) -> Result<Node, BuildError> {
        let Some((anchored, size)) = self.anchors.get(&id) else {
            return Err(Self::error(start, "unknown anchor"));
        };
        let size = *size;
        let mut node = anchored.clone();
        node.pos = start;
        node.start = start;
        self.count(size, start)?;
        Ok(node)
    }

    fn at_end_event(&self) -> bool {
        matches!(
            self.events.get(self.next),
            None | Some((Event::SequenceEnd | Event::MappingEnd, _))
        )
    }

    /// The `|` or `>` of a block scalar: the first one between the end of the previous
    /// event and the scalar's content.
    fn block_indicator(&self, from: (usize, Pos), to: Option<usize>) -> Option<Pos> {
        let gap = self.text.get(from.0..to?)?;
        let before = &gap[..gap.find(['|', '>'])?];
        Some(advance_pos(from.1, before))
    }

    /// The `:` following a block mapping key that ends where the previous event ended.
    fn colon_after(&self, from: (usize, Pos)) -> Option<Pos> {
        let rest = self.text.get(from.0..)?;
        let skipped = rest.find(|c: char| c != ' ' && c != '\t')?;
        rest[skipped..]
            .starts_with(':')
            .then(|| advance_pos(from.1, &rest[..skipped]))
    }

    /// Applies merge keys (`<<: *anchor`, `<<: [*a, *b]`): the merged entries come where
    /// the merge key is, except those whose key the mapping sets itself or an earlier
    /// merge already supplied.
    fn merge(&mut self, entries: Vec<(Node, Node)>) -> Result<Vec<(Node, Node)>, BuildError> {
        let is_merge = |k: &Node| {
            matches!(&k.kind, NodeKind::Scalar(s)
                if s.text == "<<" && s.value == ScalarValue::Str && !s.block)
        };
        if !entries.iter().any(|(k, _)| is_merge(k)) {
            return Ok(entries);
        }
        let explicit: HashSet<String> = entries
            .iter()
            .filter(|(k, _)| !is_merge(k))
            .filter_map(|(k, _)| k.scalar_text().map(str::to_owned))
            .collect();
        let mut merged: HashSet<String> = HashSet::new();
        let mut out = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            if !is_merge(&key) {
                out.push((key, value));
                continue;
            }
            let sources = match value.kind {
                NodeKind::Map(entries) => vec![entries],
                NodeKind::Seq(items) => {
                    let mut sources = Vec::with_capacity(items.len());
                    for item in items {
                        match item.kind {
                            NodeKind::Map(entries) => sources.push(entries),
                            _ => {
                                return Err(Self::error(
                                    item.pos,
                                    "invalid merge value: expected a mapping",
                                ));
                            }
                        }
                    }
                    sources
                }
                NodeKind::Scalar(_) => {
                    return Err(Self::error(
                        value.pos,
                        "invalid merge value: expected a mapping or a list of mappings",
                    ));
                }
            };
            for source in sources {
                for (k, v) in source {
                    match k.scalar_text() {
                        Some(text) if explicit.contains(text) || merged.contains(text) => {}
                        Some(text) => {
                            merged.insert(text.to_owned());
                            out.push((k, v));
                        }
                        None => out.push((k, v)),
                    }
                }
            }
        }
        Ok(out)
    }
}

impl Node {
    /// The text of any scalar (keys that are numbers or booleans too); `None` for
    /// collections.
    pub(crate) fn scalar_text(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar(s) => Some(&s.text),
            _ => None,
        }
    }

    /// Whether the node is a null scalar.
    pub(crate) fn is_null(&self) -> bool {
        matches!(&self.kind, NodeKind::Scalar(s) if s.value == ScalarValue::Null)
    }

    /// The node as a JSON value (`google.protobuf.Value`): numbers as written, keys as
    /// text.
    pub fn to_json(&self) -> Json {
        match &self.kind {
            NodeKind::Scalar(s) => match s.value {
                ScalarValue::Null => Json::Null,
                ScalarValue::Bool(b) => Json::Bool(b),
                ScalarValue::Int(i) => match i64::try_from(i) {
                    Ok(v) => Json::from(v),
                    Err(_) => u64::try_from(i).map_or_else(|_| float_json(i as f64), Json::from),
                },
                ScalarValue::Float(f) => float_json(f),
                ScalarValue::Str => Json::String(s.text.clone()),
            },
            NodeKind::Seq(items) => Json::Array(items.iter().map(Node::to_json).collect()),
            NodeKind::Map(entries) => {
                let mut m = serde_json::Map::new();
                for (k, v) in entries {
                    m.insert(k.scalar_text().unwrap_or_default().to_owned(), v.to_json());
                }
                Json::Object(m)
            }
        }
    }
}

/// Every node of `doc` with its Cerbos-style JSON path (`$.resourcePolicy.rules[2]`),
/// keyed by the position Cerbos reports for the node; a mapping entry's key position
/// also names the entry's value (Cerbos reports some problems at the key). Where two
/// nodes share a position, the deeper path wins.
/// With each path, the position of the token go-yaml points at: for a key whose scalar
/// value is on the same line, the value.
pub(crate) fn node_tokens(doc: &Node) -> HashMap<Pos, (String, Pos)> {
    fn walk(node: &Node, path: String, out: &mut HashMap<Pos, (String, Pos)>) {
        match &node.kind {
            NodeKind::Scalar(_) => {}
            NodeKind::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(item, format!("{path}[{i}]"), out);
                }
            }
            NodeKind::Map(entries) => {
                for (k, v) in entries {
                    if let Some(key) = k.scalar_text() {
                        // As go-yaml's paths: a key that would read as path syntax is quoted.
                        let entry =
                            if key.contains(['.', '[', ']']) || key.contains(char::is_whitespace) {
                                format!("{path}.'{key}'")
                            } else {
                                format!("{path}.{key}")
                            };
                        let token = match &v.kind {
                            NodeKind::Scalar(_) if v.pos.line == k.pos.line => v.pos,
                            _ => k.pos,
                        };
                        out.entry(k.pos).or_insert_with(|| (entry.clone(), token));
                        walk(v, entry, out);
                    }
                }
            }
        }
        let deeper = out.get(&node.pos).is_none_or(|(p, _)| p.len() < path.len());
        if deeper {
            out.insert(node.pos, (path, node.pos));
        }
    }
    let mut out = HashMap::new();
    walk(doc, "$".to_owned(), &mut out);
    out
}

/// A float as JSON; NaN and infinities (which JSON cannot hold) become their protojson
/// strings.
fn float_json(f: f64) -> Json {
    match serde_json::Number::from_f64(f) {
        Some(n) => Json::Number(n),
        None if f.is_nan() => Json::String("NaN".to_owned()),
        None if f > 0.0 => Json::String("Infinity".to_owned()),
        None => Json::String("-Infinity".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> Node {
        build_documents(text).unwrap().remove(0)
    }

    #[test]
    fn block_mapping_in_a_list_is_reported_at_its_first_colon() {
        let d = doc("tests:\n  - name: x\n    b: 1\n");
        let NodeKind::Map(entries) = &d.kind else {
            panic!()
        };
        let NodeKind::Seq(items) = &entries[0].1.kind else {
            panic!()
        };
        assert_eq!(items[0].pos, Pos { line: 2, col: 9 });
    }

    #[test]
    fn merge_keys_and_core_schema() {
        let d = doc("a: &a {x: 1, y: '2'}\nb:\n  <<: *a\n  y: 3\nc: 2022-08-01\n");
        assert_eq!(
            d.to_json(),
            serde_json::json!({"a": {"x": 1, "y": "2"}, "b": {"x": 1, "y": 3}, "c": "2022-08-01"})
        );
    }

    #[test]
    fn merge_keys_never_override_explicit_keys_of_any_scalar_type() {
        let d = doc(
            "base: &b {1: merged, true: merged, k: merged}\nm:\n  1: own\n  true: own\n  <<: *b\n",
        );
        assert_eq!(
            d.to_json()["m"],
            serde_json::json!({"1": "own", "true": "own", "k": "merged"})
        );
    }

    #[test]
    fn json_paths_by_position() {
        let d =
            doc("resourcePolicy:\n  rules:\n    - actions: [read]\n      roles:\n        - user\n");
        let paths: HashMap<Pos, String> = node_tokens(&d)
            .into_iter()
            .map(|(p, (path, _))| (p, path))
            .collect();
        assert_eq!(
            paths[&Pos { line: 5, col: 11 }],
            "$.resourcePolicy.rules[0].roles[0]"
        );
        assert_eq!(
            paths[&Pos { line: 3, col: 14 }],
            "$.resourcePolicy.rules[0]"
        );
        assert_eq!(
            paths[&Pos { line: 3, col: 16 }],
            "$.resourcePolicy.rules[0].actions"
        );
        assert_eq!(
            paths[&Pos { line: 4, col: 7 }],
            "$.resourcePolicy.rules[0].roles",
            "at the key"
        );
        let d = doc("definitions:\n  a.b: 1\n");
        assert_eq!(
            node_tokens(&d)[&Pos { line: 2, col: 8 }].0,
            "$.definitions.'a.b'"
        );
    }

    #[test]
    fn unclosed_flow_collections_read_as_cerbos_says() {
        let e = build_documents("not: [valid\n").unwrap_err();
        assert_eq!(e.message, "sequence end token ']' not found");
        let e = build_documents("not: {valid: 1\n").unwrap_err();
        assert_eq!(e.message, "could not find flow mapping end token '}'");
    }

    #[test]
    fn scalar_document_and_errors() {
        let d = doc("x\n");
        assert_eq!(d.type_name(), "String");
        assert!(build_documents("a: [1\n").is_err());
        assert!(build_documents("").unwrap().is_empty());
    }
}
