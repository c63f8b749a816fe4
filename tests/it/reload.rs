//! Hot reload of a running `gatehouse serve`: edits take effect, bad edits never
//! replace the last good set, and reloads under load lose no decision.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::util::{free_port, http, within};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};

const ALLOW: &str = "apiVersion: api.cerbos.dev/v1\nresourcePolicy:\n  resource: doc\n  version: default\n  rules:\n    - actions: [read]\n      effect: EFFECT_ALLOW\n      roles: [user]\n";

struct Server {
    child: Child,
    grpc: u16,
    http: u16,
    dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start(name: &str) -> Server {
    start_with(name, "")
}

/// Starts a server whose routes are `/docs/{id}` plus `extra_routes` (YAML flow items).
fn start_with(name: &str, extra_routes: &str) -> Server {
    let dir = std::env::temp_dir().join(format!("gh-reload-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(dir.join("policies/doc.yaml"), ALLOW).unwrap();
    std::fs::write(
        dir.join("gatehouse.yaml"),
        "policies: {directory: policies, watchIntervalMs: 100}\n\
         extAuthz:\n  principal:\n    sources: [{headers: {id: x-user, roles: x-roles}}]\n  \
         routes: [{path: '/docs/{id}', resource: {kind: doc, id: '{id}'}}EXTRA]\n"
            .replace("EXTRA", extra_routes),
    )
    .unwrap();
    let (grpc, http) = (free_port(), free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["serve", "--config"])
        .arg(dir.join("gatehouse.yaml"))
        .args([
            "--grpc-addr",
            &format!("127.0.0.1:{grpc}"),
            "--http-addr",
            &format!("127.0.0.1:{http}"),
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Server {
        child,
        grpc,
        http,
        dir,
    }
}

fn request() -> CheckRequest {
    request_to("/docs/1")
}

fn request_to(path: &str) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    method: "GET".into(),
                    path: path.into(),
                    headers: [
                        ("x-user".to_string(), "a".to_string()),
                        ("x-roles".to_string(), "user".to_string()),
                    ]
                    .into_iter()
                    .collect(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

async fn connect(s: &Server) -> AuthorizationClient<tonic::transport::Channel> {
    for _ in 0..100 {
        if let Ok(c) = AuthorizationClient::connect(format!("http://127.0.0.1:{}", s.grpc)).await {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("gatehouse did not start");
}

async fn allowed(c: &mut AuthorizationClient<tonic::transport::Channel>) -> bool {
    let r = c.check(request()).await.unwrap().into_inner();
    r.status.map(|s| s.code) == Some(0)
}

async fn status(s: &Server) -> serde_json::Value {
    let (_, body) = http(s.http, "GET", "/_gatehouse/status", None).await;
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn write(dir: &Path, text: &str) {
    // Editors save by writing a temporary file and renaming it over the original.
    let tmp = dir.join("policies/.doc.yaml.swp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join("policies/doc.yaml")).unwrap();
}

#[tokio::test]
async fn edits_bad_edits_fixes_and_deletion() {
    let s = start("edits");
    let mut c = connect(&s).await;
    assert!(allowed(&mut c).await);

    write(&s.dir, &ALLOW.replace("EFFECT_ALLOW", "EFFECT_DENY"));
    let took = within(Duration::from_secs(2), || {
        let mut c = c.clone();
        async move { !allowed(&mut c).await }
    })
    .await;
    assert!(took.is_some(), "edit not picked up within 2 s");
    let rev = status(&s).await["revision"].clone();

    write(
        &s.dir,
        "apiVersion: api.cerbos.dev/v1\nresourcePolicy: {resource: doc, version: default, rules: [{actions: [read], effect: EFFECT_ALLOW, roles: [user], condition: {match: {expr: 'R.attr.x =='}}}]}\n",
    );
    let failed = within(Duration::from_secs(2), || async {
        status(&s).await["reloadsFailed"].as_u64() >= Some(1)
    })
    .await;
    assert!(failed.is_some(), "broken file not reported");
    let st = status(&s).await;
    assert_eq!(st["revision"], rev, "the last good set stays in force");
    assert!(
        st["lastError"].as_str().unwrap().contains("doc.yaml:"),
        "{st}"
    );
    assert!(
        !allowed(&mut c).await,
        "decisions unchanged by the broken file"
    );

    write(&s.dir, ALLOW);
    assert!(
        within(Duration::from_secs(2), || {
            let mut c = c.clone();
            async move { allowed(&mut c).await }
        })
        .await
        .is_some(),
        "fix not picked up"
    );

    std::fs::remove_dir_all(s.dir.join("policies")).unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        allowed(&mut c).await,
        "deleting the directory keeps the last good set"
    );
    assert!(status(&s).await["reloadsFailed"].as_u64() >= Some(2));
}

#[tokio::test]
async fn sighup_reloads_and_sigterm_exits_cleanly() {
    let mut s = start("signals");
    let mut c = connect(&s).await;
    let before = status(&s).await["reloadsOk"].as_u64().unwrap();
    let pid = s.child.id().to_string();
    Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    let reloaded = within(Duration::from_secs(2), || async {
        status(&s).await["reloadsOk"].as_u64().unwrap() > before
    })
    .await;
    assert!(reloaded.is_some(), "SIGHUP did not reload");
    assert!(allowed(&mut c).await);
    drop(c);
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let mut child = std::mem::replace(&mut s.child, Command::new("true").spawn().unwrap());
    let code = tokio::task::spawn_blocking(move || child.wait().unwrap().code())
        .await
        .unwrap();
    assert_eq!(code, Some(0));
}

#[tokio::test]
async fn reload_under_load_loses_no_decision() {
    let s = start("load");
    let c = connect(&s).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, wrong) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (mut c, stop, ok, wrong) = (c.clone(), stop.clone(), ok.clone(), wrong.clone());
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match c.check(request()).await {
                    Ok(r) if r.get_ref().status.as_ref().map(|s| s.code) == Some(0) => {
                        ok.fetch_add(1, Ordering::Relaxed)
                    }
                    _ => wrong.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    // Ten reloads of equivalent policies while the clients run.
    for i in 0..10 {
        write(&s.dir, &format!("# revision {i}\n{ALLOW}"));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let reloads = status(&s).await["reloadsOk"].as_u64().unwrap();
    println!(
        "reload under load: {} decisions, {} wrong or failed, {reloads} loads",
        ok.load(Ordering::Relaxed),
        wrong.load(Ordering::Relaxed)
    );
    assert_eq!(wrong.load(Ordering::Relaxed), 0);
    assert!(ok.load(Ordering::Relaxed) > 100);
    assert!(reloads >= 5, "reloads happened: {reloads}");
}

#[tokio::test]
async fn sigterm_during_load_loses_no_in_flight_request() {
    // Every decision on /slow waits 400 ms for its attributes, so requests are
    // certainly in flight when the signal arrives.
    let attrs = crate::util::attribute_source_with_delay(
        |_| Some(r#"{"x": 1}"#),
        Duration::from_millis(400),
    )
    .await;
    let mut s = start_with(
        "sigterm-load",
        &format!(
            ", {{path: '/slow/{{id}}', resource: {{kind: doc, id: '{{id}}'}}, action: read, \
             attributes: {{fetch: {{url: 'http://{attrs}/attrs/{{id}}', timeoutMs: 5000}}}}}}"
        ),
    );
    let c = connect(&s).await;
    assert!(allowed(&mut c.clone()).await);
    let in_flight: Vec<_> = (0..16)
        .map(|i| {
            let mut c = c.clone();
            tokio::spawn(async move { c.check(request_to(&format!("/slow/{i}"))).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let pid = s.child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let mut allowed_after_signal = 0;
    for r in in_flight {
        let r = r.await.unwrap().expect("an in-flight request failed");
        assert_eq!(r.get_ref().status.as_ref().map(|s| s.code), Some(0));
        allowed_after_signal += 1;
    }
    assert_eq!(allowed_after_signal, 16);
    let mut child = std::mem::replace(&mut s.child, Command::new("true").spawn().unwrap());
    drop(c);
    let code = tokio::task::spawn_blocking(move || child.wait().unwrap().code())
        .await
        .unwrap();
    assert_eq!(code, Some(0), "clean exit after the drain");
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", s.grpc))
            .await
            .is_err(),
        "no new connections after shutdown"
    );
}

#[tokio::test]
async fn kubernetes_configmap_swaps_are_picked_up() {
    // A mounted ConfigMap: `doc.yaml -> ..data/doc.yaml`, `..data -> ..<timestamp>`; an
    // update writes a new timestamped directory and renames a new `..data` link over
    // the old one.
    use std::os::unix::fs::symlink;
    let s = start("configmap");
    let p = s.dir.join("policies");
    std::fs::remove_file(p.join("doc.yaml")).unwrap();
    std::fs::create_dir(p.join("..2026_01")).unwrap();
    std::fs::write(p.join("..2026_01/doc.yaml"), ALLOW).unwrap();
    symlink("..2026_01", p.join("..data")).unwrap();
    symlink("..data/doc.yaml", p.join("doc.yaml")).unwrap();
    let mut c = connect(&s).await;
    let ok = within(Duration::from_secs(3), || {
        let mut c = c.clone();
        async move { allowed(&mut c).await }
    })
    .await;
    assert!(ok.is_some(), "the linked policy is served");

    std::fs::create_dir(p.join("..2026_02")).unwrap();
    std::fs::write(
        p.join("..2026_02/doc.yaml"),
        ALLOW.replace("EFFECT_ALLOW", "EFFECT_DENY"),
    )
    .unwrap();
    symlink("..2026_02", p.join("..data_tmp")).unwrap();
    std::fs::rename(p.join("..data_tmp"), p.join("..data")).unwrap();
    std::fs::remove_dir_all(p.join("..2026_01")).unwrap();
    let took = within(Duration::from_secs(2), || {
        let mut c = c.clone();
        async move { !allowed(&mut c).await }
    })
    .await;
    assert!(took.is_some(), "the ConfigMap update was not picked up");
    assert!(!allowed(&mut c).await);
}
