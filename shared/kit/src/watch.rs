//! Event streams a client follows and resumes (ledger `WatchEntries`, items
//! `WatchItemEvents`; docs/streams.md): commit-order cursors, the horizon that keeps a
//! cursor from skipping or repeating, the wake-up when rows commit, and the serving loop.
//!
//! The rule that keeps a cursor from skipping or repeating a row: a reader delivers only
//! rows whose stream position is below the **horizon**, read before the page, and every
//! row that commits later has a position at or above that horizon.
//! - SQLite: the one writer serializes write transactions and a new row's position grows
//!   with each insert (a rowid, or the largest position plus one taken inside the writing
//!   transaction), so positions are commit order; the horizon is the largest committed
//!   position plus one.
//! - PostgreSQL: a new row's position is its transaction's id (`pg_current_xact_id()`, a
//!   64-bit xid8 that never wraps around); the horizon is the oldest transaction id still
//!   running (`pg_snapshot_xmin(pg_current_snapshot())`). Every transaction below it has
//!   ended, so its rows are all visible to the page read after; every transaction running
//!   or starting later has an id at or above it. A long write transaction on the cluster
//!   therefore holds every stream back until it ends.
//!
//! "From now" starts before the horizon; on PostgreSQL rows at or above it may already be
//! committed then, so the stream also leaves out the rows visible in the snapshot taken
//! when it started ([`Committed`]) until it has passed that snapshot's `xmax`, above which
//! nothing was visible.

mod cursor;
mod serve;
mod signal;

pub use cursor::Cursor;
pub use serve::{EventStream, Source, Start, WatchOptions, open};
pub use signal::Appended;

use crate::db::{Backend, Db};

/// Where a stream's rows live: the table and the SQL expression of a row's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamTable {
    /// Table name, e.g. `journal_entries`.
    pub table: &'static str,
    /// Position expression in that table on this backend, e.g. `rowid`, `stream_position`.
    pub position: &'static str,
    /// PostgreSQL channel notified after this process's commits (`Appended`).
    pub channel: &'static str,
}

/// The PostgreSQL snapshot of a stream's start: rows visible in it were committed before
/// the stream started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// `pg_current_snapshot()` as text.
    pub snapshot: String,
    /// Its `xmax`: no position at or above it was visible.
    pub xmax: i64,
}

/// Where a stream "from now" starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartPoint {
    /// The horizon then.
    pub horizon: i64,
    /// PostgreSQL: the rows committed then at or above the horizon, to leave out.
    pub committed: Option<Committed>,
}

impl StreamTable {
    /// The horizon now (module docs).
    pub async fn horizon(&self, db: &Db) -> Result<i64, sqlx::Error> {
        let sql = match db.backend() {
            Backend::Sqlite => format!("SELECT COALESCE(MAX({}), 0) + 1 FROM {}", self.position, self.table),
            Backend::Postgres => "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint".to_owned(),
        };
        let (horizon,): (i64,) = sqlx::query_as(&sql).fetch_one(db.pool()).await?;
        Ok(horizon)
    }

    /// The start of a stream "from now" (module docs).
    pub async fn start_point(&self, db: &Db) -> Result<StartPoint, sqlx::Error> {
        if db.backend() == Backend::Sqlite {
            return Ok(StartPoint { horizon: self.horizon(db).await?, committed: None });
        }
        let (horizon, xmax, snapshot): (i64, i64, String) = sqlx::query_as(
            "SELECT pg_snapshot_xmin(s)::text::bigint, pg_snapshot_xmax(s)::text::bigint, s::text \
             FROM pg_current_snapshot() AS s",
        )
        .fetch_one(db.pool())
        .await?;
        Ok(StartPoint { horizon, committed: Some(Committed { snapshot, xmax }) })
    }

    /// The condition of a page query that leaves out the rows visible in a stream's
    /// starting snapshot ([`Committed::snapshot`], bound at `placeholder`, e.g. `$14`).
    pub fn not_committed(&self, placeholder: &str) -> String {
        format!("NOT pg_visible_in_snapshot({}::text::xid8, {placeholder}::text::pg_snapshot)", self.position)
    }
}
