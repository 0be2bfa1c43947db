//! Integration tests: the real items server on `127.0.0.1:0` with a fresh database per
//! test (SQLite, or PostgreSQL when `ECONOMY_TEST_POSTGRES_URL` is set), driven through a
//! real tonic client signed with the internal identity.

#![allow(missing_docs, clippy::unwrap_used)]

mod auth;
mod common;
mod compensation;
mod concurrency;
mod correlation;
mod expiry;
mod grants;
mod idempotency;
mod import;
mod jobs;
mod lists;
mod report;
mod templates;
mod transitions;
mod validation;
mod watch;
