//! Forward-auth for the proxies already in front of FastAPI: nginx `auth_request`
//! (`X-Original-URI`, `X-Original-Method`) and Traefik/Caddy `forward_auth`
//! (`X-Forwarded-Method`, `X-Forwarded-Uri`, `X-Forwarded-Host`). The proxy asks
//! `/_gatehouse/forward-auth` with the client's headers; `200` carries the backend
//! headers for the proxy to copy, anything else is the denial. Only the configured proxy
//! addresses are believed: the original method and URI are whatever the caller says,
//! so a request from anywhere else is denied.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::ConfigError;
use super::LiveExtAuthz;
use super::config::ForwardAuthConfig;
use super::http_mode::{check_request, header_map, render};

/// The address of the client connected to the HTTP listener.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerAddr(pub SocketAddr);

/// The forward-auth settings in force.
#[derive(Debug, Clone)]
pub(crate) struct ForwardAuth {
    trusted: Vec<Cidr>,
    deny_status: Option<u16>,
}

/// An address block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    fn parse(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR block"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: prefix length must be 0 to {max}"))?,
        };
        Ok(Cidr { addr, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 peer on a dual-stack socket arrives as ::ffff:a.b.c.d.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl ForwardAuth {
    /// Checks the configuration: at least one trusted proxy, every entry an address or
    /// block, a denial status in 400..=599.
    pub(crate) fn new(config: &ForwardAuthConfig) -> Result<ForwardAuth, ConfigError> {
        if config.trusted_proxies.is_empty() {
            return Err(ConfigError(
                "forwardAuth.trustedProxies: list the proxies' addresses (none would deny everything)".into(),
            ));
        }
        let trusted = config
            .trusted_proxies
            .iter()
            .map(|s| {
                Cidr::parse(s).map_err(|e| ConfigError(format!("forwardAuth.trustedProxies: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(s) = config.deny_status
            && !(400..=599).contains(&s)
        {
            return Err(ConfigError(format!(
                "forwardAuth.denyStatus: {s} is not an error status (400 to 599)"
            )));
        }
        Ok(ForwardAuth {
            trusted,
            deny_status: config.deny_status,
        })
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|c| c.contains(ip))
    }
}

/// The single value of `name`, if it was sent exactly once.
fn single<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, String> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(format!("{name} sent more than once"));
    }
    first
        .to_str()
        .map(Some)
        .map_err(|_| format!("{name} is not ASCII"))
}

/// The original request: (method, URI, host) from the proxy's headers, one family
/// (`X-Forwarded-*` or `X-Original-*`) complete and the other absent: a client-sent
/// header of the family the proxy does not set must not stand in for the proxy's.
fn original(headers: &HeaderMap) -> Result<(String, String, Option<String>), String> {
    let forwarded = (
        single(headers, "x-forwarded-method")?,
        single(headers, "x-forwarded-uri")?,
    );
    let nginx = (
        single(headers, "x-original-method")?,
        single(headers, "x-original-uri")?,
    );
    let (method, uri) = match (forwarded, nginx) {
        ((Some(m), Some(u)), (None, None)) | ((None, None), (Some(m), Some(u))) => (m, u),
        ((None, None), (None, None)) => {
            return Err(
                "no original request (X-Forwarded-Method and X-Forwarded-Uri, or X-Original-Method and X-Original-URI)".into(),
            );
        }
        _ => {
            return Err(
                "the original request is incomplete or given twice (X-Forwarded-* and X-Original-*)".into(),
            );
        }
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err("the original method is not a method name".into());
    }
    if !uri.starts_with('/') {
        return Err("the original URI is not an origin-form path".into());
    }
    let host = single(headers, "x-forwarded-host")?.map(str::to_string);
    Ok((method.to_string(), uri.to_string(), host))
}

pub(crate) async fn handle(
    State(live): State<LiveExtAuthz>,
    ConnectInfo(PeerAddr(peer)): ConnectInfo<PeerAddr>,
    request: Request,
) -> Response {
    let ext = live.current();
    let Some(fa) = &ext.forward_auth else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let headers = request.headers();
    if !fa.trusts(peer.ip()) {
        let answer = ext.refuse(
            403,
            &format!("forward-auth request from untrusted address {}", peer.ip()),
        );
        return render(answer, false, fa.deny_status);
    }
    let (method, uri, host) = match original(headers) {
        Ok(o) => o,
        Err(reason) => {
            let answer = ext.refuse(400, &format!("forward-auth: {reason}"));
            return render(answer, false, fa.deny_status);
        }
    };
    let mut map = header_map(headers);
    for name in [
        "x-forwarded-method",
        "x-original-method",
        "x-forwarded-uri",
        "x-original-uri",
        "x-forwarded-host",
        "content-length",
    ] {
        map.remove(name);
    }
    if let Some(h) = host {
        map.insert("host".into(), h);
    }
    // Proxies send no body with the subrequest: routes that read the body see none.
    let req = check_request(&method, &uri, map, Vec::new());
    let view = super::view::CheckView::from_message(&req);
    render(ext.authorize(&view, None).await, false, fa.deny_status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_blocks() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(c.contains("10.1.200.3".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.0.9".parse().unwrap()));
        let one = Cidr::parse("127.0.0.1").unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let all = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all.contains("192.0.2.1".parse().unwrap()));
        assert!(!all.contains("2001:db8::1".parse().unwrap()));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:ffff::1".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
        for bad in ["10.0.0.0/33", "nope", "::/129", "1.2.3.4/x"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn original_request_from_either_header_family() {
        let mut h = HeaderMap::new();
        h.insert("x-original-uri", "/documents/1?x=1".parse().unwrap());
        h.insert("x-original-method", "GET".parse().unwrap());
        assert_eq!(
            original(&h).unwrap(),
            ("GET".into(), "/documents/1?x=1".into(), None)
        );
        h.insert("x-forwarded-uri", "/documents/2".parse().unwrap());
        // A client-sent header of the other family: refused, not preferred.
        assert!(original(&h).unwrap_err().contains("given twice"));
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-method", "DELETE".parse().unwrap());
        h.insert("x-forwarded-uri", "/documents/2".parse().unwrap());
        h.insert("x-forwarded-host", "api.example".parse().unwrap());
        assert_eq!(
            original(&h).unwrap(),
            (
                "DELETE".into(),
                "/documents/2".into(),
                Some("api.example".into())
            )
        );
        h.append("x-forwarded-uri", "/documents/3".parse().unwrap());
        assert!(original(&h).unwrap_err().contains("more than once"));
        let mut h = HeaderMap::new();
        h.insert("x-original-method", "GET".parse().unwrap());
        assert!(original(&h).is_err());
        h.insert("x-original-uri", "http://evil/documents/1".parse().unwrap());
        assert!(original(&h).is_err());
    }
}
