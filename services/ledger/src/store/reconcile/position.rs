//! Where a pass of the whole check stands between two chunks, and its cursor text
//! (docs/ledger.md, "Reconciliation"). A pass runs three phases in order: the balances
//! (each balance's postings in `balance_seq` order against its row), the entries (each
//! entry's postings sum to zero per asset), then the assets' running totals.

use serde::{Deserialize, Serialize};

use crate::domain::reconcile::ChainState;

/// The cursor's version prefix.
const PREFIX: &str = "r1.";

/// A balance's key: account key and asset code.
pub type Key = (String, String);

/// Where a pass stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Position {
    /// The balances phase. Done: every posting ordered at or before `(account, asset,
    /// seq)` and every balance row ordered before `(account, asset)` — and that row too
    /// when `seq` is `i64::MAX`.
    Balances {
        /// The account key of the balance reached.
        account: String,
        /// Its asset code.
        asset: String,
        /// Its last version read (`i64::MAX`: all of it, its row included).
        seq: i64,
        /// Where its running balance stands when its postings were cut (`None`: none of
        /// them read yet, or all).
        chain: Option<ChainState>,
    },
    /// The entries phase.
    Entries {
        /// Every entry whose id is at or before this one is checked.
        after: String,
    },
    /// The assets' running totals: the last step.
    Totals,
}

impl Position {
    /// The start of a pass.
    pub fn start() -> Self {
        Self::after_balance(Key::default())
    }

    /// The balances phase with `key` and every balance before it done.
    pub fn after_balance((account, asset): Key) -> Self {
        Self::Balances { account, asset, seq: i64::MAX, chain: None }
    }

    /// The cursor text: opaque to clients, `r1.` and the position's JSON in hex.
    pub fn to_cursor(&self) -> String {
        // Serializing plain fields cannot fail.
        let json = serde_json::to_vec(self).unwrap_or_default();
        format!("{PREFIX}{}", hex::encode(json))
    }

    /// The position of a cursor text; `None` when it is not one [`Position::to_cursor`]
    /// made (or its balance version is negative).
    pub fn from_cursor(text: &str) -> Option<Self> {
        let bytes = hex::decode(text.strip_prefix(PREFIX)?).ok()?;
        let position: Self = serde_json::from_slice(&bytes).ok()?;
        match &position {
            Self::Balances { seq, .. } if *seq < 0 => None,
            _ => Some(position),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_with_exact_chains() {
        let chain = ChainState { available: i128::from(i64::MAX) * 3, frozen: -1, seq: 7, latest: (1, 2, 7) };
        let positions = [
            Position::start(),
            Position::Balances { account: "user:1".into(), asset: "POINTS".into(), seq: 7, chain: Some(chain) },
            Position::Entries { after: "0192-ab".into() },
            Position::Totals,
        ];
        for position in positions {
            assert_eq!(Position::from_cursor(&position.to_cursor()), Some(position));
        }
    }

    #[test]
    fn foreign_cursors_are_refused() {
        let negative = Position::Balances { account: String::new(), asset: String::new(), seq: -1, chain: None };
        for text in ["", "r1.", "r1.zz", "r2.7b7d", &format!("r1.{}", hex::encode("{}")), &negative.to_cursor()] {
            assert_eq!(Position::from_cursor(text), None, "{text}");
        }
    }
}
