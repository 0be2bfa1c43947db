//! Tokens of an OIDC identity provider through the gateway (docs/gateway.md,
//! "Authentication"): keys from a JWKS served by the test (`provider`), Keycloak-style
//! claims mapped to the caller, key rotation, the rate limit on refreshes, and a provider
//! that is down at start or goes away.

use std::collections::BTreeMap;

use economy_gateway::config::GatewayConfig;
use economy_proto::gateway::v1 as gateway;
use economy_proto::ledger::v1 as pb;
use economy_testkit::{TestStack, eventually, test_stack};
use serde_json::Value;
use tonic::Code;

use crate::common::*;
use crate::provider::{AUDIENCE, ISSUER, Provider, keycloak_claims, sign};

/// The README's Keycloak configuration, against `provider`: refreshes only on unknown
/// keys (at most every `min_refresh_secs`) unless `refresh_secs` says otherwise.
fn keycloak(config: &mut GatewayConfig, provider: &Provider, min_refresh_secs: u64, refresh_secs: u64) {
    let auth = &mut config.auth;
    auth.jwks_url = provider.url.clone();
    auth.jwks_min_refresh_secs = min_refresh_secs;
    auth.jwks_refresh_secs = refresh_secs;
    auth.issuer = ISSUER.into();
    auth.audience = AUDIENCE.into();
    auth.user_id_claim = "sub".into();
    auth.role_list_claim = "realm_access.roles".into();
    auth.role_map = BTreeMap::from([("economy-admin".into(), 100), ("economy-staff".into(), 50)]);
}

async fn oidc_stack(provider: &Provider, services: &[Service], min_refresh_secs: u64, refresh_secs: u64) -> TestStack {
    test_stack(services)
        .configure(|config| keycloak(&mut config.gateway, provider, min_refresh_secs, refresh_secs))
        .start()
        .await
}

async fn ledger_as(stack: &TestStack, token: &str) -> Client {
    client(&stack.url_of(Service::Gateway), Some(&format!("Bearer {token}"))).await
}

/// Lists the assets with `token`: Ok, or the refusal's reason.
async fn read_with(stack: &TestStack, token: &str) -> Result<(), String> {
    let mut caller = ledger_as(stack, token).await;
    caller.list_assets(pb::ListAssetsRequest {}).await.map(|_| ()).map_err(|status| reason_of(&status))
}

fn reason_of(status: &tonic::Status) -> String {
    economy_testkit::reason_of(status)
}

#[tokio::test]
async fn provider_tokens_of_each_algorithm_act_through_the_gateway_and_the_backpack() {
    let provider = Provider::start(&["rsa-1", "ec-1", "ed-1"]).await;
    let stack = oidc_stack(&provider, &[Service::Ledger, Service::Items, Service::Gateway], 30, 300).await;

    // A write by the realm's economy-admin (RS256).
    let mut admin = ledger_as(&stack, &sign("rsa-1", &keycloak_claims("1", &["economy-admin"]))).await;
    define_points(&mut admin).await;
    admin.adjust_balance(keyed(adjust(USER, 40), &new_key())).await.unwrap();

    // A read by the user (ES256; a role the map does not know is level 0).
    let mut user = ledger_as(&stack, &sign("ec-1", &keycloak_claims(&USER.to_string(), &["offline_access"]))).await;
    assert_eq!(points(&mut user, USER).await, 40);
    let others = user.get_balance(balance_of(ADMIN)).await;
    assert_error(others, Code::PermissionDenied, "PERMISSION_DENIED");

    // The backpack of the caller (EdDSA): the gateway's own RPC sees the same identity.
    let token = sign("ed-1", &keycloak_claims(&USER.to_string(), &[]));
    let channel = economy_testkit::channel(&stack.url_of(Service::Gateway)).await;
    let mut backpack = gateway::backpack_service_client::BackpackServiceClient::with_interceptor(
        channel,
        economy_testkit::Bearer::new(&format!("Bearer {token}")),
    );
    let mine = backpack.get_backpack(gateway::GetBackpackRequest::default()).await.unwrap().into_inner();
    assert_eq!(mine.user_id, USER);
    let balances: Vec<(&str, i64)> =
        mine.assets.iter().map(|asset| (asset.asset_code.as_str(), asset.available)).collect();
    assert_eq!(balances, [("POINTS", 40)]);

    // economy-staff maps to 50: below AdjustBalance's minimum.
    let mut staff = ledger_as(&stack, &sign("rsa-1", &keycloak_claims("5", &["economy-staff"]))).await;
    let denied = staff.adjust_balance(keyed(adjust(USER, 1), &new_key())).await;
    let status = assert_error(denied, Code::PermissionDenied, "ROLE_TOO_LOW");
    assert_eq!(error_info(&status).get("min_role_level").map(String::as_str), Some("100"));
    // The HS256 secret of the test stack still verifies signatures, but the claim rules
    // apply to every token: a development token has neither `iss` nor `aud` (either may
    // be the one named).
    let mut hs256 = client(&stack.url_of(Service::Gateway), Some(&bearer(USER, 0))).await;
    let unmapped = hs256.list_assets(pb::ListAssetsRequest {}).await;
    let status = assert_error(unmapped, Code::Unauthenticated, "TOKEN_CLAIM_INVALID");
    let claim = error_info(&status).get("claim").cloned().unwrap_or_default();
    assert!(claim == "iss" || claim == "aud", "{claim}");
}

fn balance_of(user_id: i64) -> pb::GetBalanceRequest {
    let account = Some(pb::AccountRef { account: Some(pb::account_ref::Account::UserId(user_id)) });
    pb::GetBalanceRequest { account, asset_code: "POINTS".into(), as_of: None }
}

#[tokio::test]
async fn tokens_that_do_not_name_a_caller_are_refused_naming_the_claim() {
    let provider = Provider::start(&["rsa-1"]).await;
    let stack = oidc_stack(&provider, &[Service::Ledger, Service::Gateway], 3600, 3600).await;
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut claims = keycloak_claims("7", &[]);
        edit(&mut claims);
        sign("rsa-1", &claims)
    };
    let cases = [
        (with(&|claims| claims["sub"] = "0b0e4c56-2a8e-4f0b-9d3c-5b7a1f0c9e21".into()), "sub"),
        (with(&|claims| claims["sub"] = Value::from(-7)), "sub"),
        (with(&|claims| drop(claims.as_object_mut().unwrap().remove("sub"))), "sub"),
        (with(&|claims| claims["iss"] = "https://other.test/realms/economy".into()), "iss"),
        (with(&|claims| claims["aud"] = "another-client".into()), "aud"),
        (with(&|claims| drop(claims.as_object_mut().unwrap().remove("aud"))), "aud"),
    ];
    for (token, claim) in cases {
        let mut caller = ledger_as(&stack, &token).await;
        let status = assert_error(
            caller.list_assets(pb::ListAssetsRequest {}).await,
            Code::Unauthenticated,
            "TOKEN_CLAIM_INVALID",
        );
        assert_eq!(error_info(&status).get("claim").map(String::as_str), Some(claim));
    }
    let expired = with(&|claims| claims["exp"] = Value::from(economy_kit::time::now_millis() / 1000 - 3600));
    assert_eq!(read_with(&stack, &expired).await, Err("TOKEN_EXPIRED".into()));
    assert_eq!(read_with(&stack, &with(&|_| {})).await, Ok(()));
}

#[tokio::test]
async fn a_rotated_key_is_fetched_when_its_first_token_arrives() {
    let provider = Provider::start(&["rsa-1"]).await;
    let stack = oidc_stack(&provider, &[Service::Ledger, Service::Gateway], 0, 3600).await;
    let rotated = sign("rsa-2", &keycloak_claims("7", &[]));
    assert_eq!(read_with(&stack, &rotated).await, Err("TOKEN_KEY_UNKNOWN".into()));

    provider.publish(&["rsa-2"]);
    assert_eq!(read_with(&stack, &rotated).await, Ok(()));
    // The retired key is gone with the refresh.
    let retired = sign("rsa-1", &keycloak_claims("7", &[]));
    let fetches = provider.fetches();
    assert_eq!(read_with(&stack, &retired).await, Err("TOKEN_KEY_UNKNOWN".into()));
    assert_eq!(provider.fetches(), fetches + 1, "an unknown kid fetches the JWKS again");
}

#[tokio::test]
async fn refreshes_for_unknown_keys_are_rate_limited() {
    let provider = Provider::start(&["rsa-1"]).await;
    let stack = oidc_stack(&provider, &[Service::Ledger, Service::Gateway], 3600, 3600).await;
    assert_eq!(provider.fetches(), 1, "fetched once at start");
    provider.publish(&["rsa-1", "rsa-2"]);
    for user in 1..=5 {
        let unknown = sign("rsa-2", &keycloak_claims(&user.to_string(), &[]));
        assert_eq!(read_with(&stack, &unknown).await, Err("TOKEN_KEY_UNKNOWN".into()));
    }
    assert_eq!(provider.fetches(), 1, "within jwks_min_refresh_secs of the last fetch, no fetch");
    assert_eq!(read_with(&stack, &sign("rsa-1", &keycloak_claims("7", &[]))).await, Ok(()));
}

#[tokio::test]
async fn the_periodic_refresh_picks_up_new_keys() {
    let provider = Provider::start(&["rsa-1"]).await;
    let stack = oidc_stack(&provider, &[Service::Ledger, Service::Gateway], 3600, 1).await;
    provider.publish(&["rsa-1", "rsa-2"]);
    let before = provider.fetches();
    eventually("a periodic JWKS fetch", || async { provider.fetches() > before }).await;
    // The fetch that was counted may still be parsing: poll the token, not the count.
    let rotated = sign("rsa-2", &keycloak_claims("7", &[]));
    eventually("the new key to verify", || async { read_with(&stack, &rotated).await.is_ok() }).await;
}

#[tokio::test]
async fn a_provider_outage_keeps_the_cached_keys() {
    let provider = Provider::start(&["rsa-1"]).await;
    let stack = oidc_stack(&provider, &[Service::Ledger, Service::Gateway], 0, 3600).await;
    let known = sign("rsa-1", &keycloak_claims("7", &[]));
    assert_eq!(read_with(&stack, &known).await, Ok(()));

    provider.stop().await;
    // A refresh is attempted for the unknown key and fails: nothing is lost.
    assert_eq!(read_with(&stack, &sign("rsa-2", &keycloak_claims("7", &[]))).await, Err("TOKEN_KEY_UNKNOWN".into()));
    assert_eq!(read_with(&stack, &known).await, Ok(()));
    let mut admin = ledger_as(&stack, &sign("rsa-1", &keycloak_claims("1", &["economy-admin"]))).await;
    define_points(&mut admin).await;
}

#[tokio::test]
async fn the_gateway_starts_while_the_provider_is_down_and_recovers_with_it() {
    let provider = Provider::start(&["rsa-1"]).await;
    provider.set_down(true);
    let stack = oidc_stack(&provider, &[Service::Ledger, Service::Gateway], 0, 3600).await;
    let token = sign("rsa-1", &keycloak_claims("7", &[]));
    assert_eq!(read_with(&stack, &token).await, Err("TOKEN_KEY_UNKNOWN".into()));

    provider.set_down(false);
    assert_eq!(read_with(&stack, &token).await, Ok(()));
}

#[tokio::test]
async fn a_provider_behind_a_private_ca_is_trusted_through_jwks_ca_file() {
    let dir = std::env::temp_dir().join(format!("economy-oidc-ca-{}", uuid::Uuid::now_v7().simple()));
    let pki = economy_testkit::tls::DevPki::generate(&dir).unwrap();
    let provider = Provider::start_tls(&["ed-1"], &pki).await;
    let token = sign("ed-1", &keycloak_claims("7", &[]));

    let untrusted = oidc_stack(&provider, &[Service::Ledger, Service::Gateway], 0, 3600).await;
    assert_eq!(read_with(&untrusted, &token).await, Err("TOKEN_KEY_UNKNOWN".into()));
    assert_eq!(provider.fetches(), 0, "no handshake succeeded");

    let trusted = test_stack(&[Service::Ledger, Service::Gateway])
        .configure(|config| {
            keycloak(&mut config.gateway, &provider, 0, 3600);
            config.gateway.auth.jwks_ca_file = pki.ca_file.display().to_string();
        })
        .start()
        .await;
    assert_eq!(read_with(&trusted, &token).await, Ok(()));
    std::fs::remove_dir_all(dir).unwrap();
}
