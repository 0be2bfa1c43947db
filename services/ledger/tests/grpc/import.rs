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

fn row(external_id: &str, user_id: i64, asset: &str, amount: i64) -> pb::ImportBalanceRow {
    pb::ImportBalanceRow { external_id: external_id.into(), user_id, asset_code: asset.into(), amount }
}

async fn import(admin: &mut Client, rows: Vec<pb::ImportBalanceRow>) -> Vec<pb::ImportBalanceResult> {
    admin.import_balances(pb::ImportBalancesRequest { rows }).await.unwrap().into_inner().results
}

#[tokio::test]
async fn import_balances_writes_the_same_entries_row_by_row() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    let first = import(&mut admin, vec![row("aab-1", 7, "POINTS", 100), row("aab-2", 7, "DIAMOND", 5)]).await;
    let outcomes: Vec<_> = first.iter().map(|result| (result.outcome(), result.credited)).collect();
    assert_eq!(outcomes, [(pb::ImportOutcome::Created, 100), (pb::ImportOutcome::Created, 5)]);
    let again = import(
        &mut admin,
        vec![
            row("aab-1", 7, "POINTS", 100),
            row("aab-2", 7, "DIAMOND", 6),
            row("aab-3", 8, "NOPE", 1),
            row("aab 4", 0, "POINTS", 0),
        ],
    )
    .await;
    let outcomes: Vec<_> = again.iter().map(|result| (result.outcome(), result.reason.as_str())).collect();
    assert_eq!(
        outcomes,
        [
            (pb::ImportOutcome::Unchanged, ""),
            (pb::ImportOutcome::Refused, "IDEMPOTENCY_KEY_REUSED"),
            (pb::ImportOutcome::Refused, "ASSET_NOT_FOUND"),
            (pb::ImportOutcome::Refused, "VALIDATION_FAILED"),
        ]
    );
    assert_eq!(again[0].transaction_id, first[0].transaction_id);
    assert!(["external_id", "user_id", "amount"].iter().all(|field| again[3].message.contains(field)));
    let entry = admin
        .get_transaction(pb::GetTransactionRequest { id: first[0].transaction_id.clone() })
        .await
        .unwrap()
        .into_inner()
        .transaction
        .unwrap();
    assert_eq!((entry.business_type.as_str(), entry.idempotency_key.as_str()), ("IMPORT", "import:balance:aab-1"));
    assert_eq!((balance(&mut admin, 7, "DIAMOND").await, balance(&mut admin, 8, "POINTS").await), ((5, 0), (0, 0)));
    assert_consistent(&mut admin).await;
    let mut user = app.user(7).await;
    let refused = user.import_balances(pb::ImportBalancesRequest { rows: vec![row("aab-9", 7, "POINTS", 1)] }).await;
    assert_error(refused, Code::PermissionDenied, "PERMISSION_DENIED");
}

/// Runs the incremental check until it has nothing new to read; asserts it found nothing.
async fn assert_incrementally_consistent(admin: &mut Client) {
    for _ in 0..100 {
        let request = pb::ReconcileRequest { since_checkpoint: true, ..Default::default() };
        let report = admin.reconcile(request).await.expect("reconcile").into_inner();
        assert!(report.findings.is_empty(), "{:?}", report.findings);
        if report.entries_checked == 0 {
            return;
        }
    }
    panic!("the incremental check never caught up");
}

/// A batch is written together (docs/import.md, "Speed"): a bad row in it is refused with
/// nothing of it left, every other row lands (new users, one user twice, a user that
/// already had a balance), and the same batch again changes nothing.
#[tokio::test]
async fn a_batch_lands_every_good_row_and_nothing_of_a_bad_one() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    import(&mut admin, vec![row("bb-0", 30, "POINTS", 7)]).await;
    let mut rows: Vec<_> = (31..=60).map(|user| row(&format!("bb-{user}"), user, "POINTS", user)).collect();
    rows.insert(10, row("bb-bad", 99, "NOPE", 5));
    rows.push(row("bb-30", 30, "POINTS", 3));
    rows.push(row("bb-31d", 31, "DIAMOND", 2));
    let first = import(&mut admin, rows.clone()).await;
    let outcomes: Vec<_> = first.iter().map(|result| (result.outcome(), result.reason.as_str())).collect();
    assert_eq!(outcomes[10], (pb::ImportOutcome::Refused, "ASSET_NOT_FOUND"));
    assert!(outcomes.iter().enumerate().all(|(at, outcome)| at == 10 || outcome.0 == pb::ImportOutcome::Created));
    assert_eq!(first[11].credited, 41);

    let again = import(&mut admin, rows).await;
    for (before, after) in first.iter().zip(&again) {
        let expected = if before.outcome() == pb::ImportOutcome::Created {
            pb::ImportOutcome::Unchanged
        } else {
            pb::ImportOutcome::Refused
        };
        assert_eq!((after.outcome(), &after.transaction_id), (expected, &before.transaction_id));
    }
    assert_eq!(balance(&mut admin, 30, "POINTS").await, (10, 0));
    assert_eq!((balance(&mut admin, 45, "POINTS").await, balance(&mut admin, 31, "DIAMOND").await), ((45, 0), (2, 0)));
    let issued: i64 = 7 + 3 + 2 + (31..=60).sum::<i64>();
    let system = balance_of(&mut admin, system("SYSTEM_ISSUANCE"), "POINTS").await.0
        + balance_of(&mut admin, system("SYSTEM_ISSUANCE"), "DIAMOND").await.0;
    assert_eq!(system, -issued);
    let request = pb::ListBalancesRequest { account: user(99), as_of: None };
    let left = admin.list_balances(request).await.map(|answer| answer.into_inner().balances).unwrap_or_default();
    assert!(left.is_empty(), "nothing of the bad row: {left:?}");
    assert_consistent(&mut admin).await;
    assert_incrementally_consistent(&mut admin).await;
}
