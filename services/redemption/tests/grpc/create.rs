//! CreateOrder, CancelOrder, ReissueCode, reads and their authorization.

use economy_kit::identity::{Caller, roles};
use economy_proto::items::v1 as items;
use economy_proto::redemption::v1 as pb;
use sqlx::Row;

use crate::common::*;

#[tokio::test]
async fn create_locks_the_item_and_stores_only_the_code_hash() {
    let app = spawn_app().await;
    let item = app.grant("prize").await;
    let created = create(&mut app.owner().await, &item).await.expect("created");
    let order = created.order.expect("order");
    assert_eq!(order.status, pb::OrderStatus::Pending as i32);
    assert_eq!(order.owner_user_id, OWNER);
    assert!(!created.replayed);
    let code = created.code;
    assert_eq!(code.len(), 14, "{code}");
    assert!(code.chars().enumerate().all(|(i, c)| if i == 4 || i == 9 {
        c == '-'
    } else {
        "23456789ABCDEFGHJKMNPQRSTUVWXYZ".contains(c)
    }));
    let locked = app.item(&item).await;
    assert_eq!(locked.status, items::ItemStatus::Locked as i32);
    assert_eq!(locked.lock_holder, format!("redemption:{}", order.id));

    // The database holds the SHA-256 of the normalized code and nothing else of it.
    let normalized = code.replace('-', "");
    let expected = hex_sha256(&normalized);
    let row = sqlx::query("SELECT code_hash FROM redemption_orders WHERE order_id = $1")
        .bind(&order.id)
        .fetch_one(app.store().await.db().pool())
        .await
        .expect("row");
    assert_eq!(row.get::<String, _>("code_hash"), expected);
    let stored = app.stored_text().await;
    assert!(!stored.contains(&normalized) && !stored.contains(&code), "the plaintext code is stored somewhere");
}

fn hex_sha256(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

#[tokio::test]
async fn only_owners_and_staff_create_and_only_redeemable_available_items() {
    let app = spawn_app().await;
    let item = app.grant("prize").await;
    let mut stranger = app.client(Caller::user(99, roles::USER)).await;
    assert_eq!(reason(create(&mut stranger, &item).await), "PERMISSION_DENIED");
    let badge = app.grant("badge").await;
    assert_eq!(reason(create(&mut app.owner().await, &badge).await), "ITEM_NOT_REDEEMABLE");
    assert_eq!(reason(create(&mut app.owner().await, "0190f0a4-2b9c-7d1e-8f00-0123456789ab").await), "ITEM_NOT_FOUND");
    create(&mut app.staff().await, &item).await.expect("staff may create for a customer");
    assert_eq!(reason(create(&mut app.owner().await, &item).await), "ORDER_ALREADY_OPEN");
}

#[tokio::test]
async fn a_retried_create_returns_the_same_order_and_checks_its_key() {
    let app = spawn_app().await;
    let item = app.grant("prize").await;
    let mut owner = app.owner().await;
    let request = pb::CreateOrderRequest { idempotency_key: new_key(), item_instance_id: item.clone() };
    let first = owner.create_order(request.clone()).await.expect("first").into_inner();
    let retry = owner.create_order(request.clone()).await.expect("retry").into_inner();
    assert!(retry.replayed);
    assert_eq!(retry.order.expect("order").id, first.order.expect("order").id);
    let other_item = app.grant("prize").await;
    let reused = pb::CreateOrderRequest { item_instance_id: other_item, ..request };
    assert_eq!(reason(owner.create_order(reused).await), "IDEMPOTENCY_KEY_REUSED");
}

#[tokio::test]
async fn cancel_unlocks_the_item_and_the_code_stops_working() {
    let app = spawn_app().await;
    let item = app.grant("prize").await;
    let mut owner = app.owner().await;
    let created = create(&mut owner, &item).await.expect("created");
    let order_id = created.order.expect("order").id;
    let cancel = pb::CancelOrderRequest {
        idempotency_key: new_key(),
        order_id: order_id.clone(),
        reason: "changed my mind".into(),
    };
    let cancelled = owner.cancel_order(cancel.clone()).await.expect("cancel").into_inner();
    assert_eq!(cancelled.order.expect("order").status, pb::OrderStatus::Cancelled as i32);
    assert!(owner.cancel_order(cancel.clone()).await.expect("retry").into_inner().replayed);
    let again = pb::CancelOrderRequest { idempotency_key: new_key(), ..cancel };
    assert_eq!(reason(owner.cancel_order(again).await), "ORDER_NOT_PENDING");
    assert_eq!(app.wait_item(&item, items::ItemStatus::Available).await.status, items::ItemStatus::Available as i32);
    assert_eq!(reason(fulfill(&mut app.staff().await, &created.code).await), "CODE_CANCELLED");
    create(&mut owner, &item).await.expect("the item can get a new order");
}

#[tokio::test]
async fn reissue_replaces_the_code() {
    let app = spawn_app().await;
    let item = app.grant("prize").await;
    let mut owner = app.owner().await;
    let created = create(&mut owner, &item).await.expect("created");
    let order_id = created.order.expect("order").id;
    let stranger = pb::ReissueCodeRequest { idempotency_key: new_key(), order_id: order_id.clone() };
    let mut staff = app.staff().await;
    assert_eq!(reason(staff.reissue_code(stranger.clone()).await), "PERMISSION_DENIED");
    let reissued = owner.reissue_code(stranger).await.expect("reissue").into_inner();
    assert_ne!(reissued.code, created.code);
    assert_eq!(reason(fulfill(&mut staff, &created.code).await), "CODE_NOT_FOUND");
    let fulfilled = fulfill(&mut staff, &reissued.code.to_lowercase()).await.expect("the new code works");
    assert_eq!(fulfilled.item_instance_id, item);
}

#[tokio::test]
async fn reads_are_limited_to_owners_and_staff() {
    let app = spawn_app().await;
    let (first, second) = (app.grant("prize").await, app.grant("prize").await);
    let mut owner = app.owner().await;
    let a = create(&mut owner, &first).await.expect("a").order.expect("order");
    let b = create(&mut owner, &second).await.expect("b").order.expect("order");
    let get = pb::GetOrderRequest { order_id: a.id.clone() };
    assert_eq!(owner.get_order(get.clone()).await.expect("get").into_inner().order, Some(a.clone()));
    let mut stranger = app.client(Caller::user(99, roles::USER)).await;
    assert_eq!(reason(stranger.get_order(get).await), "PERMISSION_DENIED");

    let page = |token: &str| pb::ListOrdersRequest {
        owner_user_id: OWNER,
        page_size: 1,
        page_token: token.into(),
        ..Default::default()
    };
    let first_page = owner.list_orders(page("")).await.expect("page 1").into_inner();
    assert_eq!(first_page.orders, vec![b.clone()]);
    let second_page = owner.list_orders(page(&first_page.next_page_token)).await.expect("page 2").into_inner();
    assert_eq!(second_page.orders, vec![a.clone()]);
    assert_eq!(second_page.next_page_token, "");
    assert_eq!(reason(stranger.list_orders(page("")).await), "PERMISSION_DENIED");
    let by_item = pb::ListOrdersRequest { item_instance_id: first.clone(), ..Default::default() };
    assert_eq!(app.staff().await.list_orders(by_item.clone()).await.expect("staff").into_inner().orders, vec![a]);
    assert!(stranger.list_orders(by_item).await.expect("own only").into_inner().orders.is_empty());
    let invalid = pb::ListOrdersRequest::default();
    assert_eq!(reason(owner.list_orders(invalid).await), "VALIDATION_FAILED");
}
