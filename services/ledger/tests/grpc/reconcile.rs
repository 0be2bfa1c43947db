//! Reconciliation finds deliberately corrupted balances.

use economy_kit::db::{Db, DbOptions};
use economy_proto::ledger::v1 as pb;

use crate::common::*;

async fn corrupt(app: &TestApp, sql: &str) {
    let db = Db::connect(&app.database().url, &DbOptions::default()).await.unwrap();
    sqlx::query(sql).execute(db.pool()).await.unwrap();
    db.close().await;
}

#[tokio::test]
async fn corrupted_balances_are_reported() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    adjust(&mut admin, 2, "POINTS", 100).await.unwrap();
    adjust(&mut admin, 3, "DIAMOND", 10).await.unwrap();
    let hold = pb::CreateHoldRequest {
        idempotency_key: new_key(),
        account: user(3),
        asset_code: "DIAMOND".into(),
        amount: 4,
        ..Default::default()
    };
    admin.create_hold(hold).await.unwrap();
    let clean = admin.reconcile(pb::ReconcileRequest::default()).await.unwrap().into_inner();
    assert!(clean.findings.is_empty(), "{:?}", clean.findings);
    assert_eq!((clean.balances_checked, clean.assets_checked), (4, 4));

    corrupt(&app, "UPDATE balances SET available = available + 5 WHERE account = 'user:2' AND asset_code = 'POINTS'")
        .await;
    corrupt(&app, "UPDATE balances SET frozen = frozen - 1, available = available + 1 WHERE account = 'user:3'").await;
    let report = admin.reconcile(pb::ReconcileRequest::default()).await.unwrap().into_inner();
    let finding = |kind: pb::FindingKind, account: Option<pb::AccountRef>, asset: &str, expected: i64, actual: i64| {
        pb::Finding { kind: kind.into(), account, asset_code: asset.into(), expected, actual, ..Default::default() }
    };
    assert_eq!(
        report.findings,
        [
            finding(pb::FindingKind::BalancePostingsMismatch, user(2), "POINTS", 100, 105),
            finding(pb::FindingKind::FrozenHoldsMismatch, user(3), "DIAMOND", 4, 3),
            // The rows no longer hold what their latest postings record.
            finding(pb::FindingKind::AvailableAfterMismatch, user(2), "POINTS", 100, 105),
            finding(pb::FindingKind::AvailableAfterMismatch, user(3), "DIAMOND", 6, 7),
            finding(pb::FindingKind::FrozenAfterMismatch, user(3), "DIAMOND", 4, 3),
        ]
    );
}

#[tokio::test]
async fn sums_past_i64_are_reconciled_exactly() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    let max = i64::MAX;
    // Two users at i64::MAX (one of them twice over: i64::MAX frozen, i64::MAX available)
    // against three system accounts at -i64::MAX; every entry balances.
    adjust(&mut admin, 2, "POINTS", max).await.unwrap();
    let hold = pb::CreateHoldRequest {
        idempotency_key: new_key(),
        account: user(2),
        asset_code: "POINTS".into(),
        amount: max,
        ..Default::default()
    };
    admin.create_hold(hold).await.unwrap();
    for (to, from) in [(2, "SYSTEM_REWARDS"), (3, "SYSTEM_PLATFORM_FEE")] {
        let request = pb::PostTransactionRequest {
            idempotency_key: new_key(),
            postings: vec![posting(system(from), "POINTS", -max), posting(user(to), "POINTS", max)],
            ..Default::default()
        };
        admin.post_transaction(request).await.unwrap();
    }
    let request = pb::GetBalanceRequest { account: user(2), asset_code: "POINTS".into(), as_of: None };
    let doubled = admin.get_balance(request).await.unwrap().into_inner().balance.unwrap();
    assert_eq!((doubled.available, doubled.frozen, doubled.total), (max, max, max), "the total saturates");
    let clean = admin.reconcile(pb::ReconcileRequest::default()).await.unwrap().into_inner();
    assert!(clean.findings.is_empty(), "{:?}", clean.findings);
    assert_eq!(clean.balances_checked, 5);

    corrupt(&app, "UPDATE balances SET available = available - 1 WHERE account = 'user:3'").await;
    let report = admin.reconcile(pb::ReconcileRequest::default()).await.unwrap().into_inner();
    let finding = |kind: pb::FindingKind, account: Option<pb::AccountRef>, expected: i64, actual: i64| pb::Finding {
        kind: kind.into(),
        account,
        asset_code: "POINTS".into(),
        expected,
        actual,
        ..Default::default()
    };
    assert_eq!(
        report.findings,
        [
            finding(pb::FindingKind::BalancePostingsMismatch, user(3), max, max - 1),
            finding(pb::FindingKind::AvailableAfterMismatch, user(3), max, max - 1),
        ]
    );
}

#[tokio::test]
async fn altered_running_balances_are_reported_with_their_entry() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    adjust(&mut admin, 2, "POINTS", 100).await.unwrap();
    let second = adjust(&mut admin, 2, "POINTS", 50).await.unwrap().transaction.unwrap();
    let request = pb::PostTransactionRequest {
        idempotency_key: new_key(),
        postings: vec![posting(user(2), "POINTS", -30), posting(user(3), "POINTS", 30)],
        ..Default::default()
    };
    let paid = admin.post_transaction(request).await.unwrap().into_inner().transaction.unwrap();
    assert_consistent(&mut admin).await;

    corrupt(
        &app,
        "UPDATE postings SET available_after = available_after + 1 WHERE account = 'user:2' AND balance_seq = 2",
    )
    .await;
    corrupt(&app, "UPDATE postings SET balance_seq = 5 WHERE account = 'user:3'").await;
    let report = admin.reconcile(pb::ReconcileRequest::default()).await.unwrap().into_inner();
    let finding =
        |kind: pb::FindingKind, account: Option<pb::AccountRef>, expected: i64, actual: i64, entry: &str| pb::Finding {
            kind: kind.into(),
            account,
            asset_code: "POINTS".into(),
            expected,
            actual,
            entry_id: entry.into(),
        };
    assert_eq!(
        report.findings,
        [
            // Reported once: the chain runs on from what it expected.
            finding(pb::FindingKind::AvailableAfterMismatch, user(2), 150, 151, &second.id),
            finding(pb::FindingKind::BalanceSeqMismatch, user(3), 1, 5, &paid.id),
            // The row's version is not its latest posting's.
            finding(pb::FindingKind::BalanceSeqMismatch, user(3), 5, 1, ""),
        ]
    );
}

fn since_checkpoint() -> pb::ReconcileRequest {
    pb::ReconcileRequest { since_checkpoint: true, ..Default::default() }
}

/// Runs the incremental check until it has checked `entries` entries in all (on
/// PostgreSQL an entry waits below the horizon while an older transaction anywhere on
/// the server runs, docs/streams.md); every finding met on the way.
async fn check_increments(admin: &mut Client, entries: i64) -> Vec<pb::Finding> {
    let mut findings = Vec::new();
    let mut checked = 0;
    let until = async {
        while checked < entries {
            let report = admin.reconcile(since_checkpoint()).await.unwrap().into_inner();
            checked += report.entries_checked;
            findings.extend(report.findings);
            if checked < entries {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(60), until).await.expect("entries never reached the check");
    assert_eq!(checked, entries, "no entry checked twice");
    findings
}

/// The incremental check reads only the entries committed since its checkpoint, and each
/// once even when two runs race.
#[tokio::test]
async fn the_incremental_check_reads_only_what_is_new() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    for user_id in 2..7 {
        adjust(&mut admin, user_id, "POINTS", 100).await.unwrap();
    }
    let findings = check_increments(&mut admin, 5).await;
    assert!(findings.is_empty(), "{findings:?}");
    let again = admin.reconcile(since_checkpoint()).await.unwrap().into_inner();
    assert_eq!(again.entries_checked, 0);

    for user_id in 2..5 {
        adjust(&mut admin, user_id, "POINTS", 1).await.unwrap();
    }
    let (mut one, mut other) = (admin.clone(), admin.clone());
    let (left, right) = tokio::join!(check_racing(&mut one), check_racing(&mut other));
    let findings = check_increments(&mut admin, 3 - left - right).await;
    assert!(findings.is_empty(), "{findings:?}");
    let whole = admin.reconcile(pb::ReconcileRequest::default()).await.unwrap().into_inner();
    assert!(whole.findings.is_empty(), "{:?}", whole.findings);
}

/// One incremental run racing another: the entries it checked (no finding expected).
async fn check_racing(admin: &mut Client) -> i64 {
    let report = admin.reconcile(since_checkpoint()).await.unwrap().into_inner();
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    report.entries_checked
}

/// A balance row altered outside the ledger is found by the incremental check once an
/// entry moves it: the entry's recorded balance no longer follows the verified one, and
/// the asset no longer sums to zero.
#[tokio::test]
async fn the_incremental_check_finds_a_balance_altered_since_it_was_verified() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    adjust(&mut admin, 2, "POINTS", 100).await.unwrap();
    assert!(check_increments(&mut admin, 1).await.is_empty());
    corrupt(&app, "UPDATE balances SET available = available + 5 WHERE account = 'user:2' AND asset_code = 'POINTS'")
        .await;
    let credited = adjust(&mut admin, 2, "POINTS", 10).await.unwrap();
    let entry_id = credited.transaction.unwrap().id;

    let findings = check_increments(&mut admin, 1).await;
    let kinds: Vec<(pb::FindingKind, i64, i64, &str)> = findings
        .iter()
        .map(|finding| (finding.kind(), finding.expected, finding.actual, finding.entry_id.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            (pb::FindingKind::AvailableAfterMismatch, 110, 115, entry_id.as_str()),
            (pb::FindingKind::AssetNotZeroSum, 0, 5, ""),
        ]
    );
    // Reported by the run that met it; the next run starts after it.
    assert!(admin.reconcile(since_checkpoint()).await.unwrap().into_inner().findings.is_empty());
}
