//! The whole check (docs/ledger.md, "Reconciliation"), in bounded chunks: a pass reads the
//! ledger in short snapshots of at most a few thousand rows each ([`Limits`]), never one
//! long snapshot, so it neither holds back SQLite's WAL nor PostgreSQL's vacuum, and
//! stops between chunks at its [`Position`] — a call's time budget, a job's shutdown —
//! to resume there later. Phases: the balances (`balances`), the entries (`entries`), then
//! the assets' running totals kept by the incremental check. Every sum is exact (`i128`,
//! summed in Rust): a legal ledger holds sums past i64.

mod balances;
mod entries;
#[cfg(test)]
mod plan_tests;
mod position;
mod scheduled;

use std::time::{Duration, Instant};

use economy_kit::db::LongRead;

pub use position::Position;
pub use scheduled::ScheduledStep;

use super::LedgerStore;
use crate::domain::LedgerError;
use crate::domain::ids::{AccountId, Code};
use crate::domain::reconcile::{Finding, FindingKind, Report, asset_total};

/// How much one chunk reads: at most `postings` postings (one entry's postings on one
/// balance are never split, whatever their number) and `balances` balance rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Postings per chunk (at least 1).
    pub postings: i64,
    /// Balance rows per chunk (at least 1).
    pub balances: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Self { postings: 20_000, balances: 1_000 }
    }
}

/// What one chunk found, and where the pass goes on (`None`: it is complete).
#[derive(Debug, Default)]
pub struct Chunk {
    findings: Vec<Finding>,
    balances_checked: i64,
    entries_checked: i64,
    assets_checked: i64,
    next: Option<Position>,
}

impl LedgerStore {
    /// Runs the whole check from `from`, chunk by chunk, until the pass is complete or
    /// `budget` has passed (at least one chunk runs). Returns the report of the part
    /// checked — findings in the order of their kinds: postings, frozen, asset totals,
    /// running balances — and where to resume (`None`: complete). A chunk's read stops on
    /// the database when the call is dropped (docs/operations.md, "Deadlines").
    pub async fn reconcile(
        &self,
        from: Position,
        limits: &Limits,
        budget: Duration,
    ) -> Result<(Report, Option<Position>), LedgerError> {
        let started = Instant::now();
        let mut report = Report::default();
        let mut at = from;
        loop {
            let chunk = self.reconcile_chunk(&at, limits).await?;
            report.findings.extend(chunk.findings);
            report.balances_checked += chunk.balances_checked;
            report.entries_checked += chunk.entries_checked;
            report.assets_checked += chunk.assets_checked;
            match chunk.next {
                Some(next) if started.elapsed() < budget => at = next,
                next => {
                    report.findings.sort_by_key(|finding| kind_rank(finding.kind));
                    return Ok((report, next));
                }
            }
        }
    }

    /// A whole pass with the default chunks, however long it takes (tests, tools).
    pub async fn reconcile_whole(&self) -> Result<Report, LedgerError> {
        let (report, _) = self.reconcile(Position::start(), &Limits::default(), Duration::MAX).await?;
        Ok(report)
    }

    /// One chunk of a pass, at `at`, in one snapshot.
    async fn reconcile_chunk(&self, at: &Position, limits: &Limits) -> Result<Chunk, LedgerError> {
        let mut read = self.db.long_read().await?;
        read.one_snapshot().await?;
        let chunk = match at {
            Position::Balances { account, asset, seq, chain } => {
                balances::check(&mut read, self.db.backend(), limits, (account.clone(), asset.clone()), *seq, *chain)
                    .await?
            }
            Position::Entries { after } => entries::check(&mut read, limits, after).await?,
            Position::Totals => totals(&mut read).await?,
        };
        read.finish().await?;
        Ok(chunk)
    }
}

/// The last step: each asset's running total of verified balances (kept by the
/// incremental check, `reconciled_assets`) must be zero.
async fn totals(read: &mut LongRead) -> Result<Chunk, LedgerError> {
    let totals: Vec<(String, String)> =
        sqlx::query_as("SELECT asset_code, total FROM reconciled_assets ORDER BY asset_code")
            .fetch_all(&mut *read)
            .await?;
    let mut chunk = Chunk::default();
    for (code, text) in totals {
        let total: i128 = text.parse().map_err(|_| LedgerError::Storage(format!("corrupt total {text}").into()))?;
        chunk.findings.extend(asset_total(asset(&code)?, total, None));
    }
    let (assets,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM assets").fetch_one(&mut *read).await?;
    chunk.assets_checked = assets;
    Ok(chunk)
}

/// The order of a report's findings by kind.
fn kind_rank(kind: FindingKind) -> u8 {
    match kind {
        FindingKind::BalancePostingsMismatch => 0,
        FindingKind::FrozenHoldsMismatch => 1,
        FindingKind::AssetNotZeroSum => 2,
        FindingKind::AvailableAfterMismatch | FindingKind::FrozenAfterMismatch | FindingKind::BalanceSeqMismatch => 3,
    }
}

fn account(key: &str) -> Result<AccountId, LedgerError> {
    AccountId::from_key(key).map_err(|_| LedgerError::Storage(format!("corrupt account {key}").into()))
}

fn asset(code: &str) -> Result<Code, LedgerError> {
    Code::parse(code).map_err(|_| LedgerError::Storage(format!("corrupt asset code {code}").into()))
}
