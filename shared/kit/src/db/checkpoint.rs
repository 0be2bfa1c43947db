//! Periodic checkpoints of a SQLite write-ahead log (docs/operations.md, "SQLite
//! write-ahead log"). SQLite checkpoints by itself after a commit once the WAL holds
//! 1,000 pages, but only passively: frames newer than the oldest reader's snapshot stay,
//! and the WAL restarts from its beginning only when no reader uses it. A reader that
//! holds its snapshot across those commits (a long read) starves the reset and the file
//! grows, and once the writes stop no commit comes to checkpoint it. So every interval,
//! when the WAL file is larger than [`super::WAL_SIZE_LIMIT`] (where a reset cuts it
//! back), a `TRUNCATE` checkpoint runs on a connection of its own that waits at most
//! [`WAIT`] for the readers and the writer: it resets the WAL as soon as the starving
//! read is over, whether or not writes go on, and never stalls writers for longer than
//! that wait. Each attempt counts in `economy_sqlite_checkpoints_total{database,outcome}`
//! (`truncated` or `busy`).

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{AnyPool, ConnectOptions, Connection};

/// How long a checkpoint waits for readers and the writer.
const WAIT: Duration = Duration::from_millis(100);

/// Runs the checkpoints of the database at `url` (its WAL file `wal`) every `interval`
/// until `pool` is closed.
pub(super) fn spawn(url: &str, wal: PathBuf, pool: AnyPool, interval: Duration, label: String) {
    let Ok(options) = SqliteConnectOptions::from_str(url) else { return };
    let options = options.busy_timeout(WAIT).create_if_missing(false);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(10)));
        loop {
            ticker.tick().await;
            if pool.is_closed() {
                return;
            }
            let size = std::fs::metadata(&wal).map(|metadata| metadata.len()).unwrap_or(0);
            if size > super::WAL_SIZE_LIMIT {
                let outcome = match truncate(&options).await {
                    Ok(true) => "truncated",
                    Ok(false) => "busy",
                    Err(error) => {
                        tracing::warn!(%error, database = %label, "WAL checkpoint failed");
                        "error"
                    }
                };
                metrics::counter!("economy_sqlite_checkpoints_total", "database" => label.clone(), "outcome" => outcome)
                    .increment(1);
            }
        }
    });
}

/// A `TRUNCATE` checkpoint; `false` when a reader or the writer kept it from resetting
/// the WAL within [`WAIT`] (it then checkpointed what it could).
async fn truncate(options: &SqliteConnectOptions) -> Result<bool, sqlx::Error> {
    let mut connection: SqliteConnection = options.connect().await?;
    let (busy, _, _): (i64, i64, i64) =
        sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)").fetch_one(&mut connection).await?;
    connection.close().await?;
    Ok(busy == 0)
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Instant;

    use super::super::{Db, DbOptions, WAL_SIZE_LIMIT};

    fn size(path: &Path) -> u64 {
        std::fs::metadata(path).map(|metadata| metadata.len()).unwrap_or(0)
    }

    #[tokio::test]
    async fn a_wal_a_long_read_starved_is_reset_once_the_read_is_over() -> anyhow::Result<()> {
        let file = std::env::temp_dir().join(format!("economy_checkpoint_{}.db", uuid::Uuid::now_v7().simple()));
        let wal = std::path::PathBuf::from(format!("{}-wal", file.display()));
        let options = DbOptions { sqlite_checkpoint_interval_ms: 50, ..DbOptions::default() };
        let db = Db::connect(&format!("sqlite://{}", file.display()), &options).await?;
        sqlx::query("CREATE TABLE blobs (b BLOB NOT NULL)").execute(&mut *db.writer().await?).await?;
        // A reader holds its snapshot while 80 MB are written.
        let mut reader = db.pool().begin().await?;
        sqlx::query("SELECT COUNT(*) FROM blobs").fetch_one(&mut *reader).await?;
        for _ in 0..80 {
            sqlx::query("INSERT INTO blobs (b) VALUES (randomblob(1000000))").execute(&mut *db.writer().await?).await?;
        }
        assert!(size(&wal) > WAL_SIZE_LIMIT, "the read kept the WAL from resetting: {} bytes", size(&wal));
        reader.rollback().await?;
        // No write follows that would checkpoint it: the periodic checkpoint does.
        let deadline = Instant::now() + std::time::Duration::from_secs(30);
        while size(&wal) != 0 {
            assert!(Instant::now() < deadline, "the WAL still holds {} bytes", size(&wal));
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        db.close().await;
        for suffix in ["", "-wal", "-shm", ".migrate.lock"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
        }
        Ok(())
    }
}
