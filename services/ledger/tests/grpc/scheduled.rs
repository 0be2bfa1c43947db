//! The whole reconciliation on its schedule (docs/operations.md, "Background jobs"): three
//! replicas of the ledger over one database and one manual clock run the 02:00 pass once,
//! nothing runs at start, a run whose replica died is taken over after its lease, and
//! `ListJobRuns` shows the runs to admins only.

use std::time::Duration;

use economy_kit::db::{Db, DbOptions};
use economy_kit::identity::{Caller, roles};
use economy_kit::job_runs::LEASE_MS;
use economy_kit::jobs::TICK;
use economy_kit::server::{RunningServer, ServerLimits};
use economy_kit::time::{Clock as _, ManualClock};
use economy_proto::jobs::v1::{JobRun, JobRunOutcome};
use economy_proto::ledger::v1 as pb;
use economy_testkit::{Service, channel, eventually, identity, test_stack};
use pb::ledger_service_client::LedgerServiceClient;
use tokio_util::sync::CancellationToken;

use crate::common::*;

const JOB: &str = "ledger_reconciliation";

/// The ledger of a test stack on a manual clock, plus `extra` more replicas of it (same
/// database, same clock) started beside it, stopped with the returned token.
async fn replicas(extra: usize) -> (TestApp, Vec<RunningServer>, CancellationToken) {
    let app: TestApp = test_stack(&[Service::Ledger]).manual_clock().start().await.into();
    let (shutdown, mut servers) = (CancellationToken::new(), Vec::new());
    let mut config = app.stack.config().ledger.clone();
    config.listen = "127.0.0.1:0".into();
    let (key, limits) = (identity(), ServerLimits::default());
    for _ in 0..extra {
        let server = economy_ledger::start(&config, &key, &limits, shutdown.child_token()).await;
        servers.push(server.expect("another replica starts"));
    }
    (app, servers, shutdown)
}

/// The runs of the reconciliation, as an admin sees them through `url`'s `ListJobRuns`.
async fn runs(url: &str) -> Vec<JobRun> {
    let signer = identity().signer(Caller::user(ADMIN, roles::ADMIN));
    let mut client = LedgerServiceClient::with_interceptor(channel(url).await, signer);
    let request = pb::ListJobRunsRequest { job: JOB.into(), ..Default::default() };
    client.list_job_runs(request).await.expect("listed").into_inner().runs
}

/// Moves the clock one second past the next 02:00 (UTC, the default schedule); returns
/// that 02:00 in ms since the epoch.
fn past_two(app: &TestApp) -> i64 {
    let clock: std::sync::Arc<ManualClock> = app.stack.clock();
    let schedule = app.stack.config().ledger.reconcile_schedule().expect("the default schedule");
    let two = schedule.next_after(clock.now_millis()).expect("a next 02:00");
    clock.advance(Duration::from_millis(u64::try_from(two - clock.now_millis() + 1_000).expect("ahead")));
    two
}

fn seconds(millis: i64) -> i64 {
    millis.div_euclid(1000)
}

#[tokio::test]
async fn three_replicas_run_the_two_oclock_pass_once() {
    let (app, servers, shutdown) = replicas(2).await;
    let urls: Vec<String> =
        std::iter::once(app.stack.url_of(Service::Ledger)).chain(servers.iter().map(RunningServer::url)).collect();
    tokio::time::sleep(TICK * 2).await;
    assert!(runs(&urls[0]).await.is_empty(), "nothing runs at start");

    let two = past_two(&app);
    eventually("the 02:00 run to finish", || async {
        runs(&urls[1]).await.first().is_some_and(|run| run.outcome() == JobRunOutcome::Ok)
    })
    .await;
    // Every replica has had time to look at the scheduled time.
    tokio::time::sleep(TICK * 3).await;
    for url in &urls {
        let runs = runs(url).await;
        assert_eq!(runs.len(), 1, "one run for 02:00 across the replicas: {runs:?}");
        let run = &runs[0];
        assert_eq!(run.scheduled_at.as_ref().map(|at| at.seconds), Some(seconds(two)));
        assert_eq!((run.outcome(), run.attempts, run.items), (JobRunOutcome::Ok, 1, 0), "{run:?}");
        assert!(run.finished_at.is_some() && run.error.is_empty(), "{run:?}");
    }
    shutdown.cancel();
}

#[tokio::test]
async fn a_run_whose_replica_died_is_taken_over_after_its_lease() {
    let (app, servers, shutdown) = replicas(1).await;
    let url = servers[0].url();
    let clock = app.stack.clock();
    let schedule = app.stack.config().ledger.reconcile_schedule().expect("schedule");
    let two = schedule.next_after(clock.now_millis()).expect("a next 02:00");
    // A replica claimed the 02:00 run and died at once: its row stays `running` until its
    // lease runs out.
    let db = Db::connect(&app.database().url, &DbOptions::default()).await.expect("connected");
    sqlx::query(
        "INSERT INTO job_runs (job, scheduled_at, owner, lease_until, started_at, outcome) \
         VALUES ($1, $2, 'gone/1/dead', $3, $2, 'running')",
    )
    .bind(JOB)
    .bind(two)
    .bind(two + LEASE_MS)
    .execute(db.pool())
    .await
    .expect("the dead replica's claim");
    db.close().await;
    tokio::time::sleep(TICK * 2).await;
    past_two(&app);
    tokio::time::sleep(TICK * 3).await;
    let before = runs(&url).await;
    assert_eq!((before.len(), before[0].owner.as_str()), (1, "gone/1/dead"), "within its lease: {before:?}");
    assert_eq!(before[0].outcome(), JobRunOutcome::Running);

    clock.advance(Duration::from_millis(u64::try_from(LEASE_MS).expect("positive")));
    eventually("a live replica to take the run over", || async {
        runs(&url).await.first().is_some_and(|run| run.outcome() == JobRunOutcome::Ok)
    })
    .await;
    let after = runs(&url).await;
    assert_eq!(after.len(), 1, "{after:?}");
    assert_ne!(after[0].owner, "gone/1/dead");
    assert_eq!(after[0].attempts, 2, "{after:?}");
    shutdown.cancel();
}

#[tokio::test]
async fn only_admins_list_job_runs_and_bad_pages_are_refused() {
    let app: TestApp = test_stack(&[Service::Ledger]).start().await.into();
    let request = pb::ListJobRunsRequest::default();
    let refused = app.user(2).await.list_job_runs(request).await.expect_err("not an admin");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    let bad = pb::ListJobRunsRequest { page_size: 501, page_token: "nonsense".into(), ..Default::default() };
    let refused = app.admin().await.list_job_runs(bad).await.expect_err("bad page");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert_eq!(economy_kit::error::violated_fields(&refused), ["page_size", "page_token"]);
}

#[tokio::test]
async fn a_bad_schedule_a_bad_zone_or_the_old_interval_key_refuses_the_start() {
    let database = economy_testkit::TestDatabase::new().await.expect("a database");
    let (key, limits) = (identity(), ServerLimits::default());
    let base = economy_ledger::LedgerConfig {
        listen: "127.0.0.1:0".into(),
        database_url: database.url.clone(),
        ..Default::default()
    };
    let bad_schedule = economy_ledger::LedgerConfig { reconcile_schedule: "0 25 * * *".into(), ..base.clone() };
    let bad_zone = economy_ledger::LedgerConfig { time_zone: "Mars/Olympus".into(), ..base };
    for (config, setting) in [(bad_schedule, "ledger.reconcile_schedule"), (bad_zone, "ledger.time_zone")] {
        let refused = economy_ledger::start(&config, &key, &limits, CancellationToken::new()).await;
        let message = format!("{:#}", refused.expect_err("refused"));
        assert!(message.contains(setting), "{message}");
    }
    // The interval setting the schedule replaced is an unknown key, named as such.
    #[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
    #[serde(default)]
    struct Settings {
        ledger: economy_ledger::LedgerConfig,
    }
    let old = [("ECONOMY_LEDGER__RECONCILE_INTERVAL_SECS".to_owned(), "86400".to_owned())].into();
    let refused = economy_kit::config::load_from::<Settings>(None, old).expect_err("an unknown key");
    assert!(format!("{refused:#}").contains("ledger.reconcile_interval_secs"), "{refused:#}");
}
