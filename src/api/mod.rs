//! The Cerbos-compatible API: the official Cerbos SDKs work against Gatehouse unchanged.
//!
//! * gRPC: [`grpc_service`] serves `cerbos.svc.v1.CerbosService` (`CheckResources`,
//!   `PlanResources`, `ServerInfo`; other Cerbos RPCs answer UNIMPLEMENTED), with the wire definitions in
//!   `proto/` ([`pb`]).
//! * HTTP: [`http_router`] serves `POST /api/check/resources`, `POST /api/plan/resources`,
//!   `GET /api/server_info` and
//!   `GET /_cerbos/health` with protojson bodies (camelCase out; camelCase or snake_case in)
//!   and Cerbos's error body `{code, message, details}`.
//!
//! Both run the same steps: the count limits first (resources and actions per Cerbos's
//! `requestLimits`, then roles, attribute values and `auxData` tokens), so that no per-item
//! work happens on an oversized request; then the request rules of Cerbos's API
//! (`validation error: principal: value is required`), the tokens of `auxData` (verified
//! with [`ApiSettings::jwt`]; `invalid auxData` otherwise), then one engine decision per
//! resource entry, all on one snapshot of the [`PolicyStore`].

mod answer;
mod call_id;
mod error;
mod grpc;
mod http;
mod intern;
mod limits;
pub mod pb;
mod plan;
mod protojson;
mod request;
mod service;
mod settings;
mod validate;
mod wire;

use std::sync::Arc;

pub use grpc::CerbosGrpc;
pub use plan::encode_plan_resources;
/// Plans are recorded alike wherever they are made (the API, ext_authz plan routes).
pub(crate) use plan::{PlanFacts, record_plan};
pub use protojson::{
    decode_check_resources, decode_plan_resources, encode_check_resources, encode_server_info,
    json_to_value, value_to_json, write_check_resources,
};
pub use request::CheckRequest;
pub use service::CerbosApi;
pub use settings::{
    ApiSettings, DEFAULT_MAX_ACTIONS, DEFAULT_MAX_ATTRIBUTE_VALUES, DEFAULT_MAX_AUX_TOKENS,
    DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_RESOURCES, DEFAULT_MAX_ROLES, ServerInfo,
};
pub use validate::{encode_violations, validate_check_resources, validate_plan_resources};

use crate::store::PolicyStore;

/// The gRPC service `cerbos.svc.v1.CerbosService` over `store`, ready for
/// `tonic::transport::Server::add_service`. Messages up to `settings.max_body_bytes` are
/// accepted.
pub fn grpc_service(store: Arc<PolicyStore>, settings: ApiSettings) -> CerbosGrpc {
    let limit = settings.max_body_bytes;
    CerbosGrpc::new(CerbosApi::new(store, settings), limit)
}

/// The Cerbos HTTP routes over `store`, ready to be merged into the HTTP listener's router.
/// It answers unknown paths with Cerbos's 404 body and wrong methods with its 501 body.
pub fn http_router(store: Arc<PolicyStore>, settings: ApiSettings) -> axum::Router {
    http::router(CerbosApi::new(store, settings))
}
