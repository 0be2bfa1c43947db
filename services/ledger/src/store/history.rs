//! History reads (docs/ledger.md, "Balances at an instant", "Statements", "History
//! filters"): balances as of an instant from the postings' recorded running balances
//! (one backward seek of `postings_as_of` per balance), statements as the versions
//! between two instants, and journal entries by correlation, business type and period.

use economy_kit::db::params::{Params, Placeholder};

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
        let ids: Vec<(String,)> = sqlx::query_as(STATEMENT_SQL)
            .bind(query.account.key())
            .bind(query.asset.as_str())
            .bind(opening.seq.max(query.after_seq))
            .bind(closing.seq)
            .bind(query.limit)
            .fetch_all(self.db.pool())
            .await?;
        let ids: Vec<String> = ids.into_iter().map(|(id,)| id).collect();
        let entries = self.entries_in_order(&ids).await?;
        Ok(Statement { opening, closing, entries })
    }

    /// Entries matching `filter`, newest first by (instant, id); the page's keyset is the
    /// previous page's last entry (docs/ledger.md, "History filters"). Each page reads
    /// its rows through an index in the page's order: O(page), whatever the account's
    /// history.
    pub async fn entries_matching(&self, filter: &EntryFilter, page: &Page) -> Result<Vec<Entry>, LedgerError> {
        let (sql, params) = matching_sql(filter, page)?;
        let ids: Vec<(String,)> = sqlx::query_as_with(&sql, params.into_arguments()).fetch_all(self.db.pool()).await?;
        let ids: Vec<String> = ids.into_iter().map(|(id,)| id).collect();
        self.entries_in_order(&ids).await
    }

    /// The entries with these ids, in the order of `ids`.
    async fn entries_in_order(&self, ids: &[String]) -> Result<Vec<Entry>, LedgerError> {
        let mut entries = self.entries(ids).await?;
        entries.sort_by_key(|entry| ids.iter().position(|id| id == &entry.id));
        Ok(entries)
    }
}

/// The query of one statement page: the entry ids of a balance's versions in
/// `($3, $4]`, oldest first, one row per version (the posting with the least `seq` of
/// each entry on the balance), at most `$5`; a range of `postings_by_balance_seq`
/// (migrations/ledger, 0004) in its order, each row checked by one primary-key seek.
pub(super) const STATEMENT_SQL: &str = "SELECT p.entry_id FROM postings AS p \
     WHERE p.account = $1 AND p.asset_code = $2 AND p.balance_seq > $3 AND p.balance_seq <= $4 \
     AND NOT EXISTS (SELECT 1 FROM postings AS q WHERE q.entry_id = p.entry_id \
     AND q.account || '' = p.account AND q.asset_code || '' = p.asset_code AND q.seq < p.seq) \
     ORDER BY p.balance_seq LIMIT $5";

/// The query of [`LedgerStore::entries_matching`]: the ids of the matching entries,
/// newest first by (instant, id), with their parameters. Three shapes, each walking one
/// index in the page's order (docs/ledger.md, "History filters"):
/// - with a correlation id: its entries (`journal_entries_by_correlation`), with an
///   account only those with a posting on it (a primary-key seek each);
/// - an account and an asset: the balance's postings (`postings_as_of`), one row per
///   version;
/// - an account: its postings (`postings_by_account_instant`), one row per entry.
///
/// A business type joins the entry (a primary-key seek per row).
pub(super) fn matching_sql<'q>(filter: &'q EntryFilter, page: &'q Page) -> Result<(String, Params<'q>), sqlx::Error> {
    let mut params = Params::numbered();
    let mut shape = match (&filter.account, &filter.asset) {
        (Some(account), Some(asset)) if filter.correlation_id.is_empty() => balance_shape(&mut params, account, asset)?,
        (Some(account), None) if filter.correlation_id.is_empty() => account_shape(&mut params, account)?,
        _ => correlation_shape(&mut params, filter)?,
    };
    let mut conditions = std::mem::take(&mut shape.conditions);
    if !filter.business_type.is_empty() {
        conditions.push(format!("e.business_type = {}", params.push(filter.business_type.clone())?));
    }
    if let Some(from) = filter.from {
        conditions.push(format!("{} >= {}", shape.instant, params.push(from)?));
    }
    let to = filter.to.map(|to| params.push(to)).transpose()?;
    match (&page.before, &to) {
        (Some(before), _) => conditions.push(keyset_condition(&mut params, &shape, filter, before, to.as_ref())?),
        (None, Some(to)) => conditions.push(format!("{} < {to}", shape.instant)),
        (None, None) => {}
    }
    let limit = params.push(page.limit)?;
    let join = if shape.joins_entry && !filter.business_type.is_empty() {
        " JOIN journal_entries AS e ON e.id = p.entry_id"
    } else {
        ""
    };
    let sql = format!(
        "{}{join} WHERE {}{} ORDER BY {} DESC, {} DESC LIMIT {limit}",
        shape.head,
        conditions.join(" AND "),
        shape.group_by,
        shape.instant,
        shape.tie,
    );
    Ok((sql, params))
}

/// One form of the listing: what it selects from, its conditions, and its order
/// (`instant` then `tie`, the columns of its index after the equalities).
struct Shape {
    head: &'static str,
    conditions: Vec<String>,
    /// Whether the entry is joined for a business type (the postings forms).
    joins_entry: bool,
    group_by: &'static str,
    instant: &'static str,
    tie: &'static str,
}

/// The entries of a correlation, on an account when one is given.
fn correlation_shape<'q>(params: &mut Params<'q>, filter: &'q EntryFilter) -> Result<Shape, sqlx::Error> {
    let correlation = params.push(filter.correlation_id.clone())?;
    let mut conditions = vec![format!("e.correlation_id = {correlation} AND e.correlation_id <> ''")];
    if let Some(account) = &filter.account {
        // `|| ''` keeps SQLite (no statistics) on the primary key rather than an account index.
        let mut on_account = format!("p.account || '' = {}", params.push(account.key())?);
        if let Some(asset) = &filter.asset {
            on_account.push_str(&format!(" AND p.asset_code || '' = {}", params.push(asset.clone())?));
        }
        conditions.push(format!("EXISTS (SELECT 1 FROM postings AS p WHERE p.entry_id = e.id AND {on_account})"));
    }
    Ok(Shape {
        head: "SELECT e.id FROM journal_entries AS e",
        conditions,
        joins_entry: false,
        group_by: "",
        instant: "e.created_at",
        tie: "e.id",
    })
}

/// The entries with a posting on one balance, one row per version.
fn balance_shape<'q>(params: &mut Params<'q>, account: &'q AccountId, asset: &'q str) -> Result<Shape, sqlx::Error> {
    let conditions = vec![
        format!("p.account = {}", params.push(account.key())?),
        format!("p.asset_code = {}", params.push(asset.to_owned())?),
    ];
    Ok(Shape {
        head: "SELECT MIN(p.entry_id) FROM postings AS p",
        conditions,
        joins_entry: true,
        group_by: " GROUP BY p.created_at, p.balance_seq",
        instant: "p.created_at",
        tie: "p.balance_seq",
    })
}

/// The entries with a posting on an account, one row per entry.
fn account_shape<'q>(params: &mut Params<'q>, account: &'q AccountId) -> Result<Shape, sqlx::Error> {
    Ok(Shape {
        head: "SELECT p.entry_id FROM postings AS p",
        conditions: vec![format!("p.account = {}", params.push(account.key())?)],
        joins_entry: true,
        group_by: " GROUP BY p.created_at, p.entry_id",
        instant: "p.created_at",
        tie: "p.entry_id",
    })
}

/// Rows after the previous page's last entry `before` in the shape's order, and before
/// the period's end `to` if any: the entry's instant and tie are read back by
/// primary-key seeks (none when it does not exist or, for a balance, did not post to it:
/// then only older instants follow). Written as ONE upper bound on the instant (the
/// lesser of the two) plus a filter on the tie, so both backends start the index walk
/// at the keyset: page n costs O(page), not O(n pages).
fn keyset_condition<'q>(
    params: &mut Params<'q>,
    shape: &Shape,
    filter: &'q EntryFilter,
    before: &'q str,
    to: Option<&Placeholder>,
) -> Result<String, sqlx::Error> {
    let before = params.push(before.to_owned())?;
    let instant = format!("(SELECT k.created_at FROM journal_entries AS k WHERE k.id = {before})");
    let tie = match (&filter.account, &filter.asset) {
        (Some(account), Some(asset)) if shape.tie == "p.balance_seq" => {
            let (account, asset) = (params.push(account.key())?, params.push(asset.clone())?);
            format!(
                "(SELECT MIN(k.balance_seq) FROM postings AS k WHERE k.entry_id = {before} \
                 AND k.account || '' = {account} AND k.asset_code || '' = {asset})"
            )
        }
        _ => before.to_string(),
    };
    let (column, tie_column) = (shape.instant, shape.tie);
    let bound = match to {
        Some(to) => format!("CASE WHEN {instant} < {to} THEN {instant} ELSE {to} - 1 END"),
        None => instant.clone(),
    };
    Ok(format!("{column} <= {bound} AND ({column} < {instant} OR {tie_column} < {tie})"))
}
