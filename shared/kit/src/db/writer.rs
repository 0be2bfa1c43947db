//! The connection a write runs on ([`Writer`]): SQLite's one writer connection, which may
//! carry a transaction its caller begins and commits inside its own statements
//! ([`RawTransaction`]), or a PostgreSQL connection of the pool, parked between writes
//! instead of going back to the pool ([`Parked`]).

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use sqlx::any::AnyArguments;
use sqlx::pool::PoolConnection;
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, Connection, Executor, Row, Transaction, TransactionManager};
use tokio::sync::{OwnedMappedMutexGuard, OwnedSemaphorePermit, Semaphore};

/// A connection to write on, held until dropped: on SQLite the one writer connection
/// (other writers wait for it), on PostgreSQL a connection of the pool (at most half of
/// the pool writes at once). Dereferences to the connection, so `&mut *writer` is an
/// executor.
///
/// A PostgreSQL connection goes back to sqlx's pool when dropped, which pings it before
/// anyone may use it again: one round trip per write on a CPU-bound server. After
/// [`Writer::finish`] it is parked instead and the next writer takes it without
/// the ping.
#[derive(Debug)]
pub struct Writer(pub(super) WriterConnection);

#[derive(Debug)]
pub(super) enum WriterConnection {
    Sqlite(OwnedMappedMutexGuard<Option<SqliteWriter>, SqliteWriter>),
    Postgres(Parkable),
}

impl Deref for Writer {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        match &self.0 {
            WriterConnection::Sqlite(writer) => &writer.connection,
            WriterConnection::Postgres(parkable) => parkable.connection(),
        }
    }
}

impl DerefMut for Writer {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match &mut self.0 {
            WriterConnection::Sqlite(writer) => &mut writer.connection,
            WriterConnection::Postgres(parkable) => parkable.connection_mut(),
        }
    }
}

impl Writer {
    /// Starts a write transaction: `BEGIN IMMEDIATE` on SQLite (takes the write lock up
    /// front, so read-then-write never fails on upgrade), `BEGIN` on PostgreSQL. Dropped
    /// uncommitted, it rolls back.
    pub async fn begin(&mut self) -> Result<Transaction<'_, Any>, sqlx::Error> {
        match &mut self.0 {
            WriterConnection::Sqlite(writer) => writer.connection.begin_with("BEGIN IMMEDIATE").await,
            WriterConnection::Postgres(parkable) => parkable.connection_mut().begin().await,
        }
    }

    /// Call with the `outcome` of the writer's last statement (or transaction); returns
    /// it. When the server answered it with a result or with an error of the statement's
    /// own (a data exception, a violated constraint, a serialization failure or deadlock:
    /// SQLSTATE classes 22, 23 and 40), the connection is in step with the server, so on
    /// PostgreSQL it is parked for the next writer without sqlx's release ping. Without
    /// this call, or after any other error (a lost connection, a backend terminated with
    /// `57P01`), it goes back through sqlx's pool, which pings it and closes it when
    /// broken. No effect on SQLite.
    pub fn finish<T>(&mut self, outcome: Result<T, sqlx::Error>) -> Result<T, sqlx::Error> {
        if let WriterConnection::Postgres(parkable) = &mut self.0 {
            parkable.reusable = match &outcome {
                Ok(_) => true,
                Err(error) => error
                    .as_database_error()
                    .and_then(|error| error.code())
                    .is_some_and(|code| ["22", "23", "40"].iter().any(|class| code.starts_with(class))),
            };
        }
        outcome
    }

    /// Runs `query`, a statement that returns one row whose first column is a number (the
    /// one-statement writes on PostgreSQL), reports its outcome through
    /// [`Writer::finish`] and returns the number (`RowNotFound` without a row). It reads
    /// every reply up to the statement's end (`fetch_all`): the commit of an autocommitted
    /// statement comes after its row, and `fetch_one` on the `Any` driver stops at the row,
    /// so a failed commit would go unseen and be left for the connection's next user.
    pub async fn fetch_number<'q>(&mut self, query: Query<'q, Any, AnyArguments<'q>>) -> Result<i64, sqlx::Error> {
        let rows = query.fetch_all(&mut **self).await;
        self.finish(rows)?.first().map_or(Err(sqlx::Error::RowNotFound), |row| row.try_get(0))
    }

    /// On SQLite, a write transaction whose `BEGIN IMMEDIATE` and `COMMIT` the caller sends
    /// inside its own calls (one hand-off to the connection's worker thread for the reads
    /// and one for the writes, instead of four with [`Writer::begin`] and a commit). Until
    /// [`RawTransaction::finish`] the connection counts as possibly inside it, so a writer
    /// dropped before (a failed statement, a panic) is rolled back by the next
    /// [`super::Db::writer`]. `None` on PostgreSQL, whose pooled
    /// connections must never be returned inside a transaction.
    pub fn raw_transaction(&mut self) -> Option<RawTransaction<'_>> {
        match &mut self.0 {
            WriterConnection::Sqlite(writer) => {
                writer.raw_transaction_open = true;
                Some(RawTransaction(writer))
            }
            WriterConnection::Postgres(_) => None,
        }
    }
}

/// See [`Writer::raw_transaction`]; dereferences to the connection.
#[derive(Debug)]
pub struct RawTransaction<'w>(&'w mut SqliteWriter);

impl RawTransaction<'_> {
    /// Ends the transaction after `outcome`, the result of the caller's statements, and
    /// returns it: `Ok` means they committed it; after an error it is rolled back now,
    /// rather than leaving it, and SQLite's write lock, to the writer's next user.
    pub async fn finish<T>(self, outcome: Result<T, sqlx::Error>) -> Result<T, sqlx::Error> {
        match outcome {
            Ok(_) => self.0.raw_transaction_open = false,
            Err(_) => self.0.roll_back_raw_transaction().await,
        }
        outcome
    }
}

impl Deref for RawTransaction<'_> {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        &self.0.connection
    }
}

impl DerefMut for RawTransaction<'_> {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.0.connection
    }
}

/// The SQLite writer connection, and whether a [`RawTransaction`] may be open on it.
#[derive(Debug)]
pub(super) struct SqliteWriter {
    pub(super) connection: AnyConnection,
    raw_transaction_open: bool,
}

impl SqliteWriter {
    pub(super) fn new(connection: AnyConnection) -> Self {
        Self { connection, raw_transaction_open: false }
    }

    /// Rolls back a raw transaction its writer left open. SQLite's answer ends it either
    /// way (the error of a `ROLLBACK` with no transaction open is expected); without one
    /// the connection stays marked and the next writer tries again.
    pub(super) async fn roll_back_raw_transaction(&mut self) {
        if self.raw_transaction_open {
            let rolled_back = self.connection.execute("ROLLBACK").await;
            self.raw_transaction_open = rolled_back.is_err_and(|error| error.as_database_error().is_none());
        }
    }

    /// Rolls back a transaction whose writer was dropped inside [`Writer::begin`] (a
    /// cancelled request) after SQLite had run the `BEGIN`: sqlx counts it open, yet no
    /// [`Transaction`] exists to end it, and the next `begin` would fail.
    pub(super) async fn roll_back_abandoned_transaction(&mut self) {
        type Manager = <Any as sqlx::Database>::TransactionManager;
        while Manager::get_transaction_depth(&self.connection) > 0 {
            if Manager::rollback(&mut self.connection).await.is_err() {
                break;
            }
        }
    }
}

/// A PostgreSQL connection checked out of sqlx's pool: parked on drop when marked
/// reusable, else returned to the pool.
#[derive(Debug)]
pub(super) struct Parkable {
    connection: Option<PoolConnection<Any>>,
    parked: Arc<Parked>,
    reusable: bool,
    _permit: OwnedSemaphorePermit,
}

impl Parkable {
    fn connection(&self) -> &AnyConnection {
        self.connection.as_deref().expect("a parkable connection is present until dropped")
    }

    fn connection_mut(&mut self) -> &mut AnyConnection {
        self.connection.as_deref_mut().expect("a parkable connection is present until dropped")
    }
}

impl Drop for Parkable {
    fn drop(&mut self) {
        // Something still to send (a dropped transaction's queued ROLLBACK) is flushed by
        // the pool's release ping: such a connection is not parked.
        let in_step = |connection: &PoolConnection<Any>| self.reusable && !connection.should_flush();
        if let Some(connection) = self.connection.take().filter(in_step) {
            self.parked.park(connection);
        }
    }
}

/// How long a connection may stay parked: one parked longer goes back to the pool (whose
/// release ping closes it if it died meanwhile, and whose idle and lifetime limits then
/// apply) instead of being taken again.
const PARKED_AT_MOST: Duration = Duration::from_secs(30);

/// The PostgreSQL writers' connections: at most half the pool writes at once (writers
/// queue in FIFO order for a permit, so a parked connection never idles while a writer
/// waits), each on a parked connection or, when none is parked, one acquired from sqlx's
/// pool. Parked connections stay checked out of that pool (they count towards its size),
/// so at most half of it is parked and readers keep the rest (a pool of one parks
/// nothing). Last in, first out: the busiest connections stay warm.
#[derive(Debug)]
pub(super) struct Parked {
    capacity: usize,
    permits: Arc<Semaphore>,
    state: Mutex<ParkedState>,
}

#[derive(Debug, Default)]
struct ParkedState {
    connections: Vec<(PoolConnection<Any>, Instant)>,
    closed: bool,
}

impl Parked {
    /// Writers and parked connections for a pool of `pool_size` connections.
    pub(super) fn new(pool_size: usize) -> Self {
        let capacity = pool_size / 2;
        Self { capacity, permits: Arc::new(Semaphore::new(capacity.max(1))), state: Mutex::default() }
    }

    /// Waits for a writer's turn, then takes the most recently parked connection or one
    /// from `pool`. `PoolClosed` after [`Parked::close`].
    pub(super) async fn checkout(self: &Arc<Self>, pool: &sqlx::AnyPool) -> Result<Writer, sqlx::Error> {
        let permit = Arc::clone(&self.permits).acquire_owned().await.map_err(|_| sqlx::Error::PoolClosed)?;
        let parked = self.lock().connections.pop();
        let connection = match parked {
            Some((connection, since)) if since.elapsed() <= PARKED_AT_MOST => connection,
            stale => {
                drop(stale); // parked too long: back to the pool
                pool.acquire().await?
            }
        };
        let parkable =
            Parkable { connection: Some(connection), parked: Arc::clone(self), reusable: false, _permit: permit };
        Ok(Writer(WriterConnection::Postgres(parkable)))
    }

    /// Parks `connection`, or returns it to the pool when full or closed.
    fn park(&self, connection: PoolConnection<Any>) {
        let refused = {
            let mut state = self.lock();
            if state.closed || state.connections.len() >= self.capacity {
                Some(connection)
            } else {
                state.connections.push((connection, Instant::now()));
                None
            }
        };
        drop(refused);
    }

    /// Returns every parked connection to the pool and parks none from now on, so that
    /// closing the pool does not wait for them.
    pub(super) fn close(&self) {
        let connections = {
            let mut state = self.lock();
            state.closed = true;
            self.permits.close();
            std::mem::take(&mut state.connections)
        };
        drop(connections);
    }

    fn lock(&self) -> MutexGuard<'_, ParkedState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::{Backend, Db, DbOptions};
    use crate::testing::TestDatabase;

    async fn database() -> anyhow::Result<(TestDatabase, Db)> {
        let test = TestDatabase::new().await?;
        let db = Db::connect(&test.url, &DbOptions::default()).await?;
        Ok((test, db))
    }

    /// How many writers may hold a connection at once.
    fn writers(db: &Db) -> usize {
        match db.backend() {
            Backend::Sqlite => 1,
            Backend::Postgres => DbOptions::default().max_connections as usize / 2,
        }
    }

    /// One statement on a writer, marked reusable.
    async fn write_once(db: &Db) -> Result<(), sqlx::Error> {
        let mut writer = db.writer().await?;
        let done = sqlx::query("SELECT 1").execute(&mut *writer).await;
        writer.finish(done).map(drop)
    }

    async fn backend_pid(writer: &mut super::Writer) -> Result<i32, sqlx::Error> {
        let pid = sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()").fetch_one(&mut **writer).await;
        writer.finish(pid)
    }

    #[tokio::test]
    async fn writers_beyond_the_limit_wait_while_readers_keep_reading() -> anyhow::Result<()> {
        let (_test, db) = database().await?;
        let mut held = Vec::new();
        for _ in 0..writers(&db) {
            held.push(db.writer().await?);
        }
        let waiting = tokio::spawn({
            let db = db.clone();
            async move { db.writer().await.map(drop) }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "no writer connection is free");
        let read: i64 = sqlx::query_scalar("SELECT 1").fetch_one(db.pool()).await?;
        assert_eq!(read, 1);
        held.pop();
        tokio::time::timeout(Duration::from_secs(10), waiting).await???;
        drop(held);
        tokio::time::timeout(Duration::from_secs(10), db.close()).await?;
        assert!(matches!(db.writer().await, Err(sqlx::Error::PoolClosed)));
        Ok(())
    }

    #[tokio::test]
    async fn a_pool_of_one_parks_nothing_so_readers_still_read() -> anyhow::Result<()> {
        let test = TestDatabase::new().await?;
        let db = Db::connect(&test.url, &DbOptions { max_connections: 1, ..DbOptions::default() }).await?;
        write_once(&db).await?;
        let read = sqlx::query_scalar::<_, i64>("SELECT 1").fetch_one(db.pool());
        assert_eq!(tokio::time::timeout(Duration::from_secs(10), read).await??, 1);
        tokio::time::timeout(Duration::from_secs(10), db.close()).await?;
        Ok(())
    }

    #[tokio::test]
    async fn a_connection_with_a_rollback_still_to_send_is_not_parked() -> anyhow::Result<()> {
        let (_test, db) = database().await?;
        if db.backend() == Backend::Sqlite {
            return Ok(()); // one writer at a time: nothing can wait on its locks
        }
        sqlx::query("CREATE TABLE t (v BIGINT PRIMARY KEY)").execute(&mut *db.writer().await?).await?;
        let mut other = db.writer().await?;
        let mut writer = db.writer().await?;
        let mut tx = writer.begin().await?;
        sqlx::query("INSERT INTO t (v) VALUES (1)").execute(&mut *tx).await?;
        drop(tx); // its ROLLBACK is only queued
        writer.finish(Ok(()))?;
        drop(writer);
        // Parked, the connection would keep the uncommitted row (and this insert waiting).
        let insert = sqlx::query("INSERT INTO t (v) VALUES (1)").execute(&mut *other);
        tokio::time::timeout(Duration::from_secs(10), insert).await??;
        Ok(())
    }

    #[tokio::test]
    async fn a_raw_transaction_left_open_is_rolled_back_by_the_next_writer() -> anyhow::Result<()> {
        let (_test, db) = database().await?;
        sqlx::query("CREATE TABLE t (v BIGINT NOT NULL)").execute(&mut *db.writer().await?).await?;
        let mut writer = db.writer().await?;
        let Some(mut abandoned) = writer.raw_transaction() else {
            assert_eq!(db.backend(), Backend::Postgres);
            return Ok(());
        };
        sqlx::query("BEGIN IMMEDIATE; INSERT INTO t (v) VALUES (1)").execute(&mut *abandoned).await?;
        drop(writer); // neither committed nor ended
        let mut writer = db.writer().await?;
        let mut tx = writer.begin().await?; // fails inside a transaction left open
        sqlx::query("INSERT INTO t (v) VALUES (2)").execute(&mut *tx).await?;
        tx.commit().await?;
        let mut raw = writer.raw_transaction().ok_or_else(|| anyhow::anyhow!("SQLite has raw transactions"))?;
        let committed = sqlx::query("BEGIN IMMEDIATE; INSERT INTO t (v) VALUES (3); COMMIT").execute(&mut *raw).await;
        raw.finish(committed).await?;
        drop(writer);
        let values: Vec<i64> = sqlx::query_scalar("SELECT v FROM t ORDER BY v").fetch_all(db.pool()).await?;
        assert_eq!(values, vec![2, 3]);
        Ok(())
    }

    #[tokio::test]
    async fn a_reusable_postgres_writer_is_parked_and_a_broken_one_replaced() -> anyhow::Result<()> {
        let test = TestDatabase::new().await?;
        let db = Db::connect(&test.url, &DbOptions { max_connections: 2, ..DbOptions::default() }).await?;
        if db.backend() == Backend::Sqlite {
            return Ok(()); // one writer connection, never parked
        }
        let parked = backend_pid(&mut db.writer().await?).await?;
        tokio::time::sleep(Duration::from_millis(50)).await; // a connection returned to the pool would be idle by now
        let reader: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(db.pool()).await?;
        assert_ne!(reader, parked, "a parked connection is not handed to readers");
        let mut writer = db.writer().await?;
        assert_eq!(backend_pid(&mut writer).await?, parked, "the parked connection is taken again");
        let refused = sqlx::query("SELECT 1 / 0").execute(&mut *writer).await;
        assert!(writer.finish(refused).is_err());
        drop(writer);
        let mut writer = db.writer().await?;
        assert_eq!(backend_pid(&mut writer).await?, parked, "a statement's own error leaves it parked");
        sqlx::query("SELECT pg_terminate_backend($1)").bind(parked).execute(db.pool()).await?;
        let broken = sqlx::query("SELECT 1").execute(&mut *writer).await;
        assert!(writer.finish(broken).is_err());
        drop(writer);
        let replaced = backend_pid(&mut db.writer().await?).await?;
        assert_ne!(replaced, parked, "a connection that failed is not parked");
        tokio::time::timeout(Duration::from_secs(10), db.close()).await?;
        Ok(())
    }
}
