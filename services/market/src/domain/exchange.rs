//! Exchanges (docs/market.md, "Exchanges"): an offer purchase or a reward bundle, run as
//! a saga whose every downstream call is keyed `<business event>:<step>`:
//!
//! `reserved` (purchases: stock and limit reserved in the market's own transaction)
//! `-> paid` (each price asset held in the ledger; bundles pass straight on)
//! `-> granted` (each item granted by the items service)
//! `-> completed` (one ledger entry settles the holds to the revenue account and credits
//! the reward assets from SYSTEM_ISSUANCE).
//!
//! A refusal at any step goes `-> compensating` (granted items revoked, holds released)
//! `-> failed`, which returns the reservation: nothing charged, nothing kept.

use std::collections::BTreeMap;

use super::offer::{AssetAmount, Reward};

/// What started an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeKind {
    /// PurchaseOffer.
    OfferPurchase,
    /// GrantBundle.
    Bundle,
}

impl ExchangeKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OfferPurchase => "offer_purchase",
            Self::Bundle => "bundle",
        }
    }

    /// The kind stored as `name`.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::OfferPurchase, Self::Bundle].into_iter().find(|kind| kind.as_str() == name)
    }
}

/// Where an exchange's saga is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeStatus {
    /// Reserved (purchases) or accepted (bundles); the price is being held.
    Reserved,
    /// The price is held; the items are being granted.
    Paid,
    /// The items are granted; the ledger entry is being posted.
    Granted,
    /// Done.
    Completed,
    /// Refused: granted items being revoked, holds released.
    Compensating,
    /// Refused and undone; the reservation returned.
    Failed,
}

impl ExchangeStatus {
    /// Every status, in the proto's order.
    pub const ALL: [Self; 6] =
        [Self::Reserved, Self::Paid, Self::Granted, Self::Completed, Self::Compensating, Self::Failed];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reserved => "reserved",
            Self::Paid => "paid",
            Self::Granted => "granted",
            Self::Completed => "completed",
            Self::Compensating => "compensating",
            Self::Failed => "failed",
        }
    }

    /// The status stored as `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == name)
    }

    /// True once nothing more will happen.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Failed)
    }
}

/// One item instance an exchange granted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GrantedItem {
    /// The instance.
    pub item_instance_id: String,
    /// Its template.
    pub template_code: String,
}

/// One item grant an exchange owes: the `index`-th instance (keys `<event>:grant:<index>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemGrant {
    /// Position among the exchange's instances, from 0.
    pub index: usize,
    /// Template.
    pub template_code: String,
    /// Metadata.
    pub metadata: BTreeMap<String, String>,
    /// Expiry, ms; `None` for the template's default validity.
    pub expires_at: Option<i64>,
}

/// An exchange as stored (instants in ms since the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// UUIDv7.
    pub id: String,
    /// The business event; every step's key derives from it.
    pub business_event_id: String,
    /// Purchase or bundle.
    pub kind: ExchangeKind,
    /// Who pays and receives.
    pub user_id: i64,
    /// The offer bought (`''` for bundles).
    pub offer_id: String,
    /// Units bought (1 for bundles).
    pub quantity: i64,
    /// What the user pays: price x quantity, one amount per asset.
    pub paid: Vec<AssetAmount>,
    /// What the user receives in all.
    pub reward: Reward,
    /// Business type of its ledger entries and item events.
    pub business_type: String,
    /// Correlation id of its ledger entries and item events.
    pub correlation_id: String,
    /// Saga status.
    pub status: ExchangeStatus,
    /// The payment's holds, in the order of `paid`.
    pub payment_hold_ids: Vec<String>,
    /// Items granted so far.
    pub granted_items: Vec<GrantedItem>,
    /// Ledger transactions, in order.
    pub ledger_transaction_ids: Vec<String>,
    /// Why it failed.
    pub failure_reason: String,
    /// The price asset whose hold was refused, when one was.
    pub failure_asset_code: String,
    /// Creation instant.
    pub created_at: i64,
    /// When it reached a final status.
    pub finished_at: Option<i64>,
}

/// Business type of offer purchases' ledger entries and item events.
pub const SHOP_EXCHANGE: &str = "SHOP_EXCHANGE";
/// Business type of bundles that name none.
pub const REWARD_BUNDLE: &str = "REWARD_BUNDLE";

/// The reference of exchange `id`'s holds, `market:exchange:<id>`: also the correlation id
/// of every ledger entry and item event of an offer purchase (the ledger records a hold's
/// reference as its entry's correlation id).
pub fn exchange_reference(id: &str) -> String {
    format!("market:exchange:{id}")
}

impl Exchange {
    /// The reference of its holds ([`exchange_reference`]).
    pub fn reference(&self) -> String {
        exchange_reference(&self.id)
    }

    /// Every item instance the exchange grants, in order; expiries count from its
    /// creation so every retry asks for the same instant.
    pub fn item_grants(&self) -> Vec<ItemGrant> {
        let each = self.reward.items.iter().flat_map(|item| {
            let count = usize::try_from(item.quantity).unwrap_or(0);
            std::iter::repeat_n(item, count)
        });
        each.enumerate()
            .map(|(index, item)| ItemGrant {
                index,
                template_code: item.template_code.clone(),
                metadata: item.metadata.clone(),
                expires_at: (item.valid_for_secs > 0)
                    .then(|| self.created_at.saturating_add(item.valid_for_secs.saturating_mul(1000))),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::offer::ItemReward;

    #[test]
    fn statuses_and_kinds_round_trip() {
        for status in ExchangeStatus::ALL {
            assert_eq!(ExchangeStatus::parse(status.as_str()), Some(status));
        }
        assert!(ExchangeStatus::Completed.is_final() && ExchangeStatus::Failed.is_final());
        assert!(!ExchangeStatus::Compensating.is_final());
        assert_eq!(ExchangeKind::parse("bundle"), Some(ExchangeKind::Bundle));
        assert_eq!(ExchangeKind::parse("trade"), None);
    }

    #[test]
    fn item_grants_expand_quantities_in_order_with_expiries_from_creation() {
        let item = |template: &str, quantity, valid_for_secs| ItemReward {
            template_code: template.into(),
            quantity,
            metadata: BTreeMap::new(),
            valid_for_secs,
        };
        let exchange = Exchange {
            id: "e".into(),
            business_event_id: "k".into(),
            kind: ExchangeKind::Bundle,
            user_id: 7,
            offer_id: String::new(),
            quantity: 1,
            paid: vec![],
            reward: Reward { assets: vec![], items: vec![item("a", 2, 60), item("b", 1, 0)] },
            business_type: REWARD_BUNDLE.into(),
            correlation_id: "k".into(),
            status: ExchangeStatus::Reserved,
            payment_hold_ids: vec![],
            granted_items: vec![],
            ledger_transaction_ids: vec![],
            failure_reason: String::new(),
            failure_asset_code: String::new(),
            created_at: 1_000,
            finished_at: None,
        };
        let grants = exchange.item_grants();
        let summary: Vec<_> =
            grants.iter().map(|grant| (grant.index, grant.template_code.as_str(), grant.expires_at)).collect();
        assert_eq!(summary, [(0, "a", Some(61_000)), (1, "a", Some(61_000)), (2, "b", None)]);
    }
}
