//! Hold lifecycle: create, settle (all or part), release, expiry, and settlement inside a
//! PostTransaction.

use std::time::Duration;

use economy_kit::error::violated_fields;
use economy_kit::time::{now_millis, to_timestamp};
use economy_proto::ledger::v1 as pb;
use tonic::Code;

use crate::common::*;

fn hold_request(user_id: i64, asset: &str, amount: i64) -> pb::CreateHoldRequest {
    pb::CreateHoldRequest {
        idempotency_key: new_key(),
        account: user(user_id),
        asset_code: asset.into(),
        amount,
        reference: "market:listing:1".into(),
        ..Default::default()
    }
}

async fn create_hold(client: &mut Client, user_id: i64, asset: &str, amount: i64) -> pb::Hold {
    client.create_hold(hold_request(user_id, asset, amount)).await.unwrap().into_inner().hold.unwrap()
}

fn settle(hold_id: &str, amount: Option<i64>, to: i64, credit: i64) -> pb::SettleHoldRequest {
    pb::SettleHoldRequest {
        idempotency_key: new_key(),
        hold_id: hold_id.into(),
        amount,
        destinations: vec![posting(user(to), "POINTS", credit)],
        ..Default::default()
    }
}

fn release(hold_id: &str) -> pb::ReleaseHoldRequest {
    pb::ReleaseHoldRequest { idempotency_key: new_key(), hold_id: hold_id.into(), reason: "cancelled".into() }
}

#[tokio::test]
async fn create_freezes_and_replays() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    adjust(&mut admin, 2, "POINTS", 100).await.unwrap();
    let request = hold_request(2, "POINTS", 60);
    let created = admin.create_hold(request.clone()).await.unwrap().into_inner();
    let hold = created.hold.unwrap();
    assert_eq!(
        (hold.status, hold.amount, hold.reference.as_str()),
        (pb::HoldStatus::Open as i32, 60, "market:listing:1")
    );
    assert_eq!(balance(&mut admin, 2, "POINTS").await, (40, 60));

    let replay = admin.create_hold(request).await.unwrap().into_inner();
    assert!(replay.replayed);
    assert_eq!(replay.hold.unwrap().id, hold.id);
    assert_eq!(balance(&mut admin, 2, "POINTS").await, (40, 60));

    assert_error(
        admin.create_hold(hold_request(2, "POINTS", 41)).await,
        Code::FailedPrecondition,
        "INSUFFICIENT_BALANCE",
    );
    let on_system = pb::CreateHoldRequest { account: system("SYSTEM_ISSUANCE"), ..hold_request(2, "POINTS", 1) };
    assert_error(admin.create_hold(on_system).await, Code::InvalidArgument, "VALIDATION_FAILED");
    let past =
        pb::CreateHoldRequest { expires_at: Some(to_timestamp(now_millis() - 1000)), ..hold_request(2, "POINTS", 1) };
    assert_error(admin.create_hold(past).await, Code::InvalidArgument, "VALIDATION_FAILED");
    assert_consistent(&mut admin).await;
}

#[tokio::test]
async fn partial_settlement_pays_out_and_releases_the_rest() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    adjust(&mut admin, 2, "POINTS", 100).await.unwrap();
    let hold = create_hold(&mut admin, 2, "POINTS", 60).await;

    assert_error(
        admin.settle_hold(settle(&hold.id, Some(61), 3, 61)).await,
        Code::FailedPrecondition,
        "HOLD_AMOUNT_EXCEEDED",
    );
    assert_error(
        admin.settle_hold(settle(&hold.id, Some(40), 3, 39)).await,
        Code::InvalidArgument,
        "UNBALANCED_TRANSACTION",
    );
    let request = settle(&hold.id, Some(40), 3, 40);
    let settled = admin.settle_hold(request.clone()).await.unwrap().into_inner();
    let settled_hold = settled.hold.unwrap();
    assert_eq!((settled_hold.status, settled_hold.settled_amount), (pb::HoldStatus::Settled as i32, 40));
    assert!(settled_hold.resolved_at.is_some());
    assert_eq!(balance(&mut admin, 2, "POINTS").await, (60, 0));
    assert_eq!(balance(&mut admin, 3, "POINTS").await, (40, 0));

    assert!(admin.settle_hold(request).await.unwrap().into_inner().replayed);
    assert_error(admin.release_hold(release(&hold.id)).await, Code::FailedPrecondition, "HOLD_ALREADY_RESOLVED");
    assert_error(
        admin.settle_hold(settle(&hold.id, None, 3, 60)).await,
        Code::FailedPrecondition,
        "HOLD_ALREADY_RESOLVED",
    );
    assert_eq!(balance(&mut admin, 3, "POINTS").await, (40, 0));
    assert_consistent(&mut admin).await;
}

#[tokio::test]
async fn release_returns_the_whole_hold_once() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    adjust(&mut admin, 2, "POINTS", 100).await.unwrap();
    let hold = create_hold(&mut admin, 2, "POINTS", 70).await;
    let released = admin.release_hold(release(&hold.id)).await.unwrap().into_inner();
    assert_eq!(released.hold.unwrap().status, pb::HoldStatus::Released as i32);
    assert_eq!(balance(&mut admin, 2, "POINTS").await, (100, 0));
    assert_error(admin.release_hold(release(&hold.id)).await, Code::FailedPrecondition, "HOLD_ALREADY_RESOLVED");
    assert_error(admin.release_hold(release(&new_key())).await, Code::NotFound, "HOLD_NOT_FOUND");
    assert_consistent(&mut admin).await;
}

#[tokio::test]
async fn holds_settle_inside_a_purchase_transaction() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    let (seller, buyer, price, fee) = (2, 3, 1000, 50);
    adjust(&mut admin, seller, "red_shard", 30).await.unwrap();
    adjust(&mut admin, buyer, "DIAMOND", 1500).await.unwrap();
    let mut market = app.service().await;
    let hold = create_hold(&mut market, seller, "red_shard", 30).await;

    let purchase = pb::PostTransactionRequest {
        idempotency_key: "trade-1:purchase".into(),
        business_type: "MARKET_PURCHASE".into(),
        correlation_id: "trade-1".into(),
        postings: vec![
            posting(user(buyer), "DIAMOND", -price),
            posting(user(seller), "DIAMOND", price - fee),
            posting(system("SYSTEM_PLATFORM_FEE"), "DIAMOND", fee),
            posting(user(buyer), "red_shard", 30),
        ],
        hold_settlements: vec![pb::HoldSettlement { hold_id: hold.id.clone(), amount: None }],
        ..Default::default()
    };
    let entry = market.post_transaction(purchase.clone()).await.unwrap().into_inner().transaction.unwrap();
    assert_eq!(entry.actor, "service:market");
    assert_eq!(balance(&mut admin, buyer, "DIAMOND").await, (500, 0));
    assert_eq!(balance(&mut admin, seller, "DIAMOND").await, (950, 0));
    assert_eq!(balance_of(&mut admin, system("SYSTEM_PLATFORM_FEE"), "DIAMOND").await, (50, 0));
    assert_eq!(balance(&mut admin, buyer, "red_shard").await, (30, 0));
    assert_eq!(balance(&mut admin, seller, "red_shard").await, (0, 0));

    // A second buyer's purchase of the same hold fails whole: nothing is paid.
    adjust(&mut admin, 4, "DIAMOND", 1000).await.unwrap();
    let second = pb::PostTransactionRequest {
        idempotency_key: "trade-2:purchase".into(),
        postings: vec![
            posting(user(4), "DIAMOND", -price),
            posting(user(seller), "DIAMOND", price),
            posting(user(4), "red_shard", 30),
        ],
        ..purchase
    };
    assert_error(market.post_transaction(second).await, Code::FailedPrecondition, "HOLD_ALREADY_RESOLVED");
    assert_eq!(balance(&mut admin, 4, "DIAMOND").await, (1000, 0));
    assert_consistent(&mut admin).await;
}

#[tokio::test]
async fn holds_are_listed_and_private() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    adjust(&mut admin, 2, "POINTS", 100).await.unwrap();
    let first = create_hold(&mut admin, 2, "POINTS", 10).await;
    let second = create_hold(&mut admin, 2, "POINTS", 20).await;
    admin.release_hold(release(&first.id)).await.unwrap();

    let mut owner = app.user(2).await;
    let list =
        |status: pb::HoldStatus| pb::ListHoldsRequest { account: user(2), status: status.into(), ..Default::default() };
    let all = owner.list_holds(list(pb::HoldStatus::Unspecified)).await.unwrap().into_inner().holds;
    assert_eq!(all.iter().map(|hold| hold.id.as_str()).collect::<Vec<_>>(), [second.id.as_str(), first.id.as_str()]);
    let open = owner.list_holds(list(pb::HoldStatus::Open)).await.unwrap().into_inner().holds;
    assert_eq!(open.len(), 1);
    assert_eq!(
        owner.get_hold(pb::GetHoldRequest { hold_id: second.id.clone() }).await.unwrap().into_inner().hold.unwrap(),
        open[0]
    );
    let stranger = app.user(3).await.get_hold(pb::GetHoldRequest { hold_id: second.id }).await;
    assert_error(stranger, Code::NotFound, "HOLD_NOT_FOUND");
}

async fn hold_with_reference(client: &mut Client, user_id: i64, reference: &str) -> pb::Hold {
    let request = pb::CreateHoldRequest { reference: reference.into(), ..hold_request(user_id, "POINTS", 5) };
    client.create_hold(request).await.unwrap().into_inner().hold.unwrap()
}

fn by_prefix(account: Option<pb::AccountRef>, prefix: &str) -> pb::ListHoldsRequest {
    pb::ListHoldsRequest { account, reference_prefix: prefix.into(), ..Default::default() }
}

fn ids(holds: &[pb::Hold]) -> Vec<&str> {
    holds.iter().map(|hold| hold.id.as_str()).collect()
}

#[tokio::test]
async fn holds_are_listed_across_accounts_by_reference_prefix() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    for owner in [2, 3] {
        adjust(&mut admin, owner, "POINTS", 100).await.unwrap();
    }
    let first = hold_with_reference(&mut admin, 2, "market:exchange:a").await;
    let second = hold_with_reference(&mut admin, 3, "market:exchange:b").await;
    // Neighbours of the range in byte order, and another kind of reference.
    for (owner, reference) in [(2, "market:exchange"), (3, "market:exchange;"), (2, "market:listing:1"), (3, "")] {
        hold_with_reference(&mut admin, owner, reference).await;
    }
    let third = hold_with_reference(&mut admin, 2, "market:exchange:\u{10FFFF}").await;
    admin.release_hold(release(&first.id)).await.unwrap();

    let prefix = "market:exchange:";
    let all = admin.list_holds(by_prefix(None, prefix)).await.unwrap().into_inner().holds;
    assert_eq!(ids(&all), [third.id.as_str(), second.id.as_str(), first.id.as_str()]);
    let open = pb::ListHoldsRequest { status: pb::HoldStatus::Open.into(), ..by_prefix(None, prefix) };
    let open = app.service().await.list_holds(open).await.unwrap().into_inner().holds;
    assert_eq!(ids(&open), [third.id.as_str(), second.id.as_str()]);
    let of_user = admin.list_holds(by_prefix(user(2), prefix)).await.unwrap().into_inner().holds;
    assert_eq!(ids(&of_user), [third.id.as_str(), first.id.as_str()]);

    // Paged by id, newest first, the filters kept.
    let mut paged = Vec::new();
    let mut request = pb::ListHoldsRequest { page_size: 2, ..by_prefix(None, prefix) };
    loop {
        let page = admin.list_holds(request.clone()).await.unwrap().into_inner();
        paged.extend(page.holds);
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
    }
    assert_eq!(paged, all);
}

#[tokio::test]
async fn only_admins_and_services_list_holds_of_every_account() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    adjust(&mut admin, 2, "POINTS", 100).await.unwrap();
    let own = hold_with_reference(&mut admin, 2, "market:exchange:a").await;
    let mut owner = app.user(2).await;
    let everyone = owner.list_holds(by_prefix(None, "market:exchange:")).await;
    assert_error(everyone, Code::PermissionDenied, "PERMISSION_DENIED");
    let other = owner.list_holds(by_prefix(user(3), "market:exchange:")).await;
    assert_error(other, Code::PermissionDenied, "PERMISSION_DENIED");
    let mine = owner.list_holds(by_prefix(user(2), "market:")).await.unwrap().into_inner().holds;
    assert_eq!(ids(&mine), [own.id.as_str()]);

    let no_filter = admin.list_holds(by_prefix(None, "")).await;
    assert_eq!(violated_fields(&assert_error(no_filter, Code::InvalidArgument, "VALIDATION_FAILED")), ["account"]);
    for bad in ["x".repeat(201), "market:\0".to_owned()] {
        let refused = admin.list_holds(by_prefix(None, &bad)).await;
        let refused = assert_error(refused, Code::InvalidArgument, "VALIDATION_FAILED");
        assert_eq!(violated_fields(&refused), ["reference_prefix"]);
    }
    let longest = admin.list_holds(by_prefix(None, &"x".repeat(200))).await.unwrap().into_inner().holds;
    assert_eq!(longest, []);
}

#[tokio::test]
async fn expired_holds_are_released_by_the_job() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    adjust(&mut admin, 2, "POINTS", 100).await.unwrap();
    let request =
        pb::CreateHoldRequest { expires_at: Some(to_timestamp(now_millis() + 500)), ..hold_request(2, "POINTS", 30) };
    let hold = admin.create_hold(request).await.unwrap().into_inner().hold.unwrap();
    assert_eq!(balance(&mut admin, 2, "POINTS").await, (70, 30));

    let mut status = pb::HoldStatus::Open as i32;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        status = admin
            .get_hold(pb::GetHoldRequest { hold_id: hold.id.clone() })
            .await
            .unwrap()
            .into_inner()
            .hold
            .unwrap()
            .status;
        if status != pb::HoldStatus::Open as i32 {
            break;
        }
    }
    assert_eq!(status, pb::HoldStatus::Expired as i32);
    assert_eq!(balance(&mut admin, 2, "POINTS").await, (100, 0));
    let history =
        admin.list_transactions(pb::ListTransactionsRequest { account: user(2), ..Default::default() }).await.unwrap();
    let expiry = history.into_inner().transactions.swap_remove(0);
    assert_eq!(expiry.business_type, "HOLD_EXPIRE");
    let freed = pb::Balance { account: user(2), asset_code: "POINTS".into(), available: 100, frozen: 0, total: 100 };
    assert_eq!(expiry.resulting_balances, [freed], "the expiry records the balance it frees");
    assert!(
        expiry
            .postings
            .iter()
            .all(|posting| (posting.available_after, posting.frozen_after, posting.balance_seq) == (100, 0, 3))
    );
    assert_consistent(&mut admin).await;
}

/// The expiry job runs at start, then once an hour: holds expire only by their instant.
async fn spawn_app_without_expiry_job() -> TestApp {
    spawn_app_on_manual_clock().await
}

fn expiring_at(request: pb::CreateHoldRequest, expires_at: i64) -> pb::CreateHoldRequest {
    pb::CreateHoldRequest { expires_at: Some(to_timestamp(expires_at)), ..request }
}

#[tokio::test]
async fn a_hold_retried_after_its_expiry_replays_its_creation() {
    let app = spawn_app_without_expiry_job().await;
    let mut admin = app.admin_with_catalog().await;
    adjust(&mut admin, 2, "POINTS", 100).await.unwrap();
    let expires_at = app.now() + 1000;
    let request = expiring_at(hold_request(2, "POINTS", 30), expires_at);
    let created = admin.create_hold(request.clone()).await.unwrap().into_inner();
    app.pass(expires_at);

    let retried = admin.create_hold(request.clone()).await.unwrap().into_inner();
    assert!(retried.replayed && !created.replayed);
    assert_eq!(retried.transaction, created.transaction);
    assert_eq!(retried.hold.unwrap().id, created.hold.unwrap().id);
    assert_eq!(balance(&mut admin, 2, "POINTS").await, (70, 30), "frozen once");
    // A first request with that expiry is refused; the same key for other content too.
    let fresh = pb::CreateHoldRequest { idempotency_key: new_key(), ..request.clone() };
    let status = assert_error(admin.create_hold(fresh).await, Code::InvalidArgument, "VALIDATION_FAILED");
    assert_eq!(economy_kit::error::violated_fields(&status), ["expires_at"]);
    let other = pb::CreateHoldRequest { amount: 31, ..request };
    assert_error(admin.create_hold(other).await, Code::AlreadyExists, "IDEMPOTENCY_KEY_REUSED");
    assert_consistent(&mut admin).await;
}

#[tokio::test]
async fn a_hold_is_not_paid_out_from_its_expiry_on_even_before_the_job() {
    let app = spawn_app_without_expiry_job().await;
    let mut admin = app.admin_with_catalog().await;
    let mut market = app.service().await;
    adjust(&mut admin, 2, "POINTS", 100).await.unwrap();
    adjust(&mut admin, 3, "POINTS", 1).await.unwrap();
    let expires_at = app.now() + 1500;
    let mut holds = Vec::new();
    for _ in 0..5 {
        let request = expiring_at(hold_request(2, "POINTS", 10), expires_at);
        holds.push(market.create_hold(request).await.unwrap().into_inner().hold.unwrap().id);
    }
    // Before the expiry: a settlement to a balance that exists, one to a new account
    // inside a transaction, and a release.
    let settle_known = settle(&holds[0], None, 3, 10);
    market.settle_hold(settle_known.clone()).await.unwrap();
    let post = |hold: &str| pb::PostTransactionRequest {
        idempotency_key: new_key(),
        business_type: "MARKET_PURCHASE".into(),
        postings: vec![posting(user(9), "POINTS", 10)],
        hold_settlements: vec![pb::HoldSettlement { hold_id: hold.into(), amount: None }],
        ..Default::default()
    };
    let post_new = post(&holds[1]);
    market.post_transaction(post_new.clone()).await.unwrap();
    let release_early = release(&holds[2]);
    market.release_hold(release_early.clone()).await.unwrap();
    app.pass(expires_at);

    // Their retries answer from their keys.
    assert!(market.settle_hold(settle_known).await.unwrap().into_inner().replayed);
    assert!(market.post_transaction(post_new).await.unwrap().into_inner().replayed);
    let released = market.release_hold(release_early).await.unwrap().into_inner();
    assert!(released.replayed);
    assert_eq!(released.hold.unwrap().status, pb::HoldStatus::Released as i32);

    // New payouts are refused on every path, though the job has not run.
    let late = assert_error(
        market.settle_hold(settle(&holds[3], None, 3, 10)).await,
        Code::FailedPrecondition,
        "HOLD_EXPIRED",
    );
    assert!(late.message().contains(&holds[3]), "{late:?}");
    assert_error(market.settle_hold(settle(&holds[3], Some(1), 9, 1)).await, Code::FailedPrecondition, "HOLD_EXPIRED");
    assert_error(market.post_transaction(post(&holds[3])).await, Code::FailedPrecondition, "HOLD_EXPIRED");
    let to_known = pb::PostTransactionRequest { postings: vec![posting(user(3), "POINTS", 10)], ..post(&holds[4]) };
    assert_error(market.post_transaction(to_known).await, Code::FailedPrecondition, "HOLD_EXPIRED");
    assert_eq!(balance(&mut admin, 2, "POINTS").await, (60, 20), "two holds still frozen");
    assert_eq!(balance(&mut admin, 3, "POINTS").await, (11, 0));
    assert_eq!(balance(&mut admin, 9, "POINTS").await, (10, 0));
    let open = admin.get_hold(pb::GetHoldRequest { hold_id: holds[3].clone() }).await.unwrap().into_inner();
    assert_eq!(open.hold.unwrap().status, pb::HoldStatus::Open as i32, "the job makes it visible later");

    // A release still returns the amount, as the expiry would.
    let released = market.release_hold(release(&holds[3])).await.unwrap().into_inner().hold.unwrap();
    assert_eq!(released.status, pb::HoldStatus::Released as i32);
    assert_eq!(balance(&mut admin, 2, "POINTS").await, (70, 10));
    assert_consistent(&mut admin).await;
}

/// What the hold-expiry job samples (`economy_ledger_holds_open`,
/// `economy_ledger_holds_expired_backlog`): the open holds and those past their expiry.
#[tokio::test]
async fn open_holds_and_those_past_their_expiry_are_counted() {
    let app = spawn_app_without_expiry_job().await;
    let mut admin = app.admin_with_catalog().await;
    adjust(&mut admin, 2, "POINTS", 100).await.unwrap();
    let expires_at = app.now() + 1000;
    admin.create_hold(expiring_at(hold_request(2, "POINTS", 10), expires_at)).await.unwrap();
    admin.create_hold(hold_request(2, "POINTS", 10)).await.unwrap();
    let released = admin.create_hold(hold_request(2, "POINTS", 10)).await.unwrap().into_inner();
    admin.release_hold(release(&released.hold.unwrap().id)).await.unwrap();
    let store = economy_ledger::store::LedgerStore::open(
        &app.database().url,
        &economy_kit::db::DbOptions::default(),
        &["SYSTEM_ISSUANCE".into()],
        economy_kit::time::system_clock(),
    )
    .await
    .unwrap();
    assert_eq!(store.hold_counts(expires_at - 1).await.unwrap(), (2, 0));
    assert_eq!(store.hold_counts(expires_at).await.unwrap(), (2, 1), "due at its instant");
}
