//! Malformed policies, expressions and inputs never panic: deterministic random
//! mutation of real policies and random check inputs (a small property test; the
//! seed is fixed so a failure reproduces).

use std::path::Path;
use std::sync::Arc;

use gatehouse::cel::{MapValue, Value, from_json};
use gatehouse::engine::{CheckInput, Engine, EngineConfig, Principal, Resource, SchemaEnforcement};
use gatehouse::policy::load::parse_policies;

/// xorshift64*: tiny, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const NOISE: &[&str] = &[
    ":",
    "-",
    " ",
    "\n",
    "{",
    "}",
    "[",
    "]",
    "\"",
    "'",
    "#",
    "&a",
    "*a",
    "<<",
    "!!str",
    "0x",
    "1e999",
    "\t",
    "expr:",
    "(",
    ")",
    "&&",
    "||",
    ".",
    "?",
    "\\",
    "\u{0}",
    "é",
    "9223372036854775808",
    "null",
];

fn mutate(rng: &mut Rng, text: &str) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for _ in 0..=rng.below(4) {
        if chars.is_empty() {
            break;
        }
        let at = rng.below(chars.len());
        match rng.below(4) {
            0 => {
                chars.remove(at);
            }
            1 => {
                for (i, c) in rng.pick(NOISE).chars().enumerate() {
                    chars.insert(at + i, c);
                }
            }
            2 => chars.truncate(at),
            _ => {
                let other = rng.below(chars.len());
                chars.swap(at, other);
            }
        }
    }
    chars.into_iter().collect()
}

fn policy_files(dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() {
            policy_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "yaml" || e == "json")
            && let Ok(t) = std::fs::read_to_string(&p)
        {
            out.push(t);
        }
    }
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn mutated_policy_files_never_panic() {
    let mut texts = Vec::new();
    policy_files(&root().join("policies"), &mut texts);
    policy_files(&root().join("../shared/conformance/store"), &mut texts);
    policy_files(
        &root().join("../shared/conformance/planner/policies"),
        &mut texts,
    );
    assert!(!texts.is_empty());
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut parsed, mut planned) = (0, 0);
    for _ in 0..3_000 {
        let base = rng.pick(&texts).clone();
        let text = mutate(&mut rng, &base);
        if let Ok(policies) = parse_policies(&text, "fuzz.yaml") {
            parsed += 1;
            // Whatever parses must also compile or fail cleanly, and whatever compiles
            // must plan (issue 14): a filter or a clean error, never a panic.
            if let Ok(set) = gatehouse::policy::compile_policies(&policies, Default::default()) {
                planned += plan_every_kind(&mut rng, Arc::new(set), &text);
            }
        }
    }
    println!(
        "robustness: 3000 mutated policy files, {parsed} still parsed, {planned} plans on those that compiled"
    );
    assert!(planned > 100);
}

/// Plans every resource kind `text` names (and one it does not) for a few principals and
/// actions on `set`; returns the number of plans made.
fn plan_every_kind(
    rng: &mut Rng,
    set: Arc<gatehouse::policy::CompiledPolicySet>,
    text: &str,
) -> usize {
    let mut kinds: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("resource:"))
        .map(|k| k.trim().trim_matches('"').to_string())
        .collect();
    kinds.push("unknown_kind".into());
    let engine = Engine::new(set, EngineConfig::default());
    let roles = ["user", "admin", "employee", "manager", "*"];
    let actions = ["read", "view", "approve", "delete", "view:public", "*"];
    let mut n = 0;
    for kind in kinds {
        for _ in 0..2 {
            let input = gatehouse::planner::PlanInput {
                principal: Principal {
                    id: rng.pick(&["john", "bob", "harry"]).to_string(),
                    roles: (0..1 + rng.below(2))
                        .map(|_| Arc::from(*rng.pick(&roles)))
                        .collect(),
                    attr: random_attr(rng),
                    ..Default::default()
                },
                resource: gatehouse::planner::PlanResource {
                    kind: kind.clone(),
                    attr: if rng.below(3) == 0 {
                        random_attr(rng)
                    } else {
                        Default::default()
                    },
                    ..Default::default()
                },
                actions: vec![rng.pick(&actions).to_string()],
                ..Default::default()
            };
            if let Ok(plan) = engine.plan(&input) {
                assert!(!plan.filter_debug.is_empty());
            }
            n += 1;
        }
    }
    n
}

fn random_value(rng: &mut Rng, depth: u32) -> serde_json::Value {
    match rng.below(if depth > 2 { 5 } else { 7 }) {
        0 => serde_json::Value::Null,
        1 => serde_json::json!(rng.below(2) == 0),
        2 => serde_json::json!(rng.below(20_000) as f64 - 100.0),
        3 => serde_json::json!(*rng.pick(&[
            "alice",
            "engineering",
            "draft",
            "in_review",
            "",
            "10.0.0.1",
            "2021-04-22T10:05:20Z"
        ])),
        4 => serde_json::json!(f64::MAX),
        5 => serde_json::Value::Array(
            (0..rng.below(4))
                .map(|_| random_value(rng, depth + 1))
                .collect(),
        ),
        _ => {
            let keys = [
                "owner",
                "department",
                "status",
                "archived",
                "amount",
                "teams",
                "id",
                "geography",
            ];
            serde_json::Value::Object(
                (0..rng.below(6))
                    .map(|_| (rng.pick(&keys).to_string(), random_value(rng, depth + 1)))
                    .collect(),
            )
        }
    }
}

fn random_attr(rng: &mut Rng) -> Arc<MapValue> {
    match from_json(&random_value(rng, 0)) {
        Value::Map(m) => m,
        _ => Arc::new(MapValue::new()),
    }
}

#[test]
fn random_inputs_never_panic_and_always_decide() {
    let store = root().join("../shared/conformance/store");
    if !store.exists() {
        println!("robustness: SKIPPED random inputs, no conformance store");
        return;
    }
    let policies = Arc::new(gatehouse::policy::load_and_compile(&store).unwrap());
    let mut rng = Rng(42);
    let roles = [
        "employee",
        "manager",
        "admin",
        "acme_london_employee",
        "acme_jr_admin",
        "*",
        "",
    ];
    let kinds = [
        "leave_request",
        "purchase_order",
        "equipment_request",
        "document",
        "x:y",
        "",
    ];
    let scopes = [
        "",
        "acme",
        "acme.hr",
        "acme.hr.uk",
        "acme.hr.uk.london",
        "nope.x",
        ".",
    ];
    let versions = ["", "default", "20210210", "staging"];
    let actions = [
        "view",
        "view:public",
        "approve",
        "create",
        "*",
        "defer",
        "delete",
    ];
    for i in 0..2_000 {
        let config = EngineConfig {
            lenient_scope_search: i % 2 == 0,
            schema_enforcement: [
                SchemaEnforcement::None,
                SchemaEnforcement::Warn,
                SchemaEnforcement::Reject,
            ][i % 3],
            ..EngineConfig::default()
        };
        let engine = Engine::new(policies.clone(), config);
        let input = CheckInput {
            request_id: String::new(),
            principal: Principal {
                id: rng.pick(&["john", "donald_duck", "bob", ""]).to_string(),
                roles: (0..rng.below(3))
                    .map(|_| Arc::from(*rng.pick(&roles)))
                    .collect(),
                attr: random_attr(&mut rng),
                policy_version: rng.pick(&versions).to_string(),
                scope: rng.pick(&scopes).to_string(),
            },
            resource: Resource {
                kind: rng.pick(&kinds).to_string(),
                id: "r".into(),
                attr: random_attr(&mut rng),
                policy_version: rng.pick(&versions).to_string(),
                scope: rng.pick(&scopes).to_string(),
            },
            actions: (0..rng.below(4))
                .map(|_| rng.pick(&actions).to_string())
                .collect(),
            aux_data: Default::default(),
        };
        // The planner on the same input: an answer or a clean error, never a panic.
        let plan_input = gatehouse::planner::PlanInput {
            principal: input.principal.clone(),
            resource: gatehouse::planner::PlanResource {
                kind: input.resource.kind.clone(),
                attr: if i % 2 == 0 {
                    input.resource.attr.clone()
                } else {
                    Default::default()
                },
                policy_version: input.resource.policy_version.clone(),
                scope: input.resource.scope.clone(),
            },
            actions: input.actions.clone(),
            ..Default::default()
        };
        if let Ok(plan) = engine.plan(&plan_input) {
            assert!(
                !plan.filter_debug.is_empty(),
                "a plan always has a debug rendering"
            );
        }
        let out = engine
            .check(&input)
            .expect("the corpus store's schemas all load");
        let mut distinct = input.actions.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(
            out.actions.len(),
            distinct.len(),
            "one decision per distinct action"
        );
    }
}

#[test]
fn mutated_expressions_never_panic() {
    let exprs = [
        "R.attr.owner == P.id && R.attr.status in ['draft', 'in_review']",
        "P.attr.teams.exists(t, t.startsWith('comm')) || size(R.attr) > 2",
        "timestamp(R.attr.created).timeSince() > duration('24h')",
        "[1, 2, 3].map(x, x * 2).filter(y, y > 2).size() == 2",
        "'%s-%d'.format([P.id, 1]) == 'a-1' ? R.attr.x : -9223372036854775808",
        "hierarchy(R.attr.scope).ancestorOf(hierarchy('a.b')) && ip('10.0.0.1').family() == 4",
        "{'a': 1}.?b.orValue(2) + math.greatest([1, 2.5, 3u])",
        "cel.bind(x, R.attr, x.transformMap(k, v, v)) == {} && 1 / 0 == 1 && 5 % 0 == 1",
    ];
    let mut rng = Rng(7);
    let host = [
        from_json(&serde_json::json!({})),
        from_json(&serde_json::json!({"id": "a", "attr": {"teams": ["design", "commercial"]}})),
        from_json(
            &serde_json::json!({"attr": {"owner": "a", "status": "draft", "created": "2020-01-01T00:00:00Z", "scope": "a.b.c", "x": 1}}),
        ),
        Value::Null,
        Value::Null,
    ];
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
    let now = gatehouse::engine::now();
    let mut ran = 0;
    for _ in 0..5_000 {
        let base: &str = exprs[rng.below(exprs.len())];
        let src = mutate(&mut rng, base);
        let Ok(ast) = gatehouse::cel::parse(&src) else {
            continue;
        };
        let Ok(program) = gatehouse::cel::compile(&ast, &Host) else {
            continue;
        };
        ran += 1;
        let _ = program.eval(&gatehouse::cel::Activation::new(&host, now));
    }
    println!("robustness: 5000 mutated expressions, {ran} compiled and evaluated");
    assert!(ran > 100);
}
