//! The caller's deadline, end to end (docs/operations.md, "Deadlines"): a read through
//! the gateway whose deadline passes is answered `DEADLINE_EXCEEDED`, and the upstream's
//! query stops, as the gateway gives the upstream only what is left of the deadline.

use std::time::Duration;

use economy_kit::db::{Backend, Db, DbOptions};
use economy_kit::identity::roles;
use economy_kit::reasons;
use economy_proto::ledger::v1 as pb;
use economy_testkit::{server_timed, test_stack};
use pb::ledger_service_client::LedgerServiceClient;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;

use crate::common::*;

/// Journal entries seeded in the ledger (two postings each): Reconcile takes seconds.
const SEEDED_ENTRIES: i64 = 150_000;

/// Writes [`SEEDED_ENTRIES`] entries between users `USER` and `USER + 1` straight into the
/// ledger's schema (`db`), and a table for [`query_running`]'s probes.
async fn seed(db: &Db) {
    let series = format!("WITH RECURSIVE s (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {SEEDED_ENTRIES})");
    let entries = format!(
        "{series} INSERT INTO journal_entries (id, idempotency_key, fingerprint, business_type, correlation_id, \
         memo, actor, created_at) SELECT 'seed-' || n, 'seed-' || n, '', 'seed', '', '', 'test', 0 FROM s"
    );
    let postings = format!(
        "{series} INSERT INTO postings (entry_id, seq, account, asset_code, bucket, amount, available_after, \
         frozen_after, balance_seq, created_at) \
         SELECT 'seed-' || n, 0, 'user:{USER}', 'POINTS', 'available', 1, 0, 0, n, 0 FROM s \
         UNION ALL SELECT 'seed-' || n, 1, 'user:{}', 'POINTS', 'available', -1, 0, 0, n, 0 FROM s",
        USER + 1
    );
    for statement in [entries, postings, "CREATE TABLE probe (v BIGINT NOT NULL)".to_owned()] {
        sqlx::query(&statement).execute(&mut *db.writer().await.unwrap()).await.unwrap();
    }
}

/// Whether a query runs on the ledger's database: on SQLite a TRUNCATE checkpoint after a
/// write is refused while a reader holds a snapshot, on PostgreSQL `pg_stat_activity`
/// shows an active statement reading the postings.
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

/// `economy_db_long_reads_stopped_total` of the database of `url` (0 before any).
fn reads_stopped(url: &str) -> f64 {
    let base = url.split('?').next().unwrap_or(url);
    let label = base.rsplit('/').next().unwrap_or(base).split('.').next().unwrap_or_default();
    let rendered = economy_kit::metrics::recorder().unwrap().render();
    let series = format!("economy_db_long_reads_stopped_total{{database=\"{label}\"}} ");
    rendered.lines().find_map(|line| line.strip_prefix(&series)).map_or(0.0, |value| value.trim().parse().unwrap())
}

#[tokio::test]
async fn a_read_past_the_callers_deadline_is_answered_deadline_exceeded_and_its_upstream_query_stops() {
    economy_kit::metrics::recorder().unwrap();
    let stack = Stack(
        test_stack(&[Service::Ledger, Service::Gateway])
            .configure(|config| {
                config.limits.request_timeout_secs = 600;
                // No job of the ledger reads it meanwhile.
                config.ledger.hold_expiry_interval_secs = 3600;
                config.ledger.incremental_reconcile_interval_secs = 3600;
                // One chunk of the whole check reads every posting: a query of seconds.
                config.ledger.reconcile_chunk_postings = 1_000_000;
            })
            .start()
            .await,
    );
    let mut admin = stack.admin_with_points().await;
    for user in [USER, USER + 1] {
        admin.adjust_balance(keyed(adjust(user, 10), &new_key())).await.unwrap();
    }
    let ledger_url = stack.database(Service::Ledger).url.clone();
    let ledger =
        Db::connect(&ledger_url, &DbOptions { sqlite_busy_timeout_ms: 0, ..DbOptions::default() }).await.unwrap();
    seed(&ledger).await;

    let (client, origin) = server_timed(&stack.gateway_url());
    let bearer = Bearer::user(ADMIN, roles::ADMIN);
    let mut admin = LedgerServiceClient::with_origin(InterceptedService::new(client, bearer), origin);
    let mut request = tonic::Request::new(pb::ReconcileRequest::default());
    request.set_timeout(Duration::from_millis(200));
    assert_error(admin.reconcile(request).await, Code::DeadlineExceeded, reasons::DEADLINE_EXCEEDED);

    eventually("the ledger's query to stop", || async {
        reads_stopped(&ledger_url) >= 1.0 && !query_running(&ledger).await.unwrap_or(true)
    })
    .await;
}
