//! The gateway's idempotency records (its own schema, `migrations/gateway`), keyed
//! `(user_id, idempotency_key)`. The database decides races: the first INSERT wins, the
//! others read the winner's record (DESIGN.md §3 Gateway). The two writes of every
//! request (claim, completion) are coalesced across requests (`bulk`).

mod bulk;

use economy_kit::batch::Coalescer;
use economy_kit::db::{Db, DbOptions};
use sqlx::migrate::Migrator;

use bulk::{Completion, NewRow};

/// Most records one coalesced statement writes (BENCHMARKS.md).
const MAX_ROWS_PER_STATEMENT: usize = 128;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/gateway/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/gateway/postgres");

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

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// Process it (first time, or retry of a failed attempt reusing its business event).
    Started {
        /// Business event id to forward.
        business_event_id: String,
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

type RecordRow =
    (String, String, String, String, Option<i64>, Option<String>, Option<Vec<u8>>, Option<Vec<u8>>, i64, i64, i64);

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

    /// Claims the key for `record`, or says why not.
    pub async fn begin(&self, record: &NewRecord<'_>) -> Result<Begin, sqlx::Error> {
        for _ in 0..3 {
            let business_event_id = uuid::Uuid::now_v7().to_string();
            if self.insert(record, &business_event_id).await? {
                return Ok(Begin::Started { business_event_id });
            }
            let Some(row) = self.fetch(record.user_id, record.key).await? else { continue };
            let (fingerprint, status, request_id, event, code, message, body, details, bytes, truncated, expires_at) =
                row;
            if expires_at <= record.now {
                self.delete_if_expired(record.user_id, record.key, record.now).await?;
                continue;
            }
            if fingerprint != record.fingerprint {
                return Ok(Begin::Conflict { request_id });
            }
            match status.as_str() {
                "completed" => {
                    let response = StoredResponse {
                        code: i32::try_from(code.unwrap_or_default()).unwrap_or(2),
                        message: message.unwrap_or_default(),
                        body,
                        details,
                        bytes,
                        truncated: truncated != 0,
                    };
                    return Ok(Begin::Replay { request_id, business_event_id: event, response });
                }
                "failed" if self.restart(record).await? => return Ok(Begin::Started { business_event_id: event }),
                "failed" => continue,
                _ => return Ok(Begin::Processing { request_id }),
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
            expires_at: record.now.saturating_add(record.retention_ms),
        };
        self.inserts.submit(row).await.unwrap_or(Err(sqlx::Error::PoolClosed))
    }

    async fn fetch(&self, user_id: i64, key: &str) -> Result<Option<RecordRow>, sqlx::Error> {
        sqlx::query_as(
            "SELECT fingerprint, status, request_id, business_event_id, response_code, response_message, response_body, \
             response_details, response_bytes, response_truncated, expires_at \
             FROM idempotency_records WHERE user_id = $1 AND idempotency_key = $2",
        )
        .bind(user_id)
        .bind(key)
        .fetch_optional(self.db.pool())
        .await
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

    /// `failed` -> `processing` for a retry (compare-and-set).
    async fn restart(&self, record: &NewRecord<'_>) -> Result<bool, sqlx::Error> {
        let updated = sqlx::query(
            "UPDATE idempotency_records SET status = 'processing', request_id = $1, updated_at = $2, failure_reason = NULL \
             WHERE user_id = $3 AND idempotency_key = $4 AND status = 'failed' AND fingerprint = $5",
        )
        .bind(record.request_id)
        .bind(record.now)
        .bind(record.user_id)
        .bind(record.key)
        .bind(record.fingerprint)
        .execute(&mut *self.db.writer().await?)
        .await?;
        Ok(updated.rows_affected() == 1)
    }

    /// Stores the outcome of the attempt `request_id`; false if the record moved on
    /// (timed out and retried by someone else).
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

    /// `processing` records last touched before `cutoff` become `failed` /
    /// `PROCESSING_TIMEOUT`; returns how many.
    pub async fn time_out_processing(&self, cutoff: i64, now: i64) -> Result<u64, sqlx::Error> {
        let updated = sqlx::query(
            "UPDATE idempotency_records SET status = 'failed', failure_reason = 'PROCESSING_TIMEOUT', updated_at = $1 \
             WHERE status = 'processing' AND updated_at < $2",
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

    /// `(status, failure_reason)` of a record, for tests and operators.
    pub async fn status_of(&self, user_id: i64, key: &str) -> Result<Option<(String, Option<String>)>, sqlx::Error> {
        sqlx::query_as(
            "SELECT status, failure_reason FROM idempotency_records WHERE user_id = $1 AND idempotency_key = $2",
        )
        .bind(user_id)
        .bind(key)
        .fetch_optional(self.db.pool())
        .await
    }
}
