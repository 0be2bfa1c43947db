//! Background jobs. Hold expiry (docs/ledger.md, "Holds"): every interval, open holds past
//! their expiry are released with status `expired`. Safe on several replicas at once: each
//! release is a compare-and-set on `open` under the deterministic key `hold:<id>:expire`.

use std::time::{Duration, Instant};

use economy_kit::jobs::{Scheduler, every, every_after_a_period};
use economy_kit::schedule::Schedule;
use economy_kit::time::SharedClock;
use tokio_util::sync::CancellationToken;

use crate::domain::LedgerError;
use crate::domain::commands::ReleaseHold;
use crate::domain::ids::{EntityId, IdempotencyKey};
use crate::domain::reconcile::Finding;
use crate::metrics::{self, Check};
use crate::store::{LedgerStore, ReconcileLimits};

/// Holds expired per batch.
const BATCH: i64 = 100;
/// Actor recorded on expiry entries.
const ACTOR: &str = "service:ledger-hold-expiry";

/// Runs `expire_holds` every `interval` until `shutdown`, at the "now" of `clock`.
pub fn spawn_hold_expiry(store: LedgerStore, clock: SharedClock, interval: Duration, shutdown: CancellationToken) {
    every(interval, shutdown, move || {
        let (store, now) = (store.clone(), clock.now_millis());
        async move {
            let result = expire_holds(&store, now).await;
            let expired = result.as_ref().ok().map(|count| u64::try_from(*count).unwrap_or(u64::MAX));
            economy_kit::metrics::job_run("ledger_hold_expiry", expired);
            match result {
                Ok(0) => {}
                Ok(expired) => tracing::info!(expired, "expired holds released"),
                Err(error) => tracing::error!(%error, "hold expiry failed"),
            }
            sample_holds(&store, now).await;
        }
    });
}

/// Samples the open holds and those past their expiry that the pass left
/// (`economy_ledger_holds_open`, `economy_ledger_holds_expired_backlog`).
async fn sample_holds(store: &LedgerStore, now: i64) {
    if !economy_kit::metrics::enabled() {
        return;
    }
    match store.hold_counts(now).await {
        Ok((open, expired)) => metrics::holds(open, expired),
        Err(error) => tracing::warn!(%error, "hold counts not measured"),
    }
}

/// Releases every open hold whose expiry is at or before `now`; returns how many this
/// call released (holds resolved concurrently by others are skipped).
pub async fn expire_holds(store: &LedgerStore, now: i64) -> Result<usize, LedgerError> {
    let mut released = 0;
    loop {
        let ids = store.expired_holds(now, BATCH).await?;
        let batch_len = ids.len();
        for id in ids {
            let hold =
                EntityId::parse(&id).map_err(|_| LedgerError::Storage(format!("corrupt hold id {id}").into()))?;
            let key = IdempotencyKey::parse(&format!("hold:{id}:expire"))
                .map_err(|error| LedgerError::Storage(error.into()))?;
            let plan = ReleaseHold { hold, reason: "expired".into(), expiry: true }.plan(key, ACTOR);
            match store.apply(&plan).await {
                Ok(applied) if !applied.replayed => released += 1,
                Ok(_) | Err(LedgerError::HoldAlreadyResolved { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        if i64::try_from(batch_len).unwrap_or(i64::MAX) < BATCH {
            return Ok(released);
        }
    }
}

/// Runs the whole check on `schedule`, once per scheduled time across replicas (the
/// `ledger_reconciliation` job of `scheduler`; docs/ledger.md, "Reconciliation";
/// docs/operations.md, "Background jobs"): a run starts a pass, or continues the one under
/// way, until it completes, chunk by chunk,
/// each followed by a pause as long as the chunk took, so a pass keeps at most half of a
/// core busy; a pass a restart interrupted resumes where it stood. Each finding is logged
/// with its account, asset, expected and actual values and counted in
/// `economy_ledger_reconcile_findings_total{kind}`. Each chunk is applied once, whichever
/// replica runs it.
pub fn spawn_reconciliation(scheduler: &Scheduler, store: LedgerStore, limits: ReconcileLimits, schedule: Schedule) {
    scheduler.spawn("ledger_reconciliation", schedule, move || run_whole_pass(store.clone(), limits));
}

/// Steps through the scheduled pass until it is complete; answers its findings. Stopped
/// between two chunks at shutdown (the scheduler drops it), the next run resumes it.
async fn run_whole_pass(store: LedgerStore, limits: ReconcileLimits) -> Result<u64, String> {
    let mut may_start = true;
    loop {
        let started = Instant::now();
        match store.reconcile_scheduled_step(&limits, may_start).await {
            Ok(Some(step)) => {
                log_findings(&step.findings);
                if step.complete {
                    let (findings, balances, entries) = step.totals;
                    metrics::reconciled(Check::Whole, u64::try_from(findings).unwrap_or_default());
                    tracing::info!(findings, balances, entries, "ledger reconciled (whole pass)");
                    return Ok(u64::try_from(findings).unwrap_or_default());
                }
            }
            Ok(None) => return Ok(0),
            Err(error) => {
                tracing::error!(%error, "scheduled reconciliation failed; the next run resumes the pass");
                return Err(error.to_string());
            }
        }
        may_start = false;
        tokio::time::sleep(started.elapsed()).await;
    }
}

/// Runs the incremental check every `interval` (first one `interval` after start) until
/// `shutdown`: the entries committed since the checkpoint, then the checkpoint moves
/// (docs/ledger.md, "Reconciliation"). Findings as [`spawn_reconciliation`]'s. Replicas
/// may run it together: each round is applied once.
pub fn spawn_incremental_reconciliation(store: LedgerStore, interval: Duration, shutdown: CancellationToken) {
    every_after_a_period(interval, shutdown, move || {
        let store = store.clone();
        async move {
            match store.reconcile_increment().await {
                Ok(increment) => {
                    export_findings("ledger_incremental_reconciliation", Check::Incremental, &increment.findings);
                    tracing::debug!(
                        findings = increment.findings.len(),
                        entries = increment.entries_checked,
                        balances = increment.balances_checked,
                        "ledger reconciled since the checkpoint"
                    );
                }
                Err(error) => {
                    economy_kit::metrics::job_run("ledger_incremental_reconciliation", None);
                    tracing::error!(%error, "incremental reconciliation failed");
                }
            }
        }
    });
}

/// Logs and counts the findings of one run of `job`.
fn export_findings(job: &'static str, check: Check, findings: &[Finding]) {
    count_run(job, check, u64::try_from(findings.len()).unwrap_or(u64::MAX));
    log_findings(findings);
}

/// Counts a completed run of `job`, the reconciliation `check`, that found `findings`.
fn count_run(job: &'static str, check: Check, findings: u64) {
    economy_kit::metrics::job_run(job, Some(findings));
    metrics::reconciled(check, findings);
}

/// Logs each finding and counts it by kind.
fn log_findings(findings: &[Finding]) {
    for finding in findings {
        let kind = format!("{:?}", finding.kind);
        metrics::finding(finding.kind);
        tracing::warn!(
            kind,
            account = finding.account.as_ref().map(|account| account.key()).unwrap_or_default(),
            asset = %finding.asset,
            expected = %finding.expected,
            actual = %finding.actual,
            entry = finding.entry_id.as_deref().unwrap_or_default(),
            "ledger reconciliation finding"
        );
    }
}
