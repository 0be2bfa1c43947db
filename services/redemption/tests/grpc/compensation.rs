//! The compensation tools (issue 6): RedriveOutbox delivers a dead or stuck outbox row,
//! ReissueCodeOnBehalf gives a customer a new code; each writes its audit record in the
//! fix's transaction (never a code), applies once per key, and is for admins with a
//! reason only.

use economy_kit::error::violated_fields;
use economy_proto::audit::v1::AuditRecord;
use economy_proto::items::v1 as items;
use economy_proto::redemption::v1 as pb;
use pb::redrive_outbox_request::Target;
use sqlx::Row;
use tonic::Code;

use crate::common::*;

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).expect("json")
}

fn redrive(key: &str, target: Target, reason: &str) -> pb::RedriveOutboxRequest {
    pb::RedriveOutboxRequest { idempotency_key: key.into(), target: Some(target), reason: reason.into() }
}

fn on_behalf(key: &str, order_id: &str, reason: &str) -> pb::ReissueCodeOnBehalfRequest {
    pb::ReissueCodeOnBehalfRequest { idempotency_key: key.into(), order_id: order_id.into(), reason: reason.into() }
}

fn code_of(status: &tonic::Status) -> Code {
    status.code()
}

async fn audit_records(admin: &mut Client, target_id: &str) -> Vec<AuditRecord> {
    let request = pb::ListAuditRecordsRequest { target_id: target_id.into(), ..Default::default() };
    admin.list_audit_records(request).await.expect("ok").into_inner().records
}

/// The outbox row of `order_id` (one per order here).
async fn outbox_row(app: &TestApp, order_id: &str) -> (String, String) {
    let row = sqlx::query("SELECT id, status FROM redemption_outbox WHERE order_id = $1")
        .bind(order_id)
        .fetch_one(app.store().await.db().pool())
        .await
        .expect("ok");
    (row.get("id"), row.get("status"))
}

/// An order fulfilled while Items was down: its consume is owed in the outbox.
async fn fulfilled_while_items_down(app: &mut TestApp) -> (String, String) {
    let item = app.grant("prize").await;
    let created = create(&mut app.owner().await, &item).await.expect("ok");
    app.stop_items().await;
    fulfill(&mut app.staff().await, &created.code).await.expect("ok");
    (item, created.order.expect("ok").id)
}

#[tokio::test]
async fn redrive_outbox_delivers_a_dead_row_once_with_its_audit_record() {
    let mut app = spawn_app().await;
    let (item, order_id) = fulfilled_while_items_down(&mut app).await;
    // Corrupt: the row is declared dead (as after a refusal); the dispatcher skips it.
    sqlx::query("UPDATE redemption_outbox SET status = 'dead', last_error = 'ITEM_NOT_LOCKED' WHERE order_id = $1")
        .bind(&order_id)
        .execute(app.store().await.db().pool())
        .await
        .expect("ok");
    app.restart_items().await;
    let (outbox_id, _) = outbox_row(&app, &order_id).await;
    let target = || Target::OutboxId(outbox_id.clone());

    for mut caller in [app.owner().await, app.staff().await] {
        let refused = caller.redrive_outbox(redrive(&new_key(), target(), "retry")).await;
        assert_eq!(reason(refused), "PERMISSION_DENIED");
    }
    let blank = app.admin().await.redrive_outbox(redrive(&new_key(), target(), "  ")).await.expect_err("refused");
    assert_eq!((code_of(&blank), violated_fields(&blank)), (Code::InvalidArgument, vec!["reason".to_owned()]));
    assert_eq!(outbox_row(&app, &order_id).await.1, "dead", "refusals change nothing");

    let mut admin = app.admin().await;
    let fix_key = new_key();
    let why = "items refused while being migrated";
    let redriven = admin.redrive_outbox(redrive(&fix_key, target(), why)).await.expect("ok").into_inner();
    assert!(!redriven.replayed);
    let entry = redriven.entry.expect("ok");
    assert_eq!((entry.id.as_str(), entry.status), (outbox_id.as_str(), pb::OutboxStatus::Delivered as i32));
    assert_eq!(app.item(&item).await.status, items::ItemStatus::Used as i32, "the consume was delivered");

    let record = redriven.audit_record.expect("ok");
    assert_eq!(
        (record.actor.as_str(), record.action.as_str(), record.target_type.as_str(), record.target_id.as_str()),
        ("user:1", "REDEMPTION_REDRIVE_OUTBOX", "outbox", outbox_id.as_str())
    );
    assert_eq!((record.reason.as_str(), record.idempotency_key.as_str()), (why, fix_key.as_str()));
    let (before, after) = (json(&record.before), json(&record.after));
    assert_eq!((before["status"].as_str(), before["last_error"].as_str()), (Some("dead"), Some("ITEM_NOT_LOCKED")));
    assert_eq!((after["status"].as_str(), after["attempts"].as_i64()), (Some("pending"), Some(0)));
    assert_eq!(after["order_id"].as_str(), Some(order_id.as_str()));

    // Dead again (corrupted once more): the retry replays and re-drives nothing.
    sqlx::query("UPDATE redemption_outbox SET status = 'dead' WHERE id = $1")
        .bind(&outbox_id)
        .execute(app.store().await.db().pool())
        .await
        .expect("ok");
    let retry = admin.redrive_outbox(redrive(&fix_key, target(), why)).await.expect("ok").into_inner();
    assert!(retry.replayed);
    assert_eq!(retry.audit_record.expect("ok"), record);
    assert_eq!(outbox_row(&app, &order_id).await.1, "dead", "not applied twice");
    assert_eq!(audit_records(&mut admin, &outbox_id).await, std::slice::from_ref(&record));
    let other = admin.redrive_outbox(redrive(&fix_key, target(), "another reason")).await;
    assert_eq!(reason(other), "IDEMPOTENCY_KEY_REUSED");

    // A new key re-drives it again (delivery is keyed, Items replays the consume).
    let again = admin.redrive_outbox(redrive(&new_key(), target(), "second try")).await.expect("ok").into_inner();
    assert_eq!(again.entry.expect("ok").status, pb::OutboxStatus::Delivered as i32);
    let delivered = admin.redrive_outbox(redrive(&new_key(), target(), "third")).await;
    assert_eq!(reason(delivered), "OUTBOX_ALREADY_DELIVERED");
    let missing = admin.redrive_outbox(redrive(&new_key(), Target::OutboxId(new_key()), "typo")).await;
    assert_eq!(reason(missing), "OUTBOX_NOT_FOUND");
    assert_eq!(audit_records(&mut admin, "").await.len(), 2);
    assert_eq!(
        reason(app.staff().await.list_audit_records(pb::ListAuditRecordsRequest::default()).await),
        "PERMISSION_DENIED"
    );
}

#[tokio::test]
async fn redrive_outbox_by_order_delivers_a_stuck_row_now() {
    let mut app = spawn_app().await;
    let item = app.grant("prize").await;
    let created = create(&mut app.owner().await, &item).await.expect("ok");
    let order_id = created.order.expect("ok").id;
    app.stop_items().await;
    let cancel =
        pb::CancelOrderRequest { idempotency_key: new_key(), order_id: order_id.clone(), reason: String::new() };
    app.owner().await.cancel_order(cancel).await.expect("ok");
    app.restart_items().await;
    // Stuck: pending, but its next attempt lies far ahead (the service clock stands still).
    assert_eq!(outbox_row(&app, &order_id).await.1, "pending");
    assert_eq!(app.item(&item).await.status, items::ItemStatus::Locked as i32);

    let mut admin = app.admin().await;
    let request = redrive(&new_key(), Target::OrderId(order_id.clone()), "customer waiting at the counter");
    let redriven = admin.redrive_outbox(request).await.expect("ok").into_inner();
    assert_eq!(redriven.entry.expect("ok").status, pb::OutboxStatus::Delivered as i32);
    assert_eq!(app.item(&item).await.status, items::ItemStatus::Available as i32, "the unlock was delivered");
    let record = redriven.audit_record.expect("ok");
    assert_eq!(json(&record.before)["status"].as_str(), Some("pending"));
    assert_eq!(record.target_id, outbox_row(&app, &order_id).await.0);
}

#[tokio::test]
async fn reissue_on_behalf_replaces_the_code_once_and_never_records_it() {
    let app = spawn_app().await;
    let item = app.grant("prize").await;
    let created = create(&mut app.owner().await, &item).await.expect("ok");
    let order_id = created.order.expect("ok").id;
    let mut admin = app.admin().await;

    // The owner's ReissueCode is the owner's only; acting for a customer is the audited tool.
    let plain = pb::ReissueCodeRequest { idempotency_key: new_key(), order_id: order_id.clone() };
    assert_eq!(reason(admin.reissue_code(plain).await), "PERMISSION_DENIED");
    for mut caller in [app.owner().await, app.staff().await] {
        assert_eq!(
            reason(caller.reissue_code_on_behalf(on_behalf(&new_key(), &order_id, "lost")).await),
            "PERMISSION_DENIED"
        );
    }
    let blank = admin.reissue_code_on_behalf(on_behalf(&new_key(), &order_id, "")).await.expect_err("refused");
    assert_eq!((code_of(&blank), violated_fields(&blank)), (Code::InvalidArgument, vec!["reason".to_owned()]));

    let fix_key = new_key();
    let why = "customer lost the e-mail, ticket 4711";
    let reissued = admin.reissue_code_on_behalf(on_behalf(&fix_key, &order_id, why)).await.expect("ok").into_inner();
    assert!(!reissued.replayed);
    let code = reissued.code.clone();
    assert_ne!(code, created.code);
    assert_eq!(reason(fulfill(&mut app.staff().await, &created.code).await), "CODE_NOT_FOUND", "the old code is dead");

    let record = reissued.audit_record.expect("ok");
    assert_eq!(
        (record.actor.as_str(), record.action.as_str(), record.target_type.as_str(), record.target_id.as_str()),
        ("user:1", "REDEMPTION_REISSUE_CODE_ON_BEHALF", "order", order_id.as_str())
    );
    assert_eq!((record.reason.as_str(), record.idempotency_key.as_str()), (why, fix_key.as_str()));
    let (before, after) = (json(&record.before), json(&record.after));
    assert_eq!((before["status"].as_str(), after["status"].as_str()), (Some("pending"), Some("pending")));
    assert!(after["code_issued_at"].as_i64() >= before["code_issued_at"].as_i64());
    assert_eq!(after["owner_user_id"].as_i64(), Some(OWNER));
    let normalized = code.replace('-', "");
    for secret in [&code, &normalized, &created.code, &created.code.replace('-', "")] {
        assert!(!record.before.contains(secret.as_str()) && !record.after.contains(secret.as_str()));
    }
    let hash = economy_redemption::domain::Code::parse(&code).expect("ok").hash();
    assert!(!record.before.contains(&hash) && !record.after.contains(&hash), "not even the hash");
    let stored = app.stored_text().await;
    assert!(!stored.contains(&normalized) && !stored.contains(&code), "the plaintext code is stored somewhere");

    // The retry replays without a code and without replacing the live one.
    let retry = admin.reissue_code_on_behalf(on_behalf(&fix_key, &order_id, why)).await.expect("ok").into_inner();
    assert!(retry.replayed);
    assert_eq!((retry.code.as_str(), retry.audit_record.expect("ok")), ("", record.clone()));
    assert_eq!(audit_records(&mut admin, &order_id).await, [record]);
    let fulfilled = fulfill(&mut app.staff().await, &code).await.expect("ok");
    assert_eq!(fulfilled.order.expect("ok").status, pb::OrderStatus::Fulfilled as i32, "the reissued code still works");

    let late = admin.reissue_code_on_behalf(on_behalf(&new_key(), &order_id, "too late")).await;
    assert_eq!(reason(late), "CODE_ALREADY_USED");
    let missing = admin.reissue_code_on_behalf(on_behalf(&new_key(), &new_key(), "typo")).await;
    assert_eq!(reason(missing), "ORDER_NOT_FOUND");
    assert_eq!(audit_records(&mut admin, "").await.len(), 1, "refusals leave no record");
}
