//! `CheckResourcesRequest` read from protobuf straight into the API's [`CheckRequest`]:
//! attribute maps become CEL maps as they are read, without the `BTreeMap<String,
//! google.protobuf.Value>` tree that the generated message builds and the conversion after
//! it.
//!
//! The reading is prost's own, step for step: the same field functions, the same
//! recursion limit, unknown fields skipped, a repeated optional message merged into the
//! first, a repeated map key keeping its last value, and the same errors with the same
//! `Message.field` trail (the gRPC status of a malformed request reads as before). Map
//! entries go through prost's map reader one at a time (`btree_map::merge` on a map that
//! is emptied after every entry), which keeps its depth accounting exact.

use std::collections::BTreeMap;
use std::sync::Arc;

use prost::bytes::{Buf, BufMut};
use prost::encoding::{
    DecodeContext, WireType, check_wire_type, decode_varint, double, int32, message, skip_field,
    string,
};
use prost::{DecodeError, Message};
use prost_types::value::Kind;

use super::pb::cerbos::audit::v1::RequestContext;
use super::pb::cerbos::engine::v1 as pb_engine;
use super::pb::cerbos::request::v1::check_resources_request::ResourceEntry;
use super::pb::cerbos::request::v1::{AuxData, CheckResourcesRequest};
use super::request::{CheckRequest, Entry, pb_value, sorted_map};
use crate::cel::{Key, Value};
use crate::engine;

/// `error` with one more `Message.field` step of its trail, as prost's generated code adds.
fn at(mut error: DecodeError, message: &'static str, field: &'static str) -> DecodeError {
    error.push(message, field);
    error
}

/// A `CheckResourcesRequest` being read (the gRPC codec's message type).
#[derive(Debug, Default)]
pub(crate) struct CheckResourcesWire {
    request_id: String,
    include_meta: bool,
    principal: Option<PrincipalWire>,
    resources: Vec<EntryWire>,
    aux_data: Option<AuxData>,
    request_context: Option<RequestContext>,
}

impl CheckResourcesWire {
    /// The request read.
    pub(crate) fn into_request(self) -> CheckRequest {
        CheckRequest {
            request_id: self.request_id,
            include_meta: self.include_meta,
            principal: self.principal.map(PrincipalWire::into_principal),
            resources: self
                .resources
                .into_iter()
                .map(|e| Entry {
                    actions: e.actions,
                    resource: e.resource.map(ResourceWire::into_resource),
                })
                .collect(),
            aux_data: self.aux_data,
            request_context: self.request_context,
        }
    }

    fn to_pb(&self) -> CheckResourcesRequest {
        CheckResourcesRequest {
            request_id: self.request_id.clone(),
            include_meta: self.include_meta,
            principal: self.principal.as_ref().map(PrincipalWire::to_pb),
            resources: self.resources.iter().map(EntryWire::to_pb).collect(),
            aux_data: self.aux_data.clone(),
            request_context: self.request_context.clone(),
        }
    }
}

/// The `Message` methods a reader type needs: reading is its own, writing goes through
/// the generated message it stands for (used by nothing on the request path).
macro_rules! written_as_pb {
    ($ty:ty) => {
        fn encode_raw(&self, buf: &mut impl BufMut) {
            self.to_pb().encode_raw(buf)
        }

        fn encoded_len(&self) -> usize {
            self.to_pb().encoded_len()
        }

        fn clear(&mut self) {
            *self = <$ty>::default();
        }
    };
}

impl Message for CheckResourcesWire {
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        const NAME: &str = "CheckResourcesRequest";
        match tag {
            1 => string::merge(wire_type, &mut self.request_id, buf, ctx)
                .map_err(|e| at(e, NAME, "request_id")),
            2 => prost::encoding::bool::merge(wire_type, &mut self.include_meta, buf, ctx)
                .map_err(|e| at(e, NAME, "include_meta")),
            3 => message::merge(
                wire_type,
                self.principal.get_or_insert_with(Default::default),
                buf,
                ctx,
            )
            .map_err(|e| at(e, NAME, "principal")),
            4 => message::merge_repeated(wire_type, &mut self.resources, buf, ctx)
                .map_err(|e| at(e, NAME, "resources")),
            5 => message::merge(
                wire_type,
                self.aux_data.get_or_insert_with(Default::default),
                buf,
                ctx,
            )
            .map_err(|e| at(e, NAME, "aux_data")),
            6 => message::merge(
                wire_type,
                self.request_context.get_or_insert_with(Default::default),
                buf,
                ctx,
            )
            .map_err(|e| at(e, NAME, "request_context")),
            _ => skip_field(wire_type, tag, buf, ctx),
        }
    }

    written_as_pb!(CheckResourcesWire);
}

/// A `ResourceEntry` being read.
#[derive(Debug, Default)]
struct EntryWire {
    actions: Vec<String>,
    resource: Option<ResourceWire>,
}

impl EntryWire {
    fn to_pb(&self) -> ResourceEntry {
        ResourceEntry {
            actions: self.actions.clone(),
            resource: self.resource.as_ref().map(ResourceWire::to_pb),
        }
    }
}

impl Message for EntryWire {
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        const NAME: &str = "ResourceEntry";
        match tag {
            1 => string::merge_repeated(wire_type, &mut self.actions, buf, ctx)
                .map_err(|e| at(e, NAME, "actions")),
            2 => message::merge(
                wire_type,
                self.resource.get_or_insert_with(Default::default),
                buf,
                ctx,
            )
            .map_err(|e| at(e, NAME, "resource")),
            _ => skip_field(wire_type, tag, buf, ctx),
        }
    }

    written_as_pb!(EntryWire);
}

/// A `cerbos.engine.v1.Principal` being read.
#[derive(Debug, Default)]
struct PrincipalWire {
    id: String,
    policy_version: String,
    roles: Vec<Arc<str>>,
    attr: MapWire,
    scope: String,
}

impl PrincipalWire {
    fn into_principal(self) -> engine::Principal {
        engine::Principal {
            id: self.id,
            roles: self.roles,
            attr: Arc::new(sorted_map(self.attr.fields)),
            policy_version: self.policy_version,
            scope: self.scope,
        }
    }

    fn to_pb(&self) -> pb_engine::Principal {
        pb_engine::Principal {
            id: self.id.clone(),
            policy_version: self.policy_version.clone(),
            roles: self.roles.iter().map(|r| r.to_string()).collect(),
            attr: self.attr.to_pb(),
            scope: self.scope.clone(),
        }
    }
}

impl Message for PrincipalWire {
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        const NAME: &str = "Principal";
        match tag {
            1 => string::merge(wire_type, &mut self.id, buf, ctx).map_err(|e| at(e, NAME, "id")),
            2 => string::merge(wire_type, &mut self.policy_version, buf, ctx)
                .map_err(|e| at(e, NAME, "policy_version")),
            3 => check_wire_type(WireType::LengthDelimited, wire_type)
                .and_then(|()| merge_shared_str(wire_type, buf, ctx))
                .map(|role| self.roles.push(role))
                .map_err(|e| at(e, NAME, "roles")),
            4 => self
                .attr
                .merge_attribute(wire_type, buf, ctx)
                .map_err(|e| at(e, NAME, "attr")),
            5 => string::merge(wire_type, &mut self.scope, buf, ctx)
                .map_err(|e| at(e, NAME, "scope")),
            _ => skip_field(wire_type, tag, buf, ctx),
        }
    }

    written_as_pb!(PrincipalWire);
}

/// A `cerbos.engine.v1.Resource` being read.
#[derive(Debug, Default)]
struct ResourceWire {
    kind: String,
    policy_version: String,
    id: String,
    attr: MapWire,
    scope: String,
}

impl ResourceWire {
    fn into_resource(self) -> engine::Resource {
        engine::Resource {
            kind: self.kind,
            id: self.id,
            attr: Arc::new(sorted_map(self.attr.fields)),
            policy_version: self.policy_version,
            scope: self.scope,
        }
    }

    fn to_pb(&self) -> pb_engine::Resource {
        pb_engine::Resource {
            kind: self.kind.clone(),
            policy_version: self.policy_version.clone(),
            id: self.id.clone(),
            attr: self.attr.to_pb(),
            scope: self.scope.clone(),
        }
    }
}

impl Message for ResourceWire {
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        const NAME: &str = "Resource";
        match tag {
            1 => {
                string::merge(wire_type, &mut self.kind, buf, ctx).map_err(|e| at(e, NAME, "kind"))
            }
            2 => string::merge(wire_type, &mut self.policy_version, buf, ctx)
                .map_err(|e| at(e, NAME, "policy_version")),
            3 => string::merge(wire_type, &mut self.id, buf, ctx).map_err(|e| at(e, NAME, "id")),
            4 => self
                .attr
                .merge_attribute(wire_type, buf, ctx)
                .map_err(|e| at(e, NAME, "attr")),
            5 => string::merge(wire_type, &mut self.scope, buf, ctx)
                .map_err(|e| at(e, NAME, "scope")),
            _ => skip_field(wire_type, tag, buf, ctx),
        }
    }

    written_as_pb!(ResourceWire);
}

/// A `map<string, google.protobuf.Value>` being read: the entries in arrival order
/// (sorted, with repeated keys resolved, when the map is finished).
#[derive(Debug, Default)]
struct MapWire {
    fields: Vec<(Key, Value)>,
}

impl MapWire {
    /// Reads one entry of a principal's or resource's `attr` map: an attribute with a scalar
    /// value in the usual encoding straight from the buffer ([`scalar_entry`]), anything
    /// else as [`merge_entry`](Self::merge_entry) does. These maps sit a few messages deep,
    /// so prost's recursion limit, which the fast path does not count, is never near.
    fn merge_attribute(
        &mut self,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        if wire_type == WireType::LengthDelimited
            && let Some((key, value, used)) = scalar_entry(buf.chunk())
        {
            buf.advance(used);
            self.fields.push((Key::String(key), value));
            return Ok(());
        }
        self.merge_entry(wire_type, buf, ctx)
    }

    /// Reads one map entry, as prost's generated code reads a map field.
    fn merge_entry(
        &mut self,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        check_wire_type(WireType::LengthDelimited, wire_type)?;
        let mut entry = EntryOfMap::default();
        message::merge(wire_type, &mut entry, buf, ctx)?;
        let key = entry.key.unwrap_or_else(|| Arc::from(""));
        self.fields.push((Key::String(key), entry.value.finish()));
        Ok(())
    }

    fn to_pb(&self) -> BTreeMap<String, prost_types::Value> {
        // Collected in arrival order: a repeated key keeps its last value.
        self.fields
            .iter()
            .map(|(k, v)| (k.to_string(), pb_value(v)))
            .collect()
    }
}

/// One entry of a map being read: prost reads a map entry as this message (the same
/// depth accounting, fields 1 and 2, others skipped, no trail of its own).
#[derive(Debug, Default)]
struct EntryOfMap {
    key: Option<Arc<str>>,
    value: ValueWire,
}

impl Message for EntryOfMap {
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        match tag {
            1 => {
                self.key = Some(merge_shared_str(wire_type, buf, ctx)?);
                Ok(())
            }
            2 => message::merge(wire_type, &mut self.value, buf, ctx),
            _ => skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encode_raw(&self, buf: &mut impl BufMut) {
        if let Some(key) = self.key.as_deref().filter(|k| !k.is_empty()) {
            string::encode(1, &key.to_string(), buf);
        }
        message::encode(2, &self.value.to_pb(), buf);
    }

    fn encoded_len(&self) -> usize {
        let key = self.key.as_deref().filter(|k| !k.is_empty());
        key.map_or(0, |k| string::encoded_len(1, &k.to_string()))
            + message::encoded_len(2, &self.value.to_pb())
    }

    fn clear(&mut self) {
        *self = EntryOfMap::default();
    }
}

/// A string field read straight into a shared string: at most one allocation (none for a
/// short string this thread read recently, see [`intern`](super::intern)), where
/// `string::merge` and a conversion would make two. Whatever the fast path does not
/// take (a value split across buffer chunks, a bad length, bad UTF-8) goes through
/// `string::merge`, which reads it or fails with prost's error.
fn merge_shared_str(
    wire_type: WireType,
    buf: &mut impl Buf,
    ctx: DecodeContext,
) -> Result<Arc<str>, DecodeError> {
    if wire_type == WireType::LengthDelimited {
        let mut chunk = buf.chunk();
        let available = chunk.len();
        if let Ok(len) = decode_varint(&mut chunk)
            && let Some(bytes) = usize::try_from(len).ok().and_then(|n| chunk.get(..n))
            && let Some(shared) = super::intern::shared_utf8(bytes)
        {
            buf.advance(available - chunk.len() + bytes.len());
            return Ok(shared);
        }
    }
    let mut s = String::new();
    string::merge(wire_type, &mut s, buf, ctx)?;
    Ok(Arc::from(s))
}

/// A map entry (its length prefix first) in the form encoders write for a scalar value:
/// field 1, the key, then field 2, a `google.protobuf.Value` holding one null, number,
/// string or bool, and nothing else. Returns the key, the value and the bytes used, or
/// `None` for any other form (another field order, repeated or unknown fields, a struct or
/// list value, a bad length, varint or UTF-8, an entry split across buffer chunks): the
/// general path reads those, or fails with prost's error, the same either way.
fn scalar_entry(chunk: &[u8]) -> Option<(Arc<str>, Value, usize)> {
    const KEY: u8 = 1 << 3 | 2;
    const VALUE: u8 = 2 << 3 | 2;
    let mut rest = chunk;
    let len = usize::try_from(decode_varint(&mut rest).ok()?).ok()?;
    let prefix = chunk.len() - rest.len();
    let mut entry = rest.get(..len)?;
    let key = length_delimited(&mut entry, KEY)?;
    let value = length_delimited(&mut entry, VALUE)?;
    if !entry.is_empty() {
        return None;
    }
    let value = scalar_value(value)?;
    Some((super::intern::shared_utf8(key)?, value, prefix + len))
}

/// The bytes of field `key` (a length-delimited field's key byte) at the start of `bytes`,
/// which move past it.
fn length_delimited<'a>(bytes: &mut &'a [u8], key: u8) -> Option<&'a [u8]> {
    let (&first, mut rest) = bytes.split_first()?;
    if first != key {
        return None;
    }
    let len = usize::try_from(decode_varint(&mut rest).ok()?).ok()?;
    let field = rest.get(..len)?;
    *bytes = &rest[len..];
    Some(field)
}

/// A `google.protobuf.Value` that is empty (null) or holds exactly one scalar field.
fn scalar_value(bytes: &[u8]) -> Option<Value> {
    const NULL: u8 = 1 << 3;
    const NUMBER: u8 = 2 << 3 | 1;
    const STRING: u8 = 3 << 3 | 2;
    const BOOL: u8 = 4 << 3;
    let mut rest = bytes;
    let Some((&key, after_key)) = rest.split_first() else {
        return Some(Value::Null);
    };
    let value = match key {
        NULL => {
            rest = after_key;
            decode_varint(&mut rest).ok()?;
            Value::Null
        }
        NUMBER => {
            let (number, after) = after_key.split_first_chunk::<8>()?;
            rest = after;
            Value::Double(f64::from_le_bytes(*number))
        }
        STRING => Value::String(super::intern::shared_utf8(length_delimited(
            &mut rest, STRING,
        )?)?),
        BOOL => {
            rest = after_key;
            Value::Bool(decode_varint(&mut rest).ok()? != 0)
        }
        _ => return None,
    };
    rest.is_empty().then_some(value)
}

/// A `google.protobuf.Value` being read.
#[derive(Debug, Default)]
struct ValueWire {
    kind: Option<KindWire>,
}

/// The `kind` oneof being read.
#[derive(Debug)]
enum KindWire {
    Null(i32),
    Number(f64),
    String(Arc<str>),
    Bool(bool),
    Struct(MapWire),
    List(Vec<Value>),
}

impl ValueWire {
    /// The value read (numbers are doubles, as in Cerbos; unset is null).
    fn finish(self) -> Value {
        match self.kind {
            None | Some(KindWire::Null(_)) => Value::Null,
            Some(KindWire::Number(n)) => Value::Double(n),
            Some(KindWire::String(s)) => Value::String(s),
            Some(KindWire::Bool(b)) => Value::Bool(b),
            Some(KindWire::Struct(m)) => Value::map(sorted_map(m.fields)),
            Some(KindWire::List(items)) => Value::list(items),
        }
    }

    fn to_pb(&self) -> prost_types::Value {
        let kind = self.kind.as_ref().map(|k| match k {
            KindWire::Null(n) => Kind::NullValue(*n),
            KindWire::Number(n) => Kind::NumberValue(*n),
            KindWire::String(s) => Kind::StringValue(s.to_string()),
            KindWire::Bool(b) => Kind::BoolValue(*b),
            KindWire::Struct(m) => Kind::StructValue(prost_types::Struct { fields: m.to_pb() }),
            KindWire::List(items) => Kind::ListValue(prost_types::ListValue {
                values: items.iter().map(pb_value).collect(),
            }),
        });
        prost_types::Value { kind }
    }

    /// One field of the oneof: the same kind again merges into it (scalars are replaced,
    /// a struct gains entries, a list gains items), another kind replaces it.
    fn merge_kind(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        match (tag, &mut self.kind) {
            (1, Some(KindWire::Null(n))) => int32::merge(wire_type, n, buf, ctx),
            (2, Some(KindWire::Number(n))) => double::merge(wire_type, n, buf, ctx),
            (3, Some(KindWire::String(s))) => {
                *s = merge_shared_str(wire_type, buf, ctx)?;
                Ok(())
            }
            (4, Some(KindWire::Bool(b))) => prost::encoding::bool::merge(wire_type, b, buf, ctx),
            (5, Some(KindWire::Struct(m))) => message::merge(wire_type, m, buf, ctx),
            (6, Some(KindWire::List(items))) => merge_list(wire_type, items, buf, ctx),
            (1, _) => {
                let mut n = 0;
                int32::merge(wire_type, &mut n, buf, ctx)?;
                self.kind = Some(KindWire::Null(n));
                Ok(())
            }
            (2, _) => {
                let mut n = 0.0;
                double::merge(wire_type, &mut n, buf, ctx)?;
                self.kind = Some(KindWire::Number(n));
                Ok(())
            }
            (3, _) => {
                self.kind = Some(KindWire::String(merge_shared_str(wire_type, buf, ctx)?));
                Ok(())
            }
            (4, _) => {
                let mut b = false;
                prost::encoding::bool::merge(wire_type, &mut b, buf, ctx)?;
                self.kind = Some(KindWire::Bool(b));
                Ok(())
            }
            (5, _) => {
                let mut m = MapWire::default();
                message::merge(wire_type, &mut m, buf, ctx)?;
                self.kind = Some(KindWire::Struct(m));
                Ok(())
            }
            _ => {
                let mut items = Vec::new();
                merge_list(wire_type, &mut items, buf, ctx)?;
                self.kind = Some(KindWire::List(items));
                Ok(())
            }
        }
    }
}

impl Message for ValueWire {
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        match tag {
            1..=6 => self
                .merge_kind(tag, wire_type, buf, ctx)
                .map_err(|e| at(e, "Value", "kind")),
            _ => skip_field(wire_type, tag, buf, ctx),
        }
    }

    written_as_pb!(ValueWire);
}

/// A `google.protobuf.Struct` is read as a map of its `fields`.
impl Message for MapWire {
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        match tag {
            1 => self
                .merge_entry(wire_type, buf, ctx)
                .map_err(|e| at(e, "Struct", "fields")),
            _ => skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encode_raw(&self, buf: &mut impl BufMut) {
        prost_types::Struct {
            fields: self.to_pb(),
        }
        .encode_raw(buf)
    }

    fn encoded_len(&self) -> usize {
        prost_types::Struct {
            fields: self.to_pb(),
        }
        .encoded_len()
    }

    fn clear(&mut self) {
        *self = MapWire::default();
    }
}

/// A `google.protobuf.ListValue` (its field 1, `values`) read into `items`.
struct ListWire<'a>(&'a mut Vec<Value>);

fn merge_list(
    wire_type: WireType,
    items: &mut Vec<Value>,
    buf: &mut impl Buf,
    ctx: DecodeContext,
) -> Result<(), DecodeError> {
    let mut list = ListWire(items);
    message::merge(wire_type, &mut list, buf, ctx)
}

impl ListWire<'_> {
    fn to_pb(&self) -> prost_types::ListValue {
        prost_types::ListValue {
            values: self.0.iter().map(pb_value).collect(),
        }
    }
}

impl Message for ListWire<'_> {
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        match tag {
            1 => {
                let read = || {
                    check_wire_type(WireType::LengthDelimited, wire_type)?;
                    let mut value = ValueWire::default();
                    message::merge(WireType::LengthDelimited, &mut value, buf, ctx)?;
                    self.0.push(value.finish());
                    Ok(())
                };
                read().map_err(|e| at(e, "ListValue", "values"))
            }
            _ => skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encode_raw(&self, buf: &mut impl BufMut) {
        self.to_pb().encode_raw(buf)
    }

    fn encoded_len(&self) -> usize {
        self.to_pb().encoded_len()
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

#[cfg(test)]
mod tests {
    use prost::encoding::{encode_key, encode_varint};

    use super::*;
    use crate::api::protojson::decode_check_resources;

    /// The request read by this module and by the generated message (then converted), both
    /// as the generated message again; errors as their text (the gRPC status message).
    fn both(
        bytes: &[u8],
    ) -> (
        Result<CheckResourcesRequest, String>,
        Result<CheckResourcesRequest, String>,
    ) {
        let ours = CheckRequest::decode_protobuf(bytes)
            .map(|r| r.to_pb())
            .map_err(|e| e.to_string());
        let generated = CheckResourcesRequest::decode(bytes)
            .map(|r| CheckRequest::from(r).to_pb())
            .map_err(|e| e.to_string());
        (ours, generated)
    }

    fn same(bytes: &[u8]) -> Result<CheckResourcesRequest, String> {
        let (ours, generated) = both(bytes);
        assert_eq!(ours, generated, "{bytes:02x?}");
        ours
    }

    fn request(json: &str) -> Vec<u8> {
        decode_check_resources(json.as_bytes())
            .unwrap()
            .to_pb()
            .encode_to_vec()
    }

    const RICH: &str = r#"{"requestId":"r-1","includeMeta":true,
        "principal":{"id":"bob","policyVersion":"v1","roles":["a","b"],"scope":"acme",
          "attr":{"z":[1,"two",null,{"deep":[true,{"x":-0.5}]}],"":"empty key","é":{"b":1,"a":2},"n":null}},
        "resources":[{"actions":["read","write"],"resource":{"kind":"doc","id":"1","scope":"acme.hr",
          "attr":{"owner":"bob","tags":["x","y"],"size":12.5,"flag":false,"m":{}}}},
          {"actions":["read"],"resource":{"kind":"doc","id":"2"}},{"actions":[]}],
        "auxData":{"jwt":{"token":"t","keySetId":"k"}},
        "requestContext":{"annotations":{"a":1}}}"#;

    #[test]
    fn a_request_reads_as_the_generated_message_reads_it() {
        let bytes = request(RICH);
        let read = same(&bytes).unwrap();
        assert_eq!(read.principal.unwrap().attr.len(), 4);
        let req = CheckRequest::decode_protobuf(&bytes).unwrap();
        let p = req.principal.unwrap();
        assert_eq!(&*p.roles[1], "b");
        let keys: Vec<String> = p.attr.iter().map(|(k, _)| k.to_string()).collect();
        assert_eq!(keys, ["", "n", "z", "é"]);
        assert!(matches!(p.attr.get_str("n"), Some(Value::Null)));
        assert_eq!(req.resources.len(), 3);
        assert!(req.resources[2].resource.is_none());
    }

    #[test]
    fn truncated_requests_fail_as_before() {
        let bytes = request(RICH);
        let mut failures = 0;
        for end in 0..bytes.len() {
            if same(&bytes[..end]).is_err() {
                failures += 1;
            }
        }
        assert!(failures > bytes.len() / 2, "{failures} of {}", bytes.len());
    }

    #[test]
    fn corrupted_bytes_read_or_fail_as_before() {
        let bytes = request(RICH);
        let mut errors = std::collections::BTreeSet::new();
        for at in 0..bytes.len() {
            for b in [0x00, 0x01, 0x07, 0x0a, 0x12, 0x22, 0x2a, 0x7f, 0x80, 0xff] {
                let mut changed = bytes.clone();
                changed[at] = b;
                if let Err(e) = same(&changed) {
                    errors.insert(e);
                }
            }
        }
        // The trails of nested messages are among them.
        assert!(
            errors.iter().any(|e| e.contains("Value.kind: ")),
            "{errors:#?}"
        );
        assert!(errors.iter().any(|e| e.contains("invalid wire type")));
        assert!(errors.iter().any(|e| e.contains("invalid string value")));
    }

    /// Two messages one after the other are one merged message: a repeated optional
    /// message merges into the first, a repeated map key keeps its last value, the same
    /// struct or list kind of a value gains entries or items.
    #[test]
    fn merged_messages_and_repeated_keys_follow_protobuf() {
        let first = request(
            r#"{"principal":{"id":"a","roles":["x"],"attr":{"k":1,"s":{"a":1,"b":2},"l":[1],"v":"str"}},"resources":[{"actions":["r"],"resource":{"kind":"k","id":"1","attr":{"q":1}}}]}"#,
        );
        let second = request(
            r#"{"principal":{"roles":["y"],"attr":{"k":2,"s":{"b":3,"c":4},"l":[2,3],"v":true}},"resources":[{"actions":["w"]}]}"#,
        );
        let merged = same(&[first, second].concat()).unwrap();
        let p = merged.principal.unwrap();
        assert_eq!(p.id, "a");
        assert_eq!(p.roles, ["x", "y"]);
        assert_eq!(p.attr["k"].kind, Some(Kind::NumberValue(2.0)));
        assert_eq!(p.attr["v"].kind, Some(Kind::BoolValue(true)));
        assert_eq!(merged.resources.len(), 2);

        // A value whose struct comes twice, with a repeated key inside.
        let mut value = Vec::new();
        for (k, n) in [("b", 1.0), ("a", 2.0), ("b", 3.0)] {
            let one = prost_types::Value {
                kind: Some(Kind::StructValue(prost_types::Struct {
                    fields: [(
                        k.to_string(),
                        prost_types::Value {
                            kind: Some(Kind::NumberValue(n)),
                        },
                    )]
                    .into(),
                })),
            };
            value.extend(one.encode_to_vec());
        }
        let bytes = principal_with_value(&value);
        let read = same(&bytes).unwrap();
        let Some(Kind::StructValue(s)) = &read.principal.unwrap().attr["v"].kind else {
            panic!("a struct")
        };
        assert_eq!(s.fields.len(), 2);
        assert_eq!(s.fields["b"].kind, Some(Kind::NumberValue(3.0)));
    }

    /// A request whose principal has one attribute `v` with the given encoded value.
    fn principal_with_value(value: &[u8]) -> Vec<u8> {
        principal_with_entry(value, &[])
    }

    /// The same, with `extra` bytes inside the map entry after its value.
    fn principal_with_entry(value: &[u8], extra: &[u8]) -> Vec<u8> {
        let mut entry = Vec::new();
        prost::encoding::string::encode(1, &"v".to_string(), &mut entry);
        encode_key(2, WireType::LengthDelimited, &mut entry);
        encode_varint(value.len() as u64, &mut entry);
        entry.extend_from_slice(value);
        entry.extend_from_slice(extra);
        let mut principal = Vec::new();
        encode_key(4, WireType::LengthDelimited, &mut principal);
        encode_varint(entry.len() as u64, &mut principal);
        principal.extend(entry);
        let mut req = Vec::new();
        encode_key(3, WireType::LengthDelimited, &mut req);
        encode_varint(principal.len() as u64, &mut req);
        req.extend(principal);
        req
    }

    #[test]
    fn unknown_fields_are_skipped_at_every_level() {
        let mut unknown = Vec::new();
        encode_key(99, WireType::Varint, &mut unknown);
        encode_varint(7, &mut unknown);
        encode_key(98, WireType::LengthDelimited, &mut unknown);
        encode_varint(2, &mut unknown);
        unknown.extend_from_slice(b"zz");
        let string = prost_types::Value {
            kind: Some(Kind::StringValue("s".into())),
        }
        .encode_to_vec();
        // In a value, in a map entry, and at the top.
        let value = [&unknown[..], &string[..]].concat();
        let mut bytes = principal_with_entry(&value, &unknown);
        bytes.extend_from_slice(&unknown);
        bytes.extend(request(RICH));
        let read = same(&bytes).unwrap();
        assert_eq!(
            read.principal.unwrap().attr["v"].kind,
            Some(Kind::StringValue("s".into()))
        );
        // A group is skipped too; an unmatched end of group is an error.
        let mut group = Vec::new();
        encode_key(97, WireType::StartGroup, &mut group);
        encode_key(1, WireType::Varint, &mut group);
        encode_varint(1, &mut group);
        encode_key(97, WireType::EndGroup, &mut group);
        same(&principal_with_entry(&string, &group)).unwrap();
        let mut end = Vec::new();
        encode_key(96, WireType::EndGroup, &mut end);
        assert!(same(&principal_with_entry(&string, &end)).is_err());
    }

    #[test]
    fn nesting_stops_at_prosts_recursion_limit() {
        // [[[...]]] as values in lists in values.
        let nested = |depth: usize| {
            let mut v = prost_types::Value {
                kind: Some(Kind::BoolValue(true)),
            };
            for _ in 0..depth {
                v = prost_types::Value {
                    kind: Some(Kind::ListValue(prost_types::ListValue { values: vec![v] })),
                };
            }
            principal_with_value(&v.encode_to_vec())
        };
        let mut deepest_ok = 0;
        for depth in 40..60 {
            match same(&nested(depth)) {
                Ok(_) => deepest_ok = depth,
                Err(e) => assert!(e.contains("recursion limit reached"), "{e}"),
            }
        }
        assert!((40..59).contains(&deepest_ok), "{deepest_ok}");
    }

    #[test]
    fn large_maps_in_any_order_read_sorted_without_repeats() {
        let mut fields = Vec::new();
        for i in (0..5000).rev() {
            fields.push((format!("k{i:05}"), f64::from(i)));
            if i % 7 == 0 {
                fields.push((format!("k{i:05}"), -1.0));
            }
        }
        // Entries written in this order (not as a BTreeMap would write them).
        let mut principal = Vec::new();
        for (k, n) in &fields {
            let mut entry = Vec::new();
            prost::encoding::string::encode(1, k, &mut entry);
            prost::encoding::message::encode(
                2,
                &prost_types::Value {
                    kind: Some(Kind::NumberValue(*n)),
                },
                &mut entry,
            );
            encode_key(4, WireType::LengthDelimited, &mut principal);
            encode_varint(entry.len() as u64, &mut principal);
            principal.extend(entry);
        }
        let mut bytes = Vec::new();
        encode_key(3, WireType::LengthDelimited, &mut bytes);
        encode_varint(principal.len() as u64, &mut bytes);
        bytes.extend(principal);
        let read = same(&bytes).unwrap();
        let attr = read.principal.unwrap().attr;
        assert_eq!(attr.len(), 5000);
        assert_eq!(attr["k00007"].kind, Some(Kind::NumberValue(-1.0)));
        assert_eq!(attr["k00008"].kind, Some(Kind::NumberValue(8.0)));
        // The count limit sees the same 5,000 values.
        let req = CheckRequest::decode_protobuf(&bytes).unwrap();
        let limits = crate::api::ApiSettings {
            max_attribute_values: 4999,
            ..Default::default()
        };
        assert_eq!(
            crate::api::limits::check_limits(&req, &limits)
                .unwrap_err()
                .message(),
            "number of attribute values exceeds configured limit (4999)"
        );
    }

    /// Attributes with a scalar value in the usual encoding are read by the fast path
    /// (`scalar_entry`), as the generated message reads them, in every encoding of the
    /// scalar; the other forms fall through to the general path.
    #[test]
    fn scalar_attributes_read_on_the_fast_path_as_prost_reads_them() {
        let entry = |key: &[u8], value: &[u8]| {
            let mut e = Vec::new();
            encode_key(1, WireType::LengthDelimited, &mut e);
            encode_varint(key.len() as u64, &mut e);
            e.extend_from_slice(key);
            encode_key(2, WireType::LengthDelimited, &mut e);
            encode_varint(value.len() as u64, &mut e);
            e.extend_from_slice(value);
            let mut framed = Vec::new();
            encode_varint(e.len() as u64, &mut framed);
            framed.extend(e);
            framed
        };
        let neg_zero = [&[0x11][..], &(-0.0f64).to_le_bytes()[..]].concat();
        let fast: [&[u8]; 10] = [
            b"",
            b"\x08\x00",
            b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
            b"\x20\x00",
            b"\x20\x02",
            b"\x20\x81\x00",
            b"\x1a\x00",
            b"\x1a\x03abc",
            b"\x11\x00\x00\x00\x00\x00\x00\xf0\x3f",
            &neg_zero,
        ];
        for value in fast {
            let framed = entry(b"k", value);
            assert!(scalar_entry(&framed).is_some(), "{value:02x?}");
            same(&principal_with_value(value)).unwrap();
        }
        // NaN, which the comparison above cannot take (NaN is not equal to itself).
        let nan = [&[0x11][..], &f64::NAN.to_le_bytes()[..]].concat();
        let Some((_, Value::Double(n), used)) = scalar_entry(&entry(b"k", &nan)) else {
            panic!("NaN on the fast path")
        };
        assert!(n.is_nan());
        assert_eq!(used, entry(b"k", &nan).len());
        let req = CheckRequest::decode_protobuf(&principal_with_value(&nan)).unwrap();
        let attr = req.principal.unwrap().attr;
        assert!(matches!(attr.get_str("v"), Some(Value::Double(n)) if n.is_nan()));
        let general: [&[u8]; 9] = [
            b"\x1a\x01\xff",
            b"\x20\x01\x20\x00",
            b"\x1a\x01a\x11\x00\x00\x00\x00\x00\x00\x00\x00",
            b"\x11\x00\x00",
            b"\x1a\x05ab",
            b"\x2a\x00",
            b"\x32\x00",
            b"\x38\x01",
            b"\x20",
        ];
        for value in general {
            let framed = entry(b"k", value);
            assert!(scalar_entry(&framed).is_none(), "{value:02x?}");
            // Read or refused, the same way as the generated message (asserted inside).
            let _ = same(&principal_with_value(value));
        }
        // A key that is not UTF-8, an entry with its value first or a field after it, and a
        // length past the end go the general way too.
        assert!(scalar_entry(&entry(b"\xff", b"\x20\x01")).is_none());
        let mut swapped = vec![7, 0x12, 2, 0x20, 1, 0x0a, 1, b'k'];
        assert!(scalar_entry(&swapped).is_none());
        swapped[0] = 9;
        assert!(scalar_entry(&swapped).is_none());
        assert!(scalar_entry(&[9, 0x0a, 1, b'k', 0x12, 2, 0x20, 1, 0x18, 1]).is_none());
        let read = same(&principal_with_entry(b"\x20\x01", b"\x18\x01")).unwrap();
        assert_eq!(
            read.principal.unwrap().attr["v"].kind,
            Some(Kind::BoolValue(true))
        );
    }

    /// Strings split across buffer chunks (the slow path of `merge_shared_str`) read the
    /// same, and fail the same when cut short.
    #[test]
    fn requests_split_across_chunks_read_the_same() {
        let bytes = request(RICH);
        let whole = same(&bytes).unwrap();
        for cut in 0..bytes.len() {
            let (a, b) = bytes.split_at(cut);
            let split = CheckResourcesWire::decode(a.chain(b))
                .map(|w| w.into_request().to_pb())
                .unwrap();
            assert_eq!(split, whole, "cut at {cut}");
            if cut > 0 {
                let short = &bytes[..bytes.len() - 1];
                let (a, b) = short.split_at(cut.min(short.len()));
                let split = CheckResourcesWire::decode(a.chain(b))
                    .map(|w| w.into_request().to_pb())
                    .map_err(|e| e.to_string());
                assert_eq!(split, both(short).1, "cut at {cut}");
            }
        }
    }

    /// The reader types write what they read (prost's `Message` asks for both halves).
    #[test]
    fn readers_write_what_they_read() {
        let bytes = request(RICH);
        let wire = CheckResourcesWire::decode(&bytes[..]).unwrap();
        assert_eq!(wire.encoded_len(), bytes.len());
        assert_eq!(
            CheckResourcesRequest::decode(&wire.encode_to_vec()[..]).unwrap(),
            CheckResourcesRequest::decode(&bytes[..]).unwrap()
        );
    }
}
