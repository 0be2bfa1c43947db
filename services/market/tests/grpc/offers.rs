//! The shop's offers and reward bundles through the gateway (docs/market.md, "Offers",
//! "Exchanges"): exact balances and items after multi-asset prices and multi-reward
//! offers, refusals that leave nothing behind, stock and limits under races, retries,
//! an undo after a grant, and bundles.

use economy_kit::identity::{Caller, roles};
use economy_kit::time::Clock;
use economy_proto::gateway::v1 as gateway;
use economy_proto::items::v1 as items;
use economy_proto::ledger::v1 as ledger;
use economy_proto::market::v1 as pb;
use economy_testkit::{assert_error, error_info, keyed};
use tonic::Code;

use crate::common::*;

const SHOP: &str = "SYSTEM_SHOP_REVENUE";

fn amount(asset: &str, amount: i64) -> pb::AssetAmount {
    pb::AssetAmount { asset_code: asset.into(), amount }
}

fn system(name: &str) -> ledger::AccountRef {
    ledger::AccountRef { account: Some(ledger::account_ref::Account::System(name.into())) }
}

/// POINTS beside the common assets, and the `voucher` template.
async fn open_shop(stack: &Stack, credits: &[(i64, &str, i64)]) {
    stack.fund(&[]).await;
    let mut ledger = stack.admin_ledger().await;
    let points = ledger::Asset {
        code: "POINTS".into(),
        display_name: "Points".into(),
        kind: ledger::AssetKind::Currency.into(),
        ..Default::default()
    };
    ledger.define_asset(with_new_key(ledger::DefineAssetRequest { asset: Some(points) })).await.expect("POINTS");
    stack.fund(credits).await;
    let template = items::ItemTemplate {
        code: "voucher".into(),
        display_name: "Voucher".into(),
        kind: items::ItemKind::Voucher.into(),
        ..Default::default()
    };
    let define = items::DefineTemplateRequest { template: Some(template) };
    stack.admin_items().await.define_template(with_new_key(define)).await.expect("template");
}

/// 200 POINTS + 5 red_shard for 10 DIAMOND and two vouchers valid for a day.
fn bundle_offer(id: &str) -> pb::DefineOfferRequest {
    let voucher = pb::ItemReward {
        template_code: "voucher".into(),
        quantity: 2,
        metadata: [("face_value".to_owned(), "10".to_owned())].into(),
        valid_for_seconds: 86_400,
    };
    pb::DefineOfferRequest {
        offer_id: id.into(),
        display_name: "Voucher pack".into(),
        price: vec![amount("POINTS", 200), amount("red_shard", 5)],
        reward: Some(pb::Reward { assets: vec![amount("DIAMOND", 10)], items: vec![voucher] }),
        ..Default::default()
    }
}

/// 100 POINTS for one voucher, with `stock` and `limit`.
fn voucher_offer(id: &str, stock: Option<i64>, limit: Option<pb::PurchaseLimit>) -> pb::DefineOfferRequest {
    pb::DefineOfferRequest {
        offer_id: id.into(),
        display_name: "Voucher".into(),
        price: vec![amount("POINTS", 100)],
        reward: Some(pb::Reward {
            assets: vec![],
            items: vec![pb::ItemReward { template_code: "voucher".into(), ..Default::default() }],
        }),
        stock,
        limit,
        ..Default::default()
    }
}

async fn define(stack: &Stack, request: pb::DefineOfferRequest) -> pb::DefineOfferResponse {
    stack.admin_market().await.define_offer(with_new_key(request)).await.expect("define").into_inner()
}

async fn purchase(stack: &Stack, user: i64, offer: &str, quantity: i64) -> Result<pb::Exchange, tonic::Status> {
    let request = pb::PurchaseOfferRequest { offer_id: offer.into(), quantity, ..Default::default() };
    let response = stack.market(user).await.purchase_offer(with_new_key(request)).await?;
    Ok(response.into_inner().exchange.expect("exchange"))
}

async fn offer(stack: &Stack, id: &str) -> pb::Offer {
    let request = pb::GetOfferRequest { offer_id: id.into() };
    stack.market(BUYER).await.get_offer(request).await.expect("offer").into_inner().offer.expect("offer")
}

async fn exchanges(stack: &Stack, user: i64) -> Vec<pb::Exchange> {
    let request = pb::ListExchangesRequest { user_id: user, ..Default::default() };
    stack.admin_market().await.list_exchanges(request).await.expect("exchanges").into_inner().exchanges
}

async fn items_of(stack: &Stack, owner: i64) -> Vec<items::ItemInstance> {
    let request = items::ListItemsRequest { owner_user_id: owner, page_size: 500, ..Default::default() };
    stack.admin_items().await.list_items(request).await.expect("items").into_inner().items
}

#[tokio::test]
async fn a_purchase_pays_a_two_asset_price_and_grants_every_reward() {
    let stack = spawn_stack().await;
    open_shop(&stack, &[(BUYER, "POINTS", 1_000), (BUYER, "red_shard", 20)]).await;
    let defined = define(&stack, bundle_offer("pack")).await;
    assert!(defined.created && defined.changed);

    let exchange = purchase(&stack, BUYER, "pack", 2).await.expect("purchase");
    assert_eq!(exchange.status(), pb::ExchangeStatus::Completed);
    assert_eq!(exchange.paid, [amount("POINTS", 400), amount("red_shard", 10)]);
    assert_eq!(exchange.granted_assets, [amount("DIAMOND", 20)]);
    assert_eq!(exchange.granted_items.len(), 4);
    let correlation = format!("market:exchange:{}", exchange.id);
    assert_eq!((exchange.business_type.as_str(), &exchange.correlation_id), ("SHOP_EXCHANGE", &correlation));
    // Every entry of the purchase (two holds, the closing entry) shares its correlation id.
    let by_correlation = ledger::ListTransactionsRequest { correlation_id: correlation, ..Default::default() };
    let entries = stack.admin_ledger().await.list_transactions(by_correlation).await.expect("entries").into_inner();
    let mut ids: Vec<_> = entries.transactions.iter().map(|entry| entry.id.clone()).collect();
    ids.sort();
    let mut expected = exchange.ledger_transaction_ids.clone();
    expected.sort();
    assert_eq!(ids, expected);
    assert_eq!(ids.len(), 3);

    assert_eq!(stack.balance(BUYER, "POINTS").await, (600, 0));
    assert_eq!(stack.balance(BUYER, "red_shard").await, (10, 0));
    assert_eq!(stack.balance(BUYER, "DIAMOND").await, (20, 0));
    assert_eq!(stack.account_balance(system(SHOP), "POINTS").await, (400, 0));
    assert_eq!(stack.account_balance(system(SHOP), "red_shard").await, (10, 0));
    let granted: Vec<_> = exchange.granted_items.iter().map(|item| item.item_instance_id.clone()).collect();
    for item in items_of(&stack, BUYER).await {
        assert!(granted.contains(&item.id), "{} was not granted by the exchange", item.id);
        assert_eq!(item.metadata.get("face_value").map(String::as_str), Some("10"));
        let millis = |at: Option<&prost_types::Timestamp>| at.and_then(economy_kit::time::from_timestamp);
        let created_at = millis(exchange.created_at.as_ref()).expect("created");
        assert_eq!(millis(item.expires_at.as_ref()), Some(created_at + 86_400_000), "valid for a day");
    }
    assert_eq!(items_of(&stack, BUYER).await.len(), 4);
    assert_eq!(offer(&stack, "pack").await.sold, 2);
    let resulting: Vec<_> = exchange
        .resulting_balances
        .iter()
        .map(|balance| (balance.asset_code.as_str(), balance.available, balance.frozen, balance.total))
        .collect();
    assert_eq!(resulting, [("DIAMOND", 20, 0, 20), ("POINTS", 600, 0, 600), ("red_shard", 10, 0, 10)]);
    stack.assert_reconciled().await;

    // The backpack shows them at once.
    let mut backpack =
        gateway::backpack_service_client::BackpackServiceClient::new(stack.authed(BUYER, roles::USER).await);
    let backpack = backpack.get_backpack(gateway::GetBackpackRequest::default()).await.expect("backpack").into_inner();
    assert_eq!(backpack.items.len(), 4);
    let diamonds = backpack.assets.iter().find(|asset| asset.asset_code == "DIAMOND").expect("DIAMOND");
    assert_eq!(diamonds.available, 20);
}

/// The value of `name{outcome="…"}` in this process's recorder (installed by the first
/// call; 0 before any).
fn counted(name: &str, outcome: &str) -> f64 {
    let series = format!("{name}{{outcome=\"{outcome}\"}} ");
    let rendered = economy_kit::metrics::recorder().expect("recorder").render();
    rendered.lines().find_map(|line| line.strip_prefix(&series)?.trim().parse().ok()).unwrap_or(0.0)
}

#[tokio::test]
async fn a_refused_payment_charges_nothing_and_keeps_nothing() {
    let purchases = |outcome| counted("economy_market_offer_purchases_total", outcome);
    let before = [purchases("failed"), purchases("completed")];
    let stack = spawn_stack().await;
    open_shop(&stack, &[(BUYER, "POINTS", 1_000), (BUYER, "red_shard", 4)]).await;
    define(&stack, bundle_offer("pack")).await;

    let key = new_key();
    let request = pb::PurchaseOfferRequest { offer_id: "pack".into(), quantity: 1, ..Default::default() };
    let failed = stack.market(BUYER).await.purchase_offer(keyed(request.clone(), &key)).await;
    let status = assert_error(failed, Code::FailedPrecondition, "INSUFFICIENT_BALANCE");
    assert_eq!(error_info(&status).get("asset_code").map(String::as_str), Some("red_shard"));

    assert_eq!(stack.balance(BUYER, "POINTS").await, (1_000, 0), "the POINTS hold was released");
    assert_eq!(stack.balance(BUYER, "red_shard").await, (4, 0));
    assert!(items_of(&stack, BUYER).await.is_empty());
    assert_eq!(offer(&stack, "pack").await.sold, 0, "the reservation was returned");
    let history = exchanges(&stack, BUYER).await;
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].status(), pb::ExchangeStatus::Failed);
    assert_eq!(history[0].failure_reason, "INSUFFICIENT_BALANCE");

    // The same key answers the same; a new one buys once funded.
    let again = stack.market(BUYER).await.purchase_offer(keyed(request, &key)).await;
    assert_error(again, Code::FailedPrecondition, "INSUFFICIENT_BALANCE");
    stack.fund(&[(BUYER, "red_shard", 1)]).await;
    purchase(&stack, BUYER, "pack", 1).await.expect("funded now");
    assert_eq!(stack.balance(BUYER, "red_shard").await, (0, 0));
    stack.assert_reconciled().await;
    // Counted (other tests of this process may add theirs): one failed, one completed.
    let after = [purchases("failed"), purchases("completed")];
    assert!(after.iter().zip(before).all(|(after, before)| after - before >= 1.0), "{before:?} -> {after:?}");
}

#[tokio::test]
async fn a_hundred_buyers_of_ten_in_stock_make_ten_exchanges() {
    let stack = spawn_stack().await;
    let buyers: Vec<i64> = (100..200).collect();
    let credits: Vec<_> = buyers.iter().map(|buyer| (*buyer, "POINTS", 100)).collect();
    open_shop(&stack, &credits).await;
    define(&stack, voucher_offer("ten", Some(10), None)).await;

    let attempts = buyers.iter().map(|buyer| {
        let stack = &stack;
        async move { (*buyer, purchase(stack, *buyer, "ten", 1).await) }
    });
    let outcomes = futures_util::future::join_all(attempts).await;
    let winners: Vec<i64> = outcomes.iter().filter(|(_, outcome)| outcome.is_ok()).map(|(buyer, _)| *buyer).collect();
    assert_eq!(winners.len(), 10);
    for (buyer, outcome) in outcomes {
        match outcome {
            Ok(_) => assert_eq!(stack.balance(buyer, "POINTS").await, (0, 0)),
            Err(status) => {
                assert_eq!(economy_testkit::reason_of(&status), "OFFER_SOLD_OUT", "{status:?}");
                assert_eq!(stack.balance(buyer, "POINTS").await, (100, 0), "a loser is charged nothing");
            }
        }
    }
    let ten = offer(&stack, "ten").await;
    assert_eq!((ten.sold, ten.remaining), (10, Some(0)));
    assert_eq!(stack.account_balance(system(SHOP), "POINTS").await, (1_000, 0));
    stack.assert_reconciled().await;
}

#[tokio::test]
async fn one_users_racing_purchases_respect_the_total_limit() {
    let stack = spawn_stack().await;
    open_shop(&stack, &[(BUYER, "POINTS", 10_000)]).await;
    let once = pb::PurchaseLimit { total: 1, ..Default::default() };
    define(&stack, voucher_offer("once", None, Some(once))).await;

    let attempts = (0..20).map(|_| purchase(&stack, BUYER, "once", 1));
    let outcomes = futures_util::future::join_all(attempts).await;
    let won = outcomes.iter().filter(|outcome| outcome.is_ok()).count();
    assert_eq!(won, 1, "{outcomes:?}");
    for outcome in outcomes.into_iter().filter(Result::is_err) {
        let status = outcome.expect_err("refused");
        assert_eq!(economy_testkit::reason_of(&status), "PURCHASE_LIMIT_REACHED");
    }
    assert_eq!(stack.balance(BUYER, "POINTS").await, (9_900, 0));
    assert_eq!(items_of(&stack, BUYER).await.len(), 1);
}

#[tokio::test]
async fn the_rolling_window_limit_frees_units_as_time_passes() {
    let (stack, clock) = spawn_manual(|_| {}).await;
    open_shop(&stack, &[(BUYER, "POINTS", 10_000)]).await;
    let daily = pb::PurchaseLimit { total: 0, per_window: 2, window_seconds: 86_400 };
    define(&stack, voucher_offer("daily", None, Some(daily))).await;

    purchase(&stack, BUYER, "daily", 2).await.expect("two today");
    let third = purchase(&stack, BUYER, "daily", 1).await;
    let status = assert_error(third, Code::FailedPrecondition, "PURCHASE_LIMIT_REACHED");
    assert_eq!(error_info(&status).get("limit").map(String::as_str), Some("window"));
    let other = purchase(&stack, OTHER_BUYER, "daily", 1).await;
    assert_error(other, Code::FailedPrecondition, "INSUFFICIENT_BALANCE");

    clock.advance(std::time::Duration::from_secs(86_400));
    purchase(&stack, BUYER, "daily", 2).await.expect("a day later");
}

const OTHER_BUYER: i64 = 4;

#[tokio::test]
async fn a_retry_with_the_key_is_answered_from_its_exchange() {
    let stack = spawn_stack().await;
    open_shop(&stack, &[(BUYER, "POINTS", 1_000)]).await;
    define(&stack, voucher_offer("voucher", Some(5), None)).await;

    let key = new_key();
    let request = pb::PurchaseOfferRequest { offer_id: "voucher".into(), quantity: 2, ..Default::default() };
    let first = stack.market(BUYER).await.purchase_offer(keyed(request.clone(), &key)).await.expect("first");
    let again = stack.market(BUYER).await.purchase_offer(keyed(request.clone(), &key)).await.expect("replay");
    assert_eq!(economy_testkit::meta(again.metadata(), "idempotent-replayed").as_deref(), Some("true"));
    assert_eq!(first.get_ref().exchange, again.get_ref().exchange);

    // Past the gateway: the service's own key makes it a replay, even with the offer sold
    // out and disabled since.
    let direct_key = new_key();
    let mut direct = stack.direct_market(Caller::user(BUYER, roles::USER)).await;
    let own = pb::PurchaseOfferRequest { idempotency_key: direct_key.clone(), ..request.clone() };
    let bought = direct.purchase_offer(own.clone()).await.expect("direct").into_inner();
    let disable = pb::DisableOfferRequest { offer_id: "voucher".into() };
    stack.admin_market().await.disable_offer(with_new_key(disable)).await.expect("disable");
    let replay = direct.purchase_offer(own.clone()).await.expect("replay").into_inner();
    assert!(replay.replayed && replay.exchange == bought.exchange);
    let other = pb::PurchaseOfferRequest { quantity: 1, ..own };
    assert_error(direct.purchase_offer(other).await, Code::AlreadyExists, "IDEMPOTENCY_KEY_REUSED");

    assert_eq!(stack.balance(BUYER, "POINTS").await, (600, 0));
    assert_eq!(exchanges(&stack, BUYER).await.len(), 2);
    assert_eq!(offer(&stack, "voucher").await.sold, 4);
}

#[tokio::test]
async fn offers_are_defined_as_puts_and_refused_when_inactive() {
    let (stack, clock) = spawn_manual(|_| {}).await;
    open_shop(&stack, &[(BUYER, "POINTS", 1_000)]).await;
    let now = clock.now_millis();
    let mut request = voucher_offer("season", None, None);
    request.ends_at = Some(economy_kit::time::to_timestamp(now + 60_000));
    assert!(define(&stack, request.clone()).await.created);
    let repeated = define(&stack, request.clone()).await;
    assert!(!repeated.created && !repeated.changed && repeated.offer.map(|offer| offer.version) == Some(1));
    request.display_name = "Season voucher".into();
    assert_eq!(define(&stack, request.clone()).await.offer.map(|offer| offer.version), Some(2));

    let user = stack.market(BUYER).await.define_offer(with_new_key(request.clone())).await;
    assert_error(user, Code::PermissionDenied, "ROLE_TOO_LOW");
    let mut direct = stack.direct_market(Caller::user(BUYER, roles::USER)).await;
    assert_error(direct.define_offer(request.clone()).await, Code::PermissionDenied, "PERMISSION_DENIED");
    let mut unknown = voucher_offer("unknown", None, None);
    unknown.price = vec![amount("GOLD", 1)];
    let refused = stack.admin_market().await.define_offer(with_new_key(unknown.clone())).await;
    assert_error(refused, Code::NotFound, "ASSET_NOT_FOUND");
    unknown.price = vec![amount("POINTS", 1)];
    unknown.reward = voucher_offer("unknown", None, None).reward.map(|mut reward| {
        reward.items[0].template_code = "shield".into();
        reward
    });
    let refused = stack.admin_market().await.define_offer(with_new_key(unknown)).await;
    assert_error(refused, Code::NotFound, "TEMPLATE_NOT_FOUND");
    assert_error(purchase(&stack, BUYER, "nothing", 1).await, Code::NotFound, "OFFER_NOT_FOUND");

    let listed = |all: bool| {
        let stack = &stack;
        async move {
            let filter = if all { pb::OfferFilter::All } else { pb::OfferFilter::Active };
            let request = pb::ListOffersRequest { filter: filter.into(), ..Default::default() };
            let offers = stack.market(BUYER).await.list_offers(request).await.expect("list").into_inner().offers;
            offers.into_iter().map(|offer| offer.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(listed(false).await, ["season"]);
    clock.advance(std::time::Duration::from_secs(60));
    assert_error(purchase(&stack, BUYER, "season", 1).await, Code::FailedPrecondition, "OFFER_NOT_ACTIVE");
    assert!(listed(false).await.is_empty());
    assert_eq!(listed(true).await, ["season"]);

    request.ends_at = None;
    define(&stack, request).await;
    purchase(&stack, BUYER, "season", 1).await.expect("open again");
    let disable = pb::DisableOfferRequest { offer_id: "season".into() };
    let disabled = stack.admin_market().await.disable_offer(with_new_key(disable)).await.expect("disable");
    assert_eq!(disabled.into_inner().offer.map(|offer| offer.enabled), Some(false));
    assert_error(purchase(&stack, BUYER, "season", 1).await, Code::FailedPrecondition, "OFFER_NOT_ACTIVE");
    assert_eq!(offer(&stack, "season").await.sold, 1);
}

#[tokio::test]
async fn a_bundle_pays_out_once_with_its_business_type_and_correlation() {
    let stack = spawn_stack().await;
    open_shop(&stack, &[]).await;
    let reward = pb::Reward {
        assets: vec![amount("DIAMOND", 50), amount("POINTS", 5)],
        items: vec![pb::ItemReward { template_code: "voucher".into(), quantity: 3, ..Default::default() }],
    };
    let request = pb::GrantBundleRequest {
        user_id: BUYER,
        reward: Some(reward),
        business_type: "LOTTERY_REWARD".into(),
        correlation_id: "draw-2026-12-07-1".into(),
        ..Default::default()
    };
    let key = new_key();
    let granted = stack.admin_market().await.grant_bundle(keyed(request.clone(), &key)).await.expect("grant");
    let exchange = granted.into_inner().exchange.expect("exchange");
    assert_eq!(exchange.kind(), pb::ExchangeKind::Bundle);
    assert_eq!(exchange.status(), pb::ExchangeStatus::Completed);
    assert_eq!(stack.balance(BUYER, "DIAMOND").await, (50, 0));
    assert_eq!(stack.balance(BUYER, "POINTS").await, (5, 0));
    assert_eq!(items_of(&stack, BUYER).await.len(), 3);
    let totals: Vec<_> =
        exchange.resulting_balances.iter().map(|balance| (balance.asset_code.as_str(), balance.total)).collect();
    assert_eq!(totals, [("DIAMOND", 50), ("POINTS", 5)]);

    let transaction = exchange.ledger_transaction_ids.last().expect("the payout entry").clone();
    let request_tx = ledger::GetTransactionRequest { id: transaction };
    let entry = stack.admin_ledger().await.get_transaction(request_tx).await.expect("entry").into_inner();
    let entry = entry.transaction.expect("entry");
    assert_eq!((entry.business_type.as_str(), entry.correlation_id.as_str()), ("LOTTERY_REWARD", "draw-2026-12-07-1"));

    let by_correlation =
        items::ListItemEventsRequest { correlation_id: "draw-2026-12-07-1".into(), ..Default::default() };
    let events = stack.admin_items().await.list_item_events(by_correlation).await.expect("events").into_inner();
    let granted: Vec<_> = events.events.iter().map(|event| (event.r#type(), event.business_type.as_str())).collect();
    assert_eq!(granted, [(items::ItemEventType::Granted, "LOTTERY_REWARD"); 3]);

    let again = stack.admin_market().await.grant_bundle(keyed(request.clone(), &key)).await.expect("replay");
    assert_eq!(again.into_inner().exchange.expect("exchange").id, exchange.id);
    let mut direct = stack.direct_market(Caller::service("lottery")).await;
    let own = pb::GrantBundleRequest { idempotency_key: new_key(), ..request.clone() };
    direct.grant_bundle(own.clone()).await.expect("a service grants");
    assert!(direct.grant_bundle(own).await.expect("replay").into_inner().replayed);
    assert_eq!(stack.balance(BUYER, "DIAMOND").await, (100, 0), "one payout per key");

    let user = stack.market(BUYER).await.grant_bundle(with_new_key(request.clone())).await;
    assert_error(user, Code::PermissionDenied, "ROLE_TOO_LOW");
    let mut direct = stack.direct_market(Caller::user(BUYER, roles::USER)).await;
    let own = pb::GrantBundleRequest { idempotency_key: new_key(), ..request };
    assert_error(direct.grant_bundle(own).await, Code::PermissionDenied, "PERMISSION_DENIED");
    stack.assert_reconciled().await;
}

#[tokio::test]
async fn an_exchange_interrupted_by_an_items_outage_is_resumed_or_undone() {
    let mut stack = spawn_stack().await;
    open_shop(&stack, &[(BUYER, "POINTS", 1_000), (BUYER, "red_shard", 20)]).await;
    define(&stack, bundle_offer("pack")).await;

    // Items down: the price is held, nothing granted yet; the recovery worker finishes it.
    stack.stop_items().await;
    let interrupted = purchase(&stack, BUYER, "pack", 1).await;
    assert_error(interrupted, Code::Unavailable, "UPSTREAM_UNAVAILABLE");
    assert_eq!(stack.balance(BUYER, "POINTS").await, (800, 200));
    stack.restart_items().await;
    economy_testkit::eventually("the worker completes the exchange", || async {
        exchanges(&stack, BUYER).await[0].status() == pb::ExchangeStatus::Completed
    })
    .await;
    assert_eq!(stack.balance(BUYER, "POINTS").await, (800, 0));
    assert_eq!(items_of(&stack, BUYER).await.len(), 2);

    // Items down again, and the held price released behind the market's back: once the
    // items are granted, the closing entry is refused, so the exchange is undone.
    stack.stop_items().await;
    let key = new_key();
    let request = pb::PurchaseOfferRequest { offer_id: "pack".into(), quantity: 1, ..Default::default() };
    let interrupted = stack.market(BUYER).await.purchase_offer(keyed(request.clone(), &key)).await;
    assert_error(interrupted, Code::Unavailable, "UPSTREAM_UNAVAILABLE");
    let paid = exchanges(&stack, BUYER).await.remove(0);
    assert_eq!(paid.status(), pb::ExchangeStatus::Paid);
    let release = ledger::ForceReleaseHoldRequest {
        hold_id: paid.payment_hold_ids[0].clone(),
        reason: "test: released by an operator".into(),
        idempotency_key: String::new(),
    };
    stack.admin_ledger().await.force_release_hold(with_new_key(release)).await.expect("force release");
    stack.restart_items().await;
    let retried = stack.market(BUYER).await.purchase_offer(keyed(request, &key)).await;
    let status = retried.expect_err("undone");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let undone = exchanges(&stack, BUYER).await.remove(0);
    assert_eq!(undone.status(), pb::ExchangeStatus::Failed);
    assert_eq!(undone.granted_items.len(), 2, "granted, then revoked");
    for item in &undone.granted_items {
        assert_eq!(stack.item(&item.item_instance_id).await.status(), items::ItemStatus::Revoked);
    }
    assert_eq!(stack.balance(BUYER, "POINTS").await, (800, 0), "nothing charged");
    assert_eq!(stack.balance(BUYER, "red_shard").await, (15, 0));
    assert_eq!(offer(&stack, "pack").await.sold, 1, "the undone unit went back to stock");
    stack.assert_reconciled().await;
}

#[tokio::test]
async fn concurrent_requests_with_one_key_share_one_exchange_even_at_the_limit() {
    let stack = spawn_stack().await;
    open_shop(&stack, &[(BUYER, "POINTS", 1_000)]).await;
    let once = pb::PurchaseLimit { total: 1, ..Default::default() };
    define(&stack, voucher_offer("once", Some(1), Some(once))).await;

    // Past the gateway (which would answer REQUEST_PROCESSING): the service's own key.
    // While one request runs the exchange the others are told to retry; none is refused
    // for the units its own key reserved.
    let request = pb::PurchaseOfferRequest { idempotency_key: new_key(), offer_id: "once".into(), quantity: 1 };
    let mut direct = stack.direct_market(Caller::user(BUYER, roles::USER)).await;
    let calls = (0..8).map(|_| {
        let (mut direct, request) = (direct.clone(), request.clone());
        async move { direct.purchase_offer(request).await.map(|response| response.into_inner().exchange) }
    });
    let mut ids = Vec::new();
    for answer in futures_util::future::join_all(calls).await {
        match answer {
            Ok(exchange) => ids.push(exchange.expect("exchange").id),
            Err(status) => assert_eq!(economy_testkit::reason_of(&status), "EXCHANGE_IN_PROGRESS", "{status:?}"),
        }
    }
    let retried = direct.purchase_offer(request).await.expect("answered from its exchange").into_inner();
    ids.push(retried.exchange.expect("exchange").id);
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert_eq!(stack.balance(BUYER, "POINTS").await, (900, 0));
    assert_eq!(offer(&stack, "once").await.sold, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purchases_whose_clients_give_up_still_finish_and_leave_the_market_writable() {
    let stack = spawn_stack().await;
    open_shop(&stack, &[(BUYER, "POINTS", 1_000_000)]).await;
    define(&stack, voucher_offer("voucher", None, None)).await;

    // Past the gateway: each client gives up (its call cancelled) after 0.2 to 4 ms,
    // wherever the saga is.
    let direct = stack.signed(economy_testkit::Service::Market, Caller::user(BUYER, roles::USER)).await;
    for attempt in 0..150_u64 {
        let mut client = pb::market_service_client::MarketServiceClient::new(direct.clone());
        let request = pb::PurchaseOfferRequest { idempotency_key: new_key(), offer_id: "voucher".into(), quantity: 1 };
        let give_up = std::time::Duration::from_micros(200 + (attempt * 37) % 4_000);
        let _ = tokio::time::timeout(give_up, client.purchase_offer(request)).await;
    }
    for _ in 0..5 {
        purchase(&stack, BUYER, "voucher", 1).await.expect("the market still writes");
    }
    let all = || async {
        let request = pb::ListExchangesRequest { user_id: BUYER, page_size: 500, ..Default::default() };
        stack.admin_market().await.list_exchanges(request).await.expect("list").into_inner().exchanges
    };
    economy_testkit::eventually("every exchange finishes", || async {
        all().await.iter().all(|exchange| exchange.status() == pb::ExchangeStatus::Completed)
    })
    .await;
    let listed = all().await.len();
    let units = i64::try_from(listed).expect("count");
    assert_eq!(stack.balance(BUYER, "POINTS").await, (1_000_000 - 100 * units, 0));
    assert_eq!(items_of(&stack, BUYER).await.len(), listed);
    assert_eq!(offer(&stack, "voucher").await.sold, units);
    stack.assert_reconciled().await;
}
