//! Engine micro-benchmark: one 3-action check (the request of `../shared/bench`) and one
//! conditional PlanResources (the plan of `benches/load/plan_resources.json`) against the
//! demo policies in `policies/`, compiled once.
//!
//!     cargo bench --bench engine
//!
//! Set `GATEHOUSE_BENCH_LOOP=N` and `GATEHOUSE_SCALE_DIR=<dir>` (a store written by
//! `benches/scale/generate.py`) to skip criterion: `<dir>/policies` is compiled, then N
//! decisions of `<dir>/check.json` and N of `<dir>/plan.json` run in plain loops, for
//! `valgrind --tool=callgrind` (see `benches/callgrind.sh scale`).

use std::path::Path;
use std::sync::Arc;

use criterion::Criterion;

use gatehouse::engine::{CheckInput, Engine, EngineConfig, input_from_json};
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

/// One CheckResources entry of a generated scale store's `check.json` as a check input.
fn scale_check(request: &serde_json::Value) -> CheckInput {
    let entry = &request["resources"][0];
    input_from_json(&serde_json::json!({
        "requestId": request["requestId"],
        "actions": entry["actions"],
        "principal": request["principal"],
        "resource": entry["resource"],
    }))
    .expect("valid check.json")
}

/// A generated scale store's `plan.json` as a plan input.
fn scale_plan(request: &serde_json::Value) -> PlanInput {
    let check = input_from_json(&serde_json::json!({
        "requestId": request["requestId"],
        "actions": [request["action"]],
        "principal": request["principal"],
        "resource": {"kind": request["resource"]["kind"], "id": "unused"},
    }))
    .expect("valid plan.json");
    PlanInput {
        request_id: check.request_id,
        principal: check.principal,
        resource: PlanResource {
            kind: check.resource.kind,
            scope: request["resource"]["scope"]
                .as_str()
                .unwrap_or_default()
                .into(),
            ..Default::default()
        },
        actions: check.actions,
        ..Default::default()
    }
}

/// N checks in a plain loop (not inlined: `callgrind --toggle-collect=*scale_checks*`
/// counts only this), each answer checked against the generator's.
#[inline(never)]
fn scale_checks(engine: &Engine, input: &CheckInput, n: usize) {
    for _ in 0..n {
        let out = engine.check(std::hint::black_box(input)).expect("check");
        assert!(
            out.is_allowed("read")
                && out.is_allowed("update")
                && out.is_allowed("approve")
                && !out.is_allowed("delete")
        );
    }
}

/// N plans in a plain loop (not inlined, like [`scale_checks`]).
#[inline(never)]
fn scale_plans(engine: &Engine, input: &PlanInput, n: usize) {
    for _ in 0..n {
        let out = engine.plan(std::hint::black_box(input)).expect("plan");
        assert!(matches!(out.filter.kind, FilterKind::Conditional));
    }
}

/// `GATEHOUSE_BENCH_LOOP=N` with `GATEHOUSE_SCALE_DIR`: the store compiled, one check and
/// one plan to warm up, then N checks ([`scale_checks`]) and N plans ([`scale_plans`]).
fn profile_loop(n: usize, dir: &Path) {
    let read = |name: &str| -> serde_json::Value {
        let text = std::fs::read_to_string(dir.join(name)).expect("generated request");
        serde_json::from_str(&text).expect("JSON request")
    };
    let policies =
        Arc::new(gatehouse::policy::load_and_compile(&dir.join("policies")).expect("compiles"));
    let engine = Engine::new(policies, EngineConfig::default());
    let check = scale_check(&read("check.json"));
    let plan = scale_plan(&read("plan.json"));
    engine.check(&check).expect("warm-up check");
    engine.plan(&plan).expect("warm-up plan");
    scale_checks(&engine, &check, n);
    scale_plans(&engine, &plan, n);
}

fn main() {
    let n = std::env::var("GATEHOUSE_BENCH_LOOP")
        .ok()
        .and_then(|v| v.parse().ok());
    if let (Some(n), Some(dir)) = (n, std::env::var_os("GATEHOUSE_SCALE_DIR")) {
        profile_loop(n, Path::new(&dir));
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    bench_check(&mut c);
    bench_plan(&mut c);
    c.final_summary();
}
