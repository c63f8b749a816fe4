//! Engine micro-benchmark: one 3-action check (the request of `../shared/bench`) and one
//! conditional PlanResources (the plan of `benches/load/plan_resources.json`) against the
//! demo policies in `policies/`, compiled once.

use std::path::Path;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};

use gatehouse::engine::{Engine, EngineConfig, input_from_json};
use gatehouse::planner::{FilterKind, PlanInput, PlanResource};

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

/// In-process PlanResources: alice (`user`) may `read` documents on conditions, so the
/// planner builds a conditional filter (the plan `benches/load.sh` times over the API).
fn bench_plan(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let policies =
        Arc::new(gatehouse::policy::load_and_compile(&dir).expect("demo policies compile"));
    let engine = Engine::new(policies, EngineConfig::default());
    let check = input_from_json(&serde_json::json!({
        "requestId": "bench-plan-1",
        "actions": ["read"],
        "principal": {"id": "alice", "roles": ["user"],
                      "attr": {"department": "engineering", "clearances": [], "approval_limit": 1000}},
        "resource": {"kind": "document", "id": "unused"}
    }))
    .expect("valid input");
    let input = PlanInput {
        request_id: check.request_id,
        principal: check.principal,
        resource: PlanResource {
            kind: "document".into(),
            ..Default::default()
        },
        actions: vec!["read".into()],
        ..Default::default()
    };
    let out = engine.plan(&input).expect("plan");
    assert!(
        matches!(out.filter.kind, FilterKind::Conditional),
        "{:?}",
        out.filter
    );

    c.bench_function("plan_read_conditional", |b| {
        b.iter(|| engine.plan(std::hint::black_box(&input)).expect("plan"))
    });
}

criterion_group!(benches, bench_check, bench_plan);
criterion_main!(benches);
