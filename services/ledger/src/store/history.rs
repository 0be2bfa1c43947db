//! History reads (docs/ledger.md, "Balances at an instant", "Statements", "History
//! filters"): balances as of an instant from the postings' recorded running balances
//! (one backward seek of `postings_as_of` per balance), statements as the versions
//! between two instants, and journal entries by correlation, business type and period.

use economy_kit::db::params::Params;

use super::{EntryFilter, LedgerStore, Page};
use crate::domain::LedgerError;
use crate::domain::entry::Entry;
use crate::domain::ids::AccountId;

/// A balance as of an instant: the after-values of its last entry at or before it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BalanceAt {
    /// Spendable amount.
    pub available: i64,
    /// Frozen amount.
    pub frozen: i64,
    /// The balance's version (0: no entry yet).
    pub seq: i64,
}

/// What [`LedgerStore::statement`] reads: one balance's entries in `[from, to)` (ms).
#[derive(Debug, Clone)]
pub struct StatementQuery {
    /// The account.
    pub account: AccountId,
    /// The asset.
    pub asset: String,
    /// First instant of the period (ms, included).
    pub from: i64,
    /// End of the period (ms, excluded).
    pub to: i64,
    /// Only entries after this version of the balance (the previous page's last; 0 for
    /// the first page).
    pub after_seq: i64,
    /// Entries to return.
    pub limit: i64,
}

/// A page of a statement: the balance just before `from`, just before `to`, and the
/// entries in between (oldest first).
#[derive(Debug, Clone)]
pub struct Statement {
    /// The balance before every entry of the period.
    pub opening: BalanceAt,
    /// The balance after every entry of the period.
    pub closing: BalanceAt,
    /// This page's entries, by the balance's version.
    pub entries: Vec<Entry>,
}

/// The balance as of an instant: `$1` account, `$2` asset, `$3` instant (ms); one
/// backward seek of `postings_as_of` (migrations/ledger, 0005).
pub(super) const AS_OF_SQL: &str = "SELECT available_after, frozen_after, balance_seq FROM postings \
     WHERE account = $1 AND asset_code = $2 AND created_at <= $3 \
     ORDER BY created_at DESC, balance_seq DESC LIMIT 1";

impl LedgerStore {
    /// The balance of `account` and `asset` as of `at` (ms, included): the after-values of
    /// the balance's posting with the greatest (created_at, balance_seq) at or before `at`;
    /// zeros when none (docs/ledger.md, "Balances at an instant").
    pub async fn balance_as_of(&self, account: &AccountId, asset: &str, at: i64) -> Result<BalanceAt, LedgerError> {
        let row: Option<(i64, i64, i64)> =
            sqlx::query_as(AS_OF_SQL).bind(account.key()).bind(asset).bind(at).fetch_optional(self.db.pool()).await?;
        Ok(row.map(|(available, frozen, seq)| BalanceAt { available, frozen, seq }).unwrap_or_default())
    }

    /// `(asset, available, frozen)` of every balance of `account` non-zero as of `at`,
    /// by asset: one [`LedgerStore::balance_as_of`] per asset the account ever held.
    pub async fn balances_as_of(&self, account: &AccountId, at: i64) -> Result<Vec<(String, i64, i64)>, LedgerError> {
        let assets: Vec<(String,)> =
            sqlx::query_as("SELECT asset_code FROM balances WHERE account = $1 ORDER BY asset_code")
                .bind(account.key())
                .fetch_all(self.db.pool())
                .await?;
        let mut balances = Vec::with_capacity(assets.len());
        for (asset,) in assets {
            let balance = self.balance_as_of(account, &asset, at).await?;
            if balance.available != 0 || balance.frozen != 0 {
                balances.push((asset, balance.available, balance.frozen));
            }
        }
        Ok(balances)
    }

    /// One page of a statement (docs/ledger.md, "Statements"): opening = the balance as
    /// of `from - 1`, closing = as of `to - 1` (never an older version than opening), the
    /// entries = the balance's versions after opening's up to closing's, oldest first.
    pub async fn statement(&self, query: &StatementQuery) -> Result<Statement, LedgerError> {
        let opening = self.balance_as_of(&query.account, &query.asset, query.from.saturating_sub(1)).await?;
        let mut closing = self.balance_as_of(&query.account, &query.asset, query.to.saturating_sub(1)).await?;
        if closing.seq < opening.seq {
            closing = opening;
        }
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT DISTINCT entry_id, balance_seq FROM postings \
             WHERE account = $1 AND asset_code = $2 AND balance_seq > $3 AND balance_seq <= $4 \
             ORDER BY balance_seq LIMIT $5",
        )
        .bind(query.account.key())
        .bind(query.asset.as_str())
        .bind(opening.seq.max(query.after_seq))
        .bind(closing.seq)
        .bind(query.limit)
        .fetch_all(self.db.pool())
        .await?;
        let ids: Vec<String> = rows.iter().map(|(id, _)| id.clone()).collect();
        let mut entries = self.entries(&ids).await?;
        entries.sort_by_key(|entry| ids.iter().position(|id| id == &entry.id));
        Ok(Statement { opening, closing, entries })
    }

    /// Entries matching `filter`, newest first (by id). With an account, its postings are
    /// read (`postings_by_account`, `postings_as_of` for a period); without, the entries
    /// of the correlation (`journal_entries_by_correlation`). Only the filters present
    /// become conditions, so each query keeps its index.
    pub async fn entries_matching(&self, filter: &EntryFilter, page: &Page) -> Result<Vec<Entry>, LedgerError> {
        let (sql, params) = matching_sql(filter, page)?;
        let ids: Vec<(String,)> = sqlx::query_as_with(&sql, params.into_arguments()).fetch_all(self.db.pool()).await?;
        let ids: Vec<String> = ids.into_iter().map(|(id,)| id).collect();
        self.entries(&ids).await
    }
}

/// The query of [`LedgerStore::entries_matching`]: the ids of the matching entries,
/// newest first, with their parameters.
pub(super) fn matching_sql<'q>(filter: &'q EntryFilter, page: &'q Page) -> Result<(String, Params<'q>), sqlx::Error> {
    let mut params = Params::numbered();
    let mut conditions = Vec::new();
    let (sql_head, id, instant) = match &filter.account {
        Some(account) => {
            conditions.push(format!("p.account = {}", params.push(account.key())?));
            if let Some(asset) = &filter.asset {
                conditions.push(format!("p.asset_code = {}", params.push(asset.clone())?));
            }
            let joined = !filter.correlation_id.is_empty() || !filter.business_type.is_empty();
            let join = if joined { " JOIN journal_entries AS e ON e.id = p.entry_id" } else { "" };
            (format!("SELECT DISTINCT p.entry_id FROM postings AS p{join}"), "p.entry_id", "p.created_at")
        }
        None => ("SELECT e.id FROM journal_entries AS e".to_owned(), "e.id", "e.created_at"),
    };
    if !filter.correlation_id.is_empty() {
        let correlation = params.push(filter.correlation_id.clone())?;
        conditions.push(format!("e.correlation_id = {correlation} AND e.correlation_id <> ''"));
    }
    if !filter.business_type.is_empty() {
        conditions.push(format!("e.business_type = {}", params.push(filter.business_type.clone())?));
    }
    if let Some(from) = filter.from {
        conditions.push(format!("{instant} >= {}", params.push(from)?));
    }
    if let Some(to) = filter.to {
        conditions.push(format!("{instant} < {}", params.push(to)?));
    }
    if let Some(before) = &page.before {
        conditions.push(format!("{id} < {}", params.push(before.clone())?));
    }
    if conditions.is_empty() {
        conditions.push("1 = 1".to_owned());
    }
    let limit = params.push(page.limit)?;
    let sql = format!("{sql_head} WHERE {} ORDER BY {id} DESC LIMIT {limit}", conditions.join(" AND "));
    Ok((sql, params))
}
