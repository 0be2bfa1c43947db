//! The admins' compensation tools (issue 6, "Compensation tools with audit"), each
//! admin only, with a reason, applied once per idempotency key and leaving an audit
//! record written in the fix's own transaction:
//!
//! - `redrive_outbox`: a `dead` or stuck outbox row reset to `pending`, due now, then
//!   delivered at once (the dispatcher would otherwise never touch a dead row).
//! - `reissue_on_behalf`: a customer's pending order gets a fresh code from an admin.
//!   Design: a separate RPC rather than an admin branch of `ReissueCode`, so the gateway
//!   enforces role >= 100 and a canonical operation of its own, and so the two keep
//!   clear retry semantics: the owner's ReissueCode draws a new code on every call, the
//!   audited tool applies once per key (a retry returns the order without a code). The
//!   owner's ReissueCode no longer accepts admins acting for someone else, so no code
//!   change on a customer's behalf escapes the audit.

use economy_kit::audit::AuditRecord;
use economy_kit::db::is_unique_violation;
use economy_kit::identity::Caller;

use crate::domain::compensation::{
    OutboxEntry, OutboxStatus, OutboxTarget, REDRIVE_OUTBOX, REISSUE_CODE_ON_BEHALF, draft,
};
use crate::domain::{Code, Order, RedemptionError};
use crate::service::Redemption;

/// Compare-and-set attempts before a tool gives up on a row that keeps moving.
const ATTEMPTS: usize = 5;

/// What a reissue on behalf returns.
#[derive(Debug)]
pub struct ReissuedOnBehalf {
    /// The order now.
    pub order: Order,
    /// The new code; `None` when replayed (never shown twice).
    pub code: Option<Code>,
    /// The audit record.
    pub record: AuditRecord,
    /// True when the key had already been applied.
    pub replayed: bool,
}

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

fn require_admin(caller: &Caller, what: &str) -> Result<(), RedemptionError> {
    caller.is_admin().then_some(()).ok_or_else(|| RedemptionError::PermissionDenied(format!("only admins may {what}")))
}

impl Redemption {
    /// ListStuckOutbox: rows undelivered (pending or dead) created at least
    /// `older_than_seconds` ago (0 or less: 300), oldest first, at most 500. Admins and
    /// services; `PERMISSION_DENIED` otherwise.
    pub async fn stuck_outbox(
        &self,
        caller: &Caller,
        older_than_seconds: i64,
    ) -> Result<Vec<OutboxEntry>, RedemptionError> {
        if !caller.is_privileged() {
            return Err(RedemptionError::PermissionDenied("only admins and services list the outbox".into()));
        }
        let cutoff = economy_kit::outbox::stuck_cutoff(self.clock.now_millis(), older_than_seconds);
        Ok(self.store.stuck_outbox(cutoff, 500).await?)
    }
    /// ReissueCodeOnBehalf: an admin gives the pending, unexpired order `order_id` a
    /// fresh code (the old one stops redeeming), with the audit record (before / after =
    /// status and `code_issued_at`, never the code) in the same transaction. Errors:
    /// PERMISSION_DENIED (not an admin), ORDER_NOT_FOUND, CODE_* of the order's state,
    /// IDEMPOTENCY_KEY_REUSED.
    pub async fn reissue_on_behalf(
        &self,
        caller: &Caller,
        key: &str,
        order_id: &str,
        reason: &str,
    ) -> Result<ReissuedOnBehalf, RedemptionError> {
        require_admin(caller, "reissue a code on a customer's behalf")?;
        let draft = draft(REISSUE_CODE_ON_BEHALF, "order", order_id, key, &caller.actor(), reason);
        for _ in 0..ATTEMPTS {
            if let Some(record) = self.store.audit_prior(&draft).await? {
                let order = self.order_now(order_id).await?;
                return Ok(ReissuedOnBehalf { order, code: None, record, replayed: true });
            }
            let order = self.order_now(order_id).await?;
            let now = self.clock.now_millis();
            order.check_redeemable(now)?;
            let code = Code::generate();
            match self.store.reissue_code_audited(&order, &code.hash(), &draft, now).await {
                Ok(Some((order, record))) => {
                    record.log_applied();
                    return Ok(ReissuedOnBehalf { order, code: Some(code), record, replayed: false });
                }
                // The order moved or a twin took the key: look again.
                Ok(None) => {}
                // The drawn code's hash is taken: draw another.
                Err(error) if is_unique_violation(&error) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Err(RedemptionError::Storage("the order kept changing during a reissue on behalf".into()))
    }

    /// RedriveOutbox: resets the `dead` or stuck `pending` outbox row `target` to
    /// `pending`, due now (attempts and lease cleared), with the audit record (before /
    /// after = the row) in the same transaction, then delivers it at once. Errors:
    /// PERMISSION_DENIED, OUTBOX_NOT_FOUND, OUTBOX_ALREADY_DELIVERED,
    /// IDEMPOTENCY_KEY_REUSED.
    pub async fn redrive_outbox(
        &self,
        caller: &Caller,
        key: &str,
        target: &OutboxTarget,
        reason: &str,
    ) -> Result<Redriven, RedemptionError> {
        require_admin(caller, "re-drive outbox rows")?;
        for _ in 0..ATTEMPTS {
            let entry = self.outbox_target(target).await?;
            let draft = draft(REDRIVE_OUTBOX, "outbox", &entry.id, key, &caller.actor(), reason);
            if let Some(record) = self.store.audit_prior(&draft).await? {
                return Ok(Redriven { entry, record, replayed: true });
            }
            if entry.status == OutboxStatus::Delivered {
                return Err(RedemptionError::OutboxAlreadyDelivered(entry.id));
            }
            let Some(record) = self.store.redrive_outbox(&entry, &draft, self.clock.now_millis()).await? else {
                continue;
            };
            record.log_applied();
            if let Err(error) = crate::jobs::dispatch(self, &entry.order_id).await {
                tracing::warn!(%error, outbox_id = %entry.id, "re-driven outbox row not delivered yet");
            }
            let entry = self.outbox_target(&OutboxTarget::Row(entry.id)).await?;
            return Ok(Redriven { entry, record, replayed: false });
        }
        Err(RedemptionError::Storage("the outbox row kept changing during a re-drive".into()))
    }

    async fn order_now(&self, order_id: &str) -> Result<Order, RedemptionError> {
        self.store.order(order_id).await?.ok_or_else(|| RedemptionError::OrderNotFound(order_id.to_owned()))
    }

    async fn outbox_target(&self, target: &OutboxTarget) -> Result<OutboxEntry, RedemptionError> {
        let (found, named) = match target {
            OutboxTarget::Row(id) => (self.store.outbox_entry(id).await?, id.clone()),
            OutboxTarget::Order(order_id) => {
                (self.store.outbox_of_order(order_id).await?, format!("of order {order_id}"))
            }
        };
        found.ok_or(RedemptionError::OutboxNotFound(named))
    }
}
