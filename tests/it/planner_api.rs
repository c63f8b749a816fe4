//! PlanResources through the API against the real Cerbos 0.55's answers
//! (`golden/planner-{strict,lenient}.json`): every case of the planner corpus sent over
//! HTTP (`POST /api/plan/resources`) and over gRPC to servers configured as the golden
//! server was (globals `{environment: test}`, strict or lenient scope search), responses
//! compared without `cerbosCallId`, filters after sorting the operands of commutative
//! operators (Cerbos itself varies in those between runs).

use std::path::Path;

use serde_json::{Value as Json, json};

use gatehouse::api::{ApiSettings, decode_plan_resources, encode_plan_resources};
use gatehouse::engine::EngineConfig;
use gatehouse::planner::Filter;
use gatehouse::store::PolicyStore;

use crate::api_server::start;
use crate::planner_cases::stabilise;
use crate::util::{corpus_dir, json_file, yaml_docs};

/// The request the golden run sent for `dir/file.yaml#index:actions`.
fn request_for(corpus: &Path, key: &str) -> Json {
    let (file, rest) = key.split_once('#').unwrap();
    let index: usize = rest.split(':').next().unwrap().parse().unwrap();
    let suite = yaml_docs(&corpus.join("planner/suite").join(file)).remove(0);
    let test = &suite["tests"][index];
    let mut req = json!({
        "requestId": "r",
        "includeMeta": true,
        "principal": suite["principal"],
        "resource": test["resource"],
    });
    match (test.get("actions"), test.get("action")) {
        (Some(a), _) => req["actions"] = a.clone(),
        (None, Some(a)) => req["action"] = a.clone(),
        _ => {}
    }
    req
}

/// The response without `cerbosCallId` and `meta.filterDebug`, filter stabilised.
fn comparable(resp: &Json) -> Json {
    let mut r = resp.clone();
    if let Some(o) = r.as_object_mut() {
        o.remove("cerbosCallId");
        if let Some(Json::Object(m)) = o.get_mut("meta") {
            m.remove("filterDebug");
        }
    }
    stabilise(&r)
}

/// `filterDebug` agrees: equal, or both the rendering of their (equivalent) filters.
fn debug_agrees(got: &Json, want: &Json) -> bool {
    let debug = |r: &Json| r["meta"]["filterDebug"].as_str().unwrap_or("").to_string();
    let rendered = |r: &Json| Filter::from_json(&r["filter"]).map(|f| f.debug_string());
    debug(got) == debug(want)
        || (rendered(want) == Some(debug(want)) && rendered(got) == Some(debug(got)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planner_golden_api() {
    let Some(corpus) = corpus_dir("planner api") else {
        return;
    };
    let globals = match gatehouse::cel::from_json(&json!({"environment": "test"})) {
        gatehouse::cel::Value::Map(m) => m,
        _ => unreachable!("an object is a map"),
    };
    let mut failures = Vec::new();
    let (mut passed, mut exact, mut total) = (0, 0, 0);
    for (mode, lenient) in [("strict", false), ("lenient", true)] {
        let config = EngineConfig {
            globals: globals.clone(),
            lenient_scope_search: lenient,
            ..EngineConfig::default()
        };
        let store = PolicyStore::load(&corpus.join("planner/policies"), config).unwrap();
        let servers = start(store, ApiSettings::default()).await;
        let mut grpc = servers.grpc().await;
        let golden = json_file(&corpus.join(format!("golden/planner-{mode}.json")));
        let (mut mode_passed, mut mode_total) = (0, 0);
        for (key, want) in golden.as_object().unwrap() {
            mode_total += 1;
            let req = request_for(&corpus, key);
            let (status, body) = servers
                .http("POST", "/api/plan/resources", req.to_string().into_bytes())
                .await;
            let http_ok = status == 200
                && comparable(&body) == comparable(want)
                && debug_agrees(&body, want)
                && body["cerbosCallId"].as_str().is_some_and(|c| c.len() == 26);
            if http_ok && body["filter"] == want["filter"] {
                exact += 1;
            }
            let pb = decode_plan_resources(req.to_string().as_bytes()).unwrap();
            let grpc_body = match grpc.plan_resources(pb).await {
                Ok(r) => encode_plan_resources(&r.into_inner()),
                Err(s) => json!({"grpcError": s.message()}),
            };
            let grpc_ok =
                comparable(&grpc_body) == comparable(want) && debug_agrees(&grpc_body, want);
            if http_ok && grpc_ok {
                mode_passed += 1;
            } else {
                failures.push(format!(
                    "{key} ({mode})\n  want: {want}\n  http: {status} {body}\n  grpc: {grpc_body}"
                ));
            }
        }
        println!(
            "planner api {mode}: {mode_passed} passed, {} failed",
            mode_total - mode_passed
        );
        passed += mode_passed;
        total += mode_total;
        drop(servers);
    }
    for f in &failures {
        println!("MISMATCH {f}");
    }
    println!(
        "planner api: {passed} passed, {} failed ({exact} with byte-identical filters)",
        total - passed
    );
    assert!(total > 0, "no golden planner case ran");
    assert!(
        failures.is_empty(),
        "PlanResources differs from Cerbos 0.55 (see above)"
    );
}

/// Against the corpus's store with schema enforcement `reject` (as Cerbos's server tests
/// run it): the answers of the real Cerbos 0.55 to the same requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planner_api_schemas_and_meta() {
    let Some(corpus) = corpus_dir("planner api") else {
        return;
    };
    let config = EngineConfig {
        schema_enforcement: gatehouse::engine::SchemaEnforcement::Reject,
        ..EngineConfig::default()
    };
    let store = PolicyStore::load(&corpus.join("store"), config).unwrap();
    let servers = start(store, ApiSettings::default()).await;
    let principal = |department: &str| {
        json!({"id": "john", "roles": ["employee"], "policyVersion": "20210210",
               "attr": {"department": department, "geography": "GB", "team": "design"}})
    };
    let resource = json!({"kind": "leave_request", "policyVersion": "20210210"});
    let cases = [
        (
            json!({"action": "view:public", "principal": principal("marketing"), "resource": resource}),
            json!({"requestId": "x", "action": "view:public", "resourceKind": "leave_request",
                   "policyVersion": "20210210", "filter": {"kind": "KIND_ALWAYS_ALLOWED"},
                   "meta": {"filterDebug": "(true)"}}),
        ),
        (
            json!({"action": "approve", "principal": principal("marketing"), "resource": resource}),
            json!({"requestId": "x", "action": "approve", "resourceKind": "leave_request",
                   "policyVersion": "20210210", "filter": {"kind": "KIND_ALWAYS_DENIED"},
                   "meta": {"filterDebug": "NO_MATCH"}}),
        ),
        (
            json!({"actions": ["view:public", "approve"], "principal": principal("marketing"), "resource": resource}),
            json!({"requestId": "x", "actions": ["view:public", "approve"], "resourceKind": "leave_request",
                   "policyVersion": "20210210", "filter": {"kind": "KIND_ALWAYS_DENIED"},
                   "meta": {"filterDebug": "(false)", "matchedScopes": {"approve": "", "view:public": ""}}}),
        ),
        (
            json!({"action": "view:public", "principal": principal("accounting"),
                   "resource": {"kind": "leave_request", "policyVersion": "20210210", "attr": {"id": 5}}}),
            json!({"requestId": "x", "action": "view:public", "resourceKind": "leave_request",
                   "policyVersion": "20210210", "filter": {"kind": "KIND_ALWAYS_DENIED"},
                   "meta": {"filterDebug": "(false)"},
                   "validationErrors": [
                       {"path": "/department", "message": "value must be one of \"marketing\", \"engineering\"", "source": "SOURCE_PRINCIPAL"},
                       {"path": "/id", "message": "expected string, but got number", "source": "SOURCE_RESOURCE"}]}),
        ),
    ];
    for (mut req, want) in cases {
        req["requestId"] = json!("x");
        req["includeMeta"] = json!(true);
        let (status, mut body) = servers
            .http("POST", "/api/plan/resources", req.to_string().into_bytes())
            .await;
        assert_eq!(status, 200, "{req}: {body}");
        body.as_object_mut().unwrap().remove("cerbosCallId");
        assert_eq!(body, want, "{req}");
    }
}

/// Issue 14, bad input: an unknown kind, action or policy version is `KIND_ALWAYS_DENIED`
/// with `NO_MATCH` (as Cerbos answers; the generated diff in api_diff compares these with
/// the real Cerbos too), over HTTP and gRPC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planner_api_unknown_kind_action_or_version_is_always_denied() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let store = PolicyStore::load(&root.join("policies"), EngineConfig::default()).unwrap();
    let servers = start(store, ApiSettings::default()).await;
    let principal =
        json!({"id": "bob", "roles": ["manager"], "attr": {"department": "engineering"}});
    let known = json!({"requestId": "u", "includeMeta": true, "action": "read",
                       "principal": principal, "resource": {"kind": "document"}});
    let (status, body) = servers
        .http(
            "POST",
            "/api/plan/resources",
            known.to_string().into_bytes(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["filter"]["kind"], "KIND_CONDITIONAL", "{body}");
    let mut grpc = servers.grpc().await;
    for (field, value) in [
        (&["resource", "kind"][..], "no_such_kind"),
        (&["action"][..], "no_such_action"),
        (&["resource", "policyVersion"][..], "no_such_version"),
    ] {
        let mut req = known.clone();
        match field {
            [a, b] => req[a][b] = json!(value),
            [a] => req[a] = json!(value),
            _ => unreachable!(),
        }
        let (status, body) = servers
            .http("POST", "/api/plan/resources", req.to_string().into_bytes())
            .await;
        assert_eq!(status, 200, "{req}: {body}");
        assert_eq!(
            body["filter"],
            json!({"kind": "KIND_ALWAYS_DENIED"}),
            "{req}"
        );
        assert_eq!(body["meta"]["filterDebug"], "NO_MATCH", "{req}");
        let resp = grpc
            .plan_resources(decode_plan_resources(req.to_string().as_bytes()).unwrap())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            encode_plan_resources(&resp)["filter"],
            json!({"kind": "KIND_ALWAYS_DENIED"}),
            "gRPC {req}"
        );
    }
}
