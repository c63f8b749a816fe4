//! cel-go's network extension (`ext.Network()`, the Kubernetes IP and CIDR library):
//! `ip`, `cidr`, `isIP`, `isCIDR`, `ip.isCanonical`, the IP and CIDR methods and
//! `string(ip)` / `string(cidr)`; plus Cerbos's older `"1.2.3.4".inIPAddrRange("1.2.0.0/16")`.
//!
//! Parsing follows Go's `net/netip`: strict dotted quads (no leading zeros), no
//! IPv6 zones, and IPv4-mapped IPv6 addresses are rejected.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use super::{CallStyle, Fallback, FunctionRegistry, arg_str, no_overload};
use crate::cel::eval::{Activation, EvalError};
use crate::cel::value::{Opaque, Value};

/// `string(x)` as registered by the standard library, for every non-network value.
static STD_STRING: Fallback = Fallback::new();

pub(super) fn register(r: &mut FunctionRegistry) {
    STD_STRING.capture(r, "string", CallStyle::Global);
    r.global("string", to_string);
    r.global("isIP", is_ip);
    r.global("isCIDR", is_cidr);
    r.global("cidr", cidr);
    r.global("ip.isCanonical", is_canonical);
    // `ip("...")` parses; `cidr.ip()` is the address of a CIDR.
    r.global("ip", ip);
    r.receiver("ip", cidr_ip);
    r.receiver("family", family);
    r.receiver("isLoopback", is_loopback);
    r.receiver("isGlobalUnicast", is_global_unicast);
    r.receiver("isLinkLocalMulticast", is_link_local_multicast);
    r.receiver("isLinkLocalUnicast", is_link_local_unicast);
    r.receiver("isUnspecified", is_unspecified);
    r.receiver("containsIP", contains_ip);
    r.receiver("containsCIDR", contains_cidr);
    r.receiver("masked", masked);
    r.receiver("prefixLength", prefix_length);
    r.receiver("isMask", is_mask);
    r.receiver("inIPAddrRange", in_ip_addr_range);
}

// === parsing and formatting ===

/// Why Go's `netip.ParseAddr` refuses `s`, in its words: exact for IPv4 forms, `unable to
/// parse IP` for the rest.
fn parse_addr_error(s: &str) -> String {
    let why = |msg: &str, at: Option<&str>| match at {
        Some(at) => format!("ParseAddr({s:?}): {msg} (at {at:?})"),
        None => format!("ParseAddr({s:?}): {msg}"),
    };
    match s.bytes().find(|b| matches!(b, b'.' | b':' | b'%')) {
        Some(b'.') => {}
        Some(b'%') => return why("missing IPv6 address", None),
        _ => return why("unable to parse IP", None),
    }
    let (mut val, mut fields, mut digits) = (0u32, 0, 0);
    let b = s.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        if c.is_ascii_digit() {
            if digits == 1 && val == 0 {
                return why("IPv4 field has octet with leading zero", None);
            }
            val = val * 10 + u32::from(c - b'0');
            digits += 1;
            if val > 255 {
                return why("IPv4 field has value >255", None);
            }
        } else if c == b'.' {
            if i == 0 || i == b.len() - 1 || b[i - 1] == b'.' {
                return why("IPv4 field must have at least one digit", Some(&s[i..]));
            }
            if fields == 3 {
                return why("IPv4 address too long", None);
            }
            fields += 1;
            val = 0;
            digits = 0;
        } else {
            return why("unexpected character", Some(&s[i..]));
        }
    }
    if fields < 3 {
        return why("IPv4 address too short", None);
    }
    why("unable to parse IP", None)
}

/// Parses an address as `netip.ParseAddr` does, rejecting IPv4-mapped IPv6 addresses.
fn parse_ip(s: &str) -> Result<IpAddr, EvalError> {
    let addr: IpAddr = s.parse().map_err(|_| {
        EvalError::new(format!(
            "IP Address {s:?} parse error during conversion from string: {}",
            parse_addr_error(s)
        ))
    })?;
    if let IpAddr::V6(v6) = addr
        && v6.to_ipv4_mapped().is_some()
    {
        return Err(EvalError::new(format!(
            "IPv4-mapped IPv6 address {s:?} is not allowed"
        )));
    }
    Ok(addr)
}

/// Parses `addr/bits` as `netip.ParsePrefix` does (the address is kept unmasked).
fn parse_cidr(s: &str) -> Result<(IpAddr, u8), EvalError> {
    let bad = |why: &str| {
        EvalError::new(format!(
            "CIDR {s:?} parse error during conversion from string: netip.ParsePrefix({s:?}): {why}"
        ))
    };
    let (addr, bits) = s.rsplit_once('/').ok_or_else(|| bad("no '/'"))?;
    let addr: IpAddr = addr.parse().map_err(|_| bad(&parse_addr_error(addr)))?;
    let well_formed = !bits.is_empty()
        && bits.bytes().all(|b| b.is_ascii_digit())
        && (bits.len() == 1 || !bits.starts_with('0'));
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let bits = bits
        .parse::<u32>()
        .ok()
        .filter(|_| well_formed)
        .ok_or_else(|| bad(&format!("bad bits after slash: {bits:?}")))?;
    let bits = u8::try_from(bits)
        .ok()
        .filter(|b| *b <= max)
        .ok_or_else(|| bad("prefix length out of range"))?;
    if let IpAddr::V6(v6) = addr
        && v6.to_ipv4_mapped().is_some()
    {
        return Err(EvalError::new(format!(
            "IPv4-mapped IPv6 address {s:?} is not allowed"
        )));
    }
    Ok((addr, bits))
}

/// Formats an address as Go's `netip.Addr.String` (RFC 5952 for IPv6).
fn go_ip_string(ip: IpAddr) -> String {
    let v6 = match ip {
        IpAddr::V4(v4) => return v4.to_string(),
        IpAddr::V6(v6) => v6,
    };
    let groups = v6.segments();
    // The first longest run of two or more zero groups is written as `::`.
    let (mut best_start, mut best_len) = (8, 0);
    let mut i = 0;
    while i < 8 {
        let mut j = i;
        while j < 8 && groups[j] == 0 {
            j += 1;
        }
        if j - i >= 2 && j - i > best_len {
            best_start = i;
            best_len = j - i;
        }
        i = j.max(i + 1);
    }
    let mut out = String::new();
    let mut k = 0;
    while k < 8 {
        if k == best_start {
            out.push_str("::");
            k += best_len;
            continue;
        }
        if k > 0 && !out.ends_with(':') {
            out.push(':');
        }
        out.push_str(&format!("{:x}", groups[k]));
        k += 1;
    }
    out
}

fn ip_value(ip: IpAddr) -> Value {
    Value::Opaque(Arc::new(Opaque::Ip(ip)))
}

fn cidr_value(addr: IpAddr, prefix: u8) -> Value {
    Value::Opaque(Arc::new(Opaque::Cidr { addr, prefix }))
}

fn as_ip(v: &Value) -> Option<IpAddr> {
    match v {
        Value::Opaque(o) => match &**o {
            Opaque::Ip(ip) => Some(*ip),
            _ => None,
        },
        _ => None,
    }
}

fn as_cidr(v: &Value) -> Option<(IpAddr, u8)> {
    match v {
        Value::Opaque(o) => match &**o {
            Opaque::Cidr { addr, prefix } => Some((*addr, *prefix)),
            _ => None,
        },
        _ => None,
    }
}

fn ip_arg(name: &str, args: &[Value]) -> Result<IpAddr, EvalError> {
    match args {
        [v] => as_ip(v).ok_or_else(|| no_overload(name, args)),
        _ => Err(no_overload(name, args)),
    }
}

fn cidr_arg(name: &str, args: &[Value]) -> Result<(IpAddr, u8), EvalError> {
    args.first()
        .and_then(as_cidr)
        .ok_or_else(|| no_overload(name, args))
}

/// The address with every bit after the first `bits` cleared.
fn mask(ip: IpAddr, bits: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let m = u32::MAX
                .checked_shl(32 - u32::from(bits.min(32)))
                .unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & m))
        }
        IpAddr::V6(v6) => {
            let m = u128::MAX
                .checked_shl(128 - u32::from(bits.min(128)))
                .unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & m))
        }
    }
}

/// `netip.Prefix.Contains`: same family and the same leading bits.
fn prefix_contains(addr: IpAddr, bits: u8, ip: IpAddr) -> bool {
    addr.is_ipv4() == ip.is_ipv4() && mask(addr, bits) == mask(ip, bits)
}

/// `netip.Prefix.Overlaps(other) && bits <= other.bits`.
fn prefix_contains_prefix(parent: (IpAddr, u8), child: (IpAddr, u8)) -> bool {
    if parent.0.is_ipv4() != child.0.is_ipv4() {
        return false;
    }
    let min_bits = parent.1.min(child.1);
    mask(parent.0, min_bits) == mask(child.0, min_bits) && parent.1 <= child.1
}

// === functions ===

fn to_string(args: &[Value], act: &Activation) -> Result<Value, EvalError> {
    if let [v] = args {
        if let Some(ip) = as_ip(v) {
            return Ok(Value::from(go_ip_string(ip)));
        }
        if let Some((addr, bits)) = as_cidr(v) {
            return Ok(Value::from(format!("{}/{bits}", go_ip_string(addr))));
        }
    }
    STD_STRING.call("string", args, act)
}

fn is_ip(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    match args {
        [Value::String(s)] => Ok(Value::Bool(parse_ip(s).is_ok())),
        _ => Err(no_overload("isIP", args)),
    }
}

fn is_cidr(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    match args {
        [Value::String(s)] => Ok(Value::Bool(parse_cidr(s).is_ok())),
        _ => Err(no_overload("isCIDR", args)),
    }
}

fn ip(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    match args {
        [Value::String(s)] => parse_ip(s).map(ip_value),
        _ => Err(no_overload("ip", args)),
    }
}

fn cidr(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    match args {
        [Value::String(s)] => parse_cidr(s).map(|(addr, bits)| cidr_value(addr, bits)),
        _ => Err(no_overload("cidr", args)),
    }
}

fn is_canonical(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    match args {
        [Value::String(s)] => Ok(Value::Bool(go_ip_string(parse_ip(s)?) == **s)),
        _ => Err(no_overload("ip.isCanonical", args)),
    }
}

fn cidr_ip(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    if args.len() != 1 {
        return Err(no_overload("ip", args));
    }
    let (addr, _) = cidr_arg("ip", args)?;
    Ok(ip_value(addr))
}

fn family(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    let ip = ip_arg("family", args)?;
    Ok(Value::Int(if ip.is_ipv4() { 4 } else { 6 }))
}

fn is_loopback(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    Ok(Value::Bool(ip_arg("isLoopback", args)?.is_loopback()))
}

fn is_unspecified(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    Ok(Value::Bool(ip_arg("isUnspecified", args)?.is_unspecified()))
}

fn link_local_unicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.octets()[..2] == [169, 254],
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
    }
}

fn link_local_multicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.octets()[..3] == [224, 0, 0],
        IpAddr::V6(v6) => v6.segments()[0] & 0xff0f == 0xff02,
    }
}

fn is_link_local_unicast(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    Ok(Value::Bool(link_local_unicast(ip_arg(
        "isLinkLocalUnicast",
        args,
    )?)))
}

fn is_link_local_multicast(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    Ok(Value::Bool(link_local_multicast(ip_arg(
        "isLinkLocalMulticast",
        args,
    )?)))
}

/// `netip.Addr.IsGlobalUnicast`: private ranges count as global unicast.
fn is_global_unicast(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    let ip = ip_arg("isGlobalUnicast", args)?;
    let global = match ip {
        IpAddr::V4(v4) => {
            !v4.is_unspecified()
                && !v4.is_broadcast()
                && !v4.is_loopback()
                && !v4.is_multicast()
                && !link_local_unicast(ip)
        }
        IpAddr::V6(v6) => {
            !v6.is_unspecified()
                && !v6.is_loopback()
                && !v6.is_multicast()
                && !link_local_unicast(ip)
        }
    };
    Ok(Value::Bool(global))
}

fn contains_ip(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    let (addr, bits) = cidr_arg("containsIP", args)?;
    let ip = match args {
        [_, Value::String(s)] => parse_ip(s)?,
        [_, other] => as_ip(other).ok_or_else(|| no_overload("containsIP", args))?,
        _ => return Err(no_overload("containsIP", args)),
    };
    Ok(Value::Bool(prefix_contains(addr, bits, ip)))
}

fn contains_cidr(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    let parent = cidr_arg("containsCIDR", args)?;
    let child = match args {
        [_, Value::String(s)] => parse_cidr(s)?,
        [_, other] => as_cidr(other).ok_or_else(|| no_overload("containsCIDR", args))?,
        _ => return Err(no_overload("containsCIDR", args)),
    };
    Ok(Value::Bool(prefix_contains_prefix(parent, child)))
}

fn masked(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    if args.len() != 1 {
        return Err(no_overload("masked", args));
    }
    let (addr, bits) = cidr_arg("masked", args)?;
    Ok(cidr_value(mask(addr, bits), bits))
}

fn prefix_length(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    if args.len() != 1 {
        return Err(no_overload("prefixLength", args));
    }
    let (_, bits) = cidr_arg("prefixLength", args)?;
    Ok(Value::Int(i64::from(bits)))
}

/// Whether the CIDR's address has no host bits set.
fn is_mask(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    if args.len() != 1 {
        return Err(no_overload("isMask", args));
    }
    let (addr, bits) = cidr_arg("isMask", args)?;
    Ok(Value::Bool(mask(addr, bits) == addr))
}

// === Cerbos's inIPAddrRange ===

/// An address as Go's `net.IP` compares it: IPv4 (and IPv4-mapped) as 4 bytes.
fn go_net_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.octets().to_vec(),
            None => v6.octets().to_vec(),
        },
    }
}

/// Go's `net.ParseCIDR(...)` followed by `IPNet.Contains(net.ParseIP(...))`.
fn go_net_contains(ip_s: &str, cidr_s: &str) -> Result<bool, EvalError> {
    let ip: IpAddr = ip_s
        .parse()
        .map_err(|_| EvalError::new(format!("invalid IP address: {ip_s}")))?;
    let bad_cidr = || EvalError::new(format!("invalid CIDR address: {cidr_s}"));
    let (addr, bits) = cidr_s.split_once('/').ok_or_else(bad_cidr)?;
    let addr: IpAddr = addr.parse().map_err(|_| bad_cidr())?;
    // The prefix length is plain decimal digits; leading zeros are allowed.
    if bits.is_empty() || bits.len() > 8 || !bits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad_cidr());
    }
    let bits: u32 = bits.parse().map_err(|_| bad_cidr())?;
    let (network, mask_bytes): (Vec<u8>, Vec<u8>) = match addr {
        IpAddr::V4(v4) => {
            if bits > 32 {
                return Err(bad_cidr());
            }
            let m = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            (
                (u32::from(v4) & m).to_be_bytes().to_vec(),
                m.to_be_bytes().to_vec(),
            )
        }
        IpAddr::V6(v6) => {
            if bits > 128 {
                return Err(bad_cidr());
            }
            let m = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            let net = Ipv6Addr::from(u128::from(v6) & m);
            match net.to_ipv4_mapped() {
                // A network number that is itself IPv4-mapped compares as IPv4.
                Some(v4) => (v4.octets().to_vec(), m.to_be_bytes()[12..].to_vec()),
                None => (net.octets().to_vec(), m.to_be_bytes().to_vec()),
            }
        }
    };
    let ip = go_net_bytes(ip);
    if ip.len() != network.len() {
        return Ok(false);
    }
    Ok(ip
        .iter()
        .zip(&network)
        .zip(&mask_bytes)
        .all(|((a, n), m)| a & m == n & m))
}

fn in_ip_addr_range(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    if args.len() != 2 {
        return Err(no_overload("inIPAddrRange", args));
    }
    let ip = arg_str("inIPAddrRange", args, 0)?;
    let range = arg_str("inIPAddrRange", args, 1)?;
    go_net_contains(ip, range).map(Value::Bool)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cel::testing::{assert_true, eval};

    #[test]
    fn go_formatting_of_addresses() {
        for (s, want) in [
            (
                "2001:0db8:0000:0000:0000:0000:1000:0000",
                "2001:db8::1000:0",
            ),
            ("2001:db8:0:1:0:0:0:1", "2001:db8:0:1::1"),
            ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
            ("::", "::"),
            ("::1", "::1"),
            ("1::", "1::"),
            ("1:0:2:3:4:5:6:7", "1:0:2:3:4:5:6:7"),
            ("::1.2.3.4", "::102:304"),
            ("FE80::1", "fe80::1"),
        ] {
            let ip: IpAddr = s.parse().unwrap();
            assert_eq!(go_ip_string(ip), want, "{s}");
        }
    }

    #[test]
    fn ip_functions() {
        for src in [
            "isIP('1.2.3.4')",
            "isIP('2001:db8::1')",
            "!isIP('not.an.ip')",
            "!isIP('127.0.0.1:80')",
            "!isIP('127.0.0.01')",
            "!isIP('::ffff:1.2.3.4')",
            "!isIP('fe80::1%eth0')",
            "ip('127.0.0.1') == ip('127.0.0.1')",
            "ip('127.0.0.1') != ip('1.2.3.4')",
            "ip('2001:db8::1') == ip('2001:DB8::1')",
            "string(ip('1.2.3.4')) == '1.2.3.4'",
            "string(ip('2001:db8::1')) == '2001:db8::1'",
            "string(cidr('10.0.0.0/8')) == '10.0.0.0/8'",
            "string(cidr('::1/128')) == '::1/128'",
            "string(1) == '1'",
            "ip('127.0.0.1').family() == 4",
            "ip('::1').family() == 6",
            "ip.isCanonical('127.0.0.1')",
            "ip.isCanonical('2001:db8::1')",
            "!ip.isCanonical('2001:DB8::1')",
            "!ip.isCanonical('2001:db8:0:0:0:0:0:1')",
            "ip('127.0.0.1').isLoopback()",
            "ip('::1').isLoopback()",
            "ip('0.0.0.0').isUnspecified()",
            "ip('::').isUnspecified()",
            "ip('8.8.8.8').isGlobalUnicast()",
            "ip('10.0.0.1').isGlobalUnicast()",
            "!ip('255.255.255.255').isGlobalUnicast()",
            "!ip('169.254.1.1').isGlobalUnicast()",
            "ip('2001:db8::1000:0').isGlobalUnicast()",
            "ip('ff02::1').isLinkLocalMulticast()",
            "ip('224.0.0.5').isLinkLocalMulticast()",
            "!ip('224.0.1.5').isLinkLocalMulticast()",
            "ip('fe80::1').isLinkLocalUnicast()",
            "ip('169.254.0.1').isLinkLocalUnicast()",
        ] {
            assert_true(src);
        }
        for src in [
            "ip('999.999.999.999')",
            "ip('::ffff:1.2.3.4')",
            "ip(1)",
            "ip.isCanonical('x')",
        ] {
            assert!(eval(src).is_err(), "{src}");
        }
    }

    #[test]
    fn cidr_functions() {
        for src in [
            "isCIDR('10.0.0.0/8')",
            "isCIDR('10.0.0.1/8')",
            "isCIDR('::1/128')",
            "!isCIDR('10.0.0.0/999')",
            "!isCIDR('10.0.0.0/08')",
            "!isCIDR('10.0.0.0/+8')",
            "!isCIDR('10.0.0.0')",
            "!isCIDR('10.0.0.0/33')",
            "cidr('192.168.0.0/24').prefixLength() == 24",
            "cidr('192.168.0.0/24').ip() == ip('192.168.0.0')",
            "cidr('192.168.1.5/24').ip() == ip('192.168.1.5')",
            "cidr('192.168.1.5/24').masked() == cidr('192.168.1.0/24')",
            "cidr('192.168.1.0/24').masked() == cidr('192.168.1.0/24')",
            "cidr('192.168.1.5/24') != cidr('192.168.1.0/24')",
            "cidr('192.168.1.0/24').isMask()",
            "!cidr('192.168.1.5/24').isMask()",
            "cidr('0.0.0.0/0').isMask()",
            "cidr('10.0.0.0/8').containsIP(ip('10.1.2.3'))",
            "cidr('10.0.0.0/8').containsIP('10.1.2.3')",
            "cidr('10.0.0.0/8').containsIP(ip('10.255.255.255'))",
            "!cidr('10.0.0.0/8').containsIP(ip('11.0.0.0'))",
            "!cidr('0.0.0.0/0').containsIP(ip('::1'))",
            "cidr('10.0.0.0/8').containsCIDR(cidr('10.0.0.0/8'))",
            "cidr('10.0.0.0/8').containsCIDR(cidr('10.1.0.0/16'))",
            "cidr('10.0.0.0/8').containsCIDR('10.1.0.0/16')",
            "!cidr('10.0.0.0/8').containsCIDR(cidr('0.0.0.0/4'))",
            "!cidr('10.0.0.0/8').containsCIDR(cidr('11.0.0.0/8'))",
            "!cidr('10.0.0.0/8').containsCIDR(cidr('::1/128'))",
            "cidr('192.168.0.0/8').containsCIDR(cidr('192.168.1.0/24'))",
            "cidr('2001:db8::/48').containsIP('2001:0db8:0000:0000:0000:0000:1000:0000')",
        ] {
            assert_true(src);
        }
        for src in [
            "cidr('1.2.3.4')",
            "cidr('10.0.0.0/999')",
            "cidr('10.0.0.0/8').containsIP('not-an-ip')",
            "cidr('10.0.0.0/8').containsCIDR('not-a-cidr')",
            "cidr('10.0.0.0/8').containsIP(1)",
        ] {
            assert!(eval(src).is_err(), "{src}");
        }
    }

    #[test]
    fn in_ip_addr_range_follows_go_net() {
        for src in [
            "'192.168.0.5'.inIPAddrRange('192.168.0.0/24')",
            "'2001:0db8:0000:0000:0000:0000:1000:0000'.inIPAddrRange('2001:db8::/48')",
            "!'10.0.0.1'.inIPAddrRange('192.168.0.0/24')",
            "'::ffff:192.168.0.5'.inIPAddrRange('192.168.0.0/24')",
            "'192.168.0.5'.inIPAddrRange('::ffff:192.168.0.0/120')",
            "!'192.168.0.5'.inIPAddrRange('::/0')",
            "'10.1.2.3'.inIPAddrRange('10.0.0.0/08')",
            "'10.1.2.3'.inIPAddrRange('10.9.9.9/8')",
        ] {
            assert_true(src);
        }
        for src in [
            "'x'.inIPAddrRange('10.0.0.0/8')",
            "'10.0.0.1'.inIPAddrRange('10.0.0.0')",
            "'10.0.0.1'.inIPAddrRange('10.0.0.0/33')",
            "'10.0.0.1'.inIPAddrRange('10.0.0.0/-1')",
        ] {
            assert!(eval(src).is_err(), "{src}");
        }
    }
}
