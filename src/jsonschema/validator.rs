//! The validator: schema compilation (`$ref` resolution, metaschema checks) and validation
//! of CEL values with the wording of santhosh-tekuri/jsonschema v5.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;

use regex::Regex;
use serde_json::Value as Json;

use crate::cel::{Key, MapValue, Value};
use crate::errors::{Errors, Report};

/// How deeply subschemas may nest in a document.
const MAX_SCHEMA_DEPTH: usize = 256;

/// How many schemas validation may apply one inside another (across values and `$ref`s).
const MAX_APPLY_DEPTH: usize = 1024;

/// Stack that compiling or validating one schema may use: deeper structures are reported, not
/// followed. Well within the 2 MiB of a spawned or Tokio worker thread.
const STACK_BUDGET: usize = 1024 * 1024;

/// The directory of a Cerbos store that holds schemas, as it appears in error messages.
const SCHEMA_DIR: &str = "_schemas";

// === Public API ===

/// One violation of a schema by an attribute value.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SchemaViolation {
    /// Location of the offending value, as the validator writes it: a JSON pointer whose
    /// segments are also URL-path escaped (`/department`, `/a%20b`), or `""` for the root.
    path: String,
    /// What is wrong, in the validator's words (`expected string, but got number`).
    pub message: String,
}

impl SchemaViolation {
    /// The path as Cerbos reports it: `/` for the root, otherwise [`SchemaViolation::path`].
    pub fn cerbos_path(&self) -> &str {
        if self.path.is_empty() {
            "/"
        } else {
            &self.path
        }
    }
}

impl fmt::Display for SchemaViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.cerbos_path(), self.message)
    }
}

/// Why a schema cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaErrorKind {
    /// The requested schema is not in the store (or is not a store reference at all).
    #[error("schema {location} doesn't exist")]
    NotFound {
        /// The missing schema: `_schemas/<path>` for store references, the path of a `file:`
        /// URL, or the reference itself.
        location: String,
    },
    /// A `$ref` points to a schema that is not in the store.
    #[error("schema {location} referenced by {referrer} doesn't exist")]
    RefNotFound {
        /// The missing schema, written as for [`SchemaErrorKind::NotFound`].
        location: String,
        /// URL of the document that holds the `$ref`.
        referrer: String,
    },
    /// A document is not a valid schema, uses an unsupported keyword, or has a `$ref` whose
    /// fragment does not resolve.
    #[error("jsonschema {schema} compilation failed: {reason}")]
    Invalid {
        /// URL of the document at fault (`cerbos:///invalid.json`).
        schema: String,
        /// What is wrong, with the location inside the document.
        reason: String,
    },
    /// Two documents were given for the same store path.
    #[error("schema {location} is defined more than once")]
    Duplicate {
        /// The path, as `_schemas/<path>`.
        location: String,
    },
}

/// A schema that failed to load or compile: the reference that was asked for and the reason.
///
/// The message is the reason alone, worded as Cerbos words it, so that
/// `format!("Failed to load principal schema {reference:?}: {err}")` reproduces Cerbos's
/// validation error for an unusable schema.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct SchemaError {
    schema: String,
    kind: SchemaErrorKind,
}

impl SchemaError {
    fn new(schema: impl Into<String>, kind: SchemaErrorKind) -> Self {
        SchemaError {
            schema: schema.into(),
            kind,
        }
    }

    /// The schema that was asked for (`cerbos:///principal.json`).
    pub fn schema(&self) -> &str {
        &self.schema
    }
}

/// Every schema of a store that failed to compile, ordered by store path; never empty.
pub type SchemaErrors = Errors<SchemaError>;

impl Report for SchemaError {
    /// `resources/leave_request.json: <what is wrong>`.
    fn report(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.schema, self.kind)
    }
}

/// The compiled schemas of a store, keyed by their path under `_schemas/`.
#[derive(Clone, Debug, Default)]
pub struct SchemaStore {
    schemas: BTreeMap<String, Result<CompiledSchema, SchemaError>>,
}

impl SchemaStore {
    /// Compiles every document; fails closed with the error of each document that does not
    /// compile (invalid schema, unsupported keyword, unresolvable `$ref`).
    ///
    /// Paths are relative to the store's `_schemas/` directory (`principal.json`,
    /// `resources/leave_request.json`).
    pub fn new(schemas: Vec<(String, Json)>) -> Result<SchemaStore, SchemaErrors> {
        let store = SchemaStore::new_lenient(schemas);
        match Errors::from_vec(store.errors().cloned().collect()) {
            None => Ok(store),
            Some(errors) => Err(errors),
        }
    }

    /// Compiles every document, keeping the error of each one that does not compile; those
    /// errors are reported when the schema is [loaded](SchemaStore::load), as Cerbos does.
    pub fn new_lenient(schemas: Vec<(String, Json)>) -> SchemaStore {
        let mut index = StoreIndex::default();
        let mut results = BTreeMap::new();
        for (path, value) in schemas {
            let key = normalize_rel_path(&path);
            if index.by_path.contains_key(&key) {
                let err = SchemaError::new(
                    cerbos_url(&key),
                    SchemaErrorKind::Duplicate {
                        location: format!("{SCHEMA_DIR}/{key}"),
                    },
                );
                results.insert(key, Err(err));
                continue;
            }
            index.add(key, value);
        }
        index.add_metaschemas_if_referenced();
        for (entry, compiled) in index.docs.iter().zip(compile_all(&index)) {
            if entry.builtin {
                continue;
            }
            let compiled = compiled.map_err(|kind| SchemaError::new(entry.url.clone(), kind));
            results.entry(entry.path.clone()).or_insert(compiled);
        }
        SchemaStore { schemas: results }
    }

    /// The compiled schema for a `cerbos:///path.json` URL or a bare store path
    /// (`principal.json`), if it exists and compiled.
    pub fn get(&self, url: &str) -> Option<&CompiledSchema> {
        let u = UriRef::parse(url);
        if u.fragment.is_some_and(|f| !f.is_empty()) {
            return None;
        }
        let key = match u.scheme {
            Some(s) if s.eq_ignore_ascii_case("cerbos") => {
                normalize_rel_path(&percent_decode(u.path))
            }
            None => normalize_rel_path(&percent_decode(url.split('#').next().unwrap_or(url))),
            Some(_) => return None,
        };
        self.schemas.get(&key)?.as_ref().ok()
    }

    /// Resolves a policy's schema reference the way Cerbos does: only `cerbos:///` URLs point
    /// into the store; a bare path, a `file:` or an `http(s):` URL is reported missing. The
    /// error of a document that did not compile is returned as is.
    pub fn load(&self, url: &str) -> Result<&CompiledSchema, SchemaError> {
        let u = UriRef::parse(url);
        let is_cerbos = u.scheme.is_some_and(|s| s.eq_ignore_ascii_case("cerbos"));
        if !is_cerbos {
            return Err(SchemaError::new(
                url,
                SchemaErrorKind::NotFound {
                    location: missing_location(url),
                },
            ));
        }
        if let Some(fragment) = u.fragment.filter(|f| !f.is_empty()) {
            return Err(SchemaError::new(
                url,
                SchemaErrorKind::Invalid {
                    schema: url.to_owned(),
                    reason: format!(
                        "references to a part of a schema ({}) are not supported",
                        quote(fragment)
                    ),
                },
            ));
        }
        let key = normalize_rel_path(&percent_decode(u.path));
        match self.schemas.get(&key) {
            Some(Ok(schema)) => Ok(schema),
            Some(Err(err)) => Err(SchemaError::new(url, err.kind.clone())),
            None => Err(SchemaError::new(
                url,
                SchemaErrorKind::NotFound {
                    location: format!("{SCHEMA_DIR}/{key}"),
                },
            )),
        }
    }

    /// The error of every document that did not compile, ordered by path.
    fn errors(&self) -> impl Iterator<Item = &SchemaError> {
        self.schemas.values().filter_map(|r| r.as_ref().err())
    }

    /// Store paths of the documents that compiled.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.schemas
            .iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(k, _)| k.as_str())
    }
}

/// A compiled schema document, ready to validate attribute values.
#[derive(Clone)]
pub struct CompiledSchema {
    url: String,
    nodes: Arc<[Node]>,
    root: NodeId,
}

impl fmt::Debug for CompiledSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledSchema")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl CompiledSchema {
    /// Validates an attribute value and returns every violation (none when it is valid).
    ///
    /// `null` stands for absent attributes and is validated as an empty object, as in Cerbos.
    /// Integers and doubles are JSON numbers (an integral double satisfies `integer`); bytes,
    /// timestamps, durations and other CEL-only values are checked as their JSON strings.
    pub fn validate(&self, attrs: &Value) -> Vec<SchemaViolation> {
        let empty;
        let attrs = if matches!(attrs, Value::Null) {
            empty = Value::map(MapValue::new());
            &empty
        } else {
            attrs
        };
        self.violations(attrs)
    }

    /// Validates an instance as the JSON Schema specification reads it (`null` is `null`).
    fn violations(&self, attrs: &Value) -> Vec<SchemaViolation> {
        let mut run = Run {
            nodes: &self.nodes,
            out: Vec::new(),
            scope: Vec::new(),
            depth: 0,
            stack_base: stack_address(),
        };
        run.apply(self.root, attrs, "", &mut Vec::new());
        run.out
    }

    #[cfg(test)]
    /// Whether the value satisfies the schema.
    fn is_valid(&self, attrs: &Value) -> bool {
        self.validate(attrs).is_empty()
    }
}

// === Drafts ===

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Draft {
    V4,
    V6,
    V7,
    V2019,
    V2020,
}

impl Draft {
    fn from_url(url: &str) -> Option<Draft> {
        let u = url.trim_end_matches('#');
        let u = u
            .strip_prefix("https://")
            .or_else(|| u.strip_prefix("http://"))?;
        match u {
            "json-schema.org/draft-04/schema" => Some(Draft::V4),
            "json-schema.org/draft-06/schema" => Some(Draft::V6),
            "json-schema.org/draft-07/schema" => Some(Draft::V7),
            "json-schema.org/draft/2019-09/schema" => Some(Draft::V2019),
            "json-schema.org/draft/2020-12/schema" | "json-schema.org/schema" => Some(Draft::V2020),
            _ => None,
        }
    }

    fn meta_url(self) -> &'static str {
        match self {
            Draft::V4 => "http://json-schema.org/draft-04/schema",
            Draft::V6 => "http://json-schema.org/draft-06/schema",
            Draft::V7 => "http://json-schema.org/draft-07/schema",
            Draft::V2019 => "https://json-schema.org/draft/2019-09/schema",
            Draft::V2020 => "https://json-schema.org/draft/2020-12/schema",
        }
    }

    /// How the metaschema refers back to itself for subschemas.
    fn sub_ref(self) -> &'static str {
        match self {
            Draft::V2020 => "/$dynamicRef",
            Draft::V2019 => "/$recursiveRef",
            _ => "/$ref",
        }
    }

    /// Where the metaschema describes keyword `kw`.
    fn kw_meta(self, kw: &str) -> String {
        let vocab = match self {
            Draft::V2020 => match kw {
                "$id" | "$schema" | "$ref" | "$anchor" | "$dynamicRef" | "$dynamicAnchor"
                | "$vocabulary" | "$comment" | "$defs" => Some(0),
                "prefixItems"
                | "items"
                | "contains"
                | "additionalProperties"
                | "properties"
                | "patternProperties"
                | "dependentSchemas"
                | "propertyNames"
                | "if"
                | "then"
                | "else"
                | "allOf"
                | "anyOf"
                | "oneOf"
                | "not" => Some(1),
                "unevaluatedItems" | "unevaluatedProperties" => Some(2),
                "format" => Some(5),
                "contentEncoding" | "contentMediaType" | "contentSchema" => Some(6),
                _ => validation_or_meta(kw).map(|v| v + 3),
            },
            Draft::V2019 => match kw {
                "$id" | "$schema" | "$anchor" | "$ref" | "$recursiveRef" | "$recursiveAnchor"
                | "$vocabulary" | "$comment" | "$defs" => Some(0),
                "additionalItems"
                | "unevaluatedItems"
                | "items"
                | "contains"
                | "additionalProperties"
                | "unevaluatedProperties"
                | "properties"
                | "patternProperties"
                | "dependentSchemas"
                | "propertyNames"
                | "if"
                | "then"
                | "else"
                | "allOf"
                | "anyOf"
                | "oneOf"
                | "not" => Some(1),
                "format" => Some(4),
                "contentEncoding" | "contentMediaType" | "contentSchema" => Some(5),
                _ => validation_or_meta(kw).map(|v| v + 2),
            },
            _ => None,
        };
        let kw = ptr_token(kw);
        match vocab {
            Some(i) => format!("/allOf/{i}/$ref/properties/{kw}"),
            None => format!("/properties/{kw}"),
        }
    }
}

/// 0 for the validation vocabulary, 1 for meta-data, `None` for anything else.
fn validation_or_meta(kw: &str) -> Option<usize> {
    match kw {
        "type" | "const" | "enum" | "multipleOf" | "maximum" | "exclusiveMaximum" | "minimum"
        | "exclusiveMinimum" | "maxLength" | "minLength" | "pattern" | "maxItems" | "minItems"
        | "uniqueItems" | "maxContains" | "minContains" | "maxProperties" | "minProperties"
        | "required" | "dependentRequired" => Some(0),
        "title" | "description" | "default" | "deprecated" | "readOnly" | "writeOnly"
        | "examples" => Some(1),
        _ => None,
    }
}

// === Store index: documents, resources, anchors ===

#[derive(Clone, Debug)]
struct Loc {
    base: String,
    draft: Draft,
}

#[derive(Debug)]
struct DocIndex {
    locs: HashMap<String, Loc>,
    anchors: HashMap<(String, String), String>,
    /// `$dynamicAnchor`s: (resource base, name) to pointer (also in `anchors`).
    dynamic_anchors: HashMap<(String, String), String>,
    /// Resource roots that declare `$schema`: the pointer and, for a metaschema other than a
    /// standard draft's, its URL (its `$vocabulary` decides which keywords apply).
    metaschemas: Vec<(String, Option<String>)>,
    root_draft: Draft,
}

#[derive(Debug)]
struct DocEntry {
    path: String,
    url: String,
    value: Json,
    scan: Result<DocIndex, SchemaErrorKind>,
    /// One of the built-in draft 2020-12 metaschema documents, not a store document.
    builtin: bool,
}

#[derive(Debug, Default)]
struct StoreIndex {
    docs: Vec<DocEntry>,
    by_path: HashMap<String, usize>,
    /// Absolute URLs declared with `$id` (and every document's own URL): document and pointer.
    resources: HashMap<String, (usize, String)>,
}

impl StoreIndex {
    fn add(&mut self, path: String, value: Json) {
        let url = cerbos_url(&path);
        self.add_at(path, url, value);
    }

    /// Adds a document retrieved from `url` (the store's documents come from `cerbos:///`).
    fn add_at(&mut self, path: String, url: String, value: Json) {
        self.by_path.insert(path.clone(), self.docs.len());
        self.insert(path, url, value, false);
    }

    /// Adds the draft 2020-12 metaschema documents (`https://json-schema.org/draft/2020-12/...`)
    /// when a document references one of them, as Cerbos's library has them built in.
    fn add_metaschemas_if_referenced(&mut self) {
        if self.docs.iter().any(|d| d.builtin)
            || !self.docs.iter().any(|d| refers_to_metaschema(&d.value, 0))
        {
            return;
        }
        for (url, text) in METASCHEMAS_2020_12 {
            let value = serde_json::from_str(text).expect("a built-in metaschema is valid JSON");
            self.insert(url.to_string(), url.to_string(), value, true);
        }
    }

    fn insert(&mut self, path: String, url: String, value: Json, builtin: bool) {
        let doc = self.docs.len();
        let mut scan = Scan::new(&url);
        let result = scan
            .schema(&value, "", &url, Draft::V2020, "", 0)
            .map(|root_draft| DocIndex {
                locs: scan.locs,
                anchors: scan.anchors,
                dynamic_anchors: scan.dynamic_anchors,
                metaschemas: scan.metaschemas,
                root_draft,
            });
        self.resources.insert(url.clone(), (doc, String::new()));
        for (id, ptr) in scan.ids {
            self.resources.entry(id).or_insert((doc, ptr));
        }
        self.docs.push(DocEntry {
            path,
            url,
            value,
            scan: result,
            builtin,
        });
    }

    fn find_resource(&self, url: &str) -> Option<(usize, String)> {
        if let Some(found) = self.resources.get(url) {
            return Some(found.clone());
        }
        let u = UriRef::parse(url);
        if u.scheme.is_some_and(|s| s.eq_ignore_ascii_case("cerbos")) {
            let key = normalize_rel_path(&percent_decode(u.path));
            return self.by_path.get(&key).map(|&d| (d, String::new()));
        }
        None
    }
}

/// The draft 2020-12 metaschema and its vocabulary metaschemas, vendored from
/// json-schema-org/json-schema-spec (`src/jsonschema/metaschema/`, with its licence).
const METASCHEMAS_2020_12: [(&str, &str); 8] = [
    (
        "https://json-schema.org/draft/2020-12/schema",
        include_str!("metaschema/draft2020-12/schema.json"),
    ),
    (
        "https://json-schema.org/draft/2020-12/meta/core",
        include_str!("metaschema/draft2020-12/meta/core.json"),
    ),
    (
        "https://json-schema.org/draft/2020-12/meta/applicator",
        include_str!("metaschema/draft2020-12/meta/applicator.json"),
    ),
    (
        "https://json-schema.org/draft/2020-12/meta/unevaluated",
        include_str!("metaschema/draft2020-12/meta/unevaluated.json"),
    ),
    (
        "https://json-schema.org/draft/2020-12/meta/validation",
        include_str!("metaschema/draft2020-12/meta/validation.json"),
    ),
    (
        "https://json-schema.org/draft/2020-12/meta/meta-data",
        include_str!("metaschema/draft2020-12/meta/meta-data.json"),
    ),
    (
        "https://json-schema.org/draft/2020-12/meta/format-annotation",
        include_str!("metaschema/draft2020-12/meta/format-annotation.json"),
    ),
    (
        "https://json-schema.org/draft/2020-12/meta/content",
        include_str!("metaschema/draft2020-12/meta/content.json"),
    ),
];

/// Whether a `$ref`, `$dynamicRef` or (custom metaschema) `$schema` in `v` names a draft
/// 2020-12 metaschema document. Bounded by the nesting limit.
fn refers_to_metaschema(v: &Json, depth: usize) -> bool {
    if depth > MAX_SCHEMA_DEPTH {
        return false;
    }
    match v {
        Json::Object(o) => o.iter().any(|(k, v)| match (k.as_str(), v) {
            ("$ref" | "$dynamicRef", Json::String(s)) => {
                s.starts_with("https://json-schema.org/draft/2020-12/")
            }
            _ => refers_to_metaschema(v, depth + 1),
        }),
        Json::Array(a) => a.iter().any(|v| refers_to_metaschema(v, depth + 1)),
        _ => false,
    }
}

/// The draft 2020-12 vocabularies a schema's metaschema enables (`$vocabulary`); the
/// standard drafts enable all of them.
#[derive(Clone, Copy, Debug)]
struct Vocabularies {
    applicator: bool,
    unevaluated: bool,
    validation: bool,
    format: bool,
    content: bool,
}

impl Vocabularies {
    const ALL: Vocabularies = Vocabularies {
        applicator: true,
        unevaluated: true,
        validation: true,
        format: true,
        content: true,
    };

    /// Reads a metaschema's `$vocabulary`: a vocabulary it does not know and requires
    /// (`true`) makes the schema unusable; one it does not require is ignored.
    fn from_metaschema(vocabulary: &serde_json::Map<String, Json>) -> Result<Self, String> {
        let mut v = Vocabularies {
            applicator: false,
            unevaluated: false,
            validation: false,
            format: false,
            content: false,
        };
        for (uri, required) in vocabulary {
            let name = uri.strip_prefix("https://json-schema.org/draft/2020-12/vocab/");
            match name {
                Some("core" | "meta-data") => {}
                Some("applicator") => v.applicator = true,
                Some("unevaluated") => v.unevaluated = true,
                Some("validation") => v.validation = true,
                Some("format-annotation" | "format-assertion") => v.format = true,
                Some("content") => v.content = true,
                _ if required.as_bool() == Some(false) => {}
                _ => return Err(format!("unsupported vocabulary {}", quote(uri))),
            }
        }
        Ok(v)
    }

    /// Whether keyword `kw` belongs to an enabled vocabulary (core and unknown keywords do).
    fn allows(&self, kw: &str) -> bool {
        match kw {
            "properties"
            | "patternProperties"
            | "additionalProperties"
            | "propertyNames"
            | "dependentSchemas"
            | "prefixItems"
            | "items"
            | "contains"
            | "allOf"
            | "anyOf"
            | "oneOf"
            | "not"
            | "if"
            | "then"
            | "else" => self.applicator,
            "unevaluatedProperties" | "unevaluatedItems" => self.unevaluated,
            "type" | "const" | "enum" | "multipleOf" | "maximum" | "exclusiveMaximum"
            | "minimum" | "exclusiveMinimum" | "maxLength" | "minLength" | "pattern"
            | "maxItems" | "minItems" | "uniqueItems" | "maxContains" | "minContains"
            | "maxProperties" | "minProperties" | "required" | "dependentRequired" => {
                self.validation
            }
            "format" => self.format,
            "contentEncoding" | "contentMediaType" | "contentSchema" => self.content,
            _ => true,
        }
    }
}

fn cerbos_url(path: &str) -> String {
    format!("cerbos:///{path}")
}

/// `a/./b.json`, `/a/b.json` and `a\b.json` all name `a/b.json`.
fn normalize_rel_path(path: &str) -> String {
    let path = path.replace('\\', "/");
    let mut parts: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    parts.join("/")
}

/// How Cerbos names a schema it cannot find.
fn missing_location(url: &str) -> String {
    let u = UriRef::parse(url);
    match u.scheme {
        Some(s) if s.eq_ignore_ascii_case("cerbos") => format!(
            "{SCHEMA_DIR}/{}",
            normalize_rel_path(&percent_decode(u.path))
        ),
        Some(s) if s.eq_ignore_ascii_case("file") => percent_decode(u.path),
        _ => url.split('#').next().unwrap_or(url).to_owned(),
    }
}

// === URI references (RFC 3986) ===

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct UriRef<'a> {
    scheme: Option<&'a str>,
    authority: Option<&'a str>,
    path: &'a str,
    query: Option<&'a str>,
    fragment: Option<&'a str>,
}

impl<'a> UriRef<'a> {
    fn parse(s: &'a str) -> UriRef<'a> {
        let (rest, fragment) = match s.split_once('#') {
            Some((r, f)) => (r, Some(f)),
            None => (s, None),
        };
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (scheme, rest) = match rest.split_once(':') {
            Some((s, r)) if is_scheme(s) => (Some(s), r),
            _ => (None, rest),
        };
        let (authority, path) = match rest.strip_prefix("//") {
            Some(r) => {
                let end = r.find('/').unwrap_or(r.len());
                (Some(&r[..end]), &r[end..])
            }
            None => (None, rest),
        };
        UriRef {
            scheme,
            authority,
            path,
            query,
            fragment,
        }
    }
}

fn is_scheme(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

fn compose(
    scheme: Option<&str>,
    authority: Option<&str>,
    path: &str,
    query: Option<&str>,
    fragment: Option<&str>,
) -> String {
    let mut out = String::new();
    if let Some(s) = scheme {
        out.push_str(s);
        out.push(':');
    }
    if let Some(a) = authority {
        out.push_str("//");
        out.push_str(a);
    }
    out.push_str(path);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

/// Resolves `reference` against `base` (RFC 3986, section 5.2).
fn resolve_uri(base: &str, reference: &str) -> String {
    let b = UriRef::parse(base);
    let r = UriRef::parse(reference);
    if r.scheme.is_some() {
        let path = remove_dot_segments(r.path);
        return compose(r.scheme, r.authority, &path, r.query, r.fragment);
    }
    if r.authority.is_some() {
        let path = remove_dot_segments(r.path);
        return compose(b.scheme, r.authority, &path, r.query, r.fragment);
    }
    if r.path.is_empty() {
        let query = r.query.or(b.query);
        return compose(b.scheme, b.authority, b.path, query, r.fragment);
    }
    let merged = if r.path.starts_with('/') {
        r.path.to_owned()
    } else if b.authority.is_some() && b.path.is_empty() {
        format!("/{}", r.path)
    } else {
        match b.path.rfind('/') {
            Some(i) => format!("{}{}", &b.path[..=i], r.path),
            None => r.path.to_owned(),
        }
    };
    let path = remove_dot_segments(&merged);
    compose(b.scheme, b.authority, &path, r.query, r.fragment)
}

fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let absolute = path.starts_with('/');
    let segments: Vec<&str> = path.split('/').collect();
    let last = segments.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "." => trailing_slash = i == last,
            ".." => {
                if out.len() > usize::from(absolute) {
                    out.pop();
                }
                trailing_slash = i == last;
            }
            s => {
                out.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut result = out.join("/");
    if absolute && !result.starts_with('/') {
        result.insert(0, '/');
    }
    if trailing_slash && !result.ends_with('/') {
        result.push('/');
    }
    result
}

fn split_fragment(url: &str) -> (&str, Option<&str>) {
    match url.split_once('#') {
        Some((u, f)) => (u, Some(f)),
        None => (url, None),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex_val(bytes[i + 1]), hex_val(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// A JSON pointer token (`~` and `/` escaped).
fn ptr_token(s: &str) -> Cow<'_, str> {
    if s.contains(['~', '/']) {
        Cow::Owned(s.replace('~', "~0").replace('/', "~1"))
    } else {
        Cow::Borrowed(s)
    }
}

/// Go's `url.PathEscape`, which the validator applies to every location segment.
fn path_escape(s: &str) -> Cow<'_, str> {
    let keep = |b: u8| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'_' | b'.' | b'~' | b'$' | b'&' | b'+' | b':' | b'=' | b'@'
            )
    };
    if s.bytes().all(keep) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for b in s.bytes() {
        if keep(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Cow::Owned(out)
}

/// A location segment as the validator writes it: pointer-escaped, then path-escaped.
fn location_token(s: &str) -> String {
    path_escape(&ptr_token(s)).into_owned()
}

/// A JSON pointer into a schema document, written as the validator writes locations.
fn display_ptr(ptr: &str) -> String {
    ptr.split('/')
        .map(|t| path_escape(t).into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

// === Scan: the metaschema's structural rules, plus $id and anchor indexing ===

const SIMPLE_TYPES: &str =
    r#"value must be one of "array", "boolean", "integer", "null", "number", "object", "string""#;
const ANCHOR_PATTERN: &str = "^[A-Za-z_][-A-Za-z0-9._]*$";
const ID_PATTERN: &str = "^[^#]*#?$";

struct Scan<'a> {
    doc_url: &'a str,
    stack_base: usize,
    locs: HashMap<String, Loc>,
    anchors: HashMap<(String, String), String>,
    dynamic_anchors: HashMap<(String, String), String>,
    ids: Vec<(String, String)>,
    metaschemas: Vec<(String, Option<String>)>,
}

/// Where a value sits: in the document (`ptr`) and in the metaschema (`meta`).
struct At<'p> {
    ptr: &'p str,
    meta: &'p str,
    draft: Draft,
}

impl<'a> Scan<'a> {
    fn new(doc_url: &'a str) -> Self {
        Scan {
            doc_url,
            stack_base: stack_address(),
            locs: HashMap::new(),
            anchors: HashMap::new(),
            dynamic_anchors: HashMap::new(),
            ids: Vec::new(),
            metaschemas: Vec::new(),
        }
    }

    fn invalid(&self, reason: String) -> SchemaErrorKind {
        SchemaErrorKind::Invalid {
            schema: self.doc_url.to_owned(),
            reason,
        }
    }

    /// The library's wording for a value that breaks the metaschema.
    fn meta_err(&self, at: &At<'_>, keyword_path: &str, msg: String) -> SchemaErrorKind {
        self.invalid(format!(
            "{} does not validate with {}#{}{}: {}",
            quote(&display_ptr(at.ptr)),
            at.draft.meta_url(),
            at.meta,
            keyword_path,
            msg
        ))
    }

    fn expect(
        &self,
        v: &Json,
        at: &At<'_>,
        path: &str,
        want: &[&str],
    ) -> Result<(), SchemaErrorKind> {
        if want.iter().any(|t| json_is(v, t)) {
            Ok(())
        } else {
            Err(self.meta_err(
                at,
                path,
                format!(
                    "expected {}, but got {}",
                    want.join(" or "),
                    json_type_name(v)
                ),
            ))
        }
    }

    /// Checks the schema at `ptr`, records it and its subschemas; returns its draft.
    fn schema(
        &mut self,
        v: &Json,
        ptr: &str,
        base: &str,
        draft: Draft,
        meta: &str,
        depth: usize,
    ) -> Result<Draft, SchemaErrorKind> {
        if depth > MAX_SCHEMA_DEPTH || stack_address().abs_diff(self.stack_base) > STACK_BUDGET {
            return Err(self.too_deep(ptr));
        }
        let obj = match v {
            Json::Bool(_) if draft > Draft::V4 => {
                self.record(ptr, base, draft);
                return Ok(draft);
            }
            Json::Object(o) => o,
            other => return Err(self.not_a_schema(other, ptr, meta, draft)),
        };
        let (draft, base) = self.resource(obj, ptr, meta, draft, base)?;
        let at = At { ptr, meta, draft };
        for (k, val) in obj {
            self.keyword(k, val, &at, &base, depth)?;
        }
        Ok(draft)
    }

    #[inline(never)]
    fn too_deep(&self, ptr: &str) -> SchemaErrorKind {
        self.invalid(format!("{} is nested too deeply", quote(&display_ptr(ptr))))
    }

    #[inline(never)]
    fn not_a_schema(&self, v: &Json, ptr: &str, meta: &str, draft: Draft) -> SchemaErrorKind {
        let want = if draft == Draft::V4 {
            "object"
        } else {
            "object or boolean"
        };
        let msg = format!("expected {want}, but got {}", json_type_name(v));
        self.meta_err(&At { ptr, meta, draft }, "/type", msg)
    }

    /// `$schema`, `$id` and anchors: returns the schema's draft and base URI, and records it.
    #[inline(never)]
    fn resource(
        &mut self,
        obj: &serde_json::Map<String, Json>,
        ptr: &str,
        meta: &str,
        draft: Draft,
        base: &str,
    ) -> Result<(Draft, String), SchemaErrorKind> {
        let is_resource_root = ptr.is_empty() || obj.contains_key("$id") || obj.contains_key("id");
        let mut draft = draft;
        if let Some(s) = obj.get("$schema") {
            let sptr = format!("{ptr}/$schema");
            let sat = At {
                ptr: &sptr,
                meta,
                draft,
            };
            let suffix = if draft == Draft::V2020 {
                "/$ref/type"
            } else {
                "/type"
            };
            self.expect(
                s,
                &sat,
                &format!("{}{suffix}", draft.kw_meta("$schema")),
                &["string"],
            )?;
            if is_resource_root {
                let s = s.as_str().unwrap_or_default();
                // Another metaschema is read as draft 2020-12 here; building the schema
                // checks that it is one and applies its vocabularies.
                let custom = Draft::from_url(s).is_none();
                draft = Draft::from_url(s).unwrap_or(Draft::V2020);
                self.metaschemas
                    .push((ptr.to_owned(), custom.then(|| s.to_owned())));
            }
        }
        let at = At { ptr, meta, draft };
        let ignore_siblings = draft <= Draft::V7 && obj.contains_key("$ref");
        let id_kw = if draft == Draft::V4 { "id" } else { "$id" };
        let mut base = base.to_owned();
        if let Some(id) = obj.get(id_kw) {
            let base_before = base.clone();
            base = self.scan_id(id, &at, &base_before, ignore_siblings)?;
        }
        if draft >= Draft::V2019 {
            self.scan_anchors(obj, &at, &base)?;
        }
        self.record(ptr, &base, draft);
        Ok((draft, base))
    }

    /// `$anchor` and (from draft 2020-12) `$dynamicAnchor`: checks each names an anchor and
    /// records it under `base`.
    fn scan_anchors(
        &mut self,
        obj: &serde_json::Map<String, Json>,
        at: &At<'_>,
        base: &str,
    ) -> Result<(), SchemaErrorKind> {
        let (ptr, meta, draft) = (at.ptr, at.meta, at.draft);
        for kw in ["$anchor", "$dynamicAnchor"] {
            if kw == "$dynamicAnchor" && draft < Draft::V2020 {
                continue;
            }
            if let Some(a) = obj.get(kw) {
                let aptr = format!("{ptr}/{kw}");
                let aat = At {
                    ptr: &aptr,
                    meta,
                    draft,
                };
                let prefix = if draft == Draft::V2020 { "/$ref" } else { "" };
                let kwm = draft.kw_meta(kw);
                self.expect(a, &aat, &format!("{kwm}{prefix}/type"), &["string"])?;
                let name = a.as_str().unwrap_or_default();
                if !is_anchor(name) {
                    return Err(self.meta_err(
                        &aat,
                        &format!("{kwm}{prefix}/pattern"),
                        format!("does not match pattern {}", quote(ANCHOR_PATTERN)),
                    ));
                }
                self.anchors
                    .insert((base.to_owned(), name.to_owned()), ptr.to_owned());
                if kw == "$dynamicAnchor" {
                    self.dynamic_anchors
                        .insert((base.to_owned(), name.to_owned()), ptr.to_owned());
                }
            }
        }
        Ok(())
    }

    fn record(&mut self, ptr: &str, base: &str, draft: Draft) {
        self.locs.insert(
            ptr.to_owned(),
            Loc {
                base: base.to_owned(),
                draft,
            },
        );
    }

    /// Checks `$id` and registers the resource it declares; returns the new base URI.
    fn scan_id(
        &mut self,
        id: &Json,
        at: &At<'_>,
        base: &str,
        ignored: bool,
    ) -> Result<String, SchemaErrorKind> {
        let draft = at.draft;
        let kw = if draft == Draft::V4 { "id" } else { "$id" };
        let iptr = format!("{}/{kw}", at.ptr);
        let iat = At {
            ptr: &iptr,
            meta: at.meta,
            draft,
        };
        let kwm = draft.kw_meta(kw);
        let type_path = if draft == Draft::V2020 {
            "/$ref/type"
        } else {
            "/type"
        };
        self.expect(id, &iat, &format!("{kwm}{type_path}"), &["string"])?;
        let id = id.as_str().unwrap_or_default();
        if draft >= Draft::V2019 && id.find('#').is_some_and(|i| i + 1 < id.len()) {
            return Err(self.meta_err(
                &iat,
                &format!("{kwm}/pattern"),
                format!("does not match pattern {}", quote(ID_PATTERN)),
            ));
        }
        if ignored {
            return Ok(base.to_owned());
        }
        if let Some(anchor) = id.strip_prefix('#') {
            self.anchors
                .insert((base.to_owned(), anchor.to_owned()), at.ptr.to_owned());
            return Ok(base.to_owned());
        }
        let resolved = resolve_uri(base, id);
        let (url, fragment) = split_fragment(&resolved);
        self.ids.push((url.to_owned(), at.ptr.to_owned()));
        if let Some(anchor) = fragment.filter(|f| !f.is_empty()) {
            self.anchors
                .insert((url.to_owned(), anchor.to_owned()), at.ptr.to_owned());
        }
        Ok(url.to_owned())
    }

    /// Checks one keyword; recurses into the subschemas it holds.
    fn keyword(
        &mut self,
        k: &str,
        val: &Json,
        at: &At<'_>,
        base: &str,
        depth: usize,
    ) -> Result<(), SchemaErrorKind> {
        let draft = at.draft;
        let v2019 = draft >= Draft::V2019;
        let v2020 = draft == Draft::V2020;
        let shape = match k {
            "$defs" | "dependentSchemas" if v2019 => Sub::Map,
            "definitions" | "properties" | "patternProperties" => Sub::Map,
            "additionalProperties" | "not" => Sub::Single,
            "propertyNames" | "contains" if draft >= Draft::V6 => Sub::Single,
            "if" | "then" | "else" if draft >= Draft::V7 => Sub::Single,
            "unevaluatedProperties" | "unevaluatedItems" | "contentSchema" if v2019 => Sub::Single,
            "additionalItems" if !v2020 => Sub::Single,
            "items" if v2020 => Sub::Single,
            "items" => Sub::LegacyItems,
            "prefixItems" if v2020 => Sub::Array,
            "allOf" | "anyOf" | "oneOf" => Sub::Array,
            "dependencies" => Sub::Dependencies,
            _ => return self.check_keyword(k, val, at),
        };
        let kptr = join_ptr(at.ptr, k);
        let kwm = draft.kw_meta(k);
        let sub = draft.sub_ref();
        match shape {
            Sub::Single => {
                let meta = concat(&[at.meta, &kwm, sub]);
                self.schema(val, &kptr, base, draft, &meta, depth + 1)?;
            }
            Sub::Map => {
                self.check_container(val, &kptr, at, &kwm, "/type", "object")?;
                let meta = concat(&[at.meta, &kwm, "/additionalProperties", sub]);
                for (name, item) in val.as_object().into_iter().flatten() {
                    let p = join_ptr(&kptr, name);
                    self.schema(item, &p, base, draft, &meta, depth + 1)?;
                }
                if k == "patternProperties" {
                    self.check_patterns(val, &kptr, at, &kwm)?;
                }
            }
            Sub::Array => {
                self.check_container(val, &kptr, at, &kwm, "/$ref/type", "array")?;
                let meta = concat(&[at.meta, &kwm, "/$ref/items", sub]);
                for (i, item) in val.as_array().into_iter().flatten().enumerate() {
                    let p = join_ptr(&kptr, &i.to_string());
                    self.schema(item, &p, base, draft, &meta, depth + 1)?;
                }
            }
            Sub::LegacyItems => {
                if let Json::Array(list) = val {
                    let meta = concat(&[at.meta, &kwm, "/anyOf/1/$ref/items", sub]);
                    for (i, item) in list.iter().enumerate() {
                        let p = join_ptr(&kptr, &i.to_string());
                        self.schema(item, &p, base, draft, &meta, depth + 1)?;
                    }
                } else {
                    let meta = concat(&[at.meta, &kwm, "/anyOf/0", sub]);
                    self.schema(val, &kptr, base, draft, &meta, depth + 1)?;
                }
            }
            Sub::Dependencies => {
                self.check_container(val, &kptr, at, &kwm, "/type", "object")?;
                let meta = concat(&[at.meta, &kwm, "/additionalProperties/anyOf/0", sub]);
                for (name, dep) in val.as_object().into_iter().flatten() {
                    let p = join_ptr(&kptr, name);
                    if dep.is_array() {
                        self.check_dependency_list(dep, &p, at, &kwm)?;
                    } else {
                        self.schema(dep, &p, base, draft, &meta, depth + 1)?;
                    }
                }
            }
        }
        Ok(())
    }

    #[inline(never)]
    fn check_container(
        &self,
        val: &Json,
        kptr: &str,
        at: &At<'_>,
        kwm: &str,
        path: &str,
        want: &str,
    ) -> Result<(), SchemaErrorKind> {
        let kat = At {
            ptr: kptr,
            meta: at.meta,
            draft: at.draft,
        };
        self.expect(val, &kat, &format!("{kwm}{path}"), &[want])?;
        if want == "array" && val.as_array().is_some_and(Vec::is_empty) {
            return Err(self.meta_err(
                &kat,
                &format!("{kwm}/$ref/minItems"),
                "minimum 1 items required, but found 0 items".to_owned(),
            ));
        }
        Ok(())
    }

    #[inline(never)]
    fn check_patterns(
        &self,
        val: &Json,
        kptr: &str,
        at: &At<'_>,
        kwm: &str,
    ) -> Result<(), SchemaErrorKind> {
        for name in val.as_object().into_iter().flatten().map(|(n, _)| n) {
            if compile_regex(name).is_err() {
                let p = join_ptr(kptr, name);
                let nat = At {
                    ptr: &p,
                    meta: at.meta,
                    draft: at.draft,
                };
                return Err(self.meta_err(
                    &nat,
                    &format!("{kwm}/propertyNames/format"),
                    format!("{} is not valid 'regex'", quote(name)),
                ));
            }
        }
        Ok(())
    }

    #[inline(never)]
    fn check_dependency_list(
        &self,
        dep: &Json,
        p: &str,
        at: &At<'_>,
        kwm: &str,
    ) -> Result<(), SchemaErrorKind> {
        let lat = At {
            ptr: p,
            meta: at.meta,
            draft: at.draft,
        };
        self.scan_string_array(
            dep,
            &lat,
            &format!("{kwm}/additionalProperties/anyOf/1/$ref"),
        )
    }

    /// Keywords that hold no subschema: their values' types and ranges.
    #[inline(never)]
    fn check_keyword(&self, k: &str, val: &Json, at: &At<'_>) -> Result<(), SchemaErrorKind> {
        let kptr = join_ptr(at.ptr, k);
        let kat = At {
            ptr: &kptr,
            meta: at.meta,
            draft: at.draft,
        };
        let kwm = at.draft.kw_meta(k);
        if !self.check_core_keyword(k, val, at, &kat, &kwm)? {
            self.check_assertion_keyword(k, val, &kat, &kwm)?;
        }
        Ok(())
    }

    /// The core and annotation keywords (`$ref`, `$comment`, `title`, `format`...) at
    /// `kat`; false if `k` is none of them in this draft.
    fn check_core_keyword(
        &self,
        k: &str,
        val: &Json,
        at: &At<'_>,
        kat: &At<'_>,
        kwm: &str,
    ) -> Result<bool, SchemaErrorKind> {
        let draft = at.draft;
        let v2019 = draft >= Draft::V2019;
        let v2020 = draft == Draft::V2020;
        match k {
            "$ref" => {
                let p = if v2020 { "/$ref/type" } else { "/type" };
                self.expect(val, kat, &format!("{kwm}{p}"), &["string"])?;
            }
            "$dynamicRef" if v2020 => {
                self.expect(val, kat, &format!("{kwm}/$ref/type"), &["string"])?;
            }
            "$recursiveRef" if draft == Draft::V2019 => return Err(self.unsupported(k, at.ptr)),
            "$recursiveAnchor" if draft == Draft::V2019 => {
                self.expect(val, kat, &format!("{kwm}/type"), &["boolean"])?;
            }
            "$vocabulary" if v2019 => {
                self.expect(val, kat, &format!("{kwm}/type"), &["object"])?;
            }
            "$comment" if draft >= Draft::V7 => {
                self.expect(val, kat, &format!("{kwm}/type"), &["string"])?;
            }
            "title" | "description" => {
                self.expect(val, kat, &format!("{kwm}/type"), &["string"])?;
            }
            "examples" if draft >= Draft::V6 => {
                self.expect(val, kat, &format!("{kwm}/type"), &["array"])?;
            }
            "deprecated" if v2019 => {
                self.expect(val, kat, &format!("{kwm}/type"), &["boolean"])?;
            }
            "readOnly" | "writeOnly" if draft >= Draft::V7 => {
                self.expect(val, kat, &format!("{kwm}/type"), &["boolean"])?;
            }
            "format" => self.expect(val, kat, &format!("{kwm}/type"), &["string"])?,
            "contentEncoding" | "contentMediaType" if draft >= Draft::V7 => {
                self.expect(val, kat, &format!("{kwm}/type"), &["string"])?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The assertion keywords that hold no subschema (`type`, `enum`, numeric and length
    /// limits, `pattern`, `required`...) at `kat`.
    fn check_assertion_keyword(
        &self,
        k: &str,
        val: &Json,
        kat: &At<'_>,
        kwm: &str,
    ) -> Result<(), SchemaErrorKind> {
        let draft = kat.draft;
        let v2019 = draft >= Draft::V2019;
        match k {
            "type" => self.scan_type(val, kat, kwm)?,
            "enum" => self.expect(val, kat, &format!("{kwm}/type"), &["array"])?,
            "multipleOf" => {
                self.expect(val, kat, &format!("{kwm}/type"), &["number"])?;
                let n = val.as_f64().unwrap_or_default();
                if n <= 0.0 {
                    let path = if draft == Draft::V4 {
                        "/minimum"
                    } else {
                        "/exclusiveMinimum"
                    };
                    return Err(self.meta_err(
                        kat,
                        &format!("{kwm}{path}"),
                        format!("must be > 0 but found {}", go_float(n)),
                    ));
                }
            }
            "maximum" | "minimum" => {
                self.expect(val, kat, &format!("{kwm}/type"), &["number"])?;
            }
            "exclusiveMaximum" | "exclusiveMinimum" => {
                let want = if draft == Draft::V4 {
                    "boolean"
                } else {
                    "number"
                };
                self.expect(val, kat, &format!("{kwm}/type"), &[want])?;
            }
            "maxLength" | "maxItems" | "maxProperties" | "minLength" | "minItems"
            | "minProperties" => {
                let default0 = k.starts_with("min");
                let path = match (draft, default0) {
                    (Draft::V2019 | Draft::V2020, true) => "/$ref/$ref",
                    (_, true) if draft >= Draft::V6 => "/$ref/allOf/0/$ref",
                    _ => "/$ref",
                };
                self.scan_non_negative(val, kat, &format!("{kwm}{path}"))?;
            }
            "maxContains" | "minContains" if v2019 => {
                self.scan_non_negative(val, kat, &format!("{kwm}/$ref"))?;
            }
            "pattern" => {
                self.expect(val, kat, &format!("{kwm}/type"), &["string"])?;
                let p = val.as_str().unwrap_or_default();
                if compile_regex(p).is_err() {
                    return Err(self.meta_err(
                        kat,
                        &format!("{kwm}/format"),
                        format!("{} is not valid 'regex'", quote(p)),
                    ));
                }
            }
            "uniqueItems" => self.expect(val, kat, &format!("{kwm}/type"), &["boolean"])?,
            "required" => self.scan_string_array(val, kat, &format!("{kwm}/$ref"))?,
            "dependentRequired" if v2019 => self.check_dependent_required(val, kat, kwm)?,
            _ => {}
        }
        Ok(())
    }

    /// `dependentRequired`: an object of string arrays.
    fn check_dependent_required(
        &self,
        val: &Json,
        kat: &At<'_>,
        kwm: &str,
    ) -> Result<(), SchemaErrorKind> {
        self.expect(val, kat, &format!("{kwm}/type"), &["object"])?;
        for (name, list) in val.as_object().into_iter().flatten() {
            let p = format!("{}/{}", kat.ptr, ptr_token(name));
            let lat = At {
                ptr: &p,
                meta: kat.meta,
                draft: kat.draft,
            };
            self.scan_string_array(list, &lat, &format!("{kwm}/additionalProperties/$ref"))?;
        }
        Ok(())
    }

    fn unsupported(&self, kw: &str, ptr: &str) -> SchemaErrorKind {
        self.invalid(format!(
            "unsupported keyword {} at {}",
            quote(kw),
            quote(&display_ptr(ptr))
        ))
    }

    fn scan_type(&self, val: &Json, at: &At<'_>, kwm: &str) -> Result<(), SchemaErrorKind> {
        let ok = match val {
            Json::String(s) => is_simple_type(s),
            Json::Array(items) => {
                !items.is_empty()
                    && items.iter().all(|t| t.as_str().is_some_and(is_simple_type))
                    && items
                        .iter()
                        .enumerate()
                        .all(|(i, t)| !items[..i].contains(t))
            }
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            let path = format!("{kwm}/anyOf/0/$ref/enum");
            Err(self.meta_err(at, &path, SIMPLE_TYPES.to_owned()))
        }
    }

    fn scan_non_negative(
        &self,
        val: &Json,
        at: &At<'_>,
        path: &str,
    ) -> Result<(), SchemaErrorKind> {
        self.expect(val, at, &format!("{path}/type"), &["integer"])?;
        let n = val.as_f64().unwrap_or_default();
        if n < 0.0 {
            return Err(self.meta_err(
                at,
                &format!("{path}/minimum"),
                format!("must be >= 0 but found {}", go_float(n)),
            ));
        }
        Ok(())
    }

    fn scan_string_array(
        &self,
        val: &Json,
        at: &At<'_>,
        path: &str,
    ) -> Result<(), SchemaErrorKind> {
        self.expect(val, at, &format!("{path}/type"), &["array"])?;
        let items = val.as_array().map(Vec::as_slice).unwrap_or_default();
        for (i, item) in items.iter().enumerate() {
            let p = format!("{}/{i}", at.ptr);
            let iat = At {
                ptr: &p,
                meta: at.meta,
                draft: at.draft,
            };
            self.expect(item, &iat, &format!("{path}/items/type"), &["string"])?;
        }
        for i in 1..items.len() {
            if let Some(j) = items[..i].iter().position(|x| *x == items[i]) {
                return Err(self.meta_err(
                    at,
                    &format!("{path}/uniqueItems"),
                    format!("items at index {j} and {i} are equal"),
                ));
            }
        }
        Ok(())
    }
}

/// How a keyword holds subschemas.
enum Sub {
    Single,
    Map,
    Array,
    /// `items` before 2020-12: a schema or an array of schemas.
    LegacyItems,
    /// `dependencies`: schemas or property lists.
    Dependencies,
}

#[inline(never)]
fn join_ptr(ptr: &str, token: &str) -> String {
    let mut out = String::with_capacity(ptr.len() + token.len() + 1);
    out.push_str(ptr);
    out.push('/');
    out.push_str(&ptr_token(token));
    out
}

#[inline(never)]
fn concat(parts: &[&str]) -> String {
    parts.concat()
}

fn is_simple_type(s: &str) -> bool {
    matches!(
        s,
        "array" | "boolean" | "integer" | "null" | "number" | "object" | "string"
    )
}

fn is_anchor(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

fn json_type_name(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "boolean",
        Json::Number(_) => "number",
        Json::String(_) => "string",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
    }
}

/// Whether `v` has JSON type `t` (`integer`: a number with no fractional part).
fn json_is(v: &Json, t: &str) -> bool {
    match t {
        "integer" => v
            .as_f64()
            .is_some_and(|f| f.is_finite() && f.fract() == 0.0),
        "number" => v.is_number(),
        _ => json_type_name(v) == t,
    }
}

// === Compiled form ===

type NodeId = usize;

#[derive(Debug)]
enum Node {
    Bool(bool),
    Obj(Box<ObjNode>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum JType {
    Null,
    Boolean,
    Integer,
    Number,
    String,
    Array,
    Object,
}

impl JType {
    fn from_name(s: &str) -> Option<JType> {
        Some(match s {
            "null" => JType::Null,
            "boolean" => JType::Boolean,
            "integer" => JType::Integer,
            "number" => JType::Number,
            "string" => JType::String,
            "array" => JType::Array,
            "object" => JType::Object,
            _ => return None,
        })
    }

    fn matches(self, v: &Inst<'_>) -> bool {
        match (self, v) {
            (JType::Null, Inst::Null)
            | (JType::Boolean, Inst::Bool(_))
            | (JType::Number, Inst::Num(_))
            | (JType::String, Inst::Str(_))
            | (JType::Array, Inst::Arr(_))
            | (JType::Object, Inst::Obj(_)) => true,
            (JType::Integer, Inst::Num(n)) => n.is_finite() && n.fract() == 0.0,
            _ => false,
        }
    }
}

#[derive(Debug)]
enum Additional {
    Bool(bool),
    Schema(NodeId),
}

#[derive(Debug)]
enum Items {
    Single(NodeId),
    Tuple(Vec<NodeId>),
}

#[derive(Debug)]
enum Dependency {
    Schema(NodeId),
    Required(Vec<String>),
}

/// A `$dynamicRef`: where it resolves statically, and, when that target declares the
/// `$dynamicAnchor` it names, every resource declaring that anchor (the outermost of them
/// in the dynamic scope wins).
#[derive(Debug)]
struct DynamicRef {
    default: NodeId,
    candidates: Vec<(usize, NodeId)>,
}

#[derive(Debug)]
struct Pattern {
    source: String,
    regex: Regex,
}

#[derive(Debug, Default)]
struct ObjNode {
    types: Vec<JType>,
    type_names: String,
    constant: Option<(Json, String)>,
    enumeration: Option<(Vec<Json>, String)>,
    format: Option<(Format, String)>,

    min_properties: Option<usize>,
    max_properties: Option<usize>,
    required: Vec<String>,
    properties: Vec<(String, NodeId)>,
    pattern_properties: Vec<(Regex, NodeId)>,
    additional_properties: Option<Additional>,
    property_names: Option<NodeId>,
    dependencies: Vec<(String, Dependency)>,
    dependent_required: Vec<(String, Vec<String>)>,
    dependent_schemas: Vec<(String, NodeId)>,

    min_items: Option<usize>,
    max_items: Option<usize>,
    unique_items: bool,
    items: Option<Items>,
    additional_items: Option<Additional>,
    prefix_items: Vec<NodeId>,
    items_2020: Option<NodeId>,
    contains: Option<NodeId>,
    min_contains: Option<usize>,
    max_contains: Option<usize>,
    contains_eval: bool,

    min_length: Option<usize>,
    max_length: Option<usize>,
    pattern: Option<Pattern>,
    content_encoding: Option<String>,
    content_media_type: Option<String>,
    /// Applied to the decoded `application/json` content (Cerbos asserts content).
    content_schema: Option<NodeId>,

    minimum: Option<f64>,
    maximum: Option<f64>,
    exclusive_minimum: Option<f64>,
    exclusive_maximum: Option<f64>,
    multiple_of: Option<(f64, Option<Decimal>)>,

    /// The schema resource this schema belongs to (its base URI), for the dynamic scope.
    resource: usize,
    reference: Option<NodeId>,
    dynamic_reference: Option<DynamicRef>,
    not: Option<NodeId>,
    all_of: Vec<NodeId>,
    any_of: Vec<NodeId>,
    one_of: Vec<NodeId>,
    if_: Option<NodeId>,
    then_: Option<NodeId>,
    else_: Option<NodeId>,
    unevaluated_properties: Option<NodeId>,
    unevaluated_items: Option<NodeId>,
}

// === Build: from checked documents to nodes ===

/// Compiles every document of the store into one shared node arena. A document fails when a
/// schema it reaches (through `$ref`s, into any document) fails to build.
fn compile_all(store: &StoreIndex) -> Vec<Result<CompiledSchema, SchemaErrorKind>> {
    let mut b = Builder {
        store,
        nodes: Vec::new(),
        memo: HashMap::new(),
        queue: VecDeque::new(),
        extra: HashMap::new(),
        resources: HashMap::new(),
    };
    let roots: Vec<Result<NodeId, SchemaErrorKind>> = (0..store.docs.len())
        .map(|doc| b.schedule(doc, ""))
        .collect();
    let mut failed: HashMap<NodeId, SchemaErrorKind> = HashMap::new();
    while let Some((id, doc, ptr)) = b.queue.pop_front() {
        match b.build(doc, &ptr) {
            Ok(node) => b.nodes[id] = node,
            Err(kind) => {
                // Fails closed should it ever be applied.
                b.nodes[id] = Node::Bool(false);
                failed.insert(id, kind);
            }
        }
    }
    let nodes: Arc<[Node]> = b.nodes.into();
    roots
        .into_iter()
        .zip(&store.docs)
        .map(|(root, entry)| {
            let root = root?;
            if let Some(kind) = first_failure(&nodes, &failed, root) {
                return Err(kind.clone());
            }
            Ok(CompiledSchema {
                url: entry.url.clone(),
                nodes: Arc::clone(&nodes),
                root,
            })
        })
        .collect()
}

/// The first failed node reachable from `root`, breadth first.
fn first_failure<'f>(
    nodes: &[Node],
    failed: &'f HashMap<NodeId, SchemaErrorKind>,
    root: NodeId,
) -> Option<&'f SchemaErrorKind> {
    if failed.is_empty() {
        return None;
    }
    let mut seen = vec![false; nodes.len()];
    let mut queue = VecDeque::from([root]);
    while let Some(id) = queue.pop_front() {
        if std::mem::replace(&mut seen[id], true) {
            continue;
        }
        if let Some(kind) = failed.get(&id) {
            return Some(kind);
        }
        if let Some(Node::Obj(o)) = nodes.get(id) {
            queue.extend(o.children().filter(|&c| c < nodes.len()));
        }
    }
    None
}

impl ObjNode {
    /// Every subschema this schema applies. The dynamic candidates of a `$dynamicRef` are left
    /// out: one can only be chosen once its resource was entered, which reaches it anyway.
    fn children(&self) -> impl Iterator<Item = NodeId> + '_ {
        let schema = |a: &Option<Additional>| match a {
            Some(Additional::Schema(id)) => Some(*id),
            _ => None,
        };
        let items: &[NodeId] = match &self.items {
            Some(Items::Single(id)) => std::slice::from_ref(id),
            Some(Items::Tuple(ids)) => ids,
            None => &[],
        };
        let dependencies = self.dependencies.iter().filter_map(|(_, d)| match d {
            Dependency::Schema(id) => Some(*id),
            Dependency::Required(_) => None,
        });
        self.properties
            .iter()
            .map(|(_, id)| *id)
            .chain(self.pattern_properties.iter().map(|(_, id)| *id))
            .chain(self.dependent_schemas.iter().map(|(_, id)| *id))
            .chain(dependencies)
            .chain(items.iter().copied())
            .chain(self.prefix_items.iter().copied())
            .chain(self.all_of.iter().copied())
            .chain(self.any_of.iter().copied())
            .chain(self.one_of.iter().copied())
            .chain(
                [
                    schema(&self.additional_properties),
                    schema(&self.additional_items),
                    self.property_names,
                    self.items_2020,
                    self.contains,
                    self.reference,
                    self.dynamic_reference.as_ref().map(|d| d.default),
                    self.not,
                    self.if_,
                    self.then_,
                    self.else_,
                    self.unevaluated_properties,
                    self.unevaluated_items,
                    self.content_schema,
                ]
                .into_iter()
                .flatten(),
            )
    }
}

struct Builder<'s> {
    store: &'s StoreIndex,
    nodes: Vec<Node>,
    memo: HashMap<(usize, String), NodeId>,
    queue: VecDeque<(NodeId, usize, String)>,
    /// Locations reached only through a `$ref` pointer, checked on demand.
    extra: HashMap<(usize, String), Loc>,
    /// Schema resources by base URI, numbered for the dynamic scope.
    resources: HashMap<String, usize>,
}

impl Builder<'_> {
    /// The vocabularies that apply at `ptr`: those of the metaschema the nearest enclosing
    /// resource names with `$schema`, all of them for a standard draft.
    fn vocabularies(&self, doc: usize, ptr: &str) -> Result<Vocabularies, SchemaErrorKind> {
        let entry = &self.store.docs[doc];
        let Ok(index) = entry.scan.as_ref() else {
            return Ok(Vocabularies::ALL);
        };
        let within = |root: &str| {
            ptr.strip_prefix(root)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        };
        let nearest = index
            .metaschemas
            .iter()
            .filter(|(root, _)| within(root))
            .max_by_key(|(root, _)| root.len());
        let Some((_, Some(url))) = nearest else {
            return Ok(Vocabularies::ALL);
        };
        let unsupported = |why: &str| SchemaErrorKind::Invalid {
            schema: entry.url.clone(),
            reason: format!("unsupported $schema {}{why}", quote(url)),
        };
        let meta = self
            .store
            .find_resource(split_fragment(url).0)
            .and_then(|(mdoc, mptr)| self.store.docs[mdoc].value.pointer(&mptr))
            .and_then(Json::as_object)
            .ok_or_else(|| unsupported(""))?;
        let meta_draft = meta
            .get("$schema")
            .and_then(Json::as_str)
            .and_then(Draft::from_url);
        if meta_draft != Some(Draft::V2020) {
            return Err(unsupported(": not a draft 2020-12 metaschema"));
        }
        match meta.get("$vocabulary").and_then(Json::as_object) {
            None => Ok(Vocabularies::ALL),
            Some(list) => {
                Vocabularies::from_metaschema(list).map_err(|e| unsupported(&format!(": {e}")))
            }
        }
    }
}

impl Builder<'_> {
    fn schedule(&mut self, doc: usize, ptr: &str) -> Result<NodeId, SchemaErrorKind> {
        if let Some(&id) = self.memo.get(&(doc, ptr.to_owned())) {
            return Ok(id);
        }
        self.store.docs[doc].scan.as_ref().map_err(Clone::clone)?;
        let id = self.nodes.len();
        self.nodes.push(Node::Bool(true));
        self.memo.insert((doc, ptr.to_owned()), id);
        self.queue.push_back((id, doc, ptr.to_owned()));
        Ok(id)
    }

    fn child(&mut self, doc: usize, ptr: &str, tokens: &[&str]) -> Result<NodeId, SchemaErrorKind> {
        let mut p = ptr.to_owned();
        for t in tokens {
            p.push('/');
            p.push_str(&ptr_token(t));
        }
        self.schedule(doc, &p)
    }

    fn build(&mut self, doc: usize, ptr: &str) -> Result<Node, SchemaErrorKind> {
        let store = self.store;
        let entry = &store.docs[doc];
        let index = entry.scan.as_ref().map_err(Clone::clone)?;
        let invalid = |reason: String| SchemaErrorKind::Invalid {
            schema: entry.url.clone(),
            reason,
        };
        let value = entry
            .value
            .pointer(ptr)
            .ok_or_else(|| invalid(format!("{} does not exist", quote(&display_ptr(ptr)))))?;
        let known = index
            .locs
            .get(ptr)
            .or_else(|| self.extra.get(&(doc, ptr.to_owned())))
            .cloned();
        let loc = match known {
            Some(loc) => loc,
            None => {
                let mut scan = Scan::new(&entry.url);
                scan.schema(value, ptr, &entry.url, index.root_draft, "", 0)?;
                for (p, l) in scan.locs {
                    self.extra.insert((doc, p), l);
                }
                self.extra
                    .get(&(doc, ptr.to_owned()))
                    .cloned()
                    .ok_or_else(|| {
                        invalid(format!("{} is not a schema", quote(&display_ptr(ptr))))
                    })?
            }
        };
        match value {
            Json::Bool(b) => Ok(Node::Bool(*b)),
            Json::Object(obj) => Ok(Node::Obj(Box::new(self.build_obj(doc, ptr, obj, &loc)?))),
            _ => Err(invalid(format!(
                "{} is not a schema",
                quote(&display_ptr(ptr))
            ))),
        }
    }

    fn build_obj(
        &mut self,
        doc: usize,
        ptr: &str,
        obj: &serde_json::Map<String, Json>,
        loc: &Loc,
    ) -> Result<ObjNode, SchemaErrorKind> {
        let draft = loc.draft;
        let vocabularies = self.vocabularies(doc, ptr)?;
        let mut n = ObjNode::default();
        let next = self.resources.len();
        n.resource = *self.resources.entry(loc.base.clone()).or_insert(next);
        if draft == Draft::V2020
            && let Some(r) = obj.get("$dynamicRef").and_then(Json::as_str)
        {
            n.dynamic_reference = Some(self.resolve_dynamic_ref(doc, r, &loc.base)?);
        }
        if let Some(r) = obj.get("$ref").and_then(Json::as_str) {
            n.reference = Some(self.resolve_ref(doc, r, &loc.base)?);
            if draft <= Draft::V7 {
                return Ok(n);
            }
        }
        let at = BuildAt {
            doc,
            ptr,
            draft,
            has_if: obj.contains_key("if"),
        };
        let mut v4_exclusive = V4Exclusive::default();
        for (k, v) in obj.iter().filter(|(k, _)| vocabularies.allows(k)) {
            let _known = any_type_keyword(&at, k, v, &mut n)
                || self.object_keyword(&at, k, v, &mut n)?
                || self.array_keyword(&at, k, v, &mut n)?
                || self.string_keyword(&at, k, v, &mut n)?
                || number_keyword(&at, k, v, &mut n, &mut v4_exclusive)
                || self.applicator_keyword(&at, k, v, &mut n)?;
        }
        if v4_exclusive.max {
            n.exclusive_maximum = n.maximum.take();
        }
        if v4_exclusive.min {
            n.exclusive_minimum = n.minimum.take();
        }
        Ok(n)
    }

    /// The object keywords (`properties`, `required`, `dependencies`...); false if `k`
    /// is none of them in this draft.
    fn object_keyword(
        &mut self,
        at: &BuildAt<'_>,
        k: &str,
        v: &Json,
        n: &mut ObjNode,
    ) -> Result<bool, SchemaErrorKind> {
        let (doc, ptr, draft) = (at.doc, at.ptr, at.draft);
        let v2019 = draft >= Draft::V2019;
        match k {
            "minProperties" => n.min_properties = as_count(v),
            "maxProperties" => n.max_properties = as_count(v),
            "required" => {
                n.required = string_list(v);
            }
            "properties" => {
                for name in v.as_object().into_iter().flatten().map(|(n, _)| n) {
                    let id = self.child(doc, ptr, &[k, name])?;
                    n.properties.push((name.clone(), id));
                }
            }
            "patternProperties" => {
                for name in v.as_object().into_iter().flatten().map(|(n, _)| n) {
                    let id = self.child(doc, ptr, &[k, name])?;
                    let regex = compile_regex(name).map_err(|e| self.bad(doc, e))?;
                    n.pattern_properties.push((regex, id));
                }
            }
            "additionalProperties" => {
                n.additional_properties = Some(self.additional(doc, ptr, k, v)?);
            }
            "propertyNames" if draft >= Draft::V6 => {
                n.property_names = Some(self.child(doc, ptr, &[k])?);
            }
            "dependencies" if draft <= Draft::V7 => {
                for (name, dep) in v.as_object().into_iter().flatten() {
                    let d = if dep.is_array() {
                        Dependency::Required(string_list(dep))
                    } else {
                        Dependency::Schema(self.child(doc, ptr, &[k, name])?)
                    };
                    n.dependencies.push((name.clone(), d));
                }
            }
            "dependentRequired" if v2019 => {
                for (name, list) in v.as_object().into_iter().flatten() {
                    n.dependent_required.push((name.clone(), string_list(list)));
                }
            }
            "dependentSchemas" if v2019 => {
                for name in v.as_object().into_iter().flatten().map(|(n, _)| n) {
                    let id = self.child(doc, ptr, &[k, name])?;
                    n.dependent_schemas.push((name.clone(), id));
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The array keywords (`items`, `prefixItems`, `contains`...); false if `k` is none
    /// of them in this draft.
    fn array_keyword(
        &mut self,
        at: &BuildAt<'_>,
        k: &str,
        v: &Json,
        n: &mut ObjNode,
    ) -> Result<bool, SchemaErrorKind> {
        let (doc, ptr, draft) = (at.doc, at.ptr, at.draft);
        let v2019 = draft >= Draft::V2019;
        let v2020 = draft == Draft::V2020;
        match k {
            "minItems" => n.min_items = as_count(v),
            "maxItems" => n.max_items = as_count(v),
            "uniqueItems" => n.unique_items = v.as_bool().unwrap_or(false),
            "items" if v2020 => n.items_2020 = Some(self.child(doc, ptr, &[k])?),
            "items" => {
                n.items = Some(match v {
                    Json::Array(list) => {
                        let mut ids = Vec::with_capacity(list.len());
                        for i in 0..list.len() {
                            ids.push(self.child(doc, ptr, &[k, &i.to_string()])?);
                        }
                        Items::Tuple(ids)
                    }
                    _ => Items::Single(self.child(doc, ptr, &[k])?),
                });
            }
            "additionalItems" if !v2020 => {
                n.additional_items = Some(self.additional(doc, ptr, k, v)?);
            }
            "prefixItems" if v2020 => {
                for i in 0..v.as_array().map_or(0, Vec::len) {
                    let id = self.child(doc, ptr, &[k, &i.to_string()])?;
                    n.prefix_items.push(id);
                }
            }
            "contains" if draft >= Draft::V6 => {
                n.contains = Some(self.child(doc, ptr, &[k])?);
                n.contains_eval = v2020;
            }
            "minContains" if v2019 => n.min_contains = as_count(v),
            "maxContains" if v2019 => n.max_contains = as_count(v),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The string keywords (`minLength`, `pattern`, `content*`); false if `k` is none of
    /// them in this draft.
    fn string_keyword(
        &mut self,
        at: &BuildAt<'_>,
        k: &str,
        v: &Json,
        n: &mut ObjNode,
    ) -> Result<bool, SchemaErrorKind> {
        let (doc, ptr, draft) = (at.doc, at.ptr, at.draft);
        match k {
            "minLength" => n.min_length = as_count(v),
            "maxLength" => n.max_length = as_count(v),
            "pattern" => {
                let source = v.as_str().unwrap_or_default().to_owned();
                let regex = compile_regex(&source).map_err(|e| self.bad(doc, e))?;
                n.pattern = Some(Pattern { source, regex });
            }
            "contentEncoding" if draft >= Draft::V7 => {
                n.content_encoding = v.as_str().map(str::to_owned);
            }
            "contentMediaType" if draft >= Draft::V7 => {
                n.content_media_type = v.as_str().map(str::to_owned);
            }
            "contentSchema" if draft >= Draft::V2019 => {
                n.content_schema = Some(self.child(doc, ptr, &[k])?);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The in-place applicators (`not`, `allOf`/`anyOf`/`oneOf`, `if`/`then`/`else`,
    /// `unevaluated*`); false if `k` is none of them in this draft.
    fn applicator_keyword(
        &mut self,
        at: &BuildAt<'_>,
        k: &str,
        v: &Json,
        n: &mut ObjNode,
    ) -> Result<bool, SchemaErrorKind> {
        let (doc, ptr, draft) = (at.doc, at.ptr, at.draft);
        let v2019 = draft >= Draft::V2019;
        match k {
            "not" => n.not = Some(self.child(doc, ptr, &[k])?),
            "allOf" | "anyOf" | "oneOf" => {
                let mut ids = Vec::new();
                for i in 0..v.as_array().map_or(0, Vec::len) {
                    ids.push(self.child(doc, ptr, &[k, &i.to_string()])?);
                }
                match k {
                    "allOf" => n.all_of = ids,
                    "anyOf" => n.any_of = ids,
                    _ => n.one_of = ids,
                }
            }
            "if" if draft >= Draft::V7 => n.if_ = Some(self.child(doc, ptr, &[k])?),
            "then" if draft >= Draft::V7 && at.has_if => {
                n.then_ = Some(self.child(doc, ptr, &[k])?);
            }
            "else" if draft >= Draft::V7 && at.has_if => {
                n.else_ = Some(self.child(doc, ptr, &[k])?);
            }
            "unevaluatedProperties" if v2019 => {
                n.unevaluated_properties = Some(self.child(doc, ptr, &[k])?);
            }
            "unevaluatedItems" if v2019 => {
                n.unevaluated_items = Some(self.child(doc, ptr, &[k])?);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn bad(&self, doc: usize, reason: String) -> SchemaErrorKind {
        SchemaErrorKind::Invalid {
            schema: self.store.docs[doc].url.clone(),
            reason,
        }
    }

    fn additional(
        &mut self,
        doc: usize,
        ptr: &str,
        k: &str,
        v: &Json,
    ) -> Result<Additional, SchemaErrorKind> {
        Ok(match v {
            Json::Bool(b) => Additional::Bool(*b),
            _ => Additional::Schema(self.child(doc, ptr, &[k])?),
        })
    }

    /// Resolves a `$ref` written in document `doc` against `base`.
    /// Resolves a `$dynamicRef` (draft 2020-12): statically as a `$ref`; dynamically only
    /// when its fragment is a name and the static target declares `$dynamicAnchor` with it.
    fn resolve_dynamic_ref(
        &mut self,
        doc: usize,
        reference: &str,
        base: &str,
    ) -> Result<DynamicRef, SchemaErrorKind> {
        let default = self.resolve_ref(doc, reference, base)?;
        let store = self.store;
        let absolute = resolve_uri(base, reference);
        let (url, fragment) = split_fragment(&absolute);
        let mut candidates = Vec::new();
        let Some(name) = fragment
            .filter(|f| !f.is_empty() && !f.starts_with('/'))
            .map(percent_decode)
        else {
            return Ok(DynamicRef {
                default,
                candidates,
            });
        };
        let bookended = store.find_resource(url).is_some_and(|(rdoc, rptr)| {
            store.docs[rdoc].scan.as_ref().is_ok_and(|target| {
                let resource_base = target
                    .locs
                    .get(&rptr)
                    .map_or_else(|| url.to_owned(), |l| l.base.clone());
                target
                    .dynamic_anchors
                    .contains_key(&(resource_base, name.clone()))
            })
        });
        if bookended {
            let mut found: Vec<(&str, usize, &str)> = Vec::new();
            for (d, entry) in store.docs.iter().enumerate() {
                if let Ok(index) = &entry.scan {
                    for ((b, n), p) in &index.dynamic_anchors {
                        if *n == name {
                            found.push((b, d, p));
                        }
                    }
                }
            }
            found.sort_unstable();
            for (b, d, p) in found {
                let id = self.schedule(d, p)?;
                let next = self.resources.len();
                let resource = *self.resources.entry(b.to_owned()).or_insert(next);
                candidates.push((resource, id));
            }
        }
        Ok(DynamicRef {
            default,
            candidates,
        })
    }

    fn resolve_ref(
        &mut self,
        doc: usize,
        reference: &str,
        base: &str,
    ) -> Result<NodeId, SchemaErrorKind> {
        let store = self.store;
        let referrer = &store.docs[doc].url;
        let absolute = resolve_uri(base, reference);
        let (url, fragment) = split_fragment(&absolute);
        let Some((rdoc, rptr)) = store.find_resource(url) else {
            return Err(SchemaErrorKind::RefNotFound {
                location: missing_location(url),
                referrer: referrer.clone(),
            });
        };
        let target = store.docs[rdoc].scan.as_ref().map_err(Clone::clone)?;
        let unresolved = || SchemaErrorKind::Invalid {
            schema: referrer.clone(),
            reason: format!("$ref {} does not resolve", quote(reference)),
        };
        let ptr = match fragment {
            None | Some("") => rptr,
            Some(f) if f.starts_with('/') => format!("{rptr}{}", percent_decode(f)),
            Some(anchor) => {
                let resource_base = target
                    .locs
                    .get(&rptr)
                    .map_or_else(|| url.to_owned(), |l| l.base.clone());
                target
                    .anchors
                    .get(&(resource_base, percent_decode(anchor)))
                    .cloned()
                    .ok_or_else(unresolved)?
            }
        };
        match store.docs[rdoc].value.pointer(&ptr) {
            Some(Json::Object(_) | Json::Bool(_)) => self.schedule(rdoc, &ptr),
            _ => Err(unresolved()),
        }
    }
}

/// Where a schema object's keywords are read: its document, JSON pointer and draft, and
/// whether it has an `if` (without one, `then` and `else` are ignored).
struct BuildAt<'a> {
    doc: usize,
    ptr: &'a str,
    draft: Draft,
    has_if: bool,
}

/// Draft 4's boolean `exclusiveMaximum`/`exclusiveMinimum`: they turn `maximum` and
/// `minimum` exclusive once every keyword is read.
#[derive(Default)]
struct V4Exclusive {
    max: bool,
    min: bool,
}

/// The keywords for any instance type (`type`, `const`, `enum`, `format`); false if
/// `k` is none of them in this draft.
fn any_type_keyword(at: &BuildAt<'_>, k: &str, v: &Json, n: &mut ObjNode) -> bool {
    match k {
        "type" => {
            let names: Vec<&str> = match v {
                Json::String(s) => vec![s.as_str()],
                Json::Array(a) => a.iter().filter_map(Json::as_str).collect(),
                _ => Vec::new(),
            };
            n.types = names.iter().filter_map(|s| JType::from_name(s)).collect();
            n.type_names = names.join(" or ");
        }
        "const" if at.draft >= Draft::V6 => {
            let msg = if v.is_array() || v.is_object() {
                "const failed".to_owned()
            } else {
                format!("value must be {}", go_sharp_v(v))
            };
            n.constant = Some((v.clone(), msg));
        }
        "enum" => {
            let items = v.as_array().cloned().unwrap_or_default();
            let msg = enum_message(&items);
            n.enumeration = Some((items, msg));
        }
        "format" => {
            let name = v.as_str().unwrap_or_default();
            n.format = Format::from_name(name).map(|f| (f, quote(name)));
        }
        _ => return false,
    }
    true
}

/// The numeric keywords (`minimum`, `exclusiveMaximum`, `multipleOf`...); false if `k`
/// is none of them in this draft.
fn number_keyword(
    at: &BuildAt<'_>,
    k: &str,
    v: &Json,
    n: &mut ObjNode,
    v4_exclusive: &mut V4Exclusive,
) -> bool {
    let v4 = at.draft == Draft::V4;
    match k {
        "minimum" => n.minimum = v.as_f64(),
        "maximum" => n.maximum = v.as_f64(),
        "exclusiveMinimum" if v4 => v4_exclusive.min = v.as_bool().unwrap_or(false),
        "exclusiveMaximum" if v4 => v4_exclusive.max = v.as_bool().unwrap_or(false),
        "exclusiveMinimum" => n.exclusive_minimum = v.as_f64(),
        "exclusiveMaximum" => n.exclusive_maximum = v.as_f64(),
        "multipleOf" => {
            n.multiple_of = v.as_f64().map(|f| (f, Decimal::from_json(v)));
        }
        _ => return false,
    }
    true
}

fn as_count(v: &Json) -> Option<usize> {
    let f = v.as_f64()?;
    if f.is_nan() || f < 0.0 {
        None
    } else if f >= usize::MAX as f64 {
        Some(usize::MAX)
    } else {
        Some(f as usize)
    }
}

fn string_list(v: &Json) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Json::as_str)
        .map(str::to_owned)
        .collect()
}

/// The library's message for a value outside an `enum`.
fn enum_message(items: &[Json]) -> String {
    if items.iter().any(|i| i.is_array() || i.is_object()) {
        return "enum failed".to_owned();
    }
    if let [only] = items {
        return format!("value must be {}", go_sharp_v(only));
    }
    let listed: Vec<String> = items.iter().map(go_sharp_v).collect();
    format!("value must be one of {}", listed.join(", "))
}

// === Validation ===

/// An attribute value seen as JSON.
enum Inst<'a> {
    Null,
    Bool(bool),
    Num(f64),
    Str(Cow<'a, str>),
    Arr(&'a [Value]),
    Obj(&'a MapValue),
}

impl Inst<'_> {
    fn of(v: &Value) -> Inst<'_> {
        match v {
            Value::Null | Value::Optional(None) => Inst::Null,
            Value::Bool(b) => Inst::Bool(*b),
            Value::Int(i) => Inst::Num(*i as f64),
            Value::Uint(u) => Inst::Num(*u as f64),
            Value::Double(d) => Inst::Num(*d),
            Value::String(s) => Inst::Str(Cow::Borrowed(s)),
            Value::List(l) => Inst::Arr(l),
            Value::Map(m) => Inst::Obj(m),
            Value::Optional(Some(inner)) => Inst::of(inner),
            other => match crate::cel::to_json(other) {
                Json::String(s) => Inst::Str(Cow::Owned(s)),
                _ => Inst::Null,
            },
        }
    }

    fn type_name(&self) -> &'static str {
        match self {
            Inst::Null => "null",
            Inst::Bool(_) => "boolean",
            Inst::Num(_) => "number",
            Inst::Str(_) => "string",
            Inst::Arr(_) => "array",
            Inst::Obj(_) => "object",
        }
    }
}

fn key_str(k: &Key) -> Cow<'_, str> {
    match k {
        Key::String(s) => Cow::Borrowed(s),
        other => Cow::Owned(other.to_string()),
    }
}

fn unwrap_optional(v: &Value) -> &Value {
    match v {
        Value::Optional(Some(inner)) => unwrap_optional(inner),
        other => other,
    }
}

/// JSON equality between an attribute value and a schema constant.
fn eq_json(v: &Value, j: &Json) -> bool {
    match (Inst::of(v), j) {
        (Inst::Null, Json::Null) => true,
        (Inst::Bool(a), Json::Bool(b)) => a == *b,
        (Inst::Num(a), Json::Number(b)) => b.as_f64() == Some(a),
        (Inst::Str(a), Json::String(b)) => *a == **b,
        (Inst::Arr(a), Json::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| eq_json(x, y))
        }
        (Inst::Obj(m), Json::Object(o)) => {
            m.len() == o.len()
                && o.iter()
                    .all(|(k, y)| m.get_str(k).is_some_and(|x| eq_json(x, y)))
        }
        _ => false,
    }
}

/// JSON equality between two attribute values (for `uniqueItems`).
fn eq_values(a: &Value, b: &Value) -> bool {
    match (Inst::of(a), Inst::of(b)) {
        (Inst::Null, Inst::Null) => true,
        (Inst::Bool(x), Inst::Bool(y)) => x == y,
        (Inst::Num(x), Inst::Num(y)) => x == y,
        (Inst::Str(x), Inst::Str(y)) => x == y,
        (Inst::Arr(x), Inst::Arr(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| eq_values(p, q))
        }
        (Inst::Obj(x), Inst::Obj(y)) => {
            x.len() == y.len()
                && x.iter().all(|(k, p)| {
                    y.iter()
                        .find(|(k2, _)| key_str(k2) == key_str(k))
                        .is_some_and(|(_, q)| eq_values(p, q))
                })
        }
        _ => false,
    }
}

/// What an applied schema evaluated, for `unevaluatedProperties` / `unevaluatedItems`:
/// `true` marks a property (in map order) or item that is still unevaluated.
#[derive(Default)]
struct Eval {
    props: Vec<bool>,
    items: Vec<bool>,
}

impl Eval {
    fn new(v: &Inst<'_>) -> Eval {
        match v {
            Inst::Obj(m) => Eval {
                props: vec![true; m.len()],
                items: Vec::new(),
            },
            Inst::Arr(a) => Eval {
                props: Vec::new(),
                items: vec![true; a.len()],
            },
            _ => Eval::default(),
        }
    }

    /// Keeps as unevaluated only what `other` (a successful in-place schema) left unevaluated.
    fn merge(&mut self, other: &Eval) {
        for (a, b) in self.props.iter_mut().zip(&other.props) {
            *a = *a && *b;
        }
        for (a, b) in self.items.iter_mut().zip(&other.items) {
            *a = *a && *b;
        }
    }
}

struct Run<'a> {
    nodes: &'a [Node],
    out: Vec<SchemaViolation>,
    /// The schema resources entered so far, outermost first (the dynamic scope).
    scope: Vec<usize>,
    depth: usize,
    /// Address of a local of the outermost call, to bound the stack this validation uses.
    stack_base: usize,
}

fn stack_address() -> usize {
    let marker = 0u8;
    std::hint::black_box(&marker) as *const u8 as usize
}

// The functions on the recursive path (`apply`, `object`, `array`, `applicators`,
// `unevaluated`, `descend`, `in_place`) build no messages themselves: messages are built by
// helpers that return before the recursion continues, which keeps each level's stack small.
impl Run<'_> {
    fn leaf(&mut self, loc: &str, message: impl Into<String>) {
        self.out.push(SchemaViolation {
            path: loc.to_owned(),
            message: message.into(),
        });
    }

    /// Applies schema `id` to `v` at `loc`; `chain` lists the schemas already applied to this
    /// same value (a repeat is an infinite loop).
    fn apply(&mut self, id: NodeId, v: &Value, loc: &str, chain: &mut Vec<NodeId>) -> Eval {
        let v = unwrap_optional(v);
        let inst = Inst::of(v);
        let mut eval = Eval::new(&inst);
        let obj = match self.nodes.get(id) {
            Some(Node::Bool(true)) => return eval,
            Some(Node::Bool(false)) => {
                self.leaf(loc, "not allowed");
                return eval;
            }
            Some(Node::Obj(o)) => o,
            None => {
                self.leaf(loc, "schema is missing");
                return eval;
            }
        };
        if chain.contains(&id) {
            self.leaf(loc, "infinite loop in schema references");
            return eval;
        }
        if self.depth >= MAX_APPLY_DEPTH || stack_address().abs_diff(self.stack_base) > STACK_BUDGET
        {
            self.leaf(loc, "schema evaluation is nested too deeply");
            return eval;
        }
        if !self.assertions(obj, v, &inst, loc) {
            return eval;
        }
        chain.push(id);
        self.depth += 1;
        let entered = self.scope.last() != Some(&obj.resource);
        if entered {
            self.scope.push(obj.resource);
        }
        match &inst {
            Inst::Obj(m) => self.object(obj, v, m, loc, chain, &mut eval),
            Inst::Arr(a) => self.array(obj, a, loc, &mut eval),
            Inst::Str(s) => self.string(obj, s, loc),
            Inst::Num(n) => self.number(obj, *n, loc),
            Inst::Null | Inst::Bool(_) => {}
        }
        self.applicators(obj, v, loc, chain, &mut eval);
        self.unevaluated(obj, &inst, loc, &mut eval);
        if entered {
            self.scope.pop();
        }
        self.depth -= 1;
        chain.pop();
        eval
    }

    /// Applies `id` to a child value (a property or an item).
    fn descend(&mut self, id: NodeId, v: &Value, loc: &str, token: &str) {
        let child = child_location(loc, token);
        self.apply(id, v, &child, &mut Vec::new());
    }

    /// Applies `id` to the same value; on success its evaluations count for this schema.
    fn in_place(
        &mut self,
        id: NodeId,
        v: &Value,
        loc: &str,
        chain: &mut Vec<NodeId>,
        eval: &mut Eval,
    ) {
        let mark = self.out.len();
        let sub = self.apply(id, v, loc, chain);
        if self.out.len() == mark {
            eval.merge(&sub);
        }
    }

    /// `type` (alone when it fails: returns `false`), `const`, `enum` and `format`.
    #[inline(never)]
    fn assertions(&mut self, o: &ObjNode, v: &Value, inst: &Inst<'_>, loc: &str) -> bool {
        if !o.types.is_empty() && !o.types.iter().any(|t| t.matches(inst)) {
            let msg = format!("expected {}, but got {}", o.type_names, inst.type_name());
            self.leaf(loc, msg);
            return false;
        }
        if let Some((c, msg)) = &o.constant
            && !eq_json(v, c)
        {
            self.leaf(loc, msg.clone());
        }
        if let Some((items, msg)) = &o.enumeration
            && !items.iter().any(|e| eq_json(v, e))
        {
            self.leaf(loc, msg.clone());
        }
        if let (Some((format, name)), Inst::Str(s)) = (&o.format, inst)
            && !format.check(s)
        {
            self.leaf(loc, format!("{} is not valid {name}", quote(s)));
        }
        true
    }

    fn applicators(
        &mut self,
        o: &ObjNode,
        v: &Value,
        loc: &str,
        chain: &mut Vec<NodeId>,
        eval: &mut Eval,
    ) {
        if let Some(r) = o.reference {
            self.in_place(r, v, loc, chain, eval);
        }
        if let Some(d) = &o.dynamic_reference {
            let target = self
                .scope
                .iter()
                .find_map(|r| d.candidates.iter().find(|(c, _)| c == r).map(|(_, id)| *id))
                .unwrap_or(d.default);
            self.in_place(target, v, loc, chain, eval);
        }
        if let Some(not) = o.not {
            let mark = self.out.len();
            let sub = self.apply(not, v, loc, chain);
            if self.out.len() == mark {
                eval.merge(&sub);
                self.leaf(loc, "not failed");
            } else {
                self.out.truncate(mark);
            }
        }
        for &s in &o.all_of {
            self.in_place(s, v, loc, chain, eval);
        }
        if !o.any_of.is_empty() {
            self.any_of(&o.any_of, v, loc, chain, eval);
        }
        if !o.one_of.is_empty() {
            self.one_of(&o.one_of, v, loc, chain, eval);
        }
        if let Some(cond) = o.if_ {
            let mark = self.out.len();
            let sub = self.apply(cond, v, loc, chain);
            let ok = self.out.len() == mark;
            self.out.truncate(mark);
            if ok {
                eval.merge(&sub);
                if let Some(then) = o.then_ {
                    self.in_place(then, v, loc, chain, eval);
                }
            } else if let Some(otherwise) = o.else_ {
                self.in_place(otherwise, v, loc, chain, eval);
            }
        }
    }

    #[inline(never)]
    /// `anyOf`: every matching subschema's annotations count; the causes only if none matches.
    fn any_of(
        &mut self,
        any_of: &[NodeId],
        v: &Value,
        loc: &str,
        chain: &mut Vec<NodeId>,
        eval: &mut Eval,
    ) {
        let mut matched = false;
        let mut causes = Vec::new();
        for &s in any_of {
            let mark = self.out.len();
            let sub = self.apply(s, v, loc, chain);
            if self.out.len() == mark {
                matched = true;
                eval.merge(&sub);
            } else {
                causes.extend(self.out.drain(mark..));
            }
        }
        if !matched {
            self.out.extend(causes);
        }
    }

    /// `oneOf`: fails at the second match, or with every cause if none matches.
    fn one_of(
        &mut self,
        one_of: &[NodeId],
        v: &Value,
        loc: &str,
        chain: &mut Vec<NodeId>,
        eval: &mut Eval,
    ) {
        let mut matched: Option<usize> = None;
        let mut causes = Vec::new();
        for (i, &s) in one_of.iter().enumerate() {
            let mark = self.out.len();
            let sub = self.apply(s, v, loc, chain);
            if self.out.len() == mark {
                eval.merge(&sub);
                if let Some(first) = matched {
                    self.one_of_twice(loc, first, i);
                    break;
                }
                matched = Some(i);
            } else {
                causes.extend(self.out.drain(mark..));
            }
        }
        if matched.is_none() {
            self.out.extend(causes);
        }
    }

    fn one_of_twice(&mut self, loc: &str, first: usize, second: usize) {
        let msg = format!("valid against schemas at indexes {first} and {second}");
        self.leaf(loc, msg);
    }

    fn unevaluated(&mut self, o: &ObjNode, inst: &Inst<'_>, loc: &str, eval: &mut Eval) {
        match inst {
            Inst::Obj(m) => {
                if let Some(u) = o.unevaluated_properties {
                    for (i, (k, val)) in m.iter().enumerate() {
                        if eval.props.get(i).copied().unwrap_or(false) {
                            self.descend(u, val, loc, &key_str(k));
                        }
                    }
                    eval.props.fill(false);
                }
            }
            Inst::Arr(a) => {
                if let Some(u) = o.unevaluated_items {
                    for (i, item) in a.iter().enumerate() {
                        if eval.items.get(i).copied().unwrap_or(false) {
                            self.descend(u, item, loc, &i.to_string());
                        }
                    }
                    eval.items.fill(false);
                }
            }
            _ => {}
        }
    }

    fn object(
        &mut self,
        o: &ObjNode,
        v: &Value,
        m: &MapValue,
        loc: &str,
        chain: &mut Vec<NodeId>,
        eval: &mut Eval,
    ) {
        let entries: Vec<(Cow<'_, str>, &Value)> =
            m.iter().map(|(k, val)| (key_str(k), val)).collect();
        self.object_counts(o, &entries, loc);
        for (name, id) in &o.properties {
            if let Some(i) = find_entry(&entries, name) {
                eval.props[i] = false;
                self.descend(*id, entries[i].1, loc, name);
            }
        }
        if let Some(names) = o.property_names {
            for (k, _) in &entries {
                let key = Value::string(k.as_ref());
                self.descend(names, &key, loc, k);
            }
        }
        for (regex, id) in &o.pattern_properties {
            for (i, (k, val)) in entries.iter().enumerate() {
                if regex.is_match(k) {
                    eval.props[i] = false;
                    self.descend(*id, val, loc, k);
                }
            }
        }
        match &o.additional_properties {
            Some(Additional::Bool(false)) => {
                self.additional_not_allowed(&entries, &eval.props, loc);
                eval.props.fill(false);
            }
            Some(Additional::Bool(true)) => eval.props.fill(false),
            Some(Additional::Schema(id)) => {
                for (i, (k, val)) in entries.iter().enumerate() {
                    if eval.props[i] {
                        self.descend(*id, val, loc, k);
                    }
                }
                eval.props.fill(false);
            }
            None => {}
        }
        for (name, dep) in &o.dependencies {
            if find_entry(&entries, name).is_none() {
                continue;
            }
            match dep {
                Dependency::Schema(id) => self.in_place(*id, v, loc, chain, eval),
                Dependency::Required(list) => self.dependent_required(name, list, &entries, loc),
            }
        }
        for (name, list) in &o.dependent_required {
            if find_entry(&entries, name).is_some() {
                self.dependent_required(name, list, &entries, loc);
            }
        }
        for (name, id) in &o.dependent_schemas {
            if find_entry(&entries, name).is_some() {
                self.in_place(*id, v, loc, chain, eval);
            }
        }
    }

    /// `minProperties`, `maxProperties` and `required`.
    #[inline(never)]
    fn object_counts(&mut self, o: &ObjNode, entries: &[(Cow<'_, str>, &Value)], loc: &str) {
        let len = entries.len();
        if let Some(min) = o.min_properties
            && len < min
        {
            let msg = format!("minimum {min} properties allowed, but found {len} properties");
            self.leaf(loc, msg);
        }
        if let Some(max) = o.max_properties
            && len > max
        {
            let msg = format!("maximum {max} properties allowed, but found {len} properties");
            self.leaf(loc, msg);
        }
        let missing: Vec<String> = o
            .required
            .iter()
            .filter(|r| find_entry(entries, r).is_none())
            .map(|r| quote(r))
            .collect();
        if !missing.is_empty() {
            self.leaf(loc, format!("missing properties: {}", missing.join(", ")));
        }
    }

    #[inline(never)]
    fn additional_not_allowed(
        &mut self,
        entries: &[(Cow<'_, str>, &Value)],
        unevaluated: &[bool],
        loc: &str,
    ) {
        let extra: Vec<String> = entries
            .iter()
            .zip(unevaluated)
            .filter(|(_, u)| **u)
            .map(|((k, _), _)| quote(k))
            .collect();
        if !extra.is_empty() {
            let msg = format!("additionalProperties {} not allowed", extra.join(", "));
            self.leaf(loc, msg);
        }
    }

    #[inline(never)]
    fn dependent_required(
        &mut self,
        name: &str,
        list: &[String],
        entries: &[(Cow<'_, str>, &Value)],
        loc: &str,
    ) {
        for p in list {
            if find_entry(entries, p).is_none() {
                let msg = format!(
                    "property {} is required, if {} property exists",
                    quote(p),
                    quote(name)
                );
                self.leaf(loc, msg);
            }
        }
    }

    fn array(&mut self, o: &ObjNode, a: &[Value], loc: &str, eval: &mut Eval) {
        self.array_counts(o, a, loc);
        match &o.items {
            Some(Items::Single(id)) => {
                for (i, item) in a.iter().enumerate() {
                    self.descend(*id, item, loc, &i.to_string());
                }
                eval.items.fill(false);
            }
            Some(Items::Tuple(ids)) => {
                for (i, item) in a.iter().enumerate() {
                    if let Some(id) = ids.get(i) {
                        eval.items[i] = false;
                        self.descend(*id, item, loc, &i.to_string());
                    } else if let Some(Additional::Schema(id)) = &o.additional_items {
                        eval.items[i] = false;
                        self.descend(*id, item, loc, &i.to_string());
                    } else {
                        break;
                    }
                }
                match &o.additional_items {
                    Some(Additional::Bool(true)) => eval.items.fill(false),
                    Some(Additional::Bool(false)) if a.len() > ids.len() => {
                        self.too_many_items(ids.len(), a.len(), loc);
                    }
                    _ => {}
                }
            }
            None => {}
        }
        for (i, item) in a.iter().enumerate() {
            let id = match o.prefix_items.get(i) {
                Some(id) => *id,
                None => match o.items_2020 {
                    Some(id) => id,
                    None => break,
                },
            };
            eval.items[i] = false;
            self.descend(id, item, loc, &i.to_string());
        }
        if let Some(contains) = o.contains {
            let mut matched = 0;
            let mut causes = Vec::new();
            for (i, item) in a.iter().enumerate() {
                let mark = self.out.len();
                self.descend(contains, item, loc, &i.to_string());
                if self.out.len() == mark {
                    matched += 1;
                    if o.contains_eval {
                        eval.items[i] = false;
                    }
                } else {
                    causes.extend(self.out.drain(mark..));
                }
            }
            self.contains_counts(o, matched, causes, loc);
        }
    }

    /// `minItems`, `maxItems` and `uniqueItems`.
    #[inline(never)]
    fn array_counts(&mut self, o: &ObjNode, a: &[Value], loc: &str) {
        let len = a.len();
        if let Some(min) = o.min_items
            && len < min
        {
            self.leaf(
                loc,
                format!("minimum {min} items required, but found {len} items"),
            );
        }
        if let Some(max) = o.max_items
            && len > max
        {
            self.leaf(
                loc,
                format!("maximum {max} items required, but found {len} items"),
            );
        }
        if o.unique_items {
            for i in 1..len {
                for j in 0..i {
                    if eq_values(&a[i], &a[j]) {
                        self.leaf(loc, format!("items at index {j} and {i} are equal"));
                    }
                }
            }
        }
    }

    #[inline(never)]
    fn too_many_items(&mut self, allowed: usize, len: usize, loc: &str) {
        let msg = format!("only {allowed} items are allowed, but found {len} items");
        self.leaf(loc, msg);
    }

    /// `minContains` (reporting the items' errors when there are some) and `maxContains`.
    #[inline(never)]
    fn contains_counts(
        &mut self,
        o: &ObjNode,
        matched: usize,
        causes: Vec<SchemaViolation>,
        loc: &str,
    ) {
        let min = o.min_contains.unwrap_or(1);
        if matched < min {
            if causes.is_empty() {
                self.leaf(loc, format!("valid must be >= {min}, but got {matched}"));
            } else {
                self.out.extend(causes);
            }
        }
        if let Some(max) = o.max_contains
            && matched > max
        {
            self.leaf(loc, format!("valid must be <= {max}, but got {matched}"));
        }
    }

    #[inline(never)]
    fn string(&mut self, o: &ObjNode, s: &str, loc: &str) {
        if o.min_length.is_some() || o.max_length.is_some() {
            let len = s.chars().count();
            if let Some(min) = o.min_length
                && len < min
            {
                self.leaf(loc, format!("length must be >= {min}, but got {len}"));
            }
            if let Some(max) = o.max_length
                && len > max
            {
                self.leaf(loc, format!("length must be <= {max}, but got {len}"));
            }
        }
        if let Some(p) = &o.pattern
            && !p.regex.is_match(s)
        {
            self.leaf(loc, format!("does not match pattern {}", quote(&p.source)));
        }
        let base64 = o.content_encoding.as_deref() == Some("base64");
        let json = o.content_media_type.as_deref() == Some("application/json");
        if !base64 && !json {
            return;
        }
        let mut content = Cow::Borrowed(s.as_bytes());
        let mut decoded = o.content_encoding.is_none();
        if base64 {
            use base64::Engine as _;
            let cleaned: Vec<u8> = s.bytes().filter(|b| !matches!(b, b'\r' | b'\n')).collect();
            match base64::engine::general_purpose::STANDARD.decode(cleaned) {
                Ok(bytes) => {
                    content = Cow::Owned(bytes);
                    decoded = true;
                }
                Err(_) => self.leaf(loc, format!("{} is not base64 encoded", quote(s))),
            }
        }
        if !decoded || !json {
            return;
        }
        match serde_json::from_slice::<Json>(&content) {
            Err(_) => self.leaf(loc, "value is not of mediatype 'application/json'"),
            Ok(doc) => {
                if let Some(id) = o.content_schema {
                    let value = crate::cel::from_json(&doc);
                    self.apply(id, &value, loc, &mut Vec::new());
                }
            }
        }
    }

    #[inline(never)]
    fn number(&mut self, o: &ObjNode, n: f64, loc: &str) {
        let (value, bound) = (go_float(n), |b: f64| go_float(b));
        if let Some(min) = o.minimum
            && n < min
        {
            self.leaf(loc, format!("must be >= {} but found {value}", bound(min)));
        }
        if let Some(min) = o.exclusive_minimum
            && n <= min
        {
            self.leaf(loc, format!("must be > {} but found {value}", bound(min)));
        }
        if let Some(max) = o.maximum
            && n > max
        {
            self.leaf(loc, format!("must be <= {} but found {value}", bound(max)));
        }
        if let Some(max) = o.exclusive_maximum
            && n >= max
        {
            self.leaf(loc, format!("must be < {} but found {value}", bound(max)));
        }
        if let Some((m, dec)) = &o.multiple_of
            && !is_multiple_of(n, *m, *dec)
        {
            self.leaf(loc, format!("{value} not multipleOf {}", bound(*m)));
        }
    }
}

/// Position of property `name` among an object's entries (which are in key order).
fn find_entry(entries: &[(Cow<'_, str>, &Value)], name: &str) -> Option<usize> {
    entries
        .binary_search_by(|(k, _)| k.as_ref().cmp(name))
        .ok()
        .filter(|&i| entries[i].0 == name)
        .or_else(|| entries.iter().position(|(k, _)| k == name))
}

#[inline(never)]
fn child_location(loc: &str, token: &str) -> String {
    format!("{loc}/{}", location_token(token))
}

// === Formats (asserted, as Cerbos enables `AssertFormat`) ===

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    DateTime,
    Date,
    Time,
    Duration,
    Hostname,
    Email,
    Ipv4,
    Ipv6,
    Uri,
    UriReference,
    UriTemplate,
    Regex,
    JsonPointer,
    RelativeJsonPointer,
    Uuid,
}

impl Format {
    /// The format with this name; unknown formats are not asserted, as in the library.
    fn from_name(name: &str) -> Option<Format> {
        Some(match name {
            "date-time" => Format::DateTime,
            "date" => Format::Date,
            "time" => Format::Time,
            "duration" => Format::Duration,
            "hostname" => Format::Hostname,
            "email" => Format::Email,
            "ipv4" | "ip-address" => Format::Ipv4,
            "ipv6" => Format::Ipv6,
            "uri" | "iri" => Format::Uri,
            "uri-reference" | "iri-reference" => Format::UriReference,
            "uri-template" => Format::UriTemplate,
            "regex" => Format::Regex,
            "json-pointer" => Format::JsonPointer,
            "relative-json-pointer" => Format::RelativeJsonPointer,
            "uuid" => Format::Uuid,
            _ => return None,
        })
    }

    fn check(self, s: &str) -> bool {
        match self {
            Format::DateTime => is_date_time(s),
            Format::Date => is_date(s),
            Format::Time => is_time(s),
            Format::Duration => is_duration(s),
            Format::Hostname => is_hostname(s),
            Format::Email => is_email(s),
            Format::Ipv4 => is_ipv4(s),
            Format::Ipv6 => is_ipv6(s),
            Format::Uri => go_url_parse(s) == Some(true),
            Format::UriReference => go_url_parse(s).is_some() && !s.contains('\\'),
            Format::UriTemplate => {
                go_url_parse(s).is_some() && url_path(s).split('/').all(braces_balanced)
            }
            Format::Regex => compile_regex(s).is_ok(),
            Format::JsonPointer => is_json_pointer(s),
            Format::RelativeJsonPointer => is_relative_json_pointer(s),
            Format::Uuid => is_uuid(s),
        }
    }
}

fn two_digits(b: &[u8]) -> Option<u32> {
    match b {
        [x @ b'0'..=b'9', y @ b'0'..=b'9'] => Some(u32::from(x - b'0') * 10 + u32::from(y - b'0')),
        _ => None,
    }
}

/// RFC 3339 `full-date`, with a real calendar day.
fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let (Some(y1), Some(y2), Some(month), Some(day)) = (
        two_digits(&b[0..2]),
        two_digits(&b[2..4]),
        two_digits(&b[5..7]),
        two_digits(&b[8..10]),
    ) else {
        return false;
    };
    let year = y1 * 100 + y2;
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&day)
}

/// RFC 3339 `full-time`; a leap second only at 23:59 UTC.
fn is_time(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 9 || b[2] != b':' || b[5] != b':' {
        return false;
    }
    let (Some(h), Some(m), Some(sec)) = (
        two_digits(&b[0..2]),
        two_digits(&b[3..5]),
        two_digits(&b[6..8]),
    ) else {
        return false;
    };
    if h > 23 || m > 59 || sec > 60 {
        return false;
    }
    let mut rest = &b[8..];
    if rest.first() == Some(&b'.') {
        let digits = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return false;
        }
        rest = &rest[1 + digits..];
    }
    let (mut h, mut m) = (i64::from(h), i64::from(m));
    match rest {
        [b'z' | b'Z'] => {}
        [sign @ (b'+' | b'-'), zh @ .., b':', _, _] if zh.len() == 2 => {
            let (Some(zh), Some(zm)) = (two_digits(zh), two_digits(&rest[4..6])) else {
                return false;
            };
            if zh > 23 || zm > 59 {
                return false;
            }
            let offset = i64::from(zh * 60 + zm);
            let mut hm = h * 60 + m + if *sign == b'+' { -offset } else { offset };
            if hm < 0 {
                hm += 24 * 60;
            }
            (h, m) = (hm / 60, hm % 60);
        }
        _ => return false,
    }
    sec != 60 || (h == 23 && m == 59)
}

fn is_date_time(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 20 || !matches!(b[10], b'T' | b't') {
        return false;
    }
    matches!((s.get(..10), s.get(11..)), (Some(d), Some(t)) if is_date(d) && is_time(t))
}

/// ISO 8601 duration, as RFC 3339 appendix A writes it (`P1Y2M`, `PT1H30M`, `P2W`).
fn is_duration(s: &str) -> bool {
    let Some(mut rest) = s.strip_prefix('P') else {
        return false;
    };
    fn units(rest: &mut &str) -> Option<String> {
        let mut found = String::new();
        while !rest.is_empty() && !rest.starts_with('T') {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 || digits == rest.len() {
                return None;
            }
            let unit = rest[digits..].chars().next()?;
            found.push(unit);
            *rest = &rest[digits + unit.len_utf8()..];
        }
        Some(found)
    }
    let Some(date_units) = units(&mut rest) else {
        return false;
    };
    if date_units == "W" {
        return rest.is_empty();
    }
    if !date_units.is_empty() {
        if !"YMD".contains(date_units.as_str()) {
            return false;
        }
        if rest.is_empty() {
            return true;
        }
    }
    let Some(mut rest) = rest.strip_prefix('T') else {
        return false;
    };
    match units(&mut rest) {
        Some(time_units) => {
            rest.is_empty() && !time_units.is_empty() && "HMS".contains(time_units.as_str())
        }
        None => false,
    }
}

/// RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens.
fn is_hostname(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    if s.len() > 253 {
        return false;
    }
    s.split('.').all(|label| {
        (1..=63).contains(&label.len())
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-')
    })
}

fn is_email(s: &str) -> bool {
    if s.len() > 254 {
        return false;
    }
    let Some(at) = s.rfind('@') else {
        return false;
    };
    let (local, domain) = (&s[..at], &s[at + 1..]);
    if local.len() > 64 {
        return false;
    }
    if let Some(literal) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
        return match literal.strip_prefix("IPv6:") {
            Some(v6) => is_ipv6(v6),
            None => is_ipv4(literal),
        } && is_local_part(local);
    }
    is_hostname(domain) && is_local_part(local)
}

/// RFC 5322 `local-part`: a dot-atom or a quoted string.
fn is_local_part(local: &str) -> bool {
    if let Some(inner) = local.strip_prefix('"').and_then(|l| l.strip_suffix('"')) {
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if chars.next().is_none() {
                        return false;
                    }
                }
                '"' => return false,
                c if c == ' ' || c == '\t' || !c.is_control() => {}
                _ => return false,
            }
        }
        return true;
    }
    let atext = |c: char| {
        !c.is_ascii() && !c.is_control() || c.is_ascii_graphic() && !"()<>[]:;@\\,\".".contains(c)
    };
    !local.is_empty()
        && local
            .split('.')
            .all(|atom| !atom.is_empty() && atom.chars().all(atext))
}

/// Dotted quad; leading zeros rejected (they would read as octal).
/// santhosh-tekuri/jsonschema's `isIPV4`: four groups that Go's `strconv.Atoi` reads as 0 to
/// 255 (a sign is allowed), without a leading zero unless the group is zero.
fn is_ipv4(s: &str) -> bool {
    let groups: Vec<&str> = s.split('.').collect();
    groups.len() == 4
        && groups.iter().all(|g| {
            let digits = g.strip_prefix(['+', '-']).unwrap_or(g);
            !digits.is_empty()
                && digits.bytes().all(|c| c.is_ascii_digit())
                && g.parse::<i64>()
                    .is_ok_and(|n| (0..=255).contains(&n) && (n == 0 || !g.starts_with('0')))
        })
}

fn is_ipv6(s: &str) -> bool {
    s.contains(':') && s.parse::<std::net::Ipv6Addr>().is_ok()
}

/// The path of a URL reference as Go's `url.Parse` splits it: after the scheme and the
/// authority, before the query and the fragment.
fn url_path(s: &str) -> &str {
    let s = s.split(['#', '?']).next().unwrap_or_default();
    let s = match s.find(':') {
        Some(i)
            if s[..i].starts_with(|c: char| c.is_ascii_alphabetic())
                && s[..i]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')) =>
        {
            &s[i + 1..]
        }
        _ => s,
    };
    match s.strip_prefix("//") {
        Some(rest) => rest.find('/').map_or("", |i| &rest[i..]),
        None => s,
    }
}

fn braces_balanced(s: &str) -> bool {
    let mut open = false;
    for c in s.chars() {
        match c {
            '{' if open => return false,
            '{' => open = true,
            '}' if !open => return false,
            '}' => open = false,
            _ => {}
        }
    }
    !open
}

fn has_valid_escapes(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if i + 2 >= b.len() {
                return false;
            }
            if hex_val(b[i + 1]).is_none() || hex_val(b[i + 2]).is_none() {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

/// Whether Go's `url.Parse` accepts `s` (plus the library's IPv6 host check); `Some(true)` when
/// the URL is absolute (has a scheme).
fn go_url_parse(s: &str) -> Option<bool> {
    if s.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return None;
    }
    let (rest, fragment) = split_fragment(s);
    if fragment.is_some_and(|f| !has_valid_escapes(f)) {
        return None;
    }
    let mut rest = rest;
    let mut scheme = false;
    for (i, c) in rest.char_indices() {
        match c {
            'a'..='z' | 'A'..='Z' => {}
            '0'..='9' | '+' | '-' | '.' if i > 0 => {}
            ':' if i == 0 => return None,
            ':' => {
                scheme = true;
                rest = &rest[i + 1..];
                break;
            }
            _ => break,
        }
    }
    let rest = rest.split('?').next().unwrap_or_default();
    if !rest.starts_with('/') {
        if scheme {
            return Some(true);
        }
        if rest.split('/').next().is_some_and(|seg| seg.contains(':')) {
            return None;
        }
    }
    let mut path = rest;
    if (scheme || !rest.starts_with("///")) && rest.starts_with("//") {
        let authority_end = rest[2..].find('/').map_or(rest.len(), |i| i + 2);
        if !is_go_authority(&rest[2..authority_end]) {
            return None;
        }
        path = &rest[authority_end..];
    }
    has_valid_escapes(path).then_some(scheme)
}

fn is_go_authority(authority: &str) -> bool {
    let (userinfo, host) = match authority.rfind('@') {
        Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
        None => (None, authority),
    };
    if let Some(u) = userinfo {
        let ok = u
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._:~!$&'()*+,;=%@".contains(c));
        if !ok || !has_valid_escapes(u) {
            return false;
        }
    }
    let valid_port = |p: &str| {
        p.is_empty()
            || p.strip_prefix(':')
                .is_some_and(|d| d.bytes().all(|b| b.is_ascii_digit()))
    };
    let hostname = if let Some(inner) = host.strip_prefix('[') {
        let Some(end) = inner.rfind(']') else {
            return false;
        };
        if !valid_port(&inner[end + 1..]) {
            return false;
        }
        // santhosh-tekuri/jsonschema's urlParse: a bracketed host must be an IPv6 address.
        let ip = &inner[..end];
        let ip = ip.split("%25").next().unwrap_or(ip);
        return is_ipv6(ip);
    } else {
        match host.rfind(':') {
            Some(i) => {
                if !valid_port(&host[i..]) {
                    return false;
                }
                &host[..i]
            }
            None => host,
        }
    };
    // An IPv6 address must be enclosed in brackets (santhosh-tekuri/jsonschema's urlParse).
    !hostname.contains(':')
        && has_valid_escapes(hostname)
        && hostname.bytes().all(|b| {
            b >= 0x80 || b.is_ascii_alphanumeric() || b"-_.~!$&'()*+,;=:[]<>\"%".contains(&b)
        })
}

fn is_json_pointer(s: &str) -> bool {
    if !s.is_empty() && !s.starts_with('/') {
        return false;
    }
    let b = s.as_bytes();
    b.iter()
        .enumerate()
        .all(|(i, c)| *c != b'~' || matches!(b.get(i + 1), Some(b'0' | b'1')))
}

fn is_relative_json_pointer(s: &str) -> bool {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || (digits > 1 && s.starts_with('0')) {
        return false;
    }
    let rest = &s[digits..];
    rest == "#" || is_json_pointer(rest)
}

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|c| c.is_ascii_hexdigit()))
}

// === Regular expressions with Go's (RE2) semantics ===

/// Compiles a pattern as Go's `regexp` reads it: `\d`, `\w`, `\s` and `\b` are ASCII-only, and
/// `{`, `[`, `&&`, `--` and `~~` that Go takes literally stay literal.
fn compile_regex(pattern: &str) -> Result<Regex, String> {
    Regex::new(&translate_go_regex(pattern)).map_err(|e| {
        format!(
            "{} is not a valid regular expression: {}",
            quote(pattern),
            e.to_string().lines().last().unwrap_or_default().trim()
        )
    })
}

fn translate_go_regex(p: &str) -> String {
    let chars: Vec<char> = p.chars().collect();
    let mut out = String::with_capacity(p.len() + 8);
    let mut in_class = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' => {
                i = translate_escape(&chars, i, in_class, &mut out);
                continue;
            }
            '[' if !in_class => {
                in_class = true;
                out.push('[');
                if chars.get(i + 1) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
                if chars.get(i + 1) == Some(&']') {
                    out.push_str(r"\]");
                    i += 1;
                }
            }
            '[' => {
                if chars.get(i + 1) == Some(&':')
                    && let Some(end) = (i + 2..chars.len().saturating_sub(1))
                        .find(|&j| chars[j] == ':' && chars[j + 1] == ']')
                {
                    out.extend(&chars[i..=end + 1]);
                    i = end + 2;
                    continue;
                }
                out.push_str(r"\[");
            }
            ']' if in_class => {
                in_class = false;
                out.push(']');
            }
            '&' | '~' if in_class => {
                out.push('\\');
                out.push(c);
            }
            '-' if in_class && chars.get(i + 1) == Some(&'-') => {
                out.push_str(r"\-\-");
                i += 2;
                continue;
            }
            '{' if !in_class && !is_repetition(&chars[i..]) => out.push_str(r"\{"),
            _ => out.push(c),
        }
        i += 1;
    }
    out
}

/// One escape at `chars[i]` (a backslash) in Go's syntax, written in the regex crate's;
/// returns the index after it.
fn translate_escape(chars: &[char], i: usize, in_class: bool, out: &mut String) -> usize {
    match chars.get(i + 1) {
        Some('d') => out.push_str("[0-9]"),
        Some('D') => out.push_str("[^0-9]"),
        Some('w') => out.push_str("[0-9A-Za-z_]"),
        Some('W') => out.push_str("[^0-9A-Za-z_]"),
        Some('s') => out.push_str(r"[\t\n\x0C\r ]"),
        Some('S') => out.push_str(r"[^\t\n\x0C\r ]"),
        Some('b') if !in_class => out.push_str(r"(?-u:\b)"),
        // A Unicode class by name (`\p{Letter}`, `\pL`), copied whole.
        Some(&k @ ('p' | 'P')) if chars.get(i + 2) == Some(&'{') => {
            return match chars[i + 2..].iter().position(|&c| c == '}') {
                Some(len) => {
                    out.push('\\');
                    out.push(k);
                    out.extend(&chars[i + 2..=i + 2 + len]);
                    i + 3 + len
                }
                None => {
                    out.push_str("\\p");
                    i + 2
                }
            };
        }
        Some('B') if !in_class => out.push_str(r"(?-u:\B)"),
        Some(&n) => {
            out.push('\\');
            out.push(n);
        }
        None => out.push('\\'),
    }
    i + 2
}

/// Whether `s` starts with `{n}`, `{n,}` or `{n,m}`.
fn is_repetition(s: &[char]) -> bool {
    let mut i = 1;
    let start = i;
    while s.get(i).is_some_and(char::is_ascii_digit) {
        i += 1;
    }
    if i == start {
        return false;
    }
    if s.get(i) == Some(&',') {
        i += 1;
        while s.get(i).is_some_and(char::is_ascii_digit) {
            i += 1;
        }
    }
    s.get(i) == Some(&'}')
}

// === Go-compatible rendering ===

/// Go's `strconv.Quote`.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{ad}') => {
                let n = c as u32;
                if n <= 0xFFFF {
                    out.push_str(&format!("\\u{n:04x}"));
                } else {
                    out.push_str(&format!("\\U{n:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The library's single-quoted form of a string (`'intField'`).
fn quote(s: &str) -> String {
    let q = go_quote(s);
    let inner = &q[1..q.len() - 1];
    format!("'{}'", inner.replace("\\\"", "\"").replace('\'', "\\'"))
}

/// Go's `%#v` of a schema constant decoded with `UseNumber`: numbers are `json.Number`
/// strings and print quoted.
fn go_sharp_v(v: &Json) -> String {
    match v {
        Json::Null => "<nil>".to_owned(),
        Json::Bool(b) => b.to_string(),
        Json::Number(n) => go_quote(&n.to_string()),
        Json::String(s) => go_quote(s),
        Json::Array(_) | Json::Object(_) => v.to_string(),
    }
}

/// Go's `%v` of a `float64`: shortest digits, exponent form below 1e-4 and from 1e6.
fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_owned();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.to_owned();
    }
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if f < 0.0 { "-" } else { "" };
    if !(-4..6).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        let dot = if rest.is_empty() { "" } else { "." };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{dot}{rest}e{esign}{:02}", exp.abs());
    }
    if exp < 0 {
        let zeros = "0".repeat((-exp - 1) as usize);
        return format!("{sign}0.{zeros}{digits}");
    }
    let int_len = exp as usize + 1;
    if digits.len() <= int_len {
        format!("{sign}{digits}{}", "0".repeat(int_len - digits.len()))
    } else {
        format!("{sign}{}.{}", &digits[..int_len], &digits[int_len..])
    }
}

// === Exact decimal arithmetic for multipleOf ===

/// `mantissa * 10^exp`, with the shortest decimal digits of the number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Decimal {
    mantissa: u128,
    exp: i32,
}

impl Decimal {
    fn parse(s: &str) -> Option<Decimal> {
        let s = s.trim_start_matches('-');
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
            return None;
        }
        let mut digits = format!("{int}{frac}");
        let mut exp = -i32::try_from(frac.len()).ok()?;
        while digits.len() > 1 && digits.ends_with('0') {
            digits.pop();
            exp += 1;
        }
        let digits = digits.trim_start_matches('0');
        if digits.is_empty() {
            return Some(Decimal {
                mantissa: 0,
                exp: 0,
            });
        }
        if digits.len() > 38 {
            return None;
        }
        Some(Decimal {
            mantissa: digits.parse().ok()?,
            exp,
        })
    }

    fn from_f64(f: f64) -> Option<Decimal> {
        f.is_finite()
            .then(|| Decimal::parse(&format!("{f}")))
            .flatten()
    }

    fn from_json(v: &Json) -> Option<Decimal> {
        match v {
            Json::Number(n) if n.is_u64() || n.is_i64() => Decimal::parse(&n.to_string()),
            Json::Number(n) => n.as_f64().and_then(Decimal::from_f64),
            _ => None,
        }
    }
}

fn pow_mod(base: u128, mut exp: u32, m: u128) -> u128 {
    let mut result = 1 % m;
    let mut b = base % m;
    while exp > 0 {
        if exp & 1 == 1 {
            result = result * b % m;
        }
        b = b * b % m;
        exp >>= 1;
    }
    result
}

/// Whether `n / m` is an integer, computed on the decimal forms (so `0.3` is a multiple of
/// `0.1`), falling back to floating point for numbers too large to handle exactly.
fn is_multiple_of(n: f64, m: f64, divisor: Option<Decimal>) -> bool {
    let exact = divisor.zip(Decimal::from_f64(n)).and_then(|(d, v)| {
        if d.mantissa == 0 || d.mantissa > u128::from(u64::MAX) {
            return None;
        }
        if v.mantissa == 0 {
            return Some(true);
        }
        let k = v.exp - d.exp;
        if k >= 0 {
            let a = v.mantissa % d.mantissa;
            Some((a * pow_mod(10, k.unsigned_abs(), d.mantissa)).is_multiple_of(d.mantissa))
        } else {
            let q = 10u128
                .checked_pow(k.unsigned_abs())
                .and_then(|p| p.checked_mul(d.mantissa));
            Some(q.is_some_and(|q| v.mantissa.is_multiple_of(q)))
        }
    });
    exact.unwrap_or_else(|| {
        let q = n / m;
        q.is_finite() && q.fract() == 0.0
    })
}

#[cfg(test)]
mod suite;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn store(docs: &[(&str, Json)]) -> SchemaStore {
        let docs = docs
            .iter()
            .map(|(p, v)| ((*p).to_owned(), v.clone()))
            .collect();
        SchemaStore::new(docs).unwrap_or_else(|e| panic!("{e}"))
    }

    fn compiled(schema: Json) -> CompiledSchema {
        store(&[("s.json", schema)])
            .get("cerbos:///s.json")
            .cloned()
            .expect("compiled")
    }

    /// (path, message) of every violation.
    fn check(schema: Json, value: Json) -> Vec<(String, String)> {
        compiled(schema)
            .validate(&crate::cel::from_json(&value))
            .into_iter()
            .map(|v| (v.path, v.message))
            .collect()
    }

    fn messages(schema: Json, value: Json) -> Vec<String> {
        check(schema, value).into_iter().map(|(_, m)| m).collect()
    }

    fn compile_error(schema: Json) -> String {
        match SchemaStore::new(vec![("s.json".to_owned(), schema)]) {
            Ok(_) => panic!("expected a compile error"),
            Err(errors) => errors.to_string(),
        }
    }

    fn v(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(p, m)| ((*p).to_owned(), (*m).to_owned()))
            .collect()
    }

    #[test]
    fn issue_16_builtin_metaschema_and_vocabularies() {
        // A $ref to the draft 2020-12 metaschema resolves to the built-in documents; they
        // never appear as store documents.
        let st = store(&[(
            "s.json",
            json!({"$ref": "https://json-schema.org/draft/2020-12/schema"}),
        )]);
        assert_eq!(st.paths().collect::<Vec<_>>(), ["s.json"]);
        let meta = st.get("cerbos:///s.json").expect("compiled");
        assert!(meta.is_valid(&crate::cel::from_json(&json!({"type": "string"}))));
        assert!(!meta.is_valid(&crate::cel::from_json(&json!({"type": 7}))));
        // A custom metaschema without the validation vocabulary: applicators apply,
        // validation keywords do not.
        let no_validation = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$vocabulary": {
                "https://json-schema.org/draft/2020-12/vocab/core": true,
                "https://json-schema.org/draft/2020-12/vocab/applicator": true
            }
        });
        let s = json!({"$schema": "cerbos:///meta.json",
                       "properties": {"a": false, "n": {"minimum": 10}}});
        let st = store(&[("meta.json", no_validation), ("s.json", s)]);
        let compiled = st.get("cerbos:///s.json").expect("compiled");
        assert!(compiled.is_valid(&crate::cel::from_json(&json!({"n": 1}))));
        assert!(!compiled.is_valid(&crate::cel::from_json(&json!({"a": 1}))));
        // A required vocabulary the validator does not know makes the schema unusable.
        let unknown = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$vocabulary": {"https://example.com/vocab/x": true}
        });
        let err = SchemaStore::new(vec![
            ("meta.json".to_owned(), unknown),
            (
                "s.json".to_owned(),
                json!({"$schema": "cerbos:///meta.json"}),
            ),
        ])
        .expect_err("an unknown required vocabulary");
        assert!(
            err.to_string()
                .contains("unsupported vocabulary 'https://example.com/vocab/x'"),
            "{err}"
        );
    }

    #[test]
    fn type_keyword() {
        let s = json!({"type": "string"});
        assert_eq!(messages(s.clone(), json!("x")), Vec::<String>::new());
        assert_eq!(messages(s, json!(1)), ["expected string, but got number"]);
        let s = json!({"items": {"type": ["string", "null"]}});
        assert_eq!(
            messages(s.clone(), json!([null, "a"])),
            Vec::<String>::new()
        );
        assert_eq!(
            check(s, json!([[]])),
            v(&[("/0", "expected string or null, but got array")])
        );
        let s = json!({"type": "integer"});
        assert!(messages(s.clone(), json!(3.0)).is_empty());
        assert_eq!(
            messages(s, json!(3.5)),
            ["expected integer, but got number"]
        );
        // A type mismatch is reported alone.
        let s = json!({"type": "string", "minLength": 3, "enum": ["abc"]});
        assert_eq!(messages(s, json!(1)), ["expected string, but got number"]);
        // CEL-only values are checked as JSON.
        let c = compiled(json!({"type": "integer"}));
        assert!(c.is_valid(&Value::Int(4)));
        assert!(c.is_valid(&Value::Uint(4)));
        assert!(!c.is_valid(&Value::string("4")));
    }

    #[test]
    fn enum_and_const() {
        let s = json!({"enum": ["marketing", "engineering"]});
        assert_eq!(
            messages(s, json!("sales")),
            [r#"value must be one of "marketing", "engineering""#]
        );
        assert_eq!(
            messages(json!({"enum": ["a"]}), json!("b")),
            [r#"value must be "a""#]
        );
        assert_eq!(
            messages(json!({"enum": [1, 2.5, null, true]}), json!("x")),
            [r#"value must be one of "1", "2.5", <nil>, true"#]
        );
        assert!(messages(json!({"enum": [1]}), json!(1.0)).is_empty());
        assert_eq!(
            messages(json!({"enum": [[1], {"a": 1}]}), json!([2])),
            ["enum failed"]
        );
        assert!(messages(json!({"enum": [{"a": [1]}]}), json!({"a": [1]})).is_empty());
        assert_eq!(
            messages(json!({"const": "x"}), json!("y")),
            [r#"value must be "x""#]
        );
        assert_eq!(
            messages(json!({"const": {"a": 1}}), json!({})),
            ["const failed"]
        );
        assert!(messages(json!({"items": {"const": null}}), json!([null])).is_empty());
    }

    #[test]
    fn object_keywords() {
        let s = json!({
            "type": "object",
            "required": ["a", "b", "c"],
            "properties": {
                "a": {"type": "string"},
                "nested": {"type": "object", "required": ["x"]}
            }
        });
        assert_eq!(
            check(s, json!({"a": 1, "nested": {}})),
            v(&[
                ("", "missing properties: 'b', 'c'"),
                ("/a", "expected string, but got number"),
                ("/nested", "missing properties: 'x'"),
            ])
        );
        let s = json!({"properties": {"a": true}, "patternProperties": {"^x-": {"type": "integer"}},
                       "additionalProperties": false});
        assert_eq!(
            check(s, json!({"a": 1, "x-b": "s", "c": 1, "d": 2})),
            v(&[
                ("/x-b", "expected integer, but got string"),
                ("", "additionalProperties 'c', 'd' not allowed"),
            ])
        );
        let s = json!({"additionalProperties": {"type": "string"}});
        assert_eq!(
            check(s, json!({"k": 1})),
            v(&[("/k", "expected string, but got number")])
        );
        let s = json!({"propertyNames": {"maxLength": 2}});
        assert_eq!(
            check(s, json!({"abc": 1})),
            v(&[("/abc", "length must be <= 2, but got 3")])
        );
        let s = json!({"minProperties": 2, "maxProperties": 0});
        assert_eq!(
            messages(s, json!({"a": 1})),
            [
                "minimum 2 properties allowed, but found 1 properties",
                "maximum 0 properties allowed, but found 1 properties"
            ]
        );
        let s = json!({"dependentRequired": {"a": ["b"]}, "dependentSchemas": {"a": {"required": ["c"]}}});
        assert_eq!(
            messages(s.clone(), json!({"a": 1})),
            [
                "property 'b' is required, if 'a' property exists",
                "missing properties: 'c'"
            ]
        );
        assert!(messages(s, json!({"x": 1})).is_empty());
        let s = json!({"$schema": "http://json-schema.org/draft-07/schema#",
                       "dependencies": {"a": ["b"], "c": {"required": ["d"]}}});
        assert_eq!(
            messages(s, json!({"a": 1, "c": 2})),
            [
                "property 'b' is required, if 'a' property exists",
                "missing properties: 'd'"
            ]
        );
        // Locations are pointer-escaped, then path-escaped, as the library writes them.
        let s = json!({"properties": {"a b": {"type": "string"}, "c/d": {"type": "string"}}});
        assert_eq!(
            check(s, json!({"a b": 1, "c/d": 2})),
            v(&[
                ("/a%20b", "expected string, but got number"),
                ("/c~1d", "expected string, but got number"),
            ])
        );
    }

    #[test]
    fn array_keywords() {
        let s = json!({"items": {"type": "string"}, "minItems": 3, "maxItems": 1});
        assert_eq!(
            check(s, json!(["a", 1])),
            v(&[
                ("", "minimum 3 items required, but found 2 items"),
                ("", "maximum 1 items required, but found 2 items"),
                ("/1", "expected string, but got number"),
            ])
        );
        let s = json!({"prefixItems": [{"type": "integer"}], "items": false});
        assert_eq!(check(s, json!([1, 2])), v(&[("/1", "not allowed")]));
        let s = json!({"$schema": "http://json-schema.org/draft-07/schema#",
                       "items": [{"type": "integer"}], "additionalItems": false});
        assert_eq!(
            messages(s, json!([1, 2, 3])),
            ["only 1 items are allowed, but found 3 items"]
        );
        assert_eq!(
            messages(
                json!({"uniqueItems": true}),
                json!([1, "a", 1.0, {"k": [1]}, {"k": [1]}])
            ),
            [
                "items at index 0 and 2 are equal",
                "items at index 3 and 4 are equal"
            ]
        );
        let s = json!({"contains": {"type": "string"}});
        assert_eq!(
            check(s.clone(), json!([1, 2])),
            v(&[
                ("/0", "expected string, but got number"),
                ("/1", "expected string, but got number"),
            ])
        );
        assert_eq!(
            messages(s.clone(), json!([])),
            ["valid must be >= 1, but got 0"]
        );
        assert!(messages(s, json!([1, "a"])).is_empty());
        let s = json!({"contains": {"type": "string"}, "minContains": 2, "maxContains": 2});
        assert_eq!(
            messages(s.clone(), json!(["a", "b", "c"])),
            ["valid must be <= 2, but got 3"]
        );
        assert_eq!(
            messages(s, json!(["a", 1])),
            ["expected string, but got number"]
        );
    }

    #[test]
    fn string_keywords() {
        let s = json!({"minLength": 5, "maxLength": 6});
        assert!(messages(s.clone(), json!("héllo")).is_empty());
        assert_eq!(
            messages(s.clone(), json!("héé")),
            ["length must be >= 5, but got 3"]
        );
        assert_eq!(
            messages(s, json!("abcdefg")),
            ["length must be <= 6, but got 7"]
        );
        let s = json!({"pattern": "^\\d+$"});
        assert!(messages(s.clone(), json!("123")).is_empty());
        // Go's \d is ASCII-only.
        assert_eq!(
            messages(s, json!("١٢")),
            ["does not match pattern '^\\\\d+$'"]
        );
        assert!(messages(json!({"pattern": "a{"}), json!("xa{y")).is_empty());
        assert!(messages(json!({"pattern": "[[]"}), json!("[")).is_empty());
        let s = json!({"contentEncoding": "base64", "contentMediaType": "application/json"});
        assert!(messages(s.clone(), json!("eyJhIjoxfQ==")).is_empty());
        assert_eq!(
            messages(s.clone(), json!("!!")),
            ["'!!' is not base64 encoded"]
        );
        assert_eq!(
            messages(s, json!("bm90IGpzb24=")),
            ["value is not of mediatype 'application/json'"]
        );
    }

    #[test]
    fn formats() {
        let valid = [
            ("date-time", "2021-12-01T12:11:13+00:00"),
            ("date-time", "1990-12-31T23:59:60Z"),
            ("date-time", "2021-12-01t12:11:13.5z"),
            ("date", "2024-02-29"),
            ("time", "08:30:06.283185Z"),
            ("duration", "P4DT12H30M5S"),
            ("duration", "P2W"),
            ("email", "joe.bloggs@example.com"),
            ("email", "\"joe bloggs\"@example.com"),
            ("hostname", "www.example.com"),
            ("ipv4", "192.168.0.1"),
            ("ipv6", "::ffff:192.168.0.1"),
            ("uri", "https://example.com/a?b=c#d"),
            ("uri", "urn:isbn:0451450523"),
            ("uri-reference", "../a/b"),
            ("uri-template", "http://example.com/{id}"),
            ("uuid", "2eb8aa08-aa98-11ea-b4aa-73b441d16380"),
            ("regex", "^a+$"),
            ("json-pointer", "/a~1b/0"),
            ("relative-json-pointer", "0#"),
            ("unknown-format", "anything"),
        ];
        for (format, value) in valid {
            assert!(
                messages(json!({"format": format}), json!(value)).is_empty(),
                "{format}: {value}"
            );
        }
        let invalid = [
            ("date-time", "2021-12-01 12:11:13Z"),
            ("date-time", "1990-12-31T15:59:60Z"),
            ("date", "2023-02-29"),
            ("time", "25:00:00Z"),
            ("duration", "PT"),
            ("duration", "P1YD"),
            ("email", "joe@bloggs@"),
            ("email", ".joe@example.com"),
            ("hostname", "-a.example.com"),
            ("ipv4", "192.168.01.1"),
            ("ipv4", "256.1.1.1"),
            ("ipv6", "12345::"),
            ("uri", "//example.com/relative"),
            ("uri", "http://exa mple.com"),
            ("uri-reference", "\\\\windows"),
            ("uuid", "2eb8aa08-aa98-11ea-b4aa-73b441d1638"),
            ("regex", "(unclosed"),
            ("json-pointer", "a/b"),
            ("relative-json-pointer", "01/a"),
        ];
        for (format, value) in invalid {
            assert_eq!(
                messages(json!({"format": format}), json!(value)),
                [format!("{} is not valid '{format}'", quote(value))],
                "{format}: {value}"
            );
        }
        // Formats only apply to strings.
        assert!(messages(json!({"format": "date"}), json!(5)).is_empty());
    }

    #[test]
    fn number_keywords() {
        let s = json!({"minimum": 20, "maximum": 400});
        assert_eq!(messages(s.clone(), json!(3)), ["must be >= 20 but found 3"]);
        assert_eq!(
            messages(s, json!(400.5)),
            ["must be <= 400 but found 400.5"]
        );
        let s = json!({"exclusiveMinimum": 0, "exclusiveMaximum": 1_000_000});
        assert_eq!(messages(s.clone(), json!(0)), ["must be > 0 but found 0"]);
        assert_eq!(
            messages(s, json!(1_000_000)),
            ["must be < 1e+06 but found 1e+06"]
        );
        let s = json!({"$schema": "http://json-schema.org/draft-04/schema#",
                       "maximum": 5, "exclusiveMaximum": true});
        assert_eq!(messages(s, json!(5)), ["must be < 5 but found 5"]);
        let s = json!({"multipleOf": 0.1});
        assert!(messages(s.clone(), json!(0.3)).is_empty());
        assert!(messages(s.clone(), json!(12345.6)).is_empty());
        assert_eq!(messages(s, json!(0.35)), ["0.35 not multipleOf 0.1"]);
        assert_eq!(
            messages(json!({"multipleOf": 3}), json!(1e21)),
            ["1e+21 not multipleOf 3"]
        );
        assert!(messages(json!({"multipleOf": 5}), json!(1e21)).is_empty());
    }

    #[test]
    fn combinators() {
        let s = json!({"allOf": [{"type": "string"}, {"minLength": 2}]});
        assert_eq!(messages(s, json!(1)), ["expected string, but got number"]);
        let s = json!({"anyOf": [{"type": "string"}, {"type": "integer", "minimum": 5}]});
        assert!(messages(s.clone(), json!(7)).is_empty());
        assert_eq!(
            messages(s, json!(2)),
            [
                "expected string, but got number",
                "must be >= 5 but found 2"
            ]
        );
        let s = json!({"oneOf": [{"type": "integer"}, {"minimum": 0}]});
        assert_eq!(
            messages(s.clone(), json!(3)),
            ["valid against schemas at indexes 0 and 1"]
        );
        assert!(messages(s.clone(), json!(-1)).is_empty());
        assert_eq!(
            messages(s, json!(-1.5)),
            [
                "expected integer, but got number",
                "must be >= 0 but found -1.5"
            ]
        );
        assert_eq!(
            messages(json!({"not": {"type": "object"}}), json!({})),
            ["not failed"]
        );
        let s = json!({"if": {"properties": {"kind": {"const": "a"}}},
                       "then": {"required": ["x"]}, "else": {"required": ["y"]}});
        assert_eq!(
            messages(s.clone(), json!({"kind": "a"})),
            ["missing properties: 'x'"]
        );
        assert_eq!(
            messages(s, json!({"kind": "b"})),
            ["missing properties: 'y'"]
        );
        assert_eq!(messages(json!(false), json!(1)), ["not allowed"]);
    }

    #[test]
    fn unevaluated_keywords() {
        let s = json!({
            "properties": {"a": true},
            "allOf": [{"properties": {"b": true}}],
            "unevaluatedProperties": false
        });
        assert!(messages(s.clone(), json!({"a": 1, "b": 2})).is_empty());
        assert_eq!(
            check(s, json!({"a": 1, "c": 2})),
            v(&[("/c", "not allowed")])
        );
        let s = json!({"prefixItems": [true], "contains": {"type": "string"},
                       "unevaluatedItems": {"type": "integer"}});
        assert!(messages(s.clone(), json!([null, "a", 3])).is_empty());
        assert_eq!(
            check(s, json!([null, "a", 3.5])),
            v(&[("/2", "expected integer, but got number")])
        );
    }

    #[test]
    fn references() {
        let s = json!({
            "$defs": {"name": {"type": "string"}},
            "definitions": {"age": {"type": "integer"}},
            "properties": {
                "name": {"$ref": "#/$defs/name"},
                "age": {"$ref": "#/definitions/age"},
                "tag": {"$ref": "#tag"},
                "child": {"$ref": "#"}
            },
            "$comment": "anchors",
            "allOf": [{"$anchor": "tag", "type": "object"}]
        });
        assert_eq!(
            check(
                s,
                json!({"name": 1, "age": "x", "child": {"name": 2}, "tag": {}})
            ),
            v(&[
                ("/name", "expected string, but got number"),
                ("/age", "expected integer, but got string"),
                ("/child/name", "expected string, but got number"),
            ])
        );
        let st = store(&[
            (
                "address.json",
                json!({"type": "object", "required": ["city"]}),
            ),
            (
                "sub/customer.json",
                json!({"properties": {
                    "a": {"$ref": "../address.json"},
                    "b": {"$ref": "/address.json"},
                    "c": {"$ref": "cerbos:///address.json"},
                    "d": {"$ref": "item.json#/$defs/item"}
                }}),
            ),
            (
                "sub/item.json",
                json!({"$defs": {"item": {"type": "integer"}}}),
            ),
        ]);
        let customer = st.get("sub/customer.json").expect("customer");
        let found: Vec<_> = customer
            .validate(&crate::cel::from_json(
                &json!({"a": {}, "b": {}, "c": {}, "d": "x"}),
            ))
            .into_iter()
            .map(|v| (v.path, v.message))
            .collect();
        assert_eq!(
            found,
            v(&[
                ("/a", "missing properties: 'city'"),
                ("/b", "missing properties: 'city'"),
                ("/c", "missing properties: 'city'"),
                ("/d", "expected integer, but got string"),
            ])
        );
        // `$id` changes the base URI of relative references.
        let st = store(&[
            (
                "root.json",
                json!({"$id": "https://example.com/schemas/root",
                                  "properties": {"p": {"$ref": "part"}}}),
            ),
            (
                "part.json",
                json!({"$id": "https://example.com/schemas/part", "type": "string"}),
            ),
        ]);
        let root = st.get("root.json").expect("root");
        assert!(!root.is_valid(&crate::cel::from_json(&json!({"p": 1}))));
        // Draft 7 ignores the siblings of `$ref`.
        let s = json!({"$schema": "http://json-schema.org/draft-07/schema#",
                       "definitions": {"s": {"type": "string"}},
                       "$ref": "#/definitions/s", "minLength": 10});
        assert!(messages(s, json!("short")).is_empty());
    }

    /// Answers of the real Cerbos 0.55 (`cerbos compile`) where they differ from the suite.
    #[test]
    fn formats_and_content_as_cerbos() {
        let valid = |schema: Json, data: Json| messages(schema, data).is_empty();
        assert!(valid(json!({"format": "ipv4"}), json!("+1.2.3.4")));
        assert!(!valid(json!({"format": "ipv4"}), json!("01.2.3.4")));
        assert!(valid(
            json!({"format": "idn-email"}),
            json!("not an address")
        ));
        assert!(!valid(
            json!({"format": "iri"}),
            json!("http://2001:0db8:85a3:0000:0000:8a2e:0370:7334")
        ));
        assert!(!valid(json!({"format": "iri"}), json!("http://[V1.fe]")));
        assert!(!valid(json!({"format": "uri-template"}), json!("{#var}")));
        assert!(valid(
            json!({"format": "uri-template"}),
            json!("http://example.com/dictionary/{term:1}/{term}")
        ));
        assert!(valid(json!({"pattern": "^\\p{Letter}+$"}), json!("élan")));
        let s = json!({"contentEncoding": "base64", "contentMediaType": "application/json",
                       "contentSchema": {"required": ["foo"]}});
        assert!(!valid(s.clone(), json!("e30=")));
        assert!(valid(s, json!("eyJmb28iOiAiYmFyIn0K")));
    }

    #[test]
    fn dynamic_references() {
        // A generic list whose items a referring schema narrows through $dynamicAnchor.
        let st = store(&[
            (
                "list.json",
                json!({"$id": "https://example.com/list",
                       "$defs": {"item": {"$dynamicAnchor": "item"}},
                       "type": "array", "items": {"$dynamicRef": "#item"}}),
            ),
            (
                "strings.json",
                json!({"$id": "https://example.com/strings",
                       "$ref": "list",
                       "$defs": {"item": {"$dynamicAnchor": "item", "type": "string"}}}),
            ),
        ]);
        let list = st.get("list.json").expect("list");
        let strings = st.get("strings.json").expect("strings");
        let value = crate::cel::from_json(&json!(["a", 1]));
        assert!(list.is_valid(&value));
        let found: Vec<_> = strings
            .validate(&value)
            .into_iter()
            .map(|v| (v.path, v.message))
            .collect();
        assert_eq!(found, v(&[("/1", "expected string, but got number")]));
        // Without a $dynamicAnchor at the static target it is a plain $ref.
        let s = json!({"$defs": {"s": {"$anchor": "s", "type": "string"}},
                       "$dynamicRef": "#s"});
        assert_eq!(messages(s, json!(1)), ["expected string, but got number"]);
    }

    #[test]
    fn reference_loops_fail_closed() {
        assert_eq!(
            messages(json!({"$ref": "#"}), json!(1)),
            ["infinite loop in schema references"]
        );
        let s = json!({"anyOf": [{"$ref": "#/$defs/a"}], "$defs": {"a": {"$ref": "#"}}});
        assert!(!messages(s, json!({})).is_empty());
        let tree = json!({"type": "object", "properties": {"children": {"type": "array", "items": {"$ref": "#"}}}});
        assert_eq!(
            check(tree, json!({"children": [{"children": [{"children": 1}]}]})),
            v(&[(
                "/children/0/children/0/children",
                "expected array, but got number"
            )])
        );
    }

    #[test]
    fn deep_nesting_does_not_overflow() {
        let mut instance = json!(1);
        for _ in 0..120 {
            instance = json!([instance]);
        }
        let s = json!({"type": "array", "items": {"anyOf": [{"$ref": "#"}, {"type": "string"}]}});
        // Each `anyOf` fails both ways: the innermost value, then each of the 119 inner arrays.
        let found = messages(s.clone(), instance);
        assert_eq!(found.len(), 2 + 119);
        assert_eq!(
            found[..3],
            [
                "expected array, but got number",
                "expected string, but got number",
                "expected string, but got array"
            ]
        );
        // 400 levels take 1200 applications: past the limit, reported instead of followed.
        let mut instance = json!(1);
        for _ in 0..400 {
            instance = json!([instance]);
        }
        let found = messages(s, instance);
        assert_eq!(found[0], "schema evaluation is nested too deeply");
        let mut schema = json!({"type": "string"});
        for _ in 0..MAX_SCHEMA_DEPTH + 5 {
            schema = json!({"properties": {"a": schema}});
        }
        let store = SchemaStore::new_lenient(vec![("deep.json".to_owned(), schema)]);
        let err = store.load("cerbos:///deep.json").expect_err("too deep");
        assert!(err.to_string().contains("nested too deeply"), "{err}");
        let mut chain: Vec<(String, Json)> = Vec::new();
        for i in 0..1100 {
            chain.push((
                format!("s{i}.json"),
                json!({"$ref": format!("s{}.json", i + 1)}),
            ));
        }
        chain.push(("s1100.json".to_owned(), json!({"type": "string"})));
        let store = SchemaStore::new(chain).unwrap_or_else(|e| panic!("{e}"));
        let message = |url: &str| {
            store.get(url).expect(url).validate(&Value::Int(1))[0]
                .clone()
                .message
        };
        assert_eq!(message("s900.json"), "expected string, but got number");
        assert_eq!(message("s0.json"), "schema evaluation is nested too deeply");
    }

    #[test]
    fn compile_errors() {
        assert_eq!(
            compile_error(json!("this")),
            "cerbos:///s.json: jsonschema cerbos:///s.json compilation failed: '' does not validate with \
             https://json-schema.org/draft/2020-12/schema#/type: expected object or boolean, but got string"
        );
        assert!(compile_error(json!({"type": "text"})).ends_with(
            "'/type' does not validate with https://json-schema.org/draft/2020-12/schema\
             #/allOf/3/$ref/properties/type/anyOf/0/$ref/enum: value must be one of \"array\", \
             \"boolean\", \"integer\", \"null\", \"number\", \"object\", \"string\""
        ));
        assert!(compile_error(json!({"properties": {"a": {"minLength": -1}}})).ends_with(
            "'/properties/a/minLength' does not validate with https://json-schema.org/draft/2020-12/schema\
             #/allOf/1/$ref/properties/properties/additionalProperties/$dynamicRef\
             /allOf/3/$ref/properties/minLength/$ref/$ref/minimum: must be >= 0 but found -1"
        ));
        assert!(compile_error(json!({"pattern": "(a"})).ends_with(
            "'/pattern' does not validate with https://json-schema.org/draft/2020-12/schema\
             #/allOf/3/$ref/properties/pattern/format: '(a' is not valid 'regex'"
        ));
        assert!(
            compile_error(json!({"required": ["a", "a"]}))
                .contains("items at index 0 and 1 are equal")
        );
        assert!(compile_error(json!({"allOf": []})).contains("minimum 1 items required"));
        assert!(
            compile_error(json!({"items": [true]}))
                .contains("expected object or boolean, but got array")
        );
        assert!(
            compile_error(json!({"$dynamicRef": "#meta"}))
                .contains("$ref '#meta' does not resolve")
        );
        assert!(
            compile_error(json!({"$schema": "https://example.com/custom"}))
                .contains("unsupported $schema")
        );
        assert_eq!(
            compile_error(json!({"properties": {"a": {"$ref": "missing.json"}}})),
            "cerbos:///s.json: schema _schemas/missing.json referenced by cerbos:///s.json doesn't exist"
        );
        assert!(
            compile_error(json!({"$ref": "#/$defs/nope"}))
                .contains("$ref '#/$defs/nope' does not resolve")
        );
        assert!(
            compile_error(json!({"$ref": "https://example.com/x.json"})).contains(
                "schema https://example.com/x.json referenced by cerbos:///s.json doesn't exist"
            )
        );
        assert!(
            compile_error(json!({"$ref": "file:///tmp/x.json"}))
                .contains("schema /tmp/x.json referenced by cerbos:///s.json doesn't exist")
        );
        // An error in a referenced document is the referrer's error too.
        let lenient = SchemaStore::new_lenient(vec![
            ("a.json".to_owned(), json!({"$ref": "b.json"})),
            ("b.json".to_owned(), json!({"type": 5})),
        ]);
        let a = lenient.load("cerbos:///a.json").expect_err("a.json");
        assert!(
            a.to_string()
                .starts_with("jsonschema cerbos:///b.json compilation failed"),
            "{a}"
        );
    }

    #[test]
    fn store_lookup_and_load() {
        let st = store(&[("resources/leave_request.json", json!({"type": "object"}))]);
        for url in [
            "cerbos:///resources/leave_request.json",
            "resources/leave_request.json",
            "/resources/leave_request.json",
        ] {
            assert!(st.get(url).is_some(), "{url}");
        }
        assert!(
            st.get("https://example.com/resources/leave_request.json")
                .is_none()
        );
        assert!(st.load("cerbos:///resources/leave_request.json").is_ok());
        let missing = |url: &str| st.load(url).err().map(|e| e.to_string());
        assert_eq!(
            missing("cerbos:///blah.json").as_deref(),
            Some("schema _schemas/blah.json doesn't exist")
        );
        assert_eq!(
            missing("resources/leave_request.json").as_deref(),
            Some("schema resources/leave_request.json doesn't exist")
        );
        assert_eq!(
            missing("file:///blah.json").as_deref(),
            Some("schema /blah.json doesn't exist")
        );
        assert_eq!(
            missing("https://cerbos.dev/blah.json").as_deref(),
            Some("schema https://cerbos.dev/blah.json doesn't exist")
        );
        let dup = SchemaStore::new(vec![
            ("a.json".to_owned(), json!(true)),
            ("./a.json".to_owned(), json!(true)),
        ])
        .expect_err("duplicate");
        assert_eq!(
            dup.to_string(),
            "cerbos:///a.json: schema _schemas/a.json is defined more than once"
        );
    }

    #[test]
    fn store_is_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<SchemaStore>();
        assert_send_sync::<CompiledSchema>();
        assert_send_sync::<SchemaErrors>();
    }

    #[test]
    fn absent_attributes_are_an_empty_object() {
        let c = compiled(json!({"required": ["team"]}));
        let found = c.validate(&Value::Null);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].cerbos_path(), "/");
        assert_eq!(found[0].message, "missing properties: 'team'");
    }

    #[test]
    fn go_rendering() {
        assert_eq!(go_float(20.0), "20");
        assert_eq!(go_float(2.75), "2.75");
        assert_eq!(go_float(-0.5), "-0.5");
        assert_eq!(go_float(123456.0), "123456");
        assert_eq!(go_float(1234567.0), "1.234567e+06");
        assert_eq!(go_float(0.0001), "0.0001");
        assert_eq!(go_float(0.00001), "1e-05");
        assert_eq!(quote("it's \"x\"\n"), r#"'it\'s "x"\n'"#);
        assert_eq!(go_quote("a\"b"), r#""a\"b""#);
        assert_eq!(
            resolve_uri("cerbos:///sub/a.json", "../b.json#/x"),
            "cerbos:///b.json#/x"
        );
        assert_eq!(
            resolve_uri("cerbos:///sub/a.json", "/b.json"),
            "cerbos:///b.json"
        );
        assert_eq!(
            resolve_uri("cerbos:///sub/a.json", "#frag"),
            "cerbos:///sub/a.json#frag"
        );
        assert_eq!(resolve_uri("https://h/a/b", "c/./d"), "https://h/a/c/d");
    }
}
