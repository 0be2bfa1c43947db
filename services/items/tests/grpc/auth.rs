//! Internal identity and authorization: users vs other users vs admins vs services;
//! health.

use economy_kit::identity::{Caller, IdentityConfig, IdentityKey, roles};
use economy_proto::items::v1 as pb;
use pb::item_service_client::ItemServiceClient;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::common::*;

const DENIED: &str = "PERMISSION_DENIED";

#[tokio::test]
async fn unsigned_and_forged_identities_are_rejected() {
    let app = spawn_app().await;
    let mut anonymous = ItemServiceClient::new(app.channel().await);
    let list = || pb::ListTemplatesRequest {};
    assert_error(anonymous.list_templates(list()).await, Code::Unauthenticated, "IDENTITY_MISSING");
    let foreign =
        IdentityKey::new(&IdentityConfig { secret: "not-the-items-secret!".into(), max_clock_skew_secs: 300 }).unwrap();
    let mut forged =
        ItemServiceClient::with_interceptor(app.channel().await, foreign.signer(Caller::user(1, roles::ADMIN)));
    assert_error(forged.list_templates(list()).await, Code::Unauthenticated, "IDENTITY_INVALID");
}

#[tokio::test]
async fn users_see_their_own_items_only() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    let item = grant(&mut admin, 2, "voucher").await;
    let mut owner = app.user(2).await;
    let mut stranger = app.user(3).await;
    let mut staff = app.client(Caller::user(4, roles::MERCHANT_STAFF)).await;
    let mut market = app.service("market").await;

    let get_request = || pb::GetItemRequest { item_instance_id: item.id.clone() };
    let list_request = |owner| pb::ListItemsRequest { owner_user_id: owner, ..Default::default() };
    let events_request = || pb::ListItemEventsRequest { item_instance_id: item.id.clone(), ..Default::default() };
    for client in [&mut owner, &mut admin, &mut market] {
        assert_eq!(client.get_item(get_request()).await.unwrap().into_inner().item.unwrap().id, item.id);
        assert_eq!(client.list_items(list_request(2)).await.unwrap().into_inner().items.len(), 1);
        assert_eq!(client.list_item_events(events_request()).await.unwrap().into_inner().events.len(), 1);
    }
    for client in [&mut stranger, &mut staff] {
        assert_error(client.get_item(get_request()).await, Code::PermissionDenied, DENIED);
        assert_error(client.list_items(list_request(2)).await, Code::PermissionDenied, DENIED);
        assert_error(client.list_item_events(events_request()).await, Code::PermissionDenied, DENIED);
    }
    // 0 means "my items" for a user; a service must name the owner.
    assert_eq!(owner.list_items(list_request(0)).await.unwrap().into_inner().items.len(), 1);
    assert!(stranger.list_items(list_request(0)).await.unwrap().into_inner().items.is_empty());
    assert_error(market.list_items(list_request(0)).await, Code::InvalidArgument, "VALIDATION_FAILED");
}

#[tokio::test]
async fn writes_are_limited_by_role_and_ownership() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    let mut owner = app.user(2).await;
    let mut stranger = app.user(3).await;
    let mut market = app.service("market").await;
    let potion = grant(&mut admin, 2, "potion").await;
    let id = potion.id.as_str();

    // Users hold no locks and run no admin operations, even on their own items.
    let sample = template("gem", pb::ItemKind::Other, 0, false);
    assert_error(define(&mut owner, sample.clone()).await, Code::PermissionDenied, DENIED);
    assert_error(owner.grant_item(grant_request(2, "potion")).await, Code::PermissionDenied, DENIED);
    assert_error(owner.lock_item(lock_request(id, "user:2")).await, Code::PermissionDenied, DENIED);
    assert_error(owner.unlock_item(unlock_request(id, MARKET)).await, Code::PermissionDenied, DENIED);
    assert_error(owner.transfer_item(transfer_request(id, MARKET, 3)).await, Code::PermissionDenied, DENIED);
    assert_error(owner.consume_item(consume_request(id, MARKET)).await, Code::PermissionDenied, DENIED);
    assert_error(owner.revoke_item(revoke_request(id)).await, Code::PermissionDenied, DENIED);
    // Another user may not consume it.
    assert_error(stranger.consume_item(consume_request(id, "")).await, Code::PermissionDenied, DENIED);
    // Services grant, lock and revoke (the market undoing an exchange) but define no
    // templates.
    assert_error(define(&mut market, sample).await, Code::PermissionDenied, DENIED);
    assert_eq!(get(&mut admin, id).await.version, 1);

    let granted = market.grant_item(grant_request(3, "potion")).await.unwrap().into_inner();
    assert_eq!(granted.event.unwrap().actor, "service:market");
    lock(&mut market, id, MARKET).await;
    // Admins may act as any holder.
    admin.unlock_item(unlock_request(id, MARKET)).await.unwrap();
    owner.consume_item(consume_request(id, "")).await.unwrap();
    let revoked = market.revoke_item(revoke_request(&granted.item.unwrap().id)).await.unwrap().into_inner();
    assert_eq!(revoked.event.unwrap().actor, "service:market");
}

#[tokio::test]
async fn health_is_served() {
    let app = spawn_app().await;
    let mut health = HealthClient::new(app.channel().await);
    for service in ["", economy_items::SERVICE_NAME] {
        let response = health.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();
        assert_eq!(response.status, ServingStatus::Serving as i32);
    }
}
