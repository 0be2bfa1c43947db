//! `spawn_app` and helpers shared by the integration tests: Redemption and Items from the
//! testkit's stack, each with its own database, on one manual clock.

use std::sync::Arc;
use std::time::Duration;

use economy_kit::db::DbOptions;
use economy_kit::identity::{Caller, Signer, roles};
use economy_kit::time::ManualClock;
use economy_proto::items::v1 as items;
use economy_proto::redemption::v1 as pb;
use economy_redemption::RedemptionConfig;
use economy_redemption::domain::{Code, Order, OrderStatus};
use economy_redemption::store::{Insert, RedemptionStore};
use economy_testkit::{Service, TestStack, test_stack};
pub use economy_testkit::{new_key, reason};
use items::item_service_client::ItemServiceClient;
use pb::redemption_service_client::RedemptionServiceClient;
use sqlx::Row;
use tonic::Status;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub const OWNER: i64 = 2;
pub const STAFF: i64 = 50;
pub const ADMIN: i64 = 1;

pub type Client = RedemptionServiceClient<InterceptedService<Channel, Signer>>;
pub type Items = ItemServiceClient<InterceptedService<Channel, Signer>>;

/// Redemption + Items, each with its own database, on one manual clock (the tests move
/// it); Items' own expiry jobs wait an hour, so moving the clock expires nothing there
/// behind a test's back.
pub struct TestApp {
    pub stack: TestStack,
    pub clock: Arc<ManualClock>,
}

pub async fn spawn_app() -> TestApp {
    spawn_with(|_| {}).await
}

/// An expiry schedule no test reaches (February 29th; tests move the clock by weeks): the
/// expiry job stays idle, so expiry shows only by the clock.
pub const NEVER: &str = "0 0 29 2 *";

pub async fn spawn_with(configure: impl FnOnce(&mut RedemptionConfig)) -> TestApp {
    let stack = test_stack(&[Service::Items, Service::Redemption])
        .configure(|config| {
            config.limits.request_timeout_secs = 5;
            config.items.item_expiry_interval_secs = 3600;
            config.items.lock_expiry_interval_secs = 3600;
            config.redemption.outbox_interval_secs = 1;
            configure(&mut config.redemption);
        })
        .manual_clock()
        .start()
        .await;
    let clock = stack.clock();
    TestApp { stack, clock }
}

impl TestApp {
    pub async fn client(&self, caller: Caller) -> Client {
        RedemptionServiceClient::new(self.stack.signed(Service::Redemption, caller).await)
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
        ItemServiceClient::new(self.stack.signed(Service::Items, Caller::user(ADMIN, roles::ADMIN)).await)
    }

    /// The service's database.
    pub async fn store(&self) -> RedemptionStore {
        RedemptionStore::open(&self.stack.database(Service::Redemption).url, &DbOptions::default())
            .await
            .expect("store")
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
        self.stack.stop(Service::Items).await;
    }

    /// Starts Items again on the same address and database.
    pub async fn restart_items(&mut self) {
        self.stack.restart(Service::Items).await;
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
            idempotency_key: new_key(),
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

pub async fn create(client: &mut Client, item: &str) -> Result<pb::CreateOrderResponse, Status> {
    let request = pb::CreateOrderRequest { idempotency_key: new_key(), item_instance_id: item.into() };
    client.create_order(request).await.map(tonic::Response::into_inner)
}

pub async fn fulfill(client: &mut Client, code: &str) -> Result<pb::FulfillOrderResponse, Status> {
    let request = pb::FulfillOrderRequest { idempotency_key: new_key(), code: code.into() };
    client.fulfill_order(request).await.map(tonic::Response::into_inner)
}

/// What a crash right after storing the order (and maybe locking the item) leaves.
pub async fn crashed_creation(app: &TestApp, item: &str, create_key: &str, locked: bool) -> String {
    let now = economy_kit::time::Clock::now_millis(app.clock.as_ref());
    let order = Order {
        id: uuid::Uuid::now_v7().to_string(),
        item_instance_id: item.into(),
        owner_user_id: OWNER,
        status: OrderStatus::Locking,
        created_by: format!("user:{OWNER}"),
        created_at: now,
        expires_at: now + 1_000_000,
        code_issued_at: now,
        resolved_at: None,
        redeemer_user_id: None,
    };
    let inserted = app.store().await.insert_order(&order, &Code::generate().hash(), create_key).await.expect("insert");
    assert_eq!(inserted, Insert::Created);
    if locked {
        let lock = items::LockItemRequest {
            idempotency_key: format!("{}:lock", order.id),
            item_instance_id: item.into(),
            holder: format!("redemption:{}", order.id),
            ..Default::default()
        };
        app.items_admin().await.lock_item(lock).await.expect("lock");
    }
    order.id
}
