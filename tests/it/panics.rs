//! The panic policy on a running `gatehouse serve` (issue 12, SECURITY.md): a panic in a
//! request handler fails that request closed (gRPC `INTERNAL`, which Envoy's ext_authz
//! turns into a denial; HTTP 500 with a generic body) and the server keeps serving the
//! next request, on the same connection too. The panic is provoked through the fault
//! injection hook (`src/fault.rs`), off unless the operator sets its secret.

use std::path::Path;

use crate::util::{Served, get_request, http_with_headers};

const POLICY: &str = "apiVersion: api.cerbos.dev/v1\nresourcePolicy:\n  resource: doc\n  version: default\n  rules:\n    - actions: [read]\n      effect: EFFECT_ALLOW\n      roles: [user]\n";

const CONFIG: &str = "policies: {directory: policies}\nextAuthz:\n  httpService: true\n  principal:\n    sources: [{headers: {id: x-user, roles: x-roles}}]\n  routes: [{path: '/docs/{id}', resource: {kind: doc, id: '{id}'}, action: read}]\n";

const SECRET: &str = "0123456789abcdef0123456789abcdef-panic";

fn served(name: &str, env: &[(&str, &Path)]) -> Served {
    let dir = std::env::temp_dir().join(format!("gh-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(dir.join("policies/doc.yaml"), POLICY).unwrap();
    std::fs::write(dir.join("gatehouse.yaml"), CONFIG).unwrap();
    Served::start_with_env(&dir.join("gatehouse.yaml"), true, env)
}

const USER: [(&str, &str); 2] = [("x-user", "u"), ("x-roles", "user")];

/// The gRPC status code of an ext_authz check, or the transport error's code.
async fn grpc_check(
    c: &mut gatehouse::extauthz::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient<
        tonic::transport::Channel,
    >,
    fault: Option<&str>,
) -> Result<i32, tonic::Code> {
    let mut headers = USER.to_vec();
    if let Some(f) = fault {
        headers.push(("x-gatehouse-fault", f));
    }
    c.check(get_request("/docs/1", &headers))
        .await
        .map(|r| r.into_inner().status.map_or(-1, |s| s.code))
        .map_err(|s| s.code())
}

async fn http_check(port: u16, fault: Option<&str>) -> (u16, String) {
    let mut headers = USER.to_vec();
    if let Some(f) = fault {
        headers.push(("x-gatehouse-fault", f));
    }
    http_with_headers(port, "GET", "/_gatehouse/authz/docs/1", &headers, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_a_panicking_handler_fails_closed_and_the_server_keeps_serving() {
    let mut s = served(
        "panic",
        &[("GATEHOUSE_FAULT_INJECTION_TOKEN", Path::new(SECRET))],
    );
    let mut c = s.ext_authz().await;
    assert_eq!(grpc_check(&mut c, None).await, Ok(0), "allowed before");
    assert_eq!(s.status().await["panics"], 0);

    // gRPC ext_authz: the panicking check is INTERNAL (Envoy denies), never OK.
    assert_eq!(
        grpc_check(&mut c, Some(SECRET)).await,
        Err(tonic::Code::Internal)
    );
    // The same connection, and new ones, keep being served.
    assert_eq!(grpc_check(&mut c, None).await, Ok(0), "allowed after");
    let mut fresh = s.ext_authz().await;
    assert_eq!(grpc_check(&mut fresh, None).await, Ok(0));
    // A wrong secret is an ordinary (stripped) header.
    assert_eq!(grpc_check(&mut c, Some("wrong")).await, Ok(0));

    // Envoy's HTTP ext_authz: 500 with the generic body, then service as usual.
    let (code, body) = http_check(s.http, Some(SECRET)).await;
    assert_eq!(code, 500, "{body}");
    assert_eq!(body, r#"{"code":13,"message":"internal error"}"#);
    let (code, body) = http_check(s.http, None).await;
    assert_eq!(code, 200, "{body}");

    // Many panics in a row, interleaved with checks: each one fails alone.
    for _ in 0..20 {
        assert_eq!(
            grpc_check(&mut c, Some(SECRET)).await,
            Err(tonic::Code::Internal)
        );
        assert_eq!(grpc_check(&mut c, None).await, Ok(0));
    }
    assert_eq!(s.status().await["panics"], 22);
    assert!(
        s.child.try_wait().unwrap().is_none(),
        "the server is still running"
    );
    assert_eq!(s.terminate().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_fault_injection_cannot_be_triggered_without_its_secret() {
    let s = served("nopanic", &[]);
    let mut c = s.ext_authz().await;
    for value in [SECRET, "1", "panic", ""] {
        assert_eq!(grpc_check(&mut c, Some(value)).await, Ok(0), "{value:?}");
        assert_eq!(http_check(s.http, Some(value)).await.0, 200, "{value:?}");
    }
    assert_eq!(s.status().await["panics"], 0);
}

#[tokio::test]
async fn issue_12_a_short_fault_injection_secret_stops_the_start() {
    let mut s = served(
        "weakpanic",
        &[("GATEHOUSE_FAULT_INJECTION_TOKEN", Path::new("short"))],
    );
    assert_eq!(
        s.wait_exit().await,
        Some(2),
        "exit code of a start-up error"
    );
}
