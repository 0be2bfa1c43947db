//! A Reconcile whose caller gives up — its deadline passed, or it cancelled the call —
//! stops its queries on the database (docs/operations.md, "Deadlines").

use std::time::Duration;

use economy_kit::db::{Backend, Db, DbOptions};
use economy_kit::identity::{Caller, roles};
use economy_kit::reasons;
use economy_proto::ledger::v1 as pb;
use economy_testkit::{Service, eventually, server_timed, test_stack};
use pb::ledger_service_client::LedgerServiceClient;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;

use crate::common::*;

/// Journal entries seeded (two postings each): enough for Reconcile to take seconds.
const SEEDED_ENTRIES: i64 = 150_000;

/// A ledger whose request timeout (600 s) stops nothing in these tests and whose jobs
/// stay idle, with users 2 and 3 holding POINTS and [`SEEDED_ENTRIES`] entries between
/// them written straight into the schema; the test's own connection to its database.
async fn big_ledger() -> (TestApp, Db) {
    let stack = test_stack(&[Service::Ledger])
        .configure(|config| {
            config.limits.request_timeout_secs = 600;
            // No job reads the ledger meanwhile.
            config.ledger.hold_expiry_interval_secs = 3600;
            config.ledger.incremental_reconcile_interval_secs = 3600;
            // One chunk reads every posting: a query that runs for seconds.
            config.ledger.reconcile_chunk_postings = 4 * SEEDED_ENTRIES;
        })
        .start()
        .await;
    let app = TestApp::from(stack);
    let mut admin = app.admin_with_catalog().await;
    adjust(&mut admin, 2, "POINTS", 10).await.unwrap();
    adjust(&mut admin, 3, "POINTS", 10).await.unwrap();
    let db = Db::connect(&app.database().url, &DbOptions { sqlite_busy_timeout_ms: 0, ..DbOptions::default() })
        .await
        .unwrap();
    let series = format!("WITH RECURSIVE s (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {SEEDED_ENTRIES})");
    let entries = format!(
        "{series} INSERT INTO journal_entries (id, idempotency_key, fingerprint, business_type, correlation_id, \
         memo, actor, created_at) SELECT 'seed-' || n, 'seed-' || n, '', 'seed', '', '', 'test', 0 FROM s"
    );
    let postings = format!(
        "{series} INSERT INTO postings (entry_id, seq, account, asset_code, bucket, amount, available_after, \
         frozen_after, balance_seq, created_at) \
         SELECT 'seed-' || n, 0, 'user:2', 'POINTS', 'available', 1, 0, 0, n, 0 FROM s \
         UNION ALL SELECT 'seed-' || n, 1, 'user:3', 'POINTS', 'available', -1, 0, 0, n, 0 FROM s"
    );
    for statement in [entries, postings, "CREATE TABLE probe (v BIGINT NOT NULL)".to_owned()] {
        sqlx::query(&statement).execute(&mut *db.writer().await.unwrap()).await.unwrap();
    }
    (app, db)
}

/// Whether a query of the ledger runs on its database: on SQLite a TRUNCATE checkpoint
/// after a write is refused while a reader holds a snapshot, on PostgreSQL
/// `pg_stat_activity` shows an active statement reading the postings.
async fn query_running(db: &Db) -> Result<bool, sqlx::Error> {
    match db.backend() {
        Backend::Sqlite => {
            let mut writer = db.writer().await?;
            sqlx::query("INSERT INTO probe (v) VALUES (1)").execute(&mut *writer).await?;
            let (busy, _, _): (i64, i64, i64) =
                sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)").fetch_one(&mut *writer).await?;
            Ok(busy == 1)
        }
        Backend::Postgres => {
            let active: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND state = 'active' \
                 AND pid <> pg_backend_pid() AND query LIKE '%FROM postings%'",
            )
            .fetch_one(db.pool())
            .await?;
            Ok(active > 0)
        }
    }
}

/// `economy_db_long_reads_stopped_total` of the database of `url` (0 before any): the
/// statements interrupted on SQLite, the cancels sent on PostgreSQL.
fn reads_stopped(url: &str) -> f64 {
    let base = url.split('?').next().unwrap_or(url);
    let label = base.rsplit('/').next().unwrap_or(base).split('.').next().unwrap_or_default();
    let rendered = economy_kit::metrics::recorder().unwrap().render();
    let series = format!("economy_db_long_reads_stopped_total{{database=\"{label}\"}} ");
    rendered.lines().find_map(|line| line.strip_prefix(&series)).map_or(0.0, |value| value.trim().parse().unwrap())
}

/// Waits until the ledger stopped a long read and no query of it runs any more.
async fn assert_stopped(app: &TestApp, db: &Db) {
    let url = app.database().url.clone();
    eventually("the reconcile's query to stop", || async {
        reads_stopped(&url) >= 1.0 && !query_running(db).await.unwrap_or(true)
    })
    .await;
}

#[tokio::test]
async fn a_reconcile_past_its_deadline_answers_deadline_exceeded_and_stops_its_query() {
    economy_kit::metrics::recorder().unwrap();
    let (app, db) = big_ledger().await;
    let (client, origin) = server_timed(&app.stack.url_of(Service::Ledger));
    let signer = app.key.signer(Caller::user(ADMIN, roles::ADMIN));
    let mut admin = LedgerServiceClient::with_origin(InterceptedService::new(client, signer), origin);
    let mut request = tonic::Request::new(pb::ReconcileRequest::default());
    request.set_timeout(Duration::from_millis(200));
    assert_error(admin.reconcile(request).await, Code::DeadlineExceeded, reasons::DEADLINE_EXCEEDED);
    assert_stopped(&app, &db).await;
}

#[tokio::test]
async fn a_reconcile_its_client_cancels_stops_its_query() {
    economy_kit::metrics::recorder().unwrap();
    let (app, db) = big_ledger().await;
    let mut admin = app.admin().await;
    let call = tokio::spawn(async move { admin.reconcile(pb::ReconcileRequest::default()).await });
    eventually("the reconcile's query to run", || async { query_running(&db).await.unwrap_or(false) }).await;
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());
    assert_stopped(&app, &db).await;
}
