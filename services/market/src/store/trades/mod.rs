//! Trades: the compare-and-set that lets exactly one buyer win a listing, and the saga
//! steps, each moving the trade (and, at its end, the listing) in one transaction: a
//! batch's on SQLite (`bulk`), one autocommitted statement on PostgreSQL when it decides
//! (BENCHMARKS.md Optimization 23).

use economy_kit::db::{Writer, is_unique_violation};
use economy_kit::group_commit::{Autocommitted, BatchedWrite, BulkResults, WriteFuture};
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, Row};

use super::listings::move_listing;
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
    /// the newest).
    pub async fn trades_of(&self, user_id: i64, before: &str, limit: i64) -> Result<Vec<Trade>, sqlx::Error> {
        let sql = format!(
            "SELECT {COLUMNS} FROM trades WHERE (buyer_user_id = $1 OR seller_user_id = $1) \
             AND ($2 = '' OR trade_id < $2) ORDER BY trade_id DESC LIMIT $3"
        );
        let rows = sqlx::query(&sql).bind(user_id).bind(before).bind(limit).fetch_all(self.db.pool()).await?;
        rows.iter().map(trade_from_row).collect()
    }
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

/// [`MarketStore::begin_trade`]'s transaction.
#[derive(Debug)]
pub(super) struct TradeStart(pub(super) Trade);

impl BatchedWrite for TradeStart {
    type Output = Begin;
    type Refusal = Refusal;

    fn write<'c>(&'c self, conn: &'c mut AnyConnection) -> WriteFuture<'c, Result<Begin, Refusal>> {
        Box::pin(async move {
            let trade = &self.0;
            let won = sqlx::query(
                "UPDATE listings SET status = 'selling', updated_at = $1 WHERE listing_id = $2 AND status = 'on_sale' \
                 AND (expires_at = 0 OR expires_at > $1)",
            )
            .bind(trade.created_at)
            .bind(&trade.listing_id)
            .execute(&mut *conn)
            .await?;
            if won.rows_affected() != 1 {
                return Ok(Begin::NotOnSale);
            }
            let insert = format!("INSERT INTO trades ({NEW_TRADE_COLUMNS}) VALUES ({NEW_TRADE_VALUES})");
            bind_start(sqlx::query(&insert), trade)
                .execute(conn)
                .await
                .map_err(|error| if is_unique_violation(&error) { Refusal::Duplicate } else { error.into() })?;
            Ok(Begin::Started)
        })
    }

    fn commit_batch<'c>(batch: &'c [Self], writer: &'c mut Writer) -> WriteFuture<'c, BulkResults<Self>> {
        Box::pin(super::bulk::start_trades(batch, writer))
    }

    /// Both statements of [`TradeStart::write`] in one: the trade is inserted from the
    /// won listing's row, so a listing not on sale inserts nothing, and a duplicate
    /// business event aborts the listing's move with the insert.
    fn autocommit<'c>(&'c self, writer: &'c mut Writer) -> WriteFuture<'c, Autocommitted<Self>> {
        Box::pin(async move {
            let sql = format!(
                "WITH won AS (UPDATE listings SET status = 'selling', updated_at = $10 WHERE listing_id = $3 \
                 AND status = 'on_sale' AND (expires_at = 0 OR expires_at > $10) RETURNING listing_id), \
                 started AS (INSERT INTO trades ({NEW_TRADE_COLUMNS}) SELECT {NEW_TRADE_VALUES} FROM won RETURNING 1) \
                 SELECT COUNT(*) FROM started"
            );
            match writer.fetch_number(bind_start(sqlx::query(&sql), &self.0)).await {
                Ok(1) => Ok(Some(Ok(Begin::Started))),
                Ok(_) => Ok(Some(Ok(Begin::NotOnSale))),
                Err(error) if is_unique_violation(&error) => Ok(Some(Err(Refusal::Duplicate))),
                Err(error) => Err(error),
            }
        })
    }
}

/// A new trade's row in [`NEW_TRADE_COLUMNS`] order, over [`bind_start`]'s parameters.
const NEW_TRADE_VALUES: &str = "$1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', '', '', '', $10, $10, 0";

/// Binds `$1..$10` of a trade's start: id, business event, listing, buyer, seller, price
/// asset, price, fee, seller net, created at.
fn bind_start<'q>(query: Query<'q, Any, AnyArguments<'q>>, trade: &'q Trade) -> Query<'q, Any, AnyArguments<'q>> {
    query
        .bind(&trade.id)
        .bind(&trade.business_event_id)
        .bind(&trade.listing_id)
        .bind(trade.buyer_user_id)
        .bind(trade.seller_user_id)
        .bind(&trade.price_asset)
        .bind(trade.price)
        .bind(trade.fee)
        .bind(trade.seller_net)
        .bind(trade.created_at)
}

/// [`MarketStore::step`]'s transaction, owning its [`Step`].
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
        Box::pin(async move {
            let moved = bind_move(sqlx::query(MOVE_TRADE), self).execute(&mut *conn).await?;
            if moved.rows_affected() != 1 {
                return Ok(false);
            }
            if let Some((listing_id, from, to)) = &self.listing
                && !move_listing(conn, listing_id, *from, *to, self.now).await?
            {
                return Err(MarketError::Storage(format!("listing {listing_id} was not {}", from.as_str())));
            }
            Ok(true)
        })
    }

    fn commit_batch<'c>(batch: &'c [Self], writer: &'c mut Writer) -> WriteFuture<'c, BulkResults<Self>> {
        Box::pin(super::bulk::apply_steps(batch, writer))
    }

    /// Both statements of [`StepWrite::write`] in one: the listing moves from the moved
    /// trade's row, and a listing that cannot move divides by zero, which aborts the
    /// trade's move too and leaves the step to the transaction path (which names it;
    /// `economy_kit::db::is_undecided`).
    fn autocommit<'c>(&'c self, writer: &'c mut Writer) -> WriteFuture<'c, Autocommitted<Self>> {
        Box::pin(async move {
            let sql = match &self.listing {
                None => format!("WITH moved AS ({MOVE_TRADE} RETURNING 1) SELECT COUNT(*) FROM moved"),
                Some(_) => format!(
                    "WITH moved AS ({MOVE_TRADE} RETURNING 1), listing AS (UPDATE listings \
                     SET status = $9, updated_at = $2, closed_at = $10 FROM moved WHERE listing_id = $11 AND status = $12 \
                     RETURNING 1) SELECT (SELECT COUNT(*) FROM moved) \
                     / CASE WHEN (SELECT COUNT(*) FROM listing) = (SELECT COUNT(*) FROM moved) THEN 1 ELSE 0 END"
                ),
            };
            let mut query = bind_move(sqlx::query(&sql), self);
            if let Some((listing_id, from, to)) = &self.listing {
                let closed_at = if to.closes() { self.now } else { 0 };
                query = query.bind(to.as_str()).bind(closed_at).bind(listing_id).bind(from.as_str());
            }
            Ok(Some(Ok(writer.fetch_number(query).await? == 1)))
        })
    }
}

/// A saga step's compare-and-set on the trade, over [`bind_move`]'s parameters; a step's
/// ledger transaction is appended to the trade's list.
const MOVE_TRADE: &str = "UPDATE trades SET status = $1, updated_at = $2, finished_at = $3, \
     payment_hold_id = CASE WHEN $4 = '' THEN payment_hold_id ELSE $4 END, \
     ledger_transaction_ids = CASE WHEN $5 = '' THEN ledger_transaction_ids \
       WHEN ledger_transaction_ids = '' THEN $5 ELSE ledger_transaction_ids || ',' || $5 END, \
     failure_reason = CASE WHEN $6 = '' THEN failure_reason ELSE $6 END \
     WHERE trade_id = $7 AND status = $8";

/// Binds `$1..$8` of a step: new status, now, finish instant (0 unless final), payment
/// hold, ledger transaction, failure reason, trade, expected status.
fn bind_move<'q>(query: Query<'q, Any, AnyArguments<'q>>, step: &'q StepWrite) -> Query<'q, Any, AnyArguments<'q>> {
    query
        .bind(step.to.as_str())
        .bind(step.now)
        .bind(if step.to.is_final() { step.now } else { 0 })
        .bind(&step.payment_hold_id)
        .bind(&step.transaction_id)
        .bind(&step.failure_reason)
        .bind(&step.trade_id)
        .bind(step.from.as_str())
}

#[cfg(test)]
mod tests {
    use economy_kit::db::{Backend, DbOptions, is_undecided};
    use economy_kit::testing::TestDatabase;

    use super::*;
    use crate::store::fixtures::{complete, listing, trade};

    /// On PostgreSQL the one-statement forms decide what the transaction path decides,
    /// except a listing that cannot move with its trade: they leave that to the path
    /// (group commit takes it on an undecided error).
    #[tokio::test]
    async fn the_one_statement_forms_decide_starts_and_steps() -> anyhow::Result<()> {
        let database = TestDatabase::new().await?;
        let store = MarketStore::open(&database.url, &DbOptions::default()).await?;
        if store.db().backend() == Backend::Sqlite {
            return Ok(());
        }
        let (first, second) = (listing(&store, None).await, listing(&store, None).await);
        let won = trade(&first, "a");
        let mut writer = store.db().writer().await?;
        let started = TradeStart(won.clone()).autocommit(&mut writer).await?;
        assert!(matches!(started, Some(Ok(Begin::Started))), "{started:?}");
        let lost = TradeStart(trade(&first, "b")).autocommit(&mut writer).await?;
        assert!(matches!(lost, Some(Ok(Begin::NotOnSale))), "{lost:?}");
        let duplicate = TradeStart(trade(&second, "a")).autocommit(&mut writer).await?;
        assert!(matches!(duplicate, Some(Err(Refusal::Duplicate))), "{duplicate:?}");
        let second = store.listing(&second).await?.map(|listing| listing.status);
        assert_eq!(second, Some(ListingStatus::OnSale), "the duplicate's listing is not won");

        let stuck = StepWrite::from(&complete(&won, ListingStatus::OnSale));
        let stuck = stuck.autocommit(&mut writer).await;
        assert!(stuck.as_ref().is_err_and(is_undecided), "the listing is selling, not on sale: {stuck:?}");
        assert_eq!(store.trade(&won.id).await?.map(|trade| trade.status), Some(TradeStatus::Pending));
        let step = StepWrite::from(&complete(&won, ListingStatus::Selling));
        assert!(matches!(step.autocommit(&mut writer).await?, Some(Ok(true))));
        assert!(matches!(step.autocommit(&mut writer).await?, Some(Ok(false))), "a step moves once");
        let sold = store.trade(&won.id).await?.ok_or_else(|| anyhow::anyhow!("trade"))?;
        assert_eq!(
            (sold.status, sold.ledger_transaction_ids, sold.finished_at),
            (TradeStatus::Completed, vec!["tx".to_owned()], Some(20))
        );
        let listing = store.listing(&won.listing_id).await?.ok_or_else(|| anyhow::anyhow!("listing"))?;
        assert_eq!((listing.status, listing.closed_at), (ListingStatus::Sold, Some(20)));
        Ok(())
    }
}
