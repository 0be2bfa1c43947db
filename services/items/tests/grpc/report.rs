//! `GetItemReport`: counts per template and status, and locks held longer than
//! `items.stale_lock_after_days` (30 by default) listed oldest first; admins and services
//! only.

use std::time::Duration;

use economy_items::jobs::REPORT_JOB;
use economy_kit::error::violated_fields;
use economy_kit::job_runs::{JobRun, JobRunQuery, JobRuns, Outcome};
use economy_kit::jobs::TICK;
use economy_kit::schedule::{Schedule, time_zone};
use economy_kit::time::Clock;
use economy_proto::items::v1 as pb;
use pb::ItemStatus as S;
use tonic::Code;

use crate::common::*;

const DAY: Duration = Duration::from_secs(24 * 3600);

fn counts(report: &pb::GetItemReportResponse) -> Vec<(String, S, i64)> {
    report.statuses.iter().map(|count| (count.template_code.clone(), count.status(), count.count)).collect()
}

#[tokio::test]
async fn the_report_counts_statuses_and_lists_locks_held_too_long() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    let mut market = app.service("market").await;
    let mut redemption = app.service("redemption").await;
    let swords =
        [grant(&mut admin, 2, "sword").await, grant(&mut admin, 3, "sword").await, grant(&mut admin, 3, "sword").await];
    let potion = grant(&mut admin, 2, "potion").await;
    lock(&mut market, &swords[0].id, MARKET).await;
    app.clock.advance(Duration::from_secs(60));
    lock(&mut redemption, &potion.id, REDEMPTION).await;
    app.clock.advance(30 * DAY + Duration::from_secs(1));
    lock(&mut market, &swords[1].id, "market:listing:2").await;

    let report = admin.get_item_report(pb::GetItemReportRequest::default()).await.unwrap().into_inner();
    let expected = [("potion", S::Locked, 1), ("sword", S::Available, 1), ("sword", S::Locked, 2)];
    assert_eq!(counts(&report), expected.map(|(code, status, count)| (code.to_owned(), status, count)));
    assert_eq!(report.stale_locked_count, 2);
    let stale: Vec<_> = report.stale_locked.iter().map(|item| (item.id.as_str(), item.lock_holder.as_str())).collect();
    assert_eq!(stale, [(swords[0].id.as_str(), MARKET), (potion.id.as_str(), REDEMPTION)]);
    let cutoff = app.clock.now_millis() - 30 * 86_400_000;
    assert_eq!(report.stale_before, Some(economy_kit::time::to_timestamp(cutoff)));

    let first = pb::GetItemReportRequest { stale_limit: 1 };
    let report = app.service("gateway").await.get_item_report(first).await.unwrap().into_inner();
    assert_eq!((report.stale_locked_count, report.stale_locked.len()), (2, 1));
    assert_eq!(report.stale_locked[0].id, swords[0].id);
}

#[tokio::test]
async fn only_admins_and_services_read_the_report_and_limits_are_checked() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    grant(&mut admin, 2, "sword").await;
    let status = app.user(2).await.get_item_report(pb::GetItemReportRequest::default()).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    for stale_limit in [-1, 1001] {
        let request = pb::GetItemReportRequest { stale_limit };
        let status = assert_error(admin.get_item_report(request).await, Code::InvalidArgument, "VALIDATION_FAILED");
        assert_eq!(violated_fields(&status), ["stale_limit"]);
    }
    let empty = spawn_app().await.admin().await.get_item_report(pb::GetItemReportRequest::default()).await;
    let empty = empty.unwrap().into_inner();
    assert!(empty.statuses.is_empty() && empty.stale_locked.is_empty() && empty.stale_locked_count == 0);
}

/// The finished runs of the daily report, newest first.
async fn report_runs(app: &TestApp) -> Vec<JobRun> {
    let query = JobRunQuery { job: Some(REPORT_JOB.into()), after: None, limit: 10 };
    let runs = JobRuns::new(app.store().await.db().clone()).list(&query).await.unwrap().runs;
    runs.into_iter().filter(|run| run.finished_at.is_some()).collect()
}

#[tokio::test]
async fn the_daily_report_runs_at_its_time_not_at_start_and_records_the_stale_locks() {
    let app = spawn_app().await;
    tokio::time::sleep(2 * TICK).await;
    assert_eq!(report_runs(&app).await, [], "nothing runs at start");

    let mut admin = app.admin_with_catalog().await;
    let sword = grant(&mut admin, 2, "sword").await;
    lock(&mut app.service("market").await, &sword.id, MARKET).await;
    app.clock.advance(31 * DAY);
    // items.report_schedule defaults to 04:00 UTC; of the instants the clock jumped over,
    // the latest runs, once.
    let schedule = Schedule::parse("0 4 * * *", time_zone("UTC", "zone").unwrap(), "schedule").unwrap();
    let at = schedule.latest_at_or_before(app.clock.now_millis()).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let runs = loop {
        let runs = report_runs(&app).await;
        if !runs.is_empty() || tokio::time::Instant::now() > deadline {
            break runs;
        }
        tokio::time::sleep(TICK / 4).await;
    };
    assert_eq!(runs.len(), 1, "{runs:#?}");
    assert_eq!((runs[0].scheduled_at, runs[0].outcome, runs[0].items), (at, Outcome::Ok, 1));
}
