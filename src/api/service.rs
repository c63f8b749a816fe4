//! The CheckResources and ServerInfo logic shared by the gRPC and HTTP adapters: validate,
//! apply the request limits, verify auxiliary tokens, decide every resource on one engine
//! snapshot, and assemble Cerbos's response.

use std::sync::Arc;

use super::answer::CheckAnswer;
use super::call_id::new_call_id;
use super::error::ApiError;
use super::limits::check_limits;
use super::pb::cerbos::request::v1::{AuxData, aux_data};
use super::pb::cerbos::response::v1::{CheckResourcesResponse, ServerInfoResponse};
use super::request::CheckRequest;
use super::settings::ApiSettings;
use super::validate::validate_check_resources;
use crate::cel::{Key, MapValue, Value, from_json};
use crate::engine::{self, CheckInput, CheckOutput};
use crate::jwt::{Claims, decode_unverified, to_cerbos_claims};
use crate::policy::compiled::Effect;
use crate::store::PolicyStore;
use crate::telemetry::{SpanKind, TraceContext};

/// What the decision log and metrics record about a call besides its decisions.
struct CallFacts<'a> {
    call_id: &'a str,
    request_id: &'a str,
    /// Revision of the policy snapshot that decided.
    revision: &'a Arc<str>,
    /// The policy set that decided (metric labels come from it).
    policies: &'a crate::policy::compiled::CompiledPolicySet,
    trace_id: Option<String>,
    elapsed: std::time::Duration,
}

/// The Cerbos API over a policy store: implements `cerbos.svc.v1.CerbosService` and backs
/// the HTTP routes. Cheap to clone.
#[derive(Clone, Debug)]
pub struct CerbosApi {
    pub(super) store: Arc<PolicyStore>,
    settings: Arc<ApiSettings>,
}

impl CerbosApi {
    /// The API over `store`, which is read once per request.
    pub fn new(store: Arc<PolicyStore>, settings: ApiSettings) -> Self {
        CerbosApi {
            store,
            settings: Arc::new(settings),
        }
    }

    /// The settings in use.
    pub(crate) fn settings(&self) -> &ApiSettings {
        &self.settings
    }

    /// `ServerInfo`.
    pub(crate) fn server_info(&self) -> ServerInfoResponse {
        let info = &self.settings.server_info;
        ServerInfoResponse {
            version: info.version.clone(),
            commit: info.commit.clone(),
            build_date: info.build_date.clone(),
        }
    }

    /// `CheckResources`: the count limits (resources, actions, roles, attribute values,
    /// tokens), Cerbos's request rules, auxiliary data, then one decision per resource
    /// entry.
    pub async fn check_resources(
        &self,
        req: CheckRequest,
    ) -> Result<CheckResourcesResponse, ApiError> {
        self.check_resources_traced(req, None)
            .await
            .map(CheckAnswer::into_pb)
    }

    /// [`check_resources`](Self::check_resources) continuing the caller's trace
    /// (`traceparent` from gRPC metadata or HTTP headers): the call is one server span,
    /// and the decision log names the trace.
    pub(crate) async fn check_resources_traced(
        &self,
        req: CheckRequest,
        caller: Option<TraceContext>,
    ) -> Result<CheckAnswer, ApiError> {
        let tracer = &self.settings.tracer;
        let span = tracer.start_span(
            "cerbos.svc.v1.CerbosService/CheckResources",
            SpanKind::Server,
            caller.as_ref(),
        );
        let trace_id = match &span {
            Some(s) => Some(s.context.trace_id_hex()),
            None => caller.as_ref().map(TraceContext::trace_id_hex),
        };
        let Some(mut span) = span else {
            return self.decide(req, trace_id).await;
        };
        span.set("rpc.system", "grpc");
        span.set("rpc.service", "cerbos.svc.v1.CerbosService");
        span.set("rpc.method", "CheckResources");
        span.set("gatehouse.request_id", req.request_id.as_str());
        if let Some(p) = &req.principal {
            span.set("gatehouse.principal.id", p.id.as_str());
            span.set(
                "gatehouse.principal.roles",
                p.roles.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
            );
        }
        span.set("gatehouse.resources", req.resources.len() as i64);
        let result = self.decide(req, trace_id).await;
        match &result {
            Ok(resp) => {
                span.set("gatehouse.call_id", resp.call_id.as_str());
                let effects = resp.effects();
                let allowed = effects.clone().filter(|e| *e == Effect::Allow).count();
                span.set("gatehouse.actions.allowed", allowed as i64);
                span.set(
                    "gatehouse.actions.denied",
                    (effects.count() - allowed) as i64,
                );
            }
            Err(e) => {
                span.set("rpc.grpc.status_code", e.code() as i64);
                span.set_error(e.message().to_string());
            }
        }
        tracer.end(span);
        result
    }

    async fn decide(
        &self,
        req: CheckRequest,
        trace_id: Option<String>,
    ) -> Result<CheckAnswer, ApiError> {
        let started = std::time::Instant::now();
        // Counts first: nothing below runs per item before the request is known to be small.
        check_limits(&req, &self.settings)?;
        validate_check_resources(&req)?;
        let aux_data = self
            .verify_aux_data(req.aux_data.as_ref())
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "failed to extract auxData");
                ApiError::invalid_argument("invalid auxData")
            })?;

        let snapshot = self.store.snapshot();
        let engine = &snapshot.engine;
        let CheckRequest {
            request_id,
            include_meta,
            principal,
            resources,
            ..
        } = req;
        let mut principal = Some(principal.unwrap_or_default());
        let mut aux_data = Some(aux_data);
        // Each resource moves into the engine's input and out again into the answer; the
        // first input's principal is kept for the decision log.
        let mut results: Vec<(engine::Resource, CheckOutput)> = Vec::with_capacity(resources.len());
        let mut first_principal = None;
        // The request's strings move into the engine's input rather than being copied; the
        // principal and auxiliary data are copied for every entry but the last.
        let last = resources.len().saturating_sub(1);
        for (i, entry) in resources.into_iter().enumerate() {
            let input = CheckInput {
                // The answer carries the call's request id; the engine's echo of it in
                // each output is not read here, so it is not copied for it.
                request_id: String::new(),
                principal: take_last(&mut principal, i == last),
                resource: entry.resource.unwrap_or_default(),
                actions: entry.actions,
                aux_data: take_last(&mut aux_data, i == last),
            };
            let output = engine.check(&input).map_err(|e| {
                tracing::error!(error = %e, "policy check failed");
                ApiError::new(tonic::Code::Internal, "Policy check failed")
            })?;
            let CheckInput {
                principal: p,
                resource,
                ..
            } = input;
            if i == 0 {
                first_principal = Some(p);
            }
            results.push((resource, output));
        }
        let call_id = new_call_id();
        let principal = first_principal.or(principal).unwrap_or_default();
        self.record(
            CallFacts {
                call_id: &call_id,
                request_id: &request_id,
                revision: &snapshot.revision,
                policies: engine.policies(),
                trace_id,
                elapsed: started.elapsed(),
            },
            &principal,
            &results,
        );
        Ok(CheckAnswer {
            request_id,
            call_id,
            include_meta,
            results,
        })
    }

    /// Counts the decisions and writes one decision-log line for the call.
    fn record(
        &self,
        call: CallFacts<'_>,
        principal: &crate::engine::Principal,
        decided: &[(engine::Resource, CheckOutput)],
    ) {
        let CallFacts {
            call_id,
            request_id,
            revision,
            policies,
            trace_id,
            elapsed,
        } = call;
        use super::plan::map_attributes;
        use crate::audit::{ActionRecord, DecisionRecord, PrincipalRecord, ResourceRecord};
        use crate::metrics::{ActionOutcome, Origin};
        use crate::policy::compiled::Effect;
        self.settings.metrics.observe_check(
            Origin::Api,
            elapsed,
            decided.iter().flat_map(|(resource, out)| {
                out.actions.iter().map(move |a| {
                    let (kind, action) = policies.metric_labels(&resource.kind, &a.action);
                    ActionOutcome {
                        kind,
                        action,
                        allowed: a.effect == Effect::Allow,
                    }
                })
            }),
        );
        let audit = &self.settings.audit;
        audit.record_with(|| {
            let with_attr = audit.wants_attributes();
            let mut r = DecisionRecord::new(Origin::Api, &*call_id);
            r.principal = Some(PrincipalRecord {
                id: principal.id.clone(),
                roles: principal.roles.clone(),
                attr: with_attr.then(|| map_attributes(&principal.attr)),
            });
            r.resources = decided
                .iter()
                .map(|(resource, out)| ResourceRecord {
                    kind: resource.kind.clone(),
                    id: resource.id.clone(),
                    policy_version: resource.policy_version.clone(),
                    scope: resource.scope.clone(),
                    attr: with_attr.then(|| map_attributes(&resource.attr)),
                    actions: out
                        .actions
                        .iter()
                        .map(|a| {
                            ActionRecord::decided(
                                &a.action,
                                a.effect == Effect::Allow,
                                &a.policy,
                                &a.scope,
                                a.rule.as_ref(),
                            )
                        })
                        .collect(),
                })
                .collect();
            r.policy_revision = Some(revision.clone());
            r.trace_id = trace_id;
            r.request_id = (!request_id.is_empty()).then(|| request_id.to_string());
            r
        });
    }

    /// Verifies the request's tokens: `auxData.jwt` becomes `request.aux_data.jwt`, and
    /// each token of `auxData.jwts` becomes `request.aux_data.jwts[name].claims`.
    pub(super) async fn verify_aux_data(
        &self,
        aux: Option<&AuxData>,
    ) -> Result<engine::AuxData, String> {
        let mut out = engine::AuxData::default();
        let Some(aux) = aux else { return Ok(out) };
        if let Some(jwt) = &aux.jwt {
            out.jwt = self.claims(jwt).await?;
        }
        if !aux.jwts.is_empty() {
            let claims_key = Key::String(Arc::from("claims"));
            let mut jwts = MapValue::with_capacity(aux.jwts.len());
            for (name, jwt) in &aux.jwts {
                let mut entry = MapValue::with_capacity(1);
                entry.insert(claims_key.clone(), self.claims(jwt).await?);
                jwts.insert(Key::String(Arc::from(name.as_str())), Value::map(entry));
            }
            out.jwts = Value::map(jwts);
        }
        Ok(out)
    }

    /// The claims of one token, shaped as policies see them.
    async fn claims(&self, jwt: &aux_data::Jwt) -> Result<Value, String> {
        let key_set = Some(jwt.key_set_id.as_str()).filter(|k| !k.is_empty());
        let claims: Claims = match (&self.settings.jwt, self.settings.disable_jwt_verification) {
            (Some(v), false) => v.verify(&jwt.token, key_set).await,
            (Some(v), true) => v.validate_unverified(&jwt.token),
            (None, true) => decode_unverified(&jwt.token),
            (None, false) => return Err("no JWT key sets are configured".into()),
        }
        .map_err(|e| e.to_string())?;
        Ok(from_json(&serde_json::Value::Object(to_cerbos_claims(
            claims,
        ))))
    }
}

/// What `slot` holds, moved out when `last`, else copied.
fn take_last<T: Clone + Default>(slot: &mut Option<T>, last: bool) -> T {
    let value = if last { slot.take() } else { slot.clone() };
    value.unwrap_or_default()
}
