//! WatchBackpack: a player's balance changes (with the balance after) and item events as
//! they commit, resuming from a cursor, authorization, limits, heartbeats and the end of
//! a stream when an upstream or the gateway stops.

use std::collections::HashSet;
use std::time::Duration;

use economy_kit::identity::roles;
use economy_proto::gateway::v1 as pb;
use economy_proto::items::v1 as items;
use economy_proto::ledger::v1 as ledger;
use economy_testkit::{bearer, grpc_web_stream};
use pb::watch_backpack_response::Kind;
use prost::Message;
use tonic::Streaming;

use crate::common::*;

/// Guards against a hung stream only (never a timed assertion): far above any wait.
const STALLED: Duration = Duration::from_secs(60);

/// The whole stack with one-second backpack heartbeats and `per_user` streams per user.
async fn spawn_watch_stack(per_user: usize) -> Stack {
    let stack = economy_testkit::test_stack(&Service::ALL)
        .configure(|config| {
            config.limits.request_timeout_secs = 5;
            config.gateway.streams.heartbeat_secs = 1;
            config.gateway.streams.per_user = per_user;
        })
        .start()
        .await;
    Stack(stack)
}

fn from(cursor: &str) -> pb::WatchBackpackRequest {
    pb::WatchBackpackRequest { user_id: 0, after_cursor: cursor.into() }
}

async fn watch(stack: &Stack, user_id: i64, request: pb::WatchBackpackRequest) -> Streaming<pb::WatchBackpackResponse> {
    let mut client = stack.backpack(user_id, roles::USER).await;
    client.watch_backpack(request).await.expect("watch").into_inner()
}

async fn next(stream: &mut Streaming<pb::WatchBackpackResponse>) -> pb::WatchBackpackResponse {
    let message = tokio::time::timeout(STALLED, stream.message()).await.expect("the stream stalled");
    message.expect("a message").expect("the stream ended")
}

/// The next balance change or item event, skipping heartbeats.
async fn next_change(stream: &mut Streaming<pb::WatchBackpackResponse>) -> (Kind, String) {
    loop {
        let message = next(stream).await;
        match message.kind.expect("a kind") {
            Kind::Heartbeat(_) => continue,
            kind => return (kind, message.cursor),
        }
    }
}

/// Credits `amount` DIAMOND to `user`; the entry id.
async fn credit(stack: &Stack, user: i64, amount: i64) -> String {
    let request = ledger::AdjustBalanceRequest {
        user_id: user,
        asset_code: "DIAMOND".into(),
        direction: ledger::AdjustDirection::Credit.into(),
        amount,
        reason: "prize".into(),
        ..Default::default()
    };
    let response = stack.ledger().await.adjust_balance(with_new_key(request)).await.expect("credit");
    response.into_inner().transaction.expect("entry").id
}

/// Grants one voucher (defined by `stack.grant(_, "voucher", 0)`) to `owner`; its id.
async fn grant_voucher(stack: &Stack, owner: i64) -> String {
    let grant = items::GrantItemRequest { owner_user_id: owner, template_code: "voucher".into(), ..Default::default() };
    let granted = stack.items().await.grant_item(with_new_key(grant)).await.expect("grant");
    granted.into_inner().item.expect("item").id
}

fn diamond_change(kind: &Kind) -> (i64, i64) {
    let Kind::BalanceChange(change) = kind else { panic!("expected a balance change, got {kind:?}") };
    let diamond = change.changes.iter().find(|change| change.asset_code == "DIAMOND").expect("DIAMOND moved");
    (diamond.available_delta, diamond.balance.as_ref().expect("balance after").available)
}

#[tokio::test]
async fn a_player_sees_what_they_receive_with_the_balance_after_it() {
    let stack = spawn_watch_stack(4).await;
    stack.fund(USER, &[("DIAMOND", 640)]).await;
    let mut stream = watch(&stack, USER, from("")).await;
    let start = next(&mut stream).await;
    assert!(matches!(start.kind, Some(Kind::Heartbeat(_))), "a stream from now opens with its cursor: {start:?}");

    credit(&stack, 3, 999).await; // another player's: never shown to USER
    let entry = credit(&stack, USER, 60).await;
    let (kind, _) = next_change(&mut stream).await;
    assert_eq!(diamond_change(&kind), (60, 700), "you received 60, balance 700");
    let Kind::BalanceChange(change) = &kind else { unreachable!() };
    assert_eq!(change.entry_id, entry);

    stack.grant(USER, "voucher", 0).await;
    grant_voucher(&stack, 3).await; // another player's
    let granted = grant_voucher(&stack, USER).await;
    let (kind, _) = next_change(&mut stream).await;
    let Kind::ItemEvent(event) = kind else { panic!("expected an item event, got {kind:?}") };
    assert_eq!(event.item_instance_id, granted);
}

#[tokio::test]
async fn a_resumed_stream_misses_and_repeats_nothing() {
    let stack = spawn_watch_stack(4).await;
    stack.fund(USER, &[("DIAMOND", 1)]).await;
    stack.grant(USER, "voucher", 0).await;
    let mut stream = watch(&stack, USER, from("")).await;
    let mut cursor = next(&mut stream).await.cursor;
    let mut written = HashSet::new();
    let mut seen = Vec::new();
    for round in 0..4 {
        for amount in 1..=3 {
            written.insert(credit(&stack, USER, round * 10 + amount).await);
        }
        written.insert(grant_voucher(&stack, USER).await);
        // Read part of what is there, then disconnect and resume from the last cursor.
        for _ in 0..2 {
            let (kind, at) = next_change(&mut stream).await;
            seen.push(kind);
            cursor = at;
        }
        drop(stream);
        stream = watch(&stack, USER, from(&cursor)).await;
    }
    while seen.len() < written.len() {
        seen.push(next_change(&mut stream).await.0);
    }
    let ids: Vec<String> = seen
        .iter()
        .map(|kind| match kind {
            Kind::BalanceChange(change) => change.entry_id.clone(),
            Kind::ItemEvent(event) => event.item_instance_id.clone(),
            Kind::Heartbeat(_) => unreachable!(),
        })
        .collect();
    assert_eq!(ids.len(), ids.iter().collect::<HashSet<_>>().len(), "nothing repeated: {ids:?}");
    assert_eq!(ids.into_iter().collect::<HashSet<_>>(), written, "nothing missed");
}

#[tokio::test]
async fn users_watch_their_own_backpack_and_admins_any() {
    let stack = spawn_watch_stack(4).await;
    let other = pb::WatchBackpackRequest { user_id: USER, after_cursor: String::new() };
    let mut stranger = stack.backpack(9, roles::USER).await;
    let denied = stranger.watch_backpack(other.clone()).await.expect_err("not theirs");
    assert_eq!(reason_of(&denied), "PERMISSION_DENIED");
    let mut admin = stack.backpack(ADMIN, roles::ADMIN).await;
    let mut watched = admin.watch_backpack(other).await.expect("admin").into_inner();
    stack.fund(USER, &[("DIAMOND", 5)]).await;
    assert_eq!(diamond_change(&next_change(&mut watched).await.0), (5, 5));

    let malformed = stranger.watch_backpack(from("v1.1.")).await.expect_err("not a backpack cursor");
    assert_eq!((malformed.code(), reason_of(&malformed)), (tonic::Code::InvalidArgument, "VALIDATION_FAILED".into()));
    let mut anonymous = pb::backpack_service_client::BackpackServiceClient::new(
        tonic::transport::Channel::from_shared(stack.url_of(Service::Gateway))
            .expect("url")
            .connect()
            .await
            .expect("connect"),
    );
    let unauthenticated = anonymous.watch_backpack(from("")).await.expect_err("no token");
    assert_eq!(reason_of(&unauthenticated), "TOKEN_MISSING");
}

#[tokio::test]
async fn idle_streams_get_heartbeats_and_a_user_holds_a_limited_number() {
    let stack = spawn_watch_stack(1).await;
    let mut stream = watch(&stack, USER, from("")).await;
    for _ in 0..2 {
        let message = next(&mut stream).await;
        assert!(matches!(message.kind, Some(Kind::Heartbeat(_))), "{message:?}");
        assert!(message.cursor.starts_with("bp1~"));
    }
    let mut client = stack.backpack(USER, roles::USER).await;
    let refused = client.watch_backpack(from("")).await.expect_err("one stream per user");
    assert_eq!((refused.code(), reason_of(&refused)), (tonic::Code::ResourceExhausted, "TOO_MANY_STREAMS".into()));
    drop(stream);
    // The place is given back once the gateway notices the client left.
    let reopened = async {
        loop {
            if let Ok(stream) = client.watch_backpack(from("")).await {
                return stream;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(STALLED, reopened).await.expect("the place was never given back");
}

#[tokio::test]
async fn a_stream_ends_when_an_upstream_stops_and_when_the_gateway_does() {
    let mut stack = spawn_watch_stack(4).await;
    let mut stream = watch(&stack, USER, from("")).await;
    next(&mut stream).await;
    stack.stop(Service::Items).await;
    let ended = tokio::time::timeout(STALLED, async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return None,
                Err(status) => return Some(status),
            }
        }
    })
    .await
    .expect("the stream outlived items");
    let status = ended.expect("an error tells the client to reconnect");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");

    let mut client = stack.backpack(USER, roles::USER).await;
    let failed = client.watch_backpack(from("")).await.expect_err("items down");
    assert_eq!(reason_of(&failed), "UPSTREAM_UNAVAILABLE");
}

#[tokio::test]
async fn open_streams_end_when_the_gateway_stops() {
    let mut stack = spawn_watch_stack(4).await;
    let mut stream = watch(&stack, USER, from("")).await;
    next(&mut stream).await;
    tokio::time::timeout(STALLED, stack.stop(Service::Gateway)).await.expect("the gateway waited for the stream");
    let end = tokio::time::timeout(STALLED, async { while let Ok(Some(_)) = stream.message().await {} }).await;
    assert!(end.is_ok(), "the stream outlived the gateway");
}

/// A BFF in a browser: WatchBackpack over gRPC-web delivers the balance change.
#[tokio::test]
async fn grpc_web_streams_a_backpack() {
    let stack = spawn_watch_stack(4).await;
    stack.fund(USER, &[("DIAMOND", 640)]).await;
    let addr = stack.addr(Service::Gateway).expect("the gateway runs");
    let path = "/economy.gateway.v1.BackpackService/WatchBackpack";
    let request = from("").encode_to_vec();
    let mut stream = grpc_web_stream(addr, path, &bearer(USER, roles::USER), &request).await;
    let opening: pb::WatchBackpackResponse = stream.next().await;
    assert!(matches!(opening.kind, Some(Kind::Heartbeat(_))), "{opening:?}");
    credit(&stack, USER, 60).await;
    let change = tokio::time::timeout(STALLED, async {
        loop {
            let message: pb::WatchBackpackResponse = stream.next().await;
            if let Some(kind @ Kind::BalanceChange(_)) = message.kind {
                return kind;
            }
        }
    })
    .await
    .expect("no change came");
    assert_eq!(diamond_change(&change), (60, 700));
}

/// An analytics job follows every journal entry through the gateway (`WatchEntries`,
/// admin), disconnecting and resuming from its last cursor: nothing missed, nothing
/// twice. A user may follow only their own account.
#[tokio::test]
async fn an_analytics_job_follows_every_entry_through_the_gateway() {
    let stack = spawn_watch_stack(4).await;
    stack.fund(USER, &[("DIAMOND", 1)]).await;
    let mut ledger_client = stack.ledger().await;
    let from_beginning = ledger::WatchEntriesRequest {
        start: Some(ledger::watch_entries_request::Start::FromBeginning(true)),
        ..Default::default()
    };
    let mut stream = ledger_client.watch_entries(from_beginning).await.expect("watch").into_inner();
    let mut seen = Vec::new();
    let mut cursor = String::new();
    for round in 0..3 {
        for user in [USER, 3, 4] {
            credit(&stack, user, round + 1).await;
        }
        for _ in 0..2 {
            let (id, at) = next_entry(&mut stream).await;
            seen.push(id);
            cursor = at;
        }
        drop(stream);
        let resume = ledger::WatchEntriesRequest {
            start: Some(ledger::watch_entries_request::Start::AfterCursor(cursor.clone())),
            ..Default::default()
        };
        stream = ledger_client.watch_entries(resume).await.expect("resume").into_inner();
    }
    let listed = all_entry_ids(&stack).await;
    while seen.len() < listed.len() {
        seen.push(next_entry(&mut stream).await.0);
    }
    assert_eq!(seen.len(), seen.iter().collect::<HashSet<_>>().len(), "nothing repeated: {seen:?}");
    assert_eq!(seen.into_iter().collect::<HashSet<_>>(), listed, "nothing missed");

    let mut stranger = ledger::ledger_service_client::LedgerServiceClient::new(stack.authed(9, roles::USER).await);
    let account = ledger::AccountRef { account: Some(ledger::account_ref::Account::UserId(USER)) };
    let theirs = ledger::WatchEntriesRequest { account: Some(account), ..Default::default() };
    let denied = stranger.watch_entries(theirs).await.expect_err("not theirs");
    assert_eq!(reason_of(&denied), "PERMISSION_DENIED");
}

async fn next_entry(stream: &mut Streaming<ledger::WatchEntriesResponse>) -> (String, String) {
    loop {
        let message = tokio::time::timeout(STALLED, stream.message()).await.expect("stalled");
        let message = message.expect("a message").expect("the stream ended");
        if let Some(ledger::watch_entries_response::Kind::Entry(entry)) = message.kind {
            return (entry.id, message.cursor);
        }
    }
}

/// Every journal entry, from the history of every account that has one here.
async fn all_entry_ids(stack: &Stack) -> HashSet<String> {
    let mut ledger_client = stack.ledger().await;
    let mut ids = HashSet::new();
    for user in [USER, 3, 4] {
        let account = ledger::AccountRef { account: Some(ledger::account_ref::Account::UserId(user)) };
        let request = ledger::ListTransactionsRequest { account: Some(account), page_size: 500, ..Default::default() };
        let listed = ledger_client.list_transactions(request).await.expect("history").into_inner();
        ids.extend(listed.transactions.into_iter().map(|entry| entry.id));
    }
    ids
}
