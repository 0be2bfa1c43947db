//! `economy restore DIR`: puts a backup's databases into an empty `--data-dir`, where
//! `economy up --data-dir` then starts on them (docs/operations.md, "Backup and restore").
//! Nothing is written before the whole backup is verified: every file's size and SHA-256
//! against the manifest, and every database's schema against what this release knows.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use economy_kit::sqlite_backup;
use economy_stack::Service;

use super::manifest::{Database, Manifest};
use super::{create_empty_dir, refuse_non_empty, sync};
use crate::commands::databases::{file_name, known_version};

/// Options of `economy restore` (the target is the global `--data-dir`).
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup directory `economy backup` wrote.
    pub dir: PathBuf,
}

/// Verifies the backup in `args.dir`, then copies it into the empty `data_dir`.
pub async fn run(args: &RestoreArgs, data_dir: &Path) -> anyhow::Result<ExitCode> {
    let manifest = Manifest::read(&args.dir)?;
    refuse_non_empty(data_dir, "the data directory")?;
    for service in Service::ALL {
        let database = manifest.database(service)?;
        let path = args.dir.join(&database.file);
        database.verify(&path)?;
        check_schema(service, database, &path, &manifest.economy_version).await?;
    }
    create_empty_dir(data_dir, "the data directory")?;
    if let Err(error) = copy_verified(&manifest, &args.dir, data_dir) {
        remove_partial(data_dir);
        return Err(error);
    }
    println!(
        "restored {} databases of {} (economy {}) into {}",
        manifest.databases.len(),
        manifest.created_at,
        manifest.economy_version,
        data_dir.display()
    );
    println!(
        "next: `economy up --data-dir {}`, let its recovery workers finish what was in flight, then `economy check` \
         and `economy reconcile`",
        data_dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Refuses a database whose schema version is not the manifest's, or is newer than this
/// release's migrations (an older one is migrated when the stack starts).
async fn check_schema(service: Service, database: &Database, path: &Path, taken_by: &str) -> anyhow::Result<()> {
    let version = sqlite_backup::migration_version(path).await?;
    anyhow::ensure!(
        version == database.migration_version,
        "{} is at schema version {}, the manifest says {}: the backup was changed, nothing was restored",
        path.display(),
        shown(version),
        shown(database.migration_version)
    );
    let known = known_version(service);
    anyhow::ensure!(
        version <= known,
        "the {service} database of this backup is at schema version {}, newer than this release of economy knows \
         ({}): restore it with economy {taken_by} or later; nothing was restored",
        shown(version),
        shown(known)
    );
    Ok(())
}

fn shown(version: Option<i64>) -> String {
    version.map_or("none".to_owned(), |version| version.to_string())
}

/// Copies every database to a temporary name in `data_dir`, checks each copy against
/// the manifest again, then gives them their names.
fn copy_verified(manifest: &Manifest, backup: &Path, data_dir: &Path) -> anyhow::Result<()> {
    let mut copies = Vec::new();
    for service in Service::ALL {
        let database = manifest.database(service)?;
        let partial = data_dir.join(format!("{}.restoring", file_name(service)));
        std::fs::copy(backup.join(&database.file), &partial)
            .with_context(|| format!("cannot copy {} into {}", database.file, data_dir.display()))?;
        sync(&partial)?;
        database.verify(&partial)?;
        copies.push((partial, data_dir.join(file_name(service))));
    }
    for (partial, target) in copies {
        std::fs::rename(&partial, &target).with_context(|| format!("cannot create {}", target.display()))?;
    }
    sync(data_dir)
}

/// Removes what a failed restore wrote into `data_dir` (it was empty before).
fn remove_partial(data_dir: &Path) {
    for service in Service::ALL {
        for name in [file_name(service), format!("{}.restoring", file_name(service))] {
            let _ = std::fs::remove_file(data_dir.join(name));
        }
    }
}

#[cfg(test)]
mod tests {
    use sqlx::{Connection, Executor, SqliteConnection};

    use super::*;

    /// A SQLite file at `path` whose last migration is `version`.
    async fn migrated_to(path: &Path, version: i64) {
        let url = format!("{}?mode=rwc", sqlite_backup::file_url(path));
        let mut connection = SqliteConnection::connect(&url).await.expect("create");
        connection
            .execute("CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, success BOOLEAN NOT NULL)")
            .await
            .expect("table");
        sqlx::query("INSERT INTO _sqlx_migrations VALUES ($1, TRUE)")
            .bind(version)
            .execute(&mut connection)
            .await
            .expect("row");
        connection.close().await.expect("close");
    }

    fn entry(migration_version: Option<i64>) -> Database {
        Database {
            service: "ledger".into(),
            file: "ledger.db".into(),
            bytes: 0,
            sha256: String::new(),
            migration_version,
            copied_at: String::new(),
        }
    }

    #[tokio::test]
    async fn a_newer_schema_or_one_the_manifest_does_not_say_is_refused() {
        let dir = std::env::temp_dir().join(format!("economy-restore-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).expect("dir");
        let known = known_version(Service::Ledger).expect("known");
        let current = dir.join("current.db");
        migrated_to(&current, known).await;
        check_schema(Service::Ledger, &entry(Some(known)), &current, "0.1.0").await.expect("current schema");
        let error = check_schema(Service::Ledger, &entry(Some(1)), &current, "0.1.0").await.expect_err("changed");
        assert!(error.to_string().contains("the manifest says 1"), "{error}");
        let newer = dir.join("newer.db");
        migrated_to(&newer, known + 1).await;
        let error = check_schema(Service::Ledger, &entry(Some(known + 1)), &newer, "9.0.0").await.expect_err("newer");
        assert!(error.to_string().contains("newer than this release of economy knows"), "{error}");
        assert!(error.to_string().contains("restore it with economy 9.0.0 or later"), "{error}");
        std::fs::remove_dir_all(dir).expect("cleanup");
    }
}
