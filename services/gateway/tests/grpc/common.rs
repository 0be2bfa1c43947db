//! A real ledger and a real gateway in front of it, each on `127.0.0.1:0` with its own fresh
//! database, and clients that call the gateway with a bearer token.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use economy_gateway::auth::{AuthConfig, mint_hs256};
use economy_gateway::codec::BytesCodec;
use economy_gateway::config::GatewayConfig;
use economy_gateway::registry::Registry;
use economy_gateway::store::IdempotencyStore;
use economy_kit::identity::{Caller, IdentityConfig, IdentityKey, Signer, roles};
use economy_kit::server::{RunningServer, ServerLimits};
use economy_kit::testing::TestDatabase;
use economy_proto::ledger::v1 as pb;
use pb::ledger_service_client::LedgerServiceClient;
use tokio_util::sync::CancellationToken;
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};
use tonic_types::StatusExt;

pub const IDENTITY_SECRET: &str = "gateway-it-identity-secret-0123456789";
pub const JWT_SECRET: &str = "gateway-it-jwt-secret-0123456789";
pub const ADMIN: i64 = 1;
pub const USER: i64 = 7;
pub const ADJUST: &str = "/economy.ledger.v1.LedgerService/AdjustBalance";

pub type Client = LedgerServiceClient<InterceptedService<Channel, Bearer>>;

pub fn identity() -> IdentityKey {
    IdentityKey::new(&IdentityConfig { secret: IDENTITY_SECRET.into(), max_clock_skew_secs: 300 }).unwrap()
}

/// A ledger on `listen` over `database_url`.
pub async fn start_ledger(listen: &str, database_url: &str) -> RunningServer {
    let config = economy_ledger::LedgerConfig {
        listen: listen.into(),
        database_url: database_url.into(),
        ..economy_ledger::LedgerConfig::default()
    };
    economy_ledger::start(&config, &identity(), &ServerLimits::default(), CancellationToken::new()).await.unwrap()
}

/// An address nothing listens on (yet).
pub fn free_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// Gateway settings over `database`: every upstream of the real API points at a dead
/// address unless named in `upstreams`; health is probed every second.
pub fn gateway_config(database: &TestDatabase, upstreams: &[(&str, String)]) -> GatewayConfig {
    let registry = Registry::load(economy_proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut map: std::collections::BTreeMap<String, String> =
        registry.upstreams().into_iter().map(|name| (name, format!("http://{}", free_addr()))).collect();
    map.extend(upstreams.iter().map(|(name, url)| ((*name).to_owned(), url.clone())));
    GatewayConfig {
        listen: "127.0.0.1:0".into(),
        database_url: database.url.clone(),
        upstreams: map,
        auth: AuthConfig { hs256_secret: JWT_SECRET.into(), ..AuthConfig::default() },
        health_interval_secs: 1,
        ..GatewayConfig::default()
    }
}

pub async fn start_gateway(config: &GatewayConfig, limits: &ServerLimits) -> RunningServer {
    economy_gateway::start(config, &identity(), limits, CancellationToken::new()).await.unwrap()
}

/// Ledger + gateway, each with its own database.
pub struct Stack {
    pub gateway: RunningServer,
    pub ledger: RunningServer,
    pub gateway_db: TestDatabase,
    pub _ledger_db: TestDatabase,
}

pub async fn stack() -> Stack {
    stack_with(|_, _| {}).await
}

pub async fn stack_with(adjust: impl FnOnce(&mut GatewayConfig, &mut ServerLimits)) -> Stack {
    let (ledger_db, gateway_db) = (TestDatabase::new().await.unwrap(), TestDatabase::new().await.unwrap());
    let ledger = start_ledger("127.0.0.1:0", &ledger_db.url).await;
    let mut config = gateway_config(&gateway_db, &[("ledger", ledger.url())]);
    let mut limits = ServerLimits::default();
    adjust(&mut config, &mut limits);
    let gateway = start_gateway(&config, &limits).await;
    Stack { gateway, ledger, gateway_db, _ledger_db: ledger_db }
}

impl Stack {
    pub async fn client(&self, user_id: i64, role_level: i32) -> Client {
        client(&self.gateway, Some(&bearer(user_id, role_level))).await
    }

    pub async fn admin(&self) -> Client {
        self.client(ADMIN, roles::ADMIN).await
    }

    /// An admin client with the `POINTS` asset defined.
    pub async fn admin_with_points(&self) -> Client {
        let mut admin = self.admin().await;
        define_points(&mut admin).await;
        admin
    }

    /// The gateway's idempotency records, opened beside the running gateway.
    pub async fn store(&self) -> IdempotencyStore {
        open_store(&self.gateway_db).await
    }
}

pub async fn define_points(admin: &mut Client) {
    let asset = pb::Asset {
        code: "POINTS".into(),
        display_name: "Points".into(),
        kind: pb::AssetKind::Currency.into(),
        ..Default::default()
    };
    admin.define_asset(keyed(pb::DefineAssetRequest { asset: Some(asset) }, &new_key())).await.unwrap();
}

pub async fn open_store(database: &TestDatabase) -> IdempotencyStore {
    IdempotencyStore::open(&database.url, &economy_kit::db::DbOptions::default()).await.unwrap()
}

/// `authorization: Bearer <valid HS256 token>`.
pub fn bearer(user_id: i64, role_level: i32) -> String {
    format!("Bearer {}", mint_hs256(JWT_SECRET, user_id, role_level, 300).unwrap())
}

/// Sets `authorization` (any value, or none) on every request.
#[derive(Clone)]
pub struct Bearer(Option<AsciiMetadataValue>);

impl Bearer {
    /// Sends `authorization: <value>`.
    pub fn new(value: &str) -> Self {
        Self(Some(value.parse().unwrap()))
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

pub async fn channel(server: &RunningServer) -> Channel {
    Channel::from_shared(server.url()).unwrap().connect().await.unwrap()
}

pub async fn client(server: &RunningServer, authorization: Option<&str>) -> Client {
    let bearer = Bearer(authorization.map(|value| value.parse().unwrap()));
    LedgerServiceClient::with_interceptor(channel(server).await, bearer)
}

/// A ledger client that signs the internal identity itself (straight to the ledger).
pub async fn ledger_admin(ledger: &RunningServer) -> LedgerServiceClient<InterceptedService<Channel, Signer>> {
    LedgerServiceClient::with_interceptor(channel(ledger).await, identity().signer(Caller::user(ADMIN, roles::ADMIN)))
}

pub fn new_key() -> String {
    uuid::Uuid::now_v7().to_string()
}

pub fn keyed<T>(message: T, key: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert("idempotency-key", key.parse().unwrap());
    request
}

/// AdjustBalance of `POINTS` (positive credits, negative debits); the ledger keys it by the
/// gateway's business event.
pub fn adjust(user_id: i64, amount: i64) -> pb::AdjustBalanceRequest {
    let direction = if amount >= 0 { pb::AdjustDirection::Credit } else { pb::AdjustDirection::Debit };
    pb::AdjustBalanceRequest {
        user_id,
        asset_code: "POINTS".into(),
        direction: direction.into(),
        amount: amount.abs(),
        reason: "test".into(),
        ..Default::default()
    }
}

/// Available `POINTS` of `user_id`.
pub async fn points(client: &mut Client, user_id: i64) -> i64 {
    let account = Some(pb::AccountRef { account: Some(pb::account_ref::Account::UserId(user_id)) });
    let request = pb::GetBalanceRequest { account, asset_code: "POINTS".into() };
    client.get_balance(request).await.unwrap().into_inner().balance.unwrap().available
}

/// A request of raw message bytes with metadata `authorization` and, when given,
/// `idempotency-key`.
pub fn raw_request(body: Vec<u8>, authorization: &str, key: Option<&str>) -> Request<Bytes> {
    let mut request = Request::new(Bytes::from(body));
    request.metadata_mut().insert("authorization", authorization.parse().unwrap());
    if let Some(key) = key {
        request.metadata_mut().insert("idempotency-key", key.parse().unwrap());
    }
    request
}

/// One unary call of any method; the response bytes exactly as received.
pub async fn raw_call(channel: Channel, path: &str, request: Request<Bytes>) -> Result<Response<Bytes>, Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|error| Status::unavailable(error.to_string()))?;
    grpc.unary(request, path.parse().unwrap(), BytesCodec).await
}

/// The value of a metadata entry.
pub fn meta(metadata: &MetadataMap, key: &str) -> Option<String> {
    metadata.get(key).map(|value| value.to_str().unwrap().to_owned())
}

/// Asserts the code and ErrorInfo reason of a failed call; returns the status.
#[track_caller]
pub fn assert_error<T: std::fmt::Debug>(result: Result<T, Status>, code: Code, reason: &str) -> Status {
    let status = result.expect_err("the call should fail");
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(economy_kit::error::reason(&status).as_deref(), Some(reason), "{status:?}");
    status
}

/// The ErrorInfo metadata of a status.
pub fn error_info(status: &Status) -> HashMap<String, String> {
    status.get_details_error_info().map(|info| info.metadata).unwrap_or_default()
}

/// Polls `check` every 50 ms until it holds; fails after 20 s.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
