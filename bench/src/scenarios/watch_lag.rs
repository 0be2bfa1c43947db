//! `watch-lag`: stream delivery lag at a sustained write rate (docs/streams.md).
//!
//! The writers are `ledger-write`'s transfers through the gateway: client `i` acts as
//! admin `ADMIN_BASE + i` and moves 1 unit from user `base + 1 + 2i` (funded in setup) to
//! user `base + 2 + 2i`, a fresh idempotency key each, closed loop or open loop
//! (`--rate`). Before the timed phase, and after setup, the consumers open their streams
//! from now through the gateway and wait for the heartbeat that marks their start:
//!
//! - one `BackpackService/WatchBackpack` per writer, as the writer's source user (a BFF
//!   following one player), which sees every entry of that writer;
//! - one `LedgerService/WatchEntries` of every entry, as an admin (an analytics consumer).
//!
//! Each delivered entry's lag is its receipt time minus its `created_at`, recorded per
//! consumer kind for the entries created in the measured window ([`crate::lag`]). After
//! the last write the consumers get [`DRAIN_TIMEOUT`] to catch up, then every written
//! entry must have been delivered exactly once to the admin stream and to its writer's
//! backpack stream: a missing or repeated entry, or a stream that ended, makes the
//! scenario fail.

mod consumers;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use economy_kit::identity::roles;
use economy_proto::ledger::v1 as pb;

use self::consumers::Consumers;
use super::BenchOptions;
use super::ledger::{FUNDING, transfer};
use super::setup::{self, ADMIN_BASE};
use crate::clients::{self, Auth, LedgerClient, Route, new_key};
use crate::driver::{self, Measurement, Outcome, Worker};
use crate::lag::Window;
use crate::stack::Stack;

/// How long the consumers may take after the last write to deliver what was written.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Entry ids one writer wrote, shared with the scenario.
type Written = Arc<Mutex<Vec<String>>>;

/// One client: a transfer between two users of its own, through the gateway.
struct Writer {
    client: LedgerClient,
    request: pb::PostTransactionRequest,
    written: Written,
}

impl Worker for Writer {
    async fn call(&mut self) -> Outcome {
        let request = match Route::Gateway.write(self.request.clone(), &new_key()) {
            Ok(request) => request,
            Err(error) => return Outcome::unexpected("HARNESS", format!("{error:#}")),
        };
        match self.client.post_transaction(request).await {
            Ok(response) => match response.into_inner().transaction {
                Some(entry) => {
                    self.written.lock().unwrap_or_else(PoisonError::into_inner).push(entry.id);
                    Outcome::Ok
                }
                None => Outcome::unexpected("NO_ENTRY", "PostTransaction answered without its entry"),
            },
            Err(status) => Outcome::status(&status),
        }
    }
}

/// The source and destination users of writer `index`.
fn users(base: i64, index: usize) -> (i64, i64) {
    let from = base + 1 + 2 * index as i64;
    (from, from + 1)
}

/// Defines the run's currency and funds every writer's source user; returns the currency.
async fn prepare(stack: &Stack, sources: &[i64]) -> anyhow::Result<String> {
    let asset = format!("BENCH_{}", setup::run_suffix());
    let mut admin = setup::ledger_admin(stack).await?;
    setup::define_asset(&mut admin, &asset).await?;
    // The first funding creates SYSTEM_ISSUANCE's balance row alone: concurrent writes
    // racing to create a balance row fail on PostgreSQL.
    let (first, rest) = sources.split_first().ok_or_else(|| anyhow::anyhow!("no writer"))?;
    setup::fund(&admin, &asset, FUNDING, vec![*first]).await?;
    setup::fund(&admin, &asset, FUNDING, rest.to_vec()).await?;
    Ok(asset)
}

/// One writer per `(from, to)` pair, with the list each one fills with its entry ids.
async fn writers(
    stack: &Stack,
    options: &BenchOptions,
    asset: &str,
    pairs: &[(i64, i64)],
) -> anyhow::Result<(Vec<Writer>, Vec<Written>)> {
    let channels = clients::connect_many(&stack.gateway_url, options.load.connections).await?;
    let mut workers = Vec::with_capacity(pairs.len());
    let mut written = Vec::with_capacity(pairs.len());
    for (index, (from, to)) in pairs.iter().enumerate() {
        let auth = Auth::Bearer(stack.bearer(ADMIN_BASE + index as i64, roles::ADMIN)?);
        let client = clients::ledger(channels[index % channels.len()].clone(), auth);
        let list = Written::default();
        workers.push(Writer { client, request: transfer(asset, *from, *to), written: list.clone() });
        written.push(list);
    }
    Ok((workers, written))
}

/// Sets up, opens the streams, drives the writes, drains the streams and adds what they
/// saw to the writes' measurement.
pub(super) async fn run(stack: &Stack, options: &BenchOptions) -> anyhow::Result<Measurement> {
    let base = setup::user_base(stack);
    let pairs: Vec<(i64, i64)> = (0..options.load.concurrency.max(1)).map(|index| users(base, index)).collect();
    let sources: Vec<i64> = pairs.iter().map(|(from, _)| *from).collect();
    let asset = prepare(stack, &sources).await?;
    let consumers = Consumers::open(stack, &sources, options.load.connections).await?;
    let (workers, written) = writers(stack, options, &asset, &pairs).await?;
    let started = SystemTime::now();
    let mut measurement = driver::drive(workers, &options.load).await?;
    let start = started + options.load.warmup;
    let window = Window { start, end: start + measurement.elapsed };
    let written: Vec<Vec<String>> =
        written.iter().map(|list| std::mem::take(&mut *list.lock().unwrap_or_else(PoisonError::into_inner))).collect();
    measurement.streams = Some(Box::new(consumers.finish(&written, window, DRAIN_TIMEOUT).await?));
    Ok(measurement)
}
