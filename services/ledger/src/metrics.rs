//! The ledger's metrics (README.md, "Observability"): [`describe`] gives each its HELP
//! text and registers every series whose labels are known at start at zero; the other
//! functions record. All are no-ops while no recorder is installed.

use ::metrics::{counter, describe_counter, describe_gauge, gauge};

use crate::domain::reconcile::FindingKind;

const RECONCILE_RUNS: &str = "economy_ledger_reconcile_runs_total";
const RECONCILE_FINDINGS: &str = "economy_ledger_reconcile_findings";
const RECONCILE_FINDINGS_TOTAL: &str = "economy_ledger_reconcile_findings_total";
const ENTRIES: &str = "economy_ledger_entries_total";
const HOLDS_OPEN: &str = "economy_ledger_holds_open";
const HOLDS_EXPIRED_BACKLOG: &str = "economy_ledger_holds_expired_backlog";

/// Every kind of reconciliation finding (the `kind` label: the variant's name).
const FINDING_KINDS: [FindingKind; 6] = [
    FindingKind::BalancePostingsMismatch,
    FindingKind::FrozenHoldsMismatch,
    FindingKind::AssetNotZeroSum,
    FindingKind::AvailableAfterMismatch,
    FindingKind::FrozenAfterMismatch,
    FindingKind::BalanceSeqMismatch,
];

/// The business types of the ledger's own commands and defaults (docs/ledger.md); callers
/// may post others (UPPER_SNAKE), which appear once written.
const BUSINESS_TYPES: [&str; 9] = [
    "ADMIN_ADJUST",
    "TRANSFER",
    "HOLD_CREATE",
    "HOLD_SETTLE",
    "HOLD_RELEASE",
    "HOLD_EXPIRE",
    "HOLD_FORCE_RELEASE",
    "ASSET_CONVERT",
    "IMPORT",
];

/// Which reconciliation ran (docs/ledger.md, "Reconciliation").
#[derive(Debug, Clone, Copy)]
pub enum Check {
    /// A complete pass of the whole check.
    Whole,
    /// The incremental check of the entries since its checkpoint.
    Incremental,
}

impl Check {
    const ALL: [Self; 2] = [Self::Whole, Self::Incremental];

    fn label(self) -> &'static str {
        match self {
            Self::Whole => "whole",
            Self::Incremental => "incremental",
        }
    }
}

/// The interval jobs of the service (`economy_job_runs_total{job}`), at zero from start; the
/// scheduler registers the scheduled ones (`economy_kit::jobs::Scheduler`).
const JOBS: [&str; 2] = ["ledger_hold_expiry", "ledger_incremental_reconciliation"];

/// Describes every metric of the ledger and registers its known series at zero. Call once
/// the recorder is installed (`economy_kit::metrics`), before serving.
pub fn describe() {
    for job in JOBS {
        economy_kit::metrics::register_job(job);
    }
    describe_counter!(RECONCILE_RUNS, "Completed reconciliation runs of the ledger, by check (whole, incremental).");
    describe_gauge!(RECONCILE_FINDINGS, "Findings of the last completed reconciliation run, by check.");
    describe_counter!(RECONCILE_FINDINGS_TOTAL, "Reconciliation findings, by kind of violated invariant.");
    describe_counter!(ENTRIES, "Journal entries written (replays not counted), by business type.");
    describe_gauge!(HOLDS_OPEN, "Open holds, sampled by each pass of the hold-expiry job.");
    describe_gauge!(
        HOLDS_EXPIRED_BACKLOG,
        "Open holds past their expiry that the hold-expiry job's last pass left, sampled after each pass."
    );
    for check in Check::ALL {
        counter!(RECONCILE_RUNS, "check" => check.label()).increment(0);
        gauge!(RECONCILE_FINDINGS, "check" => check.label()).increment(0.0);
    }
    for kind in FINDING_KINDS {
        counter!(RECONCILE_FINDINGS_TOTAL, "kind" => format!("{kind:?}")).increment(0);
    }
    for business_type in BUSINESS_TYPES {
        counter!(ENTRIES, "business_type" => business_type).increment(0);
    }
    gauge!(HOLDS_OPEN).increment(0.0);
    gauge!(HOLDS_EXPIRED_BACKLOG).increment(0.0);
}

/// A completed run of `check` that found `findings`.
pub fn reconciled(check: Check, findings: u64) {
    counter!(RECONCILE_RUNS, "check" => check.label()).increment(1);
    gauge!(RECONCILE_FINDINGS, "check" => check.label()).set(findings as f64);
}

/// One finding of kind `kind`.
pub fn finding(kind: FindingKind) {
    counter!(RECONCILE_FINDINGS_TOTAL, "kind" => format!("{kind:?}")).increment(1);
}

/// An entry of `business_type` written (not a replay).
pub fn entry_written(business_type: &str) {
    counter!(ENTRIES, "business_type" => business_type.to_owned()).increment(1);
}

/// The holds open and, of them, those past their expiry.
pub fn holds(open: i64, expired: i64) {
    gauge!(HOLDS_OPEN).set(open as f64);
    gauge!(HOLDS_EXPIRED_BACKLOG).set(expired as f64);
}
