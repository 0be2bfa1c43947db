//! Calls from one service to another (the market's to the ledger and items, redemption's
//! to items): lazily connected channels, and the answer sorted into a final business
//! refusal or an outage to retry with the same idempotency key by [`classify`]
//! (docs/errors.md, "Refused or unavailable").

use std::time::Duration;

use tonic::Status;
use tonic::transport::Channel;

use crate::error::{Upstream, classify};
use crate::reasons;
use crate::tls::{ClientTls, endpoint};

/// Why a call to another service did not succeed.
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
    /// No answer or a transient one from the named service: retry later with the same key.
    Unavailable(&'static str),
}

impl CallError {
    /// Sorts `status` from the `service` service with the one shared rule, [`classify`]:
    /// a business refusal (an `ErrorInfo` and a business code) is final, anything else is
    /// an outage to retry.
    pub fn from_status(service: &'static str, status: &Status) -> Self {
        match classify(status) {
            Upstream::Refused(refusal) => Self::Refused {
                code: refusal.code as i32,
                domain: refusal.domain,
                reason: refusal.reason,
                message: refusal.message,
            },
            Upstream::Unavailable => Self::Unavailable(service),
        }
    }

    /// The reason of a refusal (`UPSTREAM_UNAVAILABLE` otherwise).
    pub fn reason(&self) -> &str {
        match self {
            Self::Refused { reason, .. } => reason,
            Self::Unavailable(_) => reasons::UPSTREAM_UNAVAILABLE,
        }
    }
}

/// A lazily connected channel to `url` (connect timeout 2 s) with a per-request `timeout`,
/// over TLS as `tls` says (`section` names those settings in errors, e.g.
/// `market.internal_tls`; docs/operations.md, "TLS").
///
/// Errors: `url` is not a valid URI, or does not fit `tls` (see [`crate::tls::endpoint`]).
pub fn channel(url: &str, tls: &ClientTls, section: &str, timeout: Duration) -> anyhow::Result<Channel> {
    Ok(endpoint(url, tls, section)?.connect_timeout(Duration::from_secs(2)).timeout(timeout).connect_lazy())
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;
    use crate::error::status;

    #[test]
    fn refusals_are_final_and_outages_name_their_service() {
        let refused = status(
            Code::FailedPrecondition,
            "economy.ledger",
            "INSUFFICIENT_BALANCE",
            "no",
            Vec::<(String, String)>::new(),
        );
        let error = CallError::from_status("ledger", &refused);
        assert_eq!(error.reason(), "INSUFFICIENT_BALANCE");
        assert!(matches!(error, CallError::Refused { code, .. } if code == Code::FailedPrecondition as i32));
        let outage = CallError::from_status("ledger", &Status::unavailable("down"));
        assert_eq!(outage, CallError::Unavailable("ledger"));
        assert_eq!(outage.reason(), "UPSTREAM_UNAVAILABLE");
    }
}
