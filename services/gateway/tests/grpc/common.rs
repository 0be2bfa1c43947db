//! A real ledger and a real gateway in front of it (the testkit's stack), each on
//! `127.0.0.1:0` with its own fresh database, and clients that call the gateway with a
//! bearer token.

use std::net::SocketAddr;

use economy_gateway::auth::AuthConfig;
use economy_gateway::config::GatewayConfig;
use economy_gateway::registry::Registry;
use economy_gateway::store::IdempotencyStore;
use economy_kit::identity::{Caller, Signer, roles};
use economy_kit::server::ServerLimits;
use economy_proto::ledger::v1 as pb;
use economy_testkit::test_stack;
pub use economy_testkit::{
    Bearer, JWT_SECRET, Service, TestDatabase, assert_error, bearer, channel, error_info, eventually, identity, keyed,
    meta, new_key, raw_call, raw_request,
};
use pb::ledger_service_client::LedgerServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub const ADMIN: i64 = 1;
pub const USER: i64 = 7;
pub const ADJUST: &str = "/economy.ledger.v1.LedgerService/AdjustBalance";

pub type Client = LedgerServiceClient<InterceptedService<Channel, Bearer>>;

/// An address nothing listens on (yet).
pub fn free_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// Gateway settings over `database` for a gateway started with a custom registry (the
/// `economy.shop.v1` tests): every upstream of the real API points at a dead address
/// unless named in `upstreams`; health is probed every second.
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

economy_testkit::stack_type!(
    /// Ledger + gateway, each with its own database (the other upstreams are dead addresses).
    Stack
);

pub async fn stack() -> Stack {
    stack_with(|_, _| {}).await
}

pub async fn stack_with(adjust: impl FnOnce(&mut GatewayConfig, &mut ServerLimits)) -> Stack {
    Stack(builder(adjust).start().await)
}

/// The stack on one manual clock: tests move time instead of sleeping.
pub async fn stack_on_manual_clock() -> Stack {
    Stack(builder(|_, _| {}).manual_clock().start().await)
}

fn builder(adjust: impl FnOnce(&mut GatewayConfig, &mut ServerLimits)) -> economy_testkit::TestStackBuilder {
    test_stack(&[Service::Ledger, Service::Gateway]).configure(|config| {
        config.gateway.health_interval_secs = 1;
        adjust(&mut config.gateway, &mut config.limits);
    })
}

impl Stack {
    pub fn gateway_url(&self) -> String {
        self.url_of(Service::Gateway)
    }

    pub fn gateway_addr(&self) -> SocketAddr {
        self.addr(Service::Gateway).unwrap()
    }

    pub fn ledger_url(&self) -> String {
        self.url_of(Service::Ledger)
    }

    pub async fn client(&self, user_id: i64, role_level: i32) -> Client {
        client(&self.gateway_url(), Some(&bearer(user_id, role_level))).await
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
        open_store(self.database(Service::Gateway)).await
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

/// A ledger client through the server at `url`, sending `authorization` (any value, or
/// none).
pub async fn client(url: &str, authorization: Option<&str>) -> Client {
    let bearer = authorization.map_or_else(Bearer::none, Bearer::new);
    LedgerServiceClient::with_interceptor(channel(url).await, bearer)
}

/// A ledger client at `url` that signs the internal identity itself (straight to the
/// ledger).
pub async fn ledger_admin(url: &str) -> LedgerServiceClient<InterceptedService<Channel, Signer>> {
    LedgerServiceClient::with_interceptor(channel(url).await, identity().signer(Caller::user(ADMIN, roles::ADMIN)))
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
    let request = pb::GetBalanceRequest { account, asset_code: "POINTS".into(), as_of: None };
    client.get_balance(request).await.unwrap().into_inner().balance.unwrap().available
}
