//! The two record writes of every request, coalesced across requests
//! (`economy_kit::batch`): every claim queued meanwhile goes into one multi-row
//! `INSERT … ON CONFLICT DO NOTHING`, every completion into one multi-row `UPDATE … FROM
//! (VALUES …)`. Each statement is atomic alone, so no transaction is needed, and
//! `RETURNING request_id` tells each request whether its row was written. Same SQL on
//! SQLite (>= 3.35) and PostgreSQL but for its placeholders (`Backend::value_tuples`).

use economy_kit::db::Db;
use sqlx::Any;
use sqlx::any::AnyArguments;
use sqlx::query::QueryScalar;

use super::StoredResponse;

/// A `processing` record to claim.
#[derive(Debug)]
pub(super) struct NewRow {
    pub user_id: i64,
    pub key: String,
    pub canonical_operation: String,
    pub method: String,
    pub fingerprint: String,
    pub business_event_id: String,
    pub request_id: String,
    pub now: i64,
    pub lease_expires_at: i64,
    pub expires_at: i64,
}

/// `processing` -> `completed` for the attempt `request_id`.
#[derive(Debug)]
pub(super) struct Completion {
    pub user_id: i64,
    pub key: String,
    pub request_id: String,
    pub response: StoredResponse,
    pub now: i64,
}

/// Claims every row; per row, true when it was inserted (false: the key was taken).
pub(super) async fn insert_all(db: Db, rows: Vec<NewRow>) -> Vec<Result<bool, sqlx::Error>> {
    let values = db.backend().value_tuples(rows.len(), 12);
    let sql = format!(
        "INSERT INTO idempotency_records (user_id, idempotency_key, canonical_operation, method, fingerprint, status, \
         business_event_id, request_id, created_at, updated_at, lease_expires_at, expires_at) VALUES {values} \
         ON CONFLICT (user_id, idempotency_key) DO NOTHING RETURNING request_id"
    );
    let mut query = sqlx::query_scalar::<_, String>(&sql);
    for row in &rows {
        query = query
            .bind(row.user_id)
            .bind(&row.key)
            .bind(&row.canonical_operation)
            .bind(&row.method)
            .bind(&row.fingerprint)
            .bind("processing")
            .bind(&row.business_event_id)
            .bind(&row.request_id)
            .bind(row.now)
            .bind(row.now)
            .bind(row.lease_expires_at)
            .bind(row.expires_at);
    }
    let written = fetch_written(&db, query).await;
    answers(written, rows.iter().map(|row| row.request_id.as_str()))
}

/// Completes every row; per row, false when its record moved on (timed out and retried).
pub(super) async fn complete_all(db: Db, rows: Vec<Completion>) -> Vec<Result<bool, sqlx::Error>> {
    let values = db.backend().value_tuples(rows.len(), 10);
    let sql = format!(
        "UPDATE idempotency_records SET status = 'completed', response_code = v.column4, \
         response_message = v.column5, response_body = v.column6, response_details = v.column7, \
         response_bytes = v.column8, response_truncated = v.column9, updated_at = v.column10, \
         completed_at = v.column10 \
         FROM (VALUES {values}) AS v \
         WHERE idempotency_records.user_id = v.column1 AND idempotency_records.idempotency_key = v.column2 \
         AND idempotency_records.request_id = v.column3 AND idempotency_records.status = 'processing' \
         RETURNING request_id"
    );
    let mut query = sqlx::query_scalar::<_, String>(&sql);
    for row in &rows {
        let response = &row.response;
        query = query
            .bind(row.user_id)
            .bind(&row.key)
            .bind(&row.request_id)
            .bind(i64::from(response.code))
            .bind(&response.message)
            .bind(response.body.as_deref())
            .bind(response.details.as_deref())
            .bind(response.bytes)
            .bind(i64::from(response.truncated))
            .bind(row.now);
    }
    let written = fetch_written(&db, query).await;
    answers(written, rows.iter().map(|row| row.request_id.as_str()))
}

/// Runs a coalesced statement on the writer connection; the request ids it wrote.
async fn fetch_written<'q>(
    db: &Db,
    query: QueryScalar<'q, Any, String, AnyArguments<'q>>,
) -> Result<Vec<String>, sqlx::Error> {
    let mut writer = db.writer().await?;
    let written = query.fetch_all(&mut *writer).await;
    writer.finish(written)
}

/// Per request id: whether the statement returned it, or the statement's error.
fn answers<'a>(
    written: Result<Vec<String>, sqlx::Error>,
    request_ids: impl Iterator<Item = &'a str>,
) -> Vec<Result<bool, sqlx::Error>> {
    match written {
        Ok(written) => request_ids.map(|id| Ok(written.iter().any(|done| done == id))).collect(),
        Err(error) => {
            tracing::warn!(error = %error, "coalesced idempotency record write failed");
            request_ids
                .map(|_| Err(sqlx::Error::Protocol(format!("idempotency record write failed: {error}"))))
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_follow_the_returned_ids() {
        let answered = answers(Ok(vec!["b".into()]), ["a", "b"].into_iter());
        let answered: Vec<Option<bool>> = answered.into_iter().map(Result::ok).collect();
        assert_eq!(answered, vec![Some(false), Some(true)]);
        let failed = answers(Err(sqlx::Error::PoolClosed), ["a"].into_iter());
        assert!(failed[0].is_err());
    }
}
