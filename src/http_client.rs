//! The one outbound HTTP connector: `https://` verified against the system's trust
//! store and plain `http://`. Used for JWKS key sets, attribute sources and OTLP export.
//!
//! The trust store is the system's (`/etc/ssl/certs` and the like). As with OpenSSL,
//! `SSL_CERT_FILE` or `SSL_CERT_DIR` *replace* it: to trust a private CA as well, point
//! `SSL_CERT_FILE` at the system bundle with the CA appended.

use std::error::Error as StdError;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::crypto::ring;

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
/// whole requests, TLS handshake included, with their own timeouts).
pub(crate) fn connector(connect_timeout: Duration) -> HttpsConnector<HttpConnector> {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    http.enforce_http(false);
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls_config())
        .https_or_http()
        .enable_http1()
        .wrap_connector(http)
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
