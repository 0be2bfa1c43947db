//! Retries: the same key on the same instance returns the original outcome; the same key
//! with other parameters is refused; keys are scoped to one instance.

use economy_proto::items::v1 as pb;
use pb::ItemEventType as E;
use tonic::Code;

use crate::common::*;

#[tokio::test]
async fn every_write_replays_its_original_outcome() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    let mut market = app.service("market").await;
    let mut owner = app.user(2).await;
    let item = grant(&mut admin, 2, "potion").await;

    let lock = lock_request(&item.id, MARKET);
    let first = market.lock_item(lock.clone()).await.unwrap().into_inner();
    let again = market.lock_item(lock.clone()).await.unwrap().into_inner();
    assert!(!first.replayed && again.replayed);
    assert_eq!((again.event.clone(), again.item.clone()), (first.event.clone(), first.item.clone()));

    let transfer = transfer_request(&item.id, MARKET, 3);
    let moved = market.transfer_item(transfer.clone()).await.unwrap().into_inner();
    let retried = market.transfer_item(transfer).await.unwrap().into_inner();
    assert!(retried.replayed);
    assert_eq!(retried.event, moved.event);
    // A late retry of the lock returns the lock's event and the instance as it is now.
    let late = market.lock_item(lock).await.unwrap().into_inner();
    assert!(late.replayed);
    assert_eq!(late.event, first.event);
    assert_eq!(
        (late.item.as_ref().unwrap().owner_user_id, late.item.unwrap().status()),
        (3, pb::ItemStatus::Available)
    );

    let mut new_owner = app.user(3).await;
    let consume = consume_request(&item.id, "");
    new_owner.consume_item(consume.clone()).await.unwrap();
    assert!(new_owner.consume_item(consume).await.unwrap().into_inner().replayed);
    assert_eq!(event_types(&mut admin, &item.id).await, [E::Granted, E::Locked, E::Transferred, E::Used]);

    // New changes of a used item are refused; the previous owner no longer sees it.
    let unlock = unlock_request(&item.id, MARKET);
    refused(market.unlock_item(unlock).await, "ITEM_NOT_LOCKED");
    assert_error(owner.consume_item(consume_request(&item.id, "")).await, Code::PermissionDenied, "PERMISSION_DENIED");

    let sword = grant(&mut admin, 2, "sword").await;
    let revoke = revoke_request(&sword.id);
    admin.revoke_item(revoke.clone()).await.unwrap();
    assert!(admin.revoke_item(revoke).await.unwrap().into_inner().replayed);
    let unlockable = grant(&mut admin, 2, "sword").await;
    crate::common::lock(&mut market, &unlockable.id, MARKET).await;
    let unlock = unlock_request(&unlockable.id, MARKET);
    market.unlock_item(unlock.clone()).await.unwrap();
    assert!(market.unlock_item(unlock).await.unwrap().into_inner().replayed);
    assert_eq!(event_types(&mut admin, &unlockable.id).await, [E::Granted, E::Locked, E::Unlocked]);
}

#[tokio::test]
async fn reused_keys_with_other_parameters_are_refused() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    let mut market = app.service("market").await;
    let item = grant(&mut admin, 2, "voucher").await;
    let lock = lock_request(&item.id, MARKET);
    market.lock_item(lock.clone()).await.unwrap();

    let other_holder = pb::LockItemRequest { holder: REDEMPTION.into(), ..lock.clone() };
    assert_error(market.lock_item(other_holder).await, Code::AlreadyExists, "IDEMPOTENCY_KEY_REUSED");
    let other_type = pb::LockItemRequest { business_type: "OTHER".into(), ..lock.clone() };
    assert_error(market.lock_item(other_type).await, Code::AlreadyExists, "IDEMPOTENCY_KEY_REUSED");
    let as_unlock =
        pb::UnlockItemRequest { idempotency_key: lock.idempotency_key.clone(), ..unlock_request(&item.id, MARKET) };
    assert_error(market.unlock_item(as_unlock).await, Code::AlreadyExists, "IDEMPOTENCY_KEY_REUSED");
    let mut redemption = app.service("redemption").await;
    assert_error(redemption.lock_item(lock.clone()).await, Code::AlreadyExists, "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(get(&mut admin, &item.id).await.version, 2);

    // Keys are scoped to one instance: the same key locks another one.
    let other = grant(&mut admin, 2, "voucher").await;
    let same_key = pb::LockItemRequest { item_instance_id: other.id.clone(), ..lock };
    assert!(!market.lock_item(same_key).await.unwrap().into_inner().replayed);
}

#[tokio::test]
async fn the_gateway_business_event_id_is_the_key() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    let mut market = app.service("market").await;
    let item = grant(&mut admin, 2, "voucher").await;
    let event_id = new_key();
    let keyed = || {
        let mut request = tonic::Request::new(pb::LockItemRequest {
            idempotency_key: String::new(),
            ..lock_request(&item.id, MARKET)
        });
        request.metadata_mut().insert("x-business-event-id", event_id.parse().unwrap());
        request
    };
    let first = market.lock_item(keyed()).await.unwrap().into_inner();
    assert_eq!(first.event.unwrap().idempotency_key, event_id);
    assert!(market.lock_item(keyed()).await.unwrap().into_inner().replayed);
    assert_eq!(event_types(&mut admin, &item.id).await, [E::Granted, E::Locked]);
}
