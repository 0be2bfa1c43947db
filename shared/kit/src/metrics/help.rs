//! HELP texts of the metrics the kit defines, and the start-up zeros of the job counters
//! (docs/operations.md, "Observability"). The recorder keeps a description only when it is
//! given after the recorder is installed: `describe_kit` runs right after it.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

use crate::jobs::scheduled::gauges::{DURATION, ITEMS, LAST, LAST_SUCCESS, NEXT, SUCCESS};

/// Describes every metric of the kit: RPCs (`crate::observe`), jobs, pools, SQLite files,
/// long reads and the build.
pub(super) fn describe_kit() {
    describe_rpcs();
    describe_jobs();
    describe_databases();
    describe_gauge!("economy_build_info", "Build of this process (always 1): crate version and git commit.");
}

fn describe_rpcs() {
    describe_counter!(
        "grpc_server_started_total",
        "RPCs started on the server, by gRPC service, method and type (unknown paths: `unknown`)."
    );
    describe_counter!(
        "grpc_server_handled_total",
        "RPCs completed on the server, by gRPC status code (`Canceled`: ended before a status was sent)."
    );
    describe_histogram!(
        "grpc_server_handling_seconds",
        Unit::Seconds,
        "Time from an RPC's request to the end of its response (a stream's whole life), seconds."
    );
}

fn describe_jobs() {
    describe_counter!("economy_job_runs_total", "Passes of a background job, by outcome (`ok` or `error`).");
    describe_counter!(
        "economy_job_items_total",
        "Rows changed, deliveries or findings of a background job's successful passes."
    );
    describe_gauge!(NEXT, Unit::Seconds, "Next scheduled run of the job, Unix time.");
    describe_gauge!(LAST, Unit::Seconds, "Start of the job's latest ended run, Unix time (0: none yet).");
    describe_gauge!(DURATION, Unit::Seconds, "Duration of the job's latest ended run.");
    describe_gauge!(
        ITEMS,
        "Items of the job's latest ended run: rows changed, or findings for the checks (0 before any run)."
    );
    describe_gauge!(SUCCESS, "1 when the job's latest ended run succeeded, else 0 (0 before any run).");
    describe_gauge!(LAST_SUCCESS, Unit::Seconds, "End of the job's latest successful run, Unix time (0: none yet).");
}

fn describe_databases() {
    describe_gauge!(
        "economy_db_pool_connections",
        "Connections of a database pool by state (`idle`, `in_use`), sampled every 5 s."
    );
    describe_gauge!("economy_db_pool_max_connections", "Largest size of a database pool.");
    describe_gauge!(
        "economy_sqlite_wal_bytes",
        Unit::Bytes,
        "Size of a SQLite file's write-ahead log, sampled every 5 s."
    );
    describe_counter!(
        "economy_sqlite_checkpoints_total",
        "TRUNCATE checkpoints of a SQLite write-ahead log past 64 MiB, by outcome (`truncated`, `busy`, `error`)."
    );
    describe_counter!(
        "economy_db_long_reads_stopped_total",
        "Long reads stopped on the database because their request's deadline passed or its client cancelled."
    );
}

/// Puts the counters of the background job `job` at zero, so they exist from start-up:
/// `economy_job_runs_total{job,outcome="ok"|"error"}` and `economy_job_items_total{job}`.
/// Call once where the job is spawned; `crate::metrics::job_run` counts its passes. No-op
/// without a recorder.
pub fn register_job(job: &'static str) {
    for outcome in ["ok", "error"] {
        metrics::counter!("economy_job_runs_total", "job" => job, "outcome" => outcome).increment(0);
    }
    metrics::counter!("economy_job_items_total", "job" => job).increment(0);
}
