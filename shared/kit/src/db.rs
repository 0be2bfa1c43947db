//! Database open + migrate (DESIGN.md §2): one sqlx `Any` pool over SQLite (embedded
//! default, WAL) or PostgreSQL (production), chosen by the URL scheme. SQL is shared
//! (`$N` placeholders work on both); migrations are per backend.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::Migrator;
use sqlx::{Any, AnyPool, Executor, Transaction};

/// The database engine behind a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite file (embedded default).
    Sqlite,
    /// PostgreSQL (production).
    Postgres,
}

impl FromStr for Backend {
    type Err = anyhow::Error;

    /// The backend of a database URL: `sqlite:` or `postgres:` / `postgresql:`.
    fn from_str(url: &str) -> anyhow::Result<Self> {
        match url.split(':').next() {
            Some("sqlite") => Ok(Self::Sqlite),
            Some("postgres" | "postgresql") => Ok(Self::Postgres),
            _ => anyhow::bail!("unsupported database URL scheme (expected sqlite: or postgres:)"),
        }
    }
}

/// Pool settings of one service's database.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DbOptions {
    /// Maximum pooled connections.
    pub max_connections: u32,
    /// SQLite `synchronous` pragma: `FULL` (durable every commit) or `NORMAL`.
    pub sqlite_synchronous: String,
    /// How long a SQLite writer waits for the write lock, milliseconds.
    pub sqlite_busy_timeout_ms: u64,
}

impl Default for DbOptions {
    fn default() -> Self {
        Self { max_connections: 8, sqlite_synchronous: "FULL".into(), sqlite_busy_timeout_ms: 10_000 }
    }
}

/// A connected, migrated database.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
}

impl Db {
    /// Opens `url` (creating a SQLite file and its folder when missing). With metrics on,
    /// the pool's use is sampled (`crate::metrics`).
    pub async fn connect(url: &str, options: &DbOptions) -> anyhow::Result<Self> {
        install_default_drivers();
        let backend: Backend = url.parse()?;
        let mut pool =
            AnyPoolOptions::new().max_connections(options.max_connections).acquire_timeout(Duration::from_secs(30));
        let url = match backend {
            Backend::Postgres => url.to_owned(),
            Backend::Sqlite => {
                let synchronous = match options.sqlite_synchronous.to_ascii_uppercase().as_str() {
                    "NORMAL" => "NORMAL",
                    _ => "FULL",
                };
                let pragmas = format!(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; \
                     PRAGMA busy_timeout = {}; PRAGMA foreign_keys = ON;",
                    options.sqlite_busy_timeout_ms
                );
                pool = pool.after_connect(move |conn, _| {
                    let pragmas = pragmas.clone();
                    Box::pin(async move { conn.execute(pragmas.as_str()).await.map(|_| ()) })
                });
                sqlite_create_url(url)?
            }
        };
        let pool = pool.connect(&url).await?;
        crate::metrics::watch_pool(crate::metrics::database_label(&url), pool.clone());
        Ok(Self { pool, backend })
    }

    /// Applies the backend's migrations (each service embeds both sets with
    /// `sqlx::migrate!`).
    pub async fn migrate(&self, sqlite: &Migrator, postgres: &Migrator) -> anyhow::Result<()> {
        let migrator = match self.backend {
            Backend::Sqlite => sqlite,
            Backend::Postgres => postgres,
        };
        migrator.run(&self.pool).await?;
        Ok(())
    }

    /// The pool, for reads.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The engine.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Starts a write transaction: `BEGIN IMMEDIATE` on SQLite (takes the write lock up
    /// front, so read-then-write never fails on upgrade), `BEGIN` on PostgreSQL.
    pub async fn begin_write(&self) -> Result<Transaction<'static, Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// `sqlite://path` with `mode=rwc` (create when missing) and the folder created.
fn sqlite_create_url(url: &str) -> anyhow::Result<String> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let path = base.trim_start_matches("sqlite:").trim_start_matches("//");
    if let Some(parent) = Path::new(path).parent().filter(|parent| !parent.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    Ok(match query {
        "" => format!("{base}?mode=rwc"),
        query if query.contains("mode=") => url.to_owned(),
        query => format!("{base}?{query}&mode=rwc"),
    })
}

/// True when `error` is a UNIQUE (or primary key) violation: the database's verdict that
/// an idempotency key or id already exists.
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    error.as_database_error().is_some_and(|db_error| db_error.is_unique_violation())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_from_url() {
        assert_eq!("sqlite://data/x.db".parse::<Backend>().ok(), Some(Backend::Sqlite));
        assert_eq!("postgres://u@h/db".parse::<Backend>().ok(), Some(Backend::Postgres));
        assert_eq!("postgresql://u@h/db".parse::<Backend>().ok(), Some(Backend::Postgres));
        assert!("mysql://h/db".parse::<Backend>().is_err());
    }

    #[test]
    fn sqlite_urls_create_missing_files() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("economy-db-{}", uuid::Uuid::now_v7()));
        let url = format!("sqlite://{}/x.db", dir.display());
        assert_eq!(sqlite_create_url(&url)?, format!("{url}?mode=rwc"));
        assert!(dir.is_dir());
        assert_eq!(sqlite_create_url(&format!("{url}?cache=shared"))?, format!("{url}?cache=shared&mode=rwc"));
        assert_eq!(sqlite_create_url(&format!("{url}?mode=ro"))?, format!("{url}?mode=ro"));
        std::fs::remove_dir_all(dir)?;
        Ok(())
    }
}
