//! Reconciliation queries (docs/ledger.md, "Reconciliation"). No sum is taken whole in SQL: SQLite's
//! SUM fails with "integer overflow" past i64, and a cast of PostgreSQL's NUMERIC sum to
//! BIGINT fails alike, yet a legal ledger reaches such sums (balances of one asset on
//! both sides of i64::MAX). Each value is split into its upper 32 bits (arithmetic shift)
//! and its lower 32 bits (mask), each part is summed apart, which stays within i64 for
//! up to 2^31 rows, and `domain::reconcile::from_parts` rebuilds the exact sum as i128.
//! The comparisons are made there, exactly, so one SQL text serves both backends.

use futures_util::TryStreamExt;

use super::LedgerStore;
use crate::domain::LedgerError;
use crate::domain::ids::{AccountId, Code};
use crate::domain::reconcile::{BalanceSums, Finding, FindingKind, Report, asset_total, from_parts, orphan_postings};

/// The two parts of `SUM(value)`, `high` and `low`, each as BIGINT (PostgreSQL's SUM of
/// BIGINT is NUMERIC). Parenthesized: SQLite binds `+` tighter than `>>` and `&`.
macro_rules! split_sum {
    ($value:literal) => {
        concat!(
            "CAST(SUM((",
            $value,
            ") >> 32) AS BIGINT) AS high, CAST(SUM((",
            $value,
            ") & 4294967295) AS BIGINT) AS low"
        )
    };
}

/// Every balance row with the split sums of its postings and of its open holds.
const BALANCES: &str = concat!(
    "SELECT b.account, b.asset_code, b.available, b.frozen, COALESCE(p.high, 0) AS postings_high, \
     COALESCE(p.low, 0) AS postings_low, COALESCE(h.high, 0) AS holds_high, COALESCE(h.low, 0) AS holds_low \
     FROM balances b \
     LEFT JOIN (SELECT account, asset_code, ",
    split_sum!("amount"),
    " FROM postings GROUP BY account, asset_code) AS p \
     ON p.account = b.account AND p.asset_code = b.asset_code \
     LEFT JOIN (SELECT account, asset_code, ",
    split_sum!("amount"),
    " FROM holds WHERE status = 'open' GROUP BY account, asset_code) AS h \
     ON h.account = b.account AND h.asset_code = b.asset_code \
     ORDER BY b.account, b.asset_code"
);

/// The split sums of the postings of every balance that has no row.
const ORPHAN_POSTINGS: &str = concat!(
    "SELECT p.account, p.asset_code, ",
    split_sum!("p.amount"),
    " FROM postings p \
     WHERE NOT EXISTS (SELECT 1 FROM balances b WHERE b.account = p.account AND b.asset_code = p.asset_code) \
     GROUP BY p.account, p.asset_code ORDER BY p.account, p.asset_code"
);

/// The split sums of every asset's balances (available and frozen).
const ASSET_TOTALS: &str = "SELECT asset_code, CAST(SUM((available >> 32) + (frozen >> 32)) AS BIGINT), \
     CAST(SUM((available & 4294967295) + (frozen & 4294967295)) AS BIGINT) FROM balances \
     GROUP BY asset_code ORDER BY asset_code";

/// A row of [`BALANCES`]: a balance and the split sums of its postings and open holds.
#[derive(sqlx::FromRow)]
struct BalanceRow {
    account: String,
    asset_code: String,
    available: i64,
    frozen: i64,
    postings_high: i64,
    postings_low: i64,
    holds_high: i64,
    holds_low: i64,
}

/// `(account, asset, high, low)`: a row of [`ORPHAN_POSTINGS`].
type SumRow = (String, String, i64, i64);

fn account(key: &str) -> Result<AccountId, LedgerError> {
    AccountId::from_key(key).map_err(|_| LedgerError::Storage(format!("corrupt account {key}").into()))
}

fn asset(code: &str) -> Result<Code, LedgerError> {
    Code::parse(code).map_err(|_| LedgerError::Storage(format!("corrupt asset code {code}").into()))
}

impl LedgerStore {
    /// Runs every check and reports each violation, exactly whatever the sums (findings of
    /// balances by account and asset: postings mismatches, then frozen mismatches, then
    /// assets not summing to zero). Balances are streamed, never all held in memory.
    pub async fn reconcile(&self) -> Result<Report, LedgerError> {
        let mut postings = Vec::new();
        let mut frozen = Vec::new();
        let mut balances_checked = 0_i64;
        let mut rows = sqlx::query_as::<_, BalanceRow>(BALANCES).fetch(self.db.pool());
        while let Some(row) = rows.try_next().await? {
            balances_checked += 1;
            let sums = BalanceSums {
                account: account(&row.account)?,
                asset: asset(&row.asset_code)?,
                available: row.available,
                frozen: row.frozen,
                postings: from_parts(row.postings_high, row.postings_low),
                open_holds: from_parts(row.holds_high, row.holds_low),
            };
            for finding in sums.findings() {
                match finding.kind {
                    FindingKind::BalancePostingsMismatch => postings.push(finding),
                    _ => frozen.push(finding),
                }
            }
        }
        drop(rows);
        let orphans: Vec<SumRow> = sqlx::query_as(ORPHAN_POSTINGS).fetch_all(self.db.pool()).await?;
        for (key, code, high, low) in orphans {
            postings.extend(orphan_postings(account(&key)?, asset(&code)?, from_parts(high, low)));
        }
        let totals: Vec<(String, i64, i64)> = sqlx::query_as(ASSET_TOTALS).fetch_all(self.db.pool()).await?;
        let mut assets: Vec<Finding> = Vec::new();
        for (code, high, low) in totals {
            assets.extend(asset_total(asset(&code)?, from_parts(high, low)));
        }
        let (assets_checked,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM assets").fetch_one(self.db.pool()).await?;
        let findings = [postings, frozen, assets].concat();
        Ok(Report { findings, balances_checked, assets_checked })
    }
}
