//! The history look-ups are index seeks, not scans (docs/ledger.md, "Balances at an
//! instant", "History filters"): the plans of the as-of and correlation queries name
//! their indexes on either backend. On PostgreSQL sequential scans are turned off for the
//! EXPLAIN, as a handful of rows would rightly be scanned: the plan then shows that the
//! query can seek the index (rather than only filter rows).

use economy_kit::db::{Backend, DbOptions};
use economy_kit::testing::TestDatabase;
use economy_kit::time::system_clock;
use sqlx::{AnyConnection, Connection};

use super::history::{AS_OF_SQL, matching_sql};
use super::{EntryFilter, LedgerStore, Page};
use crate::store::fixtures::user;

/// The plan of `sql` bound with `binds` (text and integers) as one text.
async fn plan_of(conn: &mut AnyConnection, backend: Backend, sql: &str, binds: &[Bind<'_>]) -> anyhow::Result<String> {
    let explain = match backend {
        Backend::Sqlite => format!("EXPLAIN QUERY PLAN {sql}"),
        Backend::Postgres => format!("EXPLAIN {sql}"),
    };
    let mut query = sqlx::query(&explain);
    for bind in binds {
        query = match bind {
            Bind::Text(text) => query.bind(*text),
            Bind::Int(number) => query.bind(*number),
        };
    }
    let rows = query.fetch_all(&mut *conn).await?;
    let column = if backend == Backend::Sqlite { 3 } else { 0 };
    let lines: Vec<String> = rows.iter().map(|row| sqlx::Row::try_get(row, column)).collect::<Result<_, _>>()?;
    Ok(lines.join("\n"))
}

/// Whether a plan reads a whole table.
fn scans(plan: &str) -> bool {
    plan.lines().any(|line| line.trim_start().starts_with("SCAN") || line.contains("Seq Scan"))
}

/// Whether a plan seeks an index and reads it in order (no scan, no sort).
fn seeks_without_sorting(plan: &str) -> bool {
    !scans(plan) && !plan.contains("TEMP B-TREE") && !plan.contains("Sort")
}

enum Bind<'a> {
    Text(&'a str),
    Int(i64),
}

async fn connection(url: &str, backend: Backend) -> anyhow::Result<AnyConnection> {
    sqlx::any::install_default_drivers();
    let mut conn = AnyConnection::connect(url).await?;
    if backend == Backend::Postgres {
        sqlx::query("SET enable_seqscan = off").execute(&mut conn).await?;
    }
    Ok(conn)
}

#[tokio::test]
async fn the_as_of_look_up_seeks_postings_as_of() -> anyhow::Result<()> {
    let database = TestDatabase::new().await?;
    let store =
        LedgerStore::open(&database.url, &DbOptions::default(), &["SYSTEM_ISSUANCE".into()], system_clock()).await?;
    let backend = store.db.backend();
    let mut conn = connection(&database.url, backend).await?;
    let binds = [Bind::Text("user:2"), Bind::Text("POINTS"), Bind::Int(1_000)];
    let plan = plan_of(&mut conn, backend, AS_OF_SQL, &binds).await?;
    assert!(plan.contains("postings_as_of"), "{plan}");
    assert!(seeks_without_sorting(&plan), "{plan}");
    Ok(())
}

#[tokio::test]
async fn a_correlation_listing_seeks_journal_entries_by_correlation() -> anyhow::Result<()> {
    let database = TestDatabase::new().await?;
    let store =
        LedgerStore::open(&database.url, &DbOptions::default(), &["SYSTEM_ISSUANCE".into()], system_clock()).await?;
    let backend = store.db.backend();
    let mut conn = connection(&database.url, backend).await?;
    let filter = EntryFilter { correlation_id: "order-1".into(), ..EntryFilter::default() };
    let page = Page { before: None, limit: 50 };
    let (sql, _) = matching_sql(&filter, &page)?;
    let plan = plan_of(&mut conn, backend, &sql, &[Bind::Text("order-1"), Bind::Int(50)]).await?;
    assert!(plan.contains("journal_entries_by_correlation"), "{plan}");
    assert!(!scans(&plan), "{plan}");

    let filter = EntryFilter {
        account: Some(user(2)),
        asset: Some("POINTS".into()),
        from: Some(5),
        to: Some(9),
        ..EntryFilter::default()
    };
    let (sql, _) = matching_sql(&filter, &page)?;
    let binds = [Bind::Text("user:2"), Bind::Text("POINTS"), Bind::Int(5), Bind::Int(9), Bind::Int(50)];
    let plan = plan_of(&mut conn, backend, &sql, &binds).await?;
    assert!(plan.contains("postings_as_of") || plan.contains("postings_by_account"), "{plan}");
    assert!(!scans(&plan), "{plan}");
    Ok(())
}
