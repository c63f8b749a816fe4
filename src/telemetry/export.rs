//! The OTLP/HTTP exporter: batches finished spans off the request path and POSTs them
//! as `ExportTraceServiceRequest` protobuf to the collector.

use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use prost::Message;
use tokio::sync::{mpsc, watch};

use super::pb::opentelemetry::proto::collector::trace::v1::ExportTraceServiceRequest;
use super::pb::opentelemetry::proto::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value,
};
use super::pb::opentelemetry::proto::resource::v1::Resource;
use super::pb::opentelemetry::proto::trace::v1::{ResourceSpans, ScopeSpans, Status, span, status};
use super::{AttrValue, OtlpConfig, SpanKind, TelemetryError, TraceSpan};
use crate::metrics::{Metrics, SpanExport};

/// Where and how spans are sent.
pub(super) struct Exporter {
    client: Client<HttpsConnector<crate::http_client::ProxyConnector>, Full<Bytes>>,
    uri: hyper::Uri,
    headers: Vec<(hyper::header::HeaderName, hyper::header::HeaderValue)>,
    resource: Resource,
    timeout: Duration,
}

fn kv(key: &str, value: AttrValue) -> KeyValue {
    let value = match value {
        AttrValue::Str(s) => any_value::Value::StringValue(s),
        AttrValue::Int(i) => any_value::Value::IntValue(i),
        AttrValue::Bool(b) => any_value::Value::BoolValue(b),
        AttrValue::StrList(v) => any_value::Value::ArrayValue(ArrayValue {
            values: v
                .into_iter()
                .map(|s| AnyValue {
                    value: Some(any_value::Value::StringValue(s)),
                })
                .collect(),
        }),
    };
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
    }
}

/// The collector URL: a base URL gets `/v1/traces`; a URL with a path is used as is.
fn traces_uri(endpoint: &str) -> Result<hyper::Uri, TelemetryError> {
    let uri: hyper::Uri = endpoint
        .parse()
        .map_err(|_| TelemetryError(format!("endpoint {endpoint:?} is not a URL")))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {}
        _ => {
            return Err(TelemetryError(format!(
                "endpoint {endpoint:?} must be an http:// or https:// URL"
            )));
        }
    }
    if uri.authority().is_none() {
        return Err(TelemetryError(format!("endpoint {endpoint:?} has no host")));
    }
    if matches!(uri.path(), "" | "/") {
        format!("{}/v1/traces", endpoint.trim_end_matches('/'))
            .parse()
            .map_err(|_| TelemetryError(format!("endpoint {endpoint:?} is not a URL")))
    } else {
        Ok(uri)
    }
}

impl Exporter {
    pub(super) fn new(config: &OtlpConfig) -> Result<Exporter, TelemetryError> {
        let uri = traces_uri(&config.endpoint)?;
        let headers = config
            .headers
            .iter()
            .map(|(k, v)| {
                let name = hyper::header::HeaderName::try_from(k.as_str())
                    .map_err(|_| TelemetryError(format!("header name {k:?} is not valid")))?;
                let value = hyper::header::HeaderValue::try_from(v.as_str())
                    .map_err(|_| TelemetryError(format!("header {k:?} has an invalid value")))?;
                Ok((name, value))
            })
            .collect::<Result<Vec<_>, TelemetryError>>()?;
        Ok(Exporter {
            client: Client::builder(TokioExecutor::new())
                .build(crate::http_client::connector(Duration::from_secs(2))),
            uri,
            headers,
            resource: Resource {
                attributes: vec![
                    kv("service.name", AttrValue::Str(config.service_name.clone())),
                    kv(
                        "service.version",
                        AttrValue::Str(env!("CARGO_PKG_VERSION").to_string()),
                    ),
                    kv("telemetry.sdk.name", AttrValue::Str("gatehouse".into())),
                    kv("telemetry.sdk.language", AttrValue::Str("rust".into())),
                ],
                dropped_attributes_count: 0,
            },
            timeout: Duration::from_millis(config.timeout_ms.max(1)),
        })
    }

    /// Collects spans into batches (up to `batch_size`, or whatever arrived within
    /// `interval` of the first) and exports each; on shutdown, exports what is queued
    /// and returns.
    pub(super) async fn run(
        self,
        mut rx: mpsc::Receiver<TraceSpan>,
        mut shutdown: watch::Receiver<bool>,
        batch_size: usize,
        interval: Duration,
        metrics: Metrics,
    ) {
        let mut batch = Vec::with_capacity(batch_size);
        loop {
            let first = tokio::select! {
                s = rx.recv() => s,
                _ = shutdown.wait_for(|v| *v) => None,
            };
            let Some(first) = first else { break };
            batch.push(first);
            let deadline = tokio::time::Instant::now() + interval;
            while batch.len() < batch_size {
                tokio::select! {
                    s = rx.recv() => match s {
                        Some(s) => batch.push(s),
                        None => break,
                    },
                    _ = tokio::time::sleep_until(deadline) => break,
                    _ = shutdown.wait_for(|v| *v) => break,
                }
            }
            self.export(std::mem::take(&mut batch), &metrics).await;
        }
        while let Ok(s) = rx.try_recv() {
            batch.push(s);
            if batch.len() == batch_size {
                self.export(std::mem::take(&mut batch), &metrics).await;
            }
        }
        if !batch.is_empty() {
            self.export(batch, &metrics).await;
        }
    }

    async fn export(&self, spans: Vec<TraceSpan>, metrics: &Metrics) {
        let n = spans.len() as u64;
        let body = self.encode(spans);
        let mut request = hyper::Request::post(self.uri.clone())
            .header("content-type", "application/x-protobuf")
            .body(Full::new(Bytes::from(body)))
            .expect("a request from a checked URI");
        for (k, v) in &self.headers {
            request.headers_mut().insert(k.clone(), v.clone());
        }
        let sent = tokio::time::timeout(self.timeout, self.client.request(request)).await;
        match sent {
            Ok(Ok(resp)) if resp.status().is_success() => {
                metrics.count_trace_spans(SpanExport::Exported, n);
            }
            Ok(Ok(resp)) => {
                tracing::warn!(
                    status = resp.status().as_u16(),
                    spans = n,
                    "OTLP export refused"
                );
                metrics.count_trace_spans(SpanExport::Failed, n);
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, spans = n, "OTLP export failed");
                metrics.count_trace_spans(SpanExport::Failed, n);
            }
            Err(_) => {
                tracing::warn!(timeout = ?self.timeout, spans = n, "OTLP export timed out");
                metrics.count_trace_spans(SpanExport::Failed, n);
            }
        }
    }

    fn encode(&self, spans: Vec<TraceSpan>) -> Vec<u8> {
        let spans = spans.into_iter().map(to_proto).collect();
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(self.resource.clone()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "gatehouse".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    spans,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
        .encode_to_vec()
    }
}

fn to_proto(s: TraceSpan) -> super::pb::opentelemetry::proto::trace::v1::Span {
    let kind = match s.kind {
        SpanKind::Server => span::SpanKind::Server,
        SpanKind::Client => span::SpanKind::Client,
    };
    super::pb::opentelemetry::proto::trace::v1::Span {
        trace_id: s.context.trace_id.to_vec(),
        span_id: s.context.span_id.to_vec(),
        trace_state: s.context.trace_state.clone().unwrap_or_default(),
        parent_span_id: s.parent_span_id.map(|p| p.to_vec()).unwrap_or_default(),
        // The W3C trace flags (bit 0: sampled).
        flags: u32::from(s.context.sampled),
        name: s.name.to_string(),
        kind: kind as i32,
        start_time_unix_nano: s.start_unix_nano,
        end_time_unix_nano: s.end_unix_nano,
        attributes: s.attributes.into_iter().map(|(k, v)| kv(k, v)).collect(),
        status: Some(match s.error {
            Some(message) => Status {
                message,
                code: status::StatusCode::Error as i32,
            },
            None => Status::default(),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(
            traces_uri("http://127.0.0.1:4318").unwrap().to_string(),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            traces_uri("http://c:4318/").unwrap().to_string(),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            traces_uri("http://c/custom/traces").unwrap().path(),
            "/custom/traces"
        );
        assert_eq!(
            traces_uri("https://otlp.example:4318").unwrap().to_string(),
            "https://otlp.example:4318/v1/traces"
        );
        assert!(traces_uri("ftp://c:4318").is_err());
        assert!(traces_uri("c:4318").is_err());
        assert!(traces_uri("not a url").is_err());
    }
}
