//! Persistence of the ledger (sqlx `Any`, one SQL code path for SQLite and PostgreSQL;
//! docs/operations.md, "Backends"). The store owns the schema (`migrations/ledger/`) and
//! applies each `WritePlan` exactly once per idempotency key, which the database keeps
//! UNIQUE (ARCHITECTURE.md, "Invariants"), by the write path [`write`] chooses for its
//! backend and entry.

#[cfg(test)]
mod backfill_tests;
mod catalog;
mod compensation;
#[cfg(test)]
mod fixtures;
mod history;
#[cfg(test)]
mod history_plan_tests;
mod known;
mod read;
mod reconcile;
mod reconcile_increment;
mod watch;
mod write;

use std::sync::Arc;

use economy_kit::db::{Db, DbOptions, Migrations};
use economy_kit::group_commit::GroupCommit;
use economy_kit::time::SharedClock;
use economy_kit::watch::Appended;
use sqlx::migrate::Migrator;

use crate::domain::LedgerError;
use crate::domain::hold::HoldStatus;
use crate::domain::ids::AccountId;

pub use compensation::{ForceReleased, Recalculated};
pub use history::{BalanceAt, Statement, StatementQuery};
pub use reconcile::{Limits as ReconcileLimits, Position as ReconcilePosition, ScheduledStep};
pub use reconcile_increment::Increment;
pub use watch::EntryWatch;
pub use write::Applied;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/ledger/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/ledger/postgres");
/// Both sets, for `economy migrate` (docs/operations.md, "Migrations").
pub static MIGRATIONS: Migrations = Migrations { sqlite: &SQLITE_MIGRATIONS, postgres: &POSTGRES_MIGRATIONS };

impl From<sqlx::Error> for LedgerError {
    fn from(error: sqlx::Error) -> Self {
        Self::Storage(economy_kit::error::StorageCause::new(error))
    }
}

/// The ledger's database.
#[derive(Debug, Clone)]
pub struct LedgerStore {
    db: Db,
    /// Every entry not written by a combined statement (`write::group_commit`).
    entries: GroupCommit<write::EntryWrite>,
    /// PostgreSQL: plain entries queued for combined statements (`write::plain_queue`).
    plain: Option<write::PlainQueue>,
    known: Arc<known::KnownRows>,
    /// "Now" for hold expiry and entry timestamps (the service's injectable clock).
    clock: SharedClock,
    /// Its URL (the PostgreSQL listener of [`Appended`] connects to it).
    url: Arc<str>,
    /// Signalled after every commit of this process that wrote journal entries.
    appended: Appended,
}

impl LedgerStore {
    /// Connects to `url`, applies pending migrations and makes sure the system accounts
    /// `system_accounts` exist; `clock` is the "now" of its writes.
    pub async fn open(
        url: &str,
        options: &DbOptions,
        system_accounts: &[String],
        clock: SharedClock,
    ) -> anyhow::Result<Self> {
        let db = Db::connect(url, options).await?;
        db.migrate(&SQLITE_MIGRATIONS, &POSTGRES_MIGRATIONS).await?;
        let entries = write::group_commit(&db);
        let plain = write::plain_queue(&db, &entries);
        let (url, appended) = (url.into(), Appended::default());
        let store = Self { db, entries, plain, known: Arc::default(), clock, url, appended };
        store.seed_system_accounts(system_accounts).await?;
        Ok(store)
    }

    /// The underlying database (tests corrupt it on purpose to exercise `Reconcile`).
    pub fn db(&self) -> &Db {
        &self.db
    }
}

/// Entries and holds are listed newest first; the page token is the last id returned.
#[derive(Debug, Clone)]
pub struct Page {
    /// Return ids strictly below this one (`None`: from the newest).
    pub before: Option<String>,
    /// Rows to return.
    pub limit: i64,
}

/// Which holds [`LedgerStore::holds`] lists; every filter is optional.
#[derive(Debug, Clone, Default)]
pub struct HoldFilter {
    /// Only this account's holds.
    pub account: Option<AccountId>,
    /// Only holds in this status.
    pub status: Option<HoldStatus>,
    /// Only holds whose reference starts with this text (byte order; empty: any).
    pub reference_prefix: String,
}

/// Which journal entries [`LedgerStore::entries_matching`] lists (docs/ledger.md,
/// "History filters"); an account or a correlation id is always given.
#[derive(Debug, Clone, Default)]
pub struct EntryFilter {
    /// Only entries with a posting on this account.
    pub account: Option<AccountId>,
    /// With `account`: only entries with a posting of this asset on it.
    pub asset: Option<String>,
    /// Only entries of this correlation (empty: any).
    pub correlation_id: String,
    /// Only entries of this business type (empty: any).
    pub business_type: String,
    /// Only entries created at or after this instant (ms).
    pub from: Option<i64>,
    /// Only entries created before this instant (ms).
    pub to: Option<i64>,
}
