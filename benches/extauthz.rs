//! ext_authz micro-benchmark: one Envoy `CheckRequest` in, one `CheckResponse` out,
//! in-process (no gRPC transport): the request's protobuf decoded, request mapping, bearer
//! JWT verification, the engine's decision, metrics, the audit record, and the response
//! built and encoded as the gRPC service does, as one measured function.
//!
//! The request is the one `benches/load.sh` times (bob reads doc-1 of
//! `../shared/bench`, principal from an RS256 bearer JWT, resource attributes from
//! `x-doc-*` headers), on a configuration like the bundled one (jwt_authn metadata tried
//! first, then the bearer token; metrics on), with the decision log off, and on (the real
//! sink: bounded queue and writer thread, writing to a null writer).
//!
//! JWT verification alone is measured with a JWKS of 1 key and of 50 keys (the token's
//! key last): the key is found by `kid`, so both must cost the same.
//!
//!     cargo bench --bench extauthz
//!
//! Set `GATEHOUSE_BENCH_LOOP=N` to skip criterion and run N decisions in a plain loop
//! (for `valgrind --tool=callgrind`, see `benches/callgrind.sh`), with
//! `GATEHOUSE_BENCH_SCENARIO` = `audit_off` (default), `audit_on`, or `built_off` (audit
//! off, the response built as a prost `CheckResponse` and encoded by prost, as before
//! the direct encoding), and `GATEHOUSE_BENCH_REQUEST` = `bench` (default: the request
//! above) or `envoy` (the same request as Envoy 1.40 sends it, see `envoy_check_request`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use criterion::Criterion;
use gatehouse::extauthz::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use gatehouse::extauthz::pb::envoy::service::auth::v3::check_response::HttpResponse;
use gatehouse::extauthz::pb::envoy::service::auth::v3::{
    AttributeContext, CheckRequest, CheckResponse,
};
use prost::Message;

use gatehouse::audit::{AuditConfig, AuditSink};
use gatehouse::engine::EngineConfig;
use gatehouse::extauthz::{self, ExtAuthz, ExtAuthzConfig};
use gatehouse::jwt::{JwtConfig, JwtVerifier, KeySet, KeySetOptions};
use gatehouse::metrics::Metrics;
use gatehouse::store::PolicyStore;
use gatehouse::telemetry::{Sinks, Tracer};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared/bench/policies` (or `$GATEHOUSE_BENCH_DIR/policies`) when present, else the
/// demo policies (the same `document` policy for this request).
fn policies() -> PathBuf {
    let bench = std::env::var_os("GATEHOUSE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/bench"));
    let dir = bench.join("policies");
    if dir.is_dir() {
        dir
    } else {
        root().join("policies")
    }
}

const CONFIG: &str = r#"
principal:
  sources:
    - jwtAuthn: {namespace: envoy.filters.http.jwt_authn}
    - jwt:
        jwks: {file: examples/fastapi/dev-jwks.json}
        algorithms: [RS256]
        issuer: https://auth.example.test
        audiences: [documents-api]
  claims: {id: sub, roles: roles, attr: [department, clearances, approval_limit, email]}
routes:
  - path: /health
    public: true
  - path: /documents/{id}
    methods: [GET]
    resource: {kind: document, id: "{id}"}
    action: read
    attributes:
      headers: {owner: x-doc-owner, department: x-doc-department, status: x-doc-status,
                classification: x-doc-classification}
"#;

/// bob's token (as `examples/fastapi/mint_token.py bob` mints it), valid for a day.
fn token() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "iss": "https://auth.example.test", "aud": "documents-api", "sub": "bob",
        "iat": now, "nbf": now, "exp": now + 86_400,
        "roles": ["manager"], "department": "engineering", "clearances": ["confidential"],
        "approval_limit": 10000, "email": "bob@example.test",
    });
    let pem = std::fs::read(root().join("examples/fastapi/dev-private-key.pem")).unwrap();
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("dev-1".into());
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

/// The CheckRequest `benches/load/encode.py` writes: `GET /documents/doc-1` with the
/// bearer token and the resource attributes as headers.
fn check_request(token: &str) -> CheckRequest {
    let headers = [
        ("authorization", format!("Bearer {token}")),
        ("x-doc-owner", "alice".into()),
        ("x-doc-department", "engineering".into()),
        ("x-doc-status", "in_review".into()),
        ("x-doc-classification", "internal".into()),
    ];
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    id: "bench-1".into(),
                    method: "GET".into(),
                    headers: headers
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect(),
                    path: "/documents/doc-1".into(),
                    host: "documents.local".into(),
                    scheme: "http".into(),
                    protocol: "HTTP/1.1".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

/// The same request as Envoy 1.40 sends it with `envoy/envoy.yaml` (captured from Envoy
/// in front of a raw gRPC server, curl as the client): the peer addresses, the request
/// time, every header Envoy passes on (pseudo-headers, `x-forwarded-*`, `x-request-id`)
/// in Envoy's order, the empty metadata contexts.
fn envoy_check_request(token: &str) -> CheckRequest {
    use gatehouse::extauthz::pb::envoy::config::core::v3::{
        Address, Metadata, SocketAddress, address, socket_address,
    };
    use gatehouse::extauthz::pb::envoy::service::auth::v3::attribute_context::Peer;
    let peer = |port: u32| Peer {
        address: Some(Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: "127.0.0.1".into(),
                port_specifier: Some(socket_address::PortSpecifier::PortValue(port)),
                ..Default::default()
            })),
        }),
        ..Default::default()
    };
    let headers = [
        ("x-envoy-external-address", "127.0.0.1".to_string()),
        (":authority", "127.0.0.1:18080".into()),
        ("authorization", format!("Bearer {token}")),
        ("accept", "*/*".into()),
        ("x-doc-owner", "alice".into()),
        (":path", "/documents/doc-1".into()),
        (
            "x-request-id",
            "bb2b4c76-3a04-48b9-80d2-e1955ae6213f".into(),
        ),
        ("x-forwarded-for", "192.0.2.2".into()),
        ("x-doc-classification", "internal".into()),
        ("x-doc-status", "in_review".into()),
        (":method", "GET".into()),
        ("user-agent", "curl/7.88.1".into()),
        (":scheme", "http".into()),
        ("x-doc-department", "engineering".into()),
        ("x-forwarded-proto", "http".into()),
    ];
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(peer(35262)),
            destination: Some(peer(18080)),
            request: Some(Request {
                time: Some(prost_types::Timestamp {
                    seconds: 1_796_592_769,
                    nanos: 404_114_000,
                }),
                http: Some(HttpRequest {
                    id: "17918898848581348968".into(),
                    method: "GET".into(),
                    headers: headers
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect(),
                    path: "/documents/doc-1".into(),
                    host: "127.0.0.1:18080".into(),
                    scheme: "http".into(),
                    protocol: "HTTP/1.1".into(),
                    ..Default::default()
                }),
            }),
            metadata_context: Some(Metadata::default()),
            route_metadata_context: Some(Metadata::default()),
            ..Default::default()
        }),
    }
}

fn allowed(resp: &CheckResponse) -> bool {
    matches!(resp.http_response, Some(HttpResponse::OkResponse(_)))
}

/// An encoded `CheckResponse` that allows: field 1 (status) empty, then field 3 (the OK
/// response). A denial has field 2 there.
fn allowed_bytes(resp: &[u8]) -> bool {
    resp.starts_with(&[0x0a, 0x00, 0x1a])
}

/// The decision log as the bundled config has it (every decision), through the real
/// sink (queue and writer thread) into a null writer; `whenFull: block` so that every
/// record is serialised and written, none dropped.
fn audit_sink(metrics: &Metrics) -> AuditSink {
    let config: AuditConfig = serde_json::from_value(serde_json::json!({
        "mode": "all", "maskPaths": ["principal.attr.email"], "whenFull": "block"
    }))
    .unwrap();
    AuditSink::to_writer(&config, metrics.clone(), std::io::sink()).unwrap()
}

struct Setup {
    rt: tokio::runtime::Runtime,
    service: ExtAuthz,
    /// The request's protobuf bytes, as the gRPC service receives them.
    request: Vec<u8>,
}

impl Setup {
    /// One decision as the gRPC service makes it: the request read in place, decided,
    /// the response encoded.
    fn served(&self, out: &mut Vec<u8>) {
        out.clear();
        self.rt
            .block_on(
                self.service
                    .decide_encoded(std::hint::black_box(self.request.as_slice()), out),
            )
            .unwrap();
    }

    /// One decision with the response built as a prost message and encoded by prost.
    fn built(&self, out: &mut Vec<u8>) {
        let req = CheckRequest::decode(std::hint::black_box(self.request.as_slice())).unwrap();
        out.clear();
        self.rt
            .block_on(self.service.decide(&req))
            .encode(out)
            .unwrap();
    }
}

fn setup(audit: bool) -> Setup {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = Arc::new(PolicyStore::load(&policies(), EngineConfig::default()).unwrap());
    let config: ExtAuthzConfig = serde_saphyr::from_str(CONFIG).unwrap();
    let metrics = Metrics::default();
    let audit = if audit {
        audit_sink(&metrics)
    } else {
        AuditSink::disabled()
    };
    let sinks = Sinks::new(metrics, audit, Tracer::disabled());
    let service = rt
        .block_on(extauthz::build_with_sinks(&config, store, root(), sinks))
        .unwrap();
    let request = match std::env::var("GATEHOUSE_BENCH_REQUEST").as_deref() {
        Ok("") | Ok("bench") | Err(_) => check_request(&token()),
        Ok("envoy") => envoy_check_request(&token()),
        Ok(other) => panic!("unknown GATEHOUSE_BENCH_REQUEST {other:?}"),
    };
    let resp = rt.block_on(service.decide(&request));
    assert!(allowed(&resp), "bob may read doc-1: {resp:?}");
    Setup {
        rt,
        service,
        request: request.encode_to_vec(),
    }
}

fn bench_decision(c: &mut Criterion) {
    for (name, audit) in [
        ("ext_authz_decision_audit_off", false),
        ("ext_authz_decision_audit_on", true),
    ] {
        let s = setup(audit);
        let mut out = Vec::new();
        c.bench_function(name, |b| b.iter(|| s.served(&mut out)));
        assert!(s.service.audit.flush());
    }
}

/// `n` keys: `n - 1` decoys (the dev key's material under other ids), then `dev-1`.
fn jwks(n: usize) -> String {
    let text = std::fs::read_to_string(root().join("examples/fastapi/dev-jwks.json")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let key = doc["keys"][0].clone();
    let mut keys: Vec<serde_json::Value> = (1..n)
        .map(|i| {
            let mut k = key.clone();
            k["kid"] = format!("rotated-{i}").into();
            k
        })
        .collect();
    keys.push(key);
    serde_json::json!({ "keys": keys }).to_string()
}

fn bench_jwt(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let token = token();
    for n in [1, 50] {
        let set = KeySet::parse(&jwks(n), KeySetOptions::new()).unwrap();
        assert_eq!(set.len(), n);
        let verifier = JwtVerifier::new(JwtConfig {
            key_sets: vec![("default".into(), set)],
            algorithms: vec![jsonwebtoken::Algorithm::RS256],
            issuer: Some("https://auth.example.test".into()),
            audiences: vec!["documents-api".into()],
            ..JwtConfig::default()
        })
        .unwrap();
        assert!(rt.block_on(verifier.verify(&token, None)).is_ok());
        c.bench_function(&format!("jwt_verify_jwks_{n}_keys"), |b| {
            b.iter(|| rt.block_on(verifier.verify(std::hint::black_box(&token), None)))
        });
    }
}

/// `GATEHOUSE_BENCH_LOOP=N`: N decisions in a plain loop, then the audit queue flushed.
fn profile_loop(n: usize) {
    let scenario = std::env::var("GATEHOUSE_BENCH_SCENARIO").unwrap_or_default();
    let (audit, built) = match scenario.as_str() {
        "" | "audit_off" => (false, false),
        "audit_on" => (true, false),
        "built_off" => (false, true),
        other => panic!("unknown GATEHOUSE_BENCH_SCENARIO {other:?}"),
    };
    let s = setup(audit);
    let mut allowed_count = 0;
    let mut out = Vec::new();
    for _ in 0..n {
        if built {
            s.built(&mut out);
        } else {
            s.served(&mut out);
        }
        allowed_count += usize::from(allowed_bytes(&out));
    }
    assert!(s.service.audit.flush());
    assert_eq!(allowed_count, n);
}

fn main() {
    if let Some(n) = std::env::var("GATEHOUSE_BENCH_LOOP")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        profile_loop(n);
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    bench_decision(&mut c);
    bench_jwt(&mut c);
    c.final_summary();
}
