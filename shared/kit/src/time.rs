//! Time helpers. Storage keeps UTC instants as `i64` milliseconds since the Unix epoch
//! (portable across SQLite and PostgreSQL through sqlx `Any`); the API uses
//! `google.protobuf.Timestamp` (ARCHITECTURE.md, "Invariants").
//!
//! Every service reads its business "now" (expiries, leases, jobs' cutoffs) from the
//! [`Clock`] in its configuration ([`SharedClock`], the system clock unless a test or the
//! stack builder injects a [`ManualClock`]); latency measurement keeps `Instant`.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now, in milliseconds since the Unix epoch.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
}

/// Milliseconds since the epoch -> protobuf timestamp.
pub fn to_timestamp(millis: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: millis.div_euclid(1000),
        nanos: i32::try_from(millis.rem_euclid(1000) * 1_000_000).unwrap_or(0),
    }
}

/// A source of "now" in milliseconds since the epoch, injectable so that tests can move
/// time (expiry rules) without sleeping.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now, in milliseconds since the Unix epoch.
    fn now_millis(&self) -> i64;
}

/// A clock shared by a service's layers and jobs (and, in tests, by the whole stack).
pub type SharedClock = Arc<dyn Clock>;

/// The system clock as a [`SharedClock`]: the default of every service's configuration.
pub fn system_clock() -> SharedClock {
    Arc::new(SystemClock)
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_millis(&self) -> i64 {
        now_millis()
    }
}

/// A clock that starts at the system time and moves only when told (tests).
#[derive(Debug)]
pub struct ManualClock(std::sync::atomic::AtomicI64);

impl Default for ManualClock {
    fn default() -> Self {
        Self(std::sync::atomic::AtomicI64::new(now_millis()))
    }
}

impl ManualClock {
    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(duration_millis(by), std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_millis(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Protobuf timestamp -> milliseconds since the epoch; `None` when it is not a valid
/// timestamp (nanos outside `0..1e9`) or does not fit.
pub fn from_timestamp(timestamp: &prost_types::Timestamp) -> Option<i64> {
    if !(0..1_000_000_000).contains(&timestamp.nanos) {
        return None;
    }
    timestamp.seconds.checked_mul(1000)?.checked_add(i64::from(timestamp.nanos / 1_000_000))
}

/// A duration as whole milliseconds, saturating.
pub fn duration_millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_round_trip() {
        for millis in [0, 1, 999, 1_700_000_000_123, -1, -1001] {
            assert_eq!(from_timestamp(&to_timestamp(millis)), Some(millis));
        }
    }

    #[test]
    fn invalid_timestamps_are_rejected() {
        let bad_nanos = prost_types::Timestamp { seconds: 1, nanos: -1 };
        assert_eq!(from_timestamp(&bad_nanos), None);
        let too_big = prost_types::Timestamp { seconds: i64::MAX, nanos: 0 };
        assert_eq!(from_timestamp(&too_big), None);
    }
}
