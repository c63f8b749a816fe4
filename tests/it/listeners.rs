//! The listeners under slow and idle clients (slowloris): connection caps below the
//! descriptor limit and idle timeouts keep ext_authz deciding (issue 12, item 6).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::util::{Served, attribute_source, get_request};

const POLICY: &str = "apiVersion: api.cerbos.dev/v1\nresourcePolicy:\n  resource: doc\n  version: default\n  rules:\n    - actions: [read]\n      effect: EFFECT_ALLOW\n      roles: [user]\n      condition:\n        match:\n          expr: R.attr.ok == true\n";

fn lookup(id: &str) -> Option<&'static str> {
    (id == "1").then_some(r#"{"ok": true}"#)
}

/// Opens `n` connections to `port`; each sends `first` (possibly nothing) and then stays
/// silent. Connections the server's backlog cannot take are given up after a second.
async fn open_silent(port: u16, n: usize, first: &'static [u8]) -> Vec<TcpStream> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            tokio::spawn(async move {
                let mut s = tokio::time::timeout(
                    Duration::from_secs(1),
                    TcpStream::connect(("127.0.0.1", port)),
                )
                .await
                .ok()?
                .ok()?;
                s.write_all(first).await.ok()?;
                Some(s)
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        if let Ok(Some(s)) = t.await {
            out.push(s);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_idle_and_slow_connections_do_not_stop_ext_authz() {
    let attrs = attribute_source(lookup).await;
    let dir = std::env::temp_dir().join(format!("gh-slowloris-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(dir.join("policies/doc.yaml"), POLICY).unwrap();
    std::fs::write(
        dir.join("gatehouse.yaml"),
        format!(
            "policies: {{directory: policies}}\n\
             server:\n  connections: {{idleTimeoutMs: 1000}}\n\
             extAuthz:\n  principal:\n    sources: [{{headers: {{id: x-user, roles: x-roles}}}}]\n  \
             routes: [{{path: '/docs/{{id}}', resource: {{kind: doc, id: '{{id}}'}}, action: read, \
             attributes: {{fetch: {{url: 'http://{attrs}/attrs/{{id}}', timeoutMs: 2000, cacheTtlMs: 0}}}}}}]\n"
        ),
    )
    .unwrap();
    // 256 descriptors: before the connection caps, 2,000 connections used them all and
    // every attribute fetch (an outbound socket) failed, denying every request.
    let s = Served::start_with_fd_limit(&dir.join("gatehouse.yaml"), true, 256);
    let mut c = s.ext_authz().await;
    let check = |c: &mut gatehouse::extauthz::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient<tonic::transport::Channel>| {
        let mut c = c.clone();
        async move {
            let r = c
                .check(get_request("/docs/1", &[("x-user", "a"), ("x-roles", "user")]))
                .await
                .map(|r| r.into_inner().status.map(|s| s.code));
            matches!(r, Ok(Some(0)))
        }
    };
    assert!(check(&mut c).await, "allowed before the attack");

    // 2,000 attempts; the connections past the caps (64 per listener here) wait in the
    // kernel's backlog or time out, which is the point.
    let (idle, slow) = tokio::join!(
        open_silent(s.grpc, 1000, b""),
        open_silent(s.http, 1000, b"GET /health HTTP/1.1\r\nhost: x\r\n"),
    );
    assert!(
        idle.len() + slow.len() >= 128,
        "the attack did not connect: {} + {}",
        idle.len(),
        slow.len()
    );
    for i in 0..20 {
        assert!(check(&mut c).await, "check {i} failed during the attack");
    }
    // The idle and slow connections are closed by the idle timeout.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let reads: Vec<_> = idle
        .into_iter()
        .chain(slow)
        .map(|mut sock| {
            tokio::spawn(async move {
                let mut b = [0u8; 256];
                // Closed by the server: end of stream (or a reset).
                matches!(
                    tokio::time::timeout(Duration::from_millis(200), sock.read(&mut b)).await,
                    Ok(Ok(0) | Err(_))
                )
            })
        })
        .collect();
    let mut closed = 0;
    for r in reads {
        if r.await.unwrap() {
            closed += 1;
        }
    }
    assert!(closed > 0, "no idle connection was closed");
    assert!(check(&mut c).await, "allowed after the attack");
}

/// The gRPC listener bounds the header list of a call (HTTP/2 `SETTINGS_MAX_HEADER_LIST_SIZE`,
/// 16 KiB): a call whose headers are larger is refused before it reaches the decision, never
/// allowed, and the connection keeps serving ordinary calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grpc_listener_refuses_oversized_header_lists() {
    let dir = std::env::temp_dir().join(format!("gh-header-list-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(
        dir.join("policies/doc.yaml"),
        POLICY.replace(
            "      condition:\n        match:\n          expr: R.attr.ok == true\n",
            "",
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("gatehouse.yaml"),
        "policies: {directory: policies}\n\
         extAuthz:\n  principal:\n    sources: [{headers: {id: x-user, roles: x-roles}}]\n  \
         routes: [{path: '/docs/{id}', resource: {kind: doc, id: '{id}'}, action: read}]\n",
    )
    .unwrap();
    let s = Served::start(&dir.join("gatehouse.yaml"), true);
    let mut c = s.ext_authz().await;
    let call = |padding: usize| {
        let mut r = tonic::Request::new(get_request(
            "/docs/1",
            &[("x-user", "a"), ("x-roles", "user")],
        ));
        r.metadata_mut()
            .insert("x-padding", "a".repeat(padding).parse().unwrap());
        r
    };
    let code = |r: Result<
        tonic::Response<gatehouse::extauthz::pb::v3::CheckResponse>,
        tonic::Status,
    >| { r.map(|r| r.into_inner().status.map_or(-1, |s| s.code)) };
    assert_eq!(
        code(c.check(call(12 * 1024)).await).ok(),
        Some(0),
        "12 KiB of headers"
    );
    let refused = code(c.check(call(20 * 1024)).await);
    assert!(
        !matches!(refused, Ok(0)),
        "20 KiB of headers were let through: {refused:?}"
    );
    assert_eq!(
        code(c.check(call(0)).await).ok(),
        Some(0),
        "served afterwards"
    );
}
