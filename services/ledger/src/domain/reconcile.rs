//! Reconciliation findings (docs/ledger.md, "Reconciliation"): per balance, available + frozen equals
//! the sum of its postings and frozen equals its open holds; per asset, all accounts sum
//! to zero.
//!
//! Every sum is exact (`i128`): a legal ledger may hold balances of one asset whose sum
//! leaves i64 (two users at `i64::MAX` against two system accounts at `-i64::MAX`), and a
//! balance's available + frozen may too, so nothing here may overflow.

use super::ids::{AccountId, AssetCode};

/// The invariant a finding violates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindingKind {
    /// available + frozen != sum of the balance's postings.
    BalancePostingsMismatch,
    /// frozen != sum of the balance's open holds.
    FrozenHoldsMismatch,
    /// The balances of an asset do not sum to zero.
    AssetNotZeroSum,
}

/// One violation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Which invariant.
    pub kind: FindingKind,
    /// The balance's account (`None` for an asset-wide finding).
    pub account: Option<AccountId>,
    /// The asset.
    pub asset: AssetCode,
    /// What the invariant requires, smallest units, exact.
    pub expected: i128,
    /// What the ledger holds, smallest units, exact.
    pub actual: i128,
}

/// The result of one reconciliation run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Every violation; empty when consistent.
    pub findings: Vec<Finding>,
    /// Balances checked.
    pub balances_checked: i64,
    /// Assets checked.
    pub assets_checked: i64,
}

/// One balance row with the exact sums the ledger's records give for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceSums {
    /// The account.
    pub account: AccountId,
    /// The asset.
    pub asset: AssetCode,
    /// Stored available amount.
    pub available: i64,
    /// Stored frozen amount.
    pub frozen: i64,
    /// Sum of the balance's postings, both buckets.
    pub postings: i128,
    /// Sum of the balance's open holds.
    pub open_holds: i128,
}

impl BalanceSums {
    /// The findings of this balance: `BalancePostingsMismatch` when available + frozen
    /// differs from its postings, `FrozenHoldsMismatch` when frozen differs from its open
    /// holds (in that order; none when consistent).
    pub fn findings(&self) -> impl Iterator<Item = Finding> + '_ {
        let total = i128::from(self.available) + i128::from(self.frozen);
        let checks = [
            (FindingKind::BalancePostingsMismatch, self.postings, total),
            (FindingKind::FrozenHoldsMismatch, self.open_holds, i128::from(self.frozen)),
        ];
        checks.into_iter().filter(|(_, expected, actual)| expected != actual).map(|(kind, expected, actual)| Finding {
            kind,
            account: Some(self.account.clone()),
            asset: self.asset.clone(),
            expected,
            actual,
        })
    }
}

/// The finding of postings recorded on a balance that has no row (the row then holds
/// zero): `BalancePostingsMismatch` unless they sum to zero.
pub fn orphan_postings(account: AccountId, asset: AssetCode, sum: i128) -> Option<Finding> {
    (sum != 0).then_some(Finding {
        kind: FindingKind::BalancePostingsMismatch,
        account: Some(account),
        asset,
        expected: sum,
        actual: 0,
    })
}

/// The finding of an asset whose balances sum to `total`: `AssetNotZeroSum` unless zero.
pub fn asset_total(asset: AssetCode, total: i128) -> Option<Finding> {
    (total != 0).then_some(Finding {
        kind: FindingKind::AssetNotZeroSum,
        account: None,
        asset,
        expected: 0,
        actual: total,
    })
}

/// The exact value of a sum computed in two parts: `high` the sum of each value's upper
/// 32 bits (arithmetic shift) and `low` the sum of its lower 32 bits (unsigned). Summing
/// the parts apart keeps each within i64 for up to 2^31 values, where one SUM of the
/// values would overflow.
pub fn from_parts(high: i64, low: i64) -> i128 {
    (i128::from(high) << 32) + i128::from(low)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::{Code, UserId};

    fn split(value: i64) -> (i64, i64) {
        (value >> 32, value & 0xFFFF_FFFF)
    }

    #[test]
    fn parts_rebuild_every_value_and_sums_past_i64() {
        for value in [0, 1, -1, i64::MAX, -i64::MAX, i64::MIN, 1 << 32, -(1 << 32) - 1, 123_456_789_012] {
            let (high, low) = split(value);
            assert_eq!(from_parts(high, low), i128::from(value), "{value}");
        }
        let values = [i64::MAX, i64::MAX, -i64::MAX, -i64::MAX, i64::MAX];
        let (high, low) = values.iter().map(|value| split(*value)).fold((0, 0), |(h, l), (vh, vl)| (h + vh, l + vl));
        assert_eq!(from_parts(high, low), i128::from(i64::MAX));
    }

    #[test]
    fn balances_are_checked_exactly() {
        let sums = BalanceSums {
            account: AccountId::User(UserId::parse(1).expect("user")),
            asset: Code::parse("POINTS").expect("code"),
            available: i64::MAX,
            frozen: i64::MAX,
            postings: 2 * i128::from(i64::MAX),
            open_holds: i128::from(i64::MAX),
        };
        assert_eq!(sums.findings().count(), 0, "available + frozen past i64 is legal");
        let off = BalanceSums { postings: 0, open_holds: 1, ..sums };
        let kinds: Vec<_> = off.findings().map(|finding| (finding.kind, finding.expected, finding.actual)).collect();
        assert_eq!(
            kinds,
            [
                (FindingKind::BalancePostingsMismatch, 0, 2 * i128::from(i64::MAX)),
                (FindingKind::FrozenHoldsMismatch, 1, i128::from(i64::MAX)),
            ]
        );
        let asset = Code::parse("POINTS").expect("code");
        assert_eq!(asset_total(asset.clone(), 0), None);
        assert_eq!(asset_total(asset, 1 << 70).map(|finding| finding.actual), Some(1 << 70));
    }
}
