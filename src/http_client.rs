//! The one outbound HTTP connector: `https://` verified against the system's trust
//! store (`SSL_CERT_FILE` and `SSL_CERT_DIR` are honoured) and plain `http://`. Used
//! for JWKS key sets, attribute sources and OTLP export.

use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;

/// An http/https connector with TCP_NODELAY and a connect timeout. Without any trusted
/// root certificate, https connections fail; nothing is ever accepted unverified.
pub(crate) fn connector(connect_timeout: Duration) -> HttpsConnector<HttpConnector> {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    http.enforce_http(false);
    let builder = match hyper_rustls::HttpsConnectorBuilder::new().with_native_roots() {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "no trusted root certificates found: https requests will fail");
            let empty = rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(empty)
        }
    };
    builder.https_or_http().enable_http1().wrap_connector(http)
}
