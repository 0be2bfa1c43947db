//! Reconciliation finds deliberately corrupted balances.

use economy_kit::db::{Db, DbOptions};
use economy_proto::ledger::v1 as pb;

use crate::common::*;

async fn corrupt(app: &TestApp, sql: &str) {
    let db = Db::connect(&app.database.url, &DbOptions::default()).await.unwrap();
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
        idempotency_key: key(),
        account: user(3),
        asset_code: "DIAMOND".into(),
        amount: 4,
        ..Default::default()
    };
    admin.create_hold(hold).await.unwrap();
    let clean = admin.reconcile(pb::ReconcileRequest {}).await.unwrap().into_inner();
    assert!(clean.findings.is_empty(), "{:?}", clean.findings);
    assert_eq!((clean.balances_checked, clean.assets_checked), (4, 4));

    corrupt(&app, "UPDATE balances SET available = available + 5 WHERE account = 'user:2' AND asset_code = 'POINTS'")
        .await;
    corrupt(&app, "UPDATE balances SET frozen = frozen - 1, available = available + 1 WHERE account = 'user:3'").await;
    let report = admin.reconcile(pb::ReconcileRequest {}).await.unwrap().into_inner();
    let finding = |kind: pb::FindingKind, account: Option<pb::AccountRef>, asset: &str, expected: i64, actual: i64| {
        pb::Finding { kind: kind.into(), account, asset_code: asset.into(), expected, actual }
    };
    assert_eq!(
        report.findings,
        [
            finding(pb::FindingKind::BalancePostingsMismatch, user(2), "POINTS", 100, 105),
            finding(pb::FindingKind::FrozenHoldsMismatch, user(3), "DIAMOND", 4, 3),
            finding(pb::FindingKind::AssetNotZeroSum, None, "POINTS", 0, 5),
        ]
    );
}
