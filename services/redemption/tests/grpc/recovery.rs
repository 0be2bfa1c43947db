//! Crashes and outages: the outbox delivers after Items was down; a creation stuck
//! while locking is failed and its possible lock undone.

use std::time::Duration;

use economy_proto::items::v1 as items;
use economy_proto::redemption::v1 as pb;

use crate::common::*;

#[tokio::test]
async fn the_outbox_consumes_the_item_once_items_is_back() {
    let mut app = spawn_app().await;
    let item = app.grant("prize").await;
    let code = create(&mut app.owner().await, &item).await.expect("created").code;
    app.stop_items().await;
    let fulfilled = fulfill(&mut app.staff().await, &code).await.expect("fulfil commits without Items");
    assert_eq!(fulfilled.order.expect("order").status, pb::OrderStatus::Fulfilled as i32);
    assert!(!outbox_delivered_within(&app, Duration::from_secs(1)).await, "nothing can be delivered yet");
    app.restart_items().await;
    // Past the delivery backoff (the service's clock is the test's).
    app.clock.advance(Duration::from_secs(600));
    assert!(outbox_delivered(&app).await, "the dispatcher delivers once Items is back");
    assert_eq!(app.item(&item).await.status, items::ItemStatus::Used as i32);
}

async fn outbox_delivered(app: &TestApp) -> bool {
    outbox_delivered_within(app, Duration::from_secs(20)).await
}

async fn outbox_delivered_within(app: &TestApp, limit: Duration) -> bool {
    use sqlx::Row;
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM redemption_outbox WHERE status <> 'delivered'")
            .fetch_one(app.store().await.db().pool())
            .await
            .expect("count");
        if row.get::<i64, _>("n") == 0 {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_stale_creation_is_failed_and_its_lock_undone() {
    let app = spawn_with(|config| config.locking_timeout_secs = 60).await;
    let item = app.grant("prize").await;
    let order_id = crashed_creation(&app, &item, &new_key(), true).await;
    assert_eq!(app.item(&item).await.status, items::ItemStatus::Locked as i32);
    app.clock.advance(Duration::from_secs(61));
    assert_eq!(app.wait_item(&item, items::ItemStatus::Available).await.status, items::ItemStatus::Available as i32);
    assert!(outbox_delivered(&app).await);
    let get = pb::GetOrderRequest { order_id };
    let order = app.owner().await.get_order(get).await.expect("get").into_inner().order.expect("order");
    assert_eq!(order.status, pb::OrderStatus::Failed as i32);
    create(&mut app.owner().await, &item).await.expect("the item can be redeemed again");
}

#[tokio::test]
async fn a_retry_resumes_an_interrupted_creation() {
    let app = spawn_app().await;
    let item = app.grant("prize").await;
    let key = new_key();
    let order_id = crashed_creation(&app, &item, &key, false).await;
    let request = pb::CreateOrderRequest { idempotency_key: key, item_instance_id: item.clone() };
    let resumed = app.owner().await.create_order(request).await.expect("resumed").into_inner();
    assert!(resumed.replayed);
    assert_eq!(resumed.code.len(), 14, "a fresh code: the first one was never shown");
    assert_eq!(resumed.order.expect("order").id, order_id);
    assert_eq!(app.item(&item).await.lock_holder, format!("redemption:{order_id}"));
    fulfill(&mut app.staff().await, &resumed.code).await.expect("the code works");
}
