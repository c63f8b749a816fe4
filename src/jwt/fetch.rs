//! GET of a JWKS document over https (the system's trust store, see
//! [`crate::http_client`]) or plain http.

use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::Uri;
use hyper::body::Bytes;
use hyper::header::{ACCEPT, USER_AGENT};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// The HTTP client used for key-set fetches.
pub(crate) type HttpClient =
    Client<HttpsConnector<crate::http_client::ProxyConnector>, Empty<Bytes>>;

/// Largest accepted key-set document.
pub(crate) const MAX_KEY_SET_BYTES: usize = 1 << 20;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A client for `https://` URLs, verified against the system's trust store, and plain
/// `http://` ones.
pub(crate) fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build(crate::http_client::connector(CONNECT_TIMEOUT))
}

/// Checks that `url` can be fetched: an absolute `https://` or `http://` URL.
pub(crate) fn check_url(url: &str) -> Result<Uri, String> {
    let uri: Uri = url.parse().map_err(|e| format!("invalid URL: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.authority().is_some() => Ok(uri),
        Some("http" | "https") => Err("invalid URL: no host".to_string()),
        Some(other) => Err(format!("unsupported URL scheme {other:?}")),
        None => Err("invalid URL: not absolute".to_string()),
    }
}

/// GETs `uri` and returns the body as text, or why that failed.
pub(crate) async fn get_text(client: &HttpClient, uri: &Uri) -> Result<String, String> {
    match tokio::time::timeout(REQUEST_TIMEOUT, get(client, uri)).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {}s", REQUEST_TIMEOUT.as_secs())),
    }
}

async fn get(client: &HttpClient, uri: &Uri) -> Result<String, String> {
    let request = hyper::Request::get(uri.clone())
        .header(ACCEPT, "application/jwk-set+json, application/json")
        .header(USER_AGENT, concat!("gatehouse/", env!("CARGO_PKG_VERSION")))
        .body(Empty::new())
        .map_err(|e| format!("invalid request: {e}"))?;
    let response = client
        .request(request)
        .await
        .map_err(|e| format!("request failed: {}", crate::http_client::error_chain(&e)))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("unexpected HTTP status {status}"));
    }
    let body = Limited::new(response.into_body(), MAX_KEY_SET_BYTES)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                format!("response is larger than {MAX_KEY_SET_BYTES} bytes")
            } else {
                format!(
                    "reading the response failed: {}",
                    crate::http_client::error_chain(e.as_ref())
                )
            }
        })?
        .to_bytes();
    String::from_utf8(body.to_vec()).map_err(|_| "response is not UTF-8 text".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(check_url("http://127.0.0.1:8080/jwks.json").is_ok());
        assert!(check_url("https://idp.example/.well-known/jwks.json").is_ok());
        assert!(check_url("https://").is_err());
        assert!(check_url("ftp://x/y").unwrap_err().contains("scheme"));
        assert!(check_url("/relative").unwrap_err().contains("not absolute"));
        assert!(check_url("http://").is_err());
        assert!(check_url("not a url at all").is_err());
    }

    #[tokio::test]
    async fn connection_refused_is_reported() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let uri = check_url(&format!("http://{addr}/jwks")).unwrap();
        let err = get_text(&client(), &uri).await.unwrap_err();
        assert!(err.starts_with("request failed"), "{err}");
    }
}
