//! The upstream behind Envoy in `benches/load.sh`: an HTTP/1.1 server that answers every
//! request `200 ok` (keep-alive, TCP_NODELAY), so that the Envoy rows measure Envoy and its
//! ext_authz service, not an application.
//!
//!     cargo run --release --example bench_upstream -- 127.0.0.1:9292

use std::convert::Infallible;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

async fn ok(_request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: std::net::SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9292".into())
        .parse()?;
    let listener = TcpListener::bind(addr).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            // A client that goes away mid-request is not an error worth reporting here.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(ok))
                .await;
        });
    }
}
