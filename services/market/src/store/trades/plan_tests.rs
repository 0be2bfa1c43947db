//! A user's trades page in O(page) (docs/market.md, "Purchases"): the plans of
//! [`trades_of_sql`] walk `trades_by_buyer` and `trades_by_seller` in trade id order,
//! without a scan or a sort, on either backend. On PostgreSQL
//! sequential scans, bitmap scans and sorts are turned off for the EXPLAIN (a handful of
//! rows would rightly be scanned and sorted): a plan that cannot walk the indexes in
//! order still shows its Sort.

use economy_kit::db::{Backend, DbOptions};
use economy_kit::testing::TestDatabase;
use sqlx::{AnyConnection, Connection, Row};

use super::{Side, trades_of_sql};
use crate::store::MarketStore;

/// The plan of `sql` for user 7, 50 rows, below a trade id, as one text.
async fn plan_of(conn: &mut AnyConnection, backend: Backend, sql: &str, below: bool) -> anyhow::Result<String> {
    let explain = match backend {
        Backend::Sqlite => format!("EXPLAIN QUERY PLAN {sql}"),
        Backend::Postgres => format!("EXPLAIN {sql}"),
    };
    let mut query = sqlx::query(&explain).bind(7_i64).bind(50_i64);
    if below {
        query = query.bind("0190a000-0000-7000-8000-000000000000");
    }
    let column = if backend == Backend::Sqlite { 3 } else { 0 };
    let rows = query.fetch_all(&mut *conn).await?;
    let lines: Vec<String> = rows.iter().map(|row| row.try_get(column)).collect::<Result<_, _>>()?;
    Ok(lines.join("\n"))
}

#[tokio::test]
async fn a_users_trades_are_two_index_walks_without_sorting() -> anyhow::Result<()> {
    let database = TestDatabase::new().await?;
    let store = MarketStore::open(&database.url, &DbOptions::default()).await?;
    let backend = store.db.backend();
    sqlx::any::install_default_drivers();
    let mut conn = AnyConnection::connect(&database.url).await?;
    if backend == Backend::Postgres {
        for setting in ["enable_seqscan", "enable_bitmapscan", "enable_sort"] {
            sqlx::query(&format!("SET {setting} = off")).execute(&mut conn).await?;
        }
    }
    let sides = [(Side::Bought, "trades_by_buyer"), (Side::Sold, "trades_by_seller")];
    for ((side, index), below) in sides.into_iter().flat_map(|side| [(side, false), (side, true)]) {
        let plan = plan_of(&mut conn, backend, &trades_of_sql(side, below), below).await?;
        assert!(plan.contains(index), "{plan}");
        let scans = plan.lines().any(|line| line.trim_start().starts_with("SCAN") || line.contains("Seq Scan"));
        assert!(!scans && !plan.contains("TEMP B-TREE") && !plan.contains("Sort"), "{plan}");
    }
    Ok(())
}
