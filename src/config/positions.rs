//! Positions of the nodes of a configuration file, looked up by key path.

use std::sync::Arc;

use crate::policy::Span;
use crate::policy::yaml::{Node, NodeKind, build_documents};

/// One step of a key path: a mapping key or a sequence index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step<'a> {
    /// A mapping key.
    Key(&'a str),
    /// A sequence index (0-based).
    Index(usize),
}

/// The nodes of a configuration document with their positions.
#[derive(Clone, Debug)]
pub(crate) struct Positions {
    file: Arc<str>,
    text: Arc<str>,
    root: Option<Node>,
}

impl Positions {
    /// Reads the positions of `text` (a document that does not parse has none).
    pub(crate) fn new(file: &str, text: &str) -> Self {
        Positions {
            file: file.into(),
            text: text.into(),
            root: build_documents(text)
                .ok()
                .and_then(|docs| docs.into_iter().next()),
        }
    }

    /// The name of the file in errors.
    pub(crate) fn file(&self) -> &str {
        &self.file
    }

    /// The text of the file.
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    fn find(&self, path: &[Step<'_>]) -> Option<&Node> {
        let mut node = self.root.as_ref()?;
        for step in path {
            node = match (&node.kind, step) {
                (NodeKind::Map(entries), Step::Key(k)) => {
                    &entries.iter().find(|(key, _)| key.key_text() == Some(k))?.1
                }
                (NodeKind::Seq(items), Step::Index(i)) => items.get(*i)?,
                _ => return None,
            };
        }
        Some(node)
    }

    /// Where the node at `path` starts.
    pub(crate) fn at(&self, path: &[Step<'_>]) -> Option<Span> {
        self.find(path).map(|n| n.start.span(&self.file))
    }

    /// The position of the character `offset` of the one-line scalar at `path`
    /// (after its opening quote, if quoted).
    pub(crate) fn in_scalar(&self, path: &[Step<'_>], offset: usize) -> Option<Span> {
        let node = self.find(path)?;
        let NodeKind::Scalar(s) = &node.kind else {
            return None;
        };
        if s.block || s.text.contains('\n') {
            return None;
        }
        let line = self
            .text
            .lines()
            .nth(node.start.line.checked_sub(1)? as usize)?;
        let first = line.chars().nth(node.start.col.checked_sub(1)? as usize)?;
        let quote = u32::from(first == '"' || first == '\'');
        let mut span = node.start.span(&self.file);
        span.col += quote + u32::try_from(offset).ok()?;
        Some(span)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_find_keys_items_and_characters_in_scalars() {
        let text = "a:\n  routes:\n    - path: /x\n      id: \"{doc}\"\n    - path: /y\n";
        let p = Positions::new("g.yaml", text);
        let route = [Step::Key("a"), Step::Key("routes"), Step::Index(1)];
        assert_eq!(p.at(&route).unwrap().to_string(), "g.yaml:5:7");
        let id = [
            Step::Key("a"),
            Step::Key("routes"),
            Step::Index(0),
            Step::Key("id"),
        ];
        assert_eq!(p.in_scalar(&id, 1).unwrap().to_string(), "g.yaml:4:13");
        assert!(p.at(&[Step::Key("b")]).is_none());
    }
}
