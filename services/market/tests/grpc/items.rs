//! Item listings end to end: the purchase saga (payment held, item transferred, payment
//! settled) and its refund when the item cannot be delivered.

use economy_proto::items::v1 as items;
use economy_proto::market::v1 as pb;

use crate::common::*;

#[tokio::test]
async fn an_item_listing_sells_through_the_saga() {
    let stack = spawn_stack().await;
    stack.fund(&[(BUYER, "DIAMOND", 500)]).await;
    let item = stack.grant_item(SELLER).await;
    let mut seller = stack.market(SELLER).await;
    let listing = list_item(&mut seller, &item, 250).await.expect("listed");
    let locked = stack.item(&item).await;
    assert_eq!(
        (locked.status, locked.lock_holder.as_str()),
        (items::ItemStatus::Locked as i32, format!("market:listing:{}", listing.id).as_str())
    );
    assert_eq!(reason(list_item(&mut seller, &item, 300).await), "LISTING_ALREADY_OPEN");

    let bought = buy(&mut stack.market(BUYER).await, &listing.id).await.expect("bought");
    let trade = bought.trade.expect("trade");
    assert_eq!((trade.fee, trade.seller_net), (12, 238), "floor(250 * 0.05) = 12");
    assert_eq!(trade.status, pb::TradeStatus::Completed as i32);
    assert_eq!(trade.ledger_transaction_ids.len(), 2, "payment hold, then its settlement");
    let delivered = stack.item(&item).await;
    assert_eq!((delivered.owner_user_id, delivered.status), (BUYER, items::ItemStatus::Available as i32));
    assert_eq!(stack.balance(BUYER, "DIAMOND").await, (250, 0));
    let after = trade.buyer_balance.as_ref().map(|balance| (balance.available, balance.frozen));
    assert_eq!(after, Some((250, 0)), "the buyer's balance after the payout settled the hold");
    assert_eq!(stack.balance(SELLER, "DIAMOND").await, (238, 0));
    assert_eq!(stack.fee_balance().await, 12);
    stack.assert_reconciled().await;
}

#[tokio::test]
async fn an_undeliverable_item_is_refunded_and_the_listing_fails() {
    let stack = spawn_stack().await;
    stack.fund(&[(BUYER, "DIAMOND", 500)]).await;
    let item = stack.grant_item(SELLER).await;
    let listing = list_item(&mut stack.market(SELLER).await, &item, 100).await.expect("listed");
    // An operator takes the item out from under the listing.
    let mut admin = stack.admin_items().await;
    let holder = format!("market:listing:{}", listing.id);
    let unlock = items::UnlockItemRequest { item_instance_id: item.clone(), holder, ..Default::default() };
    admin.unlock_item(with_new_key(unlock)).await.expect("unlock");
    let revoke =
        items::RevokeItemRequest { item_instance_id: item.clone(), reason: "fraud".into(), ..Default::default() };
    admin.revoke_item(with_new_key(revoke)).await.expect("revoke");

    let refused = buy(&mut stack.market(BUYER).await, &listing.id).await.expect_err("not deliverable");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert_eq!(economy_kit::error::reason(&refused).as_deref(), Some("ITEM_NOT_LOCKED"));
    assert_eq!(stack.balance(BUYER, "DIAMOND").await, (500, 0), "refunded in full");
    assert_eq!(stack.fee_balance().await, 0);
    assert_eq!(stack.listing(&listing.id).await.status, pb::ListingStatus::Failed as i32);
    let trades = stack.market(BUYER).await.list_trades(pb::ListTradesRequest::default()).await.expect("trades");
    let trade = trades.into_inner().trades.pop().expect("trade");
    assert_eq!(trade.status, pb::TradeStatus::Refunded as i32);
    assert_eq!(trade.ledger_transaction_ids.len(), 2, "payment hold, then its release");
    stack.assert_reconciled().await;
}

#[tokio::test]
async fn cancelling_an_item_listing_unlocks_the_item() {
    let stack = spawn_stack().await;
    let item = stack.grant_item(SELLER).await;
    let mut seller = stack.market(SELLER).await;
    let listing = list_item(&mut seller, &item, 100).await.expect("listed");
    let mut stranger = stack.market(BUYER).await;
    let cancel = pb::CancelListingRequest { listing_id: listing.id.clone(), ..Default::default() };
    assert_eq!(reason(stranger.cancel_listing(with_new_key(cancel.clone())).await), "PERMISSION_DENIED");
    let cancelled = seller.cancel_listing(with_new_key(cancel)).await.expect("cancelled").into_inner();
    assert_eq!(cancelled.listing.expect("listing").status, pb::ListingStatus::Cancelled as i32);
    assert_eq!(stack.item(&item).await.status, items::ItemStatus::Available as i32);
    assert_eq!(reason(buy(&mut stranger, &listing.id).await), "LISTING_NOT_ON_SALE");
    list_item(&mut seller, &item, 120).await.expect("listed again");
}
