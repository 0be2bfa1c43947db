//! The command line: `economy-bench <scenario|all> [--duration 10s] [--concurrency 32]
//! [--database sqlite|postgres --postgres-url URL] [--endpoint URL] [--pgledger-dir PATH]`.
//!
//! `economy-bench pgledger` runs the peer comparison: `pgledger`, then `ledger-write` with
//! the same options, and prints the two side by side with their ratio.
//!
//! `economy-bench scale [--entries 10000000] [--users 100000] [--reconcile-after 10000]`
//! generates a ledger of that size first (scenarios::scale).
//!
//! `economy-bench import [--import-balances 1000000] [--import-items 1000000]` runs
//! `economy import` of generated files (scenarios::import; needs the `economy` binary).
//!
//! Exit status: 0 when every scenario that ran had successful operations and no failed
//! one (skipped scenarios do not count), 1 otherwise, 2 for bad arguments.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Parser, ValueEnum};

use crate::driver::LoadOptions;
use crate::report;
use crate::scenarios::import::ImportOptions;
use crate::scenarios::scale::{ScaleOptions, Shape};
use crate::scenarios::{self, BenchOptions, LedgerOp, Scenario, ScenarioResult};
use crate::stack::{Backend, RemoteStack, Target};

/// A scenario, or every one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// `all`: every scenario, then the summary table, ratios and targets.
    All,
    /// One scenario.
    One(Scenario),
}

fn selection_parser() -> impl TypedValueParser<Value = Selection> {
    let names = Scenario::value_variants()
        .iter()
        .filter_map(ValueEnum::to_possible_value)
        .chain([PossibleValue::new("all").help("every scenario, then the summary")]);
    PossibleValuesParser::new(names).map(|name| Scenario::from_str(&name, false).map_or(Selection::All, Selection::One))
}

/// Database backend of the in-process stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DatabaseKind {
    /// SQLite files in a temporary folder (the embedded default).
    Sqlite,
    /// Fresh databases on the PostgreSQL server of `--postgres-url`.
    Postgres,
}

/// SQLite durability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Synchronous {
    /// Every commit is durable (fsync per commit).
    Full,
    /// WAL is synced at checkpoints only; a power loss may lose the last commits.
    Normal,
}

/// `economy-bench`: measured throughput and latency of the Economy stack (issue 7).
#[derive(Debug, Parser)]
#[command(name = "economy-bench", version, about, long_about = None)]
pub struct Cli {
    /// What to run.
    #[arg(value_parser = selection_parser())]
    pub scenario: Selection,
    /// Measured window of each scenario (e.g. `10s`, `500ms`).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Unrecorded warm-up before each window.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// Concurrent clients, each issuing its next call when the previous one answers.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Open loop: offer this many operations per second in all, on a fixed schedule
    /// shared by the clients (`--concurrency` is then the most in flight at once), and
    /// count a late operation's latency from its slot. Default: closed loop.
    #[arg(long, value_parser = positive_rate)]
    pub rate: Option<f64>,
    /// HTTP/2 connections the clients share.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Database of the in-process stack and of `raw-db`.
    #[arg(long, value_enum, default_value = "sqlite")]
    pub database: DatabaseKind,
    /// PostgreSQL server for `--database postgres` (a fresh database is created per
    /// service and scenario, and dropped afterwards).
    #[arg(long, env = "ECONOMY_BENCH_POSTGRES_URL", hide_env_values = true)]
    pub postgres_url: Option<String>,
    /// Folder for the SQLite files (default: the system's temporary folder).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// SQLite `synchronous` of every service's database (default: each service's own,
    /// `FULL`, the gateway's `NORMAL`).
    #[arg(long, value_enum)]
    pub sqlite_synchronous: Option<Synchronous>,
    /// The ledger write of the ledger scenarios and `raw-db`.
    #[arg(long, value_enum, default_value = "transfer")]
    pub ledger_op: LedgerOp,
    /// Drive a running stack's gateway (e.g. `http://127.0.0.1:50051` of `economy up`)
    /// instead of starting one. Its per-user rate limit applies (`gateway.rate_limit_*`).
    #[arg(long)]
    pub endpoint: Option<String>,
    /// With `--endpoint`: the gateway's HS256 token secret (default: read
    /// `--jwt-secret-file`).
    #[arg(long, env = "ECONOMY_BENCH_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// With `--endpoint`: file holding the HS256 secret.
    #[arg(long, default_value = "data/dev-jwt.secret")]
    pub jwt_secret_file: PathBuf,
    /// With `--endpoint`: the ledger's own address, for `ledger-write-direct`.
    #[arg(long)]
    pub ledger_endpoint: Option<String>,
    /// With `--ledger-endpoint`: the internal identity secret (default: read
    /// `data/dev-identity.secret` when it exists).
    #[arg(long, env = "ECONOMY_BENCH_IDENTITY_SECRET", hide_env_values = true)]
    pub identity_secret: Option<String>,
    /// A checkout of <https://github.com/pgr0ss/pgledger> for the `pgledger` peer scenario
    /// (needs `--database postgres`); without it that scenario is skipped.
    #[arg(long, env = "ECONOMY_BENCH_PGLEDGER_DIR")]
    pub pgledger_dir: Option<PathBuf>,
    /// `scale`: journal entries of the generated ledger.
    #[arg(long, default_value_t = 10_000_000)]
    pub entries: u64,
    /// `scale`: typical users of the generated ledger (ids 1..=N; one more is the heavy user).
    #[arg(long, default_value_t = 100_000)]
    pub users: u64,
    /// `scale`: new entries written before the timed incremental `Reconcile`.
    #[arg(long, default_value_t = 10_000)]
    pub reconcile_after: u64,
    /// `scale`: record the generated history as checked by the incremental `Reconcile`
    /// instead of timing its first run over it (about N / 5,000 s).
    #[arg(long)]
    pub checkpoint_history: bool,
    /// `scale`: after the clean whole `Reconcile`, add 1 to one typical user's balance row
    /// and time the whole `Reconcile` that must find it.
    #[arg(long)]
    pub corrupt_balance: bool,
    /// `import`: rows of the generated `balances.jsonl`.
    #[arg(long, default_value_t = 1_000_000)]
    pub import_balances: u64,
    /// `import`: rows of the generated `items.jsonl` (one in 20 with a pending order, one
    /// in 20 with a fulfilled one).
    #[arg(long, default_value_t = 1_000_000)]
    pub import_items: u64,
    /// `import`: the `economy` binary [default: beside economy-bench].
    #[arg(long)]
    pub economy_bin: Option<PathBuf>,
}

impl Cli {
    /// The options the scenarios run with.
    pub fn options(&self) -> anyhow::Result<BenchOptions> {
        let backend = match self.database {
            DatabaseKind::Sqlite => Backend::Sqlite {
                dir: self.data_dir.clone(),
                synchronous: self.sqlite_synchronous.map(|synchronous| match synchronous {
                    Synchronous::Full => "FULL".to_owned(),
                    Synchronous::Normal => "NORMAL".to_owned(),
                }),
            },
            DatabaseKind::Postgres => Backend::Postgres {
                server_url: self.postgres_url.clone().context("--database postgres needs --postgres-url")?,
            },
        };
        let target = match &self.endpoint {
            None => Target::InProcess(backend),
            Some(endpoint) => Target::Remote(self.remote(endpoint, backend.name())?, backend),
        };
        let load = LoadOptions {
            concurrency: self.concurrency.max(1),
            connections: self.connections.max(1),
            warmup: self.warmup,
            duration: self.duration,
            rate: self.rate,
        };
        let scale = ScaleOptions {
            shape: Shape { entries: self.entries, users: self.users.max(1) },
            reconcile_after: self.reconcile_after,
            checkpoint_history: self.checkpoint_history,
            corrupt_balance: self.corrupt_balance,
        };
        let import = ImportOptions {
            balances: self.import_balances,
            items: self.import_items,
            economy_bin: self.economy_bin.clone(),
        };
        Ok(BenchOptions {
            target,
            load,
            ledger_op: self.ledger_op,
            pgledger_dir: self.pgledger_dir.clone(),
            scale,
            import,
        })
    }

    fn remote(&self, endpoint: &str, backend: &str) -> anyhow::Result<RemoteStack> {
        let jwt_secret = match &self.jwt_secret {
            Some(secret) => secret.clone(),
            None => read_secret(&self.jwt_secret_file)
                .context("--endpoint needs the gateway's token secret (--jwt-secret or --jwt-secret-file)")?,
        };
        let identity_secret = match (&self.identity_secret, &self.ledger_endpoint) {
            (Some(secret), _) => Some(secret.clone()),
            (None, Some(_)) => read_secret(std::path::Path::new("data/dev-identity.secret")).ok(),
            (None, None) => None,
        };
        Ok(RemoteStack {
            gateway_url: crate::clients::with_scheme(endpoint),
            jwt_secret,
            ledger_url: self.ledger_endpoint.as_deref().map(crate::clients::with_scheme),
            identity_secret,
            backend_label: backend.to_owned(),
        })
    }
}

fn positive_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!("`{text}` is not a positive number of operations per second")),
    }
}

fn read_secret(path: &std::path::Path) -> anyhow::Result<String> {
    let secret = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(secret.trim().to_owned())
}

/// Logs of the in-process services go to stderr when `RUST_LOG` is set.
fn init_logging() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
}

/// Runs the command; prints every result as it completes and, for `all`, the summary.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    init_logging();
    let options = cli.options()?;
    let results: Vec<ScenarioResult> = match cli.scenario {
        Selection::One(Scenario::Pgledger) => {
            let peer = scenarios::run(Scenario::Pgledger, &options).await;
            println!("{}", report::scenario_block(&peer));
            if matches!(peer.run, scenarios::Run::Skipped(_)) {
                vec![peer]
            } else {
                let ours = scenarios::run(Scenario::LedgerWrite, &options).await;
                println!("{}", report::scenario_block(&ours));
                let results = vec![peer, ours];
                println!(
                    "## Peer comparison ({})\n\n{}",
                    options.target.backend().label(),
                    report::peer_comparison(&results)
                );
                results
            }
        }
        Selection::One(scenario) => {
            let result = scenarios::run(scenario, &options).await;
            println!("{}", report::scenario_block(&result));
            vec![result]
        }
        Selection::All => {
            let results = scenarios::run_all(&options, |result| println!("{}", report::scenario_block(result))).await;
            println!("{}", report::summary(&results, &options.target.backend().label()));
            results
        }
    };
    let clean = results.iter().all(|result| result.is_clean() || matches!(result.run, scenarios::Run::Skipped(_)));
    Ok(if clean { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(["economy-bench"].iter().chain(args))
    }

    #[test]
    fn a_rate_selects_the_open_loop() -> anyhow::Result<()> {
        let options = parse(&["ledger-write", "--rate", "5000"])?.options()?;
        assert_eq!(options.load.rate, Some(5000.0));
        assert_eq!(parse(&["all"])?.options()?.load.rate, None);
        Ok(())
    }

    #[test]
    fn the_pgledger_checkout_is_an_option() -> anyhow::Result<()> {
        let options = parse(&["pgledger", "--pgledger-dir", "/tmp/pgledger"])?.options()?;
        assert_eq!(options.pgledger_dir.as_deref(), Some(std::path::Path::new("/tmp/pgledger")));
        assert_eq!(parse(&["pgledger"])?.scenario, Selection::One(Scenario::Pgledger));
        Ok(())
    }

    #[tokio::test]
    async fn pgledger_without_a_checkout_is_skipped_and_exits_cleanly() -> anyhow::Result<()> {
        let mut cli = parse(&["pgledger"])?;
        cli.pgledger_dir = None; // whatever ECONOMY_BENCH_PGLEDGER_DIR says
        assert_eq!(run(cli).await?, ExitCode::SUCCESS);
        Ok(())
    }

    #[test]
    fn a_rate_must_be_a_positive_number() {
        for bad in ["0", "-5", "NaN", "inf", "fast"] {
            assert!(parse(&["ledger-write", "--rate", bad]).is_err(), "{bad}");
        }
    }
}
