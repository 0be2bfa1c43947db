//! Persistence of items (sqlx `Any`, one SQL code path for SQLite and PostgreSQL;
//! docs/operations.md, "Backends"). The store owns the schema (`migrations/items/`); every change is one
//! compare-and-set UPDATE of the instance plus the insert of its event, in one
//! transaction, and the database's UNIQUE keys judge duplicates.

mod compensation;
mod groups;
mod import;
mod read;
mod report;
mod rows;
mod templates;
mod watch;
mod write;

use std::sync::Arc;

use economy_kit::db::{Backend, Db, DbOptions, Migrations};
use economy_kit::watch::Appended;
use sqlx::migrate::Migrator;

use crate::domain::ItemError;
use crate::domain::ids::UserId;
use crate::domain::item::ItemStatus;

pub use import::Imported;
pub use report::{ItemReport, StatusCount};
pub use write::Applied;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/items/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/items/postgres");
/// Both sets, for `economy migrate` (docs/operations.md, "Migrations").
pub static MIGRATIONS: Migrations = Migrations { sqlite: &SQLITE_MIGRATIONS, postgres: &POSTGRES_MIGRATIONS };

impl From<sqlx::Error> for ItemError {
    fn from(error: sqlx::Error) -> Self {
        Self::Storage(economy_kit::error::StorageCause::new(error))
    }
}

/// The items database.
#[derive(Debug, Clone)]
pub struct ItemStore {
    db: Db,
    /// Its URL (the PostgreSQL listener of [`Appended`] connects to it).
    url: Arc<str>,
    /// Signalled after every commit of this process that appended events.
    appended: Appended,
}

impl ItemStore {
    /// Connects to `url` and applies pending migrations.
    pub async fn open(url: &str, options: &DbOptions) -> anyhow::Result<Self> {
        let db = Db::connect(url, options).await?;
        db.migrate(&SQLITE_MIGRATIONS, &POSTGRES_MIGRATIONS).await?;
        Ok(Self { db, url: url.into(), appended: Appended::default() })
    }

    fn backend(&self) -> Backend {
        self.db.backend()
    }

    /// The database (its `job_runs` table holds the runs of the scheduled jobs).
    pub fn db(&self) -> &Db {
        &self.db
    }
}

/// Which instances a list covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemFilter {
    /// The owner.
    pub owner: UserId,
    /// Only these statuses; empty for all.
    pub statuses: Vec<ItemStatus>,
}

impl ItemFilter {
    /// The statuses to bind into `status IN ($a, …)`, always five values: the wanted
    /// statuses padded with `''`, which matches none (one static SQL text per query).
    fn status_binds(&self) -> [&'static str; 5] {
        let wanted =
            ItemStatus::ALL.into_iter().filter(|status| self.statuses.is_empty() || self.statuses.contains(status));
        let mut binds = [""; 5];
        for (slot, status) in binds.iter_mut().zip(wanted) {
            *slot = status.as_str();
        }
        binds
    }
}

/// A page of a list: rows after a cursor (the last row of the previous page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// Continue after this cursor (`None`: from the start).
    pub after: Option<T>,
    /// Rows to return.
    pub limit: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_binds_pad_to_five() {
        let all = ItemFilter { owner: UserId::parse(1).expect("user"), statuses: Vec::new() };
        assert_eq!(all.status_binds(), ["available", "locked", "used", "expired", "revoked"]);
        let some = ItemFilter {
            owner: UserId::parse(1).expect("user"),
            statuses: vec![ItemStatus::Used, ItemStatus::Locked, ItemStatus::Used],
        };
        assert_eq!(some.status_binds(), ["locked", "used", "", "", ""]);
    }
}
