//! Persistence of the ledger (sqlx `Any`, one SQL code path for SQLite and PostgreSQL;
//! DESIGN.md §2). The store owns the schema (`migrations/ledger/`) and applies each
//! `WritePlan` as one transaction whose idempotency key the database keeps UNIQUE.

mod bulk;
mod catalog;
mod combined;
mod compensation;
#[cfg(test)]
mod fixtures;
mod known;
mod read;
mod reconcile;
mod single;
mod write;

use std::sync::Arc;

use economy_kit::batch::Coalescer;
use economy_kit::db::{Backend, Db, DbOptions};
use economy_kit::group_commit::{GroupCommit, Submitted};
use sqlx::migrate::Migrator;

use crate::domain::LedgerError;

pub use compensation::{ForceReleased, Recalculated};
pub use write::Applied;

/// Most journal entries one SQLite commit carries (group commit, BENCHMARKS.md).
const MAX_ENTRIES_PER_COMMIT: usize = 64;

/// Most plain entries one PostgreSQL statement carries (`combined`); a batch whose bind
/// parameters exceed PostgreSQL's 65,535 (entries of very many legs) fails as a whole and
/// its entries go alone.
const MAX_ENTRIES_PER_STATEMENT: usize = 32;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/ledger/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/ledger/postgres");

impl From<sqlx::Error> for LedgerError {
    fn from(error: sqlx::Error) -> Self {
        Self::Storage(error.to_string())
    }
}

/// The ledger's database.
#[derive(Debug, Clone)]
pub struct LedgerStore {
    db: Db,
    entries: GroupCommit<write::EntryWrite>,
    /// PostgreSQL: plain entries queued for `combined` statements.
    plain: Option<Coalescer<write::EntryWrite, Submitted<write::EntryWrite>>>,
    known: Arc<known::KnownRows>,
}

impl LedgerStore {
    /// Connects to `url`, applies pending migrations and makes sure the system accounts
    /// `system_accounts` exist.
    pub async fn open(url: &str, options: &DbOptions, system_accounts: &[String]) -> anyhow::Result<Self> {
        let db = Db::connect(url, options).await?;
        db.migrate(&SQLITE_MIGRATIONS, &POSTGRES_MIGRATIONS).await?;
        let entries = GroupCommit::new(db.clone(), MAX_ENTRIES_PER_COMMIT);
        let plain = (db.backend() == Backend::Postgres).then(|| {
            let (db, entries) = (db.clone(), entries.clone());
            Coalescer::new(MAX_ENTRIES_PER_STATEMENT, move |batch| {
                combined::post_batch(db.clone(), entries.clone(), batch)
            })
        });
        let store = Self { db, entries, plain, known: Arc::default() };
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
