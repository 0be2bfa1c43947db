//! The market's rules (docs/market.md), free of SQL and gRPC: listings, trades, the
//! fee, the shop's offers and exchanges, and every way an operation can fail.

pub mod compensation;
pub mod error;
pub mod exchange;
pub mod listing;
pub mod offer;
pub mod trade;

pub use error::MarketError;
pub use exchange::{Exchange, ExchangeKind, ExchangeStatus, GrantedItem, ItemGrant};
pub use listing::{Goods, Listing, ListingStatus, Price};
pub use offer::{AssetAmount, ItemReward, Offer, OfferDefinition, PurchaseLimit, Reward};
pub use trade::{Trade, TradeStatus, split_price};

/// Lock holder and hold reference of a listing: `market:listing:<id>`.
pub fn escrow_holder(listing_id: &str) -> String {
    format!("market:listing:{listing_id}")
}

/// Deterministic key of a downstream call for `subject` (a listing id or a trade's
/// business event): `<subject>:<step>` (docs/idempotency.md, "Derived keys in the services").
pub fn step_key(subject: &str, step: &str) -> String {
    format!("{subject}:{step}")
}
