//! ListItemEvents pages in O(page) (docs/items.md, "Reading"): the plans of
//! [`events_sql`] and [`correlated_events_sql`] walk their indexes in the page's order,
//! without a scan or a sort, on either backend. On PostgreSQL sequential scans, bitmap scans and sorts are
//! turned off for the EXPLAIN (a handful of rows would rightly be scanned and sorted): a
//! plan that cannot walk the index in order still shows its Sort.

use economy_kit::db::{Backend, DbOptions};
use economy_kit::testing::TestDatabase;
use sqlx::{AnyConnection, Connection, Row};

use super::{correlated_events_sql, events_sql, items_sql};
use crate::store::ItemStore;

enum Bind {
    Text(&'static str),
    Int(i64),
}

/// The plan of `sql` bound with `binds`, as one text.
async fn plan_of(conn: &mut AnyConnection, backend: Backend, sql: &str, binds: &[Bind]) -> anyhow::Result<String> {
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
    let column = if backend == Backend::Sqlite { 3 } else { 0 };
    let rows = query.fetch_all(&mut *conn).await?;
    let lines: Vec<String> = rows.iter().map(|row| row.try_get(column)).collect::<Result<_, _>>()?;
    Ok(lines.join("\n"))
}

/// The binds of [`items_sql`]: owner 2, five statuses, the id bound if any, the limit.
fn owner_page_binds(after: Option<&'static str>) -> Vec<Bind> {
    let mut binds = vec![Bind::Int(2)];
    binds.extend(["available", "locked", "x", "x", "x"].map(Bind::Text));
    binds.extend(after.map(Bind::Text));
    binds.push(Bind::Int(50));
    binds
}

#[tokio::test]
async fn event_pages_walk_their_index_in_order() -> anyhow::Result<()> {
    let database = TestDatabase::new().await?;
    let store = ItemStore::open(&database.url, &DbOptions::default()).await?;
    let backend = store.db.backend();
    sqlx::any::install_default_drivers();
    let mut conn = AnyConnection::connect(&database.url).await?;
    if backend == Backend::Postgres {
        for setting in ["enable_seqscan", "enable_bitmapscan", "enable_sort"] {
            sqlx::query(&format!("SET {setting} = off")).execute(&mut conn).await?;
        }
    }
    let item = [Bind::Text("0190a000-0000-7000-8000-000000000000"), Bind::Int(3), Bind::Int(50)];
    let correlation = [Bind::Text("order-1"), Bind::Text(""), Bind::Int(0), Bind::Int(4), Bind::Int(50)];
    let first_items = owner_page_binds(None);
    let deep_items = owner_page_binds(Some("0190a000-0000-7000-8000-000000000000"));
    for (sql, binds, index) in [
        (events_sql(), &item[..], "item_instance_id"),
        (correlated_events_sql(), &correlation[..], "item_events_by_correlation"),
        (items_sql(false), &first_items[..], "item_instances_by_owner"),
        (items_sql(true), &deep_items[..], "item_instances_by_owner"),
    ] {
        let plan = plan_of(&mut conn, backend, &sql, binds).await?;
        let scans = plan.lines().any(|line| line.trim_start().starts_with("SCAN") || line.contains("Seq Scan"));
        assert!(!scans && !plan.contains("TEMP B-TREE") && !plan.contains("Sort"), "{plan}");
        assert!(plan.contains(index), "{plan}");
    }
    // A deep page seeks its id bound in the index rather than filtering newer items.
    let deep = plan_of(&mut conn, backend, &items_sql(true), &deep_items).await?;
    assert!(deep.contains("id<?") || deep.contains("(id < "), "{deep}");
    Ok(())
}
