//! `economy jobs`: the runs of the scheduled jobs (admin), newest scheduled time first,
//! through each service's `ListJobRuns` (docs/operations.md, "Background jobs"). One line
//! per run:
//!
//! ```text
//! ledger ledger_reconciliation 2026-12-07T02:00:00Z ok  items 0  started … finished …  owner host/12/ab12cd34  attempts 1
//! ```

use std::process::ExitCode;

use clap::{Args, ValueEnum};
use economy_proto::gateway::v1 as gateway_pb;
use economy_proto::items::v1 as items_pb;
use economy_proto::jobs::v1::JobRun;
use economy_proto::ledger::v1 as ledger_pb;
use economy_proto::redemption::v1 as redemption_pb;

use crate::commands::admin::Clients;
use crate::output::{enum_name, timestamp};

/// The services with scheduled jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum JobService {
    /// The gateway (consistency check, record cleanup).
    Gateway,
    /// The ledger (whole reconciliation).
    Ledger,
    /// Item instances (reports).
    Items,
    /// Redemption orders (order expiry).
    Redemption,
}

/// `economy jobs`.
#[derive(Debug, Args)]
pub struct Jobs {
    /// Only this service's runs (default: every service with scheduled jobs).
    #[arg(long, value_enum)]
    pub service: Option<JobService>,
    /// Only this job's runs, e.g. `ledger_reconciliation`.
    #[arg(long, default_value = "")]
    pub job: String,
    /// Runs per service, newest first (1..500).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i32).range(1..=500))]
    pub limit: i32,
}

/// Runs `economy jobs`: the latest runs of each selected service.
pub async fn run(clients: Clients<'_>, args: Jobs) -> anyhow::Result<ExitCode> {
    let wanted = |service: JobService| args.service.is_none_or(|only| only == service);
    let (job, page_size) = (args.job.clone(), args.limit);
    if wanted(JobService::Gateway) {
        let mut client = gateway_pb::operations_service_client::OperationsServiceClient::new(clients.gateway);
        let request = gateway_pb::ListJobRunsRequest { job: job.clone(), page_size, page_token: String::new() };
        print_runs("gateway", &client.list_job_runs(request).await?.into_inner().runs);
    }
    if wanted(JobService::Ledger) {
        let request = ledger_pb::ListJobRunsRequest { job: job.clone(), page_size, page_token: String::new() };
        print_runs("ledger", &clients.ledger.list_job_runs(request).await?.into_inner().runs);
    }
    if wanted(JobService::Items) {
        let request = items_pb::ListJobRunsRequest { job: job.clone(), page_size, page_token: String::new() };
        print_runs("items", &clients.items.list_job_runs(request).await?.into_inner().runs);
    }
    if wanted(JobService::Redemption) {
        let request = redemption_pb::ListJobRunsRequest { job, page_size, page_token: String::new() };
        print_runs("redemption", &clients.redemption.list_job_runs(request).await?.into_inner().runs);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_runs(service: &str, runs: &[JobRun]) {
    runs.iter().for_each(|run| println!("{}", run_line(service, run)));
}

/// One run as a line (module doc).
pub fn run_line(service: &str, run: &JobRun) -> String {
    let outcome = enum_name(run.outcome().as_str_name(), "JOB_RUN_OUTCOME_");
    let mut line = format!(
        "{service} {} {} {outcome}  items {}  started {}  finished {}  owner {}  attempts {}",
        run.job,
        timestamp(run.scheduled_at.as_ref()),
        run.items,
        timestamp(run.started_at.as_ref()),
        timestamp(run.finished_at.as_ref()),
        run.owner,
        run.attempts,
    );
    if !run.error.is_empty() {
        line.push_str(&format!("  error {}", run.error));
    }
    line
}

#[cfg(test)]
mod tests {
    use economy_kit::time::to_timestamp;

    use super::*;

    #[test]
    fn a_run_is_one_line_with_its_error_last() {
        let run = JobRun {
            job: "ledger_reconciliation".into(),
            scheduled_at: Some(to_timestamp(1_796_608_800_000)),
            outcome: economy_proto::jobs::v1::JobRunOutcome::Failed.into(),
            owner: "h/1/ab".into(),
            started_at: Some(to_timestamp(1_796_608_801_000)),
            finished_at: Some(to_timestamp(1_796_608_802_000)),
            error: "database gone".into(),
            attempts: 2,
            ..Default::default()
        };
        let line = run_line("ledger", &run);
        assert!(line.starts_with("ledger ledger_reconciliation 2026-12-07T02:00:00"), "{line}");
        assert!(line.contains(" failed  items 0 ") && line.contains("owner h/1/ab  attempts 2"), "{line}");
        assert!(line.ends_with("  error database gone"), "{line}");
    }
}
