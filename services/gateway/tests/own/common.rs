//! The whole stack behind the gateway, and admin / user clients calling it.

use economy_gateway::auth::{AuthConfig, mint_hs256};
use economy_gateway::config::GatewayConfig;
use economy_kit::identity::{IdentityConfig, IdentityKey, roles};
use economy_kit::server::{RunningServer, ServerLimits};
use economy_kit::testing::TestDatabase;
use economy_proto::gateway::v1 as pb;
use economy_proto::items::v1 as items;
use economy_proto::ledger::v1 as ledger;
use economy_proto::market::v1 as market;
use economy_proto::redemption::v1 as redemption;
use tokio_util::sync::CancellationToken;
use tonic::metadata::AsciiMetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};

pub const ADMIN: i64 = 1;
pub const USER: i64 = 2;
const IDENTITY_SECRET: &str = "own-services-identity-secret-0123456789";
const JWT_SECRET: &str = "own-services-jwt-secret-0123456789";

/// Adds `authorization: Bearer <token>`.
#[derive(Clone)]
pub struct Token(AsciiMetadataValue);

impl Interceptor for Token {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request.metadata_mut().insert("authorization", self.0.clone());
        Ok(request)
    }
}

type Authed = InterceptedService<Channel, Token>;

fn identity() -> IdentityKey {
    IdentityKey::new(&IdentityConfig { secret: IDENTITY_SECRET.into(), max_clock_skew_secs: 300 }).expect("key")
}

fn limits() -> ServerLimits {
    ServerLimits { request_timeout_secs: 5, ..ServerLimits::default() }
}

/// Every service behind the gateway.
pub struct Stack {
    pub gateway: RunningServer,
    pub ledger: Option<RunningServer>,
    pub items: Option<RunningServer>,
    pub redemption_db: TestDatabase,
    _servers: Vec<RunningServer>,
    _databases: Vec<TestDatabase>,
}

pub async fn spawn_stack() -> Stack {
    let databases: Vec<TestDatabase> = {
        let mut databases = Vec::new();
        for _ in 0..4 {
            databases.push(TestDatabase::new().await.expect("db"));
        }
        databases
    };
    let redemption_db = TestDatabase::new().await.expect("db");
    let shutdown = CancellationToken::new;
    let listen = || "127.0.0.1:0".to_owned();
    let ledger = economy_ledger::start(
        &economy_ledger::LedgerConfig {
            listen: listen(),
            database_url: databases[0].url.clone(),
            ..Default::default()
        },
        &identity(),
        &limits(),
        shutdown(),
    )
    .await
    .expect("ledger");
    let items = economy_items::start(
        &economy_items::ItemsConfig { listen: listen(), database_url: databases[1].url.clone(), ..Default::default() },
        &identity(),
        &limits(),
        shutdown(),
    )
    .await
    .expect("items");
    let redemption_config = economy_redemption::RedemptionConfig {
        listen: listen(),
        database_url: redemption_db.url.clone(),
        items_url: items.url(),
        ..Default::default()
    };
    let redemption =
        economy_redemption::start(&redemption_config, &identity(), &limits(), shutdown()).await.expect("redemption");
    let market_config = economy_market::MarketConfig {
        listen: listen(),
        database_url: databases[2].url.clone(),
        ledger_url: ledger.url(),
        items_url: items.url(),
        ..Default::default()
    };
    let market = economy_market::start(&market_config, &identity(), &limits(), shutdown()).await.expect("market");
    let upstreams = [("ledger", &ledger), ("items", &items), ("redemption", &redemption), ("market", &market)]
        .into_iter()
        .map(|(name, server)| (name.to_owned(), server.url()))
        .collect();
    let config = GatewayConfig {
        listen: listen(),
        database_url: databases[3].url.clone(),
        upstreams,
        auth: AuthConfig { hs256_secret: JWT_SECRET.into(), ..AuthConfig::default() },
        ..GatewayConfig::default()
    };
    let gateway = economy_gateway::start(&config, &identity(), &limits(), shutdown()).await.expect("gateway");
    Stack {
        gateway,
        ledger: Some(ledger),
        items: Some(items),
        redemption_db,
        _servers: vec![redemption, market],
        _databases: databases,
    }
}

impl Stack {
    async fn authed(&self, user_id: i64, role: i32) -> Authed {
        let channel = Channel::from_shared(self.gateway.url()).expect("url").connect().await.expect("connect");
        let token = mint_hs256(JWT_SECRET, user_id, role, 3600).expect("token");
        InterceptedService::new(channel, Token(format!("Bearer {token}").parse().expect("ascii")))
    }

    pub async fn backpack(
        &self,
        user_id: i64,
        role: i32,
    ) -> pb::backpack_service_client::BackpackServiceClient<Authed> {
        pb::backpack_service_client::BackpackServiceClient::new(self.authed(user_id, role).await)
    }

    pub async fn operations(&self, role: i32) -> pb::operations_service_client::OperationsServiceClient<Authed> {
        pb::operations_service_client::OperationsServiceClient::new(self.authed(ADMIN, role).await)
    }

    pub async fn ledger(&self) -> ledger::ledger_service_client::LedgerServiceClient<Authed> {
        ledger::ledger_service_client::LedgerServiceClient::new(self.authed(ADMIN, roles::ADMIN).await)
    }

    pub async fn items(&self) -> items::item_service_client::ItemServiceClient<Authed> {
        items::item_service_client::ItemServiceClient::new(self.authed(ADMIN, roles::ADMIN).await)
    }

    pub async fn market(&self, user_id: i64) -> market::market_service_client::MarketServiceClient<Authed> {
        market::market_service_client::MarketServiceClient::new(self.authed(user_id, roles::USER).await)
    }

    pub async fn redemption(
        &self,
        user_id: i64,
    ) -> redemption::redemption_service_client::RedemptionServiceClient<Authed> {
        redemption::redemption_service_client::RedemptionServiceClient::new(self.authed(user_id, roles::USER).await)
    }

    pub async fn stop_items(&mut self) {
        if let Some(items) = self.items.take() {
            items.stop().await.expect("stop");
        }
    }

    pub async fn stop_ledger(&mut self) {
        if let Some(ledger) = self.ledger.take() {
            ledger.stop().await.expect("stop");
        }
    }

    /// Defines DIAMOND (currency) and red_shard (fragment) and credits `user`.
    pub async fn fund(&self, user: i64, credits: &[(&str, i64)]) {
        let mut ledger = self.ledger().await;
        for (code, name, kind) in [
            ("DIAMOND", "Diamond", ledger::AssetKind::Currency),
            ("red_shard", "Red shard", ledger::AssetKind::Fragment),
        ] {
            let asset =
                ledger::Asset { code: code.into(), display_name: name.into(), kind: kind.into(), ..Default::default() };
            ledger.define_asset(keyed(ledger::DefineAssetRequest { asset: Some(asset) })).await.expect("asset");
        }
        for (asset, amount) in credits {
            let request = ledger::AdjustBalanceRequest {
                user_id: user,
                asset_code: (*asset).into(),
                direction: ledger::AdjustDirection::Credit.into(),
                amount: *amount,
                reason: "test".into(),
                ..Default::default()
            };
            ledger.adjust_balance(keyed(request)).await.expect("credit");
        }
    }

    /// Defines `template` (redeemable, consumable) and grants `count` instances to `owner`.
    pub async fn grant(&self, owner: i64, template: &str, count: usize) -> Vec<String> {
        let mut items = self.items().await;
        let definition = items::ItemTemplate {
            code: template.into(),
            display_name: template.into(),
            kind: items::ItemKind::Voucher.into(),
            redeemable: true,
            consumable: true,
            ..Default::default()
        };
        items
            .define_template(keyed(items::DefineTemplateRequest { template: Some(definition) }))
            .await
            .expect("template");
        let mut ids = Vec::new();
        for _ in 0..count {
            let grant =
                items::GrantItemRequest { owner_user_id: owner, template_code: template.into(), ..Default::default() };
            ids.push(items.grant_item(keyed(grant)).await.expect("grant").into_inner().item.expect("item").id);
        }
        ids
    }
}

/// `message` with a fresh `idempotency-key`.
pub fn keyed<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert("idempotency-key", uuid::Uuid::now_v7().to_string().parse().expect("ascii"));
    request
}

pub fn reason(status: &Status) -> String {
    economy_kit::error::reason(status).unwrap_or_else(|| format!("{status:?}"))
}
