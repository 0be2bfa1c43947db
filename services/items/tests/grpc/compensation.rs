//! The compensation tool `ForceUnlockItem` (issue 6): it unlocks an instance locked by a
//! holder that does not exist, records an UNLOCKED event by the admin with the reason and
//! an audit record in the same transaction, applies once per key, and is for admins with
//! a reason only.

use economy_kit::error::violated_fields;
use economy_kit::identity::{Caller, roles};
use economy_proto::items::v1 as pb;
use tonic::Code;

use crate::common::*;

/// A holder no market listing or redemption order answers to.
const GHOST: &str = "market:listing:0190aaaa-0000-7000-8000-00000000dead";

fn force_unlock(key: &str, item: &str, reason: &str) -> pb::ForceUnlockItemRequest {
    pb::ForceUnlockItemRequest { idempotency_key: key.into(), item_instance_id: item.into(), reason: reason.into() }
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap()
}

async fn audit_records(admin: &mut Client, target_id: &str) -> Vec<economy_proto::audit::v1::AuditRecord> {
    let request = pb::ListAuditRecordsRequest { target_id: target_id.into(), ..Default::default() };
    admin.list_audit_records(request).await.unwrap().into_inner().records
}

#[tokio::test]
async fn force_unlock_frees_an_item_held_by_a_ghost_once_with_its_audit_record() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    let item = grant(&mut admin, 2, "sword").await;
    lock(&mut admin, &item.id, GHOST).await;

    for mut caller in
        [app.user(2).await, app.service("market").await, app.client(Caller::user(7, roles::MERCHANT_STAFF)).await]
    {
        assert_error(
            caller.force_unlock_item(force_unlock(&new_key(), &item.id, "stuck")).await,
            Code::PermissionDenied,
            "PERMISSION_DENIED",
        );
    }
    for blank in ["", " \t"] {
        let status = assert_error(
            admin.force_unlock_item(force_unlock(&new_key(), &item.id, blank)).await,
            Code::InvalidArgument,
            "VALIDATION_FAILED",
        );
        assert_eq!(violated_fields(&status), ["reason"]);
    }
    assert_eq!(get(&mut admin, &item.id).await.status, pb::ItemStatus::Locked as i32, "refusals change nothing");

    let fix_key = new_key();
    let reason = "listing row lost in the market migration";
    let unlocked = admin.force_unlock_item(force_unlock(&fix_key, &item.id, reason)).await.unwrap().into_inner();
    assert!(!unlocked.replayed);
    let now = unlocked.item.unwrap();
    assert_eq!((now.status, now.lock_holder.as_str(), now.owner_user_id), (pb::ItemStatus::Available as i32, "", 2));
    let event = unlocked.event.unwrap();
    assert_eq!(event.r#type(), pb::ItemEventType::Unlocked);
    assert_eq!(
        (event.actor.as_str(), event.reason.as_str(), event.holder.as_str(), event.business_type.as_str()),
        ("user:1", reason, GHOST, "ADMIN_FORCE_UNLOCK")
    );
    assert_eq!(
        event_types(&mut admin, &item.id).await,
        [pb::ItemEventType::Granted, pb::ItemEventType::Locked, pb::ItemEventType::Unlocked]
    );

    let record = unlocked.audit_record.unwrap();
    assert_eq!(
        (record.actor.as_str(), record.action.as_str(), record.target_type.as_str(), record.target_id.as_str()),
        ("user:1", "ITEMS_FORCE_UNLOCK_ITEM", "item", item.id.as_str())
    );
    assert_eq!((record.reason.as_str(), record.idempotency_key.as_str()), (reason, fix_key.as_str()));
    let (before, after) = (json(&record.before), json(&record.after));
    assert_eq!((before["status"].as_str(), before["lock_holder"].as_str()), (Some("locked"), Some(GHOST)));
    assert_eq!((after["status"].as_str(), after["lock_holder"].is_null()), (Some("available"), true));
    assert_eq!(after["version"].as_i64(), before["version"].as_i64().map(|version| version + 1));

    // The retry replays: same event and record, no second UNLOCKED even after a relock.
    lock(&mut admin, &item.id, GHOST).await;
    let retry = admin.force_unlock_item(force_unlock(&fix_key, &item.id, reason)).await.unwrap().into_inner();
    assert!(retry.replayed);
    assert_eq!(retry.event.unwrap().id, event.id);
    assert_eq!(retry.audit_record.unwrap(), record);
    assert_eq!(get(&mut admin, &item.id).await.status, pb::ItemStatus::Locked as i32, "not applied twice");
    assert_eq!(audit_records(&mut admin, &item.id).await, std::slice::from_ref(&record));
    assert_error(
        admin.force_unlock_item(force_unlock(&fix_key, &item.id, "other reason")).await,
        Code::AlreadyExists,
        "IDEMPOTENCY_KEY_REUSED",
    );

    // A new key is a new fix; an unlocked item has nothing to unlock.
    admin.force_unlock_item(force_unlock(&new_key(), &item.id, "the ghost came back")).await.unwrap();
    refused(admin.force_unlock_item(force_unlock(&new_key(), &item.id, "again")).await, "ITEM_NOT_LOCKED");
    assert_error(
        admin.force_unlock_item(force_unlock(&new_key(), &uuid::Uuid::now_v7().to_string(), "typo")).await,
        Code::NotFound,
        "ITEM_NOT_FOUND",
    );
    let records = audit_records(&mut admin, "").await;
    assert_eq!(
        records.iter().map(|record| record.reason.as_str()).collect::<Vec<_>>(),
        ["the ghost came back", reason]
    );

    assert_error(
        app.user(2).await.list_audit_records(pb::ListAuditRecordsRequest::default()).await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
}

#[tokio::test]
async fn a_key_of_another_change_is_not_a_force_unlock() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    let item = grant(&mut admin, 2, "sword").await;
    let request = lock_request(&item.id, GHOST);
    let lock_key = request.idempotency_key.clone();
    admin.lock_item(request).await.unwrap();
    assert_error(
        admin.force_unlock_item(force_unlock(&lock_key, &item.id, "stuck")).await,
        Code::AlreadyExists,
        "IDEMPOTENCY_KEY_REUSED",
    );
    assert_eq!(get(&mut admin, &item.id).await.status, pb::ItemStatus::Locked as i32);
    assert!(audit_records(&mut admin, "").await.is_empty());
}
