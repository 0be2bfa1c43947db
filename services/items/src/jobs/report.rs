//! The daily items report as metrics (docs/items.md, "Reports"):
//! `economy_items_by_status{template,status}`, instances per template and status, and
//! `economy_items_stale{status="locked"}`, locks held longer than
//! `items.stale_lock_after_days`. Only reads, so every replica may run it.

use std::collections::BTreeSet;
use std::sync::Arc;

use economy_kit::jobs::Scheduler;
use economy_kit::schedule::Schedule;
use economy_kit::time::SharedClock;

use crate::domain::ItemError;
use crate::grpc::ReportOptions;
use crate::store::ItemStore;

/// The job's name in `job_runs` and the job metrics.
pub const JOB: &str = "items_report";

/// Runs the report on `schedule` (`items.report_schedule`), once per scheduled instant
/// across replicas, at the "now" of `clock`; its run's items are the stale locks found.
pub fn spawn_report(
    scheduler: &Scheduler,
    schedule: Schedule,
    store: ItemStore,
    clock: SharedClock,
    options: ReportOptions,
) {
    let gauges = Arc::new(tokio::sync::Mutex::new(ReportGauges::default()));
    scheduler.spawn(JOB, schedule, move || {
        let (store, clock, gauges) = (store.clone(), clock.clone(), gauges.clone());
        async move {
            let result = gauges.lock().await.export(&store, clock.now_millis(), &options).await;
            result.map_err(|error| error.to_string())
        }
    });
}

/// The gauges one replica has exported: a pair that had instances and has none any more is
/// set back to 0 instead of keeping its last count.
#[derive(Debug, Default)]
pub struct ReportGauges {
    exported: BTreeSet<(String, &'static str)>,
}

impl ReportGauges {
    /// Computes the report at `now` (ms since the epoch) and sets the gauges; returns how
    /// many locks are stale (the run's items: the alert on stale locks reads them from the
    /// run, which outlives a restart).
    ///
    /// Errors: the store's (`ItemError::Storage`).
    pub async fn export(&mut self, store: &ItemStore, now: i64, options: &ReportOptions) -> Result<u64, ItemError> {
        let report = store.report(options.stale_before(now), 0).await?;
        let mut exported = BTreeSet::new();
        for count in &report.statuses {
            let key = (count.template_code.clone(), count.status.as_str());
            crate::metrics::by_status(&key.0, key.1).set(count.count as f64);
            exported.insert(key);
        }
        for gone in self.exported.difference(&exported) {
            crate::metrics::by_status(&gone.0, gone.1).set(0.0);
        }
        self.exported = exported;
        crate::metrics::stale_locks(report.stale_locked_count);
        Ok(u64::try_from(report.stale_locked_count).unwrap_or(0))
    }
}
