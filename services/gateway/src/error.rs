//! Every way the gateway itself refuses a request: one enum, mapped to `tonic::Status` in
//! exactly one place (`From<GatewayError> for Status`), like the services' domain errors.
//! Upstream answers are not here: the proxy passes them through, and the gateway's own
//! upstream calls sort them with `economy_kit::error::classify` (`upstream`). Reasons and
//! their HTTP statuses: docs/errors.md.

use economy_kit::audit::AuditError;
use economy_kit::error::{StorageCause, invalid_field, malformed_request, status, storage};
use economy_kit::reasons;
use economy_kit::time::to_timestamp;
use tonic::{Code, Status};

use crate::DOMAIN;
use crate::proxy::{IDEMPOTENCY_KEY, ORIGINAL_REQUEST_ID};
use crate::store::admin::ReleaseError;

/// What the `idempotency-key` metadata must look like.
const KEY_FORMAT: &str =
    "metadata idempotency-key: a UUID, optionally prefixed idem_ (e.g. idem_0190f0a4-2b9c-7d1e-8f00-0123456789ab)";

/// A refusal by the gateway. Each variant maps to one catalogued `ErrorInfo.reason`
/// (named in its doc), except `NotRouted` (a bare `UNIMPLEMENTED`) and `ShuttingDown` (a
/// bare `UNAVAILABLE`).
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// `TOKEN_MISSING`: no `authorization: Bearer <token>` metadata.
    #[error("authorization: Bearer <token> is required")]
    TokenMissing,
    /// `TOKEN_INVALID`: malformed, forged, unknown algorithm or bad claims.
    #[error("the bearer token is malformed or forged")]
    TokenInvalid,
    /// `TOKEN_EXPIRED`.
    #[error("the bearer token has expired")]
    TokenExpired,
    /// `TOKEN_NOT_YET_VALID`: before its `nbf`.
    #[error("the bearer token is not valid yet (nbf)")]
    TokenNotYetValid,
    /// `TOKEN_KEY_UNKNOWN`: signed by a key (`kid`) that is not among the gateway's keys,
    /// even after a JWKS refresh (or with the refresh rate-limited).
    #[error("the bearer token is signed by an unknown key (kid); retry later")]
    TokenKeyUnknown,
    /// `TOKEN_CLAIM_INVALID`: a genuine token whose claim `claim` does not map to a caller
    /// or is not the configured issuer, audience or expiry.
    #[error("the bearer token's claim {claim} is missing or not acceptable")]
    TokenClaimInvalid {
        /// The claim's name as configured (`user_id`, `realm_access.roles`, `iss`, …).
        claim: String,
    },
    /// `ROLE_TOO_LOW`: the caller's role is below the method's minimum.
    #[error("the caller's role may not call this method")]
    RoleTooLow {
        /// The method's minimum role level.
        min_role_level: i32,
    },
    /// `PERMISSION_DENIED`: the caller may not act on this resource.
    #[error("{0}")]
    PermissionDenied(&'static str),
    /// `RATE_LIMITED`: the user's request rate is over the limit.
    #[error("too many requests; slow down")]
    RateLimited,
    /// `OVERLOADED`: the gateway is at its in-flight limit.
    #[error("the gateway is at capacity; retry later")]
    Overloaded,
    /// `TOO_MANY_STREAMS`: the user, or the gateway as a whole, holds as many open
    /// streams as `gateway.streams` allows (docs/gateway.md, "Streams").
    #[error("too many open streams ({scope} limit {limit}); end one or retry later")]
    TooManyStreams {
        /// Whose limit: `user` (`gateway.streams.per_user`) or `gateway` (`gateway.streams.max`).
        scope: &'static str,
        /// The limit reached.
        limit: usize,
    },
    /// `MISSING_IDEMPOTENCY_KEY`: a write without the `idempotency-key` metadata.
    #[error("{KEY_FORMAT}")]
    MissingIdempotencyKey,
    /// `INVALID_IDEMPOTENCY_KEY`: the metadata is not a UUID, optionally prefixed `idem_`.
    #[error("{KEY_FORMAT}")]
    InvalidIdempotencyKey,
    /// `IDEMPOTENCY_KEY_CONFLICT`: the key was used for a request with other content.
    #[error("this idempotency key was used for a different request")]
    KeyConflict {
        /// The request that holds the key.
        original_request_id: String,
    },
    /// `REQUEST_PROCESSING`: a request with this key is still processing.
    #[error("a request with this idempotency key is still processing; retry later")]
    RequestProcessing {
        /// The request that holds the key.
        original_request_id: String,
    },
    /// `MALFORMED_REQUEST`: the body does not decode as the method's input.
    #[error("the request message does not decode")]
    MalformedRequest,
    /// Bare `UNAVAILABLE`: the gateway is shutting down and ends its open streams
    /// (docs/gateway.md, "Streams").
    #[error("the gateway is shutting down; reconnect with the last cursor")]
    ShuttingDown,
    /// Bare `UNIMPLEMENTED`: no routed method at this path.
    #[error("{0} is not routed")]
    NotRouted(String),
    /// `UPSTREAM_UNAVAILABLE`: the upstream is not configured, refused the connection or
    /// answered with an outage.
    #[error("the {upstream} service is unavailable ({cause})")]
    UpstreamUnavailable {
        /// The upstream's name (`ledger`, `items`, …).
        upstream: String,
        /// What happened (`not configured`, `connection refused`, a gRPC code).
        cause: String,
    },
    /// `UPSTREAM_TIMEOUT`: the upstream did not answer within the gateway's deadline.
    #[error("the service did not answer in time")]
    UpstreamTimeout,
    /// `CANONICAL_OPERATION_NOT_DEFINED`: a write method without a canonical operation.
    #[error("this write has no canonical operation")]
    CanonicalOperationNotDefined {
        /// The method's path.
        method: String,
    },
    /// `RESPONSE_TRUNCATED`: a replayed failure whose answer was too large to keep; under
    /// the stored failure's code.
    #[error("the request failed; its answer was too large to keep for replay")]
    ResponseTruncated {
        /// The stored failure's gRPC code.
        code: Code,
        /// The write's business event.
        business_event_id: String,
        /// Size of the answer that was not kept, bytes.
        response_bytes: i64,
    },
    /// `IDEMPOTENCY_RECORD_NOT_FOUND`.
    #[error("no idempotency record for this user and key")]
    RecordNotFound,
    /// `IDEMPOTENCY_RECORD_NOT_PROCESSING`: only a processing record can be released.
    #[error("the record is {0}; only a processing record can be released")]
    RecordNotProcessing(String),
    /// `IDEMPOTENCY_RECORD_LEASE_ACTIVE`: the record's owner may still be working.
    #[error("the record's owner may still be working; retry the write after its lease")]
    RecordLeaseActive {
        /// The end of the lease, RFC 3339.
        lease_expires_at: String,
    },
    /// `IDEMPOTENCY_KEY_REUSED`: an operator's release key was used for another release.
    #[error("this request's idempotency key was used for a different release")]
    ReleaseKeyReused(String),
    /// `CONTENDED`: the record kept changing during a release.
    #[error("the record kept changing during the release; retry")]
    Contended,
    /// `INTERNAL_ERROR`: storage or another unexpected failure, logged; opaque to clients.
    #[error("internal: {0}")]
    Internal(#[source] StorageCause),
}

impl GatewayError {
    /// An unexpected failure (`INTERNAL_ERROR`), keeping `cause` for the log.
    pub fn internal(cause: impl Into<StorageCause>) -> Self {
        Self::Internal(cause.into())
    }

    /// `TOKEN_CLAIM_INVALID` naming the claim.
    pub fn token_claim(claim: &str) -> Self {
        Self::TokenClaimInvalid { claim: claim.to_owned() }
    }

    /// `UPSTREAM_UNAVAILABLE` naming `upstream`, with `cause` in the message.
    pub fn unavailable(upstream: &str, cause: impl Into<String>) -> Self {
        Self::UpstreamUnavailable { upstream: upstream.to_owned(), cause: cause.into() }
    }
}

impl From<ReleaseError> for GatewayError {
    fn from(error: ReleaseError) -> Self {
        match error {
            ReleaseError::NotFound => Self::RecordNotFound,
            ReleaseError::NotProcessing(record_status) => Self::RecordNotProcessing(record_status),
            ReleaseError::LeaseActive(until) => {
                Self::RecordLeaseActive { lease_expires_at: to_timestamp(until).to_string() }
            }
            ReleaseError::Audit(AuditError::KeyReused(key)) => Self::ReleaseKeyReused(key),
            ReleaseError::Contended => Self::Contended,
            ReleaseError::Audit(AuditError::Storage(error)) => Self::internal(error),
        }
    }
}

impl From<sqlx::Error> for GatewayError {
    fn from(error: sqlx::Error) -> Self {
        Self::internal(error)
    }
}

impl From<GatewayError> for Status {
    fn from(error: GatewayError) -> Self {
        let message = error.to_string();
        let (code, reason, metadata): (Code, &str, Vec<(&str, String)>) = match error {
            GatewayError::TokenMissing => (Code::Unauthenticated, reasons::TOKEN_MISSING, vec![]),
            GatewayError::TokenInvalid => (Code::Unauthenticated, reasons::TOKEN_INVALID, vec![]),
            GatewayError::TokenExpired => (Code::Unauthenticated, reasons::TOKEN_EXPIRED, vec![]),
            GatewayError::TokenNotYetValid => (Code::Unauthenticated, reasons::TOKEN_NOT_YET_VALID, vec![]),
            GatewayError::TokenKeyUnknown => (Code::Unauthenticated, reasons::TOKEN_KEY_UNKNOWN, vec![]),
            GatewayError::TokenClaimInvalid { claim } => {
                (Code::Unauthenticated, reasons::TOKEN_CLAIM_INVALID, vec![("claim", claim)])
            }
            GatewayError::RoleTooLow { min_role_level } => {
                (Code::PermissionDenied, reasons::ROLE_TOO_LOW, vec![("min_role_level", min_role_level.to_string())])
            }
            GatewayError::PermissionDenied(_) => (Code::PermissionDenied, reasons::PERMISSION_DENIED, vec![]),
            GatewayError::RateLimited => (Code::ResourceExhausted, reasons::RATE_LIMITED, vec![]),
            GatewayError::Overloaded => (Code::ResourceExhausted, reasons::OVERLOADED, vec![]),
            GatewayError::TooManyStreams { scope, limit } => (
                Code::ResourceExhausted,
                reasons::TOO_MANY_STREAMS,
                vec![("scope", scope.to_owned()), ("limit", limit.to_string())],
            ),
            GatewayError::MissingIdempotencyKey => {
                return invalid_field(DOMAIN, reasons::MISSING_IDEMPOTENCY_KEY, IDEMPOTENCY_KEY, KEY_FORMAT);
            }
            GatewayError::InvalidIdempotencyKey => {
                return invalid_field(DOMAIN, reasons::INVALID_IDEMPOTENCY_KEY, IDEMPOTENCY_KEY, KEY_FORMAT);
            }
            GatewayError::KeyConflict { original_request_id } => (
                Code::AlreadyExists,
                reasons::IDEMPOTENCY_KEY_CONFLICT,
                vec![(ORIGINAL_REQUEST_ID, original_request_id)],
            ),
            GatewayError::RequestProcessing { original_request_id } => {
                (Code::Aborted, reasons::REQUEST_PROCESSING, vec![(ORIGINAL_REQUEST_ID, original_request_id)])
            }
            GatewayError::MalformedRequest => return malformed_request(DOMAIN),
            GatewayError::NotRouted(_) => return Status::unimplemented(message),
            GatewayError::ShuttingDown => return Status::unavailable(message),
            GatewayError::UpstreamUnavailable { upstream, .. } => {
                (Code::Unavailable, reasons::UPSTREAM_UNAVAILABLE, vec![("upstream", upstream)])
            }
            GatewayError::UpstreamTimeout => (Code::DeadlineExceeded, reasons::UPSTREAM_TIMEOUT, vec![]),
            GatewayError::CanonicalOperationNotDefined { method } => {
                (Code::Internal, reasons::CANONICAL_OPERATION_NOT_DEFINED, vec![("method", method)])
            }
            GatewayError::ResponseTruncated { code, business_event_id, response_bytes } => (
                code,
                reasons::RESPONSE_TRUNCATED,
                vec![("business_event_id", business_event_id), ("response_bytes", response_bytes.to_string())],
            ),
            GatewayError::RecordNotFound => (Code::NotFound, reasons::IDEMPOTENCY_RECORD_NOT_FOUND, vec![]),
            GatewayError::RecordNotProcessing(record_status) => {
                (Code::FailedPrecondition, reasons::IDEMPOTENCY_RECORD_NOT_PROCESSING, vec![("status", record_status)])
            }
            GatewayError::RecordLeaseActive { lease_expires_at } => (
                Code::FailedPrecondition,
                reasons::IDEMPOTENCY_RECORD_LEASE_ACTIVE,
                vec![("lease_expires_at", lease_expires_at)],
            ),
            GatewayError::ReleaseKeyReused(key) => {
                (Code::AlreadyExists, reasons::IDEMPOTENCY_KEY_REUSED, vec![("idempotency_key", key)])
            }
            GatewayError::Contended => (Code::Aborted, reasons::CONTENDED, vec![]),
            GatewayError::Internal(cause) => return storage(DOMAIN, &cause, &message),
        };
        status(code, DOMAIN, reason, message, metadata)
    }
}

#[cfg(test)]
mod tests {
    use economy_kit::error::{reason, violated_fields};

    use super::*;

    fn answer(error: GatewayError) -> (Code, Option<String>) {
        let status = Status::from(error);
        (status.code(), reason(&status))
    }

    #[test]
    fn refusals_have_their_code_and_reason() {
        let cases = [
            (GatewayError::TokenExpired, Code::Unauthenticated, reasons::TOKEN_EXPIRED),
            (GatewayError::RoleTooLow { min_role_level: 50 }, Code::PermissionDenied, reasons::ROLE_TOO_LOW),
            (GatewayError::RateLimited, Code::ResourceExhausted, reasons::RATE_LIMITED),
            (
                GatewayError::TooManyStreams { scope: "user", limit: 4 },
                Code::ResourceExhausted,
                reasons::TOO_MANY_STREAMS,
            ),
            (
                GatewayError::KeyConflict { original_request_id: "r".into() },
                Code::AlreadyExists,
                reasons::IDEMPOTENCY_KEY_CONFLICT,
            ),
            (
                GatewayError::RequestProcessing { original_request_id: "r".into() },
                Code::Aborted,
                reasons::REQUEST_PROCESSING,
            ),
            (GatewayError::unavailable("ledger", "not configured"), Code::Unavailable, reasons::UPSTREAM_UNAVAILABLE),
            (GatewayError::UpstreamTimeout, Code::DeadlineExceeded, reasons::UPSTREAM_TIMEOUT),
            (GatewayError::Contended, Code::Aborted, reasons::CONTENDED),
        ];
        for (error, code, expected) in cases {
            assert_eq!(answer(error), (code, Some(expected.to_owned())));
        }
    }

    #[test]
    fn key_refusals_name_the_metadata() {
        let status = Status::from(GatewayError::MissingIdempotencyKey);
        assert_eq!(reason(&status).as_deref(), Some(reasons::MISSING_IDEMPOTENCY_KEY));
        assert_eq!(violated_fields(&status), [IDEMPOTENCY_KEY]);
    }

    #[test]
    fn a_truncated_replay_keeps_the_stored_code() {
        let truncated =
            GatewayError::ResponseTruncated { code: Code::NotFound, business_event_id: "e".into(), response_bytes: 9 };
        assert_eq!(answer(truncated), (Code::NotFound, Some(reasons::RESPONSE_TRUNCATED.to_owned())));
    }

    #[test]
    fn internal_errors_are_opaque() {
        let status = Status::from(GatewayError::internal("syntax error near SELECT"));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("SELECT"));
        assert_eq!(Status::from(GatewayError::NotRouted("/x.Y/Z".into())).code(), Code::Unimplemented);
    }
}
