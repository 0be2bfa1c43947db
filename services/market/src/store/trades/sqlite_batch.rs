//! A group-committed batch of trade starts or saga steps on SQLite, decided in memory:
//! chosen for every batch of the group commit there (the ledger's entries are batched
//! alike). The batch runs inside `BEGIN IMMEDIATE` on the one writer connection, so
//! nothing else writes until it commits: one call begins the transaction and reads every
//! trade, listing and business event the batch names; each write is decided in memory in
//! batch order against them as the earlier writes left them (the same compare-and-sets as
//! [`super::transaction`], in the same order); one call writes the final rows and
//! commits. Each statement takes its rows as one JSON array (`json_each`), so it is
//! prepared once whatever the batch's size.

use std::collections::{HashMap, HashSet};

use economy_kit::db::{Writer, json_rows};
use economy_kit::group_commit::BulkResults;
use sqlx::AnyConnection;

use super::{Begin, NEW_TRADE_COLUMNS, Refusal, StepWrite, TradeStart};
use crate::domain::{ListingStatus, MarketError, Trade};

/// Wins listings and records trades for `batch` (see [`super::MarketStore::begin_trade`]):
/// per start, `Started`, `NotOnSale` (the listing is not on sale, or expired, or an earlier
/// start of the batch won it) or `Duplicate` (its business event has a trade). `Ok(None)`
/// on PostgreSQL.
pub(super) async fn start_trades(batch: &[TradeStart], writer: &mut Writer) -> BulkResults<TradeStart> {
    let Some(mut transaction) = writer.raw_transaction() else { return Ok(None) };
    let written = start_in(batch, &mut transaction).await;
    transaction.finish(written).await.map(Some)
}

/// Applies the saga steps of `batch` (see [`super::MarketStore::step`]): per step, true
/// when its trade moved, false when it was no longer in `from`, or a storage error when
/// its listing was not in the listing's `from` (nothing of that step is written).
/// `Ok(None)` on PostgreSQL.
pub(super) async fn apply_steps(batch: &[StepWrite], writer: &mut Writer) -> BulkResults<StepWrite> {
    let Some(mut transaction) = writer.raw_transaction() else { return Ok(None) };
    let written = steps_in(batch, &mut transaction).await;
    transaction.finish(written).await.map(Some)
}

/// [`start_trades`] inside its transaction: reads, decides each start in batch order (the
/// listing's compare-and-set first, then the business event), writes and commits.
async fn start_in(batch: &[TradeStart], conn: &mut AnyConnection) -> Result<Vec<Result<Begin, Refusal>>, sqlx::Error> {
    let events: Vec<&str> = batch.iter().map(|start| start.0.business_event_id.as_str()).collect();
    let listings: Vec<&str> = batch.iter().map(|start| start.0.listing_id.as_str()).collect();
    let mut state = read_state(conn, &events, &[], &listings).await?;
    let mut started = Vec::new();
    let results = batch
        .iter()
        .map(|start| {
            let trade = &start.0;
            let listing =
                state.listings.get_mut(&trade.listing_id).filter(|listing| listing.sells_at(trade.created_at));
            let Some(listing) = listing else { return Ok(Begin::NotOnSale) };
            if !state.events.insert(trade.business_event_id.clone()) {
                return Err(Refusal::Duplicate);
            }
            listing.status = ListingStatus::Selling.as_str().to_owned();
            listing.updated_at = trade.created_at;
            state.moved_listings.insert(trade.listing_id.clone());
            started.push(trade);
            Ok(Begin::Started)
        })
        .collect();
    write_state(conn, &state, &started).await?;
    Ok(results)
}

async fn steps_in(
    batch: &[StepWrite],
    conn: &mut AnyConnection,
) -> Result<Vec<Result<bool, MarketError>>, sqlx::Error> {
    let trades: Vec<&str> = batch.iter().map(|step| step.trade_id.as_str()).collect();
    let listings: Vec<&str> =
        batch.iter().filter_map(|step| step.listing.as_ref().map(|(id, ..)| id.as_str())).collect();
    let mut state = read_state(conn, &[], &trades, &listings).await?;
    let results = batch.iter().map(|step| state.step(step)).collect();
    write_state(conn, &state, &[]).await?;
    Ok(results)
}

/// A trade's columns a step moves (`updated_at` and `finished_at` are not read: they are
/// written only with a move, which sets them).
struct TradeRow {
    status: String,
    payment_hold_id: String,
    ledger_transaction_ids: String,
    failure_reason: String,
    updated_at: i64,
    finished_at: i64,
}

/// A listing's columns a trade write moves or checks (`updated_at` is not read: it is
/// written only with a move, which sets it).
struct ListingRow {
    status: String,
    expires_at: i64,
    updated_at: i64,
    closed_at: i64,
}

impl ListingRow {
    /// On sale and unexpired at `now` (the compare-and-set of a trade start).
    fn sells_at(&self, now: i64) -> bool {
        self.status == ListingStatus::OnSale.as_str() && (self.expires_at == 0 || self.expires_at > now)
    }
}

/// What the batch read, as its decided writes leave it.
#[derive(Default)]
struct State {
    /// Business events with a trade.
    events: HashSet<String>,
    trades: HashMap<String, TradeRow>,
    listings: HashMap<String, ListingRow>,
    moved_trades: HashSet<String>,
    moved_listings: HashSet<String>,
}

impl State {
    /// Decides one step (the write-by-write path's compare-and-sets, trade first).
    fn step(&mut self, step: &StepWrite) -> Result<bool, MarketError> {
        let Some(trade) = self.trades.get_mut(&step.trade_id).filter(|trade| trade.status == step.from.as_str()) else {
            return Ok(false);
        };
        if let Some((listing_id, from, to)) = &step.listing {
            let listing = self.listings.get_mut(listing_id).filter(|listing| listing.status == from.as_str());
            let Some(listing) = listing else {
                return Err(MarketError::Storage(format!("listing {listing_id} was not {}", from.as_str()).into()));
            };
            listing.status = to.as_str().to_owned();
            listing.updated_at = step.now;
            listing.closed_at = if to.closes() { step.now } else { 0 };
            self.moved_listings.insert(listing_id.clone());
        }
        trade.status = step.to.as_str().to_owned();
        trade.updated_at = step.now;
        trade.finished_at = if step.to.is_final() { step.now } else { 0 };
        if !step.payment_hold_id.is_empty() {
            trade.payment_hold_id.clone_from(&step.payment_hold_id);
        }
        if !step.transaction_id.is_empty() {
            if !trade.ledger_transaction_ids.is_empty() {
                trade.ledger_transaction_ids.push(',');
            }
            trade.ledger_transaction_ids.push_str(&step.transaction_id);
        }
        if !step.failure_reason.is_empty() {
            trade.failure_reason.clone_from(&step.failure_reason);
        }
        self.moved_trades.insert(step.trade_id.clone());
        Ok(true)
    }
}

/// Tags of the rows `read_state` returns.
const EVENT: i64 = 0;
const TRADE: i64 = 1;
const LISTING: i64 = 2;

/// A row of `read_state`: its tag, then the tag's columns (the rest empty or zero).
#[derive(sqlx::FromRow)]
struct StateRow {
    tag: i64,
    /// The business event, trade or listing.
    id: String,
    /// The trade's or listing's status.
    status: String,
    payment_hold_id: String,
    ledger_transaction_ids: String,
    failure_reason: String,
    /// The listing's expiry (ms; 0: none).
    expires_at: i64,
    /// The listing's closing instant (ms; 0: open).
    closed_at: i64,
}

/// Begins the transaction and reads, in one statement, which of `events` have a trade,
/// the `trades` and the `listings`.
async fn read_state(
    conn: &mut AnyConnection,
    events: &[&str],
    trades: &[&str],
    listings: &[&str],
) -> Result<State, sqlx::Error> {
    let rows: Vec<StateRow> = sqlx::query_as(&format!(
        "BEGIN IMMEDIATE; \
         SELECT {EVENT} AS tag, business_event_id AS id, '' AS status, '' AS payment_hold_id, \
         '' AS ledger_transaction_ids, '' AS failure_reason, 0 AS expires_at, 0 AS closed_at FROM trades \
         WHERE business_event_id IN (SELECT value FROM json_each($1)) \
         UNION ALL SELECT {TRADE}, trade_id, status, payment_hold_id, ledger_transaction_ids, failure_reason, \
         0, 0 FROM trades WHERE trade_id IN (SELECT value FROM json_each($2)) \
         UNION ALL SELECT {LISTING}, listing_id, status, '', '', '', expires_at, closed_at FROM listings \
         WHERE listing_id IN (SELECT value FROM json_each($3))"
    ))
    .bind(json_rows(&events)?)
    .bind(json_rows(&trades)?)
    .bind(json_rows(&listings)?)
    .fetch_all(conn)
    .await?;
    let mut state = State::default();
    for row in rows {
        let StateRow {
            tag,
            id,
            status,
            payment_hold_id,
            ledger_transaction_ids,
            failure_reason,
            expires_at,
            closed_at,
        } = row;
        match tag {
            EVENT => _ = state.events.insert(id),
            TRADE => {
                let trade = TradeRow {
                    status,
                    payment_hold_id,
                    ledger_transaction_ids,
                    failure_reason,
                    updated_at: 0,
                    finished_at: 0,
                };
                state.trades.insert(id, trade);
            }
            _ => {
                let listing = ListingRow { status, expires_at, updated_at: 0, closed_at };
                state.listings.insert(id, listing);
            }
        }
    }
    Ok(state)
}

/// Writes the moved trades, the `started` ones and the moved listings, and commits, in
/// one call. JSON rows: moved trade `[id, status, updated_at, finished_at,
/// payment_hold_id, ledger_transaction_ids, failure_reason]`; new trade `[id,
/// business_event_id, listing_id, buyer, seller, price_asset, price, fee, seller_net,
/// created_at]`; moved listing `[id, status, updated_at, closed_at]`.
async fn write_state(conn: &mut AnyConnection, state: &State, started: &[&Trade]) -> Result<(), sqlx::Error> {
    let trades: Vec<_> = (state.moved_trades.iter())
        .filter_map(|id| state.trades.get(id).map(|trade| (id, trade)))
        .map(|(id, trade)| {
            let TradeRow { status, payment_hold_id, ledger_transaction_ids, failure_reason, updated_at, finished_at } =
                trade;
            (id, status, updated_at, finished_at, payment_hold_id, ledger_transaction_ids, failure_reason)
        })
        .collect();
    let new_trades: Vec<_> = started
        .iter()
        .map(|trade| {
            let Trade { id, business_event_id, listing_id, buyer_user_id, seller_user_id, price_asset, .. } = trade;
            let (price, fee, seller_net, created_at) = (trade.price, trade.fee, trade.seller_net, trade.created_at);
            (
                id,
                business_event_id,
                listing_id,
                buyer_user_id,
                seller_user_id,
                price_asset,
                price,
                fee,
                seller_net,
                created_at,
            )
        })
        .collect();
    let listings: Vec<_> = (state.moved_listings.iter())
        .filter_map(|id| {
            state.listings.get(id).map(|listing| (id, &listing.status, listing.updated_at, listing.closed_at))
        })
        .collect();
    sqlx::query(&format!(
        "UPDATE trades SET status = r.value ->> 1, updated_at = r.value ->> 2, finished_at = r.value ->> 3, \
         payment_hold_id = r.value ->> 4, ledger_transaction_ids = r.value ->> 5, failure_reason = r.value ->> 6 \
         FROM json_each($1) AS r WHERE trades.trade_id = r.value ->> 0; \
         INSERT INTO trades ({NEW_TRADE_COLUMNS}) SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, \
         value ->> 6, value ->> 7, value ->> 8, 'pending', '', '', '', value ->> 9, value ->> 9, 0 FROM json_each($2); \
         UPDATE listings SET status = r.value ->> 1, updated_at = r.value ->> 2, closed_at = r.value ->> 3 \
         FROM json_each($3) AS r WHERE listings.listing_id = r.value ->> 0; \
         COMMIT"
    ))
    .bind(json_rows(&trades)?)
    .bind(json_rows(&new_trades)?)
    .bind(json_rows(&listings)?)
    .execute(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use economy_kit::db::{Backend, DbOptions};
    use economy_kit::testing::TestDatabase;

    use super::*;
    use crate::domain::TradeStatus;
    use crate::store::fixtures::{complete, listing, trade};
    use crate::store::{MarketStore, Step};

    /// Queued together (one batch on SQLite, in queue order; in parallel on PostgreSQL),
    /// trade starts and steps decide as one by one: one buyer per listing, one trade per
    /// business event, each compare-and-set once.
    #[tokio::test]
    async fn a_batch_of_trade_writes_decides_as_one_by_one() {
        let database = TestDatabase::new().await.expect("database");
        let store = MarketStore::open(&database.url, &DbOptions::default()).await.expect("store");
        let (first, second, expired) =
            (listing(&store, None).await, listing(&store, None).await, listing(&store, Some(5)).await);
        let starts =
            [trade(&first, "a"), trade(&first, "b"), trade(&second, "a"), trade(&second, "c"), trade(&expired, "d")];
        let [a, b, c, d, e] = &starts;
        let begun = tokio::join!(
            store.begin_trade(a),
            store.begin_trade(b),
            store.begin_trade(c),
            store.begin_trade(d),
            store.begin_trade(e)
        );
        let begun = [begun.0, begun.1, begun.2, begun.3, begun.4];
        let begun: Vec<Begin> = begun.into_iter().map(|begun| begun.expect("begin")).collect();
        if store.db().backend() == Backend::Sqlite {
            assert_eq!(begun, [Begin::Started, Begin::NotOnSale, Begin::Duplicate, Begin::Started, Begin::NotOnSale]);
        }
        let won: Vec<&Trade> =
            starts.iter().zip(&begun).filter(|(_, begun)| **begun == Begin::Started).map(|(trade, _)| trade).collect();
        assert_eq!(won.len(), 2, "{begun:?}");
        let steps = [
            complete(won[0], ListingStatus::Selling),
            complete(won[0], ListingStatus::Selling),
            complete(won[1], ListingStatus::OnSale),
        ];
        let stepped = tokio::join!(store.step(&steps[0]), store.step(&steps[1]), store.step(&steps[2]));
        let stepped = [stepped.0, stepped.1, stepped.2];
        let moved: Vec<bool> = stepped[..2].iter().map(|moved| *moved.as_ref().expect("step")).collect();
        assert_eq!(moved.iter().filter(|moved| **moved).count(), 1, "{stepped:?}");
        assert!(matches!(stepped[2], Err(MarketError::Storage(_))), "{stepped:?}");
        let sold = store.trade(&won[0].id).await.expect("read").expect("trade");
        assert_eq!(
            (sold.status, sold.ledger_transaction_ids, sold.finished_at),
            (TradeStatus::Completed, vec!["tx".to_owned()], Some(20))
        );
        let first = store.listing(&won[0].listing_id).await.expect("read").expect("listing");
        assert_eq!((first.status, first.closed_at), (ListingStatus::Sold, Some(20)));
        let unmoved = store.trade(&won[1].id).await.expect("read").expect("trade");
        assert_eq!(unmoved.status, TradeStatus::Pending);
        let second = store.listing(&won[1].listing_id).await.expect("read").expect("listing");
        assert_eq!(second.status, ListingStatus::Selling);
        let updated = |sql: &'static str, id: String| {
            let pool = store.db().pool().clone();
            async move { sqlx::query_scalar::<_, i64>(sql).bind(id).fetch_one(&pool).await.expect("updated_at") }
        };
        let trade_updated = "SELECT updated_at FROM trades WHERE trade_id = $1";
        let listing_updated = "SELECT updated_at FROM listings WHERE listing_id = $1";
        assert_eq!(updated(trade_updated, won[0].id.clone()).await, 20);
        assert_eq!(updated(listing_updated, won[0].listing_id.clone()).await, 20);
        assert_eq!(updated(listing_updated, won[1].listing_id.clone()).await, 10);
        // An event that won a trade (on PostgreSQL the racing starts may leave "a" without one).
        let later = trade(&listing(&store, None).await, &won[0].business_event_id);
        assert_eq!(store.begin_trade(&later).await.expect("begin"), Begin::Duplicate, "the event has a trade");
        store.db().close().await;
    }

    /// Two steps of one trade in one batch chain (the second sees the first's status, hold
    /// and transaction, on SQLite); a start a constraint refuses (price 0) fails alone, the batch is
    /// redone write by write.
    #[tokio::test]
    async fn steps_of_one_trade_chain_and_a_refused_constraint_fails_only_its_write() {
        let database = TestDatabase::new().await.expect("database");
        let store = MarketStore::open(&database.url, &DbOptions::default()).await.expect("store");
        let (first, second) = (listing(&store, None).await, listing(&store, None).await);
        let mut free = trade(&second, "free");
        free.price = 0;
        let bought = trade(&first, "bought");
        let (refused, begun) = tokio::join!(store.begin_trade(&free), store.begin_trade(&bought));
        assert!(matches!(refused, Err(MarketError::Storage(_))), "{refused:?}");
        assert_eq!(begun.expect("begin"), Begin::Started);
        let mut paid = Step::new(&bought.id, TradeStatus::Pending, TradeStatus::Paid, 20);
        (paid.payment_hold_id, paid.transaction_id) = ("hold-1", "tx1");
        let mut delivered = Step::new(&bought.id, TradeStatus::Paid, TradeStatus::Delivered, 30);
        delivered.transaction_id = "tx2";
        // One batch on SQLite; PostgreSQL runs queued steps in parallel, so in order there.
        let (paid, delivered) = if store.db().backend() == Backend::Sqlite {
            tokio::join!(store.step(&paid), store.step(&delivered))
        } else {
            (store.step(&paid).await, store.step(&delivered).await)
        };
        assert_eq!((paid.expect("paid"), delivered.expect("delivered")), (true, true));
        let stored = store.trade(&bought.id).await.expect("read").expect("trade");
        assert_eq!(stored.status, TradeStatus::Delivered);
        assert_eq!(stored.payment_hold_id.as_deref(), Some("hold-1"));
        assert_eq!(stored.ledger_transaction_ids, vec!["tx1".to_owned(), "tx2".to_owned()]);
        assert_eq!(store.listing(&second).await.expect("read").expect("listing").status, ListingStatus::OnSale);
        store.db().close().await;
    }
}
