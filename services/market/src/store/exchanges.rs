//! Exchanges (docs/market.md, "Exchanges"): the reservation of an offer's stock and the
//! user's limit in one transaction with the exchange's insert (claimed by the request that
//! made it), the claims that let one runner at a time advance an exchange, its saves as
//! compare-and-sets of the whole row under the runner's claim, and the return of the
//! reservation in the save that fails it.
//!
//! Races: one user's purchases of one offer are serialized by the lock on their
//! `offer_user_counts` row (taken first), and every purchase of an offer by the stock's
//! conditional UPDATE of its row (taken second, so no two writers wait on each other in
//! opposite orders). On SQLite the one writer connection serializes every transaction.

use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::{MarketStore, instant, json, to_json};
use crate::domain::{Exchange, ExchangeKind, ExchangeStatus, MarketError, Offer};
use economy_kit::db::is_unique_violation;

const COLUMNS: &str = "exchange_id, business_event_id, kind, user_id, offer_id, quantity, paid, reward, \
     business_type, correlation_id, status, payment_hold_ids, granted_items, ledger_transaction_ids, failure_reason, \
     failure_asset_code, created_at, updated_at, finished_at";

/// A runner's save: the status it last saved, the claim it holds (both compared), and the
/// claim it keeps after the save (0: released).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Save {
    /// The status stored by the runner's last save (or read when it claimed).
    pub from: ExchangeStatus,
    /// The runner's claim, ms.
    pub claim: i64,
    /// The claim after the save, ms; 0 releases it.
    pub next_claim: i64,
}

/// Outcome of reserving units of an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reserve {
    /// Reserved and the exchange stored `reserved`.
    Reserved,
    /// The business event already has an exchange; nothing changed.
    Duplicate,
    /// The offer's definition changed since it was read; read it again.
    Changed,
    /// Disabled or outside its window.
    NotActive,
    /// Not enough stock left (units left).
    SoldOut(i64),
    /// The user's cap: `total` or `window`.
    LimitReached(&'static str),
}

fn decode(what: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("bad exchange {what}").into())
}

fn exchange_from_row(row: &AnyRow) -> Result<Exchange, sqlx::Error> {
    let kind: String = row.try_get("kind")?;
    let status: String = row.try_get("status")?;
    Ok(Exchange {
        id: row.try_get("exchange_id")?,
        business_event_id: row.try_get("business_event_id")?,
        kind: ExchangeKind::parse(&kind).ok_or_else(|| decode("kind"))?,
        user_id: row.try_get("user_id")?,
        offer_id: row.try_get("offer_id")?,
        quantity: row.try_get("quantity")?,
        paid: json(row, "paid")?,
        reward: json(row, "reward")?,
        business_type: row.try_get("business_type")?,
        correlation_id: row.try_get("correlation_id")?,
        status: ExchangeStatus::parse(&status).ok_or_else(|| decode("status"))?,
        payment_hold_ids: json(row, "payment_hold_ids")?,
        granted_items: json(row, "granted_items")?,
        ledger_transaction_ids: json(row, "ledger_transaction_ids")?,
        failure_reason: row.try_get("failure_reason")?,
        failure_asset_code: row.try_get("failure_asset_code")?,
        created_at: row.try_get("created_at")?,
        finished_at: instant(row.try_get("finished_at")?),
    })
}

/// Binds the next six parameters to what a saga step changes: status, payment holds,
/// granted items, ledger transactions (JSON lists), failure reason and asset.
fn bind_progress<'q>(
    query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    exchange: &'q Exchange,
) -> Result<sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>, sqlx::Error> {
    Ok(query
        .bind(exchange.status.as_str())
        .bind(to_json(&exchange.payment_hold_ids)?)
        .bind(to_json(&exchange.granted_items)?)
        .bind(to_json(&exchange.ledger_transaction_ids)?)
        .bind(&exchange.failure_reason)
        .bind(&exchange.failure_asset_code))
}

/// Inserts `exchange` as it is, claimed until `claim` (ms); false when its business event
/// already has one.
async fn insert(tx: &mut Transaction<'_, Any>, exchange: &Exchange, claim: i64) -> Result<bool, sqlx::Error> {
    let sql = format!(
        "INSERT INTO exchanges ({COLUMNS}, claimed_until) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
         $13, $14, $15, $16, $17, $17, 0, $18)"
    );
    let query = sqlx::query(&sql)
        .bind(&exchange.id)
        .bind(&exchange.business_event_id)
        .bind(exchange.kind.as_str())
        .bind(exchange.user_id)
        .bind(&exchange.offer_id)
        .bind(exchange.quantity)
        .bind(to_json(&exchange.paid)?)
        .bind(to_json(&exchange.reward)?)
        .bind(&exchange.business_type)
        .bind(&exchange.correlation_id);
    let inserted = bind_progress(query, exchange)?.bind(exchange.created_at).bind(claim).execute(&mut **tx).await;
    match inserted {
        Ok(_) => Ok(true),
        Err(error) if is_unique_violation(&error) => Ok(false),
        Err(error) => Err(error),
    }
}

impl MarketStore {
    /// Reserves `exchange.quantity` units of `offer` (as read, at its version) for
    /// `exchange.user_id` at `exchange.created_at` and stores the exchange `reserved`,
    /// claimed until `claim` (ms), in one transaction: the user's total and rolling-window
    /// caps, then the stock, each checked against the committed state under the row locks
    /// that serialize them.
    pub async fn reserve(&self, offer: &Offer, exchange: &Exchange, claim: i64) -> Result<Reserve, MarketError> {
        let mut writer = self.db.writer().await?;
        let mut tx = writer.begin().await?;
        let reserved = reserve_in(&mut tx, offer, exchange, claim).await?;
        if reserved == Reserve::Reserved {
            tx.commit().await?;
        }
        Ok(reserved)
    }

    /// Stores a bundle's exchange as it is, claimed until `claim` (ms); false when its
    /// business event has one.
    pub async fn insert_bundle(&self, exchange: &Exchange, claim: i64) -> Result<bool, MarketError> {
        let mut writer = self.db.writer().await?;
        let mut tx = writer.begin().await?;
        let inserted = insert(&mut tx, exchange, claim).await?;
        if inserted {
            tx.commit().await?;
        }
        Ok(inserted)
    }

    /// Claims the unfinished exchange `exchange_id` at `now` until `until` (ms) unless
    /// another runner's claim is still running; true when claimed.
    pub async fn claim_exchange(&self, exchange_id: &str, now: i64, until: i64) -> Result<bool, sqlx::Error> {
        let mut writer = self.db.writer().await?;
        let claimed = sqlx::query(
            "UPDATE exchanges SET claimed_until = $1 WHERE exchange_id = $2 AND claimed_until <= $3 \
             AND status IN ('reserved', 'paid', 'granted', 'compensating')",
        )
        .bind(until)
        .bind(exchange_id)
        .bind(now)
        .execute(&mut *writer)
        .await?;
        Ok(claimed.rows_affected() == 1)
    }

    /// Saves `exchange` (its status, what its steps recorded, its finish) at `now` if it is
    /// still in `save.from` under the claim `save.claim`, and claims it until
    /// `save.next_claim` (0: released); false when the claim was lost. Saved `failed`, an
    /// offer purchase returns its units to the offer's stock and the user's count in the
    /// same transaction.
    pub async fn save_exchange(&self, save: &Save, exchange: &Exchange, now: i64) -> Result<bool, MarketError> {
        let mut writer = self.db.writer().await?;
        let mut tx = writer.begin().await?;
        let query = sqlx::query(
            "UPDATE exchanges SET status = $1, payment_hold_ids = $2, granted_items = $3, ledger_transaction_ids = $4, \
             failure_reason = $5, failure_asset_code = $6, updated_at = $7, finished_at = $8, claimed_until = $9 \
             WHERE exchange_id = $10 AND status = $11 AND claimed_until = $12",
        );
        let saved = bind_progress(query, exchange)?
            .bind(now)
            .bind(exchange.finished_at.unwrap_or(0))
            .bind(save.next_claim)
            .bind(&exchange.id)
            .bind(save.from.as_str())
            .bind(save.claim)
            .execute(&mut *tx)
            .await?;
        if saved.rows_affected() != 1 {
            return Ok(false);
        }
        if exchange.status == ExchangeStatus::Failed && exchange.kind == ExchangeKind::OfferPurchase {
            return_reservation(&mut tx, exchange).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// The exchange `exchange_id`.
    pub async fn exchange(&self, exchange_id: &str) -> Result<Option<Exchange>, sqlx::Error> {
        self.one_exchange("exchange_id", exchange_id).await
    }

    /// The exchange of business event `key`.
    pub async fn exchange_by_event(&self, key: &str) -> Result<Option<Exchange>, sqlx::Error> {
        self.one_exchange("business_event_id", key).await
    }

    async fn one_exchange(&self, column: &str, value: &str) -> Result<Option<Exchange>, sqlx::Error> {
        let sql = format!("SELECT {COLUMNS} FROM exchanges WHERE {column} = $1");
        let row = sqlx::query(&sql).bind(value).fetch_optional(self.db.pool()).await?;
        row.as_ref().map(exchange_from_row).transpose()
    }

    /// Up to `limit` of `user_id`'s exchanges with ids below `before` (`''`: from the
    /// newest), newest first.
    pub async fn exchanges_of(&self, user_id: i64, before: &str, limit: i64) -> Result<Vec<Exchange>, sqlx::Error> {
        let below = if before.is_empty() { "" } else { "AND exchange_id < $3" };
        let sql =
            format!("SELECT {COLUMNS} FROM exchanges WHERE user_id = $1 {below} ORDER BY exchange_id DESC LIMIT $2");
        let mut query = sqlx::query(&sql).bind(user_id).bind(limit);
        if !before.is_empty() {
            query = query.bind(before);
        }
        let rows = query.fetch_all(self.db.pool()).await?;
        rows.iter().map(exchange_from_row).collect()
    }

    /// Unfinished exchanges untouched since `cutoff` and unclaimed at `now`, least
    /// recently touched first: the recovery worker's work.
    pub async fn stalled_exchanges(&self, cutoff: i64, now: i64, limit: i64) -> Result<Vec<Exchange>, sqlx::Error> {
        let sql = format!(
            "SELECT {COLUMNS} FROM exchanges WHERE status IN ('reserved', 'paid', 'granted', 'compensating') \
             AND updated_at <= $1 AND claimed_until <= $2 ORDER BY updated_at, exchange_id LIMIT $3"
        );
        let rows = sqlx::query(&sql).bind(cutoff).bind(now).bind(limit).fetch_all(self.db.pool()).await?;
        rows.iter().map(exchange_from_row).collect()
    }

    /// Unfinished exchanges created at or before `cutoff`, oldest first: the consistency
    /// check's view.
    pub async fn stuck_exchanges(&self, cutoff: i64, limit: i64) -> Result<Vec<Exchange>, sqlx::Error> {
        let sql = format!(
            "SELECT {COLUMNS} FROM exchanges WHERE status IN ('reserved', 'paid', 'granted', 'compensating') \
             AND created_at <= $1 ORDER BY created_at, exchange_id LIMIT $2"
        );
        let rows = sqlx::query(&sql).bind(cutoff).bind(limit).fetch_all(self.db.pool()).await?;
        rows.iter().map(exchange_from_row).collect()
    }
}

/// [`MarketStore::reserve`]'s statements in `tx`; anything but `Reserved` is rolled back
/// by the caller.
async fn reserve_in(
    tx: &mut Transaction<'_, Any>,
    offer: &Offer,
    exchange: &Exchange,
    claim: i64,
) -> Result<Reserve, MarketError> {
    let (offer_id, user_id, quantity, now) =
        (&offer.definition.id, exchange.user_id, exchange.quantity, exchange.created_at);
    let limit = offer.definition.limit;
    sqlx::query(
        "INSERT INTO offer_user_counts (offer_id, user_id, units) VALUES ($1, $2, 0) \
         ON CONFLICT (offer_id, user_id) DO NOTHING",
    )
    .bind(offer_id)
    .bind(user_id)
    .execute(&mut **tx)
    .await?;
    let counted = sqlx::query(
        "UPDATE offer_user_counts SET units = units + $3 WHERE offer_id = $1 AND user_id = $2 \
         AND ($4 = 0 OR units + $3 <= $4)",
    )
    .bind(offer_id)
    .bind(user_id)
    .bind(quantity)
    .bind(limit.total)
    .execute(&mut **tx)
    .await?;
    if counted.rows_affected() != 1 {
        return Ok(Reserve::LimitReached("total"));
    }
    if limit.per_window > 0 {
        let since = now.saturating_sub(limit.window_secs.saturating_mul(1000));
        let recent: i64 = sqlx::query(
            "SELECT CAST(COALESCE(SUM(quantity), 0) AS BIGINT) FROM exchanges WHERE offer_id = $1 AND user_id = $2 \
             AND created_at > $3 AND status <> 'failed'",
        )
        .bind(offer_id)
        .bind(user_id)
        .bind(since)
        .fetch_one(&mut **tx)
        .await?
        .try_get(0)?;
        if recent.saturating_add(quantity) > limit.per_window {
            return Ok(Reserve::LimitReached("window"));
        }
    }
    let taken = sqlx::query(
        "UPDATE offers SET sold = sold + $3 WHERE offer_id = $1 AND version = $2 AND enabled = 1 \
         AND (starts_at = 0 OR starts_at <= $4) AND (ends_at = 0 OR ends_at > $4) AND (stock = -1 OR sold + $3 <= stock)",
    )
    .bind(offer_id)
    .bind(offer.version)
    .bind(quantity)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    if taken.rows_affected() != 1 {
        return why_not_taken(tx, offer, now).await;
    }
    Ok(if insert(tx, exchange, claim).await? { Reserve::Reserved } else { Reserve::Duplicate })
}

/// Why the stock's UPDATE took nothing: the definition changed, the offer is not active,
/// or its stock left is short.
async fn why_not_taken(tx: &mut Transaction<'_, Any>, offer: &Offer, now: i64) -> Result<Reserve, MarketError> {
    let sql = format!("SELECT {} FROM offers WHERE offer_id = $1", super::offers::COLUMNS);
    let row = sqlx::query(&sql).bind(&offer.definition.id).fetch_optional(&mut **tx).await?;
    let current = row.as_ref().map(super::offers::offer_from_row).transpose()?;
    Ok(match current {
        Some(current) if current.version != offer.version => Reserve::Changed,
        Some(current) if !current.is_active(now) => Reserve::NotActive,
        Some(current) => Reserve::SoldOut(current.remaining().unwrap_or(0)),
        None => Reserve::Changed,
    })
}

/// Gives a failed purchase's units back: the user's count first, then the offer's stock
/// (the order [`reserve_in`] locks them in).
async fn return_reservation(tx: &mut Transaction<'_, Any>, exchange: &Exchange) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE offer_user_counts SET units = units - $3 WHERE offer_id = $1 AND user_id = $2")
        .bind(&exchange.offer_id)
        .bind(exchange.user_id)
        .bind(exchange.quantity)
        .execute(&mut **tx)
        .await?;
    sqlx::query("UPDATE offers SET sold = sold - $2 WHERE offer_id = $1")
        .bind(&exchange.offer_id)
        .bind(exchange.quantity)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
