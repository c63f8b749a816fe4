//! Cerbos-API servers for the API tests: the HTTP router and the gRPC service on
//! 127.0.0.1:0, over the conformance store configured as Cerbos's server tests configure it,
//! plus small HTTP and gRPC clients.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use gatehouse::api::pb::cerbos::svc::v1::cerbos_service_client::CerbosServiceClient;
use gatehouse::api::{ApiSettings, grpc_service, http_router};
use gatehouse::engine::{EngineConfig, SchemaEnforcement};
use gatehouse::jwt::{JwtConfig, JwtVerifier, KeySet, KeySource};
use gatehouse::store::PolicyStore;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Map, Value};
use tokio::sync::oneshot;
use tonic::transport::Channel;

/// Both listeners of one API server; stopped when dropped.
pub struct ApiServers {
    /// `http://127.0.0.1:port`.
    pub http_base: String,
    /// The gRPC address.
    pub grpc_addr: SocketAddr,
    stop: Vec<oneshot::Sender<()>>,
    http: Client<HttpConnector, Full<axum::body::Bytes>>,
}

impl Drop for ApiServers {
    fn drop(&mut self) {
        for s in self.stop.drain(..) {
            let _ = s.send(());
        }
    }
}

/// The API-case server configuration: schema enforcement reject, limits 5/5, the `cerbos`
/// JWT key set, no globals.
pub async fn conformance_settings(corpus: &Path) -> (PolicyStore, ApiSettings) {
    let config = EngineConfig {
        schema_enforcement: SchemaEnforcement::Reject,
        ..EngineConfig::default()
    };
    let store = PolicyStore::load(&corpus.join("store"), config).expect("conformance store loads");
    let keys = KeySet::load(
        KeySource::File(corpus.join("auxdata/keys/verify_key.jwk")),
        false,
    )
    .await
    .expect("verify_key.jwk loads");
    let verifier = JwtVerifier::new(JwtConfig {
        key_sets: vec![("cerbos".to_string(), keys)],
        require_exp: false,
        ..JwtConfig::default()
    })
    .expect("verifier");
    let settings = ApiSettings::default()
        .with_limits(5, 5)
        .with_jwt(Arc::new(verifier));
    (store, settings)
}

/// Starts the HTTP router and the gRPC service on free loopback ports.
pub async fn start(store: PolicyStore, settings: ApiSettings) -> ApiServers {
    let store = Arc::new(store);
    let http_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_addr = http_listener.local_addr().unwrap();
    let grpc_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc_addr = grpc_listener.local_addr().unwrap();

    let (http_stop, http_stopped) = oneshot::channel::<()>();
    let router = http_router(store.clone(), settings.clone());
    tokio::spawn(async move {
        let _ = axum::serve(http_listener, router)
            .with_graceful_shutdown(async move {
                let _ = http_stopped.await;
            })
            .await;
    });

    let (grpc_stop, grpc_stopped) = oneshot::channel::<()>();
    let service = grpc_service(store, settings);
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(grpc_listener),
                async move {
                    let _ = grpc_stopped.await;
                },
            )
            .await;
    });

    ApiServers {
        http_base: format!("http://{http_addr}"),
        grpc_addr,
        stop: vec![http_stop, grpc_stop],
        http: Client::builder(TokioExecutor::new()).build_http(),
    }
}

impl ApiServers {
    /// Sends an HTTP request; returns the status and the body parsed as JSON (or as a string
    /// when it is not JSON).
    pub async fn http(&self, method: &str, path: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
        let req = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.http_base))
            .header("content-type", "application/json")
            .body(Full::new(axum::body::Bytes::from(body)))
            .unwrap();
        let resp = self.http.request(req).await.expect("HTTP request");
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, json)
    }

    /// `POST /api/check/resources`.
    pub async fn check_http(&self, body: &serde_json::Value) -> (u16, serde_json::Value) {
        self.http(
            "POST",
            "/api/check/resources",
            body.to_string().into_bytes(),
        )
        .await
    }

    /// A gRPC client of `cerbos.svc.v1.CerbosService`.
    pub async fn grpc(&self) -> CerbosServiceClient<Channel> {
        CerbosServiceClient::connect(format!("http://{}", self.grpc_addr))
            .await
            .expect("gRPC connect")
    }
}

// === comparing answers ===

/// Drops null, empty and false values, recursively.
pub fn prune(v: &Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::Bool(false) => None,
        Value::Array(a) => {
            let items: Vec<Value> = a.iter().filter_map(prune).collect();
            (!items.is_empty()).then_some(Value::Array(items))
        }
        Value::Object(o) => {
            let m: Map<String, Value> = o
                .iter()
                .filter_map(|(k, v)| prune(v).map(|v| (k.clone(), v)))
                .collect();
            (!m.is_empty()).then_some(Value::Object(m))
        }
        other => Some(other.clone()),
    }
}

fn sort_by_key(list: Option<&mut Value>, key: impl Fn(&Value) -> String) {
    if let Some(Value::Array(items)) = list {
        items.sort_by_key(|v| key(v));
    }
}

/// A CheckResourcesResponse in a comparable form: no `cerbosCallId`, no empty fields,
/// derived roles sorted, outputs sorted by (src, action), validation errors by
/// (source, path, message).
pub fn normalise(resp: &Value) -> Value {
    let mut resp = resp.clone();
    if let Value::Object(o) = &mut resp {
        o.remove("cerbosCallId");
    }
    let mut resp = prune(&resp).unwrap_or(Value::Null);
    if let Some(Value::Array(results)) = resp.get_mut("results") {
        for r in results {
            if let Some(Value::Array(roles)) = r.pointer_mut("/meta/effectiveDerivedRoles") {
                roles.sort_by_key(|v| v.to_string());
            }
            sort_by_key(r.get_mut("outputs"), |o| {
                format!("{}\u{0}{}", o["src"], o["action"])
            });
            sort_by_key(r.get_mut("validationErrors"), |e| {
                format!("{}\u{0}{}\u{0}{}", e["source"], e["path"], e["message"])
            });
        }
    }
    resp
}
