//! Granting (docs/items.md, "Instances and their state machine"; idempotent): a new available
//! instance of a template for a user. The grant's idempotency key is UNIQUE across all
//! grants, so a retried grant returns the same instance.

use std::collections::BTreeMap;

use serde::Serialize;

use super::ItemError;
use super::event::EventMeta;
use super::ids::{IdempotencyKey, ItemId, TemplateCode, UserId};
use super::item::metadata_hash;

/// Default business type of a grant.
pub const GRANT_BUSINESS_TYPE: &str = "ITEM_GRANT";

/// `GrantItem`, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Grant {
    /// The first owner.
    pub owner: UserId,
    /// The template.
    pub template: TemplateCode,
    /// Explicit expiry, ms since the epoch (checked against the clock at write time).
    pub expires_at: Option<i64>,
    /// Instance metadata, sorted by key.
    pub metadata: BTreeMap<String, String>,
}

/// Everything one grant writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantPlan {
    /// Id of the new instance (unused when the grant is a replay).
    pub item_id: ItemId,
    /// The grant.
    pub grant: Grant,
    /// `metadata_hash` of the grant's metadata.
    pub metadata_hash: String,
    /// The GRANTED event's meta; its key is the grant key.
    pub meta: EventMeta,
}

impl Grant {
    /// The plan: a fresh instance id and the event meta.
    pub fn plan(self, key: IdempotencyKey, actor: &str, business_type: String, reason: String) -> GrantPlan {
        let meta = EventMeta::new("GRANT_ITEM", key, actor, &self, business_type, reason);
        GrantPlan { item_id: ItemId::generate(), metadata_hash: metadata_hash(&self.metadata), grant: self, meta }
    }

    /// The instance's expiry at `now`: the explicit one (which must be after `now`), else
    /// `now + default_validity_secs` (`None` when the validity is 0: never expires).
    pub fn expiry(&self, default_validity_secs: i64, now: i64) -> Result<Option<i64>, ItemError> {
        match self.expires_at {
            Some(at) if at > now => Ok(Some(at)),
            Some(_) => Err(ItemError::NotInFuture { field: "expires_at" }),
            None if default_validity_secs == 0 => Ok(None),
            None => default_validity_secs
                .checked_mul(1000)
                .and_then(|millis| now.checked_add(millis))
                .map(Some)
                .ok_or_else(|| ItemError::Storage("expiry out of range".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(expires_at: Option<i64>) -> Grant {
        Grant {
            owner: UserId::parse(1).expect("user"),
            template: TemplateCode::parse("voucher").expect("code"),
            expires_at,
            metadata: BTreeMap::new(),
        }
    }

    #[test]
    fn expiry_defaults_to_the_template_validity() {
        assert_eq!(grant(None).expiry(0, 1_000), Ok(None));
        assert_eq!(grant(None).expiry(60, 1_000), Ok(Some(61_000)));
        assert_eq!(grant(Some(5_000)).expiry(60, 1_000), Ok(Some(5_000)));
    }

    #[test]
    fn explicit_expiry_must_be_in_the_future() {
        assert_eq!(grant(Some(1_000)).expiry(0, 1_000), Err(ItemError::NotInFuture { field: "expires_at" }));
        assert!(grant(None).expiry(i64::MAX, 1_000).is_err());
    }

    #[test]
    fn plans_fingerprint_the_content() {
        let key = || IdempotencyKey::parse("g1").expect("key");
        let first = grant(None).plan(key(), "user:1", GRANT_BUSINESS_TYPE.into(), String::new());
        let again = grant(None).plan(key(), "user:1", GRANT_BUSINESS_TYPE.into(), String::new());
        let other = grant(Some(9)).plan(key(), "user:1", GRANT_BUSINESS_TYPE.into(), String::new());
        assert_eq!(first.meta.fingerprint, again.meta.fingerprint);
        assert_ne!(first.item_id, again.item_id);
        assert_ne!(first.meta.fingerprint, other.meta.fingerprint);
    }
}
