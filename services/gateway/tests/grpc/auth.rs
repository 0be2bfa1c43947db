//! Authentication and authorization through the gateway: bad tokens and low roles are
//! refused and never stored, client-supplied identity metadata is ignored, and the ledger
//! itself refuses an identity the gateway did not sign.

use economy_gateway::auth::Claims;
use economy_kit::identity::{Caller, IDENTITY_HEADER, IdentityConfig, IdentityKey, SIGNATURE_HEADER, roles};
use economy_proto::ledger::v1 as pb;
use jsonwebtoken::{EncodingKey, Header, encode};
use pb::ledger_service_client::LedgerServiceClient;
use tonic::Code;

use crate::common::*;

/// An admin token valid from `nbf` to `exp`, seconds from now.
fn token(nbf: Option<i64>, exp: i64) -> String {
    let now = economy_kit::time::now_millis() / 1000;
    let at = |offset: i64| u64::try_from(now + offset).unwrap();
    let claims = Claims { user_id: ADMIN, role_level: roles::ADMIN, exp: at(exp), nbf: nbf.map(at), iat: at(-7200) };
    encode(&Header::default(), &claims, &EncodingKey::from_secret(JWT_SECRET.as_bytes())).unwrap()
}

fn expired_token() -> String {
    token(None, -3600)
}

#[tokio::test]
async fn bad_tokens_are_unauthenticated_and_not_stored() {
    let stack = stack().await;
    let mut admin = stack.admin_with_points().await;
    let key = new_key();
    let forged = economy_gateway::auth::mint_hs256("another-secret-0123456789", ADMIN, roles::ADMIN, 300).unwrap();
    let cases = [
        (None, "TOKEN_MISSING"),
        (Some("Basic YWRtaW46YWRtaW4=".to_owned()), "TOKEN_MISSING"),
        (Some("Bearer not.a.jwt".to_owned()), "TOKEN_INVALID"),
        (Some(format!("Bearer {forged}")), "TOKEN_INVALID"),
        (Some(format!("Bearer {}", expired_token())), "TOKEN_EXPIRED"),
        (Some(format!("Bearer {}", token(Some(600), 3600))), "TOKEN_NOT_YET_VALID"),
        (Some("Bearer".to_owned()), "TOKEN_MISSING"),
    ];
    for (authorization, reason) in cases {
        let mut caller = client(&stack.gateway_url(), authorization.as_deref()).await;
        let result = caller.adjust_balance(keyed(adjust(USER, 50), &key)).await;
        assert_error(result, Code::Unauthenticated, reason);
        let read = caller.list_assets(pb::ListAssetsRequest {}).await;
        assert_error(read, Code::Unauthenticated, reason);
    }
    assert_eq!(stack.store().await.status_of(ADMIN, &key).await.unwrap(), None);

    let valid = admin.adjust_balance(keyed(adjust(USER, 50), &key)).await.unwrap();
    assert_eq!(meta(valid.metadata(), "idempotent-replayed"), None);
    assert_eq!(points(&mut admin, USER).await, 50);
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive_and_nbf_in_the_past_is_valid() {
    let stack = stack().await;
    stack.admin_with_points().await;
    for authorization in [format!("bearer {}", token(Some(-10), 300)), format!("BEARER {}", token(None, 300))] {
        let mut caller = client(&stack.gateway_url(), Some(&authorization)).await;
        caller.list_assets(pb::ListAssetsRequest {}).await.unwrap();
        caller.adjust_balance(keyed(adjust(USER, 1), &new_key())).await.unwrap();
    }
}

#[tokio::test]
async fn a_role_below_the_method_minimum_is_denied_and_not_stored() {
    let stack = stack().await;
    let mut admin = stack.admin_with_points().await;
    let key = new_key();
    for role in [roles::USER, roles::MERCHANT_STAFF] {
        let mut low = stack.client(USER, role).await;
        let denied = low.adjust_balance(keyed(adjust(USER, 70), &key)).await;
        let status = assert_error(denied, Code::PermissionDenied, "ROLE_TOO_LOW");
        assert_eq!(error_info(&status).get("min_role_level").map(String::as_str), Some("100"));
    }
    assert_eq!(stack.store().await.status_of(USER, &key).await.unwrap(), None);

    // The same user, promoted, uses the same key: it executes (no stored denial replays).
    let mut promoted = stack.client(USER, roles::ADMIN).await;
    let applied = promoted.adjust_balance(keyed(adjust(USER, 70), &key)).await.unwrap();
    assert_eq!(meta(applied.metadata(), "idempotent-replayed"), None);
    assert_eq!(points(&mut admin, USER).await, 70);
}

/// A keyed request that also carries an admin identity correctly signed with the internal
/// secret, as a client trying to impersonate the gateway would send it.
fn with_identity<T>(message: T) -> tonic::Request<T> {
    let mut forged = tonic::metadata::MetadataMap::new();
    identity().attach(&Caller::user(ADMIN, roles::ADMIN), &mut forged);
    let mut request = keyed(message, &new_key());
    for header in [IDENTITY_HEADER, SIGNATURE_HEADER] {
        request.metadata_mut().insert(header, forged.get(header).unwrap().clone());
    }
    request
}

#[tokio::test]
async fn client_supplied_identity_metadata_is_ignored() {
    let stack = stack().await;
    let mut admin = stack.admin_with_points().await;
    admin.adjust_balance(keyed(adjust(USER + 1, 5), &new_key())).await.unwrap();
    let mut user = stack.client(USER, roles::USER).await;

    let adjust = user.adjust_balance(with_identity(adjust(USER, 1000))).await;
    assert_error(adjust, Code::PermissionDenied, "ROLE_TOO_LOW");
    // A read the gateway allows: the ledger sees the token's user, who may not read another
    // user's balance.
    let account = Some(pb::AccountRef { account: Some(pb::account_ref::Account::UserId(USER + 1)) });
    let read = pb::GetBalanceRequest { account, asset_code: "POINTS".into(), as_of: None };
    let result = user.get_balance(with_identity(read.clone())).await;
    assert_error(result, Code::PermissionDenied, "PERMISSION_DENIED");
    assert_eq!(admin.get_balance(read).await.unwrap().into_inner().balance.unwrap().available, 5);
    assert_eq!(points(&mut admin, USER).await, 0);
}

#[tokio::test]
async fn an_identity_the_gateway_did_not_sign_is_refused_by_the_ledger() {
    let stack = stack().await;
    let channel = channel(&stack.ledger_url()).await;

    let mut unsigned = LedgerServiceClient::new(channel.clone());
    assert_error(unsigned.list_assets(pb::ListAssetsRequest {}).await, Code::Unauthenticated, "IDENTITY_MISSING");

    let foreign =
        IdentityKey::new(&IdentityConfig { secret: "not-the-internal-secret-0123".into(), max_clock_skew_secs: 300 })
            .unwrap();
    let mut forged = LedgerServiceClient::with_interceptor(channel.clone(), foreign.signer(Caller::user(ADMIN, 100)));
    let result =
        forged.adjust_balance(pb::AdjustBalanceRequest { idempotency_key: new_key(), ..adjust(USER, 5) }).await;
    assert_error(result, Code::Unauthenticated, "IDENTITY_INVALID");

    // The same request signed with the internal secret gets past authentication.
    let mut signed = ledger_admin(&stack.ledger_url()).await;
    assert!(signed.list_assets(pb::ListAssetsRequest {}).await.is_ok());
}
