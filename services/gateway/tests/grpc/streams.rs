//! Server streams through the gateway (docs/gateway.md, "Streams"): the real items service
//! behind the real gateway, `WatchItemEvents` proxied with authentication, the service's
//! object authorization, the per-user and per-gateway limits, gRPC-web, a slow consumer,
//! an upstream that is down and the gateway's shutdown.

use std::time::Duration;

use economy_gateway::config::GatewayConfig;
use economy_kit::identity::{Caller, roles};
use economy_proto::items::v1 as pb;
use economy_testkit::{TestStack, grpc_web_stream, reason_of, test_stack};
use pb::item_service_client::ItemServiceClient;
use pb::watch_item_events_request::Start;
use pb::watch_item_events_response::Kind;
use prost_reflect::prost::Message;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Streaming};

use crate::common::*;

/// Guards against a hung stream only (never a timed assertion): far above any wait.
const STALLED: Duration = Duration::from_secs(60);
const OTHER: i64 = 8;

type Items = ItemServiceClient<InterceptedService<Channel, Bearer>>;
type Events = Streaming<pb::WatchItemEventsResponse>;

/// Items and the gateway, each over its own fresh database; items sends a heartbeat
/// every second.
async fn items_stack(adjust: impl FnOnce(&mut GatewayConfig)) -> TestStack {
    test_stack(&[Service::Items, Service::Gateway])
        .configure(|config| {
            config.items.watch_heartbeat_secs = 1;
            adjust(&mut config.gateway);
        })
        .start()
        .await
}

/// An items client through the gateway with a token of `user_id`.
async fn items(stack: &TestStack, user_id: i64, role_level: i32) -> Items {
    ItemServiceClient::new(stack.authed(user_id, role_level).await)
}

/// An admin client through the gateway, with the template `sword` defined.
async fn admin_with_sword(stack: &TestStack) -> Items {
    let mut admin = items(stack, ADMIN, roles::ADMIN).await;
    let template = pb::ItemTemplate {
        code: "sword".into(),
        display_name: "Sword".into(),
        kind: pb::ItemKind::Equipment.into(),
        ..Default::default()
    };
    admin.define_template(keyed(pb::DefineTemplateRequest { template: Some(template) }, &new_key())).await.unwrap();
    admin
}

fn grant_request(owner: i64) -> pb::GrantItemRequest {
    pb::GrantItemRequest { owner_user_id: owner, template_code: "sword".into(), ..Default::default() }
}

/// Grants a sword to `owner` through the gateway; its instance id.
async fn grant(admin: &mut Items, owner: i64) -> String {
    admin.grant_item(keyed(grant_request(owner), &new_key())).await.unwrap().into_inner().item.unwrap().id
}

/// The events of `owner` from now on.
fn owned_by(owner: i64) -> pb::WatchItemEventsRequest {
    pb::WatchItemEventsRequest { owner_user_id: owner, ..Default::default() }
}

async fn watch(client: &mut Items, request: pb::WatchItemEventsRequest) -> Result<Events, tonic::Status> {
    client.watch_item_events(request).await.map(tonic::Response::into_inner)
}

/// The next message; panics when the stream ends or fails.
async fn next(stream: &mut Events) -> pb::WatchItemEventsResponse {
    let message = tokio::time::timeout(STALLED, stream.message()).await.expect("the stream stalled");
    message.unwrap().expect("the stream ended")
}

/// The next event and its cursor, skipping heartbeats.
async fn next_event(stream: &mut Events) -> (pb::ItemEvent, String) {
    loop {
        let message = next(stream).await;
        if let Some(Kind::Event(event)) = message.kind {
            return (event, message.cursor);
        }
    }
}

/// Waits until the stream is live: a stream from now opens with a heartbeat.
async fn live(stream: &mut Events) {
    let message = next(stream).await;
    assert!(matches!(message.kind, Some(Kind::Heartbeat(_))), "{message:?}");
}

#[tokio::test]
async fn a_user_watches_their_own_item_events_through_the_gateway() {
    let stack = items_stack(|_| {}).await;
    let mut admin = admin_with_sword(&stack).await;
    let mut user = items(&stack, USER, roles::USER).await;
    let mut stream = watch(&mut user, owned_by(USER)).await.unwrap();
    live(&mut stream).await;

    grant(&mut admin, OTHER).await;
    let mine = grant(&mut admin, USER).await;
    let (event, cursor) = next_event(&mut stream).await;
    assert_eq!((event.item_instance_id.as_str(), event.r#type()), (mine.as_str(), pb::ItemEventType::Granted));
    assert_eq!(event.to_owner_user_id, USER);
    assert!(cursor.starts_with("v1."), "{cursor}");

    // The cursor resumes through the gateway too.
    let second = grant(&mut admin, USER).await;
    let request = pb::WatchItemEventsRequest { start: Some(Start::AfterCursor(cursor)), ..owned_by(USER) };
    let mut resumed = watch(&mut user, request).await.unwrap();
    assert_eq!(next_event(&mut resumed).await.0.item_instance_id, second);
    assert_eq!(next_event(&mut stream).await.0.item_instance_id, second);
}

#[tokio::test]
async fn another_users_events_are_refused_by_the_service_and_a_stream_needs_a_token() {
    let stack = items_stack(|_| {}).await;
    let mut user = items(&stack, USER, roles::USER).await;
    let refused = watch(&mut user, owned_by(OTHER)).await;
    let status = assert_error(refused, Code::PermissionDenied, "PERMISSION_DENIED");
    assert!(status.message().contains("watch other users' item events"), "{status:?}");
    assert_error(watch(&mut user, owned_by(0)).await, Code::PermissionDenied, "PERMISSION_DENIED");

    let mut anonymous =
        ItemServiceClient::new(InterceptedService::new(channel(&stack.url_of(Service::Gateway)).await, Bearer::none()));
    assert_error(watch(&mut anonymous, owned_by(USER)).await, Code::Unauthenticated, "TOKEN_MISSING");
    // An admin watches any user's events, and every user's.
    let mut admin = items(&stack, ADMIN, roles::ADMIN).await;
    live(&mut watch(&mut admin, owned_by(OTHER)).await.unwrap()).await;
    live(&mut watch(&mut admin, owned_by(0)).await.unwrap()).await;
}

#[tokio::test]
async fn open_streams_are_limited_per_user_and_per_gateway() {
    let stack = items_stack(|gateway| {
        gateway.streams.per_user = 2;
        gateway.streams.max = 3;
    })
    .await;
    let (mut user, mut other) = (items(&stack, USER, roles::USER).await, items(&stack, OTHER, roles::USER).await);
    let mut first = watch(&mut user, owned_by(USER)).await.unwrap();
    let _second = watch(&mut user, owned_by(USER)).await.unwrap();
    let refused = assert_error(watch(&mut user, owned_by(USER)).await, Code::ResourceExhausted, "TOO_MANY_STREAMS");
    assert_eq!(error_info(&refused).get("scope").map(String::as_str), Some("user"));
    assert_eq!(error_info(&refused).get("limit").map(String::as_str), Some("2"));

    let _third = watch(&mut other, owned_by(OTHER)).await.unwrap();
    let refused = assert_error(watch(&mut other, owned_by(OTHER)).await, Code::ResourceExhausted, "TOO_MANY_STREAMS");
    assert_eq!(error_info(&refused).get("scope").map(String::as_str), Some("gateway"));

    // The open streams keep flowing; closing one frees its place.
    live(&mut first).await;
    drop(first);
    let reopen = async {
        loop {
            match watch(&mut user, owned_by(USER)).await {
                Ok(stream) => return stream,
                Err(status) => assert_eq!(reason_of(&status), "TOO_MANY_STREAMS"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let mut reopened = tokio::time::timeout(STALLED, reopen).await.expect("the closed stream's place stayed taken");
    live(&mut reopened).await;
}

/// A gRPC-web call over HTTP/1.1 (what a browser sends) streams its frames as they come.
#[tokio::test]
async fn grpc_web_streams_item_events() {
    let stack = items_stack(|_| {}).await;
    let mut admin = admin_with_sword(&stack).await;
    let granted = grant(&mut admin, USER).await;

    let request = pb::WatchItemEventsRequest { start: Some(Start::FromBeginning(true)), ..owned_by(USER) };
    let addr = stack.addr(Service::Gateway).unwrap();
    let path = "/economy.items.v1.ItemService/WatchItemEvents";
    let mut stream = grpc_web_stream(addr, path, &bearer(USER, roles::USER), &request.encode_to_vec()).await;
    let event = tokio::time::timeout(STALLED, async {
        loop {
            if let Some(Kind::Event(event)) = stream.next::<pb::WatchItemEventsResponse>().await.kind {
                return event;
            }
        }
    })
    .await
    .expect("no event came");
    assert_eq!(event.item_instance_id, granted);
}

/// A client that reads nothing while 2000 events commit, then reads: everything arrives
/// in commit order. The gateway passes messages one by one as the client's flow-control
/// window allows, so while the client does not read the items service's stream waits on
/// its bounded channel instead of the gateway buffering.
#[tokio::test]
async fn a_slow_consumer_gets_everything_in_order() {
    let stack = items_stack(|_| {}).await;
    admin_with_sword(&stack).await;
    let mut user = items(&stack, USER, roles::USER).await;
    let mut stream = watch(&mut user, owned_by(USER)).await.unwrap();
    live(&mut stream).await;

    let mut direct = ItemServiceClient::new(stack.signed(Service::Items, Caller::user(ADMIN, roles::ADMIN)).await);
    let reason = "x".repeat(400);
    let mut granted = Vec::new();
    for _ in 0..2000 {
        let request =
            pb::GrantItemRequest { idempotency_key: new_key(), reason: reason.clone(), ..grant_request(USER) };
        granted.push(direct.grant_item(request).await.unwrap().into_inner().item.unwrap().id);
    }
    let mut delivered = Vec::with_capacity(granted.len());
    while delivered.len() < granted.len() {
        delivered.push(next_event(&mut stream).await.0.item_instance_id);
    }
    assert_eq!(delivered, granted);
}

#[tokio::test]
async fn a_stream_to_a_service_that_is_down_answers_upstream_unavailable() {
    let mut stack = items_stack(|_| {}).await;
    stack.stop(Service::Items).await;
    let mut user = items(&stack, USER, roles::USER).await;
    let status = assert_error(watch(&mut user, owned_by(USER)).await, Code::Unavailable, "UPSTREAM_UNAVAILABLE");
    assert_eq!(error_info(&status).get("upstream").map(String::as_str), Some("items"));
}

/// The server's graceful shutdown waits for open streams: the gateway ends them first.
#[tokio::test]
async fn the_gateway_ends_open_streams_when_it_shuts_down() {
    let mut stack = items_stack(|_| {}).await;
    let mut user = items(&stack, USER, roles::USER).await;
    let mut stream = watch(&mut user, owned_by(USER)).await.unwrap();
    live(&mut stream).await;

    let stopped = tokio::time::timeout(STALLED, stack.stop(Service::Gateway)).await;
    assert!(stopped.is_ok(), "the gateway waited for the open stream");
    let end = tokio::time::timeout(STALLED, async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return None,
                Err(status) => return Some(status),
            }
        }
    })
    .await
    .expect("the stream outlived the gateway");
    let status = end.expect("the stream ends with an error, not as if complete");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("shutting down"), "{status:?}");
}
