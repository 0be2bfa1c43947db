//! The history look-ups are index seeks, not scans (docs/ledger.md, "Balances at an
//! instant", "Statements", "History filters"): the plans of the as-of, statement and
//! listing queries name their indexes on either backend, and the pages read them in the
//! page's order (no sort: a page costs O(page), not O(history)). On PostgreSQL sequential
//! scans, bitmap scans and sorts are turned off for the EXPLAIN, as a handful of rows
//! would rightly be scanned and sorted: the plan then shows that the query can walk the
//! index in order (a plan that cannot still shows its Sort).

use economy_kit::db::{Backend, DbOptions};
use economy_kit::testing::TestDatabase;
use economy_kit::time::system_clock;
use sqlx::{AnyConnection, Connection};

use super::history::{AS_OF_SQL, STATEMENT_SQL, matching_sql};
use super::{EntryFilter, LedgerStore, Page};
use crate::store::fixtures::user;

/// The plan of `sql` bound with `binds` (text and integers) as one text.
pub(super) async fn plan_of(
    conn: &mut AnyConnection,
    backend: Backend,
    sql: &str,
    binds: &[Bind<'_>],
) -> anyhow::Result<String> {
    let explain = match backend {
        Backend::Sqlite => format!("EXPLAIN QUERY PLAN {sql}"),
        Backend::Postgres => format!("EXPLAIN {sql}"),
    };
    let mut query = sqlx::query(&explain);
    for bind in binds {
        query = match bind {
            Bind::Text(text) => query.bind(*text),
            Bind::Owned(text) => query.bind(text.as_str()),
            Bind::Int(number) => query.bind(*number),
        };
    }
    let rows = query.fetch_all(&mut *conn).await?;
    let column = if backend == Backend::Sqlite { 3 } else { 0 };
    let lines: Vec<String> = rows.iter().map(|row| sqlx::Row::try_get(row, column)).collect::<Result<_, _>>()?;
    Ok(lines.join("\n"))
}

/// Whether a plan reads a whole table.
pub(super) fn scans(plan: &str) -> bool {
    plan.lines().any(|line| line.trim_start().starts_with("SCAN") || line.contains("Seq Scan"))
}

/// Whether a plan seeks an index and reads it in order (no scan, no sort).
fn seeks_without_sorting(plan: &str) -> bool {
    !scans(plan) && !plan.contains("TEMP B-TREE") && !plan.contains("Sort")
}

#[derive(Clone)]
pub(super) enum Bind<'a> {
    Text(&'a str),
    Owned(String),
    Int(i64),
}

async fn connection(url: &str, backend: Backend) -> anyhow::Result<AnyConnection> {
    sqlx::any::install_default_drivers();
    let mut conn = AnyConnection::connect(url).await?;
    if backend == Backend::Postgres {
        for setting in ["enable_seqscan", "enable_bitmapscan", "enable_sort", "enable_incremental_sort"] {
            sqlx::query(&format!("SET {setting} = off")).execute(&mut conn).await?;
        }
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

/// A store on a fresh database and a connection for EXPLAIN.
pub(super) async fn explainer() -> anyhow::Result<(TestDatabase, Backend, AnyConnection)> {
    let database = TestDatabase::new().await?;
    let store =
        LedgerStore::open(&database.url, &DbOptions::default(), &["SYSTEM_ISSUANCE".into()], system_clock()).await?;
    let backend = store.db.backend();
    let conn = connection(&database.url, backend).await?;
    Ok((database, backend, conn))
}

/// The plan of the listing query of `filter` on the first page and on a later one.
async fn listing_plans(
    conn: &mut AnyConnection,
    backend: Backend,
    filter: &EntryFilter,
) -> anyhow::Result<[String; 2]> {
    let mut plans = Vec::new();
    for before in [None, Some("0190a000-0000-7000-8000-000000000000".to_owned())] {
        let page = Page { before, limit: 50 };
        let (sql, params) = matching_sql(filter, &page)?;
        let binds = params_as_binds(filter, &page);
        assert_eq!(binds.len(), params.len(), "{sql}");
        plans.push(plan_of(conn, backend, &sql, &binds).await?);
    }
    Ok([plans.remove(0), plans.remove(0)])
}

/// The values [`matching_sql`] binds, in order (mirrors it: account or correlation
/// first, then business type, period, keyset and limit).
fn params_as_binds<'a>(filter: &'a EntryFilter, page: &'a Page) -> Vec<Bind<'a>> {
    let mut binds = Vec::new();
    let account = filter.account.as_ref().map(|account| account.key());
    if !filter.correlation_id.is_empty() || account.is_none() {
        binds.push(Bind::Text(&filter.correlation_id));
    }
    let account_and_asset = |binds: &mut Vec<Bind<'a>>| {
        binds.extend(filter.account.as_ref().map(|account| Bind::Owned(account.key())));
        binds.extend(filter.asset.as_deref().map(Bind::Text));
    };
    account_and_asset(&mut binds);
    if !filter.business_type.is_empty() {
        binds.push(Bind::Text(&filter.business_type));
    }
    binds.extend(filter.from.map(Bind::Int));
    binds.extend(filter.to.map(Bind::Int));
    if let Some(before) = &page.before {
        binds.push(Bind::Text(before));
        if filter.correlation_id.is_empty() && filter.asset.is_some() {
            account_and_asset(&mut binds);
        }
    }
    binds.push(Bind::Int(page.limit));
    binds
}

#[tokio::test]
async fn a_statement_page_walks_postings_by_balance_seq_in_order() -> anyhow::Result<()> {
    let (_database, backend, mut conn) = explainer().await?;
    let binds = [Bind::Text("user:2"), Bind::Text("POINTS"), Bind::Int(10), Bind::Int(90), Bind::Int(50)];
    let plan = plan_of(&mut conn, backend, STATEMENT_SQL, &binds).await?;
    assert!(plan.contains("postings_by_balance_seq"), "{plan}");
    assert!(seeks_without_sorting(&plan), "{plan}");
    Ok(())
}

#[tokio::test]
async fn every_listing_form_walks_its_index_in_the_page_order() -> anyhow::Result<()> {
    let (_database, backend, mut conn) = explainer().await?;
    let account = EntryFilter { account: Some(user(2)), ..EntryFilter::default() };
    let asset = EntryFilter { asset: Some("POINTS".into()), ..account.clone() };
    let typed = EntryFilter { business_type: "SHOP_PURCHASE".into(), ..account.clone() };
    let period = EntryFilter { from: Some(5), to: Some(9), ..account.clone() };
    let asset_period = EntryFilter { from: Some(5), to: Some(9), business_type: "TRANSFER".into(), ..asset.clone() };
    let correlation = EntryFilter { correlation_id: "order-1".into(), ..EntryFilter::default() };
    let correlation_on_account = EntryFilter { correlation_id: "order-1".into(), ..asset.clone() };
    let forms = [
        ("account", account, "postings_by_account_instant"),
        ("account and asset", asset, "postings_as_of"),
        ("account and business type", typed, "postings_by_account_instant"),
        ("account and period", period, "postings_by_account_instant"),
        ("asset, period and business type", asset_period, "postings_as_of"),
        ("correlation", correlation, "journal_entries_by_correlation"),
        ("correlation on an account", correlation_on_account, "journal_entries_by_correlation"),
    ];
    for (form, filter, index) in forms {
        for plan in listing_plans(&mut conn, backend, &filter).await? {
            assert!(plan.contains(index), "{form}: {plan}");
            assert!(seeks_without_sorting(&plan), "{form}: {plan}");
        }
    }
    Ok(())
}
