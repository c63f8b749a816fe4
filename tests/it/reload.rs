//! Hot reload of a running `gatehouse serve`: edits take effect, bad edits never
//! replace the last good set, and reloads under load lose no decision.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::util::{Served, get_request, within};
use gatehouse::extauthz::pb::envoy::service::auth::v3::CheckRequest;
use gatehouse::extauthz::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;

const ALLOW: &str = "apiVersion: api.cerbos.dev/v1\nresourcePolicy:\n  resource: doc\n  version: default\n  rules:\n    - actions: [read]\n      effect: EFFECT_ALLOW\n      roles: [user]\n";

fn start(name: &str) -> Served {
    start_with(name, "")
}

/// Starts a server whose routes are `/docs/{id}` plus `extra_routes` (YAML flow items).
fn start_with(name: &str, extra_routes: &str) -> Served {
    Served::in_scratch_dir(
        &format!("reload-{name}"),
        ALLOW,
        &"policies: {directory: policies, watchIntervalMs: 100}\n\
         extAuthz:\n  principal:\n    sources: [{headers: {id: x-user, roles: x-roles}}]\n  \
         routes: [{path: '/docs/{id}', resource: {kind: doc, id: '{id}'}}EXTRA]\n"
            .replace("EXTRA", extra_routes),
    )
}

fn request() -> CheckRequest {
    request_to("/docs/1")
}

fn request_to(path: &str) -> CheckRequest {
    get_request(path, &[("x-user", "a"), ("x-roles", "user")])
}

async fn allowed(c: &mut AuthorizationClient<tonic::transport::Channel>) -> bool {
    let r = c.check(request()).await.unwrap().into_inner();
    r.status.map(|s| s.code) == Some(0)
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
    let mut c = s.ext_authz().await;
    assert!(allowed(&mut c).await);

    write(&s.dir, &ALLOW.replace("EFFECT_ALLOW", "EFFECT_DENY"));
    let took = within(Duration::from_secs(2), || {
        let mut c = c.clone();
        async move { !allowed(&mut c).await }
    })
    .await;
    assert!(took.is_some(), "edit not picked up within 2 s");
    let rev = s.status().await["revision"].clone();

    write(
        &s.dir,
        "apiVersion: api.cerbos.dev/v1\nresourcePolicy: {resource: doc, version: default, rules: [{actions: [read], effect: EFFECT_ALLOW, roles: [user], condition: {match: {expr: 'R.attr.x =='}}}]}\n",
    );
    let failed = within(Duration::from_secs(2), || async {
        s.status().await["reloadsFailed"].as_u64() >= Some(1)
    })
    .await;
    assert!(failed.is_some(), "broken file not reported");
    let st = s.status().await;
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
    assert!(s.status().await["reloadsFailed"].as_u64() >= Some(2));
}

#[tokio::test]
async fn sighup_reloads_and_sigterm_exits_cleanly() {
    let mut s = start("signals");
    let mut c = s.ext_authz().await;
    let before = s.status().await["reloadsOk"].as_u64().unwrap();
    s.signal("HUP");
    let reloaded = within(Duration::from_secs(2), || async {
        s.status().await["reloadsOk"].as_u64().unwrap() > before
    })
    .await;
    assert!(reloaded.is_some(), "SIGHUP did not reload");
    assert!(allowed(&mut c).await);
    drop(c);
    assert_eq!(s.terminate().await, Some(0));
}

#[tokio::test]
async fn reload_under_load_loses_no_decision() {
    let s = start("load");
    let c = s.ext_authz().await;
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
    let reloads = s.status().await["reloadsOk"].as_u64().unwrap();
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
    static RECEIVED: AtomicUsize = AtomicUsize::new(0);
    let attrs = crate::util::attribute_source_with_delay(
        |_| {
            RECEIVED.fetch_add(1, Ordering::SeqCst);
            Some(r#"{"x": 1}"#)
        },
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
    let c = s.ext_authz().await;
    assert!(allowed(&mut c.clone()).await);
    let in_flight: Vec<_> = (0..16)
        .map(|i| {
            let mut c = c.clone();
            tokio::spawn(async move { c.check(request_to(&format!("/slow/{i}"))).await })
        })
        .collect();
    // Every check has reached the attribute source (so is inside Gatehouse) when the
    // signal goes out.
    let arrived = within(Duration::from_secs(5), || async {
        RECEIVED.load(Ordering::SeqCst) >= 16
    })
    .await;
    assert!(
        arrived.is_some(),
        "checks in flight: {}",
        RECEIVED.load(Ordering::SeqCst)
    );
    s.signal("TERM");
    let mut allowed_after_signal = 0;
    for r in in_flight {
        let r = r.await.unwrap().expect("an in-flight request failed");
        assert_eq!(r.get_ref().status.as_ref().map(|s| s.code), Some(0));
        allowed_after_signal += 1;
    }
    assert_eq!(allowed_after_signal, 16);
    drop(c);
    assert_eq!(s.wait_exit().await, Some(0), "clean exit after the drain");
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
    std::fs::write(
        p.join("..2026_01/doc.yaml"),
        ALLOW.replace("EFFECT_ALLOW", "EFFECT_DENY"),
    )
    .unwrap();
    symlink("..2026_01", p.join("..data")).unwrap();
    symlink("..data/doc.yaml", p.join("doc.yaml")).unwrap();
    let mut c = s.ext_authz().await;
    let linked = within(Duration::from_secs(3), || {
        let mut c = c.clone();
        async move { !allowed(&mut c).await }
    })
    .await;
    assert!(linked.is_some(), "the linked policy (deny) is served");

    std::fs::create_dir(p.join("..2026_02")).unwrap();
    std::fs::write(p.join("..2026_02/doc.yaml"), ALLOW).unwrap();
    symlink("..2026_02", p.join("..data_tmp")).unwrap();
    std::fs::rename(p.join("..data_tmp"), p.join("..data")).unwrap();
    std::fs::remove_dir_all(p.join("..2026_01")).unwrap();
    let took = within(Duration::from_secs(2), || {
        let mut c = c.clone();
        async move { allowed(&mut c).await }
    })
    .await;
    assert!(took.is_some(), "the ConfigMap update was not picked up");
    assert!(allowed(&mut c).await);
}

#[tokio::test]
async fn issue_12_kubernetes_configmap_layout_with_linked_subdirectory() {
    // Exactly what the kubelet writes: a timestamped directory, `..data` linking to it,
    // and one link per top-level entry through `..data` (here a file and a directory).
    use std::os::unix::fs::symlink;
    let s = start_with(
        "configmap-subdir",
        ", {path: '/notes/{id}', resource: {kind: note, id: '{id}'}}",
    );
    let p = s.dir.join("policies");
    let note = |effect: &str| ALLOW.replace("doc", "note").replace("EFFECT_ALLOW", effect);
    let version = |name: &str, doc: &str, note: &str| {
        std::fs::create_dir_all(p.join(name).join("notes")).unwrap();
        std::fs::write(p.join(name).join("doc.yaml"), doc).unwrap();
        std::fs::write(p.join(name).join("notes/note.yaml"), note).unwrap();
    };
    std::fs::remove_file(p.join("doc.yaml")).unwrap();
    version(
        "..2026_12_06_07_00_00.000000001",
        &ALLOW.replace("EFFECT_ALLOW", "EFFECT_DENY"),
        &note("EFFECT_DENY"),
    );
    symlink("..2026_12_06_07_00_00.000000001", p.join("..data")).unwrap();
    symlink("..data/doc.yaml", p.join("doc.yaml")).unwrap();
    symlink("..data/notes", p.join("notes")).unwrap();
    let mut c = s.ext_authz().await;
    let allowed_at = |c: &AuthorizationClient<tonic::transport::Channel>, path: &'static str| {
        let mut c = c.clone();
        async move {
            let r = c.check(request_to(path)).await.unwrap().into_inner();
            r.status.map(|s| s.code) == Some(0)
        }
    };
    let linked = within(Duration::from_secs(3), || async {
        !allowed_at(&c, "/docs/1").await && !allowed_at(&c, "/notes/1").await
    })
    .await;
    assert!(linked.is_some(), "the linked policies (deny) are served");
    let st = s.status().await;
    assert_eq!(st["lastError"], serde_json::Value::Null, "{st}");

    // The update: a new timestamped directory, a new `..data` renamed over the old one.
    version(
        "..2026_12_06_07_05_00.000000002",
        ALLOW,
        &note("EFFECT_ALLOW"),
    );
    symlink("..2026_12_06_07_05_00.000000002", p.join("..data_tmp")).unwrap();
    std::fs::rename(p.join("..data_tmp"), p.join("..data")).unwrap();
    std::fs::remove_dir_all(p.join("..2026_12_06_07_00_00.000000001")).unwrap();
    let took = within(Duration::from_secs(3), || async {
        allowed_at(&c, "/docs/1").await && allowed_at(&c, "/notes/1").await
    })
    .await;
    assert!(took.is_some(), "the swap of ..data was not picked up");

    // An edit behind the linked subdirectory alone is seen too.
    let tmp = p.join("..2026_12_06_07_05_00.000000002/notes/.note.yaml.tmp");
    std::fs::write(&tmp, note("EFFECT_DENY")).unwrap();
    std::fs::rename(&tmp, p.join("..data/notes/note.yaml")).unwrap();
    let took = within(Duration::from_secs(3), || async {
        !allowed_at(&c, "/notes/1").await
    })
    .await;
    assert!(
        took.is_some(),
        "an edit behind the linked subdirectory was missed"
    );
    assert!(allowed(&mut c).await);
}

#[tokio::test]
async fn issue_12_links_out_of_the_tree_keep_the_last_good_set() {
    use std::os::unix::fs::symlink;
    let s = start("outside-link");
    let mut c = s.ext_authz().await;
    assert!(allowed(&mut c).await);
    let secret = s.dir.join("secret.yaml");
    std::fs::write(&secret, "SECRET-FIRST-LINE: [\n").unwrap();
    symlink(&secret, s.dir.join("policies/leak.yaml")).unwrap();
    symlink("/dev/zero", s.dir.join("policies/zero.yaml")).unwrap();
    symlink(".", s.dir.join("policies/loop")).unwrap();
    let failed = within(Duration::from_secs(3), || async {
        s.status().await["reloadsFailed"].as_u64() >= Some(1)
    })
    .await;
    assert!(failed.is_some(), "the hostile tree was not reported");
    let st = s.status().await;
    assert_eq!(
        st["lastError"],
        "leak.yaml:1:1: symbolic link resolves outside the policy directory\n\
         loop:1:1: directory reached twice through symbolic links (a loop)\n\
         zero.yaml:1:1: symbolic link resolves outside the policy directory"
    );
    assert!(allowed(&mut c).await, "the last good set stays in force");
}

/// `gatehouse.yaml` of [`start_with`] with `extra_routes`, and `tail` appended.
fn config_text(extra_routes: &str, tail: &str, watch: bool) -> String {
    format!(
        "policies: {{directory: policies, watchIntervalMs: 100, watchForChanges: {watch}}}\n\
         extAuthz:\n  principal:\n    sources: [{{headers: {{id: x-user, roles: x-roles}}}}]\n  \
         routes: [{{path: '/docs/{{id}}', resource: {{kind: doc, id: '{{id}}'}}}}{extra_routes}]\n{tail}"
    )
}

fn write_config(dir: &Path, text: &str) {
    let tmp = dir.join(".gatehouse.yaml.swp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join("gatehouse.yaml")).unwrap();
}

async fn allowed_at(c: &AuthorizationClient<tonic::transport::Channel>, path: &str) -> bool {
    let r = c
        .clone()
        .check(request_to(path))
        .await
        .unwrap()
        .into_inner();
    r.status.map(|s| s.code) == Some(0)
}

const OTHER: &str = ", {path: '/other/{id}', resource: {kind: doc, id: '{id}'}}";

#[tokio::test]
async fn issue_18_gatehouse_yaml_reloads_routes_and_keeps_the_last_good() {
    let s = Served::in_scratch_dir("reload-config-edit", ALLOW, &config_text("", "", true));
    let c = s.ext_authz().await;
    assert!(!allowed_at(&c, "/other/1").await, "no route yet");

    // A new route takes effect without a restart.
    write_config(&s.dir, &config_text(OTHER, "", true));
    let took = within(Duration::from_secs(3), || {
        let c = c.clone();
        async move { allowed_at(&c, "/other/1").await }
    })
    .await;
    assert!(took.is_some(), "the new route was not loaded");
    let st = s.status().await;
    assert_eq!(st["config"]["reloadsOk"], 2, "{st}");
    assert_eq!(st["config"]["restartNeeded"], serde_json::json!([]), "{st}");

    // A bad file: the routes in force stay, the error is in the status.
    write_config(
        &s.dir,
        &config_text(OTHER, "", true).replace(
            "resource: {kind: doc, id: '{id}'}}]",
            "resource: {kind: doc, id: '{id}'}, method: [GET]}]",
        ),
    );
    let failed = within(Duration::from_secs(3), || async {
        s.status().await["config"]["reloadsFailed"] == 1
    })
    .await;
    assert!(failed.is_some(), "{}", s.status().await);
    let st = s.status().await;
    let error = st["config"]["lastError"].as_str().unwrap();
    assert!(
        error.contains("gatehouse.yaml:5:")
            && error.contains("unknown field `method`: did you mean `methods`?"),
        "{error}"
    );
    assert!(
        allowed_at(&c, "/other/1").await,
        "the last good routes stay"
    );
    assert!(allowed_at(&c, "/docs/1").await);

    // Listener addresses need a restart: named, and the rest still reloads.
    write_config(
        &s.dir,
        &config_text("", "server: {grpcListenAddr: 127.0.0.1:1}\n", true),
    );
    let reloaded = within(Duration::from_secs(3), || {
        let c = c.clone();
        async move { !allowed_at(&c, "/other/1").await }
    })
    .await;
    assert!(reloaded.is_some(), "the route removal was not loaded");
    let st = s.status().await;
    assert_eq!(
        st["config"]["restartNeeded"],
        serde_json::json!(["server"]),
        "{st}"
    );
    assert_eq!(st["config"]["lastError"], serde_json::Value::Null, "{st}");
    assert!(
        allowed_at(&c, "/docs/1").await,
        "still listening where it started"
    );
}

#[tokio::test]
async fn issue_18_sighup_reloads_gatehouse_yaml() {
    // Not watched: only SIGHUP reloads it.
    let s = Served::in_scratch_dir("reload-config-hup", ALLOW, &config_text("", "", false));
    let c = s.ext_authz().await;
    assert!(!allowed_at(&c, "/other/1").await);
    write_config(&s.dir, &config_text(OTHER, "", false));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        !allowed_at(&c, "/other/1").await,
        "not watched: no reload without SIGHUP"
    );
    s.signal("HUP");
    let took = within(Duration::from_secs(3), || {
        let c = c.clone();
        async move { allowed_at(&c, "/other/1").await }
    })
    .await;
    assert!(took.is_some(), "SIGHUP did not reload gatehouse.yaml");
}

#[tokio::test]
async fn issue_18_configmap_swap_of_gatehouse_yaml_is_seen() {
    use std::os::unix::fs::symlink;
    let s = Served::in_scratch_dir("reload-config-configmap", ALLOW, &config_text("", "", true));
    let d = &s.dir;
    std::fs::create_dir(d.join("..2026_01")).unwrap();
    std::fs::write(
        d.join("..2026_01/gatehouse.yaml"),
        config_text("", "", true),
    )
    .unwrap();
    symlink("..2026_01", d.join("..data")).unwrap();
    std::fs::remove_file(d.join("gatehouse.yaml")).unwrap();
    symlink("..data/gatehouse.yaml", d.join("gatehouse.yaml")).unwrap();
    let c = s.ext_authz().await;
    assert!(!allowed_at(&c, "/other/1").await);
    std::fs::create_dir(d.join("..2026_02")).unwrap();
    std::fs::write(
        d.join("..2026_02/gatehouse.yaml"),
        config_text(OTHER, "", true),
    )
    .unwrap();
    symlink("..2026_02", d.join("..data_tmp")).unwrap();
    std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
    std::fs::remove_dir_all(d.join("..2026_01")).unwrap();
    let took = within(Duration::from_secs(3), || {
        let c = c.clone();
        async move { allowed_at(&c, "/other/1").await }
    })
    .await;
    assert!(
        took.is_some(),
        "the ConfigMap update of gatehouse.yaml was not picked up"
    );
}

#[tokio::test]
async fn sigterm_flushes_every_batched_stdout_audit_record() {
    // The bundled configuration's audit log (stdout, `whenFull: drop`, the default queue):
    // records wait in the writer's batch for a few milliseconds, and SIGTERM right after
    // the last decision must still find every one of them on standard output, whole.
    let dir = std::env::temp_dir().join(format!("gh-sigterm-stdout-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(dir.join("policies/doc.yaml"), ALLOW).unwrap();
    std::fs::write(
        dir.join("gatehouse.yaml"),
        "policies: {directory: policies}\n\
         audit: {mode: all}\n\
         extAuthz:\n  principal:\n    sources: [{headers: {id: x-user, roles: x-roles}}]\n  \
         routes: [{path: '/docs/{id}', resource: {kind: doc, id: '{id}'}}]\n",
    )
    .unwrap();
    let stdout = std::fs::File::create(dir.join("stdout.log")).unwrap();
    let mut s = Served::start_with_stdout(&dir.join("gatehouse.yaml"), true, stdout);
    let c = s.ext_authz().await;
    let n = 2000;
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..16 {
        let mut c = c.clone();
        tasks.spawn(async move {
            for i in (w..n).step_by(16) {
                let r = c.check(request_to(&format!("/docs/{i}"))).await.unwrap();
                assert_eq!(r.into_inner().status.map(|s| s.code), Some(0));
            }
        });
    }
    while let Some(t) = tasks.join_next().await {
        t.unwrap();
    }
    assert_eq!(s.terminate().await, Some(0));
    let out = std::fs::read_to_string(dir.join("stdout.log")).unwrap();
    assert!(out.ends_with('\n'));
    let mut ids: Vec<u32> = out
        .lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            v["resources"][0]["id"].as_str().unwrap().parse().unwrap()
        })
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..n).collect::<Vec<u32>>());
}

#[tokio::test]
async fn sigterm_flushes_every_audit_record() {
    // A file audit log with a small queue in `block` mode: every decision made before the
    // signal must be in the file once the process has exited.
    let mut s = Served::in_scratch_dir(
        "sigterm-audit",
        ALLOW,
        "policies: {directory: policies}\n\
         audit: {mode: all, output: file, file: {path: audit.log}, queueCapacity: 8, whenFull: block}\n\
         extAuthz:\n  principal:\n    sources: [{headers: {id: x-user, roles: x-roles}}]\n  \
         routes: [{path: '/docs/{id}', resource: {kind: doc, id: '{id}'}}]\n",
    );
    let c = s.ext_authz().await;
    let n = 300;
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let mut c = c.clone();
            tokio::spawn(async move {
                let r = c.check(request_to(&format!("/docs/{i}"))).await.unwrap();
                r.into_inner().status.map(|s| s.code) == Some(0)
            })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap());
    }
    assert_eq!(s.terminate().await, Some(0));
    let log = std::fs::read_to_string(s.dir.join("audit.log")).unwrap();
    let mut ids: Vec<String> = log
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["resources"][0]["id"].as_str().unwrap().to_string()
        })
        .collect();
    ids.sort_by_key(|id| id.parse::<u32>().unwrap());
    let want: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    assert_eq!(ids, want);
}
