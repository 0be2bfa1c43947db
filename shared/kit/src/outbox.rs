//! Lease bookkeeping of the services' outbox tables (DESIGN.md: owed calls to other
//! services are written with the state change and delivered by a dispatcher). Every
//! outbox table has the columns `id`, `status` (`pending` | `delivered` | `dead`),
//! `claimed_until`, `attempts`, `next_attempt_at`, `last_error`, `delivered_at`
//! (instants in ms since the epoch); what a row delivers is the service's own.

use sqlx::Row;

use crate::db::Db;

/// The lease operations on one outbox table.
#[derive(Debug, Clone, Copy)]
pub struct OutboxLeases {
    table: &'static str,
}

impl OutboxLeases {
    /// The leases of `table` (a constant of the owning service, never user input).
    pub const fn new(table: &'static str) -> Self {
        Self { table }
    }

    /// Leases row `id` until `until` and counts the attempt; false when another
    /// dispatcher holds it (`claimed_until > now`) or it is no longer pending.
    pub async fn claim(&self, db: &Db, id: &str, now: i64, until: i64) -> Result<bool, sqlx::Error> {
        let sql = format!(
            "UPDATE {} SET claimed_until = $1, attempts = attempts + 1 \
             WHERE id = $2 AND status = 'pending' AND claimed_until <= $3",
            self.table
        );
        let updated = sqlx::query(&sql).bind(until).bind(id).bind(now).execute(&mut *db.writer().await?).await?;
        Ok(updated.rows_affected() == 1)
    }

    /// Ends row `id`: `delivered`, or `dead` with `note` (the refusal, for an operator).
    pub async fn finish(&self, db: &Db, id: &str, delivered: bool, note: &str, now: i64) -> Result<(), sqlx::Error> {
        let sql = format!(
            "UPDATE {} SET status = $1, last_error = $2, delivered_at = $3, claimed_until = 0 WHERE id = $4",
            self.table
        );
        let status = if delivered { "delivered" } else { "dead" };
        sqlx::query(&sql).bind(status).bind(note).bind(now).bind(id).execute(&mut *db.writer().await?).await?;
        Ok(())
    }

    /// Releases the lease of row `id` and schedules its next attempt at `next_attempt_at`,
    /// recording `error`.
    pub async fn retry(&self, db: &Db, id: &str, next_attempt_at: i64, error: &str) -> Result<(), sqlx::Error> {
        let sql =
            format!("UPDATE {} SET next_attempt_at = $1, last_error = $2, claimed_until = 0 WHERE id = $3", self.table);
        sqlx::query(&sql).bind(next_attempt_at).bind(error).bind(id).execute(&mut *db.writer().await?).await?;
        Ok(())
    }

    /// Rows still owed (due or backing off): the outbox depth.
    pub async fn pending(&self, db: &Db) -> Result<i64, sqlx::Error> {
        let sql = format!("SELECT COUNT(*) AS n FROM {} WHERE status = 'pending'", self.table);
        sqlx::query(&sql).fetch_one(db.pool()).await?.try_get("n")
    }
}
