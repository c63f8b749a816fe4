//! Common Expression Language: parser, compiler (name and function resolution,
//! done once per policy load) and evaluator, with the extension libraries that
//! Cerbos enables.

pub mod ast;
pub mod parser;
pub mod value;

pub use parser::{ParseError, parse};
pub use value::{CelType, Key, MapValue, Opaque, Value};
