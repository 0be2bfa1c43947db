//! What the gateway stores for replay, through the custom shop upstream: `sensitive` fields
//! are cleared before storage (a replay returns them empty and says so), large snapshots
//! warn, oversized ones keep only the status and still replay as a success.

use economy_gateway::store::IdempotencyStore;
use prost_reflect::prost::Message;
use tonic::Code;

use crate::common::*;
use crate::shop::{number, shop_stack, text};

/// `(response_body, response_truncated)` of a stored record.
async fn stored(store: &IdempotencyStore, key: &str) -> (Option<Vec<u8>>, i64) {
    sqlx::query_as(
        "SELECT response_body, response_truncated FROM idempotency_records WHERE user_id = $1 AND idempotency_key = $2",
    )
    .bind(USER)
    .bind(key)
    .fetch_one(store.db().pool())
    .await
    .unwrap()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

#[tokio::test]
async fn sensitive_fields_are_redacted_from_the_snapshot_and_the_replay() {
    let stack = shop_stack(|_, _| {}).await;
    let key = new_key();
    let first = stack.call("Buy", r#"{"sku":"sword","clientTime":"1"}"#, Some(&key)).await.unwrap();
    let response = stack.decode("Buy", first.get_ref());
    let code = text(&response, "code");
    assert!(code.starts_with("CODE-"), "the caller sees the plaintext once: {code}");
    // The upstream saw the signed caller and the business event the gateway returns.
    assert_eq!(number(&response, "user_id"), USER);
    assert_eq!(Some(text(&response, "order_id")), meta(first.metadata(), "business-event-id"));

    assert_eq!(meta(first.metadata(), "idempotent-redacted"), None);

    // A replay (the excluded client_time may differ) carries the snapshot, code empty.
    let replay = stack.call("Buy", r#"{"sku":"sword","clientTime":"2"}"#, Some(&key)).await.unwrap();
    assert_eq!(meta(replay.metadata(), "idempotent-replayed").as_deref(), Some("true"));
    assert_eq!(meta(replay.metadata(), "idempotent-redacted").as_deref(), Some("true"));
    assert_eq!(meta(replay.metadata(), "original-request-id"), meta(first.metadata(), "request-id"));
    let mut expected = response.clone();
    expected.clear_field_by_name("code");
    assert_eq!(replay.get_ref().as_ref(), expected.encode_to_vec().as_slice());
    assert_eq!(text(&stack.decode("Buy", replay.get_ref()), "code"), "");
    assert_eq!(stack.shop.calls(), 1);

    let (body, truncated) = stored(&stack.store().await, &key).await;
    let body = body.unwrap();
    assert_eq!(truncated, 0);
    assert!(!contains(&body, code.as_bytes()), "the plaintext is never stored");
    assert!(!contains(&body, b"CODE-"), "nor a mask of it");
}

#[tokio::test]
async fn excluded_fields_count_as_absent_in_the_fingerprint() {
    let stack = shop_stack(|_, _| {}).await;
    let key = new_key();
    let first = stack.call("Buy", r#"{"sku":"sword","nonce":"n1"}"#, Some(&key)).await.unwrap();
    assert_eq!(meta(first.metadata(), "idempotent-replayed"), None);
    for retry in [r#"{"sku":"sword"}"#, r#"{"sku":"sword","nonce":"n2","clientTime":"5"}"#] {
        let replay = stack.call("Buy", retry, Some(&key)).await.unwrap();
        assert_eq!(meta(replay.metadata(), "idempotent-replayed").as_deref(), Some("true"), "{retry}");
    }
    let other = stack.call("Buy", r#"{"sku":"axe","nonce":"n1"}"#, Some(&key)).await;
    assert_error(other, Code::AlreadyExists, "IDEMPOTENCY_KEY_CONFLICT");
    assert_eq!(stack.shop.calls(), 1);
}

#[tokio::test]
async fn a_success_over_the_snapshot_limit_replays_as_a_truncated_success() {
    let stack = shop_stack(|_, _| {}).await;
    let key = new_key();
    let size = 70 * 1024;
    let first = stack.call("Export", &format!(r#"{{"size":"{size}"}}"#), Some(&key)).await.unwrap();
    let blob = stack.decode("Export", first.get_ref()).get_field_by_name("blob").unwrap().as_bytes().unwrap().len();
    assert_eq!(blob, size, "the first caller gets the whole response");
    let event = meta(first.metadata(), "business-event-id").unwrap();

    let replay = stack.call("Export", &format!(r#"{{"size":"{size}"}}"#), Some(&key)).await.unwrap();
    assert_eq!(meta(replay.metadata(), "idempotent-replayed").as_deref(), Some("true"));
    assert_eq!(meta(replay.metadata(), "idempotent-truncated").as_deref(), Some("true"));
    assert_eq!(meta(replay.metadata(), "business-event-id"), Some(event));
    let bytes: usize = meta(replay.metadata(), "idempotent-response-bytes").unwrap().parse().unwrap();
    assert_eq!(bytes, first.get_ref().len());
    let kept = stack.decode("Export", replay.get_ref());
    assert_eq!(kept.get_field_by_name("blob").unwrap().as_bytes().unwrap().len(), 0, "the blob was not kept");
    assert_eq!(
        (text(&kept, "event"), number(&kept, "attempt")),
        (meta(first.metadata(), "business-event-id").unwrap(), 1)
    );
    assert_eq!(stack.shop.calls(), 1, "a truncated replay does not execute again");
    let (body, truncated) = stored(&stack.store().await, &key).await;
    assert_eq!((body.unwrap().len() < 1024, truncated), (true, 1));
}

#[tokio::test]
async fn a_response_over_the_warning_size_is_still_replayed_whole() {
    let stack = shop_stack(|_, _| {}).await;
    let key = new_key();
    let size = 40 * 1024;
    let first = stack.call("Export", &format!(r#"{{"size":"{size}"}}"#), Some(&key)).await.unwrap();
    let replay = stack.call("Export", &format!(r#"{{"size":"{size}"}}"#), Some(&key)).await.unwrap();
    assert_eq!(meta(replay.metadata(), "idempotent-replayed").as_deref(), Some("true"));
    assert_eq!(replay.get_ref(), first.get_ref());
    assert!(first.get_ref().len() > 32 * 1024);
    assert_eq!(stack.shop.calls(), 1);
    assert_eq!(stored(&stack.store().await, &key).await, (Some(first.get_ref().to_vec()), 0));
}
