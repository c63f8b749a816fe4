//! The parts of a `CheckRequest` a decision reads, borrowed from where the request is:
//! the gRPC request's protobuf bytes (read by [`super::wire`], no copy of a header) or a
//! prost [`CheckRequest`] (Envoy's HTTP ext_authz and forward-auth build one).

use std::collections::HashMap;
use std::sync::OnceLock;

use prost::Message;

use crate::extauthz::pb::envoy::config::core::v3::Metadata;
use crate::extauthz::pb::v3::CheckRequest;

/// A `CheckRequest` as the decision reads it.
#[derive(Debug, Default)]
pub(crate) struct CheckView<'a> {
    /// `attributes`, when the request has them.
    pub(crate) attributes: Option<AttrsView<'a>>,
}

/// The `AttributeContext` fields a decision reads.
#[derive(Debug, Default)]
pub(crate) struct AttrsView<'a> {
    /// `source.principal`: the verified mTLS peer identity (empty when none).
    pub(crate) peer_principal: &'a str,
    /// `request.http`, when the request has it.
    pub(crate) http: Option<HttpView<'a>>,
    /// `context_extensions`.
    pub(crate) context_extensions: Pairs<'a>,
    /// `metadata_context`.
    pub(crate) metadata_context: MetadataView<'a>,
    /// `route_metadata_context`.
    pub(crate) route_metadata_context: MetadataView<'a>,
}

/// The `HttpRequest` fields a decision reads.
#[derive(Debug, Default)]
pub(crate) struct HttpView<'a> {
    /// `id` (Envoy's request id).
    pub(crate) id: &'a str,
    /// `method`.
    pub(crate) method: &'a str,
    /// `path`, with the query.
    pub(crate) path: &'a str,
    /// `body` (a body Envoy sent as text).
    pub(crate) body: &'a str,
    /// `raw_body` (a body Envoy sent as bytes).
    pub(crate) raw_body: &'a [u8],
    /// `headers`: lower-case names.
    pub(crate) headers: Pairs<'a>,
}

/// A protobuf `map<string, string>` as its entries in arrival order: a repeated key's
/// last entry is its value, as in the map prost builds. Looked up by a scan from the end
/// (requests carry tens of headers, and a decision looks a handful of them up).
#[derive(Clone, Debug, Default)]
pub(crate) struct Pairs<'a> {
    entries: Vec<(&'a str, &'a str)>,
}

impl<'a> Pairs<'a> {
    /// The entries of a map (each key once).
    pub(crate) fn from_map(map: &'a HashMap<String, String>) -> Self {
        Pairs {
            entries: map.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
        }
    }

    /// Appends an entry (it wins over earlier ones with its key).
    pub(crate) fn push(&mut self, key: &'a str, value: &'a str) {
        self.entries.push((key, value));
    }

    /// Whether there are no entries.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Room for `n` entries.
    pub(crate) fn reserve(&mut self, n: usize) {
        self.entries.reserve(n);
    }

    /// The value of `key`: its last entry's.
    pub(crate) fn get(&self, key: &str) -> Option<&'a str> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
    }

    /// Whether `key` has an entry.
    pub(crate) fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Every entry's key, in arrival order (a repeated key as often as it came).
    pub(crate) fn keys(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.entries.iter().map(|(k, _)| *k)
    }

    /// The map prost builds from these entries.
    #[cfg(test)]
    pub(crate) fn to_map(&self) -> HashMap<String, String> {
        self.entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

/// An optional `envoy.config.core.v3.Metadata` field: the message itself, or the bodies
/// of its occurrences in the request's bytes (already checked to decode), decoded on
/// first use: most decisions never read the metadata.
#[derive(Debug, Default)]
pub(crate) enum MetadataView<'a> {
    /// The field is not in the request.
    #[default]
    Absent,
    /// A prost message's field.
    Message(&'a Metadata),
    /// The field's occurrences in protobuf bytes, merged in order when decoded.
    Wire {
        /// The first occurrence's body.
        first: &'a [u8],
        /// Any later occurrences' bodies.
        more: Vec<&'a [u8]>,
        /// The merged message, once decoded.
        decoded: OnceLock<Metadata>,
    },
}

impl<'a> MetadataView<'a> {
    /// One more occurrence of the field in protobuf bytes.
    pub(crate) fn push_wire(&mut self, body: &'a [u8]) {
        match self {
            MetadataView::Wire { more, .. } => more.push(body),
            _ => {
                *self = MetadataView::Wire {
                    first: body,
                    more: Vec::new(),
                    decoded: OnceLock::new(),
                }
            }
        }
    }

    /// The message, when the field is in the request.
    pub(crate) fn get(&self) -> Option<&Metadata> {
        match self {
            MetadataView::Absent => None,
            MetadataView::Message(m) => Some(m),
            MetadataView::Wire {
                first,
                more,
                decoded,
            } => Some(decoded.get_or_init(|| {
                let mut m = Metadata::default();
                for body in std::iter::once(first).chain(more) {
                    // The bodies were read with prost's rules before (`wire::decode`),
                    // nested deeper than here: they merge without error.
                    if m.merge(*body).is_err() {
                        return Metadata::default();
                    }
                }
                m
            })),
        }
    }
}

impl<'a> CheckView<'a> {
    /// The view of a prost message.
    pub(crate) fn from_message(req: &'a CheckRequest) -> Self {
        let Some(a) = &req.attributes else {
            return CheckView::default();
        };
        let metadata = |m: &'a Option<Metadata>| match m {
            Some(m) => MetadataView::Message(m),
            None => MetadataView::Absent,
        };
        CheckView {
            attributes: Some(AttrsView {
                peer_principal: a.source.as_ref().map_or("", |s| s.principal.as_str()),
                http: a
                    .request
                    .as_ref()
                    .and_then(|r| r.http.as_ref())
                    .map(|h| HttpView {
                        id: &h.id,
                        method: &h.method,
                        path: &h.path,
                        body: &h.body,
                        raw_body: &h.raw_body,
                        headers: Pairs::from_map(&h.headers),
                    }),
                context_extensions: Pairs::from_map(&a.context_extensions),
                metadata_context: metadata(&a.metadata_context),
                route_metadata_context: metadata(&a.route_metadata_context),
            }),
        }
    }

    /// `attributes.request.http`, when the request has it.
    pub(crate) fn http(&self) -> Option<&HttpView<'a>> {
        self.attributes.as_ref()?.http.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_key_reads_as_its_last_entry() {
        let mut p = Pairs::default();
        p.push("a", "1");
        p.push("b", "2");
        p.push("a", "3");
        assert_eq!(p.get("a"), Some("3"));
        assert_eq!(p.get("b"), Some("2"));
        assert_eq!(p.get("c"), None);
        assert!(p.contains_key("b") && !p.contains_key(""));
        assert_eq!(p.keys().collect::<Vec<_>>(), ["a", "b", "a"]);
        assert_eq!(p.to_map().len(), 2);
        assert_eq!(p.to_map()["a"], "3");
    }

    /// Many entries keep their order, and the last entry of a key wins, wherever its
    /// earlier ones are.
    #[test]
    fn many_entries_keep_their_order() {
        let names: Vec<String> = (0..48).map(|i| format!("h{}", i % 20)).collect();
        let values: Vec<String> = (0..names.len()).map(|i| i.to_string()).collect();
        let mut p = Pairs::default();
        for (k, v) in names.iter().zip(&values) {
            p.push(k, v);
        }
        assert!(p.keys().eq(names.iter().map(String::as_str)));
        for k in 0..20 {
            let last = (0..names.len()).rev().find(|i| i % 20 == k).unwrap();
            assert_eq!(p.get(&format!("h{k}")), Some(values[last].as_str()));
        }
        assert_eq!(p.get("h20"), None);
        assert_eq!(p.to_map().len(), 20);
        let map: HashMap<String, String> =
            (0..40).map(|i| (format!("k{i}"), i.to_string())).collect();
        let from = Pairs::from_map(&map);
        assert_eq!(from.to_map(), map);
    }

    #[test]
    fn metadata_occurrences_merge_in_order() {
        use crate::extauthz::pb::google::protobuf::{Struct, Value, value::Kind};
        let one = |k: &str, n: f64| Metadata {
            filter_metadata: [(
                "ns".to_string(),
                Struct {
                    fields: [(
                        k.to_string(),
                        Value {
                            kind: Some(Kind::NumberValue(n)),
                        },
                    )]
                    .into(),
                },
            )]
            .into(),
            ..Default::default()
        };
        let (a, b) = (one("x", 1.0).encode_to_vec(), one("y", 2.0).encode_to_vec());
        let mut view = MetadataView::Absent;
        assert!(view.get().is_none());
        view.push_wire(&a);
        view.push_wire(&b);
        let mut both = Metadata::decode(&a[..]).unwrap();
        both.merge(&b[..]).unwrap();
        // A second occurrence of a map entry replaces the first (prost's map merge).
        assert_eq!(view.get(), Some(&both));
        assert_eq!(view.get().unwrap().filter_metadata["ns"].fields.len(), 1);
    }
}
