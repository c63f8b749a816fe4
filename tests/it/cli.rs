//! The `gatehouse` binary: exit codes, error rendering and the explain trace.

use std::path::Path;
use std::process::Command;

fn gatehouse() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gatehouse"))
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn compile_demo_policies_runs_their_tests() {
    let out = gatehouse()
        .arg("compile")
        .arg(root().join("policies"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("DocumentTestSuite"), "{stdout}");
    assert!(stdout.contains("38 tests executed [38 OK]"), "{stdout}");
    let out = gatehouse()
        .args(["compile", "--skip-tests"])
        .arg(root().join("policies"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Compiled 2 executable policies"));
}

#[test]
fn failing_policy_tests_exit_4_in_every_format() {
    let dir = root().join("tests/data/failing_suite");
    let out = gatehouse().arg("compile").arg(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(4), "cerbos compile's exit code");
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(tree.contains("WrongExpectations"), "{tree}");
    assert!(
        tree.contains("EFFECT_ALLOW") && tree.contains("EFFECT_DENY"),
        "expected vs actual: {tree}"
    );

    let out = gatehouse()
        .args(["compile", "-o", "json"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["summary"]["overallResult"], "RESULT_FAILED", "{v}");

    // Cerbos 0.55's flags: the test results in JUnit while -o stays json.
    let out = gatehouse()
        .args([
            "compile",
            "-o",
            "json",
            "--test-output=junit",
            "--no-color",
            "--skip-batching",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    let xml = String::from_utf8_lossy(&out.stdout);
    assert!(
        xml.starts_with("<testsuites") && xml.contains("<failure"),
        "{xml}"
    );

    // --run filters tests by name: nothing matches, nothing fails.
    let out = gatehouse()
        .args(["compile", "--run", "^no such test$"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn compile_reports_every_error_with_position_and_exit_3() {
    let dir = root().join("tests/data/bad_policies");
    let out = gatehouse().arg("compile").arg(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "cerbos compile's exit code");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("resource_policies/album.yaml:6:7: import not found: Derived roles import \"album_roles\" cannot be found"),
        "{err}"
    );
    assert!(
        err.contains("resource_policies/album.yaml:11:11: unknown derived role: Derived role \"owner\" is not defined in any imports"),
        "{err}"
    );
    assert!(
        err.contains("resource_policies/album.yaml:17:11: invalid expression"),
        "{err}"
    );
    assert!(err.contains("3 error(s)"), "{err}");
}

#[test]
fn compile_json_errors_for_ci() {
    let dir = root().join("tests/data/bad_policies");
    let out = gatehouse()
        .args(["compile", "-o", "json"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    // A missing import is found while indexing: Cerbos's `lintErrors`, its fields and
    // the node's JSON path (the real Cerbos 0.55 prints the same for this directory).
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let missing = &v["lintErrors"]["missing_imports"][0];
    assert_eq!(missing["importing_file"], "resource_policies/album.yaml");
    assert_eq!(
        missing["desc"],
        "cannot find derived roles 'album_roles' imported by policy resource.album.vdefault"
    );
    assert_eq!(missing["import_kind"], "derived roles");
    assert_eq!(
        missing["position"],
        serde_json::json!({"line": 6, "column": 7, "path": "$.resourcePolicy.importDerivedRoles[0]"})
    );
    assert!(
        missing["context"].as_str().unwrap().contains(">  6 |"),
        "{missing}"
    );

    // Past the index, compile errors: `compileErrors.errors` with paths.
    let dir = std::env::temp_dir().join(format!("gh-cli-json-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("doc.yaml"),
        "apiVersion: api.cerbos.dev/v1\nresourcePolicy:\n  resource: doc\n  version: default\n  rules:\n    - actions: [read]\n      effect: EFFECT_ALLOW\n      roles: [user]\n      condition:\n        match:\n          expr: R.attr.x ==\n",
    )
    .unwrap();
    let out = gatehouse()
        .args(["compile", "-o", "json"])
        .arg(&dir)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(out.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let e = &v["compileErrors"]["errors"][0];
    assert_eq!(e["file"], "doc.yaml");
    assert_eq!(e["error"], "invalid expression");
    assert_eq!(
        e["position"]["path"],
        "$.resourcePolicy.rules[0].condition.match.expr"
    );
}

#[test]
fn check_explains_the_decision() {
    let out = gatehouse()
        .current_dir(root())
        .args([
            "check", "--principal", "bob", "--role", "manager",
            "--principal-attr", r#"{"department":"engineering","clearances":[],"approval_limit":10000}"#,
            "--kind", "document", "--resource-id", "doc-1",
            "--resource-attr", r#"{"owner":"alice","department":"engineering","status":"in_review","classification":"internal","amount":5000,"archived":false}"#,
            "--action", "approve", "--action", "delete", "-o", "json",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["actions"]["approve"]["effect"], "EFFECT_ALLOW");
    assert_eq!(v["actions"]["delete"]["effect"], "EFFECT_DENY");
    let trace: Vec<String> = serde_json::from_value(v["trace"].clone()).unwrap();
    assert!(trace.iter().any(|l| {
        l.contains("rule resource.document.vdefault#approve at resource_policies/document.yaml")
    }));
    assert!(
        trace
            .iter()
            .any(|l| l.contains("=> delete: DENY by resource.document.vdefault"))
    );
}

#[test]
fn check_rejects_bad_usage_with_exit_2() {
    let out = gatehouse()
        .args(["check", "--principal", "bob"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = gatehouse()
        .args([
            "check",
            "--principal",
            "bob",
            "--kind",
            "document",
            "--action",
            "read",
            "--principal-attr",
            "[1]",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--principal-attr must be a JSON object")
    );
}

#[test]
fn serve_reports_health_and_stops_on_sigterm() {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    let port = |_: u8| {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (grpc, http, admin) = (port(0), port(1), port(2));
    let mut child = gatehouse()
        .current_dir(root())
        .args([
            "serve",
            "--grpc-addr",
            &format!("127.0.0.1:{grpc}"),
            "--http-addr",
            &format!("127.0.0.1:{http}"),
            "--admin-addr",
            &format!("127.0.0.1:{admin}"),
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut body = String::new();
    for _ in 0..100 {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", http)) {
            s.write_all(b"GET /_cerbos/health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                .unwrap();
            s.read_to_string(&mut body).unwrap();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains(r#"{"status":"SERVING"}"#), "{body}");
    // Metrics on the admin listener, with the policy gauges filled from the store.
    let mut metrics = String::new();
    let mut s = TcpStream::connect(("127.0.0.1", admin)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    s.read_to_string(&mut metrics).unwrap();
    assert!(
        metrics.contains("gatehouse_policies_loaded{type=\"resource\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("gatehouse_policy_revision_info{source=\"directory\",revision="),
        "{metrics}"
    );
    // SIGTERM: drain and exit 0.
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        err.contains("policies loaded") && err.contains("stopped"),
        "{err}"
    );
}

#[test]
fn serve_rejects_a_bad_config_with_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("gh-serve-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("gatehouse.yaml");
    std::fs::write(
        &cfg,
        "policies: {directory: nowhere}\nextAuthz: {routes: [{path: '/d', resource: {kind: d}}]}\n",
    )
    .unwrap();
    let out = gatehouse()
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nowhere"), "{err}");
    std::fs::write(&cfg, format!("policies: {{directory: {}}}\nextAuthz: {{routes: [{{path: 'no-slash', resource: {{kind: d}}}}]}}\n", root().join("policies").display())).unwrap();
    let out = gatehouse()
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("must start with '/'"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn serve_flags_override_the_engine_settings() {
    // An invalid value given by flag must be seen (and refused) even though the bundled
    // configuration is valid.
    let out = gatehouse()
        .current_dir(root())
        .args([
            "serve",
            "--schema-enforcement",
            "strict",
            "--http-addr",
            "127.0.0.1:0",
            "--grpc-addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("schema.enforcement"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = gatehouse()
        .current_dir(root())
        .args([
            "server",
            "--globals",
            "[1]",
            "--http-addr",
            "127.0.0.1:0",
            "--grpc-addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--globals must be a JSON object"));
}

#[test]
fn strict_evaluation_flag_as_cerbos() {
    // A DENY rule whose condition cannot be evaluated: skipped normally (the ALLOW rule
    // decides), a denial with --strict-evaluation (the real Cerbos 0.55 answers the same).
    let dir = root().join("tests/data/strict_suite");
    let out = gatehouse().arg("compile").arg(&dir).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = gatehouse()
        .args(["compile", "--strict-evaluation", "--color=never"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
}

#[test]
fn test_filter_selects_tests_as_cerbos() {
    // The demo suite under --test-filter: the tests left out are listed as skipped with
    // Cerbos's reason but not counted (tests/it/compile_diff.rs compares the whole
    // output with the real Cerbos).
    let run = |filters: &[&str]| {
        let out = gatehouse()
            .current_dir(root())
            .args(["compile", "-o", "json"])
            .args(filters)
            .arg("policies")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let all = run(&[]);
    let alice = run(&["--test-filter", "principal=alice"]);
    let (all_n, alice_n) = (
        all["summary"]["testsCount"].as_u64().unwrap(),
        alice["summary"]["testsCount"].as_u64().unwrap(),
    );
    assert!(0 < alice_n && alice_n < all_n, "{alice_n} of {all_n}");
    assert!(
        alice
            .to_string()
            .contains("Principal did not match the test filter")
    );
    let none = run(&["--test-filter", "suite=NoSuchSuite"]);
    assert_eq!(
        none["summary"],
        serde_json::json!({"overallResult": "RESULT_SKIPPED"})
    );
    let out = gatehouse()
        .args(["compile", "--test-filter", "colour=red", "policies"])
        .current_dir(root())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a bad filter is a usage error");
}

/// A scratch directory holding one configuration file.
fn scratch_config(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("gh-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("gatehouse.yaml");
    std::fs::write(&cfg, text).unwrap();
    cfg
}

const SHARE_ROUTE: &str = "policies: {directory: nowhere}
extAuthz:
  routes:
    - path: /documents/{id}/share
      methods: [POST]
      resource: { kind: document, id: \"{doc_id}\" }
      attributes:
        fetch:
          url: http://127.0.0.1:8000/internal/documents/{docId}/attributes
";

#[test]
fn issue_18_routes_that_would_mean_something_else_do_not_load() {
    let cfg = scratch_config("share", SHARE_ROUTE);
    let out = gatehouse()
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let file = cfg.display();
    let expected = format!(
        "error: {file}:4:7: route POST /documents/{{id}}/share: the path goes beyond the resource id \
(a sub-resource or verb segment), so the HTTP method does not say what is being done: name it \
with `action: <name>` (or `actions` for every listed method)
4 |     - path: /documents/{{id}}/share
  |       ^
{file}:6:40: route POST /documents/{{id}}/share: {{doc_id}} is not a path parameter (the path's parameters are {{id}})
6 |       resource: {{ kind: document, id: \"{{doc_id}}\" }}
  |                                        ^
{file}:9:57: route POST /documents/{{id}}/share: {{docId}} is not a path parameter (the path's parameters are {{id}})
9 |           url: http://127.0.0.1:8000/internal/documents/{{docId}}/attributes
  |                                                         ^
"
    );
    assert_eq!(err, expected);
    std::fs::remove_dir_all(cfg.parent().unwrap()).ok();
}

#[test]
fn issue_18_misspelled_keys_get_a_hint_at_their_line() {
    let cfg = scratch_config(
        "typo",
        "policies: {directory: nowhere}\nextAuthz:\n  routes:\n    - path: /documents\n      method: [GET]\n",
    );
    let out = gatehouse()
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err,
        format!(
            "error: {}:5:7: unknown field `method`: did you mean `methods`?\n5 |       method: [GET]\n  |       ^\n",
            cfg.display()
        )
    );
    std::fs::remove_dir_all(cfg.parent().unwrap()).ok();
}

#[test]
fn issue_18_misspelled_policy_keys_get_a_hint_but_cerbos_json_stays() {
    let dir = std::env::temp_dir().join(format!("gh-policy-typo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("doc.yaml"),
        "apiVersion: api.cerbos.dev/v1\nresourcePolicy:\n  resource: doc\n  version: default\n  rules:\n    - actions: [view]\n      effect: EFFECT_ALLOW\n      roles: [user]\n      condtion:\n        match:\n          expr: \"true\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("rp.yaml"),
        "apiVersion: api.cerbos.dev/v1\nrolePolicy:\n  role: acme_admin\n  parentRole: admin\n  rules:\n    - resource: leave_request\n      allowActions: [\"*\"]\n",
    )
    .unwrap();
    let out = gatehouse().arg("compile").arg(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "doc.yaml:9:7: parse error: unknown field \"condtion\"
9 |       condtion:
  |       ^
help: did you mean \"condition\"?
rp.yaml:4:3: parse error: unknown field \"parentRole\"
4 |   parentRole: admin
  |   ^
help: did you mean \"parentRoles\"?
2 error(s) in {}
",
            dir.display()
        )
    );
    // The JSON output keeps Cerbos's exact load failure, without the hint.
    let out = gatehouse()
        .args(["compile", "-o", "json"])
        .arg(&dir)
        .output()
        .unwrap();
    let json = String::from_utf8_lossy(&out.stdout);
    assert!(
        json.contains(r#""error":"unknown field \"condtion\"""#),
        "{json}"
    );
    assert!(!json.contains("did you mean"), "{json}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn issue_18_routes_prints_each_action_and_where_it_came_from() {
    let cfg = scratch_config(
        "routes",
        "extAuthz:
  routes:
    - path: /health
      public: true
    - path: /documents
      methods: [POST]
      resource: {kind: document, id: new}
    - path: /documents/{id}/share
      methods: [POST]
      resource: {kind: document, id: \"{id}\"}
      action: share
    - path: /documents/{id}
      methods: [GET, PATCH]
      resource: {kind: document, id: \"{id}\"}
      actions: {PATCH: edit}
    - path: /documents
      methods: [GET]
      resource: {kind: document}
      plan: {action: read}
",
    );
    let out = gatehouse()
        .args(["routes", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect()
        })
        .collect();
    let f = cfg.display().to_string();
    let expect = [
        vec![
            format!("{f}:3:7"),
            "*".into(),
            "/health".into(),
            "-".into(),
            "public: allowed without a decision".into(),
        ],
        vec![
            format!("{f}:5:7"),
            "POST".into(),
            "/documents".into(),
            "document new".into(),
            "create".into(),
            "default for POST on a collection path".into(),
        ],
        vec![
            format!("{f}:8:7"),
            "POST".into(),
            "/documents/{id}/share".into(),
            "document {id}".into(),
            "share".into(),
            format!("action at {f}:11:15"),
        ],
        vec![
            format!("{f}:12:7"),
            "GET".into(),
            "/documents/{id}".into(),
            "document {id}".into(),
            "read".into(),
            "default for GET on an item path".into(),
        ],
        vec![
            format!("{f}:12:7"),
            "PATCH".into(),
            "/documents/{id}".into(),
            "document {id}".into(),
            "edit".into(),
            format!("actions.PATCH at {f}:15:24"),
        ],
        vec![
            format!("{f}:16:7"),
            "GET".into(),
            "/documents".into(),
            "document (all)".into(),
            "read".into(),
            format!("plan.action at {f}:19:22: planned, the filter goes to the backend"),
        ],
    ];
    assert_eq!(rows.len(), expect.len(), "{table}");
    for (row, want) in rows.iter().zip(&expect) {
        assert_eq!(row, want, "{table}");
    }
    std::fs::remove_dir_all(cfg.parent().unwrap()).ok();
}

#[test]
fn plan_prints_the_filter_of_cerbos_planner_corpus() {
    let Some(corpus) = crate::util::corpus_dir("cli plan") else {
        return;
    };
    let out = gatehouse()
        .args(["plan", "--policies"])
        .arg(corpus.join("planner/policies"))
        .args([
            "--principal",
            "harry",
            "--role",
            "employee",
            "--role",
            "ex_intern",
            "--role",
            "user",
            "--kind",
            "leave_request",
            "--resource-version",
            "default",
            "--action",
            "view",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    // As Cerbos plans it (planner corpus, common/harry.yaml, the first test).
    assert!(
        text.contains(
            "KIND_CONDITIONAL\n(and (not request.resource.attr.hidden_from_employee) (eq request.resource.attr.owner \"harry\"))"
        ),
        "{text}"
    );
    let out = gatehouse()
        .args(["plan", "--policies"])
        .arg(corpus.join("planner/policies"))
        .args([
            "--principal",
            "harry",
            "--kind",
            "leave_request",
            "-o",
            "json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "no --action is bad usage");
}

/// Issue 14: `gatehouse plan --explain` names every rule that contributed, with its
/// effect, planned condition and location; without `--explain` none is printed.
#[test]
fn plan_explain_names_the_rules_that_contributed() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let args = [
        "plan",
        "--principal",
        "bob",
        "--role",
        "manager",
        "--principal-attr",
        r#"{"department":"engineering"}"#,
        "--kind",
        "document",
        "--action",
        "delete",
    ];
    let run = |extra: &[&str]| {
        let out = gatehouse()
            .current_dir(root)
            .args(args)
            .args(extra)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let text = run(&["--explain"]);
    for want in [
        "rules that contributed:\n  action \"delete\", role \"manager\":",
        "EFFECT_ALLOW resource.document.vdefault#delete-own-draft (derived role owner) (resource_policies/document.yaml:",
        "(and (eq request.resource.attr.status \"draft\") (eq request.resource.attr.owner \"bob\"))",
        "EFFECT_DENY resource.document.vdefault#archived-frozen (resource_policies/document.yaml:",
        "(eq request.resource.attr.archived true)",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
    assert!(!run(&[]).contains("rules that contributed"));
    let json: serde_json::Value = serde_json::from_str(&run(&["--explain", "-o", "json"])).unwrap();
    let steps = json["explain"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{json}");
    assert_eq!(steps[1]["effect"], "EFFECT_DENY");
    assert_eq!(steps[1]["rule"], "archived-frozen");
}

#[test]
fn issue_18_serve_elsewhere_names_the_paths_it_tried() {
    let dir = std::env::temp_dir().join(format!("gh-elsewhere-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = gatehouse().current_dir(&dir).arg("serve").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "no policy directory at ./policies ({}/./policies), named by the bundled gatehouse.yaml",
            dir.display()
        )) && err.contains(&format!("working directory {}", dir.display()))
            && err.contains("--config FILE"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// Issue 15: the binary allocates with mimalloc (its glibc malloc/free were about a
/// quarter of the instructions per request); mimalloc reports itself when asked.
#[test]
fn issue_15_the_binary_allocates_with_mimalloc() {
    let out = gatehouse()
        .arg("--version")
        .env("MIMALLOC_VERBOSE", "1")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("mimalloc: process init"),
        "no mimalloc in: {stderr}"
    );
}
