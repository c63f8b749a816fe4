//! A rule's effect, the one type the serde model and the compiled set share: a leaf that
//! imports nothing of Gatehouse, so `model` and `compiled` both name it without importing
//! each other.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A rule's effect: `EFFECT_ALLOW` or `EFFECT_DENY`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Effect {
    /// Allow the action (`EFFECT_ALLOW`).
    Allow,
    /// Deny the action (`EFFECT_DENY`).
    Deny,
}

impl Effect {
    /// Cerbos's name: `EFFECT_ALLOW` or `EFFECT_DENY`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Effect::Allow => "EFFECT_ALLOW",
            Effect::Deny => "EFFECT_DENY",
        }
    }

    /// Cerbos's name without its `EFFECT_` prefix: `ALLOW` or `DENY`.
    pub(crate) fn short_name(self) -> &'static str {
        match self {
            Effect::Allow => "ALLOW",
            Effect::Deny => "DENY",
        }
    }
}

/// Why a written effect is not one a rule or a test may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// A value of Cerbos's enum that is not an effect of a rule (`EFFECT_UNSPECIFIED`,
    /// `EFFECT_NO_MATCH`, 0, 3, ...).
    NotAllowed,
    /// Not a name of Cerbos's enum at all.
    Unknown,
}

impl Effect {
    /// The effect Cerbos names `name`.
    pub(crate) fn from_name(name: &str) -> Result<Effect, Refused> {
        match name {
            "EFFECT_ALLOW" => Ok(Effect::Allow),
            "EFFECT_DENY" => Ok(Effect::Deny),
            "EFFECT_UNSPECIFIED" | "EFFECT_NO_MATCH" => Err(Refused::NotAllowed),
            _ => Err(Refused::Unknown),
        }
    }

    /// The effect of protobuf number `n` (1 allow, 2 deny).
    pub(crate) fn from_number(n: i128) -> Result<Effect, Refused> {
        match n {
            1 => Ok(Effect::Allow),
            2 => Ok(Effect::Deny),
            _ => Err(Refused::NotAllowed),
        }
    }
}

/// Written as Cerbos's name (`EFFECT_ALLOW`), as protojson writes it.
impl Serialize for Effect {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Read from Cerbos's name or the protobuf number (1 allow, 2 deny); `EFFECT_UNSPECIFIED`
/// and `EFFECT_NO_MATCH` are refused, as Cerbos refuses them in a rule.
impl<'de> Deserialize<'de> for Effect {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        const NOT_ALLOWED: &str = "effect must be EFFECT_ALLOW or EFFECT_DENY";

        struct EffectVisitor;

        impl Visitor<'_> for EffectVisitor {
            type Value = Effect;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("EFFECT_ALLOW or EFFECT_DENY")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Effect, E> {
                Effect::from_name(v).map_err(|refused| match refused {
                    Refused::NotAllowed => E::custom(NOT_ALLOWED),
                    Refused::Unknown => E::custom(format_args!("invalid enum value {v:?}")),
                })
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Effect, E> {
                Effect::from_number(v.into()).map_err(|_| E::custom(NOT_ALLOWED))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Effect, E> {
                Effect::from_number(v.into()).map_err(|_| E::custom(NOT_ALLOWED))
            }

            fn visit_unit<E: de::Error>(self) -> Result<Effect, E> {
                Err(E::custom(NOT_ALLOWED))
            }
        }

        deserializer.deserialize_any(EffectVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_by_name_or_number_as_cerbos() {
        let read = |json: &str| serde_json::from_str::<Effect>(json).map_err(|e| e.to_string());
        assert_eq!(read(r#""EFFECT_ALLOW""#), Ok(Effect::Allow));
        assert_eq!(read("2"), Ok(Effect::Deny));
        for refused in [
            r#""EFFECT_NO_MATCH""#,
            r#""EFFECT_UNSPECIFIED""#,
            "0",
            "3",
            "-1",
            "null",
        ] {
            let err = read(refused).unwrap_err();
            assert!(
                err.starts_with("effect must be EFFECT_ALLOW or EFFECT_DENY"),
                "{refused}: {err}"
            );
        }
        let err = read(r#""ALLOW""#).unwrap_err();
        assert!(err.starts_with(r#"invalid enum value "ALLOW""#), "{err}");
        assert_eq!(Effect::from_name("EFFECT_DENY"), Ok(Effect::Deny));
        assert_eq!(Effect::from_name("deny"), Err(Refused::Unknown));
        assert_eq!(Effect::from_number(1), Ok(Effect::Allow));
        assert_eq!(Effect::from_number(-1), Err(Refused::NotAllowed));
        assert_eq!(
            serde_json::to_string(&Effect::Deny).unwrap(),
            r#""EFFECT_DENY""#
        );
    }
}
