//! Lease bookkeeping of the services' outbox tables (ARCHITECTURE.md, "Invariants": owed
//! calls to other services are written with the state change and delivered by a
//! dispatcher). Every
//! outbox table has the columns `id`, `status` (`pending` | `delivered` | `dead`),
//! `claimed_until`, `attempts`, `next_attempt_at`, `last_error`, `delivered_at`
//! (instants in ms since the epoch); what a row delivers is the service's own.
//!
//! A dispatcher claims a row with a short lease ([`LEASE_MS`]) and, while its delivery is
//! in flight, renews it every [`RENEW_EVERY`] ([`OutboxLeases::hold`]). So a slow delivery
//! keeps its row, while a row whose dispatcher died (killed process, lost host) is free
//! again a few seconds later and another replica redelivers it. Every write is a
//! conditional UPDATE on the lease its writer holds: a dispatcher that lost its lease
//! (paused longer than the lease) changes nothing, and the replica that took the row over
//! finishes it. Deliveries carry deterministic keys, so the rare double delivery this
//! allows is a replay downstream.

use std::future::Future;
use std::time::Duration;

use sqlx::Row;

use crate::db::Db;
use crate::time::Clock;

/// How long a claim on a row lasts unless renewed, ms (5 s): the longest a row waits
/// after its dispatcher died before another dispatcher may take it.
pub const LEASE_MS: i64 = 5_000;

/// How often a dispatcher renews the lease of the row it is delivering (1.5 s, so two
/// renewals may fail before the lease runs out).
pub const RENEW_EVERY: Duration = Duration::from_millis(1_500);

/// The cut-off of ListStuckOutbox, ms since the epoch: rows created `older_than_seconds`
/// before `now` (0 or less: 300 s) or earlier count as stuck.
pub fn stuck_cutoff(now: i64, older_than_seconds: i64) -> i64 {
    let seconds = if older_than_seconds > 0 { older_than_seconds } else { 300 };
    now.saturating_sub(seconds.saturating_mul(1000))
}

/// One dispatcher's claim on one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The row.
    pub id: String,
    /// End of the lease as last written to `claimed_until`, ms since the epoch.
    pub until: i64,
}

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

    /// Leases row `id` from `now` for [`LEASE_MS`] and counts the attempt; `None` when
    /// another dispatcher holds it (`claimed_until > now`) or it is no longer pending.
    pub async fn claim(&self, db: &Db, id: &str, now: i64) -> Result<Option<Lease>, sqlx::Error> {
        let until = now.saturating_add(LEASE_MS);
        let sql = format!(
            "UPDATE {} SET claimed_until = $1, attempts = attempts + 1 \
             WHERE id = $2 AND status = 'pending' AND claimed_until <= $3",
            self.table
        );
        let updated = sqlx::query(&sql).bind(until).bind(id).bind(now).execute(&mut *db.writer().await?).await?;
        Ok((updated.rows_affected() == 1).then(|| Lease { id: id.to_owned(), until }))
    }

    /// Extends `lease` to `now +` [`LEASE_MS`] (never shortens it); false when it was lost
    /// (the row was taken over, re-driven or finished by someone else).
    pub async fn renew(&self, db: &Db, lease: &mut Lease, now: i64) -> Result<bool, sqlx::Error> {
        let until = now.saturating_add(LEASE_MS).max(lease.until);
        let sql = format!(
            "UPDATE {} SET claimed_until = $1 WHERE id = $2 AND status = 'pending' AND claimed_until = $3",
            self.table
        );
        let updated =
            sqlx::query(&sql).bind(until).bind(&lease.id).bind(lease.until).execute(&mut *db.writer().await?).await?;
        let renewed = updated.rows_affected() == 1;
        if renewed {
            lease.until = until;
        }
        Ok(renewed)
    }

    /// Runs `delivery` while renewing `lease` every [`RENEW_EVERY`] (instants from
    /// `clock`); returns its output and the lease as last renewed. A lost lease stops the
    /// renewals, not the delivery (it is keyed, so finishing it is harmless).
    pub async fn hold<F: Future>(
        &self,
        db: &Db,
        mut lease: Lease,
        clock: &dyn Clock,
        delivery: F,
    ) -> (F::Output, Lease) {
        let mut delivery = std::pin::pin!(delivery);
        let mut renewals = tokio::time::interval_at(tokio::time::Instant::now() + RENEW_EVERY, RENEW_EVERY);
        let mut held = true;
        loop {
            tokio::select! {
                output = &mut delivery => return (output, lease),
                _ = renewals.tick(), if held => match self.renew(db, &mut lease, clock.now_millis()).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(table = self.table, outbox_id = %lease.id, "outbox lease lost during a delivery");
                        held = false;
                    }
                    Err(error) => tracing::warn!(table = self.table, outbox_id = %lease.id, %error, "outbox lease not renewed"),
                },
            }
        }
    }

    /// Ends the row of `lease`: `delivered`, or `dead` with `note` (the refusal, for an
    /// operator). False (nothing written) when the lease was lost meanwhile.
    pub async fn finish(
        &self,
        db: &Db,
        lease: &Lease,
        delivered: bool,
        note: &str,
        now: i64,
    ) -> Result<bool, sqlx::Error> {
        let sql = format!(
            "UPDATE {} SET status = $1, last_error = $2, delivered_at = $3, claimed_until = 0 \
             WHERE id = $4 AND status = 'pending' AND claimed_until = $5",
            self.table
        );
        let status = if delivered { "delivered" } else { "dead" };
        let updated = sqlx::query(&sql)
            .bind(status)
            .bind(note)
            .bind(now)
            .bind(&lease.id)
            .bind(lease.until)
            .execute(&mut *db.writer().await?)
            .await?;
        Ok(updated.rows_affected() == 1)
    }

    /// Releases `lease` and schedules the row's next attempt at `next_attempt_at`,
    /// recording `error`. False (nothing written) when the lease was lost meanwhile.
    pub async fn retry(&self, db: &Db, lease: &Lease, next_attempt_at: i64, error: &str) -> Result<bool, sqlx::Error> {
        let sql = format!(
            "UPDATE {} SET next_attempt_at = $1, last_error = $2, claimed_until = 0 \
             WHERE id = $3 AND status = 'pending' AND claimed_until = $4",
            self.table
        );
        let updated = sqlx::query(&sql)
            .bind(next_attempt_at)
            .bind(error)
            .bind(&lease.id)
            .bind(lease.until)
            .execute(&mut *db.writer().await?)
            .await?;
        Ok(updated.rows_affected() == 1)
    }

    /// Rows still owed (due or backing off): the outbox depth.
    pub async fn pending(&self, db: &Db) -> Result<i64, sqlx::Error> {
        let sql = format!("SELECT COUNT(*) AS n FROM {} WHERE status = 'pending'", self.table);
        sqlx::query(&sql).fetch_one(db.pool()).await?.try_get("n")
    }
}

#[cfg(test)]
mod tests {
    use super::stuck_cutoff;

    #[test]
    fn stuck_means_older_than_asked_or_five_minutes() {
        assert_eq!(stuck_cutoff(1_000_000, 60), 940_000);
        assert_eq!(stuck_cutoff(1_000_000, 0), 700_000);
        assert_eq!(stuck_cutoff(1_000_000, -5), 700_000);
        assert_eq!(stuck_cutoff(i64::MIN + 1, i64::MAX), i64::MIN, "saturates");
    }
}
