//! History at scale (BENCHMARKS.md, "History at scale"): the first page of an account
//! with 200,000 postings against a typical one's, with the listing queries before issue
//! 29 (a sort of all the account's postings by entry id) and now (an index walk in the
//! page's order, docs/ledger.md, "History filters"). Ignored: a measurement, not a check.
//! `cargo test --release -p economy-ledger --lib history_at_scale -- --ignored --nocapture`
//! (and with `ECONOMY_TEST_POSTGRES_URL` for PostgreSQL).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use economy_kit::db::DbOptions;
use economy_kit::testing::TestDatabase;
use economy_kit::time::system_clock;

use super::StatementQuery;
use crate::domain::catalog::{Asset, AssetKind};
use crate::domain::ids::{AccountId, AssetCode};
use crate::store::fixtures::user;
use crate::store::{EntryFilter, LedgerStore, Page};

/// Entries written: each moves 1 of POINTS (even) or GEMS (odd) from one of 1,000 users
/// (`user:2`..) to `user:1`, three entries a millisecond.
const ENTRIES: i64 = 200_000;
const PAGE: i64 = 50;
const RUNS: usize = 200;

/// Rows of `ENTRIES` entries straight into the schema (both backends' SQL).
const SEED: [&str; 3] = [
    "INSERT INTO accounts (account, user_id, created_at) \
     WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1001) \
     SELECT 'user:' || i, i, 0 FROM n",
    "INSERT INTO journal_entries (id, idempotency_key, fingerprint, business_type, correlation_id, memo, actor, \
     created_at) \
     WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) \
     SELECT 'e' || (1000000000 + i), 'k' || i, '', 'TRANSFER', '', '', 'bench', 1700000000000 + i / 3 FROM n",
    "INSERT INTO postings (entry_id, seq, account, asset_code, bucket, amount, hold_id, available_after, \
     frozen_after, balance_seq, created_at) \
     WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) \
     SELECT 'e' || (1000000000 + i), side, CASE WHEN side = 0 THEN 'user:' || (2 + i % 1000) ELSE 'user:1' END, \
     CASE WHEN i % 2 = 0 THEN 'POINTS' ELSE 'GEMS' END, 'available', CASE WHEN side = 0 THEN -1 ELSE 1 END, NULL, \
     0, 0, CASE WHEN side = 0 THEN i / 1000 + 1 ELSE (i + 1) / 2 END, 1700000000000 + i / 3 \
     FROM n CROSS JOIN (SELECT 0 AS side UNION ALL SELECT 1) AS sides",
];

/// The listing queries before issue 29: every asset (`$1` account, `$2` limit) and one
/// (`$1`, `$2` asset, `$3` limit).
const BEFORE_EVERY_ASSET: &str =
    "SELECT DISTINCT p.entry_id FROM postings AS p WHERE p.account = $1 ORDER BY p.entry_id DESC LIMIT $2";
const BEFORE_ONE_ASSET: &str = "SELECT DISTINCT p.entry_id FROM postings AS p \
     WHERE p.account = $1 AND p.asset_code = $2 ORDER BY p.entry_id DESC LIMIT $3";

async fn seeded_store() -> anyhow::Result<(TestDatabase, LedgerStore)> {
    let database = TestDatabase::new().await?;
    let store =
        LedgerStore::open(&database.url, &DbOptions::default(), &["SYSTEM_ISSUANCE".into()], system_clock()).await?;
    for code in ["POINTS", "GEMS"] {
        let asset = Asset {
            code: AssetCode::parse(code).expect("asset code"),
            display_name: code.into(),
            kind: AssetKind::Currency,
            metadata: BTreeMap::new(),
            created_at: 0,
        };
        store.define_asset(&asset).await?;
    }
    for sql in SEED {
        sqlx::query(sql).bind(ENTRIES).execute(store.db.pool()).await?;
    }
    for analyze in ["ANALYZE"] {
        sqlx::query(analyze).execute(store.db.pool()).await?;
    }
    Ok((database, store))
}

/// `(p50, p99)` of `RUNS` runs of `read` (after a few to warm up).
async fn percentiles<F, Fut>(mut read: F) -> anyhow::Result<(Duration, Duration)>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<usize>>,
{
    for _ in 0..10 {
        read().await?;
    }
    let mut took = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let started = Instant::now();
        let read_entries = read().await?;
        took.push(started.elapsed());
        assert!(read_entries > 0, "a page");
    }
    took.sort();
    Ok((took[RUNS / 2], took[RUNS * 99 / 100]))
}

/// The first page with a query from before issue 29, with its entries.
async fn first_page_before(store: &LedgerStore, account: &AccountId, asset: Option<&str>) -> anyhow::Result<usize> {
    let query = match asset {
        None => sqlx::query_as(BEFORE_EVERY_ASSET).bind(account.key()),
        Some(asset) => sqlx::query_as(BEFORE_ONE_ASSET).bind(account.key()).bind(asset.to_owned()),
    };
    let ids: Vec<(String,)> = query.bind(PAGE).fetch_all(store.db.pool()).await?;
    let ids: Vec<String> = ids.into_iter().map(|(id,)| id).collect();
    Ok(store.entries(&ids).await?.len())
}

fn millis(took: Duration) -> String {
    format!("{:.2}", took.as_secs_f64() * 1000.0)
}

#[tokio::test]
#[ignore = "a measurement: run with --release -- --ignored --nocapture"]
async fn history_at_scale() -> anyhow::Result<()> {
    let (_database, store) = seeded_store().await?;
    let backend = format!("{:?}", store.db.backend());
    println!("| backend | account (postings) | form | before p50 / p99 ms | now p50 / p99 ms |");
    println!("|---|---|---|---|---|");
    for (account, postings) in [(user(1), ENTRIES), (user(2), ENTRIES / 1000)] {
        for asset in [None, Some("POINTS")] {
            let before = percentiles(|| first_page_before(&store, &account, asset)).await?;
            let filter = EntryFilter {
                account: Some(account.clone()),
                asset: asset.map(str::to_owned),
                ..EntryFilter::default()
            };
            let page = Page { before: None, limit: PAGE };
            let now = percentiles(|| async { Ok(store.entries_matching(&filter, &page).await?.len()) }).await?;
            let form = asset.map_or("every asset".to_owned(), |asset| format!("{asset} only"));
            let (key, before, now) = (account.key(), before, now);
            println!(
                "| {backend} | {key} ({postings}) | {form} | {} / {} | {} / {} |",
                millis(before.0),
                millis(before.1),
                millis(now.0),
                millis(now.1)
            );
        }
    }
    // A page deep in the heavy account's history, and a statement's first page.
    let deep = Page { before: Some(format!("e{}", 1_000_000_000 + ENTRIES / 2)), limit: PAGE };
    let filter = EntryFilter { account: Some(user(1)), ..EntryFilter::default() };
    let (p50, p99) = percentiles(|| async { Ok(store.entries_matching(&filter, &deep).await?.len()) }).await?;
    println!(
        "| {backend} | user:1 ({ENTRIES}) | every asset, a page halfway back | – | {} / {} |",
        millis(p50),
        millis(p99)
    );
    let statement =
        StatementQuery { account: user(1), asset: "POINTS".into(), from: 0, to: i64::MAX, after_seq: 0, limit: PAGE };
    let (p50, p99) = percentiles(|| async { Ok(store.statement(&statement).await?.entries.len()) }).await?;
    println!("| {backend} | user:1 ({ENTRIES}) | statement, POINTS | – | {} / {} |", millis(p50), millis(p99));
    Ok(())
}
