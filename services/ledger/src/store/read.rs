//! Reads: balances, journal entries with their postings, holds.

use std::collections::HashMap;

use sqlx::{Any, Executor};

use super::{LedgerStore, Page};
use crate::domain::LedgerError;
use crate::domain::entry::{Bucket, Entry, Leg};
use crate::domain::hold::{Hold, HoldStatus};
use crate::domain::ids::{AccountId, Code, EntityId};

type EntryRow = (String, String, String, String, String, String, i64);
type PostingRow = (String, String, String, String, i64, Option<String>);
type HoldRow = (String, String, String, i64, i64, String, String, Option<i64>, i64, Option<i64>);

const HOLD_COLUMNS: &str =
    "id, account, asset_code, amount, settled_amount, status, reference, expires_at, created_at, resolved_at";

/// The storage error of a row that does not parse (`what` row `id`).
pub(super) fn corrupt(what: &str, id: &str) -> LedgerError {
    LedgerError::Storage(format!("corrupt {what} row {id}"))
}

/// A hold from its row in [`HOLD_COLUMNS`] order; `Storage` when the row does not parse.
pub(super) fn hold_from_row(row: HoldRow) -> Result<Hold, LedgerError> {
    let (id, account, asset, amount, settled_amount, status, reference, expires_at, created_at, resolved_at) = row;
    Ok(Hold {
        account: AccountId::from_key(&account).map_err(|_| corrupt("hold", &id))?,
        asset: Code::parse(&asset).map_err(|_| corrupt("hold", &id))?,
        status: HoldStatus::parse(&status).ok_or_else(|| corrupt("hold", &id))?,
        id: EntityId::parse(&id).map_err(|_| corrupt("hold", &id))?,
        amount,
        settled_amount,
        reference,
        expires_at,
        created_at,
        resolved_at,
    })
}

fn leg_from_row((_, account, asset, bucket, amount, hold_id): PostingRow) -> Result<Leg, LedgerError> {
    let bad = || corrupt("posting", &account);
    Ok(Leg {
        account: AccountId::from_key(&account).map_err(|_| bad())?,
        asset: Code::parse(&asset).map_err(|_| bad())?,
        bucket: Bucket::parse(&bucket).ok_or_else(bad)?,
        amount,
        hold_id: hold_id.map(|id| EntityId::parse(&id)).transpose().map_err(|_| bad())?,
    })
}

/// One hold, through any executor (pool or open transaction).
pub(super) async fn hold_in<'e, E: Executor<'e, Database = Any>>(
    executor: E,
    id: &str,
) -> Result<Option<Hold>, LedgerError> {
    let sql = format!("SELECT {HOLD_COLUMNS} FROM holds WHERE id = $1");
    let row: Option<HoldRow> = sqlx::query_as(&sql).bind(id).fetch_optional(executor).await?;
    row.map(hold_from_row).transpose()
}

/// The holds among `ids` whose rows parse, by id, in one read through any executor (none
/// for no ids).
pub(super) async fn holds_in<'e, E: Executor<'e, Database = Any>>(
    executor: E,
    ids: &[&str],
) -> Result<HashMap<String, Hold>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let sql = format!("SELECT {HOLD_COLUMNS} FROM holds WHERE id IN ({})", in_list(1, ids.len()));
    let mut query = sqlx::query_as::<_, HoldRow>(&sql);
    for id in ids {
        query = query.bind(*id);
    }
    let rows = query.fetch_all(executor).await?;
    Ok(rows.into_iter().filter_map(|row| hold_from_row(row).ok()).map(|hold| (hold.id.to_string(), hold)).collect())
}

/// The placeholders of an IN list of `count` values numbered from `$first`: `$1, $2`.
fn in_list(first: usize, count: usize) -> String {
    (first..first + count).map(|index| format!("${index}")).collect::<Vec<_>>().join(", ")
}

impl LedgerStore {
    /// `(available, frozen)` of one balance; zeros when never held.
    pub async fn balance(&self, account: &AccountId, asset: &str) -> Result<(i64, i64), LedgerError> {
        let row: Option<(i64, i64)> =
            sqlx::query_as("SELECT available, frozen FROM balances WHERE account = $1 AND asset_code = $2")
                .bind(account.key())
                .bind(asset)
                .fetch_optional(self.db.pool())
                .await?;
        Ok(row.unwrap_or((0, 0)))
    }

    /// `(asset, available, frozen)` of every non-zero balance of `account`, by asset.
    pub async fn balances(&self, account: &AccountId) -> Result<Vec<(String, i64, i64)>, LedgerError> {
        Ok(sqlx::query_as(
            "SELECT asset_code, available, frozen FROM balances \
             WHERE account = $1 AND (available <> 0 OR frozen <> 0) ORDER BY asset_code",
        )
        .bind(account.key())
        .fetch_all(self.db.pool())
        .await?)
    }

    /// One journal entry with its postings (`TRANSACTION_NOT_FOUND`).
    pub async fn entry(&self, id: &str) -> Result<Entry, LedgerError> {
        let mut entries = self.entries(&[id.to_owned()]).await?;
        entries.pop().ok_or_else(|| LedgerError::TransactionNotFound(id.to_owned()))
    }

    /// Entries touching `account` (optionally only postings of `asset`), newest first.
    pub async fn entries_for(
        &self,
        account: &AccountId,
        asset: Option<&str>,
        page: &Page,
    ) -> Result<Vec<Entry>, LedgerError> {
        let ids: Vec<(String,)> = sqlx::query_as(
            "SELECT DISTINCT entry_id FROM postings \
             WHERE account = $1 AND ($2 = '' OR asset_code = $2) AND ($3 = '' OR entry_id < $3) \
             ORDER BY entry_id DESC LIMIT $4",
        )
        .bind(account.key())
        .bind(asset.unwrap_or_default())
        .bind(page.before.clone().unwrap_or_default())
        .bind(page.limit)
        .fetch_all(self.db.pool())
        .await?;
        let ids: Vec<String> = ids.into_iter().map(|(id,)| id).collect();
        self.entries(&ids).await
    }

    /// The entries with these ids (with their postings), newest first.
    async fn entries(&self, ids: &[String]) -> Result<Vec<Entry>, LedgerError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let list = in_list(1, ids.len());
        let entries_sql = format!(
            "SELECT id, idempotency_key, business_type, correlation_id, memo, actor, created_at \
             FROM journal_entries WHERE id IN ({list}) ORDER BY id DESC"
        );
        let postings_sql = format!(
            "SELECT entry_id, account, asset_code, bucket, amount, hold_id FROM postings \
             WHERE entry_id IN ({list}) ORDER BY entry_id, seq"
        );
        let mut entries_query = sqlx::query_as::<_, EntryRow>(&entries_sql);
        let mut postings_query = sqlx::query_as::<_, PostingRow>(&postings_sql);
        for id in ids {
            entries_query = entries_query.bind(id);
            postings_query = postings_query.bind(id);
        }
        let rows = entries_query.fetch_all(self.db.pool()).await?;
        let postings = postings_query.fetch_all(self.db.pool()).await?;
        rows.into_iter()
            .map(|(id, idempotency_key, business_type, correlation_id, memo, actor, created_at)| {
                let legs = postings
                    .iter()
                    .filter(|posting| posting.0 == id)
                    .cloned()
                    .map(leg_from_row)
                    .collect::<Result<_, _>>()?;
                Ok(Entry { id, idempotency_key, business_type, correlation_id, memo, actor, created_at, legs })
            })
            .collect()
    }

    /// One hold.
    pub async fn hold(&self, id: &str) -> Result<Option<Hold>, LedgerError> {
        hold_in(self.db.pool(), id).await
    }

    /// Holds of `account` (optionally in one status), newest first.
    pub async fn holds_for(
        &self,
        account: &AccountId,
        status: Option<HoldStatus>,
        page: &Page,
    ) -> Result<Vec<Hold>, LedgerError> {
        let sql = format!(
            "SELECT {HOLD_COLUMNS} FROM holds WHERE account = $1 AND ($2 = '' OR status = $2) AND ($3 = '' OR id < $3) \
             ORDER BY id DESC LIMIT $4"
        );
        let rows: Vec<HoldRow> = sqlx::query_as(&sql)
            .bind(account.key())
            .bind(status.map(HoldStatus::as_str).unwrap_or_default())
            .bind(page.before.clone().unwrap_or_default())
            .bind(page.limit)
            .fetch_all(self.db.pool())
            .await?;
        rows.into_iter().map(hold_from_row).collect()
    }

    /// Ids of open holds whose expiry is at or before `now`, oldest expiry first.
    pub async fn expired_holds(&self, now: i64, limit: i64) -> Result<Vec<String>, LedgerError> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT id FROM holds WHERE status = 'open' AND expires_at IS NOT NULL AND expires_at <= $1 \
             ORDER BY expires_at LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }
}
