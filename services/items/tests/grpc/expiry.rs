//! Expiry from its instant, with the jobs effectively off: a retry answers from its key
//! whatever the clock says now, and a lock past its expiry serves its holder no more
//! (except to unlock), before any job has run.

use economy_items::jobs::release_expired_locks;
use economy_kit::error::violated_fields;
use std::time::Duration;

use economy_kit::time::{Clock, to_timestamp};
use economy_proto::items::v1 as pb;
use pb::ItemEventType as E;
use tonic::Code;

use crate::common::*;

fn expiring_lock(item: &str, expires_at: i64) -> pb::LockItemRequest {
    pb::LockItemRequest { lock_expires_at: Some(to_timestamp(expires_at)), ..lock_request(item, MARKET) }
}

#[tokio::test]
async fn grants_and_locks_retried_after_their_expiry_replay() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    let mut market = app.service("market").await;
    let expires_at = app.clock.now_millis() + 1500;
    let grant_expiring =
        pb::GrantItemRequest { expires_at: Some(to_timestamp(expires_at)), ..grant_request(2, "sword") };
    let granted = admin.grant_item(grant_expiring.clone()).await.unwrap().into_inner();
    let forever = grant(&mut admin, 2, "sword").await;
    let lock = expiring_lock(&forever.id, expires_at);
    let locked = market.lock_item(lock.clone()).await.unwrap().into_inner();
    app.clock.advance(Duration::from_millis(1520));

    let regranted = admin.grant_item(grant_expiring.clone()).await.unwrap().into_inner();
    assert!(regranted.replayed && !granted.replayed);
    assert_eq!((regranted.item, regranted.event), (granted.item, granted.event));
    let relocked = market.lock_item(lock.clone()).await.unwrap().into_inner();
    assert!(relocked.replayed);
    assert_eq!(relocked.event, locked.event);
    assert_eq!(event_types(&mut admin, &forever.id).await, [E::Granted, E::Locked]);

    // First requests with those instants are refused.
    let fresh = pb::GrantItemRequest { idempotency_key: new_key(), ..grant_expiring };
    let status = assert_error(admin.grant_item(fresh).await, Code::InvalidArgument, "VALIDATION_FAILED");
    assert_eq!(violated_fields(&status), ["expires_at"]);
    let other = grant(&mut admin, 2, "sword").await;
    let late_lock = expiring_lock(&other.id, expires_at);
    let status = assert_error(market.lock_item(late_lock).await, Code::InvalidArgument, "VALIDATION_FAILED");
    assert_eq!(violated_fields(&status), ["lock_expires_at"]);
}

#[tokio::test]
async fn changes_retried_after_the_item_expired_replay() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    let mut market = app.service("market").await;
    let mut owner = app.user(2).await;
    let expires_at = app.clock.now_millis() + 1500;
    let sword = grant_expiring(&mut admin, 2, "sword", expires_at).await;
    let potion = grant_expiring(&mut admin, 2, "potion", expires_at).await;
    lock(&mut market, &sword.id, MARKET).await;
    let transfer = transfer_request(&sword.id, MARKET, 3);
    let moved = market.transfer_item(transfer.clone()).await.unwrap().into_inner();
    let consume = consume_request(&potion.id, "");
    let used = owner.consume_item(consume.clone()).await.unwrap().into_inner();
    app.clock.advance(Duration::from_millis(1520));

    let retried = market.transfer_item(transfer).await.unwrap().into_inner();
    assert!(retried.replayed);
    assert_eq!(retried.event, moved.event);
    let reused = owner.consume_item(consume).await.unwrap().into_inner();
    assert!(reused.replayed);
    assert_eq!(reused.event, used.event);
    // The expired sword takes no new lock, though the item-expiry job has not run.
    refused(market.lock_item(lock_request(&sword.id, MARKET)).await, "ITEM_EXPIRED");
    assert_eq!(get(&mut admin, &sword.id).await.status(), pb::ItemStatus::Available);
}

#[tokio::test]
async fn a_lock_past_its_expiry_is_only_unlocked() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    let mut market = app.service("market").await;
    let expires_at = app.clock.now_millis() + 1500;
    let mut items = Vec::new();
    for _ in 0..3 {
        let item = grant(&mut admin, 2, "potion").await;
        market.lock_item(expiring_lock(&item.id, expires_at)).await.unwrap();
        items.push(item.id);
    }
    let transfer = transfer_request(&items[0], MARKET, 3);
    let moved = market.transfer_item(transfer.clone()).await.unwrap().into_inner();
    app.clock.advance(Duration::from_millis(1520));

    assert_eq!(market.transfer_item(transfer).await.unwrap().into_inner().event, moved.event, "replayed");
    let late = market.transfer_item(transfer_request(&items[1], MARKET, 3)).await;
    let status = assert_error(late, Code::FailedPrecondition, "ITEM_LOCK_EXPIRED");
    assert!(status.message().contains(&items[1]), "{status:?}");
    refused(market.consume_item(consume_request(&items[1], MARKET)).await, "ITEM_LOCK_EXPIRED");
    let still = get(&mut admin, &items[1]).await;
    assert_eq!((still.status(), still.owner_user_id), (pb::ItemStatus::Locked, 2), "the job makes it visible later");
    // Its holder may still give it back, as the job would.
    let unlocked = market.unlock_item(unlock_request(&items[1], MARKET)).await.unwrap().into_inner();
    assert_eq!(unlocked.item.unwrap().status(), pb::ItemStatus::Available);
    // The job releases the lock nobody touched, and only that one.
    assert_eq!(release_expired_locks(&app.store().await, app.clock.now_millis()).await.unwrap(), 1);
    assert_eq!(event_types(&mut admin, &items[2]).await, [E::Granted, E::Locked, E::Unlocked]);
    assert_eq!(event_types(&mut admin, &items[1]).await, [E::Granted, E::Locked, E::Unlocked]);
}
