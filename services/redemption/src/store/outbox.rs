//! The outbox (docs/redemption.md, "Outbox and jobs"): Items calls owed after a commit (consume a fulfilled
//! order's item, unlock a cancelled / expired / failed one's), each with its
//! deterministic key `<order_id>:<action>`. Rows are claimed with a lease by a
//! conditional UPDATE, so several dispatchers never deliver one row at once.

use std::future::Future;

use economy_kit::outbox::{Lease, OutboxLeases};
use economy_kit::time::Clock;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::RedemptionStore;
use crate::domain::items_key;

/// An Items call owed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxAction {
    /// `ConsumeItem` by the order's lock holder.
    Consume,
    /// `UnlockItem` by the order's lock holder.
    Unlock,
}

impl OutboxAction {
    /// The stored name, also the suffix of the call's idempotency key.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Consume => "consume",
            Self::Unlock => "unlock",
        }
    }
}

/// A pending outbox row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    /// UUIDv7.
    pub id: String,
    /// The order that owes the call.
    pub order_id: String,
    /// What to call.
    pub action: OutboxAction,
    /// The item.
    pub item_instance_id: String,
    /// Deliveries tried so far.
    pub attempts: i64,
    /// W3C `traceparent` of the request that made the call owed (`""`: not traced).
    pub trace_context: String,
}

fn outbox_from_row(row: &AnyRow) -> Result<OutboxRow, sqlx::Error> {
    let action: String = row.try_get("action")?;
    Ok(OutboxRow {
        id: row.try_get("id")?,
        order_id: row.try_get("order_id")?,
        action: if action == "consume" { OutboxAction::Consume } else { OutboxAction::Unlock },
        item_instance_id: row.try_get("item_instance_id")?,
        attempts: row.try_get("attempts")?,
        trace_context: row.try_get("trace_context")?,
    })
}

/// Records an owed call inside the transaction that made it owed, with the current trace
/// context (the delivery resumes it).
pub(super) async fn insert_outbox(
    tx: &mut Transaction<'_, Any>,
    order_id: &str,
    item_instance_id: &str,
    action: OutboxAction,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO redemption_outbox (id, order_id, action, item_instance_id, idempotency_key, status, \
         next_attempt_at, created_at, trace_context) VALUES ($1, $2, $3, $4, $5, 'pending', $6, $6, $7)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(order_id)
    .bind(action.as_str())
    .bind(item_instance_id)
    .bind(items_key(order_id, action.as_str()))
    .bind(now)
    .bind(economy_kit::telemetry::current_traceparent())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Lease bookkeeping of `redemption_outbox`.
const LEASES: OutboxLeases = OutboxLeases::new("redemption_outbox");

impl RedemptionStore {
    /// Pending rows due at `now`, oldest first (`order_id` narrows to one order).
    pub async fn due_outbox(&self, now: i64, order_id: &str, limit: i64) -> Result<Vec<OutboxRow>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT id, order_id, action, item_instance_id, attempts, trace_context FROM redemption_outbox \
             WHERE status = 'pending' AND next_attempt_at <= $1 AND claimed_until <= $1 \
             AND ($2 = '' OR order_id = $2) ORDER BY next_attempt_at LIMIT $3",
        )
        .bind(now)
        .bind(order_id)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(outbox_from_row).collect()
    }

    /// Leases a row from `now` for `economy_kit::outbox::LEASE_MS`; `None` when another
    /// dispatcher holds it or it is done.
    pub async fn claim_outbox(&self, id: &str, now: i64) -> Result<Option<Lease>, sqlx::Error> {
        LEASES.claim(&self.db, id, now).await
    }

    /// Runs `delivery` while renewing `lease` (instants from `clock`); returns its output
    /// and the lease as last renewed.
    pub async fn hold_outbox<F: Future>(&self, lease: Lease, clock: &dyn Clock, delivery: F) -> (F::Output, Lease) {
        LEASES.hold(&self.db, lease, clock, delivery).await
    }

    /// Ends the leased row: `delivered`, or `dead` with the refusal (for an operator).
    /// False when the lease was lost meanwhile (the dispatcher that took the row ends it).
    pub async fn finish_outbox(
        &self,
        lease: &Lease,
        delivered: bool,
        note: &str,
        now: i64,
    ) -> Result<bool, sqlx::Error> {
        LEASES.finish(&self.db, lease, delivered, note, now).await
    }

    /// Releases the lease and schedules the next attempt at `next_attempt_at`; false when
    /// the lease was lost meanwhile.
    pub async fn retry_outbox(&self, lease: &Lease, next_attempt_at: i64, error: &str) -> Result<bool, sqlx::Error> {
        LEASES.retry(&self.db, lease, next_attempt_at, error).await
    }

    /// Rows still owed (due or backing off): the outbox depth.
    pub async fn pending_outbox(&self) -> Result<i64, sqlx::Error> {
        LEASES.pending(&self.db).await
    }
}
