//! Journal entries (docs/ledger.md, "Journal entries and postings"): legs that sum to zero per asset, applied at
//! once, and the per-balance deltas with the bounds a conditional update must respect.

use std::collections::BTreeMap;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::LedgerError;
use super::ids::{AccountId, AssetCode, HoldId, IdempotencyKey};

/// The part of a balance a leg moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Bucket {
    /// Spendable.
    Available,
    /// Frozen by holds.
    Frozen,
}

impl Bucket {
    /// Storage spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Available => "available",
            Self::Frozen => "frozen",
        }
    }

    /// Parses the storage spelling.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "available" => Some(Self::Available),
            "frozen" => Some(Self::Frozen),
            _ => None,
        }
    }
}

/// One posting: a signed, non-zero amount moved in one bucket of one balance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Leg {
    /// The account.
    pub account: AccountId,
    /// The asset.
    pub asset: AssetCode,
    /// The bucket.
    pub bucket: Bucket,
    /// Signed amount, smallest units; never 0.
    pub amount: i64,
    /// The hold this leg creates, settles or releases.
    pub hold_id: Option<HoldId>,
}

impl Leg {
    /// An available-bucket leg.
    pub fn available(account: AccountId, asset: AssetCode, amount: i64) -> Self {
        Self { account, asset, bucket: Bucket::Available, amount, hold_id: None }
    }
}

/// Fails with `UNBALANCED_TRANSACTION` unless the legs of every asset sum to zero.
/// Sums are exact (`i128`), so no overflow can hide an imbalance.
pub fn check_balanced(legs: &[Leg]) -> Result<(), LedgerError> {
    let mut sums: BTreeMap<&AssetCode, i128> = BTreeMap::new();
    for leg in legs {
        *sums.entry(&leg.asset).or_default() += i128::from(leg.amount);
    }
    match sums.into_iter().find(|(_, sum)| *sum != 0) {
        Some((asset, sum)) => Err(LedgerError::Unbalanced { asset: asset.clone(), sum }),
        None => Ok(()),
    }
}

/// The net change of one balance within an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceDelta {
    /// The account.
    pub account: AccountId,
    /// The asset.
    pub asset: AssetCode,
    /// Change of `available`.
    pub available: i64,
    /// Change of `frozen`.
    pub frozen: i64,
}

/// Inclusive range a current value must lie in for `value + delta` to stay in
/// `[floor, i64::MAX]`. Saturation is exact: it clips a mathematical range to i64.
pub fn allowed_range(delta: i64, floor: i64) -> (i64, i64) {
    (floor.saturating_sub(delta), i64::MAX.saturating_sub(delta))
}

/// The two amounts of one balance row `(account, asset)`; a missing row holds zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Buckets {
    /// Spendable amount.
    pub available: i64,
    /// Amount frozen by open holds.
    pub frozen: i64,
}

impl BalanceDelta {
    /// Range `available` must lie in before the update (the account's floor applies).
    pub fn available_range(&self) -> (i64, i64) {
        allowed_range(self.available, self.account.floor())
    }

    /// Range `frozen` must lie in before the update (frozen never goes negative).
    pub fn frozen_range(&self) -> (i64, i64) {
        allowed_range(self.frozen, 0)
    }

    /// Whether a balance holding `current` can take this delta (both buckets in range).
    pub fn fits(&self, current: Buckets) -> bool {
        in_range(self.available_range(), current.available) && in_range(self.frozen_range(), current.frozen)
    }

    /// `current` moved by this delta, or why it cannot be (see [`BalanceDelta::refusal`]).
    pub fn apply_to(&self, current: Buckets) -> Result<Buckets, LedgerError> {
        if !self.fits(current) {
            return Err(self.refusal(current));
        }
        // In range, so neither sum leaves [floor, i64::MAX].
        Ok(Buckets { available: current.available + self.available, frozen: current.frozen + self.frozen })
    }

    /// Why a balance holding `current` cannot take this delta: `INSUFFICIENT_BALANCE` for
    /// a user account going below zero (docs/ledger.md, "Accounts": user accounts never go negative),
    /// `BALANCE_OVERFLOW` past i64, a storage error when `frozen` would go negative (open
    /// holds always cover it, so that is corruption).
    pub fn refusal(&self, current: Buckets) -> LedgerError {
        let (account, asset) = (self.account.clone(), self.asset.clone());
        if current.frozen < self.frozen_range().0 {
            LedgerError::Storage(format!("frozen {asset} of {account} would go negative").into())
        } else if current.available < self.available_range().0 && account.user().is_some() {
            LedgerError::InsufficientBalance { account, asset }
        } else {
            LedgerError::BalanceOverflow { account, asset }
        }
    }
}

fn in_range((low, high): (i64, i64), value: i64) -> bool {
    (low..=high).contains(&value)
}

/// The balance moves of `legs` ([`balance_deltas`]) once they balance
/// ([`check_balanced`]): `UNBALANCED_TRANSACTION`, then `BALANCE_OVERFLOW`.
pub fn balanced_deltas(legs: &[Leg]) -> Result<Vec<BalanceDelta>, LedgerError> {
    check_balanced(legs)?;
    balance_deltas(legs)
}

/// Nets the legs per balance, ordered by (account, asset) so concurrent writers lock
/// rows in one order; a balance whose legs net to zero keeps its (zero) delta, as the
/// entry still moves its version (docs/ledger.md, "Resulting balances"). Fails with
/// `BALANCE_OVERFLOW` when a net change leaves i64.
pub fn balance_deltas(legs: &[Leg]) -> Result<Vec<BalanceDelta>, LedgerError> {
    let mut nets: BTreeMap<(&AccountId, &AssetCode), (i128, i128)> = BTreeMap::new();
    for leg in legs {
        let net = nets.entry((&leg.account, &leg.asset)).or_default();
        match leg.bucket {
            Bucket::Available => net.0 += i128::from(leg.amount),
            Bucket::Frozen => net.1 += i128::from(leg.amount),
        }
    }
    nets.into_iter()
        .map(|((account, asset), (available, frozen))| {
            let overflow = || LedgerError::BalanceOverflow { account: account.clone(), asset: asset.clone() };
            Ok(BalanceDelta {
                account: account.clone(),
                asset: asset.clone(),
                available: i64::try_from(available).map_err(|_| overflow())?,
                frozen: i64::try_from(frozen).map_err(|_| overflow())?,
            })
        })
        .collect()
}

/// SHA-256 (hex) of a canonical JSON form of `{operation, actor, content}`: two requests
/// with the same key are "the same" exactly when their fingerprints are equal.
pub fn fingerprint(operation: &str, actor: &str, content: &impl Serialize) -> String {
    #[derive(Serialize)]
    struct Canonical<'a, T> {
        operation: &'a str,
        actor: &'a str,
        content: &'a T,
    }
    let json = serde_json::to_vec(&Canonical { operation, actor, content }).unwrap_or_default();
    hex::encode(Sha256::digest(json))
}

/// Who/why/what of an entry to be written.
#[derive(Debug, Clone)]
pub struct EntryMeta {
    /// Unique key of the movement.
    pub key: IdempotencyKey,
    /// `fingerprint` of the request.
    pub fingerprint: String,
    /// UPPER_SNAKE business type.
    pub business_type: String,
    /// Groups entries of one business event (may be empty).
    pub correlation_id: String,
    /// Free text.
    pub memo: String,
    /// `user:<id>` or `service:<name>`.
    pub actor: String,
}

/// A balance once an entry is applied (docs/ledger.md, "Resulting balances"): what every
/// posting of the entry on the balance records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceAfter {
    /// The account.
    pub account: AccountId,
    /// The asset.
    pub asset: AssetCode,
    /// Available after the whole entry.
    pub available: i64,
    /// Frozen after the whole entry.
    pub frozen: i64,
    /// The balance's version after the entry: 1 for its first entry, +1 per entry.
    pub seq: i64,
}

/// A recorded journal entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// UUIDv7.
    pub id: String,
    /// Its idempotency key.
    pub idempotency_key: String,
    /// Business type.
    pub business_type: String,
    /// Correlation id.
    pub correlation_id: String,
    /// Memo.
    pub memo: String,
    /// Actor.
    pub actor: String,
    /// Ms since the epoch.
    pub created_at: i64,
    /// The legs, in posting order.
    pub legs: Vec<Leg>,
    /// Every balance the legs move, once the entry is applied, by account then asset
    /// (empty until written).
    pub balances: Vec<BalanceAfter>,
}

impl Entry {
    /// The entry `meta` describes, with id `id`, written at `created_at` (ms) with `legs`.
    pub fn new(id: String, meta: &EntryMeta, created_at: i64, legs: Vec<Leg>) -> Self {
        Self {
            id,
            idempotency_key: meta.key.as_str().to_owned(),
            business_type: meta.business_type.clone(),
            correlation_id: meta.correlation_id.clone(),
            memo: meta.memo.clone(),
            actor: meta.actor.clone(),
            created_at,
            legs,
            balances: Vec::new(),
        }
    }

    /// This entry with the resulting `balances` (sorted by account, then asset).
    #[must_use]
    pub fn with_balances(mut self, mut balances: Vec<BalanceAfter>) -> Self {
        balances.sort_by(|a, b| (&a.account, &a.asset).cmp(&(&b.account, &b.asset)));
        self.balances = balances;
        self
    }

    /// The balance of `account` and `asset` once the entry is applied, if it moved it.
    pub fn balance_after(&self, account: &AccountId, asset: &AssetCode) -> Option<&BalanceAfter> {
        self.balances.iter().find(|balance| &balance.account == account && &balance.asset == asset)
    }

    /// The hold this entry created, settled or released, if any.
    pub fn hold_id(&self) -> Option<&HoldId> {
        self.legs.iter().find_map(|leg| leg.hold_id.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::{Code, UserId};

    fn user(id: i64) -> AccountId {
        AccountId::User(UserId::parse(id).expect("id"))
    }

    fn code(value: &str) -> AssetCode {
        Code::parse(value).expect("code")
    }

    #[test]
    fn balanced_per_asset() {
        let legs = [
            Leg::available(user(1), code("A"), -5),
            Leg::available(user(2), code("A"), 5),
            Leg::available(user(1), code("B"), 3),
        ];
        assert_eq!(check_balanced(&legs[..2]), Ok(()));
        assert_eq!(check_balanced(&legs), Err(LedgerError::Unbalanced { asset: code("B"), sum: 3 }));
    }

    #[test]
    fn extreme_legs_cannot_hide_imbalance() {
        let legs = [Leg::available(user(1), code("A"), i64::MAX), Leg::available(user(2), code("A"), i64::MAX)];
        assert!(check_balanced(&legs).is_err());
    }

    #[test]
    fn deltas_net_per_balance_in_key_order() -> Result<(), LedgerError> {
        let legs = [
            Leg::available(user(2), code("A"), 5),
            Leg::available(user(1), code("A"), -5),
            Leg { bucket: Bucket::Frozen, ..Leg::available(user(1), code("A"), 5) },
            Leg::available(user(2), code("A"), -5),
        ];
        let deltas = balance_deltas(&legs)?;
        assert_eq!(
            deltas,
            [
                BalanceDelta { account: user(1), asset: code("A"), available: -5, frozen: 5 },
                BalanceDelta { account: user(2), asset: code("A"), available: 0, frozen: 0 },
            ],
            "a balance netting to zero keeps its delta"
        );
        Ok(())
    }

    #[test]
    fn ranges_enforce_floors_without_overflow() {
        assert_eq!(allowed_range(-10, 0), (10, i64::MAX));
        assert_eq!(allowed_range(10, 0), (-10, i64::MAX - 10));
        assert_eq!(allowed_range(-10, i64::MIN), (i64::MIN + 10, i64::MAX));
        assert_eq!(allowed_range(i64::MAX, i64::MIN), (i64::MIN, 0));
    }

    #[test]
    fn deltas_move_balances_within_their_bounds_or_say_why_not() {
        let delta = |account: AccountId, available: i64, frozen: i64| BalanceDelta {
            account,
            asset: code("A"),
            available,
            frozen,
        };
        let both = |available: i64, frozen: i64| Buckets { available, frozen };
        assert_eq!(delta(user(1), -10, 10).apply_to(both(10, 0)), Ok(both(0, 10)));
        assert!(matches!(delta(user(1), -11, 0).apply_to(both(10, 0)), Err(LedgerError::InsufficientBalance { .. })));
        assert!(matches!(delta(user(1), 1, 0).apply_to(both(i64::MAX, 0)), Err(LedgerError::BalanceOverflow { .. })));
        assert!(matches!(delta(user(1), 5, -5).apply_to(both(0, 4)), Err(LedgerError::Storage(_))));
        // System accounts may go negative, down to i64::MIN and no further.
        let system = AccountId::System("SYSTEM_ISSUANCE".into());
        assert_eq!(delta(system.clone(), -5, 0).apply_to(both(i64::MIN + 5, 0)), Ok(both(i64::MIN, 0)));
        assert!(matches!(
            delta(system, -6, 0).apply_to(both(i64::MIN + 5, 0)),
            Err(LedgerError::BalanceOverflow { .. })
        ));
    }

    #[test]
    fn fingerprints_depend_on_every_part() {
        let base = fingerprint("OP", "user:1", &("a", 1));
        assert_eq!(base, fingerprint("OP", "user:1", &("a", 1)));
        assert_ne!(base, fingerprint("OP2", "user:1", &("a", 1)));
        assert_ne!(base, fingerprint("OP", "user:2", &("a", 1)));
        assert_ne!(base, fingerprint("OP", "user:1", &("a", 2)));
        assert_eq!(base.len(), 64);
    }
}
