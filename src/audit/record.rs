//! One decision as the audit log records it, and its JSON line.

use std::time::SystemTime;

use serde_json::{Map, Value, json};

use super::mask::MaskPath;
use crate::metrics::Origin;

/// Longest request id logged (longer or unusual ids are left out).
const MAX_REQUEST_ID: usize = 128;

/// One decision: who asked, about what, what was decided and by which policy.
///
/// Build it with [`DecisionRecord::new`] and fill the fields that apply. It never holds
/// header values or tokens: only the fields below are written, attributes only when the
/// sink is configured with `includeAttributes` (see `AuditSink::wants_attributes`).
#[derive(Clone, Debug)]
pub struct DecisionRecord {
    /// When the decision was made.
    pub time: SystemTime,
    /// Decision id (ext_authz decision id, Cerbos call id).
    pub decision_id: String,
    /// Which adapter decided.
    pub origin: Origin,
    /// Overall outcome, when the adapter has one (ext_authz: allow or deny the request).
    pub allowed: Option<bool>,
    /// HTTP status of a denial (ext_authz).
    pub status: Option<u16>,
    /// Why the request was denied (no credentials, tokens or header values in it).
    pub reason: Option<String>,
    /// The principal, when one was identified.
    pub principal: Option<PrincipalRecord>,
    /// The resources decided (one for ext_authz, one per entry for `CheckResources`).
    pub resources: Vec<ResourceRecord>,
    /// Revision of the policies in force.
    pub policy_revision: String,
    /// Envoy's request id (`x-request-id`), or the API request id.
    pub request_id: Option<String>,
    /// W3C trace id of the decision (its span, or the caller's `traceparent`).
    pub trace_id: Option<String>,
    /// The query plan, for a `PlanResources` call or a plan route (its resource is the
    /// only entry of `resources`, without actions).
    pub plan: Option<PlanRecord>,
}

/// A query plan's outcome.
#[derive(Clone, Debug, Default)]
pub struct PlanRecord {
    /// The actions planned.
    pub actions: Vec<String>,
    /// The filter's kind (`KIND_ALWAYS_ALLOWED`, `KIND_ALWAYS_DENIED`, `KIND_CONDITIONAL`).
    pub filter: String,
    /// The condition as Cerbos's `filterDebug` renders it (written only with
    /// `includeAttributes`: it holds principal attribute values).
    pub condition: Option<String>,
}

/// The principal of a decision.
#[derive(Clone, Debug, Default)]
pub struct PrincipalRecord {
    /// Principal id.
    pub id: String,
    /// Roles.
    pub roles: Vec<String>,
    /// Attributes as JSON (written only with `includeAttributes`).
    pub attr: Option<Value>,
}

/// One resource of a decision, with its actions.
#[derive(Clone, Debug, Default)]
pub struct ResourceRecord {
    /// Resource kind.
    pub kind: String,
    /// Resource id.
    pub id: String,
    /// Policy version asked for (empty: the default).
    pub policy_version: String,
    /// Scope asked for (empty: the root scope).
    pub scope: String,
    /// Attributes as JSON (written only with `includeAttributes`).
    pub attr: Option<Value>,
    /// The actions and their effects.
    pub actions: Vec<ActionRecord>,
}

/// One action's effect and what decided it.
#[derive(Clone, Debug, Default)]
pub struct ActionRecord {
    /// The action.
    pub action: String,
    /// Allowed or denied.
    pub allowed: bool,
    /// The deciding policy (`resource.kind.vdefault`, `NO_MATCH`), when the engine decided.
    pub policy: Option<String>,
    /// The scope of the deciding rule.
    pub scope: Option<String>,
    /// The deciding rule, when known.
    pub rule: Option<String>,
}

/// How the writer shapes lines.
#[derive(Debug, Default)]
pub(crate) struct LineOptions {
    pub(crate) include_attributes: bool,
    pub(crate) masks: Vec<MaskPath>,
}

impl DecisionRecord {
    /// A record made now, with everything else empty.
    pub fn new(origin: Origin, decision_id: impl Into<String>) -> Self {
        DecisionRecord {
            time: SystemTime::now(),
            decision_id: decision_id.into(),
            origin,
            allowed: None,
            status: None,
            reason: None,
            principal: None,
            resources: Vec::new(),
            policy_revision: String::new(),
            request_id: None,
            trace_id: None,
            plan: None,
        }
    }

    /// The JSON line (without the newline).
    pub(crate) fn to_line(&self, opts: &LineOptions) -> String {
        let attr = |a: &Option<Value>| {
            if opts.include_attributes {
                a.clone().unwrap_or(Value::Null)
            } else {
                Value::Null
            }
        };
        let effect = |allowed: bool| if allowed { "allow" } else { "deny" };
        let principal = self.principal.as_ref().map_or(
            Value::Null,
            |p| json!({"id": p.id, "roles": p.roles, "attr": attr(&p.attr)}),
        );
        let resources: Vec<Value> = self
            .resources
            .iter()
            .map(|r| {
                let actions: Vec<Value> = r
                    .actions
                    .iter()
                    .map(|a| {
                        json!({
                            "action": a.action,
                            "effect": effect(a.allowed),
                            "policy": a.policy,
                            "scope": a.scope,
                            "rule": a.rule,
                        })
                    })
                    .collect();
                json!({
                    "kind": r.kind,
                    "id": r.id,
                    "policyVersion": r.policy_version,
                    "scope": r.scope,
                    "attr": attr(&r.attr),
                    "actions": actions,
                })
            })
            .collect();
        let time = chrono::DateTime::<chrono::Utc>::from(self.time)
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let mut line = Map::new();
        line.insert("time".into(), Value::String(time));
        line.insert("decisionId".into(), json!(self.decision_id));
        line.insert("origin".into(), json!(self.origin.as_str()));
        line.insert("effect".into(), json!(self.allowed.map(effect)));
        line.insert("status".into(), json!(self.status));
        line.insert("reason".into(), json!(self.reason));
        line.insert("principal".into(), principal);
        line.insert("resources".into(), Value::Array(resources));
        line.insert("policyRevision".into(), json!(self.policy_revision));
        line.insert(
            "requestId".into(),
            json!(self.request_id.as_deref().and_then(request_id)),
        );
        line.insert(
            "traceId".into(),
            json!(self.trace_id.as_deref().filter(|t| is_trace_id(t))),
        );
        if let Some(p) = &self.plan {
            line.insert(
                "plan".into(),
                json!({
                    "actions": p.actions,
                    "filter": p.filter,
                    "condition": if opts.include_attributes { p.condition.clone() } else { None },
                }),
            );
        }
        for m in &opts.masks {
            m.apply(&mut line);
        }
        Value::Object(line).to_string()
    }
}

/// The request id if it looks like one (printable, no spaces, at most 128 bytes), so a
/// client cannot smuggle arbitrary text into the log through it.
fn request_id(id: &str) -> Option<&str> {
    let ok = !id.is_empty()
        && id.len() <= MAX_REQUEST_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
    ok.then_some(id)
}

fn is_trace_id(t: &str) -> bool {
    t.len() == 32
        && t.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        && t.bytes().any(|b| b != b'0')
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn record() -> DecisionRecord {
        let mut r = DecisionRecord::new(Origin::Api, "call-1");
        r.time = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        r.principal = Some(PrincipalRecord {
            id: "alice".into(),
            roles: vec!["user".into()],
            attr: Some(json!({"email": "alice@example.test", "dept": "eng"})),
        });
        r.resources = vec![ResourceRecord {
            kind: "document".into(),
            id: "1".into(),
            attr: Some(json!({"owner": "alice"})),
            actions: vec![ActionRecord {
                action: "read".into(),
                allowed: true,
                policy: Some("resource.document.vdefault".into()),
                ..Default::default()
            }],
            ..Default::default()
        }];
        r.policy_revision = "rev".into();
        r.request_id = Some("req 1".into());
        r.trace_id = Some("4bf92f3577b34da6a3ce929d0e0e4736".into());
        r
    }

    #[test]
    fn line_has_every_field() {
        let line = record().to_line(&LineOptions::default());
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["time"], "2023-11-14T22:13:20.123000Z");
        assert_eq!(v["decisionId"], "call-1");
        assert_eq!(v["origin"], "api");
        assert_eq!(v["principal"]["roles"], json!(["user"]));
        assert_eq!(v["principal"]["attr"], Value::Null, "attributes are opt-in");
        assert_eq!(v["resources"][0]["actions"][0]["effect"], "allow");
        assert_eq!(
            v["resources"][0]["actions"][0]["policy"],
            "resource.document.vdefault"
        );
        assert_eq!(v["policyRevision"], "rev");
        assert_eq!(v["requestId"], Value::Null, "ids with spaces are dropped");
        assert_eq!(v["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn attributes_are_written_masked_when_configured() {
        let opts = LineOptions {
            include_attributes: true,
            masks: vec![MaskPath::parse("principal.attr.email").unwrap()],
        };
        let v: Value = serde_json::from_str(&record().to_line(&opts)).unwrap();
        assert_eq!(v["principal"]["attr"]["email"], "***");
        assert_eq!(v["principal"]["attr"]["dept"], "eng");
        assert_eq!(v["resources"][0]["attr"]["owner"], "alice");
    }

    #[test]
    fn request_ids() {
        assert_eq!(request_id("abc-123"), Some("abc-123"));
        assert_eq!(request_id(&"a".repeat(129)), None);
    }
}
