//! The compensation tool's write (docs/operations.md, "Operator tools"): an escrow return reset by a compare-and-set
//! on the row it read, committed in ONE transaction with its audit record
//! (`economy_kit::audit`), whose UNIQUE idempotency key makes a retry a replay.

use economy_kit::audit::{self, AuditDraft, AuditError, AuditPage, AuditQuery, AuditRecord};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::MarketStore;
use crate::domain::MarketError;
use crate::domain::compensation::{OutboxEntry, OutboxStatus, outbox_state};

impl From<AuditError> for MarketError {
    fn from(error: AuditError) -> Self {
        match error {
            AuditError::KeyReused(key) => Self::IdempotencyKeyReused(key),
            AuditError::Storage(error) => error.into(),
        }
    }
}

const OUTBOX_COLUMNS: &str =
    "id, listing_id, status, attempts, next_attempt_at, claimed_until, last_error, created_at, delivered_at";

fn entry_from_row(row: &AnyRow) -> Result<OutboxEntry, sqlx::Error> {
    let status: String = row.try_get("status")?;
    Ok(OutboxEntry {
        id: row.try_get("id")?,
        listing_id: row.try_get("listing_id")?,
        status: OutboxStatus::parse(&status)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown outbox status {status}").into()))?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        claimed_until: row.try_get("claimed_until")?,
        last_error: row.try_get("last_error")?,
        created_at: row.try_get("created_at")?,
        delivered_at: row.try_get("delivered_at")?,
    })
}

impl MarketStore {
    /// Rows not delivered (pending or dead) created at or before `cutoff`, oldest first.
    pub async fn stuck_outbox(&self, cutoff: i64, limit: i64) -> Result<Vec<OutboxEntry>, sqlx::Error> {
        let sql = format!(
            "SELECT {OUTBOX_COLUMNS} FROM market_outbox WHERE status IN ('pending', 'dead') AND created_at <= $1 \
             ORDER BY created_at, id LIMIT $2"
        );
        let rows = sqlx::query(&sql).bind(cutoff).bind(limit).fetch_all(self.db.pool()).await?;
        rows.iter().map(entry_from_row).collect()
    }

    /// The record `draft`'s key wrote before (replay), `IDEMPOTENCY_KEY_REUSED` when it
    /// wrote another fix, `None` when unused.
    pub async fn audit_prior(&self, draft: &AuditDraft) -> Result<Option<AuditRecord>, MarketError> {
        Ok(audit::prior(self.db.pool(), draft).await?)
    }

    /// One page of the market's audit records, newest first.
    pub async fn audit_records(&self, query: &AuditQuery) -> Result<AuditPage, MarketError> {
        Ok(audit::list(self.db.pool(), query).await?)
    }

    /// The escrow return with id `value`, or (`by_listing`) the one of listing `value`.
    pub async fn outbox_entry(&self, by_listing: bool, value: &str) -> Result<Option<OutboxEntry>, sqlx::Error> {
        let column = if by_listing { "listing_id" } else { "id" };
        let sql = format!("SELECT {OUTBOX_COLUMNS} FROM market_outbox WHERE {column} = $1");
        let row = sqlx::query(&sql).bind(value).fetch_optional(self.db.pool()).await?;
        row.as_ref().map(entry_from_row).transpose()
    }

    /// `RedriveOutbox`'s write: `entry` (as read, not delivered) reset to
    /// `entry.redriven(now)` by a compare-and-set on its status, attempts and lease, and
    /// the audit record of `draft` (before / after = `outbox_state`), in one transaction.
    /// `None` when the row moved meanwhile or the key was taken: nothing is written.
    pub async fn redrive_outbox(
        &self,
        entry: &OutboxEntry,
        draft: &AuditDraft,
        now: i64,
    ) -> Result<Option<AuditRecord>, MarketError> {
        let after = entry.redriven(now);
        let mut writer = self.db.writer().await?;
        let mut tx = writer.begin().await?;
        let reset = sqlx::query(
            "UPDATE market_outbox SET status = 'pending', attempts = 0, next_attempt_at = $1, claimed_until = 0, \
             delivered_at = 0 WHERE id = $2 AND status = $3 AND attempts = $4 AND claimed_until = $5",
        )
        .bind(now)
        .bind(&entry.id)
        .bind(entry.status.as_str())
        .bind(entry.attempts)
        .bind(entry.claimed_until)
        .execute(&mut *tx)
        .await?;
        if reset.rows_affected() != 1 {
            return Ok(None);
        }
        let record = draft.record(outbox_state(entry), outbox_state(&after), now);
        if !audit::insert(&mut tx, &record).await? {
            return Ok(None);
        }
        tx.commit().await?;
        Ok(Some(record))
    }
}
