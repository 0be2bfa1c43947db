//! Redemption's calls to the items service, signed with the service identity
//! `redemption`, each with a deterministic idempotency key so every retry is safe
//! (docs/idempotency.md, "Derived keys in services"). Answers are sorted into business
//! refusals (final) and unavailability (retry) by `economy_kit::client::CallError`
//! (docs/errors.md, "Refused or unavailable") — the same shape as the market's clients.

pub mod items;

pub use economy_kit::client::{CallError, channel};

use crate::domain::RedemptionError;

impl From<CallError> for RedemptionError {
    fn from(error: CallError) -> Self {
        match error {
            CallError::Refused { code, reason, message, .. } => Self::ItemRefused { code, reason, message },
            CallError::Unavailable(_) => Self::ItemsUnavailable,
        }
    }
}
