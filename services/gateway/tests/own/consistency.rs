//! CheckConsistency: a clean stack has no findings; each kind of cross-service
//! inconsistency, produced by deliberately corrupting state, is found and names its
//! entities.

use economy_kit::db::DbOptions;
use economy_kit::identity::roles;
use economy_proto::gateway::v1 as pb;
use economy_proto::items::v1 as items;
use economy_proto::ledger::v1 as ledger;
use economy_proto::market::v1 as market;
use economy_proto::redemption::v1 as redemption;
use economy_redemption::store::RedemptionStore;

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
