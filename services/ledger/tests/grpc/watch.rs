//! `WatchEntries` (docs/ledger.md, "Watching entries"; docs/streams.md): where a stream
//! starts, resuming from a cursor while eight writers commit concurrently, filters,
//! authorization, heartbeats, a slow consumer, bad requests and shutdown.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use economy_kit::db::DbOptions;
use economy_kit::identity::{Caller, roles};
use economy_kit::time::{now_millis, system_clock, to_timestamp};
use economy_ledger::store::LedgerStore;
use economy_proto::ledger::v1 as pb;
use economy_testkit::{Service, test_stack};
use pb::watch_entries_request::Start;
use pb::watch_entries_response::Kind;
use sqlx::{Connection, PgConnection};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Streaming};

use crate::common::*;

/// Guards against a hung stream only (never a timed assertion): far above any wait.
const STALLED: Duration = Duration::from_secs(60);

type Stream = Streaming<pb::WatchEntriesResponse>;

/// The ledger with a one-second heartbeat and no hold expiring on its own.
async fn spawn_watch_app() -> TestApp {
    test_stack(&[Service::Ledger])
        .configure(|config| {
            config.ledger.hold_expiry_interval_secs = 3600;
            config.ledger.watch_heartbeat_secs = 1;
        })
        .start()
        .await
        .into()
}

fn from_beginning() -> pb::WatchEntriesRequest {
    pb::WatchEntriesRequest { start: Some(Start::FromBeginning(true)), ..Default::default() }
}

fn after(cursor: &str) -> pb::WatchEntriesRequest {
    pb::WatchEntriesRequest { start: Some(Start::AfterCursor(cursor.into())), ..Default::default() }
}

async fn watch(client: &mut Client, request: pb::WatchEntriesRequest) -> Stream {
    client.watch_entries(request).await.unwrap().into_inner()
}

/// The next message (entry or heartbeat); every message carries a cursor.
async fn next(stream: &mut Stream) -> pb::WatchEntriesResponse {
    let message = tokio::time::timeout(STALLED, stream.message()).await.expect("the stream stalled");
    let message = message.unwrap().expect("the stream ended");
    assert!(message.cursor.starts_with("v1."), "a message without a cursor: {message:?}");
    message
}

/// The next entry and its cursor, skipping heartbeats.
async fn next_entry(stream: &mut Stream) -> (pb::Transaction, String) {
    loop {
        let message = next(stream).await;
        if let Some(Kind::Entry(entry)) = message.kind {
            return (entry, message.cursor);
        }
    }
}

async fn next_entries(stream: &mut Stream, count: usize) -> Vec<(pb::Transaction, String)> {
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        entries.push(next_entry(stream).await);
    }
    entries
}

/// Asserts that the stream has nothing more below its horizon: the next message is a
/// heartbeat (sent only once the backlog is delivered); returns its cursor.
async fn assert_caught_up(stream: &mut Stream) -> String {
    let message = next(stream).await;
    assert!(matches!(message.kind, Some(Kind::Heartbeat(_))), "expected a heartbeat, got {message:?}");
    message.cursor
}

fn ids(entries: &[(pb::Transaction, String)]) -> Vec<String> {
    entries.iter().map(|(entry, _)| entry.id.clone()).collect()
}

async fn credit(client: &mut Client, user_id: i64, asset: &str, amount: i64) -> pb::Transaction {
    adjust(client, user_id, asset, amount).await.unwrap().transaction.unwrap()
}

/// `legs` as one PostTransaction of `business_type`.
async fn post(client: &mut Client, business_type: &str, legs: Vec<pb::PostingInput>) -> pb::Transaction {
    let request = pb::PostTransactionRequest {
        idempotency_key: new_key(),
        business_type: business_type.into(),
        postings: legs,
        ..Default::default()
    };
    client.post_transaction(request).await.unwrap().into_inner().transaction.unwrap()
}

/// A TRANSFER of `amount` POINTS between two users.
async fn transfer(client: &mut Client, from: i64, to: i64, amount: i64) -> pb::Transaction {
    post(client, "TRANSFER", vec![posting(user(from), "POINTS", -amount), posting(user(to), "POINTS", amount)]).await
}

/// Freezes `amount` POINTS of `from` and pays the hold out to `to`: the two entries.
async fn hold_and_settle(client: &mut Client, from: i64, to: i64, amount: i64) -> [pb::Transaction; 2] {
    let hold = pb::CreateHoldRequest {
        idempotency_key: new_key(),
        account: user(from),
        asset_code: "POINTS".into(),
        amount,
        reference: format!("market:listing:{from}-{to}"),
        ..Default::default()
    };
    let created = client.create_hold(hold).await.unwrap().into_inner();
    let settle = pb::SettleHoldRequest {
        idempotency_key: new_key(),
        hold_id: created.hold.unwrap().id,
        destinations: vec![posting(user(to), "POINTS", amount)],
        ..Default::default()
    };
    let settled = client.settle_hold(settle).await.unwrap().into_inner();
    [created.transaction.unwrap(), settled.transaction.unwrap()]
}

/// The resulting balance of `user_id` in `entry`: `(asset, available, frozen)`.
fn resulting(entry: &pb::Transaction, user_id: i64) -> Vec<(String, i64, i64)> {
    let balances = entry.resulting_balances.iter().filter(|balance| balance.account == user(user_id));
    balances.map(|balance| (balance.asset_code.clone(), balance.available, balance.frozen)).collect()
}

#[tokio::test]
async fn streams_start_from_the_beginning_now_or_a_cursor() {
    let app = spawn_watch_app().await;
    let mut admin = app.admin_with_catalog().await;
    let written = vec![
        credit(&mut admin, 2, "POINTS", 100).await,
        credit(&mut admin, 3, "POINTS", 50).await,
        transfer(&mut admin, 2, 3, 30).await,
    ];
    let mut everything = watch(&mut admin, from_beginning()).await;
    let backlog = next_entries(&mut everything, 3).await;
    // Each entry as its write returned it: postings, actor, resulting balances.
    let streamed: Vec<_> = backlog.iter().map(|(entry, _)| entry.clone()).collect();
    assert_eq!(streamed, written);
    assert_eq!(resulting(&streamed[2], 2), [("POINTS".to_string(), 70, 0)]);
    assert_eq!(resulting(&streamed[2], 3), [("POINTS".to_string(), 80, 0)]);
    assert_eq!(streamed[2].postings.len(), 2);

    let mut resumed = watch(&mut admin, after(&backlog[1].1)).await;
    assert_eq!(next_entry(&mut resumed).await.0.id, backlog[2].0.id);
    let mut from_now = watch(&mut admin, pb::WatchEntriesRequest::default()).await;
    assert_caught_up(&mut from_now).await;

    let fourth = credit(&mut admin, 4, "DIAMOND", 7).await;
    for stream in [&mut everything, &mut resumed, &mut from_now] {
        assert_eq!(next_entry(stream).await.0, fourth);
        assert_caught_up(stream).await;
    }
}

#[tokio::test]
async fn a_heartbeat_cursor_resumes_after_everything_passed() {
    let app = spawn_watch_app().await;
    let mut admin = app.admin_with_catalog().await;
    credit(&mut admin, 2, "POINTS", 10).await;
    let mut stream = watch(&mut admin, from_beginning()).await;
    next_entry(&mut stream).await;
    // On PostgreSQL an idle stream's position still moves with the horizon.
    let heartbeats = [assert_caught_up(&mut stream).await, assert_caught_up(&mut stream).await];
    drop(stream);

    let later = credit(&mut admin, 3, "POINTS", 10).await;
    for cursor in heartbeats {
        let mut resumed = watch(&mut admin, after(&cursor)).await;
        assert_eq!(next_entry(&mut resumed).await.0.id, later.id);
        assert_caught_up(&mut resumed).await;
    }
}

/// A stream from now opens with a heartbeat: resuming from its cursor delivers what
/// committed after the call, though no entry had arrived.
#[tokio::test]
async fn a_stream_from_now_opens_with_a_resumable_heartbeat() {
    let app = spawn_watch_app().await;
    let mut admin = app.admin_with_catalog().await;
    let before = credit(&mut admin, 2, "POINTS", 10).await;
    let mut stream = watch(&mut admin, pb::WatchEntriesRequest::default()).await;
    let opening = assert_caught_up(&mut stream).await;
    drop(stream);

    let later = credit(&mut admin, 3, "POINTS", 10).await;
    let mut resumed = watch(&mut admin, after(&opening)).await;
    let (mut entry, _) = next_entry(&mut resumed).await;
    // On PostgreSQL a transaction still running at the call (another test's, on another
    // database of the server) keeps the horizon below `before`: the opening cursor
    // knows nothing of the starting snapshot, so a resumed stream may deliver `before`
    // too (docs/streams.md, "From now") — never anything twice, never `later` missing.
    if entry.id == before.id && postgres_url(&app).is_some() {
        entry = next_entry(&mut resumed).await.0;
    }
    assert_ne!(entry.id, before.id, "an entry committed before the call");
    assert_eq!(entry.id, later.id);
    assert_caught_up(&mut resumed).await;
}

/// Writer `writer`'s entries: a credit, then rounds of a transfer to its partner, a
/// transfer to user 300 (whom every writer pays) and a hold settled to the partner.
async fn write_entries(mut client: Client, writer: i64, finished: Arc<AtomicUsize>) -> Vec<String> {
    let (payer, partner) = (100 + writer, 200 + writer);
    let mut written = vec![credit(&mut client, payer, "POINTS", 10_000).await];
    for round in 0..9 {
        written.push(transfer(&mut client, payer, partner, 10 + round).await);
        written.push(transfer(&mut client, payer, 300, 1).await);
        written.extend(hold_and_settle(&mut client, payer, partner, 5).await);
    }
    finished.fetch_add(1, Ordering::SeqCst);
    written.into_iter().map(|entry| entry.id).collect()
}

/// Resumes after the last entry of `streamed` (from the beginning when empty), appends
/// a few entries to it, stopping early at a heartbeat (caught up), then disconnects;
/// returns how many came.
async fn read_chunk(client: &mut Client, streamed: &mut Vec<(pb::Transaction, String)>) -> usize {
    let cursor = streamed.last().map(|(_, cursor)| cursor.clone());
    let mut stream = watch(client, cursor.as_deref().map_or_else(from_beginning, after)).await;
    let count = 3 + streamed.len() % 5;
    for read in 0..count {
        let message = next(&mut stream).await;
        match message.kind {
            Some(Kind::Entry(entry)) => streamed.push((entry, message.cursor)),
            _ => return read,
        }
    }
    count
}

/// The ids of every entry with a posting on `account`, from ListTransactions.
async fn listed(client: &mut Client, account: Option<pb::AccountRef>) -> Vec<String> {
    let mut ids = Vec::new();
    let mut page_token = String::new();
    loop {
        let request =
            pb::ListTransactionsRequest { account: account.clone(), page_size: 500, page_token, ..Default::default() };
        let page = client.list_transactions(request).await.unwrap().into_inner();
        ids.extend(page.transactions.into_iter().map(|entry| entry.id));
        if page.next_page_token.is_empty() {
            return ids;
        }
        page_token = page.next_page_token;
    }
}

/// Each balance's versions (`balance_seq`) in the order the stream delivered them: one
/// per entry that moved the balance.
fn balance_versions(streamed: &[(pb::Transaction, String)]) -> BTreeMap<(String, String), Vec<i64>> {
    let mut versions: BTreeMap<(String, String), Vec<i64>> = BTreeMap::new();
    for (entry, _) in streamed {
        let legs: BTreeSet<_> = entry
            .postings
            .iter()
            .map(|leg| (format!("{:?}", leg.account), leg.asset_code.clone(), leg.balance_seq))
            .collect();
        for (account, asset, seq) in legs {
            versions.entry((account, asset)).or_default().push(seq);
        }
    }
    versions
}

/// Eight writers transfer and settle holds concurrently while a client reads a few
/// entries at a time, disconnecting and resuming from its last cursor each time, until
/// it has every entry and a last resumed stream is caught up. Returns what the streams
/// delivered and the ids of the entries the writers committed.
async fn stream_while_writing(app: &TestApp, admin: &mut Client) -> (Vec<(pb::Transaction, String)>, HashSet<String>) {
    let finished = Arc::new(AtomicUsize::new(0));
    let mut writers = JoinSet::new();
    for writer in 0..8_i64 {
        writers.spawn(write_entries(app.admin().await, writer, finished.clone()));
    }
    let mut streamed: Vec<(pb::Transaction, String)> = Vec::new();
    while finished.load(Ordering::SeqCst) < 8 {
        read_chunk(admin, &mut streamed).await;
    }
    let mut written = HashSet::new();
    while let Some(ids) = writers.join_next().await {
        written.extend(ids.unwrap());
    }
    assert_eq!(written.len(), 8 * (1 + 9 * 4));
    while streamed.len() < written.len() {
        assert!(read_chunk(admin, &mut streamed).await > 0, "the stream caught up before every entry came");
    }
    let mut last = watch(admin, after(&streamed.last().unwrap().1)).await;
    assert_caught_up(&mut last).await;
    (streamed, written)
}

/// Resuming from the last cursor again and again while eight writers commit: together
/// the streams hold every entry exactly once (the writers' entries, ListTransactions of
/// every account involved, and every version of every balance moved).
#[tokio::test]
async fn resumed_streams_miss_and_repeat_nothing_under_concurrent_writers() {
    let app = spawn_watch_app().await;
    let mut admin = app.admin_with_catalog().await;
    let (streamed, written) = stream_while_writing(&app, &mut admin).await;

    let unique: HashSet<String> = ids(&streamed).into_iter().collect();
    assert_eq!(unique.len(), streamed.len(), "an entry was repeated");
    assert_eq!(unique, written, "the streams differ from the entries written");
    let mut history = HashSet::new();
    for account in (0..8).flat_map(|writer| [100 + writer, 200 + writer]).chain([300]) {
        history.extend(listed(&mut admin, user(account)).await);
    }
    assert_eq!(unique, history, "the streams differ from ListTransactions");
    for (balance, mut seqs) in balance_versions(&streamed) {
        seqs.sort_unstable();
        assert!(seqs.iter().copied().eq(1..=seqs.len() as i64), "versions of {balance:?} missing: {seqs:?}");
    }
}

/// The same workload: each balance's entries arrive in the order they moved it (its
/// `balance_seq` 1, 2, 3...), so the last entry's resulting balance is the current one.
/// On PostgreSQL an entry's position is its transaction's id: every write path takes the
/// balances' advisory locks before its first write (docs/streams.md, "Order on
/// PostgreSQL"), so a writer waiting for a balance takes its id after the one before it.
#[tokio::test]
async fn each_balance_streams_in_the_order_it_moved() {
    let app = spawn_watch_app().await;
    let mut admin = app.admin_with_catalog().await;
    let (streamed, _) = stream_while_writing(&app, &mut admin).await;
    let disordered: Vec<_> = balance_versions(&streamed)
        .into_iter()
        .filter(|(_, seqs)| !seqs.iter().copied().eq(1..=seqs.len() as i64))
        .collect();
    assert!(disordered.is_empty(), "balance versions out of order: {disordered:?}");
}

#[tokio::test]
async fn filters_select_account_asset_and_business_type() {
    let app = spawn_watch_app().await;
    let mut admin = app.admin_with_catalog().await;
    let points_to_2 = credit(&mut admin, 2, "POINTS", 100).await;
    let diamonds_to_3 = credit(&mut admin, 3, "DIAMOND", 50).await;
    let points_2_to_3 = transfer(&mut admin, 2, 3, 10).await;
    let diamonds_to_2 = credit(&mut admin, 2, "DIAMOND", 5).await;
    // POINTS of user 2 and DIAMOND of user 3, both to user 4.
    let trade = post(
        &mut admin,
        "TRADE",
        vec![
            posting(user(2), "POINTS", -1),
            posting(user(4), "POINTS", 1),
            posting(user(3), "DIAMOND", -1),
            posting(user(4), "DIAMOND", 1),
        ],
    )
    .await;
    let adjust_type = points_to_2.business_type.clone();
    let request = |account: Option<i64>, asset: &str, business_type: &str| pb::WatchEntriesRequest {
        account: account.and_then(user),
        asset_code: asset.into(),
        business_type: business_type.into(),
        ..from_beginning()
    };
    let cases = [
        (request(Some(2), "", ""), vec![&points_to_2, &points_2_to_3, &diamonds_to_2, &trade]),
        (request(Some(3), "", ""), vec![&diamonds_to_3, &points_2_to_3, &trade]),
        (request(None, "DIAMOND", ""), vec![&diamonds_to_3, &diamonds_to_2, &trade]),
        (request(None, "", "TRANSFER"), vec![&points_2_to_3]),
        (request(None, "", &adjust_type), vec![&points_to_2, &diamonds_to_3, &diamonds_to_2]),
        // The asset is matched on the account: user 3 moved only DIAMOND in the trade.
        (request(Some(3), "POINTS", ""), vec![&points_2_to_3]),
        (request(Some(2), "DIAMOND", &adjust_type), vec![&diamonds_to_2]),
        (request(Some(4), "POINTS", "TRADE"), vec![&trade]),
        (request(Some(3), "DIAMOND", "TRANSFER"), vec![]),
    ];
    for (request, expected) in cases {
        let mut stream = watch(&mut admin, request.clone()).await;
        let got = ids(&next_entries(&mut stream, expected.len()).await);
        let expected: Vec<String> = expected.into_iter().map(|entry| entry.id.clone()).collect();
        assert_eq!(got, expected, "{request:?}");
        assert_caught_up(&mut stream).await;
    }
}

#[tokio::test]
async fn users_watch_their_own_account_only() {
    let app = spawn_watch_app().await;
    let mut admin = app.admin_with_catalog().await;
    let mine = credit(&mut admin, 2, "POINTS", 10).await;
    credit(&mut admin, 3, "POINTS", 10).await;
    let mut user2 = app.user(2).await;
    let denied = [
        from_beginning(),
        pb::WatchEntriesRequest { account: user(3), ..from_beginning() },
        pb::WatchEntriesRequest { account: system("SYSTEM_ISSUANCE"), ..from_beginning() },
    ];
    for request in denied {
        assert_error(user2.watch_entries(request.clone()).await, Code::PermissionDenied, "PERMISSION_DENIED");
    }
    let mut own = watch(&mut user2, pb::WatchEntriesRequest { account: user(2), ..from_beginning() }).await;
    assert_eq!(next_entry(&mut own).await.0.id, mine.id);
    assert_caught_up(&mut own).await;

    let mut staff = app.client(Caller::user(4, roles::MERCHANT_STAFF)).await;
    assert_error(staff.watch_entries(from_beginning()).await, Code::PermissionDenied, "PERMISSION_DENIED");
    for mut privileged in [app.service().await, admin] {
        let mut all = watch(&mut privileged, from_beginning()).await;
        assert_eq!(next_entries(&mut all, 2).await.len(), 2);
        assert_caught_up(&mut all).await;
    }
}

#[tokio::test]
async fn malformed_requests_are_validation_failed() {
    let app = spawn_watch_app().await;
    let mut admin = app.admin_with_catalog().await;
    let id = uuid::Uuid::now_v7().to_string();
    let bad = [
        (after("garbage"), "after_cursor"),
        (after(""), "after_cursor"),
        (after("v1.-3."), "after_cursor"),
        (after(&format!("v2.1.{id}")), "after_cursor"),
        (after("v1.1.not-a-uuid"), "after_cursor"),
        (pb::WatchEntriesRequest { start: Some(Start::FromBeginning(false)), ..Default::default() }, "from_beginning"),
        (pb::WatchEntriesRequest { asset_code: "Not A Code".into(), ..Default::default() }, "asset_code"),
        (pb::WatchEntriesRequest { business_type: "transfer".into(), ..Default::default() }, "business_type"),
        (pb::WatchEntriesRequest { account: Some(pb::AccountRef::default()), ..Default::default() }, "account"),
    ];
    for (request, field) in bad {
        let status =
            assert_error(admin.watch_entries(request.clone()).await, Code::InvalidArgument, "VALIDATION_FAILED");
        assert_eq!(economy_kit::error::violated_fields(&status), [field], "{request:?}");
    }
    // A well-formed cursor of an entry that does not exist is a position like any other.
    let mut stream = watch(&mut admin, after(&format!("v1.1.{id}"))).await;
    assert_caught_up(&mut stream).await;
}

/// A client that reads nothing while a thousand entries commit: the server waits on the
/// full channel (it holds at most a page and the channel), then delivers everything in
/// order once the client reads.
#[tokio::test]
async fn a_slow_consumer_gets_everything_in_order() {
    let app = spawn_watch_app().await;
    let mut admin = app.admin_with_catalog().await;
    let mut stream = watch(&mut admin, pb::WatchEntriesRequest::default()).await;
    assert_caught_up(&mut stream).await;
    let mut written = Vec::new();
    for index in 0..1000 {
        written.push(credit(&mut admin, 2 + index % 7, "POINTS", 1).await.id);
    }
    let streamed = next_entries(&mut stream, written.len()).await;
    assert_eq!(ids(&streamed), written);
    assert_caught_up(&mut stream).await;
}

#[tokio::test]
async fn streams_end_on_shutdown() {
    let app = spawn_watch_app().await;
    let mut admin = app.admin_with_catalog().await;
    let mut stream = watch(&mut admin, pb::WatchEntriesRequest::default()).await;
    assert_caught_up(&mut stream).await;
    let mut stack = app.stack;
    let stopped = tokio::time::timeout(STALLED, stack.stop(Service::Ledger)).await;
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

/// A hold expired by another replica (a second store on the same database, as its expiry
/// job would) reaches a stream of this server: on PostgreSQL through LISTEN/NOTIFY, on
/// SQLite through the re-read safety net.
#[tokio::test]
async fn another_replicas_commit_reaches_the_stream() {
    let app = spawn_watch_app().await;
    let mut admin = app.admin_with_catalog().await;
    credit(&mut admin, 2, "POINTS", 10).await;
    let request = pb::CreateHoldRequest {
        idempotency_key: new_key(),
        account: user(2),
        asset_code: "POINTS".into(),
        amount: 4,
        expires_at: Some(to_timestamp(now_millis() + 3_600_000)),
        ..Default::default()
    };
    let hold = admin.create_hold(request).await.unwrap().into_inner().hold.unwrap();
    let mut stream = watch(&mut admin, pb::WatchEntriesRequest { account: user(2), ..Default::default() }).await;
    assert_caught_up(&mut stream).await;

    let replica = LedgerStore::open(&app.database().url, &DbOptions::default(), &[], system_clock()).await.unwrap();
    let shutdown = CancellationToken::new();
    replica.spawn_relay(shutdown.clone());
    assert_eq!(economy_ledger::jobs::expire_holds(&replica, now_millis() + 7_200_000).await.unwrap(), 1);
    let (entry, _) = next_entry(&mut stream).await;
    assert!(entry.postings.iter().all(|leg| leg.hold_id == hold.id), "{entry:?}");
    assert_eq!(resulting(&entry, 2), [("POINTS".to_string(), 10, 0)]);
    shutdown.cancel();
}

/// Appends a journal entry inside `tx`, at `tx`'s position (its transaction id, the
/// column's default); returns its id. It has no postings: the stream reads positions,
/// not balances.
async fn insert_raw_entry(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>) -> String {
    let id = uuid::Uuid::now_v7().to_string();
    sqlx::query(
        "INSERT INTO journal_entries (id, idempotency_key, fingerprint, business_type, correlation_id, memo, \
         actor, created_at) VALUES ($1, $2, 'x', 'RAW_TEST', '', '', 'service:test', 0)",
    )
    .bind(&id)
    .bind(format!("raw-{id}"))
    .execute(&mut **tx)
    .await
    .unwrap();
    id
}

/// The ledger's PostgreSQL URL, `None` on SQLite (which serializes writers: nothing to
/// race).
fn postgres_url(app: &TestApp) -> Option<String> {
    Some(app.database().url.clone()).filter(|url| url.starts_with("postgres"))
}

/// PostgreSQL: a transaction that took its position (transaction id) first but commits
/// last holds the stream back, so its entry is delivered before the later ones instead
/// of landing behind a cursor already passed.
#[tokio::test]
async fn a_slower_transaction_holds_the_stream_back_on_postgres() {
    let app = spawn_watch_app().await;
    let Some(url) = postgres_url(&app) else { return };
    let mut admin = app.admin_with_catalog().await;
    let first = credit(&mut admin, 2, "POINTS", 10).await;
    let mut stream = watch(&mut admin, from_beginning()).await;
    assert_eq!(next_entry(&mut stream).await.0.id, first.id);
    assert_caught_up(&mut stream).await;

    let mut slow = PgConnection::connect(&url).await.unwrap();
    let mut slow_tx = slow.begin().await.unwrap();
    let raw = insert_raw_entry(&mut slow_tx).await;
    let fast = credit(&mut admin, 3, "POINTS", 10).await;
    // Taken while the slow transaction runs: it must not pass the slow entry.
    let held_back = assert_caught_up(&mut stream).await;

    slow_tx.commit().await.unwrap();
    assert_eq!(ids(&next_entries(&mut stream, 2).await), [raw.clone(), fast.id.clone()]);
    let mut resumed = watch(&mut admin, after(&held_back)).await;
    assert_eq!(ids(&next_entries(&mut resumed, 2).await), [raw, fast.id]);
    assert_caught_up(&mut resumed).await;
}

/// PostgreSQL: a stream "from now" starts below a running transaction, yet leaves out
/// what had committed before it started and delivers what commits after, including
/// that older transaction's entry.
#[tokio::test]
async fn from_now_leaves_out_what_committed_before_on_postgres() {
    let app = spawn_watch_app().await;
    let Some(url) = postgres_url(&app) else { return };
    let mut admin = app.admin_with_catalog().await;
    let mut slow = PgConnection::connect(&url).await.unwrap();
    let mut slow_tx = slow.begin().await.unwrap();
    let raw = insert_raw_entry(&mut slow_tx).await;
    // Committed before the stream starts, above its horizon (the slow transaction is older).
    credit(&mut admin, 3, "POINTS", 10).await;

    let mut stream = watch(&mut admin, pb::WatchEntriesRequest::default()).await;
    assert_caught_up(&mut stream).await;
    slow_tx.commit().await.unwrap();
    let later = credit(&mut admin, 4, "POINTS", 10).await;
    assert_eq!(ids(&next_entries(&mut stream, 2).await), [raw, later.id]);
    assert_caught_up(&mut stream).await;
}
