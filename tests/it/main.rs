//! Integration tests.
mod cel_cases;
mod cli;
mod engine_cases;
mod extauthz;
mod jwt;
mod parser_cases;
mod robustness;
mod schema_cases;
mod util;
