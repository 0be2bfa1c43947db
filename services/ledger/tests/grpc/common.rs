//! `spawn_app` (the ledger alone, from the testkit's stack) and small helpers shared by
//! the integration tests.

use economy_kit::identity::{Caller, IdentityKey, Signer, roles};
use economy_kit::time::Clock;
use economy_proto::ledger::v1 as pb;
use economy_testkit::{Service, TestDatabase, TestStack, TestStackBuilder, identity, test_stack};
pub use economy_testkit::{assert_error, new_key};
use pb::ledger_service_client::LedgerServiceClient;
use tonic::Status;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub const ADMIN: i64 = 1;

pub type Client = LedgerServiceClient<InterceptedService<Channel, Signer>>;

/// A running ledger with its own database.
pub struct TestApp {
    pub stack: TestStack,
    pub key: IdentityKey,
}

/// The app with the hold-expiry job running every second.
pub async fn spawn_app() -> TestApp {
    spawn_app_with_expiry_interval(1).await
}

/// The app with the hold-expiry job running every `interval_secs` (its first run is at
/// start, so a long period keeps it from expiring any hold created afterwards).
pub async fn spawn_app_with_expiry_interval(interval_secs: u64) -> TestApp {
    builder(interval_secs).start().await.into()
}

/// The app on a manual clock (tests move it instead of sleeping) with the hold-expiry job
/// running at start, then hourly: holds expire only by their instant.
pub async fn spawn_app_on_manual_clock() -> TestApp {
    builder(3600).manual_clock().start().await.into()
}

fn builder(interval_secs: u64) -> TestStackBuilder {
    test_stack(&[Service::Ledger]).configure(move |config| {
        config.ledger.hold_expiry_interval_secs = interval_secs;
        config.ledger.extra_system_accounts = vec!["SYSTEM_REWARDS".into()];
    })
}

impl From<TestStack> for TestApp {
    fn from(stack: TestStack) -> Self {
        TestApp { stack, key: identity() }
    }
}

impl TestApp {
    pub async fn channel(&self) -> Channel {
        self.stack.channel(Service::Ledger).await
    }

    /// The ledger's database.
    pub fn database(&self) -> &TestDatabase {
        self.stack.database(Service::Ledger)
    }

    pub async fn client(&self, caller: Caller) -> Client {
        LedgerServiceClient::with_interceptor(self.channel().await, self.key.signer(caller))
    }

    pub async fn admin(&self) -> Client {
        self.client(Caller::user(ADMIN, roles::ADMIN)).await
    }

    pub async fn user(&self, user_id: i64) -> Client {
        self.client(Caller::user(user_id, roles::USER)).await
    }

    pub async fn service(&self) -> Client {
        self.client(Caller::service("market")).await
    }

    /// An admin client with the usual catalog defined.
    pub async fn admin_with_catalog(&self) -> Client {
        let mut admin = self.admin().await;
        for (code, kind) in [
            ("POINTS", pb::AssetKind::Currency),
            ("DIAMOND", pb::AssetKind::Currency),
            ("red_shard", pb::AssetKind::Fragment),
            ("red_crystal", pb::AssetKind::Material),
        ] {
            define_asset(&mut admin, code, kind).await.expect("define asset");
        }
        admin
    }
}

pub async fn define_asset(
    client: &mut Client,
    code: &str,
    kind: pb::AssetKind,
) -> Result<pb::DefineAssetResponse, Status> {
    let asset =
        pb::Asset { code: code.into(), display_name: code.to_uppercase(), kind: kind.into(), ..Default::default() };
    client.define_asset(pb::DefineAssetRequest { asset: Some(asset) }).await.map(|response| response.into_inner())
}

pub fn user(id: i64) -> Option<pb::AccountRef> {
    Some(pb::AccountRef { account: Some(pb::account_ref::Account::UserId(id)) })
}

pub fn system(name: &str) -> Option<pb::AccountRef> {
    Some(pb::AccountRef { account: Some(pb::account_ref::Account::System(name.into())) })
}

pub fn posting(account: Option<pb::AccountRef>, asset: &str, amount: i64) -> pb::PostingInput {
    pb::PostingInput { account, asset_code: asset.into(), amount }
}

pub fn adjust_request(user_id: i64, asset: &str, amount: i64, key: &str) -> pb::AdjustBalanceRequest {
    let direction = if amount >= 0 { pb::AdjustDirection::Credit } else { pb::AdjustDirection::Debit };
    pb::AdjustBalanceRequest {
        idempotency_key: key.into(),
        user_id,
        asset_code: asset.into(),
        direction: direction.into(),
        amount: amount.abs(),
        reason: "test".into(),
    }
}

/// Credits (positive) or debits (negative) a user through AdjustBalance.
pub async fn adjust(
    client: &mut Client,
    user_id: i64,
    asset: &str,
    amount: i64,
) -> Result<pb::AdjustBalanceResponse, Status> {
    client
        .adjust_balance(adjust_request(user_id, asset, amount, &new_key()))
        .await
        .map(|response| response.into_inner())
}

/// `(available, frozen)` of a balance of any account.
pub async fn balance_of(client: &mut Client, account: Option<pb::AccountRef>, asset: &str) -> (i64, i64) {
    let request = pb::GetBalanceRequest { account, asset_code: asset.into(), as_of: None };
    let balance = client.get_balance(request).await.expect("balance").into_inner().balance.expect("balance");
    assert_eq!(balance.total, balance.available + balance.frozen);
    (balance.available, balance.frozen)
}

/// `(available, frozen)` of a user's balance.
pub async fn balance(client: &mut Client, user_id: i64, asset: &str) -> (i64, i64) {
    balance_of(client, user(user_id), asset).await
}

/// Asserts `Reconcile` finds nothing.
pub async fn assert_consistent(admin: &mut Client) {
    let report = admin.reconcile(pb::ReconcileRequest::default()).await.expect("reconcile").into_inner();
    assert!(report.findings.is_empty(), "{:?}", report.findings);
}

/// Sleeps until the wall clock is past `millis` (ms since the epoch; a couple of seconds
/// at most in these tests).
impl TestApp {
    /// The manual clock's "now", ms ([`spawn_app_on_manual_clock`]).
    pub fn now(&self) -> i64 {
        self.stack.clock().now_millis()
    }

    /// Moves the manual clock just past `millis` ([`spawn_app_on_manual_clock`]).
    pub fn pass(&self, millis: i64) {
        let by = u64::try_from((millis + 1 - self.now()).max(0)).unwrap_or(0);
        self.stack.clock().advance(std::time::Duration::from_millis(by));
    }
}
