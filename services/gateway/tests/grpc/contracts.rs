//! Ledger contracts through the gateway: a retry that reaches the ledger under a new
//! gateway key after the hold's expiry passed is answered from the ledger's own key, and
//! reconciliation sums past i64 without failing.

use std::time::Duration;

use economy_kit::time::{Clock, to_timestamp};
use economy_proto::ledger::v1 as pb;
use pb::account_ref::Account;

use crate::common::*;

fn account(account: Account) -> Option<pb::AccountRef> {
    Some(pb::AccountRef { account: Some(account) })
}

#[tokio::test]
async fn a_hold_retried_after_its_expiry_replays_instead_of_failing_validation() {
    let stack = stack_on_manual_clock().await;
    let clock = stack.clock();
    let mut admin = stack.admin_with_points().await;
    admin.adjust_balance(keyed(adjust(USER, 100), &new_key())).await.unwrap();
    let hold = pb::CreateHoldRequest {
        idempotency_key: new_key(),
        account: account(Account::UserId(USER)),
        asset_code: "POINTS".into(),
        amount: 40,
        expires_at: Some(to_timestamp(clock.now_millis() + 1_000)),
        ..Default::default()
    };
    let first = admin.create_hold(keyed(hold.clone(), &new_key())).await.unwrap().into_inner();
    clock.advance(Duration::from_millis(1_200));
    // The first answer was lost; the client retries with its body key under a new
    // gateway key, after the expiry it asked for has passed.
    let retry = admin.create_hold(keyed(hold, &new_key())).await.unwrap().into_inner();
    assert!(retry.replayed);
    assert_eq!(retry.hold.unwrap().id, first.hold.unwrap().id);
}

#[tokio::test]
async fn reconcile_sums_balances_past_i64_through_the_gateway() {
    let stack = stack().await;
    let mut admin = stack.admin_with_points().await;
    let max = i64::MAX;
    admin.adjust_balance(keyed(adjust(USER, max), &new_key())).await.unwrap();
    let posting = |account, amount| pb::PostingInput { account, asset_code: "POINTS".into(), amount };
    let transaction = pb::PostTransactionRequest {
        idempotency_key: new_key(),
        business_type: "TEST".into(),
        postings: vec![
            posting(account(Account::System("SYSTEM_PLATFORM_FEE".into())), -max),
            posting(account(Account::UserId(ADMIN)), max),
        ],
        ..Default::default()
    };
    admin.post_transaction(keyed(transaction, &new_key())).await.unwrap();
    let report = admin.reconcile(keyed(pb::ReconcileRequest::default(), &new_key())).await.unwrap().into_inner();
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    assert_eq!(report.balances_checked, 4);
}
