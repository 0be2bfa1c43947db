//! GrantItem: defaults, explicit expiry, metadata, idempotency, refusals.

use economy_kit::error::violated_fields;
use economy_kit::time::Clock;
use economy_kit::time::{from_timestamp, now_millis, to_timestamp};
use economy_proto::items::v1 as pb;
use tokio::task::JoinSet;
use tonic::Code;

use crate::common::*;

fn millis(timestamp: Option<prost_types::Timestamp>) -> i64 {
    from_timestamp(&timestamp.unwrap()).unwrap()
}

#[tokio::test]
async fn grants_follow_the_template_and_record_an_event() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    let request = pb::GrantItemRequest {
        metadata: [("serial".to_owned(), "A-1".to_owned())].into(),
        business_type: "LOTTERY_PRIZE".into(),
        reason: "weekly draw".into(),
        ..grant_request(2, "voucher")
    };
    let granted = admin.grant_item(request.clone()).await.unwrap().into_inner();
    assert!(!granted.replayed);
    let item = granted.item.unwrap();
    assert_eq!((item.owner_user_id, item.status(), item.version), (2, pb::ItemStatus::Available, 1));
    assert_eq!(millis(item.expires_at) - millis(item.created_at), 30 * 86_400 * 1000);
    assert_eq!(item.metadata.get("serial").map(String::as_str), Some("A-1"));
    assert_eq!(item.metadata_hash.len(), 64);
    assert!(item.lock_holder.is_empty() && item.locked_at.is_none());
    let event = granted.event.unwrap();
    assert_eq!(
        (event.r#type(), event.version, event.status()),
        (pb::ItemEventType::Granted, 1, pb::ItemStatus::Available)
    );
    assert_eq!((event.from_owner_user_id, event.to_owner_user_id), (0, 2));
    assert_eq!((event.actor.as_str(), event.business_type.as_str()), ("user:1", "LOTTERY_PRIZE"));
    assert_eq!(
        (event.idempotency_key.as_str(), event.reason.as_str()),
        (request.idempotency_key.as_str(), "weekly draw")
    );

    let fetched = admin.get_item(pb::GetItemRequest { item_instance_id: item.id.clone() }).await.unwrap().into_inner();
    assert_eq!(fetched.item.unwrap(), item);
    assert_eq!(fetched.template.unwrap().code, "voucher");

    // No validity: never expires. Explicit expiry wins over the template's.
    assert!(grant(&mut admin, 2, "sword").await.expires_at.is_none());
    let at = now_millis() + 60_000;
    let explicit = pb::GrantItemRequest { expires_at: Some(to_timestamp(at)), ..grant_request(2, "sword") };
    let explicit = admin.grant_item(explicit).await.unwrap().into_inner().item.unwrap();
    assert_eq!(millis(explicit.expires_at), at);
    // Same metadata, same hash.
    let plain = grant(&mut admin, 3, "sword").await;
    assert_eq!(plain.metadata_hash, explicit.metadata_hash);
    assert_ne!(plain.metadata_hash, item.metadata_hash);
}

#[tokio::test]
async fn grants_are_idempotent() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    let request = grant_request(2, "voucher");
    let first = admin.grant_item(request.clone()).await.unwrap().into_inner();
    let again = admin.grant_item(request.clone()).await.unwrap().into_inner();
    assert!(again.replayed);
    assert_eq!((again.item, again.event), (first.item.clone(), first.event.clone()));

    let other_owner = pb::GrantItemRequest { owner_user_id: 3, ..request.clone() };
    assert_error(admin.grant_item(other_owner).await, Code::AlreadyExists, "IDEMPOTENCY_KEY_REUSED");
    let other_template = pb::GrantItemRequest { template_code: "sword".into(), ..request.clone() };
    assert_error(admin.grant_item(other_template).await, Code::AlreadyExists, "IDEMPOTENCY_KEY_REUSED");
    // Another caller with the same key is another request.
    let mut market = app.service("market").await;
    assert_error(market.grant_item(request).await, Code::AlreadyExists, "IDEMPOTENCY_KEY_REUSED");

    // Without a body key, the gateway's business event id is the key.
    let event_id = new_key();
    let mut keyless =
        tonic::Request::new(pb::GrantItemRequest { idempotency_key: String::new(), ..grant_request(2, "sword") });
    keyless.metadata_mut().insert("x-business-event-id", event_id.parse().unwrap());
    let granted = admin.grant_item(keyless).await.unwrap().into_inner();
    assert_eq!(granted.event.unwrap().idempotency_key, event_id);
    let mut retry =
        tonic::Request::new(pb::GrantItemRequest { idempotency_key: String::new(), ..grant_request(2, "sword") });
    retry.metadata_mut().insert("x-business-event-id", event_id.parse().unwrap());
    let retried = admin.grant_item(retry).await.unwrap().into_inner();
    assert!(retried.replayed);
    assert_eq!(retried.item.unwrap().id, granted.item.unwrap().id);

    let no_key = pb::GrantItemRequest { idempotency_key: String::new(), ..grant_request(2, "sword") };
    let status = assert_error(admin.grant_item(no_key).await, Code::InvalidArgument, "VALIDATION_FAILED");
    assert_eq!(violated_fields(&status), ["idempotency_key"]);
}

#[tokio::test]
async fn grant_refusals() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    assert_error(admin.grant_item(grant_request(2, "unknown")).await, Code::NotFound, "TEMPLATE_NOT_FOUND");
    let past = pb::GrantItemRequest {
        expires_at: Some(to_timestamp(app.clock.now_millis() - 1)),
        ..grant_request(2, "voucher")
    };
    let status = assert_error(admin.grant_item(past).await, Code::InvalidArgument, "VALIDATION_FAILED");
    assert_eq!(violated_fields(&status), ["expires_at"]);
    let bad = pb::GrantItemRequest {
        owner_user_id: 0,
        template_code: "no way".into(),
        business_type: "lower".into(),
        metadata: (0..33).map(|index| (format!("k{index}"), String::new())).collect(),
        reason: "x".repeat(501),
        ..grant_request(2, "voucher")
    };
    let status = assert_error(admin.grant_item(bad).await, Code::InvalidArgument, "VALIDATION_FAILED");
    assert_eq!(violated_fields(&status), ["owner_user_id", "template_code", "metadata", "business_type", "reason"]);
    let listed = admin.list_items(pb::ListItemsRequest { owner_user_id: 2, ..Default::default() }).await.unwrap();
    assert!(listed.into_inner().items.is_empty());
}

#[tokio::test]
async fn concurrent_retries_of_one_grant_create_one_instance() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    let request = grant_request(2, "voucher");
    let mut retries = JoinSet::new();
    for _ in 0..20 {
        let (mut client, request) = (app.admin().await, request.clone());
        retries.spawn(async move { client.grant_item(request).await });
    }
    let mut ids = std::collections::BTreeSet::new();
    let mut fresh = 0;
    while let Some(result) = retries.join_next().await {
        let response = result.unwrap().unwrap().into_inner();
        fresh += usize::from(!response.replayed);
        ids.insert(response.item.unwrap().id);
    }
    assert_eq!((fresh, ids.len()), (1, 1));
    let listed = admin.list_items(pb::ListItemsRequest { owner_user_id: 2, ..Default::default() }).await.unwrap();
    assert_eq!(listed.into_inner().items.len(), 1);
}
