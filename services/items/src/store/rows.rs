//! Row shapes and their conversion into domain values; a row that does not parse is
//! reported as corrupt storage, never trusted.

use std::collections::BTreeMap;

use crate::domain::ItemError;
use crate::domain::event::{Event, EventType};
use crate::domain::ids::{Holder, ItemId, TemplateCode, UserId};
use crate::domain::item::{Item, ItemState, ItemStatus, Lock};
use crate::domain::template::{ItemKind, Template};

/// Columns of `item_instances` (alias `i`), in `ItemRow` order.
pub const ITEM_COLUMNS: &str = "i.id, i.template_code, i.owner_user_id, i.status, i.lock_holder, i.locked_at, \
     i.lock_expires_at, i.expires_at, i.metadata, i.metadata_hash, i.version, i.created_at, i.updated_at";
/// Columns of `item_events`, in `EventRow` order.
pub const EVENT_COLUMNS: &str = "id, item_instance_id, version, event_type, idempotency_key, actor, \
     from_owner_user_id, to_owner_user_id, holder, business_type, reason, status, created_at, correlation_id";
/// Columns of `item_templates`, in `TemplateRow` order.
pub const TEMPLATE_COLUMNS: &str =
    "code, display_name, kind, default_validity_secs, redeemable, consumable, metadata, created_at, updated_at";

/// An `item_instances` row.
pub type ItemRow =
    (String, String, i64, String, Option<String>, Option<i64>, Option<i64>, Option<i64>, String, String, i64, i64, i64);
/// An `item_events` row.
pub type EventRow = (
    String,
    String,
    i64,
    String,
    String,
    String,
    Option<i64>,
    i64,
    Option<String>,
    String,
    String,
    String,
    i64,
    String,
);
/// An `item_templates` row.
pub type TemplateRow = (String, String, String, i64, i64, i64, String, i64, i64);

fn corrupt(what: &str, id: &str) -> ItemError {
    ItemError::Storage(format!("corrupt {what} row {id}").into())
}

/// Metadata stored as a JSON object.
pub fn metadata_json(metadata: &BTreeMap<String, String>) -> Result<String, ItemError> {
    serde_json::to_string(metadata).map_err(|error| ItemError::Storage(economy_kit::error::StorageCause::new(error)))
}

fn state(
    status: ItemStatus,
    holder: Option<String>,
    locked_at: Option<i64>,
    expires_at: Option<i64>,
) -> Option<ItemState> {
    Some(match status {
        ItemStatus::Available => ItemState::Available,
        ItemStatus::Locked => {
            ItemState::Locked(Lock { holder: Holder::parse(&holder?).ok()?, locked_at: locked_at?, expires_at })
        }
        ItemStatus::Used => ItemState::Used,
        ItemStatus::Expired => ItemState::Expired,
        ItemStatus::Revoked => ItemState::Revoked,
    })
}

/// `ItemRow` -> `Item`.
pub fn item(row: ItemRow) -> Result<Item, ItemError> {
    let (id, template, owner, status, holder, locked_at, lock_expires_at, expires_at, metadata, hash, version, at, up) =
        row;
    let bad = || corrupt("item", &id);
    let status = ItemStatus::parse(&status).ok_or_else(bad)?;
    Ok(Item {
        template: TemplateCode::parse(&template).map_err(|_| bad())?,
        owner: UserId::parse(owner).map_err(|_| bad())?,
        state: state(status, holder, locked_at, lock_expires_at).ok_or_else(bad)?,
        metadata: serde_json::from_str(&metadata).map_err(|_| bad())?,
        id: ItemId::parse(&id).map_err(|_| bad())?,
        expires_at,
        metadata_hash: hash,
        version,
        created_at: at,
        updated_at: up,
    })
}

/// `EventRow` -> `Event`.
pub fn event(row: EventRow) -> Result<Event, ItemError> {
    let (
        id,
        item_id,
        version,
        kind,
        key,
        actor,
        from_owner,
        to_owner,
        holder,
        business_type,
        reason,
        status,
        at,
        correlation,
    ) = row;
    let bad = || corrupt("event", &id);
    Ok(Event {
        kind: EventType::parse(&kind).ok_or_else(bad)?,
        from_owner: from_owner.map(UserId::parse).transpose().map_err(|_| bad())?,
        to_owner: UserId::parse(to_owner).map_err(|_| bad())?,
        status: ItemStatus::parse(&status).ok_or_else(bad)?,
        id,
        item_id,
        version,
        actor,
        holder,
        business_type,
        idempotency_key: key,
        reason,
        correlation_id: correlation,
        created_at: at,
    })
}

/// `TemplateRow` -> `Template`.
pub fn template(row: TemplateRow) -> Result<Template, ItemError> {
    let (code, display_name, kind, validity, redeemable, consumable, metadata, created_at, updated_at) = row;
    let bad = || corrupt("template", &code);
    Ok(Template {
        kind: ItemKind::parse(&kind).ok_or_else(bad)?,
        metadata: serde_json::from_str(&metadata).map_err(|_| bad())?,
        code: TemplateCode::parse(&code).map_err(|_| bad())?,
        display_name,
        default_validity_secs: validity,
        redeemable: redeemable != 0,
        consumable: consumable != 0,
        created_at,
        updated_at,
    })
}
