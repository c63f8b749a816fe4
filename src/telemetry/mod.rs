//! OpenTelemetry traces: one server span per decision (ext_authz `Check`, Cerbos API
//! `CheckResources`) that continues the caller's W3C `traceparent`, a client span per
//! attribute-source fetch (which passes the trace on), exported in batches over
//! OTLP/HTTP (protobuf). Off by default; when off, a [`Tracer`] is a `None` and costs a
//! branch.
//!
//! ```yaml
//! tracing:
//!   otlp:
//!     endpoint: http://127.0.0.1:4318   # spans are POSTed to <endpoint>/v1/traces
//!     serviceName: gatehouse
//!     sampleRatio: 1.0                   # traces started here (no traceparent)
//!     headers: {}                        # sent with every export
//! ```
//!
//! The standard variables work too: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is),
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (`/v1/traces` appended), `OTEL_SERVICE_NAME`, and
//! `OTEL_SDK_DISABLED=true`.

mod context;
mod export;
mod sinks;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

pub(crate) use context::random_u64;
pub use context::{TraceContext, hex};
pub use sinks::Sinks;

use crate::metrics::Metrics;

/// Generated OTLP messages (`proto/opentelemetry`).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    /// `opentelemetry.proto.*`.
    pub mod opentelemetry {
        /// `opentelemetry.proto`.
        pub mod proto {
            /// `opentelemetry.proto.common.v1`.
            pub mod common {
                /// Version 1.
                pub mod v1 {
                    include!("../generated/opentelemetry.proto.common.v1.rs");
                }
            }
            /// `opentelemetry.proto.resource.v1`.
            pub mod resource {
                /// Version 1.
                pub mod v1 {
                    include!("../generated/opentelemetry.proto.resource.v1.rs");
                }
            }
            /// `opentelemetry.proto.trace.v1`.
            pub mod trace {
                /// Version 1.
                pub mod v1 {
                    include!("../generated/opentelemetry.proto.trace.v1.rs");
                }
            }
            /// `opentelemetry.proto.collector.*`.
            pub mod collector {
                /// `opentelemetry.proto.collector.trace`.
                pub mod trace {
                    /// Version 1.
                    pub mod v1 {
                        include!("../generated/opentelemetry.proto.collector.trace.v1.rs");
                    }
                }
            }
        }
    }
}

/// A tracing configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("tracing: {0}")]
pub(crate) struct TelemetryError(pub String);

/// The `tracing` section of `gatehouse.yaml`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct TracingConfig {
    /// Export spans over OTLP/HTTP; absent means off (unless the `OTEL_*` variables say
    /// otherwise).
    #[serde(default)]
    otlp: Option<OtlpConfig>,
}

/// `tracing.otlp`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct OtlpConfig {
    /// Collector base URL (`http://host:4318` or `https://...`); a URL with a path is
    /// used as is.
    pub(crate) endpoint: String,
    /// `service.name` of the spans.
    #[serde(default = "default_service_name")]
    pub(crate) service_name: String,
    /// Fraction of new traces (requests without a `traceparent`) that are recorded. A
    /// request with a `traceparent` follows its sampled flag.
    #[serde(default = "default_ratio")]
    sample_ratio: f64,
    /// Headers sent with every export (for example a collector's API key).
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// Bound on one export request, milliseconds.
    #[serde(default = "default_timeout")]
    timeout_ms: u64,
    /// Spans waiting for export; when full, new spans are dropped and counted.
    #[serde(default = "default_queue")]
    queue_capacity: usize,
    /// Most spans in one export request.
    #[serde(default = "default_batch")]
    batch_size: usize,
    /// Longest a span waits before its batch is sent, milliseconds.
    #[serde(default = "default_interval")]
    export_interval_ms: u64,
}

fn default_service_name() -> String {
    "gatehouse".into()
}
fn default_ratio() -> f64 {
    1.0
}
fn default_timeout() -> u64 {
    5_000
}
fn default_queue() -> usize {
    2_048
}
fn default_batch() -> usize {
    512
}
fn default_interval() -> u64 {
    1_000
}

impl OtlpConfig {
    /// Defaults for `endpoint`.
    pub(crate) fn with_endpoint(endpoint: impl Into<String>) -> OtlpConfig {
        OtlpConfig {
            endpoint: endpoint.into(),
            service_name: default_service_name(),
            sample_ratio: default_ratio(),
            headers: BTreeMap::new(),
            timeout_ms: default_timeout(),
            queue_capacity: default_queue(),
            batch_size: default_batch(),
            export_interval_ms: default_interval(),
        }
    }
}

impl TracingConfig {
    /// The OTLP settings in force: the configuration file's, adjusted by the standard
    /// `OTEL_*` variables read through `env`.
    pub(crate) fn resolve(&self, env: impl Fn(&str) -> Option<String>) -> Option<OtlpConfig> {
        if env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return None;
        }
        let from_env = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .filter(|v| !v.is_empty())
            .or_else(|| {
                env("OTEL_EXPORTER_OTLP_ENDPOINT")
                    .filter(|v| !v.is_empty())
                    .map(|base| format!("{}/v1/traces", base.trim_end_matches('/')))
            });
        // An endpoint from the environment takes its headers from the environment too:
        // the file's headers (an API key, say) never follow it to another collector.
        let env_headers = || {
            env("OTEL_EXPORTER_OTLP_TRACES_HEADERS")
                .or_else(|| env("OTEL_EXPORTER_OTLP_HEADERS"))
                .map(|h| parse_headers(&h))
                .unwrap_or_default()
        };
        let mut config = match (&self.otlp, from_env) {
            (Some(c), Some(url)) => OtlpConfig {
                endpoint: url,
                headers: env_headers(),
                ..c.clone()
            },
            (Some(c), None) => c.clone(),
            (None, Some(url)) => OtlpConfig {
                headers: env_headers(),
                ..OtlpConfig::with_endpoint(url)
            },
            (None, None) => return None,
        };
        if let Some(name) = env("OTEL_SERVICE_NAME").filter(|v| !v.is_empty()) {
            config.service_name = name;
        }
        Some(config)
    }
}

/// `OTEL_EXPORTER_OTLP_HEADERS`: `key=value` pairs separated by commas, each key and value
/// URL-decoded as the OpenTelemetry specification says (`api-key=a%20b` is `a b`). A pair
/// that does not decode, or decodes to control characters, is left out (as the Go SDK
/// leaves out what it cannot unescape).
fn parse_headers(text: &str) -> BTreeMap<String, String> {
    text.split(',')
        .filter_map(|pair| pair.split_once('='))
        .filter_map(|(k, v)| Some((url_decode(k)?, url_decode(v)?)))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

/// Go's `url.PathUnescape` (`%XX` escapes; `+` stays `+`), refusing malformed escapes,
/// invalid UTF-8 and control characters other than tab.
fn url_decode(s: &str) -> Option<String> {
    crate::percent::decode(s)
        .ok()
        .filter(|v| !v.chars().any(|c| c.is_control() && c != '\t'))
}

/// What a span stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum SpanKind {
    /// Handling a request from a caller.
    Server,
    /// A request to another service.
    Client,
}

/// A span attribute value.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum AttrValue {
    /// A string.
    Str(String),
    /// An integer.
    Int(i64),
    /// A boolean.
    Bool(bool),
    /// A list of strings.
    StrList(Vec<String>),
}

impl From<&str> for AttrValue {
    fn from(s: &str) -> Self {
        AttrValue::Str(s.to_string())
    }
}
impl From<String> for AttrValue {
    fn from(s: String) -> Self {
        AttrValue::Str(s)
    }
}
impl From<i64> for AttrValue {
    fn from(v: i64) -> Self {
        AttrValue::Int(v)
    }
}
impl From<bool> for AttrValue {
    fn from(v: bool) -> Self {
        AttrValue::Bool(v)
    }
}
impl From<Vec<String>> for AttrValue {
    fn from(v: Vec<String>) -> Self {
        AttrValue::StrList(v)
    }
}

/// A span being recorded. Spans exist only when tracing is on and the trace is sampled.
#[derive(Clone, Debug)]
pub(crate) struct TraceSpan {
    /// This span's place in the trace (its id is the parent of child spans).
    pub(crate) context: TraceContext,
    parent_span_id: Option<[u8; 8]>,
    name: &'static str,
    kind: SpanKind,
    start_unix_nano: u64,
    end_unix_nano: u64,
    attributes: Vec<(&'static str, AttrValue)>,
    error: Option<String>,
}

/// Attributes kept per span at most; more are dropped.
const MAX_ATTRIBUTES: usize = 64;
/// Longest string attribute value kept, in bytes (longer ones are cut).
const MAX_VALUE_BYTES: usize = 256;
/// Most items kept of a list attribute.
const MAX_LIST_ITEMS: usize = 32;

fn cut(mut s: String) -> String {
    if s.len() > MAX_VALUE_BYTES {
        let mut end = MAX_VALUE_BYTES;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// A URL fit for a span: no user info, query or fragment (they may carry secrets).
pub(crate) fn redact_url(url: &str) -> String {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    let url = &url[..end];
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host_end = rest.find('/').unwrap_or(rest.len());
            let authority = &rest[..host_end];
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{scheme}://{host}{}", &rest[host_end..])
        }
        None => url.to_string(),
    }
}

fn now_unix_nano() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

impl TraceSpan {
    fn start(
        name: &'static str,
        kind: SpanKind,
        context: TraceContext,
        parent: Option<[u8; 8]>,
    ) -> TraceSpan {
        TraceSpan {
            context,
            parent_span_id: parent,
            name,
            kind,
            start_unix_nano: now_unix_nano(),
            end_unix_nano: 0,
            attributes: Vec::new(),
            error: None,
        }
    }

    /// Sets an attribute (a later value for the same key replaces the earlier one).
    /// Strings are cut at 256 bytes and lists at 32 items, so no request can make a
    /// span large.
    pub(crate) fn set(&mut self, key: &'static str, value: impl Into<AttrValue>) {
        let value = match value.into() {
            AttrValue::Str(s) => AttrValue::Str(cut(s)),
            AttrValue::StrList(v) => {
                AttrValue::StrList(v.into_iter().take(MAX_LIST_ITEMS).map(cut).collect())
            }
            other => other,
        };
        if let Some(slot) = self.attributes.iter_mut().find(|(k, _)| *k == key) {
            slot.1 = value;
        } else if self.attributes.len() < MAX_ATTRIBUTES {
            self.attributes.push((key, value));
        }
    }

    /// Marks the span as failed.
    pub(crate) fn set_error(&mut self, message: impl Into<String>) {
        self.error = Some(message.into());
    }

    /// A child span in the same trace, starting now.
    pub(crate) fn child(&self, name: &'static str, kind: SpanKind) -> TraceSpan {
        TraceSpan::start(name, kind, self.context.child(), Some(self.context.span_id))
    }

    #[cfg(test)]
    /// The attribute set under `key`.
    fn attribute(&self, key: &str) -> Option<&AttrValue> {
        self.attributes
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }
}

struct TracerInner {
    queue: tokio::sync::mpsc::Sender<TraceSpan>,
    sample_ratio: f64,
    metrics: Metrics,
    shutdown: tokio::sync::watch::Sender<bool>,
    exporter: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Starts spans and hands finished ones to the exporter. Cheap to clone; the default
/// is off.
#[derive(Clone, Default)]
pub struct Tracer {
    inner: Option<Arc<TracerInner>>,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer")
            .field("enabled", &self.is_enabled())
            .finish()
    }
}

impl Tracer {
    /// A tracer that records nothing.
    pub fn disabled() -> Tracer {
        Tracer { inner: None }
    }

    /// A tracer exporting to `config`'s collector, counting spans in `metrics`. Starts
    /// the exporter task: call inside a Tokio runtime.
    pub(crate) fn start(config: &OtlpConfig, metrics: Metrics) -> Result<Tracer, TelemetryError> {
        let exporter = export::Exporter::new(config)?;
        let (queue, rx) = tokio::sync::mpsc::channel(config.queue_capacity.max(1));
        let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(exporter.run(
            rx,
            shutdown_rx,
            config.batch_size.max(1),
            Duration::from_millis(config.export_interval_ms.max(1)),
            metrics.clone(),
        ));
        Ok(Tracer {
            inner: Some(Arc::new(TracerInner {
                queue,
                sample_ratio: config.sample_ratio.clamp(0.0, 1.0),
                metrics,
                shutdown,
                exporter: Mutex::new(Some(task)),
            })),
        })
    }

    /// Whether spans are recorded at all.
    pub(crate) fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Starts a span continuing `parent` (a remote caller's context), or a new trace
    /// when there is none. `None` when tracing is off or the trace is not sampled.
    pub(crate) fn start_span(
        &self,
        name: &'static str,
        kind: SpanKind,
        parent: Option<&TraceContext>,
    ) -> Option<TraceSpan> {
        let inner = self.inner.as_ref()?;
        let (context, parent_id) = match parent {
            Some(p) if !p.sampled => return None,
            Some(p) => (p.child(), Some(p.span_id)),
            None => {
                let keep = inner.sample_ratio >= 1.0
                    || (context::random_u64() as f64 / u64::MAX as f64) < inner.sample_ratio;
                if !keep {
                    return None;
                }
                (TraceContext::new_root(true), None)
            }
        };
        Some(TraceSpan::start(name, kind, context, parent_id))
    }

    /// Ends `span` now and queues it for export; never waits (a full queue drops it).
    pub(crate) fn end(&self, mut span: TraceSpan) {
        let Some(inner) = &self.inner else { return };
        span.end_unix_nano = now_unix_nano().max(span.start_unix_nano);
        if inner.queue.try_send(span).is_err() {
            inner
                .metrics
                .count_trace_spans(crate::metrics::SpanExport::Dropped, 1);
        }
    }

    /// Sends the spans still queued and stops the exporter, waiting at most `timeout`.
    async fn shutdown(&self, timeout: Duration) {
        let Some(inner) = &self.inner else { return };
        let _ = inner.shutdown.send(true);
        let task = inner
            .exporter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(task) = task {
            let _ = tokio::time::timeout(timeout, task).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_and_environment() {
        let none = |_: &str| None;
        assert!(TracingConfig::default().resolve(none).is_none());
        let c = TracingConfig {
            otlp: Some(OtlpConfig::with_endpoint("http://collector:4318")),
        };
        assert_eq!(c.resolve(none).unwrap().endpoint, "http://collector:4318");
        let env = |k: &str| match k {
            "OTEL_EXPORTER_OTLP_ENDPOINT" => Some("http://otel:4318/".to_string()),
            "OTEL_SERVICE_NAME" => Some("authz".to_string()),
            _ => None,
        };
        let r = TracingConfig::default().resolve(env).unwrap();
        assert_eq!(r.endpoint, "http://otel:4318/v1/traces");
        assert_eq!(r.service_name, "authz");
        let off = |k: &str| (k == "OTEL_SDK_DISABLED").then(|| "true".to_string());
        assert!(c.resolve(off).is_none());

        // The file's headers stay with the file's endpoint.
        let mut with_key = OtlpConfig::with_endpoint("https://saas.example");
        with_key.headers.insert("api-key".into(), "secret".into());
        let c = TracingConfig {
            otlp: Some(with_key),
        };
        assert_eq!(c.resolve(none).unwrap().headers["api-key"], "secret");
        let redirected = c.resolve(env).unwrap();
        assert_eq!(redirected.endpoint, "http://otel:4318/v1/traces");
        assert!(redirected.headers.is_empty(), "{:?}", redirected.headers);
        let with_env_headers = |k: &str| match k {
            "OTEL_EXPORTER_OTLP_ENDPOINT" => Some("http://otel:4318".to_string()),
            "OTEL_EXPORTER_OTLP_HEADERS" => Some("x-a=1, x-b = 2,bad".to_string()),
            _ => None,
        };
        let h = c.resolve(with_env_headers).unwrap().headers;
        assert_eq!(
            h.into_iter().collect::<Vec<_>>(),
            [("x-a".into(), "1".into()), ("x-b".into(), "2".into())]
        );
    }

    #[test]
    fn otlp_headers_are_url_decoded() {
        // `%+1` is not an escape (Go's unhex takes hex digits only), so `plus` is left out.
        let h = parse_headers("api-key=a%20b%3Dc,x%2Dy=1+2, bad=%zz,crlf=a%0D%0Ab,empty=,plus=%+1");
        assert_eq!(
            h.into_iter().collect::<Vec<_>>(),
            [
                ("api-key".into(), "a b=c".into()),
                ("empty".into(), "".into()),
                ("x-y".into(), "1+2".into()),
            ]
        );
    }

    #[test]
    fn disabled_tracer_records_nothing() {
        let t = Tracer::disabled();
        assert!(t.start_span("x", SpanKind::Server, None).is_none());
    }

    #[tokio::test]
    async fn sampling_follows_the_parent_and_the_ratio() {
        let mut config = OtlpConfig::with_endpoint("http://127.0.0.1:9");
        config.sample_ratio = 0.0;
        let t = Tracer::start(&config, Metrics::default()).unwrap();
        assert!(t.start_span("x", SpanKind::Server, None).is_none());
        let sampled = TraceContext::new_root(true);
        let span = t.start_span("x", SpanKind::Server, Some(&sampled)).unwrap();
        assert_eq!(span.context.trace_id, sampled.trace_id);
        assert_eq!(span.parent_span_id, Some(sampled.span_id));
        let child = span.child("y", SpanKind::Client);
        assert_eq!(child.parent_span_id, Some(span.context.span_id));
        let unsampled = TraceContext::new_root(false);
        assert!(
            t.start_span("x", SpanKind::Server, Some(&unsampled))
                .is_none()
        );
        t.shutdown(Duration::from_millis(10)).await;
    }

    #[test]
    fn urls_lose_their_secrets() {
        assert_eq!(
            redact_url("http://u:p@attrs:8000/docs/1?token=abc#x"),
            "http://attrs:8000/docs/1"
        );
        assert_eq!(redact_url("http://attrs/docs/1"), "http://attrs/docs/1");
    }

    #[test]
    fn long_values_are_cut() {
        let mut s = TraceSpan::start("x", SpanKind::Server, TraceContext::new_root(true), None);
        s.set("s", "é".repeat(300));
        let AttrValue::Str(v) = s.attribute("s").unwrap() else {
            panic!()
        };
        assert!(v.len() <= MAX_VALUE_BYTES && v.chars().all(|c| c == 'é'));
        s.set("l", vec!["r".to_string(); 100]);
        assert!(
            matches!(s.attribute("l"), Some(AttrValue::StrList(l)) if l.len() == MAX_LIST_ITEMS)
        );
    }

    #[test]
    fn attributes_replace_and_are_capped() {
        let mut s = TraceSpan::start("x", SpanKind::Server, TraceContext::new_root(true), None);
        s.set("a", "1");
        s.set("a", 2);
        assert_eq!(s.attribute("a"), Some(&AttrValue::Int(2)));
        let keys: Vec<&'static str> = (0..100)
            .map(|i| &*Box::leak(format!("k{i}").into_boxed_str()))
            .collect();
        for k in keys {
            s.set(k, true);
        }
        assert_eq!(s.attributes.len(), MAX_ATTRIBUTES);
    }
}
