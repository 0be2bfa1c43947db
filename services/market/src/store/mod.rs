//! Persistence of the market (sqlx `Any`, one SQL path for SQLite and PostgreSQL;
//! docs/operations.md, "Backends"; docs/market.md, "Storage"). Owns `migrations/market`:
//! listings ([`listings`]), trades and their write paths ([`trades`]), cancellations, the
//! outbox of escrow returns ([`outbox`]) and the operator's redrive of it
//! ([`compensation`]), the shop's offers ([`offers`]) and exchanges ([`exchanges`]). Every status change is a compare-and-set; a trade and its listing
//! move together, all or nothing. Absent values are stored as `''` / `0`.

mod compensation;
mod exchanges;
#[cfg(test)]
mod fixtures;
mod listings;
mod offers;
mod outbox;
mod trades;

use economy_kit::db::{Db, DbOptions, Migrations};
use economy_kit::group_commit::GroupCommit;
use sqlx::migrate::Migrator;

/// A storage failure keeps its cause (`#[source]`); clients see an opaque INTERNAL.
impl From<sqlx::Error> for crate::domain::MarketError {
    fn from(error: sqlx::Error) -> Self {
        Self::Storage(economy_kit::error::StorageCause::new(error))
    }
}

pub use exchanges::{Reserve, Save};
pub use listings::{Browse, Insert, Sort};
pub use offers::Defined;
pub use outbox::OutboxRow;
pub use trades::{Begin, Step};

/// Most trade writes one SQLite commit carries (group commit).
const MAX_WRITES_PER_COMMIT: usize = 64;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/market/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/market/postgres");
/// Both sets, for `economy migrate` (docs/operations.md, "Migrations").
pub static MIGRATIONS: Migrations = Migrations { sqlite: &SQLITE_MIGRATIONS, postgres: &POSTGRES_MIGRATIONS };

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

/// The JSON text of `column` decoded (lists and maps are stored as JSON texts).
fn json<T: serde::de::DeserializeOwned>(row: &sqlx::any::AnyRow, column: &str) -> Result<T, sqlx::Error> {
    use sqlx::Row;
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text).map_err(|error| sqlx::Error::Decode(format!("bad {column}: {error}").into()))
}

/// `value` as the JSON text to store.
fn to_json(value: &impl serde::Serialize) -> Result<String, sqlx::Error> {
    serde_json::to_string(value).map_err(|error| sqlx::Error::Encode(error.into()))
}
