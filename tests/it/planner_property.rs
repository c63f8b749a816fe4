//! A semantic property of plans: for a principal and actions, a resource passes the plan's
//! filter exactly when CheckResources allows every action on it. Checked on the planner
//! corpus (its policies and principals) with random resources whose attributes are drawn
//! from the values the filter mentions and a few others, the filter evaluated by turning
//! it back into CEL.

use std::sync::Arc;

use serde_json::{Value as Json, json};

use gatehouse::cel::{Activation, HostBinding, HostScope, MapValue, Value, compile, parse};
use gatehouse::engine::{CheckInput, Engine, EngineConfig, Resource, input_from_json};
use gatehouse::planner::{Filter, FilterKind, Operand, PlanInput, PlanResource};
use gatehouse::policy::compiled::Effect;

use crate::util::{corpus_dir, files_with_ext, yaml_docs};

/// Corpus tests where Cerbos's own planner and checks disagree, and the plan follows
/// Cerbos's planner (the corpus's wanted filter): (suite file, action, reason).
const CERBOS_DIFFERENCES: &[(&str, &str, &str)] = &[
    (
        "harry.yaml",
        "multi-role-test-conditional-allow-deny",
        "Cerbos's planner ANDs one role's conditional DENY with another role's ALLOW \
     (the corpus wants `(and (not (eq owner \"harry\")) (eq owner \"harry\"))`), while \
     CheckResources decides each role on its own and allows",
    ),
    (
        "wrong_attr_data_type.yaml",
        "VIEW",
        "`R.attr.x in P.attr.s` with a string `s`: Cerbos's planner turns `in` over a \
         non-list value into `eq`, while the check fails to evaluate `in` on a string and denies",
    ),
];

/// Random resources per corpus test.
const RESOURCES_PER_TEST: usize = 60;

/// Operators the filter evaluator below handles (everything but comprehensions and
/// structure access, whose attributes would need nested random values).
const SIMPLE: &[&str] = &[
    "and",
    "or",
    "not",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "in",
    "add",
    "if",
    "hasIntersection",
    "isSubset",
    "intersect",
    "except",
    "startsWith",
];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// The filter condition as CEL source over `request`.
fn cel(o: &Operand) -> Option<String> {
    Some(match o {
        Operand::Value(v) => v.to_string(),
        Operand::Variable(v) => v.clone(),
        Operand::Expression(e) => {
            let ops: Vec<String> = e.operands.iter().map(cel).collect::<Option<_>>()?;
            let bin = |sym: &str| format!("({} {sym} {})", ops[0], ops[1]);
            match (e.operator.as_str(), ops.len()) {
                ("and", _) => format!("({})", ops.join(" && ")),
                ("or", _) => format!("({})", ops.join(" || ")),
                ("not", 1) => format!("!({})", ops[0]),
                ("eq", 2) => bin("=="),
                ("ne", 2) => bin("!="),
                ("lt", 2) => bin("<"),
                ("le", 2) => bin("<="),
                ("gt", 2) => bin(">"),
                ("ge", 2) => bin(">="),
                ("in", 2) => bin("in"),
                ("add", 2) => bin("+"),
                ("if", 3) => format!("({} ? {} : {})", ops[0], ops[1], ops[2]),
                ("startsWith", 2) => format!("{}.startsWith({})", ops[0], ops[1]),
                (f @ ("hasIntersection" | "isSubset" | "intersect" | "except"), 2) => {
                    format!("{f}({}, {})", ops[0], ops[1])
                }
                _ => return None,
            }
        }
        _ => return None,
    })
}

/// Attributes used directly as booleans (operands of `and`, `or`, `not`, `if`'s
/// condition): they get boolean values only, since a mistyped attribute makes a CEL
/// condition fail (the rule is skipped) where a database filter simply does not match.
fn boolean_attrs(o: &Operand, out: &mut Vec<String>) {
    typed_attrs(o, &["and", "or", "not", "if"], out);
}

/// Attributes ordered with `<`, `<=`, `>`, `>=`: numbers only, for the same reason.
fn numeric_attrs(o: &Operand, out: &mut Vec<String>) {
    typed_attrs(o, &["lt", "le", "gt", "ge"], out);
}

fn typed_attrs(o: &Operand, ops: &[&str], out: &mut Vec<String>) {
    if let Operand::Expression(e) = o {
        let typed = ops.contains(&e.operator.as_str());
        for (i, x) in e.operands.iter().enumerate() {
            if typed
                && (e.operator != "if" || i == 0)
                && let Operand::Variable(v) = x
                && let Some(name) = v.strip_prefix("request.resource.attr.")
            {
                out.push(name.to_string());
            }
            typed_attrs(x, ops, out);
        }
    }
}

fn collect(o: &Operand, values: &mut Vec<Json>, attrs: &mut Vec<String>, simple: &mut bool) {
    match o {
        Operand::Value(Json::Array(a)) => values.extend(a.iter().cloned()),
        Operand::Value(v) => values.push(v.clone()),
        Operand::Variable(v) => {
            if let Some(rest) = v.strip_prefix("request.resource.attr.") {
                let name = rest.split('.').next().unwrap_or(rest).to_string();
                if !attrs.contains(&name) {
                    attrs.push(name);
                }
            } else if v != "request.resource.id" {
                *simple = false;
            }
        }
        Operand::Expression(e) => {
            if !SIMPLE.contains(&e.operator.as_str()) {
                *simple = false;
            }
            for x in &e.operands {
                collect(x, values, attrs, simple);
            }
        }
        _ => *simple = false,
    }
}

struct RequestOnly;

impl HostScope for RequestOnly {
    fn variable(&self, name: &str) -> Option<u16> {
        (name == "request").then_some(0)
    }
    fn select(&self, _root: &str, _field: &str) -> Option<Result<HostBinding, String>> {
        None
    }
}

fn random_value(rng: &mut Rng, pool: &[Json]) -> Json {
    match rng.below(6) {
        0 => json!([]),
        1 => {
            let n = 1 + rng.below(3);
            Json::Array(
                (0..n)
                    .map(|_| pool[rng.below(pool.len())].clone())
                    .collect(),
            )
        }
        2 => json!("zz"),
        _ => pool[rng.below(pool.len())].clone(),
    }
}

#[test]
fn planner_filters_agree_with_checks() {
    let Some(corpus) = corpus_dir("planner property") else {
        return;
    };
    let policies =
        Arc::new(gatehouse::policy::load_and_compile(&corpus.join("planner/policies")).unwrap());
    let globals = match gatehouse::cel::from_json(&json!({"environment": "test"})) {
        Value::Map(m) => m,
        _ => unreachable!("an object is a map"),
    };
    let engine = Engine::new(
        policies,
        EngineConfig {
            globals,
            ..EngineConfig::default()
        },
    );
    let now = chrono::DateTime::parse_from_rfc3339("2024-01-16T10:18:27.395+13:00").unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut checked, mut planned, mut skipped) = (0, 0, 0);
    let mut disagreements = Vec::new();
    for dir in ["common", "strict_scope_search"] {
        for path in files_with_ext(&corpus.join("planner/suite").join(dir), "yaml") {
            for suite in yaml_docs(&path) {
                for test in suite["tests"].as_array().into_iter().flatten() {
                    let actions = match (test.get("actions"), test.get("action")) {
                        (Some(a), _) => a.clone(),
                        (None, Some(a)) => json!([a]),
                        _ => continue,
                    };
                    let r = &test["resource"];
                    let base = input_from_json(&json!({
                        "principal": suite["principal"],
                        "resource": {"kind": r["kind"], "policyVersion": r.get("policyVersion").cloned().unwrap_or(json!("")),
                                     "scope": r.get("scope").cloned().unwrap_or(json!(""))},
                        "actions": actions,
                        "auxData": {"jwt": {"customInt": 42}},
                    }))
                    .unwrap();
                    let plan = engine
                        .plan_at(
                            &PlanInput {
                                principal: base.principal.clone(),
                                resource: PlanResource {
                                    kind: base.resource.kind.clone(),
                                    attr: Arc::new(MapValue::new()),
                                    policy_version: base.resource.policy_version.clone(),
                                    scope: base.resource.scope.clone(),
                                },
                                actions: base.actions.clone(),
                                aux_data: base.aux_data.clone(),
                                ..Default::default()
                            },
                            now,
                        )
                        .unwrap();
                    let file = path.file_name().unwrap().to_string_lossy().to_string();
                    if CERBOS_DIFFERENCES
                        .iter()
                        .any(|(f, a, _)| *f == file && actions == json!([a]))
                    {
                        skipped += 1;
                        continue;
                    }
                    let (mut pool, mut attrs, mut simple) = (Vec::new(), Vec::new(), true);
                    let (mut booleans, mut numbers) = (Vec::new(), Vec::new());
                    if let Some(c) = &plan.filter.condition {
                        collect(c, &mut pool, &mut attrs, &mut simple);
                        boolean_attrs(c, &mut booleans);
                        numeric_attrs(c, &mut numbers);
                    }
                    let program = match (&plan.filter, simple) {
                        (
                            Filter {
                                kind: FilterKind::Conditional,
                                condition: Some(c),
                            },
                            true,
                        ) => {
                            let Some(src) = cel(c) else {
                                skipped += 1;
                                continue;
                            };
                            let expr = parse(&src).unwrap_or_else(|e| panic!("{src}: {e}"));
                            Some(
                                compile(&expr, &RequestOnly)
                                    .unwrap_or_else(|e| panic!("{src}: {e}")),
                            )
                        }
                        (
                            Filter {
                                kind: FilterKind::Conditional,
                                ..
                            },
                            false,
                        ) => {
                            skipped += 1;
                            continue;
                        }
                        _ => None,
                    };
                    planned += 1;
                    pool.extend([
                        json!("z0"),
                        json!(1),
                        json!(true),
                        json!(false),
                        json!(null),
                    ]);
                    for _ in 0..RESOURCES_PER_TEST {
                        let mut attr = serde_json::Map::new();
                        for a in &attrs {
                            let v = if booleans.contains(a) {
                                json!(rng.below(2) == 0)
                            } else if numbers.contains(a) {
                                json!([0.5, 4.7, 5.0, 100.0][rng.below(4)])
                            } else {
                                random_value(&mut rng, &pool)
                            };
                            attr.insert(a.clone(), v);
                        }
                        let id = ["z0", "other"][rng.below(2)];
                        let resource_json = json!({"kind": base.resource.kind, "id": id,
                            "attr": attr, "policyVersion": base.resource.policy_version,
                            "scope": base.resource.scope});
                        let input = CheckInput {
                            resource: Resource {
                                id: id.to_string(),
                                attr: match gatehouse::cel::from_json(&Json::Object(attr.clone())) {
                                    Value::Map(m) => m,
                                    _ => unreachable!("an object is a map"),
                                },
                                ..base.resource.clone()
                            },
                            ..base.clone()
                        };
                        let out = engine.check_at(&input, now).unwrap();
                        let allowed = out.actions.iter().all(|a| a.effect == Effect::Allow);
                        let passes = match &program {
                            None => plan.filter.kind == FilterKind::AlwaysAllowed,
                            Some(p) => {
                                let request =
                                    gatehouse::cel::from_json(&json!({"resource": resource_json}));
                                let host = [request];
                                matches!(
                                    p.eval(&Activation::new(&host, now)),
                                    Ok(Value::Bool(true))
                                )
                            }
                        };
                        checked += 1;
                        if allowed != passes {
                            disagreements.push(format!(
                                "{}: {} on {resource_json}: check {allowed}, filter {passes} ({})",
                                path.display(),
                                actions,
                                plan.filter_debug
                            ));
                        }
                    }
                }
            }
        }
    }
    for d in disagreements.iter().take(20) {
        println!("DISAGREE {d}");
    }
    println!(
        "planner property: {checked} resources over {planned} plans ({skipped} plans skipped: comprehensions, field access, Cerbos's own differences), {} disagreements",
        disagreements.len()
    );
    assert!(checked > 1000, "too few cases: {checked}");
    assert!(
        disagreements.is_empty(),
        "filters disagree with checks (see above)"
    );
}
