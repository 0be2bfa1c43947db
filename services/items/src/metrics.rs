//! The items service's metrics (README.md, "Observability"): [`describe`] gives each its
//! HELP text and registers the series known at start at zero; the other functions record
//! (the report's gauges for the report job, `jobs::report`). No-ops while no recorder is
//! installed.

use ::metrics::{counter, describe_counter, describe_gauge, gauge};

const GRANTED: &str = "economy_items_granted_total";
const BY_STATUS: &str = "economy_items_by_status";
const STALE: &str = "economy_items_stale";

/// The interval jobs of the service (`economy_job_runs_total{job}`), at zero from start; the
/// scheduler registers the scheduled ones (`economy_kit::jobs::Scheduler`).
const JOBS: [&str; 2] = ["items_item_expiry", "items_lock_expiry"];

/// Describes the service's counters and registers them at zero. Call once the recorder is
/// installed (`economy_kit::metrics`), before serving.
pub fn describe() {
    for job in JOBS {
        economy_kit::metrics::register_job(job);
    }
    describe_counter!(GRANTED, "Item instances granted (GrantItem executed, replays not counted).");
    describe_gauge!(BY_STATUS, "Item instances per template and status, from the items report.");
    describe_gauge!(STALE, "Items locked longer than items.stale_lock_after_days, from the items report.");
    counter!(GRANTED).increment(0);
    gauge!(STALE, "status" => "locked").increment(0.0);
}

/// One instance granted.
pub fn granted() {
    counter!(GRANTED).increment(1);
}

/// Instances of `template` in `status`, from the items report.
pub fn by_status(template: &str, status: &'static str) -> ::metrics::Gauge {
    gauge!(BY_STATUS, "template" => template.to_owned(), "status" => status)
}

/// Locks held longer than the configured age, from the items report.
pub fn stale_locks(count: i64) {
    gauge!(STALE, "status" => "locked").set(count as f64);
}
