//! Rows the store's unit tests start from.

use crate::domain::{Goods, Listing, ListingStatus, Price, Trade, TradeStatus};
use crate::store::{MarketStore, Step};

/// A new asset listing of seller 1, on sale (1 red shard for 100 DIAMOND).
pub(super) async fn listing(store: &MarketStore, expires_at: Option<i64>) -> String {
    let listing = Listing {
        id: uuid::Uuid::now_v7().to_string(),
        seller_user_id: 1,
        offer: Goods::Asset { code: "red_shard".into(), amount: 1 },
        price: Price { asset: "DIAMOND".into(), amount: 100 },
        status: ListingStatus::Creating,
        hold_id: None,
        created_at: 1,
        expires_at,
        closed_at: None,
    };
    store.insert_listing(&listing, &listing.id).await.expect("insert");
    assert!(store.put_on_sale(&listing.id, "hold", 1).await.expect("on sale"));
    listing.id
}

/// `pending -> completed` of `trade`, moving its listing `from -> sold`.
pub(super) fn complete(trade: &Trade, from: ListingStatus) -> Step<'_> {
    let mut step = Step::new(&trade.id, TradeStatus::Pending, TradeStatus::Completed, 20);
    step.transaction_id = "tx";
    step.listing = Some((trade.listing_id.as_str(), from, ListingStatus::Sold));
    step
}

/// A `pending` trade of buyer 2 on `listing_id` for business event `event`, begun at 10.
pub(super) fn trade(listing_id: &str, event: &str) -> Trade {
    Trade {
        id: uuid::Uuid::now_v7().to_string(),
        business_event_id: event.into(),
        listing_id: listing_id.into(),
        buyer_user_id: 2,
        seller_user_id: 1,
        price_asset: "DIAMOND".into(),
        price: 100,
        fee: 5,
        seller_net: 95,
        status: TradeStatus::Pending,
        payment_hold_id: None,
        ledger_transaction_ids: Vec::new(),
        failure_reason: String::new(),
        created_at: 10,
        finished_at: None,
    }
}
