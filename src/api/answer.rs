//! A `CheckResources` call's answer as the engine gave it, and its protobuf form written
//! straight from the decisions: the bytes prost writes for
//! [`CheckAnswer::into_pb`]'s `CheckResourcesResponse`, without building that message (a
//! `BTreeMap` per result and per meta, a copy of every action, policy and scope name).
//! The gRPC service writes answers this way; the HTTP adapter and the library API take
//! the generated message.

use crate::protowire::{field_len, put_len, put_str, put_varint_field, str_len, varint_field_len};
use prost::Message as _;
use prost::bytes::BufMut;
use prost_types::value::Kind;

use super::pb::cerbos::engine::v1 as pb_engine;
use super::pb::cerbos::response::v1::CheckResourcesResponse;
use super::pb::cerbos::response::v1::check_resources_response::{ResultEntry, result_entry};
use super::pb::cerbos::schema::v1::ValidationError as PbValidationError;
use super::protojson::json_to_value;
use crate::engine::{self, ActionEffect, CheckOutput, OutputEntry, ValidationSource};
use crate::policy::compiled::Effect;

/// The decisions of one `CheckResources` call, before they are written out.
#[derive(Debug)]
pub(crate) struct CheckAnswer {
    /// The caller's request id, echoed.
    pub(crate) request_id: String,
    /// This call's id.
    pub(crate) call_id: String,
    /// Whether each result carries the policies and scopes that decided.
    pub(crate) include_meta: bool,
    /// One resource and its decisions per entry of the request, in order.
    pub(crate) results: Vec<(engine::Resource, CheckOutput)>,
}

impl CheckAnswer {
    /// The answer as the generated message.
    pub(crate) fn into_pb(self) -> CheckResourcesResponse {
        let include_meta = self.include_meta;
        CheckResourcesResponse {
            request_id: self.request_id,
            results: self
                .results
                .into_iter()
                .map(|(resource, out)| result_entry(resource, out, include_meta))
                .collect(),
            cerbos_call_id: self.call_id,
        }
    }

    /// The effects of every action of every result.
    pub(crate) fn effects(&self) -> impl Iterator<Item = Effect> + Clone + '_ {
        self.results
            .iter()
            .flat_map(|(_, out)| out.actions.iter().map(|a| a.effect))
    }

    /// Writes the answer as a protobuf `CheckResourcesResponse`: the bytes of
    /// `self.into_pb().encode(buf)`. The actions of each result are put in name order
    /// first, the order in which protobuf's map writes them.
    pub(crate) fn encode(mut self, buf: &mut impl BufMut) {
        for (_, out) in &mut self.results {
            out.actions.sort_unstable_by(|a, b| a.action.cmp(&b.action));
            // The engine decides each action once; a map keeps one entry per key anyway.
            out.actions
                .dedup_by(|later, kept| later.action == kept.action);
        }
        put_str(buf, 1, &self.request_id);
        for (resource, out) in &self.results {
            put_len(buf, 2, self.entry_len(resource, out));
            self.put_entry(buf, resource, out);
        }
        put_str(buf, 3, &self.call_id);
    }

    /// The length of [`encode`](Self::encode)'s bytes.
    pub(crate) fn encoded_len(&self) -> usize {
        str_len(&self.request_id)
            + self
                .results
                .iter()
                .map(|(r, out)| field_len(self.entry_len(r, out)))
                .sum::<usize>()
            + str_len(&self.call_id)
    }

    /// `ResultEntry`: resource (1), actions (2), validation_errors (3), meta (4), outputs (5).
    fn entry_len(&self, resource: &engine::Resource, out: &CheckOutput) -> usize {
        let meta = if self.include_meta {
            field_len(meta_len(out))
        } else {
            0
        };
        field_len(resource_len(resource))
            + out
                .actions
                .iter()
                .map(|a| field_len(effect_entry_len(a)))
                .sum::<usize>()
            + out
                .validation_errors
                .iter()
                .map(|v| field_len(validation_error_len(v)))
                .sum::<usize>()
            + meta
            + out
                .outputs
                .iter()
                .map(|o| field_len(output_len(o)))
                .sum::<usize>()
    }

    fn put_entry(&self, buf: &mut impl BufMut, resource: &engine::Resource, out: &CheckOutput) {
        put_len(buf, 1, resource_len(resource));
        put_str(buf, 1, &resource.id);
        put_str(buf, 2, &resource.kind);
        put_str(buf, 3, &resource.policy_version);
        put_str(buf, 4, &resource.scope);
        for a in &out.actions {
            put_len(buf, 2, effect_entry_len(a));
            put_str(buf, 1, &a.action);
            put_varint_field(buf, 2, effect_number(a.effect));
        }
        for v in &out.validation_errors {
            put_len(buf, 3, validation_error_len(v));
            put_str(buf, 1, &v.path);
            put_str(buf, 2, &v.message);
            put_varint_field(buf, 3, source_number(v.source));
        }
        if self.include_meta {
            put_len(buf, 4, meta_len(out));
            for a in &out.actions {
                let effect_meta = effect_meta_len(a);
                put_len(buf, 1, meta_entry_len(a));
                put_str(buf, 1, &a.action);
                if effect_meta > 0 {
                    put_len(buf, 2, effect_meta);
                    put_str(buf, 1, &a.policy);
                    put_str(buf, 2, &a.scope);
                }
            }
            for role in &out.effective_derived_roles {
                // Repeated strings are written even when empty.
                put_len(buf, 2, role.len());
                buf.put_slice(role.as_bytes());
            }
        }
        for o in &out.outputs {
            put_len(buf, 5, output_len(o));
            put_str(buf, 1, &o.src);
            if let Some(value) = output_value(o) {
                put_len(buf, 2, value.encoded_len());
                value.encode_raw(buf);
            }
            put_str(buf, 3, &o.action);
            if let Err(error) = &o.value {
                put_str(buf, 4, error);
            }
        }
    }
}

/// `ResultEntry.Resource`: id (1), kind (2), policy_version (3), scope (4).
fn resource_len(r: &engine::Resource) -> usize {
    str_len(&r.id) + str_len(&r.kind) + str_len(&r.policy_version) + str_len(&r.scope)
}

/// One entry of the `actions` map: the action (1) and its effect (2, never 0).
fn effect_entry_len(a: &ActionEffect) -> usize {
    str_len(&a.action) + varint_field_len(effect_number(a.effect))
}

/// `Meta`: the map of action to `EffectMeta` (1), the derived roles (2).
fn meta_len(out: &CheckOutput) -> usize {
    out.actions
        .iter()
        .map(|a| field_len(meta_entry_len(a)))
        .sum::<usize>()
        + out
            .effective_derived_roles
            .iter()
            .map(|r| field_len(r.len()))
            .sum::<usize>()
}

/// One entry of `Meta.actions`: the action (1) and, unless empty, its `EffectMeta` (2).
fn meta_entry_len(a: &ActionEffect) -> usize {
    let effect_meta = effect_meta_len(a);
    str_len(&a.action)
        + if effect_meta > 0 {
            field_len(effect_meta)
        } else {
            0
        }
}

/// `EffectMeta`: matched_policy (1), matched_scope (2).
fn effect_meta_len(a: &ActionEffect) -> usize {
    str_len(&a.policy) + str_len(&a.scope)
}

/// `cerbos.schema.v1.ValidationError`: path (1), message (2), source (3).
fn validation_error_len(v: &engine::ValidationError) -> usize {
    str_len(&v.path) + str_len(&v.message) + varint_field_len(source_number(v.source))
}

/// `cerbos.engine.v1.OutputEntry`: src (1), val (2), action (3), error (4).
fn output_len(o: &OutputEntry) -> usize {
    let value = output_value(o).map_or(0, |v| field_len(v.encoded_len()));
    let error = match &o.value {
        Ok(_) => 0,
        Err(e) => str_len(e),
    };
    str_len(&o.src) + value + str_len(&o.action) + error
}

/// An output's value as `google.protobuf.Value` (null when it has no protobuf form), or
/// `None` for an output whose expression failed. Outputs are rare; the value is converted
/// where it is measured and where it is written.
fn output_value(o: &OutputEntry) -> Option<prost_types::Value> {
    let v = o.value.as_ref().ok()?;
    Some(json_to_value(v).unwrap_or(prost_types::Value {
        kind: Some(Kind::NullValue(0)),
    }))
}

fn effect_number(e: Effect) -> i32 {
    match e {
        Effect::Allow => 1,
        Effect::Deny => 2,
    }
}

fn source_number(s: ValidationSource) -> i32 {
    match s {
        ValidationSource::Principal => 1,
        ValidationSource::Resource => 2,
    }
}

/// One resource's entry of the generated response.
fn result_entry(resource: engine::Resource, out: CheckOutput, include_meta: bool) -> ResultEntry {
    let meta = include_meta.then(|| result_entry::Meta {
        actions: out
            .actions
            .iter()
            .map(|a| {
                let m = result_entry::meta::EffectMeta {
                    matched_policy: a.policy.clone(),
                    matched_scope: a.scope.clone(),
                };
                (a.action.clone(), m)
            })
            .collect(),
        effective_derived_roles: out.effective_derived_roles.clone(),
    });
    let validation_errors = validation_errors_pb(&out.validation_errors);
    let actions = out
        .actions
        .into_iter()
        .map(|a| (a.action, effect_number(a.effect)))
        .collect();
    let outputs = out
        .outputs
        .into_iter()
        .map(|o| pb_engine::OutputEntry {
            val: output_value(&o),
            src: o.src,
            action: o.action,
            error: o.value.err().unwrap_or_default(),
        })
        .collect();
    ResultEntry {
        resource: Some(result_entry::Resource {
            id: resource.id,
            kind: resource.kind,
            policy_version: resource.policy_version,
            scope: resource.scope,
        }),
        actions,
        validation_errors,
        meta,
        outputs,
    }
}

/// Schema validation errors in Cerbos's message form (CheckResources and PlanResources).
pub(super) fn validation_errors_pb(errors: &[engine::ValidationError]) -> Vec<PbValidationError> {
    errors
        .iter()
        .map(|v| PbValidationError {
            path: v.path.clone(),
            message: v.message.clone(),
            source: source_number(v.source),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn action(name: &str, effect: Effect, policy: &str, scope: &str) -> ActionEffect {
        ActionEffect {
            action: name.into(),
            effect,
            policy: policy.into(),
            scope: scope.into(),
            rule: Some(Arc::from("rule-001")),
        }
    }

    fn resource(kind: &str, id: &str, version: &str, scope: &str) -> engine::Resource {
        engine::Resource {
            kind: kind.into(),
            id: id.into(),
            policy_version: version.into(),
            scope: scope.into(),
            ..Default::default()
        }
    }

    /// Answers covering every field: actions out of name order, empty strings (absent
    /// fields, an empty map key, an empty `EffectMeta`), validation errors from both
    /// sources, derived roles (one empty), outputs with a value, a value without a
    /// protobuf form, and an error, long strings (two-byte lengths), no results.
    fn answers() -> Vec<CheckAnswer> {
        let long = "x".repeat(300);
        let full = CheckOutput {
            actions: vec![
                action("view", Effect::Allow, "resource.album.vdefault", "acme"),
                action("delete", Effect::Deny, "NO_MATCH", ""),
                action("", Effect::Deny, "", ""),
                action(&long, Effect::Allow, &long, &long),
                action("comment", Effect::Allow, "", "acme.hr"),
            ],
            effective_derived_roles: vec!["owner".into(), String::new(), long.clone()],
            outputs: vec![
                OutputEntry {
                    src: "resource.album.vdefault#rule-001".into(),
                    action: "view".into(),
                    value: Ok(serde_json::json!({"a": [1, "two", null, true], "b": 2.5})),
                },
                OutputEntry {
                    src: String::new(),
                    action: String::new(),
                    value: Ok(serde_json::json!(null)),
                },
                OutputEntry {
                    src: "resource.album.vdefault#rule-002".into(),
                    action: "delete".into(),
                    value: Err("no such key: owner".into()),
                },
            ],
            validation_errors: vec![
                engine::ValidationError {
                    path: "/owner".into(),
                    message: "expected string".into(),
                    source: ValidationSource::Resource,
                },
                engine::ValidationError {
                    path: String::new(),
                    message: long.clone(),
                    source: ValidationSource::Principal,
                },
            ],
            ..Default::default()
        };
        let plain = CheckOutput {
            actions: vec![action("view", Effect::Deny, "NO_MATCH", "")],
            ..Default::default()
        };
        let results = || {
            vec![
                (resource("album", "XX125", "default", "acme"), full.clone()),
                (resource("", "", "", ""), plain.clone()),
                (resource(&long, &long, "", ""), CheckOutput::default()),
            ]
        };
        vec![
            CheckAnswer {
                request_id: "req-1".into(),
                call_id: "01HGJZ3Y5J4V7N0Q2W8E6R9T1A".into(),
                include_meta: true,
                results: results(),
            },
            CheckAnswer {
                request_id: String::new(),
                call_id: long.clone(),
                include_meta: false,
                results: results(),
            },
            CheckAnswer {
                request_id: long,
                call_id: String::new(),
                include_meta: true,
                results: Vec::new(),
            },
        ]
    }

    fn copy(a: &CheckAnswer) -> CheckAnswer {
        CheckAnswer {
            request_id: a.request_id.clone(),
            call_id: a.call_id.clone(),
            include_meta: a.include_meta,
            results: a.results.clone(),
        }
    }

    #[test]
    fn issue_15_the_direct_encoding_is_prosts() {
        for answer in answers() {
            let expected = copy(&answer).into_pb().encode_to_vec();
            let len = answer.encoded_len();
            let mut written = Vec::new();
            answer.encode(&mut written);
            assert_eq!(written, expected);
            assert_eq!(len, expected.len());
        }
    }

    #[test]
    fn the_direct_encoding_reads_back_as_the_answer() {
        for answer in answers() {
            let expected = copy(&answer).into_pb();
            let mut written = Vec::new();
            answer.encode(&mut written);
            let read = CheckResourcesResponse::decode(written.as_slice()).unwrap();
            assert_eq!(read, expected);
        }
    }
}
