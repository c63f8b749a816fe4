//! One decision as the audit log records it, and its JSON line.

use std::time::SystemTime;

use serde::Serialize;
use serde_json::Value;

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
pub(crate) struct DecisionRecord {
    /// When the decision was made.
    time: SystemTime,
    /// Decision id (ext_authz decision id, Cerbos call id).
    decision_id: String,
    /// Which adapter decided.
    origin: Origin,
    /// Overall outcome, when the adapter has one (ext_authz: allow or deny the request).
    pub(crate) allowed: Option<bool>,
    /// HTTP status of a denial (ext_authz).
    pub(crate) status: Option<u16>,
    /// Why the request was denied (no credentials, tokens or header values in it).
    pub(crate) reason: Option<String>,
    /// The principal, when one was identified.
    pub(crate) principal: Option<PrincipalRecord>,
    /// The resources decided (one for ext_authz, one per entry for `CheckResources`).
    pub(crate) resources: Vec<ResourceRecord>,
    /// Revision of the policies in force.
    pub(crate) policy_revision: String,
    /// Envoy's request id (`x-request-id`), or the API request id.
    pub(crate) request_id: Option<String>,
    /// W3C trace id of the decision (its span, or the caller's `traceparent`).
    pub(crate) trace_id: Option<String>,
    /// The query plan, for a `PlanResources` call or a plan route (its resource is the
    /// only entry of `resources`, without actions).
    pub(crate) plan: Option<PlanRecord>,
}

/// A query plan's outcome.
#[derive(Clone, Debug, Default)]
pub(crate) struct PlanRecord {
    /// The actions planned.
    pub(crate) actions: Vec<String>,
    /// The filter's kind (`KIND_ALWAYS_ALLOWED`, `KIND_ALWAYS_DENIED`, `KIND_CONDITIONAL`).
    pub(crate) filter: String,
    /// The condition as Cerbos's `filterDebug` renders it (written only with
    /// `includeAttributes`: it holds principal attribute values).
    pub(crate) condition: Option<String>,
}

/// The principal of a decision.
#[derive(Clone, Debug, Default)]
pub(crate) struct PrincipalRecord {
    /// Principal id.
    pub(crate) id: String,
    /// Roles.
    pub(crate) roles: Vec<String>,
    /// Attributes as JSON (written only with `includeAttributes`).
    pub(crate) attr: Option<Value>,
}

/// One resource of a decision, with its actions.
#[derive(Clone, Debug, Default)]
pub(crate) struct ResourceRecord {
    /// Resource kind.
    pub(crate) kind: String,
    /// Resource id.
    pub(crate) id: String,
    /// Policy version asked for (empty: the default).
    pub(crate) policy_version: String,
    /// Scope asked for (empty: the root scope).
    pub(crate) scope: String,
    /// Attributes as JSON (written only with `includeAttributes`).
    pub(crate) attr: Option<Value>,
    /// The actions and their effects.
    pub(crate) actions: Vec<ActionRecord>,
}

/// One action's effect and what decided it.
#[derive(Clone, Debug, Default)]
pub(crate) struct ActionRecord {
    /// The action.
    pub(crate) action: String,
    /// Allowed or denied.
    pub(crate) allowed: bool,
    /// The deciding policy (`resource.kind.vdefault`, `NO_MATCH`), when the engine decided.
    pub(crate) policy: Option<String>,
    /// The scope of the deciding rule.
    pub(crate) scope: Option<String>,
    /// The deciding rule, when known.
    pub(crate) rule: Option<String>,
}

/// How the writer shapes lines.
#[derive(Debug, Default)]
pub(crate) struct LineOptions {
    pub(crate) include_attributes: bool,
    pub(crate) masks: Vec<MaskPath>,
}

impl DecisionRecord {
    /// A record made now, with everything else empty.
    pub(crate) fn new(origin: Origin, decision_id: impl Into<String>) -> Self {
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

    /// The JSON line (without the newline): serialised straight from the record, or
    /// through a JSON tree when a mask can change it.
    pub(crate) fn to_line(&self, opts: &LineOptions) -> String {
        let with_attrs = opts.include_attributes;
        fn attr(a: &Option<Value>, with_attrs: bool) -> Option<&Value> {
            a.as_ref().filter(|_| with_attrs)
        }
        let effect = |allowed: bool| if allowed { "allow" } else { "deny" };
        let line = Line {
            time: chrono::DateTime::<chrono::Utc>::from(self.time)
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            decision_id: &self.decision_id,
            origin: self.origin.as_str(),
            effect: self.allowed.map(effect),
            status: self.status,
            reason: self.reason.as_deref(),
            principal: self.principal.as_ref().map(|p| PrincipalLine {
                id: &p.id,
                roles: &p.roles,
                attr: attr(&p.attr, with_attrs),
            }),
            resources: self
                .resources
                .iter()
                .map(|r| ResourceLine {
                    kind: &r.kind,
                    id: &r.id,
                    policy_version: &r.policy_version,
                    scope: &r.scope,
                    attr: attr(&r.attr, with_attrs),
                    actions: r
                        .actions
                        .iter()
                        .map(|a| ActionLine {
                            action: &a.action,
                            effect: effect(a.allowed),
                            policy: a.policy.as_deref(),
                            scope: a.scope.as_deref(),
                            rule: a.rule.as_deref(),
                        })
                        .collect(),
                })
                .collect(),
            policy_revision: &self.policy_revision,
            request_id: self.request_id.as_deref().and_then(request_id),
            trace_id: self.trace_id.as_deref().filter(|t| is_trace_id(t)),
            plan: self.plan.as_ref().map(|p| PlanLine {
                actions: &p.actions,
                filter: &p.filter,
                condition: if with_attrs {
                    p.condition.as_deref()
                } else {
                    None
                },
            }),
        };
        let masks: Vec<&MaskPath> = opts
            .masks
            .iter()
            .filter(|m| m.can_change(with_attrs))
            .collect();
        if masks.is_empty() {
            return serde_json::to_string(&line).unwrap_or_default();
        }
        match serde_json::to_value(&line) {
            Ok(Value::Object(mut map)) => {
                for m in masks {
                    m.apply(&mut map);
                }
                Value::Object(map).to_string()
            }
            _ => String::new(),
        }
    }
}

/// A record as its JSON line has it (field order is the line's).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Line<'a> {
    time: String,
    decision_id: &'a str,
    origin: &'static str,
    effect: Option<&'static str>,
    status: Option<u16>,
    reason: Option<&'a str>,
    principal: Option<PrincipalLine<'a>>,
    resources: Vec<ResourceLine<'a>>,
    policy_revision: &'a str,
    request_id: Option<&'a str>,
    trace_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    plan: Option<PlanLine<'a>>,
}

#[derive(Serialize)]
struct PrincipalLine<'a> {
    id: &'a str,
    roles: &'a [String],
    attr: Option<&'a Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResourceLine<'a> {
    kind: &'a str,
    id: &'a str,
    policy_version: &'a str,
    scope: &'a str,
    attr: Option<&'a Value>,
    actions: Vec<ActionLine<'a>>,
}

#[derive(Serialize)]
struct ActionLine<'a> {
    action: &'a str,
    effect: &'static str,
    policy: Option<&'a str>,
    scope: Option<&'a str>,
    rule: Option<&'a str>,
}

#[derive(Serialize)]
struct PlanLine<'a> {
    actions: &'a [String],
    filter: &'a str,
    condition: Option<&'a str>,
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

    use serde_json::json;

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
    fn line_text_is_exact() {
        let mut r = record();
        r.allowed = Some(false);
        r.status = Some(403);
        r.reason = Some("say \"no\"".into());
        r.plan = Some(PlanRecord {
            actions: vec!["read".into()],
            filter: "KIND_CONDITIONAL".into(),
            condition: Some("(eq request.resource.attr.owner \"alice\")".into()),
        });
        let plain = r.to_line(&LineOptions::default());
        assert_eq!(
            plain,
            r#"{"time":"2023-11-14T22:13:20.123000Z","decisionId":"call-1","origin":"api","effect":"deny","status":403,"reason":"say \"no\"","principal":{"id":"alice","roles":["user"],"attr":null},"resources":[{"kind":"document","id":"1","policyVersion":"","scope":"","attr":null,"actions":[{"action":"read","effect":"allow","policy":"resource.document.vdefault","scope":null,"rule":null}]}],"policyRevision":"rev","requestId":null,"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","plan":{"actions":["read"],"filter":"KIND_CONDITIONAL","condition":null}}"#
        );
        // Masks below `attr` cannot change a line without attributes; others still apply.
        let masked = |path: &str, include_attributes: bool| {
            r.to_line(&LineOptions {
                include_attributes,
                masks: vec![MaskPath::parse(path).unwrap()],
            })
        };
        assert_eq!(masked("principal.attr.email", false), plain);
        assert_eq!(
            masked("principal.attr", false),
            plain.replacen(r#""attr":null"#, r#""attr":"***""#, 1)
        );
        assert_eq!(
            masked("resource.id", false),
            plain.replace(r#""id":"1""#, r#""id":"***""#)
        );
        let full = masked("principal.attr.email", true);
        assert!(
            full.contains(r#""attr":{"email":"***","dept":"eng"}"#),
            "{full}"
        );
        assert!(full.contains(r#""condition":"(eq request.resource.attr.owner \"alice\")""#));
    }

    #[test]
    fn request_ids() {
        assert_eq!(request_id("abc-123"), Some("abc-123"));
        assert_eq!(request_id(&"a".repeat(129)), None);
    }
}
