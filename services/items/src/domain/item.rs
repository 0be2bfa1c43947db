//! Item instances (docs/items.md): one non-stackable item owned by one user, in one
//! state of `available | locked(holder) | used | expired | revoked`. A lock exists
//! exactly while the state is `Locked`, so a lock without that state cannot be written.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::ids::{Holder, ItemId, TemplateCode, UserId};

/// Status of an instance; `Used`, `Expired` and `Revoked` are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ItemStatus {
    /// Owned and free.
    Available,
    /// Locked by a holder.
    Locked,
    /// Consumed.
    Used,
    /// Expired by the expiry job.
    Expired,
    /// Withdrawn by an admin.
    Revoked,
}

impl ItemStatus {
    /// Every status, in storage order.
    pub const ALL: [Self; 5] = [Self::Available, Self::Locked, Self::Used, Self::Expired, Self::Revoked];

    /// Storage spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Available => "available",
            Self::Locked => "locked",
            Self::Used => "used",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
        }
    }

    /// Parses the storage spelling.
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == value)
    }

    /// The display bucket of the status.
    pub fn bucket(self) -> StatusBucket {
        match self {
            Self::Available => StatusBucket::Available,
            Self::Locked => StatusBucket::Locked,
            Self::Used | Self::Expired | Self::Revoked => StatusBucket::Finished,
        }
    }
}

impl fmt::Display for ItemStatus {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// Statuses merged for display in the grouped view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StatusBucket {
    /// Available.
    Available,
    /// Locked.
    Locked,
    /// Used, expired or revoked.
    Finished,
}

impl StatusBucket {
    /// Storage rank (1, 2, 3), the order of groups.
    pub fn rank(self) -> i64 {
        match self {
            Self::Available => 1,
            Self::Locked => 2,
            Self::Finished => 3,
        }
    }

    /// Parses a rank.
    pub fn from_rank(rank: i64) -> Option<Self> {
        [Self::Available, Self::Locked, Self::Finished].into_iter().find(|bucket| bucket.rank() == rank)
    }
}

/// A lock on an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lock {
    /// Who holds it.
    pub holder: Holder,
    /// When it was taken, ms since the epoch.
    pub locked_at: i64,
    /// When the lock lapses, ms since the epoch (the lock-expiry job then makes it visible).
    pub expires_at: Option<i64>,
}

impl Lock {
    /// True at or past its expiry: from that instant the lock no longer holds anything.
    pub fn is_lapsed(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// The state of an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ItemState {
    /// Owned and free.
    Available,
    /// Locked by a holder.
    Locked(Lock),
    /// Consumed.
    Used,
    /// Expired.
    Expired,
    /// Revoked.
    Revoked,
}

impl ItemState {
    /// The status of the state.
    pub fn status(&self) -> ItemStatus {
        match self {
            Self::Available => ItemStatus::Available,
            Self::Locked(_) => ItemStatus::Locked,
            Self::Used => ItemStatus::Used,
            Self::Expired => ItemStatus::Expired,
            Self::Revoked => ItemStatus::Revoked,
        }
    }

    /// The lock, while locked.
    pub fn lock(&self) -> Option<&Lock> {
        match self {
            Self::Locked(lock) => Some(lock),
            _ => None,
        }
    }
}

/// An instance as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// UUIDv7.
    pub id: ItemId,
    /// The template it was granted from.
    pub template: TemplateCode,
    /// The current owner.
    pub owner: UserId,
    /// State.
    pub state: ItemState,
    /// When it expires, ms since the epoch (`None`: never).
    pub expires_at: Option<i64>,
    /// Metadata given at grant, sorted by key.
    pub metadata: BTreeMap<String, String>,
    /// `metadata_hash(metadata)`.
    pub metadata_hash: String,
    /// Number of events recorded; every change increments it.
    pub version: i64,
    /// Grant, ms since the epoch.
    pub created_at: i64,
    /// Last change, ms since the epoch.
    pub updated_at: i64,
}

impl Item {
    /// True when `now` is at or past the instance's expiry.
    pub fn is_past_expiry(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|expires_at| expires_at <= now)
    }
}

/// SHA-256 (lowercase hex) of the metadata as a JSON object with sorted keys: equal
/// metadata, equal hash (the grouped view's "meta hash", docs/items.md).
pub fn metadata_hash(metadata: &BTreeMap<String, String>) -> String {
    let json = serde_json::to_vec(metadata).unwrap_or_default();
    hex::encode(Sha256::digest(json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_spellings_and_buckets() {
        for status in ItemStatus::ALL {
            assert_eq!(ItemStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(ItemStatus::parse("transferred"), None);
        assert_eq!(ItemStatus::Locked.bucket(), StatusBucket::Locked);
        assert_eq!(ItemStatus::Revoked.bucket(), StatusBucket::Finished);
        for bucket in [StatusBucket::Available, StatusBucket::Locked, StatusBucket::Finished] {
            assert_eq!(StatusBucket::from_rank(bucket.rank()), Some(bucket));
        }
        assert_eq!(StatusBucket::from_rank(0), None);
    }

    #[test]
    fn metadata_hash_ignores_insertion_order() {
        let mut first = BTreeMap::new();
        first.insert("size".to_owned(), "L".to_owned());
        first.insert("color".to_owned(), "red".to_owned());
        let second: BTreeMap<String, String> =
            [("color".to_owned(), "red".to_owned()), ("size".to_owned(), "L".to_owned())].into();
        assert_eq!(metadata_hash(&first), metadata_hash(&second));
        assert_ne!(metadata_hash(&first), metadata_hash(&BTreeMap::new()));
        assert_eq!(metadata_hash(&first).len(), 64);
    }
}
