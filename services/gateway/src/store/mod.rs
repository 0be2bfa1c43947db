//! The gateway's idempotency records (its own schema, `migrations/gateway`), keyed
//! `(user_id, idempotency_key)`. The database decides races: the first INSERT wins, the
//! others read the winner's record. A `processing` record is a lease: past
//! `lease_expires_at` its owner is provably gone (every forward is bounded by the upstream
//! timeout), and a retry with the same fingerprint takes it over with one conditional
//! UPDATE, keeping the business event. The two writes of every request (claim,
//! completion) are coalesced across requests (`bulk`).

pub mod admin;

mod bulk;

use economy_kit::batch::Coalescer;
use economy_kit::db::{Db, DbOptions, Migrations};
use sqlx::migrate::Migrator;

use bulk::{Completion, NewRow};

/// Most records one coalesced statement writes: claims and completions queued meanwhile
/// share one statement, so the records cost one write call per batch, not per request.
const MAX_ROWS_PER_STATEMENT: usize = 128;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/gateway/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/gateway/postgres");
/// Both sets, for `economy migrate` (docs/operations.md, "Migrations").
pub static MIGRATIONS: Migrations = Migrations { sqlite: &SQLITE_MIGRATIONS, postgres: &POSTGRES_MIGRATIONS };

/// A request about to be processed.
#[derive(Debug, Clone)]
pub struct NewRecord<'a> {
    /// The caller.
    pub user_id: i64,
    /// The `idempotency-key` header.
    pub key: &'a str,
    /// `MODULE_ACTION_OBJECT`.
    pub canonical_operation: &'a str,
    /// gRPC path.
    pub method: &'a str,
    /// Request fingerprint.
    pub fingerprint: &'a str,
    /// This request's id.
    pub request_id: &'a str,
    /// Now, ms since the epoch.
    pub now: i64,
    /// How long the record is kept, ms.
    pub retention_ms: i64,
    /// How long the claim is valid: the longest a forward can take, ms.
    pub lease_ms: i64,
}

impl NewRecord<'_> {
    fn lease_expires_at(&self) -> i64 {
        self.now.saturating_add(self.lease_ms)
    }
}

/// A stored outcome, replayed byte-for-byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    /// gRPC status code (0 = OK).
    pub code: i32,
    /// Status message (empty on OK).
    pub message: String,
    /// Encoded response message (OK only; `None` when truncated).
    pub body: Option<Vec<u8>>,
    /// Encoded `google.rpc.Status` details (errors only).
    pub details: Option<Vec<u8>>,
    /// Size of the snapshot before truncation, bytes.
    pub bytes: i64,
    /// True when the snapshot exceeded the limit and only the status was kept.
    pub truncated: bool,
}

/// The earlier attempt a retry took over (docs/idempotency.md, "Leases and takeover").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resumed {
    /// It failed (e.g. its upstream was unavailable).
    Failed,
    /// It was still `processing` past its lease: its gateway died or lost its database.
    Abandoned,
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// Process it: the first time, or a retry of an attempt that failed or whose lease
    /// expired, reusing its business event (`resumed`).
    Started {
        /// Business event id to forward.
        business_event_id: String,
        /// The earlier attempt of this key that was taken over, if any.
        resumed: Option<Resumed>,
    },
    /// Finished before with the same fingerprint: replay.
    Replay {
        /// The request that produced the response.
        request_id: String,
        /// Its business event.
        business_event_id: String,
        /// The stored outcome.
        response: StoredResponse,
    },
    /// Same key, other fingerprint.
    Conflict {
        /// The original request.
        request_id: String,
    },
    /// Same key, still processing.
    Processing {
        /// The request in flight.
        request_id: String,
    },
}

/// One idempotency record as stored. Instants are ms since the epoch.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Record {
    /// The caller.
    pub user_id: i64,
    /// The normalized `idempotency-key`.
    pub idempotency_key: String,
    /// `MODULE_ACTION_OBJECT`.
    pub canonical_operation: String,
    /// gRPC path.
    pub method: String,
    /// Request fingerprint (SHA-256 hex).
    pub fingerprint: String,
    /// `processing`, `completed` or `failed`.
    pub status: String,
    /// The attempt that owns (or owned) the record.
    pub request_id: String,
    /// The business event forwarded to the service.
    pub business_event_id: String,
    /// gRPC code of the stored outcome (completed only).
    pub response_code: Option<i64>,
    /// Status message of the stored outcome.
    pub response_message: Option<String>,
    /// Encoded response (OK, not truncated).
    pub response_body: Option<Vec<u8>>,
    /// Encoded status details (errors).
    pub response_details: Option<Vec<u8>>,
    /// Snapshot size before truncation, bytes.
    pub response_bytes: i64,
    /// 1 when only the status was kept.
    pub response_truncated: i64,
    /// Why the record failed (`UNAVAILABLE`, `PROCESSING_TIMEOUT`, `RELEASED`, …).
    pub failure_reason: Option<String>,
    /// First claim.
    pub created_at: i64,
    /// Last change.
    pub updated_at: i64,
    /// When the outcome was stored.
    pub completed_at: Option<i64>,
    /// Until when the owner of a `processing` record may still be working.
    pub lease_expires_at: i64,
    /// When the record is deleted.
    pub expires_at: i64,
}

impl Record {
    fn stored_response(self) -> StoredResponse {
        StoredResponse {
            code: self.response_code.and_then(|code| i32::try_from(code).ok()).unwrap_or(2),
            message: self.response_message.unwrap_or_default(),
            body: self.response_body,
            details: self.response_details,
            bytes: self.response_bytes,
            truncated: self.response_truncated != 0,
        }
    }
}

const RECORD_COLUMNS: &str = "user_id, idempotency_key, canonical_operation, method, fingerprint, status, request_id, \
     business_event_id, response_code, response_message, response_body, response_details, response_bytes, \
     response_truncated, failure_reason, created_at, updated_at, completed_at, lease_expires_at, expires_at";

/// Idempotency records.
#[derive(Debug, Clone)]
pub struct IdempotencyStore {
    db: Db,
    inserts: Coalescer<NewRow, Result<bool, sqlx::Error>>,
    completions: Coalescer<Completion, Result<bool, sqlx::Error>>,
}

impl IdempotencyStore {
    /// Connects and migrates.
    pub async fn open(url: &str, options: &DbOptions) -> anyhow::Result<Self> {
        let db = Db::connect(url, options).await?;
        db.migrate(&SQLITE_MIGRATIONS, &POSTGRES_MIGRATIONS).await?;
        let writer = db.clone();
        let inserts = Coalescer::new(MAX_ROWS_PER_STATEMENT, move |rows| bulk::insert_all(writer.clone(), rows));
        let writer = db.clone();
        let completions = Coalescer::new(MAX_ROWS_PER_STATEMENT, move |rows| bulk::complete_all(writer.clone(), rows));
        Ok(Self { db, inserts, completions })
    }

    /// The database (tests age records on purpose).
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Claims the key for `record`, or says why not: a failed attempt, or a `processing`
    /// one past its lease, is taken over (`Begin::Started { resumed: true }`).
    pub async fn begin(&self, record: &NewRecord<'_>) -> Result<Begin, sqlx::Error> {
        for _ in 0..3 {
            let business_event_id = uuid::Uuid::now_v7().to_string();
            if self.insert(record, &business_event_id).await? {
                return Ok(Begin::Started { business_event_id, resumed: None });
            }
            let Some(found) = self.get(record.user_id, record.key).await? else { continue };
            if found.expires_at <= record.now {
                self.delete_if_expired(record.user_id, record.key, record.now).await?;
                continue;
            }
            if found.fingerprint != record.fingerprint {
                return Ok(Begin::Conflict { request_id: found.request_id });
            }
            match found.status.as_str() {
                "completed" => {
                    let (request_id, business_event_id) = (found.request_id.clone(), found.business_event_id.clone());
                    return Ok(Begin::Replay { request_id, business_event_id, response: found.stored_response() });
                }
                "processing" if found.lease_expires_at > record.now => {
                    return Ok(Begin::Processing { request_id: found.request_id });
                }
                status if self.take_over(record, &found).await? => {
                    let resumed = if status == "processing" { Resumed::Abandoned } else { Resumed::Failed };
                    return Ok(Begin::Started { business_event_id: found.business_event_id, resumed: Some(resumed) });
                }
                _ => continue,
            }
        }
        Err(sqlx::Error::Protocol("idempotency record is contended".into()))
    }

    /// False when the key is taken (by a live, failed or expired record).
    async fn insert(&self, record: &NewRecord<'_>, business_event_id: &str) -> Result<bool, sqlx::Error> {
        let row = NewRow {
            user_id: record.user_id,
            key: record.key.to_owned(),
            canonical_operation: record.canonical_operation.to_owned(),
            method: record.method.to_owned(),
            fingerprint: record.fingerprint.to_owned(),
            business_event_id: business_event_id.to_owned(),
            request_id: record.request_id.to_owned(),
            now: record.now,
            lease_expires_at: record.lease_expires_at(),
            expires_at: record.now.saturating_add(record.retention_ms),
        };
        self.inserts.submit(row).await.unwrap_or(Err(sqlx::Error::PoolClosed))
    }

    /// The record of `(user_id, key)`, if any.
    pub async fn get(&self, user_id: i64, key: &str) -> Result<Option<Record>, sqlx::Error> {
        let sql =
            format!("SELECT {RECORD_COLUMNS} FROM idempotency_records WHERE user_id = $1 AND idempotency_key = $2");
        sqlx::query_as(&sql).bind(user_id).bind(key).fetch_optional(self.db.pool()).await
    }

    async fn delete_if_expired(&self, user_id: i64, key: &str, now: i64) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM idempotency_records WHERE user_id = $1 AND idempotency_key = $2 AND expires_at <= $3")
            .bind(user_id)
            .bind(key)
            .bind(now)
            .execute(&mut *self.db.writer().await?)
            .await
            .map(|_| ())
    }

    /// `found` (failed, or processing past its lease) -> `processing` under `record`'s
    /// attempt and a new lease: a compare-and-set on the attempt it replaces, so of several
    /// retries (on several replicas) exactly one wins.
    async fn take_over(&self, record: &NewRecord<'_>, found: &Record) -> Result<bool, sqlx::Error> {
        let updated = sqlx::query(
            "UPDATE idempotency_records SET status = 'processing', request_id = $1, updated_at = $2, \
             lease_expires_at = $3, failure_reason = NULL \
             WHERE user_id = $4 AND idempotency_key = $5 AND request_id = $6 AND fingerprint = $7 \
             AND (status = 'failed' OR (status = 'processing' AND lease_expires_at <= $2))",
        )
        .bind(record.request_id)
        .bind(record.now)
        .bind(record.lease_expires_at())
        .bind(record.user_id)
        .bind(record.key)
        .bind(&found.request_id)
        .bind(record.fingerprint)
        .execute(&mut *self.db.writer().await?)
        .await?;
        Ok(updated.rows_affected() == 1)
    }

    /// Stores the outcome of the attempt `request_id`; false if the record moved on
    /// (its lease expired and a retry took it over).
    pub async fn complete(
        &self,
        user_id: i64,
        key: &str,
        request_id: &str,
        response: StoredResponse,
        now: i64,
    ) -> Result<bool, sqlx::Error> {
        let completion = Completion { user_id, key: key.to_owned(), request_id: request_id.to_owned(), response, now };
        self.completions.submit(completion).await.unwrap_or(Err(sqlx::Error::PoolClosed))
    }

    /// Marks the attempt `request_id` failed (`reason`): the key may be retried.
    pub async fn fail(
        &self,
        user_id: i64,
        key: &str,
        request_id: &str,
        reason: &str,
        now: i64,
    ) -> Result<bool, sqlx::Error> {
        let updated = sqlx::query(
            "UPDATE idempotency_records SET status = 'failed', failure_reason = $1, updated_at = $2 \
             WHERE user_id = $3 AND idempotency_key = $4 AND request_id = $5 AND status = 'processing'",
        )
        .bind(reason)
        .bind(now)
        .bind(user_id)
        .bind(key)
        .bind(request_id)
        .execute(&mut *self.db.writer().await?)
        .await?;
        Ok(updated.rows_affected() == 1)
    }

    /// `processing` records last touched before `cutoff` and past their lease become
    /// `failed` / `PROCESSING_TIMEOUT` (a live lease is never failed, whatever the cutoff);
    /// returns how many.
    pub async fn time_out_processing(&self, cutoff: i64, now: i64) -> Result<u64, sqlx::Error> {
        let updated = sqlx::query(
            "UPDATE idempotency_records SET status = 'failed', failure_reason = 'PROCESSING_TIMEOUT', updated_at = $1 \
             WHERE status = 'processing' AND updated_at < $2 AND lease_expires_at <= $1",
        )
        .bind(now)
        .bind(cutoff)
        .execute(&mut *self.db.writer().await?)
        .await?;
        Ok(updated.rows_affected())
    }

    /// Deletes records past their expiry; returns how many.
    pub async fn delete_expired(&self, now: i64) -> Result<u64, sqlx::Error> {
        let deleted = sqlx::query("DELETE FROM idempotency_records WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut *self.db.writer().await?)
            .await?;
        Ok(deleted.rows_affected())
    }

    /// Rows kept.
    pub async fn count(&self) -> Result<i64, sqlx::Error> {
        let (count,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM idempotency_records").fetch_one(self.db.pool()).await?;
        Ok(count)
    }

    /// Records still `processing` whose lease ended at or before `now` (ms since the epoch):
    /// abandoned claims no retry has taken over yet (on the `processing` partial index).
    pub async fn leases_expired(&self, now: i64) -> Result<i64, sqlx::Error> {
        let (count,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM idempotency_records WHERE status = 'processing' AND lease_expires_at <= $1",
        )
        .bind(now)
        .fetch_one(self.db.pool())
        .await?;
        Ok(count)
    }

    /// `(status, failure_reason)` of a record, for tests and operators.
    pub async fn status_of(&self, user_id: i64, key: &str) -> Result<Option<(String, Option<String>)>, sqlx::Error> {
        Ok(self.get(user_id, key).await?.map(|record| (record.status, record.failure_reason)))
    }
}
