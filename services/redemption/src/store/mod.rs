//! Persistence of redemption orders (sqlx `Any`, one SQL path for SQLite and PostgreSQL;
//! docs/operations.md, "Backends"). Owns `migrations/redemption`: orders (code hashes only, UNIQUE), the
//! keys that resolved them, and the outbox of calls owed to Items (docs/redemption.md, "Outbox and jobs").
//! Every status change is one conditional UPDATE; a resolution commits its outbox row in
//! the same transaction.

mod compensation;
mod import;
mod orders;
mod outbox;

use economy_kit::db::{Db, DbOptions, Migrations};
use sqlx::migrate::Migrator;

/// A storage failure keeps its cause (`#[source]`); clients see an opaque INTERNAL.
impl From<sqlx::Error> for crate::domain::RedemptionError {
    fn from(error: sqlx::Error) -> Self {
        Self::Storage(economy_kit::error::StorageCause::new(error))
    }
}

pub use orders::{Action, Insert, OrderFilter, Resolution};
pub use outbox::{OutboxAction, OutboxRow};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/redemption/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/redemption/postgres");
/// Both sets, for `economy migrate` (docs/operations.md, "Migrations").
pub static MIGRATIONS: Migrations = Migrations { sqlite: &SQLITE_MIGRATIONS, postgres: &POSTGRES_MIGRATIONS };

/// The redemption database.
#[derive(Debug, Clone)]
pub struct RedemptionStore {
    db: Db,
}

impl RedemptionStore {
    /// Connects to `url` and applies pending migrations.
    pub async fn open(url: &str, options: &DbOptions) -> anyhow::Result<Self> {
        let db = Db::connect(url, options).await?;
        db.migrate(&SQLITE_MIGRATIONS, &POSTGRES_MIGRATIONS).await?;
        Ok(Self { db })
    }

    /// The underlying database (tests inspect the stored rows).
    pub fn db(&self) -> &Db {
        &self.db
    }
}
