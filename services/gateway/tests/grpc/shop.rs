//! A custom upstream, `economy.shop.v1.ShopService`: compiled at test time with protox and
//! served by a hand-written tonic server over dynamic messages. `Buy` answers with a
//! `sensitive` code, `Export` (a write) and `Peek` (a read) with a blob of any size; every
//! answer names the attempt, the verified caller and the forwarded business event, and
//! `hold_next` makes the next call wait until released.

use std::convert::Infallible;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use economy_gateway::codec::BytesCodec;
use economy_gateway::config::GatewayConfig;
use economy_gateway::registry::Registry;
use economy_gateway::store::IdempotencyStore;
use economy_kit::identity::{Caller, roles};
use economy_kit::server::{RunningServer, ServerLimits};
use economy_testkit::TestDatabase;
use prost_reflect::prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MethodDescriptor, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::server::UnaryService;
use tonic::service::Routes;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::common::{
    USER, bearer, channel, eventually, gateway_config, identity, meta, open_store, raw_call, raw_request,
};

pub const PROTO: &str = r#"syntax = "proto3";
package economy.shop.v1;
import "economy/options/v1/options.proto";
message BuyRequest {
  string sku = 1;
  int64 client_time = 2 [(economy.options.v1.field) = {fingerprint_exclude: true}];
  string nonce = 3 [(economy.options.v1.field) = {fingerprint_exclude: true}];
}
message BuyResponse {
  string order_id = 1;
  string code = 2 [(economy.options.v1.field) = {sensitive: true}];
  string sku = 3;
  int64 user_id = 4;
  int64 attempt = 5;
}
message ExportRequest { int64 size = 1; }
message ExportResponse { bytes blob = 1; string event = 2; int64 attempt = 3; }
service ShopService {
  rpc Buy(BuyRequest) returns (BuyResponse) {
    option (economy.options.v1.method) = {canonical_operation: "SHOP_BUY_ITEM"};
  }
  rpc Export(ExportRequest) returns (ExportResponse) {
    option (economy.options.v1.method) = {canonical_operation: "SHOP_EXPORT_CATALOG"};
  }
  rpc Peek(ExportRequest) returns (ExportResponse) { option idempotency_level = NO_SIDE_EFFECTS; }
}"#;

/// The request of a one-byte `Export`.
pub const EXPORT: &str = r#"{"size":"1"}"#;

/// Compiles `proto` (as `economy/shop/v1/shop.proto`, beside the real options) into an
/// encoded descriptor set that keeps custom options.
pub fn compile(proto: &str) -> Vec<u8> {
    let dir = std::env::temp_dir().join(format!("economy-shop-{}", uuid::Uuid::now_v7()));
    let options = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto/economy/options/v1/options.proto");
    std::fs::create_dir_all(dir.join("economy/options/v1")).unwrap();
    std::fs::create_dir_all(dir.join("economy/shop/v1")).unwrap();
    std::fs::copy(options, dir.join("economy/options/v1/options.proto")).unwrap();
    std::fs::write(dir.join("economy/shop/v1/shop.proto"), proto).unwrap();
    let mut compiler = protox::Compiler::new([&dir]).unwrap();
    compiler.include_imports(true).open_file("economy/shop/v1/shop.proto").unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    compiler.encode_file_descriptor_set()
}

fn method(pool: &DescriptorPool, name: &str) -> MethodDescriptor {
    let service = pool.get_service_by_name("economy.shop.v1.ShopService").unwrap();
    service.methods().find(|method| method.name() == name).unwrap()
}

/// The upstream's state.
pub struct Shop {
    pool: DescriptorPool,
    calls: AtomicI64,
    hold: Mutex<Option<oneshot::Receiver<()>>>,
}

impl Shop {
    /// Calls that reached the upstream.
    pub fn calls(&self) -> i64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// The next call waits until the returned sender fires (or is dropped).
    pub fn hold_next(&self) -> oneshot::Sender<()> {
        let (release, hold) = oneshot::channel();
        *self.hold.lock().unwrap() = Some(hold);
        release
    }

    async fn answer(&self, path: &str, request: Request<Bytes>) -> Result<Response<Bytes>, Status> {
        let Caller::User { user_id, .. } = identity().verify(request.metadata())? else {
            return Err(Status::permission_denied("users only"));
        };
        let event = meta(request.metadata(), "x-business-event-id").unwrap_or_default();
        let attempt = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let hold = self.hold.lock().unwrap().take();
        if let Some(hold) = hold {
            let _ = hold.await;
        }
        let method = method(&self.pool, path.rsplit('/').next().unwrap_or_default());
        let input = DynamicMessage::decode(method.input(), request.into_inner()).unwrap();
        let mut output = DynamicMessage::new(method.output());
        output.set_field_by_name("attempt", Value::I64(attempt));
        if method.name() == "Buy" {
            output.set_field_by_name("order_id", Value::String(event));
            output.set_field_by_name("code", Value::String(format!("CODE-{}", uuid::Uuid::now_v7().simple())));
            output.set_field_by_name("sku", input.get_field_by_name("sku").unwrap().into_owned());
            output.set_field_by_name("user_id", Value::I64(user_id));
        } else {
            let size = input.get_field_by_name("size").unwrap().as_i64().unwrap();
            output.set_field_by_name("blob", Value::Bytes(vec![b'x'; usize::try_from(size).unwrap()].into()));
            output.set_field_by_name("event", Value::String(event));
        }
        Ok(Response::new(output.encode_to_vec().into()))
    }
}

#[derive(Clone)]
struct ShopService(Arc<Shop>);

impl<B> tower::Service<http::Request<B>> for ShopService
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
        let unary = Unary { shop: self.0.clone(), path: request.uri().path().to_owned() };
        Box::pin(async move { Ok(tonic::server::Grpc::new(BytesCodec).unary(unary, request).await) })
    }
}

struct Unary {
    shop: Arc<Shop>,
    path: String,
}

impl UnaryService<Bytes> for Unary {
    type Response = Bytes;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response<Bytes>, Status>> + Send>>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let (shop, path) = (self.shop.clone(), self.path.clone());
        Box::pin(async move { shop.answer(&path, request).await })
    }
}

/// The shop upstream and a gateway (its own database) routing it.
pub struct ShopStack {
    pub _gateway: RunningServer,
    pub _upstream: RunningServer,
    pub shop: Arc<Shop>,
    pub pool: DescriptorPool,
    pub channel: Channel,
    pub database: TestDatabase,
}

pub async fn shop_stack(adjust: impl FnOnce(&mut GatewayConfig, &mut ServerLimits)) -> ShopStack {
    let bytes = compile(PROTO);
    let pool = DescriptorPool::decode(bytes.as_slice()).unwrap();
    let shop = Arc::new(Shop { pool: pool.clone(), calls: AtomicI64::new(0), hold: Mutex::new(None) });
    let router = Routes::builder().routes().into_axum_router().fallback_service(ShopService(shop.clone()));
    let limits = ServerLimits::default();
    let upstream = economy_kit::server::spawn(
        "127.0.0.1:0",
        "economy.shop.v1.ShopService",
        Routes::from(router),
        &limits,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let database = TestDatabase::new().await.unwrap();
    let mut config = gateway_config(&database, &[("shop", upstream.url())]);
    let mut limits = ServerLimits::default();
    adjust(&mut config, &mut limits);
    let registry = Registry::load(&bytes).unwrap();
    let gateway =
        economy_gateway::start_with_registry(registry, &config, &identity(), &limits, CancellationToken::new())
            .await
            .unwrap();
    let channel = channel(&gateway.url()).await;
    ShopStack { _gateway: gateway, _upstream: upstream, shop, pool, channel, database }
}

impl ShopStack {
    /// Calls `method` through the gateway as `USER` with the request given as proto3 JSON.
    pub async fn call(&self, method_name: &str, json: &str, key: Option<&str>) -> Result<Response<Bytes>, Status> {
        self.send(method_name, self.request(method_name, json, key)).await
    }

    pub fn request(&self, method_name: &str, json: &str, key: Option<&str>) -> Request<Bytes> {
        let descriptor = method(&self.pool, method_name).input();
        let request = DynamicMessage::deserialize(descriptor, &mut serde_json::Deserializer::from_str(json)).unwrap();
        raw_request(request.encode_to_vec(), &bearer(USER, roles::USER), key)
    }

    pub async fn send(&self, method_name: &str, request: Request<Bytes>) -> Result<Response<Bytes>, Status> {
        raw_call(self.channel.clone(), &format!("/economy.shop.v1.ShopService/{method_name}"), request).await
    }

    /// Decodes a response of `method_name`.
    pub fn decode(&self, method_name: &str, bytes: &[u8]) -> DynamicMessage {
        DynamicMessage::decode(method(&self.pool, method_name).output(), bytes).unwrap()
    }

    pub async fn store(&self) -> IdempotencyStore {
        open_store(&self.database).await
    }
}

/// A string field of a dynamic message.
pub fn text(message: &DynamicMessage, field: &str) -> String {
    message.get_field_by_name(field).unwrap().as_str().unwrap().to_owned()
}

/// An int64 field of a dynamic message.
pub fn number(message: &DynamicMessage, field: &str) -> i64 {
    message.get_field_by_name(field).unwrap().as_i64().unwrap()
}

/// An `Export` of one byte with `key` that the upstream holds until the returned sender
/// fires (or is dropped); returns once the call reached the upstream.
pub async fn held_export(
    stack: &Arc<ShopStack>,
    key: &str,
) -> (oneshot::Sender<()>, JoinHandle<Result<Response<Bytes>, Status>>) {
    let (release, before) = (stack.shop.hold_next(), stack.shop.calls());
    let call = tokio::spawn({
        let (stack, key) = (stack.clone(), key.to_owned());
        async move { stack.call("Export", EXPORT, Some(&key)).await }
    });
    eventually("the held call to reach the upstream", || async { stack.shop.calls() == before + 1 }).await;
    (release, call)
}
