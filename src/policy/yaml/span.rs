//! Source positions of policy elements.
//!
//! Every element of a loaded policy that an error may point at carries a [`Span`]:
//! the file (relative to the store root) and the 1-based line and column. Errors render
//! as `policies/album.yaml:12:7: unknown derived role "owner"`.
//!
//! Positions follow Cerbos: an element that is the value of a field points at the field's
//! key (`expr:` of a condition, `output:` of a rule), a list item points at the item
//! (for a block mapping, the first `:` of the item, as Cerbos reports it), and the value of
//! a map entry (a variable or constant definition) points at the value.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Serialize, Serializer};

/// A position in a policy file: file path, 1-based line and 1-based column (in characters).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Span {
    /// The file, relative to the store root (or the name given to the parser).
    pub file: Arc<str>,
    /// Line, starting at 1.
    pub line: u32,
    /// Column, starting at 1, counted in characters.
    pub col: u32,
}

impl Span {
    /// Creates a span.
    pub(crate) fn new(file: impl Into<Arc<str>>, line: u32, col: u32) -> Self {
        Self {
            file: file.into(),
            line,
            col,
        }
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

/// A value together with the position it was written at.
///
/// The Gatehouse policy loader supplies the position through a private protocol; other
/// deserializers (`serde_json`, for policies received through an API) read the value alone
/// and leave the span at its default.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Spanned<T> {
    /// The value.
    pub(crate) value: T,
    /// Where the value was written (see the module docs for which position).
    pub(crate) span: Span,
}

impl<T> Spanned<T> {
    #[cfg(test)]
    /// Wraps a value with its position.
    fn new(value: T, span: Span) -> Self {
        Self { value, span }
    }
}

impl<T> Deref for Spanned<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> AsRef<T> for Spanned<T> {
    fn as_ref(&self) -> &T {
        &self.value
    }
}

impl<T: fmt::Display> fmt::Display for Spanned<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.value.fmt(f)
    }
}

impl PartialEq<str> for Spanned<String> {
    fn eq(&self, other: &str) -> bool {
        self.value == other
    }
}

impl PartialEq<&str> for Spanned<String> {
    fn eq(&self, other: &&str) -> bool {
        self.value == *other
    }
}

impl<T: Serialize> Serialize for Spanned<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(serializer)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Spanned<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (value, span, _) = deserialize_spanned(deserializer)?;
        Ok(Self { value, span })
    }
}

// === Loader protocol ===
//
// The loader's deserializer recognises these names: a newtype struct named
// `SPANNED_STRUCT` is answered with a map of the node's report position, its own start
// position and the node itself (other deserializers hand over the value itself); a struct
// with a field named `SPAN_FIELD` receives the node's report position in that field. A
// `Span` itself deserializes from a `(file, line, col)` tuple.

/// Name of the pseudo-newtype through which positions are requested.
pub(crate) const SPANNED_STRUCT: &str = "$gatehouse::Spanned";
/// Field carrying the report position (see the module docs).
pub(crate) const SPAN_FIELD: &str = "$span";
/// Field carrying the position where the value itself starts.
pub(crate) const VALUE_SPAN_FIELD: &str = "$value_span";
/// Field carrying the value.
pub(crate) const VALUE_FIELD: &str = "$value";
/// The fields of the [`SPANNED_STRUCT`] map.
const SPANNED_FIELDS: &[&str] = &[SPAN_FIELD, VALUE_SPAN_FIELD, VALUE_FIELD];

/// Marks an error message that carries its own position (`\u{1}line:col\u{1}message`).
const POSITION_MARK: char = '\u{1}';

/// Deserializes a value with its report position and its start position.
pub(crate) fn deserialize_spanned<'de, D, T>(deserializer: D) -> Result<(T, Span, Span), D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct SpannedVisitor<T>(std::marker::PhantomData<T>);

    impl<'de, T: Deserialize<'de>> Visitor<'de> for SpannedVisitor<T> {
        type Value = (T, Span, Span);

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a value")
        }

        fn visit_newtype_struct<D: Deserializer<'de>>(
            self,
            deserializer: D,
        ) -> Result<Self::Value, D::Error> {
            Ok((
                T::deserialize(deserializer)?,
                Span::default(),
                Span::default(),
            ))
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut span = None;
            let mut value_span = None;
            let mut value = None;
            while let Some(key) = map.next_key::<String>()? {
                match key.as_str() {
                    SPAN_FIELD => span = Some(map.next_value::<Span>()?),
                    VALUE_SPAN_FIELD => value_span = Some(map.next_value::<Span>()?),
                    VALUE_FIELD => value = Some(map.next_value::<T>()?),
                    other => return Err(de::Error::unknown_field(other, SPANNED_FIELDS)),
                }
            }
            let value = value.ok_or_else(|| de::Error::missing_field(VALUE_FIELD))?;
            let span = span.unwrap_or_default();
            let value_span = value_span.unwrap_or_else(|| span.clone());
            Ok((value, span, value_span))
        }
    }

    deserializer
        .deserialize_newtype_struct(SPANNED_STRUCT, SpannedVisitor(std::marker::PhantomData))
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SpanVisitor;

        impl<'de> Visitor<'de> for SpanVisitor {
            type Value = Span;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a (file, line, column) position")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Span, A::Error> {
                let file: String = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let line: u32 = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(1, &self))?;
                let col: u32 = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(2, &self))?;
                Ok(Span::new(file, line, col))
            }
        }

        deserializer.deserialize_tuple(3, SpanVisitor)
    }
}

/// Builds a deserialization error that the loader reports at `span` instead of at the
/// node being read.
pub(crate) fn error_at<E: de::Error>(span: &Span, message: impl fmt::Display) -> E {
    if span.line == 0 {
        // No position known (not read by the loader).
        return E::custom(message);
    }
    E::custom(format_args!(
        "{POSITION_MARK}{}:{}{POSITION_MARK}{message}",
        span.line, span.col
    ))
}

/// Splits a message built by [`error_at`] into its line, column and text.
pub(crate) fn split_positioned(message: &str) -> Option<(u32, u32, &str)> {
    let rest = message.strip_prefix(POSITION_MARK)?;
    let (pos, text) = rest.split_once(POSITION_MARK)?;
    let (line, col) = pos.split_once(':')?;
    Some((line.parse().ok()?, col.parse().ok()?, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_file_line_col() {
        let span = Span::new("policies/album.yaml", 12, 7);
        assert_eq!(span.to_string(), "policies/album.yaml:12:7");
    }

    #[test]
    fn positioned_errors_round_trip() {
        let span = Span::new("a.yaml", 3, 14);
        let err: serde::de::value::Error = error_at(&span, "bad thing");
        assert_eq!(
            split_positioned(&err.to_string()),
            Some((3, 14, "bad thing"))
        );
        assert_eq!(split_positioned("plain message"), None);
    }

    #[test]
    fn spanned_derefs_to_value() {
        let s = Spanned::new(String::from("owner"), Span::new("f", 1, 2));
        assert_eq!(s.as_str(), "owner");
        assert!(s == "owner");
        assert_eq!(s.to_string(), "owner");
    }
}
