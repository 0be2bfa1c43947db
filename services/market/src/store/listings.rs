//! Listings: creation, compare-and-set status changes, browsing.

use economy_kit::db::is_unique_violation;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::outbox::insert_outbox;
use super::{MarketStore, instant, present};
use crate::domain::{Goods, Listing, ListingStatus, MarketError, Price};

const COLUMNS: &str = "listing_id, seller_user_id, offer_kind, asset_code, asset_amount, item_instance_id, \
                       item_template_code, price_asset, price_amount, status, hold_id, created_at, expires_at, closed_at";

/// Outcome of inserting a new listing.
#[derive(Debug, PartialEq, Eq)]
pub enum Insert {
    /// Stored.
    Created,
    /// The creation key or the item's open listing already exists.
    Duplicate,
}

/// Order of browsed listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    /// Newest first.
    Newest,
    /// Cheapest first, then newest.
    PriceAscending,
    /// Most expensive first, then newest.
    PriceDescending,
}

/// A browse of listings on sale.
#[derive(Debug, Clone)]
pub struct Browse<'a> {
    /// Only this asset (`''`: any).
    pub asset_code: &'a str,
    /// Only items of this template (`''`: any).
    pub template_code: &'a str,
    /// Order.
    pub sort: Sort,
    /// Continue after this `(price, listing id)` (from the page token).
    pub after: Option<(i64, String)>,
    /// Rows to return.
    pub limit: i64,
    /// Now: expired listings are left out.
    pub now: i64,
}

fn listing_from_row(row: &AnyRow) -> Result<Listing, sqlx::Error> {
    let decode = |what: &str| sqlx::Error::Decode(format!("bad listing {what}").into());
    let offer = match row.try_get::<String, _>("offer_kind")?.as_str() {
        "asset" => Goods::Asset { code: row.try_get("asset_code")?, amount: row.try_get("asset_amount")? },
        "item" => Goods::Item { id: row.try_get("item_instance_id")?, template: row.try_get("item_template_code")? },
        _ => return Err(decode("offer kind")),
    };
    let status: String = row.try_get("status")?;
    Ok(Listing {
        id: row.try_get("listing_id")?,
        seller_user_id: row.try_get("seller_user_id")?,
        offer,
        price: Price { asset: row.try_get("price_asset")?, amount: row.try_get("price_amount")? },
        status: ListingStatus::parse(&status).ok_or_else(|| decode("status"))?,
        hold_id: present(row.try_get("hold_id")?),
        created_at: row.try_get("created_at")?,
        expires_at: instant(row.try_get("expires_at")?),
        closed_at: instant(row.try_get("closed_at")?),
    })
}

/// The compare-and-set of every listing status change (final statuses set `closed_at`).
pub(super) async fn move_listing(
    conn: &mut AnyConnection,
    listing_id: &str,
    from: ListingStatus,
    to: ListingStatus,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE listings SET status = $1, updated_at = $2, closed_at = $3 WHERE listing_id = $4 AND status = $5",
    )
    .bind(to.as_str())
    .bind(now)
    .bind(if to.closes() { now } else { 0 })
    .bind(listing_id)
    .bind(from.as_str())
    .execute(conn)
    .await?;
    Ok(updated.rows_affected() == 1)
}

impl MarketStore {
    /// Listings on sale or being sold (on the `listings_due` index).
    pub async fn open_listings(&self) -> Result<i64, sqlx::Error> {
        let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM listings WHERE status IN ('on_sale', 'selling')")
            .fetch_one(self.db.pool())
            .await?;
        Ok(count)
    }

    /// Stores a new `creating` listing under its creation key.
    pub async fn insert_listing(&self, listing: &Listing, create_key: &str) -> Result<Insert, sqlx::Error> {
        let (kind, asset, amount, item, template) = match &listing.offer {
            Goods::Asset { code, amount } => ("asset", code.as_str(), *amount, "", ""),
            Goods::Item { id, template } => ("item", "", 0, id.as_str(), template.as_str()),
        };
        let result = sqlx::query(
            "INSERT INTO listings (listing_id, create_key, seller_user_id, offer_kind, asset_code, asset_amount, \
             item_instance_id, item_template_code, price_asset, price_amount, status, hold_id, created_at, \
             updated_at, expires_at, closed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, '', $12, $12, $13, 0)",
        )
        .bind(&listing.id)
        .bind(create_key)
        .bind(listing.seller_user_id)
        .bind(kind)
        .bind(asset)
        .bind(amount)
        .bind(item)
        .bind(template)
        .bind(&listing.price.asset)
        .bind(listing.price.amount)
        .bind(listing.status.as_str())
        .bind(listing.created_at)
        .bind(listing.expires_at.unwrap_or(0))
        .execute(&mut *self.db.writer().await?)
        .await;
        match result {
            Ok(_) => Ok(Insert::Created),
            Err(error) if is_unique_violation(&error) => Ok(Insert::Duplicate),
            Err(error) => Err(error),
        }
    }

    async fn one(&self, condition: &str, value: &str) -> Result<Option<Listing>, sqlx::Error> {
        let sql = format!("SELECT {COLUMNS} FROM listings WHERE {condition}");
        let row = sqlx::query(&sql).bind(value).fetch_optional(self.db.pool()).await?;
        row.as_ref().map(listing_from_row).transpose()
    }

    /// The listing `listing_id`.
    pub async fn listing(&self, listing_id: &str) -> Result<Option<Listing>, sqlx::Error> {
        self.one("listing_id = $1", listing_id).await
    }

    /// The listing created with `create_key`.
    pub async fn listing_by_create_key(&self, create_key: &str) -> Result<Option<Listing>, sqlx::Error> {
        self.one("create_key = $1", create_key).await
    }

    /// The open listing of an item.
    pub async fn open_listing_of_item(&self, item_id: &str) -> Result<Option<Listing>, sqlx::Error> {
        let condition =
            "item_instance_id = $1 AND offer_kind = 'item' AND status IN ('creating', 'on_sale', 'selling')";
        self.one(condition, item_id).await
    }

    /// `creating -> on_sale` once the escrow exists (`hold_id` of an asset listing, `''`
    /// for an item). False when the listing had left `creating`.
    pub async fn put_on_sale(&self, listing_id: &str, hold_id: &str, now: i64) -> Result<bool, sqlx::Error> {
        let updated = sqlx::query(
            "UPDATE listings SET status = 'on_sale', hold_id = $1, updated_at = $2 \
             WHERE listing_id = $3 AND status = 'creating'",
        )
        .bind(hold_id)
        .bind(now)
        .bind(listing_id)
        .execute(&mut *self.db.writer().await?)
        .await?;
        Ok(updated.rows_affected() == 1)
    }

    /// One compare-and-set of a listing's status.
    pub async fn move_listing(
        &self,
        listing_id: &str,
        from: ListingStatus,
        to: ListingStatus,
        now: i64,
    ) -> Result<bool, sqlx::Error> {
        let mut writer = self.db.writer().await?;
        let mut tx = writer.begin().await?;
        let moved = move_listing(&mut tx, listing_id, from, to, now).await?;
        let committed = tx.commit().await;
        writer.finish(committed)?;
        Ok(moved)
    }

    /// `on_sale -> cancelled | expired` with the escrow return owed in the outbox, in one
    /// transaction; a cancellation also records its key (`cancel_key`, actor). False when
    /// the listing was no longer on sale, or, for expiry, not yet expired at `now`, or, for
    /// a cancellation, already expired at `now`.
    pub async fn close_unsold(
        &self,
        listing_id: &str,
        to: ListingStatus,
        cancel_key: Option<(&str, &str)>,
        now: i64,
    ) -> Result<bool, MarketError> {
        let mut writer = self.db.writer().await?;
        let mut tx = writer.begin().await?;
        // An expiry only applies to a listing whose expiry has passed, a cancellation only
        // to one whose expiry has not.
        let expiring = i64::from(to == ListingStatus::Expired);
        let moved = sqlx::query(
            "UPDATE listings SET status = $1, updated_at = $2, closed_at = $2 WHERE listing_id = $3 \
             AND status = 'on_sale' AND (CASE WHEN expires_at > 0 AND expires_at <= $2 THEN 1 ELSE 0 END) = $4",
        )
        .bind(to.as_str())
        .bind(now)
        .bind(listing_id)
        .bind(expiring)
        .execute(&mut *tx)
        .await?;
        if moved.rows_affected() != 1 {
            return Ok(false);
        }
        if let Some((key, actor)) = cancel_key {
            sqlx::query(
                "INSERT INTO listing_cancellations (idempotency_key, listing_id, actor, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(key)
            .bind(listing_id)
            .bind(actor)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|error| match is_unique_violation(&error) {
                true => MarketError::IdempotencyKeyReused(key.to_owned()),
                false => error.into(),
            })?;
        }
        insert_outbox(&mut tx, listing_id, now).await?;
        let committed = tx.commit().await;
        writer.finish(committed)?;
        Ok(true)
    }

    /// The listing a cancellation key cancelled.
    pub async fn cancellation(&self, key: &str) -> Result<Option<String>, sqlx::Error> {
        let row = sqlx::query("SELECT listing_id FROM listing_cancellations WHERE idempotency_key = $1")
            .bind(key)
            .fetch_optional(self.db.pool())
            .await?;
        row.map(|row| row.try_get("listing_id")).transpose()
    }

    /// Listings still `creating` since before `cutoff` (their creator gave up).
    pub async fn stale_creating(&self, cutoff: i64, limit: i64) -> Result<Vec<Listing>, sqlx::Error> {
        let sql = format!(
            "SELECT {COLUMNS} FROM listings WHERE status = 'creating' AND updated_at <= $1 ORDER BY updated_at LIMIT $2"
        );
        let rows = sqlx::query(&sql).bind(cutoff).bind(limit).fetch_all(self.db.pool()).await?;
        rows.iter().map(listing_from_row).collect()
    }

    /// Listings on sale whose expiry is at or before `now`.
    pub async fn expired_on_sale(&self, now: i64, limit: i64) -> Result<Vec<String>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT listing_id FROM listings WHERE status = 'on_sale' AND expires_at > 0 AND expires_at <= $1 \
             ORDER BY expires_at LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(|row| row.try_get("listing_id")).collect()
    }

    /// One page of listings on sale.
    pub async fn browse(&self, browse: &Browse<'_>) -> Result<Vec<Listing>, sqlx::Error> {
        let (order, after) = match browse.sort {
            Sort::Newest => ("listing_id DESC", "listing_id < $4"),
            Sort::PriceAscending => {
                ("price_amount ASC, listing_id DESC", "(price_amount > $3 OR (price_amount = $3 AND listing_id < $4))")
            }
            Sort::PriceDescending => {
                ("price_amount DESC, listing_id DESC", "(price_amount < $3 OR (price_amount = $3 AND listing_id < $4))")
            }
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM listings WHERE status = 'on_sale' AND ($1 = '' OR asset_code = $1) \
             AND ($2 = '' OR item_template_code = $2) AND ($5 = 0 OR {after}) \
             AND (expires_at = 0 OR expires_at > $6) ORDER BY {order} LIMIT $7"
        );
        let (price, id) = browse.after.clone().unwrap_or((0, String::new()));
        let rows = sqlx::query(&sql)
            .bind(browse.asset_code)
            .bind(browse.template_code)
            .bind(price)
            .bind(id)
            .bind(i64::from(browse.after.is_some()))
            .bind(browse.now)
            .bind(browse.limit)
            .fetch_all(self.db.pool())
            .await?;
        rows.iter().map(listing_from_row).collect()
    }
}
