//! Errors of the API, shaped as Cerbos returns them: a gRPC status (code, message and
//! `buf.validate.Violations` details) that the HTTP adapter renders as
//! `{code, message, details}` with the matching HTTP status.

use prost::Message;

use super::pb::buf::validate::Violations;
use super::pb::google::rpc::Status as RpcStatus;
use super::validate::encode_violations;

/// Type URL of the validation details.
pub(crate) const VIOLATIONS_TYPE_URL: &str = "type.googleapis.com/buf.validate.Violations";

/// A refused or failed API call.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    code: tonic::Code,
    message: String,
    violations: Option<Violations>,
}

impl ApiError {
    /// An error with a gRPC code and message.
    pub(crate) fn new(code: tonic::Code, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            violations: None,
        }
    }

    /// `INVALID_ARGUMENT`.
    pub(crate) fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(tonic::Code::InvalidArgument, message)
    }

    /// A request that broke Cerbos's validation rules (`INVALID_ARGUMENT`, with details).
    pub(crate) fn validation(message: String, violations: Violations) -> Self {
        ApiError {
            code: tonic::Code::InvalidArgument,
            message,
            violations: Some(violations),
        }
    }

    /// The gRPC status code.
    pub fn code(&self) -> tonic::Code {
        self.code
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The HTTP status grpc-gateway maps the code to.
    pub(crate) fn http_status(&self) -> u16 {
        use tonic::Code::*;
        match self.code {
            Ok => 200,
            Cancelled => 499,
            InvalidArgument | FailedPrecondition | OutOfRange => 400,
            DeadlineExceeded => 504,
            NotFound => 404,
            AlreadyExists | Aborted => 409,
            PermissionDenied => 403,
            Unauthenticated => 401,
            ResourceExhausted => 429,
            Unimplemented => 501,
            Unavailable => 503,
            Unknown | Internal | DataLoss => 500,
        }
    }

    /// The HTTP body: `{"code": 3, "message": "...", "details": [...]}`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut body = serde_json::Map::new();
        body.insert("code".into(), serde_json::Value::from(self.code as i32));
        body.insert(
            "message".into(),
            serde_json::Value::from(self.message.as_str()),
        );
        if let Some(v) = &self.violations {
            let mut detail = serde_json::Map::new();
            detail.insert("@type".into(), serde_json::Value::from(VIOLATIONS_TYPE_URL));
            detail.insert("violations".into(), encode_violations(v));
            body.insert(
                "details".into(),
                serde_json::Value::Array(vec![serde_json::Value::Object(detail)]),
            );
        }
        serde_json::Value::Object(body)
    }

    /// The gRPC status, with the violations in `grpc-status-details-bin`.
    pub(crate) fn to_status(&self) -> tonic::Status {
        match &self.violations {
            None => tonic::Status::new(self.code, self.message.clone()),
            Some(v) => {
                let details = RpcStatus {
                    code: self.code as i32,
                    message: self.message.clone(),
                    details: vec![prost_types::Any {
                        type_url: VIOLATIONS_TYPE_URL.to_string(),
                        value: v.encode_to_vec(),
                    }],
                };
                tonic::Status::with_details(
                    self.code,
                    self.message.clone(),
                    details.encode_to_vec().into(),
                )
            }
        }
    }
}

impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> Self {
        e.to_status()
    }
}
