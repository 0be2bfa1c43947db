//! Jobs on a schedule, once across replicas (docs/operations.md, "Background jobs").
//!
//! Each replica of a service runs one [`Scheduler`]; for each of its jobs it watches the
//! service's clock and, when a scheduled instant of the job's [`Schedule`] has come,
//! claims that run in the service's `job_runs` table ([`crate::job_runs`]). The replica
//! whose insert wins runs the job, renewing its lease while it works, and records the
//! end; the others watch the row and take the run over when its owner's lease runs out
//! (the owner died). Nothing runs at start, except the catch-up: a replica starting
//! after a scheduled instant that no replica ran (the service was down then) runs that
//! latest missed instant once, if the job has run before; older missed instants are
//! skipped, and a database where the job never ran waits for its first instant.
//!
//! Metrics (each job registered at start): `economy_job_next_run_timestamp_seconds{job}`,
//! and, from the latest ended run row, `economy_job_last_run_timestamp_seconds{job}`
//! (its start), `economy_job_last_run_duration_seconds{job}`,
//! `economy_job_last_run_success{job}` (1 ok / 0 failed; 0 before any run, when the last
//! run timestamp is 0 too), `economy_job_last_run_items{job}` (what it handled: the
//! findings of a check, so an alert on them outlives a restart) and
//! `economy_job_last_success_timestamp_seconds{job}` (its end) — so every replica exports
//! the same values, whichever ran the job.

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::db::Db;
use crate::job_runs::{Claim, JobRuns, RENEW_EVERY};
use crate::schedule::Schedule;
use crate::time::SharedClock;

/// How often a scheduler reads its clock (and watches a run another replica owns).
pub const TICK: Duration = Duration::from_secs(1);

/// Runs a service's scheduled jobs (module doc): one per replica, over the service's own
/// database and clock.
#[derive(Debug, Clone)]
pub struct Scheduler {
    runs: JobRuns,
    clock: SharedClock,
    owner: String,
    shutdown: CancellationToken,
}

impl Scheduler {
    /// A scheduler over `db` (which has the `job_runs` table), reading "now" from `clock`,
    /// whose jobs stop at `shutdown`. Its runs are recorded as owned by
    /// `<host>/<process id>/<random id>`.
    pub fn new(db: Db, clock: SharedClock, shutdown: CancellationToken) -> Self {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".to_owned());
        let start = uuid::Uuid::now_v7().simple().to_string();
        let owner = format!("{host}/{}/{}", std::process::id(), &start[start.len() - 8..]);
        Self { runs: JobRuns::new(db), clock, owner, shutdown }
    }

    /// This replica's name in the run rows.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Spawns the loop of `job` (e.g. `ledger_reconciliation`): `run` is called once per
    /// scheduled instant of `schedule` across replicas and answers the number of items it
    /// handled or why it failed. A run that shutdown interrupts stays `running` until its
    /// lease runs out; another replica then takes it over.
    pub fn spawn<F, Fut>(&self, job: &'static str, schedule: Schedule, run: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<u64, String>> + Send + 'static,
    {
        gauges::register(job);
        let job = ScheduledJob { scheduler: self.clone(), job, schedule };
        tokio::spawn(job.run_loop(run));
    }
}

/// One job's loop on one replica.
struct ScheduledJob {
    scheduler: Scheduler,
    job: &'static str,
    schedule: Schedule,
}

impl ScheduledJob {
    async fn run_loop<F, Fut>(self, mut run: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<u64, String>> + Send + 'static,
    {
        let now = self.now();
        let mut pending = self.catch_up(now).await;
        let mut next = self.schedule_next(now);
        self.refresh_gauges().await;
        loop {
            if let Some(at) = pending {
                pending = match self.attend(at, &mut run).await {
                    Ok(true) => {
                        self.refresh_gauges().await;
                        None
                    }
                    Ok(false) => Some(at),
                    Err(error) => {
                        tracing::warn!(job = self.job, %error, "scheduled job: run rows not reachable; trying again");
                        Some(at)
                    }
                };
            }
            tokio::select! {
                () = self.scheduler.shutdown.cancelled() => return,
                () = tokio::time::sleep(TICK) => {}
            }
            let now = self.now();
            if next.is_some_and(|next| next <= now) {
                // After a long pause (or a clock moved far), only the latest instant runs.
                pending = self.schedule.latest_at_or_before(now);
                next = self.schedule_next(now);
                if let Some(at) = pending {
                    self.abandon_older(at, now).await;
                }
            }
        }
    }

    /// The instant to run at start: the latest one that has come, if the job has run
    /// before on this database (module doc, the catch-up rule).
    async fn catch_up(&self, now: i64) -> Option<i64> {
        let latest = self.schedule.latest_at_or_before(now)?;
        match self.scheduler.runs.has_any(self.job).await {
            Ok(true) => Some(latest),
            Ok(false) => None,
            Err(error) => {
                tracing::warn!(job = self.job, %error, "scheduled job: catch-up not checked");
                None
            }
        }
    }

    /// Claims the run at `at` and runs it, or looks at the replica that has it. True when
    /// the run has ended (here or elsewhere); false while another replica runs it.
    async fn attend<F, Fut>(&self, at: i64, run: &mut F) -> Result<bool, sqlx::Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<u64, String>>,
    {
        let (job, owner) = (self.job, self.scheduler.owner.as_str());
        match self.scheduler.runs.claim(job, at, owner, self.now()).await? {
            Claim::Ended => Ok(true),
            Claim::Running => Ok(false),
            Claim::Won { taken_over } => {
                if taken_over {
                    tracing::warn!(job, scheduled_at = at, "scheduled job: run taken over from an owner that stopped");
                }
                Ok(self.run_under_lease(at, run()).await)
            }
        }
    }

    /// Runs `work` while renewing the lease; records its end. False when the run stopped
    /// unfinished (shutdown, or the lease was lost): its row is left to a take-over.
    async fn run_under_lease(&self, at: i64, work: impl Future<Output = Result<u64, String>>) -> bool {
        let (job, owner, runs) = (self.job, self.scheduler.owner.as_str(), &self.scheduler.runs);
        tracing::info!(job, scheduled_at = at, "scheduled job started");
        let mut work = pin!(work);
        let mut renewals = tokio::time::interval_at(tokio::time::Instant::now() + RENEW_EVERY, RENEW_EVERY);
        let result = loop {
            tokio::select! {
                result = &mut work => break result,
                () = self.scheduler.shutdown.cancelled() => return false,
                _ = renewals.tick() => match runs.renew(job, at, owner, self.now()).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(job, scheduled_at = at, "scheduled job: lease lost, another replica took the run over");
                        return false;
                    }
                    Err(error) => tracing::warn!(job, %error, "scheduled job: lease not renewed"),
                },
            }
        };
        self.record(at, &result).await;
        true
    }

    /// Records the end of this replica's run at `at`.
    async fn record(&self, at: i64, result: &Result<u64, String>) {
        let job = self.job;
        crate::metrics::job_run(job, result.as_ref().ok().copied());
        match result {
            Ok(items) => tracing::info!(job, scheduled_at = at, items, "scheduled job finished"),
            Err(error) => tracing::error!(job, scheduled_at = at, %error, "scheduled job failed"),
        }
        match self.scheduler.runs.finish(job, at, &self.scheduler.owner, self.now(), result).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(job, scheduled_at = at, "scheduled job: run had been taken over"),
            Err(error) => tracing::error!(job, %error, "scheduled job: end not recorded"),
        }
    }

    /// Marks abandoned the older runs whose owner died before `at` came.
    async fn abandon_older(&self, at: i64, now: i64) {
        match self.scheduler.runs.abandon_before(self.job, at, now).await {
            Ok(0) => {}
            Ok(abandoned) => tracing::warn!(job = self.job, abandoned, "scheduled job: runs abandoned by their owner"),
            Err(error) => tracing::warn!(job = self.job, %error, "scheduled job: old runs not checked"),
        }
    }

    fn schedule_next(&self, now: i64) -> Option<i64> {
        let next = self.schedule.next_after(now);
        gauges::next_run(self.job, next);
        next
    }

    async fn refresh_gauges(&self) {
        match self.scheduler.runs.last_outcomes(self.job).await {
            Ok((last, success_at)) => gauges::last_runs(self.job, last.as_ref(), success_at),
            Err(error) => tracing::warn!(job = self.job, %error, "scheduled job: metrics not refreshed"),
        }
    }

    fn now(&self) -> i64 {
        self.scheduler.clock.now_millis()
    }
}

/// The job metrics (module doc).
pub(crate) mod gauges {
    use crate::job_runs::{JobRun, Outcome};

    pub(crate) const NEXT: &str = "economy_job_next_run_timestamp_seconds";
    pub(crate) const LAST: &str = "economy_job_last_run_timestamp_seconds";
    pub(crate) const DURATION: &str = "economy_job_last_run_duration_seconds";
    pub(crate) const SUCCESS: &str = "economy_job_last_run_success";
    pub(crate) const LAST_SUCCESS: &str = "economy_job_last_success_timestamp_seconds";
    pub(crate) const ITEMS: &str = "economy_job_last_run_items";

    /// Sets `job`'s gauges and run counters to 0 (described by `crate::metrics`).
    pub(super) fn register(job: &'static str) {
        for name in [NEXT, LAST, DURATION, SUCCESS, LAST_SUCCESS, ITEMS] {
            metrics::gauge!(name, "job" => job).set(0.0);
        }
        crate::metrics::register_job(job);
    }

    pub(super) fn next_run(job: &'static str, next: Option<i64>) {
        metrics::gauge!(NEXT, "job" => job).set(seconds(next.unwrap_or(0)));
    }

    pub(super) fn last_runs(job: &'static str, last: Option<&JobRun>, success_at: Option<i64>) {
        if let Some(run) = last {
            let ended = run.finished_at.unwrap_or(run.started_at);
            metrics::gauge!(LAST, "job" => job).set(seconds(run.started_at));
            metrics::gauge!(DURATION, "job" => job).set(seconds(ended.saturating_sub(run.started_at).max(0)));
            metrics::gauge!(SUCCESS, "job" => job).set(if run.outcome == Outcome::Ok { 1.0 } else { 0.0 });
            metrics::gauge!(ITEMS, "job" => job).set(run.items as f64);
        }
        if let Some(at) = success_at {
            metrics::gauge!(LAST_SUCCESS, "job" => job).set(seconds(at));
        }
    }

    /// Milliseconds -> seconds.
    fn seconds(millis: i64) -> f64 {
        millis as f64 / 1000.0
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::job_runs::{JobRun, LEASE_MS, Outcome};
    use crate::schedule::time_zone;
    use crate::time::{Clock, ManualClock};

    /// Polls `runs` until `done` holds for the job's rows (30 s at most).
    async fn wait_for(runs: &JobRuns, done: impl Fn(&[JobRun]) -> bool) -> Vec<JobRun> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let mut violations = crate::error::Violations::default();
            let query = crate::job_runs::query(&mut violations, "daily", 0, "");
            let page = runs.list(&query).await.expect("listed");
            if done(&page.runs) || tokio::time::Instant::now() > deadline {
                return page.runs;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Advances `clock` to 30 s past the next 02:00 (UTC) of `schedule`; returns that 02:00.
    fn past_two(clock: &ManualClock, schedule: &Schedule) -> i64 {
        use crate::time::Clock as _;
        let at = schedule.next_after(clock.now_millis()).expect("next");
        clock.advance(Duration::from_millis(u64::try_from(at - clock.now_millis() + 30_000).expect("ahead")));
        at
    }

    #[tokio::test]
    async fn three_replicas_run_a_scheduled_time_once() {
        let (_database, db) = crate::job_runs::tests::database().await;
        let clock = Arc::new(ManualClock::default());
        let schedule = Schedule::parse("0 2 * * *", time_zone("UTC", "t").expect("zone"), "t").expect("schedule");
        let (ran, shutdown) = (Arc::new(AtomicUsize::new(0)), CancellationToken::new());
        for _ in 0..3 {
            let ran = ran.clone();
            let scheduler = Scheduler::new(db.clone(), clock.clone(), shutdown.clone());
            scheduler.spawn("daily", schedule.clone(), move || {
                let ran = ran.clone();
                async move { Ok(u64::try_from(ran.fetch_add(1, Ordering::SeqCst)).unwrap_or(0) + 5) }
            });
        }
        let runs = JobRuns::new(db);
        tokio::time::sleep(TICK * 2).await;
        assert!(wait_for(&runs, |_| true).await.is_empty(), "nothing runs at start");
        let at = past_two(&clock, &schedule);
        let done = wait_for(&runs, |rows| rows.iter().any(|run| run.outcome == Outcome::Ok)).await;
        // Give the other replicas time to look at the row too.
        tokio::time::sleep(TICK * 2).await;
        shutdown.cancel();
        assert_eq!(done.len(), 1, "{done:?}");
        assert_eq!((done[0].scheduled_at, done[0].outcome, done[0].items), (at, Outcome::Ok, 5));
        assert_eq!(ran.load(Ordering::SeqCst), 1, "one replica ran it");
    }

    #[tokio::test]
    async fn a_started_replica_exports_the_last_run_recorded_before() {
        let handle = crate::metrics::recorder().expect("recorder");
        let (_database, db) = crate::job_runs::tests::database().await;
        let clock = Arc::new(ManualClock::default());
        let runs = JobRuns::new(db.clone());
        // A run of the process before the restart: 7 findings.
        let (at, now) = (clock.now_millis() - 60_000, clock.now_millis() - 50_000);
        assert_eq!(runs.claim("restarted", at, "gone", now).await.expect("claim"), Claim::Won { taken_over: false });
        assert!(runs.finish("restarted", at, "gone", now + 1_500, &Ok(7)).await.expect("finish"));
        let shutdown = CancellationToken::new();
        let schedule = Schedule::parse("0 2 * * *", time_zone("UTC", "t").expect("zone"), "t").expect("schedule");
        Scheduler::new(db, clock, shutdown.clone()).spawn("restarted", schedule, || async { Ok(0) });
        let expected = [
            "economy_job_last_run_items{job=\"restarted\"} 7",
            "economy_job_last_run_success{job=\"restarted\"} 1",
            "economy_job_last_run_duration_seconds{job=\"restarted\"} 1.5",
        ];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let rendered = loop {
            let rendered = handle.render();
            let found = expected.iter().all(|line| rendered.lines().any(|rendered| rendered == *line));
            if found || tokio::time::Instant::now() > deadline {
                break rendered;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        shutdown.cancel();
        for line in expected {
            assert!(rendered.lines().any(|rendered| rendered == line), "{line} in {rendered}");
        }
        assert!(rendered.contains("# HELP economy_job_last_run_items "), "described");
    }

    #[tokio::test]
    async fn a_run_whose_owner_stopped_is_taken_over_after_its_lease() {
        let (_database, db) = crate::job_runs::tests::database().await;
        let clock = Arc::new(ManualClock::default());
        let schedule = Schedule::parse("0 2 * * *", time_zone("UTC", "t").expect("zone"), "t").expect("schedule");
        // The first replica's run never ends; it is stopped mid-run.
        let stopped = CancellationToken::new();
        let first = Scheduler::new(db.clone(), clock.clone(), stopped.clone());
        first.spawn("daily", schedule.clone(), std::future::pending);
        tokio::time::sleep(TICK).await;
        let at = past_two(&clock, &schedule);
        let runs = JobRuns::new(db.clone());
        let running = wait_for(&runs, |rows| !rows.is_empty()).await;
        assert_eq!((running.len(), running[0].owner.as_str()), (1, first.owner()));
        stopped.cancel();
        let shutdown = CancellationToken::new();
        let second = Scheduler::new(db, clock.clone(), shutdown.clone());
        second.spawn("daily", schedule, || async { Ok(1) });
        tokio::time::sleep(TICK * 2).await;
        let still = wait_for(&runs, |_| true).await;
        assert_eq!((still[0].owner.as_str(), still[0].outcome), (first.owner(), Outcome::Running), "lease valid");
        clock.advance(Duration::from_millis(u64::try_from(LEASE_MS).expect("positive")));
        let done = wait_for(&runs, |rows| rows.iter().any(|run| run.outcome == Outcome::Ok)).await;
        shutdown.cancel();
        assert_eq!(done.len(), 1, "{done:?}");
        assert_eq!((done[0].scheduled_at, done[0].owner.as_str(), done[0].attempts), (at, second.owner(), 2));
    }

    #[tokio::test]
    async fn a_missed_time_is_caught_up_once_only_if_the_job_ran_before() {
        let (_database, db) = crate::job_runs::tests::database().await;
        let clock = Arc::new(ManualClock::default());
        let schedule = Schedule::parse("0 2 * * *", time_zone("UTC", "t").expect("zone"), "t").expect("schedule");
        let runs = JobRuns::new(db.clone());
        let spawn = |shutdown: &CancellationToken| {
            Scheduler::new(db.clone(), clock.clone(), shutdown.clone())
                .spawn("daily", schedule.clone(), || async { Ok(0) });
        };
        // A day missed on a database where the job ran before: caught up at start, once.
        use crate::time::Clock as _;
        let yesterday = schedule.latest_at_or_before(clock.now_millis()).expect("latest") - 86_400_000;
        runs.claim("daily", yesterday, "old", yesterday).await.expect("claimed");
        runs.finish("daily", yesterday, "old", yesterday + 1, &Ok(0)).await.expect("finished");
        let (first, second) = (CancellationToken::new(), CancellationToken::new());
        spawn(&first);
        spawn(&second);
        let done = wait_for(&runs, |rows| rows.len() == 2 && rows[0].outcome == Outcome::Ok).await;
        tokio::time::sleep(TICK * 2).await;
        first.cancel();
        second.cancel();
        assert_eq!(wait_for(&runs, |_| true).await.len(), 2, "{done:?}");
        assert_eq!(done[0].scheduled_at, yesterday + 86_400_000);
    }
}
