//! Orders: creation, compare-and-set status changes and reads.

use economy_kit::db::is_unique_violation;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::RedemptionStore;
use super::outbox::{OutboxAction, insert_outbox};
use crate::domain::{Order, OrderStatus, RedemptionError};

const COLUMNS: &str = "order_id, item_instance_id, owner_user_id, status, created_by, created_at, expires_at, \
                       code_issued_at, resolved_at, redeemer_user_id";

/// Outcome of inserting a new `locking` order.
#[derive(Debug, PartialEq, Eq)]
pub enum Insert {
    /// Stored.
    Created,
    /// A UNIQUE constraint refused it: the creation key, the item's open order or the
    /// code hash already exists (the caller finds out which).
    Duplicate,
}

/// A move out of `pending` (fulfil, cancel, expiry) with what it owes Items.
#[derive(Debug)]
pub struct Resolution<'a> {
    /// The order.
    pub order_id: &'a str,
    /// `fulfilled`, `cancelled` or `expired`.
    pub to: OrderStatus,
    /// Now, ms.
    pub now: i64,
    /// The staff user fulfilling.
    pub redeemer_user_id: Option<i64>,
    /// The request that resolved it (fulfil and cancel; none for expiry).
    pub action: Option<Action<'a>>,
    /// The Items call owed once committed.
    pub owed: OutboxAction,
    /// The item.
    pub item_instance_id: &'a str,
}

/// A request that resolved an order, kept for idempotency and audit.
#[derive(Debug, Clone, Copy)]
pub struct Action<'a> {
    /// Its idempotency key (UNIQUE).
    pub key: &'a str,
    /// `fulfill` or `cancel`.
    pub name: &'a str,
    /// `user:<id>` or `service:<name>`.
    pub actor: &'a str,
    /// Free text (a cancellation's reason).
    pub reason: &'a str,
}

/// Which orders to list.
#[derive(Debug)]
pub struct OrderFilter<'a> {
    /// One owner's orders.
    pub owner_user_id: Option<i64>,
    /// One item's orders.
    pub item_instance_id: Option<&'a str>,
    /// Only this status.
    pub status: Option<OrderStatus>,
    /// Ids strictly below this one (the page token).
    pub before: Option<&'a str>,
    /// Rows to return.
    pub limit: i64,
}

fn order_from_row(row: &AnyRow) -> Result<Order, sqlx::Error> {
    let status: String = row.try_get("status")?;
    Ok(Order {
        id: row.try_get("order_id")?,
        item_instance_id: row.try_get("item_instance_id")?,
        owner_user_id: row.try_get("owner_user_id")?,
        status: OrderStatus::parse(&status)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown order status {status}").into()))?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        code_issued_at: row.try_get("code_issued_at")?,
        resolved_at: row.try_get("resolved_at")?,
        redeemer_user_id: row.try_get("redeemer_user_id")?,
    })
}

impl RedemptionStore {
    /// Stores a new `locking` order with its code hash and creation key.
    pub async fn insert_order(&self, order: &Order, code_hash: &str, create_key: &str) -> Result<Insert, sqlx::Error> {
        let result = sqlx::query(
            "INSERT INTO redemption_orders (order_id, item_instance_id, owner_user_id, status, code_hash, create_key, \
             created_by, created_at, expires_at, code_issued_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&order.id)
        .bind(&order.item_instance_id)
        .bind(order.owner_user_id)
        .bind(order.status.as_str())
        .bind(code_hash)
        .bind(create_key)
        .bind(&order.created_by)
        .bind(order.created_at)
        .bind(order.expires_at)
        .bind(order.code_issued_at)
        .execute(&mut *self.db.writer().await?)
        .await;
        match result {
            Ok(_) => Ok(Insert::Created),
            Err(error) if is_unique_violation(&error) => Ok(Insert::Duplicate),
            Err(error) => Err(error),
        }
    }

    async fn one(&self, column: &str, value: &str) -> Result<Option<Order>, sqlx::Error> {
        let sql = format!("SELECT {COLUMNS} FROM redemption_orders WHERE {column} = $1");
        let row = sqlx::query(&sql).bind(value).fetch_optional(self.db.pool()).await?;
        row.as_ref().map(order_from_row).transpose()
    }

    /// The order `order_id`.
    pub async fn order(&self, order_id: &str) -> Result<Option<Order>, sqlx::Error> {
        self.one("order_id", order_id).await
    }

    /// The order created with `create_key`.
    pub async fn order_by_create_key(&self, create_key: &str) -> Result<Option<Order>, sqlx::Error> {
        self.one("create_key", create_key).await
    }

    /// The order whose current code hashes to `code_hash`.
    pub async fn order_by_code_hash(&self, code_hash: &str) -> Result<Option<Order>, sqlx::Error> {
        self.one("code_hash", code_hash).await
    }

    /// The open (`locking` or `pending`) order of an item.
    pub async fn open_order_of_item(&self, item_instance_id: &str) -> Result<Option<Order>, sqlx::Error> {
        let sql = format!(
            "SELECT {COLUMNS} FROM redemption_orders WHERE item_instance_id = $1 AND status IN ('locking', 'pending')"
        );
        let row = sqlx::query(&sql).bind(item_instance_id).fetch_optional(self.db.pool()).await?;
        row.as_ref().map(order_from_row).transpose()
    }

    /// Gives an order in `from` (`locking` or `pending`) a new code hash, replacing the
    /// old one, and moves it to `pending`; false when it is no longer in `from` or, when
    /// `pending`, its `expires_at` is not after `now`. A code-hash collision is a UNIQUE
    /// violation error: the caller retries with another code.
    pub async fn issue_code(
        &self,
        order_id: &str,
        from: OrderStatus,
        code_hash: &str,
        now: i64,
    ) -> Result<bool, sqlx::Error> {
        let updated = sqlx::query(
            "UPDATE redemption_orders SET status = 'pending', code_hash = $1, code_issued_at = $2 \
             WHERE order_id = $3 AND status = $4 AND (status = 'locking' OR expires_at > $2)",
        )
        .bind(code_hash)
        .bind(now)
        .bind(order_id)
        .bind(from.as_str())
        .execute(&mut *self.db.writer().await?)
        .await?;
        Ok(updated.rows_affected() == 1)
    }

    /// `locking -> failed` (the item could not be locked), owing an unlock when
    /// `owe_unlock` (the lock may have happened). False when the order had left `locking`.
    pub async fn fail_locking(
        &self,
        order_id: &str,
        item_instance_id: &str,
        now: i64,
        owe_unlock: bool,
    ) -> Result<bool, RedemptionError> {
        let mut writer = self.db.writer().await?;
        let mut tx = writer.begin().await?;
        let moved = move_status(&mut tx, order_id, OrderStatus::Locking, OrderStatus::Failed, now, None, None).await?;
        if moved && owe_unlock {
            insert_outbox(&mut tx, order_id, item_instance_id, OutboxAction::Unlock, now).await?;
        }
        let committed = tx.commit().await;
        writer.finish(committed)?;
        Ok(moved)
    }

    /// Moves a pending order to its resolution, recording the request's key and the
    /// Items call it owes, in one transaction. A fulfil also requires `expires_at > now`.
    /// False when the order was no longer pending (someone else won).
    pub async fn resolve(&self, resolution: &Resolution<'_>) -> Result<bool, RedemptionError> {
        let mut writer = self.db.writer().await?;
        let mut tx = writer.begin().await?;
        let unexpired = (resolution.to == OrderStatus::Fulfilled).then_some(resolution.now);
        let moved = move_status(
            &mut tx,
            resolution.order_id,
            OrderStatus::Pending,
            resolution.to,
            resolution.now,
            resolution.redeemer_user_id,
            unexpired,
        )
        .await?;
        if !moved {
            return Ok(false);
        }
        if let Some(action) = resolution.action {
            sqlx::query(
                "INSERT INTO redemption_actions (idempotency_key, order_id, action, actor, reason, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(action.key)
            .bind(resolution.order_id)
            .bind(action.name)
            .bind(action.actor)
            .bind(action.reason)
            .bind(resolution.now)
            .execute(&mut *tx)
            .await
            .map_err(|error| match is_unique_violation(&error) {
                true => RedemptionError::IdempotencyKeyReused(action.key.to_owned()),
                false => error.into(),
            })?;
        }
        insert_outbox(&mut tx, resolution.order_id, resolution.item_instance_id, resolution.owed, resolution.now)
            .await?;
        let committed = tx.commit().await;
        writer.finish(committed)?;
        Ok(true)
    }

    /// The order and action a request key resolved, if any.
    pub async fn action(&self, key: &str) -> Result<Option<(String, String)>, sqlx::Error> {
        let row = sqlx::query("SELECT order_id, action FROM redemption_actions WHERE idempotency_key = $1")
            .bind(key)
            .fetch_optional(self.db.pool())
            .await?;
        row.map(|row| Ok((row.try_get("order_id")?, row.try_get("action")?))).transpose()
    }

    /// Orders in `status` whose `column` is at or before `cutoff`, oldest first.
    pub async fn due(
        &self,
        status: OrderStatus,
        column: &str,
        cutoff: i64,
        limit: i64,
    ) -> Result<Vec<Order>, sqlx::Error> {
        let sql = format!(
            "SELECT {COLUMNS} FROM redemption_orders WHERE status = $1 AND {column} <= $2 ORDER BY {column} LIMIT $3"
        );
        let rows = sqlx::query(&sql).bind(status.as_str()).bind(cutoff).bind(limit).fetch_all(self.db.pool()).await?;
        rows.iter().map(order_from_row).collect()
    }

    /// Pending orders whose expiry is at or before `now` (on the `redemption_orders_open`
    /// index).
    pub async fn expired_pending(&self, now: i64) -> Result<i64, sqlx::Error> {
        let (count,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM redemption_orders WHERE status = 'pending' AND expires_at <= $1")
                .bind(now)
                .fetch_one(self.db.pool())
                .await?;
        Ok(count)
    }

    /// One page of orders, newest first.
    pub async fn list(&self, filter: &OrderFilter<'_>) -> Result<Vec<Order>, sqlx::Error> {
        let sql = format!(
            "SELECT {COLUMNS} FROM redemption_orders WHERE ($1 = 0 OR owner_user_id = $1) \
             AND ($2 = '' OR item_instance_id = $2) AND ($3 = '' OR status = $3) \
             AND ($4 = '' OR order_id < $4) ORDER BY order_id DESC LIMIT $5"
        );
        let rows = sqlx::query(&sql)
            .bind(filter.owner_user_id.unwrap_or(0))
            .bind(filter.item_instance_id.unwrap_or_default())
            .bind(filter.status.map_or("", OrderStatus::as_str))
            .bind(filter.before.unwrap_or_default())
            .bind(filter.limit)
            .fetch_all(self.db.pool())
            .await?;
        rows.iter().map(order_from_row).collect()
    }
}

/// The compare-and-set of every status change; `unexpired_at` adds `expires_at > it`.
async fn move_status(
    tx: &mut Transaction<'_, Any>,
    order_id: &str,
    from: OrderStatus,
    to: OrderStatus,
    now: i64,
    redeemer_user_id: Option<i64>,
    unexpired_at: Option<i64>,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE redemption_orders SET status = $1, resolved_at = $2, redeemer_user_id = $3 \
         WHERE order_id = $4 AND status = $5 AND expires_at > $6",
    )
    .bind(to.as_str())
    .bind(now)
    .bind(redeemer_user_id)
    .bind(order_id)
    .bind(from.as_str())
    .bind(unexpired_at.unwrap_or(i64::MIN))
    .execute(&mut **tx)
    .await?;
    Ok(updated.rows_affected() == 1)
}
