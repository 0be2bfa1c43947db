//! Test support: a fresh, empty database per test. SQLite by default (a temporary file,
//! removed on drop); PostgreSQL when `ECONOMY_TEST_POSTGRES_URL` is set (a new database
//! created on that server per test, dropped on drop). And [`LogBuffer`], where a test's
//! subscriber writes the log lines it then reads.
//!
//! Compiled only for the kit's own tests and with the `testing` feature, which only
//! economy-testkit (a dev-dependency everywhere) turns on: never in a service binary.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use sqlx::{Connection, Executor};

/// Environment variable naming a PostgreSQL server for tests.
pub const POSTGRES_URL_ENV: &str = "ECONOMY_TEST_POSTGRES_URL";

/// A fresh database for one test.
#[derive(Debug)]
pub struct TestDatabase {
    /// URL to connect to.
    pub url: String,
    sqlite_file: Option<PathBuf>,
    /// `(server URL, database name)` of a PostgreSQL test database.
    postgres: Option<(String, String)>,
}

impl TestDatabase {
    /// Creates the database.
    pub async fn new() -> anyhow::Result<Self> {
        let name = format!("economy_test_{}", uuid::Uuid::now_v7().simple());
        match std::env::var(POSTGRES_URL_ENV).ok().filter(|url| !url.is_empty()) {
            Some(server) => Self::postgres(&server, &name).await,
            None => {
                let file = std::env::temp_dir().join(format!("{name}.db"));
                Ok(Self { url: format!("sqlite://{}", file.display()), sqlite_file: Some(file), postgres: None })
            }
        }
    }

    async fn postgres(server: &str, name: &str) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let mut admin = sqlx::AnyConnection::connect(server).await?;
        admin.execute(format!("CREATE DATABASE {name}").as_str()).await?;
        admin.close().await?;
        let (base, query) =
            server.split_once('?').map_or((server, String::new()), |(base, query)| (base, format!("?{query}")));
        let host_start = base.find("://").map_or(0, |index| index + 3);
        let server_root = base[host_start..].find('/').map_or(base, |slash| &base[..host_start + slash]);
        let postgres = Some((server.to_owned(), name.to_owned()));
        Ok(Self { url: format!("{server_root}/{name}{query}"), sqlite_file: None, postgres })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some(file) = &self.sqlite_file {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
            }
        }
        if let Some((server, name)) = self.postgres.take() {
            // Drop is synchronous and may run inside a runtime: a thread of its own drops
            // the database (closing the test's leftover connections), so repeated runs
            // do not fill the server's disk.
            let dropped = std::thread::spawn(move || drop_postgres(&server, &name)).join();
            if let Ok(Err(error)) = dropped {
                eprintln!("test database not dropped: {error}");
            }
        }
    }
}

fn drop_postgres(server: &str, name: &str) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut admin = sqlx::AnyConnection::connect(server).await?;
        admin.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await?;
        admin.close().await?;
        Ok(())
    })
}

/// A log writer for tests (`with_writer(move || buffer.clone())`): every clone appends
/// to the same buffer, which [`LogBuffer::text`] reads.
#[derive(Debug, Clone, Default)]
pub struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    /// Everything written so far (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }
}

impl std::io::Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
