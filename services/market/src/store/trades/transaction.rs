//! A trade start or saga step in a transaction the caller commits: the listing's
//! compare-and-set, then the trade's insert or move. Chosen on PostgreSQL when the
//! one-statement form leaves a step undecided (here the failure is named), and on SQLite
//! for a batch whose batch form a constraint refused (each write then in a savepoint of
//! the group commit's transaction). The one-statement form wraps these same statements.

use economy_kit::db::is_unique_violation;
use economy_kit::db::params::{Params, Placeholder, list};
use sqlx::AnyConnection;

use super::{Begin, NEW_TRADE_COLUMNS, Refusal, StepWrite};
use crate::domain::{MarketError, Trade};
use crate::store::listings::move_listing;

/// Wins the listing of `trade` (compare-and-set `on_sale -> selling`, unexpired) and
/// inserts the trade `pending`; `Duplicate` when its business event has a trade.
pub(super) async fn start(conn: &mut AnyConnection, trade: &Trade) -> Result<Begin, Refusal> {
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
    let mut params = Params::numbered();
    let values = bind_new_trade(&mut params, trade)?.values;
    let insert = format!("INSERT INTO trades ({NEW_TRADE_COLUMNS}) VALUES ({values})");
    sqlx::query_with(&insert, params.into_arguments())
        .execute(conn)
        .await
        .map_err(|error| if is_unique_violation(&error) { Refusal::Duplicate } else { error.into() })?;
    Ok(Begin::Started)
}

/// Moves the trade of `step` (compare-and-set on its status), then its listing; false when
/// the trade was no longer in `from`; a storage error when the listing was not in its
/// `from` (the caller rolls the trade's move back).
pub(super) async fn step(conn: &mut AnyConnection, step: &StepWrite) -> Result<bool, MarketError> {
    let mut params = Params::numbered();
    let sql = move_trade(&mut params, step)?.sql;
    let moved = sqlx::query_with(&sql, params.into_arguments()).execute(&mut *conn).await?;
    if moved.rows_affected() != 1 {
        return Ok(false);
    }
    if let Some((listing_id, from, to)) = &step.listing
        && !move_listing(conn, listing_id, *from, *to, step.now).await?
    {
        return Err(MarketError::Storage(format!("listing {listing_id} was not {}", from.as_str()).into()));
    }
    Ok(true)
}

/// A new trade's bound values.
pub(super) struct NewTrade {
    /// The row in [`NEW_TRADE_COLUMNS`] order (`pending`, nothing recorded yet).
    pub(super) values: String,
    /// The trade's listing.
    pub(super) listing_id: Placeholder,
    /// The trade's start, ms.
    pub(super) created_at: Placeholder,
}

/// Binds a new trade's id, business event, listing, buyer, seller, price asset, price,
/// fee, seller net and start instant.
pub(super) fn bind_new_trade<'q>(params: &mut Params<'q>, trade: &'q Trade) -> Result<NewTrade, sqlx::Error> {
    let ids = params.push_each([&trade.id, &trade.business_event_id, &trade.listing_id])?;
    let users = params.push_each([trade.buyer_user_id, trade.seller_user_id])?;
    let price_asset = params.push(&trade.price_asset)?;
    let amounts = params.push_each([trade.price, trade.fee, trade.seller_net])?;
    let created_at = params.push(trade.created_at)?;
    let values = format!(
        "{}, {}, {price_asset}, {}, 'pending', '', '', '', {created_at}, {created_at}, 0",
        list(&ids),
        list(&users),
        list(&amounts)
    );
    Ok(NewTrade { values, listing_id: ids[2], created_at })
}

/// A saga step's compare-and-set on its trade, bound.
pub(super) struct TradeMove {
    /// The UPDATE (a step's ledger transaction is appended to the trade's list).
    pub(super) sql: String,
    /// The step's instant, ms.
    pub(super) now: Placeholder,
}

/// Binds a step's new status, now, finish instant (0 unless final), payment hold, ledger
/// transaction, failure reason, trade and expected status.
pub(super) fn move_trade<'q>(params: &mut Params<'q>, step: &'q StepWrite) -> Result<TradeMove, sqlx::Error> {
    let to = params.push(step.to.as_str())?;
    let now = params.push(step.now)?;
    let finished_at = params.push(if step.to.is_final() { step.now } else { 0 })?;
    let hold = params.push(&step.payment_hold_id)?;
    let transaction = params.push(&step.transaction_id)?;
    let reason = params.push(&step.failure_reason)?;
    let trade = params.push(&step.trade_id)?;
    let from = params.push(step.from.as_str())?;
    let sql = format!(
        "UPDATE trades SET status = {to}, updated_at = {now}, finished_at = {finished_at}, \
         payment_hold_id = CASE WHEN {hold} = '' THEN payment_hold_id ELSE {hold} END, \
         ledger_transaction_ids = CASE WHEN {transaction} = '' THEN ledger_transaction_ids \
           WHEN ledger_transaction_ids = '' THEN {transaction} ELSE ledger_transaction_ids || ',' || {transaction} END, \
         failure_reason = CASE WHEN {reason} = '' THEN failure_reason ELSE {reason} END \
         WHERE trade_id = {trade} AND status = {from}"
    );
    Ok(TradeMove { sql, now })
}
