//! The import of one order (docs/import.md, "Redemption orders"), ordered so that
//! re-running it converges from any point and a refused row leaves nothing behind:
//! checks first (the code and the item are free), then for a pending order the item's
//! lock under the order's derived id and key (`<order>:lock`, a replay when re-run), then
//! the order's insert. The rare insert lost to a concurrent row releases that lock again.

use crate::clients::CallError;
use crate::domain::import::{ImportStatus, ImportedOrder};
use crate::domain::{Order, RedemptionError, items_key, lock_holder};
use crate::store::Insert;

use super::Redemption;

/// What importing one order did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderImported {
    /// Written now: the order id.
    Created(String),
    /// The same row was imported before: its order id.
    Unchanged(String),
    /// Another row holds this external id or this code: why.
    Conflict(String),
}

impl Redemption {
    /// Imports `row` exactly once per external id. Refusals: ORDER_ALREADY_OPEN (another
    /// open order holds the item), Items' own (ITEM_NOT_FOUND, ITEM_NOT_AVAILABLE,
    /// ITEM_OWNER_MISMATCH), ITEMS_UNAVAILABLE (retry).
    pub async fn import_order(&self, row: &ImportedOrder) -> Result<OrderImported, RedemptionError> {
        if let Some(stored) = self.store.order_by_create_key(&row.create_key()).await? {
            return Ok(compare(row, &stored));
        }
        let order_id = row.order_id();
        if let Some(conflict) = self.blocked(row, &order_id).await? {
            return Ok(conflict);
        }
        if row.status == ImportStatus::Pending {
            self.lock_item(row, &order_id).await?;
        }
        if self.store.insert_imported(&order_id, row).await? == Insert::Created {
            return Ok(OrderImported::Created(order_id));
        }
        if let Some(stored) = self.store.order_by_create_key(&row.create_key()).await? {
            return Ok(compare(row, &stored));
        }
        if row.status == ImportStatus::Pending {
            let key = items_key(&order_id, "unlock");
            self.items.unlock(&row.item_instance_id, &lock_holder(&order_id), &key).await?;
        }
        Ok(OrderImported::Conflict(format!("order {} could not be stored next to an existing one", row.external_id)))
    }

    /// Why the row cannot be imported now, if the code or the item is taken.
    async fn blocked(&self, row: &ImportedOrder, order_id: &str) -> Result<Option<OrderImported>, RedemptionError> {
        if let Some(other) = self.store.order_by_code_hash(&row.code_hash).await? {
            let message = format!("the code of order {} already belongs to order {}", row.external_id, other.id);
            return Ok(Some(OrderImported::Conflict(message)));
        }
        if row.status == ImportStatus::Pending {
            let open = self.store.open_order_of_item(&row.item_instance_id).await?;
            if open.is_some_and(|open| open.id != order_id) {
                return Err(RedemptionError::OrderAlreadyOpen(row.item_instance_id.clone()));
            }
        }
        Ok(None)
    }

    async fn lock_item(&self, row: &ImportedOrder, order_id: &str) -> Result<(), RedemptionError> {
        let key = items_key(order_id, "lock");
        match self.items.lock(&row.item_instance_id, &lock_holder(order_id), row.owner_user_id, &key).await {
            Ok(()) => Ok(()),
            Err(CallError::Unavailable(_)) => Err(RedemptionError::ItemsUnavailable),
            Err(refused) => Err(refused.into()),
        }
    }
}

fn compare(row: &ImportedOrder, stored: &Order) -> OrderImported {
    if row.matches(&stored.item_instance_id, stored.owner_user_id, stored.created_at, stored.expires_at) {
        OrderImported::Unchanged(stored.id.clone())
    } else {
        OrderImported::Conflict(format!("external id {} was imported before with other content", row.external_id))
    }
}
