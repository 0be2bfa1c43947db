//! Reconciliation findings (DESIGN.md §3 Ledger): per balance, available + frozen equals
//! the sum of its postings and frozen equals its open holds; per asset, all accounts sum
//! to zero.

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
    /// What the invariant requires.
    pub expected: i64,
    /// What the ledger holds.
    pub actual: i64,
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
