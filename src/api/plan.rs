//! `PlanResources` (gRPC `cerbos.svc.v1.CerbosService/PlanResources`, HTTP
//! `POST /api/plan/resources`): Cerbos's request rules, the tokens of `auxData`, one
//! plan on one policy snapshot, and Cerbos's response (with `meta` on `includeMeta`:
//! `filterDebug`, and `matchedScope` for the single `action` or `matchedScopes` for
//! `actions`).

use std::sync::Arc;

use prost_types::value::Kind;
use serde_json::{Map, Value as Json};

use super::answer::validation_errors_pb;
use super::call_id::new_call_id;
use super::error::ApiError;
use super::limits::check_plan_limits;
use super::pb::cerbos::engine::v1 as pb_engine;
use super::pb::cerbos::request::v1::PlanResourcesRequest;
use super::pb::cerbos::response::v1::{PlanResourcesResponse, plan_resources_response};
use super::protojson::{json_to_value, validation_error_json, value_to_json};
use super::request::{cel_map, principal_input};
use super::service::CerbosApi;
use super::validate::validate_plan_resources;
use crate::metrics::{Origin, PlanOutcome};
use crate::planner::{Filter, FilterKind, Operand, PlanInput, PlanOutput, PlanResource};

use pb_engine::plan_resources_filter::expression::{Operand as PbOperand, operand::Node};

impl CerbosApi {
    /// `PlanResources`: which resources of a kind the principal may act on.
    pub(crate) async fn plan_resources(
        &self,
        req: PlanResourcesRequest,
    ) -> Result<PlanResourcesResponse, ApiError> {
        let started = std::time::Instant::now();
        check_plan_limits(&req, self.settings())?;
        validate_plan_resources(&req)?;
        let aux_data = self
            .verify_aux_data(req.aux_data.as_ref())
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "failed to extract auxData");
                ApiError::invalid_argument("invalid auxData")
            })?;
        let one_action = (!req.action.is_empty()).then(|| req.action.clone());
        let actions = match &one_action {
            Some(a) => vec![a.clone()],
            None => req.actions.clone(),
        };
        let resource = req.resource.clone().unwrap_or_default();
        let input = plan_input(&req, &resource, actions.clone(), aux_data);
        let snapshot = self.store.snapshot();
        let output = snapshot.engine.plan(&input).map_err(|e| {
            tracing::error!(error = %e, "resources query plan request failed");
            ApiError::new(tonic::Code::Internal, "Resources query plan request failed")
        })?;
        let call_id = new_call_id();
        let elapsed = started.elapsed();
        tracing::debug!(
            elapsed_us = elapsed.as_micros() as u64,
            kind = %input.resource.kind,
            "planned"
        );
        self.record_plan(
            &call_id,
            &snapshot.revision,
            snapshot.engine.policies(),
            elapsed,
            &input,
            &output,
        );
        let meta = req
            .include_meta
            .then(|| plan_meta(one_action.as_ref(), &output));
        Ok(PlanResourcesResponse {
            request_id: req.request_id,
            action: one_action.clone().unwrap_or_default(),
            actions: if one_action.is_none() {
                actions
            } else {
                Vec::new()
            },
            resource_kind: resource.kind,
            policy_version: resource.policy_version,
            filter: Some(filter_pb(&output.filter)),
            meta,
            validation_errors: validation_errors_pb(&output.validation_errors),
            cerbos_call_id: call_id,
        })
    }

    /// Counts the plan and writes one decision-log line for the call.
    fn record_plan(
        &self,
        call_id: &str,
        revision: &str,
        policies: &crate::policy::compiled::CompiledPolicySet,
        elapsed: std::time::Duration,
        input: &PlanInput,
        output: &PlanOutput,
    ) {
        let settings = self.settings();
        record_plan(
            &settings.metrics,
            &settings.audit,
            Origin::Api,
            PlanFacts {
                decision_id: call_id,
                revision,
                policies,
                elapsed,
            },
            input,
            output,
            |_| {},
        );
    }
}

/// The planner's input for the request: its principal, the resource (kind, attributes,
/// policy version and scope), the actions and the verified `auxData`.
fn plan_input(
    req: &PlanResourcesRequest,
    resource: &pb_engine::plan_resources_input::Resource,
    actions: Vec<String>,
    aux_data: crate::engine::AuxData,
) -> PlanInput {
    PlanInput {
        request_id: req.request_id.clone(),
        principal: req
            .principal
            .as_ref()
            .map(principal_input)
            .unwrap_or_default(),
        resource: PlanResource {
            kind: resource.kind.clone(),
            attr: Arc::new(cel_map(&resource.attr)),
            policy_version: resource.policy_version.clone(),
            scope: resource.scope.clone(),
        },
        actions,
        aux_data,
        explain: false,
    }
}

/// The response's `meta` (asked for with `includeMeta`): `filterDebug`, and
/// `matchedScope` for a single `action` or `matchedScopes` for `actions`.
fn plan_meta(one_action: Option<&String>, output: &PlanOutput) -> plan_resources_response::Meta {
    plan_resources_response::Meta {
        filter_debug: output.filter_debug.clone(),
        matched_scope: match one_action {
            Some(a) => output.matched_scopes.get(a).cloned().unwrap_or_default(),
            None => String::new(),
        },
        matched_scopes: if one_action.is_none() {
            output.matched_scopes.clone()
        } else {
            Default::default()
        },
    }
}

/// What the decision log records about a plan besides the plan itself.
pub(crate) struct PlanFacts<'a> {
    /// Decision id (Cerbos call id, ext_authz decision id).
    pub(crate) decision_id: &'a str,
    /// Revision of the policy snapshot that planned.
    pub(crate) revision: &'a str,
    /// The policy set in force: metric labels come from it (kinds and actions it does not
    /// name count as `other`), so callers cannot create label values.
    pub(crate) policies: &'a crate::policy::compiled::CompiledPolicySet,
    /// Time taken.
    pub(crate) elapsed: std::time::Duration,
}

/// A CEL attribute map for the decision log, shared: the writer thread turns it into JSON.
pub(crate) fn map_attributes(m: &Arc<crate::cel::MapValue>) -> crate::audit::Attributes {
    let m = m.clone();
    crate::audit::Attributes::new(move || crate::cel::to_json(&crate::cel::Value::Map(m.clone())))
}

/// Counts one plan in `gatehouse_plans_total` / `gatehouse_plan_duration_seconds` and
/// writes its decision-log line (shared by the API and the ext_authz plan routes);
/// `amend` adds what the caller knows besides the plan (an ext_authz request's outcome).
pub(crate) fn record_plan(
    metrics: &crate::metrics::Metrics,
    audit: &crate::audit::AuditSink,
    origin: Origin,
    facts: PlanFacts<'_>,
    input: &PlanInput,
    output: &PlanOutput,
    amend: impl FnOnce(&mut crate::audit::DecisionRecord),
) {
    use crate::audit::{DecisionRecord, PlanRecord, PrincipalRecord, ResourceRecord};
    let filter = match output.filter.kind {
        FilterKind::AlwaysAllowed => "always_allowed",
        FilterKind::AlwaysDenied => "always_denied",
        FilterKind::Conditional => "conditional",
    };
    metrics.observe_plan(
        origin,
        facts.elapsed,
        input.actions.iter().map(|a| {
            let (kind, action) = facts.policies.metric_labels(&input.resource.kind, a);
            PlanOutcome {
                kind,
                action,
                filter,
            }
        }),
    );
    audit.record_with(|| {
        let with_attr = audit.wants_attributes();
        let attr = |m: &Arc<crate::cel::MapValue>| with_attr.then(|| map_attributes(m));
        let mut r = DecisionRecord::new(origin, facts.decision_id);
        r.principal = Some(PrincipalRecord {
            id: input.principal.id.clone(),
            roles: input.principal.roles.clone(),
            attr: attr(&input.principal.attr),
        });
        r.resources = vec![ResourceRecord {
            kind: input.resource.kind.clone(),
            id: String::new(),
            policy_version: input.resource.policy_version.clone(),
            scope: input.resource.scope.clone(),
            attr: attr(&input.resource.attr),
            actions: Vec::new(),
        }];
        r.plan = Some(PlanRecord {
            actions: input.actions.clone(),
            filter: output.filter.kind.as_str().to_string(),
            condition: (output.filter.kind == FilterKind::Conditional)
                .then(|| output.filter_debug.clone()),
        });
        r.policy_revision = Some(Arc::from(facts.revision));
        r.request_id = (!input.request_id.is_empty()).then(|| input.request_id.clone());
        amend(&mut r);
        r
    });
}

/// A filter as the wire message.
pub(crate) fn filter_pb(f: &Filter) -> pb_engine::PlanResourcesFilter {
    use pb_engine::plan_resources_filter::Kind as PbKind;
    let kind = match f.kind {
        FilterKind::AlwaysAllowed => PbKind::AlwaysAllowed,
        FilterKind::AlwaysDenied => PbKind::AlwaysDenied,
        FilterKind::Conditional => PbKind::Conditional,
    };
    pb_engine::PlanResourcesFilter {
        kind: kind as i32,
        condition: f.condition.as_ref().map(operand_pb),
    }
}

fn operand_pb(o: &Operand) -> PbOperand {
    let node = match o {
        Operand::Value(v) => Node::Value(json_to_value(v).unwrap_or(prost_types::Value {
            kind: Some(Kind::NullValue(0)),
        })),
        Operand::Variable(v) => Node::Variable(v.clone()),
        Operand::Expression(e) => Node::Expression(pb_engine::plan_resources_filter::Expression {
            operator: e.operator.clone(),
            operands: e.operands.iter().map(operand_pb).collect(),
        }),
    };
    PbOperand { node: Some(node) }
}

fn operand_json(o: &PbOperand) -> Json {
    let mut m = Map::new();
    match &o.node {
        Some(Node::Value(v)) => {
            m.insert("value".into(), value_to_json(v));
        }
        Some(Node::Variable(v)) => {
            m.insert("variable".into(), Json::from(v.as_str()));
        }
        Some(Node::Expression(e)) => {
            let mut x = Map::new();
            if !e.operator.is_empty() {
                x.insert("operator".into(), Json::from(e.operator.as_str()));
            }
            if !e.operands.is_empty() {
                x.insert(
                    "operands".into(),
                    Json::Array(e.operands.iter().map(operand_json).collect()),
                );
            }
            m.insert("expression".into(), Json::Object(x));
        }
        None => {}
    }
    Json::Object(m)
}

fn kind_name(k: i32) -> &'static str {
    match k {
        1 => "KIND_ALWAYS_ALLOWED",
        2 => "KIND_ALWAYS_DENIED",
        3 => "KIND_CONDITIONAL",
        _ => "KIND_UNSPECIFIED",
    }
}

/// A `PlanResourcesResponse` as Cerbos's HTTP API writes it (empty fields left out).
pub fn encode_plan_resources(r: &PlanResourcesResponse) -> Json {
    let mut m = Map::new();
    let put = |m: &mut Map<String, Json>, k: &str, v: &str| {
        if !v.is_empty() {
            m.insert(k.into(), Json::from(v));
        }
    };
    put(&mut m, "requestId", &r.request_id);
    put(&mut m, "action", &r.action);
    if !r.actions.is_empty() {
        m.insert("actions".into(), Json::from(r.actions.clone()));
    }
    put(&mut m, "resourceKind", &r.resource_kind);
    put(&mut m, "policyVersion", &r.policy_version);
    if let Some(f) = &r.filter {
        let mut fm = Map::new();
        fm.insert("kind".into(), Json::from(kind_name(f.kind)));
        if let Some(c) = &f.condition {
            fm.insert("condition".into(), operand_json(c));
        }
        m.insert("filter".into(), Json::Object(fm));
    }
    if let Some(meta) = &r.meta {
        let mut mm = Map::new();
        put(&mut mm, "filterDebug", &meta.filter_debug);
        put(&mut mm, "matchedScope", &meta.matched_scope);
        if !meta.matched_scopes.is_empty() {
            mm.insert(
                "matchedScopes".into(),
                Json::Object(
                    meta.matched_scopes
                        .iter()
                        .map(|(k, v)| (k.clone(), Json::from(v.as_str())))
                        .collect(),
                ),
            );
        }
        m.insert("meta".into(), Json::Object(mm));
    }
    if !r.validation_errors.is_empty() {
        m.insert(
            "validationErrors".into(),
            Json::Array(
                r.validation_errors
                    .iter()
                    .map(validation_error_json)
                    .collect(),
            ),
        );
    }
    put(&mut m, "cerbosCallId", &r.cerbos_call_id);
    Json::Object(m)
}
