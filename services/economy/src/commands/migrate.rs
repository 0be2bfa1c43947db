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
use economy_gateway::config::GatewayConfig;
use economy_items::ItemsConfig;
use economy_kit::db::{AppliedMigration, Db, DbOptions, Migrations};
use economy_ledger::LedgerConfig;
use economy_market::MarketConfig;
use economy_redemption::RedemptionConfig;
use serde::{Deserialize, Serialize};

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

impl ServiceName {
    const ALL: [Self; 5] = [Self::Gateway, Self::Ledger, Self::Items, Self::Redemption, Self::Market];

    fn name(self) -> &'static str {
        match self {
            Self::Gateway => "gateway",
            Self::Ledger => "ledger",
            Self::Items => "items",
            Self::Redemption => "redemption",
            Self::Market => "market",
        }
    }

    fn migrations(self) -> Migrations {
        match self {
            Self::Gateway => economy_gateway::store::MIGRATIONS,
            Self::Ledger => economy_ledger::store::MIGRATIONS,
            Self::Items => economy_items::store::MIGRATIONS,
            Self::Redemption => economy_redemption::store::MIGRATIONS,
            Self::Market => economy_market::store::MIGRATIONS,
        }
    }
}

/// The services' sections, read whole so that one file serving every binary parses (the
/// other sections are skipped; unknown keys are refused).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct Settings {
    gateway: GatewayConfig,
    ledger: LedgerConfig,
    items: ItemsConfig,
    redemption: RedemptionConfig,
    market: MarketConfig,
}

impl Settings {
    /// `service`'s database URL (a built-in SQLite one moved into `data_dir`) and options.
    fn database(&self, service: ServiceName, data_dir: &Path) -> (String, DbOptions) {
        let (url, default, options) = match service {
            ServiceName::Gateway => {
                (&self.gateway.database_url, GatewayConfig::default().database_url, &self.gateway.database)
            }
            ServiceName::Ledger => {
                (&self.ledger.database_url, LedgerConfig::default().database_url, &self.ledger.database)
            }
            ServiceName::Items => (&self.items.database_url, ItemsConfig::default().database_url, &self.items.database),
            ServiceName::Redemption => {
                (&self.redemption.database_url, RedemptionConfig::default().database_url, &self.redemption.database)
            }
            ServiceName::Market => {
                (&self.market.database_url, MarketConfig::default().database_url, &self.market.database)
            }
        };
        let url = if *url == default {
            format!("sqlite://{}", data_dir.join(format!("{}.db", service.name())).display())
        } else {
            url.clone()
        };
        (url, options.clone())
    }
}

/// Migrates the selected databases in turn, printing what each got; stops at the first
/// failure (exit status 1, the service named).
pub async fn run(args: &MigrateArgs, data_dir: &Path) -> anyhow::Result<ExitCode> {
    let settings: Settings = economy_kit::config::load(args.config.as_deref())?;
    let selected = args.service.map_or(ServiceName::ALL.to_vec(), |service| vec![service]);
    for service in selected {
        let (url, options) = settings.database(service, data_dir);
        let applied = migrate(&url, &options, service.migrations())
            .await
            .with_context(|| format!("cannot migrate the {} database", service.name()))?;
        for line in report(service.name(), &applied) {
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
    fn built_in_sqlite_urls_live_in_the_data_dir_and_configured_ones_are_kept() {
        let mut settings = Settings::default();
        settings.market.database_url = "postgres://db/market".into();
        let (ledger, _) = settings.database(ServiceName::Ledger, Path::new("/var/economy"));
        assert_eq!(ledger, "sqlite:///var/economy/ledger.db");
        let (market, _) = settings.database(ServiceName::Market, Path::new("/var/economy"));
        assert_eq!(market, "postgres://db/market");
    }

    #[test]
    fn the_report_names_each_migration_or_says_up_to_date() {
        let applied = [AppliedMigration { version: 2, description: "audit".into() }];
        assert_eq!(report("ledger", &applied), ["ledger      applied 2 audit"]);
        assert_eq!(report("gateway", &[]), ["gateway     up to date"]);
    }
}
