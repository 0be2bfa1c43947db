//! Rate limit of failed fulfils per caller (DESIGN.md §3 Redemption: against code
//! guessing). `governor` counts the failures; once a caller's budget is spent every
//! fulfil of theirs — right or wrong — is refused until the budget refills.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::domain::RedemptionError;

/// Failed-fulfil budget per caller (`actor` strings).
#[derive(Debug)]
pub struct FulfillGuard {
    failures: DefaultKeyedRateLimiter<String>,
    locked_out: Mutex<HashMap<String, Instant>>,
}

impl FulfillGuard {
    /// Allows `per_minute` failures a minute per caller (at least 1), in bursts of as many.
    pub fn new(per_minute: u32) -> Self {
        let per_minute = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        Self { failures: RateLimiter::keyed(Quota::per_minute(per_minute)), locked_out: Mutex::new(HashMap::new()) }
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

    /// Counts a failed fulfil of `actor`; past the budget, locks them out until it refills.
    pub fn record_failure(&self, actor: &str) {
        let Err(not_until) = self.failures.check_key(&actor.to_owned()) else { return };
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        if let Ok(mut locked_out) = self.locked_out.lock() {
            locked_out.insert(actor.to_owned(), Instant::now() + wait.max(Duration::from_secs(1)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_is_locked_out_after_the_budget_of_failures() {
        let guard = FulfillGuard::new(3);
        for _ in 0..3 {
            assert_eq!(guard.check("user:7"), Ok(()));
            guard.record_failure("user:7");
        }
        assert_eq!(guard.check("user:7"), Ok(()), "the budget is spent, not exceeded");
        guard.record_failure("user:7");
        assert!(matches!(guard.check("user:7"), Err(RedemptionError::FulfillRateLimited { .. })));
        assert_eq!(guard.check("user:8"), Ok(()), "other callers are not affected");
    }
}
