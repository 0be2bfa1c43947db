//! Offers of the platform's shop (docs/market.md, "Offers"): a price in asset amounts for
//! a reward of asset amounts and item templates, with stock, per-user limits and an
//! availability window. Free of SQL and gRPC.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::MarketError;

/// Most item instances one exchange grants.
pub const MAX_ITEMS_PER_EXCHANGE: i64 = 100;

/// An amount of a stackable asset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetAmount {
    /// Asset code.
    pub asset_code: String,
    /// Positive amount in the asset's smallest unit.
    pub amount: i64,
}

/// Instances of one item template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemReward {
    /// Template code.
    pub template_code: String,
    /// Instances, at least 1.
    pub quantity: i64,
    /// Metadata of each instance.
    pub metadata: BTreeMap<String, String>,
    /// Validity of each instance from the exchange's creation, seconds (0: the template's).
    pub valid_for_secs: i64,
}

/// What an offer or a bundle gives.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reward {
    /// Asset amounts, credited from SYSTEM_ISSUANCE (one per asset).
    pub assets: Vec<AssetAmount>,
    /// Item instances, granted by the items service.
    pub items: Vec<ItemReward>,
}

impl Reward {
    /// Item instances it grants.
    pub fn item_count(&self) -> i64 {
        self.items.iter().map(|item| item.quantity).sum()
    }

    /// The reward of `quantity` units (every amount and item count multiplied); `None`
    /// when an amount overflows.
    pub fn times(&self, quantity: i64) -> Option<Self> {
        let assets = times(&self.assets, quantity)?;
        let items = self
            .items
            .iter()
            .map(|item| Some(ItemReward { quantity: item.quantity.checked_mul(quantity)?, ..item.clone() }))
            .collect::<Option<_>>()?;
        Some(Self { assets, items })
    }
}

/// Every amount of `amounts` multiplied by `quantity`; `None` on overflow.
pub fn times(amounts: &[AssetAmount], quantity: i64) -> Option<Vec<AssetAmount>> {
    amounts
        .iter()
        .map(|each| {
            Some(AssetAmount { asset_code: each.asset_code.clone(), amount: each.amount.checked_mul(quantity)? })
        })
        .collect()
}

/// Per-user caps; 0 for none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurchaseLimit {
    /// Units per user in all.
    pub total: i64,
    /// Units per user within any `window_secs`.
    pub per_window: i64,
    /// The rolling window, seconds.
    pub window_secs: i64,
}

/// What an admin defines (DefineOffer): everything but the counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferDefinition {
    /// Id chosen by the admin.
    pub id: String,
    /// Shown to players.
    pub display_name: String,
    /// Price of one unit (distinct assets).
    pub price: Vec<AssetAmount>,
    /// Reward of one unit.
    pub reward: Reward,
    /// Units it may sell in all; `None`: unlimited.
    pub stock: Option<i64>,
    /// Per-user caps.
    pub limit: PurchaseLimit,
    /// Sales start, ms (`None`: always).
    pub starts_at: Option<i64>,
    /// Sales end (exclusive), ms (`None`: never).
    pub ends_at: Option<i64>,
    /// Whether it sells.
    pub enabled: bool,
    /// Free display metadata.
    pub metadata: BTreeMap<String, String>,
}

/// An offer as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// The definition in force.
    pub definition: OfferDefinition,
    /// Units reserved or sold by exchanges that did not fail.
    pub sold: i64,
    /// 1, then +1 per change of the definition.
    pub version: i64,
    /// First definition, ms.
    pub created_at: i64,
    /// Last change, ms.
    pub updated_at: i64,
}

impl Offer {
    /// Enabled and inside its window at `now`.
    pub fn is_active(&self, now: i64) -> bool {
        let definition = &self.definition;
        definition.enabled
            && definition.starts_at.is_none_or(|starts_at| starts_at <= now)
            && definition.ends_at.is_none_or(|ends_at| now < ends_at)
    }

    /// Units left (never below 0); `None` for unlimited stock.
    pub fn remaining(&self) -> Option<i64> {
        self.definition.stock.map(|stock| (stock - self.sold).max(0))
    }

    /// Whether `quantity` units may be bought at `now`, as far as the offer alone tells
    /// (the user's limits are checked when the units are reserved). Errors:
    /// OFFER_NOT_ACTIVE, OFFER_SOLD_OUT, VALIDATION_FAILED (too many items or an amount
    /// overflowing for this quantity).
    pub fn check_purchasable(&self, quantity: i64, now: i64) -> Result<(), MarketError> {
        if !self.is_active(now) {
            return Err(MarketError::OfferNotActive(self.definition.id.clone()));
        }
        if self.remaining().is_some_and(|remaining| remaining < quantity) {
            return Err(MarketError::OfferSoldOut {
                offer_id: self.definition.id.clone(),
                remaining: self.remaining(),
            });
        }
        let too_many = "at most 100 items per exchange, and amounts that fit 64 bits";
        let items = self.definition.reward.item_count().checked_mul(quantity);
        if items.is_none_or(|items| items > MAX_ITEMS_PER_EXCHANGE)
            || self.definition.reward.times(quantity).is_none()
            || times(&self.definition.price, quantity).is_none()
        {
            return Err(MarketError::Invalid { field: "quantity", description: too_many });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(stock: Option<i64>, sold: i64) -> Offer {
        Offer {
            definition: OfferDefinition {
                id: "voucher".into(),
                display_name: "Voucher".into(),
                price: vec![AssetAmount { asset_code: "POINTS".into(), amount: 500 }],
                reward: Reward {
                    assets: vec![],
                    items: vec![ItemReward {
                        template_code: "voucher".into(),
                        quantity: 2,
                        metadata: BTreeMap::new(),
                        valid_for_secs: 0,
                    }],
                },
                stock,
                limit: PurchaseLimit::default(),
                starts_at: Some(1_000),
                ends_at: Some(2_000),
                enabled: true,
                metadata: BTreeMap::new(),
            },
            sold,
            version: 1,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn active_from_its_start_until_before_its_end_while_enabled() {
        let mut offer = offer(None, 0);
        assert!(!offer.is_active(999));
        assert!(offer.is_active(1_000));
        assert!(offer.is_active(1_999));
        assert!(!offer.is_active(2_000));
        offer.definition.enabled = false;
        assert!(!offer.is_active(1_500));
    }

    #[test]
    fn stock_left_decides_sold_out_for_the_quantity_asked() {
        let nine_of_ten = offer(Some(10), 9);
        assert_eq!(nine_of_ten.remaining(), Some(1));
        assert_eq!(nine_of_ten.check_purchasable(1, 1_500), Ok(()));
        assert!(matches!(nine_of_ten.check_purchasable(2, 1_500), Err(MarketError::OfferSoldOut { .. })));
        assert_eq!(offer(Some(3), 5).remaining(), Some(0));
        assert_eq!(offer(None, 5).remaining(), None);
    }

    #[test]
    fn a_quantity_that_grants_over_100_items_or_overflows_is_invalid() {
        let offer = offer(None, 0);
        assert_eq!(offer.check_purchasable(50, 1_500), Ok(()));
        assert!(matches!(offer.check_purchasable(51, 1_500), Err(MarketError::Invalid { field: "quantity", .. })));
        let mut rich = offer.clone();
        rich.definition.reward.items.clear();
        rich.definition.price[0].amount = i64::MAX / 2;
        assert!(matches!(rich.check_purchasable(3, 1_500), Err(MarketError::Invalid { .. })));
    }

    #[test]
    fn a_reward_times_a_quantity_multiplies_amounts_and_counts() {
        let reward = Reward {
            assets: vec![AssetAmount { asset_code: "red_shard".into(), amount: 5 }],
            items: offer(None, 0).definition.reward.items,
        };
        let three = reward.times(3).expect("fits");
        assert_eq!(three.assets[0].amount, 15);
        assert_eq!(three.item_count(), 6);
        assert_eq!(reward.times(i64::MAX), None);
    }
}
