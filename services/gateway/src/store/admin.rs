//! The operator's release of a stuck idempotency record: `processing` -> `failed` /
//! `RELEASED`, with an audit record in the same transaction (`economy_kit::audit`). A
//! released key may be retried; the retry forwards the SAME business event, so the
//! service answers what it already did as a replay and nothing moves twice.

use economy_kit::audit::{self, AuditDraft, AuditError, AuditRecord};

use super::{IdempotencyStore, Record};

/// `failure_reason` of a released record.
pub const RELEASED: &str = "RELEASED";

/// What a release did.
#[derive(Debug, Clone)]
pub struct Released {
    /// The record now (`failed` / `RELEASED`, or whatever it became since a replayed release).
    pub record: Option<Record>,
    /// The audit record of the release (the original one when replayed).
    pub audit: AuditRecord,
    /// True when this release's key had already been applied; nothing changed now.
    pub replayed: bool,
}

/// Why a release did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// No record for this user and key.
    #[error("no idempotency record for this user and key")]
    NotFound,
    /// The record is not `processing` (its status), so there is nothing to release.
    #[error("the idempotency record is {0}, not processing")]
    NotProcessing(String),
    /// Its owner may still be working until this instant (ms since the epoch): releasing it
    /// now could run the write twice at once. Past it a retry takes it over anyway.
    #[error("the idempotency record's lease runs until {0}")]
    LeaseActive(i64),
    /// The release's own key was used for another release.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The record kept changing under the release.
    #[error("the idempotency record kept changing; retry")]
    Contended,
}

impl From<sqlx::Error> for ReleaseError {
    fn from(error: sqlx::Error) -> Self {
        Self::Audit(AuditError::Storage(error))
    }
}

impl IdempotencyStore {
    /// Releases the `processing` record `(user_id, key)` at `now` (ms since the epoch) as
    /// `draft` describes (its key makes the release itself idempotent).
    ///
    /// Errors: `NotFound`, `NotProcessing`, `LeaseActive` while its owner may still be
    /// working, `Audit(KeyReused)` when `draft`'s key recorded another release, `Contended`
    /// after repeated lost races, storage errors.
    pub async fn release(
        &self,
        user_id: i64,
        key: &str,
        draft: &AuditDraft,
        now: i64,
    ) -> Result<Released, ReleaseError> {
        for _ in 0..3 {
            if let Some(audit) = audit::prior(self.db.pool(), draft).await? {
                let record = self.get(user_id, key).await?;
                return Ok(Released { record, audit, replayed: true });
            }
            let before = self.get(user_id, key).await?.ok_or(ReleaseError::NotFound)?;
            if before.status != "processing" {
                return Err(ReleaseError::NotProcessing(before.status));
            }
            if before.lease_expires_at > now {
                return Err(ReleaseError::LeaseActive(before.lease_expires_at));
            }
            let after = Record {
                status: "failed".into(),
                failure_reason: Some(RELEASED.into()),
                updated_at: now,
                ..before.clone()
            };
            let audit = draft.record(state(&before), state(&after), now);
            let mut writer = self.db.writer().await?;
            let mut tx = writer.begin().await?;
            let updated = sqlx::query(
                "UPDATE idempotency_records SET status = 'failed', failure_reason = $1, updated_at = $2 \
                 WHERE user_id = $3 AND idempotency_key = $4 AND request_id = $5 AND status = 'processing' \
                 AND lease_expires_at <= $2",
            )
            .bind(RELEASED)
            .bind(now)
            .bind(user_id)
            .bind(key)
            .bind(&before.request_id)
            .execute(&mut *tx)
            .await?;
            if updated.rows_affected() == 1 && audit::insert(&mut tx, &audit).await? {
                tx.commit().await?;
                return Ok(Released { record: Some(after), audit, replayed: false });
            }
        }
        Err(ReleaseError::Contended)
    }
}

/// The audit state of a record: what an operator needs, never the stored response.
fn state(record: &Record) -> String {
    serde_json::json!({
        "status": record.status,
        "request_id": record.request_id,
        "business_event_id": record.business_event_id,
        "canonical_operation": record.canonical_operation,
        "failure_reason": record.failure_reason,
        "lease_expires_at": record.lease_expires_at,
    })
    .to_string()
}
