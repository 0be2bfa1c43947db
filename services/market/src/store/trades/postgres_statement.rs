//! A trade start or saga step as ONE autocommitted statement on PostgreSQL (no `BEGIN`
//! and `COMMIT` round trips), tried first for every such write there: the transaction
//! path's statements joined by data-modifying CTEs. A step whose listing cannot move
//! aborts its own statement, which leaves it to [`super::transaction`] (which names it;
//! `economy_kit::db::is_undecided`).

use economy_kit::db::Writer;
use economy_kit::db::is_unique_violation;
use economy_kit::db::params::Params;
use economy_kit::group_commit::Autocommitted;

use super::transaction::{bind_new_trade, move_trade};
use super::{Begin, NEW_TRADE_COLUMNS, Refusal, StepWrite, TradeStart};
use crate::domain::Trade;

/// Both statements of a trade start in one: the trade is inserted from the won listing's
/// row, so a listing not on sale inserts nothing, and a duplicate business event aborts
/// the listing's move with the insert.
pub(super) async fn start(writer: &mut Writer, trade: &Trade) -> Autocommitted<TradeStart> {
    let mut params = Params::numbered();
    let new = bind_new_trade(&mut params, trade)?;
    let (values, listing_id, now) = (new.values, new.listing_id, new.created_at);
    let sql = format!(
        "WITH won AS (UPDATE listings SET status = 'selling', updated_at = {now} WHERE listing_id = {listing_id} \
         AND status = 'on_sale' AND (expires_at = 0 OR expires_at > {now}) RETURNING listing_id), \
         started AS (INSERT INTO trades ({NEW_TRADE_COLUMNS}) SELECT {values} FROM won RETURNING 1) \
         SELECT COUNT(*) FROM started"
    );
    match writer.fetch_number(sqlx::query_with(&sql, params.into_arguments())).await {
        Ok(1) => Ok(Some(Ok(Begin::Started))),
        Ok(_) => Ok(Some(Ok(Begin::NotOnSale))),
        Err(error) if is_unique_violation(&error) => Ok(Some(Err(Refusal::Duplicate))),
        Err(error) => Err(error),
    }
}

/// Both statements of a step in one: the listing moves from the moved trade's row, and a
/// listing that cannot move divides by zero, which aborts the trade's move too.
pub(super) async fn step(writer: &mut Writer, step: &StepWrite) -> Autocommitted<StepWrite> {
    let mut params = Params::numbered();
    let trade_move = move_trade(&mut params, step)?;
    let (move_trade, now) = (trade_move.sql, trade_move.now);
    let sql = match &step.listing {
        None => format!("WITH moved AS ({move_trade} RETURNING 1) SELECT COUNT(*) FROM moved"),
        Some((listing_id, from, to)) => {
            let to_status = params.push(to.as_str())?;
            let closed_at = params.push(if to.closes() { step.now } else { 0 })?;
            let listing_id = params.push(listing_id)?;
            let from = params.push(from.as_str())?;
            format!(
                "WITH moved AS ({move_trade} RETURNING 1), listing AS (UPDATE listings \
                 SET status = {to_status}, updated_at = {now}, closed_at = {closed_at} FROM moved \
                 WHERE listing_id = {listing_id} AND status = {from} \
                 RETURNING 1) SELECT (SELECT COUNT(*) FROM moved) \
                 / CASE WHEN (SELECT COUNT(*) FROM listing) = (SELECT COUNT(*) FROM moved) THEN 1 ELSE 0 END"
            )
        }
    };
    Ok(Some(Ok(writer.fetch_number(sqlx::query_with(&sql, params.into_arguments())).await? == 1)))
}

#[cfg(test)]
mod tests {
    use economy_kit::db::{Backend, DbOptions, is_undecided};
    use economy_kit::testing::TestDatabase;

    use super::*;
    use crate::domain::{ListingStatus, TradeStatus};
    use crate::store::fixtures::{complete, listing, trade};
    use crate::store::{Begin, MarketStore};
    use economy_kit::group_commit::BatchedWrite;

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
