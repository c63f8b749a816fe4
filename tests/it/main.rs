//! Integration tests.
mod schema_cases;
mod engine_cases;
mod util;
