//! Internal identity and authorization; health and reflection.

use economy_kit::identity::{Caller, IdentityConfig, IdentityKey, roles};
use economy_proto::ledger::v1 as pb;
use pb::ledger_service_client::LedgerServiceClient;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::common::*;

#[tokio::test]
async fn unsigned_and_forged_identities_are_rejected() {
    let app = spawn_app().await;
    let mut anonymous = LedgerServiceClient::new(app.channel().await);
    assert_error(anonymous.list_assets(pb::ListAssetsRequest {}).await, Code::Unauthenticated, "IDENTITY_MISSING");

    let foreign =
        IdentityKey::new(&IdentityConfig { secret: "not-the-ledger-secret!".into(), max_clock_skew_secs: 300 })
            .unwrap();
    let mut forged =
        LedgerServiceClient::with_interceptor(app.channel().await, foreign.signer(Caller::user(1, roles::ADMIN)));
    assert_error(forged.list_assets(pb::ListAssetsRequest {}).await, Code::Unauthenticated, "IDENTITY_INVALID");
}

#[tokio::test]
async fn users_touch_only_their_own_accounts() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    adjust(&mut admin, 2, "POINTS", 100).await.unwrap();
    let mut user2 = app.user(2).await;
    let mut user3 = app.user(3).await;

    assert_eq!(balance(&mut user2, 2, "POINTS").await, (100, 0));
    let other =
        user3.get_balance(pb::GetBalanceRequest { account: user(2), asset_code: "POINTS".into(), as_of: None }).await;
    assert_error(other, Code::PermissionDenied, "PERMISSION_DENIED");
    let system_read =
        user2.list_balances(pb::ListBalancesRequest { account: system("SYSTEM_ISSUANCE"), as_of: None }).await;
    assert_error(system_read, Code::PermissionDenied, "PERMISSION_DENIED");
    let history = user3.list_transactions(pb::ListTransactionsRequest { account: user(2), ..Default::default() }).await;
    assert_error(history, Code::PermissionDenied, "PERMISSION_DENIED");

    // Admin-only and privileged writes.
    assert_error(adjust(&mut user2, 2, "POINTS", 5).await, Code::PermissionDenied, "PERMISSION_DENIED");
    assert_error(
        define_asset(&mut user2, "GEMS", pb::AssetKind::Currency).await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    let transfer = pb::PostTransactionRequest {
        idempotency_key: new_key(),
        postings: vec![posting(user(2), "POINTS", -10), posting(user(3), "POINTS", 10)],
        ..Default::default()
    };
    assert_error(user2.post_transaction(transfer.clone()).await, Code::PermissionDenied, "PERMISSION_DENIED");
    let hold = pb::CreateHoldRequest {
        idempotency_key: new_key(),
        account: user(2),
        asset_code: "POINTS".into(),
        amount: 5,
        ..Default::default()
    };
    assert_error(user2.create_hold(hold).await, Code::PermissionDenied, "PERMISSION_DENIED");
    assert_error(user2.reconcile(pb::ReconcileRequest::default()).await, Code::PermissionDenied, "PERMISSION_DENIED");

    // A service identity may post.
    let mut market = app.service().await;
    assert!(!market.post_transaction(transfer).await.unwrap().into_inner().replayed);
    assert_eq!(balance(&mut user2, 2, "POINTS").await, (90, 0));
    // Nothing changed by the refused calls.
    assert_consistent(&mut admin).await;
}

#[tokio::test]
async fn transactions_are_visible_to_participants_only() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    let entry = adjust(&mut admin, 2, "POINTS", 100).await.unwrap().transaction.unwrap();
    let mut user2 = app.user(2).await;
    let mut user3 = app.user(3).await;
    let own = user2.get_transaction(pb::GetTransactionRequest { id: entry.id.clone() }).await.unwrap().into_inner();
    assert_eq!(own.transaction.unwrap().postings.len(), 2);
    assert_error(
        user3.get_transaction(pb::GetTransactionRequest { id: entry.id }).await,
        Code::NotFound,
        "TRANSACTION_NOT_FOUND",
    );
    let missing = pb::GetTransactionRequest { id: new_key() };
    assert_error(admin.get_transaction(missing).await, Code::NotFound, "TRANSACTION_NOT_FOUND");
}

#[tokio::test]
async fn health_and_reflection_are_served() {
    let app = spawn_app().await;
    let mut health = HealthClient::new(app.channel().await);
    for service in ["", economy_ledger::SERVICE_NAME] {
        let response = health.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();
        assert_eq!(response.status, ServingStatus::Serving as i32);
    }
}
