//! Crash recovery: the items service is unavailable in the middle of an item purchase;
//! the recovery worker finishes the saga and no money is created or lost.

use economy_kit::db::DbOptions;
use economy_market::domain::{Goods, Listing, ListingStatus, Price};
use economy_market::store::{Insert, MarketStore};
use economy_proto::items::v1 as items;
use economy_proto::market::v1 as pb;

use crate::common::*;

#[tokio::test]
async fn an_interrupted_item_purchase_is_finished_by_the_recovery_worker() {
    let mut stack = spawn_stack().await;
    stack.fund(&[(BUYER, "DIAMOND", 500)]).await;
    let item = stack.grant_item(SELLER).await;
    let listing = list_item(&mut stack.market(SELLER).await, &item, 200).await.expect("listed");
    stack.stop_items().await;
    let mut buyer = stack.market(BUYER).await;
    let request = pb::PurchaseListingRequest { listing_id: listing.id.clone(), ..Default::default() };
    let key = new_key();
    let interrupted = buyer.purchase_listing(keyed(request.clone(), &key)).await.expect_err("items down");
    assert_eq!(interrupted.code(), tonic::Code::Unavailable, "{interrupted:?}");
    assert_eq!(stack.balance(BUYER, "DIAMOND").await, (300, 200), "the payment is held, not lost");
    assert_eq!(stack.listing(&listing.id).await.status, pb::ListingStatus::Selling as i32);

    stack.restart_items().await;
    let sold = stack.wait_listing(&listing.id, pb::ListingStatus::Sold).await;
    assert_eq!(sold.status, pb::ListingStatus::Sold as i32, "the worker finished the saga");
    let delivered = stack.item(&item).await;
    assert_eq!((delivered.owner_user_id, delivered.status), (BUYER, items::ItemStatus::Available as i32));
    assert_eq!(stack.balance(BUYER, "DIAMOND").await, (300, 0));
    assert_eq!(stack.balance(SELLER, "DIAMOND").await, (190, 0));
    assert_eq!(stack.fee_balance().await, 10);
    stack.assert_reconciled().await;

    // The buyer's retry with the same key now sees the finished trade.
    let retry = buyer.purchase_listing(keyed(request, &key)).await.expect("resumed").into_inner();
    assert!(retry.replayed);
    assert_eq!(retry.trade.expect("trade").status, pb::TradeStatus::Completed as i32);
}

#[tokio::test]
async fn an_interrupted_listing_is_put_on_sale_by_the_recovery_worker() {
    let stack = spawn_stack().await;
    let item = stack.grant_item(SELLER).await;
    // What a crash right after storing the listing leaves: `creating`, no lock yet.
    let store = MarketStore::open(stack.market_db_url(), &DbOptions::default()).await.expect("store");
    let now = economy_kit::time::now_millis();
    let listing = Listing {
        id: uuid::Uuid::now_v7().to_string(),
        seller_user_id: SELLER,
        offer: Goods::Item { id: item.clone(), template: "sword".into() },
        price: Price { asset: "DIAMOND".into(), amount: 100 },
        status: ListingStatus::Creating,
        hold_id: None,
        created_at: now,
        expires_at: None,
        closed_at: None,
    };
    assert_eq!(store.insert_listing(&listing, "crashed-create").await.expect("insert"), Insert::Created);
    let on_sale = stack.wait_listing(&listing.id, pb::ListingStatus::OnSale).await;
    assert_eq!(on_sale.status, pb::ListingStatus::OnSale as i32, "the worker resumed the creation");
    assert_eq!(stack.item(&item).await.lock_holder, format!("market:listing:{}", listing.id));
}
