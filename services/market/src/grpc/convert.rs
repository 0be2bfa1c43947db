//! proto <-> domain conversion of listings and trades, and validation of inbound ones.

use economy_kit::error::Violations;
use economy_kit::time::{from_timestamp, to_timestamp};
use economy_proto::market::v1 as pb;

use crate::domain::{Goods, Listing, ListingStatus, Price, Trade, TradeStatus};
use crate::service::NewListing;

/// Default page size of list RPCs.
pub const DEFAULT_PAGE_SIZE: i32 = 50;
/// Largest accepted page size.
pub const MAX_PAGE_SIZE: i32 = 500;

/// Domain listing -> proto.
pub fn listing(listing: &Listing) -> pb::Listing {
    let offer = match &listing.offer {
        Goods::Asset { code, amount } => {
            pb::listing::Offer::Asset(pb::AssetOffer { asset_code: code.clone(), amount: *amount })
        }
        Goods::Item { id, template } => {
            pb::listing::Offer::Item(pb::ItemOffer { item_instance_id: id.clone(), template_code: template.clone() })
        }
    };
    pb::Listing {
        id: listing.id.clone(),
        seller_user_id: listing.seller_user_id,
        offer: Some(offer),
        price: Some(pb::Price { asset_code: listing.price.asset.clone(), amount: listing.price.amount }),
        status: listing_status(listing.status).into(),
        hold_id: listing.hold_id.clone().unwrap_or_default(),
        created_at: Some(to_timestamp(listing.created_at)),
        expires_at: listing.expires_at.map(to_timestamp),
        closed_at: listing.closed_at.map(to_timestamp),
    }
}

fn listing_status(status: ListingStatus) -> pb::ListingStatus {
    match status {
        ListingStatus::Creating => pb::ListingStatus::Creating,
        ListingStatus::OnSale => pb::ListingStatus::OnSale,
        ListingStatus::Selling => pb::ListingStatus::Selling,
        ListingStatus::Sold => pb::ListingStatus::Sold,
        ListingStatus::Cancelled => pb::ListingStatus::Cancelled,
        ListingStatus::Expired => pb::ListingStatus::Expired,
        ListingStatus::Failed => pb::ListingStatus::Failed,
    }
}

fn trade_status(status: TradeStatus) -> pb::TradeStatus {
    match status {
        TradeStatus::Pending => pb::TradeStatus::Pending,
        TradeStatus::Paid => pb::TradeStatus::Paid,
        TradeStatus::Delivered => pb::TradeStatus::Delivered,
        TradeStatus::Completed => pb::TradeStatus::Completed,
        TradeStatus::Failed => pb::TradeStatus::Failed,
        TradeStatus::Refunding => pb::TradeStatus::Refunding,
        TradeStatus::Refunded => pb::TradeStatus::Refunded,
    }
}

/// Domain trade -> proto (without the buyer's resulting balance: PurchaseListing's
/// answer adds it).
pub fn trade(trade: &Trade) -> pb::Trade {
    pb::Trade {
        id: trade.id.clone(),
        business_event_id: trade.business_event_id.clone(),
        listing_id: trade.listing_id.clone(),
        buyer_user_id: trade.buyer_user_id,
        seller_user_id: trade.seller_user_id,
        price: Some(pb::Price { asset_code: trade.price_asset.clone(), amount: trade.price }),
        fee: trade.fee,
        seller_net: trade.seller_net,
        status: trade_status(trade.status).into(),
        ledger_transaction_ids: trade.ledger_transaction_ids.clone(),
        created_at: Some(to_timestamp(trade.created_at)),
        finished_at: trade.finished_at.map(to_timestamp),
        failure_reason: trade.failure_reason.clone(),
        buyer_balance: None,
    }
}

/// Whether `value` is an asset or template code: a letter, then letters, digits or `_`,
/// at most 64 characters.
pub fn is_code(value: &str) -> bool {
    let mut chars = value.chars();
    chars.next().is_some_and(|first| first.is_ascii_alphabetic())
        && value.len() <= 64
        && chars.all(|char| char.is_ascii_alphanumeric() || char == '_')
}

/// Validates the shape of a CreateListing (every bad field listed) into a `NewListing`.
/// Rules that depend on the clock (`expires_at` in the future) are the service's, checked
/// on a first execution only, so that a retry is answered from its key.
pub fn new_listing(request: &pb::CreateListingRequest, violations: &mut Violations) -> Option<NewListing> {
    violations.check(request.seller_user_id >= 0, "seller_user_id", "a positive user id, or 0 for the caller");
    let offer = match &request.offer {
        Some(pb::create_listing_request::Offer::Asset(asset)) => {
            violations.check(is_code(&asset.asset_code), "asset.asset_code", "an asset code");
            violations.check(asset.amount > 0, "asset.amount", "a positive amount");
            Some(Goods::Asset { code: asset.asset_code.clone(), amount: asset.amount })
        }
        Some(pb::create_listing_request::Offer::Item(item)) => {
            let valid = uuid::Uuid::try_parse(&item.item_instance_id).is_ok();
            violations.check(valid, "item.item_instance_id", "an item instance id (UUID)");
            Some(Goods::Item { id: item.item_instance_id.clone(), template: String::new() })
        }
        None => {
            violations.add("offer", "set asset or item");
            None
        }
    };
    let price = request.price.clone().unwrap_or_default();
    let price_asset = if price.asset_code.is_empty() { "DIAMOND".to_owned() } else { price.asset_code };
    violations.check(is_code(&price_asset), "price.asset_code", "an asset code");
    violations.check(price.amount > 0, "price.amount", "a positive amount");
    if let Some(Goods::Asset { code, .. }) = &offer {
        violations.check(*code != price_asset, "price.asset_code", "differs from the asset sold");
    }
    let expires_at = request.expires_at.as_ref().map(from_timestamp);
    violations.check(expires_at.is_none_or(|at| at.is_some()), "expires_at", "a valid instant in the future");
    Some(NewListing {
        seller_user_id: (request.seller_user_id > 0).then_some(request.seller_user_id),
        offer: offer?,
        price: Price { asset: price_asset, amount: price.amount },
        expires_at: expires_at.flatten(),
    })
}

/// A page size: 0 -> the default, else 1..=500.
pub fn page_size(value: i32, violations: &mut Violations) -> i64 {
    violations.check((0..=MAX_PAGE_SIZE).contains(&value), "page_size", "0..=500");
    i64::from(if value == 0 { DEFAULT_PAGE_SIZE } else { value.clamp(1, MAX_PAGE_SIZE) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(offer: pb::create_listing_request::Offer, price: i64) -> pb::CreateListingRequest {
        pb::CreateListingRequest {
            offer: Some(offer),
            price: Some(pb::Price { asset_code: String::new(), amount: price }),
            ..Default::default()
        }
    }

    #[test]
    fn the_price_asset_defaults_to_diamond() {
        let offer =
            pb::create_listing_request::Offer::Asset(pb::AssetOffer { asset_code: "red_shard".into(), amount: 5 });
        let mut violations = Violations::default();
        let new = new_listing(&request(offer, 100), &mut violations).expect("valid");
        assert!(violations.is_empty());
        assert_eq!(new.price, Price { asset: "DIAMOND".into(), amount: 100 });
    }

    #[test]
    fn bad_listings_name_every_bad_field() {
        let offer =
            pb::create_listing_request::Offer::Asset(pb::AssetOffer { asset_code: "DIAMOND".into(), amount: 0 });
        let mut violations = Violations::default();
        new_listing(&request(offer, -1), &mut violations);
        let status = violations.finish("economy.market").expect_err("invalid");
        let fields = economy_kit::error::violated_fields(&status);
        assert_eq!(fields, ["asset.amount", "price.amount", "price.asset_code"]);
    }
}
