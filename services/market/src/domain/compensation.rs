//! The market's compensation tool (issue 6, "Compensation tools with audit"), free of SQL
//! and gRPC: `RedriveOutbox` resets a `dead` or stuck `pending` escrow return (the hold
//! release or item unlock owed by a listing that closed unsold) to `pending`, due now,
//! attempts and lease cleared, then delivers it at once. Its audit record keeps the row's
//! state before / after.

use economy_kit::audit::AuditDraft;
use serde_json::json;

/// Canonical operation (and audit action) of `RedriveOutbox`.
pub const REDRIVE_OUTBOX: &str = "MARKET_REDRIVE_OUTBOX";

/// The state of an escrow return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxStatus {
    /// Owed; the recovery worker delivers it when due.
    Pending,
    /// Returned (or nothing was left to return).
    Delivered,
    /// Given up; only an operator re-drives it.
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

/// An escrow return as stored (instants in ms since the epoch; 0 = none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// UUIDv7.
    pub id: String,
    /// The listing whose escrow is returned (one row per listing).
    pub listing_id: String,
    /// State.
    pub status: OutboxStatus,
    /// Deliveries tried since created or last re-driven.
    pub attempts: i64,
    /// Next delivery attempt.
    pub next_attempt_at: i64,
    /// Lease of the worker holding it (0: none).
    pub claimed_until: i64,
    /// Last failure or delivery note; empty when none.
    pub last_error: String,
    /// Creation.
    pub created_at: i64,
    /// Delivered or declared dead (0: not yet).
    pub delivered_at: i64,
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
            delivered_at: 0,
            ..self.clone()
        }
    }
}

/// Which escrow return a `RedriveOutbox` means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboxTarget {
    /// The row itself.
    Row(String),
    /// The row of a listing.
    Listing(String),
}

/// The audit draft of re-driving row `outbox_id` by `actor` under `key`, for `reason`.
pub fn redrive_draft(outbox_id: &str, key: &str, actor: &str, reason: &str) -> AuditDraft {
    AuditDraft {
        idempotency_key: key.to_owned(),
        actor: actor.to_owned(),
        action: REDRIVE_OUTBOX.to_owned(),
        target_type: "outbox".to_owned(),
        target_id: outbox_id.to_owned(),
        reason: reason.to_owned(),
    }
}

/// The audit state of an escrow return: `{"outbox_id", "listing_id", "status",
/// "attempts", "next_attempt_at", "claimed_until", "last_error"}`.
pub fn outbox_state(entry: &OutboxEntry) -> String {
    json!({
        "outbox_id": entry.id,
        "listing_id": entry.listing_id,
        "status": entry.status.as_str(),
        "attempts": entry.attempts,
        "next_attempt_at": entry.next_attempt_at,
        "claimed_until": entry.claimed_until,
        "last_error": entry.last_error,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redriven_row_is_due_now() {
        let dead = OutboxEntry {
            id: "r1".into(),
            listing_id: "l1".into(),
            status: OutboxStatus::Dead,
            attempts: 9,
            next_attempt_at: 5,
            claimed_until: 7,
            last_error: "UPSTREAM_UNAVAILABLE".into(),
            created_at: 1,
            delivered_at: 6,
        };
        let redriven = dead.redriven(100);
        assert_eq!((redriven.status, redriven.attempts, redriven.next_attempt_at), (OutboxStatus::Pending, 0, 100));
        assert_eq!((redriven.claimed_until, redriven.delivered_at), (0, 0));
        assert_eq!(redriven.last_error, "UPSTREAM_UNAVAILABLE");
        let state: serde_json::Value = serde_json::from_str(&outbox_state(&dead)).expect("json");
        assert_eq!((state["status"].as_str(), state["listing_id"].as_str()), (Some("dead"), Some("l1")));
        for status in [OutboxStatus::Pending, OutboxStatus::Delivered, OutboxStatus::Dead] {
            assert_eq!(OutboxStatus::parse(status.as_str()), Some(status));
        }
    }
}
