//! CheckConsistency: a clean stack has no findings; each kind of cross-service
//! inconsistency, produced by deliberately corrupting state, is found and names its
//! entities. Exchanges (offer purchases, bundles) run on a manual clock, moved past the
//! grace period instead of sleeping.

use economy_kit::db::DbOptions;
use economy_kit::identity::roles;
use economy_proto::gateway::v1 as pb;
use economy_proto::items::v1 as items;
use economy_proto::ledger::v1 as ledger;
use economy_proto::market::v1 as market;
use economy_proto::redemption::v1 as redemption;
use economy_redemption::store::RedemptionStore;
use economy_testkit::test_stack;

use crate::common::*;

async fn findings(stack: &Stack) -> Vec<pb::Finding> {
    let request = pb::CheckConsistencyRequest { grace_seconds: 1 };
    stack.operations(roles::ADMIN).await.check_consistency(request).await.expect("check").into_inner().findings
}

fn has(findings: &[pb::Finding], kind: &str, entity: (&str, &str)) -> bool {
    findings
        .iter()
        .any(|finding| finding.kind == kind && finding.entities.get(entity.0).map(String::as_str) == Some(entity.1))
}

async fn lock(stack: &Stack, item: &str, holder: &str) {
    let request = items::LockItemRequest { item_instance_id: item.into(), holder: holder.into(), ..Default::default() };
    stack.items().await.lock_item(with_new_key(request)).await.expect("lock");
}

#[tokio::test]
async fn a_consistent_stack_has_no_findings_and_the_check_is_admin_only() {
    let stack = spawn_stack().await;
    stack.fund(USER, &[("red_shard", 10)]).await;
    let ids = stack.grant(USER, "voucher", 2).await;
    let offer =
        market::create_listing_request::Offer::Asset(market::AssetOffer { asset_code: "red_shard".into(), amount: 5 });
    let listing = market::CreateListingRequest {
        offer: Some(offer),
        price: Some(market::Price { asset_code: "DIAMOND".into(), amount: 10 }),
        ..Default::default()
    };
    stack.market(USER).await.create_listing(with_new_key(listing)).await.expect("listed");
    let order = redemption::CreateOrderRequest { item_instance_id: ids[0].clone(), ..Default::default() };
    stack.redemption(USER).await.create_order(with_new_key(order)).await.expect("order");
    assert_eq!(findings(&stack).await, []);
    let mut staff = stack.operations(roles::MERCHANT_STAFF).await;
    let denied = staff.check_consistency(pb::CheckConsistencyRequest::default()).await.expect_err("admin only");
    assert_eq!(reason_of(&denied), "ROLE_TOO_LOW");
}

#[tokio::test]
async fn every_kind_of_inconsistency_is_found() {
    let stack = spawn_stack().await;
    stack.fund(USER, &[("red_shard", 10)]).await;
    let ids = stack.grant(USER, "voucher", 5).await;

    // Items locked by a listing and by an order that do not exist.
    let (ghost_listing, ghost_order) = (uuid::Uuid::now_v7().to_string(), uuid::Uuid::now_v7().to_string());
    lock(&stack, &ids[0], &format!("market:listing:{ghost_listing}")).await;
    lock(&stack, &ids[1], &format!("redemption:{ghost_order}")).await;

    // An asset listing whose hold an operator released, an item listing whose lock is gone.
    let mut seller = stack.market(USER).await;
    let asset =
        market::create_listing_request::Offer::Asset(market::AssetOffer { asset_code: "red_shard".into(), amount: 5 });
    let price = Some(market::Price { asset_code: "DIAMOND".into(), amount: 10 });
    let listed = seller.create_listing(with_new_key(market::CreateListingRequest {
        offer: Some(asset),
        price: price.clone(),
        ..Default::default()
    }));
    let asset_listing = listed.await.expect("listed").into_inner().listing.expect("listing");
    let release = ledger::ReleaseHoldRequest { hold_id: asset_listing.hold_id.clone(), ..Default::default() };
    stack.ledger().await.release_hold(with_new_key(release)).await.expect("release");
    let item = market::create_listing_request::Offer::Item(market::ItemOffer {
        item_instance_id: ids[2].clone(),
        ..Default::default()
    });
    let listed = seller.create_listing(with_new_key(market::CreateListingRequest {
        offer: Some(item),
        price,
        ..Default::default()
    }));
    let item_listing = listed.await.expect("listed").into_inner().listing.expect("listing");
    let holder = format!("market:listing:{}", item_listing.id);
    let unlock = items::UnlockItemRequest { item_instance_id: ids[2].clone(), holder, ..Default::default() };
    stack.items().await.unlock_item(with_new_key(unlock)).await.expect("unlock");

    // A "fulfilled" order whose item was never consumed, and a pending order long expired.
    let mut customer = stack.redemption(USER).await;
    let mut order_of = async |item: &str| {
        let request = redemption::CreateOrderRequest { item_instance_id: item.into(), ..Default::default() };
        customer.create_order(with_new_key(request)).await.expect("order").into_inner().order.expect("order").id
    };
    let (fulfilled, stale) = (order_of(&ids[3]).await, order_of(&ids[4]).await);
    let store = RedemptionStore::open(stack.redemption_db_url(), &DbOptions::default()).await.expect("store");
    for sql in [
        "UPDATE redemption_orders SET status = 'fulfilled', resolved_at = 1 WHERE order_id = $1",
        "UPDATE redemption_orders SET expires_at = 1 WHERE order_id = $2",
    ] {
        sqlx::query(sql).bind(&fulfilled).bind(&stale).execute(store.db().pool()).await.expect("corrupt");
    }

    let found = findings(&stack).await;
    assert!(has(&found, "ITEM_LOCKED_BY_CLOSED_LISTING", ("listing", &ghost_listing)), "{found:#?}");
    assert!(has(&found, "ITEM_LOCKED_BY_CLOSED_ORDER", ("order", &ghost_order)), "{found:#?}");
    assert!(has(&found, "ITEM_LOCKED_BY_CLOSED_ORDER", ("order", &fulfilled)), "{found:#?}");
    assert!(has(&found, "LISTING_HOLD_MISSING", ("listing", &asset_listing.id)), "{found:#?}");
    assert!(has(&found, "LISTING_LOCK_MISSING", ("listing", &item_listing.id)), "{found:#?}");
    assert!(has(&found, "FULFILLED_ITEM_NOT_USED", ("order", &fulfilled)), "{found:#?}");
    assert!(has(&found, "STALE_PENDING_ORDER", ("order", &stale)), "{found:#?}");
    assert_eq!(found.len(), 7, "{found:#?}");
}

#[tokio::test]
async fn outbox_rows_stuck_past_the_grace_period_are_found() {
    let stack = spawn_stack().await;
    let ids = stack.grant(USER, "voucher", 1).await;
    let mut customer = stack.redemption(USER).await;
    let request = redemption::CreateOrderRequest { item_instance_id: ids[0].clone(), ..Default::default() };
    let order =
        customer.create_order(with_new_key(request)).await.expect("order").into_inner().order.expect("order").id;
    let cancel = redemption::CancelOrderRequest { order_id: order.clone(), ..Default::default() };
    customer.cancel_order(with_new_key(cancel)).await.expect("cancel");
    // The unlock was delivered; make it look like a delivery that died long ago.
    let store = RedemptionStore::open(stack.redemption_db_url(), &DbOptions::default()).await.expect("store");
    sqlx::query("UPDATE redemption_outbox SET status = 'dead', created_at = 1 WHERE order_id = $1")
        .bind(&order)
        .execute(store.db().pool())
        .await
        .expect("corrupt");
    let found = findings(&stack).await;
    assert!(has(&found, "OUTBOX_STUCK", ("order", &order)), "{found:#?}");
    assert!(has(&found, "OUTBOX_STUCK", ("service", "redemption")), "{found:#?}");
}

/// The grace period of [`findings`], and how far [`pass_grace`] moves the clock.
const GRACE: std::time::Duration = std::time::Duration::from_secs(1);

async fn spawn_on_manual_clock() -> Stack {
    let builder = test_stack(&Service::ALL).configure(|config| config.limits.request_timeout_secs = 5);
    Stack(builder.manual_clock().start().await)
}

/// Moves every server's clock past the grace period: what exists now is old enough to be
/// a finding. The market's recovery worker resumes exchanges only after 30 s.
fn pass_grace(stack: &Stack) {
    stack.clock().advance(GRACE * 2);
}

fn amounts(amounts: &[(&str, i64)]) -> Vec<market::AssetAmount> {
    amounts.iter().map(|(asset, amount)| market::AssetAmount { asset_code: (*asset).into(), amount: *amount }).collect()
}

/// One red_shard and one voucher.
fn reward() -> market::Reward {
    let voucher = market::ItemReward { template_code: "voucher".into(), quantity: 1, ..Default::default() };
    market::Reward { assets: amounts(&[("red_shard", 1)]), items: vec![voucher] }
}

/// DIAMOND and red_shard (USER holds 100 DIAMOND), the voucher template, and the offers
/// `pack` (10 DIAMOND) and `hoard` (10 DIAMOND and 1000 red_shard, more than USER has).
async fn open_shop(stack: &Stack) {
    stack.fund(USER, &[("DIAMOND", 100)]).await;
    stack.grant(USER, "voucher", 0).await;
    let mut admin = market::market_service_client::MarketServiceClient::new(stack.authed(ADMIN, roles::ADMIN).await);
    for (id, price) in [("pack", vec![("DIAMOND", 10)]), ("hoard", vec![("DIAMOND", 10), ("red_shard", 1000)])] {
        let offer = market::DefineOfferRequest {
            offer_id: id.into(),
            display_name: id.into(),
            price: amounts(&price),
            reward: Some(reward()),
            ..Default::default()
        };
        admin.define_offer(with_new_key(offer)).await.expect("offer defined");
    }
}

async fn purchase(stack: &Stack, offer: &str) -> Result<market::Exchange, tonic::Status> {
    let request = market::PurchaseOfferRequest { offer_id: offer.into(), quantity: 1, ..Default::default() };
    let response = stack.market(USER).await.purchase_offer(with_new_key(request)).await?;
    Ok(response.into_inner().exchange.expect("exchange"))
}

/// Every hold of an exchange, any status.
async fn exchange_holds(stack: &Stack) -> Vec<ledger::Hold> {
    let request = ledger::ListHoldsRequest { reference_prefix: "market:exchange:".into(), ..Default::default() };
    stack.ledger().await.list_holds(request).await.expect("holds").into_inner().holds
}

/// Freezes 5 DIAMOND of USER under `reference`, as an operator could.
async fn hold_with_reference(stack: &Stack, reference: &str) -> ledger::Hold {
    let request = ledger::CreateHoldRequest {
        account: Some(ledger::AccountRef { account: Some(ledger::account_ref::Account::UserId(USER)) }),
        asset_code: "DIAMOND".into(),
        amount: 5,
        reference: reference.into(),
        ..Default::default()
    };
    stack.ledger().await.create_hold(with_new_key(request)).await.expect("hold").into_inner().hold.expect("hold")
}

#[tokio::test]
async fn finished_exchanges_leave_no_findings() {
    let stack = spawn_on_manual_clock().await;
    open_shop(&stack).await;
    for _ in 0..2 {
        let exchange = purchase(&stack, "pack").await.expect("bought");
        assert_eq!(exchange.status(), market::ExchangeStatus::Completed);
    }
    purchase(&stack, "hoard").await.expect_err("USER has too little red_shard");
    let bundle = market::GrantBundleRequest { user_id: USER, reward: Some(reward()), ..Default::default() };
    let mut admin = market::market_service_client::MarketServiceClient::new(stack.authed(ADMIN, roles::ADMIN).await);
    admin.grant_bundle(with_new_key(bundle)).await.expect("bundle granted");
    let exchanges = stack.market(USER).await.list_exchanges(market::ListExchangesRequest::default()).await;
    let statuses: Vec<_> = exchanges.expect("exchanges").into_inner().exchanges.iter().map(|e| e.status()).collect();
    assert_eq!(statuses.iter().filter(|status| **status == market::ExchangeStatus::Completed).count(), 3);
    assert!(statuses.contains(&market::ExchangeStatus::Failed), "{statuses:?}");
    // The purchases held their prices under their exchanges; every hold is resolved.
    let holds = exchange_holds(&stack).await;
    assert!(holds.len() >= 2, "{holds:#?}");
    assert!(holds.iter().all(|hold| hold.status() != ledger::HoldStatus::Open), "{holds:#?}");

    pass_grace(&stack);
    assert_eq!(findings(&stack).await, []);
}

#[tokio::test]
async fn an_exchange_stuck_mid_saga_is_found_after_the_grace_period() {
    let mut stack = spawn_on_manual_clock().await;
    open_shop(&stack).await;
    stack.stop(Service::Items).await;
    purchase(&stack, "pack").await.expect_err("the items service is down");
    stack.restart(Service::Items).await;
    let exchanges = stack.market(USER).await.list_exchanges(market::ListExchangesRequest::default()).await;
    let exchange = exchanges.expect("exchanges").into_inner().exchanges.remove(0);
    assert_eq!(exchange.status(), market::ExchangeStatus::Paid);
    assert_eq!(findings(&stack).await, [], "younger than the grace period");

    pass_grace(&stack);
    let found = findings(&stack).await;
    assert!(has(&found, "EXCHANGE_STUCK", ("exchange", &exchange.id)), "{found:#?}");
    assert!(has(&found, "EXCHANGE_STUCK", ("user", &USER.to_string())), "{found:#?}");
    assert!(found[0].description.contains("Paid"), "{found:#?}");
    // Its payment hold is open, but the exchange will settle or release it.
    assert_eq!(found.len(), 1, "{found:#?}");
}

#[tokio::test]
async fn open_holds_of_missing_or_finished_exchanges_are_found() {
    let stack = spawn_on_manual_clock().await;
    open_shop(&stack).await;
    let completed = purchase(&stack, "pack").await.expect("bought");
    let unknown = uuid::Uuid::now_v7().to_string();
    let of_unknown = hold_with_reference(&stack, &format!("market:exchange:{unknown}")).await;
    let of_completed = hold_with_reference(&stack, &format!("market:exchange:{}", completed.id)).await;
    let malformed = hold_with_reference(&stack, "market:exchange:not-an-id").await;
    let elsewhere = hold_with_reference(&stack, "market:exchanges").await;
    pass_grace(&stack);
    let young = hold_with_reference(&stack, &format!("market:exchange:{}", uuid::Uuid::now_v7())).await;

    let found = findings(&stack).await;
    assert!(has(&found, "EXCHANGE_HOLD_ORPHANED", ("hold", &of_unknown.id)), "{found:#?}");
    assert!(has(&found, "EXCHANGE_HOLD_ORPHANED", ("exchange", &unknown)), "{found:#?}");
    assert!(has(&found, "EXCHANGE_HOLD_ORPHANED", ("hold", &of_completed.id)), "{found:#?}");
    assert!(has(&found, "EXCHANGE_HOLD_ORPHANED", ("hold", &malformed.id)), "{found:#?}");
    assert!(has(&found, "EXCHANGE_HOLD_ORPHANED", ("user", &USER.to_string())), "{found:#?}");
    for hold in [&elsewhere, &young] {
        assert!(!has(&found, "EXCHANGE_HOLD_ORPHANED", ("hold", &hold.id)), "{found:#?}");
    }
    assert_eq!(found.len(), 3, "{found:#?}");
}

#[tokio::test]
async fn items_locked_longer_than_their_age_are_found_with_the_item_counts() {
    let stack = spawn_on_manual_clock().await;
    let ids = stack.grant(USER, "voucher", 2).await;
    lock(&stack, &ids[0], "support:case-7").await;
    pass_grace(&stack);
    let request = pb::CheckConsistencyRequest { grace_seconds: 1 };
    let mut admin = stack.operations(roles::ADMIN).await;
    let report = admin.check_consistency(request).await.expect("check").into_inner();
    assert_eq!(report.findings, []);
    let locked = report.item_statuses.iter().find(|count| count.status() == items::ItemStatus::Locked);
    assert_eq!(locked.map(|count| (count.template_code.as_str(), count.count)), Some(("voucher", 1)));

    // items.stale_lock_after_days defaults to 30.
    stack.clock().advance(std::time::Duration::from_secs(30 * 86_400));
    let found = findings(&stack).await;
    let stale: Vec<_> = found.iter().filter(|finding| finding.kind == "ITEM_LOCKED_TOO_LONG").collect();
    assert_eq!(stale.len(), 1, "{found:#?}");
    assert!(
        has(&found, "ITEM_LOCKED_TOO_LONG", ("item", &ids[0]))
            && has(&found, "ITEM_LOCKED_TOO_LONG", ("holder", "support:case-7"))
    );
}
