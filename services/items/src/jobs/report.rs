//! The daily items report as metrics (docs/items.md, "Reports"):
//! `economy_items_by_status{template,status}`, instances per template and status, and
//! `economy_items_stale{status="locked"}`, locks held longer than
//! `items.stale_lock_after_days`. Only reads, so every replica may run it.

use std::collections::BTreeSet;

use crate::domain::ItemError;
use crate::grpc::ReportOptions;
use crate::store::ItemStore;

/// The gauges one replica has exported: a pair that had instances and has none any more is
/// set back to 0 instead of keeping its last count.
#[derive(Debug, Default)]
pub struct ReportGauges {
    exported: BTreeSet<(String, &'static str)>,
}

impl ReportGauges {
    /// Computes the report at `now` (ms since the epoch) and sets the gauges; returns how
    /// many (template, status) pairs have instances.
    ///
    /// Errors: the store's (`ItemError::Storage`).
    pub async fn export(&mut self, store: &ItemStore, now: i64, options: &ReportOptions) -> Result<usize, ItemError> {
        let report = store.report(options.stale_before(now), 0).await?;
        let mut exported = BTreeSet::new();
        for count in &report.statuses {
            let key = (count.template_code.clone(), count.status.as_str());
            by_status(&key).set(count.count as f64);
            exported.insert(key);
        }
        for gone in self.exported.difference(&exported) {
            by_status(gone).set(0.0);
        }
        self.exported = exported;
        metrics::gauge!("economy_items_stale", "status" => "locked").set(report.stale_locked_count as f64);
        Ok(report.statuses.len())
    }
}

fn by_status((template, status): &(String, &'static str)) -> metrics::Gauge {
    metrics::gauge!("economy_items_by_status", "template" => template.clone(), "status" => *status)
}
