//! The Cerbos API's edges over HTTP and gRPC: routes, methods, health, server info, body
//! limits, protojson spellings, call ids and JWT failures, each answered as Cerbos answers.

use serde_json::json;

use gatehouse::api::pb::cerbos::request::v1::ServerInfoRequest;
use gatehouse::api::{ApiSettings, ServerInfo};
use gatehouse::engine::EngineConfig;
use gatehouse::store::PolicyStore;

use crate::api_server::{conformance_settings, start};
use crate::util::corpus_dir;

fn request() -> serde_json::Value {
    json!({
        "requestId": "r1",
        "principal": {"id": "john", "roles": ["employee"], "policyVersion": "20210210",
                      "attr": {"department": "marketing", "geography": "GB", "team": "design"}},
        "resources": [{"actions": ["view:public", "approve"], "resource": {
            "kind": "leave_request", "id": "XX125", "policyVersion": "20210210",
            "attr": {"department": "marketing", "geography": "GB", "id": "XX125", "owner": "john", "team": "design"}}}]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_http_routes_and_errors() {
    let Some(corpus) = corpus_dir("api-http") else {
        return;
    };
    let (store, settings) = conformance_settings(&corpus).await;
    let info = ServerInfo {
        version: "9.9.9".into(),
        commit: "abc".into(),
        build_date: "2026-01-01T00:00:00Z".into(),
    };
    let s = start(
        store,
        settings
            .with_server_info(info)
            .with_max_body_bytes(64 * 1024),
    )
    .await;

    let (status, body) = s.http("GET", "/_cerbos/health", Vec::new()).await;
    assert_eq!((status, body), (200, json!({"status": "SERVING"})));
    let (status, body) = s
        .http(
            "GET",
            "/_cerbos/health?service=cerbos.svc.v1.CerbosService",
            Vec::new(),
        )
        .await;
    assert_eq!((status, body), (200, json!({"status": "SERVING"})));
    let (status, body) = s
        .http("GET", "/_cerbos/health?service=nope", Vec::new())
        .await;
    assert_eq!(
        (status, body),
        (404, json!({"code": 5, "message": "unknown service"}))
    );
    let (status, body) = s.http("GET", "/api/server_info", Vec::new()).await;
    assert_eq!(
        (status, body),
        (
            200,
            json!({"version": "9.9.9", "commit": "abc", "buildDate": "2026-01-01T00:00:00Z"})
        )
    );
    let (status, body) = s.http("POST", "/api/nope", Vec::new()).await;
    assert_eq!(
        (status, body),
        (404, json!({"code": 5, "message": "Not Found"}))
    );
    let (status, body) = s.http("GET", "/api/check/resources", Vec::new()).await;
    assert_eq!(
        (status, body),
        (501, json!({"code": 12, "message": "Method Not Allowed"}))
    );

    // Decisions, snake_case input, call ids.
    let (status, a) = s.check_http(&request()).await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(
        a["results"][0]["actions"],
        json!({"approve": "EFFECT_DENY", "view:public": "EFFECT_ALLOW"})
    );
    let snake = json!({"request_id": "r2", "include_meta": true,
        "principal": request()["principal"], "resources": request()["resources"]});
    let (status, b) = s.check_http(&snake).await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["requestId"], "r2");
    assert_eq!(
        b["results"][0]["meta"]["actions"]["approve"]["matchedPolicy"],
        "resource.leave_request.v20210210"
    );
    let (ida, idb) = (
        a["cerbosCallId"].as_str().unwrap(),
        b["cerbosCallId"].as_str().unwrap(),
    );
    assert!(
        ida.len() == 26 && idb.len() == 26 && ida != idb,
        "{ida} {idb}"
    );

    // Malformed bodies.
    let (status, body) = s
        .http("POST", "/api/check/resources", b"{not json".to_vec())
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], 3);
    let (status, body) = s
        .http("POST", "/api/check/resources", br#"{"bogus":1}"#.to_vec())
        .await;
    assert_eq!(
        (status, body),
        (
            400,
            json!({"code": 3, "message": "proto: unknown field \"bogus\""})
        )
    );
    let (status, body) = s.http("POST", "/api/check/resources", Vec::new()).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["message"],
        "validation errors:\n - principal: value is required\n - resources: value is required"
    );
    let big = json!({"principal": {"id": "j", "roles": ["a"], "attr": {"x": "a".repeat(70_000)}}});
    let (status, body) = s.check_http(&big).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["code"], 8);

    // Tokens that do not verify.
    for aux in [
        json!({"jwt": {"token": "not.a.token", "keySetId": "cerbos"}}),
        json!({"jwt": {"token": "a.b.c", "keySetId": "missing"}}),
        json!({"jwts": {"t": {"token": "a.b.c"}}}),
    ] {
        let mut req = request();
        req["auxData"] = aux;
        let (status, body) = s.check_http(&req).await;
        assert_eq!(
            (status, body),
            (400, json!({"code": 3, "message": "invalid auxData"}))
        );
    }

    // gRPC ServerInfo.
    let mut grpc = s.grpc().await;
    let info = grpc
        .server_info(ServerInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (info.version.as_str(), info.commit.as_str()),
        ("9.9.9", "abc")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_without_key_sets_refuses_tokens_and_defaults_limits() {
    let Some(corpus) = corpus_dir("api-http") else {
        return;
    };
    let store = PolicyStore::load(&corpus.join("store"), EngineConfig::default()).unwrap();
    let settings = ApiSettings::default();
    assert_eq!((settings.max_resources, settings.max_actions), (50, 50));
    let s = start(store, settings).await;
    let mut req = request();
    req["auxData"] = json!({"jwt": {"token": "a.b.c"}});
    let (status, body) = s.check_http(&req).await;
    assert_eq!(
        (status, body),
        (400, json!({"code": 3, "message": "invalid auxData"}))
    );
    let mut req = request();
    req["resources"][0]["actions"] = json!((0..51).map(|i| format!("a{i}")).collect::<Vec<_>>());
    let (status, body) = s.check_http(&req).await;
    assert_eq!(
        (status, body),
        (
            400,
            json!({"code": 3, "message": "number of actions (51) exceeds configured limit (50)"})
        )
    );
}

/// 100,000 distinct names, the last one repeated: before the counts were checked first, the
/// quadratic uniqueness rule ran over all of them and answered with its own violation.
fn many_names(prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = (0..100_000).map(|i| format!("{prefix}{i}")).collect();
    names.push(names[names.len() - 1].clone());
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_oversized_requests_refused_before_per_item_work() {
    use gatehouse::api::pb::cerbos::engine::v1::{Principal, Resource};
    use gatehouse::api::pb::cerbos::request::v1::CheckResourcesRequest;
    use gatehouse::api::pb::cerbos::request::v1::check_resources_request::ResourceEntry;

    let Some(corpus) = corpus_dir("api-http") else {
        return;
    };
    let store = PolicyStore::load(&corpus.join("store"), EngineConfig::default()).unwrap();
    let s = start(store, ApiSettings::default()).await;
    let actions_error =
        json!({"code": 3, "message": "number of actions (100001) exceeds configured limit (50)"});
    let roles_error = json!({"code": 3, "message": "number of principal roles (100001) exceeds configured limit (500)"});

    let mut req = request();
    req["resources"][0]["actions"] = json!(many_names("a"));
    assert_eq!(s.check_http(&req).await, (400, actions_error.clone()));
    let mut req = request();
    req["principal"]["roles"] = json!(many_names("r"));
    assert_eq!(s.check_http(&req).await, (400, roles_error.clone()));
    let mut req = request();
    let values: Vec<i32> = (0..20_001).collect();
    req["principal"]["attr"]["big"] = json!(values);
    assert_eq!(
        s.check_http(&req).await,
        (
            400,
            json!({"code": 3, "message": "number of attribute values exceeds configured limit (20000)"})
        )
    );
    // Within the limits the same request shapes are decided.
    let (status, _) = s.check_http(&request()).await;
    assert_eq!(status, 200);

    let grpc_request = |roles: Vec<String>, actions: Vec<String>| CheckResourcesRequest {
        request_id: "r1".into(),
        principal: Some(Principal {
            id: "john".into(),
            roles,
            ..Default::default()
        }),
        resources: vec![ResourceEntry {
            actions,
            resource: Some(Resource {
                kind: "leave_request".into(),
                id: "XX125".into(),
                ..Default::default()
            }),
        }],
        ..Default::default()
    };
    let mut client = s.grpc().await;
    for (req, expected) in [
        (
            grpc_request(vec!["employee".into()], many_names("a")),
            &actions_error,
        ),
        (
            grpc_request(many_names("r"), vec!["view".into()]),
            &roles_error,
        ),
    ] {
        let status = client.check_resources(req).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(status.message(), expected["message"]);
    }
}
