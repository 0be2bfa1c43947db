//! CORS of the gateway's gRPC-web listener from `[gateway.cors]` (docs/gateway.md, "CORS"):
//! preflights from an allowed and a refused origin, the preflight's max-age and allowed
//! headers, and the headers a browser script may read on an answer.

use bytes::Bytes;
use economy_gateway::cors::{DEFAULT_ALLOWED_HEADERS, DEFAULT_EXPOSED_HEADERS};
use economy_kit::identity::roles;
use economy_proto::ledger::v1 as pb;
use http_body_util::Full;
use prost_reflect::prost::Message;

use crate::common::*;
use crate::operators::http1;

const LEDGER: &str = "economy.ledger.v1.LedgerService";

async fn configured_stack() -> Stack {
    stack_with(|gateway, _| {
        gateway.cors.allowed_origins = vec!["https://shop.example.com".into(), "http://localhost:*".into()];
        gateway.cors.max_age_secs = 900;
    })
    .await
}

async fn preflight(stack: &Stack, origin: &str) -> http::response::Parts {
    let request = http::Request::options(format!("http://{}/{LEDGER}/AdjustBalance", stack.gateway_addr()))
        .header("host", stack.gateway_addr().to_string())
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization,content-type,idempotency-key,x-grpc-web")
        .body(Full::new(Bytes::new()))
        .unwrap();
    http1(stack, request).await.0
}

fn header<'a>(head: &'a http::response::Parts, name: &str) -> Option<&'a str> {
    head.headers.get(name).map(|value| value.to_str().unwrap())
}

fn listed(value: Option<&str>) -> Vec<String> {
    value.unwrap_or_default().split(',').map(|item| item.trim().to_ascii_lowercase()).collect()
}

#[tokio::test]
async fn a_preflight_from_an_allowed_origin_is_answered_with_the_policy() {
    let stack = configured_stack().await;
    for origin in ["https://shop.example.com", "http://localhost:5173"] {
        let head = preflight(&stack, origin).await;
        assert!(head.status.is_success(), "{head:?}");
        assert_eq!(header(&head, "access-control-allow-origin"), Some(origin));
        assert_eq!(header(&head, "access-control-max-age"), Some("900"));
        assert_eq!(listed(header(&head, "access-control-allow-methods")), ["post"]);
        assert_eq!(listed(header(&head, "access-control-allow-headers")), DEFAULT_ALLOWED_HEADERS);
        assert_eq!(header(&head, "access-control-allow-credentials"), None);
    }
}

#[tokio::test]
async fn a_preflight_from_another_origin_gets_no_permission() {
    let stack = configured_stack().await;
    for origin in ["https://evil.example", "https://shop.example.com.evil.example", "http://localhost.evil.example:80"]
    {
        let head = preflight(&stack, origin).await;
        assert_eq!(header(&head, "access-control-allow-origin"), None, "{origin}: {head:?}");
    }
}

#[tokio::test]
async fn an_answer_exposes_the_grpc_and_replay_headers() {
    let stack = configured_stack().await;
    stack.admin_with_points().await;
    let message = pb::ListAssetsRequest {}.encode_to_vec();
    let mut body = vec![0];
    body.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    body.extend_from_slice(&message);
    let request = http::Request::post(format!("http://{}/{LEDGER}/ListAssets", stack.gateway_addr()))
        .header("host", stack.gateway_addr().to_string())
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .header("origin", "https://shop.example.com")
        .header("authorization", bearer(ADMIN, roles::ADMIN))
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let (head, _) = http1(&stack, request).await;
    assert_eq!(head.status, http::StatusCode::OK);
    assert_eq!(header(&head, "access-control-allow-origin"), Some("https://shop.example.com"));
    assert_eq!(listed(header(&head, "access-control-expose-headers")), DEFAULT_EXPOSED_HEADERS);
}

#[tokio::test]
async fn by_default_no_origin_is_allowed_and_an_explicit_star_allows_any() {
    let stack = stack().await;
    assert_eq!(header(&preflight(&stack, "http://localhost:3000").await, "access-control-allow-origin"), None);
    let open = stack_with(|gateway, _| gateway.cors.allowed_origins = vec!["*".into()]).await;
    let head = preflight(&open, "https://anyone.example").await;
    assert_eq!(header(&head, "access-control-allow-origin"), Some("*"));
    assert_eq!(header(&head, "access-control-max-age"), Some("600"));
}
