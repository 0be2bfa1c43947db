//! `economy migrate [--config FILE] [--service S]`: applies every service's pending
//! migrations once, against the database URLs the services themselves are configured with
//! (the same file and `ECONOMY_<SECTION>__DATABASE_URL` variables), then exits
//! (docs/operations.md, "Migrations").
//!
//! It takes no PostgreSQL advisory lock, so it also runs on CockroachDB and YugabyteDB:
//! run it from one process at a time (the Kubernetes `economy-migrate` Job) before the
//! services start with `database.migrate_on_start = false`. Built-in SQLite URLs live in
//! `--data-dir`, as with `economy up`. It prints one line per migration applied, or that a
//! database is up to date: `ledger      applied 5 ledger_history`, `gateway     up to date`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use economy_kit::db::{AppliedMigration, Db, DbOptions, Migrations};
use economy_stack::Service;

use crate::commands::databases::{Settings, migrations};

/// Options of `economy migrate` (besides the global `--data-dir`).
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// TOML configuration file, the same as `economy up`'s or a service binary's: each
    /// service's `database_url` and `database` settings are read from it (then from
    /// `ECONOMY_<SECTION>__DATABASE_URL`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Migrate only this service's database (default: all five).
    #[arg(long, value_enum)]
    pub service: Option<ServiceName>,
}

/// A service that owns a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ServiceName {
    /// economy-gateway (idempotency records, operations).
    Gateway,
    /// economy-ledger.
    Ledger,
    /// economy-items.
    Items,
    /// economy-redemption.
    Redemption,
    /// economy-market.
    Market,
}

impl From<ServiceName> for Service {
    fn from(name: ServiceName) -> Self {
        match name {
            ServiceName::Gateway => Self::Gateway,
            ServiceName::Ledger => Self::Ledger,
            ServiceName::Items => Self::Items,
            ServiceName::Redemption => Self::Redemption,
            ServiceName::Market => Self::Market,
        }
    }
}

/// Migrates the selected databases in turn, printing what each got; stops at the first
/// failure (exit status 1, the service named).
pub async fn run(args: &MigrateArgs, data_dir: &Path) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(args.config.as_deref())?;
    let selected = args.service.map_or(Service::ALL.to_vec(), |service| vec![service.into()]);
    for service in selected {
        let (url, options) = settings.database(service, data_dir);
        let applied = migrate(&url, options, migrations(service))
            .await
            .with_context(|| format!("cannot migrate the {service} database"))?;
        for line in report(&service.to_string(), &applied) {
            println!("{line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn migrate(url: &str, options: &DbOptions, migrations: Migrations) -> anyhow::Result<Vec<AppliedMigration>> {
    let db = Db::connect(url, options).await?;
    let applied = db.migrate_once(migrations).await;
    db.close().await;
    applied
}

/// The lines printed for `service`: one per migration applied, or "up to date".
fn report(service: &str, applied: &[AppliedMigration]) -> Vec<String> {
    if applied.is_empty() {
        return vec![format!("{service:<10}  up to date")];
    }
    applied
        .iter()
        .map(|migration| format!("{service:<10}  applied {} {}", migration.version, migration.description))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_names_each_migration_or_says_up_to_date() {
        let applied = [AppliedMigration { version: 2, description: "audit".into() }];
        assert_eq!(report("ledger", &applied), ["ledger      applied 2 audit"]);
        assert_eq!(report("gateway", &[]), ["gateway     up to date"]);
    }
}
