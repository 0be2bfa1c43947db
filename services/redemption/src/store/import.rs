//! Writing imported orders (docs/import.md, "Redemption orders"): one insert per row,
//! directly in its legacy status, under the creation key `import:<external id>`; the
//! UNIQUE keys (order id, creation key, code hash, one open order per item) judge
//! duplicates.

use economy_kit::db::is_unique_violation;

use super::RedemptionStore;
use super::orders::Insert;
use crate::domain::OrderStatus;
use crate::domain::import::{IMPORT_ACTOR, ImportStatus, ImportedOrder};

impl RedemptionStore {
    /// Stores `order` as `order_id`; its code was issued at its creation.
    pub async fn insert_imported(&self, order_id: &str, order: &ImportedOrder) -> Result<Insert, sqlx::Error> {
        let status = match order.status {
            ImportStatus::Pending => OrderStatus::Pending,
            ImportStatus::Fulfilled => OrderStatus::Fulfilled,
        };
        let result = sqlx::query(
            "INSERT INTO redemption_orders (order_id, item_instance_id, owner_user_id, status, code_hash, create_key, \
             created_by, created_at, expires_at, code_issued_at, resolved_at, redeemer_user_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $8, $10, $11)",
        )
        .bind(order_id)
        .bind(&order.item_instance_id)
        .bind(order.owner_user_id)
        .bind(status.as_str())
        .bind(&order.code_hash)
        .bind(order.create_key())
        .bind(IMPORT_ACTOR)
        .bind(order.created_at)
        .bind(order.expires_at)
        .bind(order.resolved_at)
        .bind(order.redeemer_user_id)
        .execute(&mut *self.db.writer().await?)
        .await;
        match result {
            Ok(_) => Ok(Insert::Created),
            Err(error) if is_unique_violation(&error) => Ok(Insert::Duplicate),
            Err(error) => Err(error),
        }
    }
}
