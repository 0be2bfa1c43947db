//! A claim is a lease: a `processing` record whose owner is gone (killed, or its outcome
//! never written) is taken over by a retry once its lease expires, exactly once, and the
//! retry forwards the same business event. Operators read and release records; a
//! shutdown drains writes in flight and records their outcomes.

use std::sync::Arc;

use economy_gateway::store::IdempotencyStore;
use economy_kit::identity::roles;
use economy_proto::gateway::v1 as gw;
use gw::operations_service_client::OperationsServiceClient;
use tonic::Code;

use crate::common::*;
use crate::shop::{EXPORT, held_export, number, shop_stack, text};

/// Moves the lease of `(USER, key)` into the past: its owner is provably gone.
async fn expire_lease(store: &IdempotencyStore, key: &str) {
    let updated = sqlx::query(
        "UPDATE idempotency_records SET lease_expires_at = lease_expires_at - 3600000 \
         WHERE user_id = $1 AND idempotency_key = $2",
    )
    .bind(USER)
    .bind(key)
    .execute(store.db().pool())
    .await
    .unwrap();
    assert_eq!(updated.rows_affected(), 1);
}

#[tokio::test]
async fn a_retry_takes_over_an_expired_lease_and_forwards_the_same_event() {
    let stack = Arc::new(shop_stack(|_, _| {}).await);
    let store = stack.store().await;
    let key = new_key();
    let (release, stuck) = held_export(&stack, &key).await;
    let record = store.get(USER, &key).await.unwrap().unwrap();
    assert_eq!(record.status, "processing");
    assert!(record.lease_expires_at > record.created_at, "the claim carries a lease");

    let busy = stack.call("Export", EXPORT, Some(&key)).await;
    assert_error(busy, Code::Aborted, "REQUEST_PROCESSING");

    let now = || i64::try_from(std::time::UNIX_EPOCH.elapsed().unwrap().as_millis()).unwrap();
    assert_eq!(store.leases_expired(now()).await.unwrap(), 0, "a live lease is not counted");
    expire_lease(&store, &key).await;
    assert_eq!(store.leases_expired(now()).await.unwrap(), 1, "economy_gateway_idempotency_leases_expired");
    let retry = stack.call("Export", EXPORT, Some(&key)).await.unwrap();
    assert_eq!(store.leases_expired(now()).await.unwrap(), 0, "taken over");
    assert_eq!(meta(retry.metadata(), "idempotent-replayed"), None, "forwarded again");
    let retried = stack.decode("Export", retry.get_ref());
    assert_eq!(number(&retried, "attempt"), 2);
    assert_eq!(text(&retried, "event"), record.business_event_id, "the same business event");
    assert_eq!(store.get(USER, &key).await.unwrap().unwrap().status, "completed");

    // The first owner finishes late; its outcome cannot overwrite the retry's.
    release.send(()).unwrap();
    stuck.await.unwrap().unwrap();
    let replay = stack.call("Export", EXPORT, Some(&key)).await.unwrap();
    assert_eq!(meta(replay.metadata(), "idempotent-replayed").as_deref(), Some("true"));
    assert_eq!(replay.get_ref(), retry.get_ref());

    // A different request under the key is still a conflict.
    let other = stack.call("Export", r#"{"size":"2"}"#, Some(&key)).await;
    assert_error(other, Code::AlreadyExists, "IDEMPOTENCY_KEY_CONFLICT");
    assert_eq!(stack.shop.calls(), 2);
}

#[tokio::test]
async fn of_concurrent_retries_of_an_expired_lease_exactly_one_takes_it_over() {
    let stack = Arc::new(shop_stack(|_, _| {}).await);
    let store = stack.store().await;
    let key = new_key();
    let (release, stuck) = held_export(&stack, &key).await;
    expire_lease(&store, &key).await;
    // The winner's forward is held too, so the others meet a live lease.
    let hold = stack.shop.hold_next();
    let retries: Vec<_> = (0..8)
        .map(|_| {
            let (stack, key) = (stack.clone(), key.clone());
            tokio::spawn(async move { stack.call("Export", EXPORT, Some(&key)).await })
        })
        .collect();
    eventually("one retry to reach the upstream", || async { stack.shop.calls() == 2 }).await;
    hold.send(()).unwrap();
    let (mut forwarded, mut refused) = (0, 0);
    for retry in retries {
        match retry.await.unwrap() {
            Ok(response) if meta(response.metadata(), "idempotent-replayed").is_none() => forwarded += 1,
            Ok(_) => {}
            Err(status) => {
                assert_eq!(economy_kit::error::reason(&status).as_deref(), Some("REQUEST_PROCESSING"), "{status:?}");
                refused += 1;
            }
        }
    }
    assert_eq!(forwarded, 1, "exactly one retry took the record over ({refused} refused)");
    release.send(()).unwrap();
    stuck.await.unwrap().unwrap();
    assert_eq!(stack.shop.calls(), 2);
}

#[tokio::test]
async fn an_operator_reads_and_releases_a_stuck_record_with_an_audit_record() {
    let stack = Arc::new(shop_stack(|_, _| {}).await);
    let key = new_key();
    let (release, stuck) = held_export(&stack, &key).await;
    let mut operations =
        OperationsServiceClient::with_interceptor(stack.channel.clone(), Bearer::new(&bearer(ADMIN, roles::ADMIN)));

    let shown = operations
        .get_idempotency_record(gw::GetIdempotencyRecordRequest {
            user_id: USER,
            idempotency_key: format!("idem_{key}"),
        })
        .await
        .unwrap()
        .into_inner()
        .record
        .unwrap();
    assert_eq!((shown.status.as_str(), shown.canonical_operation.as_str()), ("processing", "SHOP_EXPORT_CATALOG"));
    assert!(shown.lease_expires_at.is_some());

    let request = |reason: &str, own_key: &str| gw::ReleaseIdempotencyRecordRequest {
        idempotency_key: own_key.into(),
        user_id: USER,
        record_key: key.clone(),
        reason: reason.into(),
    };
    let blank = operations.release_idempotency_record(request("   ", "release-1")).await;
    assert_error(blank, Code::InvalidArgument, "VALIDATION_FAILED");
    let mut user = OperationsServiceClient::with_interceptor(stack.channel.clone(), Bearer::new(&bearer(USER, 0)));
    let denied = user.release_idempotency_record(request("stuck", "release-1")).await;
    assert_error(denied, Code::PermissionDenied, "ROLE_TOO_LOW");

    let live = operations.release_idempotency_record(request("gateway pod lost", "release-1")).await;
    assert_error(live, Code::FailedPrecondition, "IDEMPOTENCY_RECORD_LEASE_ACTIVE");
    expire_lease(&stack.store().await, &key).await;
    let released =
        operations.release_idempotency_record(request("gateway pod lost", "release-1")).await.unwrap().into_inner();
    assert!(!released.replayed);
    let record = released.record.unwrap();
    assert_eq!((record.status.as_str(), record.failure_reason.as_str()), ("failed", "RELEASED"));
    let audit = released.audit_record.unwrap();
    assert_eq!(
        (audit.action.as_str(), audit.reason.as_str()),
        ("GATEWAY_RELEASE_IDEMPOTENCY_RECORD", "gateway pod lost")
    );
    assert_eq!(audit.target_id, format!("{USER}/{key}"));
    let again = operations.release_idempotency_record(request("gateway pod lost", "release-1")).await.unwrap();
    assert!(again.into_inner().replayed, "the release's own key replays");
    let reused = operations.release_idempotency_record(request("another reason", "release-1")).await;
    assert_error(reused, Code::AlreadyExists, "IDEMPOTENCY_KEY_REUSED");

    // The released key is retried at once, with the same business event.
    let retry = stack.call("Export", EXPORT, Some(&key)).await.unwrap();
    assert_eq!(text(&stack.decode("Export", retry.get_ref()), "event"), shown.business_event_id);
    let completed = operations.release_idempotency_record(request("again", "release-2")).await;
    assert_error(completed, Code::FailedPrecondition, "IDEMPOTENCY_RECORD_NOT_PROCESSING");
    let missing = operations
        .get_idempotency_record(gw::GetIdempotencyRecordRequest { user_id: USER, idempotency_key: new_key() })
        .await;
    assert_error(missing, Code::NotFound, "IDEMPOTENCY_RECORD_NOT_FOUND");
    release.send(()).unwrap();
    stuck.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_shutdown_records_the_outcome_of_a_write_whose_client_went_away() {
    let stack = shop_stack(|_, _| {}).await;
    let key = new_key();
    let release = stack.shop.hold_next();
    let request = stack.request("Export", EXPORT, Some(&key));
    let call = tokio::spawn({
        let channel = stack.channel.clone();
        async move { raw_call(channel, "/economy.shop.v1.ShopService/Export", request).await }
    });
    eventually("the call to reach the upstream", || async { stack.shop.calls() == 1 }).await;
    call.abort(); // the client goes away
    let store = stack.store().await;
    let crate::shop::ShopStack { _gateway: gateway, shop, channel, .. } = stack;
    drop(channel);
    let stopping = tokio::spawn(gateway.stop());
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!stopping.is_finished(), "the shutdown waits for the write in flight");
    release.send(()).unwrap();
    stopping.await.unwrap().unwrap();
    assert_eq!(store.status_of(USER, &key).await.unwrap(), Some(("completed".into(), None)));
    assert_eq!(shop.calls(), 1);
}
