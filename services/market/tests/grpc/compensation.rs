//! The compensation tool `RedriveOutbox` (issue 6), through the real gateway: an escrow
//! return declared dead is reset and delivered, with its audit record written in the
//! reset's transaction; it applies once per key (the gateway's and the service's own),
//! and is for admins with a reason only.

use economy_kit::error::violated_fields;
use economy_kit::identity::{Caller, roles};
use economy_market::domain::compensation::OutboxStatus;
use economy_proto::audit::v1::AuditRecord;
use economy_proto::items::v1 as items;
use economy_proto::market::v1 as pb;
use pb::redrive_outbox_request::Target;
use sqlx::Row;
use tonic::Code;

use crate::common::*;

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).expect("json")
}

fn redrive(target: Target, reason: &str) -> pb::RedriveOutboxRequest {
    pb::RedriveOutboxRequest { idempotency_key: String::new(), target: Some(target), reason: reason.into() }
}

async fn market_db(stack: &Stack) -> economy_kit::db::Db {
    economy_kit::db::Db::connect(stack.market_db_url(), &Default::default()).await.expect("market db")
}

/// `(id, status)` of the listing's escrow return.
async fn outbox_row(stack: &Stack, listing_id: &str) -> (String, String) {
    let row = sqlx::query("SELECT id, status FROM market_outbox WHERE listing_id = $1")
        .bind(listing_id)
        .fetch_one(market_db(stack).await.pool())
        .await
        .expect("outbox row");
    (row.get("id"), row.get("status"))
}

async fn mark_dead(stack: &Stack, listing_id: &str) {
    sqlx::query("UPDATE market_outbox SET status = 'dead', last_error = 'UPSTREAM_UNAVAILABLE' WHERE listing_id = $1")
        .bind(listing_id)
        .execute(market_db(stack).await.pool())
        .await
        .expect("corrupt");
}

async fn audit_records(stack: &Stack) -> Vec<AuditRecord> {
    let request = pb::ListAuditRecordsRequest::default();
    stack.admin_market().await.list_audit_records(request).await.expect("records").into_inner().records
}

#[tokio::test]
async fn redrive_outbox_returns_a_dead_escrow_once_with_its_audit_record() {
    let mut stack = spawn_stack().await;
    let item = stack.grant_item(SELLER).await;
    let listing = list_item(&mut stack.market(SELLER).await, &item, 100).await.expect("listed");
    // The seller cancels while items is down: the unlock stays owed; then it is declared dead.
    stack.stop_items().await;
    let cancel = pb::CancelListingRequest { listing_id: listing.id.clone(), ..Default::default() };
    stack.market(SELLER).await.cancel_listing(with_new_key(cancel)).await.expect("cancelled");
    mark_dead(&stack, &listing.id).await;
    stack.restart_items().await;
    let (outbox_id, _) = outbox_row(&stack, &listing.id).await;
    assert_eq!(stack.item(&item).await.status, items::ItemStatus::Locked as i32, "the escrow is stuck");

    // Admins only: the gateway refuses lower roles, and so does the service itself.
    let refused = stack
        .market(SELLER)
        .await
        .redrive_outbox(with_new_key(redrive(Target::OutboxId(outbox_id.clone()), "x")))
        .await;
    assert_eq!(refused.expect_err("refused").code(), Code::PermissionDenied);
    for caller in
        [Caller::user(SELLER, roles::USER), Caller::user(7, roles::MERCHANT_STAFF), Caller::service("redemption")]
    {
        let mut direct = stack.direct_market(caller).await;
        let request = pb::RedriveOutboxRequest {
            idempotency_key: new_key(),
            ..redrive(Target::OutboxId(outbox_id.clone()), "x")
        };
        assert_eq!(reason(direct.redrive_outbox(request).await), "PERMISSION_DENIED");
    }
    let mut admin = stack.admin_market().await;
    let blank =
        admin.redrive_outbox(with_new_key(redrive(Target::OutboxId(outbox_id.clone()), ""))).await.expect_err("blank");
    assert_eq!((blank.code(), violated_fields(&blank)), (Code::InvalidArgument, vec!["reason".to_owned()]));
    assert_eq!(outbox_row(&stack, &listing.id).await.1, "dead", "refusals change nothing");

    let why = "items outage of 14:00, escrow never returned";
    let key = new_key();
    let response = admin.redrive_outbox(keyed(redrive(Target::ListingId(listing.id.clone()), why), &key)).await;
    let response = response.expect("re-driven");
    let business_event = response
        .metadata()
        .get("business-event-id")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let redriven = response.into_inner();
    assert!(!redriven.replayed);
    let entry = redriven.entry.expect("entry");
    assert_eq!((entry.id.as_str(), entry.status), (outbox_id.as_str(), pb::OutboxStatus::Delivered as i32));
    let unlocked = stack.item(&item).await;
    assert_eq!((unlocked.status, unlocked.owner_user_id), (items::ItemStatus::Available as i32, SELLER));

    let record = redriven.audit_record.expect("record");
    assert_eq!(
        (record.actor.as_str(), record.action.as_str(), record.target_type.as_str(), record.target_id.as_str()),
        ("user:1", "MARKET_REDRIVE_OUTBOX", "outbox", outbox_id.as_str())
    );
    assert_eq!(record.reason, why);
    assert!(!business_event.is_empty(), "the gateway names the business event");
    assert_eq!(record.idempotency_key, business_event, "the service keys the fix by the gateway's business event");
    let (before, after) = (json(&record.before), json(&record.after));
    assert_eq!(
        (before["status"].as_str(), before["last_error"].as_str()),
        (Some("dead"), Some("UPSTREAM_UNAVAILABLE"))
    );
    assert_eq!((after["status"].as_str(), after["attempts"].as_i64()), (Some("pending"), Some(0)));
    assert_eq!(after["listing_id"].as_str(), Some(listing.id.as_str()));

    // Dead again: a retry with the same key applies nothing, whether the gateway replays
    // it or it slips past the gateway with the business event as its key.
    mark_dead(&stack, &listing.id).await;
    let retry = admin.redrive_outbox(keyed(redrive(Target::ListingId(listing.id.clone()), why), &key)).await;
    let retry = retry.expect("replayed by the gateway");
    assert_eq!(retry.metadata().get("idempotent-replayed").and_then(|value| value.to_str().ok()), Some("true"));
    let mut direct_admin = stack.direct_market(Caller::user(ADMIN, roles::ADMIN)).await;
    let slipped = pb::RedriveOutboxRequest {
        idempotency_key: business_event.clone(),
        ..redrive(Target::ListingId(listing.id.clone()), why)
    };
    let slipped = direct_admin.redrive_outbox(slipped).await.expect("replayed by the service").into_inner();
    assert!(slipped.replayed);
    assert_eq!(slipped.audit_record.expect("record"), record);
    assert_eq!(slipped.entry.expect("entry").status, pb::OutboxStatus::Dead as i32, "not applied twice");
    assert_eq!(outbox_row(&stack, &listing.id).await.1, OutboxStatus::Dead.as_str());
    assert_eq!(audit_records(&stack).await, std::slice::from_ref(&record));

    // A new key is a new fix; a delivered row is not re-driven.
    let again = admin.redrive_outbox(with_new_key(redrive(Target::OutboxId(outbox_id.clone()), "second pass"))).await;
    assert_eq!(again.expect("again").into_inner().entry.expect("entry").status, pb::OutboxStatus::Delivered as i32);
    let delivered =
        admin.redrive_outbox(with_new_key(redrive(Target::OutboxId(outbox_id.clone()), "third pass"))).await;
    assert_eq!(reason(delivered), "OUTBOX_ALREADY_DELIVERED");
    let missing =
        admin.redrive_outbox(with_new_key(redrive(Target::OutboxId(uuid::Uuid::now_v7().to_string()), "typo"))).await;
    assert_eq!(reason(missing), "OUTBOX_NOT_FOUND");
    let records = audit_records(&stack).await;
    assert_eq!(records.iter().map(|record| record.reason.as_str()).collect::<Vec<_>>(), ["second pass", why]);
    let listed = stack.market(SELLER).await.list_audit_records(pb::ListAuditRecordsRequest::default()).await;
    assert_eq!(listed.expect_err("admins only").code(), Code::PermissionDenied);
}
