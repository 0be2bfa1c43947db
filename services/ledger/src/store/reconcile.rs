//! Reconciliation queries (DESIGN.md §3 Ledger). Sums are cast to BIGINT so PostgreSQL
//! returns i64 rather than NUMERIC.

use super::LedgerStore;
use crate::domain::LedgerError;
use crate::domain::ids::{AccountId, Code};
use crate::domain::reconcile::{Finding, FindingKind, Report};

/// Balances whose available + frozen differs from the sum of their postings, including
/// postings with no balance row at all.
const POSTINGS_MISMATCH: &str = "\
    SELECT b.account, b.asset_code, COALESCE(p.total, 0), b.available + b.frozen FROM balances b \
    LEFT JOIN (SELECT account, asset_code, CAST(SUM(amount) AS BIGINT) AS total FROM postings GROUP BY account, asset_code) p \
      ON p.account = b.account AND p.asset_code = b.asset_code \
    WHERE b.available + b.frozen <> COALESCE(p.total, 0) \
    UNION ALL \
    SELECT p.account, p.asset_code, CAST(SUM(p.amount) AS BIGINT), CAST(0 AS BIGINT) FROM postings p \
    WHERE NOT EXISTS (SELECT 1 FROM balances b WHERE b.account = p.account AND b.asset_code = p.asset_code) \
    GROUP BY p.account, p.asset_code HAVING SUM(p.amount) <> 0";

/// Balances whose frozen differs from the sum of their open holds.
const FROZEN_MISMATCH: &str = "\
    SELECT b.account, b.asset_code, COALESCE(h.total, 0), b.frozen FROM balances b \
    LEFT JOIN (SELECT account, asset_code, CAST(SUM(amount) AS BIGINT) AS total FROM holds WHERE status = 'open' \
               GROUP BY account, asset_code) h \
      ON h.account = b.account AND h.asset_code = b.asset_code \
    WHERE b.frozen <> COALESCE(h.total, 0)";

/// Assets whose balances do not sum to zero.
const ASSET_NOT_ZERO: &str = "\
    SELECT '', asset_code, CAST(0 AS BIGINT), CAST(SUM(available + frozen) AS BIGINT) FROM balances \
    GROUP BY asset_code HAVING SUM(available + frozen) <> 0";

impl LedgerStore {
    /// Runs every check and reports each violation.
    pub async fn reconcile(&self) -> Result<Report, LedgerError> {
        let mut findings = Vec::new();
        for (kind, sql) in [
            (FindingKind::BalancePostingsMismatch, POSTINGS_MISMATCH),
            (FindingKind::FrozenHoldsMismatch, FROZEN_MISMATCH),
            (FindingKind::AssetNotZeroSum, ASSET_NOT_ZERO),
        ] {
            let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(sql).fetch_all(self.db.pool()).await?;
            for (account, asset, expected, actual) in rows {
                findings.push(Finding {
                    kind,
                    account: AccountId::from_key(&account).ok(),
                    asset: Code::parse(&asset)
                        .map_err(|_| LedgerError::Storage(format!("corrupt asset code {asset}")))?,
                    expected,
                    actual,
                });
            }
        }
        let (balances_checked,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM balances").fetch_one(self.db.pool()).await?;
        let (assets_checked,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM assets").fetch_one(self.db.pool()).await?;
        Ok(Report { findings, balances_checked, assets_checked })
    }
}
