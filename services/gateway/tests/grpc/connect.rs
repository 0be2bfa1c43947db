//! The Connect protocol through the real gateway (docs/gateway.md, "Protocols"): plain
//! HTTP/1.1 POSTs with JSON or binary bodies, as `curl` or connect-web's default transport
//! send them, go through the same authentication, idempotency and canonical operations as
//! gRPC.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use economy_kit::identity::roles;
use prost::Message as _;
use serde_json::{Value, json};

use crate::common::*;

const GET_BALANCE: &str = "economy.ledger.v1.LedgerService/GetBalance";
const ADJUST_BALANCE: &str = "economy.ledger.v1.LedgerService/AdjustBalance";

/// POSTs `body` as Connect JSON to `method`; returns the status, headers and JSON body.
async fn post_json(
    stack: &Stack,
    method: &str,
    token: Option<String>,
    key: Option<&str>,
    body: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let url = format!("{}/{method}", stack.gateway_url());
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("connect-protocol-version", "1")
        .body(body.to_owned());
    if let Some(token) = token {
        request = request.header("authorization", token);
    }
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let response = request.send().await.unwrap();
    let (status, headers) = (response.status().as_u16(), response.headers().clone());
    (status, headers, serde_json::from_slice(&response.bytes().await.unwrap()).unwrap())
}

/// The `ErrorInfo.reason` of a Connect error body.
fn reason(error: &Value) -> String {
    let detail = &error["details"][0];
    assert_eq!(detail["type"], "google.rpc.ErrorInfo", "{error}");
    let value = STANDARD_NO_PAD.decode(detail["value"].as_str().unwrap()).unwrap();
    tonic_types::pb::ErrorInfo::decode(value.as_slice()).unwrap().reason
}

fn adjust_json(user_id: i64, amount: i64, direction: &str) -> String {
    json!({"userId": user_id.to_string(), "assetCode": "POINTS", "direction": direction, "amount": amount.to_string(), "reason": "connect"})
        .to_string()
}

#[tokio::test]
async fn connect_json_reads_and_writes_share_the_grpc_pipeline() {
    let stack = stack().await;
    stack.admin_with_points().await;
    let admin = || Some(bearer(ADMIN, roles::ADMIN));

    let key = new_key();
    let credit = adjust_json(USER, 40, "ADJUST_DIRECTION_CREDIT");
    let (status, headers, first) = post_json(&stack, ADJUST_BALANCE, admin(), Some(&key), &credit).await;
    assert_eq!(status, 200, "{first}");
    assert!(headers.get("idempotent-replayed").is_none());
    let (status, headers, replay) = post_json(&stack, ADJUST_BALANCE, admin(), Some(&key), &credit).await;
    assert_eq!((status, headers["idempotent-replayed"].to_str().unwrap()), (200, "true"));
    assert_eq!(replay["transaction"]["id"], first["transaction"]["id"]);

    let read = json!({"account": {"userId": USER.to_string()}, "assetCode": "POINTS"}).to_string();
    let (status, _, balance) = post_json(&stack, GET_BALANCE, Some(bearer(USER, roles::USER)), None, &read).await;
    assert_eq!((status, &balance["balance"]["available"]), (200, &json!("40")), "{balance}");
    // The gRPC view agrees: one credit.
    assert_eq!(points(&mut stack.admin().await, USER).await, 40);
}

#[tokio::test]
async fn connect_refusals_are_connect_errors_with_their_error_info() {
    let stack = stack().await;
    stack.admin_with_points().await;
    let admin = || Some(bearer(ADMIN, roles::ADMIN));

    let overdraw = adjust_json(USER, 5, "ADJUST_DIRECTION_DEBIT");
    let (status, _, error) = post_json(&stack, ADJUST_BALANCE, admin(), Some(&new_key()), &overdraw).await;
    assert_eq!((status, error["code"].as_str()), (400, Some("failed_precondition")), "{error}");
    assert_eq!(reason(&error), "INSUFFICIENT_BALANCE");

    let (status, _, error) = post_json(&stack, ADJUST_BALANCE, None, Some(&new_key()), &overdraw).await;
    assert_eq!((status, error["code"].as_str()), (401, Some("unauthenticated")), "{error}");

    let user = Some(bearer(USER, roles::USER));
    let (status, _, error) = post_json(&stack, ADJUST_BALANCE, user, Some(&new_key()), &overdraw).await;
    assert_eq!((status, error["code"].as_str()), (403, Some("permission_denied")), "{error}");

    let (status, _, error) = post_json(&stack, ADJUST_BALANCE, admin(), None, &overdraw).await;
    assert_eq!((status, error["code"].as_str()), (400, Some("invalid_argument")), "a write needs its key: {error}");

    let (status, _, error) = post_json(&stack, ADJUST_BALANCE, admin(), Some(&new_key()), r#"{"amount": true}"#).await;
    assert_eq!((status, reason(&error).as_str()), (400, "MALFORMED_REQUEST"), "{error}");
}
