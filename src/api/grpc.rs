//! The gRPC adapter: `cerbos.svc.v1.CerbosService` (CheckResources, PlanResources and ServerInfo; every
//! other Cerbos RPC answers UNIMPLEMENTED).
//!
//! [`CerbosGrpc`] answers `CheckResources` itself, reading the request with
//! [`CheckResourcesWire`] (attributes straight into CEL maps) through tonic's prost codec,
//! and hands every other path to the generated server.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::codec::{Codec, EncodeBuf, Encoder};
use tonic::codegen::{Body, BoxFuture, Service, StdError, http};

use super::answer::CheckAnswer;
use super::pb::cerbos::request::v1::{
    CheckResourcesRequest, PlanResourcesRequest, ServerInfoRequest,
};
use super::pb::cerbos::response::v1::{
    CheckResourcesResponse, PlanResourcesResponse, ServerInfoResponse,
};
use super::pb::cerbos::svc::v1::cerbos_service_server::{CerbosService, CerbosServiceServer};
use super::service::CerbosApi;
use super::wire::CheckResourcesWire;
use crate::telemetry::TraceContext;

#[tonic::async_trait]
impl CerbosService for CerbosApi {
    /// Reached only through the generated server alone; [`CerbosGrpc`] reads
    /// `CheckResources` requests itself.
    async fn check_resources(
        &self,
        request: tonic::Request<CheckResourcesRequest>,
    ) -> Result<tonic::Response<CheckResourcesResponse>, tonic::Status> {
        let meta = request.metadata();
        let caller = TraceContext::from_headers(|k| meta.get(k)?.to_str().ok());
        let answer =
            CerbosApi::check_resources_traced(self, request.into_inner().into(), caller).await?;
        Ok(tonic::Response::new(answer.into_pb()))
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

/// The gRPC path of `CheckResources`.
const CHECK_RESOURCES: &str = "/cerbos.svc.v1.CerbosService/CheckResources";

/// `cerbos.svc.v1.CerbosService` over HTTP/2: `CheckResources` read by [`CheckResourcesWire`],
/// the other methods by the generated server. Messages up to `max_decoding` bytes are
/// accepted on every method.
#[derive(Clone, Debug)]
pub struct CerbosGrpc {
    api: Arc<CerbosApi>,
    generated: CerbosServiceServer<CerbosApi>,
    max_decoding: usize,
}

impl CerbosGrpc {
    /// The service over `api`, refusing messages above `max_decoding` bytes.
    pub(crate) fn new(api: CerbosApi, max_decoding: usize) -> Self {
        CerbosGrpc {
            generated: CerbosServiceServer::new(api.clone())
                .max_decoding_message_size(max_decoding),
            api: Arc::new(api),
            max_decoding,
        }
    }
}

impl tonic::server::NamedService for CerbosGrpc {
    const NAME: &'static str =
        <CerbosServiceServer<CerbosApi> as tonic::server::NamedService>::NAME;
}

impl<B> Service<http::Request<B>> for CerbosGrpc
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != CHECK_RESOURCES {
            return self.generated.call(req);
        }
        let method = CheckResourcesMethod(self.api.clone());
        let limit = self.max_decoding;
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(AnswerCodec)
                .apply_max_message_size_config(Some(limit), None);
            Ok(grpc.unary(method, req).await)
        })
    }
}

/// `CheckResources` as tonic's unary method.
struct CheckResourcesMethod(Arc<CerbosApi>);

impl tonic::server::UnaryService<CheckResourcesWire> for CheckResourcesMethod {
    type Response = CheckAnswer;
    type Future = BoxFuture<tonic::Response<CheckAnswer>, tonic::Status>;

    fn call(&mut self, request: tonic::Request<CheckResourcesWire>) -> Self::Future {
        let api = self.0.clone();
        Box::pin(async move {
            let meta = request.metadata();
            let caller = TraceContext::from_headers(|k| meta.get(k)?.to_str().ok());
            let req = request.into_inner().into_request();
            let answer = api.check_resources_traced(req, caller).await?;
            Ok(tonic::Response::new(answer))
        })
    }
}

/// Reads `CheckResourcesRequest`s with prost (as tonic's prost codec does: the same
/// errors), writes answers straight as `CheckResourcesResponse`s.
#[derive(Clone, Copy, Debug, Default)]
struct AnswerCodec;

impl Codec for AnswerCodec {
    type Encode = CheckAnswer;
    type Decode = CheckResourcesWire;
    type Encoder = AnswerEncoder;
    type Decoder = tonic_prost::ProstDecoder<CheckResourcesWire>;

    fn encoder(&mut self) -> Self::Encoder {
        AnswerEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::default()
    }
}

/// Writes a [`CheckAnswer`] as protobuf, without building the generated message.
#[derive(Clone, Copy, Debug, Default)]
struct AnswerEncoder;

impl Encoder for AnswerEncoder {
    type Item = CheckAnswer;
    type Error = tonic::Status;

    fn encode(&mut self, item: CheckAnswer, buf: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        buf.reserve(item.encoded_len());
        item.encode(buf);
        Ok(())
    }
}
