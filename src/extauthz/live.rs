//! The ext_authz service as served: the [`ExtAuthz`] built from the configuration in
//! force, swapped whole when `gatehouse.yaml` is reloaded. Each request uses one
//! snapshot from start to end.

use std::sync::Arc;

use crate::extauthz::pb::v3::{Authorization, CheckRequest, CheckResponse};
use arc_swap::ArcSwap;
use tonic::{Request, Response, Status};

use super::ExtAuthz;

/// The service in force; cloning shares it.
#[derive(Clone, Debug)]
pub struct LiveExtAuthz {
    current: Arc<ArcSwap<ExtAuthz>>,
}

impl LiveExtAuthz {
    /// Serves `ext` until [`replace`](Self::replace) swaps in another.
    pub fn new(ext: ExtAuthz) -> Self {
        LiveExtAuthz {
            current: Arc::new(ArcSwap::from_pointee(ext)),
        }
    }

    /// Makes `ext` answer every request from now on; requests under way finish on the
    /// one they started with.
    pub(crate) fn replace(&self, ext: ExtAuthz) {
        self.current.store(Arc::new(ext));
    }

    /// The service in force.
    pub(crate) fn current(&self) -> Arc<ExtAuthz> {
        self.current.load_full()
    }
}

#[tonic::async_trait]
impl Authorization for LiveExtAuthz {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        let ext = self.current.load_full();
        Ok(Response::new(ext.check_request(request).await))
    }
}
