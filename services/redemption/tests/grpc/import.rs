//! ImportOrders (docs/import.md, "Redemption orders"): pending orders keep their code and
//! lock their item, so the code redeems through FulfillOrder; rows are idempotent by
//! external id and refused one by one.

use economy_kit::time::{Clock, to_timestamp};
use economy_proto::items::v1 as items;
use economy_proto::redemption::v1 as pb;
use economy_redemption::domain::Code;
use economy_testkit::assert_error;
use tonic::Code as GrpcCode;

use crate::common::*;

const PLAIN: &str = "ABCD-EFGH-JK23";

fn pending(app: &TestApp, external_id: &str, item: &str) -> pb::ImportOrderRow {
    let now = app.clock.now_millis();
    pb::ImportOrderRow {
        external_id: external_id.into(),
        item_instance_id: item.into(),
        owner_user_id: OWNER,
        status: pb::OrderStatus::Pending.into(),
        code: PLAIN.into(),
        created_at: Some(to_timestamp(now - 86_400_000)),
        expires_at: Some(to_timestamp(now + 86_400_000)),
        ..Default::default()
    }
}

async fn import(client: &mut Client, rows: Vec<pb::ImportOrderRow>) -> Vec<pb::ImportOrderResult> {
    client.import_orders(pb::ImportOrdersRequest { rows }).await.expect("answer").into_inner().results
}

#[tokio::test]
async fn an_imported_pending_order_locks_its_item_and_its_code_redeems() {
    let app = spawn_app().await;
    let item = app.grant("prize").await;
    let mut admin = app.admin().await;
    let results = import(&mut admin, vec![pending(&app, "R-1", &item)]).await;
    assert_eq!(results[0].outcome(), pb::ImportOutcome::Created);
    let locked = app.item(&item).await;
    assert_eq!(
        (locked.status(), locked.lock_holder.as_str()),
        (items::ItemStatus::Locked, format!("redemption:{}", results[0].order_id).as_str())
    );
    assert!(!app.stored_text().await.contains("ABCDEFGHJK23"));

    let fulfilled = fulfill(&mut app.staff().await, PLAIN).await.expect("answer");
    let order = fulfilled.order.expect("answer");
    assert_eq!((order.id.as_str(), order.status()), (results[0].order_id.as_str(), pb::OrderStatus::Fulfilled));
    assert_eq!(app.wait_item(&item, items::ItemStatus::Used).await.status(), items::ItemStatus::Used);
}

#[tokio::test]
async fn the_same_row_again_changes_nothing_and_other_rows_are_refused_alone() {
    let app = spawn_app().await;
    let item = app.grant("prize").await;
    let other_item = app.grant("prize").await;
    let mut admin = app.admin().await;
    let first = import(&mut admin, vec![pending(&app, "R-1", &item)]).await;
    let moved = pb::ImportOrderRow {
        expires_at: Some(to_timestamp(app.clock.now_millis() + 1)),
        ..pending(&app, "R-1", &item)
    };
    let same_item = pb::ImportOrderRow { code: "2345-6789-ABCD".into(), ..pending(&app, "R-2", &item) };
    let same_code = pending(&app, "R-3", &other_item);
    let again = import(&mut admin, vec![pending(&app, "R-1", &item), moved, same_item, same_code]).await;
    let outcomes: Vec<_> = again.iter().map(|result| (result.outcome(), result.reason.as_str())).collect();
    assert_eq!(
        outcomes,
        [
            (pb::ImportOutcome::Unchanged, ""),
            (pb::ImportOutcome::Refused, "IMPORT_ROW_CONFLICT"),
            (pb::ImportOutcome::Refused, "ORDER_ALREADY_OPEN"),
            (pb::ImportOutcome::Refused, "IMPORT_ROW_CONFLICT"),
        ]
    );
    assert_eq!(again[0].order_id, first[0].order_id);
    assert_eq!(app.item(&other_item).await.status(), items::ItemStatus::Available);
    let listed = admin.list_orders(pb::ListOrdersRequest { owner_user_id: OWNER, ..Default::default() }).await;
    assert_eq!(listed.expect("answer").into_inner().orders.len(), 1);
}

#[tokio::test]
async fn fulfilled_orders_are_recorded_and_bad_rows_named() {
    let app = spawn_app().await;
    let item = app.grant("prize").await;
    let mut admin = app.admin().await;
    let hash = Code::parse("2345-6789-ABCD").expect("answer").hash();
    let fulfilled = pb::ImportOrderRow {
        status: pb::OrderStatus::Fulfilled.into(),
        code: String::new(),
        code_sha256: hash,
        resolved_at: Some(to_timestamp(app.clock.now_millis() - 3_600_000)),
        redeemer_user_id: STAFF,
        ..pending(&app, "R-9", &item)
    };
    let bad = pb::ImportOrderRow {
        status: pb::OrderStatus::Cancelled.into(),
        code: "nope".into(),
        created_at: None,
        ..pending(&app, "R-10", &item)
    };
    let results = import(&mut admin, vec![fulfilled, bad]).await;
    assert_eq!(results[0].outcome(), pb::ImportOutcome::Created);
    assert_eq!((results[1].outcome(), results[1].reason.as_str()), (pb::ImportOutcome::Refused, "VALIDATION_FAILED"));
    for field in ["status", "code", "created_at"] {
        assert!(results[1].message.contains(field), "{}", results[1].message);
    }
    let order = admin.get_order(pb::GetOrderRequest { order_id: results[0].order_id.clone() }).await.expect("answer");
    let order = order.into_inner().order.expect("answer");
    assert_eq!((order.status(), order.redeemer_user_id), (pb::OrderStatus::Fulfilled, STAFF));
    assert_eq!(app.item(&item).await.status(), items::ItemStatus::Available);
    let again = fulfill(&mut app.staff().await, "2345-6789-ABCD").await;
    assert_error(again, GrpcCode::FailedPrecondition, "CODE_ALREADY_USED");
}

#[tokio::test]
async fn only_admins_import() {
    let app = spawn_app().await;
    let item = app.grant("prize").await;
    let refused =
        app.staff().await.import_orders(pb::ImportOrdersRequest { rows: vec![pending(&app, "R-1", &item)] }).await;
    assert_error(refused, GrpcCode::PermissionDenied, "PERMISSION_DENIED");
}

/// A batch's rows are imported side by side (docs/import.md, "Speed"): a bad row in it is
/// refused with nothing of it left, every other row lands with its item locked, and the
/// same batch again changes nothing.
#[tokio::test]
async fn a_batch_lands_every_good_row_and_nothing_of_a_bad_one() {
    const SYMBOLS: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";
    let app = spawn_app().await;
    let mut admin = app.admin().await;
    let mut rows = Vec::new();
    let mut granted = Vec::new();
    for n in 0..20 {
        let item = app.grant("prize").await;
        let code = format!("ABCDEFGHJK{}{}", char::from(SYMBOLS[n / 31]), char::from(SYMBOLS[n % 31]));
        rows.push(pb::ImportOrderRow { code, ..pending(&app, &format!("RB-{n}"), &item) });
        granted.push(item);
    }
    let missing = "0190a000-0000-7000-8000-000000000000";
    rows.insert(5, pb::ImportOrderRow { code: "ZZZZ-ZZZZ-ZZZZ".into(), ..pending(&app, "RB-bad", missing) });
    let first = import(&mut admin, rows.clone()).await;
    let outcomes: Vec<_> = first.iter().map(|result| (result.outcome(), result.reason.as_str())).collect();
    assert_eq!(outcomes[5], (pb::ImportOutcome::Refused, "ITEM_NOT_FOUND"));
    assert!(outcomes.iter().enumerate().all(|(at, outcome)| at == 5 || outcome.0 == pb::ImportOutcome::Created));

    let again = import(&mut admin, rows).await;
    for (at, (before, after)) in first.iter().zip(&again).enumerate() {
        let expected = if at == 5 { pb::ImportOutcome::Refused } else { pb::ImportOutcome::Unchanged };
        assert_eq!((after.outcome(), &after.order_id), (expected, &before.order_id));
    }
    for item in &granted {
        assert_eq!(app.item(item).await.status(), items::ItemStatus::Locked);
    }
    let request = pb::ListOrdersRequest { owner_user_id: OWNER, page_size: 100, ..Default::default() };
    let listed = admin.list_orders(request).await.expect("answer").into_inner().orders;
    assert_eq!(listed.len(), 20, "every good row once, nothing of the bad one");
}
