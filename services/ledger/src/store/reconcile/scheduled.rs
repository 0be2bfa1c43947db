//! The scheduled pass of the whole check (docs/ledger.md, "Reconciliation"): its position
//! and running counts live in `reconcile_passes`, so a pass resumes after a restart, and
//! each chunk is applied with a compare-and-set on the position, so replicas running the
//! job together apply each chunk once (the loser re-reads and goes on from the winner's
//! position; its findings are dropped, the winner reported them).

use super::{Limits, Position};
use crate::domain::LedgerError;
use crate::domain::reconcile::Finding;
use crate::store::LedgerStore;

/// The pass's row.
const NAME: &str = "scheduled";

/// What one step of the scheduled pass did.
#[derive(Debug, Default)]
pub struct ScheduledStep {
    /// The findings of the chunk this step applied (empty when another run applied it).
    pub findings: Vec<Finding>,
    /// Whether the pass is complete with this step.
    pub complete: bool,
    /// The pass's totals so far: findings, balances and entries checked.
    pub totals: (i64, i64, i64),
}

/// The pass's row: cursor, findings, balances and entries checked.
type PassRow = (String, i64, i64, i64);

impl LedgerStore {
    /// Runs the next chunk of the scheduled pass and records where it stands. With no pass
    /// under way it starts one if `may_start`, and otherwise does nothing (`None`: the
    /// pass this run was in was completed, maybe by another replica). Errors: storage; a
    /// corrupt stored cursor starts over.
    pub async fn reconcile_scheduled_step(
        &self,
        limits: &Limits,
        may_start: bool,
    ) -> Result<Option<ScheduledStep>, LedgerError> {
        let (cursor, findings, balances, entries) = self.scheduled_pass().await?;
        if cursor.is_empty() && !may_start {
            return Ok(None);
        }
        let at = Position::from_cursor(&cursor).unwrap_or_else(Position::start);
        let chunk = self.reconcile_chunk(&at, limits).await?;
        let next = chunk.next.as_ref().map(Position::to_cursor).unwrap_or_default();
        let fresh = cursor.is_empty();
        let totals = (
            if fresh { 0 } else { findings } + chunk.findings.len() as i64,
            if fresh { 0 } else { balances } + chunk.balances_checked,
            if fresh { 0 } else { entries } + chunk.entries_checked,
        );
        if !self.save_scheduled(&cursor, &next, totals).await? {
            return Ok(Some(ScheduledStep {
                findings: Vec::new(),
                complete: false,
                totals: (findings, balances, entries),
            }));
        }
        Ok(Some(ScheduledStep { findings: chunk.findings, complete: next.is_empty(), totals }))
    }

    async fn scheduled_pass(&self) -> Result<PassRow, LedgerError> {
        let row: Option<PassRow> = sqlx::query_as(
            "SELECT pass_cursor, findings, balances_checked, entries_checked FROM reconcile_passes WHERE name = $1",
        )
        .bind(NAME)
        .fetch_optional(self.db.pool())
        .await?;
        Ok(row.unwrap_or_default())
    }

    /// Moves the pass from `from` to `to` unless another run moved it first (`false`).
    async fn save_scheduled(
        &self,
        from: &str,
        to: &str,
        (findings, balances, entries): (i64, i64, i64),
    ) -> Result<bool, LedgerError> {
        let now = self.clock.now_millis();
        let mut writer = self.db.writer().await?;
        let mut tx = writer.begin().await?;
        let moved = sqlx::query(
            "UPDATE reconcile_passes SET pass_cursor = $1, findings = $2, balances_checked = $3, entries_checked = $4, \
             updated_at = $5, started_at = CASE WHEN $6 = '' THEN $5 ELSE started_at END \
             WHERE name = $7 AND pass_cursor = $6",
        )
        .bind(to)
        .bind(findings)
        .bind(balances)
        .bind(entries)
        .bind(now)
        .bind(from)
        .bind(NAME)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        let committed = tx.commit().await;
        writer.finish(committed)?;
        Ok(moved)
    }
}
