//! Trades (docs/market.md, "Purchases"). An asset trade is one ledger transaction:
//! `pending -> completed | failed`. An item trade is a saga: `pending` (hold the buyer's
//! payment) `-> paid` (transfer the item) `-> delivered` (settle the payment to seller
//! and platform) `-> completed`; a refused payment ends `failed`, a refused transfer goes
//! `paid -> refunding -> refunded` (the buyer's hold released).

/// Where a trade is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TradeStatus {
    /// Won the listing; payment in progress.
    Pending,
    /// Item trade: the buyer's payment is held.
    Paid,
    /// Item trade: the item is the buyer's; the payment is being settled.
    Delivered,
    /// Done.
    Completed,
    /// The payment was refused; nothing moved.
    Failed,
    /// Item trade: the transfer was refused; the payment is being released.
    Refunding,
    /// Item trade: the payment was released to the buyer.
    Refunded,
}

impl TradeStatus {
    /// Every status, in the proto's order.
    pub const ALL: [Self; 7] =
        [Self::Pending, Self::Paid, Self::Delivered, Self::Completed, Self::Failed, Self::Refunding, Self::Refunded];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Paid => "paid",
            Self::Delivered => "delivered",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Refunding => "refunding",
            Self::Refunded => "refunded",
        }
    }

    /// The status stored as `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == name)
    }

    /// True once nothing more will happen.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Refunded)
    }
}

/// A trade as stored (instants in ms since the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trade {
    /// UUIDv7.
    pub id: String,
    /// The purchase's business event; the keys of every step derive from it.
    pub business_event_id: String,
    /// The listing bought.
    pub listing_id: String,
    /// The buyer.
    pub buyer_user_id: i64,
    /// The seller.
    pub seller_user_id: i64,
    /// Price asset.
    pub price_asset: String,
    /// Price paid.
    pub price: i64,
    /// Platform fee.
    pub fee: i64,
    /// What the seller receives.
    pub seller_net: i64,
    /// Lifecycle status.
    pub status: TradeStatus,
    /// Item trades: the hold on the buyer's payment.
    pub payment_hold_id: Option<String>,
    /// Ledger transactions of the trade, in order.
    pub ledger_transaction_ids: Vec<String>,
    /// Why it failed or was refunded.
    pub failure_reason: String,
    /// Creation instant.
    pub created_at: i64,
    /// When it reached a final status.
    pub finished_at: Option<i64>,
}

/// `(fee, seller_net)` of `price` at `fee_bps` basis points:
/// `fee = floor(price * fee_bps / 10000)` (docs/market.md), computed in i128 so no
/// price overflows; `fee_bps` is clamped to 0..=10000.
pub fn split_price(price: i64, fee_bps: u32) -> (i64, i64) {
    let fee = i128::from(price) * i128::from(fee_bps.min(10_000)) / 10_000;
    let fee = i64::try_from(fee).unwrap_or(price);
    (fee, price - fee)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fee_is_floored_and_the_seller_gets_the_rest() {
        assert_eq!(split_price(100, 500), (5, 95));
        assert_eq!(split_price(19, 500), (0, 19), "0.95 rounds down to 0");
        assert_eq!(split_price(39, 500), (1, 38), "1.95 rounds down to 1");
        assert_eq!(split_price(1, 10_000), (1, 0));
        assert_eq!(split_price(i64::MAX, 500), (i64::MAX / 20, i64::MAX - i64::MAX / 20));
    }

    #[test]
    fn statuses_round_trip_and_know_when_they_are_final() {
        for status in TradeStatus::ALL {
            assert_eq!(TradeStatus::parse(status.as_str()), Some(status));
        }
        assert!(TradeStatus::Completed.is_final() && TradeStatus::Refunded.is_final());
        assert!(!TradeStatus::Paid.is_final() && !TradeStatus::Refunding.is_final());
    }
}
