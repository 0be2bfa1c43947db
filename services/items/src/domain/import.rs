//! Importing instances of an existing economy (docs/import.md, "Item instances"): each
//! row becomes one instance, created directly in its legacy status with one IMPORTED
//! event. Its grant key is derived from the row's external id, so importing the row again
//! finds the same instance; another row under the same external id is refused.

use std::collections::BTreeMap;

use serde::Serialize;

use super::event::{EventMeta, fingerprint};
use super::ids::{CorrelationId, IdempotencyKey, ItemId, TemplateCode, UserId};
use super::item::{ItemState, ItemStatus, metadata_hash};

/// Business type of every IMPORTED event.
pub const IMPORT_BUSINESS_TYPE: &str = "IMPORT";
/// Prefix of an imported instance's grant key: `import:<external id>`.
pub const IMPORT_KEY_PREFIX: &str = "import:";
/// Longest external id, bytes (the key must stay within 128 characters).
pub const MAX_EXTERNAL_ID: usize = 120;

/// An external id: 1-120 printable ASCII characters without spaces.
pub fn parse_external_id(value: &str) -> Result<String, &'static str> {
    let ok = (1..=MAX_EXTERNAL_ID).contains(&value.len()) && value.bytes().all(|byte| byte.is_ascii_graphic());
    if ok { Ok(value.to_owned()) } else { Err("must be 1-120 printable ASCII characters without spaces") }
}

/// The status an instance may be imported in. A legacy item locked for a redemption
/// order is imported available and locked by that order's import (docs/import.md).
pub fn parse_import_status(status: ItemStatus) -> Result<ItemState, &'static str> {
    match status {
        ItemStatus::Available => Ok(ItemState::Available),
        ItemStatus::Used => Ok(ItemState::Used),
        ItemStatus::Expired => Ok(ItemState::Expired),
        ItemStatus::Revoked => Ok(ItemState::Revoked),
        ItemStatus::Locked => Err("must be AVAILABLE, USED, EXPIRED or REVOKED (a locked item is locked by its order)"),
    }
}

/// One validated import row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportedItem {
    /// The legacy id, kept as the external reference.
    pub external_id: String,
    /// The template.
    pub template: TemplateCode,
    /// The owner.
    pub owner: UserId,
    /// The status it is created in.
    pub status: ItemStatus,
    /// Expiry, ms since the epoch (may be past: the legacy value is kept).
    pub expires_at: Option<i64>,
    /// Legacy grant instant, ms since the epoch.
    pub granted_at: i64,
    /// Metadata, sorted by key.
    pub metadata: BTreeMap<String, String>,
}

/// Everything one import row writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportPlan {
    /// Id of the new instance (unused when the row was imported before).
    pub item_id: ItemId,
    /// The row.
    pub row: ImportedItem,
    /// Its state (from `row.status`).
    pub state: ItemState,
    /// `metadata_hash` of the row's metadata.
    pub metadata_hash: String,
    /// The IMPORTED event's meta: key `import:<external id>`, fingerprint of the row.
    pub meta: EventMeta,
}

impl ImportedItem {
    /// The plan. The fingerprint covers the row only, not the importing admin, so any
    /// admin re-running the import finds its rows unchanged.
    pub fn plan(self, state: ItemState, actor: &str) -> Result<ImportPlan, &'static str> {
        let key = IdempotencyKey::parse(&format!("{IMPORT_KEY_PREFIX}{}", self.external_id))?;
        let meta = EventMeta {
            key,
            fingerprint: fingerprint("IMPORT_ITEM", "import", &self),
            actor: actor.to_owned(),
            business_type: IMPORT_BUSINESS_TYPE.to_owned(),
            reason: format!("imported from {}", self.external_id),
            correlation_id: CorrelationId::default(),
        };
        Ok(ImportPlan {
            item_id: ItemId::generate(),
            metadata_hash: metadata_hash(&self.metadata),
            state,
            row: self,
            meta,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(owner: i64) -> ImportedItem {
        ImportedItem {
            external_id: "legacy-1".into(),
            template: TemplateCode::parse("voucher").expect("code"),
            owner: UserId::parse(owner).expect("user"),
            status: ItemStatus::Used,
            expires_at: None,
            granted_at: 1_000,
            metadata: BTreeMap::new(),
        }
    }

    #[test]
    fn the_key_comes_from_the_external_id_and_the_fingerprint_from_the_row() {
        let first = row(1).plan(ItemState::Used, "user:1").expect("plan");
        let again = row(1).plan(ItemState::Used, "user:2").expect("plan");
        let other = row(2).plan(ItemState::Used, "user:1").expect("plan");
        assert_eq!(first.meta.key.as_str(), "import:legacy-1");
        assert_eq!(first.meta.fingerprint, again.meta.fingerprint);
        assert_ne!(first.meta.fingerprint, other.meta.fingerprint);
    }

    #[test]
    fn locked_is_not_an_import_status() {
        assert_eq!(parse_import_status(ItemStatus::Used), Ok(ItemState::Used));
        assert!(parse_import_status(ItemStatus::Locked).is_err());
        assert!(parse_external_id("a b").is_err());
        assert!(parse_external_id(&"x".repeat(121)).is_err());
    }
}
