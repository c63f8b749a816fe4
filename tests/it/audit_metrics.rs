//! The decision log and the metrics of the ext_authz service: one well-formed audit line
//! per decision with no secrets, masking, a full queue that drops instead of blocking,
//! rotation, and `/metrics` output that parses as Prometheus text and moves with decisions.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use gatehouse::extauthz::pb::envoy::config::core::v3::Metadata;
use gatehouse::extauthz::pb::envoy::service::auth::v3::{CheckRequest, CheckResponse};
use gatehouse::extauthz::pb::google::protobuf::{Struct, Value as PbValue, value::Kind};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use gatehouse::audit::{AuditConfig, AuditSink};
use gatehouse::engine::EngineConfig;
use gatehouse::extauthz::{self, ExtAuthz, ExtAuthzConfig};
use gatehouse::metrics::{Metrics, PolicyStats, metrics_router};
use gatehouse::store::PolicyStore;

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// Strings that must never reach the audit log.
const SECRETS: [&str; 6] = [
    "SECRET-BEARER-TOKEN",
    "SECRET-COOKIE",
    "SECRET-API-KEY",
    "SECRET-QUERY",
    "SECRET-TENANT",
    "alice@example.test",
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gh-audit-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A tiny HTTP server answering `GET /attrs/{id}` with a document's attributes.
async fn attribute_source() -> SocketAddr {
    crate::util::attribute_source(|id| {
        (id == "1").then_some(
            r#"{"owner":"alice","department":"engineering","status":"draft","classification":"internal","amount":10,"archived":false}"#,
        )
    })
    .await
}

fn config(attrs: SocketAddr) -> ExtAuthzConfig {
    let yaml = format!(
        r#"
principal:
  sources:
    - jwtAuthn: {{namespace: envoy.filters.http.jwt_authn}}
    - headers: {{id: x-dev-user, roles: x-dev-roles}}
    - jwt:
        jwks: {{file: examples/fastapi/dev-jwks.json}}
        algorithms: [RS256]
        issuer: https://auth.example.test
        audiences: [documents-api]
  claims: {{id: sub, roles: roles, attr: [department, email]}}
routes:
  - path: /health
    public: true
  - path: /documents
    methods: [POST]
    resource: {{kind: document, id: new}}
    action: create
    attributes: {{body: [department], headers: {{tenant: x-tenant}}}}
  - path: /documents/{{id}}
    resource: {{kind: document, id: "{{id}}"}}
    attributes:
      fetch: {{url: "http://{attrs}/attrs/{{id}}", timeoutMs: 500, cacheTtlMs: 60000}}
  - path: /broken/{{id}}
    resource: {{kind: document, id: "{{id}}"}}
    attributes:
      fetch: {{url: "http://127.0.0.1:1/attrs/{{id}}", timeoutMs: 200}}
"#
    );
    serde_saphyr::from_str(&yaml).unwrap()
}

fn store() -> Arc<PolicyStore> {
    Arc::new(PolicyStore::load(&root().join("policies"), EngineConfig::default()).unwrap())
}

async fn service(store: Arc<PolicyStore>, metrics: Metrics, audit: AuditSink) -> ExtAuthz {
    let attrs = attribute_source().await;
    extauthz::build_with_sinks(
        &config(attrs),
        store,
        root(),
        gatehouse::telemetry::Sinks::new(metrics, audit, Default::default()),
    )
    .await
    .unwrap()
}

fn audit_config(json: Value) -> AuditConfig {
    serde_json::from_value(json).unwrap()
}

fn request(method: &str, path: &str, headers: &[(&str, &str)]) -> CheckRequest {
    crate::util::with_request_id(
        crate::util::check_request(method, path, headers),
        "envoy-req-1",
    )
}

/// A request carrying every kind of secret a client might send.
fn with_secrets(method: &str, path: &str, user: &str, roles: &str) -> CheckRequest {
    request(
        method,
        path,
        &[
            ("x-dev-user", user),
            ("x-dev-roles", roles),
            ("authorization", "Bearer SECRET-BEARER-TOKEN"),
            ("cookie", "session=SECRET-COOKIE"),
            ("x-api-key", "SECRET-API-KEY"),
            ("traceparent", TRACEPARENT),
        ],
    )
}

/// The decision id Envoy hands on: the `x-gatehouse-decision-id` header for the backend
/// (allowed) or the client (denied).
fn decision_id(resp: &CheckResponse) -> String {
    use gatehouse::extauthz::pb::envoy::service::auth::v3::check_response::HttpResponse;
    let headers = match &resp.http_response {
        Some(HttpResponse::OkResponse(ok)) => &ok.headers,
        Some(HttpResponse::DeniedResponse(d)) => &d.headers,
        other => panic!("no answer: {other:?}"),
    };
    headers
        .iter()
        .filter_map(|h| h.header.as_ref())
        .find(|h| h.key == "x-gatehouse-decision-id")
        .map(|h| h.value.clone())
        .unwrap_or_else(|| panic!("no decision id: {resp:?}"))
}

fn is_allowed(resp: &CheckResponse) -> bool {
    resp.status.as_ref().is_some_and(|s| s.code == 0)
}

/// A bearer token for alice, signed with the demo's dev key.
fn alice_token() -> String {
    let pem = std::fs::read(root().join("examples/fastapi/dev-private-key.pem")).unwrap();
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("dev-1".into());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "iss": "https://auth.example.test",
        "aud": "documents-api",
        "sub": "alice",
        "roles": ["user"],
        "department": "engineering",
        "email": "alice@example.test",
        "iat": now,
        "exp": now + 600,
    });
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

fn read_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

const KEYS: [&str; 11] = [
    "time",
    "decisionId",
    "origin",
    "effect",
    "status",
    "reason",
    "principal",
    "resources",
    "policyRevision",
    "requestId",
    "traceId",
];

#[tokio::test]
async fn one_audit_line_per_decision_without_secrets() {
    let dir = temp_dir("lines");
    let path = dir.join("audit.log");
    let metrics = Metrics::default();
    let audit = AuditSink::new(
        &audit_config(serde_json::json!({
            "mode": "all",
            "output": "file",
            "file": {"path": path, "maxBytes": 10_000_000, "keep": 1},
            "includeAttributes": true,
            "maskPaths": ["principal.attr.email", "resource.attr.owner"],
        })),
        metrics.clone(),
    )
    .unwrap();
    let store = store();
    let revision = store.status().revision;
    let svc = service(store, metrics, audit.clone()).await;
    let token = alice_token();
    let bearer = format!("Bearer {token}");
    let mut jwt_authn = request("GET", "/documents/1", &[("traceparent", TRACEPARENT)]);
    jwt_authn.attributes.as_mut().unwrap().metadata_context = Some(Metadata {
        filter_metadata: [(
            "envoy.filters.http.jwt_authn".to_string(),
            Struct {
                fields: [(
                    "payload".to_string(),
                    PbValue {
                        kind: Some(Kind::StructValue(Struct {
                            fields: [
                                ("sub", "bob"),
                                ("roles", "manager"),
                                ("email", "alice@example.test"),
                                ("department", "engineering"),
                            ]
                            .into_iter()
                            .map(|(k, v)| {
                                (
                                    k.to_string(),
                                    PbValue {
                                        kind: Some(Kind::StringValue(v.to_string())),
                                    },
                                )
                            })
                            .collect(),
                        })),
                    },
                )]
                .into_iter()
                .collect(),
            },
        )]
        .into_iter()
        .collect(),
        ..Default::default()
    });

    let requests = vec![
        // 0: alice updates her draft, carrying every secret (and one in the query).
        with_secrets(
            "PUT",
            "/documents/1?access_token=SECRET-QUERY",
            "alice",
            "user",
        ),
        // 1: carol may not update it.
        with_secrets("PUT", "/documents/1", "carol", "user"),
        // 2: a bad bearer token alone: 401.
        request(
            "GET",
            "/documents/1",
            &[("authorization", "Bearer SECRET-BEARER-TOKEN")],
        ),
        // 3: a valid bearer token: allowed, claims (with the email) become attributes.
        request("GET", "/documents/1", &[("authorization", &bearer)]),
        // 4: a public route.
        request("GET", "/health", &[("cookie", "session=SECRET-COOKIE")]),
        // 5: the attribute source is down.
        with_secrets("GET", "/broken/1", "alice", "user"),
        // 6: no route.
        with_secrets("GET", "/nowhere", "alice", "user"),
        // 7: a header copied into R.attr is not logged.
        request(
            "POST",
            "/documents",
            &[
                ("x-dev-user", "alice"),
                ("x-dev-roles", "user"),
                ("x-tenant", "SECRET-TENANT"),
                ("x-request-id", "abc-123"),
            ],
        ),
        // 8: jwt_authn claims, with the request id from the header when http.id is empty.
        jwt_authn,
    ];
    let mut ids = Vec::new();
    let mut allowed = Vec::new();
    for (i, mut r) in requests.into_iter().enumerate() {
        if i == 7 {
            let http = r.attributes.as_mut().unwrap().request.as_mut().unwrap();
            http.http.as_mut().unwrap().id.clear();
        }
        let resp = svc.decide(&r).await;
        ids.push(decision_id(&resp));
        allowed.push(is_allowed(&resp));
    }
    assert_eq!(
        allowed,
        [true, false, false, true, true, false, false, true, true]
    );
    assert!(audit.flush());

    let text = std::fs::read_to_string(&path).unwrap();
    for secret in SECRETS.iter().copied().chain([token.as_str(), "Bearer"]) {
        assert!(!text.contains(secret), "{secret:?} leaked into:\n{text}");
    }
    let lines = read_lines(&path);
    assert_eq!(lines.len(), ids.len(), "one line per decision:\n{text}");
    for (i, line) in lines.iter().enumerate() {
        let obj = line.as_object().unwrap();
        let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        assert_eq!(keys, KEYS, "line {i}");
        assert_eq!(line["decisionId"], ids[i].as_str(), "line {i}");
        assert_eq!(line["origin"], "ext_authz");
        assert_eq!(line["effect"], if allowed[i] { "allow" } else { "deny" });
        assert_eq!(line["policyRevision"], revision.as_str());
        let time = line["time"].as_str().unwrap();
        chrono::DateTime::parse_from_rfc3339(time).unwrap_or_else(|e| panic!("{time}: {e}"));
    }

    let l = &lines[0];
    assert_eq!(l["principal"]["id"], "alice");
    assert_eq!(l["principal"]["roles"], serde_json::json!(["user"]));
    assert_eq!(l["requestId"], "envoy-req-1");
    assert_eq!(l["traceId"], TRACE_ID);
    assert_eq!(l["status"], Value::Null);
    let res = &l["resources"][0];
    assert_eq!(
        (&res["kind"], &res["id"]),
        (&"document".into(), &"1".into())
    );
    assert_eq!(res["attr"]["owner"], "***", "masked");
    assert_eq!(res["attr"]["department"], "engineering");
    let action = &res["actions"][0];
    assert_eq!(action["action"], "update");
    assert_eq!(action["effect"], "allow");
    assert!(
        action["policy"]
            .as_str()
            .unwrap()
            .starts_with("resource.document.v"),
        "{action}"
    );
    assert_eq!(action["rule"], "update-own", "the deciding rule is named");

    let l = &lines[1];
    assert_eq!(l["status"], 403);
    assert_eq!(l["principal"]["id"], "carol");
    assert_eq!(l["resources"][0]["actions"][0]["effect"], "deny");
    assert!(
        l["reason"]
            .as_str()
            .unwrap()
            .contains("carol may not update")
    );

    let l = &lines[2];
    assert_eq!(
        (&l["status"], &l["reason"]),
        (&401.into(), &"invalid credentials".into())
    );
    assert_eq!(l["principal"], Value::Null);
    assert_eq!(l["traceId"], Value::Null);

    let l = &lines[3];
    assert_eq!(l["principal"]["id"], "alice");
    assert_eq!(l["principal"]["attr"]["email"], "***", "masked");
    assert_eq!(l["principal"]["attr"]["department"], "engineering");
    assert_eq!(l["resources"][0]["actions"][0]["action"], "read");

    assert_eq!(lines[4]["resources"], serde_json::json!([]));
    assert_eq!(lines[2]["resources"][0]["id"], "1");
    assert_eq!(lines[5]["status"], 403);
    assert_eq!(lines[5]["resources"][0]["id"], "1");
    assert_eq!(
        lines[5]["resources"][0]["actions"][0]["policy"],
        Value::Null
    );
    assert_eq!(lines[6]["principal"], Value::Null);

    let l = &lines[7];
    assert_eq!(l["requestId"], "abc-123");
    let attr = l["resources"][0]["attr"].as_object().unwrap();
    assert!(!attr.contains_key("tenant"), "{attr:?}");

    let l = &lines[8];
    assert_eq!(l["principal"]["id"], "bob");
    assert_eq!(l["principal"]["attr"]["email"], "***");
    assert_eq!(l["traceId"], TRACE_ID);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn attributes_are_left_out_unless_configured() {
    let dir = temp_dir("noattrs");
    let path = dir.join("audit.log");
    let audit = AuditSink::new(
        &audit_config(serde_json::json!({
            "mode": "all", "output": "file", "file": {"path": path},
        })),
        Metrics::default(),
    )
    .unwrap();
    let svc = service(store(), Metrics::default(), audit.clone()).await;
    let token = alice_token();
    let resp = svc
        .decide(&request(
            "GET",
            "/documents/1",
            &[("authorization", &format!("Bearer {token}"))],
        ))
        .await;
    assert!(is_allowed(&resp));
    assert!(audit.flush());
    let lines = read_lines(&path);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["principal"]["attr"], Value::Null);
    assert_eq!(lines[0]["resources"][0]["attr"], Value::Null);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains("engineering") && !text.contains("alice@example.test"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn jwt_cache_hits_and_misses_are_in_the_metrics() {
    let metrics = Metrics::default();
    let svc = service(store(), metrics.clone(), AuditSink::disabled()).await;
    let bearer = format!("Bearer {}", alice_token());
    for _ in 0..3 {
        let resp = svc
            .decide(&request(
                "POST",
                "/documents",
                &[("authorization", &bearer)],
            ))
            .await;
        assert!(decision_id(&resp).len() > 8);
    }
    let text = metrics.render(None);
    assert!(
        text.contains("gatehouse_jwt_cache_lookups_total{result=\"miss\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("gatehouse_jwt_cache_lookups_total{result=\"hit\"} 2\n"),
        "{text}"
    );
}

/// A writer that blocks until its gate opens, collecting what it is given.
#[derive(Clone, Default)]
struct Gated {
    bytes: Arc<Mutex<Vec<u8>>>,
    gate: Arc<(Mutex<bool>, Condvar)>,
}

impl Gated {
    fn open(&self) {
        *self.gate.0.lock().unwrap() = true;
        self.gate.1.notify_all();
    }

    fn line_count(&self) -> usize {
        self.bytes
            .lock()
            .unwrap()
            .iter()
            .filter(|b| **b == b'\n')
            .count()
    }
}

impl Write for Gated {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let (lock, cv) = &*self.gate;
        let mut open = lock.lock().unwrap();
        while !*open {
            open = cv.wait(open).unwrap();
        }
        self.bytes.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.write(&[]).map(|_| ())
    }
}

#[tokio::test]
async fn a_stuck_audit_writer_never_blocks_decisions() {
    let writer = Gated::default();
    let metrics = Metrics::default();
    let audit = AuditSink::to_writer(
        &audit_config(serde_json::json!({"mode": "all", "queueCapacity": 2})),
        metrics.clone(),
        writer.clone(),
    )
    .unwrap();
    let svc = service(store(), metrics.clone(), audit.clone()).await;
    let started = Instant::now();
    // The writer takes what fits in its 8 KiB buffer, then blocks; the queue holds 2.
    let n = 200;
    tokio::time::timeout(Duration::from_secs(10), async {
        for _ in 0..n {
            let resp = svc
                .decide(&with_secrets("PUT", "/documents/1", "alice", "user"))
                .await;
            assert!(is_allowed(&resp));
        }
    })
    .await
    .expect("decisions blocked on the audit writer");
    let elapsed = started.elapsed();
    let dropped = metrics.audit_dropped();
    assert!(dropped >= n - 40, "dropped {dropped} of {n} in {elapsed:?}");
    let text = metrics.render(None);
    let samples = parse_exposition(&text);
    assert_eq!(
        value(
            &samples,
            "gatehouse_audit_dropped_total",
            &[("reason", "queue_full")]
        ),
        dropped as f64
    );
    assert_eq!(
        value(
            &samples,
            "gatehouse_check_duration_seconds_count",
            &[("origin", "ext_authz")]
        ),
        n as f64
    );
    writer.open();
    assert!(audit.flush());
    assert_eq!(writer.line_count() as u64 + dropped, n);
}

#[tokio::test]
async fn the_audit_file_rotates_and_keeps_n_files() {
    let dir = temp_dir("rotate");
    let path = dir.join("audit.log");
    let audit = AuditSink::new(
        &audit_config(serde_json::json!({
            "mode": "all", "output": "file",
            "file": {"path": path, "maxBytes": 2000, "keep": 2},
        })),
        Metrics::default(),
    )
    .unwrap();
    let svc = service(store(), Metrics::default(), audit.clone()).await;
    let mut last = String::new();
    for _ in 0..40 {
        let resp = svc
            .decide(&with_secrets("PUT", "/documents/1", "alice", "user"))
            .await;
        last = decision_id(&resp);
    }
    assert!(audit.flush());
    let rotated = |n: usize| dir.join(format!("audit.log.{n}"));
    assert!(rotated(1).exists() && rotated(2).exists());
    assert!(!rotated(3).exists(), "only 2 rotated files are kept");
    let mut total = 0;
    for p in [path.clone(), rotated(1), rotated(2)] {
        let len = std::fs::metadata(&p).unwrap().len();
        assert!(len > 0 && len <= 2000, "{}: {len} bytes", p.display());
        total += read_lines(&p).len();
    }
    assert!(total < 40, "older files were removed");
    let current = read_lines(&path);
    assert_eq!(current.last().unwrap()["decisionId"], last.as_str());
    std::fs::remove_dir_all(&dir).unwrap();
}

// === the Prometheus text format ===

/// One parsed sample.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `k="v",...` with escapes, as the text format defines them.
fn parse_labels(s: &str, line: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = s;
    while !rest.is_empty() {
        let (name, after) = rest
            .split_once("=\"")
            .unwrap_or_else(|| panic!("bad labels: {line}"));
        assert!(valid_name(name), "bad label name {name:?}: {line}");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    other => panic!("bad escape {other:?}: {line}"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => panic!("unterminated label value: {line}"),
            }
        };
        assert!(
            labels.insert(name.to_string(), value).is_none(),
            "duplicate label: {line}"
        );
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    labels
}

/// Parses the text exposition format 0.0.4 and checks it: every line is `# HELP`,
/// `# TYPE` or a sample of a declared family; no series twice; histogram buckets are
/// cumulative and end at `+Inf`, with `_sum` and `_count` (equal to the `+Inf` bucket).
fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, _) = rest.split_once(' ').unwrap_or((rest, ""));
            assert!(valid_name(name), "{line}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect(line);
            assert!(valid_name(name), "{line}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(
                types.insert(name.to_string(), kind.to_string()).is_none(),
                "{line}"
            );
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "stray line {line:?}"
        );
        let (series, value) = line.rsplit_once(' ').expect(line);
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value: {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (
                name,
                parse_labels(rest.strip_suffix('}').expect(line), line),
            ),
            None => (series, BTreeMap::new()),
        };
        assert!(valid_name(name), "{line}");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(*s)
                    .filter(|f| types.get(*f).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(name);
        assert!(
            types.contains_key(family),
            "sample before its # TYPE: {line}"
        );
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    let mut seen = std::collections::HashSet::new();
    for s in &samples {
        assert!(
            seen.insert((s.name.clone(), s.labels.clone())),
            "duplicate {s:?}"
        );
    }
    for (family, _) in types.iter().filter(|(_, t)| *t == "histogram") {
        let mut groups: BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>> = BTreeMap::new();
        for s in samples
            .iter()
            .filter(|s| s.name == format!("{family}_bucket"))
        {
            let mut key = s.labels.clone();
            let le = key.remove("le").expect("bucket without le");
            let le: f64 = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            };
            groups.entry(key).or_default().push((le, s.value));
        }
        for (labels, buckets) in groups {
            assert!(
                buckets.windows(2).all(|w| w[0].0 < w[1].0),
                "{family} le order"
            );
            assert!(
                buckets.windows(2).all(|w| w[0].1 <= w[1].1),
                "{family} not cumulative"
            );
            let (le, inf) = *buckets.last().unwrap();
            assert_eq!(le, f64::INFINITY, "{family} must end at +Inf");
            let find = |suffix: &str| {
                samples
                    .iter()
                    .find(|s| s.name == format!("{family}{suffix}") && s.labels == labels)
                    .unwrap_or_else(|| panic!("{family}{suffix} {labels:?} missing"))
                    .value
            };
            assert_eq!(find("_count"), inf);
            assert!(find("_sum") >= 0.0);
        }
    }
    samples
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    samples
        .iter()
        .find(|s| s.name == name && s.labels == want)
        .unwrap_or_else(|| panic!("no sample {name} {want:?}"))
        .value
}

/// GET /metrics over HTTP/1.1: (content type, body).
async fn scrape(addr: SocketAddr) -> (String, String) {
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    sock.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    sock.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        crate::util::dechunk(body)
    } else {
        body.to_string()
    };
    (content_type, body)
}

#[tokio::test]
async fn metrics_endpoint_parses_and_counters_move() {
    let metrics = Metrics::default();
    let store = store();
    let svc = service(store.clone(), metrics.clone(), AuditSink::disabled()).await;

    let snapshot_store = store.clone();
    let router = metrics_router(metrics.clone(), move || {
        let st = snapshot_store.status();
        let counts = snapshot_store.snapshot().engine.policies().counts();
        Some(PolicyStats {
            revision: st.revision,
            source: "directory".into(),
            reloads_ok: st.reloads_ok,
            reloads_failed: st.reloads_failed,
            loaded: vec![
                ("resource".into(), counts.resource as u64),
                ("principal".into(), counts.principal as u64),
                ("derived_roles".into(), counts.derived_roles as u64),
            ],
        })
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });

    let (content_type, before) = scrape(addr).await;
    assert_eq!(content_type, "text/plain; version=0.0.4");
    let before = parse_exposition(&before);
    assert_eq!(
        value(
            &before,
            "gatehouse_check_duration_seconds_count",
            &[("origin", "ext_authz")]
        ),
        0.0
    );

    let alice = [("x-dev-user", "alice"), ("x-dev-roles", "user")];
    let carol = [("x-dev-user", "carol"), ("x-dev-roles", "user")];
    assert!(is_allowed(
        &svc.decide(&request("PUT", "/documents/1", &alice)).await
    ));
    assert!(is_allowed(
        &svc.decide(&request("GET", "/documents/1", &alice)).await
    ));
    assert!(!is_allowed(
        &svc.decide(&request("PUT", "/documents/1", &carol)).await
    ));
    assert!(!is_allowed(
        &svc.decide(&request("GET", "/broken/1", &alice)).await
    ));
    assert!(is_allowed(
        &svc.decide(&request("GET", "/health", &[])).await
    ));

    let (_, after) = scrape(addr).await;
    let after = parse_exposition(&after);
    let decisions = |effect: &str, action: &str| {
        value(
            &after,
            "gatehouse_decisions_total",
            &[
                ("effect", effect),
                ("kind", "document"),
                ("action", action),
                ("origin", "ext_authz"),
            ],
        )
    };
    assert_eq!(decisions("allow", "update"), 1.0);
    assert_eq!(decisions("allow", "read"), 1.0);
    assert_eq!(decisions("deny", "update"), 1.0);
    assert_eq!(
        decisions("deny", "read"),
        1.0,
        "the broken attribute source"
    );
    assert_eq!(
        value(
            &after,
            "gatehouse_check_duration_seconds_count",
            &[("origin", "ext_authz")]
        ),
        5.0
    );
    assert_eq!(
        value(
            &after,
            "gatehouse_check_duration_seconds_count",
            &[("origin", "api")]
        ),
        0.0
    );
    let fetches = |r: &str| {
        value(
            &after,
            "gatehouse_attribute_fetches_total",
            &[("result", r)],
        )
    };
    assert_eq!(fetches("ok"), 1.0);
    assert_eq!(fetches("cache_hit"), 2.0);
    assert_eq!(fetches("error"), 1.0);
    let st = store.status();
    assert_eq!(
        value(
            &after,
            "gatehouse_policy_revision_info",
            &[("source", "directory"), ("revision", &st.revision)]
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "gatehouse_policy_reloads_total",
            &[("result", "ok")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "gatehouse_policy_reloads_total",
            &[("result", "failed")]
        ),
        0.0
    );
    assert!(value(&after, "gatehouse_policies_loaded", &[("type", "resource")]) >= 1.0);
    assert_eq!(
        value(
            &after,
            "gatehouse_audit_dropped_total",
            &[("reason", "queue_full")]
        ),
        0.0
    );
}

#[tokio::test]
async fn cerbos_api_calls_are_counted_and_logged_with_origin_api() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let store = PolicyStore::load(&root.join("policies"), EngineConfig::default()).unwrap();
    let metrics = Metrics::default();
    let log = Gated::default();
    log.open();
    let audit = AuditSink::to_writer(
        &audit_config(serde_json::json!({"mode": "all"})),
        metrics.clone(),
        log.clone(),
    )
    .unwrap();
    let settings = gatehouse::api::ApiSettings::default().with_sinks(
        gatehouse::telemetry::Sinks::new(metrics.clone(), audit.clone(), Default::default()),
    );
    let servers = crate::api_server::start(store, settings).await;
    let (status, body) = servers
        .check_http(&serde_json::json!({
            "requestId": "r-42",
            "principal": {"id": "alice", "roles": ["user"], "attr": {"department": "engineering"}},
            "resources": [{"actions": ["read", "delete"], "resource": {"kind": "document", "id": "d1",
                "attr": {"owner": "alice", "department": "engineering", "status": "draft", "classification": "internal"}}}]
        }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(audit.flush());
    let text = String::from_utf8(log.bytes.lock().unwrap().clone()).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert_eq!(lines[0]["origin"], "api");
    assert_eq!(lines[0]["requestId"], "r-42");
    assert_eq!(lines[0]["decisionId"], body["cerbosCallId"]);
    assert_eq!(lines[0]["resources"][0]["actions"][0]["action"], "read");
    let rendered = metrics.render(None);
    assert!(rendered.contains("origin=\"api\""), "{rendered}");
    assert!(
        rendered.contains("gatehouse_check_duration_seconds_count{origin=\"api\"} 1"),
        "{rendered}"
    );
}

/// Issue 14: a PlanResources call is counted (`gatehouse_plans_total`,
/// `gatehouse_plan_duration_seconds`) and logged as a check is, with its filter's kind; the
/// condition (it holds principal attribute values) only with `includeAttributes`.
#[tokio::test]
async fn cerbos_api_plans_are_counted_and_logged() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for include_attributes in [false, true] {
        let store = PolicyStore::load(&root.join("policies"), EngineConfig::default()).unwrap();
        let metrics = Metrics::default();
        let log = Gated::default();
        log.open();
        let audit = AuditSink::to_writer(
            &audit_config(
                serde_json::json!({"mode": "all", "includeAttributes": include_attributes}),
            ),
            metrics.clone(),
            log.clone(),
        )
        .unwrap();
        let settings = gatehouse::api::ApiSettings::default().with_sinks(
            gatehouse::telemetry::Sinks::new(metrics.clone(), audit.clone(), Default::default()),
        );
        let servers = crate::api_server::start(store, settings).await;
        let (status, body) = servers
            .http(
                "POST",
                "/api/plan/resources",
                serde_json::json!({
                    "requestId": "p-7",
                    "action": "read",
                    "principal": {"id": "bob", "roles": ["manager"], "attr": {"department": "engineering"}},
                    "resource": {"kind": "document"}
                })
                .to_string()
                .into_bytes(),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["filter"]["kind"], "KIND_CONDITIONAL", "{body}");
        assert!(audit.flush());
        let text = String::from_utf8(log.bytes.lock().unwrap().clone()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 1, "{text}");
        let line = &lines[0];
        assert_eq!(line["origin"], "api");
        assert_eq!(line["requestId"], "p-7");
        assert_eq!(line["decisionId"], body["cerbosCallId"]);
        assert_eq!(line["principal"]["id"], "bob");
        assert_eq!(line["resources"][0]["kind"], "document");
        assert_eq!(line["plan"]["actions"], serde_json::json!(["read"]));
        assert_eq!(line["plan"]["filter"], "KIND_CONDITIONAL");
        if include_attributes {
            let condition = line["plan"]["condition"].as_str().unwrap();
            assert!(condition.contains("request.resource.attr.owner"), "{line}");
        } else {
            assert_eq!(line["plan"]["condition"], Value::Null, "{line}");
            assert!(!text.contains("engineering"), "{text}");
        }
        let rendered = metrics.render(None);
        for want in [
            "gatehouse_plans_total{filter=\"conditional\",kind=\"document\",action=\"read\",origin=\"api\"} 1",
            "gatehouse_plan_duration_seconds_count{origin=\"api\"} 1",
            "gatehouse_check_duration_seconds_count{origin=\"api\"} 0",
        ] {
            assert!(rendered.contains(want), "{want} missing:\n{rendered}");
        }
    }
}

/// Issue 12, item 7: PlanResources callers cannot create label values either; kinds and
/// actions the policy set does not name are counted under `other`.
#[tokio::test]
async fn plan_metric_labels_come_from_the_policy_set() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let store = PolicyStore::load(&root.join("policies"), EngineConfig::default()).unwrap();
    let metrics = Metrics::default();
    let settings =
        gatehouse::api::ApiSettings::default().with_sinks(gatehouse::telemetry::Sinks::new(
            metrics.clone(),
            AuditSink::disabled(),
            Default::default(),
        ));
    let servers = crate::api_server::start(store, settings).await;
    for (kind, action) in [
        ("invented-kind-1", "read"),
        ("document", "invented-action-2"),
    ] {
        let (status, body) = servers
            .http(
                "POST",
                "/api/plan/resources",
                serde_json::json!({
                    "requestId": "p-8",
                    "action": action,
                    "principal": {"id": "bob", "roles": ["manager"]},
                    "resource": {"kind": kind}
                })
                .to_string()
                .into_bytes(),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let rendered = metrics.render(None);
    assert!(!rendered.contains("invented"), "{rendered}");
    for want in [
        "gatehouse_plans_total{filter=\"always_denied\",kind=\"other\",action=\"other\",origin=\"api\"} 1",
        "gatehouse_plans_total{filter=\"always_denied\",kind=\"document\",action=\"other\",origin=\"api\"} 1",
    ] {
        assert!(rendered.contains(want), "{want} missing:\n{rendered}");
    }
}
