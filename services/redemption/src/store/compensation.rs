//! The compensation tools' writes (issue 6): each fix is a compare-and-set on the row it
//! read, committed in ONE transaction with its audit record (`economy_kit::audit`), whose
//! UNIQUE idempotency key makes a retried fix a replay of the first.

use economy_kit::audit::{self, AuditDraft, AuditError, AuditPage, AuditQuery, AuditRecord};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::RedemptionStore;
use crate::domain::compensation::{OutboxEntry, OutboxStatus, order_state, outbox_state};
use crate::domain::{Order, RedemptionError};

impl From<AuditError> for RedemptionError {
    fn from(error: AuditError) -> Self {
        match error {
            AuditError::KeyReused(key) => Self::IdempotencyKeyReused(key),
            AuditError::Storage(error) => error.into(),
        }
    }
}

const OUTBOX_COLUMNS: &str = "id, order_id, action, item_instance_id, status, attempts, next_attempt_at, \
                              claimed_until, last_error, created_at, delivered_at";

fn entry_from_row(row: &AnyRow) -> Result<OutboxEntry, sqlx::Error> {
    let status: String = row.try_get("status")?;
    Ok(OutboxEntry {
        id: row.try_get("id")?,
        order_id: row.try_get("order_id")?,
        action: row.try_get("action")?,
        item_instance_id: row.try_get("item_instance_id")?,
        status: OutboxStatus::parse(&status)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown outbox status {status}").into()))?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        claimed_until: row.try_get("claimed_until")?,
        last_error: row.try_get::<Option<String>, _>("last_error")?.unwrap_or_default(),
        created_at: row.try_get("created_at")?,
        delivered_at: row.try_get("delivered_at")?,
    })
}

impl RedemptionStore {
    /// Rows not delivered (pending or dead) created at or before `cutoff`, oldest first.
    pub async fn stuck_outbox(&self, cutoff: i64, limit: i64) -> Result<Vec<OutboxEntry>, sqlx::Error> {
        let sql = format!(
            "SELECT {OUTBOX_COLUMNS} FROM redemption_outbox WHERE status IN ('pending', 'dead') AND created_at <= $1 \
             ORDER BY created_at, id LIMIT $2"
        );
        let rows = sqlx::query(&sql).bind(cutoff).bind(limit).fetch_all(self.db.pool()).await?;
        rows.iter().map(entry_from_row).collect()
    }

    /// The record `draft`'s key wrote before (replay), `IDEMPOTENCY_KEY_REUSED` when it
    /// wrote another fix, `None` when unused.
    pub async fn audit_prior(&self, draft: &AuditDraft) -> Result<Option<AuditRecord>, RedemptionError> {
        Ok(audit::prior(self.db.pool(), draft).await?)
    }

    /// One page of the redemption service's audit records, newest first.
    pub async fn audit_records(&self, query: &AuditQuery) -> Result<AuditPage, RedemptionError> {
        Ok(audit::list(self.db.pool(), query).await?)
    }

    /// The outbox row `id`.
    pub async fn outbox_entry(&self, id: &str) -> Result<Option<OutboxEntry>, sqlx::Error> {
        let sql = format!("SELECT {OUTBOX_COLUMNS} FROM redemption_outbox WHERE id = $1");
        let row = sqlx::query(&sql).bind(id).fetch_optional(self.db.pool()).await?;
        row.as_ref().map(entry_from_row).transpose()
    }

    /// The oldest undelivered outbox row of `order_id`, else its oldest delivered one.
    pub async fn outbox_of_order(&self, order_id: &str) -> Result<Option<OutboxEntry>, sqlx::Error> {
        let sql = format!(
            "SELECT {OUTBOX_COLUMNS} FROM redemption_outbox WHERE order_id = $1 \
             ORDER BY CASE WHEN status = 'delivered' THEN 1 ELSE 0 END, created_at, id LIMIT 1"
        );
        let row = sqlx::query(&sql).bind(order_id).fetch_optional(self.db.pool()).await?;
        row.as_ref().map(entry_from_row).transpose()
    }

    /// `RedriveOutbox`'s write: `entry` (as read, not delivered) reset to
    /// `entry.redriven(now)` by a compare-and-set on its status, attempts and lease, and
    /// the audit record of `draft` (before / after = `outbox_state`), in one transaction.
    /// `None` when the row moved meanwhile or the key was taken: nothing is written and
    /// the caller looks again.
    pub async fn redrive_outbox(
        &self,
        entry: &OutboxEntry,
        draft: &AuditDraft,
        now: i64,
    ) -> Result<Option<AuditRecord>, RedemptionError> {
        let after = entry.redriven(now);
        let mut writer = self.db.writer().await?;
        let mut tx = writer.begin().await?;
        let reset = sqlx::query(
            "UPDATE redemption_outbox SET status = 'pending', attempts = 0, next_attempt_at = $1, claimed_until = 0, \
             delivered_at = NULL WHERE id = $2 AND status = $3 AND attempts = $4 AND claimed_until = $5",
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

    /// `ReissueCodeOnBehalf`'s write: `order` (as read, pending) gets `code_hash` by a
    /// compare-and-set on `pending`, its `code_issued_at` and `expires_at > now`, and the
    /// audit record of `draft` (before / after = `order_state`, no code), in one
    /// transaction. `Ok(None)` when the order moved meanwhile or the key was taken. A
    /// code-hash collision is a UNIQUE violation error: the caller draws another code.
    pub async fn reissue_code_audited(
        &self,
        order: &Order,
        code_hash: &str,
        draft: &AuditDraft,
        now: i64,
    ) -> Result<Option<(Order, AuditRecord)>, sqlx::Error> {
        let mut writer = self.db.writer().await?;
        let mut tx = writer.begin().await?;
        let updated = sqlx::query(
            "UPDATE redemption_orders SET code_hash = $1, code_issued_at = $2 \
             WHERE order_id = $3 AND status = 'pending' AND code_issued_at = $4 AND expires_at > $2",
        )
        .bind(code_hash)
        .bind(now)
        .bind(&order.id)
        .bind(order.code_issued_at)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() != 1 {
            return Ok(None);
        }
        let after = Order { code_issued_at: now, ..order.clone() };
        let record = draft.record(order_state(order), order_state(&after), now);
        if !audit::insert(&mut tx, &record).await? {
            return Ok(None);
        }
        tx.commit().await?;
        Ok(Some((after, record)))
    }
}
