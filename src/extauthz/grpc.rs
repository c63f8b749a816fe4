//! `envoy.service.auth.v3.Authorization` as served over gRPC: tonic's unary call
//! handling (framing, limits, status) with a codec of our own. The `CheckRequest` is
//! decoded by prost as tonic's generated server does; the `CheckResponse` is written
//! straight from the [`Answer`] (the bytes prost would write for
//! [`Answer::into_check_response`], without building that message first).

use std::convert::Infallible;

use tonic::codec::{Codec, EncodeBuf, Encoder};
use tonic::codegen::{Body, BoxFuture, Context, Poll, Service, StdError, http};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};

use super::LiveExtAuthz;
use super::answer::Answer;
use crate::extauthz::pb::v3::CheckRequest;

/// The gRPC path of `Check`.
const CHECK_PATH: &str = "/envoy.service.auth.v3.Authorization/Check";

/// The ext_authz gRPC service (the one method `Check`), on the service in force.
#[derive(Clone, Debug)]
pub struct CheckServer {
    live: LiveExtAuthz,
}

impl CheckServer {
    /// Serves `Check` with whatever `live` holds at each request.
    pub fn new(live: LiveExtAuthz) -> Self {
        CheckServer { live }
    }
}

impl NamedService for CheckServer {
    const NAME: &'static str = "envoy.service.auth.v3.Authorization";
}

impl<B> Service<http::Request<B>> for CheckServer
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
        if req.uri().path() != CHECK_PATH {
            return Box::pin(async { Ok(unimplemented()) });
        }
        let method = CheckMethod(self.live.clone());
        Box::pin(async move { Ok(Grpc::new(AnswerCodec).unary(method, req).await) })
    }
}

/// `grpc-status: 12` (unimplemented) for any other method, as tonic's servers answer.
fn unimplemented() -> http::Response<tonic::body::Body> {
    let mut response = http::Response::new(tonic::body::Body::default());
    let headers = response.headers_mut();
    headers.insert(
        Status::GRPC_STATUS,
        (tonic::Code::Unimplemented as i32).into(),
    );
    headers.insert(
        http::header::CONTENT_TYPE,
        tonic::metadata::GRPC_CONTENT_TYPE,
    );
    response
}

/// One `Check` call: the decision on the service in force.
struct CheckMethod(LiveExtAuthz);

impl UnaryService<CheckRequest> for CheckMethod {
    type Response = Answer;
    type Future = BoxFuture<Response<Answer>, Status>;

    fn call(&mut self, request: Request<CheckRequest>) -> Self::Future {
        let ext = self.0.current();
        Box::pin(async move { Ok(Response::new(ext.answer_request(&request).await)) })
    }
}

/// Decodes `CheckRequest`s with prost, encodes answers as `CheckResponse`s.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct AnswerCodec;

impl Codec for AnswerCodec {
    type Encode = Answer;
    type Decode = CheckRequest;
    type Encoder = AnswerEncoder;
    type Decoder = tonic_prost::ProstDecoder<CheckRequest>;

    fn encoder(&mut self) -> Self::Encoder {
        AnswerEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::default()
    }
}

/// Writes an [`Answer`] as the `CheckResponse` Envoy reads.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct AnswerEncoder;

impl Encoder for AnswerEncoder {
    type Item = Answer;
    type Error = Status;

    fn encode(&mut self, item: Answer, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.reserve(item.encoded_len());
        item.encode(dst);
        Ok(())
    }
}
