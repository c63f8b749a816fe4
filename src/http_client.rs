//! The one outbound HTTP connector: `https://` verified against the system's trust
//! store and plain `http://`. Used for JWKS key sets, attribute sources and OTLP export.
//!
//! Proxies come from the environment as curl reads them: `HTTPS_PROXY` for `https://`
//! destinations, `HTTP_PROXY` for `http://` ones, `ALL_PROXY` for both (lower-case names
//! too), and `NO_PROXY` lists the hosts, domains and networks reached directly. A proxied
//! connection is a `CONNECT` tunnel (TLS runs end to end through it), with basic
//! proxy authentication when the proxy URL carries `user:password@`.
//!
//! The trust store is the system's (`/etc/ssl/certs` and the like). As with OpenSSL,
//! `SSL_CERT_FILE` or `SSL_CERT_DIR` *replace* it: to trust a private CA as well, point
//! `SSL_CERT_FILE` at the system bundle with the CA appended.

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::Uri;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioIo;
use rustls::crypto::ring;
use tokio::net::TcpStream;

/// The TLS client settings, made once: the trust store is read at first use. Without
/// any trusted root, https connections fail; nothing is ever accepted unverified.
fn tls_config() -> rustls::ClientConfig {
    static CONFIG: OnceLock<rustls::ClientConfig> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(ring::default_provider());
            let mut roots = rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::warn!(error = %e, "reading trusted root certificates");
            }
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                tracing::warn!("no trusted root certificates found: https requests will fail");
            }
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("ring supports the default protocol versions")
                .with_root_certificates(roots)
                .with_no_client_auth()
        })
        .clone()
}

/// An http/https connector with TCP_NODELAY and a TCP connect timeout (callers bound
/// whole requests, TLS handshake included, with their own timeouts), through the proxy the
/// environment names for the destination (read once).
pub(crate) fn connector(connect_timeout: Duration) -> HttpsConnector<ProxyConnector> {
    static PROXIES: OnceLock<Arc<Matcher>> = OnceLock::new();
    let proxies = PROXIES.get_or_init(|| Arc::new(Matcher::from_env()));
    connector_with(connect_timeout, Arc::clone(proxies))
}

fn connector_with(
    connect_timeout: Duration,
    proxies: Arc<Matcher>,
) -> HttpsConnector<ProxyConnector> {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    http.enforce_http(false);
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls_config())
        .https_or_http()
        .enable_http1()
        .wrap_connector(ProxyConnector { http, proxies })
}

/// TCP connections, direct or through a `CONNECT` tunnel when a proxy intercepts the
/// destination.
#[derive(Clone)]
pub(crate) struct ProxyConnector {
    http: HttpConnector,
    proxies: Arc<Matcher>,
}

type BoxError = Box<dyn StdError + Send + Sync>;

impl tower_service::Service<Uri> for ProxyConnector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let Some(proxy) = self.proxies.intercept(&dst) else {
            let connecting = self.http.call(dst);
            return Box::pin(async move { connecting.await.map_err(Into::into) });
        };
        let mut tunnel = Tunnel::new(proxy.uri().clone(), self.http.clone());
        if let Some(auth) = proxy.basic_auth() {
            tunnel = tunnel.with_auth(auth.clone());
        }
        // The tunnel's CONNECT names host:port; a URL without a port has its scheme's.
        let target = match (dst.port_u16(), dst.host()) {
            (Some(_), _) | (None, None) => Ok(dst),
            (None, Some(host)) => {
                let port = if dst.scheme_str() == Some("https") {
                    443
                } else {
                    80
                };
                let authority = if host.contains(':') && !host.starts_with('[') {
                    format!("[{host}]:{port}")
                } else {
                    format!("{host}:{port}")
                };
                Uri::builder()
                    .scheme(dst.scheme_str().unwrap_or("http"))
                    .authority(authority)
                    .path_and_query("/")
                    .build()
            }
        };
        Box::pin(async move {
            let target = target?;
            std::future::poll_fn(|cx| tunnel.poll_ready(cx)).await?;
            Ok(tunnel.call(target).await?)
        })
    }
}

/// An error and its causes, joined with `: ` (a TLS failure shows its reason).
pub(crate) fn error_chain(e: &(dyn StdError + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Empty};
    use hyper::body::Bytes;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A one-connection origin answering `hello`, and a one-connection CONNECT proxy that
    /// records the request line it got and splices to the origin.
    async fn origin_and_proxy() -> (u16, u16, tokio::task::JoinHandle<String>) {
        let origin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin_port = origin.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = origin.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await.unwrap();
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello")
                .await
                .unwrap();
        });
        let proxy = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy_port = proxy.local_addr().unwrap().port();
        let seen = tokio::spawn(async move {
            let (mut s, _) = proxy.accept().await.unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                s.read_exact(&mut byte).await.unwrap();
                head.push(byte[0]);
            }
            let head = String::from_utf8(head).unwrap();
            let target = head.split(' ').nth(1).unwrap().to_string();
            let mut upstream = TcpStream::connect(target).await.unwrap();
            s.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .await
                .unwrap();
            let _ = tokio::io::copy_bidirectional(&mut s, &mut upstream).await;
            head
        });
        (origin_port, proxy_port, seen)
    }

    async fn get(proxies: Matcher, url: String) -> String {
        let client = Client::builder(TokioExecutor::new())
            .build::<_, Empty<Bytes>>(connector_with(Duration::from_secs(2), Arc::new(proxies)));
        let response = client.get(url.parse().unwrap()).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn http_proxy_tunnels_and_no_proxy_bypasses() {
        let (origin, proxy, seen) = origin_and_proxy().await;
        let proxies = Matcher::builder()
            .http(format!("http://user:pw@127.0.0.1:{proxy}"))
            .build();
        let body = get(proxies, format!("http://127.0.0.1:{origin}/keys")).await;
        assert_eq!(body, "hello");
        let head = tokio::time::timeout(Duration::from_secs(5), seen)
            .await
            .expect("the proxy was used")
            .unwrap();
        assert!(
            head.starts_with(&format!("CONNECT 127.0.0.1:{origin} HTTP/1.1\r\n")),
            "{head}"
        );
        // user:pw, base64.
        assert!(head.contains("dXNlcjpwdw=="), "{head}");

        // NO_PROXY: the origin is reached directly (the proxy is never called).
        let (origin, proxy, seen) = origin_and_proxy().await;
        let proxies = Matcher::builder()
            .http(format!("http://127.0.0.1:{proxy}"))
            .no("127.0.0.1")
            .build();
        assert_eq!(
            get(proxies, format!("http://127.0.0.1:{origin}/")).await,
            "hello"
        );
        assert!(!seen.is_finished());
        seen.abort();
    }
}
