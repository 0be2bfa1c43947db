//! The admins' compensation tool (issue 6): `RedriveOutbox` for escrow returns. Admin
//! only, with a reason, applied once per idempotency key, with its audit record written
//! in the reset's own transaction; the row is then delivered at once (the recovery
//! worker never touches a dead row).

use economy_kit::audit::AuditRecord;
use economy_kit::identity::Caller;

use super::Market;
use crate::domain::MarketError;
use crate::domain::compensation::{OutboxEntry, OutboxStatus, OutboxTarget, redrive_draft};

/// Compare-and-set attempts before the tool gives up on a row that keeps moving.
const ATTEMPTS: usize = 5;

/// What a re-drive returns.
#[derive(Debug)]
pub struct Redriven {
    /// The row after the immediate delivery attempt (its current state when replayed).
    pub entry: OutboxEntry,
    /// The audit record.
    pub record: AuditRecord,
    /// True when the key had already been applied.
    pub replayed: bool,
}

impl Market {
    /// ListStuckOutbox: rows undelivered (pending or dead) created at least
    /// `older_than_seconds` ago (0 or less: 300), oldest first, at most 500. Admins and
    /// services; `PERMISSION_DENIED` otherwise.
    pub async fn stuck_outbox(
        &self,
        caller: &Caller,
        older_than_seconds: i64,
    ) -> Result<Vec<OutboxEntry>, MarketError> {
        if !caller.is_privileged() {
            return Err(MarketError::PermissionDenied("only admins and services list the outbox".into()));
        }
        let cutoff = economy_kit::outbox::stuck_cutoff(self.clock.now_millis(), older_than_seconds);
        Ok(self.store.stuck_outbox(cutoff, 500).await?)
    }
    /// RedriveOutbox: resets the `dead` or stuck `pending` escrow return `target` to
    /// `pending`, due now (attempts and lease cleared), with the audit record (before /
    /// after = the row) in the same transaction, then delivers it at once. Errors:
    /// PERMISSION_DENIED (not an admin), OUTBOX_NOT_FOUND, OUTBOX_ALREADY_DELIVERED,
    /// IDEMPOTENCY_KEY_REUSED.
    pub async fn redrive_outbox(
        &self,
        caller: &Caller,
        key: &str,
        target: &OutboxTarget,
        reason: &str,
    ) -> Result<Redriven, MarketError> {
        if !caller.is_admin() {
            return Err(MarketError::PermissionDenied("only admins may re-drive outbox rows".into()));
        }
        for _ in 0..ATTEMPTS {
            let entry = self.outbox_target(target).await?;
            let draft = redrive_draft(&entry.id, key, &caller.actor(), reason);
            if let Some(record) = self.store.audit_prior(&draft).await? {
                return Ok(Redriven { entry, record, replayed: true });
            }
            if entry.status == OutboxStatus::Delivered {
                return Err(MarketError::OutboxAlreadyDelivered(entry.id));
            }
            let Some(record) = self.store.redrive_outbox(&entry, &draft, self.clock.now_millis()).await? else {
                continue;
            };
            record.log_applied();
            if let Err(error) = self.dispatch(&entry.listing_id).await {
                tracing::warn!(%error, outbox_id = %entry.id, "re-driven escrow return not delivered yet");
            }
            let entry = self.outbox_target(&OutboxTarget::Row(entry.id)).await?;
            return Ok(Redriven { entry, record, replayed: false });
        }
        Err(MarketError::Storage("the outbox row kept changing during a re-drive".into()))
    }

    async fn outbox_target(&self, target: &OutboxTarget) -> Result<OutboxEntry, MarketError> {
        let (found, named) = match target {
            OutboxTarget::Row(id) => (self.store.outbox_entry(false, id).await?, id.clone()),
            OutboxTarget::Listing(listing_id) => {
                (self.store.outbox_entry(true, listing_id).await?, format!("of listing {listing_id}"))
            }
        };
        found.ok_or(MarketError::OutboxNotFound(named))
    }
}
