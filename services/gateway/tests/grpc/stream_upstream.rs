//! Proxied streams against a hand-written streaming upstream (`economy.shop.v1`, compiled
//! at test time): a status the upstream ends a stream with mid-way is passed on, a stream
//! outlives the upstream timeout, and an upstream that never opens its stream is cut off
//! at the timeout, freeing the stream's place (docs/gateway.md, "Streams").

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use economy_gateway::codec::BytesCodec;
use economy_gateway::config::GatewayConfig;
use economy_gateway::registry::Registry;
use economy_kit::identity::roles;
use economy_kit::reasons;
use economy_kit::server::{RunningServer, ServerLimits};
use http::uri::PathAndQuery;
use prost::Message;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::server::ServerStreamingService;
use tonic::service::Routes;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status, Streaming};

use crate::common::*;
use crate::shop::compile;

const PROTO: &str = r#"syntax = "proto3";
package economy.shop.v1;
message TailRequest { int64 count = 1; int64 interval_ms = 2; bool fail = 3; bool hang = 4; }
message TailResponse { int64 seq = 1; }
service ShopService {
  rpc Tail(TailRequest) returns (stream TailResponse) { option idempotency_level = NO_SIDE_EFFECTS; }
}"#;
const TAIL: &str = "/economy.shop.v1.ShopService/Tail";
/// Guards against a hung stream only (never a timed assertion): far above any wait.
const STALLED: Duration = Duration::from_secs(60);

/// What `Tail` does: `count` messages `interval_ms` apart, then the end (OK, or a
/// refusal when `fail`); with `hang` it never opens the stream.
#[derive(Clone, PartialEq, Message)]
struct TailRequest {
    #[prost(int64, tag = "1")]
    count: i64,
    #[prost(int64, tag = "2")]
    interval_ms: i64,
    #[prost(bool, tag = "3")]
    fail: bool,
    #[prost(bool, tag = "4")]
    hang: bool,
}

#[derive(Clone, PartialEq, Message)]
struct TailResponse {
    #[prost(int64, tag = "1")]
    seq: i64,
}

#[derive(Clone)]
struct Upstream;

impl<B> tower::Service<http::Request<B>> for Upstream
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        Box::pin(async move { Ok(tonic::server::Grpc::new(BytesCodec).server_streaming(Tail, request).await) })
    }
}

struct Tail;

type Messages = ReceiverStream<Result<Bytes, Status>>;

impl ServerStreamingService<Bytes> for Tail {
    type Response = Bytes;
    type ResponseStream = Messages;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response<Messages>, Status>> + Send>>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        Box::pin(async move {
            identity().verify(request.metadata())?;
            let tail = TailRequest::decode(request.into_inner()).map_err(|_| Status::invalid_argument("bad"))?;
            if tail.hang {
                std::future::pending::<()>().await;
            }
            let (sender, receiver) = tokio::sync::mpsc::channel(4);
            tokio::spawn(async move {
                for seq in 1..=tail.count {
                    tokio::time::sleep(Duration::from_millis(tail.interval_ms.unsigned_abs())).await;
                    let message = TailResponse { seq }.encode_to_vec().into();
                    if sender.send(Ok(message)).await.is_err() {
                        return;
                    }
                }
                if tail.fail {
                    let refusal = economy_kit::error::status(
                        Code::FailedPrecondition,
                        "economy.shop",
                        reasons::ITEM_NOT_AVAILABLE,
                        "sold out",
                        [("sku", "sword")],
                    );
                    let _ = sender.send(Err(refusal)).await;
                }
            });
            Ok(Response::new(ReceiverStream::new(receiver)))
        })
    }
}

/// The tail upstream and a gateway routing it.
struct TailStack {
    _upstream: RunningServer,
    _gateway: RunningServer,
    _database: TestDatabase,
    channel: Channel,
}

async fn tail_stack(adjust: impl FnOnce(&mut GatewayConfig, &mut ServerLimits)) -> TailStack {
    let router = Routes::builder().routes().into_axum_router().fallback_service(Upstream);
    let limits = ServerLimits::default();
    let shutdown = CancellationToken::new();
    let upstream =
        economy_kit::server::spawn("127.0.0.1:0", "tail", Routes::from(router), &limits, shutdown).await.unwrap();
    let database = TestDatabase::new().await.unwrap();
    let mut config = gateway_config(&database, &[("shop", upstream.url())]);
    let mut limits = ServerLimits::default();
    adjust(&mut config, &mut limits);
    let registry = Registry::load(&compile(PROTO)).unwrap();
    let gateway =
        economy_gateway::start_with_registry(registry, &config, &identity(), &limits, CancellationToken::new())
            .await
            .unwrap();
    let channel = channel(&gateway.url()).await;
    TailStack { _upstream: upstream, _gateway: gateway, _database: database, channel }
}

impl TailStack {
    async fn tail(&self, request: TailRequest) -> Result<Streaming<Bytes>, Status> {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        grpc.ready().await.unwrap();
        let request = raw_request(request.encode_to_vec(), &bearer(USER, roles::USER), None);
        grpc.server_streaming(request, PathAndQuery::from_static(TAIL), BytesCodec).await.map(Response::into_inner)
    }
}

/// Every message until the end: the sequence numbers, and the status unless OK.
async fn drain(mut stream: Streaming<Bytes>) -> (Vec<i64>, Option<Status>) {
    let mut seqs = Vec::new();
    let end = tokio::time::timeout(STALLED, async {
        loop {
            match stream.message().await {
                Ok(Some(message)) => seqs.push(TailResponse::decode(message).unwrap().seq),
                Ok(None) => return None,
                Err(status) => return Some(status),
            }
        }
    })
    .await
    .expect("the stream stalled");
    (seqs, end)
}

#[tokio::test]
async fn a_status_the_upstream_ends_a_stream_with_is_passed_on() {
    let stack = tail_stack(|_, _| {}).await;
    let request = TailRequest { count: 2, fail: true, ..Default::default() };
    let (seqs, end) = drain(stack.tail(request).await.unwrap()).await;
    assert_eq!(seqs, [1, 2]);
    let status = assert_error(Err::<(), _>(end.expect("a refusal")), Code::FailedPrecondition, "ITEM_NOT_AVAILABLE");
    assert_eq!(error_info(&status).get("sku").map(String::as_str), Some("sword"));
}

#[tokio::test]
async fn a_stream_outlives_the_upstream_timeout() {
    let stack = tail_stack(|_, limits| limits.request_timeout_secs = 1).await;
    let request = TailRequest { count: 6, interval_ms: 400, ..Default::default() };
    let (seqs, end) = drain(stack.tail(request).await.unwrap()).await;
    assert_eq!(seqs, [1, 2, 3, 4, 5, 6]);
    assert!(end.is_none(), "{end:?}");
}

#[tokio::test]
async fn an_upstream_that_never_opens_its_stream_is_cut_off_and_frees_the_place() {
    let stack = tail_stack(|config, limits| {
        config.streams.per_user = 1;
        limits.request_timeout_secs = 1;
    })
    .await;
    let hung = tokio::time::timeout(STALLED, stack.tail(TailRequest { hang: true, ..Default::default() }))
        .await
        .expect("the opening was not bounded");
    let status = hung.expect_err("cut off");
    // The gateway's deadline on the upstream, or the server's on the whole request.
    assert!(matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled), "{status:?}");
    let (seqs, end) = drain(stack.tail(TailRequest { count: 1, ..Default::default() }).await.unwrap()).await;
    assert_eq!((seqs, end.map(|status| status.code())), (vec![1], None));
}
