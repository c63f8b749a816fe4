//! The gRPC adapter: `cerbos.svc.v1.CerbosService` (CheckResources, PlanResources and ServerInfo; every
//! other Cerbos RPC answers UNIMPLEMENTED).

use super::pb::cerbos::request::v1::{
    CheckResourcesRequest, PlanResourcesRequest, ServerInfoRequest,
};
use super::pb::cerbos::response::v1::{
    CheckResourcesResponse, PlanResourcesResponse, ServerInfoResponse,
};
use super::pb::cerbos::svc::v1::cerbos_service_server::CerbosService;
use super::service::CerbosApi;
use crate::telemetry::TraceContext;

#[tonic::async_trait]
impl CerbosService for CerbosApi {
    async fn check_resources(
        &self,
        request: tonic::Request<CheckResourcesRequest>,
    ) -> Result<tonic::Response<CheckResourcesResponse>, tonic::Status> {
        let meta = request.metadata();
        let caller = TraceContext::from_headers(|k| meta.get(k)?.to_str().ok());
        let response =
            CerbosApi::check_resources_traced(self, request.into_inner(), caller).await?;
        Ok(tonic::Response::new(response))
    }

    async fn plan_resources(
        &self,
        request: tonic::Request<PlanResourcesRequest>,
    ) -> Result<tonic::Response<PlanResourcesResponse>, tonic::Status> {
        let response = CerbosApi::plan_resources(self, request.into_inner()).await?;
        Ok(tonic::Response::new(response))
    }

    async fn server_info(
        &self,
        _request: tonic::Request<ServerInfoRequest>,
    ) -> Result<tonic::Response<ServerInfoResponse>, tonic::Status> {
        Ok(tonic::Response::new(CerbosApi::server_info(self)))
    }
}
