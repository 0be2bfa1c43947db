//! The idempotency jobs on a running gateway's database: a request stuck in `processing`
//! times out and its key can be retried; expired records are deleted and their keys freed.

use std::sync::Arc;
use std::time::Duration;

use economy_gateway::config::{GatewayConfig, IdempotencyConfig};
use economy_gateway::jobs::{clean_up, time_out_processing};
use economy_gateway::store::IdempotencyStore;
use economy_kit::time::{Clock as _, ManualClock, SharedClock, now_millis};
use tonic::Code;

use crate::common::*;
use crate::shop::{EXPORT, held_export, number, shop_stack, text};

async fn age(store: &IdempotencyStore, key: &str, column: &str, by_ms: i64) {
    let sql =
        format!("UPDATE idempotency_records SET {column} = {column} - $1 WHERE user_id = $2 AND idempotency_key = $3");
    let updated = sqlx::query(&sql).bind(by_ms).bind(USER).bind(key).execute(store.db().pool()).await.unwrap();
    assert_eq!(updated.rows_affected(), 1);
}

#[tokio::test]
async fn a_stuck_request_times_out_and_its_key_can_be_retried() {
    let stack = Arc::new(shop_stack(|_, _| {}).await);
    let store = stack.store().await;
    let key = new_key();
    let (release, stuck) = held_export(&stack, &key).await;
    assert_eq!(store.status_of(USER, &key).await.unwrap(), Some(("processing".into(), None)));

    let busy = stack.call("Export", EXPORT, Some(&key)).await;
    assert_error(busy, Code::Aborted, "REQUEST_PROCESSING");
    let config = IdempotencyConfig::default();
    assert_eq!(time_out_processing(&store, &config, now_millis()).await.unwrap(), 0, "not old enough yet");

    age(&store, &key, "updated_at", 31 * 60 * 1000).await;
    assert_eq!(time_out_processing(&store, &config, now_millis()).await.unwrap(), 0, "its lease is still live");
    age(&store, &key, "lease_expires_at", 3600 * 1000).await;
    assert_eq!(time_out_processing(&store, &config, now_millis()).await.unwrap(), 1);
    assert_eq!(store.status_of(USER, &key).await.unwrap(), Some(("failed".into(), Some("PROCESSING_TIMEOUT".into()))));

    let retry = stack.call("Export", EXPORT, Some(&key)).await.unwrap();
    assert_eq!(meta(retry.metadata(), "idempotent-replayed"), None);
    let retried = stack.decode("Export", retry.get_ref());
    assert_eq!(number(&retried, "attempt"), 2);

    // The stuck attempt finishes late with the same business event, but cannot overwrite
    // the retry's stored outcome.
    release.send(()).unwrap();
    let late = stuck.await.unwrap().unwrap();
    let late = stack.decode("Export", late.get_ref());
    assert_eq!((number(&late, "attempt"), text(&late, "event")), (1, text(&retried, "event")));
    let replay = stack.call("Export", EXPORT, Some(&key)).await.unwrap();
    assert_eq!(replay.get_ref(), retry.get_ref());
    assert_eq!(stack.shop.calls(), 2);
}

#[tokio::test]
async fn expired_records_are_deleted_and_their_keys_freed() {
    let stack = shop_stack(|_, _| {}).await;
    let store = stack.store().await;
    let (old, kept) = (new_key(), new_key());
    stack.call("Export", EXPORT, Some(&old)).await.unwrap();
    stack.call("Export", EXPORT, Some(&kept)).await.unwrap();

    age(&store, &old, "expires_at", 8 * 24 * 3600 * 1000).await;
    // The gateway's own cleanup job (first run at start-up) may win the race under load.
    let (deleted, remaining) = clean_up(&store, &IdempotencyConfig::default(), now_millis()).await.unwrap();
    assert!(deleted <= 1 && remaining == 1, "({deleted}, {remaining})");
    assert_eq!(store.status_of(USER, &old).await.unwrap(), None);
    assert_eq!(store.status_of(USER, &kept).await.unwrap(), Some(("completed".into(), None)));

    // The freed key takes a new request (another body is no conflict any more).
    let reused = stack.call("Export", r#"{"size":"2"}"#, Some(&old)).await.unwrap();
    assert_eq!(meta(reused.metadata(), "idempotent-replayed"), None);
    assert_eq!(stack.shop.calls(), 3);
}

#[tokio::test]
async fn the_gateway_runs_the_jobs_on_its_own() {
    let clock = Arc::new(ManualClock::default());
    let gateway_clock: SharedClock = clock.clone();
    let stack = Arc::new(
        shop_stack(|config, _| {
            config.idempotency.processing_timeout_secs = 1;
            config.idempotency.timeout_job_interval_secs = 1;
            config.clock = gateway_clock;
        })
        .await,
    );
    let store = stack.store().await;
    let (done, stuck_key) = (new_key(), new_key());
    stack.call("Export", EXPORT, Some(&done)).await.unwrap();
    let (release, _stuck) = held_export(&stack, &stuck_key).await;
    age(&store, &done, "expires_at", 8 * 24 * 3600 * 1000).await;
    // As if its gateway had died an hour ago: past its lease and the processing timeout.
    for column in ["lease_expires_at", "updated_at"] {
        age(&store, &stuck_key, column, 3600 * 1000).await;
    }
    eventually("the timeout job", || async {
        store.status_of(USER, &stuck_key).await.unwrap() == Some(("failed".into(), Some("PROCESSING_TIMEOUT".into())))
    })
    .await;
    // The cleanup job runs at its scheduled time (03:00), not before.
    tokio::time::sleep(economy_kit::jobs::TICK * 2).await;
    assert!(store.status_of(USER, &done).await.unwrap().is_some(), "no cleanup before 03:00");
    let cleanup = GatewayConfig::default().schedules().unwrap().cleanup;
    let three = cleanup.next_after(clock.now_millis()).unwrap();
    clock.advance(Duration::from_millis(u64::try_from(three - clock.now_millis() + 1_000).unwrap()));
    eventually("the cleanup job", || async { store.status_of(USER, &done).await.unwrap().is_none() }).await;
    drop(release);
}
