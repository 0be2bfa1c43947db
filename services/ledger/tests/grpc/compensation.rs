//! The compensation tools (issue 6): each fixes deliberately corrupted state, writes its
//! audit record in the same transaction, applies once per idempotency key, and is for
//! admins with a reason only.

use economy_kit::db::{Db, DbOptions};
use economy_kit::error::violated_fields;
use economy_kit::identity::{Caller, roles};
use economy_proto::audit::v1::AuditRecord;
use economy_proto::ledger::v1 as pb;
use tonic::Code;

use crate::common::*;

async fn corrupt(app: &TestApp, sql: &str) {
    let db = Db::connect(&app.database().url, &DbOptions::default()).await.unwrap();
    sqlx::query(sql).execute(db.pool()).await.unwrap();
    db.close().await;
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap()
}

fn recalculate(key: &str, user_id: i64, reason: &str) -> pb::RecalculateBalanceRequest {
    pb::RecalculateBalanceRequest {
        idempotency_key: key.into(),
        account: user(user_id),
        asset_code: "POINTS".into(),
        reason: reason.into(),
    }
}

fn force_release(key: &str, hold_id: &str, reason: &str) -> pb::ForceReleaseHoldRequest {
    pb::ForceReleaseHoldRequest { idempotency_key: key.into(), hold_id: hold_id.into(), reason: reason.into() }
}

async fn audit_records(admin: &mut Client, target_id: &str) -> Vec<AuditRecord> {
    let request = pb::ListAuditRecordsRequest { target_id: target_id.into(), ..Default::default() };
    admin.list_audit_records(request).await.unwrap().into_inner().records
}

#[tokio::test]
async fn recalculate_balance_restores_a_corrupted_balance_once_with_its_audit_record() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    adjust(&mut admin, 2, "POINTS", 100).await.unwrap();
    let hold = pb::CreateHoldRequest {
        idempotency_key: new_key(),
        account: user(2),
        asset_code: "POINTS".into(),
        amount: 30,
        ..Default::default()
    };
    admin.create_hold(hold).await.unwrap();
    corrupt(&app, "UPDATE balances SET available = 999, frozen = 0 WHERE account = 'user:2' AND asset_code = 'POINTS'")
        .await;

    // Admins only, and only with a reason.
    for mut caller in [app.user(2).await, app.service().await, app.client(Caller::user(7, roles::MERCHANT_STAFF)).await]
    {
        assert_error(
            caller.recalculate_balance(recalculate(&new_key(), 2, "fix")).await,
            Code::PermissionDenied,
            "PERMISSION_DENIED",
        );
    }
    for blank in ["", "   "] {
        let status = assert_error(
            admin.recalculate_balance(recalculate(&new_key(), 2, blank)).await,
            Code::InvalidArgument,
            "VALIDATION_FAILED",
        );
        assert_eq!(violated_fields(&status), ["reason"]);
    }
    let too_long = "x".repeat(501);
    assert_error(
        admin.recalculate_balance(recalculate(&new_key(), 2, &too_long)).await,
        Code::InvalidArgument,
        "VALIDATION_FAILED",
    );
    assert_eq!(balance(&mut admin, 2, "POINTS").await, (999, 0), "refused calls change nothing");

    let fix_key = new_key();
    let fixed = admin.recalculate_balance(recalculate(&fix_key, 2, "restore after a bad import")).await.unwrap();
    let fixed = fixed.into_inner();
    assert!(!fixed.replayed);
    let restored = fixed.balance.unwrap();
    assert_eq!((restored.available, restored.frozen, restored.total), (70, 30, 100));
    assert_eq!(balance(&mut admin, 2, "POINTS").await, (70, 30));
    assert_consistent(&mut admin).await;

    let record = fixed.audit_record.unwrap();
    assert_eq!(
        (record.actor.as_str(), record.action.as_str(), record.target_type.as_str(), record.target_id.as_str()),
        ("user:1", "LEDGER_RECALCULATE_BALANCE", "balance", "user:2/POINTS")
    );
    assert_eq!(
        (record.reason.as_str(), record.idempotency_key.as_str()),
        ("restore after a bad import", fix_key.as_str())
    );
    assert!(record.created_at.is_some());
    let (before, after) = (json(&record.before), json(&record.after));
    assert_eq!((before["available"].as_i64(), before["frozen"].as_i64()), (Some(999), Some(0)));
    assert_eq!((after["available"].as_i64(), after["frozen"].as_i64()), (Some(70), Some(30)));
    assert_eq!((after["account"].as_str(), after["asset_code"].as_str()), (Some("user:2"), Some("POINTS")));

    // A retry with the same key applies nothing: corrupt again, the retry leaves it so.
    corrupt(&app, "UPDATE balances SET available = 5 WHERE account = 'user:2' AND asset_code = 'POINTS'").await;
    let retry = admin.recalculate_balance(recalculate(&fix_key, 2, "restore after a bad import")).await.unwrap();
    let retry = retry.into_inner();
    assert!(retry.replayed);
    assert_eq!(retry.audit_record.unwrap(), record, "the original record");
    assert_eq!(balance(&mut admin, 2, "POINTS").await, (5, 30), "not applied twice");
    assert_eq!(audit_records(&mut admin, "").await.len(), 1);
    assert_error(
        admin.recalculate_balance(recalculate(&fix_key, 2, "another reason")).await,
        Code::AlreadyExists,
        "IDEMPOTENCY_KEY_REUSED",
    );

    // A new key is a new fix.
    let again = admin.recalculate_balance(recalculate(&new_key(), 2, "second corruption")).await.unwrap().into_inner();
    assert_eq!(json(&again.audit_record.unwrap().before)["available"].as_i64(), Some(5));
    assert_eq!(balance(&mut admin, 2, "POINTS").await, (70, 30));
    assert_consistent(&mut admin).await;

    // A balance with no row, posting or hold is not there to fix.
    assert_error(
        admin.recalculate_balance(recalculate(&new_key(), 9, "typo")).await,
        Code::NotFound,
        "BALANCE_NOT_FOUND",
    );
}

#[tokio::test]
async fn recalculate_balance_recreates_a_deleted_row() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    adjust(&mut admin, 2, "POINTS", 40).await.unwrap();
    corrupt(&app, "DELETE FROM balances WHERE account = 'user:2' AND asset_code = 'POINTS'").await;
    let fixed = admin.recalculate_balance(recalculate(&new_key(), 2, "row lost")).await.unwrap().into_inner();
    let record = fixed.audit_record.unwrap();
    assert_eq!(record.before, "null");
    assert_eq!(json(&record.after)["available"].as_i64(), Some(40));
    assert_eq!(balance(&mut admin, 2, "POINTS").await, (40, 0));
    assert_consistent(&mut admin).await;
}

#[tokio::test]
async fn force_release_hold_releases_an_orphaned_hold_once_with_its_audit_record() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    adjust(&mut admin, 2, "POINTS", 100).await.unwrap();
    // A hold whose owner (a market listing) no longer exists.
    let hold = pb::CreateHoldRequest {
        idempotency_key: new_key(),
        account: user(2),
        asset_code: "POINTS".into(),
        amount: 40,
        reference: "market:listing:0190aaaa-0000-7000-8000-000000000000".into(),
        ..Default::default()
    };
    let hold_id = app.service().await.create_hold(hold).await.unwrap().into_inner().hold.unwrap().id;
    assert_eq!(balance(&mut admin, 2, "POINTS").await, (60, 40));

    for mut caller in [app.user(2).await, app.service().await] {
        assert_error(
            caller.force_release_hold(force_release(&new_key(), &hold_id, "orphan")).await,
            Code::PermissionDenied,
            "PERMISSION_DENIED",
        );
    }
    let status = assert_error(
        admin.force_release_hold(force_release(&new_key(), &hold_id, "")).await,
        Code::InvalidArgument,
        "VALIDATION_FAILED",
    );
    assert_eq!(violated_fields(&status), ["reason"]);

    let fix_key = new_key();
    let reason = "listing deleted by a support script";
    let released = admin.force_release_hold(force_release(&fix_key, &hold_id, reason)).await.unwrap().into_inner();
    assert!(!released.replayed);
    assert_eq!(released.hold.unwrap().status, pb::HoldStatus::Released as i32);
    let entry = released.transaction.unwrap();
    assert_eq!(
        (entry.business_type.as_str(), entry.memo.as_str(), entry.actor.as_str(), entry.idempotency_key.as_str()),
        ("HOLD_FORCE_RELEASE", reason, "user:1", fix_key.as_str())
    );
    assert_eq!(balance(&mut admin, 2, "POINTS").await, (100, 0));
    assert_consistent(&mut admin).await;

    let record = released.audit_record.unwrap();
    assert_eq!(
        (record.actor.as_str(), record.action.as_str(), record.target_type.as_str(), record.target_id.as_str()),
        ("user:1", "LEDGER_FORCE_RELEASE_HOLD", "hold", hold_id.as_str())
    );
    assert_eq!((record.reason.as_str(), record.idempotency_key.as_str()), (reason, fix_key.as_str()));
    let (before, after) = (json(&record.before), json(&record.after));
    assert_eq!((before["status"].as_str(), after["status"].as_str()), (Some("open"), Some("released")));
    assert_eq!(after["resolution_entry_id"].as_str(), Some(entry.id.as_str()));
    assert_eq!(before["amount"].as_i64(), Some(40));

    // The retry replays: same entry, same record, nothing moves twice.
    let retry = admin.force_release_hold(force_release(&fix_key, &hold_id, reason)).await.unwrap().into_inner();
    assert!(retry.replayed);
    assert_eq!(retry.transaction.unwrap().id, entry.id);
    assert_eq!(retry.audit_record.unwrap(), record);
    assert_eq!(balance(&mut admin, 2, "POINTS").await, (100, 0));
    assert_eq!(audit_records(&mut admin, &hold_id).await, std::slice::from_ref(&record));

    // A new key finds the hold resolved; the key of one tool is not another's.
    assert_error(
        admin.force_release_hold(force_release(&new_key(), &hold_id, reason)).await,
        Code::FailedPrecondition,
        "HOLD_ALREADY_RESOLVED",
    );
    assert_error(
        admin.recalculate_balance(recalculate(&fix_key, 2, reason)).await,
        Code::AlreadyExists,
        "IDEMPOTENCY_KEY_REUSED",
    );
    assert_error(
        admin.force_release_hold(force_release(&new_key(), &new_key(), reason)).await,
        Code::NotFound,
        "HOLD_NOT_FOUND",
    );
    assert_eq!(audit_records(&mut admin, "").await.len(), 1, "refusals leave no record");
}

#[tokio::test]
async fn audit_records_are_listed_newest_first_by_admins_only() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    adjust(&mut admin, 2, "POINTS", 10).await.unwrap();
    adjust(&mut admin, 3, "POINTS", 10).await.unwrap();
    for (user_id, reason) in [(2, "first"), (3, "second"), (2, "third")] {
        admin.recalculate_balance(recalculate(&new_key(), user_id, reason)).await.unwrap();
    }
    let reasons = |records: &[AuditRecord]| records.iter().map(|record| record.reason.clone()).collect::<Vec<_>>();
    assert_eq!(reasons(&audit_records(&mut admin, "").await), ["third", "second", "first"]);
    assert_eq!(reasons(&audit_records(&mut admin, "user:2/POINTS").await), ["third", "first"]);

    let first_page = pb::ListAuditRecordsRequest { page_size: 2, ..Default::default() };
    let first_page = admin.list_audit_records(first_page).await.unwrap().into_inner();
    assert_eq!(reasons(&first_page.records), ["third", "second"]);
    let next =
        pb::ListAuditRecordsRequest { page_size: 2, page_token: first_page.next_page_token, ..Default::default() };
    let last_page = admin.list_audit_records(next).await.unwrap().into_inner();
    assert_eq!((reasons(&last_page.records), last_page.next_page_token.as_str()), (vec!["first".to_owned()], ""));

    assert_error(
        app.user(2).await.list_audit_records(pb::ListAuditRecordsRequest::default()).await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    let bad = pb::ListAuditRecordsRequest { page_size: 501, page_token: "x".into(), ..Default::default() };
    let status = assert_error(admin.list_audit_records(bad).await, Code::InvalidArgument, "VALIDATION_FAILED");
    assert_eq!(violated_fields(&status), ["page_size", "page_token"]);
}
