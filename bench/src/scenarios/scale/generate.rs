//! The ledger generator of `scale`: fills a migrated, empty ledger database directly in
//! its schema (docs/ledger.md, "Resulting balances") with `entries` journal entries, in a
//! few set-based statements per batch of [`BATCH`] entries (a recursive CTE on SQLite,
//! `generate_series` on PostgreSQL), so that the whole `Reconcile` finds nothing.
//!
//! Entry `e` (1..=N) credits 1 `POINTS` from `SYSTEM_ISSUANCE` to one user:
//! - every [`HEAVY_EVERY`]-th entry goes to the heavy user `U + 1` (its `e / 100`-th);
//! - the others, numbered `j = e - e / 100`, go round-robin to user `(j - 1) % U + 1`
//!   (its `(j - 1) / U + 1`-th).
//!
//! The user's k-th posting has `available_after = balance_seq = k`; the system's posting
//! of entry e has amount -1, `available_after = -e`, `balance_seq = e`. Balances: a user
//! the number of its entries, `SYSTEM_ISSUANCE` -N. `created_at` = [`BASE_MILLIS`] + e;
//! ids are canonical UUID text in creation order (`00000000-0000-7000-8000-<e, 12
//! digits>`); idempotency keys `scale-<e>`. Stream positions (docs/streams.md) are the
//! ledger's own: the rowid on SQLite, the batch transaction's id (the column's default)
//! on PostgreSQL — not a constant such as 0, which the incremental reconciliation's
//! checkpoint, moved past the horizon by a run during the load, would skip.

use std::time::Instant;

use sqlx::{AnyConnection, Connection};

/// Entries per statement: progress shows and memory and the SQLite WAL stay bounded.
pub const BATCH: u64 = 500_000;
/// Every this many entries, one goes to the heavy user (1 %).
pub const HEAVY_EVERY: u64 = 100;
/// The asset every generated entry moves.
pub const ASSET: &str = "POINTS";
/// `created_at` of entry 0 (2023-11-14), before any write of the run.
pub const BASE_MILLIS: u64 = 1_700_000_000_000;

/// The generated ledger's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Journal entries (N).
    pub entries: u64,
    /// Typical users (U), ids 1..=U; the heavy user is U + 1.
    pub users: u64,
}

impl Shape {
    /// The heavy user's id.
    pub fn heavy_user(&self) -> u64 {
        self.users + 1
    }

    /// Entries of the heavy user.
    pub fn heavy_entries(&self) -> u64 {
        self.entries / HEAVY_EVERY
    }

    /// Entries of the typical users together.
    fn typical_entries(&self) -> u64 {
        self.entries - self.heavy_entries()
    }
}

/// The SQL dialect's differences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    fn of(url: &str) -> Self {
        if url.starts_with("sqlite:") { Self::Sqlite } else { Self::Postgres }
    }

    /// `WITH s(e) AS (lo..=hi)`.
    fn series(self, lo: u64, hi: u64) -> String {
        match self {
            Self::Sqlite => {
                format!("WITH RECURSIVE s(e) AS (SELECT {lo} UNION ALL SELECT e + 1 FROM s WHERE e < {hi})")
            }
            Self::Postgres => format!("WITH s(e) AS (SELECT generate_series({lo}::bigint, {hi}::bigint))"),
        }
    }

    /// The entry id of `e`.
    fn entry_id(self) -> &'static str {
        match self {
            Self::Sqlite => "'00000000-0000-7000-8000-' || printf('%012d', e)",
            Self::Postgres => "'00000000-0000-7000-8000-' || lpad(e::text, 12, '0')",
        }
    }
}

/// The entry id of entry `e` (what the generator writes).
pub fn entry_id(e: u64) -> String {
    format!("00000000-0000-7000-8000-{e:012}")
}

/// Fills the ledger database at `url` (migrated, no history) with `shape`, calling
/// `progress(entries_done)` after each batch, then refreshes the planner statistics
/// (`ANALYZE`) and, on SQLite, truncates the WAL the load left.
pub async fn generate(url: &str, shape: Shape, mut progress: impl FnMut(u64)) -> anyhow::Result<()> {
    sqlx::any::install_default_drivers();
    let dialect = Dialect::of(url);
    let mut connection = AnyConnection::connect(url).await?;
    if dialect == Dialect::Sqlite {
        sqlx::raw_sql("PRAGMA synchronous = OFF").execute(&mut connection).await?;
    }
    for statement in catalog(dialect, shape) {
        sqlx::raw_sql(&statement).execute(&mut connection).await?;
    }
    let mut done = 0;
    while done < shape.entries {
        let hi = (done + BATCH).min(shape.entries);
        let mut transaction = connection.begin().await?;
        sqlx::raw_sql(&entries(dialect, done + 1, hi)).execute(&mut *transaction).await?;
        sqlx::raw_sql(&postings(dialect, shape, done + 1, hi)).execute(&mut *transaction).await?;
        transaction.commit().await?;
        done = hi;
        progress(done);
    }
    for statement in balances(dialect, shape) {
        sqlx::raw_sql(&statement).execute(&mut connection).await?;
    }
    sqlx::raw_sql("ANALYZE").execute(&mut connection).await?;
    if dialect == Dialect::Sqlite {
        sqlx::raw_sql("PRAGMA wal_checkpoint(TRUNCATE)").execute(&mut connection).await?;
    }
    connection.close().await?;
    Ok(())
}

/// [`generate`], printing progress to stderr; the seconds it took.
pub async fn generate_verbose(url: &str, shape: Shape) -> anyhow::Result<f64> {
    let started = Instant::now();
    generate(url, shape, |done| {
        eprintln!("  generated {done} of {} entries ({:.0} s)", shape.entries, started.elapsed().as_secs_f64());
    })
    .await?;
    Ok(started.elapsed().as_secs_f64())
}

/// Records the generated history as checked by the incremental reconciliation (docs/ledger.md,
/// "Reconciliation"): the checkpoint after the last generated entry, every balance's
/// verified state equal to its row, the asset's verified total 0. What a first incremental
/// run would leave, without its cost (about N / 5,000 s on the reference machine); only
/// sound once the whole `Reconcile` found nothing.
pub async fn record_checkpoint(url: &str, shape: Shape) -> anyhow::Result<()> {
    if shape.entries == 0 {
        return Ok(());
    }
    let dialect = Dialect::of(url);
    let position = match dialect {
        Dialect::Sqlite => "(SELECT rowid FROM journal_entries WHERE id = $1)",
        Dialect::Postgres => "(SELECT stream_position FROM journal_entries WHERE id = $1)",
    };
    let last = entry_id(shape.entries);
    let mut connection = AnyConnection::connect(url).await?;
    let mut transaction = connection.begin().await?;
    sqlx::query(&format!(
        "UPDATE reconcile_checkpoints SET position = {position}, entry_id = $1, entries_checked = $2, \
         checked_at = $3 WHERE name = 'incremental'"
    ))
    .bind(&last)
    .bind(shape.entries as i64)
    .bind((BASE_MILLIS + shape.entries) as i64)
    .execute(&mut *transaction)
    .await?;
    sqlx::raw_sql(
        "INSERT INTO reconciled_balances (account, asset_code, available, frozen, seq) \
         SELECT account, asset_code, available, frozen, seq FROM balances WHERE 1 = 1 \
         ON CONFLICT (account, asset_code) DO UPDATE SET available = excluded.available, \
         frozen = excluded.frozen, seq = excluded.seq",
    )
    .execute(&mut *transaction)
    .await?;
    sqlx::raw_sql(&format!(
        "INSERT INTO reconciled_assets (asset_code, total) VALUES ('{ASSET}', '0') \
         ON CONFLICT (asset_code) DO UPDATE SET total = excluded.total"
    ))
    .execute(&mut *transaction)
    .await?;
    transaction.commit().await?;
    connection.close().await?;
    Ok(())
}

/// The asset and every user's account (the system account exists from the ledger's start).
fn catalog(dialect: Dialect, shape: Shape) -> [String; 2] {
    let series = dialect.series(1, shape.heavy_user());
    [
        format!(
            "INSERT INTO assets (code, display_name, kind, metadata, created_at, updated_at) \
             VALUES ('{ASSET}', 'Points', 'currency', '{{}}', {BASE_MILLIS}, {BASE_MILLIS}) ON CONFLICT (code) DO NOTHING"
        ),
        format!(
            "INSERT INTO accounts (account, user_id, created_at) {series} \
             SELECT 'user:' || e, e, {BASE_MILLIS} FROM s WHERE 1 = 1 ON CONFLICT DO NOTHING"
        ),
    ]
}

/// Journal entries `lo..=hi`.
fn entries(dialect: Dialect, lo: u64, hi: u64) -> String {
    let (series, id) = (dialect.series(lo, hi), dialect.entry_id());
    format!(
        "INSERT INTO journal_entries (id, idempotency_key, fingerprint, business_type, correlation_id, memo, actor, \
         created_at) {series} \
         SELECT {id}, 'scale-' || e, 'scale', 'ADMIN_ADJUST', '', 'generated', 'user:1', {BASE_MILLIS} + e FROM s"
    )
}

/// The two postings of entries `lo..=hi` (module docs for the formulas).
fn postings(dialect: Dialect, shape: Shape, lo: u64, hi: u64) -> String {
    let (series, id) = (dialect.series(lo, hi), dialect.entry_id());
    let (users, heavy) = (shape.users.max(1), shape.heavy_user());
    format!(
        "INSERT INTO postings (entry_id, seq, account, asset_code, bucket, amount, hold_id, available_after, \
         frozen_after, balance_seq, created_at) {series}, \
         g(e, u, k) AS (SELECT e, \
             CASE WHEN e % {HEAVY_EVERY} = 0 THEN {heavy} ELSE (e - e / {HEAVY_EVERY} - 1) % {users} + 1 END, \
             CASE WHEN e % {HEAVY_EVERY} = 0 THEN e / {HEAVY_EVERY} ELSE (e - e / {HEAVY_EVERY} - 1) / {users} + 1 END \
             FROM s) \
         SELECT {id}, 0, 'user:' || u, '{ASSET}', 'available', 1, NULL, k, 0, k, {BASE_MILLIS} + e FROM g \
         UNION ALL \
         SELECT {id}, 1, 'SYSTEM_ISSUANCE', '{ASSET}', 'available', -1, NULL, -e, 0, e, {BASE_MILLIS} + e FROM s"
    )
}

/// The balance rows: each typical user, the heavy user, `SYSTEM_ISSUANCE`.
fn balances(dialect: Dialect, shape: Shape) -> Vec<String> {
    let (n, users, typical) = (shape.entries, shape.users.max(1), shape.typical_entries());
    let updated = BASE_MILLIS + n;
    let insert = "INSERT INTO balances (account, asset_code, available, frozen, updated_at, seq)";
    let series = dialect.series(1, users);
    let mut statements = vec![format!(
        "{insert} {series}, c(u, n) AS (SELECT e, {per_user} + CASE WHEN e <= {extra} THEN 1 ELSE 0 END FROM s) \
         SELECT 'user:' || u, '{ASSET}', n, 0, {updated}, n FROM c WHERE n > 0",
        per_user = typical / users,
        extra = typical % users,
    )];
    let heavy = shape.heavy_entries();
    if heavy > 0 {
        statements.push(format!(
            "{insert} VALUES ('user:{}', '{ASSET}', {heavy}, 0, {updated}, {heavy})",
            shape.heavy_user()
        ));
    }
    if n > 0 {
        statements.push(format!("{insert} VALUES ('SYSTEM_ISSUANCE', '{ASSET}', -{n}, 0, {updated}, {n})"));
    }
    statements
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_are_canonical_uuids_in_creation_order() {
        let (first, later) = (entry_id(1), entry_id(10_000_000));
        assert_eq!(uuid::Uuid::parse_str(&first).map(|uuid| uuid.to_string()).ok(), Some(first.clone()));
        assert_eq!(uuid::Uuid::parse_str(&later).map(|uuid| uuid.to_string()).ok(), Some(later.clone()));
        assert!(first < later);
    }

    #[test]
    fn every_entry_is_someones_and_the_heavy_user_gets_one_in_a_hundred() {
        let shape = Shape { entries: 10_050, users: 100 };
        assert_eq!(shape.heavy_entries(), 100);
        assert_eq!(shape.typical_entries() + shape.heavy_entries(), shape.entries);
        assert_eq!(shape.heavy_user(), 101);
    }
}
