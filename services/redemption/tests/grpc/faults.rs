//! Trustworthy under faults: a retry is answered from its key before the clock, the
//! order's state or the caller's lockout; a retried creation of a pending order replaces
//! its code; expiry applies from its instant; unknown enum numbers are refused; an outbox
//! row whose dispatcher died is delivered again within seconds.

use std::time::Duration;

use economy_kit::outbox::{LEASE_MS, RENEW_EVERY};
use economy_kit::time::Clock;
use economy_proto::items::v1 as items;
use economy_proto::redemption::v1 as pb;
use economy_redemption::domain::Code;
use sqlx::Row;

use crate::common::*;

/// Longer than any order's lifetime (30 days).
const PAST_EXPIRY: Duration = Duration::from_secs(30 * 24 * 3600 + 1);

fn create_request(key: &str, item: &str) -> pb::CreateOrderRequest {
    pb::CreateOrderRequest { idempotency_key: key.into(), item_instance_id: item.into() }
}

fn sha256_of(code: &str) -> String {
    Code::parse(code).expect("a code").hash()
}

async fn stored_hash(app: &TestApp, order_id: &str) -> String {
    sqlx::query("SELECT code_hash FROM redemption_orders WHERE order_id = $1")
        .bind(order_id)
        .fetch_one(app.store().await.db().pool())
        .await
        .expect("order row")
        .get("code_hash")
}

async fn order_status(app: &TestApp, order_id: &str) -> i32 {
    let get = pb::GetOrderRequest { order_id: order_id.into() };
    app.staff().await.get_order(get).await.expect("get").into_inner().order.expect("order").status
}

/// The id of the order's (only) outbox row.
async fn outbox_id(app: &TestApp, order_id: &str) -> String {
    sqlx::query("SELECT id FROM redemption_outbox WHERE order_id = $1")
        .bind(order_id)
        .fetch_one(app.store().await.db().pool())
        .await
        .expect("outbox row")
        .get("id")
}

async fn outbox_status(app: &TestApp, id: &str) -> String {
    sqlx::query("SELECT status FROM redemption_outbox WHERE id = $1")
        .bind(id)
        .fetch_one(app.store().await.db().pool())
        .await
        .expect("outbox row")
        .get("status")
}

#[tokio::test]
async fn a_retried_create_of_a_pending_order_replaces_its_code() {
    let app = spawn_app().await;
    let item = app.grant("prize").await;
    let mut owner = app.owner().await;
    let key = new_key();
    let first = owner.create_order(create_request(&key, &item)).await.expect("first").into_inner();
    let order_id = first.order.expect("order").id;
    // The same body key under a new gateway key: the service sees the same order key.
    let retry = owner.create_order(create_request(&key, &item)).await.expect("retry").into_inner();
    assert!(retry.replayed);
    let order = retry.order.expect("order");
    assert_eq!((order.id.as_str(), order.status), (order_id.as_str(), pb::OrderStatus::Pending as i32));
    assert_eq!(retry.code.len(), 14, "a fresh code: {}", retry.code);
    assert_ne!(retry.code, first.code);
    assert_eq!(stored_hash(&app, &order_id).await, sha256_of(&retry.code), "only the new code's hash is stored");
    let stored = app.stored_text().await;
    assert!(!stored.contains(&retry.code) && !stored.contains(&retry.code.replace('-', "")));

    let mut staff = app.staff().await;
    assert_eq!(reason(fulfill(&mut staff, &first.code).await), "CODE_NOT_FOUND", "the old code stopped working");
    let fulfilled = fulfill(&mut staff, &retry.code).await.expect("the new code works");
    assert_eq!(fulfilled.item_instance_id, item);

    // Once fulfilled, a retry returns the order as it is, without a code.
    let late = owner.create_order(create_request(&key, &item)).await.expect("late retry").into_inner();
    assert!(late.replayed);
    assert_eq!(late.code, "");
    assert_eq!(late.order.expect("order").status, pb::OrderStatus::Fulfilled as i32);
}

#[tokio::test]
async fn a_retried_create_answers_how_its_order_ended() {
    let app = spawn_with(|config| config.expiry_schedule = NEVER.into()).await;
    let mut owner = app.owner().await;

    let cancelled_item = app.grant("prize").await;
    let key = new_key();
    let created = owner.create_order(create_request(&key, &cancelled_item)).await.expect("created").into_inner();
    let cancel = pb::CancelOrderRequest {
        idempotency_key: new_key(),
        order_id: created.order.expect("order").id,
        reason: String::new(),
    };
    owner.cancel_order(cancel).await.expect("cancelled");
    assert_eq!(reason(owner.create_order(create_request(&key, &cancelled_item)).await), "CODE_CANCELLED");

    // Past its expiry with the hourly job not run yet: expired all the same, no new code.
    let expiring_item = app.grant("prize").await;
    let key = new_key();
    let created = owner.create_order(create_request(&key, &expiring_item)).await.expect("created").into_inner();
    let order_id = created.order.expect("order").id;
    let hash = stored_hash(&app, &order_id).await;
    app.clock.advance(PAST_EXPIRY);
    assert_eq!(reason(owner.create_order(create_request(&key, &expiring_item)).await), "CODE_EXPIRED");
    assert_eq!(stored_hash(&app, &order_id).await, hash, "no code was issued");
}

#[tokio::test]
async fn a_retried_create_of_a_failed_order_is_refused() {
    let app = spawn_with(|config| config.locking_timeout_secs = 60).await;
    let item = app.grant("prize").await;
    // A creation that stopped after storing its order (a crash, a timeout).
    let key = new_key();
    let order_id = crashed_creation(&app, &item, &key, false).await;
    app.clock.advance(Duration::from_secs(61));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while order_status(&app, &order_id).await != pb::OrderStatus::Failed as i32 {
        assert!(tokio::time::Instant::now() < deadline, "the stale-creation job never failed the order");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let retry = app.owner().await.create_order(create_request(&key, &item)).await;
    let status = retry.expect_err("a failed order is not OK");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert_eq!(economy_kit::error::reason(&status).as_deref(), Some("ORDER_FAILED"));
}

#[tokio::test]
async fn retried_fulfils_and_cancels_are_answered_from_their_keys_first() {
    let app = spawn_with(|config| {
        config.expiry_schedule = NEVER.into();
        config.failed_fulfils_per_minute = 3;
    })
    .await;
    let mut owner = app.owner().await;
    let (fulfilled_item, cancelled_item) = (app.grant("prize").await, app.grant("prize").await);
    let code = create(&mut owner, &fulfilled_item).await.expect("created").code;
    let cancelled = create(&mut owner, &cancelled_item).await.expect("created").order.expect("order");

    let mut staff = app.staff().await;
    let fulfil = pb::FulfillOrderRequest { idempotency_key: new_key(), code: code.clone() };
    let first = staff.fulfill_order(fulfil.clone()).await.expect("fulfilled").into_inner();
    let cancel = pb::CancelOrderRequest { idempotency_key: new_key(), order_id: cancelled.id, reason: "gift".into() };
    owner.cancel_order(cancel.clone()).await.expect("cancelled");

    // The staff member is locked out, and every order is past its expiry.
    for _ in 0..3 {
        assert_eq!(reason(fulfill(&mut staff, "ABCD-EFGH-JK23").await), "CODE_NOT_FOUND");
    }
    assert_eq!(reason(fulfill(&mut staff, "ABCD-EFGH-JK23").await), "FULFILL_RATE_LIMITED");
    app.clock.advance(PAST_EXPIRY);

    let retry = staff.fulfill_order(fulfil.clone()).await.expect("the retry is answered from its key").into_inner();
    assert!(retry.replayed);
    assert_eq!(retry.order, first.order);
    let other_code = pb::FulfillOrderRequest { code: "ABCD-EFGH-JK23".into(), ..fulfil };
    assert_eq!(reason(staff.fulfill_order(other_code).await), "IDEMPOTENCY_KEY_REUSED");
    let retry = owner.cancel_order(cancel).await.expect("the retry is answered from its key").into_inner();
    assert!(retry.replayed);
    assert_eq!(retry.order.expect("order").status, pb::OrderStatus::Cancelled as i32);
}

#[tokio::test]
async fn a_retried_reissue_on_behalf_is_answered_from_its_key_after_expiry() {
    let app = spawn_with(|config| config.expiry_schedule = NEVER.into()).await;
    let item = app.grant("prize").await;
    let order_id = create(&mut app.owner().await, &item).await.expect("created").order.expect("order").id;
    let request = pb::ReissueCodeOnBehalfRequest {
        idempotency_key: new_key(),
        order_id: order_id.clone(),
        reason: "lost the e-mail".into(),
    };
    let mut admin = app.admin().await;
    let first = admin.reissue_code_on_behalf(request.clone()).await.expect("reissued").into_inner();
    app.clock.advance(PAST_EXPIRY);
    let retry = admin.reissue_code_on_behalf(request).await.expect("replayed").into_inner();
    assert!(retry.replayed);
    assert_eq!((retry.code.as_str(), retry.audit_record), ("", first.audit_record));
    let late = pb::ReissueCodeOnBehalfRequest { idempotency_key: new_key(), order_id, reason: "again".into() };
    assert_eq!(reason(admin.reissue_code_on_behalf(late).await), "CODE_EXPIRED", "a new key sees the expiry");
}

#[tokio::test]
async fn the_eleventh_attempt_after_ten_failures_is_refused() {
    let app = spawn_app().await;
    assert_eq!(economy_redemption::RedemptionConfig::default().failed_fulfils_per_minute, 10);
    let item = app.grant("prize").await;
    let code = create(&mut app.owner().await, &item).await.expect("created").code;
    let mut guesser = app.staff().await;
    for attempt in 1..=10 {
        assert_eq!(reason(fulfill(&mut guesser, "ABCD-EFGH-JK23").await), "CODE_NOT_FOUND", "attempt {attempt}");
    }
    assert_eq!(reason(fulfill(&mut guesser, &code).await), "FULFILL_RATE_LIMITED", "even the right code");
}

#[tokio::test]
async fn an_order_past_its_expiry_neither_fulfils_nor_cancels_before_the_job_runs() {
    let app = spawn_with(|config| config.expiry_schedule = NEVER.into()).await;
    let mut owner = app.owner().await;
    let (first, second) = (app.grant("prize").await, app.grant("prize").await);
    let code = create(&mut owner, &first).await.expect("created").code;
    let order_id = create(&mut owner, &second).await.expect("created").order.expect("order").id;
    app.clock.advance(PAST_EXPIRY);
    assert_eq!(reason(fulfill(&mut app.staff().await, &code).await), "CODE_EXPIRED");
    assert_eq!(app.item(&first).await.status, items::ItemStatus::Locked as i32, "the job has not run");

    let cancel =
        pb::CancelOrderRequest { idempotency_key: new_key(), order_id: order_id.clone(), reason: String::new() };
    let refused = owner.cancel_order(cancel).await.expect_err("expired, not cancellable");
    assert_eq!(economy_kit::error::reason(&refused).as_deref(), Some("ORDER_NOT_PENDING"));
    assert_eq!(order_status(&app, &order_id).await, pb::OrderStatus::Expired as i32, "expired at once");
    assert_eq!(app.wait_item(&second, items::ItemStatus::Available).await.status, items::ItemStatus::Available as i32);
}

#[tokio::test]
async fn an_order_past_its_expiry_does_not_block_a_new_one() {
    let app = spawn_with(|config| config.expiry_schedule = NEVER.into()).await;
    let item = app.grant("prize").await;
    let mut owner = app.owner().await;
    let lapsed = create(&mut owner, &item).await.expect("created").order.expect("order").id;
    app.clock.advance(PAST_EXPIRY);
    let created = create(&mut owner, &item).await.expect("the item is free again");
    let order = created.order.expect("order");
    assert_ne!(order.id, lapsed);
    assert_eq!(order.status, pb::OrderStatus::Pending as i32);
    assert_eq!(order_status(&app, &lapsed).await, pb::OrderStatus::Expired as i32);
    assert_eq!(app.item(&item).await.lock_holder, format!("redemption:{}", order.id));
    fulfill(&mut app.staff().await, &created.code).await.expect("the new code works");
}

#[tokio::test]
async fn unknown_enum_numbers_and_blank_ids_are_refused() {
    let app = spawn_app().await;
    let mut staff = app.staff().await;
    for status in [99, -1, 7] {
        let request = pb::ListOrdersRequest { owner_user_id: OWNER, status, ..Default::default() };
        let refused = staff.list_orders(request).await.expect_err("unknown status");
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        assert_eq!(economy_kit::error::violated_fields(&refused), ["status"], "{status}");
    }
    let known = pb::ListOrdersRequest { status: pb::OrderStatus::Pending as i32, ..Default::default() };
    staff.list_orders(known).await.expect("a known status lists");
    let blank_item = pb::ListOrdersRequest { item_instance_id: "  ".into(), ..Default::default() };
    assert_eq!(reason(staff.list_orders(blank_item).await), "VALIDATION_FAILED");
    let blank = app.owner().await.create_order(create_request(&new_key(), "   ")).await;
    let refused = blank.expect_err("blank item");
    assert_eq!(economy_kit::error::violated_fields(&refused), ["item_instance_id"]);
}

/// An order cancelled while Items is down: its unlock is owed, backing off. Returns the
/// item and the order.
async fn cancelled_while_items_down(app: &mut TestApp) -> (String, String) {
    let item = app.grant("prize").await;
    let order_id = create(&mut app.owner().await, &item).await.expect("created").order.expect("order").id;
    app.stop_items().await;
    let cancel =
        pb::CancelOrderRequest { idempotency_key: new_key(), order_id: order_id.clone(), reason: String::new() };
    app.owner().await.cancel_order(cancel).await.expect("cancel commits without Items");
    (item, order_id)
}

#[tokio::test]
async fn a_row_whose_dispatcher_died_is_delivered_again_within_seconds() {
    let mut app = spawn_app().await;
    let (item, order_id) = cancelled_while_items_down(&mut app).await;
    let row = outbox_id(&app, &order_id).await;
    // A dispatcher claims the row, then its process is killed mid-delivery.
    let store = app.store().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let dead_lease = loop {
        if let Some(lease) = store.claim_outbox(&row, app.clock.now_millis()).await.expect("claim") {
            break lease;
        }
        assert!(tokio::time::Instant::now() < deadline, "the row was never free to claim");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    app.restart_items().await;
    // A few seconds later (past the short lease and the first backoff) another takes it.
    app.clock.advance(Duration::from_millis(u64::try_from(LEASE_MS).expect("positive") + 1_000));
    assert_eq!(app.wait_item(&item, items::ItemStatus::Available).await.status, items::ItemStatus::Available as i32);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while outbox_status(&app, &row).await != "delivered" {
        assert!(tokio::time::Instant::now() < deadline, "the row was never finished");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The dead dispatcher's lease is void: were it to wake up, it could not end the row.
    let late = store.finish_outbox(&dead_lease, false, "LATE", app.clock.now_millis()).await.expect("finish");
    assert!(!late);
    assert_eq!(outbox_status(&app, &row).await, "delivered");
}

#[tokio::test]
async fn a_delivery_in_flight_keeps_its_lease() {
    let mut app = spawn_with(|config| config.outbox_interval_secs = 3600).await;
    let (_, order_id) = cancelled_while_items_down(&mut app).await;
    let row = outbox_id(&app, &order_id).await;
    let store = app.store().await;
    let lease = store.claim_outbox(&row, app.clock.now_millis()).await.expect("claim").expect("free");
    let clock = app.clock.clone();
    // A delivery that outlives the lease it started with (clock-wise).
    let slow = async {
        clock.advance(Duration::from_millis(u64::try_from(LEASE_MS).expect("positive") - 1_000));
        tokio::time::sleep(RENEW_EVERY + Duration::from_millis(300)).await;
    };
    let ((), renewed) = store.hold_outbox(lease.clone(), clock.as_ref(), slow).await;
    assert!(renewed.until > lease.until, "renewed while in flight: {renewed:?} after {lease:?}");
    // Past the first lease, another dispatcher still cannot take the row.
    clock.advance(Duration::from_secs(2));
    assert!(clock.now_millis() > lease.until);
    assert_eq!(store.claim_outbox(&row, clock.now_millis()).await.expect("claim"), None);
    assert!(store.retry_outbox(&renewed, clock.now_millis(), "ITEMS_UNAVAILABLE").await.expect("retry"));
}
