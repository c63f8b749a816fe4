//! The ext_authz gRPC service with hand-built CheckRequests, over a real tonic
//! connection on 127.0.0.1, against the demo policies and a local attribute source.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use gatehouse::extauthz::pb::envoy::config::core::v3::Metadata;
use gatehouse::extauthz::pb::envoy::service::auth::v3::attribute_context::Peer;
use gatehouse::extauthz::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use gatehouse::extauthz::pb::envoy::service::auth::v3::check_response::HttpResponse;
use gatehouse::extauthz::pb::envoy::service::auth::v3::{CheckRequest, CheckResponse};
use gatehouse::extauthz::pb::google::protobuf::{Struct, Value as PbValue, value::Kind};
use tokio::net::TcpListener;

use gatehouse::engine::EngineConfig;
use gatehouse::extauthz::{self, ExtAuthzConfig};
use gatehouse::store::PolicyStore;

/// Attributes of the documents the local attribute source knows.
fn document(id: &str) -> Option<&'static str> {
    match id {
        "1" => Some(
            r#"{"owner":"alice","department":"engineering","status":"draft","classification":"internal","amount":10,"archived":false}"#,
        ),
        "2" => Some(
            r#"{"owner":"alice","department":"engineering","status":"in_review","classification":"internal","amount":5000,"archived":false}"#,
        ),
        "3" => Some(
            r#"{"owner":"carol","department":"sales","status":"in_review","classification":"internal","amount":100,"archived":false}"#,
        ),
        _ => None,
    }
}

/// A tiny HTTP server answering `GET /attrs/{id}`.
async fn attribute_source() -> SocketAddr {
    crate::util::attribute_source(document).await
}

fn config(attrs: SocketAddr) -> ExtAuthzConfig {
    config_with(attrs, "")
}

/// [`config`] with `extra` (top-level keys of the section) added.
fn config_with(attrs: SocketAddr, extra: &str) -> ExtAuthzConfig {
    let yaml = format!(
        r#"
{extra}
headerPrefix: x-gatehouse-
principal:
  sources:
    - jwtAuthn: {{namespace: envoy.filters.http.jwt_authn}}
    - mtls: {{roles: [service]}}
    - headers: {{id: x-dev-user, roles: x-dev-roles}}
  claims: {{id: sub, roles: roles, attr: [department, clearances, approval_limit]}}
routes:
  - path: /health
    public: true
  - path: /documents
    methods: [POST]
    resource: {{kind: document, id: new}}
    action: create
    attributes: {{body: [department]}}
  - path: /documents/{{id}}
    resource: {{kind: document, id: "{{id}}"}}
    attributes:
      fetch: {{url: "http://{attrs}/attrs/{{id}}", timeoutMs: 500, cacheTtlMs: 0}}
  - path: /documents/{{id}}/approve
    methods: [POST]
    resource: {{kind: document, id: "{{id}}"}}
    action: approve
    attributes:
      fetch: {{url: "http://{attrs}/attrs/{{id}}", timeoutMs: 500}}
  - path: /meta/{{id}}
    methods: [GET]
    resource: {{kind: document, id: "{{id}}"}}
    attributes: {{routeMetadata: [owner, department], contextExtensions: [classification]}}
  - path: /lean/{{id}}
    resource: {{kind: document, id: "{{id}}"}}
    backendHeaders: [principal]
    attributes:
      fetch: {{url: "http://{attrs}/attrs/{{id}}", timeoutMs: 500, cacheTtlMs: 0}}
  - path: /records/{{id}}
    resource: {{kind: document, id: "{{id}}"}}
    attributes:
      fetch: {{url: "http://{attrs}/attrs/{{id}}", timeoutMs: 500, answerNotFound: true}}
  - path: /broken/{{id}}
    resource: {{kind: document, id: "{{id}}"}}
    attributes:
      fetch: {{url: "http://127.0.0.1:1/attrs/{{id}}", timeoutMs: 200}}
"#
    );
    serde_saphyr::from_str(&yaml).unwrap()
}

async fn start() -> AuthorizationClient<tonic::transport::Channel> {
    start_with("").await
}

/// The service with `extra` (YAML keys of the `extAuthz` section) added to [`config`].
async fn start_with(extra: &str) -> AuthorizationClient<tonic::transport::Channel> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let store =
        Arc::new(PolicyStore::load(&root.join("policies"), EngineConfig::default()).unwrap());
    let attrs = attribute_source().await;
    let service = extauthz::build(&config_with(attrs, extra), store, root)
        .await
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            // The service as `gatehouse serve` serves it: its own codec writes the
            // CheckResponse straight from the answer.
            .add_service(extauthz::CheckServer::new(extauthz::LiveExtAuthz::new(
                service,
            )))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
            .unwrap();
    });
    AuthorizationClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
}

fn request(method: &str, path: &str, headers: &[(&str, &str)]) -> CheckRequest {
    crate::util::with_request_id(crate::util::check_request(method, path, headers), "req-1")
}

fn user<'a>(id: &'a str, roles: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![("x-dev-user", id), ("x-dev-roles", roles)]
}

async fn check(
    client: &mut AuthorizationClient<tonic::transport::Channel>,
    r: CheckRequest,
) -> CheckResponse {
    client.check(r).await.unwrap().into_inner()
}

fn ok_headers(resp: &CheckResponse) -> HashMap<String, String> {
    match &resp.http_response {
        Some(HttpResponse::OkResponse(ok)) => ok
            .headers
            .iter()
            .filter_map(|h| h.header.as_ref().map(|h| (h.key.clone(), h.value.clone())))
            .collect(),
        other => panic!("expected OK, got {other:?}"),
    }
}

fn denied(resp: &CheckResponse) -> (i32, serde_json::Value, HashMap<String, String>) {
    match &resp.http_response {
        Some(HttpResponse::DeniedResponse(d)) => (
            d.status.as_ref().map_or(0, |s| s.code),
            serde_json::from_str(&d.body).unwrap(),
            d.headers
                .iter()
                .filter_map(|h| h.header.as_ref().map(|h| (h.key.clone(), h.value.clone())))
                .collect(),
        ),
        other => panic!("expected a denial, got {other:?}"),
    }
}

#[tokio::test]
async fn owner_allowed_with_trusted_headers_and_spoofs_removed() {
    let mut c = start().await;
    let mut h = user("alice", "user");
    h.push(("x-gatehouse-principal", "admin"));
    h.push(("x-gatehouse-extra", "forged"));
    let resp = check(&mut c, request("PUT", "/documents/1", &h)).await;
    assert_eq!(resp.status.as_ref().unwrap().code, 0);
    let headers = ok_headers(&resp);
    assert_eq!(headers["x-gatehouse-principal"], "alice");
    assert_eq!(headers["x-gatehouse-roles"], "user");
    assert!(headers["x-gatehouse-derived-roles"].contains("owner"));
    assert_eq!(headers["x-gatehouse-decision-id"].len(), 28);
    let Some(HttpResponse::OkResponse(ok)) = &resp.http_response else {
        unreachable!()
    };
    assert!(
        ok.headers.iter().all(|h| h.append_action == 2),
        "every header overwrites"
    );
    assert_eq!(ok.headers_to_remove, vec!["x-gatehouse-extra".to_string()]);
    // envoyMetadata's default: no dynamic metadata on allow (the decision id is in the
    // header above).
    assert_eq!(resp.dynamic_metadata, None);
}

/// `envoyMetadata`: which answers carry Envoy dynamic metadata (none, denials by
/// default, all); the decision id is in the headers whatever the choice.
#[tokio::test]
async fn issue_15_envoy_metadata_as_configured() {
    let meta = |r: &CheckResponse| {
        r.dynamic_metadata.as_ref().map(|m| {
            let mut keys: Vec<&str> = m.fields.keys().map(String::as_str).collect();
            keys.sort_unstable();
            keys.join(",")
        })
    };
    for (extra, on_allow, on_deny) in [
        ("", None, Some("decision_id,effect,policy,reason")),
        (
            "envoyMetadata: deny",
            None,
            Some("decision_id,effect,policy,reason"),
        ),
        (
            "envoyMetadata: all",
            Some("decision_id,effect,principal"),
            Some("decision_id,effect,policy,reason"),
        ),
        ("envoyMetadata: none", None, None),
    ] {
        let mut c = start_with(extra).await;
        let allowed = check(
            &mut c,
            request("PUT", "/documents/1", &user("alice", "user")),
        )
        .await;
        assert_eq!(ok_headers(&allowed)["x-gatehouse-decision-id"].len(), 28);
        assert_eq!(meta(&allowed).as_deref(), on_allow, "{extra}");
        let refused = check(
            &mut c,
            request("PUT", "/documents/1", &user("carol", "user")),
        )
        .await;
        assert_eq!(denied(&refused).0, 403);
        assert_eq!(meta(&refused).as_deref(), on_deny, "{extra}");
    }
    let bad = serde_saphyr::from_str::<ExtAuthzConfig>("envoyMetadata: allow");
    assert!(bad.is_err());
}

/// A principal without attributes (the dev headers source has none) gets no
/// `principal-attr` header (absent is empty to the backend), and a client-sent copy is
/// still removed.
#[tokio::test]
async fn issue_15_empty_principal_headers_are_not_sent_and_forged_ones_removed() {
    let mut c = start().await;
    let mut h = user("alice", "user");
    h.push(("x-gatehouse-principal-attr", "{\"department\":\"it\"}"));
    let resp = check(&mut c, request("GET", "/documents/2", &h)).await;
    let headers = ok_headers(&resp);
    assert_eq!(headers["x-gatehouse-principal"], "alice");
    assert_eq!(headers["x-gatehouse-roles"], "user");
    assert!(
        !headers.contains_key("x-gatehouse-principal-attr"),
        "{headers:?}"
    );
    let Some(HttpResponse::OkResponse(ok)) = &resp.http_response else {
        unreachable!()
    };
    assert_eq!(ok.headers_to_remove, ["x-gatehouse-principal-attr"]);
}

/// A route's `backendHeaders` limits what its backend gets; client-sent copies of the
/// headers left out are removed all the same.
#[tokio::test]
async fn issue_15_a_route_sends_only_its_backend_headers() {
    let mut c = start().await;
    let mut h = user("alice", "user");
    h.push(("x-gatehouse-roles", "admin"));
    h.push(("x-gatehouse-decision-id", "forged"));
    let resp = check(&mut c, request("GET", "/lean/2", &h)).await;
    let headers = ok_headers(&resp);
    assert_eq!(headers.len(), 1, "{headers:?}");
    assert_eq!(headers["x-gatehouse-principal"], "alice");
    let Some(HttpResponse::OkResponse(ok)) = &resp.http_response else {
        unreachable!()
    };
    let mut removed = ok.headers_to_remove.clone();
    removed.sort_unstable();
    assert_eq!(removed, ["x-gatehouse-decision-id", "x-gatehouse-roles"]);
    // The same document on a route without the key: every header.
    let resp = check(&mut c, request("GET", "/documents/2", &h)).await;
    let headers = ok_headers(&resp);
    assert_eq!(headers["x-gatehouse-roles"], "user");
    assert_eq!(headers["x-gatehouse-decision-id"].len(), 28);
}

#[tokio::test]
async fn non_owner_denied_with_fastapi_body() {
    let mut c = start().await;
    let resp = check(
        &mut c,
        request("PUT", "/documents/1", &user("carol", "user")),
    )
    .await;
    let (status, body, headers) = denied(&resp);
    assert_eq!(status, 403);
    // The client learns the status, a generic reason and the decision id (issue 12);
    // the details stay with Envoy's status message and the decision log.
    assert_eq!(
        body,
        serde_json::json!({"detail": "forbidden", "decision_id": headers["x-gatehouse-decision-id"]})
    );
    assert_eq!(headers["content-type"], "application/json");
    let status = resp.status.unwrap();
    assert_eq!(status.code, 7);
    assert!(
        status.message.contains("carol may not update document"),
        "{}",
        status.message
    );
}

#[tokio::test]
async fn issue_12_deny_details_only_with_the_development_switch() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let store =
        Arc::new(PolicyStore::load(&root.join("policies"), EngineConfig::default()).unwrap());
    let attrs = attribute_source().await;
    let mut cfg = config(attrs);
    for (details, problem) in [(false, false), (false, true), (true, false)] {
        cfg.deny_details = details;
        cfg.deny_body = if problem {
            gatehouse::extauthz::config::DenyBody::Problem
        } else {
            gatehouse::extauthz::config::DenyBody::Fastapi
        };
        let service = extauthz::build(&cfg, store.clone(), root).await.unwrap();
        // The attribute source is down: the internal error must not reach the client.
        let resp = service
            .decide(&request("GET", "/broken/1", &user("root", "admin")))
            .await;
        let (status, body, headers) = denied(&resp);
        assert_eq!(status, 403);
        let id = &headers["x-gatehouse-decision-id"];
        assert_eq!(body["decision_id"], serde_json::json!(id), "{body}");
        let detail = body["detail"].as_str().unwrap();
        if details {
            assert!(detail.contains("resource attributes unavailable"), "{body}");
        } else {
            assert_eq!(detail, "forbidden", "{body}");
        }
    }
}

#[tokio::test]
async fn manager_approves_only_in_own_department() {
    let mut c = start().await;
    let bob = [("x-dev-user", "bob"), ("x-dev-roles", "manager")];
    // The dev-header source carries no attributes: bob's department comes from a JWT in
    // production; here jwt_authn metadata supplies it.
    let mut req = request("POST", "/documents/2/approve", &bob);
    let claims = Struct {
        fields: [
            ("sub".to_string(), s("bob")),
            (
                "roles".to_string(),
                PbValue {
                    kind: Some(Kind::ListValue(
                        gatehouse::extauthz::pb::google::protobuf::ListValue {
                            values: vec![s("manager")],
                        },
                    )),
                },
            ),
            ("department".to_string(), s("engineering")),
            (
                "approval_limit".to_string(),
                PbValue {
                    kind: Some(Kind::NumberValue(10000.0)),
                },
            ),
        ]
        .into_iter()
        .collect(),
    };
    let md = Metadata {
        filter_metadata: [(
            "envoy.filters.http.jwt_authn".to_string(),
            Struct {
                fields: [(
                    "jwt_payload".to_string(),
                    PbValue {
                        kind: Some(Kind::StructValue(claims)),
                    },
                )]
                .into_iter()
                .collect(),
            },
        )]
        .into_iter()
        .collect(),
        ..Default::default()
    };
    req.attributes.as_mut().unwrap().metadata_context = Some(md.clone());
    let resp = check(&mut c, req).await;
    let headers = ok_headers(&resp);
    assert_eq!(headers["x-gatehouse-principal"], "bob");
    let attr: serde_json::Value =
        serde_json::from_str(&headers["x-gatehouse-principal-attr"]).unwrap();
    assert_eq!(attr["department"], "engineering");

    let mut req = request("POST", "/documents/3/approve", &bob);
    req.attributes.as_mut().unwrap().metadata_context = Some(md);
    assert_eq!(denied(&check(&mut c, req).await).0, 403);
}

fn s(v: &str) -> PbValue {
    PbValue {
        kind: Some(Kind::StringValue(v.into())),
    }
}

#[tokio::test]
async fn no_identity_is_401_with_challenge() {
    let mut c = start().await;
    let (status, body, headers) = denied(&check(&mut c, request("GET", "/documents/1", &[])).await);
    assert_eq!(status, 401);
    assert_eq!(body["detail"], "authentication required");
    assert!(headers["www-authenticate"].starts_with("Bearer"));
}

#[tokio::test]
async fn mtls_peer_is_a_principal() {
    let mut c = start().await;
    let mut req = request("GET", "/documents/1", &[]);
    req.attributes.as_mut().unwrap().source = Some(Peer {
        principal: "spiffe://example.test/ns/default/sa/reporting".into(),
        ..Default::default()
    });
    // The `service` role has no rights on documents: a decided 403, not a 401.
    assert_eq!(denied(&check(&mut c, req).await).0, 403);
}

#[tokio::test]
async fn unmatched_routes_and_path_tricks_are_denied() {
    let mut c = start().await;
    let admin = user("root", "admin");
    assert_eq!(
        denied(&check(&mut c, request("GET", "/documents/1/secrets", &admin)).await).0,
        403
    );
    assert_eq!(
        denied(
            &check(
                &mut c,
                request("GET", "/internal/documents/1/attributes", &admin)
            )
            .await
        )
        .0,
        403
    );
    for trick in [
        "/documents/../internal/x",
        "/documents/%2e%2e/x",
        "//documents/1",
        "/documents/1%00",
        "/documents/%zz",
    ] {
        let (status, _, _) = denied(&check(&mut c, request("GET", trick, &admin)).await);
        assert_eq!(status, 400, "{trick}");
    }
    // An encoded slash is a real slash to the app too: no route matches.
    assert_eq!(
        denied(&check(&mut c, request("GET", "/documents/1%2Fsecrets", &admin)).await).0,
        403
    );
    // Trailing slash and query strings map to the same resource.
    let resp = check(&mut c, request("GET", "/documents/1/?x=1", &admin)).await;
    assert_eq!(ok_headers(&resp)["x-gatehouse-principal"], "root");
}

#[tokio::test]
async fn attribute_source_failure_denies() {
    let mut c = start().await;
    let resp = check(&mut c, request("GET", "/broken/1", &user("root", "admin"))).await;
    let (status, body, _) = denied(&resp);
    assert_eq!(status, 403);
    assert_eq!(body["detail"], "forbidden");
    let message = resp.status.unwrap().message;
    assert!(
        message.contains("resource attributes unavailable"),
        "{message}"
    );
    // An unknown document: the source answers 404, the request is denied.
    assert_eq!(
        denied(
            &check(
                &mut c,
                request("GET", "/documents/99", &user("root", "admin"))
            )
            .await
        )
        .0,
        403
    );
}

#[tokio::test]
async fn issue_18_a_route_may_answer_404_for_a_missing_record() {
    let mut c = start().await;
    // Opted in: the source's 404 is the answer, with a generic body.
    let resp = check(
        &mut c,
        request("GET", "/records/99", &user("root", "admin")),
    )
    .await;
    let (status, body, _) = denied(&resp);
    assert_eq!(status, 404);
    assert_eq!(body["detail"], "not found");
    assert_eq!(resp.status.unwrap().code, 5, "gRPC NOT_FOUND");
    // Existing records are still decided by the policies.
    let resp = check(&mut c, request("GET", "/records/1", &user("alice", "user"))).await;
    ok_headers(&resp);
    let resp = check(&mut c, request("GET", "/records/3", &user("alice", "user"))).await;
    assert_eq!(denied(&resp).0, 403);
    // Without the opt-in (the default), a missing record is a 403 like any denial.
    let resp = check(
        &mut c,
        request("GET", "/documents/99", &user("root", "admin")),
    )
    .await;
    assert_eq!(denied(&resp).0, 403);
    // An unauthenticated caller learns nothing: 401 before any fetch.
    let resp = check(&mut c, request("GET", "/records/99", &[])).await;
    assert_eq!(denied(&resp).0, 401);
}

#[tokio::test]
async fn public_routes_and_body_attributes() {
    let mut c = start().await;
    let resp = check(
        &mut c,
        request("GET", "/health", &[("x-gatehouse-principal", "forged")]),
    )
    .await;
    let Some(HttpResponse::OkResponse(ok)) = &resp.http_response else {
        panic!("{resp:?}")
    };
    assert_eq!(
        ok.headers_to_remove,
        vec!["x-gatehouse-principal".to_string()]
    );

    let mut req = request("POST", "/documents", &user("alice", "user"));
    req.attributes
        .as_mut()
        .unwrap()
        .request
        .as_mut()
        .unwrap()
        .http
        .as_mut()
        .unwrap()
        .body = r#"{"department":"engineering","title":"x"}"#.into();
    assert_eq!(
        ok_headers(&check(&mut c, req).await)["x-gatehouse-principal"],
        "alice"
    );

    let mut req = request("POST", "/documents", &user("alice", "user"));
    req.attributes
        .as_mut()
        .unwrap()
        .request
        .as_mut()
        .unwrap()
        .http
        .as_mut()
        .unwrap()
        .body = "not json".into();
    assert_eq!(denied(&check(&mut c, req).await).0, 400);

    let mut req = request(
        "POST",
        "/documents",
        &[
            ("x-dev-user", "alice"),
            ("x-envoy-auth-partial-body", "true"),
        ],
    );
    req.attributes
        .as_mut()
        .unwrap()
        .request
        .as_mut()
        .unwrap()
        .http
        .as_mut()
        .unwrap()
        .body = "{".into();
    assert_eq!(denied(&check(&mut c, req).await).0, 413);
}

#[tokio::test]
async fn malformed_check_requests_are_denied() {
    let mut c = start().await;
    let resp = check(&mut c, CheckRequest { attributes: None }).await;
    assert_eq!(denied(&resp).0, 400);
}

#[tokio::test]
async fn route_metadata_and_context_extensions_become_attributes() {
    let mut c = start().await;
    let with_metadata = || {
        let mut req = request("GET", "/meta/7", &user("alice", "user"));
        let a = req.attributes.as_mut().unwrap();
        a.context_extensions
            .insert("classification".into(), "internal".into());
        a.route_metadata_context = Some(Metadata {
            filter_metadata: [(
                "gatehouse".to_string(),
                Struct {
                    fields: [
                        ("owner".to_string(), s("alice")),
                        ("department".to_string(), s("engineering")),
                    ]
                    .into_iter()
                    .collect(),
                },
            )]
            .into_iter()
            .collect(),
            ..Default::default()
        });
        req
    };
    // The owner (from route metadata) may read...
    assert_eq!(
        ok_headers(&check(&mut c, with_metadata()).await)["x-gatehouse-principal"],
        "alice"
    );
    // ...and without the metadata there is no owner: denied.
    assert_eq!(
        denied(&check(&mut c, request("GET", "/meta/7", &user("alice", "user"))).await).0,
        403
    );
}
