//! Background jobs (docs/items.md, "Jobs"): every interval, available
//! instances past their expiry become `expired`, and locks past their lock expiry are
//! released (`unlocked`). Safe on several replicas at once: each change is the same
//! compare-and-set as an API call, under a deterministic key (`job:expire` per instance,
//! `job:lock-expired:<version>` per lock), so a second replica replays or is refused.

mod report;

use std::time::Duration;

use economy_kit::jobs::every;
use economy_kit::time::SharedClock;
use tokio_util::sync::CancellationToken;

use crate::domain::ItemError;
use crate::domain::ids::{IdempotencyKey, ItemId};
use crate::domain::transition::Command;
use crate::store::ItemStore;

pub use report::{JOB as REPORT_JOB, ReportGauges, spawn_report};

/// Instances processed per batch.
const BATCH: i64 = 100;
/// Actor recorded on job events.
pub const ACTOR: &str = "service:items-jobs";

/// Periods of the jobs.
#[derive(Debug, Clone, Copy)]
pub struct JobIntervals {
    /// Item expiry.
    pub item_expiry: Duration,
    /// Lock expiry.
    pub lock_expiry: Duration,
}

/// Runs `expire_items` and `release_expired_locks` on their intervals until `shutdown`,
/// at the "now" of `clock`.
pub fn spawn(store: ItemStore, clock: SharedClock, intervals: JobIntervals, shutdown: CancellationToken) {
    let (items_store, items_clock) = (store.clone(), clock.clone());
    every(intervals.item_expiry, shutdown.clone(), move || {
        let (store, now) = (items_store.clone(), items_clock.now_millis());
        async move {
            let result = expire_items(&store, now).await;
            economy_kit::metrics::job_run("items_item_expiry", count(&result));
            match result {
                Ok(0) => {}
                Ok(expired) => tracing::info!(expired, "items expired"),
                Err(error) => tracing::error!(%error, "item expiry failed"),
            }
        }
    });
    every(intervals.lock_expiry, shutdown, move || {
        let (store, now) = (store.clone(), clock.now_millis());
        async move {
            let result = release_expired_locks(&store, now).await;
            economy_kit::metrics::job_run("items_lock_expiry", count(&result));
            match result {
                Ok(0) => {}
                Ok(released) => tracing::info!(released, "expired item locks released"),
                Err(error) => tracing::error!(%error, "item lock expiry failed"),
            }
        }
    });
}

/// How many a successful pass handled, for `job_run`.
fn count(result: &Result<usize, ItemError>) -> Option<u64> {
    result.as_ref().ok().map(|count| u64::try_from(*count).unwrap_or(u64::MAX))
}

/// Expires every available instance whose expiry is at or before `now`; returns how many
/// this call expired (instances changed concurrently are skipped).
pub async fn expire_items(store: &ItemStore, now: i64) -> Result<usize, ItemError> {
    let mut expired = 0;
    loop {
        let ids = store.due_items(now, BATCH).await?;
        for id in &ids {
            expired += usize::from(apply(store, id, Command::Expire, "job:expire", now).await?);
        }
        if i64::try_from(ids.len()).unwrap_or(i64::MAX) < BATCH {
            return Ok(expired);
        }
    }
}

/// Releases every lock whose lock expiry is at or before `now`; returns how many this
/// call released.
pub async fn release_expired_locks(store: &ItemStore, now: i64) -> Result<usize, ItemError> {
    let mut released = 0;
    loop {
        let due = store.due_locks(now, BATCH).await?;
        for (id, version) in &due {
            let command = Command::ReleaseExpiredLock { locked_version: *version };
            let key = format!("job:lock-expired:{version}");
            released += usize::from(apply(store, id, command, &key, now).await?);
        }
        if i64::try_from(due.len()).unwrap_or(i64::MAX) < BATCH {
            return Ok(released);
        }
    }
}

/// True when this call changed the instance; false when another replica (or a
/// concurrent change) got there first.
async fn apply(store: &ItemStore, id: &str, command: Command, key: &str, now: i64) -> Result<bool, ItemError> {
    let item = ItemId::parse(id).map_err(|_| ItemError::Storage(format!("corrupt item id {id}").into()))?;
    let key = IdempotencyKey::parse(key).map_err(|error| ItemError::Storage(error.into()))?;
    let business_type = command.default_business_type().to_owned();
    let plan = command.plan(item, key, ACTOR, business_type, "expired".into());
    match store.transition(&plan, now).await {
        Ok(applied) => Ok(!applied.replayed),
        Err(
            ItemError::NotAvailable { .. }
            | ItemError::NotLocked { .. }
            | ItemError::NotDue(_)
            | ItemError::Contended(_)
            | ItemError::IdempotencyKeyReused(_),
        ) => Ok(false),
        Err(error) => Err(error),
    }
}
