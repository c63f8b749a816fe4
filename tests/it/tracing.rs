//! OpenTelemetry spans from a running `gatehouse serve`, received by a fake OTLP/HTTP
//! collector: each decision is a server span continuing the caller's `traceparent`, an
//! attribute fetch is a child span that passes the trace on, unsampled traces are not
//! recorded (but still passed on), and queued spans are flushed at shutdown.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gatehouse::extauthz::pb::envoy::service::auth::v3::CheckRequest;
use gatehouse::extauthz::pb::envoy::service::auth::v3::check_response::HttpResponse;
use gatehouse::telemetry::hex;
use gatehouse::telemetry::pb::opentelemetry::proto::collector::trace::v1::ExportTraceServiceRequest;
use gatehouse::telemetry::pb::opentelemetry::proto::common::v1::{KeyValue, any_value};
use gatehouse::telemetry::pb::opentelemetry::proto::trace::v1::Span;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::util::{Served, get_request, http, http_with_headers, within};

const POLICY: &str = "apiVersion: api.cerbos.dev/v1\nresourcePolicy:\n  resource: doc\n  version: default\n  rules:\n    - actions: [read]\n      effect: EFFECT_ALLOW\n      roles: [user]\n";

/// What one HTTP request to a fake server carried.
#[derive(Clone, Debug)]
struct Received {
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

type Log = Arc<Mutex<Vec<Received>>>;

/// A fake HTTP server on 127.0.0.1 recording every request and answering `answer`.
async fn recorder(answer: &'static str) -> (SocketAddr, Log) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log: Log = Arc::default();
    let seen = log.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                loop {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 8192];
                    let head_end = loop {
                        let Ok(n) = sock.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                    let mut lines = head.lines();
                    let path = lines
                        .next()
                        .and_then(|l| l.split_whitespace().nth(1))
                        .unwrap_or("")
                        .to_string();
                    let headers: HashMap<String, String> = lines
                        .filter_map(|l| l.split_once(':'))
                        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                        .collect();
                    let len: usize = headers
                        .get("content-length")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    let mut body = buf[head_end..].to_vec();
                    while body.len() < len {
                        let Ok(n) = sock.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        body.extend_from_slice(&chunk[..n]);
                    }
                    seen.lock().unwrap().push(Received {
                        path,
                        headers,
                        body,
                    });
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
                        answer.len()
                    );
                    if sock.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, log)
}

/// Every span the collector has received so far, with its resource's `service.name`.
fn spans(collector: &Log) -> Vec<(String, Span)> {
    let mut out = Vec::new();
    for r in collector.lock().unwrap().iter() {
        assert_eq!(r.path, "/v1/traces");
        assert_eq!(r.headers["content-type"], "application/x-protobuf");
        assert_eq!(r.headers["x-collector-key"], "k1");
        let req = ExportTraceServiceRequest::decode(r.body.as_slice()).unwrap();
        for rs in req.resource_spans {
            let service = rs
                .resource
                .as_ref()
                .and_then(|res| attr(&res.attributes, "service.name"))
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for s in ss.spans {
                    out.push((service.clone(), s));
                }
            }
        }
    }
    out
}

fn attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    let v = attrs.iter().find(|kv| kv.key == key)?.value.as_ref()?;
    Some(match v.value.as_ref()? {
        any_value::Value::StringValue(s) => s.clone(),
        any_value::Value::BoolValue(b) => b.to_string(),
        any_value::Value::IntValue(i) => i.to_string(),
        other => format!("{other:?}"),
    })
}

fn start(name: &str, collector: SocketAddr, attrs: SocketAddr, interval_ms: u64) -> Served {
    Served::in_scratch_dir(
        &format!("tracing-{name}"),
        POLICY,
        &format!(
            "policies: {{directory: policies}}\n\
             audit: {{mode: all, output: file, file: {{path: audit.log}}}}\n\
             tracing:\n  otlp:\n    endpoint: http://{collector}\n    serviceName: gatehouse-test\n    \
             exportIntervalMs: {interval_ms}\n    headers: {{x-collector-key: k1}}\n\
             extAuthz:\n  principal:\n    sources: [{{headers: {{id: x-user, roles: x-roles}}}}]\n  \
             routes: [{{path: '/docs/{{id}}', resource: {{kind: doc, id: '{{id}}'}}, \
             attributes: {{fetch: {{url: 'http://{attrs}/attrs/{{id}}', cacheTtlMs: 0}}}}}}]\n"
        ),
    )
}

fn check(path: &str, traceparent: Option<&str>) -> CheckRequest {
    let mut headers = vec![("x-user", "alice"), ("x-roles", "user")];
    if let Some(tp) = traceparent {
        headers.push(("traceparent", tp));
    }
    get_request(path, &headers)
}

/// The decision id Gatehouse sent to the backend.
fn decision_id(r: &gatehouse::extauthz::pb::envoy::service::auth::v3::CheckResponse) -> String {
    let Some(HttpResponse::OkResponse(ok)) = &r.http_response else {
        panic!("not allowed: {r:?}");
    };
    ok.headers
        .iter()
        .filter_map(|h| h.header.as_ref())
        .find(|h| h.key == "x-gatehouse-decision-id")
        .map(|h| h.value.clone())
        .unwrap()
}

const T1: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const T2: &str = "0af7651916cd43dd8448eb211c80319c";
const T3: &str = "11111111111111111111111111111111";
const T4: &str = "22222222222222222222222222222222";
const PARENT: &str = "00f067aa0ba902b7";

#[tokio::test]
async fn decisions_continue_the_callers_trace() {
    let (collector, received) = recorder("").await;
    let (attrs, attr_requests) = recorder(r#"{"owner": "alice"}"#).await;
    let s = start("continue", collector, attrs, 100);
    let mut c = s.ext_authz().await;

    // 1. The HTTP request's traceparent is the parent; the fetch is a child span and the
    //    attribute source is told so.
    let r = c
        .check({
            let mut r = check("/docs/7", Some(&format!("00-{T1}-{PARENT}-01")));
            let http = r.attributes.as_mut().unwrap().request.as_mut().unwrap();
            let headers = &mut http.http.as_mut().unwrap().headers;
            headers.insert("tracestate".into(), "congo=t61rcWkgMzE".into());
            r
        })
        .await
        .unwrap()
        .into_inner();
    let decision = decision_id(&r);

    // 2. Envoy's own ext_authz span (gRPC metadata) wins over the HTTP header.
    let mut req = tonic::Request::new(check("/docs/8", Some(&format!("00-{T3}-{PARENT}-01"))));
    req.metadata_mut().insert(
        "traceparent",
        format!("00-{T2}-{PARENT}-01").parse().unwrap(),
    );
    c.check(req).await.unwrap();

    // 3. An unsampled trace is not recorded, but passed on as it came.
    c.check(check(
        "/docs/9",
        Some("00-33333333333333333333333333333333-00f067aa0ba902b7-00"),
    ))
    .await
    .unwrap();

    // 4. The Cerbos API continues the trace too.
    let body = r#"{"requestId": "r1", "principal": {"id": "bob", "roles": ["user"]},
        "resources": [{"resource": {"kind": "doc", "id": "1"}, "actions": ["read", "write"]}]}"#;
    let traceparent = format!("00-{T4}-{PARENT}-01");
    let (code, _) = http_with_headers(
        s.http,
        "POST",
        "/api/check/resources",
        &[("traceparent", &traceparent)],
        Some(body),
    )
    .await;
    assert_eq!(code, 200);

    let all_in = within(Duration::from_secs(5), || async {
        spans(&received).len() >= 5
    })
    .await;
    assert!(all_in.is_some(), "spans: {:?}", spans(&received));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = spans(&received);
    let by_trace = |t: &str| -> Vec<Span> {
        got.iter()
            .filter(|(_, s)| hex(&s.trace_id) == t)
            .map(|(_, s)| s.clone())
            .collect()
    };
    assert!(got.iter().all(|(service, _)| service == "gatehouse-test"));

    let t1 = by_trace(T1);
    assert_eq!(t1.len(), 2, "{t1:?}");
    let server = t1
        .iter()
        .find(|s| s.name == "envoy.service.auth.v3.Authorization/Check")
        .unwrap();
    assert_eq!(hex(&server.parent_span_id), PARENT);
    assert_eq!(server.kind, 2, "SERVER");
    assert_eq!(
        attr(&server.attributes, "gatehouse.decision_id"),
        Some(decision)
    );
    assert_eq!(
        attr(&server.attributes, "gatehouse.allowed").as_deref(),
        Some("true")
    );
    assert_eq!(
        attr(&server.attributes, "gatehouse.principal.id").as_deref(),
        Some("alice")
    );
    assert_eq!(
        attr(&server.attributes, "gatehouse.resource.kind").as_deref(),
        Some("doc")
    );
    assert_eq!(
        attr(&server.attributes, "gatehouse.resource.id").as_deref(),
        Some("7")
    );
    assert_eq!(
        attr(&server.attributes, "gatehouse.action").as_deref(),
        Some("read")
    );
    assert!(server.end_time_unix_nano >= server.start_time_unix_nano);
    let fetch = t1.iter().find(|s| s.name == "attributes.fetch").unwrap();
    assert_eq!(fetch.parent_span_id, server.span_id);
    assert_eq!(fetch.kind, 3, "CLIENT");
    let sent = attr_requests
        .lock()
        .unwrap()
        .iter()
        .find(|r| r.path == "/attrs/7")
        .cloned()
        .unwrap();
    assert_eq!(
        sent.headers.get("tracestate").map(String::as_str),
        Some("congo=t61rcWkgMzE")
    );
    assert_eq!(
        sent.headers.get("traceparent").cloned(),
        Some(format!("00-{T1}-{}-01", hex(&fetch.span_id))),
        "the attribute source continues the trace under the fetch span"
    );

    let t2 = by_trace(T2);
    assert_eq!(t2.len(), 2, "{t2:?}");
    assert!(
        by_trace(T3).is_empty(),
        "gRPC metadata wins over the header"
    );
    assert!(
        got.iter()
            .all(|(_, s)| hex(&s.trace_id) != "33333333333333333333333333333333"),
        "unsampled traces are not recorded"
    );
    let unsampled = attr_requests
        .lock()
        .unwrap()
        .iter()
        .find(|r| r.path == "/attrs/9")
        .cloned()
        .unwrap();
    assert_eq!(
        unsampled.headers.get("traceparent").map(String::as_str),
        Some("00-33333333333333333333333333333333-00f067aa0ba902b7-00")
    );

    let t4 = by_trace(T4);
    assert_eq!(t4.len(), 1);
    assert_eq!(t4[0].name, "cerbos.svc.v1.CerbosService/CheckResources");
    assert_eq!(hex(&t4[0].parent_span_id), PARENT);
    assert_eq!(
        attr(&t4[0].attributes, "gatehouse.actions.allowed").as_deref(),
        Some("1")
    );
    assert_eq!(
        attr(&t4[0].attributes, "gatehouse.actions.denied").as_deref(),
        Some("1")
    );

    // The decision log names the same traces.
    let log = || std::fs::read_to_string(s.dir.join("audit.log")).unwrap_or_default();
    let logged = within(Duration::from_secs(3), || async {
        log().lines().count() >= 4
    })
    .await;
    assert!(logged.is_some(), "{}", log());
    for t in [T1, T2, T4] {
        assert!(
            log().contains(&format!("\"traceId\":\"{t}\"")),
            "{t}: {}",
            log()
        );
    }

    let (_, metrics) = http(s.admin, "GET", "/metrics", None).await;
    let exported: u64 = metrics
        .lines()
        .find(|l| l.starts_with("gatehouse_trace_spans_total{result=\"exported\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(exported >= 5, "{metrics}");
}

#[tokio::test]
async fn queued_spans_are_flushed_at_shutdown() {
    let (collector, received) = recorder("").await;
    let (attrs, _) = recorder(r#"{"owner": "alice"}"#).await;
    // A batch would wait a minute: only the shutdown flush can deliver it in time.
    let mut s = start("flush", collector, attrs, 60_000);
    let mut c = s.ext_authz().await;
    c.check(check("/docs/1", Some(&format!("00-{T1}-{PARENT}-01"))))
        .await
        .unwrap();
    drop(c);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(spans(&received).is_empty(), "batched, not sent yet");
    assert_eq!(s.terminate().await, Some(0));
    assert_eq!(spans(&received).len(), 2, "server and fetch spans flushed");
}
