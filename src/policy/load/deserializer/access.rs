//! The accessors the tree deserializer hands to serde: sequences, mappings, spanned values
//! and positions.

use super::*;

/// Reads a sequence's items.
pub(super) struct SeqAcc<'a> {
    items: std::iter::Enumerate<std::slice::Iter<'a, Node>>,
    ctx: &'a Ctx,
    path: String,
}

impl<'a> SeqAcc<'a> {
    pub(super) fn new(parent: &NodeDe<'a>, items: &'a [Node]) -> Self {
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
pub(super) struct MapAcc<'a> {
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
    pub(super) fn new(
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
pub(super) fn camel_case(name: &str) -> Cow<'_, str> {
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
pub(super) struct SpannedAcc<'a> {
    pub(super) de: Option<NodeDe<'a>>,
    pub(super) state: u8,
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
pub(super) struct SpanDe<'a> {
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

pub(super) struct SpanSeq<'a> {
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
