//! The item-expiry and lock-expiry jobs: driven with a clock in the future through a
//! second store handle (as another replica would run them), concurrently, and on their
//! own schedule.

use std::time::Duration;

use economy_items::jobs::{ACTOR, expire_items, release_expired_locks};
use economy_kit::time::{Clock, now_millis, to_timestamp};
use economy_proto::items::v1 as pb;
use pb::ItemEventType as E;

use crate::common::*;

const HOUR: i64 = 3_600_000;

#[tokio::test]
async fn past_expiry_available_items_expire_once() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    let mut market = app.service("market").await;
    let due = grant_expiring(&mut admin, 2, "sword", now_millis() + HOUR).await;
    let locked = grant_expiring(&mut admin, 2, "sword", now_millis() + HOUR).await;
    lock(&mut market, &locked.id, MARKET).await;
    let later = grant_expiring(&mut admin, 2, "sword", now_millis() + 3 * HOUR).await;
    let forever = grant(&mut admin, 2, "sword").await;

    let store = app.store().await;
    assert_eq!(expire_items(&store, now_millis()).await.unwrap(), 0);
    let in_two_hours = now_millis() + 2 * HOUR;
    assert_eq!(expire_items(&store, in_two_hours).await.unwrap(), 1);
    assert_eq!(expire_items(&store, in_two_hours).await.unwrap(), 0);
    assert_eq!(get(&mut admin, &due.id).await.status(), pb::ItemStatus::Expired);
    let history = events(&mut admin, &due.id).await;
    assert_eq!(history.len(), 2);
    let expired = &history[1];
    assert_eq!(
        (expired.r#type(), expired.actor.as_str(), expired.business_type.as_str()),
        (E::Expired, ACTOR, "ITEM_EXPIRE")
    );
    // Locked items wait for their holder; the rest is not due.
    for id in [&locked.id, &later.id, &forever.id] {
        assert_ne!(get(&mut admin, id).await.status(), pb::ItemStatus::Expired);
    }
    refused(admin.revoke_item(revoke_request(&due.id)).await, "ITEM_NOT_AVAILABLE");

    // Released, the locked one expires on the next run.
    market.unlock_item(unlock_request(&locked.id, MARKET)).await.unwrap();
    assert_eq!(expire_items(&store, in_two_hours).await.unwrap(), 1);
    assert_eq!(event_types(&mut admin, &locked.id).await, [E::Granted, E::Locked, E::Unlocked, E::Expired]);
}

#[tokio::test]
async fn replicas_running_the_jobs_at_once_change_each_item_once() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    let mut market = app.service("market").await;
    let mut items = Vec::new();
    for index in 0..10 {
        let item = grant_expiring(&mut admin, 2, "sword", now_millis() + HOUR).await;
        if index % 2 == 0 {
            let request = pb::LockItemRequest {
                lock_expires_at: Some(to_timestamp(now_millis() + HOUR / 2)),
                ..lock_request(&item.id, MARKET)
            };
            market.lock_item(request).await.unwrap();
        }
        items.push(item.id);
    }
    let (first, second, third) = (app.store().await, app.store().await, app.store().await);
    let soon = now_millis() + HOUR * 3 / 4;
    let released = tokio::join!(
        release_expired_locks(&first, soon),
        release_expired_locks(&second, soon),
        release_expired_locks(&third, soon)
    );
    assert_eq!(released.0.unwrap() + released.1.unwrap() + released.2.unwrap(), 5);
    let later = now_millis() + 2 * HOUR;
    let expired = tokio::join!(expire_items(&first, later), expire_items(&second, later), expire_items(&third, later));
    assert_eq!(expired.0.unwrap() + expired.1.unwrap() + expired.2.unwrap(), 10);
    for id in &items {
        let types = event_types(&mut admin, id).await;
        assert_eq!(types.iter().filter(|kind| **kind == E::Expired).count(), 1, "{types:?}");
        assert!(types.iter().filter(|kind| **kind == E::Unlocked).count() <= 1, "{types:?}");
    }
}

#[tokio::test]
async fn expired_locks_are_released() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    let mut market = app.service("market").await;
    let item = grant(&mut admin, 2, "voucher").await;
    let request = pb::LockItemRequest {
        lock_expires_at: Some(to_timestamp(now_millis() + HOUR)),
        ..lock_request(&item.id, MARKET)
    };
    market.lock_item(request).await.unwrap();
    let forever = grant(&mut admin, 2, "voucher").await;
    lock(&mut market, &forever.id, MARKET).await;

    let store = app.store().await;
    assert_eq!(release_expired_locks(&store, now_millis()).await.unwrap(), 0);
    let later = now_millis() + 2 * HOUR;
    assert_eq!(release_expired_locks(&store, later).await.unwrap(), 1);
    assert_eq!(release_expired_locks(&store, later).await.unwrap(), 0);
    let released = get(&mut admin, &item.id).await;
    assert_eq!((released.status(), released.lock_holder.as_str()), (pb::ItemStatus::Available, ""));
    let history = events(&mut admin, &item.id).await;
    let unlocked = history.last().unwrap();
    assert_eq!((unlocked.r#type(), unlocked.holder.as_str(), unlocked.actor.as_str()), (E::Unlocked, MARKET, ACTOR));
    assert_eq!(unlocked.business_type, "ITEM_LOCK_EXPIRE");
    assert_eq!(get(&mut admin, &forever.id).await.status(), pb::ItemStatus::Locked);
    // The former holder's late transfer is refused.
    refused(market.transfer_item(transfer_request(&item.id, MARKET, 3)).await, "ITEM_NOT_LOCKED");
}

#[tokio::test]
async fn the_jobs_run_on_their_own() {
    let app = spawn_app_with_intervals(1).await;
    let mut admin = app.admin_with_catalog().await;
    let mut market = app.service("market").await;
    let expiring = grant_expiring(&mut admin, 2, "sword", app.clock.now_millis() + 300).await;
    let held = grant(&mut admin, 2, "sword").await;
    let request = pb::LockItemRequest {
        lock_expires_at: Some(to_timestamp(app.clock.now_millis() + 300)),
        ..lock_request(&held.id, MARKET)
    };
    market.lock_item(request).await.unwrap();
    // Past both expiries on the service's clock; the jobs (every second) notice on their own.
    app.clock.advance(Duration::from_millis(400));

    let mut statuses = (pb::ItemStatus::Available, pb::ItemStatus::Locked);
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        statuses = (get(&mut admin, &expiring.id).await.status(), get(&mut admin, &held.id).await.status());
        if statuses == (pb::ItemStatus::Expired, pb::ItemStatus::Available) {
            break;
        }
    }
    assert_eq!(statuses, (pb::ItemStatus::Expired, pb::ItemStatus::Available));
}
