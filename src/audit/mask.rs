//! Masking of audit fields by dotted path (`principal.attr.email`, `resource.attr.*`).

use serde_json::{Map, Value};

/// What a masked value is replaced with.
pub(crate) const MASK: &str = "***";

/// Where a path starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Root {
    Principal,
    Resource,
}

/// A parsed mask path: a root and at least one key (`*` matches any key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MaskPath {
    root: Root,
    keys: Vec<String>,
}

impl MaskPath {
    /// Parses `principal.<key>...` or `resource.<key>...`.
    pub(crate) fn parse(path: &str) -> Result<MaskPath, String> {
        let mut parts = path.split('.');
        let root = match parts.next() {
            Some("principal") => Root::Principal,
            Some("resource") => Root::Resource,
            _ => {
                return Err(format!(
                    "{path:?} must start with `principal.` or `resource.`"
                ));
            }
        };
        let keys: Vec<String> = parts.map(str::to_string).collect();
        if keys.is_empty() || keys.iter().any(String::is_empty) {
            return Err(format!("{path:?} needs non-empty keys after the root"));
        }
        Ok(MaskPath { root, keys })
    }

    /// Whether the path can change a line: not when it reaches below `attr` and the
    /// attributes are left out (`attr` is then always null).
    pub(crate) fn can_change(&self, include_attributes: bool) -> bool {
        include_attributes || !(self.keys.len() > 1 && self.keys[0] == "attr")
    }

    /// Masks the path in one audit line (every resource for `resource.` paths).
    pub(crate) fn apply(&self, line: &mut Map<String, Value>) {
        let node = match self.root {
            Root::Principal => line.get_mut("principal"),
            Root::Resource => line.get_mut("resources"),
        };
        if let Some(node) = node {
            mask(node, &self.keys);
        }
    }
}

/// Replaces the value at `keys` under `node`; arrays apply the path to every element.
fn mask(node: &mut Value, keys: &[String]) {
    let Some((head, tail)) = keys.split_first() else {
        return;
    };
    match node {
        Value::Array(items) => items.iter_mut().for_each(|i| mask(i, keys)),
        Value::Object(map) => {
            let hit = |child: &mut Value| {
                if tail.is_empty() {
                    *child = Value::String(MASK.to_string());
                } else {
                    mask(child, tail);
                }
            };
            if head == "*" {
                map.values_mut().for_each(hit);
            } else if let Some(child) = map.get_mut(head) {
                hit(child);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line() -> Map<String, Value> {
        let v = serde_json::json!({
            "principal": {"id": "alice", "attr": {"email": "a@x.test", "dept": "eng", "nested": {"ssn": "1"}}},
            "resources": [
                {"kind": "doc", "attr": {"owner": "alice"}},
                {"kind": "doc", "attr": {"owner": "bob", "title": "t"}},
            ],
        });
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn masks_principal_and_every_resource() {
        let mut l = line();
        for p in [
            "principal.attr.email",
            "principal.attr.nested.ssn",
            "resource.attr.owner",
            "principal.attr.absent.deeper",
        ] {
            MaskPath::parse(p).unwrap().apply(&mut l);
        }
        let text = Value::Object(l).to_string();
        assert!(
            !text.contains("a@x.test") && !text.contains("bob"),
            "{text}"
        );
        assert!(!text.contains("\"ssn\":\"1\""), "{text}");
        assert!(text.contains("\"dept\":\"eng\"") && text.contains("\"title\":\"t\""));
    }

    #[test]
    fn wildcard_masks_every_key() {
        let mut l = line();
        MaskPath::parse("resource.attr.*").unwrap().apply(&mut l);
        let text = Value::Object(l).to_string();
        assert!(
            !text.contains("alice\"}") && !text.contains("\"t\""),
            "{text}"
        );
        assert!(text.contains("\"id\":\"alice\""), "{text}");
    }

    #[test]
    fn bad_paths_are_rejected() {
        for p in [
            "",
            "principal",
            "principal.",
            "headers.authorization",
            "resource..x",
        ] {
            assert!(MaskPath::parse(p).is_err(), "{p}");
        }
    }
}
