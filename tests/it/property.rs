//! Property tests (proptest) of the request-facing parsers (issue 12): Envoy CheckRequests,
//! the Cerbos API's JSON, JWTs, CEL expressions and policy YAML, generated and mutated.
//! Properties: nothing panics; no allow where the reference (the engine asked directly,
//! on the same input as read independently by the test) would deny; well-formed inputs
//! get exactly the engine's decision; errors on policies carry `file:line:col`.
//!
//! CI runs a small number of cases per property (a few seconds in all); `PROPTEST_CASES`
//! sets the number per property for long runs (README, "Development"):
//!
//! ```sh
//! PROPTEST_CASES=100000 cargo test --test it property -- --nocapture
//! ```
//!
//! Each property prints how many inputs it generated (`property <name>: N cases`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Value as Json, json};

use gatehouse::api::pb::cerbos::effect::v1::Effect as PbEffect;
use gatehouse::api::{ApiSettings, CerbosApi, decode_check_resources};
use gatehouse::engine::{EngineConfig, input_from_json};
use gatehouse::extauthz;
use gatehouse::policy::compiled::Effect;
use gatehouse::store::PolicyStore;

use crate::api_diff::Rng;
use crate::expr_gen::{ALL, Gen, RESOURCE_ATTR};

/// `default` cases, or `PROPTEST_CASES`; no regression files (a failure prints the
/// minimal input).
fn config(default: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// Runs `test` on inputs of `strategy`, counting them; fails with proptest's minimal case.
fn run<S: Strategy>(
    name: &str,
    default_cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let count = AtomicU64::new(0);
    let mut runner = TestRunner::new(config(default_cases));
    let result = runner.run(&strategy, |v| {
        count.fetch_add(1, Ordering::Relaxed);
        test(v)
    });
    println!("property {name}: {} cases", count.load(Ordering::Relaxed));
    if let Err(e) = result {
        panic!("property {name} failed: {e}");
    }
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn store() -> Arc<PolicyStore> {
    Arc::new(PolicyStore::load(&root().join("policies"), EngineConfig::default()).unwrap())
}

/// The engine's effect for each action, asked directly.
fn engine_effects(store: &PolicyStore, input: &Json) -> BTreeMap<String, bool> {
    let input = input_from_json(input).expect("reference input");
    let out = store.snapshot().engine.check(&input).expect("engine");
    out.actions
        .into_iter()
        .map(|a| (a.action, a.effect == Effect::Allow))
        .collect()
}

// === Envoy CheckRequest mapping ==========================================================

/// Attributes of the documents the attribute source knows.
fn document(id: &str) -> Option<&'static str> {
    match id {
        "1" => Some(
            r#"{"owner":"alice","department":"engineering","status":"draft","classification":"internal","amount":10,"archived":false}"#,
        ),
        "2" => Some(
            r#"{"owner":"alice","department":"engineering","status":"in_review","classification":"confidential","amount":5000,"archived":false}"#,
        ),
        "3" => Some(
            r#"{"owner":"carol","department":"sales","status":"in_review","classification":"internal","amount":100,"archived":true}"#,
        ),
        _ => None,
    }
}

fn extauthz_config(attrs: std::net::SocketAddr) -> extauthz::ExtAuthzConfig {
    let yaml = format!(
        r#"
headerPrefix: x-gatehouse-
principal:
  sources:
    - headers: {{id: x-dev-user, roles: x-dev-roles}}
routes:
  - path: /health
    public: true
  - path: /documents
    methods: [POST]
    resource: {{kind: document, id: new}}
    action: create
  - path: /documents/{{id}}
    resource: {{kind: document, id: "{{id}}"}}
    attributes:
      fetch: {{url: "http://{attrs}/attrs/{{id}}", timeoutMs: 10000, cacheTtlMs: 60000}}
  - path: /documents/{{id}}/approve
    methods: [POST]
    resource: {{kind: document, id: "{{id}}"}}
    action: approve
    attributes:
      fetch: {{url: "http://{attrs}/attrs/{{id}}", timeoutMs: 10000, cacheTtlMs: 60000}}
"#
    );
    serde_saphyr::from_str(&yaml).unwrap()
}

/// A generated request: method, path pieces, principal headers, forged headers.
#[derive(Clone, Debug)]
struct Request {
    method: String,
    path: String,
    user: Option<String>,
    roles: Option<String>,
    forged: bool,
}

const METHODS: &[&str] = &[
    "GET", "GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS", "get", "", "TRACE",
];
const CANONICAL_SEGMENTS: &[&str] = &["documents", "1", "2", "3", "9", "approve", "health"];
const HOSTILE_SEGMENTS: &[&str] = &[
    "documents",
    "1",
    "2",
    "approve",
    "health",
    ".",
    "..",
    "",
    "%2e%2e",
    "%2F",
    "%2f",
    "%00",
    "%5c",
    "%",
    "%zz",
    "%ff",
    "%31",
    "%64ocuments",
    "DOCUMENTS",
    "1;x",
    "1?x=1",
    "#",
    "é",
    "%C3%A9",
    "1%20",
    " ",
    "admin",
    "*",
];
const USERS: &[&str] = &[
    "alice", "bob", "carol", "root", "", "ALICE", "alice ", "a,b",
];
const ROLES: &[&str] = &[
    "user",
    "manager",
    "admin",
    "user,admin",
    "user, manager",
    "",
    ",",
    "ADMIN",
    "admin%2C",
    "*",
    "user,,",
    " admin ",
];

fn request_strategy(segments: &'static [&'static str]) -> impl Strategy<Value = Request> {
    (
        proptest::sample::select(METHODS),
        proptest::collection::vec(proptest::sample::select(segments), 0..4),
        proptest::option::weighted(0.9, proptest::sample::select(USERS)),
        proptest::option::weighted(0.9, proptest::sample::select(ROLES)),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(method, segs, user, roles, forged, slash)| {
            let mut path = format!("/{}", segs.join("/"));
            if slash && path.len() > 1 {
                path.push('/');
            }
            Request {
                method: method.to_string(),
                path,
                user: user.map(str::to_string),
                roles: roles.map(str::to_string),
                forged,
            }
        })
}

/// The reference mapping, written independently of Gatehouse's for this route table:
/// the request's resource, action and principal, or `None` (no route: deny). Paths are
/// percent-decoded once, the query and a trailing slash dropped; anything with an empty,
/// `.` or `..` segment, NUL or backslash maps to nothing.
fn reference(r: &Request) -> Option<(Option<Json>, String, String)> {
    let raw = r.path.split(['?', '#']).next().unwrap_or("");
    let bytes = raw.as_bytes();
    let mut decoded = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            decoded.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    let mut path = String::from_utf8(decoded).ok()?;
    if path.contains(['\0', '\\']) {
        return None;
    }
    if path.len() > 1 && path.ends_with('/') {
        path.pop();
    }
    let segs: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
    if path != "/" && segs.iter().any(|s| s.is_empty() || *s == "." || *s == "..") {
        return None;
    }
    let principal = r.user.as_deref().filter(|u| !u.is_empty()).map(|id| {
        let roles: Vec<&str> = r
            .roles
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        json!({"id": id, "roles": roles})
    });
    // Method names are matched case-insensitively (Envoy sends them upper-case).
    let method = r.method.to_ascii_uppercase();
    let method = method.as_str();
    let (id, action) = match (segs.as_slice(), method) {
        (["health"], _) => return Some((principal, "public".into(), String::new())),
        (["documents"], "POST") => ("new", "create"),
        (["documents", id, "approve"], "POST") => (*id, "approve"),
        (["documents", id], m) => {
            let action = match m {
                "GET" | "HEAD" => "read",
                "POST" => "create",
                "PUT" | "PATCH" => "update",
                "DELETE" => "delete",
                _ => return None,
            };
            (*id, action)
        }
        _ => return None,
    };
    let attr: Json = if id == "new" {
        json!({})
    } else {
        serde_json::from_str(document(id)?).unwrap()
    };
    let input = principal.as_ref().map(|p| {
        json!({
            "principal": p,
            "resource": {"kind": "document", "id": id, "attr": attr},
            "actions": [action],
        })
    });
    Some((input, action.to_string(), id.to_string()))
}

fn check_request(r: &Request) -> gatehouse::extauthz::pb::envoy::service::auth::v3::CheckRequest {
    let mut headers: Vec<(&str, &str)> = Vec::new();
    if let Some(u) = &r.user {
        headers.push(("x-dev-user", u));
    }
    if let Some(roles) = &r.roles {
        headers.push(("x-dev-roles", roles));
    }
    if r.forged {
        headers.push(("x-gatehouse-principal", "root"));
        headers.push(("x-gatehouse-roles", "admin"));
    }
    crate::util::check_request(&r.method, &r.path, &headers)
}

/// What Gatehouse decided: allowed, and the principal header it set.
fn allowed(
    resp: &gatehouse::extauthz::pb::envoy::service::auth::v3::CheckResponse,
) -> Option<BTreeMap<String, String>> {
    use gatehouse::extauthz::pb::envoy::service::auth::v3::check_response::HttpResponse;
    match (&resp.status, &resp.http_response) {
        (Some(s), Some(HttpResponse::OkResponse(ok))) if s.code == 0 => Some(
            ok.headers
                .iter()
                .filter_map(|h| h.header.as_ref().map(|h| (h.key.clone(), h.value.clone())))
                .collect(),
        ),
        (Some(s), _) if s.code == 0 => panic!("status OK without an OK response: {resp:?}"),
        _ => None,
    }
}

/// Runs the ext_authz property over `segments`; `exact`: the decision must equal the
/// reference's both ways (canonical requests), else only "allowed => reference allows".
fn extauthz_property(
    name: &str,
    default_cases: u32,
    segments: &'static [&'static str],
    exact: bool,
) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store = store();
    let service = rt.block_on(async {
        let attrs = crate::util::attribute_source(document).await;
        extauthz::build(&extauthz_config(attrs), store.clone(), root())
            .await
            .unwrap()
    });
    let allows = AtomicU64::new(0);
    run(name, default_cases, request_strategy(segments), |r| {
        let resp = rt.block_on(service.decide(&check_request(&r)));
        let got = allowed(&resp);
        let want = match reference(&r) {
            None => false,
            Some((_, public, _)) if public == "public" => true,
            Some((None, _, _)) => false,
            Some((Some(input), action, _)) => engine_effects(&store, &input)[&action],
        };
        if let Some(headers) = &got {
            allows.fetch_add(1, Ordering::Relaxed);
            prop_assert!(want, "allowed, the reference denies: {r:?} -> {headers:?}");
            if let Some(p) = headers.get("x-gatehouse-principal")
                && r.user.as_deref() != Some("root")
            {
                prop_assert_ne!(p, "root", "forged principal reached the backend: {:?}", r);
            }
        } else if exact {
            // A fetch that timed out on an overloaded machine is a correct (fail-closed)
            // denial the reference cannot predict; the document ids it allows all exist.
            let unavailable = resp
                .status
                .as_ref()
                .is_some_and(|s| s.message.contains("resource attributes unavailable"));
            prop_assert!(
                !want || unavailable,
                "denied, the reference allows: {r:?} -> {resp:?}"
            );
        }
        Ok(())
    });
    if config(0).cases >= 100 {
        assert!(
            allows.load(Ordering::Relaxed) > 0,
            "{name}: nothing was ever allowed"
        );
    }
}

/// Well-formed requests: Gatehouse's decision is exactly the engine's on the same input.
#[test]
fn issue_12_property_check_requests_decide_as_the_engine() {
    extauthz_property(
        "check_requests_decide_as_the_engine",
        400,
        CANONICAL_SEGMENTS,
        true,
    );
}

/// Hostile paths, methods, principals and forged headers: no panic, never an allow the
/// reference would deny, never a forged principal passed on.
#[test]
fn issue_12_property_hostile_check_requests_never_allow_more() {
    extauthz_property(
        "hostile_check_requests_never_allow_more",
        600,
        HOSTILE_SEGMENTS,
        false,
    );
}

// === The Cerbos API's JSON ===============================================================

const KINDS: &[&str] = &["document", "document", "album", ""];
const ACTIONS: &[&str] = &[
    "read", "update", "delete", "approve", "create", "list", "*", "",
];
const STATUSES: &[&str] = &["draft", "in_review", "approved"];
const DEPARTMENTS: &[&str] = &["engineering", "sales", ""];

fn api_request() -> impl Strategy<Value = Json> {
    let resource = (
        proptest::sample::select(KINDS),
        "[a-z0-9]{0,3}",
        proptest::sample::select(USERS),
        proptest::sample::select(DEPARTMENTS),
        proptest::sample::select(STATUSES),
        any::<bool>(),
        0i64..20000,
        proptest::collection::vec(proptest::sample::select(ACTIONS), 1..4),
    )
        .prop_map(
            |(kind, id, owner, dept, status, archived, amount, actions)| {
                json!({
                    "actions": actions,
                    "resource": {"kind": kind, "id": id, "attr": {
                        "owner": owner, "department": dept, "status": status,
                        "classification": if archived { "confidential" } else { "internal" },
                        "archived": archived, "amount": amount}}
                })
            },
        );
    (
        proptest::sample::select(USERS),
        proptest::collection::vec(
            proptest::sample::select(&["user", "manager", "admin", "x"][..]),
            0..3,
        ),
        proptest::sample::select(DEPARTMENTS),
        0i64..20000,
        proptest::collection::vec(resource, 1..3),
    )
        .prop_map(|(id, roles, dept, limit, resources)| {
            json!({
                "requestId": "p",
                "principal": {"id": id, "roles": roles, "attr": {
                    "department": dept, "approval_limit": limit, "clearances": ["confidential"]}},
                "resources": resources,
            })
        })
}

/// One mutation of a JSON text: a byte replaced, removed or inserted, or a cut.
fn mutate_bytes(text: &[u8], at: usize, op: u8, byte: u8) -> Vec<u8> {
    let mut b = text.to_vec();
    if b.is_empty() {
        return vec![byte];
    }
    let at = at % b.len();
    match op % 4 {
        0 => b[at] = byte,
        1 => {
            b.remove(at);
        }
        2 => b.insert(at, byte),
        _ => b.truncate(at),
    }
    b
}

/// Structural mutations of a request: a value replaced by another type, a key removed,
/// a key spelled in snake_case.
fn mutate_json(v: &mut Json, rng: &mut Rng) {
    let replacements = [
        json!(null),
        json!(1),
        json!(-1.5),
        json!("x"),
        json!([]),
        json!({}),
        json!(["admin"]),
        json!(true),
        json!(1e300),
    ];
    match v {
        Json::Object(m) if !m.is_empty() => {
            let keys: Vec<String> = m.keys().cloned().collect();
            let k = rng.pick(&keys).clone();
            match rng.below(4) {
                0 => {
                    m.remove(&k);
                }
                1 => {
                    m.insert(k, rng.pick(&replacements).clone());
                }
                2 => {
                    if let Some(inner) = m.get_mut(&k) {
                        mutate_json(inner, rng);
                    }
                }
                _ => {
                    let val = m.remove(&k).unwrap();
                    let snake: String = k
                        .chars()
                        .flat_map(|c| {
                            if c.is_ascii_uppercase() {
                                vec!['_', c.to_ascii_lowercase()]
                            } else {
                                vec![c]
                            }
                        })
                        .collect();
                    m.insert(snake, val);
                }
            }
        }
        Json::Array(a) if !a.is_empty() => {
            let i = rng.below(a.len());
            if rng.chance(30) {
                a.remove(i);
            } else {
                mutate_json(&mut a[i], rng);
            }
        }
        other => *other = rng.pick(&replacements).clone(),
    }
}

/// For every allowed action of the API's answer, the engine on the same input (the
/// request as JSON, read by the engine's own reader) allows too; `exact`: the effects
/// are equal.
fn check_api_answer(
    store: &PolicyStore,
    request: &Json,
    resp: &gatehouse::api::pb::cerbos::response::v1::CheckResourcesResponse,
    exact: bool,
) -> Result<(), TestCaseError> {
    let resources = request["resources"].as_array().cloned().unwrap_or_default();
    prop_assert_eq!(resp.results.len(), resources.len());
    for (result, entry) in resp.results.iter().zip(&resources) {
        let input = json!({
            "requestId": request.get("requestId").cloned().unwrap_or(json!("")),
            "principal": request["principal"],
            "resource": entry["resource"],
            "actions": entry["actions"],
        });
        let want = engine_effects(store, &input);
        for (action, effect) in &result.actions {
            let allowed = *effect == PbEffect::Allow as i32;
            let reference = want.get(action).copied().unwrap_or(false);
            if allowed {
                prop_assert!(reference, "API allows {action}, the engine denies: {input}");
            } else if exact {
                prop_assert!(
                    !reference,
                    "API denies {action}, the engine allows: {input}"
                );
            }
        }
    }
    Ok(())
}

fn api() -> (tokio::runtime::Runtime, Arc<PolicyStore>, CerbosApi) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = store();
    let api = CerbosApi::new(store.clone(), ApiSettings::default());
    (rt, store, api)
}

/// Well-formed CheckResources JSON: the API's effects are the engine's.
#[test]
fn issue_12_property_api_requests_decide_as_the_engine() {
    let (rt, store, api) = api();
    run(
        "api_requests_decide_as_the_engine",
        300,
        api_request(),
        |request| {
            let body = serde_json::to_vec(&request).unwrap();
            let decoded = decode_check_resources(&body).expect("well-formed request decodes");
            match rt.block_on(api.check_resources(decoded)) {
                Ok(resp) => check_api_answer(&store, &request, &resp, true),
                // Cerbos's request rules refuse empty kinds, ids and actions.
                Err(e) => {
                    prop_assert_eq!(e.code(), tonic::Code::InvalidArgument, "{}", e.message());
                    Ok(())
                }
            }
        },
    );
}

/// Mutated CheckResources JSON (bytes and structure): no panic, a clean error or an
/// answer that allows nothing the engine would deny on the same input.
#[test]
fn issue_12_property_mutated_api_requests_never_allow_more() {
    let (rt, store, api) = api();
    let strategy = (
        api_request(),
        any::<u64>(),
        any::<usize>(),
        any::<u8>(),
        any::<u8>(),
    );
    run(
        "mutated_api_requests_never_allow_more",
        600,
        strategy,
        |(request, seed, at, op, byte)| {
            let mut rng = Rng(seed | 1);
            let mut structural = request.clone();
            for _ in 0..=rng.below(3) {
                mutate_json(&mut structural, &mut rng);
            }
            let raw = mutate_bytes(&serde_json::to_vec(&request).unwrap(), at, op, byte);
            for body in [serde_json::to_vec(&structural).unwrap(), raw] {
                let Ok(decoded) = decode_check_resources(&body) else {
                    continue;
                };
                let Ok(resp) = rt.block_on(api.check_resources(decoded)) else {
                    continue;
                };
                // Whatever was decoded and answered is JSON the engine can read.
                let json: Json = serde_json::from_slice(&body).expect("decoded, so JSON");
                let normalised = normalise_api_json(&json);
                check_api_answer(&store, &normalised, &resp, false)?;
            }
            Ok(())
        },
    );
}

/// The request as the engine's reader takes it: snake_case keys of the API spelled in
/// camelCase (the API accepts both), so the reference reads the same fields.
fn normalise_api_json(v: &Json) -> Json {
    match v {
        Json::Object(m) => Json::Object(
            m.iter()
                .map(|(k, v)| {
                    let mut camel = String::new();
                    let mut up = false;
                    for c in k.chars() {
                        if c == '_' {
                            up = true;
                        } else if up {
                            camel.push(c.to_ascii_uppercase());
                            up = false;
                        } else {
                            camel.push(c);
                        }
                    }
                    // attribute maps keep their keys as given
                    let keep = matches!(k.as_str(), "attr");
                    (
                        camel,
                        if keep {
                            v.clone()
                        } else {
                            normalise_api_json(v)
                        },
                    )
                })
                .collect(),
        ),
        Json::Array(a) => Json::Array(a.iter().map(normalise_api_json).collect()),
        other => other.clone(),
    }
}

// === CEL =================================================================================

struct Host;

impl gatehouse::cel::HostScope for Host {
    fn variable(&self, name: &str) -> Option<u16> {
        match name {
            "request" => Some(0),
            "P" => Some(1),
            "R" => Some(2),
            _ => None,
        }
    }
    fn select(&self, _: &str, _: &str) -> Option<Result<gatehouse::cel::HostBinding, String>> {
        None
    }
}

const EXPR_NOISE: &[&str] = &[
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ".",
    ",",
    "?",
    ":",
    "!",
    "-",
    "+",
    "*",
    "/",
    "%",
    "\"",
    "'",
    "\\",
    "&&",
    "||",
    "==",
    " in ",
    "1",
    "0",
    "u",
    "b\"",
    "r\"",
    "\u{0}",
    "é",
    "9223372036854775808",
    ".size()",
    "R.attr",
    "has(",
    "all(x, ",
    "map(",
    "1e999",
];

/// Expressions from the differential tests' generator (well typed and deliberately
/// mistyped), some mutated: parsing, compiling and evaluating never panic; as a policy
/// condition, the engine allows exactly when the expression evaluates to `true`
/// (errors and non-booleans deny).
#[test]
fn issue_12_property_cel_expressions_evaluate_or_deny() {
    use gatehouse::cel::{Activation, Value, compile, from_json, parse};
    let resource_attr: Json = serde_json::from_str(RESOURCE_ATTR).unwrap();
    let principal = json!({"id": "alice", "roles": ["user", "b"], "attr": {"department": "x"}});
    let resource = json!({"kind": "k", "id": "r1", "attr": resource_attr});
    let request = json!({"principal": principal, "resource": resource});
    let host = [
        from_json(&request),
        from_json(&principal),
        from_json(&resource),
    ];
    let now = gatehouse::engine::now();
    let strategy = (
        1u64..,
        proptest::sample::select(ALL),
        0usize..4,
        any::<bool>(),
        proptest::collection::vec((any::<usize>(), proptest::sample::select(EXPR_NOISE)), 0..3),
    );
    run(
        "cel_expressions_evaluate_or_deny",
        400,
        strategy,
        |(seed, t, depth, mistyped, noise)| {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            let mut g = Gen { rng: &mut rng };
            let mut src = if mistyped {
                g.mistyped()
            } else {
                g.typed(t, depth)
            };
            for (at, n) in noise {
                let mut at = at % (src.len() + 1);
                while !src.is_char_boundary(at) {
                    at -= 1;
                }
                src.insert_str(at, n);
            }
            // Directly: parse, compile, evaluate.
            let direct = parse(&src)
                .ok()
                .and_then(|ast| compile(&ast, &Host).ok())
                .map(|p| p.eval(&Activation::new(&host, now)));
            // As a policy condition, through the engine.
            let yaml = format!(
                "apiVersion: api.cerbos.dev/v1\nresourcePolicy:\n  resource: k\n  version: default\n  rules:\n    - actions: [a]\n      effect: EFFECT_ALLOW\n      roles: ['*']\n      condition:\n        match:\n          expr: {}\n",
                serde_json::to_string(&src).unwrap()
            );
            let policies = gatehouse::policy::load::parse_policies(&yaml, "p.yaml")
                .map_err(|e| TestCaseError::fail(format!("{src:?}: {e}")))?;
            let Ok(set) = gatehouse::policy::compile_policies(&policies, Default::default()) else {
                return Ok(()); // refused at compile time: no policy, no allow
            };
            let engine = gatehouse::engine::Engine::new(Arc::new(set), EngineConfig::default());
            let input = input_from_json(&json!({
                "principal": principal, "resource": resource, "actions": ["a"]}))
            .unwrap();
            let out = engine.check_at(&input, now).unwrap();
            let engine_allows = out.actions[0].effect == Effect::Allow;
            let evaluates_true = matches!(direct, Some(Ok(Value::Bool(true))));
            prop_assert_eq!(
                engine_allows,
                evaluates_true,
                "{:?}: direct evaluation {:?}",
                src,
                direct
            );
            Ok(())
        },
    );
}

// === Policy YAML =========================================================================

fn policy_texts() -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![root().join("policies"), root().join("tests/data")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|e| e == "yaml")
                && let Ok(t) = std::fs::read_to_string(&p)
                && t.contains("apiVersion")
                && t.len() < 20_000
            {
                out.push(t);
            }
        }
    }
    out.sort();
    out
}

const YAML_NOISE: &[&str] = &[
    ":",
    "-",
    " ",
    "  ",
    "\n",
    "\n  ",
    "{",
    "}",
    "[",
    "]",
    "\"",
    "'",
    "#",
    "&a ",
    "*a",
    "<<: ",
    "!!str ",
    "!!binary ",
    "0x",
    "1e999",
    "\t",
    "expr: ",
    "(",
    ")",
    "&&",
    ".",
    "?",
    "\\",
    "\u{0}",
    "é",
    "9223372036854775808",
    "null",
    "~",
    "|",
    ">",
    "---\n",
    "...\n",
    "%YAML 1.1\n",
    "EFFECT_ALLOW",
    "EFFECT_DENY",
    "roles: ['*']",
    "actions: ['*']",
    "\u{feff}",
];

/// Mutated policy files (the bundled policies and the test data): each loads, or every
/// error names `file:line:col`; nothing panics, and whatever loads compiles or fails
/// cleanly.
#[test]
fn issue_12_property_mutated_policies_load_or_fail_with_positions() {
    let texts = policy_texts();
    assert!(texts.len() > 5, "policy texts found: {}", texts.len());
    let edit = (any::<usize>(), 0u8..4, proptest::sample::select(YAML_NOISE));
    let strategy = (
        proptest::sample::select(texts),
        proptest::collection::vec(edit, 1..5),
    );
    let position = regex::Regex::new(r"^fuzz\.yaml:[0-9]+:[0-9]+: ").unwrap();
    run(
        "mutated_policies_load_or_fail_with_positions",
        600,
        strategy,
        |(text, edits)| {
            let mut chars: Vec<char> = text.chars().collect();
            for (at, op, noise) in edits {
                let at = at % (chars.len() + 1);
                match op {
                    0 if at < chars.len() => {
                        chars.remove(at);
                    }
                    1 => {
                        for (i, c) in noise.chars().enumerate() {
                            chars.insert(at + i, c);
                        }
                    }
                    2 => chars.truncate(at),
                    _ if at < chars.len() => {
                        let other = (at * 7 + 3) % chars.len();
                        chars.swap(at, other);
                    }
                    _ => {}
                }
            }
            let mutated: String = chars.into_iter().collect();
            match gatehouse::policy::load::parse_policies(&mutated, "fuzz.yaml") {
                Ok(policies) => {
                    if let Err(errors) =
                        gatehouse::policy::compile_policies(&policies, Default::default())
                    {
                        for e in errors.errors() {
                            let line = e.to_string();
                            prop_assert!(
                                position.is_match(&line),
                                "no file:line:col in compile error {:?} for {:?}",
                                line,
                                mutated
                            );
                        }
                    }
                }
                Err(errors) => {
                    prop_assert!(!errors.errors().is_empty());
                    for e in errors.errors() {
                        let line = e.to_string();
                        prop_assert!(
                            position.is_match(&line),
                            "no file:line:col in {:?} for {:?}",
                            line,
                            mutated
                        );
                    }
                }
            }
            Ok(())
        },
    );
}
