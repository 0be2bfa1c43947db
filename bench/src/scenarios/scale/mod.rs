//! `scale`: the stack on a generated ledger of N entries (issue 29, "A scale benchmark";
//! BENCHMARKS.md, "Scale"). On a fresh in-process stack, untimed unless said:
//! 1. [`generate`] fills the ledger's database (migrated at start) with `--entries`
//!    entries for `--users` users, one heavy user and `SYSTEM_ISSUANCE` credited by
//!    every entry;
//! 2. the whole `Reconcile` (straight to the ledger, following its cursors) must find
//!    nothing — timed;
//! 3. the first `Reconcile{since_checkpoint}` moves the checkpoint past the generated
//!    history — timed; the checkpoint read before it shows whether a run happened at
//!    start;
//! 4. sequential reads through the gateway, one at a time ([`READ_SAMPLES`] each):
//!    `GetBalance` and the first `ListTransactions` page (all assets, and `POINTS`) of
//!    `SYSTEM_ISSUANCE`, the heavy user and typical users;
//! 5. the measured load: `ledger-write` transfers through the gateway (the scenario's
//!    measurement), with the SQLite WAL's size sampled meanwhile;
//! 6. an incremental `Reconcile` after `--reconcile-after` new entries — timed.
//!
//! Everything but the load is reported as notes.

pub mod generate;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use economy_kit::identity::{Caller, roles};
use economy_proto::ledger::v1 as pb;
use hdrhistogram::Histogram;
use sqlx::Connection;
use tokio::sync::watch;

use super::ledger::{self as ledger_load, Keys, LedgerLoad};
use super::setup::{self, SETUP_ADMIN, SETUP_LANES};
use super::{BenchOptions, LedgerOp};
use crate::clients::{self, Auth, LedgerClient, Route, new_key};
use crate::driver::Measurement;
use crate::stack::Stack;
pub use generate::Shape;

/// Calls per read series.
pub const READ_SAMPLES: u64 = 500;
/// First-page size of the history reads.
pub const PAGE_SIZE: i32 = 50;
/// How often the WAL's size is sampled during the load.
const WAL_SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// Most `Reconcile` calls one timed reconcile may take (a whole check's call answers with
/// a cursor after the ledger's budget; an incremental call that hits the request
/// deadline still moves the checkpoint).
const RECONCILE_CALLS: usize = 1_000;

/// The generated ledger and the incremental reconcile's batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScaleOptions {
    /// The ledger generated before the measurements.
    pub shape: Shape,
    /// New entries written before the timed incremental reconcile.
    pub reconcile_after: u64,
    /// Record the generated history as checked instead of timing the first incremental
    /// run over it ([`generate::record_checkpoint`]).
    pub checkpoint_history: bool,
    /// After the clean whole check, alter one balance row and time the whole check that
    /// must report it ([`find_corrupted_balance`]).
    pub corrupt_balance: bool,
}

impl Default for ScaleOptions {
    fn default() -> Self {
        Self {
            shape: Shape { entries: 10_000_000, users: 100_000 },
            reconcile_after: 10_000,
            checkpoint_history: false,
            corrupt_balance: false,
        }
    }
}

/// Whose balance or history a read asks for.
#[derive(Debug, Clone, Copy)]
enum Who {
    System,
    Heavy,
    Typical,
}

impl Who {
    fn name(self) -> &'static str {
        match self {
            Self::System => "SYSTEM_ISSUANCE",
            Self::Heavy => "heavy user",
            Self::Typical => "typical users",
        }
    }

    /// The account of sample `i` (typical users rotate over all of them).
    fn account(self, shape: Shape, i: u64) -> Option<pb::AccountRef> {
        use pb::account_ref::Account;
        let account = match self {
            Self::System => Account::System("SYSTEM_ISSUANCE".into()),
            Self::Heavy => Account::UserId(shape.heavy_user() as i64),
            Self::Typical => Account::UserId((i.wrapping_mul(7_919) % shape.users.max(1) + 1) as i64),
        };
        Some(pb::AccountRef { account: Some(account) })
    }
}

/// A read series.
#[derive(Debug, Clone, Copy)]
enum Read {
    Balance(Who),
    /// The first page, of every asset or of `POINTS` only.
    History(Who, bool),
}

impl Read {
    const ALL: [Self; 8] = [
        Self::Balance(Who::Typical),
        Self::Balance(Who::System),
        Self::History(Who::System, false),
        Self::History(Who::System, true),
        Self::History(Who::Heavy, false),
        Self::History(Who::Heavy, true),
        Self::History(Who::Typical, false),
        Self::History(Who::Typical, true),
    ];

    fn label(self) -> String {
        match self {
            Self::Balance(who) => format!("GetBalance {}", who.name()),
            Self::History(who, false) => format!("ListTransactions first page, {}", who.name()),
            Self::History(who, true) => format!("ListTransactions first page, POINTS only, {}", who.name()),
        }
    }

    async fn once(self, client: &mut LedgerClient, shape: Shape, i: u64) -> anyhow::Result<()> {
        match self {
            Self::Balance(who) => {
                let request = pb::GetBalanceRequest {
                    account: who.account(shape, i),
                    asset_code: generate::ASSET.into(),
                    as_of: None,
                };
                client.get_balance(request).await?;
            }
            Self::History(who, filtered) => {
                let request = pb::ListTransactionsRequest {
                    account: who.account(shape, i),
                    asset_code: if filtered { generate::ASSET.into() } else { String::new() },
                    page_size: PAGE_SIZE,
                    ..Default::default()
                };
                let page = client.list_transactions(request).await?.into_inner();
                anyhow::ensure!(
                    shape.entries < shape.users || !page.transactions.is_empty(),
                    "empty first page for {}",
                    who.name()
                );
            }
        }
        Ok(())
    }
}

/// Runs the scenario on `stack` (in-process only: it writes the ledger's database).
pub(super) async fn run(stack: &Stack, options: &BenchOptions, notes: &mut Vec<String>) -> anyhow::Result<Measurement> {
    let scale = options.scale;
    let shape = scale.shape;
    let url = stack.database_url("ledger").context("scale generates into the ledger of an in-process stack")?;
    let wal = wal_path(url);
    let start =
        if checked_entries(url).await? == 0 { "no entry checked (nothing ran at start)" } else { "ALREADY MOVED" };
    notes.push(format!("incremental checkpoint after start: {start}"));
    let seconds = generate::generate_verbose(url, shape).await?;
    notes.push(format!(
        "generated {} entries for {} users (heavy user {} with {} entries; SYSTEM_ISSUANCE in every entry) in {seconds:.1} s",
        shape.entries,
        shape.users,
        shape.heavy_user(),
        shape.heavy_entries()
    ));
    if let Some(size) = ledger_file_size(url) {
        notes.push(format!("ledger.db {:.1} MB", mb(size)));
    }
    let mut direct = direct_admin(stack).await?;
    check_history(&mut direct, url, scale, notes).await?;
    let mut reader = setup::ledger_admin(stack).await?;
    for read in Read::ALL {
        let latencies = sample(read, &mut reader, shape).await?;
        notes.push(format!(
            "{}: p50 {:.2} ms, p99 {:.2} ms ({} sequential calls via gateway)",
            read.label(),
            quantile_ms(&latencies, 0.5),
            quantile_ms(&latencies, 0.99),
            latencies.len()
        ));
    }
    let (stop, sampler) = sample_wal(wal.clone());
    let load = LedgerLoad { route: Route::Gateway, keys: Keys::Fresh, hot: false, op: LedgerOp::Transfer };
    let measured = ledger_load::run(stack, options, load).await;
    let _ = stop.send(true);
    let wal_max = sampler.await.unwrap_or_default();
    let measurement = measured?;
    reconcile(&mut direct, true).await?;
    write_entries(stack, scale.reconcile_after).await?;
    let (after, took, _) = reconcile(&mut direct, true).await?;
    notes.push(format!(
        "incremental Reconcile after {} new entries: {} entries checked (the ledger's own job may have checked \
         others), {} findings, {:.3} s",
        scale.reconcile_after,
        after.entries_checked,
        after.findings.len(),
        took.as_secs_f64()
    ));
    if let Some(wal) = &wal {
        let now = std::fs::metadata(wal).map(|meta| meta.len()).unwrap_or(0);
        notes.push(format!("ledger WAL: max {:.1} MB during the load, {:.1} MB after", mb(wal_max), mb(now)));
    }
    Ok(measurement)
}

/// Steps 2 and 3 (module docs): the whole `Reconcile` over the generated ledger, then
/// the incremental checkpoint moved past it (timed, or recorded with
/// `checkpoint_history`).
async fn check_history(
    direct: &mut LedgerClient,
    url: &str,
    scale: ScaleOptions,
    notes: &mut Vec<String>,
) -> anyhow::Result<()> {
    let (full, took, calls) = reconcile(direct, false).await?;
    anyhow::ensure!(full.findings.is_empty(), "the whole Reconcile found {:?}", full.findings);
    notes.push(format!(
        "whole Reconcile: no findings, {} balances and {} entries in {calls} call(s), {:.2} s",
        full.balances_checked,
        full.entries_checked,
        took.as_secs_f64()
    ));
    if scale.corrupt_balance {
        find_corrupted_balance(direct, url, notes).await?;
    }
    if scale.checkpoint_history {
        generate::record_checkpoint(url, scale.shape).await?;
        notes.push("generated history recorded as checked (--checkpoint-history): no first incremental run".into());
        return Ok(());
    }
    let (first, took, calls) = reconcile(direct, true).await?;
    notes.push(format!(
        "first incremental Reconcile, past the generated history: {:.2} s in {calls} call(s), the last one {} \
         entries, {} findings",
        took.as_secs_f64(),
        first.entries_checked,
        first.findings.len()
    ));
    Ok(())
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1_000_000.0
}

fn quantile_ms(histogram: &Histogram<u64>, quantile: f64) -> f64 {
    histogram.value_at_quantile(quantile) as f64 / 1000.0
}

/// The SQLite file of `url` (`None` on PostgreSQL).
fn sqlite_path(url: &str) -> Option<PathBuf> {
    url.strip_prefix("sqlite://").map(|path| PathBuf::from(path.split('?').next().unwrap_or(path)))
}

fn wal_path(url: &str) -> Option<PathBuf> {
    sqlite_path(url).map(|path| PathBuf::from(format!("{}-wal", path.display())))
}

fn ledger_file_size(url: &str) -> Option<u64> {
    sqlite_path(url).and_then(|path| std::fs::metadata(path).ok()).map(|meta| meta.len())
}

/// The ledger itself as an admin (no gateway in between).
async fn direct_admin(stack: &Stack) -> anyhow::Result<LedgerClient> {
    let url = stack.ledger_url.as_deref().context("no ledger address")?;
    let identity = stack.identity.as_ref().context("no identity secret")?;
    let channel = clients::connect(url).await?;
    Ok(clients::ledger(channel, Auth::Internal(identity.signer(Caller::user(SETUP_ADMIN, roles::ADMIN)))))
}

/// The incremental checkpoint's count of entries checked (`reconcile_checkpoints`,
/// migration 0008).
async fn checked_entries(url: &str) -> anyhow::Result<i64> {
    let mut connection = sqlx::AnyConnection::connect(url).await?;
    let checked = sqlx::query_scalar("SELECT entries_checked FROM reconcile_checkpoints WHERE name = 'incremental'")
        .fetch_optional(&mut connection)
        .await?;
    connection.close().await?;
    Ok(checked.unwrap_or(0))
}

/// Adds 1 to user 7's balance row (and takes it back after), and times the whole
/// `Reconcile` that must report that balance.
async fn find_corrupted_balance(direct: &mut LedgerClient, url: &str, notes: &mut Vec<String>) -> anyhow::Result<()> {
    const ALTER: &str = "UPDATE balances SET available = available + $1 WHERE account = 'user:7'";
    let mut connection = sqlx::AnyConnection::connect(url).await?;
    sqlx::query(ALTER).bind(1_i64).execute(&mut connection).await?;
    let found = reconcile(direct, false).await;
    sqlx::query(ALTER).bind(-1_i64).execute(&mut connection).await?;
    connection.close().await?;
    let (report, took, calls) = found?;
    let user_7 = pb::AccountRef { account: Some(pb::account_ref::Account::UserId(7)) };
    let kinds: Vec<i32> = report
        .findings
        .iter()
        .filter(|finding| finding.account.as_ref() == Some(&user_7))
        .map(|finding| finding.kind)
        .collect();
    anyhow::ensure!(
        !kinds.is_empty() && kinds.len() == report.findings.len(),
        "the whole Reconcile found {:?}",
        report.findings
    );
    notes.push(format!(
        "whole Reconcile with user:7's balance row altered: {} finding(s) on it and no other, {calls} call(s), {:.2} s",
        kinds.len(),
        took.as_secs_f64()
    ));
    Ok(())
}

/// `Reconcile` (the whole check, or since the checkpoint) to its end, how long it took
/// and in how many calls, with the findings and counts of every call summed: the whole
/// check follows its cursors (each call answers within the ledger's budget), and an
/// incremental call the request deadline cuts keeps the rounds it finished (the
/// checkpoint moved), so it is called again.
async fn reconcile(
    client: &mut LedgerClient,
    since_checkpoint: bool,
) -> anyhow::Result<(pb::ReconcileResponse, Duration, usize)> {
    let started = Instant::now();
    let (mut total, mut cursor) = (pb::ReconcileResponse::default(), String::new());
    for calls in 1..=RECONCILE_CALLS {
        match client.reconcile(pb::ReconcileRequest { since_checkpoint, cursor: cursor.clone() }).await {
            Ok(response) => {
                let response = response.into_inner();
                total.findings.extend(response.findings);
                total.balances_checked += response.balances_checked;
                total.entries_checked += response.entries_checked;
                total.assets_checked += response.assets_checked;
                if response.next_cursor.is_empty() {
                    return Ok((total, started.elapsed(), calls));
                }
                cursor = response.next_cursor;
            }
            Err(status) if since_checkpoint && status.code() == tonic::Code::DeadlineExceeded => {
                eprintln!(
                    "  incremental Reconcile hit the request deadline after {:.0} s; again",
                    started.elapsed().as_secs_f64()
                );
            }
            Err(status) => return Err(status).context("Reconcile"),
        }
    }
    anyhow::bail!("Reconcile did not finish in {RECONCILE_CALLS} calls")
}

/// `READ_SAMPLES` calls of `read`, one at a time; latencies in microseconds.
async fn sample(read: Read, client: &mut LedgerClient, shape: Shape) -> anyhow::Result<Histogram<u64>> {
    let mut latencies = Histogram::<u64>::new(3)?;
    for i in 0..READ_SAMPLES {
        let started = Instant::now();
        read.once(client, shape, i).await.with_context(|| read.label())?;
        latencies.record(started.elapsed().as_micros() as u64)?;
    }
    Ok(latencies)
}

/// Samples the WAL's size until told to stop; the largest seen.
fn sample_wal(wal: Option<PathBuf>) -> (watch::Sender<bool>, tokio::task::JoinHandle<u64>) {
    let (stop, mut stopped) = watch::channel(false);
    let sampler = tokio::spawn(async move {
        let Some(wal) = wal else { return 0 };
        let mut largest = 0;
        loop {
            largest = largest.max(std::fs::metadata(&wal).map(|meta| meta.len()).unwrap_or(0));
            tokio::select! {
                _ = stopped.changed() => return largest,
                () = tokio::time::sleep(WAL_SAMPLE_EVERY) => {}
            }
        }
    });
    (stop, sampler)
}

/// `count` `AdjustBalance` credits of `POINTS` to typical users through the gateway.
async fn write_entries(stack: &Stack, count: u64) -> anyhow::Result<()> {
    let admin = setup::ledger_admin(stack).await?;
    setup::in_parallel((0..count).collect(), SETUP_LANES, move |i| {
        let mut admin = admin.clone();
        async move {
            let request = pb::AdjustBalanceRequest {
                user_id: (i % 1_000 + 1) as i64,
                asset_code: generate::ASSET.into(),
                direction: pb::AdjustDirection::Credit.into(),
                amount: 1,
                reason: "scale".into(),
                ..Default::default()
            };
            admin.adjust_balance(Route::Gateway.write(request, &new_key())?).await?;
            Ok(())
        }
    })
    .await?;
    Ok(())
}
