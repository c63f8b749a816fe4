//! Helpers shared by the unit tests.

/// Property-test settings: `default_cases` generated inputs per property (small, for CI),
/// or `PROPTEST_CASES` when set (the long runs of README's development section). No
/// regression files are written: a failure prints the minimal input and its seed.
pub(crate) fn proptest_config(default_cases: u32) -> proptest::test_runner::Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    proptest::test_runner::Config {
        cases,
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    }
}

/// The largest heap block allocated on this thread while tonic serves one unary gRPC call,
/// the way the server does (`Grpc::unary`: read the request with `codec`'s decoder, call
/// the service, write the answer with its encoder), and the answer's body: the request is
/// `message` in a gRPC frame; `service` makes the method for each call. A first call warms
/// the runtime; the second is measured. Issue 15: tonic's codecs allocate an 8 KiB buffer
/// per call unless told otherwise, and mimalloc fits only eight of those in a page, so
/// dozens of calls in flight keep freeing pages and taking fresh ones.
pub(crate) fn largest_block_of_unary_call<C, S>(
    codec: C,
    mut service: impl FnMut() -> S,
    message: &[u8],
) -> (usize, Vec<u8>)
where
    C: tonic::codec::Codec + Clone,
    S: tonic::server::UnaryService<C::Decode, Response = C::Encode>,
{
    use crate::engine::check::allocations;
    use http_body_util::BodyExt;
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let len = u32::try_from(message.len()).expect("a message under 4 GiB");
    let frame = prost::bytes::Bytes::from([&[0][..], &len.to_be_bytes(), message].concat());
    let mut call = || {
        let request = tonic::codegen::http::Request::builder()
            .method("POST")
            .header("content-type", "application/grpc")
            .body(http_body_util::Full::new(frame.clone()))
            .expect("a request");
        let method = service();
        allocations::take_largest();
        let body = rt.block_on(async {
            let response = tonic::server::Grpc::new(codec.clone())
                .unary(method, request)
                .await;
            let body = response.into_body().collect().await.expect("a body");
            body.to_bytes().to_vec()
        });
        (allocations::take_largest(), body)
    };
    call();
    call()
}
