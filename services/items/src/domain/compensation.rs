//! The items service's compensation tool (issue 6, "Compensation tools with audit"):
//! `ForceUnlockItem` releases a lock whose holder (a market listing, a redemption order)
//! is gone, whatever the holder, as an ordinary UNLOCKED event (actor the admin, business
//! type `ADMIN_FORCE_UNLOCK`, reason the operator's), with an audit record written in the
//! event's transaction. Free of SQL and gRPC.

use economy_kit::audit::AuditDraft;
use serde_json::json;

use super::ids::{IdempotencyKey, ItemId};
use super::item::Item;
use super::transition::{Command, TransitionPlan};

/// Canonical operation (and audit action) of `ForceUnlockItem`.
pub const FORCE_UNLOCK_ITEM: &str = "ITEMS_FORCE_UNLOCK_ITEM";

/// `ForceUnlockItem`: the instance, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForceUnlockItem {
    /// The locked instance.
    pub item: ItemId,
    /// Why (1-500 characters): the event's and the audit record's reason.
    pub reason: String,
}

impl ForceUnlockItem {
    /// The transition (`Command::ForceUnlock`, keyed by the tool's key) and its audit
    /// draft by `actor`.
    pub fn plan(self, key: IdempotencyKey, actor: &str) -> (TransitionPlan, AuditDraft) {
        let draft = AuditDraft {
            idempotency_key: key.as_str().to_owned(),
            actor: actor.to_owned(),
            action: FORCE_UNLOCK_ITEM.to_owned(),
            target_type: "item".to_owned(),
            target_id: self.item.to_string(),
            reason: self.reason.clone(),
        };
        let business_type = Command::ForceUnlock.default_business_type().to_owned();
        (Command::ForceUnlock.plan(self.item, key, actor, business_type, self.reason), draft)
    }
}

/// The audit state of an instance: `{"item_instance_id", "status", "owner_user_id",
/// "lock_holder" (null unless locked), "version"}`.
pub fn item_state(item: &Item) -> String {
    json!({
        "item_instance_id": item.id.as_str(),
        "status": item.state.status().as_str(),
        "owner_user_id": item.owner.get(),
        "lock_holder": item.state.lock().map(|lock| lock.holder.as_str()),
        "version": item.version,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::domain::ids::{Holder, TemplateCode, UserId};
    use crate::domain::item::{ItemState, Lock};

    #[test]
    fn plan_and_state() {
        let key = IdempotencyKey::parse("k").expect("key");
        let id = ItemId::generate();
        let (plan, draft) = ForceUnlockItem { item: id.clone(), reason: "holder gone".into() }.plan(key, "user:1");
        assert_eq!(plan.command, Command::ForceUnlock);
        assert_eq!(
            (plan.meta.business_type.as_str(), plan.meta.reason.as_str()),
            ("ADMIN_FORCE_UNLOCK", "holder gone")
        );
        assert_eq!((draft.action.as_str(), draft.target_id.as_str()), (FORCE_UNLOCK_ITEM, id.as_str()));
        let holder = Holder::parse("market:listing:x").expect("holder");
        let item = Item {
            id,
            template: TemplateCode::parse("sword").expect("code"),
            owner: UserId::parse(2).expect("user"),
            state: ItemState::Locked(Lock { holder, locked_at: 1, expires_at: None }),
            expires_at: None,
            metadata: BTreeMap::new(),
            metadata_hash: String::new(),
            version: 2,
            created_at: 0,
            updated_at: 0,
        };
        let state: serde_json::Value = serde_json::from_str(&item_state(&item)).expect("json");
        assert_eq!(
            (state["status"].as_str(), state["lock_holder"].as_str()),
            (Some("locked"), Some("market:listing:x"))
        );
        let free = Item { state: ItemState::Available, ..item };
        assert!(serde_json::from_str::<serde_json::Value>(&item_state(&free)).expect("json")["lock_holder"].is_null());
    }
}
