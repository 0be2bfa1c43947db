//! Trades: the compare-and-set that lets exactly one buyer win a listing, and the saga
//! steps, each moving the trade (and, at its end, the listing) all or nothing
//! (docs/market.md, "Purchases"). A trade start or step is written by one of three paths,
//! chosen by backend:
//!
//! - [`sqlite_batch`] (SQLite): the writes queued together share one transaction and one
//!   commit (group commit) and are decided in memory against one read of their trades,
//!   listings and business events.
//! - [`postgres_statement`] (PostgreSQL): the write's statements as one autocommitted
//!   statement, tried first for every write there.
//! - [`transaction`]: the write's statements in a transaction; on PostgreSQL when the
//!   one-statement form leaves a step undecided (it names the failure), on SQLite for a
//!   batch the batch form could not write (a constraint refused a write), each write in a
//!   savepoint.

#[cfg(test)]
mod plan_tests;
mod postgres_statement;
mod sqlite_batch;
mod transaction;

use economy_kit::db::Writer;
use economy_kit::group_commit::{Autocommitted, BatchedWrite, BulkResults, WriteFuture};
use sqlx::AnyConnection;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{MarketStore, instant, present};
use crate::domain::{ListingStatus, MarketError, Trade, TradeStatus};

/// The columns a new trade row sets, in the order both write paths give them.
pub(super) const NEW_TRADE_COLUMNS: &str = "trade_id, business_event_id, listing_id, buyer_user_id, seller_user_id, \
     price_asset, price, fee, seller_net, status, payment_hold_id, ledger_transaction_ids, failure_reason, created_at, \
     updated_at, finished_at";

const COLUMNS: &str = "trade_id, business_event_id, listing_id, buyer_user_id, seller_user_id, price_asset, price, \
                       fee, seller_net, status, payment_hold_id, ledger_transaction_ids, failure_reason, created_at, \
                       finished_at";

/// Outcome of trying to win a listing.
#[derive(Debug, PartialEq, Eq)]
pub enum Begin {
    /// The listing is now `selling` and the trade `pending`.
    Started,
    /// The listing was not on sale (someone else won, it was cancelled or it expired).
    NotOnSale,
    /// A trade with this business event already exists.
    Duplicate,
}

/// One saga step: `from -> to` with what it records; `listing` moves the listing too.
#[derive(Debug)]
pub struct Step<'a> {
    /// The trade.
    pub trade_id: &'a str,
    /// Expected status.
    pub from: TradeStatus,
    /// New status.
    pub to: TradeStatus,
    /// Now, ms.
    pub now: i64,
    /// The buyer's payment hold (item trades).
    pub payment_hold_id: &'a str,
    /// A ledger transaction to append.
    pub transaction_id: &'a str,
    /// Why it failed or is refunded.
    pub failure_reason: &'a str,
    /// The listing's move: `(id, from, to)`.
    pub listing: Option<(&'a str, ListingStatus, ListingStatus)>,
}

impl<'a> Step<'a> {
    /// `from -> to` of `trade_id` at `now`, recording nothing else.
    pub fn new(trade_id: &'a str, from: TradeStatus, to: TradeStatus, now: i64) -> Self {
        Self { trade_id, from, to, now, payment_hold_id: "", transaction_id: "", failure_reason: "", listing: None }
    }
}

fn trade_from_row(row: &AnyRow) -> Result<Trade, sqlx::Error> {
    let status: String = row.try_get("status")?;
    let ids: String = row.try_get("ledger_transaction_ids")?;
    Ok(Trade {
        id: row.try_get("trade_id")?,
        business_event_id: row.try_get("business_event_id")?,
        listing_id: row.try_get("listing_id")?,
        buyer_user_id: row.try_get("buyer_user_id")?,
        seller_user_id: row.try_get("seller_user_id")?,
        price_asset: row.try_get("price_asset")?,
        price: row.try_get("price")?,
        fee: row.try_get("fee")?,
        seller_net: row.try_get("seller_net")?,
        status: TradeStatus::parse(&status)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown trade status {status}").into()))?,
        payment_hold_id: present(row.try_get("payment_hold_id")?),
        ledger_transaction_ids: ids.split(',').filter(|id| !id.is_empty()).map(str::to_owned).collect(),
        failure_reason: row.try_get("failure_reason")?,
        created_at: row.try_get("created_at")?,
        finished_at: instant(row.try_get("finished_at")?),
    })
}

impl MarketStore {
    /// Wins the listing for `trade` (compare-and-set `on_sale -> selling`, unexpired) and
    /// records the trade `pending`, in one transaction (group-committed on SQLite).
    pub async fn begin_trade(&self, trade: &Trade) -> Result<Begin, MarketError> {
        match self.trade_starts.submit(TradeStart(trade.clone())).await? {
            Ok(begin) => Ok(begin),
            Err(Refusal::Duplicate) => Ok(Begin::Duplicate),
            Err(Refusal::Failed(error)) => Err(error),
        }
    }

    /// Applies one saga step; false when the trade was no longer in `from` (another
    /// worker applied it). The listing's move must succeed with it, or nothing changes.
    pub async fn step(&self, step: &Step<'_>) -> Result<bool, MarketError> {
        self.steps.submit(StepWrite::from(step)).await?
    }

    async fn one_trade(&self, column: &str, value: &str) -> Result<Option<Trade>, sqlx::Error> {
        let sql = format!("SELECT {COLUMNS} FROM trades WHERE {column} = $1");
        let row = sqlx::query(&sql).bind(value).fetch_optional(self.db.pool()).await?;
        row.as_ref().map(trade_from_row).transpose()
    }

    /// The trade `trade_id`.
    pub async fn trade(&self, trade_id: &str) -> Result<Option<Trade>, sqlx::Error> {
        self.one_trade("trade_id", trade_id).await
    }

    /// The trade of a purchase's business event.
    pub async fn trade_by_event(&self, business_event_id: &str) -> Result<Option<Trade>, sqlx::Error> {
        self.one_trade("business_event_id", business_event_id).await
    }

    /// Unfinished trades not moved since `cutoff`, oldest first (the recovery worker's).
    pub async fn stalled_trades(&self, cutoff: i64, limit: i64) -> Result<Vec<Trade>, sqlx::Error> {
        let sql = format!(
            "SELECT {COLUMNS} FROM trades WHERE status IN ('pending', 'paid', 'delivered', 'refunding') \
             AND updated_at <= $1 ORDER BY updated_at LIMIT $2"
        );
        let rows = sqlx::query(&sql).bind(cutoff).bind(limit).fetch_all(self.db.pool()).await?;
        rows.iter().map(trade_from_row).collect()
    }

    /// A user's purchases and sales, newest first, below `before` (a trade id; `''`: from
    /// the newest): the newest `limit` of each ([`trades_of_sql`]) merged, so a page
    /// reads at most twice its size whatever the user's history.
    pub async fn trades_of(&self, user_id: i64, before: &str, limit: i64) -> Result<Vec<Trade>, sqlx::Error> {
        let mut trades = Vec::new();
        for side in [Side::Bought, Side::Sold] {
            let sql = trades_of_sql(side, !before.is_empty());
            let mut query = sqlx::query(&sql).bind(user_id).bind(limit);
            if !before.is_empty() {
                query = query.bind(before);
            }
            for row in query.fetch_all(self.db.pool()).await? {
                trades.push(trade_from_row(&row)?);
            }
        }
        trades.sort_by(|a, b| b.id.cmp(&a.id));
        trades.truncate(usize::try_from(limit).unwrap_or(0));
        Ok(trades)
    }
}

/// Which of a user's trades [`trades_of_sql`] reads.
#[derive(Debug, Clone, Copy)]
pub(super) enum Side {
    /// Their purchases (`trades_by_buyer`).
    Bought,
    /// Their sales (`trades_by_seller`), their own purchases left out.
    Sold,
}

/// One side of [`MarketStore::trades_of`] (`$1` user, `$2` limit, `$3` the id to page
/// below when `below`): a walk of the side's index in trade id order, newest first. Two
/// walks merged in memory rather than one `OR`, which reads and sorts the user's whole
/// history (and a `UNION ALL` of the two still sorts on PostgreSQL 15).
pub(super) fn trades_of_sql(side: Side, below: bool) -> String {
    let user = match side {
        Side::Bought => "buyer_user_id = $1",
        Side::Sold => "seller_user_id = $1 AND buyer_user_id <> $1",
    };
    let below = if below { " AND trade_id < $3" } else { "" };
    format!("SELECT {COLUMNS} FROM trades WHERE {user}{below} ORDER BY trade_id DESC LIMIT $2")
}

/// Why a trade start wrote nothing.
#[derive(Debug)]
pub(super) enum Refusal {
    /// A trade with this business event already exists.
    Duplicate,
    /// A storage error.
    Failed(MarketError),
}

impl From<sqlx::Error> for Refusal {
    fn from(error: sqlx::Error) -> Self {
        Self::Failed(error.into())
    }
}

/// [`MarketStore::begin_trade`]'s write.
#[derive(Debug)]
pub(super) struct TradeStart(pub(super) Trade);

impl BatchedWrite for TradeStart {
    type Output = Begin;
    type Refusal = Refusal;

    fn write<'c>(&'c self, conn: &'c mut AnyConnection) -> WriteFuture<'c, Result<Begin, Refusal>> {
        Box::pin(transaction::start(conn, &self.0))
    }

    fn commit_batch<'c>(batch: &'c [Self], writer: &'c mut Writer) -> WriteFuture<'c, BulkResults<Self>> {
        Box::pin(sqlite_batch::start_trades(batch, writer))
    }

    fn autocommit<'c>(&'c self, writer: &'c mut Writer) -> WriteFuture<'c, Autocommitted<Self>> {
        Box::pin(postgres_statement::start(writer, &self.0))
    }

    fn is_conflict(refusal: &Refusal) -> bool {
        matches!(refusal, Refusal::Failed(MarketError::Storage(cause)) if cause.is_conflict())
    }
}

/// [`MarketStore::step`]'s write, owning its [`Step`].
#[derive(Debug)]
pub(super) struct StepWrite {
    pub(super) trade_id: String,
    pub(super) from: TradeStatus,
    pub(super) to: TradeStatus,
    pub(super) now: i64,
    pub(super) payment_hold_id: String,
    pub(super) transaction_id: String,
    pub(super) failure_reason: String,
    pub(super) listing: Option<(String, ListingStatus, ListingStatus)>,
}

impl From<&Step<'_>> for StepWrite {
    fn from(step: &Step<'_>) -> Self {
        Self {
            trade_id: step.trade_id.to_owned(),
            from: step.from,
            to: step.to,
            now: step.now,
            payment_hold_id: step.payment_hold_id.to_owned(),
            transaction_id: step.transaction_id.to_owned(),
            failure_reason: step.failure_reason.to_owned(),
            listing: step.listing.map(|(id, from, to)| (id.to_owned(), from, to)),
        }
    }
}

impl BatchedWrite for StepWrite {
    type Output = bool;
    type Refusal = MarketError;

    fn write<'c>(&'c self, conn: &'c mut AnyConnection) -> WriteFuture<'c, Result<bool, MarketError>> {
        Box::pin(transaction::step(conn, self))
    }

    fn commit_batch<'c>(batch: &'c [Self], writer: &'c mut Writer) -> WriteFuture<'c, BulkResults<Self>> {
        Box::pin(sqlite_batch::apply_steps(batch, writer))
    }

    fn autocommit<'c>(&'c self, writer: &'c mut Writer) -> WriteFuture<'c, Autocommitted<Self>> {
        Box::pin(postgres_statement::step(writer, self))
    }

    fn is_conflict(refusal: &MarketError) -> bool {
        matches!(refusal, MarketError::Storage(cause) if cause.is_conflict())
    }
}
