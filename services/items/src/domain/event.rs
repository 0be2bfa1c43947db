//! Item events (docs/items.md, "Events"): every change of an instance appends one, with its
//! actor, owners, holder, business type, idempotency key and correlation id. The key is
//! UNIQUE per instance; the request's fingerprint decides between a replay and a reused
//! key.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::ids::{CorrelationId, IdempotencyKey, UserId};
use super::item::ItemStatus;

/// What an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum EventType {
    /// Created for its first owner.
    Granted,
    /// Locked for a holder.
    Locked,
    /// Lock released (holder or lock-expiry job).
    Unlocked,
    /// Given to a new owner by the holder.
    Transferred,
    /// Consumed.
    Used,
    /// Expired by the job.
    Expired,
    /// Withdrawn by an admin.
    Revoked,
    /// Brought in from an existing economy, in its legacy status (docs/import.md).
    Imported,
}

impl EventType {
    /// Every event type.
    pub const ALL: [Self; 8] = [
        Self::Granted,
        Self::Locked,
        Self::Unlocked,
        Self::Transferred,
        Self::Used,
        Self::Expired,
        Self::Revoked,
        Self::Imported,
    ];

    /// Storage spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Granted => "granted",
            Self::Locked => "locked",
            Self::Unlocked => "unlocked",
            Self::Transferred => "transferred",
            Self::Used => "used",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
            Self::Imported => "imported",
        }
    }

    /// Parses the storage spelling.
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == value)
    }
}

/// Who/why/what of a change to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventMeta {
    /// Unique key of the change on its instance (for a grant: unique across grants).
    pub key: IdempotencyKey,
    /// `fingerprint` of the request.
    pub fingerprint: String,
    /// `user:<id>` or `service:<name>`.
    pub actor: String,
    /// UPPER_SNAKE business type.
    pub business_type: String,
    /// Free text.
    pub reason: String,
    /// The business event that caused the change; empty for none.
    pub correlation_id: CorrelationId,
}

impl EventMeta {
    /// Meta of `operation` with `content` (the command, business type and reason are
    /// what two retries must share).
    pub fn new(
        operation: &str,
        key: IdempotencyKey,
        actor: &str,
        content: &impl Serialize,
        business_type: String,
        reason: String,
    ) -> Self {
        let fingerprint = fingerprint(operation, actor, &(content, &business_type, &reason));
        Self {
            key,
            fingerprint,
            actor: actor.to_owned(),
            business_type,
            reason,
            correlation_id: CorrelationId::default(),
        }
    }

    /// The same meta recording `correlation_id`. A non-empty id joins the fingerprint, so
    /// a retry with another one is another request; an empty one leaves the fingerprint
    /// as it was before correlation ids existed, so retries of older changes still replay.
    pub fn correlated(self, correlation_id: CorrelationId) -> Self {
        if correlation_id.is_empty() {
            return self;
        }
        let fingerprint = fingerprint("CORRELATED", &self.actor, &(&self.fingerprint, correlation_id.as_str()));
        Self { fingerprint, correlation_id, ..self }
    }
}

/// A recorded event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// UUIDv7.
    pub id: String,
    /// The instance.
    pub item_id: String,
    /// What happened.
    pub kind: EventType,
    /// The instance's version after the event.
    pub version: i64,
    /// Actor.
    pub actor: String,
    /// Owner before (`None` for a grant).
    pub from_owner: Option<UserId>,
    /// Owner after.
    pub to_owner: UserId,
    /// The lock holder involved.
    pub holder: Option<String>,
    /// Business type.
    pub business_type: String,
    /// Idempotency key.
    pub idempotency_key: String,
    /// Reason.
    pub reason: String,
    /// Correlation id of the business event; empty for none.
    pub correlation_id: String,
    /// Status after the event.
    pub status: ItemStatus,
    /// Ms since the epoch.
    pub created_at: i64,
}

/// SHA-256 (hex) of a canonical JSON form of `{operation, actor, content}`: two requests
/// with the same key are "the same" exactly when their fingerprints are equal.
pub fn fingerprint(operation: &str, actor: &str, content: &impl Serialize) -> String {
    #[derive(Serialize)]
    struct Canonical<'a, T> {
        operation: &'a str,
        actor: &'a str,
        content: &'a T,
    }
    let json = serde_json::to_vec(&Canonical { operation, actor, content }).unwrap_or_default();
    hex::encode(Sha256::digest(json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_spellings_round_trip() {
        for kind in EventType::ALL {
            assert_eq!(EventType::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(EventType::parse("sold"), None);
    }

    #[test]
    fn fingerprints_depend_on_every_part() {
        let key = || IdempotencyKey::parse("k").expect("key");
        let meta = |operation: &str, actor: &str, content: i64, business: &str, reason: &str| {
            EventMeta::new(operation, key(), actor, &content, business.into(), reason.into()).fingerprint
        };
        let base = meta("LOCK", "service:market", 1, "ITEM_LOCK", "");
        assert_eq!(base, meta("LOCK", "service:market", 1, "ITEM_LOCK", ""));
        assert_ne!(base, meta("UNLOCK", "service:market", 1, "ITEM_LOCK", ""));
        assert_ne!(base, meta("LOCK", "service:other", 1, "ITEM_LOCK", ""));
        assert_ne!(base, meta("LOCK", "service:market", 2, "ITEM_LOCK", ""));
        assert_ne!(base, meta("LOCK", "service:market", 1, "MARKET_LIST", ""));
        assert_ne!(base, meta("LOCK", "service:market", 1, "ITEM_LOCK", "why"));
        assert_eq!(base.len(), 64);
    }

    #[test]
    fn a_correlation_id_joins_the_fingerprint_unless_empty() {
        let meta = || {
            EventMeta::new("GRANT_ITEM", IdempotencyKey::parse("k").expect("key"), "user:1", &1, "B".into(), "".into())
        };
        let correlated = |id: &str| meta().correlated(CorrelationId::parse(id).expect("id"));
        assert_eq!(correlated(""), meta());
        assert_eq!(correlated("draw-1"), correlated("draw-1"));
        assert_eq!(correlated("draw-1").correlation_id.as_str(), "draw-1");
        assert_ne!(correlated("draw-1").fingerprint, meta().fingerprint);
        assert_ne!(correlated("draw-1").fingerprint, correlated("draw-2").fingerprint);
    }
}
