//! The HTTP adapter: Cerbos's REST routes with protojson bodies and Cerbos's error shape.
//!
//! | route | answer |
//! |---|---|
//! | `POST /api/check/resources` | `CheckResourcesResponse` |
//! | `POST /api/plan/resources` | `PlanResourcesResponse` |
//! | `GET /api/server_info` | `ServerInfoResponse` |
//! | `GET /_cerbos/health[?service=…]` | `{"status": "SERVING"}` |
//! | anything else | `404 {"code": 5, "message": "Not Found"}` |
//! | a known path with another method | `501 {"code": 12, "message": "Method Not Allowed"}` |

use axum::body::Body;
use std::collections::HashMap;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::error::ApiError;
use super::plan::encode_plan_resources;
use super::protojson::{
    decode_check_resources, decode_plan_resources, encode_server_info, write_check_resources,
};
use super::service::CerbosApi;
use crate::telemetry::TraceContext;

/// The gRPC service name the health route reports on.
const SERVICE_NAME: &str = "cerbos.svc.v1.CerbosService";

/// The Cerbos HTTP routes over `api`.
pub(crate) fn router(api: CerbosApi) -> Router {
    Router::new()
        .route("/api/check/resources", post(check_resources))
        .route("/api/plan/resources", post(plan_resources))
        .route("/api/server_info", get(server_info))
        .route("/_cerbos/health", get(health))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(api)
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// A protojson body already written out.
fn json_bytes_response(status: StatusCode, body: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn error_response(e: &ApiError) -> Response {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(status, &e.to_json())
}

/// Reads a request body up to the configured limit.
async fn read_body(api: &CerbosApi, body: Body) -> Result<axum::body::Bytes, ApiError> {
    let limit = api.settings().max_body_bytes;
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(ApiError::new(
            tonic::Code::ResourceExhausted,
            format!("grpc: received message larger than max (more than {limit} bytes)"),
        )),
        Err(e) => Err(ApiError::invalid_argument(format!(
            "failed to read the request body: {e}"
        ))),
    }
}

async fn plan_resources(State(api): State<CerbosApi>, body: Body) -> Response {
    let result = match read_body(&api, body).await {
        Ok(bytes) => match decode_plan_resources(&bytes) {
            Ok(req) => api.plan_resources(req).await,
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    match result {
        Ok(resp) => json_response(StatusCode::OK, &encode_plan_resources(&resp)),
        Err(e) => error_response(&e),
    }
}

async fn check_resources(
    State(api): State<CerbosApi>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Response {
    let caller = TraceContext::from_headers(|k| headers.get(k)?.to_str().ok());
    let bytes = match read_body(&api, body).await {
        Ok(b) => b,
        Err(e) => return error_response(&e),
    };
    let result = match decode_check_resources(&bytes) {
        Ok(req) => api.check_resources_traced(req, caller).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(answer) => json_bytes_response(StatusCode::OK, write_check_resources(&answer.into_pb())),
        Err(e) => error_response(&e),
    }
}

async fn server_info(State(api): State<CerbosApi>) -> Response {
    json_response(StatusCode::OK, &encode_server_info(&api.server_info()))
}

/// `GET /_cerbos/health[?service=…]`: serving for the Cerbos service (or none named).
async fn health(query: Result<Query<HashMap<String, String>>, QueryRejection>) -> Response {
    let service = query
        .ok()
        .and_then(|Query(mut q)| q.remove("service"))
        .unwrap_or_default();
    if service.is_empty() || service == SERVICE_NAME {
        json_response(StatusCode::OK, &serde_json::json!({"status": "SERVING"}))
    } else {
        error_response(&ApiError::new(tonic::Code::NotFound, "unknown service"))
    }
}

async fn not_found() -> Response {
    error_response(&ApiError::new(tonic::Code::NotFound, "Not Found"))
}

async fn method_not_allowed() -> Response {
    error_response(&ApiError::new(
        tonic::Code::Unimplemented,
        "Method Not Allowed",
    ))
}
