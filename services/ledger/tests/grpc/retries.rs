//! A retry answers from its idempotency key before anything that depends on the clock or
//! on current state is checked again (holds and their expiry: `holds.rs`).

use economy_proto::ledger::v1 as pb;
use tonic::Code;

use crate::common::*;

fn rule(enabled: bool, to_amount: i64) -> pb::DefineConversionRuleRequest {
    let rule = pb::ConversionRule {
        id: "shard_to_crystal".into(),
        from_asset: "red_shard".into(),
        from_amount: 10,
        to_asset: "red_crystal".into(),
        to_amount,
        enabled,
    };
    pb::DefineConversionRuleRequest { rule: Some(rule) }
}

#[tokio::test]
async fn a_conversion_retried_after_its_rule_changed_replays() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    admin.define_conversion_rule(rule(true, 1)).await.unwrap();
    adjust(&mut admin, 2, "red_shard", 20).await.unwrap();
    let mut owner = app.user(2).await;
    let request = pb::ConvertAssetRequest {
        idempotency_key: new_key(),
        user_id: 2,
        rule_id: "shard_to_crystal".into(),
        quantity: 2,
    };
    let first = owner.convert_asset(request.clone()).await.unwrap().into_inner();

    admin.define_conversion_rule(rule(false, 1)).await.unwrap();
    let retried = owner.convert_asset(request.clone()).await.unwrap().into_inner();
    assert!(retried.replayed && !first.replayed);
    assert_eq!(retried.transaction, first.transaction);
    let fresh = pb::ConvertAssetRequest { idempotency_key: new_key(), ..request.clone() };
    assert_error(owner.convert_asset(fresh).await, Code::FailedPrecondition, "RULE_DISABLED");

    // A rule re-enabled with other amounts does not change the retry either, and the key
    // still refuses other content.
    admin.define_conversion_rule(rule(true, i64::MAX)).await.unwrap();
    assert_eq!(owner.convert_asset(request.clone()).await.unwrap().into_inner().transaction, first.transaction);
    let other = pb::ConvertAssetRequest { quantity: 1, ..request };
    assert_error(owner.convert_asset(other).await, Code::AlreadyExists, "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(balance(&mut owner, 2, "red_shard").await, (0, 0));
    assert_eq!(balance(&mut owner, 2, "red_crystal").await, (2, 0));
    assert_consistent(&mut admin).await;
}

#[tokio::test]
async fn a_movement_retried_after_the_balance_changed_replays() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    adjust(&mut admin, 2, "POINTS", 10).await.unwrap();
    let debit = adjust_request(2, "POINTS", -10, &new_key());
    let first = admin.adjust_balance(debit.clone()).await.unwrap().into_inner();
    let retried = admin.adjust_balance(debit).await.unwrap().into_inner();
    assert!(retried.replayed);
    assert_eq!(retried.transaction, first.transaction);

    adjust(&mut admin, 3, "POINTS", 5).await.unwrap();
    let transfer = pb::PostTransactionRequest {
        idempotency_key: new_key(),
        postings: vec![posting(user(3), "POINTS", -5), posting(user(4), "POINTS", 5)],
        ..Default::default()
    };
    let moved = admin.post_transaction(transfer.clone()).await.unwrap().into_inner();
    let again = admin.post_transaction(transfer).await.unwrap().into_inner();
    assert!(again.replayed);
    assert_eq!(again.transaction, moved.transaction);
    assert_eq!(balance(&mut admin, 3, "POINTS").await, (0, 0));
    assert_consistent(&mut admin).await;
}
