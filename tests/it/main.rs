//! Integration tests.
mod schema_cases;
mod engine_cases;
mod util;
mod parser_cases;
mod cel_cases;
mod cli;
