//! The market's calls to the ledger and the items service (DESIGN.md §5), signed with the
//! service identity `market`, each with a deterministic idempotency key so every retry is
//! safe. Answers are sorted into business refusals (final) and unavailability (retry).

pub mod items;
pub mod ledger;

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::domain::MarketError;

/// Why a downstream call did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// A business answer (insufficient balance, item not available, …): final.
    Refused {
        /// gRPC code.
        code: i32,
        /// `ErrorInfo.domain`.
        domain: String,
        /// `ErrorInfo.reason`.
        reason: String,
        /// Message.
        message: String,
    },
    /// No answer or a transient one: retry later with the same key.
    Unavailable(&'static str),
}

impl CallError {
    /// Sorts `status` from the `service` service.
    pub fn from_status(service: &'static str, status: &Status) -> Self {
        let business = matches!(
            status.code(),
            Code::InvalidArgument
                | Code::NotFound
                | Code::FailedPrecondition
                | Code::AlreadyExists
                | Code::PermissionDenied
                | Code::OutOfRange
        );
        if !business {
            return Self::Unavailable(service);
        }
        let info = tonic_types::StatusExt::get_details_error_info(status);
        Self::Refused {
            code: status.code() as i32,
            domain: info.as_ref().map(|info| info.domain.clone()).unwrap_or_else(|| format!("economy.{service}")),
            reason: info.map(|info| info.reason).unwrap_or_default(),
            message: status.message().to_owned(),
        }
    }

    /// The reason of a refusal (`UPSTREAM_UNAVAILABLE` otherwise).
    pub fn reason(&self) -> &str {
        match self {
            Self::Refused { reason, .. } => reason,
            Self::Unavailable(_) => "UPSTREAM_UNAVAILABLE",
        }
    }
}

impl From<CallError> for MarketError {
    fn from(error: CallError) -> Self {
        match error {
            CallError::Refused { code, domain, reason, message } => Self::Refused { code, domain, reason, message },
            CallError::Unavailable(service) => Self::Unavailable(service),
        }
    }
}

/// A lazily connected channel to `url` with a per-request `timeout`.
pub fn channel(url: &str, timeout: Duration) -> anyhow::Result<Channel> {
    Ok(Endpoint::from_shared(url.to_owned())?.connect_timeout(Duration::from_secs(2)).timeout(timeout).connect_lazy())
}
