//! The gateway's metrics (README.md, "Observability"): [`describe`] gives each its HELP
//! text and registers every series whose labels are known at start at zero; the other
//! functions record. All are no-ops while no recorder is installed.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use ::metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use tokio_util::sync::CancellationToken;
use tonic::{Response, Status};

use crate::registry::Registry;
use crate::store::IdempotencyStore;

const IDEMPOTENCY_OUTCOMES: &str = "economy_gateway_idempotency_outcomes_total";
const IDEMPOTENCY_RECORDS: &str = "economy_gateway_idempotency_records";
const SNAPSHOT_BYTES: &str = "economy_gateway_idempotency_snapshot_bytes";
const LARGE_SNAPSHOTS: &str = "economy_gateway_idempotency_large_snapshots_total";
const LEASES_EXPIRED: &str = "economy_gateway_idempotency_leases_expired";
/// Gauge of the server streams open at this gateway.
pub const OPEN_STREAMS: &str = "economy_gateway_open_streams";
const UPSTREAM_SERVING: &str = "economy_gateway_upstream_serving";
const RATE_LIMITED: &str = "economy_gateway_rate_limited_total";
const SHED: &str = "economy_gateway_shed_total";
const OPERATIONS: &str = "economy_gateway_operations_total";
const CONSISTENCY_RUNS: &str = "economy_consistency_runs_total";
const CONSISTENCY_FINDINGS: &str = "economy_consistency_findings";
const CONSISTENCY_FINDINGS_TOTAL: &str = "economy_consistency_findings_total";

/// What a write's idempotency key found (docs/idempotency.md).
const IDEMPOTENCY_OUTCOME_LABELS: [&str; 5] = ["new", "resumed", "replayed", "conflict", "processing"];
/// How a write ended: answered by its upstream (`ok`, or `error` for any failure) or
/// from its stored outcome (`replayed`).
const OPERATION_OUTCOMES: [&str; 3] = ["ok", "error", "replayed"];
/// Period of the sampling of records processing past their lease.
const LEASE_SAMPLE_PERIOD: Duration = Duration::from_secs(30);

/// Every kind of finding of the cross-service consistency check (docs/operations.md,
/// "Consistency"); kinds not listed here still count once found.
pub const CONSISTENCY_KINDS: [&str; 9] = [
    "ITEM_LOCKED_BY_CLOSED_LISTING",
    "ITEM_LOCKED_BY_CLOSED_ORDER",
    "LISTING_HOLD_MISSING",
    "LISTING_LOCK_MISSING",
    "FULFILLED_ITEM_NOT_USED",
    "STALE_PENDING_ORDER",
    "OUTBOX_STUCK",
    "EXCHANGE_STUCK",
    "EXCHANGE_HOLD_ORPHANED",
];

/// Kinds of consistency findings seen so far, so a kind gone from the last run reads 0.
static KINDS_SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The interval jobs of the service (`economy_job_runs_total{job}`), at zero from start; the
/// scheduler registers the scheduled ones (`economy_kit::jobs::Scheduler`).
const JOBS: [&str; 1] = ["gateway_processing_timeout"];

/// Describes every metric of the gateway and registers its known series at zero: every
/// canonical operation of `registry` and each of its upstreams (not serving until probed).
/// Call once the recorder is installed (`economy_kit::metrics`), before serving.
pub fn describe(registry: &Registry) {
    for job in JOBS {
        economy_kit::metrics::register_job(job);
    }
    describe_all();
    for outcome in IDEMPOTENCY_OUTCOME_LABELS {
        counter!(IDEMPOTENCY_OUTCOMES, "outcome" => outcome).increment(0);
    }
    for operation in registry.methods().filter_map(|method| method.canonical_operation.clone()) {
        for outcome in OPERATION_OUTCOMES {
            counter!(OPERATIONS, "operation" => operation.clone(), "outcome" => outcome).increment(0);
        }
    }
    for upstream in registry.upstreams() {
        gauge!(UPSTREAM_SERVING, "upstream" => upstream).increment(0.0);
    }
    for kind in CONSISTENCY_KINDS {
        counter!(CONSISTENCY_FINDINGS_TOTAL, "kind" => kind).increment(0);
        gauge!(CONSISTENCY_FINDINGS, "kind" => kind).increment(0.0);
    }
    for name in [IDEMPOTENCY_RECORDS, LEASES_EXPIRED, OPEN_STREAMS] {
        gauge!(name).increment(0.0);
    }
    for name in [LARGE_SNAPSHOTS, RATE_LIMITED, SHED, CONSISTENCY_RUNS] {
        counter!(name).increment(0);
    }
    let _registered = histogram!(SNAPSHOT_BYTES);
}

fn describe_all() {
    describe_counter!(
        IDEMPOTENCY_OUTCOMES,
        "Writes by what their Idempotency-Key found: new, resumed (a failed attempt or an expired lease taken over), replayed, conflict, processing."
    );
    describe_gauge!(IDEMPOTENCY_RECORDS, "Idempotency records kept, counted after each cleanup.");
    describe_histogram!(SNAPSHOT_BYTES, ::metrics::Unit::Bytes, "Sizes of the responses stored for replays, bytes.");
    describe_counter!(
        LARGE_SNAPSHOTS,
        "Stored responses over the warning size (gateway.idempotency.warn_snapshot_bytes)."
    );
    describe_gauge!(LEASES_EXPIRED, "Idempotency records still processing whose lease has passed, sampled every 30 s.");
    describe_gauge!(OPEN_STREAMS, "Server streams open at the gateway.");
    describe_gauge!(UPSTREAM_SERVING, "1 while an upstream answers its health check SERVING, else 0, by upstream.");
    describe_counter!(RATE_LIMITED, "Requests refused by the per-user rate limit (RATE_LIMITED).");
    describe_counter!(SHED, "Requests shed at the in-flight limit (OVERLOADED).");
    describe_counter!(
        OPERATIONS,
        "Writes through the gateway by canonical operation and outcome: ok, error, replayed (answered from the stored outcome)."
    );
    describe_counter!(CONSISTENCY_RUNS, "Completed runs of the scheduled cross-service consistency check.");
    describe_gauge!(CONSISTENCY_FINDINGS, "Findings of the last consistency check run, by kind.");
    describe_counter!(CONSISTENCY_FINDINGS_TOTAL, "Findings of the consistency check runs, by kind.");
}

/// What a write's key found (one of [`IDEMPOTENCY_OUTCOME_LABELS`]).
pub fn idempotency_outcome(outcome: &'static str) {
    counter!(IDEMPOTENCY_OUTCOMES, "outcome" => outcome).increment(1);
}

/// The records kept after a cleanup.
pub fn idempotency_records(count: i64) {
    gauge!(IDEMPOTENCY_RECORDS).set(count as f64);
}

/// A stored response of `size` bytes; `large` when over the warning size.
pub fn snapshot(size: usize, large: bool) {
    histogram!(SNAPSHOT_BYTES).record(size as f64);
    if large {
        counter!(LARGE_SNAPSHOTS).increment(1);
    }
}

/// A request refused by the rate limit.
pub fn rate_limited() {
    counter!(RATE_LIMITED).increment(1);
}

/// A request shed at the in-flight limit.
pub fn shed() {
    counter!(SHED).increment(1);
}

/// Whether `upstream` answered its health check serving.
pub fn upstream_serving(upstream: &str, serving: bool) {
    gauge!(UPSTREAM_SERVING, "upstream" => upstream.to_owned()).set(if serving { 1.0 } else { 0.0 });
}

/// The end of a write of canonical `operation`: a response or status marked
/// `idempotent-replayed` is a replay.
pub fn operation<T>(operation: &str, result: &Result<Response<T>, Status>) {
    counter!(OPERATIONS, "operation" => operation.to_owned(), "outcome" => outcome_of(result)).increment(1);
}

/// One of [`OPERATION_OUTCOMES`].
fn outcome_of<T>(result: &Result<Response<T>, Status>) -> &'static str {
    let replayed = match result {
        Ok(response) => response.metadata().contains_key(crate::proxy::REPLAYED),
        Err(status) => status.metadata().contains_key(crate::proxy::REPLAYED),
    };
    match (replayed, result.is_ok()) {
        (true, _) => "replayed",
        (false, true) => "ok",
        (false, false) => "error",
    }
}

/// A completed consistency check run and its findings' kinds: each kind's count of
/// this run (0 for a kind found before and not now), and each finding counted.
pub fn consistency_run<'a>(kinds: impl IntoIterator<Item = &'a str>) {
    counter!(CONSISTENCY_RUNS).increment(1);
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for kind in kinds {
        *counts.entry(kind.to_owned()).or_default() += 1;
        counter!(CONSISTENCY_FINDINGS_TOTAL, "kind" => kind.to_owned()).increment(1);
    }
    let mut seen = KINDS_SEEN.lock().unwrap_or_else(PoisonError::into_inner);
    for kind in counts.keys() {
        if !CONSISTENCY_KINDS.contains(&kind.as_str()) && !seen.contains(kind) {
            seen.push(kind.clone());
        }
    }
    for kind in CONSISTENCY_KINDS.iter().map(|kind| (*kind).to_owned()).chain(seen.iter().cloned()) {
        let count = counts.get(&kind).copied().unwrap_or(0);
        gauge!(CONSISTENCY_FINDINGS, "kind" => kind).set(count as f64);
    }
}

/// Samples the records processing past their lease every 30 s until `shutdown`
/// (`economy_gateway_idempotency_leases_expired`), at the "now" of `clock`; nothing
/// while no recorder is installed.
pub fn spawn_lease_sampler(
    store: IdempotencyStore,
    clock: economy_kit::time::SharedClock,
    shutdown: CancellationToken,
) {
    if !economy_kit::metrics::enabled() {
        return;
    }
    economy_kit::jobs::every(LEASE_SAMPLE_PERIOD, shutdown, move || {
        let (store, now) = (store.clone(), clock.now_millis());
        async move {
            match store.leases_expired(now).await {
                Ok(count) => gauge!(LEASES_EXPIRED).set(count as f64),
                Err(error) => tracing::warn!(%error, "idempotency leases past their end not counted"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sample of `name{label="value"}` in `rendered`.
    fn sample(rendered: &str, name: &str, label: (&str, &str)) -> Option<f64> {
        let series = format!("{name}{{{}=\"{}\"}} ", label.0, label.1);
        rendered.lines().find_map(|line| line.strip_prefix(&series)?.trim().parse().ok())
    }

    #[tokio::test]
    async fn the_findings_gauge_holds_the_last_run_and_zero_for_kinds_gone() {
        let recorder = economy_kit::metrics::recorder().expect("recorder");
        consistency_run(["TEST_ONLY_KIND", "TEST_ONLY_KIND", "OUTBOX_STUCK"]);
        let rendered = recorder.render();
        let findings = |kind| sample(&rendered, CONSISTENCY_FINDINGS, ("kind", kind));
        assert_eq!((findings("TEST_ONLY_KIND"), findings("OUTBOX_STUCK")), (Some(2.0), Some(1.0)));
        assert_eq!(findings("EXCHANGE_STUCK"), Some(0.0), "every known kind is exported");

        consistency_run([]);
        let rendered = recorder.render();
        let findings = |kind| sample(&rendered, CONSISTENCY_FINDINGS, ("kind", kind));
        assert_eq!((findings("TEST_ONLY_KIND"), findings("OUTBOX_STUCK")), (Some(0.0), Some(0.0)));
        assert!(sample(&rendered, CONSISTENCY_FINDINGS_TOTAL, ("kind", "TEST_ONLY_KIND")) >= Some(2.0));
    }

    #[test]
    fn a_write_answered_from_its_record_is_a_replay() {
        let mut replayed = Response::new(());
        replayed.metadata_mut().insert(crate::proxy::REPLAYED, "true".parse().expect("ascii"));
        let mut replayed_error = Status::invalid_argument("stored");
        replayed_error.metadata_mut().insert(crate::proxy::REPLAYED, "true".parse().expect("ascii"));
        assert_eq!(outcome_of(&Ok(replayed)), "replayed");
        assert_eq!(outcome_of::<()>(&Err(replayed_error)), "replayed");
        assert_eq!(outcome_of(&Ok(Response::new(()))), "ok");
        assert_eq!(outcome_of::<()>(&Err(Status::unavailable("down"))), "error");
    }
}
