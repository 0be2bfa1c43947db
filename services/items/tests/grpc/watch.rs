//! `WatchItemEvents` (docs/items.md, "Watching events"): where a stream starts, resuming
//! from a cursor while writers commit concurrently, filters, authorization, heartbeats,
//! a slow consumer, bad cursors and shutdown.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use economy_kit::identity::{Caller, roles};
use economy_proto::items::v1 as pb;
use economy_testkit::{Service, identity, test_stack};
use pb::ItemEventType as E;
use pb::watch_item_events_request::Start;
use pb::watch_item_events_response::Kind;
use sqlx::{Connection, PgConnection};
use tokio::task::JoinSet;
use tonic::{Code, Streaming};

use crate::common::*;

/// Guards against a hung stream only (never a timed assertion): far above any wait.
const STALLED: Duration = Duration::from_secs(60);

/// The items service with a one-second heartbeat.
async fn spawn_watch_app() -> TestApp {
    let stack = test_stack(&[Service::Items])
        .configure(|config| {
            config.items.item_expiry_interval_secs = 3600;
            config.items.lock_expiry_interval_secs = 3600;
            config.items.watch_heartbeat_secs = 1;
        })
        .manual_clock()
        .start()
        .await;
    let clock = stack.clock();
    TestApp { stack, key: identity(), clock }
}

fn from_beginning() -> pb::WatchItemEventsRequest {
    pb::WatchItemEventsRequest { start: Some(Start::FromBeginning(true)), ..Default::default() }
}

fn after(cursor: &str) -> pb::WatchItemEventsRequest {
    pb::WatchItemEventsRequest { start: Some(Start::AfterCursor(cursor.into())), ..Default::default() }
}

async fn watch(client: &mut Client, request: pb::WatchItemEventsRequest) -> Streaming<pb::WatchItemEventsResponse> {
    client.watch_item_events(request).await.unwrap().into_inner()
}

/// The next message (event or heartbeat).
async fn next(stream: &mut Streaming<pb::WatchItemEventsResponse>) -> pb::WatchItemEventsResponse {
    let message = tokio::time::timeout(STALLED, stream.message()).await.expect("the stream stalled");
    message.unwrap().expect("the stream ended")
}

/// The next event and its cursor, skipping heartbeats.
async fn next_event(stream: &mut Streaming<pb::WatchItemEventsResponse>) -> (pb::ItemEvent, String) {
    let event = async {
        loop {
            let message = stream.message().await.unwrap().expect("the stream ended");
            if let Some(Kind::Event(event)) = message.kind {
                return (event, message.cursor);
            }
        }
    };
    tokio::time::timeout(STALLED, event).await.expect("no event came")
}

async fn next_events(
    stream: &mut Streaming<pb::WatchItemEventsResponse>,
    count: usize,
) -> Vec<(pb::ItemEvent, String)> {
    let mut events = Vec::with_capacity(count);
    for _ in 0..count {
        events.push(next_event(stream).await);
    }
    events
}

/// Asserts that the stream has nothing more below its horizon: the next message is a
/// heartbeat (sent only once the backlog is delivered); returns its cursor.
async fn assert_caught_up(stream: &mut Streaming<pb::WatchItemEventsResponse>) -> String {
    let message = next(stream).await;
    assert!(matches!(message.kind, Some(Kind::Heartbeat(_))), "expected a heartbeat, got {message:?}");
    message.cursor
}

fn ids(events: &[(pb::ItemEvent, String)]) -> Vec<String> {
    events.iter().map(|(event, _)| event.id.clone()).collect()
}

#[tokio::test]
async fn streams_start_from_the_beginning_now_or_a_cursor() {
    let app = spawn_watch_app().await;
    let mut admin = app.admin_with_catalog().await;
    let mut granted = Vec::new();
    for owner in [2, 3, 4] {
        granted.push(grant(&mut admin, owner, "voucher").await.id);
    }
    let mut everything = watch(&mut admin, from_beginning()).await;
    let backlog = next_events(&mut everything, 3).await;
    let items: Vec<_> = backlog.iter().map(|(event, _)| event.item_instance_id.clone()).collect();
    assert_eq!(items, granted);
    assert!(backlog.iter().all(|(event, _)| event.r#type() == E::Granted));

    let mut resumed = watch(&mut admin, after(&backlog[1].1)).await;
    assert_eq!(next_event(&mut resumed).await.0.id, backlog[2].0.id);
    let mut from_now = watch(&mut admin, pb::WatchItemEventsRequest::default()).await;
    assert_caught_up(&mut from_now).await;

    let fourth = grant(&mut admin, 5, "sword").await;
    for stream in [&mut everything, &mut resumed, &mut from_now] {
        let (event, _) = next_event(stream).await;
        assert_eq!((event.item_instance_id.as_str(), event.r#type()), (fourth.id.as_str(), E::Granted));
    }
}

#[tokio::test]
async fn a_heartbeat_cursor_resumes_after_everything_passed() {
    let app = spawn_watch_app().await;
    let mut admin = app.admin_with_catalog().await;
    grant(&mut admin, 2, "voucher").await;
    let mut stream = watch(&mut admin, from_beginning()).await;
    next_event(&mut stream).await;
    // On PostgreSQL an idle stream's position still moves with the horizon.
    let heartbeats = [assert_caught_up(&mut stream).await, assert_caught_up(&mut stream).await];
    drop(stream);

    let later = grant(&mut admin, 3, "voucher").await;
    for cursor in heartbeats {
        let mut resumed = watch(&mut admin, after(&cursor)).await;
        assert_eq!(next_event(&mut resumed).await.0.item_instance_id, later.id);
        assert_caught_up(&mut resumed).await;
    }
}

/// Eight writers grant, lock, transfer and unlock concurrently while a client reads part
/// of the stream, disconnects and resumes from its last cursor: together the two streams
/// hold every event exactly once, each instance's in its history's order.
#[tokio::test]
async fn a_resumed_stream_misses_and_repeats_nothing_under_concurrent_writers() {
    let app = spawn_watch_app().await;
    let mut admin = app.admin_with_catalog().await;
    let mut first = watch(&mut admin, from_beginning()).await;
    let mut writers = JoinSet::new();
    for writer in 0..8_i64 {
        let mut client = app.service("market").await;
        writers.spawn(async move {
            let mut items = Vec::new();
            for round in 0..6 {
                let owner = 10 + writer;
                let item = grant(&mut client, owner, "voucher").await;
                let holder = format!("market:listing:{writer}-{round}");
                lock(&mut client, &item.id, &holder).await;
                if round % 2 == 0 {
                    client.transfer_item(transfer_request(&item.id, &holder, owner + 100)).await.unwrap();
                } else {
                    client.unlock_item(unlock_request(&item.id, &holder)).await.unwrap();
                }
                items.push(item.id);
            }
            items
        });
    }
    let before = next_events(&mut first, 40).await;
    drop(first);
    let mut second = watch(&mut admin, after(&before.last().unwrap().1)).await;

    let mut history = HashMap::new();
    while let Some(items) = writers.join_next().await {
        for item in items.unwrap() {
            let events = events(&mut admin, &item).await;
            history.insert(item, events.into_iter().map(|event| event.id).collect::<Vec<_>>());
        }
    }
    let total: usize = history.values().map(Vec::len).sum();
    assert_eq!(total, 8 * 6 * 3);
    let after = next_events(&mut second, total - before.len()).await;
    assert_caught_up(&mut second).await;

    let streamed: Vec<(pb::ItemEvent, String)> = before.into_iter().chain(after).collect();
    let unique: HashSet<String> = ids(&streamed).into_iter().collect();
    assert_eq!(unique.len(), total, "an event was repeated");
    let mut per_item: HashMap<String, Vec<String>> = HashMap::new();
    for (event, _) in &streamed {
        per_item.entry(event.item_instance_id.clone()).or_default().push(event.id.clone());
    }
    assert_eq!(per_item, history, "the streams differ from the histories");
}

#[tokio::test]
async fn filters_select_owner_template_and_types() {
    let app = spawn_watch_app().await;
    let mut admin = app.admin_with_catalog().await;
    let mut market = app.service("market").await;
    let voucher = grant(&mut admin, 2, "voucher").await;
    let sword = grant(&mut admin, 3, "sword").await;
    lock(&mut market, &voucher.id, MARKET).await;
    market.transfer_item(transfer_request(&voucher.id, MARKET, 3)).await.unwrap();
    lock(&mut market, &voucher.id, MARKET).await;

    let cases = [
        // The old owner sees the transfer away and nothing after it.
        (
            pb::WatchItemEventsRequest { owner_user_id: 2, ..from_beginning() },
            vec![
                (voucher.id.clone(), E::Granted),
                (voucher.id.clone(), E::Locked),
                (voucher.id.clone(), E::Transferred),
            ],
        ),
        (
            pb::WatchItemEventsRequest { owner_user_id: 3, ..from_beginning() },
            vec![(sword.id.clone(), E::Granted), (voucher.id.clone(), E::Transferred), (voucher.id.clone(), E::Locked)],
        ),
        (
            pb::WatchItemEventsRequest { template_code: "sword".into(), ..from_beginning() },
            vec![(sword.id.clone(), E::Granted)],
        ),
        (
            pb::WatchItemEventsRequest { types: vec![E::Locked.into()], ..from_beginning() },
            vec![(voucher.id.clone(), E::Locked), (voucher.id.clone(), E::Locked)],
        ),
        (
            pb::WatchItemEventsRequest {
                owner_user_id: 3,
                template_code: "voucher".into(),
                types: vec![E::Transferred.into(), E::Granted.into()],
                ..from_beginning()
            },
            vec![(voucher.id.clone(), E::Transferred)],
        ),
    ];
    for (request, expected) in cases {
        let mut stream = watch(&mut admin, request.clone()).await;
        let got: Vec<_> = next_events(&mut stream, expected.len())
            .await
            .into_iter()
            .map(|(event, _)| (event.item_instance_id.clone(), event.r#type()))
            .collect();
        assert_eq!(got, expected, "{request:?}");
        assert_caught_up(&mut stream).await;
    }
}

#[tokio::test]
async fn users_watch_their_own_events_only() {
    let app = spawn_watch_app().await;
    let mut admin = app.admin_with_catalog().await;
    let mine = grant(&mut admin, 2, "voucher").await;
    grant(&mut admin, 3, "voucher").await;
    let mut user = app.user(2).await;
    let denied = [from_beginning(), pb::WatchItemEventsRequest { owner_user_id: 3, ..from_beginning() }];
    for request in denied {
        assert_error(user.watch_item_events(request).await, Code::PermissionDenied, "PERMISSION_DENIED");
    }
    let mut own = watch(&mut user, pb::WatchItemEventsRequest { owner_user_id: 2, ..from_beginning() }).await;
    assert_eq!(next_event(&mut own).await.0.item_instance_id, mine.id);
    assert_caught_up(&mut own).await;

    let mut staff = app.client(Caller::user(4, roles::MERCHANT_STAFF)).await;
    assert_error(staff.watch_item_events(from_beginning()).await, Code::PermissionDenied, "PERMISSION_DENIED");
    let mut redemption = app.service("redemption").await;
    let mut all = watch(&mut redemption, from_beginning()).await;
    assert_eq!(next_events(&mut all, 2).await.len(), 2);
}

#[tokio::test]
async fn malformed_requests_are_validation_failed() {
    let app = spawn_watch_app().await;
    let mut admin = app.admin_with_catalog().await;
    let item = ItemIdText::new();
    let bad = [
        (after("garbage"), "after_cursor"),
        (after("v1.-3."), "after_cursor"),
        (after(&format!("v2.1.{}", item.0)), "after_cursor"),
        (after("v1.1.not-a-uuid"), "after_cursor"),
        (
            pb::WatchItemEventsRequest { start: Some(Start::FromBeginning(false)), ..Default::default() },
            "from_beginning",
        ),
        (pb::WatchItemEventsRequest { types: vec![0], ..Default::default() }, "types"),
        (pb::WatchItemEventsRequest { owner_user_id: -1, ..Default::default() }, "owner_user_id"),
        (pb::WatchItemEventsRequest { template_code: "Not A Code".into(), ..Default::default() }, "template_code"),
    ];
    for (request, field) in bad {
        let status =
            assert_error(admin.watch_item_events(request.clone()).await, Code::InvalidArgument, "VALIDATION_FAILED");
        assert_eq!(economy_kit::error::violated_fields(&status), [field], "{request:?}");
    }
    // A well-formed cursor of an event that does not exist is a position like any other.
    let mut stream = watch(&mut admin, after(&format!("v1.1.{}", item.0))).await;
    assert_caught_up(&mut stream).await;
}

/// A random event id.
struct ItemIdText(String);

impl ItemIdText {
    fn new() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }
}

/// A client that reads nothing while hundreds of events commit: the server waits on the
/// full channel (it holds at most a page and the channel), then delivers everything in
/// order once the client reads.
#[tokio::test]
async fn a_slow_consumer_gets_everything_in_order() {
    let app = spawn_watch_app().await;
    let mut admin = app.admin_with_catalog().await;
    let mut stream = watch(&mut admin, pb::WatchItemEventsRequest::default()).await;
    let mut granted = Vec::new();
    for owner in 0..400 {
        granted.push(grant(&mut admin, 2 + owner % 7, "sword").await.id);
    }
    let items: Vec<_> =
        next_events(&mut stream, granted.len()).await.into_iter().map(|(event, _)| event.item_instance_id).collect();
    assert_eq!(items, granted);
    assert_caught_up(&mut stream).await;
}

#[tokio::test]
async fn streams_end_on_shutdown() {
    let mut app = spawn_watch_app().await;
    let mut admin = app.admin_with_catalog().await;
    let mut stream = watch(&mut admin, pb::WatchItemEventsRequest::default()).await;
    assert_caught_up(&mut stream).await;
    let stopped = tokio::time::timeout(STALLED, app.stack.stop(Service::Items)).await;
    assert!(stopped.is_ok(), "the server waited for the stream");
    let end = tokio::time::timeout(STALLED, async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => return,
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the stream outlived the server");
}

/// PostgreSQL: a transaction that took its position (transaction id) first but commits
/// last holds the stream back, so its event is delivered before the later ones instead
/// of landing behind a cursor already passed. (SQLite serializes writers: nothing to
/// race.)
#[tokio::test]
async fn a_slower_transaction_holds_the_stream_back_on_postgres() {
    let app = spawn_watch_app().await;
    let url = app.stack.database(Service::Items).url.clone();
    if !url.starts_with("postgres") {
        return;
    }
    let mut admin = app.admin_with_catalog().await;
    let item = grant(&mut admin, 2, "sword").await;
    let mut stream = watch(&mut admin, from_beginning()).await;
    next_event(&mut stream).await;
    assert_caught_up(&mut stream).await;

    let mut slow = PgConnection::connect(&url).await.unwrap();
    let mut slow_tx = slow.begin().await.unwrap();
    insert_raw_event(&mut slow_tx, &item.id).await;
    let fast = grant(&mut admin, 3, "sword").await;
    assert_caught_up(&mut stream).await;

    slow_tx.commit().await.unwrap();
    let delivered: Vec<_> =
        next_events(&mut stream, 2).await.into_iter().map(|(event, _)| event.item_instance_id).collect();
    assert_eq!(delivered, [item.id.clone(), fast.id]);
}

/// A change committed by another replica (a second store on the same database, as its
/// expiry job would) reaches the stream: on PostgreSQL through LISTEN/NOTIFY, on SQLite
/// through the re-read safety net.
#[tokio::test]
async fn another_replicas_commit_reaches_the_stream() {
    use economy_kit::time::now_millis;
    let app = spawn_watch_app().await;
    let mut admin = app.admin_with_catalog().await;
    let item = grant_expiring(&mut admin, 2, "sword", now_millis() + 3_600_000).await;
    let mut stream = watch(&mut admin, pb::WatchItemEventsRequest { owner_user_id: 2, ..Default::default() }).await;
    assert_caught_up(&mut stream).await;
    let replica = app.store().await;
    assert_eq!(economy_items::jobs::expire_items(&replica, now_millis() + 7_200_000).await.unwrap(), 1);
    let (event, _) = next_event(&mut stream).await;
    assert_eq!((event.item_instance_id.as_str(), event.r#type()), (item.id.as_str(), E::Expired));
}

/// Appends an `unlocked` event of `item` (owner 2) inside `tx`, at `tx`'s position.
async fn insert_raw_event(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, item: &str) {
    sqlx::query(
        "INSERT INTO item_events (id, item_instance_id, version, event_type, idempotency_key, fingerprint, actor, \
         to_owner_user_id, business_type, reason, status, created_at, stream_position) \
         VALUES ($1, $2, 99, 'unlocked', 'slow', 'x', 'service:test', 2, 'TEST', '', 'available', 0, \
         pg_current_xact_id()::text::bigint)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(item)
    .execute(&mut **tx)
    .await
    .unwrap();
}

/// PostgreSQL: a stream "from now" starts below a running transaction, yet leaves out
/// what had committed before it started and delivers what commits after, including
/// that older transaction's event.
#[tokio::test]
async fn from_now_leaves_out_what_committed_before_on_postgres() {
    let app = spawn_watch_app().await;
    let url = app.stack.database(Service::Items).url.clone();
    if !url.starts_with("postgres") {
        return;
    }
    let mut admin = app.admin_with_catalog().await;
    let item = grant(&mut admin, 2, "sword").await;
    let mut slow = PgConnection::connect(&url).await.unwrap();
    let mut slow_tx = slow.begin().await.unwrap();
    insert_raw_event(&mut slow_tx, &item.id).await;
    // Committed before the stream starts, above its horizon (the slow transaction is older).
    grant(&mut admin, 3, "sword").await;

    let mut stream = watch(&mut admin, pb::WatchItemEventsRequest::default()).await;
    assert_caught_up(&mut stream).await;
    slow_tx.commit().await.unwrap();
    let after = grant(&mut admin, 4, "sword").await;
    let delivered: Vec<_> =
        next_events(&mut stream, 2).await.into_iter().map(|(event, _)| event.item_instance_id).collect();
    assert_eq!(delivered, [item.id.clone(), after.id]);
    assert_caught_up(&mut stream).await;
}
