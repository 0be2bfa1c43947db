//! The outbox (docs/market.md, "Outbox and recovery"): escrow owed back after a listing closed unsold — its hold
//! released or its item unlocked. One row per listing, claimed with a lease by a
//! conditional UPDATE so several dispatchers never deliver one row at once.

use std::future::Future;

use economy_kit::outbox::{Lease, OutboxLeases};
use economy_kit::time::Clock;
use sqlx::{Any, Row, Transaction};

use super::MarketStore;

/// A pending escrow return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    /// UUIDv7.
    pub id: String,
    /// The listing whose escrow is returned.
    pub listing_id: String,
    /// Deliveries tried so far.
    pub attempts: i64,
    /// W3C `traceparent` of the request that closed the listing (`""`: not traced).
    pub trace_context: String,
}

/// Records the escrow return owed by `listing_id`, inside the transaction that closed it,
/// with the current trace context (the delivery resumes it).
pub(super) async fn insert_outbox(
    tx: &mut Transaction<'_, Any>,
    listing_id: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO market_outbox (id, listing_id, status, next_attempt_at, created_at, trace_context) \
         VALUES ($1, $2, 'pending', $3, $3, $4)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(listing_id)
    .bind(now)
    .bind(economy_kit::telemetry::current_traceparent())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Lease bookkeeping of `market_outbox`.
const LEASES: OutboxLeases = OutboxLeases::new("market_outbox");

impl MarketStore {
    /// Pending rows due at `now` (of `listing_id` only, unless empty), oldest first.
    pub async fn due_outbox(&self, now: i64, listing_id: &str, limit: i64) -> Result<Vec<OutboxRow>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT id, listing_id, attempts, trace_context FROM market_outbox \
             WHERE status = 'pending' AND next_attempt_at <= $1 AND claimed_until <= $1 \
             AND ($2 = '' OR listing_id = $2) ORDER BY next_attempt_at LIMIT $3",
        )
        .bind(now)
        .bind(listing_id)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(OutboxRow {
                    id: row.try_get("id")?,
                    listing_id: row.try_get("listing_id")?,
                    attempts: row.try_get("attempts")?,
                    trace_context: row.try_get("trace_context")?,
                })
            })
            .collect()
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

    /// Rows still owed (due or backing off): the outbox depth.
    pub async fn pending_outbox(&self) -> Result<i64, sqlx::Error> {
        LEASES.pending(&self.db).await
    }

    /// Releases the lease and schedules the next attempt at `next_attempt_at`; false when
    /// the lease was lost meanwhile.
    pub async fn retry_outbox(&self, lease: &Lease, next_attempt_at: i64, error: &str) -> Result<bool, sqlx::Error> {
        LEASES.retry(&self.db, lease, next_attempt_at, error).await
    }
}
