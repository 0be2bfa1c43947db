//! The market's calls to the ledger and the items service, signed with the service
//! identity `market`, each with a deterministic idempotency key so every retry is safe
//! (docs/idempotency.md, "Derived keys in services"). Answers are sorted into business
//! refusals (final) and unavailability (retry) by `economy_kit::client::CallError`
//! (docs/errors.md, "Refused or unavailable").

pub mod items;
pub mod ledger;

pub use economy_kit::client::{CallError, channel};

use crate::domain::MarketError;

impl From<CallError> for MarketError {
    fn from(error: CallError) -> Self {
        match error {
            CallError::Refused { code, domain, reason, message } => Self::Refused { code, domain, reason, message },
            CallError::Unavailable(service) => Self::Unavailable(service),
        }
    }
}
