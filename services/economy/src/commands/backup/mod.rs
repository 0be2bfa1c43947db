//! `economy backup DIR` and `economy restore DIR` (docs/operations.md, "Backup and
//! restore"): an online backup of a stack's five SQLite databases, taken while it serves,
//! and its restore into an empty data directory.
//!
//! The copies form one consistent cut across the services: they are taken callers first
//! (gateway, market, redemption, then items and the ledger; `Service::calls`), and each
//! caller's database is held still (its write lock taken) from just before its copy until
//! the last copy is done. So every call a copied caller records as done is in the callee's
//! copy, and every effect in a callee's copy belongs to a request or saga its caller's copy
//! knows: after a restore the outboxes, saga recovery and gateway retries (same business
//! event) finish whatever was in flight. The services' writes wait while their database
//! is held, up to their `database.sqlite_busy_timeout_ms`.

mod manifest;
mod restore;

use std::path::Path;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use economy_kit::sqlite_backup::{self, WriteLock};
use economy_stack::Service;

use crate::commands::databases::{Settings, Source, file_name};
use manifest::{Database, Manifest};
pub use restore::{RestoreArgs, run as restore};

/// Options of `economy backup` (besides the global `--data-dir`).
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Where to write the backup: a new or empty directory.
    pub dir: PathBuf,
    /// TOML configuration file, the same as `economy up`'s: the services' `database_url`
    /// and `database.sqlite_busy_timeout_ms` are read from it (then from the environment).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// Copies every database into `args.dir`, writes its manifest last and prints one line per
/// database.
pub async fn run(args: &BackupArgs, data_dir: &Path) -> anyhow::Result<ExitCode> {
    let sources = Settings::load(args.config.as_deref())?.sqlite_sources(data_dir)?;
    create_empty_dir(&args.dir, "the backup directory")?;
    let copied = copy_all(&sources, &args.dir).await?;
    let mut databases = Vec::new();
    for (service, copied_at) in copied {
        let path = args.dir.join(file_name(service));
        sync(&path)?;
        let version = sqlite_backup::migration_version(&path).await?;
        databases.push(Database::describe(service, &args.dir, version, copied_at)?);
    }
    let manifest = Manifest::new(databases);
    manifest.write(&args.dir)?;
    sync(&args.dir)?;
    for database in &manifest.databases {
        let version = database.migration_version.map_or("none".to_owned(), |version| version.to_string());
        println!(
            "{:<10}  {}  {} bytes  schema {version}  sha256 {}",
            database.service, database.file, database.bytes, database.sha256
        );
    }
    println!("backup of {} written to {}", data_dir.display(), args.dir.display());
    Ok(ExitCode::SUCCESS)
}

/// Copies the databases of `sources` into `dir`, callers first, each caller held still
/// from its copy to the last one (module doc); returns each service with when its copy
/// was taken. The write locks are released whatever happens.
async fn copy_all(sources: &[Source], dir: &Path) -> anyhow::Result<Vec<(Service, String)>> {
    let mut held = Vec::new();
    let copied = copy_callers_first(sources, dir, &mut held).await;
    let mut released = Ok(());
    for lock in held {
        released = released.and(lock.release().await);
    }
    let copied = copied?;
    released.context("cannot release a database's write lock")?;
    Ok(copied)
}

async fn copy_callers_first(
    sources: &[Source],
    dir: &Path,
    held: &mut Vec<WriteLock>,
) -> anyhow::Result<Vec<(Service, String)>> {
    let mut copied = Vec::new();
    // `sources` are in start order, each after the services it calls.
    for source in sources.iter().rev() {
        let service = source.service;
        if !service.calls().is_empty() {
            let lock = WriteLock::acquire(&source.url, source.busy_timeout).await;
            held.push(lock.with_context(|| format!("cannot hold the {service} database still"))?);
        }
        let target = dir.join(file_name(service));
        sqlite_backup::copy_into(&source.url, &target, source.busy_timeout)
            .await
            .with_context(|| format!("cannot back up the {service} database"))?;
        copied.push((service, manifest::now()));
    }
    Ok(copied)
}

/// Creates `dir` (and its parents), or accepts it when it exists and is empty; refuses a
/// directory holding anything, or a file.
fn create_empty_dir(dir: &Path, what: &str) -> anyhow::Result<()> {
    refuse_non_empty(dir, what)?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {what} {}", dir.display()))
}

/// Refuses `dir` when it is a file or a directory holding anything; a missing one is fine.
fn refuse_non_empty(dir: &Path, what: &str) -> anyhow::Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            anyhow::ensure!(entries.next().is_none(), "{what} {} is not empty", dir.display());
            Ok(())
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error).with_context(|| format!("{what} {} cannot be read as a directory", dir.display())),
    }
}

/// Flushes the file or directory at `path` to disk.
fn sync(path: &Path) -> anyhow::Result<()> {
    std::fs::File::open(path)
        .and_then(|file| file.sync_all())
        .with_context(|| format!("cannot sync {}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sqlx::{Connection, Executor, SqliteConnection};

    use super::*;

    #[tokio::test]
    async fn a_failed_backup_releases_every_database_it_held() {
        let dir = std::env::temp_dir().join(format!("economy-backup-fail-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(dir.join("out")).expect("dir");
        let sources: Vec<Source> = Service::ALL
            .into_iter()
            .map(|service| Source {
                service,
                url: sqlite_backup::file_url(&dir.join(file_name(service))),
                busy_timeout: Duration::from_secs(5),
            })
            .collect();
        // The gateway and the market exist; redemption's database is missing.
        for service in [Service::Gateway, Service::Market] {
            let url = format!("{}?mode=rwc", sqlite_backup::file_url(&dir.join(file_name(service))));
            let mut connection = SqliteConnection::connect(&url).await.expect("create");
            connection.execute("CREATE TABLE t (n INTEGER)").await.expect("table");
            connection.close().await.expect("close");
        }
        let error = copy_all(&sources, &dir.join("out")).await.expect_err("redemption is missing").to_string();
        assert!(error.contains("redemption"), "{error}");
        for service in [Service::Gateway, Service::Market] {
            let url = format!("{}?mode=rw", sqlite_backup::file_url(&dir.join(file_name(service))));
            let mut connection = SqliteConnection::connect(&url).await.expect("open");
            connection.execute("PRAGMA busy_timeout = 0").await.expect("no waiting");
            connection.execute("INSERT INTO t VALUES (1)").await.expect("writable again");
            connection.close().await.expect("close");
        }
        std::fs::remove_dir_all(dir).expect("cleanup");
    }

    #[test]
    fn callers_are_copied_before_the_services_they_call() {
        let order: Vec<Service> = Service::ALL.into_iter().rev().collect();
        assert_eq!(order, [Service::Gateway, Service::Market, Service::Redemption, Service::Items, Service::Ledger]);
        for (position, service) in order.iter().enumerate() {
            assert!(service.calls().iter().all(|callee| order[position..].contains(callee)), "{service}");
        }
    }

    #[test]
    fn only_a_missing_or_empty_directory_is_accepted() {
        let dir = std::env::temp_dir().join(format!("economy-backup-dir-{}", uuid::Uuid::now_v7().simple()));
        create_empty_dir(&dir.join("new"), "the backup directory").expect("created");
        create_empty_dir(&dir.join("new"), "the backup directory").expect("empty");
        std::fs::write(dir.join("new").join("x"), "x").expect("write");
        let error = create_empty_dir(&dir.join("new"), "the backup directory").expect_err("refused").to_string();
        assert!(error.ends_with("is not empty"), "{error}");
        assert!(refuse_non_empty(&dir.join("new").join("x"), "the data directory").is_err());
        std::fs::remove_dir_all(dir).expect("cleanup");
    }
}
