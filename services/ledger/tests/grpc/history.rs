//! Ledger history (docs/ledger.md, "Balances at an instant", "Statements", "History
//! filters"): balances as of an instant, statements of a period and journal entries by
//! correlation, business type and period, on a manual clock so instants are exact.

use economy_kit::db::{Db, DbOptions};
use economy_kit::time::{from_timestamp, to_timestamp};
use economy_proto::ledger::v1 as pb;
use tokio::task::JoinSet;
use tonic::Code;

use crate::common::*;

/// The instant of an entry (ms).
fn instant(entry: &pb::Transaction) -> i64 {
    entry.created_at.as_ref().and_then(from_timestamp).expect("created_at")
}

/// A read of `account`'s balances as of `at`: of `asset`, or (`""`) every one.
struct AsOf {
    account: Option<pb::AccountRef>,
    asset: String,
    at: Option<prost_types::Timestamp>,
}

fn as_of(account: Option<pb::AccountRef>, asset: &str, at: i64) -> AsOf {
    AsOf { account, asset: asset.into(), at: Some(to_timestamp(at)) }
}

/// GetBalance (one asset) or ListBalances (every one) as of the read's instant.
async fn read_as_of(client: &mut Client, read: AsOf) -> Result<Vec<pb::Balance>, tonic::Status> {
    if read.asset.is_empty() {
        let request = pb::ListBalancesRequest { account: read.account, as_of: read.at };
        return Ok(client.list_balances(request).await?.into_inner().balances);
    }
    let request = pb::GetBalanceRequest { account: read.account, asset_code: read.asset, as_of: read.at };
    Ok(client.get_balance(request).await?.into_inner().balance.into_iter().collect())
}

/// `(asset, available, frozen)` of each balance the read returns.
async fn balances_at(client: &mut Client, read: AsOf) -> Vec<(String, i64, i64)> {
    let balances = read_as_of(client, read).await.unwrap();
    balances.into_iter().map(|balance| (balance.asset_code, balance.available, balance.frozen)).collect()
}

/// `(available, frozen)` of user 2's POINTS as of `at`.
async fn points_at(client: &mut Client, at: i64) -> (i64, i64) {
    let balances = balances_at(client, as_of(user(2), "POINTS", at)).await;
    assert_eq!(balances.len(), 1, "one asset, one balance");
    (balances[0].1, balances[0].2)
}

fn pay(correlation_id: &str, business_type: &str, from: i64, to: i64, amount: i64) -> pb::PostTransactionRequest {
    pb::PostTransactionRequest {
        idempotency_key: new_key(),
        business_type: business_type.into(),
        correlation_id: correlation_id.into(),
        postings: vec![posting(user(from), "POINTS", -amount), posting(user(to), "POINTS", amount)],
        ..Default::default()
    }
}

async fn post(client: &mut Client, request: pb::PostTransactionRequest) -> pb::Transaction {
    client.post_transaction(request).await.unwrap().into_inner().transaction.unwrap()
}

/// The instants of user 2's history: a credit of 100 POINTS (`credited`), a hold of 30
/// a second later (`held`), then a second later (`paid`) two payments of 10 and 5 to
/// user 3 and a credit of 7 DIAMOND, all at one instant.
struct Timeline {
    credited: i64,
    held: i64,
    paid: i64,
}

async fn timeline(app: &TestApp, admin: &mut Client) -> Timeline {
    let credited = instant(&adjust(admin, 2, "POINTS", 100).await.unwrap().transaction.unwrap());
    app.pass(credited + 999);
    let hold = pb::CreateHoldRequest {
        idempotency_key: new_key(),
        account: user(2),
        asset_code: "POINTS".into(),
        amount: 30,
        ..Default::default()
    };
    let held = instant(&admin.create_hold(hold).await.unwrap().into_inner().transaction.unwrap());
    app.pass(held + 999);
    let paid = instant(&post(admin, pay("", "TRANSFER", 2, 3, 10)).await);
    assert_eq!(instant(&post(admin, pay("", "TRANSFER", 2, 3, 5)).await), paid, "the clock stands still");
    adjust(admin, 2, "DIAMOND", 7).await.unwrap();
    Timeline { credited, held, paid }
}

#[tokio::test]
async fn balances_as_of_an_instant_come_from_the_running_balances() {
    let app = spawn_app_on_manual_clock().await;
    let mut admin = app.admin_with_catalog().await;
    let t = timeline(&app, &mut admin).await;
    let mut user2 = app.user(2).await;

    assert_eq!(points_at(&mut user2, t.credited - 1).await, (0, 0), "before any entry");
    assert_eq!(points_at(&mut user2, t.credited).await, (100, 0), "exactly at an entry's instant");
    assert_eq!(points_at(&mut user2, t.credited + 500).await, (100, 0), "between entries");
    assert_eq!(points_at(&mut user2, t.held).await, (70, 30), "with a hold");
    assert_eq!(points_at(&mut user2, t.paid - 1).await, (70, 30));
    assert_eq!(points_at(&mut user2, t.paid).await, (55, 30), "every entry of the instant");
    assert_eq!(
        points_at(&mut user2, t.paid + 86_400_000).await,
        balance(&mut user2, 2, "POINTS").await,
        "after the last"
    );
    let unknown = balances_at(&mut user2, as_of(user(2), "red_shard", t.paid)).await;
    assert_eq!(unknown, [("red_shard".to_owned(), 0, 0)], "an asset never held is zero");

    // Every balance of the account as of an instant: those non-zero then.
    assert!(balances_at(&mut user2, as_of(user(2), "", t.credited - 1)).await.is_empty());
    assert_eq!(balances_at(&mut user2, as_of(user(2), "", t.held)).await, [("POINTS".to_owned(), 70, 30)]);
    let at_the_end = balances_at(&mut user2, as_of(user(2), "", t.paid)).await;
    assert_eq!(at_the_end, [("DIAMOND".to_owned(), 7, 0), ("POINTS".to_owned(), 55, 30)]);
    let issuance = balances_at(&mut admin, as_of(system("SYSTEM_ISSUANCE"), "POINTS", t.held)).await;
    assert_eq!(issuance, [("POINTS".to_owned(), -100, 0)], "admins read system accounts");

    let mut user3 = app.user(3).await;
    let other = read_as_of(&mut user3, as_of(user(2), "POINTS", t.paid)).await;
    assert_error(other, Code::PermissionDenied, "PERMISSION_DENIED");
    let system_read = read_as_of(&mut user2, as_of(system("SYSTEM_ISSUANCE"), "", t.paid)).await;
    assert_error(system_read, Code::PermissionDenied, "PERMISSION_DENIED");

    for asset in ["POINTS", ""] {
        let bad_instant =
            AsOf { at: Some(prost_types::Timestamp { seconds: 1, nanos: -1 }), ..as_of(user(2), asset, 0) };
        assert_error(read_as_of(&mut user2, bad_instant).await, Code::InvalidArgument, "VALIDATION_FAILED");
    }
    // Without an instant: the balances now.
    let now = AsOf { at: None, ..as_of(user(2), "POINTS", 0) };
    assert_eq!(balances_at(&mut user2, now).await, [("POINTS".to_owned(), 55, 30)]);
}

fn statement(from: i64, to: i64, page_size: i32, page_token: &str) -> pb::GetStatementRequest {
    pb::GetStatementRequest {
        account: user(2),
        asset_code: "POINTS".into(),
        from: Some(to_timestamp(from)),
        to: Some(to_timestamp(to)),
        page_size,
        page_token: page_token.into(),
    }
}

/// `(available, frozen)` of a statement balance.
fn buckets(balance: Option<&pb::Balance>) -> (i64, i64) {
    balance.map(|balance| (balance.available, balance.frozen)).expect("a balance")
}

/// Every page of a statement: the lines, and `(opening, closing)` as every page gives them.
async fn whole_statement(
    client: &mut Client,
    from: i64,
    to: i64,
    page_size: i32,
) -> (Vec<pb::StatementLine>, Vec<((i64, i64), (i64, i64))>) {
    let (mut lines, mut ends, mut token) = (Vec::new(), Vec::new(), String::new());
    loop {
        let page = client.get_statement(statement(from, to, page_size, &token)).await.unwrap().into_inner();
        ends.push((buckets(page.opening.as_ref()), buckets(page.closing.as_ref())));
        lines.extend(page.lines);
        if page.next_page_token.is_empty() {
            return (lines, ends);
        }
        token = page.next_page_token;
    }
}

#[tokio::test]
async fn a_statement_opens_moves_and_closes_the_balance() {
    let app = spawn_app_on_manual_clock().await;
    let mut admin = app.admin_with_catalog().await;
    let t = timeline(&app, &mut admin).await;
    let mut user2 = app.user(2).await;

    // From the hold to the end, two lines a page.
    let (lines, ends) = whole_statement(&mut user2, t.held, t.paid + 1, 2).await;
    assert_eq!(ends, [((100, 0), (55, 30)); 2], "opening and closing on every page");
    let moves: Vec<_> =
        lines.iter().map(|line| (line.available_change, line.frozen_change, line.balance_seq)).collect();
    assert_eq!(moves, [(-30, 30, 2), (-10, 0, 3), (-5, 0, 4)], "oldest first");
    let (mut available, mut frozen) = ends[0].0;
    for line in &lines {
        (available, frozen) = (available + line.available_change, frozen + line.frozen_change);
        assert_eq!(buckets(line.balance_after.as_ref()), (available, frozen), "a running balance");
        assert!(line.transaction.as_ref().is_some_and(|entry| !entry.postings.is_empty()));
    }
    assert_eq!((available, frozen), ends[0].1, "opening plus the lines is closing");

    // The period starts at `from` included and ends before `to`.
    let (all, ends) = whole_statement(&mut user2, t.credited, t.paid, 50).await;
    assert_eq!((all.len(), ends[0]), (2, ((0, 0), (70, 30))));
    let (none, ends) = whole_statement(&mut user2, t.credited + 1, t.held, 50).await;
    assert!(none.is_empty(), "an empty period");
    assert_eq!(ends, [((100, 0), (100, 0))]);

    let mut user3 = app.user(3).await;
    assert_error(
        user3.get_statement(statement(t.held, t.paid, 0, "")).await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    let system_statement =
        pb::GetStatementRequest { account: system("SYSTEM_ISSUANCE"), ..statement(t.credited, t.paid + 1, 0, "") };
    let issuance = admin.get_statement(system_statement).await.unwrap().into_inner();
    assert_eq!(buckets(issuance.closing.as_ref()), (-100, 0));
    for bad in [
        statement(t.paid, t.paid, 0, ""),
        statement(t.paid, t.held, 0, ""),
        statement(t.held, t.paid, 501, ""),
        statement(t.held, t.paid, 0, "not-a-version"),
        pb::GetStatementRequest { from: None, ..statement(t.held, t.paid, 0, "") },
        pb::GetStatementRequest { asset_code: String::new(), ..statement(t.held, t.paid, 0, "") },
    ] {
        assert_error(user2.get_statement(bad).await, Code::InvalidArgument, "VALIDATION_FAILED");
    }
}

fn listing(account: Option<pb::AccountRef>, correlation_id: &str) -> pb::ListTransactionsRequest {
    pb::ListTransactionsRequest { account, correlation_id: correlation_id.into(), page_size: 500, ..Default::default() }
}

async fn ids(client: &mut Client, request: pb::ListTransactionsRequest) -> Vec<String> {
    let transactions = client.list_transactions(request).await.unwrap().into_inner().transactions;
    transactions.into_iter().map(|entry| entry.id).collect()
}

#[tokio::test]
async fn transactions_filter_by_correlation_business_type_and_period() {
    let app = spawn_app_on_manual_clock().await;
    let mut admin = app.admin_with_catalog().await;
    adjust(&mut admin, 2, "POINTS", 100).await.unwrap();
    adjust(&mut admin, 3, "POINTS", 100).await.unwrap();
    let funded = app.now();
    app.pass(funded + 999);
    let mut market = app.service().await;
    let purchase = post(&mut market, pay("order-1", "SHOP_PURCHASE", 2, 4, 10)).await;
    app.pass(instant(&purchase) + 999);
    let refund = post(&mut market, pay("order-1", "SHOP_REFUND", 4, 2, 4)).await;
    let other = post(&mut market, pay("order-2", "SHOP_PURCHASE", 3, 4, 7)).await;
    let later = instant(&refund);
    let (purchase, refund, other) = (purchase.id, refund.id, other.id);

    // A correlation across accounts: admins and services.
    let order = vec![refund.clone(), purchase.clone()];
    assert_eq!(ids(&mut admin, listing(None, "order-1")).await, order, "newest first");
    assert_eq!(ids(&mut market, listing(None, "order-1")).await, order);
    let mut user2 = app.user(2).await;
    let everyone = user2.list_transactions(listing(None, "order-1")).await;
    assert_error(everyone, Code::PermissionDenied, "PERMISSION_DENIED");
    // A user names their own account.
    assert_eq!(ids(&mut user2, listing(user(2), "order-1")).await, order);
    let mut user3 = app.user(3).await;
    assert!(ids(&mut user3, listing(user(3), "order-1")).await.is_empty());
    let theirs = user3.list_transactions(listing(user(2), "order-1")).await;
    assert_error(theirs, Code::PermissionDenied, "PERMISSION_DENIED");

    // Business type and period, alone and combined.
    let purchases = pb::ListTransactionsRequest { business_type: "SHOP_PURCHASE".into(), ..listing(user(4), "") };
    assert_eq!(ids(&mut admin, purchases.clone()).await, [other.clone(), purchase.clone()]);
    let refunds = pb::ListTransactionsRequest { business_type: "SHOP_REFUND".into(), ..listing(None, "order-1") };
    assert_eq!(ids(&mut admin, refunds).await, [refund.as_str()]);
    let since = pb::ListTransactionsRequest { from: Some(to_timestamp(later)), ..listing(user(4), "") };
    assert_eq!(ids(&mut admin, since).await, [other.clone(), refund.clone()]);
    let until = pb::ListTransactionsRequest { to: Some(to_timestamp(later)), ..listing(user(4), "") };
    assert_eq!(ids(&mut admin, until).await, [purchase.as_str()]);
    let bought_since = pb::ListTransactionsRequest { from: Some(to_timestamp(later)), ..purchases };
    assert_eq!(ids(&mut admin, bought_since).await, [other.as_str()]);
    let order_since = pb::ListTransactionsRequest { from: Some(to_timestamp(later)), ..listing(None, "order-1") };
    assert_eq!(ids(&mut admin, order_since).await, [refund.as_str()]);
    let points_between = pb::ListTransactionsRequest {
        asset_code: "POINTS".into(),
        from: Some(to_timestamp(funded + 1)),
        to: Some(to_timestamp(later)),
        ..listing(user(2), "")
    };
    assert_eq!(ids(&mut user2, points_between).await, [purchase.as_str()], "the funding is before the period");

    // Pages of a correlation.
    let mut token = String::new();
    let mut seen = Vec::new();
    loop {
        let request = pb::ListTransactionsRequest { page_size: 1, page_token: token, ..listing(None, "order-1") };
        let page = admin.list_transactions(request).await.unwrap().into_inner();
        seen.extend(page.transactions.into_iter().map(|entry| entry.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, order);

    for bad in [
        pb::ListTransactionsRequest { asset_code: "POINTS".into(), ..listing(None, "order-1") },
        pb::ListTransactionsRequest { business_type: "not a type".into(), ..listing(user(2), "") },
        pb::ListTransactionsRequest { correlation_id: "x".repeat(129), ..listing(user(2), "") },
        pb::ListTransactionsRequest {
            from: Some(to_timestamp(later)),
            to: Some(to_timestamp(later)),
            ..listing(user(2), "")
        },
        listing(None, ""),
    ] {
        assert_error(admin.list_transactions(bad).await, Code::InvalidArgument, "VALIDATION_FAILED");
    }
}

#[tokio::test]
async fn every_write_path_records_the_entry_instant_on_its_postings() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    for user_id in 2..6 {
        adjust(&mut admin, user_id, "POINTS", 100).await.unwrap();
    }
    // Concurrent plain payments take the batched or combined forms.
    let mut writers = JoinSet::new();
    for round in 0..20 {
        let mut client = app.service().await;
        writers
            .spawn(async move { post(&mut client, pay("", "TRANSFER", 2 + round % 4, 2 + (round + 1) % 4, 1)).await });
    }
    while let Some(joined) = writers.join_next().await {
        joined.unwrap();
    }
    let hold = pb::CreateHoldRequest {
        idempotency_key: new_key(),
        account: user(2),
        asset_code: "POINTS".into(),
        amount: 5,
        ..Default::default()
    };
    let hold = admin.create_hold(hold).await.unwrap().into_inner().hold.unwrap();
    let settle = pb::SettleHoldRequest {
        idempotency_key: new_key(),
        hold_id: hold.id,
        destinations: vec![posting(user(3), "POINTS", 5)],
        ..Default::default()
    };
    admin.settle_hold(settle).await.unwrap();

    let db = Db::connect(&app.database().url, &DbOptions::default()).await.unwrap();
    let (postings, mismatched): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COALESCE(SUM(CASE WHEN p.created_at = e.created_at THEN 0 ELSE 1 END), 0) \
         FROM postings AS p JOIN journal_entries AS e ON e.id = p.entry_id",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert!(postings > 40, "{postings} postings");
    assert_eq!(mismatched, 0, "every posting carries its entry's instant");
    assert_consistent(&mut admin).await;
}

/// User 2's balance version of `asset` after `entry` (0: the entry did not move it).
fn version_of(entry: &pb::Transaction, asset: &str) -> i64 {
    let on_balance = |posting: &&pb::Posting| posting.account == user(2) && posting.asset_code == asset;
    entry.postings.iter().find(on_balance).map_or(0, |posting| posting.balance_seq)
}

/// Writes 60 entries on user 2, three per instant, that move its POINTS: credits, holds
/// (two postings on one balance), swaps of POINTS for DIAMOND with user 3 (postings on
/// two of its balances) and payments to user 3 (business type TRANSFER).
async fn heavy_history(app: &TestApp, admin: &mut Client) -> Vec<pb::Transaction> {
    adjust(admin, 3, "DIAMOND", 1_000).await.unwrap();
    let mut written = Vec::new();
    for round in 0..60 {
        if round % 3 == 0 {
            app.pass(app.now());
        }
        let entry = match round % 4 {
            0 => adjust(admin, 2, "POINTS", 10).await.unwrap().transaction.unwrap(),
            1 => {
                let hold = pb::CreateHoldRequest {
                    idempotency_key: new_key(),
                    account: user(2),
                    asset_code: "POINTS".into(),
                    amount: 1,
                    ..Default::default()
                };
                admin.create_hold(hold).await.unwrap().into_inner().transaction.unwrap()
            }
            2 => {
                let swap = pb::PostTransactionRequest {
                    postings: vec![
                        posting(user(2), "POINTS", -1),
                        posting(user(3), "POINTS", 1),
                        posting(user(3), "DIAMOND", -1),
                        posting(user(2), "DIAMOND", 1),
                    ],
                    ..pay("", "SWAP", 2, 3, 1)
                };
                post(admin, swap).await
            }
            _ => post(admin, pay("", "TRANSFER", 2, 3, 1)).await,
        };
        written.push(entry);
    }
    written
}

/// Every page of `request`'s listing, `page_size` entries a page: the ids in order.
async fn every_page(client: &mut Client, request: pb::ListTransactionsRequest, page_size: i32) -> Vec<String> {
    let (mut seen, mut token) = (Vec::new(), String::new());
    loop {
        let request = pb::ListTransactionsRequest { page_size, page_token: token, ..request.clone() };
        let page = client.list_transactions(request).await.unwrap().into_inner();
        assert!(page.transactions.len() <= usize::try_from(page_size).unwrap());
        seen.extend(page.transactions.into_iter().map(|entry| entry.id));
        if page.next_page_token.is_empty() {
            return seen;
        }
        token = page.next_page_token;
    }
}

/// The ids of `entries` that `keep`, newest first by instant, then by `tie`.
fn newest_first<T: Ord>(
    entries: &[pb::Transaction],
    keep: impl Fn(&pb::Transaction) -> bool,
    tie: impl Fn(&pb::Transaction) -> T,
) -> Vec<String> {
    let mut kept: Vec<&pb::Transaction> = entries.iter().filter(|entry| keep(entry)).collect();
    kept.sort_by_key(|entry| std::cmp::Reverse((instant(entry), tie(entry))));
    kept.into_iter().map(|entry| entry.id.clone()).collect()
}

#[tokio::test]
async fn paging_a_heavy_account_returns_every_entry_once_in_order() {
    let app = spawn_app_on_manual_clock().await;
    let mut admin = app.admin_with_catalog().await;
    let written = heavy_history(&app, &mut admin).await;
    let (from, to) = (instant(&written[10]), instant(&written[40]));
    let in_period = |entry: &pb::Transaction| (from..to).contains(&instant(entry));
    let by_id = |entry: &pb::Transaction| entry.id.clone();
    let by_version = |entry: &pb::Transaction| version_of(entry, "POINTS");
    let period = |request: pb::ListTransactionsRequest| pb::ListTransactionsRequest {
        from: Some(to_timestamp(from)),
        to: Some(to_timestamp(to)),
        ..request
    };
    let points = pb::ListTransactionsRequest { asset_code: "POINTS".into(), ..listing(user(2), "") };
    let transfers = pb::ListTransactionsRequest { business_type: "TRANSFER".into(), ..listing(user(2), "") };
    let diamonds = pb::ListTransactionsRequest { asset_code: "DIAMOND".into(), ..listing(user(2), "") };
    let is_transfer = |entry: &pb::Transaction| entry.business_type == "TRANSFER";
    let forms = [
        ("every asset", listing(user(2), ""), newest_first(&written, |_| true, by_id)),
        ("one asset", points.clone(), newest_first(&written, |_| true, by_version)),
        ("a period", period(listing(user(2), "")), newest_first(&written, in_period, by_id)),
        ("an asset in a period", period(points), newest_first(&written, in_period, by_version)),
        ("a business type", transfers.clone(), newest_first(&written, is_transfer, by_id)),
        (
            "a business type in a period",
            period(transfers),
            newest_first(&written, |e| in_period(e) && is_transfer(e), by_id),
        ),
        ("another asset", diamonds, newest_first(&written, |e| e.business_type == "SWAP", by_id)),
    ];
    for (form, request, expected) in forms {
        assert!(expected.len() > 4, "{form}: several pages");
        for page_size in [1, 4, 500] {
            assert_eq!(
                every_page(&mut admin, request.clone(), page_size).await,
                expected,
                "{form}, pages of {page_size}"
            );
        }
    }

    // The system account every credit comes from pages the same way (its oldest entry
    // is user 3's funding).
    let issuance = system("SYSTEM_ISSUANCE");
    let credits = newest_first(&written, |entry| entry.postings.iter().any(|leg| leg.account == issuance), by_id);
    let listed = every_page(&mut admin, listing(issuance.clone(), ""), 7).await;
    assert_eq!((&listed[..credits.len()], listed.len()), (&credits[..], credits.len() + 1));

    // A statement of the whole history: every version once, oldest first.
    let mut user2 = app.user(2).await;
    let after_every_entry = written.iter().map(instant).max().unwrap_or(0) + 1;
    let (lines, _) = whole_statement(&mut user2, 0, after_every_entry, 7).await;
    let versions: Vec<i64> = lines.iter().map(|line| line.balance_seq).collect();
    assert_eq!(versions, (1..=60).collect::<Vec<_>>());
}
