//! The whole check in bounded chunks (docs/ledger.md, "Reconciliation"): a pass cut into
//! many tiny chunks and calls finds exactly what one chunk finds, finds nothing while
//! writers run, refuses foreign cursors, and the scheduled pass resumes after a restart.

use std::collections::BTreeSet;

use economy_kit::db::{Db, DbOptions};
use economy_kit::reasons;
use economy_kit::time::{Clock as _, system_clock};
use economy_ledger::store::{LedgerStore, ReconcileLimits};
use economy_proto::ledger::v1 as pb;
use economy_testkit::{Service, eventually, test_stack};
use tonic::Code;

use crate::common::*;

/// The limits of the tiny chunks: a few postings, two balance rows.
const TINY: ReconcileLimits = ReconcileLimits { postings: 3, balances: 2 };

/// A ledger whose whole check runs in [`TINY`] chunks and answers after every chunk, on a
/// manual clock (its scheduled pass runs when the test moves the clock past 02:00).
async fn tiny_chunks() -> TestApp {
    test_stack(&[Service::Ledger])
        .configure(move |config| {
            config.ledger.reconcile_chunk_postings = TINY.postings;
            config.ledger.reconcile_chunk_balances = TINY.balances;
            config.ledger.reconcile_call_budget_ms = 0;
            config.ledger.incremental_reconcile_interval_secs = 3600;
        })
        .manual_clock()
        .start()
        .await
        .into()
}

async fn corrupt(app: &TestApp, sql: &str) {
    let db = Db::connect(&app.database().url, &DbOptions::default()).await.unwrap();
    sqlx::query(sql).execute(db.pool()).await.unwrap();
    db.close().await;
}

/// A finding as a comparable tuple: kind, account, asset, expected, actual, entry.
type Seen = (i32, String, String, i64, i64, String);

fn seen(finding: &pb::Finding) -> Seen {
    let account = finding.account.as_ref().map(|account| format!("{:?}", account.account)).unwrap_or_default();
    (finding.kind, account, finding.asset_code.clone(), finding.expected, finding.actual, finding.entry_id.clone())
}

/// Runs a whole pass through the API, following the cursors; returns its findings and
/// the number of calls.
async fn whole_pass(admin: &mut Client) -> (BTreeSet<Seen>, usize) {
    let (mut findings, mut calls, mut cursor) = (BTreeSet::new(), 0, String::new());
    loop {
        let request = pb::ReconcileRequest { cursor: cursor.clone(), ..Default::default() };
        let response = admin.reconcile(request).await.unwrap().into_inner();
        calls += 1;
        findings.extend(response.findings.iter().map(seen));
        if response.next_cursor.is_empty() {
            return (findings, calls);
        }
        cursor = response.next_cursor;
    }
}

/// User 2: eight credits of 10 (more postings than a chunk holds); user 3: 10 with 4 on
/// hold; user 4: 7; user 5: 1. Returns the ids of user 2's fifth entry and user 4's.
async fn seed(admin: &mut Client) -> (String, String) {
    let mut fifth = String::new();
    for n in 1..=8 {
        let entry = adjust(admin, 2, "POINTS", 10).await.unwrap().transaction.unwrap();
        if n == 5 {
            fifth = entry.id;
        }
    }
    adjust(admin, 3, "POINTS", 10).await.unwrap();
    let hold = pb::CreateHoldRequest {
        idempotency_key: new_key(),
        account: user(3),
        asset_code: "POINTS".into(),
        amount: 4,
        ..Default::default()
    };
    admin.create_hold(hold).await.unwrap();
    let fourth = adjust(admin, 4, "POINTS", 7).await.unwrap().transaction.unwrap().id;
    adjust(admin, 5, "POINTS", 1).await.unwrap();
    (fifth, fourth)
}

#[tokio::test]
async fn a_pass_in_tiny_chunks_finds_exactly_what_one_chunk_finds() {
    let app = tiny_chunks().await;
    let mut admin = app.admin_with_catalog().await;
    let (fifth, fourth) = seed(&mut admin).await;
    let (clean, calls) = whole_pass(&mut admin).await;
    assert!(clean.is_empty(), "{clean:?}");
    assert!(calls > 10, "{calls} calls: the chunks were not tiny");

    // A recorded resulting balance in the middle of a chain cut over several chunks.
    corrupt(&app, "UPDATE postings SET available_after = 51 WHERE account = 'user:2' AND balance_seq = 5").await;
    // A row whose frozen part left its holds.
    corrupt(&app, "UPDATE balances SET frozen = 3, available = 7 WHERE account = 'user:3'").await;
    // A posting whose amount changed: its entry no longer sums to zero.
    corrupt(&app, "UPDATE postings SET amount = 8 WHERE account = 'user:4'").await;
    // A balance row without postings at version 3.
    corrupt(
        &app,
        "INSERT INTO balances (account, asset_code, available, frozen, seq, updated_at) \
         VALUES ('user:5', 'DIAMOND', 0, 0, 3, 0)",
    )
    .await;
    let (found, _) = whole_pass(&mut admin).await;
    let kind = |kind: pb::FindingKind| kind as i32;
    let of = |id: i64| format!("{:?}", user(id).unwrap().account);
    let expected: BTreeSet<Seen> = [
        (kind(pb::FindingKind::AvailableAfterMismatch), of(2), "POINTS".into(), 50, 51, fifth),
        (kind(pb::FindingKind::FrozenHoldsMismatch), of(3), "POINTS".into(), 4, 3, String::new()),
        (kind(pb::FindingKind::AvailableAfterMismatch), of(3), "POINTS".into(), 6, 7, String::new()),
        (kind(pb::FindingKind::FrozenAfterMismatch), of(3), "POINTS".into(), 4, 3, String::new()),
        (kind(pb::FindingKind::BalancePostingsMismatch), of(4), "POINTS".into(), 8, 7, String::new()),
        (kind(pb::FindingKind::AvailableAfterMismatch), of(4), "POINTS".into(), 8, 7, fourth.clone()),
        (kind(pb::FindingKind::AssetNotZeroSum), String::new(), "POINTS".into(), 0, 1, fourth),
        (kind(pb::FindingKind::BalanceSeqMismatch), of(5), "DIAMOND".into(), 0, 3, String::new()),
    ]
    .into_iter()
    .collect();
    assert_eq!(found, expected);

    let store = open_store(&app).await;
    let whole = store.reconcile_whole().await.unwrap();
    assert_eq!(whole.findings.len(), expected.len(), "in default chunks: {:?}", whole.findings);
}

#[tokio::test]
async fn a_pass_while_writers_run_finds_nothing() {
    let app = tiny_chunks().await;
    let mut admin = app.admin_with_catalog().await;
    for id in 2..=6 {
        adjust(&mut admin, id, "POINTS", 1_000).await.unwrap();
    }
    let mut writers = Vec::new();
    for writer in 0..4_i64 {
        let mut client = app.admin().await;
        writers.push(tokio::spawn(async move {
            for n in 0..60_i64 {
                let (from, to) = (2 + (writer + n) % 5, 2 + (writer + n + 1) % 5);
                let request = pb::PostTransactionRequest {
                    idempotency_key: new_key(),
                    postings: vec![posting(user(from), "POINTS", -1), posting(user(to), "POINTS", 1)],
                    ..Default::default()
                };
                client.post_transaction(request).await.unwrap();
                adjust(&mut client, to, "POINTS", 1).await.unwrap();
            }
        }));
    }
    let mut passes = 0;
    while passes < 2 || !writers.iter().all(tokio::task::JoinHandle::is_finished) {
        let (findings, _) = whole_pass(&mut admin).await;
        assert!(findings.is_empty(), "pass {passes} while writing: {findings:?}");
        passes += 1;
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let (findings, _) = whole_pass(&mut admin).await;
    assert!(findings.is_empty(), "{findings:?}");
}

#[tokio::test]
async fn a_cursor_the_ledger_did_not_issue_is_refused() {
    let app = tiny_chunks().await;
    let mut admin = app.admin().await;
    for cursor in ["x", "r1.00", "r1.7b7d"] {
        let request = pb::ReconcileRequest { cursor: cursor.into(), ..Default::default() };
        assert_error(admin.reconcile(request).await, Code::InvalidArgument, reasons::VALIDATION_FAILED);
    }
}

async fn open_store(app: &TestApp) -> LedgerStore {
    LedgerStore::open(&app.database().url, &DbOptions::default(), &["SYSTEM_ISSUANCE".into()], system_clock())
        .await
        .unwrap()
}

#[tokio::test]
async fn the_scheduled_pass_resumes_after_a_restart_and_runs_once() {
    let app = tiny_chunks().await;
    let mut admin = app.admin_with_catalog().await;
    seed(&mut admin).await;
    corrupt(&app, "UPDATE balances SET available = available + 1 WHERE account = 'user:4'").await;

    let first = open_store(&app).await;
    let step = first.reconcile_scheduled_step(&TINY, true).await.unwrap().unwrap();
    assert!(!step.complete);
    // A restart: another process picks the pass up where it stood, and never starts one.
    let second = open_store(&app).await;
    let (mut steps, mut last) = (1, step);
    while !last.complete {
        last = second.reconcile_scheduled_step(&TINY, false).await.unwrap().unwrap();
        steps += 1;
    }
    assert!(steps > 5, "{steps} steps");
    // The row and its latest posting disagree, and the row and its postings' sum.
    assert_eq!(last.totals.0, 2, "findings of the whole pass");
    assert!(first.reconcile_scheduled_step(&TINY, false).await.unwrap().is_none(), "the pass is over");
}

#[tokio::test]
async fn the_scheduled_job_reports_a_pass_without_being_called() {
    let app = tiny_chunks().await;
    let mut admin = app.admin_with_catalog().await;
    seed(&mut admin).await;
    corrupt(&app, "UPDATE balances SET available = available + 1 WHERE account = 'user:4'").await;
    let clock = app.stack.clock();
    let schedule = app.stack.config().ledger.reconcile_schedule().unwrap();
    let two = schedule.next_after(clock.now_millis()).unwrap();
    clock.advance(std::time::Duration::from_millis((two - clock.now_millis() + 1_000) as u64));
    let db = Db::connect(&app.database().url, &DbOptions::default()).await.unwrap();
    eventually("a scheduled pass to report the altered row", || async {
        let (cursor, findings): (String, i64) =
            sqlx::query_as("SELECT pass_cursor, findings FROM reconcile_passes WHERE name = 'scheduled'")
                .fetch_one(db.pool())
                .await
                .unwrap();
        cursor.is_empty() && findings == 2
    })
    .await;
    db.close().await;
}
