//! Trustworthy under faults, through the real gateway: a retry (the same body key under a
//! new gateway key) is answered from its key before the clock or the listing's state;
//! expiry applies from its instant, before the recovery worker runs; unknown enum numbers
//! and blank filters are refused; an escrow return whose dispatcher died is delivered
//! again within seconds.

use std::time::Duration;

use economy_kit::db::DbOptions;
use economy_kit::identity::{Caller, roles};
use economy_kit::outbox::LEASE_MS;
use economy_kit::time::{Clock, ManualClock, to_timestamp};
use economy_market::store::MarketStore;
use economy_proto::items::v1 as items;
use economy_proto::market::v1 as pb;
use sqlx::Row;

use crate::common::*;

/// Ten seconds of the market's clock, ms.
const SALE_MS: i64 = 10_000;

fn asset_listing(key: &str, amount: i64, expires_at: i64) -> pb::CreateListingRequest {
    pb::CreateListingRequest {
        idempotency_key: key.into(),
        offer: Some(pb::create_listing_request::Offer::Asset(pb::AssetOffer {
            asset_code: "red_shard".into(),
            amount,
        })),
        price: Some(pb::Price { asset_code: "DIAMOND".into(), amount: 50 }),
        expires_at: Some(to_timestamp(expires_at)),
        ..Default::default()
    }
}

async fn create(market: &mut Market, request: pb::CreateListingRequest) -> pb::Listing {
    market.create_listing(with_new_key(request)).await.expect("listed").into_inner().listing.expect("listing")
}

fn past_the_sale(clock: &ManualClock) {
    clock.advance(Duration::from_millis(u64::try_from(SALE_MS).expect("positive") + 1_000));
}

#[tokio::test]
async fn a_retried_create_is_answered_from_its_key_after_its_expiry_passed() {
    let (stack, clock) = spawn_manual(|config| config.recovery_interval_secs = 3600).await;
    stack.fund(&[(SELLER, "red_shard", 10)]).await;
    let mut seller = stack.market(SELLER).await;
    let request = asset_listing(&new_key(), 10, clock.now_millis() + SALE_MS);
    let first = seller.create_listing(with_new_key(request.clone())).await.expect("listed").into_inner();
    past_the_sale(&clock);

    // The same body key under a new gateway key: the market sees the same creation again.
    let retry = seller.create_listing(with_new_key(request.clone())).await.expect("answered from its key").into_inner();
    assert!(retry.replayed);
    assert_eq!(retry.listing, first.listing);
    assert_eq!(stack.balance(SELLER, "red_shard").await, (0, 10), "frozen once");

    // A first execution with that expiry is refused.
    let fresh = pb::CreateListingRequest { idempotency_key: new_key(), ..request };
    let refused = seller.create_listing(with_new_key(fresh)).await.expect_err("in the past");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert_eq!(economy_kit::error::reason(&refused).as_deref(), Some("VALIDATION_FAILED"));
    assert_eq!(economy_kit::error::violated_fields(&refused), ["expires_at"]);
}

#[tokio::test]
async fn purchases_past_expiry_are_refused_before_the_worker_runs_and_retries_are_not() {
    let (stack, clock) = spawn_manual(|config| config.recovery_interval_secs = 3600).await;
    stack.fund(&[(SELLER, "red_shard", 20), (BUYER, "DIAMOND", 500)]).await;
    let mut seller = stack.market(SELLER).await;
    let expires_at = clock.now_millis() + SALE_MS;
    let bought = create(&mut seller, asset_listing(&new_key(), 10, expires_at)).await;
    let unsold = create(&mut seller, asset_listing(&new_key(), 10, expires_at)).await;
    let mut buyer = stack.market(BUYER).await;
    let purchase = pb::PurchaseListingRequest { idempotency_key: new_key(), listing_id: bought.id.clone() };
    let first = buyer.purchase_listing(with_new_key(purchase.clone())).await.expect("bought").into_inner();
    past_the_sale(&clock);

    let refused = buy(&mut buyer, &unsold.id).await.expect_err("expired");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert_eq!(economy_kit::error::reason(&refused).as_deref(), Some("LISTING_EXPIRED"));
    assert_eq!(stack.listing(&unsold.id).await.status, pb::ListingStatus::OnSale as i32, "the worker has not run");
    assert_eq!(stack.balance(BUYER, "DIAMOND").await, (450, 0), "only the first purchase was paid");

    let retry = buyer.purchase_listing(with_new_key(purchase)).await.expect("answered from its key").into_inner();
    assert!(retry.replayed);
    assert_eq!(retry.trade, first.trade);
    assert_eq!(stack.balance(BUYER, "DIAMOND").await, (450, 0), "paid once");
    stack.assert_reconciled().await;
}

#[tokio::test]
async fn a_cancel_past_expiry_expires_the_listing_and_a_retry_answers_from_its_key() {
    let (stack, clock) = spawn_manual(|config| config.recovery_interval_secs = 3600).await;
    stack.fund(&[(SELLER, "red_shard", 20)]).await;
    let mut seller = stack.market(SELLER).await;
    let expires_at = clock.now_millis() + SALE_MS;
    let cancelled = create(&mut seller, asset_listing(&new_key(), 10, expires_at)).await;
    let expiring = create(&mut seller, asset_listing(&new_key(), 10, expires_at)).await;
    let cancel = pb::CancelListingRequest { idempotency_key: new_key(), listing_id: cancelled.id.clone() };
    let first = seller.cancel_listing(with_new_key(cancel.clone())).await.expect("cancelled").into_inner();
    past_the_sale(&clock);

    let retry = seller.cancel_listing(with_new_key(cancel)).await.expect("answered from its key").into_inner();
    assert!(retry.replayed);
    assert_eq!(retry.listing, first.listing);

    let late = pb::CancelListingRequest { idempotency_key: new_key(), listing_id: expiring.id.clone() };
    assert_eq!(reason(seller.cancel_listing(with_new_key(late)).await), "LISTING_EXPIRED");
    assert_eq!(stack.listing(&expiring.id).await.status, pb::ListingStatus::Expired as i32, "expired at once");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while stack.balance(SELLER, "red_shard").await != (20, 0) {
        assert!(tokio::time::Instant::now() < deadline, "the holds were never released");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stack.assert_reconciled().await;
}

#[tokio::test]
async fn an_item_listing_past_its_expiry_does_not_block_a_new_one() {
    let (stack, clock) = spawn_manual(|config| config.recovery_interval_secs = 3600).await;
    let item = stack.grant_item(SELLER).await;
    let mut seller = stack.market(SELLER).await;
    let offer = pb::ItemOffer { item_instance_id: item.clone(), template_code: String::new() };
    let request = pb::CreateListingRequest {
        offer: Some(pb::create_listing_request::Offer::Item(offer)),
        price: Some(pb::Price { asset_code: "DIAMOND".into(), amount: 100 }),
        expires_at: Some(to_timestamp(clock.now_millis() + SALE_MS)),
        ..Default::default()
    };
    let lapsed = create(&mut seller, request).await;
    past_the_sale(&clock);
    let listing = list_item(&mut seller, &item, 120).await.expect("the item is free again");
    assert_eq!(listing.status, pb::ListingStatus::OnSale as i32);
    assert_eq!(stack.listing(&lapsed.id).await.status, pb::ListingStatus::Expired as i32);
    assert_eq!(stack.item(&item).await.lock_holder, format!("market:listing:{}", listing.id));
}

#[tokio::test]
async fn unknown_sorts_and_blank_filters_are_refused() {
    let stack = spawn_stack().await;
    let mut direct = stack.direct_market(Caller::user(BUYER, roles::USER)).await;
    for (request, field) in [
        (pb::ListListingsRequest { sort: 9, ..Default::default() }, "sort"),
        (pb::ListListingsRequest { sort: -1, ..Default::default() }, "sort"),
        (pb::ListListingsRequest { asset_code: "   ".into(), ..Default::default() }, "asset_code"),
        (pb::ListListingsRequest { item_template_code: " ".into(), ..Default::default() }, "item_template_code"),
    ] {
        let refused = direct.list_listings(request).await.expect_err("invalid");
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        assert_eq!(economy_kit::error::reason(&refused).as_deref(), Some("VALIDATION_FAILED"));
        assert_eq!(economy_kit::error::violated_fields(&refused), [field]);
    }
    let known = pb::ListListingsRequest { sort: pb::ListingSort::PriceDescending.into(), ..Default::default() };
    direct.list_listings(known).await.expect("a known sort browses");
    let through_gateway = pb::ListListingsRequest { sort: 9, ..Default::default() };
    assert_eq!(reason(stack.market(BUYER).await.list_listings(through_gateway).await), "VALIDATION_FAILED");
}

#[tokio::test]
async fn an_escrow_return_whose_dispatcher_died_is_delivered_within_seconds() {
    let (mut stack, clock) = spawn_manual(|_| {}).await;
    let item = stack.grant_item(SELLER).await;
    let listing = list_item(&mut stack.market(SELLER).await, &item, 100).await.expect("listed");
    stack.stop_items().await;
    let cancel = pb::CancelListingRequest { listing_id: listing.id.clone(), ..Default::default() };
    stack.market(SELLER).await.cancel_listing(with_new_key(cancel)).await.expect("cancel commits without items");

    // A dispatcher claims the escrow return, then its process is killed mid-delivery.
    let store = MarketStore::open(stack.market_db_url(), &DbOptions::default()).await.expect("store");
    let row: String = sqlx::query("SELECT id FROM market_outbox WHERE listing_id = $1")
        .bind(&listing.id)
        .fetch_one(store.db().pool())
        .await
        .expect("outbox row")
        .get("id");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let dead_lease = loop {
        if let Some(lease) = store.claim_outbox(&row, clock.now_millis()).await.expect("claim") {
            break lease;
        }
        assert!(tokio::time::Instant::now() < deadline, "the row was never free to claim");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    stack.restart_items().await;
    // A few seconds later (past the short lease and the first backoff) the worker takes it.
    clock.advance(Duration::from_millis(u64::try_from(LEASE_MS).expect("positive") + 1_000));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while stack.item(&item).await.status != items::ItemStatus::Available as i32 {
        assert!(tokio::time::Instant::now() < deadline, "the escrow was never returned");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = || async {
        let found = sqlx::query("SELECT status FROM market_outbox WHERE id = $1")
            .bind(&row)
            .fetch_one(store.db().pool())
            .await
            .expect("outbox row");
        found.get::<String, _>("status")
    };
    while status().await != "delivered" {
        assert!(tokio::time::Instant::now() < deadline, "the row was never finished");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The dead dispatcher's lease is void: were it to wake up, it could not end the row.
    assert!(!store.finish_outbox(&dead_lease, false, "LATE", clock.now_millis()).await.expect("finish"));
    assert_eq!(status().await, "delivered");
}
