//! Concurrent writers never overdraw a balance.

use economy_proto::ledger::v1 as pb;
use tokio::task::JoinSet;

use crate::common::*;

#[tokio::test]
async fn fifty_concurrent_debits_never_overdraw() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    adjust(&mut admin, 2, "POINTS", 300).await.unwrap();
    let mut debits = JoinSet::new();
    for index in 0..50 {
        let mut client = app.admin().await;
        debits.spawn(async move {
            let request = pb::PostTransactionRequest {
                idempotency_key: format!("debit-{index}"),
                postings: vec![posting(user(2), "POINTS", -10), posting(user(3), "POINTS", 10)],
                ..Default::default()
            };
            client.post_transaction(request).await
        });
    }
    assert_eq!(successes(debits, "INSUFFICIENT_BALANCE").await, 30);
    assert_eq!(balance(&mut admin, 2, "POINTS").await, (0, 0));
    assert_eq!(balance(&mut admin, 3, "POINTS").await, (300, 0));

    // The final balance equals the sum of the successful postings.
    let history = admin
        .list_transactions(pb::ListTransactionsRequest { account: user(3), page_size: 500, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    let credited: i64 = history
        .transactions
        .iter()
        .flat_map(|entry| &entry.postings)
        .filter(|leg| leg.account == user(3))
        .map(|leg| leg.amount)
        .sum();
    assert_eq!(credited, 300);
    assert_consistent(&mut admin).await;
}

#[tokio::test]
async fn concurrent_retries_of_one_key_apply_once() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    let mut retries = JoinSet::new();
    for _ in 0..20 {
        let mut client = app.admin().await;
        retries.spawn(async move { client.adjust_balance(adjust_request(2, "POINTS", 25, "same-key")).await });
    }
    let mut fresh = 0;
    while let Some(result) = retries.join_next().await {
        if !result.unwrap().unwrap().into_inner().replayed {
            fresh += 1;
        }
    }
    assert_eq!(fresh, 1);
    assert_eq!(balance(&mut admin, 2, "POINTS").await, (25, 0));
    assert_consistent(&mut admin).await;
}

#[tokio::test]
async fn concurrent_first_writes_of_an_asset_all_apply() {
    // Every credit also debits SYSTEM_ISSUANCE, whose balance row does not exist yet: the
    // writers race to create it (on PostgreSQL one commits it between another's UPDATE and
    // its re-read) and none may fail for it.
    let app = spawn_app().await;
    let admin = app.admin_with_catalog().await;
    drop(admin);
    let mut credits = JoinSet::new();
    for user_id in 100..132 {
        let mut client = app.admin().await;
        credits.spawn(async move {
            client.adjust_balance(adjust_request(user_id, "DIAMOND", 5, &format!("first-{user_id}"))).await
        });
    }
    while let Some(result) = credits.join_next().await {
        result.unwrap().expect("every first write applies");
    }
    let mut admin = app.admin().await;
    for user_id in 100..132 {
        assert_eq!(balance(&mut admin, user_id, "DIAMOND").await, (5, 0));
    }
}

#[tokio::test]
async fn concurrent_credits_at_the_i64_limit_apply_exactly_once() {
    // Group-committed writes carry balances as JSON on SQLite: the extremes must survive
    // exactly, and only one of the racing credits fits below i64::MAX.
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    adjust(&mut admin, 2, "POINTS", i64::MAX - 10).await.unwrap();
    let mut credits = JoinSet::new();
    for index in 0..8 {
        let mut client = app.admin().await;
        credits.spawn(
            async move { client.adjust_balance(adjust_request(2, "POINTS", 10, &format!("top-{index}"))).await },
        );
    }
    assert_eq!(successes(credits, "BALANCE_OVERFLOW").await, 1);
    assert_eq!(balance(&mut admin, 2, "POINTS").await, (i64::MAX, 0));
    assert_consistent(&mut admin).await;
}

/// How many of the racing calls succeeded; every other one must be refused with `reason`.
async fn successes<T: 'static>(mut calls: JoinSet<Result<T, tonic::Status>>, reason: &str) -> usize {
    let mut succeeded = 0;
    while let Some(result) = calls.join_next().await {
        match result.unwrap() {
            Ok(_) => succeeded += 1,
            Err(status) => assert_eq!(economy_kit::error::reason(&status).as_deref(), Some(reason), "{status:?}"),
        }
    }
    succeeded
}
