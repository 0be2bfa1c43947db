//! The state machine through the API: the legal paths, every illegal transition with its
//! reason, and that a refused change leaves the instance and its history untouched.

use std::time::Duration;

use economy_kit::error::violated_fields;
use economy_kit::time::{Clock, now_millis, to_timestamp};
use economy_proto::items::v1 as pb;
use pb::ItemEventType as E;
use tonic::Code;

use crate::common::*;

#[tokio::test]
async fn lock_unlock_transfer_and_consume() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    let mut market = app.service("market").await;
    let mut redemption = app.service("redemption").await;
    let item = grant(&mut admin, 2, "voucher").await;

    let lock_until = now_millis() + 3_600_000;
    let request = pb::LockItemRequest {
        lock_expires_at: Some(to_timestamp(lock_until)),
        expected_owner_user_id: 2,
        business_type: "MARKET_LIST".into(),
        ..lock_request(&item.id, MARKET)
    };
    let locked = market.lock_item(request).await.unwrap().into_inner();
    let locked_item = locked.item.unwrap();
    assert_eq!(
        (locked_item.status(), locked_item.lock_holder.as_str(), locked_item.version),
        (pb::ItemStatus::Locked, MARKET, 2)
    );
    assert_eq!(locked_item.lock_expires_at, Some(to_timestamp(lock_until)));
    assert!(locked_item.locked_at.is_some());
    let event = locked.event.unwrap();
    assert_eq!((event.r#type(), event.holder.as_str(), event.actor.as_str()), (E::Locked, MARKET, "service:market"));
    assert_eq!(event.business_type, "MARKET_LIST");

    let unlocked = market.unlock_item(unlock_request(&item.id, MARKET)).await.unwrap().into_inner().item.unwrap();
    assert_eq!((unlocked.status(), unlocked.lock_holder.as_str()), (pb::ItemStatus::Available, ""));
    assert!(unlocked.locked_at.is_none() && unlocked.lock_expires_at.is_none());

    lock(&mut market, &item.id, MARKET).await;
    let transfer =
        pb::TransferItemRequest { business_type: "MARKET_PURCHASE".into(), ..transfer_request(&item.id, MARKET, 3) };
    let transferred = market.transfer_item(transfer).await.unwrap().into_inner();
    let moved = transferred.item.unwrap();
    assert_eq!((moved.owner_user_id, moved.status(), moved.lock_holder.as_str()), (3, pb::ItemStatus::Available, ""));
    let event = transferred.event.unwrap();
    assert_eq!((event.from_owner_user_id, event.to_owner_user_id, event.holder.as_str()), (2, 3, MARKET));

    lock(&mut redemption, &item.id, REDEMPTION).await;
    let used = redemption.consume_item(consume_request(&item.id, REDEMPTION)).await.unwrap().into_inner();
    assert_eq!(used.item.unwrap().status(), pb::ItemStatus::Used);
    assert_eq!(used.event.unwrap().status(), pb::ItemStatus::Used);

    let history = events(&mut admin, &item.id).await;
    let types: Vec<E> = history.iter().map(|event| event.r#type()).collect();
    assert_eq!(types, [E::Granted, E::Locked, E::Unlocked, E::Locked, E::Transferred, E::Locked, E::Used]);
    assert_eq!(history.iter().map(|event| event.version).collect::<Vec<_>>(), (1..=7).collect::<Vec<_>>());
    assert_eq!(get(&mut admin, &item.id).await.version, 7);
}

#[tokio::test]
async fn owners_consume_consumable_items_and_admins_revoke() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    let mut owner = app.user(2).await;
    let potion = grant(&mut admin, 2, "potion").await;
    let used = owner.consume_item(consume_request(&potion.id, "")).await.unwrap().into_inner();
    assert_eq!(used.item.unwrap().status(), pb::ItemStatus::Used);
    let event = used.event.unwrap();
    assert_eq!((event.actor.as_str(), event.holder.as_str(), event.business_type.as_str()), ("user:2", "", "ITEM_USE"));
    let by_admin = grant(&mut admin, 2, "potion").await;
    admin.consume_item(consume_request(&by_admin.id, "")).await.unwrap();

    let sword = grant(&mut admin, 2, "sword").await;
    let revoked = admin.revoke_item(revoke_request(&sword.id)).await.unwrap().into_inner();
    assert_eq!(revoked.item.unwrap().status(), pb::ItemStatus::Revoked);
    assert_eq!(revoked.event.unwrap().reason, "fraud");
    let no_reason = pb::RevokeItemRequest { reason: String::new(), ..revoke_request(&sword.id) };
    let status = assert_error(admin.revoke_item(no_reason).await, Code::InvalidArgument, "VALIDATION_FAILED");
    assert_eq!(violated_fields(&status), ["reason"]);
}

/// Runs `call`, expects FAILED_PRECONDITION / `reason`, and checks nothing changed.
macro_rules! refused_unchanged {
    ($admin:expr, $item:expr, $call:expr, $reason:expr) => {{
        let before = get($admin, $item).await;
        refused($call.await, $reason);
        assert_eq!(get($admin, $item).await, before, "{} changed the item", $reason);
        assert_eq!(events($admin, $item).await.len() as i64, before.version);
    }};
}

#[tokio::test]
async fn illegal_transitions_fail_and_change_nothing() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    let mut market = app.service("market").await;
    let mut owner = app.user(2).await;
    let admin = &mut admin;

    // Locked by the market: nobody else may lock, unlock, transfer or consume it.
    let item = grant(admin, 2, "voucher").await;
    lock(&mut market, &item.id, MARKET).await;
    let id = item.id.as_str();
    refused_unchanged!(admin, id, market.lock_item(lock_request(id, REDEMPTION)), "ITEM_LOCKED_BY_OTHER");
    refused_unchanged!(admin, id, market.unlock_item(unlock_request(id, REDEMPTION)), "ITEM_LOCKED_BY_OTHER");
    refused_unchanged!(admin, id, market.transfer_item(transfer_request(id, REDEMPTION, 3)), "ITEM_LOCKED_BY_OTHER");
    refused_unchanged!(admin, id, market.consume_item(consume_request(id, REDEMPTION)), "ITEM_LOCKED_BY_OTHER");
    refused_unchanged!(admin, id, market.lock_item(lock_request(id, MARKET)), "ITEM_NOT_AVAILABLE");
    refused_unchanged!(admin, id, admin.revoke_item(revoke_request(id)), "ITEM_NOT_AVAILABLE");
    refused_unchanged!(admin, id, owner.consume_item(consume_request(id, "")), "ITEM_NOT_AVAILABLE");
    refused_unchanged!(admin, id, market.transfer_item(transfer_request(id, MARKET, 2)), "ITEM_SAME_OWNER");

    // Available: holder operations need a lock; the owner check and consumability hold.
    market.unlock_item(unlock_request(id, MARKET)).await.unwrap();
    refused_unchanged!(admin, id, market.unlock_item(unlock_request(id, MARKET)), "ITEM_NOT_LOCKED");
    refused_unchanged!(admin, id, market.transfer_item(transfer_request(id, MARKET, 3)), "ITEM_NOT_LOCKED");
    refused_unchanged!(admin, id, market.consume_item(consume_request(id, MARKET)), "ITEM_NOT_LOCKED");
    refused_unchanged!(admin, id, owner.consume_item(consume_request(id, "")), "ITEM_NOT_CONSUMABLE");
    let wrong_owner = pb::LockItemRequest { expected_owner_user_id: 3, ..lock_request(id, MARKET) };
    refused_unchanged!(admin, id, market.lock_item(wrong_owner), "ITEM_OWNER_MISMATCH");

    // Final states accept nothing.
    for terminal in ["used", "revoked"] {
        let item = grant(admin, 2, "potion").await;
        let id = item.id.as_str();
        if terminal == "used" {
            owner.consume_item(consume_request(id, "")).await.unwrap();
        } else {
            admin.revoke_item(revoke_request(id)).await.unwrap();
        }
        refused_unchanged!(admin, id, market.lock_item(lock_request(id, MARKET)), "ITEM_NOT_AVAILABLE");
        refused_unchanged!(admin, id, owner.consume_item(consume_request(id, "")), "ITEM_NOT_AVAILABLE");
        refused_unchanged!(admin, id, admin.revoke_item(revoke_request(id)), "ITEM_NOT_AVAILABLE");
        refused_unchanged!(admin, id, market.unlock_item(unlock_request(id, MARKET)), "ITEM_NOT_LOCKED");
        refused_unchanged!(admin, id, market.transfer_item(transfer_request(id, MARKET, 3)), "ITEM_NOT_LOCKED");
        refused_unchanged!(admin, id, market.consume_item(consume_request(id, MARKET)), "ITEM_NOT_LOCKED");
    }
}

#[tokio::test]
async fn expired_items_cannot_be_locked_handed_over_or_used() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    let mut market = app.service("market").await;
    let mut owner = app.user(2).await;
    let lockable = grant_expiring(&mut admin, 2, "potion", app.clock.now_millis() + 400).await;
    let locked = grant_expiring(&mut admin, 2, "potion", app.clock.now_millis() + 400).await;
    lock(&mut market, &locked.id, MARKET).await;
    let held = grant_expiring(&mut admin, 2, "potion", app.clock.now_millis() + 400).await;
    lock(&mut market, &held.id, REDEMPTION).await;
    app.clock.advance(Duration::from_millis(600));

    // Not yet expired by the job, but past the expiry: refused before the job runs.
    assert_eq!(get(&mut admin, &lockable.id).await.status(), pb::ItemStatus::Available);
    refused(market.lock_item(lock_request(&lockable.id, MARKET)).await, "ITEM_EXPIRED");
    refused(owner.consume_item(consume_request(&lockable.id, "")).await, "ITEM_EXPIRED");
    refused(market.transfer_item(transfer_request(&locked.id, MARKET, 3)).await, "ITEM_EXPIRED");
    // The holder may still release it, and a holder's consume is honoured (decided while valid).
    market.unlock_item(unlock_request(&locked.id, MARKET)).await.unwrap();
    let used = market.consume_item(consume_request(&held.id, REDEMPTION)).await.unwrap().into_inner();
    assert_eq!(used.item.unwrap().status(), pb::ItemStatus::Used);
}

#[tokio::test]
async fn unknown_items_and_bad_requests() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    let missing = new_key();
    assert_error(
        admin.get_item(pb::GetItemRequest { item_instance_id: missing.clone() }).await,
        Code::NotFound,
        "ITEM_NOT_FOUND",
    );
    assert_error(admin.lock_item(lock_request(&missing, MARKET)).await, Code::NotFound, "ITEM_NOT_FOUND");
    assert_error(admin.unlock_item(unlock_request(&missing, MARKET)).await, Code::NotFound, "ITEM_NOT_FOUND");
    assert_error(admin.transfer_item(transfer_request(&missing, MARKET, 3)).await, Code::NotFound, "ITEM_NOT_FOUND");
    assert_error(admin.consume_item(consume_request(&missing, MARKET)).await, Code::NotFound, "ITEM_NOT_FOUND");
    assert_error(admin.consume_item(consume_request(&missing, "")).await, Code::NotFound, "ITEM_NOT_FOUND");
    assert_error(admin.revoke_item(revoke_request(&missing)).await, Code::NotFound, "ITEM_NOT_FOUND");
    let history =
        admin.list_item_events(pb::ListItemEventsRequest { item_instance_id: missing, ..Default::default() }).await;
    assert_error(history, Code::NotFound, "ITEM_NOT_FOUND");

    let item = grant(&mut admin, 2, "voucher").await;
    let bad = pb::LockItemRequest {
        idempotency_key: "has space".into(),
        item_instance_id: "nope".into(),
        holder: "no-namespace".into(),
        expected_owner_user_id: -1,
        business_type: "lower".into(),
        ..Default::default()
    };
    let status = assert_error(admin.lock_item(bad).await, Code::InvalidArgument, "VALIDATION_FAILED");
    assert_eq!(
        violated_fields(&status),
        ["holder", "expected_owner_user_id", "idempotency_key", "item_instance_id", "business_type"]
    );
    let past = pb::LockItemRequest {
        lock_expires_at: Some(to_timestamp(app.clock.now_millis() - 1)),
        ..lock_request(&item.id, MARKET)
    };
    let status = assert_error(admin.lock_item(past).await, Code::InvalidArgument, "VALIDATION_FAILED");
    assert_eq!(violated_fields(&status), ["lock_expires_at"]);
    let to_nobody = transfer_request(&item.id, MARKET, 0);
    let status = assert_error(admin.transfer_item(to_nobody).await, Code::InvalidArgument, "VALIDATION_FAILED");
    assert_eq!(violated_fields(&status), ["to_owner_user_id"]);
    assert_eq!(event_types(&mut admin, &item.id).await, [E::Granted]);
}
