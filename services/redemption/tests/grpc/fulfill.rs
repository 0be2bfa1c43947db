//! FulfillOrder: exactly once, every refusal reason, idempotent retries, rate limiting.

use std::time::Duration;

use economy_kit::identity::{Caller, roles};
use economy_proto::items::v1 as items;
use economy_proto::redemption::v1 as pb;

use crate::common::*;

/// The value of `name{outcome="…"}` in this process's recorder (installed by the first
/// call; 0 before any).
fn counted(name: &str, outcome: &str) -> f64 {
    let series = format!("{name}{{outcome=\"{outcome}\"}} ");
    let rendered = economy_kit::metrics::recorder().expect("recorder").render();
    rendered.lines().find_map(|line| line.strip_prefix(&series)?.trim().parse().ok()).unwrap_or(0.0)
}

#[tokio::test]
async fn fulfil_consumes_the_item_once() {
    let orders = |outcome| counted("economy_redemption_orders_total", outcome);
    let fulfilments = |outcome| counted("economy_redemption_fulfilments_total", outcome);
    let before = [orders("created"), orders("fulfilled"), fulfilments("ok"), fulfilments("failed")];
    let app = spawn_app().await;
    let item = app.grant("prize").await;
    let code = create(&mut app.owner().await, &item).await.expect("created").code;
    let mut staff = app.staff().await;
    let request = pb::FulfillOrderRequest { idempotency_key: new_key(), code: format!(" {} ", code.to_lowercase()) };
    let fulfilled = staff.fulfill_order(request.clone()).await.expect("fulfilled").into_inner();
    let order = fulfilled.order.expect("order");
    assert_eq!(order.status, pb::OrderStatus::Fulfilled as i32);
    assert_eq!(order.redeemer_user_id, STAFF);
    assert!(order.resolved_at.is_some());
    assert_eq!(fulfilled.item_instance_id, item);
    assert!(!fulfilled.replayed);
    assert_eq!(app.wait_item(&item, items::ItemStatus::Used).await.status, items::ItemStatus::Used as i32);

    let retry = staff.fulfill_order(request).await.expect("retry").into_inner();
    assert!(retry.replayed);
    assert_eq!(retry.order.expect("order").id, order.id);
    assert_eq!(reason(fulfill(&mut staff, &code).await), "CODE_ALREADY_USED");
    // Counted (other tests of this process may add theirs): one order created and
    // fulfilled, one fulfilment done and one refused.
    let after = [orders("created"), orders("fulfilled"), fulfilments("ok"), fulfilments("failed")];
    assert!(after.iter().zip(before).all(|(after, before)| after - before >= 1.0), "{before:?} -> {after:?}");
    let events = app
        .items_admin()
        .await
        .list_item_events(items::ListItemEventsRequest { item_instance_id: item, ..Default::default() })
        .await
        .expect("events")
        .into_inner()
        .events;
    let used = events.iter().filter(|event| event.r#type == items::ItemEventType::Used as i32).count();
    assert_eq!(used, 1, "{events:?}");
}

#[tokio::test]
async fn refusals_name_the_reason() {
    let app = spawn_app().await;
    let mut staff = app.staff().await;
    assert_eq!(reason(fulfill(&mut staff, "ABCD-EFGH-JK2").await), "CODE_INVALID_FORMAT");
    assert_eq!(reason(fulfill(&mut staff, "ABCD-EFGH-JK0O").await), "CODE_INVALID_FORMAT");
    assert_eq!(reason(fulfill(&mut staff, "ABCD-EFGH-JK23").await), "CODE_NOT_FOUND");
    let item = app.grant("prize").await;
    let code = create(&mut app.owner().await, &item).await.expect("created").code;
    let mut user = app.client(Caller::user(OWNER, roles::USER)).await;
    assert_eq!(reason(fulfill(&mut user, &code).await), "PERMISSION_DENIED", "customers cannot fulfil");
    let missing_key = pb::FulfillOrderRequest { idempotency_key: String::new(), code };
    assert_eq!(reason(staff.fulfill_order(missing_key).await), "VALIDATION_FAILED");
}

#[tokio::test]
async fn expiry_applies_by_the_clock_with_or_without_the_job() {
    let app = spawn_with(|config| config.expiry_schedule = NEVER.into()).await;
    let item = app.grant("prize").await;
    let code = create(&mut app.owner().await, &item).await.expect("created").code;
    app.clock.advance(Duration::from_secs(30 * 24 * 3600));
    // The hourly job has not run: the order is still pending but its code has expired.
    assert_eq!(reason(fulfill(&mut app.staff().await, &code).await), "CODE_EXPIRED");
    assert_eq!(app.item(&item).await.status, items::ItemStatus::Locked as i32);

    let app = spawn_with(|config| config.expiry_schedule = "0 * * * *".into()).await;
    let item = app.grant("prize").await;
    let created = create(&mut app.owner().await, &item).await.expect("created");
    app.clock.advance(Duration::from_secs(30 * 24 * 3600 + 1));
    assert_eq!(app.wait_item(&item, items::ItemStatus::Available).await.status, items::ItemStatus::Available as i32);
    let get = pb::GetOrderRequest { order_id: created.order.expect("order").id };
    let order = app.owner().await.get_order(get).await.expect("get").into_inner().order.expect("order");
    assert_eq!(order.status, pb::OrderStatus::Expired as i32);
    assert_eq!(reason(fulfill(&mut app.staff().await, &created.code).await), "CODE_EXPIRED");
}

#[tokio::test]
async fn concurrent_fulfils_of_one_code_succeed_once() {
    let app = spawn_app().await;
    let item = app.grant("prize").await;
    let code = create(&mut app.owner().await, &item).await.expect("created").code;
    let mut attempts = Vec::new();
    for staff in 0..20 {
        let mut client = app.client(Caller::user(100 + staff, roles::MERCHANT_STAFF)).await;
        let code = code.clone();
        attempts.push(tokio::spawn(async move { fulfill(&mut client, &code).await }));
    }
    let mut wins = 0;
    for attempt in attempts {
        match attempt.await.expect("join") {
            Ok(_) => wins += 1,
            Err(status) => assert_eq!(economy_kit::error::reason(&status).as_deref(), Some("CODE_ALREADY_USED")),
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(app.wait_item(&item, items::ItemStatus::Used).await.status, items::ItemStatus::Used as i32);
}

#[tokio::test]
async fn repeated_failures_lock_the_caller_out() {
    let app = spawn_with(|config| config.failed_fulfils_per_minute = 3).await;
    let item = app.grant("prize").await;
    let code = create(&mut app.owner().await, &item).await.expect("created").code;
    let mut guesser = app.staff().await;
    for _ in 0..3 {
        assert_eq!(reason(fulfill(&mut guesser, "ABCD-EFGH-JK23").await), "CODE_NOT_FOUND");
    }
    // Three failures spend a budget of three: the fourth attempt is refused.
    assert_eq!(reason(fulfill(&mut guesser, "ABCD-EFGH-JK23").await), "FULFILL_RATE_LIMITED");
    assert_eq!(reason(fulfill(&mut guesser, &code).await), "FULFILL_RATE_LIMITED", "even a right guess is refused");
    let mut colleague = app.client(Caller::user(STAFF + 1, roles::MERCHANT_STAFF)).await;
    fulfill(&mut colleague, &code).await.expect("other callers are not limited");
}

#[tokio::test]
async fn one_scheduled_expiry_run_expires_more_orders_than_a_batch() {
    let app = spawn_with(|config| config.expiry_schedule = "0 * * * *".into()).await;
    let mut owner = app.owner().await;
    let mut items = Vec::new();
    // The job expires 100 orders per batch.
    for _ in 0..101 {
        let item = app.grant("prize").await;
        create(&mut owner, &item).await.expect("created");
        items.push(item);
    }
    // Many hourly times pass; only the latest runs (docs/operations.md, "Background jobs").
    app.clock.advance(Duration::from_secs(30 * 24 * 3600 + 1));
    for item in &items {
        assert_eq!(app.wait_item(item, items::ItemStatus::Available).await.status, items::ItemStatus::Available as i32);
    }
}
