//! Reconciliation findings (docs/ledger.md, "Reconciliation"): per balance, available + frozen equals
//! the sum of its postings and frozen equals its open holds; per asset, all accounts sum
//! to zero; per balance, the resulting balances its postings record run without a gap
//! from zero to the balance row ([`RunningBalance`]).
//!
//! Every sum is exact (`i128`): a legal ledger may hold balances of one asset whose sum
//! leaves i64 (two users at `i64::MAX` against two system accounts at `-i64::MAX`), and a
//! balance's available + frozen may too, so nothing here may overflow.

use serde::{Deserialize, Serialize};

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
    /// A recorded `available_after` disagrees with the running balance (with an entry),
    /// or the balance row's available with its latest posting's (without).
    AvailableAfterMismatch,
    /// As [`FindingKind::AvailableAfterMismatch`], for `frozen_after` and frozen.
    FrozenAfterMismatch,
    /// A recorded `balance_seq` is not the previous one + 1 (with an entry), or the
    /// balance row's seq is not its latest posting's (without).
    BalanceSeqMismatch,
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
    /// The journal entry whose postings disagree (running-balance findings about a
    /// posting); `None` otherwise.
    pub entry_id: Option<String>,
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
    /// Journal entries checked.
    pub entries_checked: i64,
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
            entry_id: None,
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
        entry_id: None,
    })
}

/// The finding of an asset whose total is `total` (the running total of its verified
/// balances, or with `entry_id` one entry's postings of it): `AssetNotZeroSum` unless
/// zero.
pub fn asset_total(asset: AssetCode, total: i128, entry_id: Option<&str>) -> Option<Finding> {
    (total != 0).then_some(Finding {
        kind: FindingKind::AssetNotZeroSum,
        account: None,
        asset,
        expected: 0,
        actual: total,
        entry_id: entry_id.map(str::to_owned),
    })
}

/// One entry's postings on one balance, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryPostings {
    /// The entry.
    pub entry_id: String,
    /// The balance's version the postings record.
    pub balance_seq: i64,
    /// Sum of the entry's available-bucket amounts on the balance, exact.
    pub available: i128,
    /// Sum of its frozen-bucket amounts, exact.
    pub frozen: i128,
    /// `(available_after, frozen_after)` of each of its postings on the balance.
    pub afters: Vec<(i64, i64)>,
}

/// Where a [`RunningBalance`] stands between two chunks of the whole check
/// (docs/ledger.md, "Reconciliation"): what it expects next and what the latest entry
/// recorded. Its findings so far are not part of it (they were reported).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainState {
    /// The expected available amount (the sum of the available postings), exact.
    pub available: i128,
    /// The expected frozen amount, exact.
    pub frozen: i128,
    /// The expected version.
    pub seq: i64,
    /// `(available_after, frozen_after, balance_seq)` the latest entry recorded.
    pub latest: (i128, i128, i64),
}

/// The running balance of one `(account, asset)`, checked entry by entry in balance_seq
/// order (docs/ledger.md, "Resulting balances"): each entry's postings must record the
/// previous entry's after-values plus their own amounts and the previous version + 1
/// (the first entry runs from zero and version 0), all alike; the balance row must hold
/// what the latest entry records. After a mismatch the chain runs on from what it
/// expected, so one altered value is reported once.
#[derive(Debug, Clone)]
pub struct RunningBalance {
    account: AccountId,
    asset: AssetCode,
    available: i128,
    frozen: i128,
    seq: i64,
    /// What the latest entry records: `(available_after, frozen_after, balance_seq)`.
    latest: (i128, i128, i64),
    findings: Vec<Finding>,
}

impl RunningBalance {
    /// The chain of `account`'s `asset` before its first entry.
    pub fn new(account: AccountId, asset: AssetCode) -> Self {
        Self { account, asset, available: 0, frozen: 0, seq: 0, latest: (0, 0, 0), findings: Vec::new() }
    }

    /// A chain that resumes from a verified state `(available, frozen, seq)` (the
    /// incremental check's starting point for a balance; docs/ledger.md, "Reconciliation").
    pub fn resume(account: AccountId, asset: AssetCode, (available, frozen, seq): (i64, i64, i64)) -> Self {
        let (available, frozen) = (i128::from(available), i128::from(frozen));
        Self { account, asset, available, frozen, seq, latest: (available, frozen, seq), findings: Vec::new() }
    }

    /// A chain that goes on from `state` (the whole check's next chunk).
    pub fn from_state(account: AccountId, asset: AssetCode, state: ChainState) -> Self {
        let ChainState { available, frozen, seq, latest } = state;
        Self { account, asset, available, frozen, seq, latest, findings: Vec::new() }
    }

    /// Where the chain stands (its findings left out).
    pub fn state(&self) -> ChainState {
        ChainState { available: self.available, frozen: self.frozen, seq: self.seq, latest: self.latest }
    }

    /// The sum of the postings checked so far, both buckets, exact.
    pub fn postings_total(&self) -> i128 {
        self.available + self.frozen
    }

    /// The state reached: `(available, frozen, seq)` of the last entry checked, as its
    /// postings recorded them.
    pub fn latest(&self) -> (i128, i128, i64) {
        self.latest
    }

    /// The findings so far, without the row comparison of [`RunningBalance::finish`].
    pub fn into_findings(self) -> Vec<Finding> {
        self.findings
    }

    /// Whether this is the chain of `account` and `asset`.
    pub fn is_of(&self, account: &AccountId, asset: &AssetCode) -> bool {
        &self.account == account && &self.asset == asset
    }

    /// Checks the next entry's postings on the balance.
    pub fn check(&mut self, entry: &EntryPostings) {
        self.available += entry.available;
        self.frozen += entry.frozen;
        self.seq += 1;
        let id = Some(entry.entry_id.as_str());
        self.expect(FindingKind::BalanceSeqMismatch, id, i128::from(self.seq), i128::from(entry.balance_seq));
        for (available, frozen) in distinct(&entry.afters) {
            self.expect(FindingKind::AvailableAfterMismatch, id, self.available, i128::from(available));
            self.expect(FindingKind::FrozenAfterMismatch, id, self.frozen, i128::from(frozen));
        }
        let (available, frozen) = entry.afters.first().copied().unwrap_or_default();
        self.latest = (i128::from(available), i128::from(frozen), entry.balance_seq);
    }

    /// The findings of the chain, given the balance row (`(available, frozen, seq)`;
    /// `None` when the balance has no row, which then holds zero at version 0).
    pub fn finish(mut self, row: Option<(i64, i64, i64)>) -> Vec<Finding> {
        let (available, frozen, seq) = row.unwrap_or_default();
        let (latest_available, latest_frozen, latest_seq) = self.latest;
        self.expect(FindingKind::AvailableAfterMismatch, None, latest_available, i128::from(available));
        self.expect(FindingKind::FrozenAfterMismatch, None, latest_frozen, i128::from(frozen));
        self.expect(FindingKind::BalanceSeqMismatch, None, i128::from(latest_seq), i128::from(seq));
        self.findings
    }

    fn expect(&mut self, kind: FindingKind, entry_id: Option<&str>, expected: i128, actual: i128) {
        if expected != actual {
            self.findings.push(Finding {
                kind,
                account: Some(self.account.clone()),
                asset: self.asset.clone(),
                expected,
                actual,
                entry_id: entry_id.map(str::to_owned),
            });
        }
    }
}

/// `pairs` without repeats, in first-seen order.
fn distinct(pairs: &[(i64, i64)]) -> Vec<(i64, i64)> {
    let mut seen = Vec::new();
    for pair in pairs {
        if !seen.contains(pair) {
            seen.push(*pair);
        }
    }
    seen
}

/// The finding of a balance row without postings whose version is not 0.
pub fn unposted_seq(account: AccountId, asset: AssetCode, seq: i64) -> Option<Finding> {
    (seq != 0).then_some(Finding {
        kind: FindingKind::BalanceSeqMismatch,
        account: Some(account),
        asset,
        expected: 0,
        actual: i128::from(seq),
        entry_id: None,
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
        assert_eq!(asset_total(asset.clone(), 0, None), None);
        assert_eq!(asset_total(asset, 1 << 70, None).map(|finding| finding.actual), Some(1 << 70));
    }

    fn entry(id: &str, seq: i64, amounts: (i128, i128), afters: &[(i64, i64)]) -> EntryPostings {
        EntryPostings {
            entry_id: id.into(),
            balance_seq: seq,
            available: amounts.0,
            frozen: amounts.1,
            afters: afters.to_vec(),
        }
    }

    fn chain() -> RunningBalance {
        RunningBalance::new(AccountId::User(UserId::parse(1).expect("user")), Code::parse("POINTS").expect("code"))
    }

    fn kinds(findings: &[Finding]) -> Vec<(FindingKind, Option<&str>, i128, i128)> {
        findings
            .iter()
            .map(|finding| (finding.kind, finding.entry_id.as_deref(), finding.expected, finding.actual))
            .collect()
    }

    #[test]
    fn a_consistent_chain_ends_at_the_balance_row() {
        let mut running = chain();
        running.check(&entry("a", 1, (10, 0), &[(10, 0)]));
        running.check(&entry("b", 2, (-4, 4), &[(6, 4), (6, 4)]));
        assert!(running.clone().finish(Some((6, 4, 2))).is_empty());
        let findings = running.finish(Some((7, 4, 3)));
        let off = kinds(&findings);
        assert_eq!(
            off,
            [(FindingKind::AvailableAfterMismatch, None, 6, 7), (FindingKind::BalanceSeqMismatch, None, 2, 3)]
        );
    }

    #[test]
    fn an_altered_value_is_reported_once_and_the_chain_runs_on() {
        let mut running = chain();
        running.check(&entry("a", 1, (10, 0), &[(15, 0)]));
        running.check(&entry("b", 3, (-4, 4), &[(6, 4), (6, 5)]));
        running.check(&entry("c", 3, (1, 0), &[(7, 4)]));
        let findings = running.finish(Some((7, 4, 3)));
        let found = kinds(&findings);
        assert_eq!(
            found,
            [
                (FindingKind::AvailableAfterMismatch, Some("a"), 10, 15),
                (FindingKind::BalanceSeqMismatch, Some("b"), 2, 3),
                (FindingKind::FrozenAfterMismatch, Some("b"), 4, 5),
            ]
        );
        assert!(unposted_seq(AccountId::System("S".into()), Code::parse("POINTS").expect("code"), 0).is_none());
    }
}
