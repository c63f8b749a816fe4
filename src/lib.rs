//! Gatehouse: a Cerbos-compatible policy engine and Envoy ext_authz service.
//!
//! Data flows one way: a policy source is loaded into the serde model
//! ([`policy`]), compiled once into a `CompiledPolicySet`, evaluated by the
//! engine, and exposed through adapters (CLI, ext_authz, Cerbos API).

#![warn(missing_docs)]

pub mod alloc;
pub mod api;
pub mod audit;
pub mod cel;
pub mod cli;
mod config;
pub mod engine;
mod errors;
pub mod extauthz;
mod fault;
mod http_client;
pub mod jsonschema;
pub mod jwt;
pub mod metrics;
mod percent;
pub mod planner;
pub mod policy;
mod protowire;
pub mod store;
mod suggest;
pub mod telemetry;
#[cfg(test)]
mod testing;
pub mod verify;
