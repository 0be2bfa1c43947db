//! Database open + migrate: one sqlx `Any` pool over SQLite (embedded default, WAL) or
//! PostgreSQL (production), chosen by the URL scheme (docs/operations.md, "Backends").
//! SQL is shared (`$N` placeholders work on both, numbered by [`Params`] as values are
//! bound; long `VALUES` lists on SQLite use anonymous ones, [`Backend::value_tuples`]);
//! migrations are per backend.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use serde::{Deserialize, Serialize};
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::Migrator;
use sqlx::{AnyConnection, AnyPool, Connection, Executor};
use tokio::sync::{Mutex, OwnedMutexGuard};

mod checkpoint;
pub mod long_read;
mod migrations;
pub mod params;
mod writer;

pub use long_read::LongRead;
pub use migrations::{AppliedMigration, Migrations};
pub use params::{Params, Placeholder};
use writer::{Parked, SqliteWriter, WriterConnection};
pub use writer::{RawTransaction, Writer};

/// The database engine behind a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite file (embedded default).
    Sqlite,
    /// PostgreSQL (production).
    Postgres,
}

impl FromStr for Backend {
    type Err = anyhow::Error;

    /// The backend of a database URL: `sqlite:` or `postgres:` / `postgresql:`.
    fn from_str(url: &str) -> anyhow::Result<Self> {
        match url.split(':').next() {
            Some("sqlite") => Ok(Self::Sqlite),
            Some("postgres" | "postgresql") => Ok(Self::Postgres),
            _ => anyhow::bail!("unsupported database URL scheme (expected sqlite: or postgres:)"),
        }
    }
}

/// Pool settings of one service's database.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DbOptions {
    /// Maximum pooled connections (on SQLite: one writer connection plus the rest for reads).
    pub max_connections: u32,
    /// SQLite `synchronous` pragma: `FULL` (durable every commit) or `NORMAL`.
    pub sqlite_synchronous: String,
    /// How long a SQLite writer waits for the write lock, milliseconds.
    pub sqlite_busy_timeout_ms: u64,
    /// How often a SQLite database's write-ahead log is checked and, past its size
    /// limit, checkpointed and reset, milliseconds (docs/operations.md, "SQLite
    /// write-ahead log").
    pub sqlite_checkpoint_interval_ms: u64,
    /// Whether the service applies its pending migrations when it starts (default true).
    /// Off, it only checks that the database is at its migrations' version and refuses to
    /// start otherwise; `economy migrate` applies them (docs/operations.md, "Migrations").
    pub migrate_on_start: bool,
}

impl Default for DbOptions {
    fn default() -> Self {
        Self {
            max_connections: 8,
            sqlite_synchronous: "FULL".into(),
            sqlite_busy_timeout_ms: 10_000,
            sqlite_checkpoint_interval_ms: 10_000,
            migrate_on_start: true,
        }
    }
}

/// A connected, migrated database.
///
/// On SQLite every write goes through one dedicated writer connection ([`Db::writer`]),
/// so writers of this process queue in FIFO order for it instead of polling SQLite's
/// write lock through `busy_timeout` (whose sleeps of up to 100 ms made 1–2 s tails under
/// load). It is held outside any pool: returning a pooled connection costs a spawned task
/// and a ping through the connection's worker thread, which the next writer waited for.
/// SQLite connections do not drop like
/// network ones, so the connection is opened once. Reads use a pool of the other
/// connections. On PostgreSQL reads and writes share one pool; at most half of its
/// connections write at once, parked for the next writer between writes
/// ([`Writer::finish`]).
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    writers: Writers,
    /// The lock file that serializes migrations of a SQLite file across processes.
    migration_lock: Option<Arc<Path>>,
    /// [`DbOptions::migrate_on_start`].
    migrate_on_start: bool,
    /// The database's name in metrics and messages (`ledger`), never its credentials.
    label: Arc<str>,
    /// Where [`Db::long_read`] gets its connections.
    long_reads: long_read::Opener,
}

/// Where writers get their connection.
#[derive(Debug, Clone)]
enum Writers {
    /// The one SQLite writer connection (`None` once closed).
    Sqlite(Arc<Mutex<Option<SqliteWriter>>>),
    /// PostgreSQL connections of the pool, parked between writes.
    Postgres(Arc<Parked>),
}

impl Db {
    /// Opens `url` (creating a SQLite file and its folder when missing). With metrics on,
    /// the pool's use is sampled (`crate::metrics`).
    pub async fn connect(url: &str, options: &DbOptions) -> anyhow::Result<Self> {
        install_default_drivers();
        let backend: Backend = url.parse()?;
        let label = crate::metrics::database_label(url);
        let migration_lock = (backend == Backend::Sqlite).then(|| sqlite_migration_lock(url)).flatten();
        let (pool, writers, long_reads) = match backend {
            Backend::Postgres => {
                let pool = pool_options(options.max_connections).connect(url).await?;
                let long_reads = long_read::Opener::postgres(pool.clone(), &label);
                (pool, Writers::Postgres(Arc::new(Parked::new(options.max_connections as usize))), long_reads)
            }
            Backend::Sqlite => {
                let url = sqlite_create_url(url)?;
                let readers = options.max_connections.saturating_sub(1).max(1);
                let writer = SqliteWriter::new(open_sqlite_writer(&url, options).await?);
                let pool = sqlite_pool_options(readers, options).connect(&url).await?;
                let long_reads = long_read::Opener::sqlite(&url, options, &label)?;
                if let Some(wal) = migration_lock.as_deref().and_then(wal_of) {
                    let interval = Duration::from_millis(options.sqlite_checkpoint_interval_ms);
                    checkpoint::spawn(&url, wal, pool.clone(), interval, label.clone());
                }
                (pool, Writers::Sqlite(Arc::new(Mutex::new(Some(writer)))), long_reads)
            }
        };
        crate::metrics::watch_pool(label.clone(), pool.clone(), migration_lock.as_deref().and_then(wal_of));
        let (migrate_on_start, label) = (options.migrate_on_start, label.into());
        Ok(Self { pool, writers, migration_lock, migrate_on_start, label, long_reads })
    }

    /// A service's start-up migration (each service embeds both sets with
    /// `sqlx::migrate!`): applies the backend's pending migrations, or, with
    /// [`DbOptions::migrate_on_start`] off, only checks that none is pending and refuses
    /// the database otherwise, naming the setting. Applying is safe when several processes
    /// start at once on one database: PostgreSQL serializes them with sqlx's advisory
    /// lock, a SQLite file with an exclusive lock on `<file>.migrate.lock` beside it
    /// (SQLite has no advisory lock, and two processes would both apply a migration the
    /// other had not committed yet). (docs/operations.md, "Migrations")
    pub async fn migrate(&self, sqlite: &Migrator, postgres: &Migrator) -> anyhow::Result<()> {
        let migrator = match self.backend() {
            Backend::Sqlite => sqlite,
            Backend::Postgres => postgres,
        };
        let mut writer = self.writer().await?;
        if !self.migrate_on_start {
            return migrations::check_current(&mut writer, self.backend(), migrator, &self.label).await;
        }
        drop(writer);
        let _held = self.hold_migration_lock().await?;
        migrator.run(&mut *self.writer().await?).await?;
        Ok(())
    }

    /// What `economy migrate` runs: applies the backend's pending migrations of
    /// `migrations` once, without PostgreSQL's advisory lock (CockroachDB and YugabyteDB
    /// have none), and returns them in order (none when the database is up to date). Run
    /// it from one process at a time, before the services start (docs/operations.md,
    /// "Migrations"); a SQLite file still takes its lock file.
    pub async fn migrate_once(&self, migrations: Migrations) -> anyhow::Result<Vec<AppliedMigration>> {
        let migrator = match self.backend() {
            Backend::Sqlite => migrations.sqlite,
            Backend::Postgres => migrations.postgres,
        };
        let _held = self.hold_migration_lock().await?;
        migrations::apply_unlocked(&mut *self.writer().await?, migrator).await
    }

    /// The SQLite file's migration lock, held until dropped (`None` on PostgreSQL).
    async fn hold_migration_lock(&self) -> anyhow::Result<Option<std::fs::File>> {
        match &self.migration_lock {
            Some(path) => Ok(Some(lock_file(path.clone()).await?)),
            None => Ok(None),
        }
    }

    /// The pool, for reads.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A connection for a read that may run long, which stops its statement when dropped
    /// before [`LongRead::finish`] or past the request's deadline ([`long_read`]).
    pub async fn long_read(&self) -> Result<LongRead, sqlx::Error> {
        self.long_reads.open().await
    }

    /// The connection to write on (see [`Writer`]); waits for it on SQLite.
    /// `PoolClosed` after [`Db::close`].
    pub async fn writer(&self) -> Result<Writer, sqlx::Error> {
        let sqlite_writer = match &self.writers {
            Writers::Sqlite(sqlite_writer) => sqlite_writer,
            Writers::Postgres(parked) => return parked.checkout(&self.pool).await,
        };
        let guard = Arc::clone(sqlite_writer).lock_owned().await;
        let mut writer = OwnedMutexGuard::try_map(guard, Option::as_mut).map_err(|_| sqlx::Error::PoolClosed)?;
        writer.roll_back_raw_transaction().await;
        writer.roll_back_abandoned_transaction().await;
        Ok(Writer(WriterConnection::Sqlite(writer)))
    }

    /// The engine.
    pub fn backend(&self) -> Backend {
        match self.writers {
            Writers::Sqlite(_) => Backend::Sqlite,
            Writers::Postgres(_) => Backend::Postgres,
        }
    }

    /// Closes the pool and the writer connection.
    pub async fn close(&self) {
        match &self.writers {
            Writers::Postgres(parked) => {
                parked.close();
                self.pool.close().await;
            }
            Writers::Sqlite(sqlite_writer) => {
                self.pool.close().await;
                let writer = sqlite_writer.lock().await.take();
                if let Some(writer) = writer {
                    let _ = writer.connection.close().await;
                }
            }
        }
    }
}

/// No ping before each acquire (sqlx's default costs a round trip per query, or a
/// worker-thread hop on SQLite): a connection that died since is closed by the failing
/// query, whose error the caller reports as a storage error like any other.
fn pool_options(max_connections: u32) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(30))
        .test_before_acquire(false)
}

/// SQLite read connections, each set up with [`sqlite_pragmas`].
fn sqlite_pool_options(max_connections: u32, options: &DbOptions) -> AnyPoolOptions {
    let pragmas = sqlite_pragmas(options);
    pool_options(max_connections).after_connect(move |conn, _| {
        let pragmas = pragmas.clone();
        Box::pin(async move { apply_sqlite_pragmas(conn, &pragmas).await })
    })
}

/// The one SQLite writer connection, set up with [`sqlite_pragmas`].
async fn open_sqlite_writer(url: &str, options: &DbOptions) -> Result<AnyConnection, sqlx::Error> {
    let mut writer = AnyConnection::connect(url).await?;
    apply_sqlite_pragmas(&mut writer, &sqlite_pragmas(options)).await?;
    Ok(writer)
}

/// Runs `pragmas` on a new connection, again when SQLite answers `SQLITE_BUSY` without
/// waiting: switching a fresh file to WAL needs an exclusive lock, and when several
/// processes open it at once SQLite refuses the one that would deadlock instead of
/// calling its busy handler.
async fn apply_sqlite_pragmas(conn: &mut AnyConnection, pragmas: &str) -> Result<(), sqlx::Error> {
    let mut delays = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(5))
        .with_max_delay(Duration::from_millis(200))
        .with_max_times(20)
        .build();
    loop {
        match conn.execute(pragmas).await {
            Ok(_) => return Ok(()),
            Err(error) if is_sqlite_busy(&error) => match delays.next() {
                Some(delay) => tokio::time::sleep(delay).await,
                None => return Err(error),
            },
            Err(error) => return Err(error),
        }
    }
}

/// `SQLITE_BUSY` (5), the lock another connection holds.
fn is_sqlite_busy(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(database) if database.code().as_deref() == Some("5"))
}

/// What a SQLite write-ahead log is cut back to after a checkpoint reset it, bytes
/// (`journal_size_limit`): without it the file keeps the largest size it ever reached
/// (docs/operations.md, "SQLite write-ahead log").
const WAL_SIZE_LIMIT: u64 = 64 * 1024 * 1024;

/// WAL (its file cut back to `WAL_SIZE_LIMIT` after each reset), the configured
/// `synchronous`, a busy timeout for writers of other processes,
/// foreign keys on, temporary storage (the statement journal a multi-row write keeps
/// inside a transaction, sorts) in memory instead of temporary files.
fn sqlite_pragmas(options: &DbOptions) -> String {
    let synchronous = match options.sqlite_synchronous.to_ascii_uppercase().as_str() {
        "NORMAL" => "NORMAL",
        _ => "FULL",
    };
    format!(
        "PRAGMA busy_timeout = {}; PRAGMA journal_mode = WAL; PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}; \
         PRAGMA synchronous = {synchronous}; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;",
        options.sqlite_busy_timeout_ms
    )
}

/// `sqlite://path` with `mode=rwc` (create when missing) and the folder created.
/// The write-ahead log beside the database whose migration lock is `lock`.
fn wal_of(lock: &Path) -> Option<std::path::PathBuf> {
    let lock = lock.to_str()?;
    Some(std::path::PathBuf::from(format!("{}-wal", lock.trim_end_matches(".migrate.lock"))))
}

/// `<file>.migrate.lock` of a SQLite URL's file; `None` for an in-memory database.
fn sqlite_migration_lock(url: &str) -> Option<Arc<Path>> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let path = base.trim_start_matches("sqlite:").trim_start_matches("//");
    let in_memory = path.is_empty() || path == ":memory:" || query.split('&').any(|pair| pair == "mode=memory");
    (!in_memory).then(|| Arc::from(Path::new(&format!("{path}.migrate.lock"))))
}

/// Creates `path` if needed and holds an exclusive lock on it until the file is dropped
/// (waits for another process's lock; released by the OS if that process dies).
async fn lock_file(path: Arc<Path>) -> anyhow::Result<std::fs::File> {
    tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
        file.lock()?;
        Ok(file)
    })
    .await?
}

fn sqlite_create_url(url: &str) -> anyhow::Result<String> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let path = base.trim_start_matches("sqlite:").trim_start_matches("//");
    if let Some(parent) = Path::new(path).parent().filter(|parent| !parent.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    Ok(match query {
        "" => format!("{base}?mode=rwc"),
        query if query.contains("mode=") => url.to_owned(),
        query => format!("{base}?{query}&mode=rwc"),
    })
}

/// True when `error` is a UNIQUE (or primary key) violation: the database's verdict that
/// an idempotency key or id already exists.
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    error.as_database_error().is_some_and(|db_error| db_error.is_unique_violation())
}

/// True when `error` is any constraint's refusal (UNIQUE, primary or foreign key, NOT
/// NULL, CHECK): the statement's own verdict, not a failing connection.
pub fn is_constraint_violation(error: &sqlx::Error) -> bool {
    error.as_database_error().is_some_and(|db_error| !matches!(db_error.kind(), sqlx::error::ErrorKind::Other))
}

/// PostgreSQL's verdict that a one-statement write did not decide and its transaction
/// path should: the statement's own refusal signal (`division_by_zero`, SQLSTATE 22012,
/// raised on purpose to abort it) or a lost deadlock (`40P01`). Either way nothing of the
/// statement remains.
pub fn is_undecided(error: &sqlx::Error) -> bool {
    error.as_database_error().and_then(|error| error.code()).is_some_and(|code| code == "22012" || code == "40P01")
}

/// True when the database aborted a statement or transaction over a conflict with a
/// concurrent one, which the same write run again from its start may win:
/// `serialization_failure` (SQLSTATE 40001, what PostgreSQL answers at `REPEATABLE READ`
/// and `SERIALIZABLE` and CockroachDB and YugabyteDB to contention they cannot order) or
/// `deadlock_detected` (40P01). Nothing of the transaction remains
/// (docs/operations.md, "Conflicts and retries").
pub fn is_retryable_conflict(error: &sqlx::Error) -> bool {
    error.as_database_error().and_then(|error| error.code()).is_some_and(|code| code == "40001" || code == "40P01")
}

/// True when the database stopped a statement before it finished: PostgreSQL's
/// `query_canceled` (57014: a statement timeout or a cancel) or SQLite's
/// `SQLITE_INTERRUPT` (9: a long read's progress handler; docs/operations.md,
/// "Deadlines").
pub fn is_statement_stopped(error: &sqlx::Error) -> bool {
    error.as_database_error().and_then(|error| error.code()).is_some_and(|code| code == "57014" || code == "9")
}

/// True when the database could not be reached or dropped the connection, as while a
/// PostgreSQL primary fails over: a failed socket or TLS session, a broken protocol
/// exchange (a proxy whose server is gone), no connection within the pool's acquire
/// timeout, SQLSTATE class 08 (`connection_exception`) or 57P01–57P03 (the server shutting
/// down, crashed, or not accepting connections yet). The write may or may not have
/// committed: a retry with the same idempotency key finds out (deploy/FAILOVER.md).
pub fn is_connection_lost(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) | sqlx::Error::PoolTimedOut => true,
        error => error
            .as_database_error()
            .and_then(|error| error.code())
            .is_some_and(|code| code.starts_with("08") || ["57P01", "57P02", "57P03"].contains(&code.as_ref())),
    }
}

/// How many times [`retry_conflicts`] runs a write again after its first attempt.
pub const CONFLICT_RETRIES: usize = 8;

/// Runs `write` — a whole write transaction or autocommitted statement, from the start —
/// again while it fails with [`is_retryable_conflict`]: up to [`CONFLICT_RETRIES`] more
/// times, after an exponential backoff with jitter (2 ms doubling up to 200 ms). Returns
/// the last outcome; a conflict still lost after the last retry is the caller's to report
/// as retryable (`STORAGE_CONFLICT`, [`crate::error::storage`]).
pub async fn retry_conflicts<T, F, Fut>(write: F) -> Result<T, sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, sqlx::Error>>,
{
    use backon::Retryable;
    write
        .retry(conflict_backoff())
        .when(is_retryable_conflict)
        .notify(|error: &sqlx::Error, after: Duration| {
            tracing::debug!(%error, retry_in_ms = after.as_millis() as u64, "write aborted over a conflict; retrying");
        })
        .await
}

/// A database error with SQLSTATE `code`, as a driver reports it (tests).
#[cfg(test)]
pub(crate) fn database_error(code: &'static str) -> sqlx::Error {
    #[derive(Debug)]
    struct Coded(&'static str);
    impl std::fmt::Display for Coded {
        fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(formatter, "SQLSTATE {}", self.0)
        }
    }
    impl std::error::Error for Coded {}
    impl sqlx::error::DatabaseError for Coded {
        fn message(&self) -> &str {
            self.0
        }
        fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
            Some(self.0.into())
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }
    sqlx::Error::Database(Box::new(Coded(code)))
}

/// The delays between the attempts of [`retry_conflicts`].
pub(crate) fn conflict_backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(2))
        .with_max_delay(Duration::from_millis(200))
        .with_jitter()
        .with_max_times(CONFLICT_RETRIES)
}

/// `rows` as one JSON array, the parameter of a bulk statement that unpacks it with
/// `json_each` (SQLite): one prepared statement whatever the number of rows. Each row is
/// a tuple, read in SQL as `value ->> 0`, `value ->> 1`, …
pub fn json_rows(rows: &impl serde::Serialize) -> Result<String, sqlx::Error> {
    serde_json::to_string(rows).map_err(|error| sqlx::Error::Encode(Box::new(error)))
}

impl Backend {
    /// `rows` tuples of `columns` placeholders for a multi-row `VALUES` list in a statement
    /// that holds no other placeholder: numbered on PostgreSQL (rows=2, columns=2 ->
    /// `($1, $2), ($3, $4)`), anonymous (`(?, ?), (?, ?)`) on SQLite. Bind row by row.
    /// sqlx binds a SQLite parameter by asking its name, which SQLite finds by a linear
    /// search of the statement's named parameters, so numbered ones cost time quadratic in
    /// their count (a coalesced statement binds hundreds). Any other placeholder in the
    /// statement would shift the binding on SQLite (sqlx counts anonymous parameters apart
    /// from numbered ones); a statement built in pieces numbers its values with [`Params`].
    pub fn value_tuples(self, rows: usize, columns: usize) -> String {
        let row = |row: usize| match self {
            Self::Postgres => {
                let names: Vec<String> = (1..=columns).map(|column| format!("${}", row * columns + column)).collect();
                format!("({})", names.join(", "))
            }
            Self::Sqlite => format!("({})", vec!["?"; columns].join(", ")),
        };
        (0..rows).map(row).collect::<Vec<_>>().join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The PostgreSQL test server's URL when it asks for TLS (`.ci/run` sets
    /// `sslmode=verify-full&sslrootcert=…`): the pool's connections are encrypted
    /// (docs/operations.md, "TLS"). Without such a URL there is nothing to check.
    #[tokio::test]
    async fn a_postgres_url_asking_for_tls_connects_encrypted() -> anyhow::Result<()> {
        let asks_tls = |url: &String| {
            ["require", "verify-ca", "verify-full"].iter().any(|mode| url.contains(&format!("sslmode={mode}")))
        };
        let Some(_server) = std::env::var(crate::testing::POSTGRES_URL_ENV).ok().filter(asks_tls) else {
            return Ok(());
        };
        let database = crate::testing::TestDatabase::new().await?;
        let db = Db::connect(&database.url, &DbOptions::default()).await?;
        let encrypted: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM pg_stat_ssl WHERE pid = pg_backend_pid() AND ssl")
                .fetch_one(db.pool())
                .await?;
        assert_eq!(encrypted, 1, "the connection of {} is not encrypted", database.url);
        db.close().await;
        Ok(())
    }

    /// docs/operations.md, "Conflicts and retries": a conflict is run again until it
    /// passes or the retries run out; any other error ends the write at once.
    #[tokio::test]
    async fn conflicts_are_retried_a_bounded_number_of_times_and_nothing_else_is() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let attempts = AtomicUsize::new(0);
        let failing_twice = || async {
            match attempts.fetch_add(1, Ordering::SeqCst) {
                0 => Err(database_error("40001")),
                1 => Err(database_error("40P01")),
                _ => Ok(7),
            }
        };
        assert_eq!(retry_conflicts(failing_twice).await.ok(), Some(7));
        assert_eq!(attempts.swap(0, Ordering::SeqCst), 3);

        let refused = retry_conflicts(|| async {
            attempts.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(database_error("23505"))
        })
        .await;
        assert!(refused.is_err_and(|error| !is_retryable_conflict(&error)));
        assert_eq!(attempts.swap(0, Ordering::SeqCst), 1, "a constraint's refusal is final");

        let lost = retry_conflicts(|| async {
            attempts.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(database_error("40001"))
        })
        .await;
        assert!(lost.is_err_and(|error| is_retryable_conflict(&error)));
        assert_eq!(attempts.load(Ordering::SeqCst), CONFLICT_RETRIES + 1);
    }

    #[test]
    fn backend_from_url() {
        assert_eq!("sqlite://data/x.db".parse::<Backend>().ok(), Some(Backend::Sqlite));
        assert_eq!("postgres://u@h/db".parse::<Backend>().ok(), Some(Backend::Postgres));
        assert_eq!("postgresql://u@h/db".parse::<Backend>().ok(), Some(Backend::Postgres));
        assert!("mysql://h/db".parse::<Backend>().is_err());
    }

    #[test]
    fn value_tuples_number_placeholders_row_by_row() {
        assert_eq!(Backend::Postgres.value_tuples(2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(Backend::Postgres.value_tuples(0, 3), "");
        assert_eq!(Backend::Sqlite.value_tuples(2, 2), "(?, ?), (?, ?)");
        assert_eq!(Backend::Postgres.value_tuples(2, 2), "($1, $2), ($3, $4)");
    }

    static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/market/sqlite");
    static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/market/postgres");

    #[tokio::test]
    async fn processes_started_at_once_migrate_one_fresh_database_once() -> anyhow::Result<()> {
        let database = crate::testing::TestDatabase::new().await?;
        // Concurrent on separate connections, as separate processes would be.
        let starts = (0..8).map(|_| async {
            let db = Db::connect(&database.url, &DbOptions::default()).await?;
            db.migrate(&SQLITE_MIGRATIONS, &POSTGRES_MIGRATIONS).await?;
            db.close().await;
            anyhow::Ok(())
        });
        for started in futures_util::future::join_all(starts).await {
            started?;
        }
        let db = Db::connect(&database.url, &DbOptions::default()).await?;
        let (applied,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM _sqlx_migrations").fetch_one(db.pool()).await?;
        assert_eq!(applied, i64::try_from(SQLITE_MIGRATIONS.iter().count())?);
        db.close().await;
        Ok(())
    }

    /// docs/operations.md, "Migrations": with `migrate_on_start` off a start refuses an
    /// unmigrated database, naming the setting; `migrate_once` applies every migration,
    /// a second run applies none, and the start then passes.
    #[tokio::test]
    async fn with_migrate_on_start_off_a_start_waits_for_migrate_once() -> anyhow::Result<()> {
        let database = crate::testing::TestDatabase::new().await?;
        let options = DbOptions { migrate_on_start: false, ..DbOptions::default() };
        let db = Db::connect(&database.url, &options).await?;
        let refused = db.migrate(&SQLITE_MIGRATIONS, &POSTGRES_MIGRATIONS).await.expect_err("unmigrated");
        let message = format!("{refused:#}");
        assert!(
            message.contains("are not applied") && message.contains("database.migrate_on_start is false"),
            "{message}"
        );
        let created = migrations::has_migrations_table(&mut *db.writer().await?, db.backend()).await?;
        assert!(!created, "the check created nothing");
        let migrations = Migrations { sqlite: &SQLITE_MIGRATIONS, postgres: &POSTGRES_MIGRATIONS };
        let applied = db.migrate_once(migrations).await?;
        let versions: Vec<i64> = applied.iter().map(|migration| migration.version).collect();
        let expected: Vec<i64> = SQLITE_MIGRATIONS.iter().map(|migration| migration.version).collect();
        assert_eq!(versions, expected);
        assert_eq!(db.migrate_once(migrations).await?, Vec::new(), "a second run is a no-op");
        db.migrate(&SQLITE_MIGRATIONS, &POSTGRES_MIGRATIONS).await?;
        db.close().await;
        Ok(())
    }

    #[test]
    fn the_migration_lock_sits_beside_the_file() {
        let lock = sqlite_migration_lock("sqlite://data/ledger.db?mode=rwc");
        assert_eq!(lock.as_deref(), Some(Path::new("data/ledger.db.migrate.lock")));
        assert_eq!(sqlite_migration_lock("sqlite::memory:"), None);
        assert_eq!(sqlite_migration_lock("sqlite://x.db?mode=memory&cache=shared"), None);
    }

    #[tokio::test]
    async fn an_abandoned_write_transaction_rolls_back_and_frees_the_writer() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("economy-db-{}", uuid::Uuid::now_v7()));
        let db = Db::connect(&format!("sqlite://{}/abandoned.db", dir.display()), &DbOptions::default()).await?;
        sqlx::query("CREATE TABLE t (v BIGINT NOT NULL)").execute(&mut *db.writer().await?).await?;
        let abandoned = {
            let db = db.clone();
            tokio::spawn(async move {
                let mut writer = db.writer().await?;
                let mut tx = writer.begin().await?;
                sqlx::query("INSERT INTO t (v) VALUES (1)").execute(&mut *tx).await?;
                anyhow::ensure!(false, "the writer fails before committing");
                Ok(())
            })
        };
        assert!(abandoned.await?.is_err());
        let mut writer = db.writer().await?;
        let mut tx = writer.begin().await?;
        sqlx::query("INSERT INTO t (v) VALUES (2)").execute(&mut *tx).await?;
        tx.commit().await?;
        drop(writer);
        let values: Vec<i64> = sqlx::query_scalar("SELECT v FROM t").fetch_all(db.pool()).await?;
        assert_eq!(values, vec![2]);
        db.close().await;
        assert!(matches!(db.writer().await, Err(sqlx::Error::PoolClosed)));
        std::fs::remove_dir_all(dir)?;
        Ok(())
    }

    #[tokio::test]
    async fn a_begin_cut_off_by_a_cancelled_request_does_not_wedge_the_writer() -> anyhow::Result<()> {
        use sqlx::TransactionManager as _;
        let dir = std::env::temp_dir().join(format!("economy-db-{}", uuid::Uuid::now_v7()));
        let db = Db::connect(&format!("sqlite://{}/cut.db", dir.display()), &DbOptions::default()).await?;
        sqlx::query("CREATE TABLE t (v BIGINT NOT NULL)").execute(&mut *db.writer().await?).await?;
        {
            // What a request dropped inside `Writer::begin` leaves: SQLite ran the BEGIN and
            // sqlx counts it open, but no `Transaction` exists to end it.
            let mut writer = db.writer().await?;
            <sqlx::Any as sqlx::Database>::TransactionManager::begin(&mut writer, None).await?;
            sqlx::query("INSERT INTO t (v) VALUES (1)").execute(&mut *writer).await?;
        }
        let mut writer = db.writer().await?;
        let mut tx = writer.begin().await?;
        sqlx::query("INSERT INTO t (v) VALUES (2)").execute(&mut *tx).await?;
        tx.commit().await?;
        drop(writer);
        let values: Vec<i64> = sqlx::query_scalar("SELECT v FROM t").fetch_all(db.pool()).await?;
        assert_eq!(values, vec![2], "the cut-off transaction was rolled back");
        db.close().await;
        std::fs::remove_dir_all(dir)?;
        Ok(())
    }

    #[tokio::test]
    async fn sqlite_writers_queue_for_the_writer_connection_instead_of_failing_busy() -> anyhow::Result<()> {
        // With no busy timeout at all, writers racing on several connections would fail
        // with "database is locked"; behind the one writer connection they all commit.
        let dir = std::env::temp_dir().join(format!("economy-db-{}", uuid::Uuid::now_v7()));
        let url = format!("sqlite://{}/writers.db", dir.display());
        let db = Db::connect(&url, &DbOptions { sqlite_busy_timeout_ms: 0, ..DbOptions::default() }).await?;
        sqlx::query("CREATE TABLE t (v BIGINT NOT NULL)").execute(&mut *db.writer().await?).await?;
        let writers: Vec<_> = (0..24_i64)
            .map(|value| {
                let db = db.clone();
                tokio::spawn(async move {
                    let mut writer = db.writer().await?;
                    let mut tx = writer.begin().await?;
                    sqlx::query("INSERT INTO t (v) VALUES ($1)").bind(value).execute(&mut *tx).await?;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    tx.commit().await
                })
            })
            .collect();
        for writer in writers {
            writer.await??;
        }
        let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM t").fetch_one(db.pool()).await?;
        assert_eq!(count, 24);
        db.close().await;
        std::fs::remove_dir_all(dir)?;
        Ok(())
    }

    #[test]
    fn sqlite_urls_create_missing_files() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("economy-db-{}", uuid::Uuid::now_v7()));
        let url = format!("sqlite://{}/x.db", dir.display());
        assert_eq!(sqlite_create_url(&url)?, format!("{url}?mode=rwc"));
        assert!(dir.is_dir());
        assert_eq!(sqlite_create_url(&format!("{url}?cache=shared"))?, format!("{url}?cache=shared&mode=rwc"));
        assert_eq!(sqlite_create_url(&format!("{url}?mode=ro"))?, format!("{url}?mode=ro"));
        std::fs::remove_dir_all(dir)?;
        Ok(())
    }
}
