//! The ledger write scenarios: `ledger-write`, `ledger-write-direct`, `replay` and
//! `hot-account`.
//!
//! Setup defines a currency of its own (`BENCH_<hex>`), credits the shared account once
//! and, for transfers, funds every client's source account with one large
//! `AdjustBalance`. Client `i` acts as admin
//! `ADMIN_BASE + i` and moves 1 unit per write between its own two accounts, so clients
//! share no balance row — except in `hot-account`, where every write pays (or credits)
//! one shared account, and with `--ledger-op adjust`, where every write also moves the
//! one `SYSTEM_ISSUANCE` balance.

use economy_kit::identity::{Caller, roles};
use economy_proto::ledger::v1 as pb;
use tonic::metadata::MetadataMap;

use super::setup::{self, ADMIN_BASE, SETUP_LANES};
use super::{BenchOptions, LedgerOp};
use crate::clients::{self, Auth, LedgerClient, REPLAYED, Route, new_key};
use crate::driver::{self, Measurement, Outcome, Worker};
use crate::stack::Stack;

/// Keys each client uses (first executed during setup) in `replay`.
const REPLAY_KEYS_PER_CLIENT: usize = 32;
/// What setup credits to every transfer source account.
pub(super) const FUNDING: i64 = 1_000_000_000_000_000;

/// Whether writes use new keys or replay used ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Keys {
    /// A new key per write: every write executes.
    Fresh,
    /// Keys executed once in setup: every write is answered from the gateway's records.
    Replayed,
}

/// One ledger scenario's shape.
#[derive(Debug, Clone, Copy)]
pub(super) struct LedgerLoad {
    /// Through the gateway or straight to the ledger.
    pub route: Route,
    /// New or replayed keys.
    pub keys: Keys,
    /// Every write credits one shared account.
    pub hot: bool,
    /// The write.
    pub op: LedgerOp,
}

/// The write one client repeats: `op` of 1 unit of `asset` from `from` (transfers only)
/// to `to`.
#[derive(Debug, Clone)]
struct Write {
    op: LedgerOp,
    asset: String,
    from: i64,
    to: i64,
}

fn account(user_id: i64) -> Option<pb::AccountRef> {
    Some(pb::AccountRef { account: Some(pb::account_ref::Account::UserId(user_id)) })
}

impl Write {
    /// Sends the write keyed by `key`; `Ok(replayed)`.
    async fn send(&self, client: &mut LedgerClient, route: Route, key: &str) -> Result<bool, Outcome> {
        let harness = |error: anyhow::Error| Outcome::unexpected("HARNESS", format!("{error:#}"));
        let status = |status: tonic::Status| Outcome::status(&status);
        match self.op {
            LedgerOp::Adjust => {
                let request = pb::AdjustBalanceRequest {
                    user_id: self.to,
                    asset_code: self.asset.clone(),
                    direction: pb::AdjustDirection::Credit.into(),
                    amount: 1,
                    reason: "benchmark".into(),
                    ..Default::default()
                };
                let response =
                    client.adjust_balance(route.write(request, key).map_err(harness)?).await.map_err(status)?;
                Ok(replayed(response.metadata(), response.get_ref().replayed))
            }
            LedgerOp::Transfer => {
                let request = transfer(&self.asset, self.from, self.to);
                let response =
                    client.post_transaction(route.write(request, key).map_err(harness)?).await.map_err(status)?;
                Ok(replayed(response.metadata(), response.get_ref().replayed))
            }
        }
    }
}

/// The transfer of 1 unit of `asset` from user `from` to user `to` (business type
/// `TRANSFER`).
pub(super) fn transfer(asset: &str, from: i64, to: i64) -> pb::PostTransactionRequest {
    let leg = |user_id, amount| pb::PostingInput { account: account(user_id), asset_code: asset.to_owned(), amount };
    pb::PostTransactionRequest {
        business_type: "TRANSFER".into(),
        memo: "benchmark".into(),
        postings: vec![leg(from, -1), leg(to, 1)],
        ..Default::default()
    }
}

/// A replay is marked by the gateway (`idempotent-replayed: true`) or by the ledger
/// (`replayed`).
fn replayed(metadata: &MetadataMap, in_body: bool) -> bool {
    in_body || metadata.get(REPLAYED).is_some_and(|value| value.as_bytes() == b"true")
}

/// One client.
struct Writer {
    client: LedgerClient,
    route: Route,
    write: Write,
    /// Keys to replay in turn (`Keys::Replayed`), and the next one.
    replay: Option<(Vec<String>, usize)>,
}

impl Worker for Writer {
    async fn call(&mut self) -> Outcome {
        let key = match &mut self.replay {
            Some((keys, next)) => {
                let key = keys.get(*next % keys.len().max(1)).cloned().unwrap_or_default();
                *next += 1;
                key
            }
            None => new_key(),
        };
        match self.write.send(&mut self.client, self.route, &key).await {
            Ok(true) if self.replay.is_none() => Outcome::unexpected("UNEXPECTED_REPLAY", format!("key {key}")),
            Ok(false) if self.replay.is_some() => Outcome::unexpected("NOT_REPLAYED", format!("key {key}")),
            Ok(_) => Outcome::Ok,
            Err(outcome) => outcome,
        }
    }
}

/// Sets up and drives one ledger scenario.
pub(super) async fn run(stack: &Stack, options: &BenchOptions, load: LedgerLoad) -> anyhow::Result<Measurement> {
    let concurrency = options.load.concurrency.max(1);
    let asset = format!("BENCH_{}", setup::run_suffix());
    let mut admin = setup::ledger_admin(stack).await?;
    setup::define_asset(&mut admin, &asset).await?;
    let base = setup::user_base(stack);
    let hot_account = base;
    let writes: Vec<Write> = (0..concurrency)
        .map(|index| {
            let from = base + 1 + 2 * index as i64;
            let to = if load.hot { hot_account } else { from + 1 };
            Write { op: load.op, asset: asset.clone(), from, to }
        })
        .collect();
    // Balance rows every client writes (SYSTEM_ISSUANCE's, the hot account's) are created
    // once before the concurrent writes: the ledger fails a write that loses the race to
    // create a balance row on PostgreSQL.
    fund(&admin, &asset, vec![hot_account]).await?;
    if load.op == LedgerOp::Transfer {
        fund(&admin, &asset, writes.iter().map(|write| write.from).collect()).await?;
    }
    let url = match load.route {
        Route::Gateway => stack.gateway_url.clone(),
        Route::Direct => stack.ledger_url.clone().ok_or_else(|| anyhow::anyhow!("no ledger address"))?,
    };
    let channels = clients::connect_many(&url, options.load.connections).await?;
    let mut workers = Vec::with_capacity(concurrency);
    for (index, write) in writes.into_iter().enumerate() {
        let admin_id = ADMIN_BASE + index as i64;
        let auth = match load.route {
            Route::Gateway => Auth::Bearer(stack.bearer(admin_id, roles::ADMIN)?),
            Route::Direct => {
                let identity = stack.identity.as_ref().ok_or_else(|| anyhow::anyhow!("no identity secret"))?;
                Auth::Internal(identity.signer(Caller::user(admin_id, roles::ADMIN)))
            }
        };
        let channel = channels[index % channels.len()].clone();
        workers.push(Writer { client: clients::ledger(channel, auth), route: load.route, write, replay: None });
    }
    if load.keys == Keys::Replayed {
        prepare_replays(&mut workers).await?;
    }
    driver::drive(workers, &options.load).await
}

/// Credits `FUNDING` to every account in `users`.
async fn fund(admin: &LedgerClient, asset: &str, users: Vec<i64>) -> anyhow::Result<()> {
    let (admin, asset) = (admin.clone(), asset.to_owned());
    setup::in_parallel(users, SETUP_LANES, move |user_id| {
        let (mut admin, asset) = (admin.clone(), asset.clone());
        async move {
            let request = pb::AdjustBalanceRequest {
                user_id,
                asset_code: asset,
                direction: pb::AdjustDirection::Credit.into(),
                amount: FUNDING,
                reason: "benchmark funding".into(),
                ..Default::default()
            };
            admin.adjust_balance(Route::Gateway.write(request, &new_key())?).await?;
            Ok(())
        }
    })
    .await?;
    Ok(())
}

/// Executes `REPLAY_KEYS_PER_CLIENT` writes per client once, so the load only replays.
async fn prepare_replays(workers: &mut [Writer]) -> anyhow::Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    for (index, worker) in workers.iter().enumerate() {
        let (mut client, route, write) = (worker.client.clone(), worker.route, worker.write.clone());
        tasks.spawn(async move {
            let mut keys = Vec::with_capacity(REPLAY_KEYS_PER_CLIENT);
            for _ in 0..REPLAY_KEYS_PER_CLIENT {
                let key = new_key();
                if let Err(Outcome::Failed { reason, detail }) = write.send(&mut client, route, &key).await {
                    anyhow::bail!("first execution of a replay key failed: {reason}: {detail}");
                }
                keys.push(key);
            }
            anyhow::Ok((index, keys))
        });
    }
    while let Some(prepared) = tasks.join_next().await {
        let (index, keys) = prepared??;
        if let Some(worker) = workers.get_mut(index) {
            worker.replay = Some((keys, 0));
        }
    }
    Ok(())
}
