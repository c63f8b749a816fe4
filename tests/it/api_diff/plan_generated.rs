//! Differential test of `PlanResources` on generated policy sets (issue 14): for each seed a
//! random store is written to a temporary directory (resource policies in chained scopes
//! with `OVERRIDE_PARENT` and `REQUIRE_PARENTAL_CONSENT_FOR_ALLOWS`, a second version,
//! `DENY` rules, imported derived roles with conditions, imported and local variables and
//! constants, principal policies, role policies with `parentRoles`; conditions with `all`,
//! `any` and `none` over globals, principal attributes and every operator and function
//! Cerbos's planner emits: comparisons, arithmetic, `in`, `index`, list literals,
//! `hasIntersection`, `isSubset`, `except`, `intersect`, `exists`, `exists_one`, `all`,
//! `filter`, `map`, `has`, string functions, `size` and timestamps), the real Cerbos 0.55 and Gatehouse are started on it
//! with the same configuration (globals, strict or lenient scope search) and answer the
//! same generated PlanResources requests over HTTP (unknown kinds, actions, versions and
//! scopes included, known resource attributes sometimes given).
//!
//! Responses are compared whole except `cerbosCallId`. Filters are compared after the
//! normalisation in [`normalise_filter`]; `meta.filterDebug` must be, on each side, the
//! rendering of that side's own filter (so both render alike, whatever the operand order).
//!
//! ```sh
//! GATEHOUSE_DIFF_PLAN_SEEDS=1,2,3,4,5,6,7,8 GATEHOUSE_DIFF_PLAN_REQUESTS=300 \
//!   cargo test --test it api_diff_plan_generated -- --ignored --nocapture
//! GATEHOUSE_DIFF_PLAN_TWIN=1 cargo test --test it api_diff_plan_generated -- --ignored --nocapture
//! ```
//!
//! `GATEHOUSE_DIFF_PLAN_SEEDS` (default `1,2`), `GATEHOUSE_DIFF_PLAN_REQUESTS` (requests per
//! seed, default 150), `GATEHOUSE_DIFF_ALLOW_MISMATCHES=1` reports without failing, and
//! `GATEHOUSE_DIFF_PLAN_TWIN=1` also sends every request to a second Cerbos process on the
//! same store and counts how often the two Cerbos answers differ before and after the
//! normalisation: the evidence for [`NORMALISED`].

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Value, json};

use gatehouse::api::ApiSettings;
use gatehouse::cel::{Value as CelValue, from_json};
use gatehouse::engine::EngineConfig;
use gatehouse::planner::Filter;
use gatehouse::store::PolicyStore;

use super::generated::{MISSING_SCOPES, SCOPES, file_name, pick_str, scope_subset, some_of};
use super::{Rng, TempDir, reqwest_like, start_cerbos_with};
use crate::api_server::{prune, start};

/// What Cerbos 0.55 answers differently from process to process for the same request and
/// store (shown by a `GATEHOUSE_DIFF_PLAN_TWIN=1` run), and what the comparison does about it.
const NORMALISED: &[(&str, &str)] = &[
    (
        "nesting and duplication of `and` / `or`",
        "when several rules match, Cerbos joins their conditions in Go map order: the same \
         request gets `and(a, and(b, c))` from one process and `and(and(a, b), c)` or \
         `and(a, b, a, c)` from another; nested `and` in `and` (and `or` in `or`) are \
         flattened and duplicate operands dropped, and a single remaining operand stands \
         for itself",
    ),
    (
        "order of operands of commutative operators and of `struct` entries",
        "`and`, `or`, `eq`, `ne`, `add`, `mult` operands, and the `set-field` entries of a \
         `struct` Cerbos builds from principal attributes a condition reads but the \
         principal lacks, come in map order: sorted before comparing",
    ),
];

const DEFAULT_SEEDS: &str = "1,2";
const DEFAULT_REQUESTS: usize = 150;

const KINDS: &[&str] = &["leave_request", "album:photo", "expense"];
const BASE_ROLES: &[&str] = &["user", "admin", "editor", "auditor"];
const ROLE_POLICY_ROLES: &[&str] = &["editor_plus", "acme_helper"];
const DERIVED_ROLES: &[&str] = &["owner", "dept_peer", "any_editor", "tagged"];
const ACTIONS: &[&str] = &["view", "edit", "delete", "approve", "doc:read"];
const PRINCIPALS: &[&str] = &["bob", "carol", "svc:robot"];

/// Conditions that need no variables or constants (any policy kind).
const PLAIN_CONDITIONS: &[&str] = &[
    "R.attr.owner == P.id",
    "R.attr.public == true",
    "R.attr.public",
    "R.attr.amount < 100",
    "R.attr.amount + 10 >= P.attr.limit",
    "R.attr.status in [\"open\", \"review\"]",
    "R.attr.department == P.attr.department",
    "R.attr.team in P.attr.teams",
    "R.attr.tags.exists(t, t == P.attr.department)",
    "R.attr.tags.all(t, t.startsWith(\"a\"))",
    "R.attr.tags.exists_one(t, t == \"b\")",
    "hasIntersection(R.attr.tags, [\"a\", \"c\"])",
    "R.attr.tags.hasIntersection(P.attr.teams)",
    "R.attr.title.startsWith(\"draft\")",
    "R.attr.title.endsWith(P.id)",
    "R.attr.title.contains(\"x\")",
    "size(R.attr.tags) > 1",
    "has(R.attr.owner)",
    "R.attr.owner != P.id && !R.attr.archived",
    "R.attr.amount * 2 - 1 > 50 || R.attr.amount / 2 < 3",
    "R.attr.amount % 2 == 0",
    "R.attr.nested.level >= 2",
    "R.attr.meta[\"k\"] == \"v\"",
    "size(R.attr.tags.filter(t, t != \"x\")) == 0",
    "R.attr.items.map(i, i.n).exists(n, n > 3)",
    "P.attr.department == \"hr\"",
    "\"admin\" in P.roles",
    "globals.environment == \"test\" && R.attr.status == \"open\"",
    "R.attr.region == globals.region",
    "R.kind == \"expense\" && R.attr.amount > 10",
    "R.attr.level <= 3 && R.attr.level > 0",
    "isSubset(R.attr.tags, P.attr.teams)",
    "intersect(R.attr.tags, [\"a\"]) == []",
    "P.attr.teams.hasIntersection(R.attr.tags)",
    "timestamp(R.attr.created) > timestamp(\"2020-01-01T00:00:00Z\")",
];

/// Conditions over the variables and constants every resource and principal policy defines.
const VC_CONDITIONS: &[&str] = &[
    "V.is_owner",
    "V.is_public || V.big",
    "R.attr.amount <= C.max_amount",
    "V.big && R.attr.tags.hasIntersection(C.fav_tags)",
    "R.attr.amount < C.limit",
    "variables.hr_principal && R.attr.department == \"hr\"",
    "except(R.attr.tags, C.fav_tags) == []",
];

/// Conditions of derived roles (no variables).
const DERIVED_ROLE_CONDITIONS: &[&str] = &[
    "R.attr.owner == P.id",
    "R.attr.department == P.attr.department",
    "\"a\" in R.attr.tags",
    "R.attr.public == false && P.attr.department == \"hr\"",
];

fn expr(rng: &mut Rng, pool: &[&[&str]]) -> String {
    let pool = *rng.pick(pool);
    pick_str(rng, pool)
}

/// A rule condition: one `match.expr`, or `all` / `any` / `none` of two or three.
fn condition(rng: &mut Rng, pool: &[&[&str]]) -> Value {
    if rng.chance(65) {
        return json!({"match": {"expr": expr(rng, pool)}});
    }
    let op = *rng.pick(&["all", "any", "none"]);
    let of: Vec<Value> = (0..2 + rng.below(2))
        .map(|_| json!({"expr": expr(rng, pool)}))
        .collect();
    json!({"match": {op: {"of": of}}})
}

fn derived_roles(rng: &mut Rng) -> Value {
    let definitions: Vec<Value> = DERIVED_ROLES
        .iter()
        .map(|name| {
            let mut d = json!({"name": name, "parentRoles": some_of(rng, BASE_ROLES, 2)});
            if *name != "any_editor" || rng.chance(30) {
                d["condition"] = condition(rng, &[DERIVED_ROLE_CONDITIONS]);
            }
            d
        })
        .collect();
    json!({"apiVersion": "api.cerbos.dev/v1", "derivedRoles": {
        "name": "common_roles", "definitions": definitions,
    }})
}

fn exports() -> [(String, Value); 2] {
    [
        (
            "export_variables.json".into(),
            json!({"apiVersion": "api.cerbos.dev/v1", "exportVariables": {
                "name": "common_vars",
                "definitions": {
                    "is_owner": "R.attr.owner == P.id",
                    "is_public": "R.attr.public == true",
                    "hr_principal": "P.attr.department == \"hr\"",
                },
            }}),
        ),
        (
            "export_constants.json".into(),
            json!({"apiVersion": "api.cerbos.dev/v1", "exportConstants": {
                "name": "common_consts",
                "definitions": {"max_amount": 500, "fav_tags": ["a", "b"]},
            }}),
        ),
    ]
}

/// The variables and constants sections every resource and principal policy has.
fn variables_and_constants(v: &mut Value, rng: &mut Rng) {
    v["variables"] = json!({
        "import": ["common_vars"],
        "local": {"big": if rng.chance(50) { "R.attr.amount > C.max_amount" } else { "R.attr.amount > 2 * C.limit" }},
    });
    v["constants"] = json!({"import": ["common_consts"], "local": {"limit": 100}});
}

/// Scope -> its `scopePermissions` (Cerbos requires one value per scope across policies).
type Permissions = BTreeMap<&'static str, &'static str>;

fn resource_policy(
    rng: &mut Rng,
    permissions: &Permissions,
    kind: &str,
    version: &str,
    scope: &str,
) -> Value {
    let mut roles_pool: Vec<&str> = BASE_ROLES.to_vec();
    roles_pool.extend(ROLE_POLICY_ROLES);
    let with_derived = rng.chance(60);
    let mut rules = Vec::new();
    for i in 0..1 + rng.below(4) {
        let actions = if rng.chance(15) {
            vec!["*".to_string()]
        } else {
            some_of(rng, ACTIONS, 4)
        };
        let mut rule = json!({
            "actions": actions,
            "effect": if rng.chance(72) { "EFFECT_ALLOW" } else { "EFFECT_DENY" },
        });
        if with_derived && rng.chance(45) {
            rule["derivedRoles"] = json!(some_of(rng, DERIVED_ROLES, 2));
            if rng.chance(25) {
                rule["roles"] = json!(some_of(rng, &roles_pool, 2));
            }
        } else if rng.chance(15) {
            rule["roles"] = json!(["*"]);
        } else {
            rule["roles"] = json!(some_of(rng, &roles_pool, 3));
        }
        if rng.chance(75) {
            rule["condition"] = condition(rng, &[PLAIN_CONDITIONS, VC_CONDITIONS]);
        }
        if rng.chance(30) {
            rule["name"] = json!(format!("rule_{i}"));
        }
        rules.push(rule);
    }
    let mut p = json!({"resource": kind, "version": version, "rules": rules});
    if with_derived {
        p["importDerivedRoles"] = json!(["common_roles"]);
    }
    variables_and_constants(&mut p, rng);
    if !scope.is_empty() {
        p["scope"] = json!(scope);
        if let Some(perm) = permissions.get(scope) {
            p["scopePermissions"] = json!(perm);
        }
    }
    json!({"apiVersion": "api.cerbos.dev/v1", "resourcePolicy": p})
}

fn principal_policy(
    rng: &mut Rng,
    permissions: &Permissions,
    principal: &str,
    scope: &str,
) -> Value {
    // One `*` block or blocks for distinct named kinds (as in generated.rs).
    let resources: Vec<String> = if rng.chance(25) {
        vec!["*".to_string()]
    } else {
        some_of(rng, KINDS, 2)
    };
    let mut rules = Vec::new();
    for resource in resources {
        let mut actions = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        for _ in 0..1 + rng.below(3) {
            let action = if rng.chance(10) {
                "*".to_string()
            } else {
                pick_str(rng, ACTIONS)
            };
            if seen.contains(&action) {
                continue;
            }
            seen.push(action.clone());
            let mut rule = json!({
                "action": action,
                "effect": if rng.chance(65) { "EFFECT_ALLOW" } else { "EFFECT_DENY" },
            });
            if rng.chance(55) {
                rule["condition"] = condition(rng, &[PLAIN_CONDITIONS, VC_CONDITIONS]);
            }
            actions.push(rule);
        }
        rules.push(json!({"resource": resource, "actions": actions}));
    }
    let mut p = json!({"principal": principal, "version": "default", "rules": rules});
    variables_and_constants(&mut p, rng);
    if !scope.is_empty() {
        p["scope"] = json!(scope);
        if let Some(perm) = permissions.get(scope) {
            p["scopePermissions"] = json!(perm);
        }
    }
    json!({"apiVersion": "api.cerbos.dev/v1", "principalPolicy": p})
}

fn role_policy(rng: &mut Rng, role: &str, scope: &str) -> Value {
    let mut rules = Vec::new();
    for kind in some_of(rng, KINDS, 2) {
        let actions = if rng.chance(10) {
            vec!["*".to_string()]
        } else {
            some_of(rng, ACTIONS, 3)
        };
        let mut rule = json!({"resource": kind, "allowActions": actions});
        if rng.chance(45) {
            rule["condition"] = condition(rng, &[PLAIN_CONDITIONS]);
        }
        rules.push(rule);
    }
    json!({"apiVersion": "api.cerbos.dev/v1", "rolePolicy": {
        "role": role,
        "scope": scope,
        "parentRoles": [pick_str(rng, BASE_ROLES)],
        "rules": rules,
    }})
}

fn generate_store(rng: &mut Rng) -> BTreeMap<String, Value> {
    let mut files = BTreeMap::new();
    files.insert("derived_roles.json".to_string(), derived_roles(rng));
    files.extend(exports());
    let mut permissions = Permissions::new();
    for scope in SCOPES {
        match rng.below(4) {
            0 => permissions.insert(scope, "SCOPE_PERMISSIONS_OVERRIDE_PARENT"),
            1 => permissions.insert(
                scope,
                "SCOPE_PERMISSIONS_REQUIRE_PARENTAL_CONSENT_FOR_ALLOWS",
            ),
            _ => None,
        };
    }
    let mut resource_scopes: Vec<&str> = Vec::new();
    for kind in KINDS {
        files.insert(
            file_name(&[kind]),
            resource_policy(rng, &permissions, kind, "default", ""),
        );
        for scope in scope_subset(rng, 60) {
            files.insert(
                file_name(&[kind, scope]),
                resource_policy(rng, &permissions, kind, "default", scope),
            );
            if !resource_scopes.contains(&scope) {
                resource_scopes.push(scope);
            }
        }
        if rng.chance(35) {
            files.insert(
                file_name(&[kind, "v2"]),
                resource_policy(rng, &permissions, kind, "2", ""),
            );
        }
    }
    for principal in PRINCIPALS {
        if !rng.chance(60) {
            continue;
        }
        files.insert(
            file_name(&["principal", principal]),
            principal_policy(rng, &permissions, principal, ""),
        );
        for scope in scope_subset(rng, 45) {
            files.insert(
                file_name(&["principal", principal, scope]),
                principal_policy(rng, &permissions, principal, scope),
            );
        }
    }
    // A role policy's scope permissions are unspecified, and Cerbos refuses a scope whose
    // policies disagree: role policies only go to scopes without `scopePermissions`.
    resource_scopes.retain(|s| !permissions.contains_key(s));
    for role in ROLE_POLICY_ROLES {
        for scope in &resource_scopes {
            if rng.chance(60) {
                files.insert(
                    file_name(&["role", role, scope]),
                    role_policy(rng, role, scope),
                );
            }
        }
    }
    files
}

// === requests ===

fn request(rng: &mut Rng, i: usize) -> Value {
    let mut ids: Vec<&str> = PRINCIPALS.to_vec();
    ids.push("alice");
    let id = pick_str(rng, &ids);
    let mut roles_pool: Vec<&str> = BASE_ROLES.to_vec();
    roles_pool.extend(ROLE_POLICY_ROLES);
    roles_pool.push("nobody");
    let mut scopes: Vec<&str> = SCOPES.to_vec();
    scopes.extend(MISSING_SCOPES);
    let versions = ["default", "2", "nope"];

    let roles = if rng.chance(60) {
        some_of(rng, BASE_ROLES, 3)
    } else {
        some_of(rng, &roles_pool, 4)
    };
    let mut principal = json!({"id": id, "roles": roles, "attr": {}});
    if rng.chance(35) {
        principal["scope"] = json!(pick_str(rng, &scopes));
    }
    if rng.chance(10) {
        principal["policyVersion"] = json!(pick_str(rng, &versions));
    }
    if rng.chance(75) {
        principal["attr"]["department"] = json!(pick_str(rng, &["hr", "eng"]));
    }
    if rng.chance(60) {
        principal["attr"]["teams"] = json!(some_of(rng, &["a", "b", "t1"], 2));
    }
    if rng.chance(60) {
        principal["attr"]["limit"] = json!(*rng.pick(&[20, 150]));
    }

    let kind = if rng.chance(5) {
        "unknown:kind".to_string()
    } else {
        pick_str(rng, KINDS)
    };
    let mut resource = json!({"kind": kind});
    if rng.chance(50) {
        resource["scope"] = json!(if rng.chance(80) {
            pick_str(rng, SCOPES)
        } else {
            pick_str(rng, MISSING_SCOPES)
        });
    }
    if rng.chance(15) {
        resource["policyVersion"] = json!(pick_str(rng, &versions));
    }
    if rng.chance(25) {
        let mut attr = json!({});
        match rng.below(4) {
            0 => attr["owner"] = json!(id),
            1 => attr["public"] = json!(rng.chance(50)),
            2 => attr["amount"] = json!(*rng.pick(&[5, 50, 700])),
            _ => attr["tags"] = json!(some_of(rng, &["a", "b", "x"], 2)),
        }
        resource["attr"] = attr;
    }
    let mut actions_pool: Vec<&str> = ACTIONS.to_vec();
    actions_pool.push("zap");
    let mut req = json!({
        "requestId": format!("plan-{i}"),
        "includeMeta": true,
        "principal": principal,
        "resource": resource,
    });
    if rng.chance(70) {
        req["action"] = json!(pick_str(rng, &actions_pool));
    } else {
        req["actions"] = json!(some_of(rng, &actions_pool, 2));
    }
    req
}

// === comparing ===

/// The filter normalisation of [`NORMALISED`]: `and` in `and` and `or` in `or` flattened,
/// duplicate operands of `and` / `or` dropped (an operand holding an `and` / `or` of one
/// operand becomes that operand), operands of commutative operators and `struct` entries
/// sorted.
pub(crate) fn normalise_filter(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = serde_json::Map::new();
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            for k in keys {
                out.insert(k.clone(), normalise_filter(&m[k]));
            }
            // An operand holding an `and` / `or` of one operand is that operand.
            if let Some(Value::Object(e)) = out.get("expression")
                && matches!(
                    e.get("operator").and_then(Value::as_str),
                    Some("and" | "or")
                )
                && let Some(Value::Array(ops)) = e.get("operands")
                && ops.len() == 1
            {
                return ops[0].clone();
            }
            let op = out
                .get("operator")
                .and_then(Value::as_str)
                .map(str::to_string);
            let (Some(op), Some(Value::Array(operands))) = (op, out.get("operands").cloned())
            else {
                return Value::Object(out);
            };
            let mut operands = operands;
            if op == "and" || op == "or" {
                let mut flat: Vec<Value> = Vec::new();
                for o in operands {
                    let inner = o.get("expression");
                    match inner {
                        Some(e) if e["operator"] == op.as_str() => {
                            flat.extend(e["operands"].as_array().cloned().unwrap_or_default())
                        }
                        _ => flat.push(o),
                    }
                }
                flat.sort_by_key(|o| o.to_string());
                flat.dedup();
                operands = flat;
            } else if matches!(op.as_str(), "eq" | "ne" | "add" | "mult" | "struct") {
                operands.sort_by_key(|o| o.to_string());
            }
            out.insert("operands".into(), Value::Array(operands));
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(normalise_filter).collect()),
        other => other.clone(),
    }
}

/// `normalise_filter` until nothing changes (a collapsed `and` may expose another to flatten).
fn normalised(v: &Value) -> Value {
    let mut cur = v.clone();
    for _ in 0..8 {
        let next = normalise_filter(&cur);
        if next == cur {
            break;
        }
        cur = next;
    }
    cur
}

/// Whether `filterDebug` is the rendering of the response's own filter.
fn debug_is_own_rendering(body: &Value) -> bool {
    let Some(debug) = body.pointer("/meta/filterDebug").and_then(Value::as_str) else {
        return body.get("filter").is_none();
    };
    Filter::from_json(&body["filter"]).is_some_and(|f| f.debug_string() == debug)
}

/// A response in comparable form: no call id, no empty fields, filter normalised, and
/// `filterDebug` replaced by whether it renders the filter.
fn comparable(status: u16, body: &Value, normalise: bool) -> Value {
    let mut body = body.clone();
    let renders = debug_is_own_rendering(&body);
    if let Value::Object(o) = &mut body {
        o.remove("cerbosCallId");
        if let Some(Value::Object(meta)) = o.get_mut("meta") {
            meta.remove("filterDebug");
            meta.insert("filterDebugRendersFilter".into(), json!(renders));
        }
        if normalise && let Some(f) = o.get_mut("filter") {
            *f = normalised(f);
        }
    }
    json!({"status": status, "body": prune(&body)})
}

/// What the compared answers covered.
#[derive(Default)]
struct Mix {
    requests: usize,
    kinds: BTreeMap<String, usize>,
    operators: BTreeMap<String, usize>,
    errors: BTreeMap<String, usize>,
}

impl Mix {
    fn add(&mut self, status: u16, body: &Value) {
        self.requests += 1;
        if status != 200 {
            let message = body["message"].as_str().unwrap_or("?");
            *self
                .errors
                .entry(format!("{status} {message}"))
                .or_default() += 1;
            return;
        }
        let kind = body["filter"]["kind"].as_str().unwrap_or("?").to_string();
        *self.kinds.entry(kind).or_default() += 1;
        fn walk(v: &Value, ops: &mut BTreeMap<String, usize>) {
            match v {
                Value::Object(m) => {
                    if let Some(op) = m.get("operator").and_then(Value::as_str) {
                        *ops.entry(op.to_string()).or_default() += 1;
                    }
                    m.values().for_each(|v| walk(v, ops));
                }
                Value::Array(a) => a.iter().for_each(|v| walk(v, ops)),
                _ => {}
            }
        }
        walk(&body["filter"], &mut self.operators);
    }

    fn merge(&mut self, o: &Mix) {
        self.requests += o.requests;
        for (k, v) in &o.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.kinds {
            *self.kinds.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.operators {
            *self.operators.entry(k.clone()).or_default() += v;
        }
    }

    fn describe(&self) -> String {
        let mut s = format!(
            "{} requests; errors: {:?}; filters:",
            self.requests, self.errors
        );
        for (k, v) in &self.kinds {
            let _ = write!(s, " {k} {v}");
        }
        s.push_str("; operators:");
        for (k, v) in &self.operators {
            let _ = write!(s, " {k} {v}");
        }
        s
    }
}

/// Cerbos against a second Cerbos process: requests answered differently before and after
/// the normalisation.
#[derive(Default)]
struct Twin {
    raw: usize,
    normalised: usize,
    examples: Vec<String>,
}

fn engine_config(globals: &Value, lenient: bool) -> EngineConfig {
    EngineConfig {
        globals: match from_json(globals) {
            CelValue::Map(m) => m,
            _ => unreachable!("an object is a map"),
        },
        lenient_scope_search: lenient,
        ..EngineConfig::default()
    }
}

/// One seed: the mix, the mismatches and (with `twin`) Cerbos against Cerbos.
async fn run_one(
    seed: u64,
    lenient: bool,
    requests: usize,
    twin: bool,
) -> (Mix, Vec<String>, Twin) {
    let mut rng = Rng(seed.wrapping_mul(0xD1B5_4A32_D192_ED03) | 1);
    let files = generate_store(&mut rng);
    let dir = TempDir(
        std::env::temp_dir().join(format!("gatehouse-plan-diff-{}-{seed}", std::process::id())),
    );
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).unwrap();
    for (name, doc) in &files {
        std::fs::write(dir.0.join(name), serde_json::to_string_pretty(doc).unwrap()).unwrap();
    }
    let globals = json!({"environment": "test", "region": "eu"});
    let sections = json!({
        "schema": {"enforcement": "none"},
        "engine": {"globals": globals, "lenientScopeSearch": lenient},
    });
    let cerbos = start_cerbos_with(&dir.0, sections.clone()).await;
    let second = if twin {
        Some(start_cerbos_with(&dir.0, sections).await)
    } else {
        None
    };
    let store = PolicyStore::load(&dir.0, engine_config(&globals, lenient)).unwrap_or_else(|e| {
        panic!(
            "seed {seed}: Gatehouse refuses a store that Cerbos serves ({}):\n{e}",
            dir.0.display()
        )
    });
    let ours = start(store, ApiSettings::default()).await;
    let client = reqwest_like::Client::new();
    let (mut mix, mut mismatches, mut twin_count) = (Mix::default(), Vec::new(), Twin::default());
    for i in 0..requests {
        let req = request(&mut rng, i);
        let theirs = client
            .post(&format!("{}/api/plan/resources", cerbos.http_base), &req)
            .await
            .expect("Cerbos answers");
        let mine = ours
            .http("POST", "/api/plan/resources", req.to_string().into_bytes())
            .await;
        mix.add(theirs.0, &theirs.1);
        let (t, m) = (
            comparable(theirs.0, &theirs.1, true),
            comparable(mine.0, &mine.1, true),
        );
        if t != m {
            mismatches.push(format!(
                "MISMATCH plan seed {seed} lenient={lenient} request #{i}\n  request: {req}\n  cerbos:  {t}\n  ours:    {m}"
            ));
        }
        if let Some(second) = &second {
            let other = client
                .post(&format!("{}/api/plan/resources", second.http_base), &req)
                .await
                .expect("Cerbos answers");
            if comparable(theirs.0, &theirs.1, false) != comparable(other.0, &other.1, false) {
                twin_count.raw += 1;
                if twin_count.examples.len() < 3 {
                    twin_count.examples.push(format!(
                        "seed {seed} request #{i}: {}\n    vs {}",
                        theirs.1["filter"], other.1["filter"]
                    ));
                }
            }
            if t != comparable(other.0, &other.1, true) {
                twin_count.normalised += 1;
            }
        }
    }
    if !mismatches.is_empty() {
        let kept = dir.0.with_extension("kept");
        let _ = std::fs::remove_dir_all(&kept);
        let _ = std::fs::rename(&dir.0, &kept);
        println!(
            "api-diff-plan: store of seed {seed} kept in {}",
            kept.display()
        );
    }
    (mix, mismatches, twin_count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the Cerbos binary: see the module docs of api_diff"]
async fn api_diff_plan_generated() {
    let seeds: Vec<u64> = std::env::var("GATEHOUSE_DIFF_PLAN_SEEDS")
        .unwrap_or_else(|_| DEFAULT_SEEDS.to_string())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let requests: usize = std::env::var("GATEHOUSE_DIFF_PLAN_REQUESTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_REQUESTS);
    let twin = std::env::var("GATEHOUSE_DIFF_PLAN_TWIN").as_deref() == Ok("1");
    for (what, why) in NORMALISED {
        println!("api-diff-plan: normalised (Cerbos varies between processes): {what}: {why}");
    }
    let (mut total, mut all_mismatches, mut twins) = (Mix::default(), Vec::new(), Twin::default());
    for &seed in &seeds {
        let lenient = seed % 2 == 0;
        let (mix, mismatches, t) = run_one(seed, lenient, requests, twin).await;
        println!(
            "api-diff-plan: seed {seed} lenient={lenient}: {}; {} mismatches",
            mix.describe(),
            mismatches.len()
        );
        total.merge(&mix);
        all_mismatches.extend(mismatches);
        twins.raw += t.raw;
        twins.normalised += t.normalised;
        twins.examples.extend(t.examples);
    }
    for m in all_mismatches.iter().take(40) {
        println!("{m}");
    }
    if twin {
        println!(
            "api-diff-plan: Cerbos vs Cerbos on {} requests: {} differ as answered, {} after normalisation",
            total.requests, twins.raw, twins.normalised
        );
        for e in &twins.examples {
            println!("  {e}");
        }
    }
    println!(
        "api-diff-plan: {} seeds ({seeds:?}): {}",
        seeds.len(),
        total.describe()
    );
    println!(
        "api-diff-plan: {} passed, {} failed",
        total.requests - all_mismatches.len(),
        all_mismatches.len()
    );
    if std::env::var("GATEHOUSE_DIFF_ALLOW_MISMATCHES").as_deref() != Ok("1") {
        assert!(
            all_mismatches.is_empty(),
            "{} plan requests answered differently from Cerbos",
            all_mismatches.len()
        );
        if twin {
            assert_eq!(
                twins.normalised, 0,
                "Cerbos varies beyond the normalisation"
            );
        }
    }
}

#[test]
fn the_normalisation_flattens_dedupes_and_sorts() {
    let x = json!({"variable": "request.resource.attr.x"});
    let y = json!({"expression": {"operator": "eq", "operands": [{"value": 1}, {"variable": "request.resource.attr.y"}]}});
    let y_swapped = json!({"expression": {"operator": "eq", "operands": [{"variable": "request.resource.attr.y"}, {"value": 1}]}});
    let and = |ops: Vec<Value>| json!({"expression": {"operator": "and", "operands": ops}});
    let filter = |c: Value| json!({"kind": "KIND_CONDITIONAL", "condition": c});
    // and(x, and(y, x)) == and(y', x) == and(and(x, x), y)
    let a = normalised(&filter(and(vec![
        x.clone(),
        and(vec![y.clone(), x.clone()]),
    ])));
    let b = normalised(&filter(and(vec![y_swapped.clone(), x.clone()])));
    let c = normalised(&filter(and(vec![
        and(vec![x.clone(), x.clone()]),
        y.clone(),
    ])));
    assert_eq!(a, b);
    assert_eq!(a, c);
    // and(x, x) is x; or(x, y) is not and(x, y).
    assert_eq!(
        normalised(&filter(and(vec![x.clone(), x.clone()]))),
        filter(x.clone())
    );
    let or = json!({"expression": {"operator": "or", "operands": [x.clone(), y.clone()]}});
    assert_ne!(normalised(&filter(or)), a);
    // Order matters outside the commutative operators.
    let lt = |l: &Value, r: &Value| json!({"expression": {"operator": "lt", "operands": [l, r]}});
    assert_ne!(normalised(&lt(&x, &y)), normalised(&lt(&y, &x)));
}
