//! The scheduled jobs of the whole stack on a manual clock (docs/operations.md, "Background
//! jobs"): moved past 03:00, the ledger's 02:00 reconciliation, the gateway's 02:30
//! consistency check and 03:00 record cleanup each run once, and their runs are listed
//! through the gateway (`OperationsService.ListJobRuns` for its own, the ledger's
//! `ListJobRuns` routed like any admin read), to admins only.

use std::time::Duration;

use economy_gateway::config::GatewayConfig;
use economy_kit::identity::roles;
use economy_kit::jobs::TICK;
use economy_kit::time::Clock as _;
use economy_proto::gateway::v1 as pb;
use economy_proto::jobs::v1::{JobRun, JobRunOutcome};
use economy_proto::ledger::v1 as ledger;
use economy_testkit::{Service, eventually, test_stack};

use crate::common::*;

async fn gateway_runs(stack: &Stack, role: i32) -> Result<Vec<JobRun>, tonic::Status> {
    let request = pb::ListJobRunsRequest::default();
    Ok(stack.operations(role).await.list_job_runs(request).await?.into_inner().runs)
}

async fn ledger_runs(stack: &Stack) -> Vec<JobRun> {
    let request = ledger::ListJobRunsRequest::default();
    stack.ledger().await.list_job_runs(request).await.expect("listed through the gateway").into_inner().runs
}

fn finished(runs: &[JobRun], job: &str) -> bool {
    runs.iter().any(|run| run.job == job && run.outcome() == JobRunOutcome::Ok)
}

#[tokio::test]
async fn the_daily_jobs_run_at_their_times_and_are_listed_through_the_gateway() {
    let stack = Stack(test_stack(&Service::ALL).manual_clock().start().await);
    tokio::time::sleep(TICK * 2).await;
    assert_eq!(gateway_runs(&stack, roles::ADMIN).await.expect("listed"), [], "nothing runs at start");
    assert_eq!(ledger_runs(&stack).await, []);

    let clock = stack.clock();
    let cleanup = GatewayConfig::default().schedules().expect("default schedules").cleanup;
    let three = cleanup.next_after(clock.now_millis()).expect("a next 03:00");
    clock.advance(Duration::from_millis(u64::try_from(three - clock.now_millis() + 1_000).expect("ahead")));
    eventually("the gateway's jobs", || async {
        let runs = gateway_runs(&stack, roles::ADMIN).await.expect("listed");
        finished(&runs, "gateway_consistency") && finished(&runs, "gateway_record_cleanup")
    })
    .await;
    eventually("the ledger's reconciliation", || async {
        finished(&ledger_runs(&stack).await, "ledger_reconciliation")
    })
    .await;
    tokio::time::sleep(TICK * 2).await;
    let runs = gateway_runs(&stack, roles::ADMIN).await.expect("listed");
    let jobs: Vec<&str> = runs.iter().map(|run| run.job.as_str()).collect();
    // Newest scheduled time first: 03:00, then 02:30.
    assert_eq!(jobs, ["gateway_record_cleanup", "gateway_consistency"], "{runs:?}");
    assert_eq!(runs[0].scheduled_at.as_ref().map(|at| at.seconds * 1000), Some(three));
    assert_eq!(ledger_runs(&stack).await.len(), 1);

    let denied = gateway_runs(&stack, roles::MERCHANT_STAFF).await.expect_err("admin only");
    assert_eq!(reason_of(&denied), "ROLE_TOO_LOW");
}
