//! The `envoy.service.auth.v3.Authorization/Check` service: CheckRequest in,
//! decision out. Every failure on the way (bad path, unknown route, bad credentials,
//! attribute source down, engine error) is a denial with a reason, never an allow.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::extauthz::pb::v3::{Authorization, CheckRequest, CheckResponse};
use tonic::{Request, Response, Status};

use super::answer::{Allowed, Answer, Denied, Text};
use super::attributes::{AttributeFetcher, Provenance};
use super::config::{
    AnonymousConfig, AttributesConfig, BackendHeader, ClaimsConfig, DenyBody, FetchConfig,
    HeaderSet, Mode,
};
use super::principal::{Identity, MappedPrincipal, RequestFacts, Source, resolve};
use super::route::{RequestPath, RouteMapper, RouteMatch, fill_template, normalize, query_params};
use super::shadow::Comparison;
use super::view::{AttrsView, CheckView, HttpView, Pairs};
use super::wire::MalformedCheck;
use crate::audit::{
    ActionRecord, Attributes, AuditSink, DecisionRecord, PrincipalRecord, ResourceRecord,
};
use crate::cel::{Key, MapValue, Value, from_json, to_json};
use crate::engine::{CheckInput, CheckOutput, Principal, Resource};
use crate::metrics::{ActionOutcome, AttributeFetch, Metrics, Origin};
use crate::planner::{FilterKind, PlanError, PlanInput, PlanOutput, PlanResource};
use crate::policy::compiled::Effect;
use crate::store::PolicyStore;
use crate::telemetry::{SpanKind, TraceContext, TraceSpan, Tracer};

/// Everything the service needs, built once at start.
pub struct ExtAuthz {
    /// The policies in force.
    pub(crate) store: Arc<PolicyStore>,
    /// Routes.
    pub(crate) routes: RouteMapper,
    /// Principal sources, in order.
    pub(crate) sources: Vec<Source>,
    /// Claim mapping.
    pub(crate) claims: ClaimsConfig,
    /// Anonymous principal, if admitted.
    pub(crate) anonymous: Option<AnonymousConfig>,
    /// Header prefix (lower case).
    pub(crate) prefix: String,
    /// The names of the headers Gatehouse sets, built once from the prefix.
    pub(crate) names: HeaderNames,
    /// Denial body format.
    pub(crate) deny_body: DenyBody,
    /// Detailed reasons in denial bodies (development); otherwise generic ones.
    pub(crate) deny_details: bool,
    /// Largest body read.
    pub(crate) max_body: usize,
    /// HTTP attribute sources.
    pub(crate) fetcher: AttributeFetcher,
    /// Where decisions are counted and timed.
    pub(crate) metrics: Metrics,
    /// Where decisions are logged.
    pub audit: AuditSink,
    /// Where decision spans go (off unless tracing is configured).
    pub(crate) tracer: Tracer,
    /// Signs the assertion added on allow, when configured.
    pub(crate) assertion: Option<Arc<super::assertion::AssertionSigner>>,
    /// Envoy's HTTP ext_authz served on the HTTP listener.
    pub(crate) http_service: bool,
    /// Forward-auth served on the HTTP listener, when configured.
    pub(crate) forward_auth: Option<super::forward_auth::ForwardAuth>,
    /// What denials do on routes that do not say.
    pub(crate) mode: Mode,
    /// The candidate policy set, decided beside the live one.
    pub(crate) candidate: Option<Arc<PolicyStore>>,
    /// Routes imported from the app's OpenAPI document, when configured.
    pub(crate) imported: Option<super::openapi::ImportState>,
    /// Largest filter header a plan route hands the backend.
    pub(crate) max_filter: usize,
    /// Which gRPC answers carry Envoy dynamic metadata.
    pub(crate) envoy_metadata: super::config::EnvoyMetadata,
}

impl std::fmt::Debug for ExtAuthz {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtAuthz")
            .field("prefix", &self.prefix)
            .field("sources", &self.sources)
            .finish_non_exhaustive()
    }
}

/// `prefix` + `name`, a header name.
fn header_name(prefix: &str, name: &str) -> String {
    let mut n = String::with_capacity(prefix.len() + name.len());
    n.push_str(prefix);
    n.push_str(name);
    n
}

/// The header names (and fixed values) of every answer, built once per configuration
/// and shared by the answers without copying.
#[derive(Debug)]
pub(crate) struct HeaderNames {
    decision_id: Text,
    principal: Text,
    roles: Text,
    principal_attr: Text,
    derived_roles: Text,
    outputs: Text,
    filter: Text,
    assertion: Text,
    content_type: Text,
    www_authenticate: Text,
    json: Text,
    problem_json: Text,
}

impl HeaderNames {
    /// The names under `prefix` (lower case).
    pub(crate) fn new(prefix: &str) -> HeaderNames {
        let name = |n: &str| Text::from(header_name(prefix, n));
        HeaderNames {
            decision_id: name("decision-id"),
            principal: name("principal"),
            roles: name("roles"),
            principal_attr: name("principal-attr"),
            derived_roles: name("derived-roles"),
            outputs: name("outputs"),
            filter: name("filter"),
            assertion: name("assertion"),
            content_type: Text::from("content-type"),
            www_authenticate: Text::from("www-authenticate"),
            json: Text::from("application/json"),
            problem_json: Text::from("application/problem+json"),
        }
    }
}

/// `names` joined by commas, as one shared text: one allocation (a single name, the
/// usual case, or a short list written on the stack first).
fn joined(names: &[String]) -> Text {
    if let [one] = names {
        return Text::from(one.as_str());
    }
    let mut buf = [0u8; 256];
    let mut len = 0;
    for (i, name) in names.iter().enumerate() {
        let sep = usize::from(i > 0);
        let Some(slot) = buf.get_mut(len..len + sep + name.len()) else {
            return Text::from(names.join(","));
        };
        slot[..sep].copy_from_slice(&b","[..sep]);
        slot[sep..].copy_from_slice(name.as_bytes());
        len += sep + name.len();
    }
    // Whole names and commas: valid UTF-8.
    Text::from(std::str::from_utf8(&buf[..len]).unwrap_or_default())
}

/// A new decision id for a decision started `at`: time-ordered and unique within the
/// process (28 hex digits), as the answer's shared text (the decision log copies it only
/// when it writes a record). Its time is `at` on the wall clock, from the clock read that
/// also times the decision (no clock read of its own).
fn decision_id(at: Instant) -> Text {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    /// The wall clock (Unix milliseconds) at an instant, read once; the salt.
    static EPOCH: std::sync::OnceLock<(Instant, u64, u64)> = std::sync::OnceLock::new();
    let (base, base_millis, salt) = *EPOCH.get_or_init(|| {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let salt = (t.as_nanos() as u64) ^ (u64::from(std::process::id()) << 32);
        (Instant::now(), t.as_millis() as u64, salt)
    });
    let millis = base_millis.saturating_add(at.saturating_duration_since(base).as_millis() as u64);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut id = [0u8; 28];
    let (time, sequence) = id.split_at_mut(12);
    put_hex(time, millis);
    put_hex(sequence, n.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ salt);
    // Hex digits are ASCII.
    Text::from(std::str::from_utf8(&id).unwrap_or_default())
}

/// The last `out.len()` lower-case hex digits of `v` (as `{v:0width$x}` for values that
/// fit), written into `out`.
fn put_hex(out: &mut [u8], v: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // From the last digit: one shift per digit (zeros once `v`'s digits run out).
    let mut rest = v;
    for d in out.iter_mut().rev() {
        *d = HEX[(rest & 0xf) as usize];
        rest >>= 4;
    }
}

/// Why a request was not allowed, and how to say so.
#[derive(Debug)]
struct Denial {
    status: u16,
    reason: String,
    policy: Option<String>,
    authenticate: Option<&'static str>,
    /// What the audit log says instead of `reason`, when `reason` may echo credentials.
    audit_reason: Option<&'static str>,
    /// Shadow mode does not turn this denial into an allow: Gatehouse could not give the
    /// backend what the route promises (a plan route's filter).
    always_enforced: bool,
}

impl Denial {
    fn forbidden(reason: impl Into<String>) -> Self {
        Denial::status(403, reason)
    }

    fn status(status: u16, reason: impl Into<String>) -> Self {
        Denial {
            status,
            reason: reason.into(),
            policy: None,
            authenticate: None,
            audit_reason: None,
            always_enforced: false,
        }
    }

    /// A 503 that shadow mode enforces too: the route's filter cannot be handed over.
    fn filter_unavailable(reason: impl Into<String>) -> Self {
        Denial {
            always_enforced: true,
            ..Denial::status(503, reason)
        }
    }
}

/// Step 1's result: the engine's question, or none (a public route).
enum Mapped {
    /// A public route: allowed without a decision.
    Public,
    /// Principal, resource and action for the engine.
    Check(Box<CheckInput>),
    /// A plan route: principal, resource kind and action for the planner.
    Plan(Box<PlanInput>),
}

/// A plan route's plan, kept for the metrics and the decision log.
struct Planned {
    input: PlanInput,
    output: PlanOutput,
}

/// What a decision got to, kept for the metrics and the audit log.
#[derive(Default)]
struct Trail<'a> {
    /// Resource kind of the matched route (empty if none).
    kind: &'a str,
    /// Action of the matched route and method.
    action: Option<String>,
    /// Resource id of the matched route, until the resource is built.
    resource_id: String,
    /// The route's attributes copied from request headers (by name): never logged.
    header_attrs: Option<&'a BTreeMap<String, String>>,
    principal: Option<Principal>,
    /// The principal as mapped, with its backend headers (built once per principal).
    mapped: Option<Arc<MappedPrincipal>>,
    resource: Option<Resource>,
    output: Option<CheckOutput>,
    /// Revision of the policy set that decided.
    revision: Option<Arc<str>>,
    /// The decision's span, when the trace is recorded.
    span: Option<TraceSpan>,
    /// The caller's trace context: Envoy's ext_authz call, else the HTTP request's.
    caller: Option<TraceContext>,
    /// Method and decoded path, kept only when an assertion is signed.
    request_line: Option<(String, String)>,
    /// The matched route's mode (else the global one).
    mode: Mode,
    /// The live and the candidate set's answers, when a candidate is configured.
    comparison: Option<Comparison>,
    /// A plan route's filter header value (Cerbos's filter as compact ASCII JSON).
    filter: Option<String>,
    /// A plan route's plan, once made.
    planned: Option<Box<Planned>>,
    /// The headers the matched route's backend gets.
    backend_headers: HeaderSet,
}

impl ExtAuthz {
    fn attr_key(name: &str) -> Key {
        Key::String(Arc::from(name))
    }

    /// Client headers with our prefix that we do not overwrite: removed before the
    /// request reaches the backend.
    /// Sorted, each name once (a request may repeat a header in its map).
    fn spoofed(&self, headers: &Pairs<'_>, ours: &[(Text, Text)]) -> Vec<String> {
        let mut names: Vec<String> = headers
            .keys()
            .filter(|k| k.starts_with(&self.prefix) && !ours.iter().any(|(o, _)| **o == **k))
            .map(str::to_string)
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Step 3 on allow: the headers for the backend (principal, roles, attributes,
    /// outputs, assertion) and the client-sent ones under our prefix to remove.
    fn allow(&self, id: &Text, headers: &Pairs<'_>, a: &Trail<'_>) -> Answer {
        let n = &self.names;
        // Room for every header below: the vector never grows.
        let mut set = Vec::with_capacity(8);
        // The route's `backendHeaders` (all by default).
        let wanted = |h| a.backend_headers.has(h);
        if wanted(BackendHeader::DecisionId) {
            set.push((n.decision_id.clone(), id.clone()));
        }
        let mut principal_id = None;
        if let Some(principal) = &a.principal {
            // The mapped principal's headers are built once (cached with a verified
            // token's claims); `trail.principal` is a copy of that principal.
            let fresh;
            let mapped = match &a.mapped {
                Some(m) => m,
                None => {
                    fresh = MappedPrincipal::new(principal.clone());
                    &fresh
                }
            };
            let h = mapped.headers();
            principal_id = Some(h.raw_id.clone());
            if wanted(BackendHeader::Principal) {
                set.push((n.principal.clone(), h.id.clone()));
            }
            // No roles and no attributes are sent as absent headers (each header costs
            // Envoy about 5,000 instructions); a client-sent copy is still removed.
            if !h.roles.is_empty() && wanted(BackendHeader::Roles) {
                set.push((n.roles.clone(), h.roles.clone()));
            }
            // The principal's attributes (from verified claims), so the backend can ask the
            // Cerbos API about many resources for the same principal.
            if &*h.attr != "{}" && wanted(BackendHeader::PrincipalAttr) {
                set.push((n.principal_attr.clone(), h.attr.clone()));
            }
        }
        if let Some(out) = &a.output {
            if !out.effective_derived_roles.is_empty() && wanted(BackendHeader::DerivedRoles) {
                set.push((
                    n.derived_roles.clone(),
                    joined(&out.effective_derived_roles),
                ));
            }
            if !out.outputs.is_empty() && wanted(BackendHeader::Outputs) {
                let outputs: Vec<serde_json::Value> = out
                    .outputs
                    .iter()
                    .map(|o| match &o.value {
                        Ok(v) => serde_json::json!({"src": o.src, "action": o.action, "val": v}),
                        Err(e) => serde_json::json!({"src": o.src, "action": o.action, "error": e}),
                    })
                    .collect();
                set.push((
                    n.outputs.clone(),
                    Text::from(super::encoding::ascii_json(&serde_json::Value::Array(
                        outputs,
                    ))),
                ));
            }
        }
        if let Some(filter) = &a.filter {
            set.push((n.filter.clone(), Text::from(filter.as_str())));
        }
        if let (Some(signer), Some(principal), Some((method, path))) =
            (&self.assertion, &a.principal, &a.request_line)
        {
            let roles: Vec<&str> = principal.roles.iter().map(|r| &**r).collect();
            set.push((
                n.assertion.clone(),
                Text::from(signer.sign(&principal.id, &roles, id, method, path)),
            ));
        }
        let remove = self.spoofed(headers, &set);
        Answer::Allow(Allowed {
            decision_id: id.clone(),
            principal: principal_id,
            headers: set,
            remove,
            metadata: self.envoy_metadata.on_allow(),
        })
    }

    /// Step 3 on denial: the status, headers and body the client gets.
    fn deny(&self, id: &Text, d: &Denial) -> Answer {
        let title = match d.status {
            401 => "Unauthorized",
            400 => "Bad Request",
            413 => "Payload Too Large",
            404 => "Not Found",
            503 => "Service Unavailable",
            _ => "Forbidden",
        };
        // Reasons can name internals (an OS error, a JWKS URL, an attribute source's
        // answer); clients get a generic one and the decision id, the decision log has the
        // details under that id.
        let detail = if self.deny_details {
            d.reason.as_str()
        } else {
            match d.status {
                401 => "authentication required",
                400 => "bad request",
                413 => "request body too large",
                404 => "not found",
                503 => "service unavailable",
                _ => "forbidden",
            }
        };
        let n = &self.names;
        let content_type = match self.deny_body {
            DenyBody::Fastapi => &n.json,
            DenyBody::Problem => &n.problem_json,
        };
        let body = deny_body(self.deny_body, title, d.status, detail, id);
        let mut headers = Vec::with_capacity(3);
        headers.push((n.content_type.clone(), content_type.clone()));
        headers.push((n.decision_id.clone(), id.clone()));
        if let Some(challenge) = d.authenticate {
            headers.push((n.www_authenticate.clone(), Text::from(challenge)));
        }
        Answer::Deny(Denied {
            decision_id: id.clone(),
            status: d.status,
            headers,
            body,
            reason: d.reason.clone(),
            policy: d.policy.clone(),
            metadata: self.envoy_metadata.on_deny(),
        })
    }

    /// A denial before any request mapping (an untrusted forward-auth caller, missing
    /// original-request headers): logged, counted and audited as any denial.
    pub(crate) fn refuse(&self, status: u16, reason: &str) -> Answer {
        let id = decision_id(Instant::now());
        tracing::warn!(decision_id = %id, status, reason, "deny");
        self.metrics.observe_check(
            Origin::ExtAuthz,
            Duration::ZERO,
            std::iter::once(ActionOutcome {
                kind: "",
                action: "",
                allowed: false,
            }),
        );
        let result = Err(Denial::status(status, reason));
        let mut trail = Trail::default();
        self.audit
            .record_with(|| self.audit_record(id.clone(), None, &mut trail, &result));
        self.deny(&id, &Denial::status(status, reason))
    }

    /// Decides one CheckRequest: times and counts it in the metrics and hands it to the
    /// audit sink (origin `ext_authz`).
    pub async fn decide(&self, req: &CheckRequest) -> CheckResponse {
        self.decide_traced(req, None).await
    }

    /// [`decide`](Self::decide) as the gRPC service answers it: the `CheckRequest`'s
    /// protobuf bytes read in place (no copy of its headers), the `CheckResponse`'s bytes
    /// written straight from the decision's answer, appended to `out`. A request that is
    /// not valid protobuf is not decided (the gRPC service answers an error status).
    pub async fn decide_encoded(
        &self,
        req: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), MalformedCheck> {
        let view = super::wire::decode(req)?;
        let answer = self.authorize(&view, None).await;
        answer.encode_reserving(out, |out, n| out.reserve(n));
        Ok(())
    }

    /// [`decide`](Self::decide) continuing a trace: `caller` is the context of Envoy's
    /// ext_authz call (gRPC metadata); without it, the HTTP request's `traceparent` is
    /// the parent.
    pub(crate) async fn decide_traced(
        &self,
        req: &CheckRequest,
        caller: Option<TraceContext>,
    ) -> CheckResponse {
        self.authorize(&CheckView::from_message(req), caller)
            .await
            .into_check_response()
    }

    /// One decision, whatever the proxy: maps the request (step 1), decides it (step 2)
    /// and builds the proxy-neutral answer (step 3); times and counts it in the metrics
    /// and hands it to the audit sink (origin `ext_authz`). gRPC ext_authz, Envoy's HTTP
    /// ext_authz and forward-auth proxies each render the [`Answer`] their way.
    pub(crate) async fn authorize(
        &self,
        req: &CheckView<'_>,
        caller: Option<TraceContext>,
    ) -> Answer {
        let started = Instant::now();
        let id = decision_id(started);
        let empty = Pairs::default();
        let http = req.http();
        let headers = http.map_or(&empty, |h| &h.headers);
        crate::fault::panic_if_requested(|| headers.get(crate::fault::HEADER));
        let mut trail = self.start_trail(caller, headers);
        let result = match self.map_request(req, &mut trail).await {
            Ok(Mapped::Public) => Ok(()),
            Ok(Mapped::Check(input)) => self.decide_input(*input, &mut trail),
            Ok(Mapped::Plan(input)) => self.decide_plan(&id, *input, &mut trail),
            Err(d) => Err(d),
        };
        let shadowed =
            trail.mode == Mode::Shadow && matches!(&result, Err(d) if !d.always_enforced);
        let response = self.answer(&id, headers, &trail, &result, shadowed);
        let method = http.map(|h| h.method);
        if let Some(mut span) = trail.span.take() {
            span_attributes(&mut span, &id, method, &trail, &result);
            trail.span = Some(span);
        }
        if let Some(planned) = trail.planned.take() {
            // A plan route's plan is counted and logged as plans are (not as a check).
            self.record_planned(&id, started, http, &trail, &result, shadowed, &planned);
        } else {
            self.observe_check(&id, started, &trail, &result, shadowed);
            self.audit.record_with(|| {
                let http = http.map(|h| (h.id, headers));
                let mut r = self.audit_record(id.clone(), http, &mut trail, &result);
                if shadowed {
                    r.reason = r
                        .reason
                        .map(|reason| format!("shadow mode, allowed: {reason}"));
                }
                r
            });
        }
        if let Some(span) = trail.span.take() {
            self.tracer.end(span);
        }
        response
    }

    /// The trail of one decision, with its server span started under `caller` (else the
    /// request's `traceparent`).
    fn start_trail(&self, caller: Option<TraceContext>, headers: &Pairs<'_>) -> Trail<'_> {
        let mut trail = Trail {
            mode: self.mode,
            ..Trail::default()
        };
        trail.caller = caller.or_else(|| TraceContext::from_headers(|k| headers.get(k)));
        trail.span = self.tracer.start_span(
            "envoy.service.auth.v3.Authorization/Check",
            SpanKind::Server,
            trail.caller.as_ref(),
        );
        trail
    }

    /// Step 3: the proxy-neutral answer (a denial in shadow mode is allowed and logged as
    /// what it would have been).
    fn answer(
        &self,
        id: &Text,
        headers: &Pairs<'_>,
        trail: &Trail<'_>,
        result: &Result<(), Denial>,
        shadowed: bool,
    ) -> Answer {
        match result {
            Ok(()) => {
                tracing::debug!(decision_id = %id, "allow");
                self.allow(id, headers, trail)
            }
            Err(d) if shadowed => {
                tracing::warn!(decision_id = %id, status = d.status, reason = %d.reason, "would deny (shadow mode): allowed");
                self.allow(id, headers, trail)
            }
            Err(d) => {
                tracing::info!(decision_id = %id, status = d.status, reason = %d.reason, "deny");
                self.deny(id, d)
            }
        }
    }

    /// A check's metrics: the candidate set's disagreement, then each decided action's
    /// outcome (or the request's own outcome, once, without an engine decision), as a
    /// check or a shadow check. Label values come from the policy set in force, never
    /// from the request.
    fn observe_check(
        &self,
        id: &str,
        started: Instant,
        trail: &Trail<'_>,
        result: &Result<(), Denial>,
        shadowed: bool,
    ) {
        let snapshot = self.store.snapshot();
        let policies = snapshot.engine.policies();
        if let Some(c) = &trail.comparison
            && c.disagrees()
        {
            let action = trail.action.as_deref().unwrap_or_default();
            let (kind_label, action_label) = policies.metric_labels(trail.kind, action);
            self.metrics
                .count_candidate_disagreement(kind_label, action_label);
            let principal = trail.principal.as_ref().map_or("", |p| p.id.as_str());
            c.log(id, principal, trail.kind, action);
        }
        let decided = trail.output.iter().flat_map(|out| &out.actions);
        let outcomes = decided.map(|a| {
            let (kind, action) = policies.metric_labels(trail.kind, &a.action);
            ActionOutcome {
                kind,
                action,
                allowed: a.effect == Effect::Allow,
            }
        });
        let undecided = trail.output.is_none().then(|| {
            let (kind, action) =
                policies.metric_labels(trail.kind, trail.action.as_deref().unwrap_or_default());
            ActionOutcome {
                kind,
                action,
                allowed: result.is_ok(),
            }
        });
        if shadowed {
            self.metrics.observe_shadow_check(
                Origin::ExtAuthz,
                started.elapsed(),
                outcomes.chain(undecided),
            );
        } else {
            self.metrics.observe_check(
                Origin::ExtAuthz,
                started.elapsed(),
                outcomes.chain(undecided),
            );
        }
    }

    /// The audit record of one decision: no header values besides the request and trace
    /// ids, no tokens, attributes only when the sink wants them. The trail's principal,
    /// resource and engine answers move into the record (the trail is not used for them
    /// afterwards).
    fn audit_record(
        &self,
        id: Text,
        http: Option<(&str, &Pairs<'_>)>,
        trail: &mut Trail<'_>,
        result: &Result<(), Denial>,
    ) -> DecisionRecord {
        let with_attrs = self.audit.wants_attributes();
        let mut r = DecisionRecord::new(Origin::ExtAuthz, id);
        r.allowed = Some(result.is_ok());
        if let Err(d) = result {
            r.status = Some(d.status);
            r.reason = Some(
                d.audit_reason
                    .map_or_else(|| d.reason.clone(), str::to_string),
            );
        }
        r.principal = trail.principal.take().map(|p| PrincipalRecord {
            id: p.id,
            roles: p.roles,
            attr: with_attrs.then(|| {
                let attr = p.attr;
                Attributes::new(move || attrs_json::<&str>(&attr, &[]))
            }),
        });
        if !trail.kind.is_empty() {
            r.resources = vec![resource_record(trail, result, with_attrs)];
        }
        r.policy_revision = Some(match &trail.revision {
            Some(rev) => rev.clone(),
            None => self.store.snapshot().revision.clone(),
        });
        if let Some((http_id, headers)) = http {
            r.request_id = Some(http_id)
                .filter(|i| !i.is_empty())
                .or_else(|| headers.get("x-request-id"))
                .map(str::to_string);
        }
        r.trace_id = trail
            .span
            .as_ref()
            .map(|s| &s.context)
            .or(trail.caller.as_ref())
            .map(TraceContext::trace_id_hex);
        r
    }

    /// Step 1: the CheckRequest as the engine's question (principal, resource with its
    /// attributes, action), or nothing to ask on a public route. Everything it finds on
    /// the way (route, kind, action, principal) goes on the trail for the log.
    async fn map_request<'s>(
        &'s self,
        req: &CheckView<'_>,
        trail: &mut Trail<'s>,
    ) -> Result<Mapped, Denial> {
        let (attrs, http) = request_parts(req)?;
        let path =
            normalize(http.path).map_err(|e| Denial::status(400, format!("rejected path: {e}")))?;
        let method = if http.method.bytes().any(|b| b.is_ascii_lowercase()) {
            std::borrow::Cow::Owned(http.method.to_ascii_uppercase())
        } else {
            std::borrow::Cow::Borrowed(http.method)
        };
        let Some(hit) = self.routes.find(&path.path, &method) else {
            return Err(Denial::forbidden(format!(
                "no route for {method} {}",
                path.path
            )));
        };
        let route = hit.route;
        if let Some(mode) = route.mode {
            trail.mode = mode;
        }
        trail.backend_headers = route.backend_headers;
        if route.public {
            return Ok(Mapped::Public);
        }
        self.record_route(trail, &hit, &method, &path);
        let mapped = self.principal(attrs, http).await?;
        trail.principal = Some(mapped.principal.clone());
        trail.mapped = Some(mapped);

        let Some(resource_cfg) = &route.resource else {
            return Err(Denial::forbidden("route has no resource"));
        };
        if trail.action.is_none() {
            return Err(Denial::forbidden(format!("no action for method {method}")));
        }
        let mut attr = request_attributes(&route.attributes, attrs, http, &hit, &path);
        self.body_attributes(&route.attributes, http, &mut attr)?;
        if let Some(fetch) = &route.attributes.fetch {
            self.fetch_attributes(fetch, &hit, trail, &mut attr).await?;
        }

        if route.plan().is_some() {
            // The principal stays on the trail: the backend headers name it.
            let principal = trail.principal.clone().unwrap_or_default();
            return Ok(Mapped::Plan(Box::new(PlanInput {
                request_id: http.id.to_string(),
                principal,
                resource: PlanResource {
                    kind: resource_cfg.kind.clone(),
                    attr: Arc::new(attr),
                    policy_version: resource_cfg.policy_version.clone(),
                    scope: fill_template(&resource_cfg.scope, &hit.params, false),
                },
                actions: trail.action.iter().cloned().collect(),
                aux_data: Default::default(),
                explain: false,
            })));
        }
        let input = CheckInput {
            // Not copied: only the engine's output echoes it, and nothing reads it there
            // (the decision log takes the request id from the request).
            request_id: String::new(),
            principal: trail.principal.take().unwrap_or_default(),
            resource: Resource {
                kind: resource_cfg.kind.clone(),
                id: std::mem::take(&mut trail.resource_id),
                attr: Arc::new(attr),
                policy_version: resource_cfg.policy_version.clone(),
                scope: fill_template(&resource_cfg.scope, &hit.params, false),
            },
            // The trail has it back once decided (`decide_input`).
            actions: trail.action.take().into_iter().collect(),
            aux_data: Default::default(),
        };
        Ok(Mapped::Check(Box::new(input)))
    }

    /// Step 2 on a plan route: the planner's filter for the principal, kind and action.
    /// `KIND_ALWAYS_DENIED` is a 403 (the backend is not asked); any other filter goes to
    /// the backend in the filter header, unless it is larger than `maxFilterBytes`: then
    /// 503, never a shortened filter.
    fn decide_plan(&self, id: &str, input: PlanInput, trail: &mut Trail<'_>) -> Result<(), Denial> {
        let snapshot = self.store.snapshot();
        trail.revision = Some(snapshot.revision.clone());
        let action = input.actions.first().map_or("", String::as_str);
        let output = match snapshot.engine.plan(&input) {
            Ok(output) => output,
            Err(e) => {
                tracing::error!(decision_id = %id, kind = ?input.resource.kind, action = ?action, error = %e, "plan failed: denying");
                if let Some(span) = &mut trail.span {
                    span.set_error(format!("plan failed: {e}"));
                }
                return Err(match e {
                    PlanError::TooLarge { .. } => {
                        Denial::filter_unavailable(format!("plan failed: {e}"))
                    }
                    _ => Denial::forbidden(format!("plan failed: {e}")),
                });
            }
        };
        let header = super::encoding::ascii_json(&output.filter.to_json());
        let denial = if header.len() > self.max_filter {
            tracing::error!(
                decision_id = %id,
                kind = ?input.resource.kind,
                action = ?action,
                principal = ?input.principal.id,
                bytes = header.len(),
                limit = self.max_filter,
                "plan filter larger than extAuthz.maxFilterBytes: answering 503 (a filter is never shortened)"
            );
            Some(Denial::filter_unavailable(format!(
                "plan filter of {} bytes exceeds extAuthz.maxFilterBytes ({})",
                header.len(),
                self.max_filter
            )))
        } else {
            let denied = output.filter.kind == FilterKind::AlwaysDenied;
            // Also on a denial: shadow mode lets it through with the filter that allows
            // nothing.
            trail.filter = Some(header);
            denied.then(|| {
                Denial::forbidden(format!(
                    "{:?} may not {action} any {:?} (KIND_ALWAYS_DENIED)",
                    input.principal.id, input.resource.kind
                ))
            })
        };
        trail.planned = Some(Box::new(Planned { input, output }));
        denial.map_or(Ok(()), Err)
    }

    /// A plan route's decision in the metrics and the decision log, as API plans are
    /// recorded, with the request's outcome (allowed, status, reason).
    #[allow(clippy::too_many_arguments)]
    fn record_planned(
        &self,
        id: &str,
        started: Instant,
        http: Option<&HttpView<'_>>,
        trail: &Trail<'_>,
        result: &Result<(), Denial>,
        shadowed: bool,
        planned: &Planned,
    ) {
        // Label values come from the policy set in force, never from the request.
        let snapshot = self.store.snapshot();
        let revision = trail
            .revision
            .as_deref()
            .map_or_else(|| snapshot.revision.to_string(), str::to_string);
        crate::api::record_plan(
            &self.metrics,
            &self.audit,
            Origin::ExtAuthz,
            crate::api::PlanFacts {
                decision_id: id,
                revision: &revision,
                policies: snapshot.engine.policies(),
                elapsed: started.elapsed(),
            },
            &planned.input,
            &planned.output,
            |r| {
                // As the check's record: the verdict, shadow mode in the reason.
                r.allowed = Some(result.is_ok());
                if let Err(d) = result {
                    r.status = Some(d.status);
                    let reason = d
                        .audit_reason
                        .map_or_else(|| d.reason.clone(), str::to_string);
                    r.reason = Some(if shadowed {
                        format!("shadow mode, allowed: {reason}")
                    } else {
                        reason
                    });
                }
                if let Some(h) = http {
                    r.request_id = Some(h.id)
                        .filter(|i| !i.is_empty())
                        .or_else(|| h.headers.get("x-request-id"))
                        .map(str::to_string);
                }
                r.trace_id = trail
                    .span
                    .as_ref()
                    .map(|s| &s.context)
                    .or(trail.caller.as_ref())
                    .map(TraceContext::trace_id_hex);
            },
        );
    }

    /// Notes what the matched route names for the audit record and the assertion: the
    /// request line, the resource kind and id, the action, the header attributes.
    fn record_route<'s>(
        &self,
        trail: &mut Trail<'s>,
        hit: &RouteMatch<'s, '_>,
        method: &str,
        path: &RequestPath<'_>,
    ) {
        let route = hit.route;
        if self.assertion.is_some() {
            trail.request_line = Some((method.to_owned(), path.path.to_string()));
        }
        if let Some(r) = &route.resource {
            trail.kind = &r.kind;
            trail.resource_id = fill_template(&r.id, &hit.params, false);
        }
        trail.action = route.action_for(method);
        trail.header_attrs = Some(&route.attributes.headers);
    }

    /// The principal: from the first source that knows it, else the anonymous principal
    /// when admitted; invalid or missing credentials are a 401.
    async fn principal(
        &self,
        attrs: &AttrsView<'_>,
        http: &HttpView<'_>,
    ) -> Result<Arc<MappedPrincipal>, Denial> {
        let facts = RequestFacts {
            headers: &http.headers,
            filter_metadata: attrs.metadata_context.get().map(|m| &m.filter_metadata),
            peer_principal: attrs.peer_principal,
        };
        match resolve(&self.sources, &facts, &self.claims).await {
            Identity::Known(p, _) => Ok(p),
            Identity::Invalid(reason) => Err(Denial {
                status: 401,
                reason: format!("invalid credentials: {reason}"),
                policy: None,
                authenticate: Some("Bearer realm=\"gatehouse\", error=\"invalid_token\""),
                audit_reason: Some("invalid credentials"),
                always_enforced: false,
            }),
            Identity::Missing => match &self.anonymous {
                Some(a) => Ok(MappedPrincipal::new(Principal {
                    id: a.id.clone(),
                    roles: a.roles.iter().map(|r| Arc::from(r.as_str())).collect(),
                    ..Default::default()
                })),
                None => Err(Denial {
                    status: 401,
                    reason: "authentication required".into(),
                    policy: None,
                    authenticate: Some("Bearer realm=\"gatehouse\""),
                    audit_reason: None,
                    always_enforced: false,
                }),
            },
        }
    }

    /// Adds the JSON body's named fields; a partial, oversized or non-object body is
    /// refused before any field is read.
    fn body_attributes(
        &self,
        a: &AttributesConfig,
        http: &HttpView<'_>,
        attr: &mut MapValue,
    ) -> Result<(), Denial> {
        if a.body.is_empty() {
            return Ok(());
        }
        if http
            .headers
            .get("x-envoy-auth-partial-body")
            .is_some_and(|v| v == "true")
        {
            return Err(Denial::status(413, "request body too large to authorize"));
        }
        let raw: &[u8] = if http.raw_body.is_empty() {
            http.body.as_bytes()
        } else {
            http.raw_body
        };
        if raw.len() > self.max_body {
            return Err(Denial::status(413, "request body too large to authorize"));
        }
        if !raw.is_empty() {
            let json: serde_json::Value = serde_json::from_slice(raw)
                .map_err(|_| Denial::status(400, "request body is not JSON"))?;
            let serde_json::Value::Object(obj) = &json else {
                return Err(Denial::status(400, "request body is not a JSON object"));
            };
            for field in &a.body {
                if let Some(v) = obj.get(field) {
                    attr.insert(Self::attr_key(field), from_json(v));
                }
            }
        }
        Ok(())
    }

    /// Adds the attributes the route's HTTP source answers (traced, counted, cached);
    /// a failing source denies, or answers 404 when the route opted in.
    async fn fetch_attributes(
        &self,
        fetch: &FetchConfig,
        hit: &RouteMatch<'_, '_>,
        trail: &Trail<'_>,
        attr: &mut MapValue,
    ) -> Result<(), Denial> {
        let url = fill_template(&fetch.url, &hit.params, true);
        let mut span = trail
            .span
            .as_ref()
            .map(|s| s.child("attributes.fetch", SpanKind::Client));
        // The trace goes on to the attribute source: under the fetch span when the
        // trace is recorded, else as the caller sent it (sampled or not).
        let context = span.as_ref().map(|s| &s.context).or(trail.caller.as_ref());
        let (fetched, provenance) = self
            .fetcher
            .fetch_with_provenance(
                &url,
                Duration::from_millis(fetch.timeout_ms),
                Duration::from_millis(fetch.cache_ttl_ms),
                context,
            )
            .await;
        if let Some(mut span) = span.take() {
            span.set("http.request.method", "GET");
            span.set("url.full", crate::telemetry::redact_url(&url));
            span.set(
                "gatehouse.attributes.cached",
                matches!(provenance, Provenance::Shared) && fetched.is_ok(),
            );
            if let Err(e) = &fetched {
                span.set_error(e.to_string());
            }
            self.tracer.end(span);
        }
        self.metrics
            .count_attribute_fetch(match (&fetched, provenance) {
                (Err(_), _) => AttributeFetch::Error,
                (Ok(_), Provenance::Fetched) => AttributeFetch::Ok,
                (Ok(_), _) => AttributeFetch::CacheHit,
            });
        let fetched = fetched.map_err(|e| {
            if fetch.answer_not_found && e == super::attributes::FetchError::Status(404) {
                // The route opted in: the record does not exist, and says so.
                return Denial::status(
                    404,
                    "resource not found (the attribute source answered HTTP 404)",
                );
            }
            tracing::warn!(url = %url, error = %e, "attribute source failed: denying");
            Denial::forbidden(format!("resource attributes unavailable: {e}"))
        })?;
        for (k, v) in fetched.iter() {
            attr.insert(k.clone(), v.clone());
        }
        Ok(())
    }

    /// Step 2: the engine's decision on the mapped question, on one policy snapshot.
    fn decide_input(&self, input: CheckInput, trail: &mut Trail<'_>) -> Result<(), Denial> {
        let snapshot = self.store.snapshot();
        trail.revision = Some(snapshot.revision.clone());
        let checked = snapshot.engine.check(&input);
        let action = input.actions.first().map_or("", String::as_str);
        if let Some(candidate) = &self.candidate {
            let live_allowed = checked.as_ref().is_ok_and(|o| o.is_allowed(action));
            trail.comparison = Some(Comparison {
                live_allowed,
                candidate: super::shadow::decide(candidate, &input, action),
            });
        }
        let out = checked.map_err(|e| {
            tracing::error!(error = %e, "engine error: denying");
            if let Some(span) = &mut trail.span {
                span.set_error(format!("policy evaluation failed: {e}"));
            }
            Denial::forbidden(format!("policy evaluation failed: {e}"))
        });
        let denial = match &out {
            Err(_) => None,
            Ok(out) => match out.effect(action) {
                Some(e) if e.effect == Effect::Allow => None,
                Some(e) => Some(Denial {
                    status: 403,
                    reason: format!(
                        "{} may not {action} {} {:?}",
                        input.principal.id, input.resource.kind, input.resource.id
                    ),
                    policy: Some(e.policy.clone()),
                    authenticate: None,
                    audit_reason: None,
                    always_enforced: false,
                }),
                None => Some(Denial::forbidden("no decision")),
            },
        };
        let CheckInput {
            principal,
            resource,
            mut actions,
            ..
        } = input;
        trail.action = actions.pop();
        trail.principal = Some(principal);
        trail.resource = Some(resource);
        trail.output = Some(out?);
        denial.map_or(Ok(()), Err)
    }
}

/// A denial's JSON body, written as serde_json writes `{"detail": .., "decision_id": ..}`
/// (FastAPI's shape) or the RFC 9457 problem `{"type", "title", "status", "detail",
/// "decision_id"}`, keys in that order.
fn deny_body(format: DenyBody, title: &str, status: u16, detail: &str, id: &str) -> String {
    use std::fmt::Write as _;
    let mut body = String::with_capacity(96 + title.len() + detail.len() + id.len());
    body.push('{');
    if format == DenyBody::Problem {
        body.push_str("\"type\":\"about:blank\",\"title\":");
        push_json_str(&mut body, title);
        body.push_str(",\"status\":");
        // Writing to a String cannot fail.
        let _ = write!(body, "{status},");
    }
    body.push_str("\"detail\":");
    push_json_str(&mut body, detail);
    body.push_str(",\"decision_id\":");
    push_json_str(&mut body, id);
    body.push('}');
    body
}

/// `s` as a JSON string, escaped as serde_json escapes it (copied whole when nothing
/// needs escaping).
fn push_json_str(out: &mut String, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        out.push_str(&serde_json::Value::from(s).to_string());
    }
}

/// The attributes and the HTTP request of a CheckRequest; without them it is a 400.
fn request_parts<'r, 'a>(
    req: &'r CheckView<'a>,
) -> Result<(&'r AttrsView<'a>, &'r HttpView<'a>), Denial> {
    let attrs = req
        .attributes
        .as_ref()
        .ok_or_else(|| Denial::status(400, "check request without attributes"))?;
    let http = attrs
        .http
        .as_ref()
        .ok_or_else(|| Denial::status(400, "check request without an HTTP request"))?;
    Ok((attrs, http))
}

/// The resource attributes read from the request itself: path parameters, query
/// parameters, headers, context extensions and route metadata, as the route names them.
fn request_attributes(
    a: &AttributesConfig,
    attrs: &AttrsView<'_>,
    http: &HttpView<'_>,
    hit: &RouteMatch<'_, '_>,
    path: &RequestPath<'_>,
) -> MapValue {
    let mut attr = MapValue::with_capacity(
        usize::from(a.path_params) * hit.params.len()
            + a.query.len()
            + hit.route.header_attrs.len()
            + a.context_extensions.len(),
    );
    if a.path_params {
        for (k, v) in &hit.params {
            attr.insert(ExtAuthz::attr_key(k), Value::from(*v));
        }
    }
    if !a.query.is_empty() {
        let q = query_params(path.query);
        for (name, param) in &a.query {
            if let Some((_, v)) = q.iter().find(|(k, _)| k == param) {
                attr.insert(ExtAuthz::attr_key(name), Value::from(v.as_str()));
            }
        }
    }
    // The route's header attributes come in key order, each key once (a `BTreeMap`'s):
    // into a map that has nothing else yet, each goes at the end (no search for its place).
    let in_order = attr.is_empty();
    for (key, header) in &hit.route.header_attrs {
        if let Some(v) = http.headers.get(header) {
            if in_order {
                attr.push_sorted(key.clone(), Value::from(v));
            } else {
                attr.insert(key.clone(), Value::from(v));
            }
        }
    }
    for key in &a.context_extensions {
        if let Some(v) = attrs.context_extensions.get(key) {
            attr.insert(ExtAuthz::attr_key(key), Value::from(v));
        }
    }
    if !a.route_metadata.is_empty()
        && let Some(md) = attrs.route_metadata_context.get()
    {
        let mut namespaces: Vec<&String> = md.filter_metadata.keys().collect();
        namespaces.sort();
        for ns in namespaces {
            let fields = &md.filter_metadata[ns].fields;
            for key in &a.route_metadata {
                if let Some(v) = fields.get(key) {
                    attr.insert(
                        ExtAuthz::attr_key(key),
                        from_json(&super::principal::pb_value_to_json(v)),
                    );
                }
            }
        }
    }
    attr
}

/// Attributes as a JSON object for the audit log, without the names in `skip`.
fn attrs_json<S: AsRef<str>>(m: &MapValue, skip: &[S]) -> serde_json::Value {
    serde_json::Value::Object(
        m.iter()
            .map(|(k, v)| (k.to_string(), v))
            .filter(|(k, _)| !skip.iter().any(|s| s.as_ref() == k))
            .map(|(k, v)| (k, to_json(v)))
            .collect(),
    )
}

/// The audit record of the decision's resource: the engine's per-action answers (or the
/// request's action with its outcome), attributes (never those from headers) only when
/// the sink wants them. The trail's resource and answers move into it.
fn resource_record(
    trail: &mut Trail<'_>,
    result: &Result<(), Denial>,
    with_attrs: bool,
) -> ResourceRecord {
    let actions = match trail.output.take() {
        Some(out) => out
            .actions
            .into_iter()
            .map(|a| {
                let allowed = a.effect == Effect::Allow;
                ActionRecord::decided(a.action, allowed, a.policy, a.scope, a.rule.as_ref())
            })
            .collect(),
        None => trail
            .action
            .iter()
            .map(|a| ActionRecord {
                action: a.clone(),
                allowed: result.is_ok(),
                ..Default::default()
            })
            .collect(),
    };
    let Some(res) = trail.resource.take() else {
        return ResourceRecord {
            kind: trail.kind.to_string(),
            id: trail.resource_id.clone(),
            actions,
            ..Default::default()
        };
    };
    let attr = with_attrs.then(|| {
        let attr = res.attr;
        let skip: Vec<Box<str>> = trail
            .header_attrs
            .iter()
            .flat_map(|h| h.keys())
            .map(|a| a.as_str().into())
            .collect();
        Attributes::new(move || attrs_json(&attr, &skip))
    });
    // The engine's resource: its kind is the route's (`trail.kind`).
    ResourceRecord {
        kind: res.kind,
        id: res.id,
        policy_version: res.policy_version,
        scope: res.scope,
        attr,
        actions,
    }
}

/// The decision's outcome on its span: who asked for what, the verdict and why.
fn span_attributes(
    span: &mut TraceSpan,
    id: &str,
    method: Option<&str>,
    trail: &Trail<'_>,
    result: &Result<(), Denial>,
) {
    span.set("rpc.system", "grpc");
    span.set("rpc.service", "envoy.service.auth.v3.Authorization");
    span.set("rpc.method", "Check");
    span.set("gatehouse.decision_id", id);
    if let Some(m) = method {
        span.set("http.request.method", m);
    }
    if !trail.kind.is_empty() {
        span.set("gatehouse.resource.kind", trail.kind);
    }
    if let Some(r) = &trail.resource {
        span.set("gatehouse.resource.id", r.id.as_str());
    }
    if let Some(a) = &trail.action {
        span.set("gatehouse.action", a.as_str());
    }
    if let Some(p) = &trail.principal {
        span.set("gatehouse.principal.id", p.id.as_str());
        span.set(
            "gatehouse.principal.roles",
            p.roles.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
        );
    }
    if let Some(rev) = &trail.revision {
        span.set("gatehouse.policy.revision", rev.to_string());
    }
    span.set("gatehouse.allowed", result.is_ok());
    if let Err(d) = result {
        span.set("http.response.status_code", i64::from(d.status));
        span.set("gatehouse.deny.reason", d.reason.as_str());
        if let Some(p) = &d.policy {
            span.set("gatehouse.deny.policy", p.as_str());
        }
    }
}

impl ExtAuthz {
    /// One gRPC Check: the decision, continuing the trace of Envoy's call. Not boxed
    /// (unlike a trait method), so the live service awaits it in its own future.
    pub(crate) async fn check_request(&self, request: Request<CheckRequest>) -> CheckResponse {
        self.answer_request(&request).await.into_check_response()
    }

    /// One gRPC Check's answer (encoded for Envoy by the gRPC service's codec), continuing
    /// the trace of Envoy's call.
    pub(crate) async fn answer_request(&self, request: &Request<CheckRequest>) -> Answer {
        let meta = request.metadata();
        let caller = TraceContext::from_headers(|k| meta.get(k)?.to_str().ok());
        self.authorize(&CheckView::from_message(request.get_ref()), caller)
            .await
    }
}

/// The tonic service.
#[tonic::async_trait]
impl Authorization for ExtAuthz {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        Ok(Response::new(self.check_request(request).await))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 15: header attributes appended in key order make the map a search finds
    /// every one of them in (more than the 8 entries a map scans), alone or among path
    /// parameters (inserted in their place then).
    #[test]
    fn header_attributes_are_found_in_the_map() {
        let names: Vec<String> = (0..12).map(|i| format!("h{:02}", 11 - i)).collect();
        let headers: serde_json::Map<String, serde_json::Value> = names
            .iter()
            .map(|n| (n.clone(), serde_json::Value::from(format!("x-{n}"))))
            .collect();
        for path_params in [false, true] {
            let route: super::super::config::RouteConfig =
                serde_json::from_value(serde_json::json!({
                    "path": "/documents/{id}",
                    "resource": {"kind": "document", "id": "{id}"},
                    "attributes": {"headers": headers, "pathParams": path_params},
                }))
                .unwrap();
            let routes = RouteMapper::new(&[route]).unwrap();
            let path = normalize("/documents/from-path").unwrap();
            let hit = routes.find(&path.path, "GET").unwrap();
            let mut http = HttpView::default();
            for n in &names {
                http.headers.push(
                    Box::leak(format!("x-{n}").into_boxed_str()),
                    Box::leak(format!("value-{n}").into_boxed_str()),
                );
            }
            let attrs = AttrsView::default();
            let attr = request_attributes(&hit.route.attributes, &attrs, &http, &hit, &path);
            assert_eq!(attr.len(), 12 + usize::from(path_params));
            for n in &names {
                let found = attr.get_str(n).map(to_json);
                assert_eq!(found, Some(serde_json::json!(format!("value-{n}"))), "{n}");
            }
            let id = attr.get_str("id").map(to_json);
            assert_eq!(id, path_params.then(|| serde_json::json!("from-path")));
            let keys: Vec<String> = attr.iter().map(|(k, _)| k.to_string()).collect();
            assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
        }
    }

    /// Issue 15: a decision id's time is the decision's start on the wall clock, taken
    /// from the instant that times the decision (no clock read of its own).
    #[test]
    fn issue_15_a_decision_id_carries_the_decision_start_time() {
        let millis = |id: &Text| u64::from_str_radix(&id[..12], 16).unwrap();
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        // The first id reads the wall clock once; the instants after it are exact.
        decision_id(Instant::now());
        let now = Instant::now();
        let id = decision_id(now);
        assert!(millis(&id).abs_diff(wall) < 1000, "{id} vs {wall}");
        let later = decision_id(now + Duration::from_secs(5));
        assert_eq!(millis(&later) - millis(&id), 5000);
    }

    #[test]
    fn decision_ids_are_28_hex_digits_and_unique() {
        for v in [0, 1, 0xabc, u64::MAX, 0x0123_4567_89ab_cdef] {
            let mut s = [0u8; 16];
            put_hex(&mut s, v);
            assert_eq!(s, format!("{v:016x}").as_bytes());
        }
        let mut s = [0u8; 12];
        put_hex(&mut s, 0x0193_a5b6_c7d8);
        assert_eq!(&s, b"0193a5b6c7d8");
        put_hex(&mut s, 0xab_0193_a5b6_c7d8);
        assert_eq!(&s, b"0193a5b6c7d8", "the last 12 digits");
        let mut s = [0u8; 20];
        put_hex(&mut s, u64::MAX);
        assert_eq!(&s, b"0000ffffffffffffffff", "zeros before the 16 digits");
        let now = Instant::now();
        let ids: std::collections::HashSet<Text> = (0..1000).map(|_| decision_id(now)).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|id| {
            id.len() == 28
                && id
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        }));
        assert_eq!(header_name("x-gatehouse-", "roles"), "x-gatehouse-roles");
    }

    /// An audit writer into shared memory.
    #[derive(Clone, Default)]
    struct Lines(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Issue 15: the audit record costs the request thread at most 2 allocations (the
    /// record's resource list and request id; the decision id is the answer's shared
    /// text, not copied: 3 with a copy): the principal, resource and the engine's answers
    /// move into it instead of being copied (9 allocations before).
    /// The line still names them all.
    #[test]
    fn issue_15_the_audit_record_allocates_little_on_the_request_thread() {
        use crate::engine::check::allocations;
        const BUDGET: usize = 2;
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let (config, store) = crate::extauthz::documents_route_on_demo_policies();
        let lines = Lines::default();
        let audit = AuditSink::to_writer(
            &serde_json::from_value(serde_json::json!({"mode": "all"})).unwrap(),
            Metrics::default(),
            lines.clone(),
        )
        .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let build = |audit: &AuditSink| {
            let sinks =
                crate::telemetry::Sinks::new(Metrics::default(), audit.clone(), Tracer::disabled());
            rt.block_on(crate::extauthz::build_with_sinks(
                &config,
                store.clone(),
                root,
                sinks,
            ))
            .unwrap()
        };
        let (quiet, audited) = (build(&AuditSink::disabled()), build(&audit));
        let headers = [
            ("x-request-id", "req-1"),
            ("x-dev-user", "alice"),
            ("x-dev-roles", "user"),
            ("x-doc-owner", "alice"),
            ("x-doc-department", "engineering"),
            ("x-doc-status", "draft"),
        ];
        let req = crate::extauthz::pb::v3::CheckRequest {
            attributes: Some(crate::extauthz::pb::envoy::service::auth::v3::AttributeContext {
                request: Some(crate::extauthz::pb::envoy::service::auth::v3::attribute_context::Request {
                    http: Some(crate::extauthz::pb::envoy::service::auth::v3::attribute_context::HttpRequest {
                        method: "GET".into(),
                        path: "/documents/1".into(),
                        headers: headers
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        };
        let allocations_of = |ext: &ExtAuthz| {
            // Warm up twice, letting the writer swap its batch both times, so that the
            // queue holds a buffer with room.
            for _ in 0..2 {
                rt.block_on(ext.decide(&req));
                assert!(audit.flush());
            }
            let before = allocations::count();
            rt.block_on(ext.decide(&req));
            allocations::count() - before
        };
        let added = allocations_of(&audited).saturating_sub(allocations_of(&quiet));
        assert!(
            added <= BUDGET,
            "the audit record adds {added} allocations (budget {BUDGET})"
        );
        assert!(audit.flush());
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert_eq!(last["principal"]["id"], "alice");
        assert_eq!(last["principal"]["roles"], serde_json::json!(["user"]));
        assert_eq!(last["requestId"], "req-1");
        let resource = &last["resources"][0];
        assert_eq!(
            (&resource["kind"], &resource["id"]),
            (&"document".into(), &"1".into())
        );
        let action = &resource["actions"][0];
        assert_eq!(action["action"], "read");
        assert_eq!(action["effect"], "allow");
        assert_eq!(action["scope"], "");
        assert!(
            action["policy"]
                .as_str()
                .is_some_and(|p| p.starts_with("resource.document.v")),
            "{action}"
        );
    }

    /// Issue 15: the derived-roles header is the names joined by commas, however many
    /// and however long (past the stack buffer too).
    #[test]
    fn issue_15_joined_names_are_joined_by_commas() {
        let long = "r".repeat(200);
        let cases: [&[&str]; 5] = [
            &[],
            &["owner"],
            &["owner", "approver"],
            &["a", "", "c"],
            &[&long, &long, "x"],
        ];
        for names in cases {
            let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            assert_eq!(&*joined(&names), names.join(","));
        }
    }

    /// Issue 15: denial bodies are written directly, with the bytes serde_json gives.
    #[test]
    fn issue_15_deny_bodies_are_what_serde_json_writes() {
        let texts = [
            "",
            "forbidden",
            "bob may not read document \"1\"",
            "back\\slash, tab\t, newline\n, nul\0, unit \u{1f} del \u{7f}",
            "zoë </script> \u{2028} 🦀",
        ];
        for detail in texts {
            for id in ["0193a5b6c7d8aabbccddeeff0011", "x\"y"] {
                for (title, status) in [("Forbidden", 403u16), ("Unauthorized", 401), ("t\"", 503)]
                {
                    assert_eq!(
                        deny_body(DenyBody::Fastapi, title, status, detail, id),
                        serde_json::json!({"detail": detail, "decision_id": id}).to_string()
                    );
                    assert_eq!(
                        deny_body(DenyBody::Problem, title, status, detail, id),
                        serde_json::json!({"type": "about:blank", "title": title, "status": status, "detail": detail, "decision_id": id}).to_string()
                    );
                }
            }
        }
    }
}
