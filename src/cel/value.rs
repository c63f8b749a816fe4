//! Runtime values of the CEL evaluator.
//!
//! Compound values are reference counted so that copying a value (for example
//! binding `P.attr` to a comprehension variable) never deep-copies it.

use std::cmp::Ordering;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, FixedOffset, TimeDelta};

/// A CEL timestamp: an instant with the offset it was written in.
pub type Timestamp = DateTime<FixedOffset>;

/// A CEL runtime value.
#[derive(Clone, Debug, Default)]
pub enum Value {
    /// `null`.
    #[default]
    Null,
    /// `bool`.
    Bool(bool),
    /// `int` (64-bit signed).
    Int(i64),
    /// `uint` (64-bit unsigned).
    Uint(u64),
    /// `double`. JSON numbers arrive as doubles, as in Cerbos.
    Double(f64),
    /// `string`.
    String(Arc<str>),
    /// `bytes`.
    Bytes(Arc<[u8]>),
    /// `list(dyn)`.
    List(Arc<Vec<Value>>),
    /// `map(dyn, dyn)`.
    Map(Arc<MapValue>),
    /// `google.protobuf.Timestamp`.
    Timestamp(Timestamp),
    /// `google.protobuf.Duration`.
    Duration(TimeDelta),
    /// A type value, as returned by `type(x)` or named by `int`, `string`, ...
    Type(CelType),
    /// `optional_type(T)`: present or absent.
    Optional(Option<Arc<Value>>),
    /// Extension values (IP addresses, CIDRs, hierarchies, SPIFFE IDs).
    Opaque(Arc<Opaque>),
}

/// The closed set of extension value kinds that Cerbos's libraries produce.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Opaque {
    /// `net.IP` from `ip("...")`.
    Ip(IpAddr),
    /// `net.CIDR` from `cidr("...")`: the address as written and the prefix length.
    Cidr {
        /// Address as written (not masked).
        addr: IpAddr,
        /// Prefix length in bits.
        prefix: u8,
    },
    /// `hierarchy("a.b.c")`.
    Hierarchy(Vec<Arc<str>>),
    /// `spiffeID("spiffe://td/path")`.
    SpiffeId {
        /// Trust domain name.
        trust_domain: Arc<str>,
        /// Path, starting with `/` or empty.
        path: Arc<str>,
    },
    /// `spiffeTrustDomain("td")`.
    SpiffeTrustDomain(Arc<str>),
    /// `spiffeMatchAny()`, `spiffeMatchExact(...)`, `spiffeMatchOneOf(...)`, `spiffeMatchTrustDomain(...)`.
    SpiffeMatcher(SpiffeMatcher),
}

/// A SPIFFE ID matcher.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum SpiffeMatcher {
    /// Matches every ID.
    Any,
    /// Matches exactly these IDs (`spiffe://...` strings).
    OneOf(Vec<Arc<str>>),
    /// Matches every ID in this trust domain.
    TrustDomain(Arc<str>),
}

/// CEL type names, the values of `type(x)`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CelType {
    /// `null_type`
    Null,
    /// `bool`
    Bool,
    /// `int`
    Int,
    /// `uint`
    Uint,
    /// `double`
    Double,
    /// `string`
    String,
    /// `bytes`
    Bytes,
    /// `list`
    List,
    /// `map`
    Map,
    /// `google.protobuf.Timestamp`
    Timestamp,
    /// `google.protobuf.Duration`
    Duration,
    /// `type`
    Type,
    /// `optional_type`
    Optional,
    /// An extension type, by its CEL name (`net.IP`, ...).
    Named(&'static str),
}

impl CelType {
    /// The CEL name of the type.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            CelType::Null => "null_type",
            CelType::Bool => "bool",
            CelType::Int => "int",
            CelType::Uint => "uint",
            CelType::Double => "double",
            CelType::String => "string",
            CelType::Bytes => "bytes",
            CelType::List => "list",
            CelType::Map => "map",
            CelType::Timestamp => "google.protobuf.Timestamp",
            CelType::Duration => "google.protobuf.Duration",
            CelType::Type => "type",
            CelType::Optional => "optional_type",
            CelType::Named(n) => n,
        }
    }
}

/// A map key. CEL allows bool, int, uint and string keys.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    /// A `bool` key.
    Bool(bool),
    /// An `int` key.
    Int(i64),
    /// A `uint` key.
    Uint(u64),
    /// A `string` key.
    String(Arc<str>),
}

impl Key {
    /// Converts a value into a key, or `None` when the type cannot be a key.
    /// Integral doubles become int keys (heterogeneous lookup, as in cel-go).
    pub fn from_value(v: &Value) -> Option<Key> {
        match v {
            Value::Bool(b) => Some(Key::Bool(*b)),
            Value::Int(i) => Some(Key::Int(*i)),
            Value::Uint(u) => Some(Key::Uint(*u)),
            Value::String(s) => Some(Key::String(s.clone())),
            Value::Double(d)
                if d.fract() == 0.0 && *d >= i64::MIN as f64 && *d < i64::MAX as f64 =>
            {
                Some(Key::Int(*d as i64))
            }
            _ => None,
        }
    }

    /// The key as a value.
    pub(crate) fn to_value(&self) -> Value {
        match self {
            Key::Bool(b) => Value::Bool(*b),
            Key::Int(i) => Value::Int(*i),
            Key::Uint(u) => Value::Uint(*u),
            Key::String(s) => Value::String(s.clone()),
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Bool(b) => write!(f, "{b}"),
            Key::Int(i) => write!(f, "{i}"),
            Key::Uint(u) => write!(f, "{u}"),
            Key::String(s) => write!(f, "{s}"),
        }
    }
}

/// A CEL map: entries sorted by key, so lookups are a binary search and output
/// (e.g. `json.encode`) is deterministic.
#[derive(Clone, Debug, Default)]
pub struct MapValue {
    entries: Vec<(Key, Value)>,
}

/// Up to this many entries, [`MapValue::get_str`] scans instead of searching.
const SMALL_MAP: usize = 8;

fn cmp_key_str(k: &Key, s: &str) -> Ordering {
    match k {
        Key::String(x) => (**x).cmp(s),
        _ => Ordering::Less,
    }
}

impl MapValue {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// A map with room for `n` entries.
    pub(crate) fn with_capacity(n: usize) -> Self {
        MapValue {
            entries: Vec::with_capacity(n),
        }
    }

    /// A map from entries already sorted by key, without duplicates (checked in debug builds).
    pub(crate) fn from_sorted(entries: Vec<(Key, Value)>) -> Self {
        debug_assert!(entries.windows(2).all(|w| w[0].0 < w[1].0));
        MapValue { entries }
    }

    /// Appends an entry whose key sorts after every key present (checked in debug builds).
    pub(crate) fn push_sorted(&mut self, key: Key, value: Value) {
        debug_assert!(self.entries.last().is_none_or(|(k, _)| *k < key));
        self.entries.push((key, value));
    }

    /// Makes room for `n` more entries.
    pub(crate) fn reserve(&mut self, n: usize) {
        self.entries.reserve(n);
    }

    /// Removes every entry; the map keeps its room.
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }

    /// The value under a string key, to change it.
    pub(crate) fn get_str_mut(&mut self, key: &str) -> Option<&mut Value> {
        self.entries.iter_mut().find_map(|(k, v)| match k {
            Key::String(x) if **x == *key => Some(v),
            _ => None,
        })
    }

    /// Inserts an entry, returning the previous value under the key.
    pub fn insert(&mut self, key: Key, value: Value) -> Option<Value> {
        match self.entries.binary_search_by(|(k, _)| k.cmp(&key)) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                self.entries.insert(i, (key, value));
                None
            }
        }
    }

    /// Looks up a string key without allocating: small maps (the `P` and `R` values,
    /// most attribute maps) by a scan that compares lengths first, larger ones by a
    /// binary search.
    pub(crate) fn get_str(&self, key: &str) -> Option<&Value> {
        if self.entries.len() <= SMALL_MAP {
            return self.entries.iter().find_map(|(k, v)| match k {
                Key::String(x) if **x == *key => Some(v),
                _ => None,
            });
        }
        self.entries
            .binary_search_by(|(k, _)| cmp_key_str(k, key))
            .ok()
            .map(|i| &self.entries[i].1)
    }

    fn get_key(&self, key: &Key) -> Option<&Value> {
        self.entries
            .binary_search_by(|(k, _)| k.cmp(key))
            .ok()
            .map(|i| &self.entries[i].1)
    }

    /// Looks up a key given as a value, with cel-go's heterogeneous numeric matching.
    pub(crate) fn get(&self, key: &Value) -> Option<&Value> {
        match key {
            Value::String(s) => self.get_str(s),
            Value::Bool(b) => self.get_key(&Key::Bool(*b)),
            Value::Int(i) => self.get_key(&Key::Int(*i)).or_else(|| {
                u64::try_from(*i)
                    .ok()
                    .and_then(|u| self.get_key(&Key::Uint(u)))
            }),
            Value::Uint(u) => self.get_key(&Key::Uint(*u)).or_else(|| {
                i64::try_from(*u)
                    .ok()
                    .and_then(|i| self.get_key(&Key::Int(i)))
            }),
            Value::Double(d) => {
                if d.fract() != 0.0 || !d.is_finite() {
                    return None;
                }
                if *d >= i64::MIN as f64
                    && *d < i64::MAX as f64
                    && let Some(v) = self.get_key(&Key::Int(*d as i64))
                {
                    return Some(v);
                }
                if *d >= 0.0 && *d < u64::MAX as f64 {
                    return self.get_key(&Key::Uint(*d as u64));
                }
                None
            }
            _ => None,
        }
    }

    /// Whether the key is present.
    pub(crate) fn contains(&self, key: &Value) -> bool {
        self.get(key).is_some()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&Key, &Value)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }
}

impl FromIterator<(Key, Value)> for MapValue {
    fn from_iter<T: IntoIterator<Item = (Key, Value)>>(iter: T) -> Self {
        let mut m = MapValue::new();
        for (k, v) in iter {
            m.insert(k, v);
        }
        m
    }
}

impl Value {
    /// A string value.
    pub fn string(s: impl Into<Arc<str>>) -> Value {
        Value::String(s.into())
    }

    /// A list value.
    pub fn list(items: Vec<Value>) -> Value {
        Value::List(Arc::new(items))
    }

    /// A map value.
    pub fn map(m: MapValue) -> Value {
        Value::Map(Arc::new(m))
    }

    /// The CEL type of this value.
    pub fn cel_type(&self) -> CelType {
        match self {
            Value::Null => CelType::Null,
            Value::Bool(_) => CelType::Bool,
            Value::Int(_) => CelType::Int,
            Value::Uint(_) => CelType::Uint,
            Value::Double(_) => CelType::Double,
            Value::String(_) => CelType::String,
            Value::Bytes(_) => CelType::Bytes,
            Value::List(_) => CelType::List,
            Value::Map(_) => CelType::Map,
            Value::Timestamp(_) => CelType::Timestamp,
            Value::Duration(_) => CelType::Duration,
            Value::Type(_) => CelType::Type,
            Value::Optional(_) => CelType::Optional,
            Value::Opaque(o) => CelType::Named(match &**o {
                Opaque::Ip(_) => "net.IP",
                Opaque::Cidr { .. } => "net.CIDR",
                Opaque::Hierarchy(_) => "cerbos.lib.hierarchy",
                Opaque::SpiffeId { .. } => "cerbos.lib.spiffeID",
                Opaque::SpiffeTrustDomain(_) => "cerbos.lib.spiffeTrustDomain",
                Opaque::SpiffeMatcher(_) => "cerbos.lib.spiffeMatcher",
            }),
        }
    }

    /// The CEL type name, for error messages.
    pub(crate) fn type_name(&self) -> &'static str {
        self.cel_type().name()
    }

    /// The string slice, if this is a string.
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    #[cfg(test)]
    /// The boolean, if this is a bool.
    pub(crate) fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    #[cfg(test)]
    /// The map, if this is a map.
    pub(crate) fn as_map(&self) -> Option<&MapValue> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// cel-go equality: heterogeneous numeric comparison, deep for lists and maps,
    /// `false` (not an error) for values of different types.
    pub fn cel_eq(&self, other: &Value) -> bool {
        use Value::*;
        match (self, other) {
            (Null, Null) => true,
            (Bool(a), Bool(b)) => a == b,
            (String(a), String(b)) => a == b,
            (Bytes(a), Bytes(b)) => a == b,
            (Int(_) | Uint(_) | Double(_), Int(_) | Uint(_) | Double(_)) => {
                numeric_cmp(self, other) == Some(Ordering::Equal)
            }
            (List(a), List(b)) => {
                a.len() == b.len() && a.iter().zip(b.iter()).all(|(x, y)| x.cel_eq(y))
            }
            (Map(a), Map(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .all(|(k, v)| b.get(&k.to_value()).is_some_and(|w| v.cel_eq(w)))
            }
            (Timestamp(a), Timestamp(b)) => a == b,
            (Duration(a), Duration(b)) => a == b,
            (Type(a), Type(b)) => a == b,
            (Optional(a), Optional(b)) => match (a, b) {
                (None, None) => true,
                (Some(x), Some(y)) => x.cel_eq(y),
                _ => false,
            },
            (Opaque(a), Opaque(b)) => opaque_eq(a, b),
            _ => false,
        }
    }

    /// Ordering for `<`, `<=`, `>`, `>=` and sorting; `None` when the types do not compare.
    pub(crate) fn cel_cmp(&self, other: &Value) -> Option<Ordering> {
        use Value::*;
        match (self, other) {
            (Int(_) | Uint(_) | Double(_), Int(_) | Uint(_) | Double(_)) => {
                numeric_cmp(self, other)
            }
            (String(a), String(b)) => Some(a.cmp(b)),
            (Bytes(a), Bytes(b)) => Some(a.cmp(b)),
            (Bool(a), Bool(b)) => Some(a.cmp(b)),
            (Timestamp(a), Timestamp(b)) => Some(a.cmp(b)),
            (Duration(a), Duration(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }

    /// Whether this is the zero value of its type (used by `optional.ofNonZeroValue`).
    pub(crate) fn is_zero(&self) -> bool {
        match self {
            Value::Null => true,
            Value::Bool(b) => !b,
            Value::Int(i) => *i == 0,
            Value::Uint(u) => *u == 0,
            Value::Double(d) => *d == 0.0,
            Value::String(s) => s.is_empty(),
            Value::Bytes(b) => b.is_empty(),
            Value::List(l) => l.is_empty(),
            Value::Map(m) => m.is_empty(),
            Value::Duration(d) => d.is_zero(),
            Value::Timestamp(t) => t.timestamp() == 0 && t.timestamp_subsec_nanos() == 0,
            Value::Optional(o) => o.is_none(),
            Value::Type(_) | Value::Opaque(_) => false,
        }
    }
}

fn opaque_eq(a: &Opaque, b: &Opaque) -> bool {
    match (a, b) {
        (Opaque::Ip(x), Opaque::Ip(y)) => canonical_ip(*x) == canonical_ip(*y),
        _ => a == b,
    }
}

/// IPv4-mapped IPv6 addresses compare equal to their IPv4 form (as Go's `net/netip` `Unmap`).
pub(crate) fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// Compares two numeric values of any numeric types as cel-go does: `int` with `uint`
/// exactly; an `int` or `uint` with a `double` by converting the integer to a double (so
/// `9007199254740993 == 9007199254740992.0`, as in Cerbos), doubles beyond the integer's
/// range ordering outside it. `None` when a NaN is involved.
pub(crate) fn numeric_cmp(a: &Value, b: &Value) -> Option<Ordering> {
    use Value::*;
    match (a, b) {
        (Int(x), Int(y)) => Some(x.cmp(y)),
        (Uint(x), Uint(y)) => Some(x.cmp(y)),
        (Double(x), Double(y)) => x.partial_cmp(y),
        (Int(x), Uint(y)) => Some(if *x < 0 {
            Ordering::Less
        } else {
            (*x as u64).cmp(y)
        }),
        (Uint(x), Int(y)) => Some(if *y < 0 {
            Ordering::Greater
        } else {
            x.cmp(&(*y as u64))
        }),
        (Int(x), Double(y)) => cmp_i64_f64(*x, *y),
        (Double(x), Int(y)) => cmp_i64_f64(*y, *x).map(Ordering::reverse),
        (Uint(x), Double(y)) => cmp_u64_f64(*x, *y),
        (Double(x), Uint(y)) => cmp_u64_f64(*y, *x).map(Ordering::reverse),
        _ => None,
    }
}

/// cel-go's `compareIntDouble`.
fn cmp_i64_f64(i: i64, d: f64) -> Option<Ordering> {
    if d.is_nan() {
        None
    } else if d < i64::MIN as f64 {
        Some(Ordering::Greater)
    } else if d > i64::MAX as f64 {
        Some(Ordering::Less)
    } else {
        (i as f64).partial_cmp(&d)
    }
}

/// cel-go's `compareUintDouble`.
fn cmp_u64_f64(u: u64, d: f64) -> Option<Ordering> {
    if d.is_nan() {
        None
    } else if d < 0.0 {
        Some(Ordering::Greater)
    } else if d > u64::MAX as f64 {
        Some(Ordering::Less)
    } else {
        (u as f64).partial_cmp(&d)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}
impl From<f64> for Value {
    fn from(d: f64) -> Self {
        Value::Double(d)
    }
}
impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(Arc::from(s))
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(Arc::from(s))
    }
}
impl From<Vec<Value>> for Value {
    fn from(v: Vec<Value>) -> Self {
        Value::List(Arc::new(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_keys_are_found_in_small_and_large_maps() {
        for n in [0, 1, 7, 8, 9, 40] {
            let mut m = MapValue::new();
            m.insert(Key::Int(3), Value::Int(-3));
            m.insert(Key::Bool(true), Value::Bool(true));
            for i in 0..n {
                m.insert(Key::String(Arc::from(format!("k{i}"))), Value::Int(i));
            }
            for i in 0..n {
                assert!(matches!(m.get_str(&format!("k{i}")), Some(Value::Int(v)) if *v == i));
            }
            assert!(m.get_str("k").is_none() && m.get_str("3").is_none());
            assert!(m.get_str(&format!("k{n}")).is_none());
        }
    }

    #[test]
    fn integers_compare_with_doubles_as_doubles() {
        // cel-spec comparisons/*_literal/*_big_*; Cerbos: a JSON number beyond 2^53.
        let max = Value::Int(i64::MAX);
        let two_63 = Value::Double(9_223_372_036_854_775_808.0);
        assert_eq!(max.cel_cmp(&two_63), Some(Ordering::Equal));
        assert_eq!(two_63.cel_cmp(&max), Some(Ordering::Equal));
        assert!(Value::Int(9_007_199_254_740_993).cel_eq(&Value::Double(9_007_199_254_740_992.0)));
        assert!(Value::Uint(u64::MAX).cel_eq(&Value::Double(18_446_744_073_709_551_616.0)));
        assert_eq!(
            Value::Int(i64::MAX).cel_cmp(&Value::Double(1e19)),
            Some(Ordering::Less)
        );
        assert_eq!(
            Value::Int(i64::MIN).cel_cmp(&Value::Double(-1e19)),
            Some(Ordering::Greater)
        );
        assert_eq!(Value::Int(1).cel_cmp(&Value::Double(f64::NAN)), None);
    }

    #[test]
    fn heterogeneous_numbers_compare_exactly() {
        assert!(Value::Int(1).cel_eq(&Value::Double(1.0)));
        assert!(Value::Uint(3).cel_eq(&Value::Int(3)));
        assert!(!Value::Int(1).cel_eq(&Value::Double(1.5)));
        assert_eq!(
            Value::Int(1).cel_cmp(&Value::Double(1.5)),
            Some(Ordering::Less)
        );
        assert_eq!(
            Value::Int(-1).cel_cmp(&Value::Uint(0)),
            Some(Ordering::Less)
        );
        assert!(!Value::Int(1).cel_eq(&Value::string("1")));
    }

    #[test]
    fn map_lookup_accepts_integral_doubles() {
        let m: MapValue = [(Key::Int(1), Value::Bool(true))].into_iter().collect();
        assert!(m.get(&Value::Double(1.0)).is_some());
        assert!(m.get(&Value::Uint(1)).is_some());
        assert!(m.get(&Value::Double(1.5)).is_none());
        let s: MapValue = [(Key::String("a".into()), Value::Null)]
            .into_iter()
            .collect();
        assert!(s.get_str("a").is_some());
        assert!(s.get_str("b").is_none());
    }
}
