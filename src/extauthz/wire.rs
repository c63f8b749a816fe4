//! A `CheckRequest`'s protobuf bytes read into a [`CheckView`] that borrows them: header
//! names and values, the path, the method, context extensions are slices of the request,
//! not a `HashMap<String, String>` of copies (what prost's generated message builds,
//! hashing every header name).
//!
//! The request is read by prost's rules, field for field: every field of every message
//! in `CheckRequest` is checked as prost's generated code reads it (wire types, UTF-8 of
//! strings, lengths, prost's recursion limit), unknown fields are skipped as prost skips
//! them (groups included), a repeated optional message merges into the first, a repeated
//! string replaces the earlier one, a repeated map key keeps its last value. What prost
//! refuses is refused, with prost's own description (the gRPC status reads as before).
//! The reading is linear in the request's size, which the gRPC server bounds.

use prost::Message;
use prost::encoding::{WireType, decode_key, decode_varint};

use super::view::{AttrsView, CheckView, HttpView};
use crate::extauthz::pb::v3::CheckRequest;

/// A `CheckRequest` that is not valid protobuf; the text is prost's description.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MalformedCheck(String);

/// Reads `bytes` as a `CheckRequest`, as prost would.
pub(crate) fn decode(bytes: &[u8]) -> Result<CheckView<'_>, MalformedCheck> {
    let mut view = CheckView::default();
    match check_request(bytes, &mut view) {
        Ok(()) => Ok(view),
        // The description is prost's (a malformed request is rare: reading it twice to
        // say what is wrong costs nothing that matters).
        Err(Bad) => Err(MalformedCheck(match CheckRequest::decode(bytes) {
            Err(e) => e.to_string(),
            Ok(_) => "failed to decode Protobuf message: malformed CheckRequest".into(),
        })),
    }
}

/// The reading stopped at something prost refuses.
#[derive(Debug)]
struct Bad;

type Read<T> = Result<T, Bad>;

/// prost's recursion limit (`prost::RECURSION_LIMIT`): the depth budget of the top-level
/// message; each nested message or map entry takes one, and a message field, a map entry
/// or an unknown field is refused in a message read with none left.
const RECURSION_LIMIT: u32 = 100;

/// The type of a field, as far as reading it is concerned.
#[derive(Clone, Copy, Debug)]
enum Ty {
    /// `string`: valid UTF-8.
    Str,
    /// `bytes`.
    Bytes,
    /// Any varint scalar (`int32`, `int64`, `uint32`, `bool`, enums).
    Varint,
    /// `double`.
    Fixed64,
    /// A message with these fields.
    Msg(&'static [(u32, Ty)]),
    /// A map, as entries with these fields (1 the key, 2 the value).
    Map(&'static [(u32, Ty)]),
}

use Ty::{Bytes, Fixed64, Map, Msg, Str, Varint};

/// `google.protobuf.Timestamp`.
static TIMESTAMP: [(u32, Ty); 2] = [(1, Varint), (2, Varint)];
/// `envoy.config.core.v3.SocketAddress` (its `port_specifier` oneof is 3 and 4).
static SOCKET_ADDRESS: [(u32, Ty); 7] = [
    (1, Varint),
    (2, Str),
    (3, Varint),
    (4, Str),
    (5, Str),
    (6, Varint),
    (7, Str),
];
/// `envoy.config.core.v3.Pipe`.
static PIPE: [(u32, Ty); 2] = [(1, Str), (2, Varint)];
/// `envoy.config.core.v3.EnvoyInternalAddress`.
static INTERNAL_ADDRESS: [(u32, Ty); 2] = [(1, Str), (2, Str)];
/// `envoy.config.core.v3.Address` (a oneof of the three).
static ADDRESS: [(u32, Ty); 3] = [
    (1, Msg(&SOCKET_ADDRESS)),
    (2, Msg(&PIPE)),
    (3, Msg(&INTERNAL_ADDRESS)),
];
/// An entry of a `map<string, string>`.
static STRING_ENTRY: [(u32, Ty); 2] = [(1, Str), (2, Str)];
/// `AttributeContext.Peer` but `principal` (4), which is read.
static PEER: [(u32, Ty); 4] = [
    (1, Msg(&ADDRESS)),
    (2, Str),
    (3, Map(&STRING_ENTRY)),
    (5, Str),
];
/// `envoy.config.core.v3.HeaderValue`.
static HEADER_VALUE: [(u32, Ty); 3] = [(1, Str), (2, Str), (3, Bytes)];
/// `envoy.config.core.v3.HeaderMap`.
static HEADER_MAP: [(u32, Ty); 1] = [(1, Msg(&HEADER_VALUE))];
/// `AttributeContext.HttpRequest` but the fields that are read (1 to 4, 11, 12).
static HTTP_REQUEST: [(u32, Ty); 7] = [
    (5, Str),
    (6, Str),
    (7, Str),
    (8, Str),
    (9, Varint),
    (10, Str),
    (13, Msg(&HEADER_MAP)),
];
/// `AttributeContext.Request` but `http` (2), which is read.
static REQUEST: [(u32, Ty); 1] = [(1, Msg(&TIMESTAMP))];
/// `AttributeContext.TlsSession`.
static TLS_SESSION: [(u32, Ty); 1] = [(1, Str)];
/// `google.protobuf.Value` (its `kind` oneof).
static VALUE: [(u32, Ty); 6] = [
    (1, Varint),
    (2, Fixed64),
    (3, Str),
    (4, Varint),
    (5, Msg(&STRUCT)),
    (6, Msg(&LIST_VALUE)),
];
/// An entry of `google.protobuf.Struct.fields`.
static VALUE_ENTRY: [(u32, Ty); 2] = [(1, Str), (2, Msg(&VALUE))];
/// `google.protobuf.Struct`.
static STRUCT: [(u32, Ty); 1] = [(1, Map(&VALUE_ENTRY))];
/// `google.protobuf.ListValue`.
static LIST_VALUE: [(u32, Ty); 1] = [(1, Msg(&VALUE))];
/// `google.protobuf.Any`.
static ANY: [(u32, Ty); 2] = [(1, Str), (2, Bytes)];
/// An entry of `Metadata.filter_metadata`.
static STRUCT_ENTRY: [(u32, Ty); 2] = [(1, Str), (2, Msg(&STRUCT))];
/// An entry of `Metadata.typed_filter_metadata`.
static ANY_ENTRY: [(u32, Ty); 2] = [(1, Str), (2, Msg(&ANY))];
/// `envoy.config.core.v3.Metadata`.
static METADATA: [(u32, Ty); 2] = [(1, Map(&STRUCT_ENTRY)), (2, Map(&ANY_ENTRY))];

/// A field's key: one byte for fields 1 to 15, read here; longer ones by prost.
#[inline]
fn key(buf: &mut &[u8]) -> Read<(u32, WireType)> {
    match buf.first() {
        Some(&b) if b < 0x80 => {
            let wire_type = match b & 7 {
                0 => WireType::Varint,
                1 => WireType::SixtyFourBit,
                2 => WireType::LengthDelimited,
                3 => WireType::StartGroup,
                4 => WireType::EndGroup,
                5 => WireType::ThirtyTwoBit,
                _ => return Err(Bad),
            };
            let tag = u32::from(b >> 3);
            if tag == 0 {
                return Err(Bad);
            }
            *buf = &buf[1..];
            Ok((tag, wire_type))
        }
        _ => decode_key(buf).map_err(|_| Bad),
    }
}

/// A varint: one byte (below 128) read here, longer ones by prost.
#[inline]
fn varint(buf: &mut &[u8]) -> Read<u64> {
    match buf.first() {
        Some(&b) if b < 0x80 => {
            *buf = &buf[1..];
            Ok(u64::from(b))
        }
        _ => decode_varint(buf).map_err(|_| Bad),
    }
}

/// A length-delimited value (after its key): its bytes.
#[inline]
fn delimited<'a>(buf: &mut &'a [u8]) -> Read<&'a [u8]> {
    let len = varint(buf)?;
    let len = usize::try_from(len).map_err(|_| Bad)?;
    if len > buf.len() {
        return Err(Bad);
    }
    let (value, rest) = buf.split_at(len);
    *buf = rest;
    Ok(value)
}

/// A `string` field's value.
#[inline]
fn string<'a>(wire_type: WireType, buf: &mut &'a [u8]) -> Read<&'a str> {
    if wire_type != WireType::LengthDelimited {
        return Err(Bad);
    }
    std::str::from_utf8(delimited(buf)?).map_err(|_| Bad)
}

/// A `bytes` field's value.
fn bytes<'a>(wire_type: WireType, buf: &mut &'a [u8]) -> Read<&'a [u8]> {
    if wire_type != WireType::LengthDelimited {
        return Err(Bad);
    }
    delimited(buf)
}

/// A message field's (or a map entry's) body, in a message read with `depth` left
/// (prost checks the wire type, then the depth, then the length).
#[inline]
fn message<'a>(wire_type: WireType, buf: &mut &'a [u8], depth: u32) -> Read<&'a [u8]> {
    if wire_type != WireType::LengthDelimited || depth == 0 {
        return Err(Bad);
    }
    delimited(buf)
}

/// `n` bytes skipped.
fn advance(buf: &mut &[u8], n: usize) -> Read<()> {
    *buf = buf.get(n..).ok_or(Bad)?;
    Ok(())
}

/// An unknown field skipped, as `prost::encoding::skip_field` skips it.
fn skip(wire_type: WireType, tag: u32, buf: &mut &[u8], depth: u32) -> Read<()> {
    if depth == 0 {
        return Err(Bad);
    }
    match wire_type {
        WireType::Varint => varint(buf).map(drop),
        WireType::ThirtyTwoBit => advance(buf, 4),
        WireType::SixtyFourBit => advance(buf, 8),
        WireType::LengthDelimited => delimited(buf).map(drop),
        WireType::StartGroup => loop {
            let (inner, inner_type) = key(buf)?;
            if inner_type == WireType::EndGroup {
                return if inner == tag { Ok(()) } else { Err(Bad) };
            }
            skip(inner_type, inner, buf, depth - 1)?;
        },
        WireType::EndGroup => Err(Bad),
    }
}

/// A field of `fields`'s message that is not read, checked; or an unknown one, skipped.
fn other(
    fields: &[(u32, Ty)],
    tag: u32,
    wire_type: WireType,
    buf: &mut &[u8],
    depth: u32,
) -> Read<()> {
    let Some(&(_, ty)) = fields.iter().find(|(t, _)| *t == tag) else {
        return skip(wire_type, tag, buf, depth);
    };
    match ty {
        Str => string(wire_type, buf).map(drop),
        Bytes => bytes(wire_type, buf).map(drop),
        Varint if wire_type == WireType::Varint => varint(buf).map(drop),
        Fixed64 if wire_type == WireType::SixtyFourBit => advance(buf, 8),
        Varint | Fixed64 => Err(Bad),
        Msg(fields) | Map(fields) => check(message(wire_type, buf, depth)?, fields, depth - 1),
    }
}

/// A message body with `fields`, read with `depth` left, checked.
fn check(mut buf: &[u8], fields: &[(u32, Ty)], depth: u32) -> Read<()> {
    while !buf.is_empty() {
        let (tag, wire_type) = key(&mut buf)?;
        other(fields, tag, wire_type, &mut buf, depth)?;
    }
    Ok(())
}

/// `CheckRequest`.
fn check_request<'a>(mut buf: &'a [u8], view: &mut CheckView<'a>) -> Read<()> {
    let depth = RECURSION_LIMIT;
    while !buf.is_empty() {
        let (tag, wire_type) = key(&mut buf)?;
        match tag {
            1 => attribute_context(
                message(wire_type, &mut buf, depth)?,
                view.attributes.get_or_insert_with(Default::default),
                depth - 1,
            )?,
            _ => skip(wire_type, tag, &mut buf, depth)?,
        }
    }
    Ok(())
}

/// `AttributeContext`.
fn attribute_context<'a>(mut buf: &'a [u8], a: &mut AttrsView<'a>, depth: u32) -> Read<()> {
    while !buf.is_empty() {
        let (tag, wire_type) = key(&mut buf)?;
        match tag {
            1 => peer(
                message(wire_type, &mut buf, depth)?,
                &mut a.peer_principal,
                depth - 1,
            )?,
            2 => peer(message(wire_type, &mut buf, depth)?, &mut "", depth - 1)?,
            4 => request(message(wire_type, &mut buf, depth)?, a, depth - 1)?,
            10 => {
                let (k, v) = string_entry(message(wire_type, &mut buf, depth)?, depth - 1)?;
                a.context_extensions.push(k, v);
            }
            11 | 13 => {
                let body = message(wire_type, &mut buf, depth)?;
                check(body, &METADATA, depth - 1)?;
                if tag == 11 {
                    a.metadata_context.push_wire(body);
                } else {
                    a.route_metadata_context.push_wire(body);
                }
            }
            12 => check(
                message(wire_type, &mut buf, depth)?,
                &TLS_SESSION,
                depth - 1,
            )?,
            _ => skip(wire_type, tag, &mut buf, depth)?,
        }
    }
    Ok(())
}

/// `AttributeContext.Peer`: its `principal` into `principal`.
fn peer<'a>(mut buf: &'a [u8], principal: &mut &'a str, depth: u32) -> Read<()> {
    while !buf.is_empty() {
        let (tag, wire_type) = key(&mut buf)?;
        match tag {
            4 => *principal = string(wire_type, &mut buf)?,
            _ => other(&PEER, tag, wire_type, &mut buf, depth)?,
        }
    }
    Ok(())
}

/// `AttributeContext.Request`.
fn request<'a>(mut buf: &'a [u8], a: &mut AttrsView<'a>, depth: u32) -> Read<()> {
    while !buf.is_empty() {
        let (tag, wire_type) = key(&mut buf)?;
        match tag {
            2 => http_request(
                message(wire_type, &mut buf, depth)?,
                a.http.get_or_insert_with(Default::default),
                depth - 1,
            )?,
            _ => other(&REQUEST, tag, wire_type, &mut buf, depth)?,
        }
    }
    Ok(())
}

/// Headers a request's header list has room for before it grows: more than Envoy
/// usually sends.
const HEADERS_RESERVED: usize = 32;

/// `AttributeContext.HttpRequest`.
fn http_request<'a>(mut buf: &'a [u8], h: &mut HttpView<'a>, depth: u32) -> Read<()> {
    while !buf.is_empty() {
        let (tag, wire_type) = key(&mut buf)?;
        match tag {
            1 => h.id = string(wire_type, &mut buf)?,
            2 => h.method = string(wire_type, &mut buf)?,
            3 => {
                let (k, v) = string_entry(message(wire_type, &mut buf, depth)?, depth - 1)?;
                if h.headers.is_empty() {
                    h.headers.reserve(HEADERS_RESERVED);
                }
                h.headers.push(k, v);
            }
            4 => h.path = string(wire_type, &mut buf)?,
            11 => h.body = string(wire_type, &mut buf)?,
            12 => h.raw_body = bytes(wire_type, &mut buf)?,
            _ => other(&HTTP_REQUEST, tag, wire_type, &mut buf, depth)?,
        }
    }
    Ok(())
}

/// A `map<string, string>` entry (read with `depth` left): its key and value, empty
/// when absent.
#[inline]
fn string_entry(mut buf: &[u8], depth: u32) -> Read<(&str, &str)> {
    let (mut k, mut v) = ("", "");
    while !buf.is_empty() {
        let (tag, wire_type) = key(&mut buf)?;
        match tag {
            1 => k = string(wire_type, &mut buf)?,
            2 => v = string(wire_type, &mut buf)?,
            _ => skip(wire_type, tag, &mut buf, depth)?,
        }
    }
    Ok((k, v))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use prost::encoding::{encode_key, encode_varint};

    use super::*;
    use crate::extauthz::pb::envoy::config::core::v3::{
        Address, EnvoyInternalAddress, HeaderMap, HeaderValue, Metadata, Pipe, SocketAddress,
        address, envoy_internal_address, socket_address,
    };
    use crate::extauthz::pb::envoy::service::auth::v3::AttributeContext;
    use crate::extauthz::pb::envoy::service::auth::v3::attribute_context::{
        HttpRequest, Peer, Request, TlsSession,
    };
    use crate::extauthz::pb::google::protobuf::{ListValue, Struct, Value, value::Kind};
    use crate::extauthz::view::MetadataView;

    /// Everything a decision reads of a request, owned, to compare two readings.
    #[derive(Debug, PartialEq)]
    struct Seen {
        attributes: bool,
        peer_principal: String,
        http: Option<SeenHttp>,
        context_extensions: BTreeMap<String, String>,
        /// As [`canonical`] writes them (NaN equal to itself, maps sorted).
        metadata_context: Option<String>,
        route_metadata_context: Option<String>,
    }

    /// A metadata message's text with maps sorted and numbers as their bits.
    fn canonical(m: &Metadata) -> String {
        fn value(v: &Value) -> String {
            match &v.kind {
                Some(Kind::NumberValue(n)) => format!("n{:x}", n.to_bits()),
                Some(Kind::StructValue(s)) => strukt(s),
                Some(Kind::ListValue(l)) => {
                    format!(
                        "[{}]",
                        l.values.iter().map(value).collect::<Vec<_>>().join(",")
                    )
                }
                other => format!("{other:?}"),
            }
        }
        fn strukt(s: &Struct) -> String {
            let fields: BTreeMap<_, _> = s.fields.iter().map(|(k, v)| (k, value(v))).collect();
            format!("{fields:?}")
        }
        let filter: BTreeMap<_, _> = m
            .filter_metadata
            .iter()
            .map(|(k, s)| (k, strukt(s)))
            .collect();
        let typed: BTreeMap<_, _> = m.typed_filter_metadata.iter().collect();
        format!("{filter:?} {typed:?}")
    }

    #[derive(Debug, PartialEq)]
    struct SeenHttp {
        id: String,
        method: String,
        path: String,
        body: String,
        raw_body: Vec<u8>,
        headers: BTreeMap<String, String>,
    }

    fn seen(view: &CheckView<'_>) -> Seen {
        let a = view.attributes.as_ref();
        let md = |m: Option<&MetadataView<'_>>| m.and_then(|m| m.get().map(canonical));
        Seen {
            attributes: a.is_some(),
            peer_principal: a.map_or("", |a| a.peer_principal).to_string(),
            http: view.http().map(|h| SeenHttp {
                id: h.id.into(),
                method: h.method.into(),
                path: h.path.into(),
                body: h.body.into(),
                raw_body: h.raw_body.into(),
                headers: h.headers.to_map().into_iter().collect(),
            }),
            context_extensions: a
                .map(|a| a.context_extensions.to_map().into_iter().collect())
                .unwrap_or_default(),
            metadata_context: md(a.map(|a| &a.metadata_context)),
            route_metadata_context: md(a.map(|a| &a.route_metadata_context)),
        }
    }

    /// This module's reading of `bytes` and prost's: the same request seen, or the same
    /// error.
    fn same(bytes: &[u8]) -> Result<Seen, String> {
        let ours = decode(bytes).map(|v| seen(&v)).map_err(|e| e.to_string());
        let prost = CheckRequest::decode(bytes)
            .map(|r| seen(&CheckView::from_message(&r)))
            .map_err(|e| e.to_string());
        assert_eq!(ours, prost, "{bytes:02x?}");
        // The fast reading alone agrees on accepting (the error text is prost's anyway).
        let mut view = CheckView::default();
        assert_eq!(
            check_request(bytes, &mut view).is_ok(),
            ours.is_ok(),
            "{bytes:02x?}"
        );
        ours
    }

    fn value(kind: Kind) -> Value {
        Value { kind: Some(kind) }
    }

    fn rich_metadata() -> Metadata {
        let payload = Struct {
            fields: [
                ("sub".to_string(), value(Kind::StringValue("bob".into()))),
                ("n".to_string(), value(Kind::NumberValue(1.5))),
                ("b".to_string(), value(Kind::BoolValue(true))),
                ("z".to_string(), value(Kind::NullValue(0))),
                (
                    "l".to_string(),
                    value(Kind::ListValue(ListValue {
                        values: vec![
                            value(Kind::StringValue("a".into())),
                            value(Kind::StructValue(Struct::default())),
                        ],
                    })),
                ),
            ]
            .into(),
        };
        Metadata {
            filter_metadata: [(
                "envoy.filters.http.jwt_authn".to_string(),
                Struct {
                    fields: [("payload".to_string(), value(Kind::StructValue(payload)))].into(),
                },
            )]
            .into(),
            typed_filter_metadata: [(
                "typed".to_string(),
                prost_types::Any {
                    type_url: "type.googleapis.com/x".into(),
                    value: vec![0xff, 0x00],
                },
            )]
            .into(),
        }
    }

    /// A request with every field of every message set.
    fn rich() -> CheckRequest {
        let peer = |address: address::Address, principal: &str| Peer {
            address: Some(Address {
                address: Some(address),
            }),
            service: "svc".into(),
            labels: [("app".to_string(), "web".to_string())].into(),
            principal: principal.into(),
            certificate: "-----BEGIN CERTIFICATE-----".into(),
        };
        CheckRequest {
            attributes: Some(AttributeContext {
                source: Some(peer(
                    address::Address::SocketAddress(SocketAddress {
                        protocol: 1,
                        address: "127.0.0.1".into(),
                        resolver_name: "r".into(),
                        ipv4_compat: true,
                        network_namespace_filepath: "/ns".into(),
                        port_specifier: Some(socket_address::PortSpecifier::PortValue(35262)),
                    }),
                    "spiffe://td/ns/a/sa/b",
                )),
                destination: Some(peer(
                    address::Address::Pipe(Pipe {
                        path: "/sock".into(),
                        mode: 0o600,
                    }),
                    "spiffe://td/dest",
                )),
                request: Some(Request {
                    time: Some(prost_types::Timestamp {
                        seconds: 1_796_592_769,
                        nanos: 404_114_000,
                    }),
                    http: Some(HttpRequest {
                        id: "17918898848581348968".into(),
                        method: "POST".into(),
                        headers: [
                            (":authority", "api.example.test"),
                            (":path", "/documents/1?x=1"),
                            ("authorization", "Bearer abc"),
                            ("x-doc-owner", "älice"),
                            ("", "empty name"),
                            ("x-empty", ""),
                        ]
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        // A value whose length takes two bytes.
                        .chain([("x-long".to_string(), "v".repeat(300))])
                        .collect(),
                        header_map: Some(HeaderMap {
                            headers: vec![HeaderValue {
                                key: "k".into(),
                                value: "v".into(),
                                raw_value: vec![0xff],
                            }],
                        }),
                        path: "/documents/1?x=1".into(),
                        host: "api.example.test".into(),
                        scheme: "https".into(),
                        query: "x=1".into(),
                        fragment: "f".into(),
                        size: 12,
                        protocol: "HTTP/2".into(),
                        body: "{\"a\":1}".into(),
                        raw_body: vec![0, 0xff, 1],
                    }),
                }),
                context_extensions: [("tenant".to_string(), "acme".to_string())].into(),
                metadata_context: Some(rich_metadata()),
                route_metadata_context: Some(Metadata {
                    filter_metadata: [("gatehouse".to_string(), Struct::default())].into(),
                    ..Default::default()
                }),
                tls_session: Some(TlsSession {
                    sni: "api.example.test".into(),
                }),
            }),
        }
    }

    fn internal_address() -> CheckRequest {
        let mut req = rich();
        let a = req.attributes.as_mut().unwrap();
        a.source.as_mut().unwrap().address = Some(Address {
            address: Some(address::Address::EnvoyInternalAddress(
                EnvoyInternalAddress {
                    endpoint_id: "e".into(),
                    address_name_specifier: Some(
                        envoy_internal_address::AddressNameSpecifier::ServerListenerName(
                            "l".into(),
                        ),
                    ),
                },
            )),
        });
        req
    }

    #[test]
    fn requests_read_as_prost_reads_them() {
        let read = same(&rich().encode_to_vec()).unwrap();
        assert_eq!(read.peer_principal, "spiffe://td/ns/a/sa/b");
        let http = read.http.unwrap();
        assert_eq!(http.headers["x-doc-owner"], "älice");
        assert_eq!(http.headers[""], "empty name");
        assert_eq!(http.raw_body, [0, 0xff, 1]);
        assert_eq!(read.context_extensions["tenant"], "acme");
        assert_eq!(read.metadata_context, Some(canonical(&rich_metadata())));
        assert!(read.metadata_context.unwrap().contains("bob"));
        same(&internal_address().encode_to_vec()).unwrap();
        for req in [
            CheckRequest::default(),
            CheckRequest {
                attributes: Some(AttributeContext::default()),
            },
            CheckRequest {
                attributes: Some(AttributeContext {
                    request: Some(Request::default()),
                    metadata_context: Some(Metadata::default()),
                    ..Default::default()
                }),
            },
        ] {
            let read = same(&req.encode_to_vec()).unwrap();
            assert!(read.http.is_none());
        }
        // An empty message is present, as prost has it.
        let empty_md = CheckRequest {
            attributes: Some(AttributeContext {
                metadata_context: Some(Metadata::default()),
                ..Default::default()
            }),
        };
        assert_eq!(
            same(&empty_md.encode_to_vec()).unwrap().metadata_context,
            Some(canonical(&Metadata::default()))
        );
    }

    /// The bytes of a message with one length-delimited field `tag` holding `body`.
    fn wrap(tag: u32, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_key(tag, WireType::LengthDelimited, &mut out);
        encode_varint(body.len() as u64, &mut out);
        out.extend_from_slice(body);
        out
    }

    /// A request whose `attributes.request.http` has these bytes.
    fn with_http(http: &[u8]) -> Vec<u8> {
        wrap(1, &wrap(4, &wrap(2, http)))
    }

    /// A map entry's bytes: key and value fields, in the given order, with extra bytes.
    fn entry(fields: &[(u32, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (tag, v) in fields {
            out.extend(wrap(*tag, v));
        }
        out
    }

    #[test]
    fn repeated_keys_fields_and_messages_merge_as_prost_merges_them() {
        // A header twice: the last value. Within an entry, a repeated key or value field:
        // the last one; an entry without key or value: empty ones.
        let mut http = Vec::new();
        http.extend(wrap(3, &entry(&[(1, b"a"), (2, b"1")])));
        http.extend(wrap(3, &entry(&[(2, b"2"), (1, b"b"), (1, b"a")])));
        http.extend(wrap(3, &entry(&[(2, b"no key")])));
        http.extend(wrap(3, &entry(&[(1, b"no-value")])));
        http.extend(wrap(2, b"GET"));
        http.extend(wrap(2, b"PUT"));
        let read = same(&with_http(&http)).unwrap().http.unwrap();
        assert_eq!(read.headers["a"], "2");
        assert_eq!(read.headers[""], "no key");
        assert_eq!(read.headers["no-value"], "");
        assert_eq!(read.method, "PUT");
        // The whole request twice: one merged request.
        let mut first = rich();
        first
            .attributes
            .as_mut()
            .unwrap()
            .source
            .as_mut()
            .unwrap()
            .principal = String::new();
        let mut second = CheckRequest::default();
        let mut attrs = AttributeContext::default();
        attrs
            .context_extensions
            .insert("tenant".into(), "other".into());
        attrs.metadata_context = Some(Metadata {
            filter_metadata: [("second".to_string(), Struct::default())].into(),
            ..Default::default()
        });
        attrs.request = Some(Request {
            http: Some(HttpRequest {
                path: "/second".into(),
                headers: [("authorization".to_string(), "Bearer second".to_string())].into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        second.attributes = Some(attrs);
        let mut twice = rich().encode_to_vec();
        twice.extend(first.encode_to_vec());
        twice.extend(second.encode_to_vec());
        let read = same(&twice).unwrap();
        // An empty string is not written: the first principal stays.
        assert_eq!(read.peer_principal, "spiffe://td/ns/a/sa/b");
        assert_eq!(read.context_extensions["tenant"], "other");
        let md = read.metadata_context.unwrap();
        assert!(
            md.contains("\"second\"") && md.contains("jwt_authn"),
            "{md}"
        );
        let http = read.http.unwrap();
        assert_eq!(http.path, "/second");
        assert_eq!(http.method, "POST");
        assert_eq!(http.headers["authorization"], "Bearer second");
        assert_eq!(http.headers["x-doc-owner"], "älice");
    }

    #[test]
    fn unknown_fields_are_skipped_at_every_level_and_groups_checked() {
        let mut unknown = Vec::new();
        encode_key(99, WireType::Varint, &mut unknown);
        encode_varint(u64::MAX, &mut unknown);
        encode_key(98, WireType::ThirtyTwoBit, &mut unknown);
        unknown.extend_from_slice(&[1, 2, 3, 4]);
        encode_key(97, WireType::SixtyFourBit, &mut unknown);
        unknown.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        unknown.extend(wrap(96, b"\xff\xfe not utf-8"));
        encode_key(95, WireType::StartGroup, &mut unknown);
        encode_key(1, WireType::Varint, &mut unknown);
        encode_varint(1, &mut unknown);
        encode_key(2, WireType::StartGroup, &mut unknown);
        encode_key(2, WireType::EndGroup, &mut unknown);
        encode_key(95, WireType::EndGroup, &mut unknown);
        // In a map entry, in the HTTP request, in a header value's message, at the top.
        let mut http = wrap(3, &[&entry(&[(1, b"a"), (2, b"1")])[..], &unknown].concat());
        http.extend_from_slice(&unknown);
        http.extend(wrap(
            13,
            &wrap(1, &[&unknown[..], &wrap(1, b"k")[..]].concat()),
        ));
        let mut bytes = with_http(&http);
        bytes.extend_from_slice(&unknown);
        bytes.extend(rich().encode_to_vec());
        bytes.extend_from_slice(&unknown);
        let read = same(&bytes).unwrap();
        assert_eq!(read.http.unwrap().headers["a"], "1");
        // Unknown fields inside the messages that are only checked.
        let mut md = rich_metadata().encode_to_vec();
        md.extend_from_slice(&unknown);
        same(&wrap(1, &wrap(11, &md))).unwrap();
        // Groups that do not end, or end with another tag, or end without a start.
        for bad in [
            vec![0xab, 0x06],             // start group 21, nothing after
            vec![0xab, 0x06, 0xb4, 0x06], // start 21, end 22
            vec![0xac, 0x06],             // end group 21
            vec![0x0c],                   // end group 1
        ] {
            assert!(same(&bad).is_err());
            assert!(same(&with_http(&bad)).is_err());
        }
    }

    #[test]
    fn wire_types_are_checked_as_prost_checks_them() {
        // A string field as a varint, a map entry with any other wire type: refused.
        assert!(same(&with_http(&[0x10, 0x01])).is_err(), "method as varint");
        for wire_type in [0u8, 1, 3, 4, 5] {
            let entry = entry(&[(1, b"a"), (2, b"b")]);
            let mut http = vec![(3 << 3) | wire_type, entry.len() as u8];
            http.extend(entry);
            assert!(same(&with_http(&http)).is_err());
            assert!(
                same(&wrap(
                    1,
                    &[&[(10 << 3) | wire_type][..], &http[1..]].concat()
                ))
                .is_err()
            );
        }
        let mut http = wrap(3, &[]);
        http.extend(wrap(2, b"GET"));
        assert_eq!(
            same(&with_http(&http)).unwrap().http.unwrap().headers[""],
            ""
        );
        // A message field, a varint, a double, a bytes field with the wrong wire type.
        assert!(same(&[0x08, 0x01]).is_err(), "attributes as varint");
        assert!(same(&with_http(&[0x48, 0x01])).is_ok(), "size");
        assert!(same(&with_http(&[0x4a, 0x00])).is_err(), "size as bytes");
        assert!(same(&with_http(&[0x61, 0, 0, 0, 0, 0, 0, 0, 0])).is_err());
        let number = |wire: &[u8]| {
            wrap(
                1,
                &wrap(11, &wrap(1, &entry(&[(2, &wrap(1, &wrap(2, wire))[..])]))),
            )
        };
        assert!(same(&number(&[0x11, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f])).is_ok());
        assert!(same(&number(&[0x10, 0x01])).is_err());
    }

    #[test]
    fn invalid_utf8_is_refused_in_every_string_and_kept_in_bytes() {
        let bad: &[u8] = b"\xc3\x28";
        for tag in [1, 2, 4, 5, 6, 7, 8, 10, 11] {
            let err = same(&with_http(&wrap(tag, bad))).unwrap_err();
            assert!(err.contains("invalid string value"), "{err}");
        }
        assert!(same(&with_http(&wrap(3, &entry(&[(1, bad)])))).is_err());
        assert!(same(&with_http(&wrap(3, &entry(&[(2, bad)])))).is_err());
        assert!(same(&with_http(&wrap(13, &wrap(1, &wrap(2, bad))))).is_err());
        assert!(same(&with_http(&wrap(13, &wrap(1, &wrap(3, bad))))).is_ok());
        assert_eq!(
            same(&with_http(&wrap(12, bad)))
                .unwrap()
                .http
                .unwrap()
                .raw_body,
            bad
        );
        // Peer principal and certificate, a context extension, SNI, a metadata key.
        assert!(same(&wrap(1, &wrap(1, &wrap(4, bad)))).is_err());
        assert!(same(&wrap(1, &wrap(2, &wrap(5, bad)))).is_err());
        assert!(same(&wrap(1, &wrap(10, &entry(&[(2, bad)])))).is_err());
        assert!(same(&wrap(1, &wrap(12, &wrap(1, bad)))).is_err());
        assert!(same(&wrap(1, &wrap(13, &wrap(1, &entry(&[(1, bad)]))))).is_err());
    }

    #[test]
    fn truncated_and_corrupted_requests_read_or_fail_as_prost() {
        for req in [rich(), internal_address()] {
            let bytes = req.encode_to_vec();
            let mut failures = 0;
            for end in 0..bytes.len() {
                failures += usize::from(same(&bytes[..end]).is_err());
            }
            assert!(failures > bytes.len() / 2, "{failures} of {}", bytes.len());
            for i in 0..bytes.len() {
                for b in [
                    0x00, 0x01, 0x07, 0x0a, 0x12, 0x22, 0x2a, 0x7f, 0x80, 0xc3, 0xff,
                ] {
                    let mut bad = bytes.clone();
                    bad[i] = b;
                    let _ = same(&bad);
                }
            }
        }
        assert!(
            same(&[
                0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff
            ])
            .is_err()
        );
        assert!(
            same(&[
                0x0a, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02
            ])
            .is_err()
        );
        assert!(same(&[0x00]).is_err(), "tag 0");
        assert!(same(&[0x0f]).is_err(), "wire type 7");
        assert!(
            same(&[0x80, 0x80, 0x80, 0x80, 0x10, 0x00]).is_err(),
            "key above u32"
        );
    }

    #[test]
    fn nesting_stops_at_prosts_recursion_limit() {
        // Structs in values in lists in values ... in the metadata.
        let nested = |depth: usize| {
            let mut v = value(Kind::BoolValue(true));
            for i in 0..depth {
                v = if i % 2 == 0 {
                    value(Kind::ListValue(ListValue { values: vec![v] }))
                } else {
                    value(Kind::StructValue(Struct {
                        fields: [("k".to_string(), v)].into(),
                    }))
                };
            }
            let md = Metadata {
                filter_metadata: [(
                    "ns".to_string(),
                    Struct {
                        fields: [("v".to_string(), v)].into(),
                    },
                )]
                .into(),
                ..Default::default()
            };
            wrap(1, &wrap(11, &md.encode_to_vec()))
        };
        let mut deepest_ok = 0;
        for depth in 25..40 {
            match same(&nested(depth)) {
                Ok(_) => deepest_ok = depth,
                Err(e) => assert!(e.contains("recursion limit reached"), "{e}"),
            }
        }
        assert!((25..39).contains(&deepest_ok), "{deepest_ok}");
        // Groups nested in an unknown field of the HTTP request.
        let groups = |depth: usize| {
            let mut g = Vec::new();
            for _ in 0..depth {
                encode_key(20, WireType::StartGroup, &mut g);
            }
            for _ in 0..depth {
                encode_key(20, WireType::EndGroup, &mut g);
            }
            with_http(&g)
        };
        let mut deepest_ok = 0;
        for depth in 90..100 {
            match same(&groups(depth)) {
                Ok(_) => deepest_ok = depth,
                Err(e) => assert!(e.contains("recursion limit reached"), "{e}"),
            }
        }
        assert!((90..99).contains(&deepest_ok), "{deepest_ok}");
    }

    /// Random edits of a real request: bytes replaced, inserted, removed; what is read
    /// is what prost reads, and nothing panics.
    fn edited(bytes: &[u8], edits: &[(usize, u8, u8)]) -> Vec<u8> {
        let mut out = bytes.to_vec();
        for &(at, op, b) in edits {
            let at = at % (out.len() + 1);
            match op % 3 {
                0 if at < out.len() => out[at] = b,
                1 => out.insert(at, b),
                _ if at < out.len() => {
                    out.remove(at);
                }
                _ => out.push(b),
            }
        }
        out
    }

    proptest::proptest! {
        #![proptest_config(crate::testing::proptest_config(3000))]

        /// Random bytes: read or refused as prost reads or refuses them.
        #[test]
        fn random_bytes_read_as_prost(bytes in proptest::collection::vec(proptest::arbitrary::any::<u8>(), 0..64)) {
            let _ = same(&bytes);
            let _ = same(&with_http(&bytes));
            let _ = same(&wrap(1, &wrap(11, &bytes)));
        }

        /// Random edits of a real request: read or refused as prost reads or refuses them.
        #[test]
        fn edited_requests_read_as_prost(
            which in 0..2usize,
            edits in proptest::collection::vec(
                (proptest::arbitrary::any::<usize>(), proptest::arbitrary::any::<u8>(), proptest::arbitrary::any::<u8>()),
                1..6,
            ),
        ) {
            let req = if which == 0 { rich() } else { internal_address() };
            let _ = same(&edited(&req.encode_to_vec(), &edits));
        }
    }
}
