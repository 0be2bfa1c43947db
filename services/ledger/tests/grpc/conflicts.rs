//! A write the database aborts over a conflict with a concurrent transaction (SQLSTATE
//! 40001, what CockroachDB and YugabyteDB answer to contention they cannot order) is run
//! again by the service, and the RPC succeeds (docs/operations.md, "Conflicts and
//! retries"). PostgreSQL only, its sessions made `SERIALIZABLE` by default as those
//! engines run: there an UPDATE that waited for a row a concurrent transaction changed and
//! then committed fails with `could not serialize access due to concurrent update`.

use economy_kit::db::{Backend, Db, DbOptions};
use economy_testkit::{Service, eventually};

use crate::common::*;

/// Whether another session of the ledger's database waits for a lock.
async fn someone_waits_for_a_lock(db: &Db) -> bool {
    let waiting: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() \
         AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    waiting > 0
}

#[tokio::test]
async fn a_write_aborted_by_a_serialization_failure_is_retried_and_succeeds() {
    let mut app = spawn_app().await;
    let db = Db::connect(&app.database().url, &DbOptions::default()).await.unwrap();
    if db.backend() != Backend::Postgres {
        return;
    }
    sqlx::query(
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET default_transaction_isolation = %L', \
         current_database(), 'serializable'); END $$",
    )
    .execute(db.pool())
    .await
    .unwrap();
    // New sessions take the new default: restart the ledger on fresh connections.
    app.stack.stop(Service::Ledger).await;
    app.stack.restart(Service::Ledger).await;
    let mut admin = app.admin_with_catalog().await;
    // The balance row exists and its legs are known: the next credit is one statement.
    adjust(&mut admin, 7, "POINTS", 10).await.unwrap();
    adjust(&mut admin, 7, "POINTS", 10).await.unwrap();

    let mut blocker = db.pool().begin().await.unwrap();
    sqlx::query("UPDATE balances SET updated_at = updated_at + 1 WHERE account = 'user:7'")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let mut client = app.admin().await;
    let credit = tokio::spawn(async move { adjust(&mut client, 7, "POINTS", 1).await });
    eventually("the credit to wait for the balance row", || someone_waits_for_a_lock(&db)).await;
    blocker.commit().await.unwrap();

    let credited = credit.await.unwrap();
    assert!(credited.is_ok(), "the conflict was not retried: {credited:?}");
    assert_eq!(balance(&mut admin, 7, "POINTS").await, (21, 0));
    assert_consistent(&mut admin).await;
    db.close().await;
}
