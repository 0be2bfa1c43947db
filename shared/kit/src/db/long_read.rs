//! Reads that may run long (a whole-ledger check, a scan) and stop when their caller goes
//! (docs/operations.md, "Deadlines"). [`LongRead`] is a connection of its own: its
//! statements run as on the pool (`Any` rows, the same SQL), and once it is dropped
//! before [`LongRead::finish`] — the RPC's future dropped at its deadline or by the
//! client's cancel, a job stopped — the statement it is running stops on the database
//! too, instead of holding a core and a snapshot until it ends:
//! - SQLite: a connection opened for the read, whose progress handler interrupts the
//!   statement (`SQLITE_INTERRUPT`) once the read is dropped or its deadline passed;
//! - PostgreSQL: a pooled connection in a transaction whose `statement_timeout` is the
//!   request's remaining deadline plus [`DEADLINE_MARGIN`] (the backstop), and which is
//!   sent `pg_cancel_backend` from another connection when the read is dropped; it goes
//!   back to the pool only after that cancel, so the cancel cannot reach a later user.
//!
//! The deadline is the one of the request being served (`crate::server::deadline`), if
//! any. Each read dropped before it finished counts in
//! `economy_db_long_reads_stopped_total{database}`, whether a statement was running then
//! (interrupted, cancelled) or not (its snapshot released).

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{FutureExt, StreamExt};

use sqlx::any::{Any, AnyQueryResult, AnyRow, AnyStatement, AnyTransactionManager, AnyTypeInfo};
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{AnyPool, ConnectOptions, Describe, Either, Execute, Executor, TransactionManager};
use sqlx_core::any::AnyConnectionBackend;

use super::DbOptions;

/// How far past the request's deadline the database stops a statement by itself. The
/// server drops the request at its deadline, which stops the statement at once; the
/// margin keeps that answer (`DEADLINE_EXCEEDED`) from racing a statement's own timeout.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(1);

/// SQLite virtual-machine steps between two looks at the stop flag (well under 1 ms).
const SQLITE_STEPS_PER_CHECK: i32 = 10_000;

/// How a database opens its long reads.
#[derive(Debug, Clone)]
pub(super) enum Opener {
    /// A new connection with these options for each read.
    Sqlite { options: Arc<SqliteConnectOptions>, label: Arc<str> },
    /// A connection of the pool.
    Postgres { pool: AnyPool, label: Arc<str> },
}

impl Opener {
    /// SQLite: the options of `url` (already made to create the file) with the busy
    /// timeout and temporary storage of the other connections.
    pub(super) fn sqlite(url: &str, options: &DbOptions, label: &str) -> Result<Self, sqlx::Error> {
        let options = SqliteConnectOptions::from_str(url)?
            .busy_timeout(Duration::from_millis(options.sqlite_busy_timeout_ms))
            .pragma("temp_store", "MEMORY");
        Ok(Self::Sqlite { options: Arc::new(options), label: label.into() })
    }

    /// PostgreSQL: reads on connections of `pool`.
    pub(super) fn postgres(pool: AnyPool, label: &str) -> Self {
        Self::Postgres { pool, label: label.into() }
    }

    /// A new long read (module docs).
    pub(super) async fn open(&self) -> Result<LongRead, sqlx::Error> {
        let deadline = crate::server::deadline::current().map(|deadline| deadline + DEADLINE_MARGIN);
        match self {
            Self::Sqlite { options, label } => open_sqlite(options, label.clone(), deadline).await,
            Self::Postgres { pool, label } => open_postgres(pool, label.clone(), deadline).await,
        }
    }
}

/// A connection for one long read (module docs); `&mut LongRead` is an executor of the
/// `Any` driver. End it with [`LongRead::finish`]; dropped before, it stops its statement.
#[derive(Debug)]
pub struct LongRead(Connection);

#[derive(Debug)]
enum Connection {
    Sqlite {
        connection: SqliteConnection,
        stop: Arc<AtomicBool>,
        label: Arc<str>,
    },
    Postgres {
        connection: PoolConnection<Any>,
        pid: i32,
        pool: AnyPool,
        label: Arc<str>,
    },
    /// Finished or dropped.
    Done,
}

async fn open_sqlite(
    options: &SqliteConnectOptions,
    label: Arc<str>,
    deadline: Option<Instant>,
) -> Result<LongRead, sqlx::Error> {
    let mut connection = options.connect().await?;
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    connection.lock_handle().await?.set_progress_handler(SQLITE_STEPS_PER_CHECK, move || {
        !stopped.load(Ordering::Acquire) && deadline.is_none_or(|deadline| Instant::now() < deadline)
    });
    Ok(LongRead(Connection::Sqlite { connection, stop, label }))
}

async fn open_postgres(pool: &AnyPool, label: Arc<str>, deadline: Option<Instant>) -> Result<LongRead, sqlx::Error> {
    let mut connection = pool.acquire().await?;
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut *connection).await?;
    AnyTransactionManager::begin(&mut connection, None).await?;
    // From here a drop stops and rolls back what runs on the connection.
    let mut read = LongRead(Connection::Postgres { connection, pid, pool: pool.clone(), label });
    if let Some(deadline) = deadline {
        let millis = deadline.saturating_duration_since(Instant::now()).as_millis().max(1);
        // A number: SET takes no bind parameter.
        sqlx::query(&format!("SET LOCAL statement_timeout = {millis}")).execute(&mut read).await?;
    }
    Ok(read)
}

impl LongRead {
    /// Makes every later statement of this read see one snapshot of the database, not
    /// one each: a deferred transaction on SQLite, REPEATABLE READ on PostgreSQL. Call
    /// it before any other statement (PostgreSQL refuses it after one).
    pub async fn one_snapshot(&mut self) -> Result<(), sqlx::Error> {
        let sql = match &self.0 {
            Connection::Sqlite { .. } => "BEGIN",
            Connection::Postgres { .. } => "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ",
            Connection::Done => return Ok(()),
        };
        sqlx::query(sql).execute(self).await.map(drop)
    }

    /// Ends the read normally: the connection is closed (SQLite) or its transaction rolled
    /// back and returned to the pool (PostgreSQL).
    pub async fn finish(mut self) -> Result<(), sqlx::Error> {
        match std::mem::replace(&mut self.0, Connection::Done) {
            Connection::Sqlite { connection, .. } => sqlx::Connection::close(connection).await,
            Connection::Postgres { mut connection, .. } => AnyTransactionManager::rollback(&mut connection).await,
            Connection::Done => Ok(()),
        }
    }
}

impl Drop for LongRead {
    fn drop(&mut self) {
        match std::mem::replace(&mut self.0, Connection::Done) {
            // The connection's worker ends once its statement stopped.
            Connection::Sqlite { stop, label, .. } => {
                stop.store(true, Ordering::Release);
                count_stopped(&label);
            }
            Connection::Postgres { mut connection, pid, pool, label } => {
                count_stopped(&label);
                AnyTransactionManager::start_rollback(&mut connection);
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(async move {
                        cancel_backend(&pool, pid).await;
                        drop(connection);
                    });
                }
            }
            Connection::Done => {}
        }
    }
}

/// Cancels what the backend `pid` is running, if anything.
async fn cancel_backend(pool: &AnyPool, pid: i32) {
    let cancel = sqlx::query_scalar::<_, bool>("SELECT pg_cancel_backend($1)").bind(pid).fetch_one(pool);
    match tokio::time::timeout(Duration::from_secs(10), cancel).await {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => {
            tracing::warn!(%error, pid, "cannot cancel a dropped long read; its statement_timeout ends it")
        }
        Err(_) => tracing::warn!(pid, "no connection to cancel a dropped long read; its statement_timeout ends it"),
    }
}

fn count_stopped(label: &str) {
    metrics::counter!("economy_db_long_reads_stopped_total", "database" => label.to_owned()).increment(1);
}

fn finished<'e, T: Send + 'e>() -> BoxFuture<'e, Result<T, sqlx::Error>> {
    futures_util::future::ready(Err(sqlx::Error::PoolClosed)).boxed()
}

impl<'c> Executor<'c> for &'c mut LongRead {
    type Database = Any;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        mut query: E,
    ) -> BoxStream<'e, Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        match &mut self.0 {
            Connection::Postgres { connection, .. } => (&mut **connection).fetch_many(query),
            Connection::Sqlite { connection, .. } => match query.take_arguments().map_err(sqlx::Error::Encode) {
                Ok(arguments) => {
                    AnyConnectionBackend::fetch_many(connection, query.sql(), query.persistent(), arguments)
                }
                Err(error) => futures_util::stream::once(async { Err(error) }).boxed(),
            },
            Connection::Done => futures_util::stream::once(finished()).boxed(),
        }
    }

    fn fetch_optional<'e, 'q: 'e, E>(self, mut query: E) -> BoxFuture<'e, Result<Option<AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        match &mut self.0 {
            Connection::Postgres { connection, .. } => (&mut **connection).fetch_optional(query),
            Connection::Sqlite { connection, .. } => match query.take_arguments().map_err(sqlx::Error::Encode) {
                Ok(arguments) => {
                    AnyConnectionBackend::fetch_optional(connection, query.sql(), query.persistent(), arguments)
                }
                Err(error) => futures_util::future::ready(Err(error)).boxed(),
            },
            Connection::Done => finished(),
        }
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [AnyTypeInfo],
    ) -> BoxFuture<'e, Result<AnyStatement<'q>, sqlx::Error>>
    where
        'c: 'e,
    {
        match &mut self.0 {
            Connection::Sqlite { connection, .. } => AnyConnectionBackend::prepare_with(connection, sql, parameters),
            Connection::Postgres { connection, .. } => (&mut **connection).prepare_with(sql, parameters),
            Connection::Done => finished(),
        }
    }

    fn describe<'e, 'q: 'e>(self, sql: &'q str) -> BoxFuture<'e, Result<Describe<Any>, sqlx::Error>>
    where
        'c: 'e,
    {
        match &mut self.0 {
            Connection::Sqlite { connection, .. } => AnyConnectionBackend::describe(connection, sql),
            Connection::Postgres { connection, .. } => (&mut **connection).describe(sql),
            Connection::Done => finished(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Backend, Db, DbOptions};
    use super::*;

    /// Polls `check` every 50 ms until it holds; fails past 30 s (a hang guard, not a
    /// measure: what it waits for takes milliseconds, and never comes when broken).
    async fn eventually<F: Future<Output = Result<bool, sqlx::Error>>>(what: &str, mut check: impl FnMut() -> F) {
        let guard = Instant::now() + Duration::from_secs(30);
        while !check().await.unwrap_or(false) {
            assert!(Instant::now() < guard, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A statement that reads table `t` for hours before its one row: a recursive count on
    /// SQLite, a sleep on PostgreSQL.
    fn endless(backend: Backend) -> &'static str {
        match backend {
            Backend::Sqlite => {
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000000000) \
                 SELECT COUNT(*) FROM t, c"
            }
            Backend::Postgres => "SELECT COUNT(*) FROM t, pg_sleep(36000) AS s",
        }
    }

    /// Whether the statement runs: on SQLite a TRUNCATE checkpoint of a write is refused
    /// while a reader holds a snapshot (`checker` waits for no lock), on PostgreSQL
    /// `pg_stat_activity` shows it.
    async fn running(db: &Db, checker: &Db) -> Result<bool, sqlx::Error> {
        match db.backend() {
            Backend::Sqlite => {
                let mut writer = checker.writer().await?;
                sqlx::query("INSERT INTO w (v) VALUES (1)").execute(&mut *writer).await?;
                let (busy, _, _): (i64, i64, i64) =
                    sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)").fetch_one(&mut *writer).await?;
                Ok(busy == 1)
            }
            Backend::Postgres => {
                let active: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() \
                     AND state = 'active' AND query LIKE '%pg_sleep(36000)%' AND pid <> pg_backend_pid()",
                )
                .fetch_one(db.pool())
                .await?;
                Ok(active > 0)
            }
        }
    }

    #[tokio::test]
    async fn a_dropped_long_read_stops_its_statement() -> anyhow::Result<()> {
        let database = crate::testing::TestDatabase::new().await?;
        let db = Db::connect(&database.url, &DbOptions::default()).await?;
        let checker =
            Db::connect(&database.url, &DbOptions { sqlite_busy_timeout_ms: 0, ..DbOptions::default() }).await?;
        sqlx::query("CREATE TABLE t (v BIGINT NOT NULL)").execute(&mut *db.writer().await?).await?;
        sqlx::query("INSERT INTO t (v) VALUES (1)").execute(&mut *db.writer().await?).await?;
        sqlx::query("CREATE TABLE w (v BIGINT NOT NULL)").execute(&mut *db.writer().await?).await?;
        let backend = db.backend();
        let reader = db.clone();
        let read = tokio::spawn(async move {
            let mut read = reader.long_read().await?;
            sqlx::query(endless(backend)).execute(&mut read).await
        });
        eventually("the long read to run", || running(&db, &checker)).await;
        read.abort();
        assert!(read.await.is_err_and(|error| error.is_cancelled()));
        eventually("the statement to stop", || async { Ok(!running(&db, &checker).await?) }).await;
        let mut after = db.long_read().await?;
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t").fetch_one(&mut after).await?;
        after.finish().await?;
        assert_eq!(rows, 1, "a new long read works");
        checker.close().await;
        db.close().await;
        Ok(())
    }
}
