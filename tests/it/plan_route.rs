//! Issue 14: ext_authz routes that ask for a plan instead of a decision. The filter the
//! backend gets in `x-gatehouse-filter` is the planner's, in Cerbos's JSON shape;
//! `KIND_ALWAYS_DENIED` is a 403; a filter over `maxFilterBytes` is a 503; a client's
//! forged filter never passes; plans are counted and logged as API plans are. Over the
//! gRPC answer (`CheckResponse`) and Envoy's HTTP ext_authz (`/_gatehouse/authz`).

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use gatehouse::extauthz::pb::envoy::service::auth::v3::CheckResponse;
use gatehouse::extauthz::pb::envoy::service::auth::v3::check_response::HttpResponse;
use serde_json::{Value, json};

use gatehouse::audit::{AuditConfig, AuditSink};
use gatehouse::cel::{MapValue, Value as CelValue};
use gatehouse::engine::{EngineConfig, Principal};
use gatehouse::extauthz::{self, ExtAuthz, ExtAuthzConfig, LiveExtAuthz};
use gatehouse::metrics::Metrics;
use gatehouse::planner::{PlanInput, PlanResource};
use gatehouse::store::PolicyStore;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn config(max_filter: usize) -> ExtAuthzConfig {
    let yaml = format!(
        r#"
httpService: true
maxFilterBytes: {max_filter}
principal:
  sources: [{{headers: {{id: x-dev-user, roles: x-dev-roles}}}}]
routes:
  - path: /health
    public: true
  - path: /documents
    methods: [GET]
    resource: {{kind: document}}
    plan: {{action: read}}
  - path: /owners/{{owner}}/documents
    methods: [GET]
    resource: {{kind: document}}
    plan: {{action: read}}
    attributes: {{pathParams: true}}
  - path: /shadow/documents
    methods: [GET]
    resource: {{kind: document}}
    plan: {{action: read}}
    mode: shadow
"#
    );
    serde_saphyr::from_str(&yaml).unwrap()
}

fn store() -> Arc<PolicyStore> {
    Arc::new(PolicyStore::load(&root().join("policies"), EngineConfig::default()).unwrap())
}

/// Audit lines, collected in memory.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Lines {
    fn json(&self) -> Vec<Value> {
        String::from_utf8(self.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

struct Setup {
    service: ExtAuthz,
    store: Arc<PolicyStore>,
    metrics: Metrics,
    audit: AuditSink,
    lines: Lines,
}

async fn setup(max_filter: usize) -> Setup {
    let store = store();
    let metrics = Metrics::default();
    let lines = Lines::default();
    let audit_config: AuditConfig = serde_json::from_value(json!({"mode": "all"})).unwrap();
    let audit = AuditSink::to_writer(&audit_config, metrics.clone(), lines.clone()).unwrap();
    let service = extauthz::build_with_sinks(
        &config(max_filter),
        store.clone(),
        root(),
        gatehouse::telemetry::Sinks::new(metrics.clone(), audit.clone(), Default::default()),
    )
    .await
    .unwrap();
    Setup {
        service,
        store,
        metrics,
        audit,
        lines,
    }
}

fn user<'a>(id: &'a str, roles: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![("x-dev-user", id), ("x-dev-roles", roles)]
}

async fn check(s: &Setup, path: &str, headers: &[(&str, &str)]) -> CheckResponse {
    s.service
        .decide(&crate::util::with_request_id(
            crate::util::get_request(path, headers),
            "req-14",
        ))
        .await
}

/// The headers set on allow and the ones removed.
fn allowed(resp: &CheckResponse) -> (HashMap<String, String>, Vec<String>) {
    match &resp.http_response {
        Some(HttpResponse::OkResponse(ok)) => (
            ok.headers
                .iter()
                .filter_map(|h| h.header.as_ref().map(|h| (h.key.clone(), h.value.clone())))
                .collect(),
            ok.headers_to_remove.clone(),
        ),
        other => panic!("expected OK, got {other:?}"),
    }
}

/// Status, body and gRPC code of a denial.
fn denied(resp: &CheckResponse) -> (i32, Value, i32) {
    match &resp.http_response {
        Some(HttpResponse::DeniedResponse(d)) => (
            d.status.as_ref().map_or(0, |s| s.code),
            serde_json::from_str(&d.body).unwrap(),
            resp.status.as_ref().map_or(-1, |s| s.code),
        ),
        other => panic!("expected a denial, got {other:?}"),
    }
}

/// The planner's own filter for a principal with no attributes, as Cerbos's JSON.
fn planned(s: &Setup, id: &str, roles: &[&str], known: &[(&str, &str)]) -> Value {
    let mut attr = MapValue::new();
    for (k, v) in known {
        attr.insert(
            gatehouse::cel::Key::String(Arc::from(*k)),
            CelValue::from(*v),
        );
    }
    let input = PlanInput {
        principal: Principal {
            id: id.into(),
            roles: roles.iter().map(|r| Arc::from(*r)).collect(),
            ..Default::default()
        },
        resource: PlanResource {
            kind: "document".into(),
            attr: Arc::new(attr),
            ..Default::default()
        },
        actions: vec!["read".into()],
        ..Default::default()
    };
    let out = s.store.snapshot().engine.plan(&input).unwrap();
    out.filter.to_json()
}

#[tokio::test]
async fn issue_14_plan_route_hands_the_planners_filter_to_the_backend() {
    let s = setup(8192).await;
    // A conditional filter: exactly the planner's, compact JSON, principal headers too.
    let resp = check(&s, "/documents", &user("alice", "user")).await;
    let (headers, _) = allowed(&resp);
    let filter: Value = serde_json::from_str(&headers["x-gatehouse-filter"]).unwrap();
    assert_eq!(filter["kind"], "KIND_CONDITIONAL");
    assert_eq!(filter, planned(&s, "alice", &["user"], &[]));
    assert_eq!(
        headers["x-gatehouse-filter"],
        serde_json::to_string(&filter).unwrap(),
        "compact JSON"
    );
    assert!(
        headers["x-gatehouse-filter"].contains("\"variable\":\"request.resource.attr.owner\""),
        "{}",
        headers["x-gatehouse-filter"]
    );
    assert_eq!(headers["x-gatehouse-principal"], "alice");
    assert_eq!(headers["x-gatehouse-roles"], "user");
    // An admin may read everything: KIND_ALWAYS_ALLOWED goes to the backend as well.
    let (headers, _) = allowed(&check(&s, "/documents", &user("root", "admin")).await);
    assert_eq!(
        headers["x-gatehouse-filter"],
        r#"{"kind":"KIND_ALWAYS_ALLOWED"}"#
    );
    // Path parameters are known attributes: the owner is no longer a variable, and
    // alice's own documents are all hers to read.
    let (headers, _) = allowed(&check(&s, "/owners/alice/documents", &user("alice", "user")).await);
    assert_eq!(
        headers["x-gatehouse-filter"],
        r#"{"kind":"KIND_ALWAYS_ALLOWED"}"#
    );
    // Carol's are not (alice has no department here): nothing to list, 403.
    assert_eq!(
        planned(&s, "alice", &["user"], &[("owner", "carol")])["kind"],
        "KIND_ALWAYS_DENIED"
    );
    let resp = check(&s, "/owners/carol/documents", &user("alice", "user")).await;
    assert_eq!(denied(&resp).0, 403);
}

#[tokio::test]
async fn issue_14_always_denied_is_403_and_forged_filters_never_pass() {
    let s = setup(8192).await;
    let mut h = user("guest-1", "guest");
    h.push(("x-gatehouse-filter", r#"{"kind":"KIND_ALWAYS_ALLOWED"}"#));
    let resp = check(&s, "/documents", &h).await;
    let (status, body, code) = denied(&resp);
    assert_eq!(status, 403);
    assert_eq!(code, 7);
    assert_eq!(body["detail"], "forbidden");
    assert!(body["decision_id"].is_string());
    // On a plan route the client's filter is replaced by Gatehouse's.
    let mut h = user("carol", "user");
    h.push(("x-gatehouse-filter", r#"{"kind":"KIND_ALWAYS_ALLOWED"}"#));
    let (headers, removed) = allowed(&check(&s, "/documents", &h).await);
    assert_eq!(
        serde_json::from_str::<Value>(&headers["x-gatehouse-filter"]).unwrap(),
        planned(&s, "carol", &["user"], &[])
    );
    assert!(removed.is_empty(), "{removed:?}");
    // On any other route it is removed.
    let (headers, removed) = allowed(&check(&s, "/health", &h).await);
    assert!(!headers.contains_key("x-gatehouse-filter"));
    assert_eq!(removed, vec!["x-gatehouse-filter".to_string()]);
}

#[tokio::test]
async fn issue_14_a_filter_over_the_bound_is_503_never_shortened() {
    let s = setup(8192).await;
    // The principal's id is in the filter (`R.attr.owner == P.id`): 9,000 bytes of it.
    let long = "a".repeat(9000);
    let resp = check(&s, "/documents", &user(&long, "user")).await;
    let (status, body, code) = denied(&resp);
    assert_eq!(status, 503);
    assert_eq!(code, 14, "UNAVAILABLE");
    assert_eq!(body["detail"], "service unavailable");
    // Shadow mode lets denials through, but not a filter it cannot hand over.
    let (status, _, _) = denied(&check(&s, "/shadow/documents", &user(&long, "user")).await);
    assert_eq!(status, 503);
    // Just under the bound passes whole; one byte less of bound is a 503.
    let id = "b".repeat(100);
    let (headers, _) = allowed(&check(&s, "/documents", &user(&id, "user")).await);
    let size = headers["x-gatehouse-filter"].len();
    let exact = setup(size).await;
    let (headers, _) = allowed(&check(&exact, "/documents", &user(&id, "user")).await);
    assert_eq!(headers["x-gatehouse-filter"].len(), size);
    let under = setup(size - 1).await;
    let (status, _, _) = denied(&check(&under, "/documents", &user(&id, "user")).await);
    assert_eq!(status, 503);
}

#[tokio::test]
async fn issue_14_shadow_plan_route_passes_the_deny_everything_filter() {
    let s = setup(8192).await;
    let (headers, _) = allowed(&check(&s, "/shadow/documents", &user("guest-1", "guest")).await);
    assert_eq!(
        headers["x-gatehouse-filter"],
        r#"{"kind":"KIND_ALWAYS_DENIED"}"#
    );
}

#[tokio::test]
async fn issue_14_plan_routes_are_counted_and_logged_as_plans() {
    let s = setup(8192).await;
    check(&s, "/documents", &user("alice", "user")).await;
    check(&s, "/documents", &user("guest-1", "guest")).await;
    check(&s, "/documents", &user(&"c".repeat(9000), "user")).await;
    assert!(s.audit.flush());
    let lines = s.lines.json();
    assert_eq!(lines.len(), 3, "{lines:?}");
    for l in &lines {
        assert_eq!(l["origin"], "ext_authz", "{l}");
        assert_eq!(l["requestId"], "req-14", "{l}");
        assert_eq!(l["plan"]["actions"], json!(["read"]), "{l}");
        assert_eq!(l["resources"][0]["kind"], "document", "{l}");
    }
    assert_eq!(lines[0]["effect"], "allow");
    assert_eq!(lines[0]["plan"]["filter"], "KIND_CONDITIONAL");
    assert_eq!(lines[1]["effect"], "deny");
    assert_eq!(lines[1]["status"], 403);
    assert_eq!(lines[1]["plan"]["filter"], "KIND_ALWAYS_DENIED");
    assert_eq!(lines[2]["status"], 503);
    assert!(
        lines[2]["reason"]
            .as_str()
            .unwrap()
            .contains("exceeds extAuthz.maxFilterBytes (8192)"),
        "{}",
        lines[2]
    );
    let text = s.metrics.render(None);
    for want in [
        r#"gatehouse_plans_total{filter="conditional",kind="document",action="read",origin="ext_authz"} 2"#,
        r#"gatehouse_plans_total{filter="always_denied",kind="document",action="read",origin="ext_authz"} 1"#,
        r#"gatehouse_plan_duration_seconds_count{origin="ext_authz"} 3"#,
    ] {
        assert!(text.contains(want), "{want} missing:\n{text}");
    }
    assert!(
        text.contains(r#"gatehouse_check_duration_seconds_count{origin="ext_authz"} 0"#),
        "plans are not counted as checks:\n{text}"
    );
}

/// Envoy's HTTP ext_authz renders the same answer: 200 with the filter header, forged
/// ones named for removal, and the 403 / 503 denials.
#[tokio::test]
async fn issue_14_plan_route_in_envoys_http_mode() {
    use axum::body::Body;
    use axum::http::Request;
    use tower_service::Service;

    let s = setup(8192).await;
    let mut router = extauthz::http_router(LiveExtAuthz::new(s.service));
    let mut ask = async |path: &str, user: &str, roles: &str| {
        let req = Request::get(format!("/_gatehouse/authz{path}"))
            .header("x-dev-user", user)
            .header("x-dev-roles", roles)
            .header("x-gatehouse-filter", r#"{"kind":"KIND_ALWAYS_ALLOWED"}"#)
            .body(Body::empty())
            .unwrap();
        router.call(req).await.unwrap()
    };
    let resp = ask("/documents", "alice", "user").await;
    assert_eq!(resp.status(), 200);
    let filter = resp.headers()["x-gatehouse-filter"].to_str().unwrap();
    assert!(
        filter.starts_with(r#"{"kind":"KIND_CONDITIONAL","condition":"#),
        "{filter}"
    );
    assert!(
        resp.headers()
            .get("x-envoy-auth-headers-to-remove")
            .is_none()
    );
    let resp = ask("/health", "alice", "user").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["x-envoy-auth-headers-to-remove"],
        "x-gatehouse-filter"
    );
    assert_eq!(ask("/documents", "guest-1", "guest").await.status(), 403);
    assert_eq!(
        ask("/documents", &"d".repeat(9000), "user").await.status(),
        503
    );
}
