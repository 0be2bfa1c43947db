//! Idempotency records on a fresh database (SQLite, or PostgreSQL when
//! `ECONOMY_TEST_POSTGRES_URL` is set): the database decides races, failed attempts may be
//! retried with the same business event, jobs time out and clean up.

#![allow(missing_docs, clippy::unwrap_used)]

use economy_gateway::config::IdempotencyConfig;
use economy_gateway::jobs::{clean_up, time_out_processing};
use economy_gateway::store::{Begin, IdempotencyStore, NewRecord, Resumed, StoredResponse};
use economy_kit::db::DbOptions;
use economy_kit::time::now_millis;
use economy_testkit::TestDatabase;
use tokio::task::JoinSet;

fn record<'a>(key: &'a str, fingerprint: &'a str, request_id: &'a str) -> NewRecord<'a> {
    NewRecord {
        user_id: 7,
        key,
        canonical_operation: "LEDGER_ADJUST_BALANCE",
        method: "/economy.ledger.v1.LedgerService/AdjustBalance",
        fingerprint,
        request_id,
        now: now_millis(),
        retention_ms: 60_000,
        lease_ms: 45_000,
    }
}

async fn open() -> (TestDatabase, IdempotencyStore) {
    let database = TestDatabase::new().await.unwrap();
    let store = IdempotencyStore::open(&database.url, &DbOptions::default()).await.unwrap();
    (database, store)
}

fn ok_response() -> StoredResponse {
    StoredResponse {
        code: 0,
        message: String::new(),
        body: Some(vec![1, 2, 3]),
        details: None,
        bytes: 3,
        truncated: false,
    }
}

#[tokio::test]
async fn first_wins_then_processing_conflict_and_replay() {
    let (_database, store) = open().await;
    let Begin::Started { business_event_id, .. } = store.begin(&record("k", "f1", "r1")).await.unwrap() else {
        panic!("first")
    };
    assert_eq!(store.begin(&record("k", "f1", "r2")).await.unwrap(), Begin::Processing { request_id: "r1".into() });
    assert_eq!(store.begin(&record("k", "f2", "r3")).await.unwrap(), Begin::Conflict { request_id: "r1".into() });
    assert!(store.complete(7, "k", "r1", ok_response(), now_millis()).await.unwrap());
    assert_eq!(
        store.begin(&record("k", "f1", "r4")).await.unwrap(),
        Begin::Replay { request_id: "r1".into(), business_event_id, response: ok_response() }
    );
}

#[tokio::test]
async fn failed_attempts_retry_with_the_same_business_event() {
    let (_database, store) = open().await;
    let Begin::Started { business_event_id, .. } = store.begin(&record("k", "f", "r1")).await.unwrap() else {
        panic!("first")
    };
    assert!(store.fail(7, "k", "r1", "Unavailable", now_millis()).await.unwrap());
    assert_eq!(
        store.begin(&record("k", "f", "r2")).await.unwrap(),
        Begin::Started { business_event_id, resumed: Some(Resumed::Failed) }
    );
    // The stale attempt can no longer write its outcome.
    assert!(!store.complete(7, "k", "r1", ok_response(), now_millis()).await.unwrap());
}

#[tokio::test]
async fn a_claim_past_its_lease_is_taken_over_with_its_business_event() {
    let (_database, store) = open().await;
    let Begin::Started { business_event_id, .. } =
        store.begin(&NewRecord { lease_ms: 0, ..record("k", "f", "r1") }).await.unwrap()
    else {
        panic!("first")
    };
    assert_eq!(
        store.begin(&record("k", "f", "r2")).await.unwrap(),
        Begin::Started { business_event_id, resumed: Some(Resumed::Abandoned) }
    );
    assert!(matches!(store.begin(&record("k", "f", "r3")).await.unwrap(), Begin::Processing { .. }), "a live lease");
    // The abandoned attempt can no longer write its outcome.
    assert!(!store.complete(7, "k", "r1", ok_response(), now_millis()).await.unwrap());
}

#[tokio::test]
async fn sixty_four_racers_start_exactly_once() {
    let (_database, store) = open().await;
    let mut racers = JoinSet::new();
    for index in 0..64 {
        let store = store.clone();
        racers.spawn(async move { store.begin(&record("race", "f", &format!("r{index}"))).await.unwrap() });
    }
    let mut started = 0;
    while let Some(outcome) = racers.join_next().await {
        match outcome.unwrap() {
            Begin::Started { .. } => started += 1,
            Begin::Processing { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(started, 1);
}

#[tokio::test]
async fn jobs_time_out_processing_and_delete_expired_records() {
    let (_database, store) = open().await;
    store.begin(&NewRecord { lease_ms: 0, ..record("stuck", "f", "r1") }).await.unwrap();
    store.begin(&record("live", "f", "r3")).await.unwrap();
    let expired = NewRecord { retention_ms: -1, ..record("old", "f", "r2") };
    store.begin(&expired).await.unwrap();
    let config = IdempotencyConfig { processing_timeout_secs: 0, ..IdempotencyConfig::default() };
    // A moment later than the records were written: no sleep, the jobs take "now".
    let later = now_millis() + 5;
    assert!(time_out_processing(&store, &config, later).await.unwrap() >= 1);
    assert_eq!(store.status_of(7, "stuck").await.unwrap(), Some(("failed".into(), Some("PROCESSING_TIMEOUT".into()))));
    assert_eq!(store.status_of(7, "live").await.unwrap(), Some(("processing".into(), None)), "a live lease stays");
    assert_eq!(clean_up(&store, &config, later).await.unwrap(), (1, 2));
    assert_eq!(store.status_of(7, "old").await.unwrap(), None);
}
