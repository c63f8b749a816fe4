//! Engine micro-benchmark: one 3-action check (the request of `../shared/bench`)
//! against the demo policies in `policies/`, compiled once.

use std::path::Path;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};

use gatehouse::engine::{Engine, EngineConfig, input_from_json};

fn bench_check(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let policies =
        Arc::new(gatehouse::policy::load_and_compile(&dir).expect("demo policies compile"));
    let engine = Engine::new(policies, EngineConfig::default());
    let request = serde_json::json!({
        "requestId": "bench-1",
        "actions": ["read", "update", "approve"],
        "principal": {"id": "bob", "roles": ["manager"],
                      "attr": {"department": "engineering", "clearances": ["confidential"], "approval_limit": 10000}},
        "resource": {"kind": "document", "id": "doc-1",
                     "attr": {"owner": "alice", "department": "engineering", "status": "in_review",
                              "classification": "internal", "amount": 5000, "archived": false}}
    });
    let input = input_from_json(&request).expect("valid input");
    let out = engine.check(&input).expect("check");
    assert!(out.is_allowed("read") && !out.is_allowed("update") && out.is_allowed("approve"));

    c.bench_function("check_3_actions", |b| {
        b.iter(|| engine.check(std::hint::black_box(&input)).expect("check"))
    });
    c.bench_function("parse_input_and_check_3_actions", |b| {
        b.iter(|| {
            let input = input_from_json(std::hint::black_box(&request)).expect("valid input");
            engine.check(&input).expect("check")
        })
    });
}

criterion_group!(benches, bench_check);
criterion_main!(benches);
