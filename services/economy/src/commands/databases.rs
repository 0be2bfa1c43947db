//! Where the five databases of a stack are, for the commands that open them directly
//! (`economy backup`, `restore`, `migrate`): the services' `database_url`s from the same
//! configuration as `economy up` (defaults, `--config FILE`, `ECONOMY_<SECTION>__<KEY>`),
//! built-in SQLite URLs moved into `--data-dir` as `economy up` moves them, and each
//! service's migrations.

use std::path::Path;
use std::time::Duration;

use economy_gateway::config::GatewayConfig;
use economy_items::ItemsConfig;
use economy_kit::db::{Backend, DbOptions, Migrations};
use economy_ledger::LedgerConfig;
use economy_market::MarketConfig;
use economy_redemption::RedemptionConfig;
use economy_stack::Service;
use serde::{Deserialize, Serialize};

/// The services' sections, read whole so that the file `economy up` reads parses here too
/// (the other sections are skipped; unknown keys are refused).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    gateway: GatewayConfig,
    ledger: LedgerConfig,
    items: ItemsConfig,
    redemption: RedemptionConfig,
    market: MarketConfig,
}

/// One service's SQLite database.
#[derive(Debug, Clone)]
pub struct Source {
    /// The service that owns it.
    pub service: Service,
    /// Its `sqlite:` URL.
    pub url: String,
    /// How long a copy or a lock waits for the database (`database.sqlite_busy_timeout_ms`).
    pub busy_timeout: Duration,
}

impl Settings {
    /// Loads the configuration as `economy up` does.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        economy_kit::config::load(file)
    }

    /// Every service's database, in [`Service::ALL`] order; refuses, naming the setting,
    /// a database that is not SQLite.
    pub fn sqlite_sources(&self, data_dir: &Path) -> anyhow::Result<Vec<Source>> {
        Service::ALL.into_iter().map(|service| self.source(service, data_dir)).collect()
    }

    fn source(&self, service: Service, data_dir: &Path) -> anyhow::Result<Source> {
        let (url, options) = self.database(service, data_dir);
        if url.parse::<Backend>()? != Backend::Sqlite {
            anyhow::bail!(
                "{service}.database_url is not a SQLite database: `economy backup` copies SQLite files only; back up \
                 PostgreSQL with its own tools (docs/operations.md, \"Backup and restore\")"
            );
        }
        Ok(Source { service, url, busy_timeout: Duration::from_millis(options.sqlite_busy_timeout_ms) })
    }

    /// `service`'s database URL (a built-in one moved into `data_dir`) and options.
    pub fn database(&self, service: Service, data_dir: &Path) -> (String, &DbOptions) {
        let (url, default, options) = match service {
            Service::Gateway => {
                (&self.gateway.database_url, GatewayConfig::default().database_url, &self.gateway.database)
            }
            Service::Ledger => (&self.ledger.database_url, LedgerConfig::default().database_url, &self.ledger.database),
            Service::Items => (&self.items.database_url, ItemsConfig::default().database_url, &self.items.database),
            Service::Redemption => {
                (&self.redemption.database_url, RedemptionConfig::default().database_url, &self.redemption.database)
            }
            Service::Market => (&self.market.database_url, MarketConfig::default().database_url, &self.market.database),
        };
        let url = if *url == default {
            economy_kit::sqlite_backup::file_url(&data_dir.join(file_name(service)))
        } else {
            url.clone()
        };
        (url, options)
    }
}

/// The file a service's database has in a data directory and in a backup: `<service>.db`.
pub fn file_name(service: Service) -> String {
    format!("{service}.db")
}

/// `service`'s migrations, both backends.
pub fn migrations(service: Service) -> Migrations {
    match service {
        Service::Gateway => economy_gateway::store::MIGRATIONS,
        Service::Ledger => economy_ledger::store::MIGRATIONS,
        Service::Items => economy_items::store::MIGRATIONS,
        Service::Redemption => economy_redemption::store::MIGRATIONS,
        Service::Market => economy_market::store::MIGRATIONS,
    }
}

/// The highest migration version this binary knows for `service`'s SQLite database.
pub fn known_version(service: Service) -> Option<i64> {
    migrations(service).sqlite.iter().map(|migration| migration.version).max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_urls_live_in_the_data_dir() {
        let sources = Settings::default().sqlite_sources(Path::new("/var/economy")).expect("sqlite");
        let urls: Vec<&str> = sources.iter().map(|source| source.url.as_str()).collect();
        assert_eq!(
            urls,
            [
                "sqlite:///var/economy/ledger.db",
                "sqlite:///var/economy/items.db",
                "sqlite:///var/economy/redemption.db",
                "sqlite:///var/economy/market.db",
                "sqlite:///var/economy/gateway.db",
            ]
        );
        assert_eq!(sources[0].busy_timeout, Duration::from_secs(10));
        let mut settings = Settings::default();
        settings.market.database_url = "postgres://db/market".into();
        let (market, _) = settings.database(Service::Market, Path::new("/var/economy"));
        assert_eq!(market, "postgres://db/market", "a configured URL is kept");
    }

    #[test]
    fn a_postgres_database_is_refused_naming_its_setting() {
        let mut settings = Settings::default();
        settings.market.database_url = "postgres://db/market".into();
        let error = settings.sqlite_sources(Path::new("/var/economy")).expect_err("refused").to_string();
        assert!(error.starts_with("market.database_url is not a SQLite database"), "{error}");
        assert!(error.contains("docs/operations.md, \"Backup and restore\""), "{error}");
    }

    #[test]
    fn every_service_has_a_known_schema() {
        assert!(Service::ALL.into_iter().all(|service| known_version(service).is_some_and(|version| version > 0)));
    }
}
