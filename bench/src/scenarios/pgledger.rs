//! `pgledger`: the peer comparison. [pgledger](https://github.com/pgr0ss/pgledger) is an
//! open-source double-entry ledger written in PL/pgSQL; this scenario drives it on the
//! same PostgreSQL server as `ledger-write`, with the same number of clients and the same
//! account layout, so the two rates can be read side by side (`economy-bench pgledger`
//! prints both and their ratio; `all` adds the ratio to its summary).
//!
//! pgledger is not vendored: `--pgledger-dir PATH` names a checkout of it, and without one
//! the scenario is skipped with a note. Setup (untimed) creates a fresh database on the
//! server of `--postgres-url`, installs pgledger's SQL as its README says (the two vendored
//! ULID helpers, then `pgledger.sql`, in one transaction) and gives every client two
//! accounts of its own, as `ledger-write` does: a source that may not go negative, funded
//! once from a funding account, and a destination. One operation is one
//! `SELECT id FROM pgledger_create_transfer(from, to, 1)` — a transaction of its own that
//! locks both accounts, updates both balances, checks the source's limit, and inserts the
//! transfer and its two entries. Each client holds one connection of a pool of
//! `--concurrency` connections (no client waits for another's connection).

use std::path::{Path, PathBuf};

use anyhow::Context;
use sqlx::postgres::{PgPool, PgPoolOptions};

use super::BenchOptions;
use crate::driver::{self, Measurement, Outcome, Worker};
use crate::stack::{Backend, Databases};

/// pgledger's installation files, in the order its README gives, relative to a checkout.
pub const INSTALL_FILES: [&str; 3] =
    ["vendor/scoville-pgsql-ulid/ulid-to-uuid.sql", "vendor/scoville-pgsql-ulid/uuid-to-ulid.sql", "pgledger.sql"];
/// The currency of every account.
const CURRENCY: &str = "BENCH";
/// What setup moves into every source account (the ledger scenarios fund theirs the same way).
const FUNDING: i64 = 1_000_000_000_000_000;

/// Why the scenario cannot run with these options, or `None` when it can.
pub fn unmet_requirement(options: &BenchOptions) -> Option<String> {
    if options.pgledger_dir.is_none() {
        return Some(
            "needs --pgledger-dir PATH, a checkout of https://github.com/pgr0ss/pgledger (not vendored)".into(),
        );
    }
    if !matches!(options.target.backend(), Backend::Postgres { .. }) {
        return Some("pgledger runs inside PostgreSQL: needs --database postgres --postgres-url URL".into());
    }
    None
}

/// The installation SQL of the checkout at `dir`, file by file.
///
/// Errors: a file of [`INSTALL_FILES`] is missing or unreadable (not a pgledger checkout).
pub fn install_sql(dir: &Path) -> anyhow::Result<Vec<(PathBuf, String)>> {
    INSTALL_FILES
        .iter()
        .map(|file| {
            let path = dir.join(file);
            let sql = std::fs::read_to_string(&path).with_context(|| {
                format!("{} is not a pgledger checkout: cannot read {}", dir.display(), path.display())
            })?;
            Ok((path, sql))
        })
        .collect()
}

/// One client: transfers 1 unit from its own source to its own destination.
struct Transferrer {
    pool: PgPool,
    from: String,
    to: String,
}

impl Worker for Transferrer {
    async fn call(&mut self) -> Outcome {
        let transfer = sqlx::query_scalar::<_, String>("SELECT id FROM pgledger_create_transfer($1, $2, 1)")
            .bind(&self.from)
            .bind(&self.to)
            .fetch_one(&self.pool)
            .await;
        match transfer {
            Ok(_) => Outcome::Ok,
            Err(error) => Outcome::unexpected("PGLEDGER_ERROR", error.to_string()),
        }
    }
}

/// Runs the scenario: `Ok(None)` (with the reason as the last note) when it cannot run
/// here, else a fresh database, setup, the measured load, and the database dropped.
pub(super) async fn run(options: &BenchOptions, notes: &mut Vec<String>) -> anyhow::Result<Option<Measurement>> {
    if let Some(why) = unmet_requirement(options) {
        notes.push(why);
        return Ok(None);
    }
    let dir = options.pgledger_dir.as_deref().context("no --pgledger-dir")?;
    let sql = install_sql(dir)?;
    let databases = Databases::create(options.target.backend(), &["pgledger"]).await?;
    let measured = measure(databases.url("pgledger")?, &sql, options).await;
    let dropped = databases.drop_all().await;
    let measured = measured?;
    dropped?;
    notes.push(format!(
        "pgledger from {} on a fresh database of the same server; one pooled connection per client",
        dir.display()
    ));
    if options.target.is_remote() {
        notes.push("measured on a fresh database of --postgres-url, not the running stack's".into());
    }
    Ok(Some(measured))
}

async fn measure(url: &str, sql: &[(PathBuf, String)], options: &BenchOptions) -> anyhow::Result<Measurement> {
    let clients = options.load.concurrency.max(1);
    let pool = PgPoolOptions::new()
        .max_connections(u32::try_from(clients).unwrap_or(u32::MAX).max(1))
        .connect(url)
        .await
        .context("cannot connect to the pgledger database")?;
    let measured = async {
        install(&pool, sql).await?;
        let workers = accounts(&pool, clients).await?;
        driver::drive(workers, &options.load).await
    }
    .await;
    pool.close().await;
    measured
}

/// Installs pgledger in one transaction.
async fn install(pool: &PgPool, sql: &[(PathBuf, String)]) -> anyhow::Result<()> {
    let mut transaction = pool.begin().await?;
    for (path, text) in sql {
        sqlx::raw_sql(text)
            .execute(&mut *transaction)
            .await
            .with_context(|| format!("installing {}", path.display()))?;
    }
    transaction.commit().await?;
    Ok(())
}

/// `pgledger_create_account(name, currency, allow_negative_balance)`: the new id.
async fn account(pool: &PgPool, name: &str, may_go_negative: bool) -> anyhow::Result<String> {
    sqlx::query_scalar("SELECT id FROM pgledger_create_account($1, $2, $3)")
        .bind(name)
        .bind(CURRENCY)
        .bind(may_go_negative)
        .fetch_one(pool)
        .await
        .with_context(|| format!("creating pgledger account {name}"))
}

/// Every client's two accounts, its source funded from one funding account (which alone
/// may go negative, like the ledger's issuance account), and the clients that use them.
async fn accounts(pool: &PgPool, clients: usize) -> anyhow::Result<Vec<Transferrer>> {
    let funding = account(pool, "funding", true).await?;
    let mut workers = Vec::with_capacity(clients);
    for index in 0..clients {
        let from = account(pool, &format!("client-{index}-from"), false).await?;
        let to = account(pool, &format!("client-{index}-to"), false).await?;
        sqlx::query("SELECT id FROM pgledger_create_transfer($1, $2, $3)")
            .bind(&funding)
            .bind(&from)
            .bind(FUNDING)
            .execute(pool)
            .await
            .context("funding a source account")?;
        workers.push(Transferrer { pool: pool.clone(), from, to });
    }
    sqlx::raw_sql("ANALYZE").execute(pool).await?;
    Ok(workers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::LoadOptions;
    use crate::scenarios::{LedgerOp, Run, Scenario};
    use crate::stack::Target;

    fn options(backend: Backend, pgledger_dir: Option<PathBuf>) -> BenchOptions {
        BenchOptions {
            target: Target::InProcess(backend),
            load: LoadOptions::default(),
            ledger_op: LedgerOp::Transfer,
            pgledger_dir,
            scale: Default::default(),
            import: Default::default(),
        }
    }

    fn sqlite() -> Backend {
        Backend::Sqlite { dir: None, synchronous: None }
    }

    fn postgres() -> Backend {
        Backend::Postgres { server_url: "postgres://nobody@127.0.0.1:1/none".into() }
    }

    #[tokio::test]
    async fn without_a_checkout_it_is_skipped_with_a_note() {
        let result = crate::scenarios::run(Scenario::Pgledger, &options(postgres(), None)).await;
        let Run::Skipped(why) = &result.run else { panic!("not skipped: {:?}", result.run) };
        assert!(why.contains("--pgledger-dir"), "{why}");
        assert!(result.backend.contains("pgledger"), "{}", result.backend);
    }

    #[tokio::test]
    async fn on_sqlite_it_is_skipped_with_a_note() {
        let result =
            crate::scenarios::run(Scenario::Pgledger, &options(sqlite(), Some(PathBuf::from("/nonexistent")))).await;
        let Run::Skipped(why) = &result.run else { panic!("not skipped: {:?}", result.run) };
        assert!(why.contains("--database postgres"), "{why}");
    }

    #[tokio::test]
    async fn a_folder_that_is_not_a_checkout_fails_before_touching_the_server() {
        let empty = std::env::temp_dir().join(format!("economy-bench-no-pgledger-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&empty).expect("temp dir");
        let result = crate::scenarios::run(Scenario::Pgledger, &options(postgres(), Some(empty.clone()))).await;
        let _ = std::fs::remove_dir_all(&empty);
        let Run::Failed(error) = &result.run else { panic!("did not fail: {:?}", result.run) };
        assert!(error.contains("is not a pgledger checkout") && error.contains("ulid-to-uuid.sql"), "{error}");
    }

    #[test]
    fn the_install_files_are_read_in_order() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("economy-bench-pgledger-{}", uuid::Uuid::now_v7().simple()));
        for (index, file) in INSTALL_FILES.iter().enumerate() {
            let path = dir.join(file);
            std::fs::create_dir_all(path.parent().context("parent")?)?;
            std::fs::write(&path, format!("-- {index}"))?;
        }
        let sql = install_sql(&dir);
        std::fs::remove_dir_all(&dir)?;
        let texts: Vec<String> = sql?.into_iter().map(|(_, text)| text).collect();
        assert_eq!(texts, ["-- 0", "-- 1", "-- 2"]);
        Ok(())
    }
}
