//! Rate limit of failed fulfils per caller (docs/redemption.md, "Guessing": against code
//! guessing). `governor` counts the failures; the failure that spends a caller's budget
//! locks them out, and every fulfil of theirs — right or wrong — is refused until the
//! budget refills by one: with a budget of 10, the 11th attempt after 10 failures is
//! refused.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::domain::RedemptionError;

/// Failed-fulfil budget per caller (`actor` strings).
#[derive(Debug)]
pub struct FulfillGuard {
    failures: RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>,
    locked_out: Mutex<HashMap<String, Instant>>,
}

impl FulfillGuard {
    /// Allows `per_minute` failures a minute per caller (at least 1), in bursts of as many.
    pub fn new(per_minute: u32) -> Self {
        let per_minute = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        let failures =
            RateLimiter::keyed(Quota::per_minute(per_minute)).with_middleware::<StateInformationMiddleware>();
        Self { failures, locked_out: Mutex::new(HashMap::new()) }
    }

    /// `FULFILL_RATE_LIMITED` while `actor` is locked out.
    pub fn check(&self, actor: &str) -> Result<(), RedemptionError> {
        let now = Instant::now();
        let Ok(mut locked_out) = self.locked_out.lock() else { return Ok(()) };
        locked_out.retain(|_, until| *until > now);
        match locked_out.get(actor) {
            Some(until) => Err(RedemptionError::FulfillRateLimited {
                retry_after_secs: until.duration_since(now).as_secs().max(1),
            }),
            None => Ok(()),
        }
    }

    /// Counts a failed fulfil of `actor`; the failure that spends the budget (or one past
    /// it, from a fulfil that was already under way) locks them out until one failure is
    /// allowed again.
    pub fn record_failure(&self, actor: &str) {
        let wait = match self.failures.check_key(&actor.to_owned()) {
            // Budget left after this failure: no lockout yet.
            Ok(state) if state.remaining_burst_capacity() > 0 => return,
            // This failure spent the budget: the next one is allowed once a failure's
            // share of the quota has refilled.
            Ok(state) => state.quota().replenish_interval(),
            Err(not_until) => not_until.wait_time_from(DefaultClock::default().now()),
        };
        if let Ok(mut locked_out) = self.locked_out.lock() {
            locked_out.insert(actor.to_owned(), Instant::now() + wait.max(Duration::from_secs(1)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_is_locked_out_once_the_budget_of_failures_is_spent() {
        let guard = FulfillGuard::new(3);
        for _ in 0..2 {
            assert_eq!(guard.check("user:7"), Ok(()));
            guard.record_failure("user:7");
        }
        assert_eq!(guard.check("user:7"), Ok(()), "two failures of three: the third attempt is allowed");
        guard.record_failure("user:7");
        assert!(matches!(guard.check("user:7"), Err(RedemptionError::FulfillRateLimited { .. })));
        assert_eq!(guard.check("user:8"), Ok(()), "other callers are not affected");
    }

    #[test]
    fn the_eleventh_attempt_after_ten_failures_is_refused() {
        let guard = FulfillGuard::new(10);
        for attempt in 1..=10 {
            assert_eq!(guard.check("user:7"), Ok(()), "attempt {attempt}");
            guard.record_failure("user:7");
        }
        let refused = guard.check("user:7");
        assert!(
            matches!(refused, Err(RedemptionError::FulfillRateLimited { retry_after_secs }) if retry_after_secs >= 1)
        );
    }
}
