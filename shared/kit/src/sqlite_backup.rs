//! Online copies of a service's SQLite database, for `economy backup` and `economy
//! restore` (docs/operations.md, "Backup and restore"): a consistent copy taken with
//! `VACUUM INTO` on a read-only connection while the service keeps writing (WAL: the copy
//! reads one snapshot and blocks no writer), a write lock that holds a database still
//! while other databases are copied, and the schema version a file was migrated to.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, Executor, SqliteConnection};

/// The `sqlite:` URL of the existing database file at `path`.
pub fn file_url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

/// Writes a consistent copy of the database at `url` (`sqlite:`, must exist) into the new
/// file `target` with `VACUUM INTO`, from a read-only connection that waits up to
/// `busy_timeout` for a lock. The copy is one snapshot of the database: writes committed
/// after it started are not in it.
pub async fn copy_into(url: &str, target: &Path, busy_timeout: Duration) -> anyhow::Result<()> {
    let options = existing(url)?.read_only(true).busy_timeout(busy_timeout);
    let mut connection =
        SqliteConnection::connect_with(&options).await.with_context(|| format!("cannot open {url}"))?;
    let target_text = target.to_str().with_context(|| format!("{} is not UTF-8", target.display()))?;
    sqlx::query("VACUUM INTO $1")
        .bind(target_text)
        .execute(&mut connection)
        .await
        .with_context(|| format!("cannot copy {url} into {}", target.display()))?;
    connection.close().await?;
    Ok(())
}

/// The write lock of one database, held (`BEGIN IMMEDIATE`) until [`WriteLock::release`]:
/// the database's own writers wait for it (up to their busy timeout) while readers,
/// copies included, go on.
#[derive(Debug)]
pub struct WriteLock {
    connection: SqliteConnection,
}

impl WriteLock {
    /// Takes the write lock of the database at `url` (must exist), waiting up to
    /// `busy_timeout` for the transaction in progress.
    pub async fn acquire(url: &str, busy_timeout: Duration) -> anyhow::Result<Self> {
        let options = existing(url)?.busy_timeout(busy_timeout);
        let mut connection =
            SqliteConnection::connect_with(&options).await.with_context(|| format!("cannot open {url}"))?;
        connection.execute("BEGIN IMMEDIATE").await.with_context(|| format!("cannot lock {url} for writing"))?;
        Ok(Self { connection })
    }

    /// Ends the lock without having written anything.
    pub async fn release(mut self) -> anyhow::Result<()> {
        self.connection.execute("ROLLBACK").await?;
        self.connection.close().await?;
        Ok(())
    }
}

/// The highest migration version applied with success to the SQLite file at `path`
/// (sqlx's `_sqlx_migrations` table), `None` for a database never migrated. The file is
/// opened read-only and immutable, so nothing is written beside it.
pub async fn migration_version(path: &Path) -> anyhow::Result<Option<i64>> {
    let options = SqliteConnectOptions::new().filename(path).read_only(true).immutable(true);
    let mut connection =
        SqliteConnection::connect_with(&options).await.with_context(|| format!("cannot open {}", path.display()))?;
    let migrated: Option<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'")
            .fetch_optional(&mut connection)
            .await
            .with_context(|| format!("{} is not a SQLite database", path.display()))?;
    let version = match migrated {
        Some(_) => {
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(&mut connection)
                .await?
        }
        None => None,
    };
    connection.close().await?;
    Ok(version)
}

/// Connection options of the existing database at `url`.
fn existing(url: &str) -> anyhow::Result<SqliteConnectOptions> {
    Ok(SqliteConnectOptions::from_str(url).with_context(|| format!("bad SQLite URL {url}"))?.create_if_missing(false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("economy-sqlite-backup-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    async fn database(path: &Path) -> SqliteConnection {
        let options = SqliteConnectOptions::new().filename(path).create_if_missing(true);
        let mut connection = SqliteConnection::connect_with(&options).await.expect("open");
        connection.execute("PRAGMA journal_mode = WAL").await.expect("wal");
        connection.execute("CREATE TABLE t (n INTEGER NOT NULL)").await.expect("create");
        connection
    }

    #[tokio::test]
    async fn copy_is_a_snapshot_taken_while_a_write_lock_is_held() {
        let dir = temp_dir();
        let source = dir.join("source.db");
        let mut writer = database(&source).await;
        writer.execute("INSERT INTO t VALUES (1), (2)").await.expect("insert");
        let lock = WriteLock::acquire(&file_url(&source), Duration::from_secs(5)).await.expect("lock");
        let copy = dir.join("copy.db");
        copy_into(&file_url(&source), &copy, Duration::from_secs(5)).await.expect("copy");
        lock.release().await.expect("release");
        writer.execute("INSERT INTO t VALUES (3)").await.expect("writes go on after the release");
        let options = SqliteConnectOptions::new().filename(&copy).read_only(true);
        let mut read = SqliteConnection::connect_with(&options).await.expect("open copy");
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t").fetch_one(&mut read).await.expect("count");
        assert_eq!(count, 2);
        assert_eq!(migration_version(&copy).await.expect("version"), None);
        std::fs::remove_dir_all(dir).expect("cleanup");
    }

    #[tokio::test]
    async fn a_missing_database_is_not_created() {
        let dir = temp_dir();
        let missing = dir.join("missing.db");
        assert!(copy_into(&file_url(&missing), &dir.join("copy.db"), Duration::from_secs(1)).await.is_err());
        assert!(WriteLock::acquire(&file_url(&missing), Duration::from_secs(1)).await.is_err());
        assert!(!missing.exists());
        std::fs::remove_dir_all(dir).expect("cleanup");
    }

    #[tokio::test]
    async fn migration_version_is_the_highest_successful_one() {
        let dir = temp_dir();
        let path = dir.join("migrated.db");
        let mut connection = database(&path).await;
        connection
            .execute(
                "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, success BOOLEAN NOT NULL);
                 INSERT INTO _sqlx_migrations VALUES (1, TRUE), (2, TRUE), (3, FALSE);
                 PRAGMA wal_checkpoint(TRUNCATE);",
            )
            .await
            .expect("migrations");
        connection.close().await.expect("close");
        assert_eq!(migration_version(&path).await.expect("version"), Some(2));
        std::fs::remove_dir_all(dir).expect("cleanup");
    }
}
