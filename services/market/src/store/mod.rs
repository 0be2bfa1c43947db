//! Persistence of the market (sqlx `Any`, one SQL path for SQLite and PostgreSQL;
//! DESIGN.md §2). Owns `migrations/market`: listings, trades, cancellations and the outbox
//! of escrow returns. Every status change is a compare-and-set; a trade and its listing
//! move together in one transaction. Absent values are stored as `''` / `0`.

mod bulk;
mod compensation;
#[cfg(test)]
mod fixtures;
mod listings;
mod outbox;
mod trades;

use economy_kit::db::{Db, DbOptions};
use economy_kit::group_commit::GroupCommit;
use sqlx::migrate::Migrator;

pub use listings::{Browse, Insert, Sort};
pub use outbox::OutboxRow;
pub use trades::{Begin, Step};

/// Most trade writes one SQLite commit carries (group commit, BENCHMARKS.md).
const MAX_WRITES_PER_COMMIT: usize = 64;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/market/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/market/postgres");

/// The market database.
#[derive(Debug, Clone)]
pub struct MarketStore {
    db: Db,
    trade_starts: GroupCommit<trades::TradeStart>,
    steps: GroupCommit<trades::StepWrite>,
}

impl MarketStore {
    /// Connects to `url` and applies pending migrations.
    pub async fn open(url: &str, options: &DbOptions) -> anyhow::Result<Self> {
        let db = Db::connect(url, options).await?;
        db.migrate(&SQLITE_MIGRATIONS, &POSTGRES_MIGRATIONS).await?;
        let trade_starts = GroupCommit::new(db.clone(), MAX_WRITES_PER_COMMIT);
        let steps = GroupCommit::new(db.clone(), MAX_WRITES_PER_COMMIT);
        Ok(Self { db, trade_starts, steps })
    }

    /// The underlying database.
    pub fn db(&self) -> &Db {
        &self.db
    }
}

/// `Some(value)` unless it is the stored "absent" value.
fn present(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}

/// `Some(instant)` unless it is 0, the stored "absent" instant.
fn instant(value: i64) -> Option<i64> {
    (value != 0).then_some(value)
}
