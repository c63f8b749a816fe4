//! Integration tests.
mod api_cases;
mod api_diff;
mod api_server;
mod cel_cases;
mod cli;
mod compile_cases;
mod engine_cases;
mod extauthz;
mod index_cases;
mod jwt;
mod parser_cases;
mod reload;
mod robustness;
mod schema_cases;
mod util;
mod verify_cases;
