//! Idempotency-Key rules through the gateway in front of the real ledger: key format,
//! byte-identical replay, replayed business failures, conflicts, a 64-way race and the
//! retry of a failed upstream call.

use economy_kit::error::violated_fields;
use economy_kit::identity::roles;
use economy_proto::ledger::v1 as pb;
use prost_reflect::prost::Message;
use tokio::task::JoinSet;
use tonic::Code;

use crate::common::*;

#[tokio::test]
async fn writes_need_a_well_formed_idempotency_key_and_reads_none() {
    let stack = stack().await;
    let mut admin = stack.admin_with_points().await;

    let missing = admin.adjust_balance(adjust(USER, 10)).await;
    let status = assert_error(missing, Code::InvalidArgument, "MISSING_IDEMPOTENCY_KEY");
    assert_eq!(violated_fields(&status), ["idempotency-key"]);
    assert!(status.message().contains("UUID"), "{status:?}");

    for malformed in ["order-42", "idem_", "idem-0190f0a4-2b9c-7d1e-8f00-0123456789ab", "0190f0a4"] {
        let result = admin.adjust_balance(keyed(adjust(USER, 10), malformed)).await;
        let status = assert_error(result, Code::InvalidArgument, "INVALID_IDEMPOTENCY_KEY");
        assert_eq!(violated_fields(&status), ["idempotency-key"]);
    }
    // Nothing was applied, and a read needs no key.
    assert_eq!(points(&mut admin, USER).await, 0);

    // `idem_` + UUID (any case) is accepted and names the same record as the bare UUID.
    let uuid = new_key();
    let prefixed = format!("idem_{}", uuid.to_uppercase());
    let first = admin.adjust_balance(keyed(adjust(USER, 10), &prefixed)).await.unwrap();
    assert_eq!(meta(first.metadata(), "idempotent-replayed"), None);
    let again = admin.adjust_balance(keyed(adjust(USER, 10), &uuid)).await.unwrap();
    assert_eq!(meta(again.metadata(), "idempotent-replayed").as_deref(), Some("true"));
    assert_eq!(points(&mut admin, USER).await, 10);
}

#[tokio::test]
async fn a_replay_is_byte_identical_and_moves_money_once() {
    let stack = stack().await;
    let mut admin = stack.admin_with_points().await;
    let (key, body, token) = (new_key(), adjust(USER, 25).encode_to_vec(), bearer(ADMIN, roles::ADMIN));
    let channel = channel(&stack.gateway_url()).await;

    let first = raw_call(channel.clone(), ADJUST, raw_request(body.clone(), &token, Some(&key))).await.unwrap();
    let request_id = meta(first.metadata(), "request-id").unwrap();
    let event = meta(first.metadata(), "business-event-id").unwrap();
    assert_eq!(meta(first.metadata(), "idempotent-replayed"), None);
    // The ledger keyed the entry by the business event the gateway forwarded.
    let entry = pb::AdjustBalanceResponse::decode(first.get_ref().clone()).unwrap().transaction.unwrap();
    assert_eq!(entry.idempotency_key, event);

    for _ in 0..2 {
        let replay = raw_call(channel.clone(), ADJUST, raw_request(body.clone(), &token, Some(&key))).await.unwrap();
        assert_eq!(replay.get_ref(), first.get_ref(), "replayed byte for byte");
        assert_eq!(meta(replay.metadata(), "idempotent-replayed").as_deref(), Some("true"));
        assert_eq!(meta(replay.metadata(), "original-request-id"), Some(request_id.clone()));
        assert_eq!(meta(replay.metadata(), "business-event-id"), Some(event.clone()));
    }
    assert_eq!(points(&mut admin, USER).await, 25);
}

#[tokio::test]
async fn a_business_failure_is_replayed_even_once_it_would_succeed() {
    let stack = stack().await;
    let mut admin = stack.admin_with_points().await;
    let key = new_key();

    let first = admin.adjust_balance(keyed(adjust(USER, -40), &key)).await;
    let first = assert_error(first, Code::FailedPrecondition, "INSUFFICIENT_BALANCE");
    let request_id = meta(first.metadata(), "request-id").unwrap();

    admin.adjust_balance(keyed(adjust(USER, 100), &new_key())).await.unwrap();
    let replay = admin.adjust_balance(keyed(adjust(USER, -40), &key)).await;
    let replay = assert_error(replay, Code::FailedPrecondition, "INSUFFICIENT_BALANCE");
    assert_eq!((replay.message(), replay.details()), (first.message(), first.details()));
    assert_eq!(meta(replay.metadata(), "idempotent-replayed").as_deref(), Some("true"));
    assert_eq!(meta(replay.metadata(), "original-request-id"), Some(request_id));
    assert_eq!(points(&mut admin, USER).await, 100, "the debit never ran");
}

#[tokio::test]
async fn a_key_reused_for_another_request_conflicts() {
    let stack = stack().await;
    let mut admin = stack.admin_with_points().await;
    let key = new_key();
    let first = admin.adjust_balance(keyed(adjust(USER, 5), &key)).await.unwrap();
    let request_id = meta(first.metadata(), "request-id").unwrap();

    let other_body = admin.adjust_balance(keyed(adjust(USER, 6), &key)).await;
    let status = assert_error(other_body, Code::AlreadyExists, "IDEMPOTENCY_KEY_CONFLICT");
    assert_eq!(error_info(&status).get("original-request-id"), Some(&request_id));

    let asset = pb::Asset {
        code: "GEMS".into(),
        display_name: "Gems".into(),
        kind: pb::AssetKind::Currency.into(),
        ..Default::default()
    };
    let other_operation = admin.define_asset(keyed(pb::DefineAssetRequest { asset: Some(asset) }, &key)).await;
    let status = assert_error(other_operation, Code::AlreadyExists, "IDEMPOTENCY_KEY_CONFLICT");
    assert_eq!(error_info(&status).get("original-request-id"), Some(&request_id));

    // Keys belong to their user: another admin may use the same key for another body.
    let mut other_admin = stack.client(ADMIN + 1, roles::ADMIN).await;
    let theirs = other_admin.adjust_balance(keyed(adjust(USER, 6), &key)).await.unwrap();
    assert_eq!(meta(theirs.metadata(), "idempotent-replayed"), None);
    assert_eq!(points(&mut admin, USER).await, 11);
}

#[tokio::test]
async fn sixty_four_concurrent_requests_with_one_key_execute_once() {
    let stack = stack().await;
    let mut admin = stack.admin_with_points().await;
    let (key, body, token) = (new_key(), adjust(USER, 9).encode_to_vec(), bearer(ADMIN, roles::ADMIN));
    let channel = channel(&stack.gateway_url()).await;
    let mut racers = JoinSet::new();
    for _ in 0..64 {
        let (channel, body, token, key) = (channel.clone(), body.clone(), token.clone(), key.clone());
        racers.spawn(async move { raw_call(channel, ADJUST, raw_request(body, &token, Some(&key))).await });
    }
    let (mut executed, mut replays, mut processing) = (Vec::new(), Vec::new(), 0);
    while let Some(outcome) = racers.join_next().await {
        match outcome.unwrap() {
            Ok(response) if meta(response.metadata(), "idempotent-replayed").is_none() => executed.push(response),
            Ok(response) => replays.push(response),
            Err(status) => {
                assert_error::<()>(Err(status), Code::Aborted, "REQUEST_PROCESSING");
                processing += 1;
            }
        }
    }
    assert_eq!(executed.len(), 1, "{} replays, {processing} processing", replays.len());
    assert!(replays.iter().all(|replay| replay.get_ref() == executed[0].get_ref()));
    assert_eq!(executed.len() + replays.len() + processing, 64);
    assert_eq!(points(&mut admin, USER).await, 9);
}

#[tokio::test]
async fn a_failed_upstream_call_can_be_retried_with_the_same_key() {
    // The ledger's address stays reserved, but nothing listens there for now.
    let mut stack = stack().await;
    stack.stop(Service::Ledger).await;
    let mut admin = stack.admin().await;
    let key = new_key();

    let down = admin.adjust_balance(keyed(adjust(USER, 30), &key)).await;
    let down = assert_error(down, Code::Unavailable, "UPSTREAM_UNAVAILABLE");
    assert_eq!(error_info(&down).get("upstream").map(String::as_str), Some("ledger"));
    let event = meta(down.metadata(), "business-event-id").unwrap();
    let store = stack.store().await;
    assert_eq!(store.status_of(ADMIN, &key).await.unwrap(), Some(("failed".into(), Some("Unavailable".into()))));

    stack.restart(Service::Ledger).await;
    define_points(&mut admin).await;
    let retried = admin.adjust_balance(keyed(adjust(USER, 30), &key)).await.unwrap();
    assert_eq!(meta(retried.metadata(), "idempotent-replayed"), None, "a failed attempt is not replayed");
    assert_eq!(meta(retried.metadata(), "business-event-id"), Some(event), "the retry keeps its business event");
    let replay = admin.adjust_balance(keyed(adjust(USER, 30), &key)).await.unwrap();
    assert_eq!(meta(replay.metadata(), "idempotent-replayed").as_deref(), Some("true"));
    assert_eq!(points(&mut admin, USER).await, 30);
}
