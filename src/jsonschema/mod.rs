//! JSON Schema validation of principal and resource attributes, as Cerbos does it.
//!
//! The validator depends only on CEL values ([`crate::cel::Value`]), not on policies.
//!
//! Cerbos validates `P.attr` and `R.attr` with santhosh-tekuri/jsonschema v5 (draft 2020-12
//! unless a document's `$schema` says otherwise, with format and content assertions on). This
//! module is a focused re-implementation of that behaviour:
//!
//! * [`SchemaStore`] takes the JSON documents of a store's `_schemas/` directory and compiles
//!   each one once: `$ref`s are resolved within a document (`#/$defs/x`, `#/definitions/x`,
//!   anchors), to other documents by relative path, and through `cerbos:///path.json` URLs.
//!   Every document is first checked against the structure its draft's metaschema requires.
//! * [`CompiledSchema::validate`] checks a CEL attribute value and returns every
//!   [`SchemaViolation`], with the library's wording (`missing properties: 'team'`,
//!   `value must be one of "marketing", "engineering"`, ...) and instance paths.
//!
//! Violations come out in the library's keyword order (`type` first and alone, then `const`,
//! `enum`, `format`, the object, array, string and number keywords, `$ref`, `not`, `allOf`,
//! `anyOf`, `oneOf`, `if`, and the `unevaluated*` keywords), with `properties` in the schema's
//! order where the library iterates a Go map. Applicators that wrap errors (`$ref`, `allOf`,
//! `anyOf`, ...) report the leaf errors they wrap, as Cerbos does.
//!
//! `$dynamicRef` follows draft 2020-12's dynamic scope (the outermost resource entered that
//! declares the `$dynamicAnchor` wins); draft 2019-09's `$recursiveRef` is not supported: a
//! document that uses it fails to compile. The draft 2020-12 metaschema documents are built in
//! (`metaschema/`, referenced as `https://json-schema.org/draft/2020-12/...`), and a `$schema`
//! naming another draft 2020-12 metaschema applies the vocabularies its `$vocabulary` lists. Keywords that belong to no draft are annotations and are ignored, as in Cerbos.
//! References to other hosts (`https://...`, `file://...`) are never fetched: they fail to
//! resolve. Schemas or values nested beyond fixed limits (and `$ref` loops that never reach a
//! child value) fail closed: a compile error or a violation, never a stack overflow.

mod validator;

pub use validator::{
    CompiledSchema, SchemaError, SchemaErrorKind, SchemaErrors, SchemaStore, SchemaViolation,
};
