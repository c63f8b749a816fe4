//! A serde `Deserializer` over the YAML tree that records each node's position.

use super::*;

mod access;

use access::{MapAcc, SeqAcc, SpannedAcc};

/// Shared state of one document's deserialization.
pub(super) struct Ctx {
    pub(super) file: Arc<str>,
    /// Position of every field, list item and map value read, by protojson path.
    pub(super) positions: RefCell<HashMap<String, Pos>>,
}

impl Ctx {
    fn record(&self, path: &str, pos: Pos) {
        self.positions.borrow_mut().insert(path.to_owned(), pos);
    }
}

/// How a key is read.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyKind {
    /// A field name of a message.
    Field,
    /// A key of a map field.
    MapKey,
}

/// A deserialization error, with the position of the node it is about.
#[derive(Debug)]
pub(super) struct DeError {
    pub(super) message: String,
    pub(super) pos: Option<Pos>,
    pub(super) unknown_key: Option<UnknownKey>,
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
pub(super) struct NodeDe<'a> {
    pub(super) node: &'a Node,
    pub(super) ctx: &'a Ctx,
    /// Where this value is reported: the key of a field, the item, or the map value.
    pub(super) report: Pos,
    /// The protojson path of this value.
    pub(super) path: String,
    /// Set when the node is a key.
    pub(super) key: Option<KeyKind>,
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
