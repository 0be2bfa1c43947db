//! Integration tests: the real ledger server on `127.0.0.1:0` with a fresh database per
//! test (SQLite, or PostgreSQL when `ECONOMY_TEST_POSTGRES_URL` is set), driven through a
//! real tonic client signed with the internal identity.

#![allow(missing_docs, clippy::unwrap_used)]

mod auth;
mod balances;
mod cancel;
mod catalog;
mod common;
mod compensation;
mod concurrency;
mod conflicts;
mod history;
mod holds;
mod import;
mod properties;
mod reconcile;
mod resulting;
mod retries;
mod scheduled;
mod validation;
mod watch;
mod whole_pass;
