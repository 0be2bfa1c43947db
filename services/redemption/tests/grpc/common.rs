//! `spawn_app` and helpers shared by the integration tests.

use std::sync::Arc;
use std::time::Duration;

use economy_kit::db::DbOptions;
use economy_kit::identity::{Caller, IdentityConfig, IdentityKey, Signer, roles};
use economy_kit::server::{RunningServer, ServerLimits};
use economy_kit::testing::TestDatabase;
use economy_kit::time::ManualClock;
use economy_proto::items::v1 as items;
use economy_proto::redemption::v1 as pb;
use economy_redemption::RedemptionConfig;
use economy_redemption::store::RedemptionStore;
use items::item_service_client::ItemServiceClient;
use pb::redemption_service_client::RedemptionServiceClient;
use sqlx::Row;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub const SECRET: &str = "redemption-test-secret-0123456789";
pub const OWNER: i64 = 2;
pub const STAFF: i64 = 50;
pub const ADMIN: i64 = 1;

pub type Client = RedemptionServiceClient<InterceptedService<Channel, Signer>>;
pub type Items = ItemServiceClient<InterceptedService<Channel, Signer>>;

/// Redemption + Items, each with its own database; the redemption clock is manual.
pub struct TestApp {
    pub redemption: RunningServer,
    pub items: Option<RunningServer>,
    pub items_addr: String,
    pub key: IdentityKey,
    pub clock: Arc<ManualClock>,
    pub database: TestDatabase,
    items_database: TestDatabase,
}

pub fn key() -> IdentityKey {
    IdentityKey::new(&IdentityConfig { secret: SECRET.into(), max_clock_skew_secs: 300 }).expect("key")
}

pub async fn start_items(listen: &str, database: &TestDatabase) -> RunningServer {
    let config = economy_items::ItemsConfig {
        listen: listen.into(),
        database_url: database.url.clone(),
        ..economy_items::ItemsConfig::default()
    };
    economy_items::start(&config, &key(), &ServerLimits::default(), CancellationToken::new()).await.expect("items")
}

pub async fn spawn_app() -> TestApp {
    spawn_with(|_| {}).await
}

pub async fn spawn_with(configure: impl FnOnce(&mut RedemptionConfig)) -> TestApp {
    let items_database = TestDatabase::new().await.expect("items database");
    let items = start_items("127.0.0.1:0", &items_database).await;
    let database = TestDatabase::new().await.expect("redemption database");
    let mut config = RedemptionConfig {
        listen: "127.0.0.1:0".into(),
        database_url: database.url.clone(),
        items_url: items.url(),
        outbox_interval_secs: 1,
        expiry_interval_secs: 1,
        ..RedemptionConfig::default()
    };
    configure(&mut config);
    let clock = Arc::new(ManualClock::default());
    let redemption = economy_redemption::start_with_clock(
        &config,
        &key(),
        &ServerLimits { request_timeout_secs: 5, ..ServerLimits::default() },
        clock.clone(),
        CancellationToken::new(),
    )
    .await
    .expect("redemption");
    let items_addr = items.addr.to_string();
    TestApp { redemption, items: Some(items), items_addr, key: key(), clock, database, items_database }
}

async fn channel(url: String) -> Channel {
    Channel::from_shared(url).expect("url").connect_lazy()
}

impl TestApp {
    pub async fn client(&self, caller: Caller) -> Client {
        RedemptionServiceClient::with_interceptor(channel(self.redemption.url()).await, self.key.signer(caller))
    }

    pub async fn owner(&self) -> Client {
        self.client(Caller::user(OWNER, roles::USER)).await
    }

    pub async fn staff(&self) -> Client {
        self.client(Caller::user(STAFF, roles::MERCHANT_STAFF)).await
    }

    pub async fn admin(&self) -> Client {
        self.client(Caller::user(ADMIN, roles::ADMIN)).await
    }

    pub async fn items_admin(&self) -> Items {
        let url = format!("http://{}", self.items_addr);
        ItemServiceClient::with_interceptor(channel(url).await, self.key.signer(Caller::user(1, roles::ADMIN)))
    }

    /// The service's database.
    pub async fn store(&self) -> RedemptionStore {
        RedemptionStore::open(&self.database.url, &DbOptions::default()).await.expect("store")
    }

    /// Every text the service stored, concatenated (to search for plaintext codes).
    pub async fn stored_text(&self) -> String {
        let store = self.store().await;
        let mut text = String::new();
        for (table, columns) in [
            ("redemption_orders", "order_id || item_instance_id || code_hash || create_key || created_by"),
            ("redemption_actions", "idempotency_key || order_id || action || actor || reason"),
            ("redemption_outbox", "id || order_id || action || item_instance_id || idempotency_key || status"),
            (
                "audit_records",
                "idempotency_key || actor || action || target_id || before_state || after_state || reason",
            ),
        ] {
            let sql = format!("SELECT {columns} AS t FROM {table}");
            for row in sqlx::query(&sql).fetch_all(store.db().pool()).await.expect("dump") {
                text.push_str(&row.get::<String, _>("t"));
                text.push('\n');
            }
        }
        text
    }

    /// Stops the Items service (its database stays).
    pub async fn stop_items(&mut self) {
        if let Some(items) = self.items.take() {
            items.stop().await.expect("items stop");
        }
    }

    /// Starts Items again on the same address and database.
    pub async fn restart_items(&mut self) {
        self.items = Some(start_items(&self.items_addr, &self.items_database).await);
    }

    /// Defines `prize` (redeemable) and `badge` (not), and grants one of `template` to OWNER.
    pub async fn grant(&self, template: &str) -> String {
        let mut items = self.items_admin().await;
        for (code, redeemable) in [("prize", true), ("badge", false)] {
            let template = items::ItemTemplate {
                code: code.into(),
                display_name: code.into(),
                kind: items::ItemKind::Product.into(),
                redeemable,
                ..Default::default()
            };
            items.define_template(items::DefineTemplateRequest { template: Some(template) }).await.expect("template");
        }
        let grant = items::GrantItemRequest {
            idempotency_key: uuid::Uuid::now_v7().to_string(),
            owner_user_id: OWNER,
            template_code: template.into(),
            ..Default::default()
        };
        let item = items.grant_item(grant).await.expect("grant").into_inner().item.expect("item");
        item.id
    }

    pub async fn item(&self, id: &str) -> items::ItemInstance {
        let request = items::GetItemRequest { item_instance_id: id.into() };
        self.items_admin().await.get_item(request).await.expect("get item").into_inner().item.expect("item")
    }

    /// Polls until the item reaches `status` (outbox deliveries are asynchronous).
    pub async fn wait_item(&self, id: &str, status: items::ItemStatus) -> items::ItemInstance {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let item = self.item(id).await;
            if item.status == status as i32 || tokio::time::Instant::now() > deadline {
                return item;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub fn key_of() -> String {
    uuid::Uuid::now_v7().to_string()
}

pub async fn create(client: &mut Client, item: &str) -> Result<pb::CreateOrderResponse, Status> {
    let request = pb::CreateOrderRequest { idempotency_key: key_of(), item_instance_id: item.into() };
    client.create_order(request).await.map(tonic::Response::into_inner)
}

pub async fn fulfill(client: &mut Client, code: &str) -> Result<pb::FulfillOrderResponse, Status> {
    let request = pb::FulfillOrderRequest { idempotency_key: key_of(), code: code.into() };
    client.fulfill_order(request).await.map(tonic::Response::into_inner)
}

pub fn reason(result: Result<impl std::fmt::Debug, Status>) -> String {
    let status = result.expect_err("should fail");
    economy_kit::error::reason(&status).unwrap_or_else(|| format!("{status:?}"))
}
