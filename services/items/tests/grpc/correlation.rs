//! Correlation ids (docs/items.md, "Correlation ids"): GrantItem and RevokeItem record one on their
//! event, a retry must repeat it, and ListItemEvents finds every event of one business
//! event, oldest first: admins and services all of them, a user only their own.

use economy_kit::error::violated_fields;
use economy_kit::identity::{Caller, roles};
use economy_proto::items::v1 as pb;
use pb::ItemEventType as E;
use tonic::Code;

use crate::common::*;

const PAYOUT: &str = "lottery:draw 7";

fn correlated_grant(owner: i64, template: &str, correlation_id: &str) -> pb::GrantItemRequest {
    pb::GrantItemRequest { correlation_id: correlation_id.into(), ..grant_request(owner, template) }
}

fn correlated_revoke(item: &str, correlation_id: &str) -> pb::RevokeItemRequest {
    pb::RevokeItemRequest { correlation_id: correlation_id.into(), ..revoke_request(item) }
}

fn by_correlation(correlation_id: &str, page_size: i32, page_token: &str) -> pb::ListItemEventsRequest {
    pb::ListItemEventsRequest {
        correlation_id: correlation_id.into(),
        page_size,
        page_token: page_token.into(),
        ..Default::default()
    }
}

/// Every event of `correlation_id` `client` may see, following the pages.
async fn correlated(client: &mut Client, correlation_id: &str, page_size: i32) -> Vec<pb::ItemEvent> {
    let mut events = Vec::new();
    let mut token = String::new();
    loop {
        let page = client.list_item_events(by_correlation(correlation_id, page_size, &token)).await.unwrap();
        let page = page.into_inner();
        events.extend(page.events);
        if page.next_page_token.is_empty() {
            return events;
        }
        token = page.next_page_token;
    }
}

fn ids(events: &[pb::ItemEvent]) -> Vec<&str> {
    events.iter().map(|event| event.id.as_str()).collect()
}

#[tokio::test]
async fn grants_and_revokes_record_their_correlation_id() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    let mut market = app.service("market").await;
    let granted = admin.grant_item(correlated_grant(2, "sword", PAYOUT)).await.unwrap().into_inner();
    assert_eq!(granted.event.unwrap().correlation_id, PAYOUT);
    let item = granted.item.unwrap();
    lock(&mut market, &item.id, MARKET).await;
    market.unlock_item(unlock_request(&item.id, MARKET)).await.unwrap();
    let revoked = admin.revoke_item(correlated_revoke(&item.id, "support:ticket-9")).await.unwrap().into_inner();
    assert_eq!(revoked.event.unwrap().correlation_id, "support:ticket-9");

    // The history returns it too; every other event has none.
    let history: Vec<(E, String)> =
        events(&mut admin, &item.id).await.into_iter().map(|event| (event.r#type(), event.correlation_id)).collect();
    let expected = [(E::Granted, PAYOUT), (E::Locked, ""), (E::Unlocked, ""), (E::Revoked, "support:ticket-9")];
    assert_eq!(history, expected.map(|(kind, id)| (kind, id.to_owned())));
    let plain = admin.grant_item(grant_request(2, "sword")).await.unwrap().into_inner();
    assert_eq!(plain.event.unwrap().correlation_id, "");
}

#[tokio::test]
async fn events_are_listed_by_correlation_oldest_first_and_paged() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    let mut payout = Vec::new();
    for owner in [2, 3, 2, 4, 3] {
        let granted = admin.grant_item(correlated_grant(owner, "potion", PAYOUT)).await.unwrap().into_inner();
        payout.push(granted.event.unwrap());
        admin.grant_item(correlated_grant(owner, "potion", "lottery:draw 8")).await.unwrap();
        grant(&mut admin, owner, "potion").await;
    }
    let withdrawn = payout[1].item_instance_id.clone();
    let revoked = admin.revoke_item(correlated_revoke(&withdrawn, PAYOUT)).await.unwrap().into_inner();
    payout.push(revoked.event.unwrap());
    // Changes without a correlation id stay out of the list.
    let mut market = app.service("market").await;
    lock(&mut market, &payout[0].item_instance_id, MARKET).await;

    for page_size in [0, 1, 2, 6] {
        assert_eq!(ids(&correlated(&mut admin, PAYOUT, page_size).await), ids(&payout), "page size {page_size}");
    }
    let mut service = app.service("redemption").await;
    assert_eq!(correlated(&mut service, PAYOUT, 4).await, payout);
    let first = admin.list_item_events(by_correlation(PAYOUT, 6, "")).await.unwrap().into_inner();
    let rest = admin.list_item_events(by_correlation(PAYOUT, 6, &first.next_page_token)).await.unwrap();
    assert!(rest.into_inner().events.is_empty());
    assert!(correlated(&mut admin, "lottery:draw 9", 0).await.is_empty());
}

#[tokio::test]
async fn a_user_sees_only_their_own_correlated_events() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    let mut mine = Vec::new();
    for owner in [2, 3, 2, 3] {
        let granted = admin.grant_item(correlated_grant(owner, "sword", PAYOUT)).await.unwrap().into_inner();
        if owner == 2 {
            mine.push(granted.event.unwrap());
        }
    }
    let revoked = admin.revoke_item(correlated_revoke(&mine[0].item_instance_id, PAYOUT)).await.unwrap();
    mine.push(revoked.into_inner().event.unwrap());
    let others = admin.grant_item(correlated_grant(3, "sword", "bundle:for-3")).await.unwrap().into_inner();

    let mut user = app.user(2).await;
    assert_eq!(correlated(&mut user, PAYOUT, 1).await, mine);
    // Another user's correlation id, or an invented one, shows nothing: no error either.
    assert!(correlated(&mut user, "bundle:for-3", 0).await.is_empty());
    assert!(correlated(&mut user, "lottery:draw 1", 0).await.is_empty());
    let mut stranger = app.user(9).await;
    assert!(correlated(&mut stranger, PAYOUT, 0).await.is_empty());
    assert_eq!(correlated(&mut app.user(3).await, "bundle:for-3", 0).await, [others.event.unwrap()]);
    // A staff member is a user too.
    let mut staff = app.client(Caller::user(5, roles::MERCHANT_STAFF)).await;
    assert!(correlated(&mut staff, PAYOUT, 0).await.is_empty());
}

#[tokio::test]
async fn correlation_ids_are_validated() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    let item = grant(&mut admin, 2, "sword").await;
    for bad in ["c".repeat(129), "tab\there".into(), "caf\u{e9}".into()] {
        let status = assert_error(
            admin.grant_item(correlated_grant(2, "sword", &bad)).await,
            Code::InvalidArgument,
            "VALIDATION_FAILED",
        );
        assert_eq!(violated_fields(&status), ["correlation_id"]);
        let revoke = correlated_revoke(&item.id, &bad);
        let status = assert_error(admin.revoke_item(revoke).await, Code::InvalidArgument, "VALIDATION_FAILED");
        assert_eq!(violated_fields(&status), ["correlation_id"]);
        let list = admin.list_item_events(by_correlation(&bad, 0, "")).await;
        let status = assert_error(list, Code::InvalidArgument, "VALIDATION_FAILED");
        assert_eq!(violated_fields(&status), ["correlation_id"]);
    }
    let longest = "c".repeat(128);
    let granted = admin.grant_item(correlated_grant(2, "sword", &longest)).await.unwrap().into_inner();
    assert_eq!(granted.event.unwrap().correlation_id, longest);

    // Exactly one of the instance and the correlation id.
    let both = pb::ListItemEventsRequest { item_instance_id: item.id.clone(), ..by_correlation(PAYOUT, 0, "") };
    let neither = by_correlation("", 0, "");
    for request in [both, neither] {
        let status = assert_error(admin.list_item_events(request).await, Code::InvalidArgument, "VALIDATION_FAILED");
        assert_eq!(violated_fields(&status), ["item_instance_id", "correlation_id"]);
    }
    // The correlation listing's cursor is an event id.
    let status = assert_error(
        admin.list_item_events(by_correlation(PAYOUT, 0, "7")).await,
        Code::InvalidArgument,
        "VALIDATION_FAILED",
    );
    assert_eq!(violated_fields(&status), ["page_token"]);
    assert_eq!(get(&mut admin, &item.id).await.status(), pb::ItemStatus::Available);
}

#[tokio::test]
async fn a_retry_must_repeat_the_correlation_id() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    let request = correlated_grant(2, "sword", PAYOUT);
    let first = admin.grant_item(request.clone()).await.unwrap().into_inner();
    let again = admin.grant_item(request.clone()).await.unwrap().into_inner();
    assert!(!first.replayed && again.replayed);
    assert_eq!((again.item, again.event), (first.item.clone(), first.event));
    for other in ["lottery:draw 8", ""] {
        let changed = pb::GrantItemRequest { correlation_id: other.into(), ..request.clone() };
        assert_error(admin.grant_item(changed).await, Code::AlreadyExists, "IDEMPOTENCY_KEY_REUSED");
    }
    // And the other way round: a key first used without one.
    let plain = grant_request(2, "sword");
    admin.grant_item(plain.clone()).await.unwrap();
    let late = pb::GrantItemRequest { correlation_id: PAYOUT.into(), ..plain };
    assert_error(admin.grant_item(late).await, Code::AlreadyExists, "IDEMPOTENCY_KEY_REUSED");

    let item = first.item.unwrap();
    let revoke = correlated_revoke(&item.id, PAYOUT);
    let revoked = admin.revoke_item(revoke.clone()).await.unwrap().into_inner();
    let retried = admin.revoke_item(revoke.clone()).await.unwrap().into_inner();
    assert!(!revoked.replayed && retried.replayed);
    assert_eq!(retried.event, revoked.event);
    let changed = pb::RevokeItemRequest { correlation_id: "support:ticket-9".into(), ..revoke };
    assert_error(admin.revoke_item(changed).await, Code::AlreadyExists, "IDEMPOTENCY_KEY_REUSED");
    // One grant and one revoke under the payout's id: the refusals wrote nothing.
    let listed: Vec<E> = correlated(&mut admin, PAYOUT, 0).await.iter().map(|event| event.r#type()).collect();
    assert_eq!(listed, [E::Granted, E::Revoked]);
}
