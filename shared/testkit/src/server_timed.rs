//! A gRPC client that leaves a call's deadline to the server.
//!
//! A tonic `Channel` times a call out itself at its `grpc-timeout` and reports
//! `CANCELLED: Timeout expired` before the server's answer can arrive; gRPC-web, Connect
//! and many other clients wait for the server instead, which answers `DEADLINE_EXCEEDED`
//! (docs/operations.md, "Deadlines"). Tests of that answer call through this client.

use http::Uri;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Plain HTTP/2 to any origin, without a timer of its own.
pub type ServerTimed = Client<HttpConnector, tonic::body::Body>;

/// The client and the origin of plaintext `url` (`http://host:port`), for a generated
/// client: `XServiceClient::with_origin(service, origin)` (with an interceptor:
/// `InterceptedService::new(service, interceptor)` first).
pub fn server_timed(url: &str) -> (ServerTimed, Uri) {
    let client = Client::builder(TokioExecutor::new()).http2_only(true).build_http();
    (client, url.parse().expect("a plaintext URL"))
}
