//! Asset listings end to end: one ledger transaction per purchase, exact balances.

use economy_proto::market::v1 as pb;

use crate::common::*;

/// The value of `name{outcome="…"}` in this process's recorder (installed by the first
/// call; 0 before any).
fn counted(name: &str, outcome: &str) -> f64 {
    let series = format!("{name}{{outcome=\"{outcome}\"}} ");
    let rendered = economy_kit::metrics::recorder().expect("recorder").render();
    rendered.lines().find_map(|line| line.strip_prefix(&series)?.trim().parse().ok()).unwrap_or(0.0)
}

#[tokio::test]
async fn an_asset_listing_sells_in_one_transaction_with_the_fee_rounded_down() {
    let completed_before = counted("economy_market_trades_total", "completed");
    let stack = spawn_stack().await;
    stack.fund(&[(SELLER, "red_shard", 100), (BUYER, "DIAMOND", 1_000)]).await;
    let mut seller = stack.market(SELLER).await;
    let listing = list_asset(&mut seller, 40, 139).await.expect("listed");
    assert_eq!(listing.status, pb::ListingStatus::OnSale as i32);
    assert!(!listing.hold_id.is_empty());
    assert_eq!(stack.balance(SELLER, "red_shard").await, (60, 40));

    let bought = buy(&mut stack.market(BUYER).await, &listing.id).await.expect("bought");
    let trade = bought.trade.expect("trade");
    // fee = floor(139 * 500 / 10000) = floor(6.95) = 6
    assert_eq!((trade.price.as_ref().expect("price").amount, trade.fee, trade.seller_net), (139, 6, 133));
    assert_eq!(trade.status, pb::TradeStatus::Completed as i32);
    // Counted (other tests of this process may add theirs).
    assert!(counted("economy_market_trades_total", "completed") - completed_before >= 1.0);
    assert_eq!(trade.ledger_transaction_ids.len(), 1, "one ledger transaction holds every leg");
    assert_eq!(bought.listing.expect("listing").status, pb::ListingStatus::Sold as i32);
    assert_eq!(stack.balance(BUYER, "DIAMOND").await, (861, 0));
    assert_eq!(stack.balance(BUYER, "red_shard").await, (40, 0));
    assert_eq!(stack.balance(SELLER, "DIAMOND").await, (133, 0));
    assert_eq!(stack.balance(SELLER, "red_shard").await, (60, 0));
    assert_eq!(stack.fee_balance().await, 6);
    stack.assert_reconciled().await;
    let balance = trade.buyer_balance.as_ref().expect("the buyer's resulting balance");
    assert_eq!(
        (balance.asset_code.as_str(), balance.available, balance.frozen, balance.total),
        ("DIAMOND", 861, 0, 861)
    );

    // Lists leave the resulting balance out.
    let trades = stack.market(SELLER).await.list_trades(pb::ListTradesRequest::default()).await.expect("trades");
    assert_eq!(trades.into_inner().trades, vec![pb::Trade { buyer_balance: None, ..trade }]);
}

#[tokio::test]
async fn refusals_leave_the_listing_on_sale_and_balances_untouched() {
    let stack = spawn_stack().await;
    stack.fund(&[(SELLER, "red_shard", 10), (BUYER, "DIAMOND", 50)]).await;
    let mut seller = stack.market(SELLER).await;
    assert_eq!(reason(list_asset(&mut seller, 11, 100).await), "INSUFFICIENT_BALANCE");
    let listing = list_asset(&mut seller, 10, 100).await.expect("listed");
    assert_eq!(reason(buy(&mut seller, &listing.id).await), "OWN_LISTING");

    let mut buyer = stack.market(BUYER).await;
    let request = pb::PurchaseListingRequest { listing_id: listing.id.clone(), ..Default::default() };
    let key = new_key();
    let first = buyer.purchase_listing(keyed(request.clone(), &key)).await;
    let status = first.expect_err("insufficient");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert_eq!(economy_kit::error::reason(&status).as_deref(), Some("INSUFFICIENT_BALANCE"));
    assert_eq!(stack.listing(&listing.id).await.status, pb::ListingStatus::OnSale as i32);
    assert_eq!(stack.balance(BUYER, "DIAMOND").await, (50, 0));
    assert_eq!(stack.balance(SELLER, "red_shard").await, (0, 10));
    // The refusal is replayed for the same key, even once the buyer could pay.
    stack.fund(&[(BUYER, "DIAMOND", 100)]).await;
    let replay = buyer.purchase_listing(keyed(request, &key)).await.expect_err("replayed refusal");
    assert_eq!(replay.metadata().get("idempotent-replayed").map(|value| value.to_str().ok()), Some(Some("true")));
    buy(&mut buyer, &listing.id).await.expect("a new key buys");
    stack.assert_reconciled().await;
}

#[tokio::test]
async fn retries_of_every_write_change_nothing_twice() {
    let stack = spawn_stack().await;
    stack.fund(&[(SELLER, "red_shard", 100), (BUYER, "DIAMOND", 1_000)]).await;
    let mut seller = stack.market(SELLER).await;
    let create = pb::CreateListingRequest {
        offer: Some(pb::create_listing_request::Offer::Asset(pb::AssetOffer {
            asset_code: "red_shard".into(),
            amount: 10,
        })),
        price: Some(pb::Price { asset_code: "DIAMOND".into(), amount: 100 }),
        ..Default::default()
    };
    let key = new_key();
    let first = seller.create_listing(keyed(create.clone(), &key)).await.expect("created").into_inner();
    let again = seller.create_listing(keyed(create, &key)).await.expect("replayed").into_inner();
    assert_eq!(first, again);
    assert_eq!(stack.balance(SELLER, "red_shard").await, (90, 10), "frozen once");

    let listing = first.listing.expect("listing").id;
    let mut buyer = stack.market(BUYER).await;
    let purchase = pb::PurchaseListingRequest { listing_id: listing.clone(), ..Default::default() };
    let key = new_key();
    let bought = buyer.purchase_listing(keyed(purchase.clone(), &key)).await.expect("bought").into_inner();
    let replayed = buyer.purchase_listing(keyed(purchase, &key)).await.expect("replay").into_inner();
    assert_eq!(bought, replayed);
    assert_eq!(stack.balance(BUYER, "DIAMOND").await, (900, 0), "paid once");

    let second = list_asset(&mut seller, 5, 50).await.expect("listed");
    let cancel = pb::CancelListingRequest { listing_id: second.id.clone(), ..Default::default() };
    let key = new_key();
    seller.cancel_listing(keyed(cancel.clone(), &key)).await.expect("cancelled");
    seller.cancel_listing(keyed(cancel.clone(), &key)).await.expect("replayed");
    assert_eq!(reason(seller.cancel_listing(with_new_key(cancel)).await), "LISTING_NOT_ON_SALE");
    assert_eq!(stack.balance(SELLER, "red_shard").await, (90, 0), "10 sold; the cancelled 5 released once");
    stack.assert_reconciled().await;
}

#[tokio::test]
async fn browsing_sorts_filters_and_pages() {
    let stack = spawn_stack().await;
    stack.fund(&[(SELLER, "red_shard", 100)]).await;
    let mut seller = stack.market(SELLER).await;
    let mut ids = Vec::new();
    for price in [300, 100, 200] {
        ids.push(list_asset(&mut seller, 1, price).await.expect("listed").id);
    }
    let page = |sort: pb::ListingSort, token: &str| pb::ListListingsRequest {
        asset_code: "red_shard".into(),
        sort: sort.into(),
        page_size: 2,
        page_token: token.into(),
        ..Default::default()
    };
    let mut buyer = stack.market(BUYER).await;
    let cheapest = buyer.list_listings(page(pb::ListingSort::PriceAscending, "")).await.expect("page").into_inner();
    let prices: Vec<i64> =
        cheapest.listings.iter().map(|listing| listing.price.as_ref().map_or(0, |p| p.amount)).collect();
    assert_eq!(prices, [100, 200]);
    let rest = buyer
        .list_listings(page(pb::ListingSort::PriceAscending, &cheapest.next_page_token))
        .await
        .expect("page 2")
        .into_inner();
    assert_eq!(rest.listings.iter().map(|listing| listing.id.clone()).collect::<Vec<_>>(), [ids[0].clone()]);
    assert!(rest.next_page_token.is_empty());
    let newest = buyer.list_listings(page(pb::ListingSort::Newest, "")).await.expect("newest").into_inner();
    assert_eq!(newest.listings[0].id, ids[2]);
    let none = pb::ListListingsRequest { asset_code: "DIAMOND".into(), ..Default::default() };
    assert!(buyer.list_listings(none).await.expect("empty").into_inner().listings.is_empty());
}

#[tokio::test]
async fn an_expired_listing_returns_its_hold_and_cannot_be_bought() {
    let stack = spawn_stack().await;
    stack.fund(&[(SELLER, "red_shard", 10), (BUYER, "DIAMOND", 100)]).await;
    let expires_at = economy_kit::time::to_timestamp(economy_kit::time::now_millis() + 1_500);
    let request = pb::CreateListingRequest {
        offer: Some(pb::create_listing_request::Offer::Asset(pb::AssetOffer {
            asset_code: "red_shard".into(),
            amount: 10,
        })),
        price: Some(pb::Price { asset_code: "DIAMOND".into(), amount: 50 }),
        expires_at: Some(expires_at),
        ..Default::default()
    };
    let listing = stack.market(SELLER).await.create_listing(with_new_key(request)).await.expect("listed").into_inner();
    let listing = listing.listing.expect("listing");
    assert_eq!(stack.balance(SELLER, "red_shard").await, (0, 10));
    let expired = stack.wait_listing(&listing.id, pb::ListingStatus::Expired).await;
    assert_eq!(expired.status, pb::ListingStatus::Expired as i32, "the recovery worker expires it");
    assert_eq!(reason(buy(&mut stack.market(BUYER).await, &listing.id).await), "LISTING_EXPIRED");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while stack.balance(SELLER, "red_shard").await != (10, 0) {
        assert!(tokio::time::Instant::now() < deadline, "the hold was never released");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(stack.balance(BUYER, "DIAMOND").await, (100, 0));
    stack.assert_reconciled().await;
}

#[tokio::test]
async fn a_retried_creation_of_a_failed_listing_is_refused() {
    let stack = spawn_stack().await;
    stack.fund(&[(SELLER, "red_shard", 10)]).await;
    let mut seller = stack.market(SELLER).await;
    // The body's key reaches the market on both calls (the gateway would replay its own
    // stored refusal for a repeated Idempotency-Key).
    let request = pb::CreateListingRequest {
        idempotency_key: new_key(),
        offer: Some(pb::create_listing_request::Offer::Asset(pb::AssetOffer {
            asset_code: "red_shard".into(),
            amount: 11,
        })),
        price: Some(pb::Price { asset_code: "DIAMOND".into(), amount: 100 }),
        ..Default::default()
    };
    assert_eq!(reason(seller.create_listing(with_new_key(request.clone())).await), "INSUFFICIENT_BALANCE");
    // Even once the seller could pay, the key's listing stays failed: no listing goes on sale.
    stack.fund(&[(SELLER, "red_shard", 10)]).await;
    let retried = seller.create_listing(with_new_key(request)).await.expect_err("a failed listing");
    assert_eq!(economy_kit::error::reason(&retried).as_deref(), Some("LISTING_FAILED"), "{retried:?}");
    assert_eq!(stack.balance(SELLER, "red_shard").await, (20, 0));
    stack.assert_reconciled().await;
}
