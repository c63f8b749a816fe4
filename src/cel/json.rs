//! Conversion between JSON and CEL values. JSON numbers become doubles, as in Cerbos.

use std::sync::Arc;

use super::eval::EvalError;
use super::functions::std_lib_format as fmt;
use super::value::{Key, MapValue, Opaque, Value};

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

/// The largest integer a JSON number holds exactly (cel-go's `maxIntJSON`, 2^53 - 1).
const MAX_JSON_INT: u64 = (1 << 53) - 1;

/// Converts a CEL value into the JSON of a rule output, as Cerbos 0.55 renders outputs
/// (cel-go's conversion to `google.protobuf.Value`): integers beyond ±(2^53 - 1) become
/// strings, an optional its value; type values, extension values (IP addresses, CIDRs,
/// hierarchies, SPIFFE values), empty optionals and maps with non-string keys are errors,
/// with Cerbos's messages.
pub fn to_output_json(v: &Value) -> Result<serde_json::Value, EvalError> {
    Ok(match v {
        Value::Int(i) if i.unsigned_abs() > MAX_JSON_INT => {
            serde_json::Value::String(i.to_string())
        }
        Value::Uint(u) if *u > MAX_JSON_INT => serde_json::Value::String(u.to_string()),
        Value::List(l) => serde_json::Value::Array(
            l.iter()
                .map(to_output_json)
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Value::Map(m) => {
            let mut out = serde_json::Map::with_capacity(m.len());
            for (k, v) in m.iter() {
                let key = match k {
                    Key::String(s) => s.to_string(),
                    Key::Bool(_) => {
                        return Err(EvalError::new(
                            "type conversion error from bool to 'string'",
                        ));
                    }
                    Key::Int(_) => {
                        return Err(EvalError::new(
                            "unsupported type conversion from 'int' to string",
                        ));
                    }
                    Key::Uint(_) => {
                        return Err(EvalError::new(
                            "unsupported type conversion from 'uint' to string",
                        ));
                    }
                };
                out.insert(key, to_output_json(v)?);
            }
            serde_json::Value::Object(out)
        }
        Value::Type(_) => return Err(EvalError::new("type conversion not supported for 'type'")),
        Value::Optional(None) => return Err(EvalError::new("optional.none() dereference")),
        Value::Optional(Some(v)) => to_output_json(v)?,
        Value::Opaque(o) => {
            let from = match &**o {
                Opaque::Ip(_) | Opaque::Cidr { .. } => {
                    return Err(EvalError::new(
                        "unsupported type conversion to '*structpb.Value'",
                    ));
                }
                Opaque::Hierarchy(_) => "hierarchy",
                Opaque::SpiffeId { .. } => "SPIFFEID",
                Opaque::SpiffeTrustDomain(_) => "SPIFFETrustDomain",
                Opaque::SpiffeMatcher(_) => "SPIFFEMatcher",
            };
            return Err(EvalError::new(format!(
                "unsupported native conversion from {from} to '*structpb.Value'"
            )));
        }
        other => to_json(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cel::testing::eval;

    /// Issue 11, class 5: each answer taken from the real Cerbos 0.55 (a rule output in a
    /// `cerbos compile` policy test).
    #[test]
    fn issue_11_outputs_render_as_cerbos() {
        let render = |src: &str| {
            let v = eval(src).unwrap_or_else(|e| panic!("{src}: {e}"));
            to_output_json(&v).map_err(|e| e.message().to_string())
        };
        for (src, want) in [
            ("9007199254740993", r#""9007199254740993""#),
            ("9007199254740992", r#""9007199254740992""#),
            ("18446744073709551615u", r#""18446744073709551615""#),
            (
                "[9007199254740993u, -9007199254740993, 9007199254740991]",
                r#"["9007199254740993","-9007199254740993",9007199254740991.0]"#,
            ),
            ("optional.of(1)", "1.0"),
            ("duration('1.5s')", r#""1.5s""#),
            ("b'ab'", r#""YWI=""#),
        ] {
            let got = render(src).unwrap_or_else(|e| panic!("{src}: {e}"));
            assert_eq!(got.to_string(), want, "{src}");
        }
        for (src, want) in [
            (
                "hierarchy('a.b')",
                "unsupported native conversion from hierarchy to '*structpb.Value'",
            ),
            (
                "spiffeID('spiffe://a/b')",
                "unsupported native conversion from SPIFFEID to '*structpb.Value'",
            ),
            (
                "spiffeTrustDomain('a')",
                "unsupported native conversion from SPIFFETrustDomain to '*structpb.Value'",
            ),
            (
                "spiffeMatchAny()",
                "unsupported native conversion from SPIFFEMatcher to '*structpb.Value'",
            ),
            (
                "ip('1.2.3.4')",
                "unsupported type conversion to '*structpb.Value'",
            ),
            (
                "cidr('10.0.0.0/8')",
                "unsupported type conversion to '*structpb.Value'",
            ),
            (
                "{1: 'a'}",
                "unsupported type conversion from 'int' to string",
            ),
            ("{true: 1}", "type conversion error from bool to 'string'"),
            ("type(1)", "type conversion not supported for 'type'"),
            (
                "{'a': [type(1)]}",
                "type conversion not supported for 'type'",
            ),
            ("optional.none()", "optional.none() dereference"),
        ] {
            assert_eq!(render(src).unwrap_err(), want, "{src}");
        }
    }
}
