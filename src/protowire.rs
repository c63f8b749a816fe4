//! Protobuf wire helpers for the answers written straight to bytes (the ext_authz
//! `CheckResponse` and the Cerbos API's `CheckResourcesResponse`): field keys, lengths and
//! proto3 scalar fields, written as prost writes them. Each encoder's tests compare its
//! bytes with prost's.

use prost::bytes::BufMut;
use prost::encoding::{encode_varint, encoded_len_varint};

/// Protobuf's length-delimited wire type.
const LEN: u8 = 2;
/// Protobuf's varint wire type.
pub(crate) const VARINT: u8 = 0;

/// The one-byte key of field `tag` (every tag written with it is below 16).
pub(crate) fn key(tag: u8, wire: u8) -> u8 {
    (tag << 3) | wire
}

/// A length-delimited field with a body of `len` bytes: key, length, body.
pub(crate) fn field_len(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

/// Writes the key and the length of a length-delimited field; the body follows.
pub(crate) fn put_len(buf: &mut impl BufMut, tag: u8, len: usize) {
    buf.put_u8(key(tag, LEN));
    encode_varint(len as u64, buf);
}

/// A proto3 string field: absent when empty.
pub(crate) fn str_len(s: &str) -> usize {
    if s.is_empty() { 0 } else { field_len(s.len()) }
}

/// Writes a proto3 string field (nothing when empty).
pub(crate) fn put_str(buf: &mut impl BufMut, tag: u8, s: &str) {
    if !s.is_empty() {
        put_len(buf, tag, s.len());
        buf.put_slice(s.as_bytes());
    }
}

/// A proto3 `int32` or enum field: absent when 0 (negative values as ten bytes).
pub(crate) fn varint_field_len(v: i32) -> usize {
    if v == 0 {
        0
    } else {
        1 + encoded_len_varint(i64::from(v) as u64)
    }
}

/// Writes a proto3 `int32` or enum field (nothing when 0).
pub(crate) fn put_varint_field(buf: &mut impl BufMut, tag: u8, v: i32) {
    if v != 0 {
        buf.put_u8(key(tag, VARINT));
        encode_varint(i64::from(v) as u64, buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Negative `int32` values take ten bytes, as prost writes them.
    #[test]
    fn int32_fields_are_written_as_prost_writes_them() {
        for v in [0, 1, 127, 128, 300, i32::MAX, -1, i32::MIN] {
            let mut ours = Vec::new();
            put_varint_field(&mut ours, 3, v);
            let mut theirs = Vec::new();
            if v != 0 {
                prost::encoding::int32::encode(3, &v, &mut theirs);
            }
            assert_eq!(ours, theirs, "{v}");
            assert_eq!(varint_field_len(v), ours.len(), "{v}");
        }
    }
}
