//! Shared plumbing of every Economy service (ARCHITECTURE.md, "Code map"): layered
//! configuration, tracing, the gRPC server builder (health, reflection, limits, graceful
//! shutdown), database open + migrate for SQLite and PostgreSQL, the error model, the
//! signed internal identity and the audit records of the compensation tools.

pub mod accounts;
pub mod audit;
pub mod batch;
pub mod client;
pub mod config;
pub mod connect;
pub mod db;
pub mod error;
pub mod group_commit;
pub mod identity;
pub mod job_runs;
pub mod jobs;
pub mod metrics;
pub mod observe;
pub mod outbox;
pub mod process;
pub mod reasons;
pub mod schedule;
pub mod server;
pub mod sqlite_backup;
pub mod telemetry;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod time;
pub mod tls;
pub mod watch;

/// The global allocator of every Economy binary (`#[global_allocator] static ALLOCATOR:
/// economy_kit::Allocator = economy_kit::Allocator;`): mimalloc, measured faster than the
/// system allocator for the services' many small allocations (glibc's allocator and copies
/// took 18 % of the profiled samples; docs/performance-log.md).
pub use mimalloc::MiMalloc as Allocator;
