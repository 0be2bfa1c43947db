//! The runs of scheduled jobs (docs/operations.md, "Background jobs"), one row per job and
//! scheduled instant in the service's own `job_runs` table, so that a scheduled time runs
//! once across every replica of the service:
//!
//! ```sql
//! CREATE TABLE job_runs (
//!     job TEXT NOT NULL,                 -- e.g. ledger_reconciliation
//!     scheduled_at BIGINT NOT NULL,      -- the scheduled instant, ms since the epoch
//!     owner TEXT NOT NULL,               -- the replica running or that ran it
//!     lease_until BIGINT NOT NULL,       -- the owner's lease, ms since the epoch
//!     started_at BIGINT NOT NULL,
//!     finished_at BIGINT,                -- NULL while running
//!     outcome TEXT NOT NULL,             -- running | ok | failed | abandoned
//!     items BIGINT NOT NULL DEFAULT 0,
//!     error TEXT NOT NULL DEFAULT '',
//!     attempts BIGINT NOT NULL DEFAULT 1,
//!     PRIMARY KEY (job, scheduled_at)
//! );
//! ```
//!
//! A replica claims a run by inserting its row (the database's key decides which replica
//! won); the winner renews its lease ([`LEASE_MS`]) every [`RENEW_EVERY`] while the job
//! works, and a row still `running` past its lease (its owner died) is taken over by a
//! conditional UPDATE. Every write of an owner is conditional on still owning the row.

use std::time::Duration;

use economy_proto::jobs::v1 as pb;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::db::Db;
use crate::error::Violations;
use crate::time::to_timestamp;

/// How long a claim on a run lasts unless renewed, ms (60 s): the longest a run whose
/// owner died waits before another replica takes it over.
pub const LEASE_MS: i64 = 60_000;
/// How often the owner of a run renews its lease while the job works (15 s).
pub const RENEW_EVERY: Duration = Duration::from_secs(15);
/// Page size of `ListJobRuns` when the request names none.
pub const DEFAULT_PAGE_SIZE: i32 = 50;
/// Largest accepted page size of `ListJobRuns`.
pub const MAX_PAGE_SIZE: i32 = 500;
/// Longest error text kept in a row, characters.
const MAX_ERROR_CHARS: usize = 2_000;

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Its owner runs it.
    Running,
    /// It finished.
    Ok,
    /// It failed (`error`).
    Failed,
    /// Its owner died and a later scheduled time came first.
    Abandoned,
}

impl Outcome {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Ok => "ok",
            Self::Failed => "failed",
            Self::Abandoned => "abandoned",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "running" => Self::Running,
            "ok" => Self::Ok,
            "failed" => Self::Failed,
            _ => Self::Abandoned,
        }
    }

    fn to_proto(self) -> pb::JobRunOutcome {
        match self {
            Self::Running => pb::JobRunOutcome::Running,
            Self::Ok => pb::JobRunOutcome::Ok,
            Self::Failed => pb::JobRunOutcome::Failed,
            Self::Abandoned => pb::JobRunOutcome::Abandoned,
        }
    }
}

/// A stored run (instants in ms since the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRun {
    /// The job.
    pub job: String,
    /// The scheduled instant.
    pub scheduled_at: i64,
    /// The replica that runs or ran it.
    pub owner: String,
    /// The owner's lease.
    pub lease_until: i64,
    /// When its (last) owner started it.
    pub started_at: i64,
    /// When it ended.
    pub finished_at: Option<i64>,
    /// Where it stands.
    pub outcome: Outcome,
    /// What it handled.
    pub items: i64,
    /// Why it failed.
    pub error: String,
    /// Owners that started it.
    pub attempts: i64,
}

/// What a claim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// This replica owns the run now (`taken_over`: from an owner whose lease ran out).
    Won {
        /// True when another owner had started it.
        taken_over: bool,
    },
    /// Another replica runs it, its lease still valid.
    Running,
    /// It ended (ok, failed or abandoned).
    Ended,
}

/// The `job_runs` table of one service's database.
#[derive(Debug, Clone)]
pub struct JobRuns {
    db: Db,
}

const COLUMNS: &str = "job, scheduled_at, owner, lease_until, started_at, finished_at, outcome, items, error, attempts";

impl JobRuns {
    /// The runs of `db` (whose migrations created `job_runs`).
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Claims the run of `job` at `scheduled_at` for `owner` at `now`: inserts its row, or
    /// takes over a row still `running` whose lease is past.
    pub async fn claim(&self, job: &str, scheduled_at: i64, owner: &str, now: i64) -> Result<Claim, sqlx::Error> {
        let lease_until = now.saturating_add(LEASE_MS);
        let inserted = sqlx::query(
            "INSERT INTO job_runs (job, scheduled_at, owner, lease_until, started_at, outcome) \
             VALUES ($1, $2, $3, $4, $5, 'running') ON CONFLICT (job, scheduled_at) DO NOTHING",
        )
        .bind(job)
        .bind(scheduled_at)
        .bind(owner)
        .bind(lease_until)
        .bind(now)
        .execute(&mut *self.db.writer().await?)
        .await?;
        if inserted.rows_affected() == 1 {
            return Ok(Claim::Won { taken_over: false });
        }
        let taken = sqlx::query(
            "UPDATE job_runs SET owner = $1, lease_until = $2, started_at = $3, attempts = attempts + 1 \
             WHERE job = $4 AND scheduled_at = $5 AND outcome = 'running' AND lease_until <= $3",
        )
        .bind(owner)
        .bind(lease_until)
        .bind(now)
        .bind(job)
        .bind(scheduled_at)
        .execute(&mut *self.db.writer().await?)
        .await?;
        if taken.rows_affected() == 1 {
            return Ok(Claim::Won { taken_over: true });
        }
        Ok(match self.get(job, scheduled_at).await? {
            Some(run) if run.outcome == Outcome::Running => Claim::Running,
            _ => Claim::Ended,
        })
    }

    /// Extends `owner`'s lease of the run to `now +` [`LEASE_MS`]; false when it no longer
    /// owns a running row (taken over after its lease ran out).
    pub async fn renew(&self, job: &str, scheduled_at: i64, owner: &str, now: i64) -> Result<bool, sqlx::Error> {
        let renewed = sqlx::query(
            "UPDATE job_runs SET lease_until = $1 \
             WHERE job = $2 AND scheduled_at = $3 AND owner = $4 AND outcome = 'running'",
        )
        .bind(now.saturating_add(LEASE_MS))
        .bind(job)
        .bind(scheduled_at)
        .bind(owner)
        .execute(&mut *self.db.writer().await?)
        .await?;
        Ok(renewed.rows_affected() == 1)
    }

    /// Records the end of `owner`'s run at `now`: `Ok(items)` or `Err(why)`; false when it
    /// no longer owned the row.
    pub async fn finish(
        &self,
        job: &str,
        scheduled_at: i64,
        owner: &str,
        now: i64,
        result: &Result<u64, String>,
    ) -> Result<bool, sqlx::Error> {
        let (outcome, items, error) = match result {
            Ok(items) => (Outcome::Ok, i64::try_from(*items).unwrap_or(i64::MAX), String::new()),
            Err(error) => (Outcome::Failed, 0, error.chars().take(MAX_ERROR_CHARS).collect()),
        };
        let finished = sqlx::query(
            "UPDATE job_runs SET outcome = $1, finished_at = $2, lease_until = $2, items = $3, error = $4 \
             WHERE job = $5 AND scheduled_at = $6 AND owner = $7 AND outcome = 'running'",
        )
        .bind(outcome.as_str())
        .bind(now)
        .bind(items)
        .bind(error)
        .bind(job)
        .bind(scheduled_at)
        .bind(owner)
        .execute(&mut *self.db.writer().await?)
        .await?;
        Ok(finished.rows_affected() == 1)
    }

    /// Marks `abandoned` the runs of `job` scheduled before `scheduled_at` still `running`
    /// past their lease at `now` (their owner died; a later time is due); returns how many.
    pub async fn abandon_before(&self, job: &str, scheduled_at: i64, now: i64) -> Result<u64, sqlx::Error> {
        let abandoned = sqlx::query(
            "UPDATE job_runs SET outcome = 'abandoned', finished_at = $1 \
             WHERE job = $2 AND scheduled_at < $3 AND outcome = 'running' AND lease_until <= $1",
        )
        .bind(now)
        .bind(job)
        .bind(scheduled_at)
        .execute(&mut *self.db.writer().await?)
        .await?;
        Ok(abandoned.rows_affected())
    }

    /// The run of `job` at `scheduled_at`.
    pub async fn get(&self, job: &str, scheduled_at: i64) -> Result<Option<JobRun>, sqlx::Error> {
        let sql = format!("SELECT {COLUMNS} FROM job_runs WHERE job = $1 AND scheduled_at = $2");
        let row = sqlx::query(&sql).bind(job).bind(scheduled_at).fetch_optional(self.db.pool()).await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Whether `job` has any run recorded (the catch-up rule's "has run before").
    pub async fn has_any(&self, job: &str) -> Result<bool, sqlx::Error> {
        let row = sqlx::query("SELECT 1 AS one FROM job_runs WHERE job = $1 LIMIT 1")
            .bind(job)
            .fetch_optional(self.db.pool())
            .await?;
        Ok(row.is_some())
    }

    /// The latest ended run of `job` that finished (ok or failed), and the end of its
    /// latest successful one (ms since the epoch): what the job metrics show.
    pub async fn last_outcomes(&self, job: &str) -> Result<(Option<JobRun>, Option<i64>), sqlx::Error> {
        let sql = format!(
            "SELECT {COLUMNS} FROM job_runs WHERE job = $1 AND outcome IN ('ok', 'failed') \
             ORDER BY scheduled_at DESC LIMIT 1"
        );
        let last = sqlx::query(&sql).bind(job).fetch_optional(self.db.pool()).await?;
        let success = sqlx::query(
            "SELECT finished_at FROM job_runs WHERE job = $1 AND outcome = 'ok' ORDER BY scheduled_at DESC LIMIT 1",
        )
        .bind(job)
        .fetch_optional(self.db.pool())
        .await?;
        let success_at = success.map(|row| row.try_get::<Option<i64>, _>("finished_at")).transpose()?.flatten();
        Ok((last.as_ref().map(from_row).transpose()?, success_at))
    }

    /// One page of runs matching `query`, newest scheduled time first (then by job, last
    /// first).
    pub async fn list(&self, query: &JobRunQuery) -> Result<JobRunPage, sqlx::Error> {
        let (after_at, after_job) = query.after.clone().unwrap_or((0, String::new()));
        let sql = format!(
            "SELECT {COLUMNS} FROM job_runs WHERE ($1 = '' OR job = $1) \
             AND ($2 = 0 OR scheduled_at < $3 OR (scheduled_at = $3 AND job < $4)) \
             ORDER BY scheduled_at DESC, job DESC LIMIT $5"
        );
        let rows = sqlx::query(&sql)
            .bind(query.job.as_deref().unwrap_or_default())
            .bind(i64::from(query.after.is_some()))
            .bind(after_at)
            .bind(after_job)
            .bind(query.limit.saturating_add(1))
            .fetch_all(self.db.pool())
            .await?;
        let mut runs = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
        let more = i64::try_from(runs.len()).is_ok_and(|count| count > query.limit);
        runs.truncate(usize::try_from(query.limit).unwrap_or(usize::MAX));
        let next_page_token = match (more, runs.last()) {
            (true, Some(last)) => format!("{}:{}", last.scheduled_at, last.job),
            _ => String::new(),
        };
        Ok(JobRunPage { runs, next_page_token })
    }
}

fn from_row(row: &AnyRow) -> Result<JobRun, sqlx::Error> {
    Ok(JobRun {
        job: row.try_get("job")?,
        scheduled_at: row.try_get("scheduled_at")?,
        owner: row.try_get("owner")?,
        lease_until: row.try_get("lease_until")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        outcome: Outcome::parse(&row.try_get::<String, _>("outcome")?),
        items: row.try_get("items")?,
        error: row.try_get("error")?,
        attempts: row.try_get("attempts")?,
    })
}

/// Which runs `list` returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRunQuery {
    /// Only the runs of this job.
    pub job: Option<String>,
    /// Only runs after this `(scheduled_at, job)` in the listing order (the previous
    /// page's last).
    pub after: Option<(i64, String)>,
    /// Runs per page, 1..=500.
    pub limit: i64,
}

/// Validates a `ListJobRuns` request: `page_size` 0 (50) or 1..=500, `page_token` empty or
/// a previous page's token, `job` at most 100 characters.
pub fn query(violations: &mut Violations, job: &str, page_size: i32, page_token: &str) -> JobRunQuery {
    violations.check((0..=MAX_PAGE_SIZE).contains(&page_size), "page_size", "must be between 0 and 500");
    let after = parse_token(page_token);
    violations.check(page_token.is_empty() || after.is_some(), "page_token", "a token from the previous page");
    violations.check(job.chars().count() <= 100, "job", "at most 100 characters");
    let size = if page_size == 0 { DEFAULT_PAGE_SIZE } else { page_size.clamp(1, MAX_PAGE_SIZE) };
    JobRunQuery { job: (!job.is_empty()).then(|| job.to_owned()), after, limit: i64::from(size) }
}

/// `<scheduled_at>:<job>` -> its parts.
fn parse_token(token: &str) -> Option<(i64, String)> {
    let (at, job) = token.split_once(':')?;
    Some((at.parse().ok()?, job.to_owned()))
}

/// One page of runs and the token of the next page (empty on the last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRunPage {
    /// Newest scheduled time first.
    pub runs: Vec<JobRun>,
    /// `page_token` of the next page; empty on the last.
    pub next_page_token: String,
}

/// Answers a `ListJobRuns` request (every service's, docs/operations.md, "Background jobs")
/// once its caller was authorized as an admin: `job`, `page_size` and `page_token`
/// validated ([`query`]; `INVALID_ARGUMENT` listing every bad field, in `domain`), then one
/// page of runs and the next page's token. A storage failure is [`crate::error::storage`]'s
/// status.
pub async fn answer(
    runs: &JobRuns,
    domain: &str,
    job: &str,
    page_size: i32,
    page_token: &str,
) -> Result<(Vec<pb::JobRun>, String), tonic::Status> {
    let mut violations = Violations::default();
    let query = query(&mut violations, job, page_size, page_token);
    violations.finish(domain)?;
    let page = runs.list(&query).await.map_err(|error| {
        let message = error.to_string();
        crate::error::storage(domain, &crate::error::StorageCause::new(error), &message)
    })?;
    Ok((page.runs.iter().map(to_proto).collect(), page.next_page_token))
}

/// Stored run -> proto.
pub fn to_proto(run: &JobRun) -> pb::JobRun {
    pb::JobRun {
        job: run.job.clone(),
        scheduled_at: Some(to_timestamp(run.scheduled_at)),
        outcome: run.outcome.to_proto().into(),
        owner: run.owner.clone(),
        started_at: Some(to_timestamp(run.started_at)),
        finished_at: run.finished_at.map(to_timestamp),
        lease_until: Some(to_timestamp(run.lease_until)),
        items: run.items,
        error: run.error.clone(),
        attempts: i32::try_from(run.attempts).unwrap_or(i32::MAX),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::db::DbOptions;
    use crate::error::violated_fields;
    use crate::testing::TestDatabase;

    /// The table as the services' migrations create it.
    pub(crate) const TABLE: &str = "CREATE TABLE job_runs (job TEXT NOT NULL, scheduled_at BIGINT NOT NULL, \
        owner TEXT NOT NULL, lease_until BIGINT NOT NULL, started_at BIGINT NOT NULL, finished_at BIGINT, \
        outcome TEXT NOT NULL, items BIGINT NOT NULL DEFAULT 0, error TEXT NOT NULL DEFAULT '', \
        attempts BIGINT NOT NULL DEFAULT 1, PRIMARY KEY (job, scheduled_at))";

    /// A fresh database with the table.
    pub(crate) async fn database() -> (TestDatabase, Db) {
        let database = TestDatabase::new().await.expect("test database");
        let db = Db::connect(&database.url, &DbOptions::default()).await.expect("connected");
        sqlx::query(TABLE).execute(&mut *db.writer().await.expect("writer")).await.expect("table");
        (database, db)
    }

    #[tokio::test]
    async fn one_claim_wins_and_a_lapsed_lease_is_taken_over() -> Result<(), sqlx::Error> {
        let (_database, db) = database().await;
        let runs = JobRuns::new(db);
        assert_eq!(runs.claim("j", 100, "a", 1_000).await?, Claim::Won { taken_over: false });
        assert_eq!(runs.claim("j", 100, "b", 1_000).await?, Claim::Running);
        assert!(runs.renew("j", 100, "a", 30_000).await?);
        // Still within a's renewed lease.
        assert_eq!(runs.claim("j", 100, "b", 30_000 + LEASE_MS - 1).await?, Claim::Running);
        // a stopped renewing: past its lease, b takes the run over and a can no longer write.
        assert_eq!(runs.claim("j", 100, "b", 30_000 + LEASE_MS).await?, Claim::Won { taken_over: true });
        assert!(!runs.renew("j", 100, "a", 100_000).await?);
        assert!(!runs.finish("j", 100, "a", 100_000, &Ok(1)).await?);
        assert!(runs.finish("j", 100, "b", 100_000, &Ok(7)).await?);
        assert_eq!(runs.claim("j", 100, "c", 999_999).await?, Claim::Ended);
        let run = runs.get("j", 100).await?.expect("row");
        assert_eq!((run.owner.as_str(), run.outcome, run.items, run.attempts), ("b", Outcome::Ok, 7, 2));
        assert_eq!((run.started_at, run.finished_at), (30_000 + LEASE_MS, Some(100_000)));
        Ok(())
    }

    #[tokio::test]
    async fn failures_abandonment_and_metrics_sources() -> Result<(), sqlx::Error> {
        let (_database, db) = database().await;
        let runs = JobRuns::new(db);
        assert!(!runs.has_any("j").await?);
        runs.claim("j", 100, "a", 100).await?;
        runs.finish("j", 100, "a", 150, &Ok(0)).await?;
        runs.claim("j", 200, "a", 200).await?;
        runs.finish("j", 200, "a", 260, &Err("database gone".into())).await?;
        runs.claim("j", 300, "dead", 300).await?;
        assert_eq!(runs.abandon_before("j", 400, 300 + LEASE_MS - 1).await?, 0, "lease still valid");
        assert_eq!(runs.abandon_before("j", 400, 300 + LEASE_MS).await?, 1);
        assert!(runs.has_any("j").await?);
        let (last, success) = runs.last_outcomes("j").await?;
        let last = last.expect("a finished run");
        assert_eq!((last.scheduled_at, last.outcome, last.error.as_str()), (200, Outcome::Failed, "database gone"));
        assert_eq!(success, Some(150));
        assert_eq!(runs.get("j", 300).await?.expect("row").outcome, Outcome::Abandoned);
        Ok(())
    }

    #[tokio::test]
    async fn lists_newest_first_by_pages_and_by_job() -> Result<(), sqlx::Error> {
        let (_database, db) = database().await;
        let runs = JobRuns::new(db);
        for (job, at) in [("a", 1), ("b", 1), ("a", 2), ("b", 3), ("a", 3)] {
            runs.claim(job, at, "o", 0).await?;
        }
        let mut violations = Violations::default();
        let mut token = String::new();
        let mut seen = Vec::new();
        loop {
            let page = runs.list(&query(&mut violations, "", 2, &token)).await?;
            seen.extend(page.runs.iter().map(|run| (run.job.clone(), run.scheduled_at)));
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        let expected = [("b", 3), ("a", 3), ("a", 2), ("b", 1), ("a", 1)].map(|(job, at)| (job.to_owned(), at));
        assert_eq!(seen, expected);
        let only_a = runs.list(&query(&mut violations, "a", 0, "")).await?;
        assert_eq!(only_a.runs.iter().map(|run| run.scheduled_at).collect::<Vec<_>>(), [3, 2, 1]);
        assert!(violations.is_empty());
        query(&mut violations, &"x".repeat(101), 501, "nonsense");
        let status = violations.finish("economy.test").expect_err("invalid");
        assert_eq!(violated_fields(&status), ["page_size", "page_token", "job"]);
        Ok(())
    }
}
