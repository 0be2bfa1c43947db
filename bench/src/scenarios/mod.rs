//! The scenarios of issue 7. Each one sets up what it needs on a fresh stack (untimed),
//! builds one [`Worker`](crate::driver::Worker) per simulated client, and lets the
//! [driver](crate::driver) run them; [`run`] starts and stops the stack around it.
//!
//! | scenario | one operation |
//! | --- | --- |
//! | `ledger-write` | an idempotent ledger write through the gateway, a fresh key each time |
//! | `ledger-write-direct` | the same write straight to the ledger (signed internal identity) |
//! | `replay` | the same write through the gateway with a key already used (a stored answer) |
//! | `hot-account` | a ledger write through the gateway that credits one shared account |
//! | `backpack-1k` / `backpack-10k` | `BackpackService.GetBackpack`, first page, of a user with 1,000 / 10,000 items |
//! | `redemption` | `CreateOrder` by the owner, then `FulfillOrder` by merchant staff |
//! | `market` | `PurchaseListing` of an asset listing (one ledger transaction) |
//! | `offer` | `PurchaseOffer` of a 1-asset-price, 1-item-reward offer (hold, item grant, one settling entry) |
//! | `raw-db` | the ledger write's SQL transaction issued directly through sqlx, no gRPC |
//! | `pgledger` | the peer: `pgledger_create_transfer` of [pgledger](https://github.com/pgr0ss/pgledger) on the same PostgreSQL server, same clients and accounts as `ledger-write` (needs `--pgledger-dir`) |
//! | `watch-lag` | the `ledger-write` transfer, while a `WatchBackpack` stream per writer's user and an admin `WatchEntries` stream measure each entry's delivery lag |
//! | `import` | `economy import` of a generated legacy economy (`--import-balances`, `--import-items`; [`import`]; not part of `all`) |
//! | `scale` | the `ledger-write` transfer on a generated ledger of `--entries` entries, with balance, history and reconcile measurements around it ([`scale`]; not part of `all`) |
//!
//! The ledger write is a `PostTransaction` transfer between two user accounts of the
//! client's own (`--ledger-op transfer`, the default) or an `AdjustBalance` credit against
//! `SYSTEM_ISSUANCE` (`--ledger-op adjust`; every such write also moves the one
//! `SYSTEM_ISSUANCE` balance row).
//!
//! Adding a scenario: a variant of [`Scenario`] with its name and description, a module with its setup and
//! worker, a line in [`run`]'s dispatch, its target in `report::targets` when it has one, and a
//! smoke test in `tests/smoke.rs`.

mod backpack;
pub mod import;
mod ledger;
mod market;
mod offer;
pub mod pgledger;
mod raw_db;
mod redemption;
pub mod scale;
mod setup;
mod watch_lag;

use clap::ValueEnum;

use crate::clients::Route;
use crate::driver::{LoadOptions, Measurement};
use crate::stack::{Stack, Target};

pub use crate::driver::Outcome;

/// A benchmark scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, ValueEnum)]
pub enum Scenario {
    /// Idempotent ledger writes through the gateway, each with a new key.
    LedgerWrite,
    /// The same writes straight to the ledger with the signed internal identity.
    LedgerWriteDirect,
    /// The same writes through the gateway, replaying keys already used.
    Replay,
    /// Ledger writes through the gateway that all credit one account.
    HotAccount,
    /// GetBackpack (first page) through the gateway for a user with 1,000 items.
    #[value(name = "backpack-1k")]
    Backpack1k,
    /// GetBackpack (first page) through the gateway for a user with 10,000 items.
    #[value(name = "backpack-10k")]
    Backpack10k,
    /// Redemption CreateOrder + FulfillOrder through the gateway.
    Redemption,
    /// PurchaseListing of an asset listing through the gateway.
    Market,
    /// PurchaseOffer of a 1-asset-price, 1-item-reward shop offer through the gateway.
    Offer,
    /// The ledger write's SQL transaction through sqlx, no gRPC.
    RawDb,
    /// The peer: pgledger's `pgledger_create_transfer` on the same PostgreSQL server.
    Pgledger,
    /// Ledger transfers through the gateway while stream consumers measure delivery lag.
    WatchLag,
    /// Ledger transfers, balance and history reads and reconciles on a generated ledger
    /// of `--entries` entries (not part of `all`).
    Scale,
    /// `economy import` of generated files: `--import-balances` balances and
    /// `--import-items` items (not part of `all`).
    Import,
}

impl Scenario {
    /// Every scenario `all` runs, in its order (`scale` generates a large ledger first
    /// and runs on its own).
    pub const ALL: [Self; 12] = [
        Self::RawDb,
        Self::LedgerWriteDirect,
        Self::LedgerWrite,
        Self::Pgledger,
        Self::Replay,
        Self::HotAccount,
        Self::Backpack1k,
        Self::Backpack10k,
        Self::Redemption,
        Self::Market,
        Self::Offer,
        Self::WatchLag,
    ];

    /// The command-line name (`ledger-write`, …).
    pub fn name(self) -> String {
        self.to_possible_value().map(|value| value.get_name().to_owned()).unwrap_or_default()
    }

    /// What one operation of the scenario is.
    pub fn operation(self, op: LedgerOp) -> String {
        let write = op.describe();
        match self {
            Self::LedgerWrite => format!("{write} through the gateway, a new idempotency key each"),
            Self::LedgerWriteDirect => format!("{write} straight to the ledger (signed internal identity)"),
            Self::Replay => format!("{write} through the gateway replaying an already used key"),
            Self::HotAccount => match op {
                LedgerOp::Transfer => {
                    "PostTransaction through the gateway: every client pays one shared account".into()
                }
                LedgerOp::Adjust => "AdjustBalance through the gateway: every client credits one shared account".into(),
            },
            Self::Backpack1k => "BackpackService.GetBackpack, first page (50), of an owner of 1,000 items".into(),
            Self::Backpack10k => "BackpackService.GetBackpack, first page (50), of an owner of 10,000 items".into(),
            Self::Redemption => "CreateOrder (owner) then FulfillOrder (merchant staff) through the gateway".into(),
            Self::Market => {
                "PurchaseListing of a 1-unit asset listing through the gateway (one ledger transaction)".into()
            }
            Self::Offer => "PurchaseOffer of a 1-asset-price, 1-item-reward offer through the gateway (ledger hold, \
                            item grant, one ledger entry settling the hold)"
                .into(),
            Self::RawDb => format!("the SQL transaction of one {write} through sqlx on the ledger's schema, no gRPC"),
            Self::Pgledger => "pgledger_create_transfer(own source, own destination, 1): the peer ledger in PL/pgSQL, \
                               no gRPC"
                .into(),
            Self::WatchLag => format!(
                "{} through the gateway, followed by a WatchBackpack stream per writer's user and an admin \
                 WatchEntries stream of every entry (lag: receipt time - the entry's created_at)",
                LedgerOp::Transfer.describe()
            ),
            Self::Scale => format!(
                "{} through the gateway on a generated ledger (notes: reads, reconciles, WAL)",
                LedgerOp::Transfer.describe()
            ),
            Self::Import => "one row imported by `economy import` (balances, items, orders; latency: its file's \
                             time per row)"
                .into(),
        }
    }
}

/// The ledger write the ledger scenarios (and `raw-db`) issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum LedgerOp {
    /// `PostTransaction`: 1 unit from one user account to another (business type `TRANSFER`).
    #[default]
    Transfer,
    /// `AdjustBalance`: credit 1 unit to a user against `SYSTEM_ISSUANCE`.
    Adjust,
}

impl LedgerOp {
    /// `PostTransaction (transfer)` or `AdjustBalance (credit)`.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Transfer => "PostTransaction (user-to-user transfer)",
            Self::Adjust => "AdjustBalance (credit)",
        }
    }
}

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// The stack (or running stack) and the database backend.
    pub target: Target,
    /// Concurrency, connections and durations.
    pub load: LoadOptions,
    /// The ledger write of the ledger scenarios.
    pub ledger_op: LedgerOp,
    /// A checkout of github.com/pgr0ss/pgledger for the `pgledger` scenario (skipped
    /// without one).
    pub pgledger_dir: Option<std::path::PathBuf>,
    /// The generated ledger of the `scale` scenario.
    pub scale: scale::ScaleOptions,
    /// The generated files of the `import` scenario.
    pub import: import::ImportOptions,
}

/// How a scenario ended.
#[derive(Debug, Clone)]
pub enum Run {
    /// It ran; what was measured.
    Measured(Measurement),
    /// It cannot run against this target (why).
    Skipped(String),
    /// Setup or the stack failed (the error).
    Failed(String),
}

/// One scenario's result.
#[derive(Debug, Clone)]
pub struct ScenarioResult {
    /// The scenario.
    pub scenario: Scenario,
    /// What one operation was.
    pub operation: String,
    /// The stack and database it ran on.
    pub backend: String,
    /// The outcome.
    pub run: Run,
    /// Remarks for the reader (e.g. a pool that ran out).
    pub notes: Vec<String>,
}

impl ScenarioResult {
    /// The measurement, when the scenario ran.
    pub fn measurement(&self) -> Option<&Measurement> {
        match &self.run {
            Run::Measured(measurement) => Some(measurement),
            Run::Skipped(_) | Run::Failed(_) => None,
        }
    }

    /// True when it ran with at least one successful operation and no failure, and its
    /// stream consumers, if any, received every entry exactly once.
    pub fn is_clean(&self) -> bool {
        self.measurement().is_some_and(|measurement| {
            measurement.ok() > 0
                && measurement.failed() == 0
                && measurement.streams.as_ref().is_none_or(|streams| streams.is_clean())
        })
    }
}

/// Runs one scenario: a fresh stack (unless remote), untimed setup, the measured load,
/// then the stack stopped and its databases dropped. Setup and stack errors come back
/// as `Run::Failed`, unmet requirements as `Run::Skipped`.
pub async fn run(scenario: Scenario, options: &BenchOptions) -> ScenarioResult {
    let mut notes = Vec::new();
    let backend = match (&options.target, scenario) {
        (Target::Remote(remote, _), scenario) if !matches!(scenario, Scenario::RawDb | Scenario::Pgledger) => {
            format!("{} (running stack at {})", remote.backend_label, remote.gateway_url)
        }
        (target, Scenario::RawDb) => format!("{} (fresh database, sqlx only)", target.backend().label()),
        (target, Scenario::Pgledger) => {
            format!("{} (pgledger on a fresh database of the same server, sqlx only)", target.backend().label())
        }
        (target, _) => format!("{} (in-process stack, fresh databases)", target.backend().label()),
    };
    let run = match measure(scenario, options, &mut notes).await {
        Ok(Some(measurement)) => Run::Measured(measurement),
        Ok(None) => Run::Skipped(notes.pop().unwrap_or_default()),
        Err(error) => Run::Failed(format!("{error:#}")),
    };
    ScenarioResult { scenario, operation: scenario.operation(options.ledger_op), backend, run, notes }
}

/// Runs every scenario in [`Scenario::ALL`] order, calling `each` after each one.
pub async fn run_all(options: &BenchOptions, mut each: impl FnMut(&ScenarioResult)) -> Vec<ScenarioResult> {
    let mut results = Vec::new();
    for scenario in Scenario::ALL {
        let result = run(scenario, options).await;
        each(&result);
        results.push(result);
    }
    results
}

/// `Ok(None)` (with the reason as the last note) when the scenario cannot run here.
async fn measure(
    scenario: Scenario,
    options: &BenchOptions,
    notes: &mut Vec<String>,
) -> anyhow::Result<Option<Measurement>> {
    match scenario {
        Scenario::RawDb => return raw_db::run(options, notes).await.map(Some),
        Scenario::Pgledger => return pgledger::run(options, notes).await,
        _ => {}
    }
    let stack = Stack::start(&options.target).await?;
    let measured = on_stack(scenario, &stack, options, notes).await;
    let stopped = stack.stop().await;
    let measured = measured?;
    stopped?;
    Ok(measured)
}

async fn on_stack(
    scenario: Scenario,
    stack: &Stack,
    options: &BenchOptions,
    notes: &mut Vec<String>,
) -> anyhow::Result<Option<Measurement>> {
    use ledger::{Keys, LedgerLoad};
    let ledger = |route, keys, hot| LedgerLoad { route, keys, hot, op: options.ledger_op };
    let measurement = match scenario {
        Scenario::LedgerWrite => ledger::run(stack, options, ledger(Route::Gateway, Keys::Fresh, false)).await?,
        Scenario::LedgerWriteDirect => {
            if stack.ledger_url.is_none() || stack.identity.is_none() {
                notes.push(
                    "needs the ledger's address and the identity secret (--ledger-endpoint, --identity-secret)".into(),
                );
                return Ok(None);
            }
            ledger::run(stack, options, ledger(Route::Direct, Keys::Fresh, false)).await?
        }
        Scenario::Replay => ledger::run(stack, options, ledger(Route::Gateway, Keys::Replayed, false)).await?,
        Scenario::HotAccount => ledger::run(stack, options, ledger(Route::Gateway, Keys::Fresh, true)).await?,
        Scenario::Backpack1k => backpack::run(stack, options, 1_000).await?,
        Scenario::Backpack10k => backpack::run(stack, options, 10_000).await?,
        Scenario::Redemption => redemption::run(stack, options, notes).await?,
        Scenario::Market => market::run(stack, options, notes).await?,
        Scenario::Offer => offer::run(stack, options, notes).await?,
        Scenario::WatchLag => watch_lag::run(stack, options).await?,
        Scenario::Scale => {
            if !stack.is_in_process() {
                notes.push("generates its ledger: needs the in-process stack (no --endpoint)".into());
                return Ok(None);
            }
            scale::run(stack, options, notes).await?
        }
        Scenario::Import => return import::run(stack, options, notes).await,
        Scenario::RawDb | Scenario::Pgledger => return Ok(None),
    };
    if measurement.exhausted_workers > 0 {
        notes.push(format!(
            "{} of {} clients ran out of prepared work before the end; the window was {:.1} s",
            measurement.exhausted_workers,
            measurement.load.concurrency,
            measurement.elapsed.as_secs_f64()
        ));
    }
    Ok(Some(measurement))
}
