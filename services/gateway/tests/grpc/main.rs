//! Integration tests of the gateway through a real tonic client: a real ledger (or a custom
//! `economy.shop.v1` upstream) behind a real gateway, each on `127.0.0.1:0` with a fresh
//! database (SQLite, or PostgreSQL when `ECONOMY_TEST_POSTGRES_URL` is set).

#![allow(missing_docs, clippy::unwrap_used)]

mod auth;
mod canonical;
mod common;
mod connect;
mod contracts;
mod cors;
mod deadlines;
mod idempotency;
mod jobs;
mod leases;
mod limits;
mod malformed;
mod oidc;
mod operators;
mod provider;
mod shop;
mod snapshots;
mod stream_upstream;
mod streams;
mod tls;
