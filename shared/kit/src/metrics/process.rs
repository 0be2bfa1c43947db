//! The metrics of the process itself (docs/operations.md, "Observability"):
//! `economy_build_info{version,commit}` = 1 (the crate version and the commit the build
//! came from, `unknown` without one: see the kit's `build.rs`) and the `process_*`
//! metrics of the `metrics-process` crate — `process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_virtual_memory_bytes`, `process_open_fds`,
//! `process_max_fds`, `process_start_time_seconds`, `process_threads` — read at every
//! scrape.

use std::sync::OnceLock;

use metrics_process::Collector;

/// This build's version (the workspace's crate version).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The commit this build comes from, or `unknown`.
pub const COMMIT: &str = env!("ECONOMY_GIT_COMMIT");

fn collector() -> &'static Collector {
    static COLLECTOR: OnceLock<Collector> = OnceLock::new();
    COLLECTOR.get_or_init(Collector::default)
}

/// Describes the process metrics and sets `economy_build_info`; call once the recorder is
/// installed.
pub(super) fn register() {
    collector().describe();
    metrics::gauge!("economy_build_info", "version" => VERSION, "commit" => COMMIT).set(1.0);
    collect();
}

/// Reads the process's CPU time, memory, file descriptors and threads into their gauges.
pub(super) fn collect() {
    collector().collect();
}
