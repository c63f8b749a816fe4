//! Cerbos-compatible API micro-benchmark: one `CheckResources` call in-process (no
//! transport): the request decoded, the count limits and Cerbos's request rules, one engine
//! decision per resource, metrics, and the response encoded, as one measured function, in
//! the gRPC wire format (prost) and in the HTTP one (protojson).
//!
//! The request is the one `benches/load.sh` times (`../shared/bench/check_resources.json`:
//! bob reads, updates and approves doc-1), on `../shared/bench/policies` (or the demo
//! policies, which hold the same `document` policy), with the decision log off.
//!
//!     cargo bench --bench api
//!
//! Set `GATEHOUSE_BENCH_LOOP=N` to skip criterion and run N calls in a plain loop (for
//! `valgrind --tool=callgrind`), with `GATEHOUSE_BENCH_SCENARIO` = `grpc` (default) or
//! `http`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use criterion::Criterion;
use prost::Message;

use gatehouse::api::pb::cerbos::response::v1::CheckResourcesResponse;
use gatehouse::api::{
    ApiSettings, CerbosApi, CheckRequest, decode_check_resources, write_check_resources,
};
use gatehouse::engine::EngineConfig;
use gatehouse::store::PolicyStore;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn bench_dir() -> PathBuf {
    std::env::var_os("GATEHOUSE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/bench"))
}

/// `../shared/bench/policies` when present, else the demo policies.
fn policies() -> PathBuf {
    let dir = bench_dir().join("policies");
    if dir.is_dir() {
        dir
    } else {
        root().join("policies")
    }
}

/// The request of `../shared/bench/check_resources.json` (a copy when it is absent).
fn request_json() -> Vec<u8> {
    std::fs::read(bench_dir().join("check_resources.json")).unwrap_or_else(|_| {
        br#"{"requestId":"bench-1","principal":{"id":"bob","roles":["manager"],"attr":{"department":"engineering","clearances":["confidential"],"approval_limit":10000}},"resources":[{"actions":["read","update","approve"],"resource":{"kind":"document","id":"doc-1","attr":{"owner":"alice","department":"engineering","status":"in_review","classification":"internal","amount":5000,"archived":false}}}]}"#.to_vec()
    })
}

struct Setup {
    rt: tokio::runtime::Runtime,
    api: CerbosApi,
    json: Vec<u8>,
    proto: Vec<u8>,
}

fn setup() -> Setup {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = Arc::new(PolicyStore::load(&policies(), EngineConfig::default()).unwrap());
    let api = CerbosApi::new(store, ApiSettings::default());
    let json = request_json();
    let proto = decode_check_resources(&json)
        .unwrap()
        .to_pb()
        .encode_to_vec();
    let s = Setup {
        rt,
        api,
        json,
        proto,
    };
    let text = String::from_utf8(s.http_call()).unwrap();
    for expected in [
        r#""read":"EFFECT_ALLOW""#,
        r#""update":"EFFECT_DENY""#,
        r#""approve":"EFFECT_ALLOW""#,
    ] {
        assert!(text.contains(expected), "{expected} in {text}");
    }
    let resp = CheckResourcesResponse::decode(&s.grpc_call()[..]).unwrap();
    assert_eq!(resp.results[0].actions["read"], 1, "{resp:?}");
    s
}

impl Setup {
    /// Protobuf request bytes in (read as the gRPC service reads them), protobuf response
    /// bytes out.
    fn grpc_call(&self) -> Vec<u8> {
        let req = CheckRequest::decode_protobuf(&self.proto[..]).unwrap();
        let resp = self.rt.block_on(self.api.check_resources(req)).unwrap();
        resp.encode_to_vec()
    }

    /// Protojson request body in, protojson response body out.
    fn http_call(&self) -> Vec<u8> {
        let req = decode_check_resources(&self.json).unwrap();
        let resp = self.rt.block_on(self.api.check_resources(req)).unwrap();
        write_check_resources(&resp)
    }
}

fn bench_check_resources(c: &mut Criterion) {
    let s = setup();
    c.bench_function("check_resources_grpc", |b| {
        b.iter(|| std::hint::black_box(s.grpc_call()))
    });
    c.bench_function("check_resources_http", |b| {
        b.iter(|| std::hint::black_box(s.http_call()))
    });
}

/// `GATEHOUSE_BENCH_LOOP=N`: N calls in a plain loop.
fn profile_loop(n: usize) {
    let s = setup();
    let scenario = std::env::var("GATEHOUSE_BENCH_SCENARIO").unwrap_or_default();
    let call = match scenario.as_str() {
        "" | "grpc" => Setup::grpc_call,
        "http" => Setup::http_call,
        other => panic!("unknown GATEHOUSE_BENCH_SCENARIO {other:?}"),
    };
    let bytes: usize = (0..n).map(|_| std::hint::black_box(call(&s)).len()).sum();
    assert!(bytes > n);
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
    bench_check_resources(&mut c);
    c.final_summary();
}
