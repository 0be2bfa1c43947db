//! The Economy benchmark harness (BENCHMARKS.md: what each scenario measures and the
//! current results): `economy-bench <scenario>` starts the whole stack in-process (every
//! service on `127.0.0.1:0` over fresh SQLite or PostgreSQL databases) or targets a
//! running one, drives it with N concurrent real tonic clients over a few shared HTTP/2
//! connections for a fixed duration, and reports throughput, latency percentiles
//! (HdrHistogram), failures by `ErrorInfo.reason` and the database backend.
//!
//! Modules:
//! - [`cli`]: the command line (clap) and the process entry point;
//! - [`stack`]: databases and the in-process stack, or a running stack's endpoints;
//! - [`clients`]: authenticated gRPC clients (bearer tokens for the gateway, the signed
//!   internal identity for a service called directly) and idempotency keys;
//! - [`driver`]: the closed-loop load driver and its [`driver::Measurement`];
//! - [`lag`]: stream delivery lag and the exactly-once check of `watch-lag`;
//! - [`scenarios`]: what each scenario sets up and what one operation is;
//! - [`report`]: the printed results, the `all` table, ratios and targets.
//!
//! The library API (`scenarios::run`, `scenarios::run_all`) is what `tests/smoke.rs` uses.

pub mod cli;
pub mod clients;
pub mod driver;
pub mod lag;
pub mod report;
pub mod scenarios;
pub mod stack;

pub use driver::{LoadOptions, Measurement};
pub use scenarios::{BenchOptions, LedgerOp, Outcome, Scenario, ScenarioResult};
pub use stack::{Backend, Target};
