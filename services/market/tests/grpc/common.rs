//! The stack (gateway, ledger, items, market) and clients that call the gateway with a
//! bearer token and an idempotency key per write.

use std::sync::Arc;
use std::time::Duration;

use economy_gateway::auth::{AuthConfig, mint_hs256};
use economy_gateway::config::GatewayConfig;
use economy_kit::identity::{IdentityConfig, IdentityKey, roles};
use economy_kit::server::{RunningServer, ServerLimits};
use economy_kit::testing::TestDatabase;
use economy_kit::time::{Clock, ManualClock, SystemClock};
use economy_market::MarketConfig;
use economy_proto::items::v1 as items;
use economy_proto::ledger::v1 as ledger;
use economy_proto::market::v1 as pb;
use items::item_service_client::ItemServiceClient;
use ledger::ledger_service_client::LedgerServiceClient;
use tokio_util::sync::CancellationToken;
use tonic::metadata::AsciiMetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};

pub const ADMIN: i64 = 1;
pub const SELLER: i64 = 2;
pub const BUYER: i64 = 3;
const IDENTITY_SECRET: &str = "market-it-identity-secret-0123456789";
const JWT_SECRET: &str = "market-it-jwt-secret-0123456789";

/// Adds `authorization: Bearer <token>`.
#[derive(Clone)]
pub struct Token(AsciiMetadataValue);

impl Interceptor for Token {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request.metadata_mut().insert("authorization", self.0.clone());
        Ok(request)
    }
}

pub type Market = pb::market_service_client::MarketServiceClient<InterceptedService<Channel, Token>>;
pub type Ledger = LedgerServiceClient<InterceptedService<Channel, Token>>;
pub type DirectMarket =
    pb::market_service_client::MarketServiceClient<InterceptedService<Channel, economy_kit::identity::Signer>>;
pub type Items = ItemServiceClient<InterceptedService<Channel, Token>>;

fn identity() -> IdentityKey {
    IdentityKey::new(&IdentityConfig { secret: IDENTITY_SECRET.into(), max_clock_skew_secs: 300 }).expect("key")
}

fn limits() -> ServerLimits {
    ServerLimits { request_timeout_secs: 5, ..ServerLimits::default() }
}

/// The whole stack the market needs, behind the gateway.
pub struct Stack {
    pub gateway: RunningServer,
    _ledger: RunningServer,
    /// The market itself (behind the gateway).
    pub market_server: RunningServer,
    pub items: Option<RunningServer>,
    pub items_addr: String,
    items_db: TestDatabase,
    /// The market's own database.
    pub market_db: TestDatabase,
    _databases: Vec<TestDatabase>,
}

pub async fn start_items(listen: &str, database: &TestDatabase) -> RunningServer {
    let config = economy_items::ItemsConfig {
        listen: listen.into(),
        database_url: database.url.clone(),
        ..economy_items::ItemsConfig::default()
    };
    economy_items::start(&config, &identity(), &limits(), CancellationToken::new()).await.expect("items")
}

pub async fn spawn_stack() -> Stack {
    spawn_with(|_| {}).await
}

pub async fn spawn_with(configure: impl FnOnce(&mut MarketConfig)) -> Stack {
    spawn_with_clock(configure, Arc::new(SystemClock)).await
}

/// The stack with the market on a manual clock (the other services keep the system's):
/// tests move the market's time without sleeping.
pub async fn spawn_manual(configure: impl FnOnce(&mut MarketConfig)) -> (Stack, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::default());
    (spawn_with_clock(configure, clock.clone()).await, clock)
}

async fn spawn_with_clock(configure: impl FnOnce(&mut MarketConfig), clock: Arc<dyn Clock>) -> Stack {
    let (ledger_db, items_db, market_db, gateway_db) = (
        TestDatabase::new().await.expect("db"),
        TestDatabase::new().await.expect("db"),
        TestDatabase::new().await.expect("db"),
        TestDatabase::new().await.expect("db"),
    );
    let ledger_config = economy_ledger::LedgerConfig {
        listen: "127.0.0.1:0".into(),
        database_url: ledger_db.url.clone(),
        ..economy_ledger::LedgerConfig::default()
    };
    let shutdown = CancellationToken::new;
    let ledger = economy_ledger::start(&ledger_config, &identity(), &limits(), shutdown()).await.expect("ledger");
    let items = start_items("127.0.0.1:0", &items_db).await;
    let mut market_config = MarketConfig {
        listen: "127.0.0.1:0".into(),
        database_url: market_db.url.clone(),
        ledger_url: ledger.url(),
        items_url: items.url(),
        recovery_interval_secs: 1,
        stale_after_secs: 1,
        ..MarketConfig::default()
    };
    configure(&mut market_config);
    let market = economy_market::start_with_clock(&market_config, &identity(), &limits(), clock, shutdown())
        .await
        .expect("market");
    let upstreams = [("ledger", ledger.url()), ("items", items.url()), ("market", market.url())]
        .into_iter()
        .map(|(name, url)| (name.to_owned(), url))
        .chain([("redemption".to_owned(), "http://127.0.0.1:9".to_owned())])
        .collect();
    let gateway_config = GatewayConfig {
        listen: "127.0.0.1:0".into(),
        database_url: gateway_db.url.clone(),
        upstreams,
        auth: AuthConfig { hs256_secret: JWT_SECRET.into(), ..AuthConfig::default() },
        rate_limit_per_second: 10_000,
        rate_limit_burst: 10_000,
        ..GatewayConfig::default()
    };
    let gateway = economy_gateway::start(&gateway_config, &identity(), &limits(), shutdown()).await.expect("gateway");
    let items_addr = items.addr.to_string();
    Stack {
        gateway,
        _ledger: ledger,
        market_server: market,
        items: Some(items),
        items_addr,
        items_db,
        market_db,
        _databases: vec![ledger_db, gateway_db],
    }
}

impl Stack {
    async fn channel(&self) -> Channel {
        Channel::from_shared(self.gateway.url()).expect("url").connect().await.expect("connect")
    }

    fn token(user_id: i64, role: i32) -> Token {
        let token = mint_hs256(JWT_SECRET, user_id, role, 3600).expect("token");
        Token(format!("Bearer {token}").parse().expect("ascii"))
    }

    pub async fn market(&self, user_id: i64) -> Market {
        pb::market_service_client::MarketServiceClient::with_interceptor(
            self.channel().await,
            Self::token(user_id, roles::USER),
        )
    }

    /// The market through the gateway, as the admin.
    pub async fn admin_market(&self) -> Market {
        pb::market_service_client::MarketServiceClient::with_interceptor(
            self.channel().await,
            Self::token(ADMIN, roles::ADMIN),
        )
    }

    /// The market service itself, bypassing the gateway, signed as `caller`.
    pub async fn direct_market(&self, caller: economy_kit::identity::Caller) -> DirectMarket {
        let channel = Channel::from_shared(self.market_server.url()).expect("url").connect().await.expect("connect");
        pb::market_service_client::MarketServiceClient::with_interceptor(channel, identity().signer(caller))
    }

    pub async fn admin_ledger(&self) -> Ledger {
        LedgerServiceClient::with_interceptor(self.channel().await, Self::token(ADMIN, roles::ADMIN))
    }

    pub async fn admin_items(&self) -> Items {
        ItemServiceClient::with_interceptor(self.channel().await, Self::token(ADMIN, roles::ADMIN))
    }

    pub async fn stop_items(&mut self) {
        if let Some(items) = self.items.take() {
            items.stop().await.expect("stop items");
        }
    }

    pub async fn restart_items(&mut self) {
        self.items = Some(start_items(&self.items_addr, &self.items_db).await);
    }

    /// Defines DIAMOND and red_shard and credits `credits` (user, asset, amount).
    pub async fn fund(&self, credits: &[(i64, &str, i64)]) {
        let mut ledger = self.admin_ledger().await;
        for (code, kind) in [("DIAMOND", ledger::AssetKind::Currency), ("red_shard", ledger::AssetKind::Fragment)] {
            let asset =
                ledger::Asset { code: code.into(), display_name: code.into(), kind: kind.into(), ..Default::default() };
            ledger.define_asset(keyed(ledger::DefineAssetRequest { asset: Some(asset) })).await.expect("asset");
        }
        for (user_id, asset, amount) in credits {
            let request = ledger::AdjustBalanceRequest {
                user_id: *user_id,
                asset_code: (*asset).into(),
                direction: ledger::AdjustDirection::Credit.into(),
                amount: *amount,
                reason: "test funds".into(),
                ..Default::default()
            };
            ledger.adjust_balance(keyed(request)).await.expect("credit");
        }
    }

    /// `(available, frozen)` of a user's asset.
    pub async fn balance(&self, user_id: i64, asset: &str) -> (i64, i64) {
        self.account_balance(ledger::AccountRef { account: Some(ledger::account_ref::Account::UserId(user_id)) }, asset)
            .await
    }

    pub async fn account_balance(&self, account: ledger::AccountRef, asset: &str) -> (i64, i64) {
        let request = ledger::GetBalanceRequest { account: Some(account), asset_code: asset.into() };
        let balance = self.admin_ledger().await.get_balance(request).await.expect("balance").into_inner().balance;
        balance.map_or((0, 0), |balance| (balance.available, balance.frozen))
    }

    pub async fn fee_balance(&self) -> i64 {
        let account =
            ledger::AccountRef { account: Some(ledger::account_ref::Account::System("SYSTEM_PLATFORM_FEE".into())) };
        self.account_balance(account, "DIAMOND").await.0
    }

    /// Asserts the ledger reconciles: postings, holds and zero-sum per asset.
    pub async fn assert_reconciled(&self) {
        let report = self.admin_ledger().await.reconcile(ledger::ReconcileRequest {}).await.expect("reconcile");
        let report = report.into_inner();
        assert!(report.findings.is_empty(), "ledger findings: {:?}", report.findings);
    }

    /// Defines the `sword` template and grants one to `owner`.
    pub async fn grant_item(&self, owner: i64) -> String {
        let mut items = self.admin_items().await;
        let template = items::ItemTemplate {
            code: "sword".into(),
            display_name: "Sword".into(),
            kind: items::ItemKind::Equipment.into(),
            ..Default::default()
        };
        items
            .define_template(keyed(items::DefineTemplateRequest { template: Some(template) }))
            .await
            .expect("template");
        let grant =
            items::GrantItemRequest { owner_user_id: owner, template_code: "sword".into(), ..Default::default() };
        items.grant_item(keyed(grant)).await.expect("grant").into_inner().item.expect("item").id
    }

    pub async fn item(&self, id: &str) -> items::ItemInstance {
        let request = items::GetItemRequest { item_instance_id: id.into() };
        self.admin_items().await.get_item(request).await.expect("item").into_inner().item.expect("item")
    }

    pub async fn listing(&self, id: &str) -> pb::Listing {
        let request = pb::GetListingRequest { listing_id: id.into() };
        self.market(BUYER).await.get_listing(request).await.expect("listing").into_inner().listing.expect("listing")
    }

    /// Polls until the listing reaches `status`.
    pub async fn wait_listing(&self, id: &str, status: pb::ListingStatus) -> pb::Listing {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let listing = self.listing(id).await;
            if listing.status == status as i32 || tokio::time::Instant::now() > deadline {
                return listing;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// `message` with a fresh `idempotency-key`.
pub fn keyed<T>(message: T) -> Request<T> {
    with_key(message, &uuid::Uuid::now_v7().to_string())
}

/// `message` with `idempotency-key: key`.
pub fn with_key<T>(message: T, key: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert("idempotency-key", key.parse().expect("ascii"));
    request
}

pub async fn list_asset(market: &mut Market, amount: i64, price: i64) -> Result<pb::Listing, Status> {
    let request = pb::CreateListingRequest {
        offer: Some(pb::create_listing_request::Offer::Asset(pb::AssetOffer {
            asset_code: "red_shard".into(),
            amount,
        })),
        price: Some(pb::Price { asset_code: "DIAMOND".into(), amount: price }),
        ..Default::default()
    };
    market.create_listing(keyed(request)).await.map(|response| response.into_inner().listing.expect("listing"))
}

pub async fn list_item(market: &mut Market, item: &str, price: i64) -> Result<pb::Listing, Status> {
    let offer = pb::ItemOffer { item_instance_id: item.into(), template_code: String::new() };
    let request = pb::CreateListingRequest {
        offer: Some(pb::create_listing_request::Offer::Item(offer)),
        price: Some(pb::Price { asset_code: "DIAMOND".into(), amount: price }),
        ..Default::default()
    };
    market.create_listing(keyed(request)).await.map(|response| response.into_inner().listing.expect("listing"))
}

pub async fn buy(market: &mut Market, listing: &str) -> Result<pb::PurchaseListingResponse, Status> {
    let request = pb::PurchaseListingRequest { listing_id: listing.into(), ..Default::default() };
    market.purchase_listing(keyed(request)).await.map(tonic::Response::into_inner)
}

pub fn reason<T: std::fmt::Debug>(result: Result<T, Status>) -> String {
    let status = result.expect_err("should fail");
    economy_kit::error::reason(&status).unwrap_or_else(|| format!("{status:?}"))
}
