//! Adjustments, transactions, idempotency, balances and history.

use economy_kit::error::violated_fields;
use economy_proto::ledger::v1 as pb;
use tonic::Code;

use crate::common::*;

#[tokio::test]
async fn adjustments_credit_debit_and_replay() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    let request = adjust_request(2, "POINTS", 1000, "adjust-1");
    let first = admin.adjust_balance(request.clone()).await.unwrap().into_inner();
    assert!(!first.replayed);
    let entry = first.transaction.clone().unwrap();
    assert_eq!(
        (entry.business_type.as_str(), entry.memo.as_str(), entry.actor.as_str()),
        ("ADMIN_ADJUST", "test", "user:1")
    );

    let replay = admin.adjust_balance(request.clone()).await.unwrap().into_inner();
    assert!(replay.replayed);
    assert_eq!(replay.transaction, first.transaction);
    assert_eq!(balance(&mut admin, 2, "POINTS").await, (1000, 0));

    let reused = pb::AdjustBalanceRequest { amount: 999, ..request };
    assert_error(admin.adjust_balance(reused).await, Code::AlreadyExists, "IDEMPOTENCY_KEY_REUSED");

    adjust(&mut admin, 2, "POINTS", -400).await.unwrap();
    assert_error(adjust(&mut admin, 2, "POINTS", -601).await, Code::FailedPrecondition, "INSUFFICIENT_BALANCE");
    assert_error(adjust(&mut admin, 2, "GOLD", 5).await, Code::NotFound, "ASSET_NOT_FOUND");
    assert_eq!(balance(&mut admin, 2, "POINTS").await, (600, 0));
    assert_eq!(balance_of(&mut admin, system("SYSTEM_ISSUANCE"), "POINTS").await, (-600, 0));
    assert_consistent(&mut admin).await;
}

#[tokio::test]
async fn a_failed_write_leaves_its_key_free() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    let debit = adjust_request(2, "POINTS", -50, "retry-later");
    assert_error(admin.adjust_balance(debit.clone()).await, Code::FailedPrecondition, "INSUFFICIENT_BALANCE");
    adjust(&mut admin, 2, "POINTS", 50).await.unwrap();
    assert!(!admin.adjust_balance(debit).await.unwrap().into_inner().replayed);
    assert_eq!(balance(&mut admin, 2, "POINTS").await, (0, 0));
}

#[tokio::test]
async fn bad_requests_name_every_field() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    let request = pb::AdjustBalanceRequest { amount: -5, user_id: 0, reason: String::new(), ..Default::default() };
    let status = assert_error(admin.adjust_balance(request).await, Code::InvalidArgument, "VALIDATION_FAILED");
    assert_eq!(violated_fields(&status), ["idempotency_key", "user_id", "asset_code", "amount", "reason", "direction"]);
    let overflow_key = adjust_request(2, "POINTS", 1, &"k".repeat(129));
    assert_error(admin.adjust_balance(overflow_key).await, Code::InvalidArgument, "VALIDATION_FAILED");
}

#[tokio::test]
async fn transfers_move_balances_atomically() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    adjust(&mut admin, 2, "POINTS", 500).await.unwrap();
    let transfer = |amount: i64| pb::PostTransactionRequest {
        idempotency_key: new_key(),
        business_type: "TRANSFER".into(),
        correlation_id: "order-1".into(),
        postings: vec![posting(user(2), "POINTS", -amount), posting(user(3), "POINTS", amount)],
        ..Default::default()
    };
    let entry = admin.post_transaction(transfer(200)).await.unwrap().into_inner().transaction.unwrap();
    assert_eq!(entry.correlation_id, "order-1");
    assert_error(admin.post_transaction(transfer(301)).await, Code::FailedPrecondition, "INSUFFICIENT_BALANCE");
    assert_eq!(balance(&mut admin, 2, "POINTS").await, (300, 0));
    assert_eq!(balance(&mut admin, 3, "POINTS").await, (200, 0));

    let unbalanced = pb::PostTransactionRequest {
        postings: vec![posting(user(2), "POINTS", -10), posting(user(3), "POINTS", 9)],
        ..transfer(0)
    };
    assert_error(admin.post_transaction(unbalanced).await, Code::InvalidArgument, "UNBALANCED_TRANSACTION");
    let unknown_system = pb::PostTransactionRequest {
        postings: vec![posting(system("SYSTEM_NOPE"), "POINTS", -10), posting(user(3), "POINTS", 10)],
        ..transfer(0)
    };
    assert_error(admin.post_transaction(unknown_system).await, Code::NotFound, "ACCOUNT_NOT_FOUND");
    let bad_type = pb::PostTransactionRequest { business_type: "lower".into(), ..transfer(1) };
    assert_error(admin.post_transaction(bad_type).await, Code::InvalidArgument, "VALIDATION_FAILED");
    let empty = pb::PostTransactionRequest { postings: vec![], ..transfer(1) };
    assert_error(admin.post_transaction(empty).await, Code::InvalidArgument, "VALIDATION_FAILED");

    // A configured extra system account may go negative; users may not.
    let reward = pb::PostTransactionRequest {
        postings: vec![posting(system("SYSTEM_REWARDS"), "DIAMOND", -70), posting(user(4), "DIAMOND", 70)],
        ..transfer(0)
    };
    admin.post_transaction(reward).await.unwrap();
    assert_eq!(balance_of(&mut admin, system("SYSTEM_REWARDS"), "DIAMOND").await, (-70, 0));
    assert_consistent(&mut admin).await;
}

#[tokio::test]
async fn balances_cannot_overflow() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    adjust(&mut admin, 2, "POINTS", i64::MAX).await.unwrap();
    assert_error(adjust(&mut admin, 2, "POINTS", 1).await, Code::OutOfRange, "BALANCE_OVERFLOW");
    // SYSTEM_ISSUANCE is at -i64::MAX: one more mint to anyone would pass i64::MIN.
    assert_error(adjust(&mut admin, 3, "POINTS", 2).await, Code::OutOfRange, "BALANCE_OVERFLOW");
    assert_eq!(balance(&mut admin, 2, "POINTS").await, (i64::MAX, 0));
    assert_consistent(&mut admin).await;
}

#[tokio::test]
async fn balances_list_only_non_zero_assets() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    adjust(&mut admin, 2, "POINTS", 10).await.unwrap();
    adjust(&mut admin, 2, "DIAMOND", 5).await.unwrap();
    adjust(&mut admin, 2, "DIAMOND", -5).await.unwrap();
    let mut user2 = app.user(2).await;
    let balances = user2
        .list_balances(pb::ListBalancesRequest { account: user(2), as_of: None })
        .await
        .unwrap()
        .into_inner()
        .balances;
    assert_eq!(balances.len(), 1);
    assert_eq!((balances[0].asset_code.as_str(), balances[0].available, balances[0].total), ("POINTS", 10, 10));
    assert_eq!(balance(&mut user2, 2, "red_shard").await, (0, 0));
}

#[tokio::test]
async fn history_pages_newest_first_and_filters_by_asset() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    for amount in 1..=5 {
        adjust(&mut admin, 2, "POINTS", amount).await.unwrap();
    }
    adjust(&mut admin, 2, "DIAMOND", 9).await.unwrap();
    let mut user2 = app.user(2).await;
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let request = pb::ListTransactionsRequest {
            account: user(2),
            asset_code: "POINTS".into(),
            page_size: 2,
            page_token: token,
            ..Default::default()
        };
        let page = user2.list_transactions(request).await.unwrap().into_inner();
        seen.extend(page.transactions.iter().map(|entry| entry.postings[0].amount));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, [5, 4, 3, 2, 1]);
    let all =
        user2.list_transactions(pb::ListTransactionsRequest { account: user(2), ..Default::default() }).await.unwrap();
    assert_eq!(all.into_inner().transactions.len(), 6);
    let bad_page =
        pb::ListTransactionsRequest { account: user(2), page_size: 501, page_token: "x".into(), ..Default::default() };
    let status = assert_error(user2.list_transactions(bad_page).await, Code::InvalidArgument, "VALIDATION_FAILED");
    assert_eq!(violated_fields(&status), ["page_size", "page_token"]);
}
