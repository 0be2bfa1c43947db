//! Opening balances of an import (docs/import.md, "balances.jsonl"): one PostTransaction
//! per legacy balance, business type IMPORT, from SYSTEM_ISSUANCE, under the key
//! `import:balance:<external id>`. A re-run replays, another amount under the same key is
//! refused, and Reconcile stays clean.

use economy_proto::ledger::v1 as pb;
use economy_testkit::assert_error;
use tonic::Code;

use crate::common::*;

fn opening(external_id: &str, user_id: i64, amount: i64) -> pb::PostTransactionRequest {
    pb::PostTransactionRequest {
        idempotency_key: format!("import:balance:{external_id}"),
        business_type: "IMPORT".into(),
        memo: format!("opening balance {external_id}"),
        postings: vec![posting(user(user_id), "POINTS", amount), posting(system("SYSTEM_ISSUANCE"), "POINTS", -amount)],
        ..Default::default()
    }
}

#[tokio::test]
async fn opening_balances_are_idempotent_entries_and_reconcile_clean() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    let first = admin.post_transaction(opening("aab-7", 7, 1_500)).await.unwrap().into_inner();
    let entry = first.transaction.unwrap();
    assert_eq!((entry.business_type.as_str(), first.replayed), ("IMPORT", false));
    let again = admin.post_transaction(opening("aab-7", 7, 1_500)).await.unwrap().into_inner();
    assert!(again.replayed);
    assert_eq!(again.transaction.unwrap().id, entry.id);
    let other = admin.post_transaction(opening("aab-7", 7, 1_600)).await;
    assert_error(other, Code::AlreadyExists, "IDEMPOTENCY_KEY_REUSED");

    assert_eq!(balance(&mut admin, 7, "POINTS").await, (1_500, 0));
    assert_eq!(balance_of(&mut admin, system("SYSTEM_ISSUANCE"), "POINTS").await, (-1_500, 0));
    assert_consistent(&mut admin).await;
}
