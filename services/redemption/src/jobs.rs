//! Background work (docs/redemption.md, "Outbox and jobs"), each safe on several replicas at once:
//! the outbox dispatcher (rows claimed by a leased conditional UPDATE), the expiry job
//! (`pending -> expired` is a compare-and-set) and the stale-locking job.

use std::sync::Arc;
use std::time::Duration;

use economy_kit::jobs::{Scheduler, every};
use economy_kit::outbox::Lease;
use economy_kit::reasons;
use economy_kit::schedule::Schedule;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::clients::CallError;
use crate::domain::{RedemptionError, items_key, lock_holder};
use crate::service::Redemption;
use crate::store::{OutboxAction, OutboxRow};

/// Rows one pass handles.
const BATCH: i64 = 100;
/// Longest wait between two attempts of one row, ms.
const MAX_BACKOFF_MS: i64 = 300_000;

/// Periods and schedules of the jobs.
#[derive(Debug, Clone)]
pub struct JobIntervals {
    /// Outbox dispatcher, seconds.
    pub outbox_secs: u64,
    /// Order expiry: once per scheduled time across replicas (docs/operations.md,
    /// "Background jobs").
    pub expiry: Schedule,
    /// Stale `locking` orders older than this fail, seconds.
    pub locking_timeout_secs: u64,
}

/// Delivers the due outbox rows (of `order_id` only, unless empty); returns how many
/// were delivered.
pub async fn dispatch(service: &Redemption, order_id: &str) -> Result<usize, RedemptionError> {
    let now = service.clock.now_millis();
    let mut delivered = 0;
    for row in service.store.due_outbox(now, order_id, BATCH).await? {
        // A short lease, renewed while the delivery is in flight: a row whose dispatcher
        // died is taken over within seconds.
        let Some(lease) = service.store.claim_outbox(&row.id, now).await? else {
            continue;
        };
        // The delivery joins the trace of the request that made it owed.
        let span = tracing::info_span!(
            "outbox.deliver",
            otel.kind = "internal",
            order_id = %row.order_id,
            action = row.action.as_str(),
            attempt = row.attempts + 1,
        );
        economy_kit::telemetry::set_remote_parent(&span, &row.trace_context);
        let delivery = async {
            let (result, lease) =
                service.store.hold_outbox(lease, service.clock.as_ref(), call_items(service, &row)).await;
            record(service, &row, &lease, result).await
        };
        if delivery.instrument(span).await? {
            delivered += 1;
        }
    }
    Ok(delivered)
}

/// The Items call a row owes.
async fn call_items(service: &Redemption, row: &OutboxRow) -> Result<(), CallError> {
    let (holder, key) = (lock_holder(&row.order_id), items_key(&row.order_id, row.action.as_str()));
    match row.action {
        OutboxAction::Consume => service.items.consume(&row.item_instance_id, &holder, &key).await,
        OutboxAction::Unlock => undo_lock(service, row, &holder, &key).await,
    }
}

/// Records one delivery under `lease`: Items confirms (or has nothing to unlock) ->
/// delivered; Items refuses a consume -> dead (logged for an operator); Items is down ->
/// retried with backoff. True when delivered now.
async fn record(
    service: &Redemption,
    row: &OutboxRow,
    lease: &Lease,
    result: Result<(), CallError>,
) -> Result<bool, RedemptionError> {
    let now = service.clock.now_millis();
    match result {
        Ok(()) => Ok(service.store.finish_outbox(lease, true, "", now).await?),
        // Not locked by this order (the lock never happened): nothing to undo.
        Err(CallError::Refused { reason, .. }) if row.action == OutboxAction::Unlock => {
            Ok(service.store.finish_outbox(lease, true, &reason, now).await?)
        }
        Err(CallError::Refused { reason, message, .. }) => {
            tracing::error!(order_id = %row.order_id, %reason, %message, "items refused to consume a fulfilled order's item");
            crate::metrics::outbox_dead();
            service.store.finish_outbox(lease, false, &reason, now).await?;
            Ok(false)
        }
        Err(CallError::Unavailable(_)) => {
            let backoff = 1_000_i64.saturating_mul(1 << row.attempts.clamp(0, 16)).min(MAX_BACKOFF_MS);
            service.store.retry_outbox(lease, now.saturating_add(backoff), reasons::ITEMS_UNAVAILABLE).await?;
            Ok(false)
        }
    }
}

/// Unlocks the order's item. The lock call is replayed first with the order's own lock
/// key: Items either replays it (the lock happened) or takes it now, and from then on any
/// late lock attempt of an abandoned creation is a replay — so the unlock that follows can
/// never be overtaken by a lock that would stay orphaned.
async fn undo_lock(service: &Redemption, row: &OutboxRow, holder: &str, key: &str) -> Result<(), CallError> {
    let owner = match service.store.order(&row.order_id).await {
        Ok(Some(order)) => order.owner_user_id,
        _ => return Err(CallError::Unavailable("items")),
    };
    let lock_key = items_key(&row.order_id, "lock");
    if let Err(CallError::Unavailable(_)) = service.items.lock(&row.item_instance_id, holder, owner, &lock_key).await {
        return Err(CallError::Unavailable("items"));
    }
    service.items.unlock(&row.item_instance_id, holder, key).await
}

/// Logs and counts one pass of `job` (`economy_job_runs_total`, `economy_job_items_total`).
fn log(job: &'static str, result: Result<usize, RedemptionError>) {
    economy_kit::metrics::job_run(job, result.as_ref().ok().map(|count| u64::try_from(*count).unwrap_or(u64::MAX)));
    match result {
        Ok(0) => {}
        Ok(count) => tracing::info!(job, count, "redemption job pass"),
        Err(error) => tracing::error!(job, %error, "redemption job failed"),
    }
}

/// Expires every pending order past its expiry, `BATCH` at a time, so that one scheduled
/// run leaves no backlog however many lapsed since the last; returns how many. Stops at a
/// batch that expired fewer (the rest resolved meanwhile, or none left).
async fn expire_all_due(service: &Redemption) -> Result<usize, RedemptionError> {
    let mut total = 0;
    loop {
        let expired = service.expire_due(BATCH).await?;
        total += expired;
        if i64::try_from(expired).unwrap_or(i64::MAX) < BATCH {
            return Ok(total);
        }
    }
}

/// Samples the pending orders past their expiry that the expiry pass left
/// (`economy_redemption_orders_expired_backlog`).
async fn sample_expired_backlog(service: &Redemption) {
    if !economy_kit::metrics::enabled() {
        return;
    }
    match service.store.expired_pending(service.clock.now_millis()).await {
        Ok(count) => crate::metrics::expired_backlog(count),
        Err(error) => tracing::warn!(%error, "expired orders not counted"),
    }
}

/// Spawns the dispatcher, the expiry job (the `redemption_expiry` job of `scheduler`) and
/// the stale-locking job.
pub fn spawn(scheduler: &Scheduler, service: Arc<Redemption>, intervals: JobIntervals, shutdown: CancellationToken) {
    let secs = |value: u64| Duration::from_secs(value.max(1));
    let outbox = service.clone();
    every(secs(intervals.outbox_secs), shutdown.clone(), move || {
        let service = outbox.clone();
        async move {
            log("redemption_outbox", dispatch(&service, "").await);
            // Outbox depth: every row still owed, due or backing off.
            match service.store.pending_outbox().await {
                Ok(pending) => crate::metrics::outbox_pending(pending),
                Err(error) => tracing::warn!(%error, "outbox depth not measured"),
            }
        }
    });
    let expiry = service.clone();
    scheduler.spawn("redemption_expiry", intervals.expiry, move || {
        let service = expiry.clone();
        async move {
            let result = expire_all_due(&service).await;
            sample_expired_backlog(&service).await;
            result.map(|count| u64::try_from(count).unwrap_or(u64::MAX)).map_err(|error| error.to_string())
        }
    });
    let timeout_ms = i64::try_from(intervals.locking_timeout_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    every(secs(intervals.outbox_secs), shutdown, move || {
        let service = service.clone();
        async move {
            let cutoff = service.clock.now_millis().saturating_sub(timeout_ms);
            log("redemption_stale_locking", service.fail_stale_locking(cutoff, BATCH).await);
        }
    });
}
