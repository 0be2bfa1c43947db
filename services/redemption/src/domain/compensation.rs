//! The redemption service's compensation tools (issue 6, "Compensation tools with
//! audit"), free of SQL and gRPC: what they act on, their audit drafts and the JSON
//! states their audit records keep before / after.
//!
//! - `RedriveOutbox`: a `dead` or stuck `pending` outbox row reset to `pending`, due now,
//!   attempts and lease cleared, then delivered at once.
//! - `ReissueCodeOnBehalf`: an admin gives a customer's pending order a fresh code. The
//!   plain `ReissueCode` stays the owner's (a retry draws yet another code, the previous
//!   one never having been shown); acting for someone else is this separate, audited
//!   tool, which applies once per key. Neither state ever holds the code or its hash.

use economy_kit::audit::AuditDraft;
use serde_json::json;

use super::Order;

/// Canonical operation (and audit action) of `RedriveOutbox`.
pub const REDRIVE_OUTBOX: &str = "REDEMPTION_REDRIVE_OUTBOX";
/// Canonical operation (and audit action) of `ReissueCodeOnBehalf`.
pub const REISSUE_CODE_ON_BEHALF: &str = "REDEMPTION_REISSUE_CODE_ON_BEHALF";

/// The state of an outbox row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxStatus {
    /// Owed; the dispatcher delivers it when due.
    Pending,
    /// Items confirmed it.
    Delivered,
    /// Items refused it; only an operator re-drives it.
    Dead,
}

impl OutboxStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
        }
    }

    /// The status stored as `name`.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Pending, Self::Delivered, Self::Dead].into_iter().find(|status| status.as_str() == name)
    }
}

/// An outbox row as stored (instants in ms since the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// UUIDv7.
    pub id: String,
    /// The order that owes the call.
    pub order_id: String,
    /// `consume` or `unlock`.
    pub action: String,
    /// The item.
    pub item_instance_id: String,
    /// State.
    pub status: OutboxStatus,
    /// Deliveries tried since created or last re-driven.
    pub attempts: i64,
    /// Next delivery attempt.
    pub next_attempt_at: i64,
    /// Lease of the dispatcher holding it (0: none).
    pub claimed_until: i64,
    /// Last refusal or failure; empty when none.
    pub last_error: String,
    /// Creation.
    pub created_at: i64,
    /// Delivered or declared dead.
    pub delivered_at: Option<i64>,
}

impl OutboxEntry {
    /// The row once re-driven at `now`: pending, due now, attempts and lease cleared (the
    /// last error is kept for the record).
    pub fn redriven(&self, now: i64) -> Self {
        Self {
            status: OutboxStatus::Pending,
            attempts: 0,
            next_attempt_at: now,
            claimed_until: 0,
            delivered_at: None,
            ..self.clone()
        }
    }
}

/// Which outbox row a `RedriveOutbox` means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboxTarget {
    /// The row itself.
    Row(String),
    /// The oldest undelivered row of an order.
    Order(String),
}

/// An audit draft of the redemption service's tool `action` on `target_type`
/// `target_id`, by `actor` under `key`, for `reason`.
pub fn draft(action: &str, target_type: &str, target_id: &str, key: &str, actor: &str, reason: &str) -> AuditDraft {
    AuditDraft {
        idempotency_key: key.to_owned(),
        actor: actor.to_owned(),
        action: action.to_owned(),
        target_type: target_type.to_owned(),
        target_id: target_id.to_owned(),
        reason: reason.to_owned(),
    }
}

/// The audit state of an outbox row: `{"outbox_id", "order_id", "action",
/// "item_instance_id", "status", "attempts", "next_attempt_at", "claimed_until",
/// "last_error"}`.
pub fn outbox_state(entry: &OutboxEntry) -> String {
    json!({
        "outbox_id": entry.id,
        "order_id": entry.order_id,
        "action": entry.action,
        "item_instance_id": entry.item_instance_id,
        "status": entry.status.as_str(),
        "attempts": entry.attempts,
        "next_attempt_at": entry.next_attempt_at,
        "claimed_until": entry.claimed_until,
        "last_error": entry.last_error,
    })
    .to_string()
}

/// The audit state of an order for a code change: `{"order_id", "status",
/// "owner_user_id", "item_instance_id", "code_issued_at", "expires_at"}` — never the code
/// nor its hash.
pub fn order_state(order: &Order) -> String {
    json!({
        "order_id": order.id,
        "status": order.status.as_str(),
        "owner_user_id": order.owner_user_id,
        "item_instance_id": order.item_instance_id,
        "code_issued_at": order.code_issued_at,
        "expires_at": order.expires_at,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::OrderStatus;

    #[test]
    fn a_redriven_row_is_due_now_and_keeps_its_last_error() {
        let dead = OutboxEntry {
            id: "r1".into(),
            order_id: "o1".into(),
            action: "consume".into(),
            item_instance_id: "i1".into(),
            status: OutboxStatus::Dead,
            attempts: 7,
            next_attempt_at: 5,
            claimed_until: 9,
            last_error: "ITEM_NOT_LOCKED".into(),
            created_at: 1,
            delivered_at: Some(6),
        };
        let redriven = dead.redriven(100);
        assert_eq!((redriven.status, redriven.attempts, redriven.next_attempt_at), (OutboxStatus::Pending, 0, 100));
        assert_eq!((redriven.claimed_until, redriven.delivered_at), (0, None));
        assert_eq!(redriven.last_error, "ITEM_NOT_LOCKED");
        let state: serde_json::Value = serde_json::from_str(&outbox_state(&dead)).expect("json");
        assert_eq!((state["status"].as_str(), state["attempts"].as_i64()), (Some("dead"), Some(7)));
        for status in [OutboxStatus::Pending, OutboxStatus::Delivered, OutboxStatus::Dead] {
            assert_eq!(OutboxStatus::parse(status.as_str()), Some(status));
        }
    }

    #[test]
    fn order_states_hold_no_code() {
        let order = Order {
            id: "o1".into(),
            item_instance_id: "i1".into(),
            owner_user_id: 2,
            status: OrderStatus::Pending,
            created_by: "user:2".into(),
            created_at: 0,
            expires_at: 10,
            code_issued_at: 3,
            resolved_at: None,
            redeemer_user_id: None,
        };
        let state: serde_json::Value = serde_json::from_str(&order_state(&order)).expect("json");
        let keys: Vec<&str> = state.as_object().expect("object").keys().map(String::as_str).collect();
        assert!(keys.iter().all(|key| !key.contains("code_hash") && *key != "code"), "{keys:?}");
        assert_eq!(state["code_issued_at"].as_i64(), Some(3));
    }
}
