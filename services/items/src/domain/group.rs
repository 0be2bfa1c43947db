//! The grouped view of a backpack (docs/items.md, "Reading": template, status bucket,
//! expiry day, meta hash -> count): instances that look the
//! same to a player are shown once, with their count and ids.

use super::ids::TemplateCode;
use super::item::StatusBucket;

/// Milliseconds in a UTC day.
pub const DAY_MILLIS: i64 = 86_400_000;
/// Largest number of instance ids returned per group.
pub const MAX_IDS_PER_GROUP: i64 = 100;

/// What makes instances "the same"; groups are ordered by these fields.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupKey {
    /// The template.
    pub template: TemplateCode,
    /// The status bucket.
    pub bucket: StatusBucket,
    /// Days since the epoch (UTC) of the expiry; `None` for never.
    pub expiry_day: Option<i64>,
    /// The metadata hash (64 lowercase hex characters).
    pub metadata_hash: String,
}

impl GroupKey {
    /// Start of the expiry day, ms since the epoch.
    pub fn expiry_day_start(&self) -> Option<i64> {
        self.expiry_day.and_then(|day| day.checked_mul(DAY_MILLIS))
    }
}

/// One group of a user's instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Its key.
    pub key: GroupKey,
    /// Number of instances.
    pub count: i64,
    /// Their ids, newest first; at most `MAX_IDS_PER_GROUP`.
    pub ids: Vec<String>,
}

/// True for 64 lowercase hex characters (a metadata hash).
pub fn is_metadata_hash(value: &str) -> bool {
    value.len() == 64 && value.bytes().all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_day_starts_at_utc_midnight() {
        let key = GroupKey {
            template: TemplateCode::parse("t").expect("code"),
            bucket: StatusBucket::Available,
            expiry_day: Some(2),
            metadata_hash: "0".repeat(64),
        };
        assert_eq!(key.expiry_day_start(), Some(2 * DAY_MILLIS));
        assert_eq!(GroupKey { expiry_day: None, ..key }.expiry_day_start(), None);
    }

    #[test]
    fn metadata_hash_shape() {
        assert!(is_metadata_hash(&"ab".repeat(32)));
        assert!(!is_metadata_hash(&"AB".repeat(32)));
        assert!(!is_metadata_hash("abc"));
    }
}
