//! Generated protobuf messages and the tonic service of the Cerbos-compatible API
//! (`proto/`, generated into `src/generated/`, see `proto/README.md`). Package paths
//! mirror the proto packages:
//! `pb::cerbos::request::v1::CheckResourcesRequest` is `cerbos.request.v1.CheckResourcesRequest`.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// Cerbos's public API packages.
pub mod cerbos {
    /// `cerbos.audit.v1`.
    pub mod audit {
        /// Version 1.
        pub mod v1 {
            include!("../generated/cerbos.audit.v1.rs");
        }
    }
    /// `cerbos.effect.v1`.
    pub mod effect {
        /// Version 1.
        pub mod v1 {
            include!("../generated/cerbos.effect.v1.rs");
        }
    }
    /// `cerbos.engine.v1`.
    pub mod engine {
        /// Version 1.
        pub mod v1 {
            include!("../generated/cerbos.engine.v1.rs");
        }
    }
    /// `cerbos.request.v1`.
    pub mod request {
        /// Version 1.
        pub mod v1 {
            include!("../generated/cerbos.request.v1.rs");
        }
    }
    /// `cerbos.response.v1`.
    pub mod response {
        /// Version 1.
        pub mod v1 {
            include!("../generated/cerbos.response.v1.rs");
        }
    }
    /// `cerbos.schema.v1`.
    pub mod schema {
        /// Version 1.
        pub mod v1 {
            include!("../generated/cerbos.schema.v1.rs");
        }
    }
    /// `cerbos.svc.v1`: the `CerbosService` server and client.
    pub mod svc {
        /// Version 1.
        pub mod v1 {
            include!("../generated/cerbos.svc.v1.rs");
        }
    }
}

/// `buf.validate`: request-validation error details.
pub mod buf {
    /// The `buf.validate` package.
    pub mod validate {
        include!("../generated/buf.validate.rs");
    }
}

/// `google.rpc`: the gRPC error model.
pub mod google {
    /// The `google.rpc` package.
    pub mod rpc {
        include!("../generated/google.rpc.rs");
    }
}
