//! Concurrent writers on one instance: exactly one change wins each race.

use economy_proto::items::v1 as pb;
use pb::ItemEventType as E;
use tokio::task::JoinSet;

use crate::common::*;

#[tokio::test]
async fn twenty_concurrent_locks_one_winner() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    let item = grant(&mut admin, 2, "voucher").await;
    let mut locks = JoinSet::new();
    for index in 0..20 {
        let (mut client, id) = (app.service("market").await, item.id.clone());
        locks.spawn(async move {
            let holder = format!("market:listing:{index}");
            (holder.clone(), client.lock_item(lock_request(&id, &holder)).await)
        });
    }
    let mut winners = Vec::new();
    while let Some(result) = locks.join_next().await {
        match result.unwrap() {
            (holder, Ok(_)) => winners.push(holder),
            (_, Err(status)) => {
                assert_eq!(economy_kit::error::reason(&status).as_deref(), Some("ITEM_LOCKED_BY_OTHER"), "{status:?}");
            }
        }
    }
    assert_eq!(winners.len(), 1);
    let current = get(&mut admin, &item.id).await;
    assert_eq!((current.lock_holder.as_str(), current.version), (winners[0].as_str(), 2));
    assert_eq!(event_types(&mut admin, &item.id).await, [E::Granted, E::Locked]);
}

#[tokio::test]
async fn concurrent_transfers_and_consumes_by_the_holder_apply_once() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    let mut market = app.service("market").await;
    let item = grant(&mut admin, 2, "voucher").await;
    lock(&mut market, &item.id, MARKET).await;
    let mut writes = JoinSet::new();
    for index in 0..20 {
        let (mut client, id) = (app.service("market").await, item.id.clone());
        writes.spawn(async move {
            if index % 2 == 0 {
                client.transfer_item(transfer_request(&id, MARKET, 10 + index)).await.map(|_| ())
            } else {
                client.consume_item(consume_request(&id, MARKET)).await.map(|_| ())
            }
        });
    }
    let mut succeeded = 0;
    while let Some(result) = writes.join_next().await {
        match result.unwrap() {
            Ok(()) => succeeded += 1,
            Err(status) => {
                assert_eq!(economy_kit::error::reason(&status).as_deref(), Some("ITEM_NOT_LOCKED"), "{status:?}");
            }
        }
    }
    assert_eq!(succeeded, 1);
    assert_eq!(events(&mut admin, &item.id).await.len(), 3);
}

#[tokio::test]
async fn concurrent_retries_of_one_change_apply_once() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    let item = grant(&mut admin, 2, "voucher").await;
    let request = lock_request(&item.id, MARKET);
    let mut retries = JoinSet::new();
    for _ in 0..20 {
        let (mut client, request) = (app.service("market").await, request.clone());
        retries.spawn(async move { client.lock_item(request).await });
    }
    let mut fresh = 0;
    while let Some(result) = retries.join_next().await {
        fresh += usize::from(!result.unwrap().unwrap().into_inner().replayed);
    }
    assert_eq!(fresh, 1);
    assert_eq!(event_types(&mut admin, &item.id).await, [E::Granted, E::Locked]);
}
