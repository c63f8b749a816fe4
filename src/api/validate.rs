//! Cerbos's request rules (the `buf.validate` annotations of its API), applied in code: the
//! same checks, in the same order, with the same messages and violation details as
//! protovalidate produces for Cerbos.

use serde_json::{Map, Value as Json};

use super::error::ApiError;
use super::pb::buf::validate::field_path_element::Subscript;
use super::pb::buf::validate::{FieldPath, FieldPathElement, Violation, Violations};
use super::pb::cerbos::audit::v1::RequestContext;
use super::pb::cerbos::engine::v1::Principal;
use super::pb::cerbos::engine::v1::plan_resources_input;
use super::pb::cerbos::request::v1::{AuxData, PlanResourcesRequest};
use super::request::{CheckRequest, Entry};
use crate::cel::{Key, MapValue};
use crate::engine;

/// `google.protobuf.FieldDescriptorProto.Type` values used in paths.
mod ty {
    pub(crate) const UINT64: i32 = 4;
    pub(crate) const BOOL: i32 = 8;
    pub(crate) const STRING: i32 = 9;
    pub(crate) const MESSAGE: i32 = 11;

    pub(crate) fn name(t: i32) -> &'static str {
        match t {
            UINT64 => "TYPE_UINT64",
            BOOL => "TYPE_BOOL",
            STRING => "TYPE_STRING",
            MESSAGE => "TYPE_MESSAGE",
            _ => "TYPE_UNSPECIFIED",
        }
    }
}

const POLICY_VERSION_PATTERN: &str = r"^[\w]*$";
const SCOPE_PATTERN: &str = r"^(^$|\.|[0-9a-zA-Z][\w\-]*(\.\w[\w\-]*)*)$";

/// One step of a rule path: `(field number, name, type)` in `buf.validate.FieldRules`.
type RuleStep = (i32, &'static str, i32);

const REQUIRED: &[RuleStep] = &[(25, "required", ty::BOOL)];
const STRING_PATTERN: &[RuleStep] = &[(14, "string", ty::MESSAGE), (6, "pattern", ty::STRING)];
const REPEATED_UNIQUE: &[RuleStep] = &[(18, "repeated", ty::MESSAGE), (3, "unique", ty::BOOL)];
const ITEMS_MIN_LEN: &[RuleStep] = &[
    (18, "repeated", ty::MESSAGE),
    (4, "items", ty::MESSAGE),
    (14, "string", ty::MESSAGE),
    (2, "min_len", ty::UINT64),
];
const KEYS_MIN_LEN: &[RuleStep] = &[
    (19, "map", ty::MESSAGE),
    (4, "keys", ty::MESSAGE),
    (14, "string", ty::MESSAGE),
    (2, "min_len", ty::UINT64),
];

const REPEATED_MAX_ITEMS: &[RuleStep] =
    &[(18, "repeated", ty::MESSAGE), (2, "max_items", ty::UINT64)];

/// Cerbos's limit on the actions of one plan request.
const MAX_PLAN_ACTIONS: usize = 20;

/// Checks a PlanResources request; on violations returns Cerbos's `INVALID_ARGUMENT` error.
pub fn validate_plan_resources(req: &PlanResourcesRequest) -> Result<(), ApiError> {
    let mut v = Validator::default();
    v.plan_request(req);
    v.into_result()
}

/// Checks a request; on violations returns Cerbos's `INVALID_ARGUMENT` error.
pub fn validate_check_resources(req: &CheckRequest) -> Result<(), ApiError> {
    let mut v = Validator::default();
    v.request(req);
    v.into_result()
}

fn field(number: i32, name: &str, ty: i32) -> FieldPathElement {
    FieldPathElement {
        field_number: Some(number),
        field_name: Some(name.to_string()),
        field_type: Some(ty),
        ..Default::default()
    }
}

fn indexed(number: i32, name: &str, ty: i32, index: usize) -> FieldPathElement {
    FieldPathElement {
        subscript: Some(Subscript::Index(index as u64)),
        ..field(number, name, ty)
    }
}

fn keyed(number: i32, name: &str, key: &str) -> FieldPathElement {
    FieldPathElement {
        key_type: Some(ty::STRING),
        value_type: Some(ty::MESSAGE),
        subscript: Some(Subscript::StringKey(key.to_string())),
        ..field(number, name, ty::MESSAGE)
    }
}

/// One step of the path being validated, made into a `FieldPathElement` only when a
/// violation is reported (a valid request allocates no path).
enum Step {
    Field(i32, &'static str, i32),
    Indexed(i32, &'static str, i32, usize),
    Keyed(i32, &'static str, String),
}

impl Step {
    fn element(&self) -> FieldPathElement {
        match self {
            Step::Field(n, name, t) => field(*n, name, *t),
            Step::Indexed(n, name, t, i) => indexed(*n, name, *t, *i),
            Step::Keyed(n, name, key) => keyed(*n, name, key),
        }
    }
}

#[derive(Default)]
struct Validator {
    path: Vec<Step>,
    /// Depth of map values around the current path (protovalidate then sets `for_key: false`).
    in_map_value: usize,
    out: Vec<Violation>,
}

impl Validator {
    fn violation(
        &mut self,
        last: Option<FieldPathElement>,
        rule: Option<&[RuleStep]>,
        rule_id: &str,
        message: String,
        for_key: bool,
    ) {
        let mut elements: Vec<FieldPathElement> = self.path.iter().map(Step::element).collect();
        elements.extend(last);
        self.out.push(Violation {
            rule_id: Some(rule_id.to_string()),
            message: Some(message),
            for_key: if for_key {
                Some(true)
            } else {
                (self.in_map_value > 0).then_some(false)
            },
            field: Some(FieldPath { elements }),
            rule: rule.map(|steps| FieldPath {
                elements: steps
                    .iter()
                    .map(|&(n, name, t)| field(n, name, t))
                    .collect(),
            }),
        });
    }

    fn required(&mut self, f: FieldPathElement) {
        self.violation(
            Some(f),
            Some(REQUIRED),
            "required",
            "value is required".into(),
            false,
        );
    }

    fn in_field(&mut self, f: Step, body: impl FnOnce(&mut Self)) {
        self.path.push(f);
        body(self);
        self.path.pop();
    }

    fn required_string(&mut self, number: i32, name: &str, value: &str) {
        if value.is_empty() {
            self.required(field(number, name, ty::STRING));
        }
    }

    fn pattern(&mut self, number: i32, name: &str, ok: bool, pattern: &str) {
        if !ok {
            self.violation(
                Some(field(number, name, ty::STRING)),
                Some(STRING_PATTERN),
                "string.pattern",
                format!("does not match regex pattern `{pattern}`"),
                false,
            );
        }
    }

    /// `required`, `unique` and items `min_len: 1` of a repeated string field.
    fn string_list<S: AsRef<str>>(&mut self, number: i32, name: &str, items: &[S]) {
        if items.is_empty() {
            self.required(field(number, name, ty::STRING));
            return;
        }
        if !all_unique(items) {
            self.violation(
                Some(field(number, name, ty::STRING)),
                Some(REPEATED_UNIQUE),
                "repeated.unique",
                "repeated value must contain unique items".into(),
                false,
            );
        }
        for (i, item) in items.iter().enumerate() {
            if item.as_ref().is_empty() {
                self.violation(
                    Some(indexed(number, name, ty::STRING, i)),
                    Some(ITEMS_MIN_LEN),
                    "string.min_len",
                    "must be at least 1 characters".into(),
                    false,
                );
            }
        }
    }

    /// Map keys `min_len: 1`.
    fn map_keys<'a>(&mut self, number: i32, name: &str, keys: impl Iterator<Item = &'a str>) {
        for k in keys {
            if k.is_empty() {
                self.violation(
                    Some(keyed(number, name, k)),
                    Some(KEYS_MIN_LEN),
                    "string.min_len",
                    "must be at least 1 characters".into(),
                    true,
                );
            }
        }
    }

    fn request(&mut self, req: &CheckRequest) {
        match &req.principal {
            None => self.required(field(3, "principal", ty::MESSAGE)),
            Some(p) => self.in_field(Step::Field(3, "principal", ty::MESSAGE), |v| {
                v.principal_fields(PrincipalFields {
                    id: &p.id,
                    policy_version: &p.policy_version,
                    roles: &p.roles,
                    attr_keys: cel_keys(&p.attr),
                    scope: &p.scope,
                })
            }),
        }
        if req.resources.is_empty() {
            self.required(field(4, "resources", ty::MESSAGE));
        }
        for (i, entry) in req.resources.iter().enumerate() {
            self.in_field(Step::Indexed(4, "resources", ty::MESSAGE, i), |v| {
                v.resource_entry(entry)
            });
        }
        if let Some(aux) = &req.aux_data {
            self.in_field(Step::Field(5, "aux_data", ty::MESSAGE), |v| v.aux_data(aux));
        }
        if let Some(ctx) = &req.request_context {
            self.in_field(Step::Field(6, "request_context", ty::MESSAGE), |v| {
                v.request_context(ctx)
            });
        }
    }

    /// Cerbos's rules for a plan request, in the order protovalidate reports them: the
    /// message rule, then the fields in declaration order (`action`, `actions`,
    /// `principal`, `resource`, `aux_data`, `request_context`).
    fn plan_request(&mut self, req: &PlanResourcesRequest) {
        if req.action.is_empty() == req.actions.is_empty() {
            self.violation(
                None,
                None,
                "exclusiveFieldsActionOrActions",
                "Exactly one of 'action' or 'actions' field must be set".into(),
                false,
            );
        }
        if req.actions.len() > MAX_PLAN_ACTIONS {
            self.violation(
                Some(field(7, "actions", ty::STRING)),
                Some(REPEATED_MAX_ITEMS),
                "repeated.max_items",
                format!("must contain no more than {MAX_PLAN_ACTIONS} item(s)"),
                false,
            );
        }
        if !all_unique(&req.actions) {
            self.violation(
                Some(field(7, "actions", ty::STRING)),
                Some(REPEATED_UNIQUE),
                "repeated.unique",
                "repeated value must contain unique items".into(),
                false,
            );
        }
        for (i, a) in req.actions.iter().enumerate() {
            if a.is_empty() {
                self.violation(
                    Some(indexed(7, "actions", ty::STRING, i)),
                    Some(ITEMS_MIN_LEN),
                    "string.min_len",
                    "must be at least 1 characters".into(),
                    false,
                );
            }
        }
        match &req.principal {
            None => self.required(field(3, "principal", ty::MESSAGE)),
            Some(p) => self.in_field(Step::Field(3, "principal", ty::MESSAGE), |v| v.principal(p)),
        }
        match &req.resource {
            None => self.required(field(4, "resource", ty::MESSAGE)),
            Some(r) => self.in_field(Step::Field(4, "resource", ty::MESSAGE), |v| {
                v.plan_resource(r)
            }),
        }
        if let Some(aux) = &req.aux_data {
            self.in_field(Step::Field(5, "aux_data", ty::MESSAGE), |v| v.aux_data(aux));
        }
        if let Some(ctx) = &req.request_context {
            self.in_field(Step::Field(8, "request_context", ty::MESSAGE), |v| {
                v.request_context(ctx)
            });
        }
    }

    fn plan_resource(&mut self, r: &plan_resources_input::Resource) {
        self.required_string(1, "kind", &r.kind);
        self.pattern(
            3,
            "policy_version",
            is_word(&r.policy_version),
            POLICY_VERSION_PATTERN,
        );
        self.pattern(4, "scope", is_scope(&r.scope), SCOPE_PATTERN);
    }

    fn principal(&mut self, p: &Principal) {
        self.principal_fields(PrincipalFields {
            id: &p.id,
            policy_version: &p.policy_version,
            roles: &p.roles,
            attr_keys: p.attr.keys().map(String::as_str),
            scope: &p.scope,
        });
    }

    fn principal_fields<'a, S: AsRef<str>>(
        &mut self,
        p: PrincipalFields<'a, S, impl Iterator<Item = &'a str>>,
    ) {
        self.required_string(1, "id", p.id);
        self.pattern(
            2,
            "policy_version",
            is_word(p.policy_version),
            POLICY_VERSION_PATTERN,
        );
        self.string_list(3, "roles", p.roles);
        self.map_keys(4, "attr", p.attr_keys);
        self.pattern(5, "scope", is_scope(p.scope), SCOPE_PATTERN);
    }

    fn resource(&mut self, r: &engine::Resource) {
        self.required_string(1, "kind", &r.kind);
        self.pattern(
            2,
            "policy_version",
            is_word(&r.policy_version),
            POLICY_VERSION_PATTERN,
        );
        self.required_string(3, "id", &r.id);
        self.map_keys(4, "attr", cel_keys(&r.attr));
        self.pattern(5, "scope", is_scope(&r.scope), SCOPE_PATTERN);
    }

    fn resource_entry(&mut self, e: &Entry) {
        self.string_list(1, "actions", &e.actions);
        match &e.resource {
            None => self.required(field(2, "resource", ty::MESSAGE)),
            Some(r) => self.in_field(Step::Field(2, "resource", ty::MESSAGE), |v| v.resource(r)),
        }
    }

    fn aux_data(&mut self, a: &AuxData) {
        if a.jwt.is_some() && !a.jwts.is_empty() {
            self.violation(
                None,
                None,
                "AuxData.only_one_jwt_field",
                "Only one of the jwt or jwts fields must be set".into(),
                false,
            );
        }
        if let Some(jwt) = &a.jwt {
            self.in_field(Step::Field(1, "jwt", ty::MESSAGE), |v| {
                v.required_string(1, "token", &jwt.token)
            });
        }
        self.map_keys(2, "jwts", a.jwts.keys().map(String::as_str));
        for (name, jwt) in &a.jwts {
            self.in_map_value += 1;
            self.in_field(Step::Keyed(2, "jwts", name.clone()), |v| {
                v.required_string(1, "token", &jwt.token)
            });
            self.in_map_value -= 1;
        }
    }

    fn request_context(&mut self, c: &RequestContext) {
        self.map_keys(1, "annotations", c.annotations.keys().map(String::as_str));
    }

    fn into_result(self) -> Result<(), ApiError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let lines: Vec<String> = self.out.iter().map(violation_line).collect();
        let message = match lines.as_slice() {
            [one] => format!("validation error: {one}"),
            many => format!("validation errors:\n - {}", many.join("\n - ")),
        };
        Err(ApiError::validation(
            message,
            Violations {
                violations: self.out,
            },
        ))
    }
}

/// The fields of a principal that Cerbos's rules check (the API's and the generated
/// message's principals alike).
struct PrincipalFields<'a, S, K> {
    id: &'a str,
    policy_version: &'a str,
    roles: &'a [S],
    attr_keys: K,
    scope: &'a str,
}

/// The keys of an attribute map read from a request (the decoders make only string keys).
fn cel_keys(m: &MapValue) -> impl Iterator<Item = &str> {
    m.iter().filter_map(|(k, _)| match k {
        Key::String(s) => Some(s.as_ref()),
        _ => None,
    })
}

/// Whether no item repeats: short lists (a request's actions and roles) are compared pairwise,
/// longer ones through a hash set.
fn all_unique<S: AsRef<str>>(items: &[S]) -> bool {
    const PAIRWISE: usize = 16;
    if items.len() <= PAIRWISE {
        return items
            .iter()
            .enumerate()
            .all(|(i, a)| !items[..i].iter().any(|b| b.as_ref() == a.as_ref()));
    }
    let mut seen = std::collections::HashSet::with_capacity(items.len());
    items.iter().all(|a| seen.insert(a.as_ref()))
}

/// `^[\w]*$` with Go's ASCII `\w`.
fn is_word(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// `^(^$|\.|[0-9a-zA-Z][\w\-]*(\.\w[\w\-]*)*)$`.
fn is_scope(s: &str) -> bool {
    if s.is_empty() || s == "." {
        return true;
    }
    let word_or_dash = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    s.split('.').enumerate().all(|(i, seg)| {
        let bytes = seg.as_bytes();
        match bytes.first() {
            None => false,
            Some(&first) => {
                let first_ok = if i == 0 {
                    first.is_ascii_alphanumeric()
                } else {
                    first.is_ascii_alphanumeric() || first == b'_'
                };
                first_ok && bytes[1..].iter().all(|&b| word_or_dash(b))
            }
        }
    })
}

/// `principal.roles[0]: message`, as protovalidate prints a violation.
fn violation_line(v: &Violation) -> String {
    let mut path = String::new();
    for e in v.field.iter().flat_map(|f| &f.elements) {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(e.field_name.as_deref().unwrap_or(""));
        match &e.subscript {
            Some(Subscript::Index(i)) => path.push_str(&format!("[{i}]")),
            Some(Subscript::StringKey(k)) => {
                path.push('[');
                path.push_str(&Json::from(k.as_str()).to_string());
                path.push(']');
            }
            Some(Subscript::BoolKey(b)) => path.push_str(&format!("[{b}]")),
            Some(Subscript::IntKey(i)) => path.push_str(&format!("[{i}]")),
            Some(Subscript::UintKey(u)) => path.push_str(&format!("[{u}]")),
            None => {}
        }
    }
    let message = v.message.as_deref().unwrap_or("");
    if path.is_empty() {
        message.to_string()
    } else {
        format!("{path}: {message}")
    }
}

fn path_json(p: &FieldPath) -> Json {
    let elements = p
        .elements
        .iter()
        .map(|e| {
            let mut m = Map::new();
            if let Some(n) = e.field_number {
                m.insert("fieldNumber".into(), Json::from(n));
            }
            if let Some(n) = &e.field_name {
                m.insert("fieldName".into(), Json::from(n.as_str()));
            }
            for (key, t) in [
                ("fieldType", e.field_type),
                ("keyType", e.key_type),
                ("valueType", e.value_type),
            ] {
                if let Some(t) = t {
                    m.insert(key.into(), Json::from(ty::name(t)));
                }
            }
            match &e.subscript {
                Some(Subscript::Index(i)) => m.insert("index".into(), Json::from(i.to_string())),
                Some(Subscript::BoolKey(b)) => m.insert("boolKey".into(), Json::from(*b)),
                Some(Subscript::IntKey(i)) => m.insert("intKey".into(), Json::from(i.to_string())),
                Some(Subscript::UintKey(u)) => {
                    m.insert("uintKey".into(), Json::from(u.to_string()))
                }
                Some(Subscript::StringKey(k)) => {
                    m.insert("stringKey".into(), Json::from(k.as_str()))
                }
                None => None,
            };
            Json::Object(m)
        })
        .collect();
    let mut m = Map::new();
    m.insert("elements".into(), Json::Array(elements));
    Json::Object(m)
}

/// `buf.validate.Violations` as Cerbos's HTTP error details have them:
/// `[{field, rule, ruleId, message, forKey}]`.
pub fn encode_violations(v: &Violations) -> Json {
    Json::Array(
        v.violations
            .iter()
            .map(|v| {
                let mut m = Map::new();
                if let Some(f) = &v.field {
                    m.insert("field".into(), path_json(f));
                }
                if let Some(r) = &v.rule {
                    m.insert("rule".into(), path_json(r));
                }
                if let Some(id) = &v.rule_id {
                    m.insert("ruleId".into(), Json::from(id.as_str()));
                }
                if let Some(msg) = &v.message {
                    m.insert("message".into(), Json::from(msg.as_str()));
                }
                if let Some(k) = v.for_key {
                    m.insert("forKey".into(), Json::from(k));
                }
                Json::Object(m)
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::protojson::decode_check_resources;

    fn message(body: &str) -> String {
        let req = decode_check_resources(body.as_bytes()).unwrap();
        match validate_check_resources(&req) {
            Ok(()) => String::new(),
            Err(e) => e.message().to_string(),
        }
    }

    #[test]
    fn messages_match_cerbos() {
        assert_eq!(
            message("{}"),
            "validation errors:\n - principal: value is required\n - resources: value is required"
        );
        assert_eq!(
            message(
                r#"{"principal":{"id":"j","roles":["","a","a",""]},"resources":[{"actions":[],"resource":{"kind":"k","id":"i"}}]}"#
            ),
            "validation errors:\n - principal.roles: repeated value must contain unique items\n - principal.roles[0]: must be at least 1 characters\n - principal.roles[3]: must be at least 1 characters\n - resources[0].actions: value is required"
        );
        assert_eq!(
            message(
                r#"{"principal":{"id":"j","roles":["a"],"scope":"a..b","attr":{"":1}},"resources":[{"actions":["a"],"resource":{"kind":"k","id":"i","policyVersion":"v-1"}}]}"#
            ),
            "validation errors:\n - principal.attr[\"\"]: must be at least 1 characters\n - principal.scope: does not match regex pattern `^(^$|\\.|[0-9a-zA-Z][\\w\\-]*(\\.\\w[\\w\\-]*)*)$`\n - resources[0].resource.policy_version: does not match regex pattern `^[\\w]*$`"
        );
        assert_eq!(
            message(
                r#"{"principal":{"id":"j","roles":["a"]},"resources":[{"actions":["a"],"resource":{"kind":"k","id":"i"}}],"auxData":{"jwt":{"token":""},"jwts":{"a":{"token":""}}}}"#
            ),
            "validation errors:\n - aux_data: Only one of the jwt or jwts fields must be set\n - aux_data.jwt.token: value is required\n - aux_data.jwts[\"a\"].token: value is required"
        );
        assert_eq!(
            message(
                r#"{"principal":{"id":"j","roles":["a"],"scope":"acme.hr-1._x"},"resources":[{"actions":["a"],"resource":{"kind":"k","id":"i","scope":"."}}]}"#
            ),
            ""
        );
    }

    #[test]
    fn details_match_cerbos() {
        let req = decode_check_resources(
            br#"{"principal":{"id":"j","roles":["a"]},"resources":[{"actions":["a"],"resource":{"kind":"k","id":"i"}}],"auxData":{"jwts":{"b":{"token":""}}}}"#,
        )
        .unwrap();
        let body = validate_check_resources(&req).unwrap_err().to_json();
        assert_eq!(
            body["details"][0]["violations"][0],
            serde_json::json!({"field": {"elements": [
                {"fieldNumber": 5, "fieldName": "aux_data", "fieldType": "TYPE_MESSAGE"},
                {"fieldNumber": 2, "fieldName": "jwts", "fieldType": "TYPE_MESSAGE", "keyType": "TYPE_STRING", "valueType": "TYPE_MESSAGE", "stringKey": "b"},
                {"fieldNumber": 1, "fieldName": "token", "fieldType": "TYPE_STRING"}]},
                "rule": {"elements": [{"fieldNumber": 25, "fieldName": "required", "fieldType": "TYPE_BOOL"}]},
                "ruleId": "required", "message": "value is required", "forKey": false})
        );
    }

    fn plan_message(body: &str) -> String {
        let req = crate::api::protojson::decode_plan_resources(body.as_bytes()).unwrap();
        match validate_plan_resources(&req) {
            Ok(()) => String::new(),
            Err(e) => e.message().to_string(),
        }
    }

    /// The messages of the real Cerbos 0.55 for the same bodies.
    #[test]
    fn plan_messages_match_cerbos() {
        assert_eq!(
            plan_message("{}"),
            "validation errors:\n - Exactly one of 'action' or 'actions' field must be set\n - principal: value is required\n - resource: value is required"
        );
        assert_eq!(
            plan_message(
                r#"{"action":"a","actions":["b"],"principal":{"id":"p","roles":["r"]},"resource":{"kind":"doc"}}"#
            ),
            "validation error: Exactly one of 'action' or 'actions' field must be set"
        );
        assert_eq!(
            plan_message(
                r#"{"actions":["a","a",""],"principal":{"id":"p","roles":["r"]},"resource":{"kind":"","policyVersion":"v-1","scope":"a..b","attr":{"":1}}}"#
            ),
            "validation errors:\n - actions: repeated value must contain unique items\n - actions[2]: must be at least 1 characters\n - resource.kind: value is required\n - resource.policy_version: does not match regex pattern `^[\\w]*$`\n - resource.scope: does not match regex pattern `^(^$|\\.|[0-9a-zA-Z][\\w\\-]*(\\.\\w[\\w\\-]*)*)$`"
        );
        let many: Vec<String> = (0..21).map(|i| format!("a{i}")).collect();
        assert_eq!(
            plan_message(&format!(
                r#"{{"actions":{},"principal":{{"id":"p","roles":["r"]}},"resource":{{"kind":"doc"}}}}"#,
                serde_json::to_string(&many).unwrap()
            )),
            "validation error: actions: must contain no more than 20 item(s)"
        );
        assert_eq!(
            plan_message(
                r#"{"action":"a","principal":{"id":"p","roles":["r"]},"resource":{"kind":"doc"}}"#
            ),
            ""
        );
    }

    #[test]
    fn uniqueness_pairwise_and_hashed() {
        let list = |n: usize, repeat: Option<usize>| -> Vec<String> {
            let mut v: Vec<String> = (0..n).map(|i| format!("a{i}")).collect();
            if let Some(i) = repeat {
                v.push(format!("a{i}"));
            }
            v
        };
        for n in [0, 1, 5, 16, 40] {
            assert!(all_unique(&list(n, None)), "{n}");
        }
        for (n, i) in [(1, 0), (5, 3), (15, 14), (16, 0), (40, 39)] {
            assert!(!all_unique(&list(n, Some(i))), "{n} {i}");
        }
    }

    #[test]
    fn scope_pattern() {
        for ok in ["", ".", "a", "acme.hr.uk", "a-b.c_d", "A1._x"] {
            assert!(is_scope(ok), "{ok}");
        }
        for bad in ["a..b", ".a", "a.", "-a", "a.-b", "é"] {
            assert!(!is_scope(bad), "{bad}");
        }
    }
}
