//! Listings: `creating -> on_sale | failed`, `on_sale -> selling -> sold | on_sale`,
//! `on_sale -> cancelled | expired`, and `selling -> failed` when the item left the
//! listing during a purchase.

use super::error::MarketError;

/// Where a listing is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListingStatus {
    /// Its hold or lock is being taken.
    Creating,
    /// On sale.
    OnSale,
    /// A purchase is in progress.
    Selling,
    /// Sold.
    Sold,
    /// Withdrawn; the hold or lock is being given back.
    Cancelled,
    /// Past its expiry; the hold or lock is being given back.
    Expired,
    /// The hold or lock could not be taken, or the item left the listing.
    Failed,
}

impl ListingStatus {
    /// Every status, in the proto's order.
    pub const ALL: [Self; 7] =
        [Self::Creating, Self::OnSale, Self::Selling, Self::Sold, Self::Cancelled, Self::Expired, Self::Failed];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "creating",
            Self::OnSale => "on_sale",
            Self::Selling => "selling",
            Self::Sold => "sold",
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
            Self::Failed => "failed",
        }
    }

    /// The status stored as `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == name)
    }

    /// True for the statuses that close a listing (its `closed_at` is set on entering them).
    pub fn closes(self) -> bool {
        matches!(self, Self::Sold | Self::Cancelled | Self::Expired | Self::Failed)
    }
}

/// What a listing sells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Goods {
    /// An amount of a stackable asset, frozen by a ledger hold.
    Asset {
        /// Asset code.
        code: String,
        /// Positive amount.
        amount: i64,
    },
    /// One item instance, locked by the items service.
    Item {
        /// Instance id.
        id: String,
        /// Its template.
        template: String,
    },
}

/// What a buyer pays: a positive amount of a price asset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Price {
    /// Asset code (e.g. `DIAMOND`).
    pub asset: String,
    /// Positive amount.
    pub amount: i64,
}

/// A listing as stored (instants in ms since the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// UUIDv7.
    pub id: String,
    /// The seller.
    pub seller_user_id: i64,
    /// What is sold.
    pub offer: Goods,
    /// The price.
    pub price: Price,
    /// Lifecycle status.
    pub status: ListingStatus,
    /// The ledger hold of an asset listing, once taken.
    pub hold_id: Option<String>,
    /// Creation instant.
    pub created_at: i64,
    /// End of sale, if any.
    pub expires_at: Option<i64>,
    /// When it left sale.
    pub closed_at: Option<i64>,
}

impl Listing {
    /// Whether the listing has reached its end of sale at `now`: `expired`, or on sale
    /// at or past `expires_at` (the recovery worker has not marked it yet).
    pub fn is_expired(&self, now: i64) -> bool {
        let past = self.expires_at.is_some_and(|expires_at| expires_at <= now);
        self.status == ListingStatus::Expired || (self.status == ListingStatus::OnSale && past)
    }

    /// Whether `buyer` may buy it at `now`: on sale, not expired, not their own.
    /// Errors: `OWN_LISTING`, `LISTING_EXPIRED`, `LISTING_NOT_ON_SALE`.
    pub fn check_purchasable(&self, buyer: i64, now: i64) -> Result<(), MarketError> {
        if self.seller_user_id == buyer {
            return Err(MarketError::OwnListing(self.id.clone()));
        }
        self.check_on_sale(now)
    }

    /// Whether it may be cancelled at `now`: on sale and not expired. Errors:
    /// `LISTING_EXPIRED`, `LISTING_NOT_ON_SALE`.
    pub fn check_cancellable(&self, now: i64) -> Result<(), MarketError> {
        self.check_on_sale(now)
    }

    fn check_on_sale(&self, now: i64) -> Result<(), MarketError> {
        if self.is_expired(now) {
            return Err(MarketError::ListingExpired(self.id.clone()));
        }
        match self.status {
            ListingStatus::OnSale => Ok(()),
            _ => Err(self.not_on_sale()),
        }
    }

    fn not_on_sale(&self) -> MarketError {
        MarketError::ListingNotOnSale { listing_id: self.id.clone(), status: self.status.as_str() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(status: ListingStatus, expires_at: Option<i64>) -> Listing {
        Listing {
            id: "l1".into(),
            seller_user_id: 2,
            offer: Goods::Asset { code: "red_shard".into(), amount: 10 },
            price: Price { asset: "DIAMOND".into(), amount: 100 },
            status,
            hold_id: Some("h1".into()),
            created_at: 0,
            expires_at,
            closed_at: None,
        }
    }

    #[test]
    fn statuses_round_trip_through_their_names() {
        for status in ListingStatus::ALL {
            assert_eq!(ListingStatus::parse(status.as_str()), Some(status));
        }
    }

    #[test]
    fn only_listings_on_sale_of_others_are_purchasable() {
        assert_eq!(listing(ListingStatus::OnSale, None).check_purchasable(3, 0), Ok(()));
        assert_eq!(
            listing(ListingStatus::OnSale, None).check_purchasable(2, 0),
            Err(MarketError::OwnListing("l1".into()))
        );
        assert_eq!(listing(ListingStatus::OnSale, Some(10)).check_purchasable(3, 9), Ok(()));
        for (status, expires_at) in [(ListingStatus::OnSale, Some(10)), (ListingStatus::Expired, None)] {
            assert_eq!(
                listing(status, expires_at).check_purchasable(3, 10),
                Err(MarketError::ListingExpired("l1".into())),
                "{status:?}"
            );
        }
        for status in [ListingStatus::Creating, ListingStatus::Selling, ListingStatus::Sold, ListingStatus::Cancelled] {
            assert!(listing(status, None).check_purchasable(3, 0).is_err(), "{status:?}");
        }
    }

    #[test]
    fn only_listings_on_sale_can_be_cancelled() {
        assert_eq!(listing(ListingStatus::OnSale, None).check_cancellable(0), Ok(()));
        assert!(listing(ListingStatus::Selling, None).check_cancellable(0).is_err());
        assert!(listing(ListingStatus::Sold, None).check_cancellable(0).is_err());
        assert_eq!(
            listing(ListingStatus::OnSale, Some(10)).check_cancellable(10),
            Err(MarketError::ListingExpired("l1".into()))
        );
    }
}
