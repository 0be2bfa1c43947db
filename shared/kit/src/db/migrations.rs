//! Schema migrations (docs/operations.md, "Migrations"): applied by a service when it
//! starts (the default), applied once by `economy migrate` without PostgreSQL's advisory
//! lock (distributed engines have none), or only checked at start when
//! `database.migrate_on_start` is off.

use std::collections::{BTreeMap, BTreeSet};

use futures_util::future::BoxFuture;
use sqlx::AnyConnection;
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migrate, Migration, MigrationSource, Migrator};

use super::Backend;

/// A service's migrations, one set per backend (`migrations/<svc>/{sqlite,postgres}`,
/// embedded with `sqlx::migrate!`).
#[derive(Debug, Clone, Copy)]
pub struct Migrations {
    /// The SQLite set.
    pub sqlite: &'static Migrator,
    /// The PostgreSQL set.
    pub postgres: &'static Migrator,
}

/// One migration [`super::Db::migrate_once`] applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedMigration {
    /// Its version (the number its file name starts with).
    pub version: i64,
    /// Its description (the rest of the file name).
    pub description: String,
}

/// Applies the pending migrations of `migrator` on `conn` without sqlx's advisory lock
/// and returns them in order (none when the database was up to date).
pub(super) async fn apply_unlocked(
    conn: &mut AnyConnection,
    migrator: &Migrator,
) -> anyhow::Result<Vec<AppliedMigration>> {
    conn.ensure_migrations_table().await?;
    let applied: BTreeSet<i64> = conn.list_applied_migrations().await?.iter().map(|row| row.version).collect();
    let pending = up_migrations(migrator)
        .filter(|migration| !applied.contains(&migration.version))
        .map(|migration| AppliedMigration {
            version: migration.version,
            description: migration.description.to_string(),
        })
        .collect();
    let mut unlocked = Migrator::new(Copied(migrator.iter().cloned().collect())).await?;
    unlocked.set_locking(false);
    unlocked.run(&mut *conn).await?;
    Ok(pending)
}

/// Refuses, naming `database.migrate_on_start`, a database that is not exactly at the
/// schema of `migrator`: a migration missing, half applied, changed since it was applied
/// or unknown to this binary. Reads only; creates nothing.
pub(super) async fn check_current(
    conn: &mut AnyConnection,
    backend: Backend,
    migrator: &Migrator,
    label: &str,
) -> anyhow::Result<()> {
    let (applied, dirty) = if has_migrations_table(conn, backend).await? {
        let applied = conn.list_applied_migrations().await?;
        (applied.into_iter().map(|row| (row.version, row.checksum.into_owned())).collect(), conn.dirty_version().await?)
    } else {
        (BTreeMap::new(), None)
    };
    match schema_problem(migrator, &applied, dirty) {
        None => Ok(()),
        Some(problem) => anyhow::bail!(
            "the {label} database is not at this binary's schema version ({problem}) and \
             database.migrate_on_start is false, so the service does not migrate it: run \
             `economy migrate` of this release first (docs/operations.md, \"Migrations\")"
        ),
    }
}

/// What keeps a database recorded as `applied` (version -> checksum), with `dirty` the
/// first migration that failed half way, from being at `migrator`'s schema; `None` when
/// it is.
fn schema_problem(migrator: &Migrator, applied: &BTreeMap<i64, Vec<u8>>, dirty: Option<i64>) -> Option<String> {
    if let Some(version) = dirty {
        return Some(format!("migration {version} failed half way"));
    }
    let pending: Vec<String> = up_migrations(migrator)
        .filter(|migration| !applied.contains_key(&migration.version))
        .map(|migration| migration.version.to_string())
        .collect();
    if !pending.is_empty() {
        return Some(format!("migrations {} are not applied", pending.join(", ")));
    }
    if let Some(changed) = up_migrations(migrator).find(|migration| {
        applied.get(&migration.version).is_some_and(|checksum| checksum.as_slice() != &*migration.checksum)
    }) {
        return Some(format!("migration {} was applied with other contents", changed.version));
    }
    let known: BTreeSet<i64> = up_migrations(migrator).map(|migration| migration.version).collect();
    applied
        .keys()
        .find(|version| !known.contains(version))
        .map(|version| format!("migration {version} is unknown to this binary, from a newer release"))
}

/// `_sqlx_migrations` exists (in the connection's schema on PostgreSQL).
pub(super) async fn has_migrations_table(conn: &mut AnyConnection, backend: Backend) -> Result<bool, sqlx::Error> {
    let query = match backend {
        Backend::Sqlite => "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
        Backend::Postgres => {
            "SELECT COUNT(*) FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name = '_sqlx_migrations'"
        }
    };
    let count: i64 = sqlx::query_scalar(query).fetch_one(conn).await?;
    Ok(count > 0)
}

/// The forward migrations of `migrator`, in version order.
fn up_migrations(migrator: &Migrator) -> impl Iterator<Item = &Migration> {
    migrator.iter().filter(|migration| !migration.migration_type.is_down_migration())
}

/// Migrations already resolved, as a source for [`Migrator::new`].
#[derive(Debug)]
struct Copied(Vec<Migration>);

impl<'s> MigrationSource<'s> for Copied {
    fn resolve(self) -> BoxFuture<'s, Result<Vec<Migration>, BoxDynError>> {
        Box::pin(async move { Ok(self.0) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static MARKET: Migrator = sqlx::migrate!("../../migrations/market/sqlite");

    fn applied_up_to(version: i64) -> BTreeMap<i64, Vec<u8>> {
        up_migrations(&MARKET)
            .filter(|migration| migration.version <= version)
            .map(|migration| (migration.version, migration.checksum.to_vec()))
            .collect()
    }

    #[test]
    fn a_database_at_the_binary_s_version_has_no_problem() {
        assert_eq!(schema_problem(&MARKET, &applied_up_to(i64::MAX), None), None);
    }

    #[test]
    fn missing_changed_unknown_and_half_applied_migrations_are_named() {
        let problem = |applied: &BTreeMap<i64, Vec<u8>>, dirty| schema_problem(&MARKET, applied, dirty);
        let missing = problem(&applied_up_to(1), None).unwrap_or_default();
        assert!(missing.contains("are not applied") && !missing.contains(" 1,"), "{missing}");
        assert!(problem(&BTreeMap::new(), None).is_some_and(|text| text.starts_with("migrations 1, ")));
        let mut changed = applied_up_to(i64::MAX);
        changed.insert(1, vec![0]);
        assert_eq!(problem(&changed, None).as_deref(), Some("migration 1 was applied with other contents"));
        let mut newer = applied_up_to(i64::MAX);
        newer.insert(9_999, vec![0]);
        assert!(problem(&newer, None).is_some_and(|text| text.contains("9999 is unknown")));
        assert_eq!(problem(&applied_up_to(i64::MAX), Some(3)).as_deref(), Some("migration 3 failed half way"));
    }
}
