//! The stack (gateway, ledger, items, market) from the testkit, and clients that call the
//! gateway with a bearer token and an idempotency key per write.

use std::sync::Arc;
use std::time::Duration;

use economy_kit::identity::{Caller, Signer, roles};
use economy_kit::time::ManualClock;
use economy_market::MarketConfig;
use economy_proto::items::v1 as items;
use economy_proto::ledger::v1 as ledger;
use economy_proto::market::v1 as pb;
use economy_testkit::{Bearer, test_stack};
pub use economy_testkit::{Service, keyed, new_key, reason, with_new_key};
use items::item_service_client::ItemServiceClient;
use ledger::ledger_service_client::LedgerServiceClient;
use tonic::Status;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub const ADMIN: i64 = 1;
pub const SELLER: i64 = 2;
pub const BUYER: i64 = 3;

pub type Market = pb::market_service_client::MarketServiceClient<InterceptedService<Channel, Bearer>>;
pub type Ledger = LedgerServiceClient<InterceptedService<Channel, Bearer>>;
pub type DirectMarket = pb::market_service_client::MarketServiceClient<InterceptedService<Channel, Signer>>;
pub type Items = ItemServiceClient<InterceptedService<Channel, Bearer>>;

economy_testkit::stack_type!(
    /// Everything the market needs (redemption is not started: the gateway answers
    /// UNAVAILABLE for it), the market's jobs every second.
    Stack
);

pub async fn spawn_stack() -> Stack {
    spawn_with(|_| {}).await
}

pub async fn spawn_with(configure: impl FnOnce(&mut MarketConfig)) -> Stack {
    Stack(builder(configure).start().await)
}

/// The stack on one manual clock: tests move time without sleeping.
pub async fn spawn_manual(configure: impl FnOnce(&mut MarketConfig)) -> (Stack, Arc<ManualClock>) {
    let stack = builder(configure).manual_clock().start().await;
    let clock = stack.clock();
    (Stack(stack), clock)
}

fn builder(configure: impl FnOnce(&mut MarketConfig)) -> economy_testkit::TestStackBuilder {
    test_stack(&[Service::Ledger, Service::Items, Service::Market, Service::Gateway]).configure(|config| {
        config.limits.request_timeout_secs = 5;
        config.market.recovery_interval_secs = 1;
        config.market.stale_after_secs = 1;
        config.gateway.rate_limit_per_second = 10_000;
        config.gateway.rate_limit_burst = 10_000;
        configure(&mut config.market);
    })
}

impl Stack {
    pub async fn market(&self, user_id: i64) -> Market {
        pb::market_service_client::MarketServiceClient::new(self.authed(user_id, roles::USER).await)
    }

    /// The market through the gateway, as the admin.
    pub async fn admin_market(&self) -> Market {
        pb::market_service_client::MarketServiceClient::new(self.authed(ADMIN, roles::ADMIN).await)
    }

    /// The market service itself, bypassing the gateway, signed as `caller`.
    pub async fn direct_market(&self, caller: Caller) -> DirectMarket {
        pb::market_service_client::MarketServiceClient::new(self.signed(Service::Market, caller).await)
    }

    pub async fn admin_ledger(&self) -> Ledger {
        LedgerServiceClient::new(self.authed(ADMIN, roles::ADMIN).await)
    }

    pub async fn admin_items(&self) -> Items {
        ItemServiceClient::new(self.authed(ADMIN, roles::ADMIN).await)
    }

    /// The market's own database.
    pub fn market_db_url(&self) -> &str {
        &self.database(Service::Market).url
    }

    pub async fn stop_items(&mut self) {
        self.0.stop(Service::Items).await;
    }

    pub async fn restart_items(&mut self) {
        self.0.restart(Service::Items).await;
    }

    /// Defines DIAMOND and red_shard and credits `credits` (user, asset, amount).
    pub async fn fund(&self, credits: &[(i64, &str, i64)]) {
        let mut ledger = self.admin_ledger().await;
        for (code, kind) in [("DIAMOND", ledger::AssetKind::Currency), ("red_shard", ledger::AssetKind::Fragment)] {
            let asset =
                ledger::Asset { code: code.into(), display_name: code.into(), kind: kind.into(), ..Default::default() };
            ledger.define_asset(with_new_key(ledger::DefineAssetRequest { asset: Some(asset) })).await.expect("asset");
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
            ledger.adjust_balance(with_new_key(request)).await.expect("credit");
        }
    }

    /// `(available, frozen)` of a user's asset.
    pub async fn balance(&self, user_id: i64, asset: &str) -> (i64, i64) {
        self.account_balance(ledger::AccountRef { account: Some(ledger::account_ref::Account::UserId(user_id)) }, asset)
            .await
    }

    pub async fn account_balance(&self, account: ledger::AccountRef, asset: &str) -> (i64, i64) {
        let request = ledger::GetBalanceRequest { account: Some(account), asset_code: asset.into(), as_of: None };
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
        let report = self.admin_ledger().await.reconcile(ledger::ReconcileRequest::default()).await.expect("reconcile");
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
            .define_template(with_new_key(items::DefineTemplateRequest { template: Some(template) }))
            .await
            .expect("template");
        let grant =
            items::GrantItemRequest { owner_user_id: owner, template_code: "sword".into(), ..Default::default() };
        items.grant_item(with_new_key(grant)).await.expect("grant").into_inner().item.expect("item").id
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

pub async fn list_asset(market: &mut Market, amount: i64, price: i64) -> Result<pb::Listing, Status> {
    let request = pb::CreateListingRequest {
        offer: Some(pb::create_listing_request::Offer::Asset(pb::AssetOffer {
            asset_code: "red_shard".into(),
            amount,
        })),
        price: Some(pb::Price { asset_code: "DIAMOND".into(), amount: price }),
        ..Default::default()
    };
    market.create_listing(with_new_key(request)).await.map(|response| response.into_inner().listing.expect("listing"))
}

pub async fn list_item(market: &mut Market, item: &str, price: i64) -> Result<pb::Listing, Status> {
    let offer = pb::ItemOffer { item_instance_id: item.into(), template_code: String::new() };
    let request = pb::CreateListingRequest {
        offer: Some(pb::create_listing_request::Offer::Item(offer)),
        price: Some(pb::Price { asset_code: "DIAMOND".into(), amount: price }),
        ..Default::default()
    };
    market.create_listing(with_new_key(request)).await.map(|response| response.into_inner().listing.expect("listing"))
}

pub async fn buy(market: &mut Market, listing: &str) -> Result<pb::PurchaseListingResponse, Status> {
    let request = pb::PurchaseListingRequest { listing_id: listing.into(), ..Default::default() };
    market.purchase_listing(with_new_key(request)).await.map(tonic::Response::into_inner)
}
