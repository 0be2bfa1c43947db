//! The whole stack behind the gateway (the testkit's stack), and admin / user clients
//! calling it.

use economy_kit::identity::roles;
use economy_proto::gateway::v1 as pb;
use economy_proto::items::v1 as items;
use economy_proto::ledger::v1 as ledger;
use economy_proto::market::v1 as market;
use economy_proto::redemption::v1 as redemption;
use economy_testkit::{Bearer, test_stack};
pub use economy_testkit::{Service, reason_of, with_new_key};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub const ADMIN: i64 = 1;
pub const USER: i64 = 2;

type Authed = InterceptedService<Channel, Bearer>;

economy_testkit::stack_type!(
    /// Every service behind the gateway.
    Stack
);

pub async fn spawn_stack() -> Stack {
    Stack(test_stack(&Service::ALL).configure(|config| config.limits.request_timeout_secs = 5).start().await)
}

impl Stack {
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

    /// The redemption service's database.
    pub fn redemption_db_url(&self) -> &str {
        &self.database(Service::Redemption).url
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
            ledger.define_asset(with_new_key(ledger::DefineAssetRequest { asset: Some(asset) })).await.expect("asset");
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
            ledger.adjust_balance(with_new_key(request)).await.expect("credit");
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
            .define_template(with_new_key(items::DefineTemplateRequest { template: Some(definition) }))
            .await
            .expect("template");
        let mut ids = Vec::new();
        for _ in 0..count {
            let grant =
                items::GrantItemRequest { owner_user_id: owner, template_code: template.into(), ..Default::default() };
            ids.push(items.grant_item(with_new_key(grant)).await.expect("grant").into_inner().item.expect("item").id);
        }
        ids
    }
}
