//! Reads: balances, journal entries with their postings, holds.

use std::collections::HashMap;

use economy_kit::db::params::{Params, list};
use sqlx::{Any, Executor};

use super::{HoldFilter, LedgerStore, Page};
use crate::domain::LedgerError;
use crate::domain::entry::{BalanceAfter, Bucket, Entry, Leg};
use crate::domain::hold::{Hold, HoldStatus};
use crate::domain::ids::{AccountId, Code, EntityId};

/// A `journal_entries` row as read (without its fingerprint).
#[derive(sqlx::FromRow)]
struct EntryRow {
    id: String,
    idempotency_key: String,
    business_type: String,
    correlation_id: String,
    memo: String,
    actor: String,
    created_at: i64,
}

/// A `postings` row as read (without its seq: rows come in seq order).
#[derive(Clone, sqlx::FromRow)]
struct PostingRow {
    entry_id: String,
    account: String,
    asset_code: String,
    bucket: String,
    amount: i64,
    hold_id: Option<String>,
    available_after: i64,
    frozen_after: i64,
    balance_seq: i64,
}

/// A `holds` row ([`HOLD_COLUMNS`]); instants in ms since the epoch.
#[derive(sqlx::FromRow)]
pub(super) struct HoldRow {
    pub(super) id: String,
    pub(super) account: String,
    pub(super) asset_code: String,
    pub(super) amount: i64,
    pub(super) settled_amount: i64,
    pub(super) status: String,
    pub(super) reference: String,
    pub(super) expires_at: Option<i64>,
    pub(super) created_at: i64,
    pub(super) resolved_at: Option<i64>,
}

const HOLD_COLUMNS: &str =
    "id, account, asset_code, amount, settled_amount, status, reference, expires_at, created_at, resolved_at";

/// The storage error of a row that does not parse (`what` row `id`).
pub(super) fn corrupt(what: &str, id: &str) -> LedgerError {
    LedgerError::Storage(format!("corrupt {what} row {id}").into())
}

/// A hold from its row; `Storage` when the row does not parse.
pub(super) fn hold_from_row(row: HoldRow) -> Result<Hold, LedgerError> {
    let id = &row.id;
    Ok(Hold {
        account: AccountId::from_key(&row.account).map_err(|_| corrupt("hold", id))?,
        asset: Code::parse(&row.asset_code).map_err(|_| corrupt("hold", id))?,
        status: HoldStatus::parse(&row.status).ok_or_else(|| corrupt("hold", id))?,
        id: EntityId::parse(id).map_err(|_| corrupt("hold", id))?,
        amount: row.amount,
        settled_amount: row.settled_amount,
        reference: row.reference,
        expires_at: row.expires_at,
        created_at: row.created_at,
        resolved_at: row.resolved_at,
    })
}

fn leg_from_row(row: &PostingRow) -> Result<Leg, LedgerError> {
    let bad = || corrupt("posting", &row.account);
    Ok(Leg {
        account: AccountId::from_key(&row.account).map_err(|_| bad())?,
        asset: Code::parse(&row.asset_code).map_err(|_| bad())?,
        bucket: Bucket::parse(&row.bucket).ok_or_else(bad)?,
        amount: row.amount,
        hold_id: row.hold_id.as_deref().map(EntityId::parse).transpose().map_err(|_| bad())?,
    })
}

/// The legs of one entry's posting rows, and the balances after the entry they record
/// (the first posting of each balance speaks for the entry: all of them record the same).
fn legs_and_balances(rows: &[&PostingRow]) -> Result<(Vec<Leg>, Vec<BalanceAfter>), LedgerError> {
    let mut legs = Vec::with_capacity(rows.len());
    let mut balances: Vec<BalanceAfter> = Vec::new();
    for row in rows {
        let leg = leg_from_row(row)?;
        if !balances.iter().any(|after| after.account == leg.account && after.asset == leg.asset) {
            balances.push(BalanceAfter {
                account: leg.account.clone(),
                asset: leg.asset.clone(),
                available: row.available_after,
                frozen: row.frozen_after,
                seq: row.balance_seq,
            });
        }
        legs.push(leg);
    }
    Ok((legs, balances))
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
    let mut params = Params::numbered();
    let sql =
        format!("SELECT {HOLD_COLUMNS} FROM holds WHERE id IN ({})", list(&params.push_each(ids.iter().copied())?));
    let rows: Vec<HoldRow> = sqlx::query_as_with(&sql, params.into_arguments()).fetch_all(executor).await?;
    Ok(rows.into_iter().filter_map(|row| hold_from_row(row).ok()).map(|hold| (hold.id.to_string(), hold)).collect())
}

/// `ids` bound as the parameters of an `IN` list; the list's placeholders.
fn id_list<'q>(ids: &'q [String]) -> Result<(String, Params<'q>), sqlx::Error> {
    let mut params = Params::numbered();
    let placeholders = params.push_each(ids.iter().map(String::as_str))?;
    Ok((list(&placeholders), params))
}

/// The least text above every text that starts with `prefix`, in code point order (the
/// byte order of UTF-8): `prefix` with its last character incremented, after dropping
/// trailing U+10FFFF; `None` when nothing is above (every character U+10FFFF).
fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = if last == '\u{D7FF}' { Some('\u{E000}') } else { char::from_u32(u32::from(last) + 1) };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
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

    /// The entries with these ids (with their postings), newest first.
    pub(super) async fn entries(&self, ids: &[String]) -> Result<Vec<Entry>, LedgerError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let (list, params) = id_list(ids)?;
        let entries_sql = format!(
            "SELECT id, idempotency_key, business_type, correlation_id, memo, actor, created_at \
             FROM journal_entries WHERE id IN ({list}) ORDER BY id DESC"
        );
        let rows: Vec<EntryRow> =
            sqlx::query_as_with(&entries_sql, params.into_arguments()).fetch_all(self.db.pool()).await?;
        let (list, params) = id_list(ids)?;
        let postings_sql = format!(
            "SELECT entry_id, account, asset_code, bucket, amount, hold_id, available_after, frozen_after, \
             balance_seq FROM postings WHERE entry_id IN ({list}) ORDER BY entry_id, seq"
        );
        let postings: Vec<PostingRow> =
            sqlx::query_as_with(&postings_sql, params.into_arguments()).fetch_all(self.db.pool()).await?;
        rows.into_iter()
            .map(|row| {
                let rows: Vec<&PostingRow> = postings.iter().filter(|posting| posting.entry_id == row.id).collect();
                let (legs, balances) = legs_and_balances(&rows)?;
                let EntryRow { id, idempotency_key, business_type, correlation_id, memo, actor, created_at } = row;
                let entry = Entry {
                    id,
                    idempotency_key,
                    business_type,
                    correlation_id,
                    memo,
                    actor,
                    created_at,
                    legs,
                    balances: Vec::new(),
                };
                Ok(entry.with_balances(balances))
            })
            .collect()
    }

    /// One hold.
    pub async fn hold(&self, id: &str) -> Result<Option<Hold>, LedgerError> {
        hold_in(self.db.pool(), id).await
    }

    /// Holds matching `filter`, newest first. A reference prefix is read as a range
    /// (`reference >= prefix AND reference < next`), which the index `holds_by_reference`
    /// serves on both backends (migrations/ledger, 0003).
    pub async fn holds(&self, filter: &HoldFilter, page: &Page) -> Result<Vec<Hold>, LedgerError> {
        let by_reference = !filter.reference_prefix.is_empty();
        let mut params = Params::numbered();
        let mut conditions = Vec::new();
        if let Some(account) = &filter.account {
            conditions.push(format!("account = {}", params.push(account.key())?));
        }
        if let Some(status) = filter.status {
            // With a prefix, `status || ''` keeps SQLite (no statistics) from preferring
            // every open hold of `holds_by_expiry` to the reference range.
            let column = if by_reference { "status || ''" } else { "status" };
            conditions.push(format!("{column} = {}", params.push(status.as_str())?));
        }
        if by_reference {
            conditions.push(format!("reference >= {}", params.push(filter.reference_prefix.clone())?));
            if let Some(upper) = prefix_upper_bound(&filter.reference_prefix) {
                conditions.push(format!("reference < {}", params.push(upper)?));
            }
        }
        if let Some(before) = &page.before {
            conditions.push(format!("id < {}", params.push(before.clone())?));
        }
        let limit = params.push(page.limit)?;
        let filters = if conditions.is_empty() { String::new() } else { format!("WHERE {}", conditions.join(" AND ")) };
        let sql = format!("SELECT {HOLD_COLUMNS} FROM holds {filters} ORDER BY id DESC LIMIT {limit}");
        let rows: Vec<HoldRow> = sqlx::query_as_with(&sql, params.into_arguments()).fetch_all(self.db.pool()).await?;
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

    /// `(open, past expiry)`: the open holds and, of them, those whose expiry is at or
    /// before `now` (two counts on the `holds_by_expiry` index).
    pub async fn hold_counts(&self, now: i64) -> Result<(i64, i64), LedgerError> {
        let (open,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM holds WHERE status = 'open'").fetch_one(self.db.pool()).await?;
        let (expired,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM holds WHERE status = 'open' AND expires_at IS NOT NULL AND expires_at <= $1",
        )
        .bind(now)
        .fetch_one(self.db.pool())
        .await?;
        Ok((open, expired))
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_upper_bound;

    #[test]
    fn the_upper_bound_increments_the_last_character_that_can_grow() {
        assert_eq!(prefix_upper_bound("market:exchange:").as_deref(), Some("market:exchange;"));
        assert_eq!(prefix_upper_bound("a\u{D7FF}").as_deref(), Some("a\u{E000}"));
        assert_eq!(prefix_upper_bound("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_upper_bound("\u{10FFFF}"), None);
    }

    #[test]
    fn every_text_with_the_prefix_sorts_below_the_bound_and_no_other_does() {
        let prefix = "market:exchange:";
        let upper = prefix_upper_bound(prefix).expect("a bound");
        for text in ["market:exchange:", "market:exchange:0190", "market:exchange:\u{10FFFF}"] {
            assert!(text >= prefix && text < upper.as_str(), "{text}");
        }
        for text in ["market:exchange", "market:exchange;", "market:listing:1", "market:exchangf"] {
            assert!(!(text >= prefix && text < upper.as_str()), "{text}");
        }
    }
}
