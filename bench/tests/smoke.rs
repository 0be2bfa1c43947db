//! Smoke run of every scenario (issue 7: "a CI smoke run of every scenario for a few
//! seconds, to keep the harness working"): about a second each at low concurrency,
//! through the library API, on SQLite — or on PostgreSQL when `ECONOMY_TEST_POSTGRES_URL`
//! is set, like the rest of the workspace's tests. Only success is asserted, never
//! timing.

use std::time::Duration;

use economy_bench::scenarios::import::ImportOptions;
use economy_bench::scenarios::scale::{ScaleOptions, Shape};
use economy_bench::scenarios::{self, BenchOptions, LedgerOp, Run, Scenario};
use economy_bench::{Backend, LoadOptions, Measurement, Target};
use economy_testkit::POSTGRES_URL_ENV;

fn options(ledger_op: LedgerOp) -> BenchOptions {
    let backend = match std::env::var(POSTGRES_URL_ENV).ok().filter(|url| !url.is_empty()) {
        Some(server_url) => Backend::Postgres { server_url },
        None => Backend::Sqlite { dir: None, synchronous: None },
    };
    let load = LoadOptions {
        concurrency: 2,
        connections: 1,
        warmup: Duration::ZERO,
        duration: Duration::from_secs(1),
        rate: None,
    };
    BenchOptions {
        target: Target::InProcess(backend),
        load,
        ledger_op,
        pgledger_dir: None,
        scale: Default::default(),
        import: Default::default(),
    }
}

async fn smoke(scenario: Scenario, ledger_op: LedgerOp) {
    smoke_with(scenario, options(ledger_op)).await;
}

async fn smoke_with(scenario: Scenario, options: BenchOptions) -> (Measurement, String) {
    let result = scenarios::run(scenario, &options).await;
    let report = economy_bench::report::scenario_block(&result);
    let Run::Measured(measurement) = &result.run else { panic!("{} did not run:\n{report}", scenario.name()) };
    assert!(measurement.ok() > 0, "no successful operation:\n{report}");
    assert_eq!(measurement.failed(), 0, "failed operations:\n{report}");
    assert!(result.is_clean(), "not clean:\n{report}");
    (measurement.clone(), report)
}

macro_rules! smoke_tests {
    ($($name:ident: $scenario:expr, $op:expr;)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                smoke($scenario, $op).await;
            }
        )*
    };
}

smoke_tests! {
    raw_db: Scenario::RawDb, LedgerOp::Transfer;
    raw_db_adjust: Scenario::RawDb, LedgerOp::Adjust;
    ledger_write: Scenario::LedgerWrite, LedgerOp::Transfer;
    ledger_write_adjust: Scenario::LedgerWrite, LedgerOp::Adjust;
    ledger_write_direct: Scenario::LedgerWriteDirect, LedgerOp::Transfer;
    replay: Scenario::Replay, LedgerOp::Transfer;
    hot_account: Scenario::HotAccount, LedgerOp::Transfer;
    backpack_1k: Scenario::Backpack1k, LedgerOp::Transfer;
    backpack_10k: Scenario::Backpack10k, LedgerOp::Transfer;
    redemption: Scenario::Redemption, LedgerOp::Transfer;
    market: Scenario::Market, LedgerOp::Transfer;
    offer: Scenario::Offer, LedgerOp::Transfer;
}

/// Both consumer kinds received every written entry exactly once and report a lag for
/// the entries of the window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_lag() {
    let (measurement, report) = smoke_with(Scenario::WatchLag, options(LedgerOp::Transfer)).await;
    let streams = measurement.streams.as_ref().unwrap_or_else(|| panic!("no stream report:\n{report}"));
    assert_eq!(streams.lags.len(), 2, "{report}");
    for lag in &streams.lags {
        assert!(lag.count() > 0, "no lag recorded by {}:\n{report}", lag.kind);
        assert!(lag.max() >= lag.quantile(0.5), "{report}");
    }
    for check in &streams.checks {
        assert!(check.written > 0 && check.exactly_once() && check.unexpected == 0, "{report}");
        assert_eq!(check.delivered, check.written, "{report}");
    }
    assert!(report.contains("lag         WatchEntries") && report.contains("lag         WatchBackpack"), "{report}");
}

/// The built `economy` binary: `ECONOMY_BIN`, else `target/<profile>/economy` (built by
/// `cargo test -p economy -p economy-bench`, or `cargo build -p economy`).
fn economy_binary() -> std::path::PathBuf {
    if let Some(path) = std::env::var_os("ECONOMY_BIN") {
        return path.into();
    }
    let test_exe = std::env::current_exe().expect("the test executable");
    let profile_dir = test_exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>/deps");
    let binary = profile_dir.join(format!("economy{}", std::env::consts::EXE_SUFFIX));
    assert!(binary.is_file(), "{} is missing: build it with `cargo build -p economy`", binary.display());
    binary
}

/// `economy import` of a small generated economy: every row created, the report clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import() {
    let mut options = options(LedgerOp::Transfer);
    options.import = ImportOptions { balances: 1_500, items: 1_200, economy_bin: Some(economy_binary()) };
    let (measurement, report) = smoke_with(Scenario::Import, options).await;
    assert_eq!(measurement.ok(), 1_500 + 1_200 + 120, "{report}");
    assert!(report.contains("balances.jsonl: 1500 rows in"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn market_open_loop() {
    let mut options = options(LedgerOp::Transfer);
    options.load.rate = Some(50.0);
    smoke_with(Scenario::Market, options).await;
}

#[tokio::test]
async fn a_summary_has_every_ratio_and_target() {
    let results = vec![scenarios::ScenarioResult {
        scenario: Scenario::LedgerWrite,
        operation: String::new(),
        backend: "sqlite".into(),
        run: Run::Skipped("not needed".into()),
        notes: Vec::new(),
    }];
    let summary = economy_bench::report::summary(&results, "sqlite");
    for expected in ["end to end vs raw DB", "gateway overhead", ">= 5000 ops/s", "p99 <= 5 ms", "not measured"] {
        assert!(summary.contains(expected), "{expected} missing from:\n{summary}");
    }
}

/// `scale` on a tiny generated ledger: the whole `Reconcile` finds nothing (the scenario
/// fails otherwise), every read series ran, and the incremental `Reconcile` checks the
/// new entries only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale() {
    let mut options = options(LedgerOp::Transfer);
    options.scale = ScaleOptions {
        shape: Shape { entries: 5_000, users: 100 },
        reconcile_after: 100,
        checkpoint_history: false,
        corrupt_balance: true,
    };
    let (_, report) = smoke_with(Scenario::Scale, options).await;
    for expected in [
        "whole Reconcile: no findings",
        "whole Reconcile with user:7's balance row altered: 2 finding(s) on it and no other",
        "first incremental Reconcile, past the generated history:",
        "incremental checkpoint after start: no entry checked (nothing ran at start)",
        "GetBalance SYSTEM_ISSUANCE: p50",
        "ListTransactions first page, POINTS only, heavy user: p50",
        "ListTransactions first page, typical users: p50",
        "incremental Reconcile after 100 new entries:",
    ] {
        assert!(report.contains(expected), "{expected} missing from:\n{report}");
    }
    assert_eq!(report.matches(", 0 findings").count(), 2, "{report}");
}

/// With the generated history recorded as checked, the incremental `Reconcile` after new
/// entries continues from it and finds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_with_the_history_recorded_as_checked() {
    let mut options = options(LedgerOp::Transfer);
    options.scale = ScaleOptions {
        shape: Shape { entries: 5_000, users: 100 },
        reconcile_after: 100,
        checkpoint_history: true,
        corrupt_balance: false,
    };
    let (_, report) = smoke_with(Scenario::Scale, options).await;
    assert!(report.contains("generated history recorded as checked"), "{report}");
    assert!(report.contains("incremental Reconcile after 100 new entries:"), "{report}");
    assert_eq!(report.matches(", 0 findings").count(), 1, "{report}");
}
