//! Offers of the shop (docs/market.md, "Offers"): the definition as a PUT with a version
//! compare-and-set, disabling, reads and pages by id.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{MarketStore, instant, json, to_json};
use crate::domain::{MarketError, Offer, OfferDefinition, PurchaseLimit};

pub(super) const COLUMNS: &str = "offer_id, display_name, price, reward, stock, sold, limit_total, \
     limit_per_window, limit_window_secs, starts_at, ends_at, enabled, metadata, version, created_at, updated_at";

/// What a definition did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Defined {
    /// The offer did not exist.
    Created,
    /// Its definition changed (version + 1).
    Changed,
    /// It was already defined so.
    Unchanged,
}

pub(super) fn offer_from_row(row: &AnyRow) -> Result<Offer, sqlx::Error> {
    let stock: i64 = row.try_get("stock")?;
    let enabled: i64 = row.try_get("enabled")?;
    Ok(Offer {
        definition: OfferDefinition {
            id: row.try_get("offer_id")?,
            display_name: row.try_get("display_name")?,
            price: json(row, "price")?,
            reward: json(row, "reward")?,
            stock: (stock >= 0).then_some(stock),
            limit: PurchaseLimit {
                total: row.try_get("limit_total")?,
                per_window: row.try_get("limit_per_window")?,
                window_secs: row.try_get("limit_window_secs")?,
            },
            starts_at: instant(row.try_get("starts_at")?),
            ends_at: instant(row.try_get("ends_at")?),
            enabled: enabled == 1,
            metadata: json(row, "metadata")?,
        },
        sold: row.try_get("sold")?,
        version: row.try_get("version")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl MarketStore {
    /// The offer `offer_id`.
    pub async fn offer(&self, offer_id: &str) -> Result<Option<Offer>, sqlx::Error> {
        let sql = format!("SELECT {COLUMNS} FROM offers WHERE offer_id = $1");
        let row = sqlx::query(&sql).bind(offer_id).fetch_optional(self.db.pool()).await?;
        row.as_ref().map(offer_from_row).transpose()
    }

    /// Stores `definition` at `now`: creates the offer, or replaces the definition of the
    /// existing one (its `sold` kept, its version + 1) when it differs. Returns the offer
    /// as stored and what happened. Concurrent definitions are applied one after the other
    /// (a compare-and-set on the version).
    pub async fn define_offer(&self, definition: &OfferDefinition, now: i64) -> Result<(Offer, Defined), MarketError> {
        loop {
            let defined = match self.offer(&definition.id).await? {
                None => self.insert_offer(definition, now).await?.then_some(Defined::Created),
                Some(existing) if existing.definition == *definition => return Ok((existing, Defined::Unchanged)),
                Some(existing) => {
                    self.replace_offer(definition, existing.version, now).await?.then_some(Defined::Changed)
                }
            };
            if let Some(defined) = defined {
                let offer = self.offer(&definition.id).await?;
                let offer = offer.ok_or_else(|| MarketError::Storage("defined offer vanished".into()))?;
                return Ok((offer, defined));
            }
        }
    }

    async fn insert_offer(&self, definition: &OfferDefinition, now: i64) -> Result<bool, sqlx::Error> {
        let sql = format!(
            "INSERT INTO offers ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, 0, $6, $7, $8, $9, $10, $11, $12, 1, $13, $13) \
             ON CONFLICT (offer_id) DO NOTHING"
        );
        let query = bind_definition(sqlx::query(&sql), definition)?.bind(now);
        let mut writer = self.db.writer().await?;
        Ok(query.execute(&mut *writer).await?.rows_affected() == 1)
    }

    async fn replace_offer(&self, definition: &OfferDefinition, version: i64, now: i64) -> Result<bool, sqlx::Error> {
        let sql = "UPDATE offers SET offer_id = $1, display_name = $2, price = $3, reward = $4, stock = $5, \
                   limit_total = $6, limit_per_window = $7, limit_window_secs = $8, starts_at = $9, ends_at = $10, \
                   enabled = $11, metadata = $12, version = version + 1, updated_at = $13 \
                   WHERE offer_id = $1 AND version = $14";
        let query = bind_definition(sqlx::query(sql), definition)?.bind(now).bind(version);
        let mut writer = self.db.writer().await?;
        Ok(query.execute(&mut *writer).await?.rows_affected() == 1)
    }

    /// Disables the offer at `now` (version + 1); false when it was not enabled.
    pub async fn disable_offer(&self, offer_id: &str, now: i64) -> Result<bool, sqlx::Error> {
        let mut writer = self.db.writer().await?;
        let disabled = sqlx::query(
            "UPDATE offers SET enabled = 0, version = version + 1, updated_at = $1 WHERE offer_id = $2 AND enabled = 1",
        )
        .bind(now)
        .bind(offer_id)
        .execute(&mut *writer)
        .await?;
        Ok(disabled.rows_affected() == 1)
    }

    /// Up to `limit` offers with ids after `after`, by id; with `active_at`, only those
    /// enabled and inside their window at that instant.
    pub async fn offers(&self, active_at: Option<i64>, after: &str, limit: i64) -> Result<Vec<Offer>, sqlx::Error> {
        let active = "AND enabled = 1 AND (starts_at = 0 OR starts_at <= $3) AND (ends_at = 0 OR ends_at > $3)";
        let filter = if active_at.is_some() { active } else { "" };
        let sql = format!("SELECT {COLUMNS} FROM offers WHERE offer_id > $1 {filter} ORDER BY offer_id LIMIT $2");
        let mut query = sqlx::query(&sql).bind(after).bind(limit);
        if let Some(now) = active_at {
            query = query.bind(now);
        }
        let rows = query.fetch_all(self.db.pool()).await?;
        rows.iter().map(offer_from_row).collect()
    }
}

/// Binds `$1..$12` of a definition: id, display name, price, reward, stock (-1 for
/// unlimited), limits, window (0 for none), enabled (0/1), metadata.
fn bind_definition<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    definition: &'q OfferDefinition,
) -> Result<sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>, sqlx::Error> {
    Ok(query
        .bind(&definition.id)
        .bind(&definition.display_name)
        .bind(to_json(&definition.price)?)
        .bind(to_json(&definition.reward)?)
        .bind(definition.stock.unwrap_or(-1))
        .bind(definition.limit.total)
        .bind(definition.limit.per_window)
        .bind(definition.limit.window_secs)
        .bind(definition.starts_at.unwrap_or(0))
        .bind(definition.ends_at.unwrap_or(0))
        .bind(i64::from(definition.enabled))
        .bind(to_json(&definition.metadata)?))
}
