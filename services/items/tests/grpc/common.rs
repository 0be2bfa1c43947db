//! `spawn_app` (the items service alone, from the testkit's stack) and small helpers
//! shared by the integration tests.

use economy_items::store::ItemStore;
use economy_kit::identity::{Caller, IdentityKey, Signer, roles};
use std::sync::Arc;

use economy_kit::time::{ManualClock, to_timestamp};
use economy_proto::items::v1 as pb;
use economy_testkit::{Service, TestStack, identity, test_stack};
pub use economy_testkit::{assert_error, new_key};
use pb::item_service_client::ItemServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Status};

pub const ADMIN: i64 = 1;
pub const MARKET: &str = "market:listing:1";
pub const REDEMPTION: &str = "redemption:order-1";

pub type Client = ItemServiceClient<InterceptedService<Channel, Signer>>;

/// A running items service with its own database, on a manual clock (tests move it
/// instead of sleeping).
pub struct TestApp {
    pub stack: TestStack,
    pub key: IdentityKey,
    pub clock: Arc<ManualClock>,
}

/// The app with jobs that effectively never tick on their own (tests drive them).
pub async fn spawn_app() -> TestApp {
    spawn_app_with_intervals(3600).await
}

pub async fn spawn_app_with_intervals(interval_secs: u64) -> TestApp {
    let stack = test_stack(&[Service::Items])
        .configure(|config| {
            config.items.item_expiry_interval_secs = interval_secs;
            config.items.lock_expiry_interval_secs = interval_secs;
        })
        .manual_clock()
        .start()
        .await;
    let clock = stack.clock();
    TestApp { stack, key: identity(), clock }
}

impl TestApp {
    pub async fn channel(&self) -> Channel {
        self.stack.channel(Service::Items).await
    }

    pub async fn client(&self, caller: Caller) -> Client {
        ItemServiceClient::with_interceptor(self.channel().await, self.key.signer(caller))
    }

    pub async fn admin(&self) -> Client {
        self.client(Caller::user(ADMIN, roles::ADMIN)).await
    }

    pub async fn user(&self, user_id: i64) -> Client {
        self.client(Caller::user(user_id, roles::USER)).await
    }

    pub async fn service(&self, name: &str) -> Client {
        self.client(Caller::service(name)).await
    }

    /// A second handle on the service's database (what another replica's jobs use).
    pub async fn store(&self) -> ItemStore {
        ItemStore::open(&self.stack.database(Service::Items).url, &Default::default()).await.expect("store")
    }

    /// An admin client with the usual catalog: `voucher` (30 days, redeemable),
    /// `potion` (consumable, never expires), `sword` (never expires).
    pub async fn admin_with_catalog(&self) -> Client {
        let mut admin = self.admin().await;
        define(&mut admin, template("voucher", pb::ItemKind::Voucher, 30 * 86_400, false)).await.unwrap();
        define(&mut admin, template("potion", pb::ItemKind::Other, 0, true)).await.unwrap();
        define(&mut admin, template("sword", pb::ItemKind::Equipment, 0, false)).await.unwrap();
        admin
    }
}

pub fn template(code: &str, kind: pb::ItemKind, validity_secs: i64, consumable: bool) -> pb::ItemTemplate {
    pb::ItemTemplate {
        code: code.into(),
        display_name: code.to_uppercase(),
        kind: kind.into(),
        default_validity_seconds: validity_secs,
        redeemable: kind == pb::ItemKind::Voucher,
        consumable,
        ..Default::default()
    }
}

pub async fn define(client: &mut Client, template: pb::ItemTemplate) -> Result<pb::DefineTemplateResponse, Status> {
    client.define_template(pb::DefineTemplateRequest { template: Some(template) }).await.map(|r| r.into_inner())
}

pub fn grant_request(owner: i64, template: &str) -> pb::GrantItemRequest {
    pb::GrantItemRequest {
        idempotency_key: new_key(),
        owner_user_id: owner,
        template_code: template.into(),
        ..Default::default()
    }
}

/// Grants one instance of `template` to `owner`.
pub async fn grant(client: &mut Client, owner: i64, template: &str) -> pb::ItemInstance {
    client.grant_item(grant_request(owner, template)).await.unwrap().into_inner().item.unwrap()
}

/// Grants one instance expiring at `expires_at` (ms since the epoch).
pub async fn grant_expiring(client: &mut Client, owner: i64, template: &str, expires_at: i64) -> pb::ItemInstance {
    let request = pb::GrantItemRequest { expires_at: Some(to_timestamp(expires_at)), ..grant_request(owner, template) };
    client.grant_item(request).await.unwrap().into_inner().item.unwrap()
}

pub fn lock_request(item: &str, holder: &str) -> pb::LockItemRequest {
    pb::LockItemRequest {
        idempotency_key: new_key(),
        item_instance_id: item.into(),
        holder: holder.into(),
        ..Default::default()
    }
}

pub fn unlock_request(item: &str, holder: &str) -> pb::UnlockItemRequest {
    pb::UnlockItemRequest {
        idempotency_key: new_key(),
        item_instance_id: item.into(),
        holder: holder.into(),
        ..Default::default()
    }
}

pub fn transfer_request(item: &str, holder: &str, to: i64) -> pb::TransferItemRequest {
    pb::TransferItemRequest {
        idempotency_key: new_key(),
        item_instance_id: item.into(),
        holder: holder.into(),
        to_owner_user_id: to,
        ..Default::default()
    }
}

pub fn consume_request(item: &str, holder: &str) -> pb::ConsumeItemRequest {
    pb::ConsumeItemRequest {
        idempotency_key: new_key(),
        item_instance_id: item.into(),
        holder: holder.into(),
        ..Default::default()
    }
}

pub fn revoke_request(item: &str) -> pb::RevokeItemRequest {
    pb::RevokeItemRequest {
        idempotency_key: new_key(),
        item_instance_id: item.into(),
        reason: "fraud".into(),
        ..Default::default()
    }
}

/// Locks `item` for `holder`.
pub async fn lock(client: &mut Client, item: &str, holder: &str) -> pb::ItemInstance {
    client.lock_item(lock_request(item, holder)).await.unwrap().into_inner().item.unwrap()
}

/// The current state of an instance.
pub async fn get(client: &mut Client, item: &str) -> pb::ItemInstance {
    let request = pb::GetItemRequest { item_instance_id: item.into() };
    client.get_item(request).await.unwrap().into_inner().item.unwrap()
}

/// Every event of an instance, oldest first.
pub async fn events(client: &mut Client, item: &str) -> Vec<pb::ItemEvent> {
    let request = pb::ListItemEventsRequest { item_instance_id: item.into(), page_size: 500, ..Default::default() };
    client.list_item_events(request).await.unwrap().into_inner().events
}

/// Event types of an instance, oldest first.
pub async fn event_types(client: &mut Client, item: &str) -> Vec<pb::ItemEventType> {
    events(client, item).await.iter().map(|event| event.r#type()).collect()
}

/// Asserts a FAILED_PRECONDITION with `reason`.
#[track_caller]
pub fn refused<T: std::fmt::Debug>(result: Result<T, Status>, reason: &str) {
    assert_error(result, Code::FailedPrecondition, reason);
}
