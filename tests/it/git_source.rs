//! A git repository as the policy source of a running `gatehouse serve`: a new commit
//! on the branch takes effect, a broken commit never replaces the last good set, and
//! the commit is the revision shown in the status, the metrics and the decision log.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::util::{Served, http, within};

const POLICY: &str = "apiVersion: api.cerbos.dev/v1\nresourcePolicy:\n  resource: doc\n  version: default\n  rules:\n    - actions: [read]\n      effect: EFFECT_ALLOW\n      roles: [user]\n";

const CHECK: &str = r#"{"requestId": "r1", "principal": {"id": "alice", "roles": ["user"]},
 "resources": [{"resource": {"kind": "doc", "id": "1"}, "actions": ["read"]}]}"#;

/// Runs git in `dir` with a fixed identity; panics on failure. Returns stdout.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=Policy Author",
            "-c",
            "user.email=author@example.test",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A bare "remote" repository and a work tree that pushes to it.
struct Repo {
    root: PathBuf,
    work: PathBuf,
}

impl Repo {
    fn new(name: &str) -> Repo {
        let root = std::env::temp_dir().join(format!("gh-git-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        git(&root, &["init", "--quiet", "--bare", "origin.git"]);
        git(&root, &["init", "--quiet", "work"]);
        let work = root.join("work");
        git(&work, &["remote", "add", "origin", "../origin.git"]);
        std::fs::create_dir_all(work.join("policies")).unwrap();
        std::fs::write(work.join("README.md"), "not a policy\n").unwrap();
        Repo { root, work }
    }

    fn url(&self) -> String {
        format!("file://{}", self.root.join("origin.git").display())
    }

    /// Commits `text` as `policies/doc.yaml` and pushes it to `main`; returns the commit.
    fn push(&self, text: &str, message: &str) -> String {
        std::fs::write(self.work.join("policies/doc.yaml"), text).unwrap();
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "--quiet", "-m", message]);
        git(&self.work, &["push", "--quiet", "origin", "HEAD:main"]);
        git(&self.work, &["rev-parse", "HEAD"])
    }
}

impl Drop for Repo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn start(repo: &Repo, policies: &str) -> Served {
    let config = repo.root.join("gatehouse.yaml");
    std::fs::write(
        &config,
        format!(
            "{policies}\naudit: {{mode: all, output: file, file: {{path: audit.log}}}}\n\
             extAuthz:\n  principal:\n    sources: [{{headers: {{id: x-user, roles: x-roles}}}}]\n  routes: []\n"
        ),
    )
    .unwrap();
    Served::start(&config, false)
}

async fn effect(s: &Served) -> String {
    let (code, body) = http(s.http, "POST", "/api/check/resources", Some(CHECK)).await;
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["results"][0]["actions"]["read"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn new_commits_are_picked_up_and_broken_ones_rejected() {
    let repo = Repo::new("follow");
    let first = repo.push(POLICY, "allow read");
    let s = start(
        &repo,
        &format!(
            "policies:\n  git: {{url: '{}', branch: main, subDir: policies, checkoutDir: checkout, pollIntervalMs: 100}}\n",
            repo.url()
        ),
    );
    s.http_up().await;
    assert_eq!(effect(&s).await, "EFFECT_ALLOW");
    assert_eq!(s.status().await["revision"], first.as_str());

    // A new commit on the branch takes effect, and its id is the revision.
    let second = repo.push(&POLICY.replace("EFFECT_ALLOW", "EFFECT_DENY"), "deny read");
    let took = within(Duration::from_secs(5), || async {
        effect(&s).await == "EFFECT_DENY"
    })
    .await;
    assert!(took.is_some(), "new commit not picked up");
    assert_eq!(s.status().await["revision"], second.as_str());
    let (_, metrics) = http(s.admin, "GET", "/metrics", None).await;
    assert!(
        metrics.contains(&format!(
            "gatehouse_policy_revision_info{{source=\"git\",revision=\"{second}\"}} 1"
        )),
        "{metrics}"
    );

    // A broken commit: reported, and the last good set stays in force.
    let broken = repo.push(&POLICY.replace("[user]", "[user"), "broken");
    let failed = within(Duration::from_secs(5), || async {
        s.status().await["reloadsFailed"].as_u64() >= Some(1)
    })
    .await;
    assert!(failed.is_some(), "broken commit not reported");
    let st = s.status().await;
    assert_eq!(st["revision"], second.as_str(), "{st}");
    assert!(
        st["lastError"].as_str().unwrap().contains("doc.yaml:"),
        "{st}"
    );
    assert_eq!(effect(&s).await, "EFFECT_DENY");
    // The broken commit is not recompiled on every poll.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(s.status().await["reloadsFailed"].as_u64(), Some(1));
    assert_ne!(broken, second);

    // The fix is picked up.
    let third = repo.push(POLICY, "fix");
    let fixed = within(Duration::from_secs(5), || async {
        effect(&s).await == "EFFECT_ALLOW"
    })
    .await;
    assert!(fixed.is_some(), "fix not picked up");
    let st = s.status().await;
    assert_eq!(st["revision"], third.as_str());
    assert_eq!(st["lastError"], serde_json::Value::Null);

    // Every decision-log line names the commit that decided it.
    // (The log is written off the request path: wait for the last line.)
    let revisions = || -> Vec<String> {
        std::fs::read_to_string(repo.root.join("audit.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .map(|v| v["policyRevision"].as_str().unwrap().to_string())
            .collect()
    };
    let flushed = within(Duration::from_secs(3), || async {
        revisions().last() == Some(&third)
    })
    .await;
    assert!(flushed.is_some(), "{:?}", revisions());
    let revisions = revisions();
    for rev in &revisions {
        assert!([&first, &second, &third].contains(&rev), "{rev}");
    }
    assert_eq!(revisions.first(), Some(&first));
    assert_eq!(revisions.last(), Some(&third));
    assert!(revisions.contains(&second));
}

#[tokio::test]
async fn cerbos_git_storage_and_sighup() {
    let repo = Repo::new("cerbos");
    let first = repo.push(POLICY, "allow read");
    let s = start(
        &repo,
        &format!(
            "storage:\n  driver: git\n  git:\n    protocol: file\n    url: '{}'\n    branch: main\n    subDir: policies\n    checkoutDir: checkout\n    updatePollInterval: 0\n",
            repo.url()
        ),
    );
    s.http_up().await;
    assert_eq!(s.status().await["revision"], first.as_str());

    // Polling is off: only SIGHUP fetches.
    let second = repo.push(&POLICY.replace("EFFECT_ALLOW", "EFFECT_DENY"), "deny read");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(effect(&s).await, "EFFECT_ALLOW");
    s.signal("HUP");
    let took = within(Duration::from_secs(5), || async {
        s.status().await["revision"] == second.as_str()
    })
    .await;
    assert!(took.is_some(), "SIGHUP did not fetch the new commit");
    assert_eq!(effect(&s).await, "EFFECT_DENY");
}

#[test]
fn unreachable_repository_fails_at_start() {
    let root = std::env::temp_dir().join(format!("gh-git-missing-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let config = root.join("gatehouse.yaml");
    std::fs::write(
        &config,
        format!(
            "policies:\n  git: {{url: 'file://{}/nowhere.git', checkoutDir: checkout}}\n",
            root.display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["serve", "--config"])
        .arg(&config)
        .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
        .args(["--admin-addr", "127.0.0.1:0"])
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&root);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("git fetch"), "{stderr}");
}

#[test]
fn one_process_per_checkout_stale_locks_and_private_directories() {
    use gatehouse::store::{GitError, GitSource};
    let repo = Repo::new("lock");
    repo.push(POLICY, "allow read");
    let source = || {
        let mut s = GitSource::new(repo.url(), "main");
        s.checkout_dir = repo.root.join("checkout");
        s
    };
    let first = source();
    first.checkout().unwrap();

    // A second owner of the same checkout is refused while the first holds it.
    let e = source().checkout().unwrap_err();
    assert!(e.to_string().contains("in use by another process"), "{e}");
    drop(first);

    // A git killed mid-operation leaves lock files; the next owner clears them.
    std::fs::write(repo.root.join("checkout/.git/index.lock"), "").unwrap();
    let second = source();
    second.checkout().unwrap();
    assert!(!repo.root.join("checkout/.git/index.lock").exists());
    drop(second);

    // A checkout others may write to is refused.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        repo.root.join("checkout"),
        std::fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    let e = source().checkout().unwrap_err();
    assert!(
        matches!(&e, GitError::Config(m) if m.contains("writable by group or others")),
        "{e}"
    );
}

#[test]
fn a_remote_that_never_answers_times_out() {
    use gatehouse::store::{GitError, GitSource};
    // A "git daemon" that accepts connections and never says a word.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in listener.incoming() {
            held.push(c);
        }
    });
    let root = std::env::temp_dir().join(format!("gh-git-hung-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let mut s = GitSource::new(format!("git://127.0.0.1:{port}/policies.git"), "main");
    s.checkout_dir = root.join("checkout");
    s.operation_timeout = Duration::from_millis(500);
    let started = std::time::Instant::now();
    let e = s.checkout().unwrap_err();
    let took = started.elapsed();
    let _ = std::fs::remove_dir_all(&root);
    assert!(matches!(e, GitError::Timeout { .. }), "{e}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    // Nothing of that git is left running.
    let left = Command::new("pgrep")
        .args(["-f", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&left.stdout).trim().is_empty(),
        "git processes left: {}",
        String::from_utf8_lossy(&left.stdout)
    );
}

/// A candidate policy set from a git branch beside a live directory, asked through the
/// HTTP ext_authz mode: the live answer is returned, the disagreement counted (issue 17).
#[tokio::test]
async fn candidate_from_git_disagrees_and_the_live_answer_stands() {
    let repo = Repo::new("candidate");
    repo.push(
        &POLICY.replace("EFFECT_ALLOW", "EFFECT_DENY"),
        "candidate: no reading",
    );
    std::fs::create_dir_all(repo.root.join("live")).unwrap();
    std::fs::write(repo.root.join("live/doc.yaml"), POLICY).unwrap();
    let config = repo.root.join("gatehouse.yaml");
    std::fs::write(
        &config,
        format!(
            "policies: {{directory: live}}\n\
             extAuthz:\n  httpService: true\n\
             \x20 principal:\n    sources: [{{headers: {{id: x-user, roles: x-roles}}}}]\n\
             \x20 routes: [{{path: '/docs/{{id}}', resource: {{kind: doc, id: '{{id}}'}}}}]\n\
             \x20 candidate: {{git: {{url: '{}', branch: main, subDir: policies}}}}\n",
            repo.url()
        ),
    )
    .unwrap();
    let s = Served::start(&config, false);
    s.http_up().await;
    let user = [("x-user", "alice"), ("x-roles", "user")];
    let (code, body) =
        crate::util::http_with_headers(s.http, "GET", "/_gatehouse/authz/docs/1", &user, None)
            .await;
    assert_eq!(code, 200, "{body}");
    // No principal: no engine decision, nothing to compare.
    let (code, _) = http(s.http, "GET", "/_gatehouse/authz/docs/1", None).await;
    assert_eq!(code, 401);
    // Forward-auth is off in this configuration.
    let (code, _) = http(s.http, "GET", "/_gatehouse/forward-auth", None).await;
    assert_eq!(code, 404);
    let (_, metrics) = http(s.admin, "GET", "/metrics", None).await;
    let lines: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("gatehouse_candidate_disagreements_total{"))
        .collect();
    assert_eq!(
        lines,
        ["gatehouse_candidate_disagreements_total{kind=\"doc\",action=\"read\"} 1"],
        "{metrics}"
    );
}
