-- Runs of the scheduled jobs (docs/operations.md, "Background jobs"): one row per job and
-- scheduled instant (ms since the epoch). The replica whose insert of the row wins runs
-- the job under a lease (owner, lease_until) it renews while working; a row still
-- `running` past its lease (its owner died) is taken over by a conditional UPDATE.
-- Finished rows keep their start, end, outcome (ok | failed | abandoned), items and error
-- for ListJobRuns and the job metrics (economy_kit::job_runs).

CREATE TABLE job_runs (
    job TEXT NOT NULL,
    scheduled_at BIGINT NOT NULL,
    owner TEXT NOT NULL,
    lease_until BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    outcome TEXT NOT NULL,
    items BIGINT NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT '',
    attempts BIGINT NOT NULL DEFAULT 1,
    PRIMARY KEY (job, scheduled_at)
);

-- ListJobRuns across jobs: newest scheduled time first.
CREATE INDEX job_runs_newest ON job_runs (scheduled_at, job);
