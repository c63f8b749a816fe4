//! Generated protobuf messages and the tonic service of Envoy's ext_authz v3 API
//! (`envoy.service.auth.v3.Authorization`, from Envoy's own `.proto` files under
//! `proto/envoy`, generated into `src/generated/`, see `proto/README.md`). Package paths
//! mirror the proto packages: `pb::envoy::service::auth::v3::CheckRequest` is
//! `envoy.service.auth.v3.CheckRequest`; well-known types are `prost_types`'.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// Envoy's API packages that ext_authz uses.
pub mod envoy {
    /// `envoy.config`.
    pub mod config {
        /// `envoy.config.core`.
        pub mod core {
            /// `envoy.config.core.v3`: addresses, headers, metadata.
            pub mod v3 {
                include!("../generated/envoy.config.core.v3.rs");
            }
        }
    }
    /// `envoy.type`.
    pub mod r#type {
        /// `envoy.type.v3`: HTTP status codes, percentages, versions.
        pub mod v3 {
            include!("../generated/envoy.r#type.v3.rs");
        }
    }
    /// `envoy.service`.
    pub mod service {
        /// `envoy.service.auth`.
        pub mod auth {
            /// `envoy.service.auth.v3`: the ext_authz `Authorization` service.
            pub mod v3 {
                include!("../generated/envoy.service.auth.v3.rs");
            }
        }
    }
}

/// `xds.core.v3`: context parameters (referenced by `envoy.config.core.v3.Node`).
pub mod xds {
    /// `xds.core`.
    pub mod core {
        /// `xds.core.v3`.
        pub mod v3 {
            include!("../generated/xds.core.v3.rs");
        }
    }
}

/// Google packages: the well-known types and the gRPC status.
pub mod google {
    /// `google.protobuf`: the well-known types (`prost_types`).
    pub mod protobuf {
        pub use prost_types::*;
    }
    /// `google.rpc`: the gRPC error model (the same types as the Cerbos API's).
    pub mod rpc {
        pub use crate::api::pb::google::rpc::*;
    }
}

/// The types an ext_authz server uses most, under short names.
pub mod v3 {
    pub use super::envoy::config::core::v3::{
        HeaderValue, HeaderValueOption, QueryParameter, address::Address,
        header_value_option::HeaderAppendAction,
    };
    pub use super::envoy::service::auth::v3::{
        CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse,
        authorization_server::{Authorization, AuthorizationServer},
        check_response::HttpResponse,
    };
    pub use super::envoy::r#type::v3::{HttpStatus, StatusCode as HttpStatusCode};
}
