//! One decision as the audit log records it, and its JSON line.

use std::sync::Arc;
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
    /// Decision id (ext_authz decision id, Cerbos call id), shared with the answer that
    /// carries it.
    decision_id: Arc<str>,
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
    /// Revision of the policies in force (written `""` when unknown).
    pub(crate) policy_revision: Option<Arc<str>>,
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
    /// Roles (shared with the engine's principal: cloning them is cheap).
    pub(crate) roles: Vec<Arc<str>>,
    /// Attributes (written only with `includeAttributes`).
    pub(crate) attr: Option<Attributes>,
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
    /// Attributes (written only with `includeAttributes`).
    pub(crate) attr: Option<Attributes>,
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
    pub(crate) rule: Option<Arc<str>>,
}

impl ActionRecord {
    /// An action the engine decided: `policy` and `scope` (`""`: the root scope) as the
    /// engine reports them (owned strings are moved in, not copied).
    pub(crate) fn decided(
        action: impl Into<String>,
        allowed: bool,
        policy: impl Into<String>,
        scope: impl Into<String>,
        rule: Option<&Arc<str>>,
    ) -> ActionRecord {
        ActionRecord {
            action: action.into(),
            allowed,
            policy: Some(policy.into()),
            scope: Some(scope.into()),
            rule: rule.cloned(),
        }
    }
}

/// Attributes as the adapter holds them, turned into JSON on the writer thread: the
/// request path shares its map (an `Arc`) instead of building a JSON tree.
#[derive(Clone)]
pub(crate) struct Attributes(Arc<dyn Fn() -> Value + Send + Sync>);

impl Attributes {
    /// Attributes that `to_json` renders when the line is written.
    pub(crate) fn new(to_json: impl Fn() -> Value + Send + Sync + 'static) -> Self {
        Attributes(Arc::new(to_json))
    }

    /// The attributes as JSON.
    fn json(&self) -> Value {
        (self.0)()
    }
}

impl std::fmt::Debug for Attributes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Attributes(..)")
    }
}

/// How the writer shapes lines.
#[derive(Debug, Default)]
pub(crate) struct LineOptions {
    pub(crate) include_attributes: bool,
    pub(crate) masks: Vec<MaskPath>,
}

impl DecisionRecord {
    /// A record made now, with everything else empty.
    pub(crate) fn new(origin: Origin, decision_id: impl Into<Arc<str>>) -> Self {
        DecisionRecord {
            time: SystemTime::now(),
            decision_id: decision_id.into(),
            origin,
            allowed: None,
            status: None,
            reason: None,
            principal: None,
            resources: Vec::new(),
            policy_revision: None,
            request_id: None,
            trace_id: None,
            plan: None,
        }
    }

    #[cfg(test)]
    /// The JSON line, without the newline.
    pub(crate) fn to_line(&self, opts: &LineOptions) -> String {
        let mut out = Vec::new();
        self.write_line(opts, &mut TimeCache::default(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// Appends the JSON line (without the newline) to `out`: written directly, or through
    /// a JSON tree when a mask can change it; the time through `times`.
    pub(crate) fn write_line(&self, opts: &LineOptions, times: &mut TimeCache, out: &mut Vec<u8>) {
        let with_attrs = opts.include_attributes;
        if !opts.masks.iter().any(|m| m.can_change(with_attrs)) {
            self.write_direct(with_attrs, times, out);
            return;
        }
        self.write_through_tree(opts, times, out);
    }

    /// The line through serde (a [`Line`]) into a JSON tree, masked, then written.
    fn write_through_tree(&self, opts: &LineOptions, times: &mut TimeCache, out: &mut Vec<u8>) {
        let with_attrs = opts.include_attributes;
        let attr = |a: &Option<Attributes>| a.as_ref().filter(|_| with_attrs).map(Attributes::json);
        let principal_attr = self.principal.as_ref().and_then(|p| attr(&p.attr));
        let resource_attrs: Vec<Option<Value>> =
            self.resources.iter().map(|r| attr(&r.attr)).collect();
        let effect = |allowed: bool| if allowed { "allow" } else { "deny" };
        let line = Line {
            time: {
                let mut t = Vec::with_capacity(27);
                times.write(&mut t, self.time);
                String::from_utf8(t).unwrap_or_default()
            },
            decision_id: &self.decision_id,
            origin: self.origin.as_str(),
            effect: self.allowed.map(effect),
            status: self.status,
            reason: self.reason.as_deref(),
            principal: self.principal.as_ref().map(|p| PrincipalLine {
                id: &p.id,
                roles: Strs(&p.roles),
                attr: principal_attr.as_ref(),
            }),
            resources: self
                .resources
                .iter()
                .zip(&resource_attrs)
                .map(|(r, attr)| ResourceLine {
                    kind: &r.kind,
                    id: &r.id,
                    policy_version: &r.policy_version,
                    scope: &r.scope,
                    attr: attr.as_ref(),
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
            policy_revision: self.policy_revision.as_deref().unwrap_or_default(),
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
        let masks = opts.masks.iter().filter(|m| m.can_change(with_attrs));
        let start = out.len();
        let written = serde_json::to_value(&line).and_then(|v| match v {
            Value::Object(mut map) => {
                for m in masks {
                    m.apply(&mut map);
                }
                serde_json::to_writer(&mut *out, &map)
            }
            other => serde_json::to_writer(&mut *out, &other),
        });
        if written.is_err() {
            out.truncate(start);
        }
    }
}

impl DecisionRecord {
    /// The line written field by field, the layout of [`Line`] (a test holds the two
    /// together): no per-field dispatch, strings copied whole when they need no escape.
    fn write_direct(&self, with_attrs: bool, times: &mut TimeCache, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"time\":\"");
        times.write(out, self.time);
        out.extend_from_slice(b"\",\"decisionId\":");
        json_str(out, &self.decision_id);
        out.extend_from_slice(b",\"origin\":");
        json_str(out, self.origin.as_str());
        out.extend_from_slice(b",\"effect\":");
        json_opt_str(out, self.allowed.map(effect_name));
        out.extend_from_slice(b",\"status\":");
        match self.status {
            Some(s) => write_digits(out, u64::from(s), 1),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"reason\":");
        json_opt_str(out, self.reason.as_deref());
        out.extend_from_slice(b",\"principal\":");
        match &self.principal {
            Some(p) => p.write_direct(with_attrs, out),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"resources\":[");
        for (i, r) in self.resources.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            r.write_direct(with_attrs, out);
        }
        out.extend_from_slice(b"],\"policyRevision\":");
        json_str(out, self.policy_revision.as_deref().unwrap_or_default());
        out.extend_from_slice(b",\"requestId\":");
        json_opt_str(out, self.request_id.as_deref().and_then(request_id));
        out.extend_from_slice(b",\"traceId\":");
        json_opt_str(out, self.trace_id.as_deref().filter(|t| is_trace_id(t)));
        if let Some(p) = &self.plan {
            p.write_direct(with_attrs, out);
        }
        out.push(b'}');
    }
}

impl PrincipalRecord {
    /// The line's `principal` object (attributes only `with_attrs`).
    fn write_direct(&self, with_attrs: bool, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"id\":");
        json_str(out, &self.id);
        out.extend_from_slice(b",\"roles\":");
        json_strs(out, self.roles.iter().map(|r| &**r));
        out.extend_from_slice(b",\"attr\":");
        json_attr(out, self.attr.as_ref().filter(|_| with_attrs));
        out.push(b'}');
    }
}

impl ResourceRecord {
    /// One object of the line's `resources` (attributes only `with_attrs`), with its
    /// actions.
    fn write_direct(&self, with_attrs: bool, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"kind\":");
        json_str(out, &self.kind);
        out.extend_from_slice(b",\"id\":");
        json_str(out, &self.id);
        out.extend_from_slice(b",\"policyVersion\":");
        json_str(out, &self.policy_version);
        out.extend_from_slice(b",\"scope\":");
        json_str(out, &self.scope);
        out.extend_from_slice(b",\"attr\":");
        json_attr(out, self.attr.as_ref().filter(|_| with_attrs));
        out.extend_from_slice(b",\"actions\":[");
        for (j, a) in self.actions.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            a.write_direct(out);
        }
        out.extend_from_slice(b"]}");
    }
}

impl ActionRecord {
    /// One object of a resource's `actions`.
    fn write_direct(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"action\":");
        json_str(out, &self.action);
        out.extend_from_slice(b",\"effect\":");
        json_str(out, effect_name(self.allowed));
        out.extend_from_slice(b",\"policy\":");
        json_opt_str(out, self.policy.as_deref());
        out.extend_from_slice(b",\"scope\":");
        json_opt_str(out, self.scope.as_deref());
        out.extend_from_slice(b",\"rule\":");
        json_opt_str(out, self.rule.as_deref());
        out.push(b'}');
    }
}

impl PlanRecord {
    /// The line's `plan` member, comma first (the condition only `with_attrs`).
    fn write_direct(&self, with_attrs: bool, out: &mut Vec<u8>) {
        out.extend_from_slice(b",\"plan\":{\"actions\":");
        json_strs(out, self.actions.iter().map(String::as_str));
        out.extend_from_slice(b",\"filter\":");
        json_str(out, &self.filter);
        out.extend_from_slice(b",\"condition\":");
        json_opt_str(out, self.condition.as_deref().filter(|_| with_attrs));
        out.push(b'}');
    }
}

/// A decision's effect as the line names it.
fn effect_name(allowed: bool) -> &'static str {
    if allowed { "allow" } else { "deny" }
}

/// `s` as a JSON string: copied whole when nothing needs escaping, else escaped as
/// serde_json does.
fn json_str(out: &mut Vec<u8>, s: &str) {
    if needs_escape(s.as_bytes()) {
        // Writing to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    } else {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    }
}

/// Whether serde_json escapes any byte of `s`: a control character (below 0x20), `"` or
/// `\\`. Eight bytes at a time (the last word overlaps the one before it; strings under
/// eight bytes are padded with spaces), without a loop over bytes.
fn needs_escape(s: &[u8]) -> bool {
    /// Spaces: bytes that need no escape, to pad short strings with.
    const SPACES: u64 = 0x2020_2020_2020_2020;
    let n = s.len();
    if n < 8 {
        let x = match n {
            0 => return false,
            1 => u64::from(s[0]) | SPACES << 8,
            2 | 3 => {
                let (lo, hi) = (u16_at(s, 0), u16_at(s, n - 2));
                u64::from(lo) | u64::from(hi) << 16 | SPACES << 32
            }
            _ => u64::from(u32_at(s, 0)) | u64::from(u32_at(s, n - 4)) << 32,
        };
        return word_needs_escape(x);
    }
    let mut i = 0;
    while i + 8 <= n {
        if word_needs_escape(u64_at(s, i)) {
            return true;
        }
        i += 8;
    }
    i < n && word_needs_escape(u64_at(s, n - 8))
}

/// Whether a byte of `x` is below 0x20, `"` or `\\`: `(x - n * 0x0101..) & !x & 0x8080..`
/// is non-zero exactly when a byte of `x` is below `n` (for `n` up to 0x80), and a byte
/// equal to `c` is a zero byte of `x ^ c * 0x0101..`.
#[inline]
fn word_needs_escape(x: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH;
    let quote = x ^ (ONES * u64::from(b'"'));
    let backslash = x ^ (ONES * u64::from(b'\\'));
    below(x, 0x20) | below(quote, 1) | below(backslash, 1) != 0
}

fn u64_at(s: &[u8], i: usize) -> u64 {
    let mut b = [0; 8];
    b.copy_from_slice(&s[i..i + 8]);
    u64::from_le_bytes(b)
}

fn u32_at(s: &[u8], i: usize) -> u32 {
    let mut b = [0; 4];
    b.copy_from_slice(&s[i..i + 4]);
    u32::from_le_bytes(b)
}

fn u16_at(s: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([s[i], s[i + 1]])
}

fn json_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => json_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

fn json_strs<'a>(out: &mut Vec<u8>, items: impl Iterator<Item = &'a str>) {
    out.push(b'[');
    for (i, s) in items.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json_str(out, s);
    }
    out.push(b']');
}

fn json_attr(out: &mut Vec<u8>, attr: Option<&Attributes>) {
    let written = attr.is_some_and(|a| serde_json::to_writer(&mut *out, &a.json()).is_ok());
    if !written {
        out.extend_from_slice(b"null");
    }
}

/// `n` in decimal, zero-padded to `width` digits.
fn write_digits(out: &mut Vec<u8>, n: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let (mut n, mut i) = (n, buf.len());
    while n > 0 || buf.len() - i < width {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend_from_slice(&buf[i..]);
}

/// `t` as RFC 3339 UTC with microseconds (`2023-11-14T22:13:20.123000Z`); times before
/// 1970 are written as the epoch.
#[cfg(test)]
fn write_time(out: &mut Vec<u8>, t: SystemTime) {
    TimeCache::default().write(out, t);
}

/// Writes times, keeping the text of the last second seen: records come in time order,
/// so most lines only add their microseconds.
#[derive(Debug, Default)]
pub(crate) struct TimeCache {
    /// The second whose text `prefix` holds.
    second: Option<u64>,
    /// `2023-11-14T22:13:20.`
    prefix: Vec<u8>,
}

impl TimeCache {
    /// `t` as RFC 3339 UTC with microseconds (`2023-11-14T22:13:20.123000Z`); times before
    /// 1970 are written as the epoch.
    fn write(&mut self, out: &mut Vec<u8>, t: SystemTime) {
        let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let secs = d.as_secs();
        if self.second != Some(secs) {
            self.prefix.clear();
            write_second(&mut self.prefix, secs);
            self.second = Some(secs);
        }
        out.extend_from_slice(&self.prefix);
        // The six digits of the microseconds, two at a time, and the zone.
        let pair = |n: u32| {
            let n = (n % 100) as u8;
            [b'0' + n / 10, b'0' + n % 10]
        };
        let micros = d.subsec_micros();
        let [a, b] = pair(micros / 10_000);
        let [c, d] = pair(micros / 100);
        let [e, f] = pair(micros);
        out.extend_from_slice(&[a, b, c, d, e, f, b'Z']);
    }
}

/// The date and time of `secs` since the epoch, to the second, and the decimal point.
fn write_second(out: &mut Vec<u8>, secs: u64) {
    let (year, month, day) = civil_from_days(secs / 86_400);
    let rem = secs % 86_400;
    write_digits(out, year, 4);
    out.push(b'-');
    write_digits(out, month, 2);
    out.push(b'-');
    write_digits(out, day, 2);
    out.push(b'T');
    write_digits(out, rem / 3600, 2);
    out.push(b':');
    write_digits(out, rem / 60 % 60, 2);
    out.push(b':');
    write_digits(out, rem % 60, 2);
    out.push(b'.');
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
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

/// Shared strings, serialised as an array of strings.
struct Strs<'a>(&'a [Arc<str>]);

impl Serialize for Strs<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|r| &**r))
    }
}

#[derive(Serialize)]
struct PrincipalLine<'a> {
    id: &'a str,
    roles: Strs<'a>,
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
            attr: Some(Attributes::new(
                || json!({"email": "alice@example.test", "dept": "eng"}),
            )),
        });
        r.resources = vec![ResourceRecord {
            kind: "document".into(),
            id: "1".into(),
            attr: Some(Attributes::new(|| json!({"owner": "alice"}))),
            actions: vec![ActionRecord {
                action: "read".into(),
                allowed: true,
                policy: Some("resource.document.vdefault".into()),
                ..Default::default()
            }],
            ..Default::default()
        }];
        r.policy_revision = Some("rev".into());
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
    fn decided_actions_write_the_root_scope_as_an_empty_string() {
        let mut r = record();
        let rule: Arc<str> = Arc::from("owner-edits");
        r.resources[0].actions = vec![
            ActionRecord::decided("read", true, "resource.document.vdefault", "", None),
            ActionRecord::decided(
                "edit",
                false,
                "resource.document.vdefault/acme",
                "acme",
                Some(&rule),
            ),
        ];
        let line = r.to_line(&LineOptions::default());
        assert!(
            line.contains(r#"{"action":"read","effect":"allow","policy":"resource.document.vdefault","scope":"","rule":null}"#),
            "{line}"
        );
        assert!(
            line.contains(r#"{"action":"edit","effect":"deny","policy":"resource.document.vdefault/acme","scope":"acme","rule":"owner-edits"}"#),
            "{line}"
        );
    }

    /// The serde line (the masked path's first step) for `r`, unmasked.
    fn through_serde(r: &DecisionRecord, include_attributes: bool) -> String {
        // A mask on a key no line has takes the tree path and changes nothing.
        let opts = LineOptions {
            include_attributes,
            masks: vec![MaskPath::parse("principal.absent").unwrap()],
        };
        r.to_line(&opts)
    }

    #[test]
    fn the_direct_line_is_the_serde_line() {
        let mut records = vec![record(), DecisionRecord::new(Origin::ExtAuthz, "")];
        let mut odd = record();
        odd.allowed = Some(true);
        odd.status = Some(200);
        odd.reason = Some("tab\there \"quoted\" back\\slash \u{1} é ☃ \u{7f}".into());
        odd.principal.as_mut().unwrap().roles = vec![Arc::from("a\"b"), Arc::from("")];
        odd.resources.push(ResourceRecord {
            kind: "k\n".into(),
            scope: "acme.corp".into(),
            policy_version: "v1".into(),
            actions: vec![
                ActionRecord::decided("x", false, "NO_MATCH", "", None),
                ActionRecord::decided("y", true, "p", "acme", Some(&Arc::from("r\u{0}"))),
            ],
            ..Default::default()
        });
        odd.principal.as_mut().unwrap().id = format!("{}\u{2028}\"{}", "p".repeat(5000), "\n");
        odd.resources[0].id = "\u{1b}[31mred\u{1b}[0m \u{2029} 🦀".into();
        odd.resources[0].actions[0].rule = Some(Arc::from("\\\\".repeat(9)));
        odd.request_id = Some("req-1".into());
        odd.trace_id = Some("not a trace id".into());
        odd.plan = Some(PlanRecord {
            actions: vec!["read".into(), "".into()],
            filter: "KIND_ALWAYS_ALLOWED".into(),
            condition: Some("c".into()),
        });
        odd.time = UNIX_EPOCH + Duration::from_micros(253_402_300_799_999_999);
        records.push(odd);
        for r in &records {
            for with_attrs in [false, true] {
                let opts = LineOptions {
                    include_attributes: with_attrs,
                    masks: Vec::new(),
                };
                assert_eq!(r.to_line(&opts), through_serde(r, with_attrs));
            }
        }
    }

    #[test]
    fn masked_lines_differ_from_direct_lines_only_where_masked() {
        let mut r = record();
        let awkward = "a\u{2028}b\"c\\d\u{1}é🦀".repeat(50);
        let email = awkward.clone();
        r.principal.as_mut().unwrap().attr = Some(Attributes::new(
            move || json!({"email": email, "dept": "eng"}),
        ));
        r.reason = Some(awkward.clone());
        let opts = |masks: &[&str]| LineOptions {
            include_attributes: true,
            masks: masks.iter().map(|m| MaskPath::parse(m).unwrap()).collect(),
        };
        let direct = r.to_line(&opts(&[]));
        let escaped = serde_json::to_string(&awkward).unwrap();
        assert!(
            direct.contains(&format!(r#""reason":{escaped}"#)),
            "{direct}"
        );
        let email_field = format!(r#""email":{escaped}"#);
        assert!(direct.contains(&email_field), "{direct}");
        assert_eq!(
            r.to_line(&opts(&["principal.attr.email"])),
            direct.replacen(&email_field, r#""email":"***""#, 1)
        );
        assert_eq!(
            r.to_line(&opts(&["resource.id", "principal.id"])),
            direct
                .replacen(r#""id":"alice""#, r#""id":"***""#, 1)
                .replacen(r#""id":"1""#, r#""id":"***""#, 1)
        );
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let mut strings: Vec<String> = vec![
            String::new(),
            "plain".into(),
            "\u{2028}\u{2029} line separators stay raw".into(),
            "é ☃ 🦀 \u{7f} \u{80} \u{ff}".into(),
            "x".repeat(100_000),
            format!("{}\"", "y".repeat(100_000)),
            format!("{}\u{1f}{}", "z".repeat(4095), "z".repeat(4096)),
        ];
        // Every ASCII byte and a few non-ASCII characters at every position of strings
        // from 1 to 17 bytes: the first word, a whole word, the rest after a word.
        let specials = (0u8..0x80).map(char::from).chain(['é', '\u{2028}', '🦀']);
        for c in specials {
            for len in 1..=17 {
                for at in 0..len {
                    let mut s = "a".repeat(at);
                    s.push(c);
                    s.push_str(&"b".repeat(len - at - 1));
                    strings.push(s);
                }
            }
        }
        for s in &strings {
            let mut ours = Vec::new();
            json_str(&mut ours, s);
            let serde = serde_json::to_string(s).unwrap();
            assert_eq!(String::from_utf8(ours).unwrap(), serde, "{s:?}");
            assert_eq!(
                needs_escape(s.as_bytes()),
                serde.len() != s.len() + 2,
                "copied whole exactly when serde_json escapes nothing: {s:?}"
            );
        }
    }

    #[test]
    fn cached_seconds_write_the_same_times() {
        let mut cache = TimeCache::default();
        let base = 1_700_000_000_000_000_u64;
        // In order within a second, across seconds and days, and back in time.
        let steps = [
            0,
            1,
            999_999,
            1_000_000,
            1_000_001,
            86_400_000_000,
            5,
            0,
            3_600_000_123,
        ];
        for micros in steps.iter().map(|s| base + s) {
            let t = UNIX_EPOCH + Duration::from_micros(micros);
            let mut ours = Vec::new();
            cache.write(&mut ours, t);
            let mut fresh = Vec::new();
            write_time(&mut fresh, t);
            assert_eq!(ours, fresh, "{micros}");
        }
    }

    #[test]
    fn times_are_written_as_chrono_writes_them() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut times = vec![0, 1, 951_782_400_000_000, 4_107_542_399_999_999];
        for _ in 0..2000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            times.push(seed % 253_402_300_800_000_000);
        }
        for micros in times {
            let t = UNIX_EPOCH + Duration::from_micros(micros);
            let mut ours = Vec::new();
            write_time(&mut ours, t);
            let chrono = chrono::DateTime::<chrono::Utc>::from(t)
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
            assert_eq!(String::from_utf8(ours).unwrap(), chrono, "{micros}");
        }
    }

    #[test]
    fn request_ids() {
        assert_eq!(request_id("abc-123"), Some("abc-123"));
        assert_eq!(request_id(&"a".repeat(129)), None);
    }
}
