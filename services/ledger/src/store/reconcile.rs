//! Reconciliation queries (docs/ledger.md, "Reconciliation"). No sum is taken whole in SQL: SQLite's
//! SUM fails with "integer overflow" past i64, and a cast of PostgreSQL's NUMERIC sum to
//! BIGINT fails alike, yet a legal ledger reaches such sums (balances of one asset on
//! both sides of i64::MAX). Each value is split into its upper 32 bits (arithmetic shift)
//! and its lower 32 bits (mask), each part is summed apart, which stays within i64 for
//! up to 2^31 rows, and `domain::reconcile::from_parts` rebuilds the exact sum as i128.
//! The comparisons are made there, exactly, so one SQL text serves both backends. The
//! running balances are checked from the postings streamed in balance_seq order, one
//! entry's postings on one balance at a time (`domain::reconcile::RunningBalance`).

use economy_kit::db::LongRead;
use futures_util::TryStreamExt;

use super::LedgerStore;
use crate::domain::LedgerError;
use crate::domain::ids::{AccountId, Code};
use crate::domain::reconcile::{
    BalanceSums, EntryPostings, Finding, FindingKind, Report, RunningBalance, asset_total, from_parts, orphan_postings,
    unposted_seq,
};

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

/// Every posting in running order (by balance, then balance_seq, then entry and leg) with
/// its balance's row (NULLs when it has none).
const RUNNING: &str = "SELECT p.account, p.asset_code, p.entry_id, p.bucket, p.amount, p.available_after, \
     p.frozen_after, p.balance_seq, b.available AS row_available, b.frozen AS row_frozen, b.seq AS row_seq \
     FROM postings p LEFT JOIN balances b ON b.account = p.account AND b.asset_code = p.asset_code \
     ORDER BY p.account, p.asset_code, p.balance_seq, p.entry_id, p.seq";

/// The balance rows without postings whose version is not 0.
const UNPOSTED_SEQS: &str = "SELECT b.account, b.asset_code, b.seq FROM balances b WHERE b.seq <> 0 \
     AND NOT EXISTS (SELECT 1 FROM postings p WHERE p.account = b.account AND p.asset_code = b.asset_code) \
     ORDER BY b.account, b.asset_code";

/// A row of [`RUNNING`].
#[derive(sqlx::FromRow)]
struct RunningRow {
    account: String,
    asset_code: String,
    entry_id: String,
    bucket: String,
    amount: i64,
    available_after: i64,
    frozen_after: i64,
    balance_seq: i64,
    row_available: Option<i64>,
    row_frozen: Option<i64>,
    row_seq: Option<i64>,
}

impl RunningRow {
    /// The balance row: `(available, frozen, seq)`, `None` when missing.
    fn balance_row(&self) -> Option<(i64, i64, i64)> {
        Some((self.row_available?, self.row_frozen?, self.row_seq?))
    }

    /// Whether this posting belongs to `entry` (same entry at the same version).
    fn continues(&self, entry: &EntryPostings) -> bool {
        self.entry_id == entry.entry_id && self.balance_seq == entry.balance_seq
    }

    /// Adds this posting to `entry`.
    fn add_to(&self, entry: &mut EntryPostings) {
        match self.bucket.as_str() {
            "frozen" => entry.frozen += i128::from(self.amount),
            _ => entry.available += i128::from(self.amount),
        }
        entry.afters.push((self.available_after, self.frozen_after));
    }

    /// A new entry's postings starting with this one.
    fn start(&self) -> EntryPostings {
        let mut entry = EntryPostings {
            entry_id: self.entry_id.clone(),
            balance_seq: self.balance_seq,
            available: 0,
            frozen: 0,
            afters: Vec::new(),
        };
        self.add_to(&mut entry);
        entry
    }
}

/// The running balance being checked: its chain, the balance row, the entry being read.
struct Chain {
    running: RunningBalance,
    row: Option<(i64, i64, i64)>,
    entry: EntryPostings,
}

impl Chain {
    /// The findings of the chain once its last posting is read.
    fn finish(mut self) -> Vec<Finding> {
        self.running.check(&self.entry);
        self.running.finish(self.row)
    }
}

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
    /// assets not summing to zero). Balances are streamed, never all held in memory. A
    /// long read: dropped (the caller gone, the request's deadline passed), it stops its
    /// query on the database (docs/operations.md, "Deadlines").
    pub async fn reconcile(&self) -> Result<Report, LedgerError> {
        let mut read = self.db.long_read().await?;
        let report = self.reconcile_on(&mut read).await?;
        read.finish().await?;
        Ok(report)
    }

    /// [`LedgerStore::reconcile`] on `read`.
    async fn reconcile_on(&self, read: &mut LongRead) -> Result<Report, LedgerError> {
        let mut postings = Vec::new();
        let mut frozen = Vec::new();
        let mut balances_checked = 0_i64;
        let mut rows = sqlx::query_as::<_, BalanceRow>(BALANCES).fetch(&mut *read);
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
        let orphans: Vec<SumRow> = sqlx::query_as(ORPHAN_POSTINGS).fetch_all(&mut *read).await?;
        for (key, code, high, low) in orphans {
            postings.extend(orphan_postings(account(&key)?, asset(&code)?, from_parts(high, low)));
        }
        let totals: Vec<(String, i64, i64)> = sqlx::query_as(ASSET_TOTALS).fetch_all(&mut *read).await?;
        let mut assets: Vec<Finding> = Vec::new();
        for (code, high, low) in totals {
            assets.extend(asset_total(asset(&code)?, from_parts(high, low)));
        }
        let (assets_checked,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM assets").fetch_one(&mut *read).await?;
        let running = self.running_balances(read).await?;
        let findings = [postings, frozen, assets, running].concat();
        Ok(Report { findings, balances_checked, assets_checked })
    }

    /// The findings of the running balances (by account and asset): every balance's
    /// postings streamed in balance_seq order against its row, then the rows without
    /// postings whose version is not 0.
    async fn running_balances(&self, read: &mut LongRead) -> Result<Vec<Finding>, LedgerError> {
        let mut findings = Vec::new();
        let mut chain: Option<Chain> = None;
        let mut rows = sqlx::query_as::<_, RunningRow>(RUNNING).fetch(&mut *read);
        while let Some(row) = rows.try_next().await? {
            let (account, asset) = (account(&row.account)?, asset(&row.asset_code)?);
            match chain.as_mut() {
                Some(current) if current.running.is_of(&account, &asset) => {
                    if row.continues(&current.entry) {
                        row.add_to(&mut current.entry);
                    } else {
                        let next = row.start();
                        current.running.check(&std::mem::replace(&mut current.entry, next));
                    }
                }
                _ => {
                    let next = Chain {
                        running: RunningBalance::new(account, asset),
                        row: row.balance_row(),
                        entry: row.start(),
                    };
                    findings.extend(chain.replace(next).map(Chain::finish).unwrap_or_default());
                }
            }
        }
        drop(rows);
        findings.extend(chain.map(Chain::finish).unwrap_or_default());
        let unposted: Vec<(String, String, i64)> = sqlx::query_as(UNPOSTED_SEQS).fetch_all(&mut *read).await?;
        for (key, code, seq) in unposted {
            findings.extend(unposted_seq(account(&key)?, asset(&code)?, seq));
        }
        Ok(findings)
    }
}
