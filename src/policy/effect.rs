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
        struct EffectVisitor;

        impl Visitor<'_> for EffectVisitor {
            type Value = Effect;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("EFFECT_ALLOW or EFFECT_DENY")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Effect, E> {
                match v {
                    "EFFECT_ALLOW" => Ok(Effect::Allow),
                    "EFFECT_DENY" => Ok(Effect::Deny),
                    "EFFECT_UNSPECIFIED" | "EFFECT_NO_MATCH" => {
                        Err(E::custom("effect must be EFFECT_ALLOW or EFFECT_DENY"))
                    }
                    _ => Err(E::custom(format_args!("invalid enum value {v:?}"))),
                }
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Effect, E> {
                match v {
                    1 => Ok(Effect::Allow),
                    2 => Ok(Effect::Deny),
                    _ => Err(E::custom("effect must be EFFECT_ALLOW or EFFECT_DENY")),
                }
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Effect, E> {
                u64::try_from(v)
                    .map_err(|_| E::custom("effect must be EFFECT_ALLOW or EFFECT_DENY"))
                    .and_then(|v| self.visit_u64(v))
            }

            fn visit_unit<E: de::Error>(self) -> Result<Effect, E> {
                Err(E::custom("effect must be EFFECT_ALLOW or EFFECT_DENY"))
            }
        }

        deserializer.deserialize_any(EffectVisitor)
    }
}
