//! The ceiling for any tonic ext_authz service on a machine: a server that decodes each
//! Envoy CheckRequest and always answers OK, with the same runtime and transport settings
//! Gatehouse uses (multi-threaded tokio, TCP_NODELAY). `benches/load.sh` times it beside
//! Gatehouse.
//!
//!     cargo run --release --example empty_authz -- 127.0.0.1:9191

use gatehouse::extauthz::pb::google::rpc::Status as RpcStatus;
use gatehouse::extauthz::pb::v3::{
    Authorization, AuthorizationServer, CheckRequest, CheckResponse,
};
use tonic::{Request, Response, Status};

struct AlwaysOk;

#[tonic::async_trait]
impl Authorization for AlwaysOk {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        std::hint::black_box(request.into_inner());
        // Status code 0 (OK), no message: Envoy lets the request through.
        Ok(Response::new(CheckResponse {
            status: Some(RpcStatus::default()),
            ..Default::default()
        }))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9191".into())
        .parse()?;
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(AuthorizationServer::new(AlwaysOk))
        .serve(addr)
        .await?;
    Ok(())
}
