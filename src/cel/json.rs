//! Conversion between JSON and CEL values. JSON numbers become doubles, as in Cerbos.

use std::sync::Arc;

use super::functions::std_lib_format as fmt;
use super::value::{Key, MapValue, Value};

/// Converts a JSON value into a CEL value.
pub fn from_json(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => Value::Double(n.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(s) => Value::String(Arc::from(s.as_str())),
        serde_json::Value::Array(a) => Value::list(a.iter().map(from_json).collect()),
        serde_json::Value::Object(o) => Value::map(
            o.iter()
                .map(|(k, v)| (Key::String(Arc::from(k.as_str())), from_json(v)))
                .collect::<MapValue>(),
        ),
    }
}

/// Converts a CEL value into JSON, as protobuf's `google.protobuf.Value` would hold it.
/// Timestamps and durations become their string forms; bytes become base64.
pub fn to_json(v: &Value) -> serde_json::Value {
    use base64::Engine as _;
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Int(i) => serde_json::Value::from(*i as f64),
        Value::Uint(u) => serde_json::Value::from(*u as f64),
        Value::Double(d) => serde_json::Number::from_f64(*d)
            .map(serde_json::Value::Number)
            .unwrap_or_else(|| serde_json::Value::String(fmt::format_double(*d))),
        Value::String(s) => serde_json::Value::String(s.to_string()),
        Value::Bytes(b) => {
            serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        Value::List(l) => serde_json::Value::Array(l.iter().map(to_json).collect()),
        Value::Map(m) => {
            serde_json::Value::Object(m.iter().map(|(k, v)| (k.to_string(), to_json(v))).collect())
        }
        Value::Timestamp(t) => serde_json::Value::String(fmt::format_timestamp(t)),
        Value::Duration(d) => serde_json::Value::String(fmt::format_duration(*d)),
        Value::Type(t) => serde_json::Value::String(t.name().to_string()),
        Value::Optional(None) => serde_json::Value::Null,
        Value::Optional(Some(v)) => to_json(v),
        Value::Opaque(_) => serde_json::Value::String(format!("{v:?}")),
    }
}
