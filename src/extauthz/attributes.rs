//! Resource attributes fetched over HTTP from the backend (e.g. the owner of a
//! document), with a timeout, a TTL cache and request coalescing: concurrent checks
//! for the same URL share one fetch. Any failure is an error, and the caller denies.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::OnceCell;

use crate::cel::{MapValue, Value, from_json};
use crate::telemetry::TraceContext;

/// Largest attribute document accepted.
const MAX_BODY: usize = 1024 * 1024;
/// Most URLs kept in the cache.
const MAX_ENTRIES: usize = 10_000;

/// Why attributes could not be fetched.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum FetchError {
    /// The URL is not a valid `http://` URL.
    #[error("invalid attribute source URL {0:?}")]
    BadUrl(String),
    /// No answer in time.
    #[error("attribute source timed out after {0} ms")]
    Timeout(u64),
    /// Connection or protocol failure.
    #[error("attribute source unreachable: {0}")]
    Unreachable(String),
    /// The source answered with a non-success status.
    #[error("attribute source answered HTTP {0}")]
    Status(u16),
    /// The answer is not a JSON object.
    #[error("attribute source answered something other than a JSON object")]
    NotAnObject,
}

type Outcome = Result<Arc<MapValue>, FetchError>;

/// Where an answer came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum Provenance {
    /// This call asked the source.
    Fetched,
    /// A cached answer, or a fetch already in flight for another check.
    Shared,
}

struct Slot {
    cell: OnceCell<Outcome>,
    created: Instant,
}

/// Fetches and caches attribute documents.
pub(crate) struct AttributeFetcher {
    client: Client<HttpsConnector<crate::http_client::ProxyConnector>, Empty<Bytes>>,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
}

impl std::fmt::Debug for AttributeFetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttributeFetcher").finish_non_exhaustive()
    }
}

impl Default for AttributeFetcher {
    fn default() -> Self {
        Self::new()
    }
}

impl AttributeFetcher {
    /// A fetcher with its own connection pool.
    pub(crate) fn new() -> Self {
        AttributeFetcher {
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(crate::http_client::connector(Duration::from_secs(2))),
            slots: Mutex::new(HashMap::new()),
        }
    }

    #[cfg(test)]
    /// Fetches `url` (or reuses a fresh cached answer, or joins a fetch in flight).
    async fn fetch(&self, url: &str, timeout: Duration, ttl: Duration) -> Outcome {
        self.fetch_with_provenance(url, timeout, ttl, None).await.0
    }

    /// [`fetch`](Self::fetch), also telling whether this call asked the source. The
    /// `trace` context is sent along (`traceparent`, `tracestate`) when this call is the
    /// one that asks.
    pub(crate) async fn fetch_with_provenance(
        &self,
        url: &str,
        timeout: Duration,
        ttl: Duration,
        trace: Option<&TraceContext>,
    ) -> (Outcome, Provenance) {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let fresh = slots.get(url).filter(|s| {
                // A slot still being filled is always joined; a filled one only while fresh.
                s.cell.get().is_none() || now.duration_since(s.created) < ttl
            });
            match fresh {
                Some(s) => s.clone(),
                None => {
                    if slots.len() >= MAX_ENTRIES {
                        slots.retain(|_, s| {
                            s.cell.get().is_none() || now.duration_since(s.created) < ttl
                        });
                        if slots.len() >= MAX_ENTRIES {
                            slots.clear();
                        }
                    }
                    let s = Arc::new(Slot {
                        cell: OnceCell::new(),
                        created: now,
                    });
                    slots.insert(url.to_string(), s.clone());
                    s
                }
            }
        };
        let mut provenance = Provenance::Shared;
        let outcome = slot
            .cell
            .get_or_init(|| {
                provenance = Provenance::Fetched;
                self.fetch_now(url, timeout, trace)
            })
            .await
            .clone();
        if outcome.is_err() || ttl.is_zero() {
            // Failures are never reused; uncached answers only served the requests in flight.
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            if slots.get(url).is_some_and(|s| Arc::ptr_eq(s, &slot)) {
                slots.remove(url);
            }
        }
        (outcome, provenance)
    }

    async fn fetch_now(
        &self,
        url: &str,
        timeout: Duration,
        trace: Option<&TraceContext>,
    ) -> Outcome {
        let uri: hyper::Uri = url
            .parse()
            .map_err(|_| FetchError::BadUrl(url.to_string()))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.authority().is_none() {
            return Err(FetchError::BadUrl(url.to_string()));
        }
        let request = || {
            let mut request = hyper::Request::get(uri.clone()).header("accept", "application/json");
            if let Some(t) = trace {
                request = request.header("traceparent", t.traceparent());
                if let Some(state) = &t.trace_state {
                    request = request.header("tracestate", state.as_str());
                }
            }
            request
                .body(Empty::new())
                .map_err(|_| FetchError::BadUrl(url.to_string()))
        };
        let work = async {
            let response = match self.client.request(request()?).await {
                // A pooled keep-alive connection the source closed just as it was reused
                // (uvicorn closes idle ones after 5 s): the GET never reached the app, so
                // it is sent once more, on a new connection (found by the soak test).
                Err(e) if closed_before_answer(&e) => self.client.request(request()?).await,
                other => other,
            }
            .map_err(|e| FetchError::Unreachable(crate::http_client::error_chain(&e)))?;
            let status = response.status();
            if !status.is_success() {
                return Err(FetchError::Status(status.as_u16()));
            }
            let body = Limited::new(response.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| FetchError::Unreachable(crate::http_client::error_chain(e.as_ref())))?
                .to_bytes();
            let json: serde_json::Value =
                serde_json::from_slice(&body).map_err(|_| FetchError::NotAnObject)?;
            match from_json(&json) {
                Value::Map(m) => Ok(m),
                _ => Err(FetchError::NotAnObject),
            }
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(FetchError::Timeout(timeout.as_millis() as u64)),
        }
    }
}

/// Whether the connection ended before any byte of an answer came (a reused connection
/// closed by the server): the request may be sent again.
fn closed_before_answer(e: &hyper_util::client::legacy::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(h) = s.downcast_ref::<hyper::Error>() {
            return h.is_incomplete_message();
        }
        source = s.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A one-route HTTP server answering `body` with `status`, counting requests.
    async fn server(
        status: u16,
        body: &'static str,
        delay: Duration,
    ) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let counter = counter.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 2048];
                    let _ = sock.read(&mut buf).await;
                    counter.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(delay).await;
                    let resp = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(resp.as_bytes()).await;
                });
            }
        });
        (format!("http://{addr}/attrs"), hits)
    }

    #[tokio::test]
    async fn issue_12_a_keep_alive_connection_closed_on_reuse_is_retried() {
        // Each connection answers its first request (keeping the connection open), then
        // reads the next request and closes without answering: what a server whose
        // keep-alive timeout fires as the pooled connection is reused looks like.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 2048];
                    let _ = sock.read(&mut buf).await;
                    let body = r#"{"owner":"alice"}"#;
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(resp.as_bytes()).await;
                    let _ = sock.read(&mut buf).await;
                });
            }
        });
        let url = format!("http://{addr}/attrs");
        let f = AttributeFetcher::new();
        let t = Duration::from_secs(2);
        for _ in 0..3 {
            let got = f.fetch(&url, t, Duration::ZERO).await;
            assert!(got.is_ok(), "{got:?}");
        }
        assert!(connections.load(Ordering::SeqCst) >= 3);
    }

    #[tokio::test]
    async fn caches_and_coalesces() {
        let (url, hits) = server(200, r#"{"owner":"alice"}"#, Duration::from_millis(50)).await;
        let f = Arc::new(AttributeFetcher::new());
        let ttl = Duration::from_secs(60);
        let t = Duration::from_secs(2);
        let (a, b) = tokio::join!(f.fetch(&url, t, ttl), f.fetch(&url, t, ttl));
        assert!(a.unwrap().get_str("owner").is_some());
        assert!(b.is_ok());
        let (again, provenance) = f.fetch_with_provenance(&url, t, ttl, None).await;
        assert!(again.is_ok());
        assert_eq!(provenance, Provenance::Shared);
        assert_eq!(hits.load(Ordering::SeqCst), 1, "one fetch for three checks");
        let (_, provenance) = f.fetch_with_provenance(&url, t, Duration::ZERO, None).await;
        assert_eq!(
            provenance,
            Provenance::Fetched,
            "an expired answer is refetched"
        );
    }

    #[tokio::test]
    async fn failures_are_errors_and_not_cached() {
        let (url, hits) = server(404, "{}", Duration::ZERO).await;
        let f = AttributeFetcher::new();
        let ttl = Duration::from_secs(60);
        let t = Duration::from_secs(2);
        assert_eq!(
            f.fetch(&url, t, ttl).await.err(),
            Some(FetchError::Status(404))
        );
        assert_eq!(
            f.fetch(&url, t, ttl).await.err(),
            Some(FetchError::Status(404))
        );
        assert_eq!(hits.load(Ordering::SeqCst), 2);

        let (slow, _) = server(200, "{}", Duration::from_secs(5)).await;
        assert_eq!(
            f.fetch(&slow, Duration::from_millis(100), ttl).await.err(),
            Some(FetchError::Timeout(100))
        );

        let (list, _) = server(200, "[1]", Duration::ZERO).await;
        assert_eq!(
            f.fetch(&list, t, ttl).await.err(),
            Some(FetchError::NotAnObject)
        );

        assert!(matches!(
            f.fetch("http://127.0.0.1:1/x", t, ttl).await,
            Err(FetchError::Unreachable(_))
        ));
        assert!(matches!(
            f.fetch("ftp://example.test/x", t, ttl).await,
            Err(FetchError::BadUrl(_))
        ));
    }
}
