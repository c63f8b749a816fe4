//! The admin surface (issue 12, item 7): status, metrics and the assertion JWKS on their
//! own listener; the Cerbos API can be turned off; metric labels come from the policy
//! set; and HTTP/1 request heads must arrive within the header-read timeout (item 6).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::util::{Served, http, within};

const POLICY: &str = "apiVersion: api.cerbos.dev/v1\nresourcePolicy:\n  resource: doc\n  version: default\n  rules:\n    - actions: [view]\n      effect: EFFECT_ALLOW\n      roles: [user]\n";

const CONFIG: &str = "policies: {directory: policies}\nextAuthz:\n  principal:\n    sources: [{headers: {id: x-user, roles: x-roles}}]\n  routes: [{path: '/docs/{id}', resource: {kind: doc, id: '{id}'}}]\n";

fn check_body(kind: &str, action: &str) -> String {
    format!(
        r#"{{"requestId":"r","principal":{{"id":"u","roles":["user"]}},"resources":[{{"resource":{{"kind":"{kind}","id":"1"}},"actions":["{action}"]}}]}}"#
    )
}

async fn up(s: &Served) {
    s.http_up().await;
    let admin = s.admin;
    let ok = within(Duration::from_secs(10), || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", admin))
            .await
            .is_ok()
    })
    .await;
    assert!(ok.is_some(), "admin listener did not start");
}

#[tokio::test]
async fn issue_12_status_and_metrics_only_on_the_admin_listener() {
    let s = Served::in_scratch_dir("admin-split", POLICY, CONFIG);
    up(&s).await;
    for path in ["/metrics", "/_gatehouse/status", "/_gatehouse/jwks.json"] {
        let (code, _) = http(s.http, "GET", path, None).await;
        assert_eq!(code, 404, "{path} must not be on the HTTP listener");
    }
    for path in ["/health", "/_cerbos/health"] {
        assert_eq!(http(s.http, "GET", path, None).await.0, 200, "{path}");
    }
    assert_eq!(http(s.admin, "GET", "/health", None).await.0, 200);
    let (code, metrics) = http(s.admin, "GET", "/metrics", None).await;
    assert_eq!(code, 200);
    assert!(metrics.contains("gatehouse_policies_loaded"), "{metrics}");
    assert!(s.status().await["revision"].is_string());
    // The Cerbos API is still served on the HTTP listener (cerbosApi: enabled).
    let (code, body) = http(
        s.http,
        "POST",
        "/api/check/resources",
        Some(&check_body("doc", "view")),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("EFFECT_ALLOW"), "{body}");
}

#[tokio::test]
async fn issue_12_metric_labels_come_from_the_policy_set() {
    let s = Served::in_scratch_dir("admin-labels", POLICY, CONFIG);
    up(&s).await;
    // 300 made-up kinds and actions from an unauthenticated caller, then known ones.
    for i in 0..300 {
        let (kind, action) = match i % 3 {
            0 => (format!("kind{i}"), "view".to_string()),
            1 => ("doc".to_string(), format!("action{i}")),
            _ => (format!("kind{i}"), format!("action{i}")),
        };
        let (code, body) = http(
            s.http,
            "POST",
            "/api/check/resources",
            Some(&check_body(&kind, &action)),
        )
        .await;
        assert_eq!(code, 200, "{body}");
    }
    http(
        s.http,
        "POST",
        "/api/check/resources",
        Some(&check_body("doc", "view")),
    )
    .await;
    let mut ext = s.ext_authz().await;
    for path in ["/docs/1", "/docs/2"] {
        let mut r = crate::util::get_request(path, &[("x-user", "u"), ("x-roles", "user")]);
        if let Some(h) = r
            .attributes
            .as_mut()
            .and_then(|a| a.request.as_mut())
            .and_then(|r| r.http.as_mut())
        {
            h.method = "FROB".into();
        }
        ext.check(r).await.unwrap();
    }
    let (_, metrics) = http(s.admin, "GET", "/metrics", None).await;
    let series: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("gatehouse_decisions_total{"))
        .collect();
    assert!(
        series
            .iter()
            .all(|l| !l.contains("kind1") && !l.contains("action1")),
        "{series:#?}"
    );
    let has = |needle: &str| series.iter().any(|l| l.contains(needle));
    assert!(
        has(r#"effect="allow",kind="doc",action="view",origin="api"} 1"#),
        "{series:#?}"
    );
    assert!(
        has(r#"effect="deny",kind="other",action="other",origin="api"} 200"#),
        "{series:#?}"
    );
    assert!(
        has(r#"effect="deny",kind="doc",action="other",origin="api"} 100"#),
        "{series:#?}"
    );
    assert!(
        has(r#"kind="doc",action="other",origin="ext_authz"} 2"#),
        "{series:#?}"
    );
    assert!(series.len() <= 6, "{series:#?}");
}

#[tokio::test]
async fn issue_12_cerbos_api_can_be_turned_off() {
    let s = Served::in_scratch_dir(
        "admin-api-off",
        POLICY,
        &format!("server: {{cerbosApi: disabled}}\n{CONFIG}"),
    );
    up(&s).await;
    let (code, _) = http(
        s.http,
        "POST",
        "/api/check/resources",
        Some(&check_body("doc", "view")),
    )
    .await;
    assert_eq!(code, 404);
    assert_eq!(http(s.http, "GET", "/_cerbos/health", None).await.0, 200);
    // gRPC: the Cerbos service is gone, ext_authz and health stay.
    let mut ext = s.ext_authz().await;
    let r = crate::util::get_request("/docs/1", &[("x-user", "u"), ("x-roles", "user")]);
    assert!(ext.check(r).await.is_ok());
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{}", s.grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut cerbos =
        gatehouse::api::pb::cerbos::svc::v1::cerbos_service_client::CerbosServiceClient::new(
            channel,
        );
    let e = cerbos
        .server_info(gatehouse::api::pb::cerbos::request::v1::ServerInfoRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unimplemented, "{e:?}");
}

#[tokio::test]
async fn issue_12_slow_request_heads_are_cut_off() {
    let s = Served::in_scratch_dir(
        "admin-slow-head",
        POLICY,
        &format!(
            "server: {{connections: {{headerReadTimeoutMs: 500, idleTimeoutMs: 60000}}}}\n{CONFIG}"
        ),
    );
    up(&s).await;
    // One byte every 100 ms: never idle, but the head never completes in time.
    let mut slow = tokio::net::TcpStream::connect(("127.0.0.1", s.http))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let head = b"GET /_cerbos/health HTTP/1.1\r\nhost: x\r\nx-padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut closed_after = None;
    for b in head {
        if slow.write_all(&[*b]).await.is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        let mut buf = [0u8; 256];
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(100), slow.read(&mut buf)).await {
            // The server answers 408 or simply closes; either way the connection ends.
            let n = r.unwrap_or(0);
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            assert!(n == 0 || text.starts_with("HTTP/1.1 408"), "{text}");
            closed_after = Some(started.elapsed());
            break;
        }
    }
    let t = closed_after.expect("a request head trickled in over 10 s was still accepted");
    assert!(t < Duration::from_secs(3), "closed after {t:?}");
    // A normal client is served meanwhile.
    assert_eq!(http(s.http, "GET", "/_cerbos/health", None).await.0, 200);
}
